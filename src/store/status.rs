//! The statuses of stored objects (RFC 8555 §7.1.6 for accounts, orders, authorizations and
//! challenges; the issuance cycle's records for certificates), typed as step-ca's
//! `acme/status.go` types them, and the statuses ACME derives from the stored ones (an order's
//! `ready`, an authorization's `expired`), derived on the rows as step-ca's `acme/order.go` does
//! on its order.
//!
//! Each status is spelled once, by `as_str`: the text the database holds, the JSON clients read,
//! and what `Display` and `Serialize` write. The row readers parse with [`StoredStatus`], which
//! refuses a derived status as it refuses an unknown one: no code writes either.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A status text that names none of the type's statuses (or, read from the database, names a
/// status that is derived and never stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is no {what}")]
pub struct UnknownStatus {
    /// What was expected: `order status`, `stored order status` …
    pub what: &'static str,
    pub value: String,
}

/// A status as the database holds it: the derived statuses are not among them.
pub(super) trait StoredStatus: Sized {
    fn from_stored(text: &str) -> Result<Self, UnknownStatus>;
}

/// A status enum: its variants' spellings (`stored`, then those only ever `derived`), `as_str`,
/// `FromStr` (every spelling), [`StoredStatus`] (the stored ones), `Display` and `Serialize`.
macro_rules! statuses {
    (
        $(#[$doc:meta])*
        $name:ident ($kind:literal) {
            $($(#[$sdoc:meta])* $stored:ident = $stored_text:literal,)+
        } derived {
            $($(#[$ddoc:meta])* $derived:ident = $derived_text:literal,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$sdoc])* $stored,)+
            $($(#[$ddoc])* $derived,)*
        }

        impl $name {
            /// The stored and wire spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$stored => $stored_text,)+
                    $($name::$derived => $derived_text,)*
                }
            }
        }

        impl StoredStatus for $name {
            fn from_stored(text: &str) -> Result<$name, UnknownStatus> {
                match text {
                    $($stored_text => Ok($name::$stored),)+
                    _ => Err(UnknownStatus {
                        what: concat!("stored ", $kind, " status"),
                        value: text.to_owned(),
                    }),
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(text: &str) -> Result<$name, UnknownStatus> {
                match text {
                    $($stored_text => Ok($name::$stored),)+
                    $($derived_text => Ok($name::$derived),)*
                    _ => Err(UnknownStatus {
                        what: concat!($kind, " status"),
                        value: text.to_owned(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

statuses! {
    /// An account's status (RFC 8555 §7.1.6).
    AccountStatus ("account") {
        Valid = "valid",
        /// Deactivated by its owner (§7.3.6); final.
        Deactivated = "deactivated",
        /// Deactivated by the server: RFC 8555's, never written by pkid.
        Revoked = "revoked",
    } derived {}
}

statuses! {
    /// An order's status (RFC 8555 §7.1.6); what a client sees is [`OrderRow::status_at`].
    OrderStatus ("order") {
        Pending = "pending",
        /// Claimed by a finalize, its certificate being issued.
        Processing = "processing",
        Valid = "valid",
        Invalid = "invalid",
    } derived {
        /// Every authorization valid: derived from them, never stored (a stored order stays
        /// `pending` until a finalize claims it).
        Ready = "ready",
    }
}

statuses! {
    /// An authorization's status (RFC 8555 §7.1.6); what a client sees is
    /// [`AuthzRow::status_at`].
    AuthzStatus ("authorization") {
        Pending = "pending",
        Valid = "valid",
        Invalid = "invalid",
        /// Given up by its account (§7.5.2), or with its account (§7.3.6).
        Deactivated = "deactivated",
        /// RFC 8555's, never written by pkid.
        Revoked = "revoked",
    } derived {
        /// A pending or valid authorization past its `expires`: derived, never stored.
        Expired = "expired",
    }
}

statuses! {
    /// A challenge's status (RFC 8555 §7.1.6).
    ChallengeStatus ("challenge") {
        Pending = "pending",
        /// Being validated (a stopped process's are put back to `pending`).
        Processing = "processing",
        Valid = "valid",
        Invalid = "invalid",
    } derived {}
}

statuses! {
    /// A certificate record's step in the issuance cycle (see `ca`). Revocation is not a
    /// status: an issued certificate is revoked when it has a `revoked_at`.
    CertificateStatus ("certificate") {
        /// Its serial reserved and its to-be-signed bytes recorded, before any signature.
        Tbs = "tbs",
        /// Signed and stored.
        Issued = "issued",
        /// Its issuance failed or lost to another: never served, its serial never reused.
        Abandoned = "abandoned",
    } derived {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling reads back as itself; the derived ones are never read from the database,
    /// and what is shown is the spelling.
    #[test]
    fn statuses_are_spelled_once() {
        for status in [
            OrderStatus::Pending,
            OrderStatus::Processing,
            OrderStatus::Ready,
        ] {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::json!(status.as_str()))
            );
        }
        assert_eq!(
            CertificateStatus::from_stored("abandoned"),
            Ok(CertificateStatus::Abandoned)
        );
        assert_eq!(
            OrderStatus::from_stored("ready").map_err(|e| e.to_string()),
            Err("\"ready\" is no stored order status".to_owned())
        );
        assert_eq!(
            AuthzStatus::from_stored("expired").map_err(|e| e.to_string()),
            Err("\"expired\" is no stored authorization status".to_owned())
        );
        assert_eq!(
            "Valid"
                .parse::<ChallengeStatus>()
                .map_err(|e| e.to_string()),
            Err("\"Valid\" is no challenge status".to_owned())
        );
    }
}
