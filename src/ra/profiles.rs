//! RA profiles (CZERTAINLY-style client operations): each bound to one authority, enabled or
//! not, with its attributes (validity, certificate profile, approval) and its policy (the
//! subjects and subject alternative names it allows). Created, edited, enabled, disabled and
//! deleted here, each by an acting principal (named for the log); every client operation
//! checks its profile here first ([`Ra::usable_profile`]): it exists, belongs to the authority
//! in the path, and is enabled.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::attributes::{self, Checked, Given};
use super::authorities::new_uuid;
use super::{AuditEvent, OperationError, Ra, RaError};
use crate::ca::IssuanceProfile;
use crate::pki::csr::{CheckedCsr, Ident};
use crate::store::{now, RaProfileRow};

/// The default validity of a profile that names none.
pub const DEFAULT_VALIDITY_DAYS: i64 = 90;
const MAX_VALIDITY_DAYS: i64 = 3650;
const MAX_PATTERNS: usize = 32;

/// A profile's settings, as stored (JSON) and as its attributes show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSettings {
    pub validity_days: i64,
    /// `tls-server`, `tls-client` or `tls-server-client`.
    pub certificate_profile: String,
    pub approval_required: bool,
    /// Regular expressions, each matched against the whole subject DN (RFC 2253); none: any.
    pub allowed_subject_patterns: Vec<String>,
    /// Regular expressions, each matched against a whole DNS name or IP address; none: any.
    pub allowed_san_patterns: Vec<String>,
}

impl Default for ProfileSettings {
    fn default() -> ProfileSettings {
        ProfileSettings {
            validity_days: DEFAULT_VALIDITY_DAYS,
            certificate_profile: "tls-server".into(),
            approval_required: false,
            allowed_subject_patterns: Vec::new(),
            allowed_san_patterns: Vec::new(),
        }
    }
}

impl ProfileSettings {
    /// The settings a profile's attributes give; what is not given keeps its value in `base`.
    pub fn from_attributes(
        base: ProfileSettings,
        given: &[Given],
    ) -> Result<ProfileSettings, OperationError> {
        let checked: Checked =
            attributes::check(attributes::PROFILE, given).map_err(OperationError::Invalid)?;
        let mut settings = base;
        if let Some(days) = checked.integer(attributes::VALIDITY_DAYS) {
            settings.validity_days = days;
        }
        if let Some(kind) = checked.string(attributes::CERTIFICATE_PROFILE) {
            settings.certificate_profile = kind;
        }
        if let Some(approval) = checked.boolean(attributes::APPROVAL_REQUIRED) {
            settings.approval_required = approval;
        }
        if let Some(patterns) = checked.strings(attributes::ALLOWED_SUBJECT_PATTERNS) {
            settings.allowed_subject_patterns = patterns;
        }
        if let Some(patterns) = checked.strings(attributes::ALLOWED_SAN_PATTERNS) {
            settings.allowed_san_patterns = patterns;
        }
        let mut faults = Vec::new();
        if !(1..=MAX_VALIDITY_DAYS).contains(&settings.validity_days) {
            faults.push(format!(
                "validityDays must be 1 to {MAX_VALIDITY_DAYS}, not {}",
                settings.validity_days
            ));
        }
        for pattern in settings
            .allowed_subject_patterns
            .iter()
            .chain(&settings.allowed_san_patterns)
        {
            if let Err(e) = whole(pattern) {
                faults.push(format!(
                    "pattern {pattern:?} is not a regular expression: {e}"
                ));
            }
        }
        if settings.allowed_subject_patterns.len() + settings.allowed_san_patterns.len()
            > MAX_PATTERNS
        {
            faults.push(format!("at most {MAX_PATTERNS} patterns"));
        }
        if faults.is_empty() {
            Ok(settings)
        } else {
            Err(OperationError::Invalid(faults))
        }
    }

    /// The stored settings of a profile row (a row pkid wrote; unreadable only if tampered).
    pub fn of(row: &RaProfileRow) -> Result<ProfileSettings, RaError> {
        serde_json::from_str(&row.settings).map_err(|_| {
            RaError::Internal(format!("RA profile {}'s settings are unreadable", row.uuid))
        })
    }

    /// The issuance profile a certificate is issued under, for `validity_days`.
    pub fn issuance_profile(&self, name: &str, validity_days: i64) -> IssuanceProfile {
        let mut profile = IssuanceProfile::tls_server(name, validity_days.max(1) * 86400);
        profile.server_auth = self.certificate_profile != "tls-client";
        profile.client_auth = self.certificate_profile != "tls-server";
        profile
    }

    /// Whether the request's subject and names are what the profile allows: every reason
    /// it is not.
    pub fn check_request(&self, subject_dn: &str, csr: &CheckedCsr) -> Result<(), Vec<String>> {
        let mut faults = Vec::new();
        if !self.allowed_subject_patterns.is_empty()
            && !self
                .allowed_subject_patterns
                .iter()
                .any(|p| whole(p).is_ok_and(|re| re.is_match(subject_dn)))
        {
            faults.push(format!(
                "the subject {subject_dn:?} is not one the RA profile allows"
            ));
        }
        if !self.allowed_san_patterns.is_empty() {
            for ident in &csr.identifiers {
                let value = match ident {
                    Ident::Dns(d) => d.clone(),
                    Ident::Ip(ip) => ip.to_string(),
                };
                if !self
                    .allowed_san_patterns
                    .iter()
                    .any(|p| whole(p).is_ok_and(|re| re.is_match(&value)))
                {
                    faults.push(format!(
                        "the name {value:?} is not one the RA profile allows"
                    ));
                }
            }
        }
        if faults.is_empty() {
            Ok(())
        } else {
            Err(faults)
        }
    }

    /// The profile's settings as attribute values (name, values), for showing.
    pub fn attribute_values(&self) -> Vec<(&'static str, Vec<serde_json::Value>)> {
        use serde_json::json;
        vec![
            (attributes::VALIDITY_DAYS, vec![json!(self.validity_days)]),
            (
                attributes::CERTIFICATE_PROFILE,
                vec![json!(self.certificate_profile)],
            ),
            (
                attributes::APPROVAL_REQUIRED,
                vec![json!(self.approval_required)],
            ),
            (
                attributes::ALLOWED_SUBJECT_PATTERNS,
                self.allowed_subject_patterns
                    .iter()
                    .map(|p| json!(p))
                    .collect(),
            ),
            (
                attributes::ALLOWED_SAN_PATTERNS,
                self.allowed_san_patterns.iter().map(|p| json!(p)).collect(),
            ),
        ]
    }
}

/// `pattern` anchored at both ends, with a bounded size.
fn whole(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

/// A new RA profile, as a management request gives it.
pub struct NewProfile {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub attributes: Vec<Given>,
}

/// The name rules of an RA profile: it is a path segment of the v1 API.
fn check_name(name: &str) -> Result<(), OperationError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(OperationError::malformed(
            "an RA profile name is 1 to 128 letters, digits, '-', '_' or '.'",
        ))
    }
}

impl Ra {
    /// Creates an RA profile bound to the authority `authority_uuid`, by `actor`.
    pub async fn create_ra_profile(
        &self,
        authority_uuid: &str,
        new: NewProfile,
        actor: &str,
    ) -> Result<RaProfileRow, OperationError> {
        let authority = self.authority(authority_uuid).await?;
        check_name(&new.name)?;
        if new.description.len() > 1024 {
            return Err(OperationError::malformed(
                "the description is longer than 1024 bytes",
            ));
        }
        let settings =
            ProfileSettings::from_attributes(ProfileSettings::default(), &new.attributes)?;
        let at = now();
        let row = RaProfileRow {
            uuid: new_uuid(),
            name: new.name,
            description: new.description,
            authority_uuid: authority.uuid,
            enabled: new.enabled,
            settings: serde_json::to_string(&settings).unwrap_or_default(),
            created_at: at,
            updated_at: at,
        };
        match self.store.insert_ra_profile(&row).await {
            Ok(()) => {}
            Err(e) if e.is_unique_violation() => {
                return Err(OperationError::Ra(RaError::Conflict(format!(
                    "an RA profile named {:?} exists already",
                    row.name
                ))))
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(ra_profile = %row.uuid, name = %row.name, authority = %authority.ca.name, by = %actor, "RA profile created");
        self.audit(
            AuditEvent::success(
                actor,
                "ra_profile.created",
                format!("ra-profile:{}", row.uuid),
            )
            .with(json!({ "name": row.name, "authority": authority.ca.name })),
        )
        .await;
        Ok(row)
    }

    /// The profile `uuid` of authority `authority_uuid` (404 for either unknown, or a profile
    /// of another authority).
    pub async fn ra_profile_of(
        &self,
        authority_uuid: &str,
        uuid: &str,
    ) -> Result<RaProfileRow, RaError> {
        self.store
            .ra_profile(uuid)
            .await?
            .filter(|p| p.authority_uuid == authority_uuid)
            .ok_or_else(|| {
                RaError::NotFound(format!(
                    "no RA profile {uuid} of authority {authority_uuid}"
                ))
            })
    }

    /// The profile for a client operation: it belongs to the authority and is enabled.
    pub async fn usable_profile(
        &self,
        authority_uuid: &str,
        uuid: &str,
    ) -> Result<RaProfileRow, OperationError> {
        let profile = self.ra_profile_of(authority_uuid, uuid).await?;
        if !profile.enabled {
            return Err(OperationError::Ra(RaError::Malformed(format!(
                "RA profile {} is disabled",
                profile.name
            ))));
        }
        Ok(profile)
    }

    /// Changes a profile's description and attributes (attributes not given keep their value).
    pub async fn edit_ra_profile(
        &self,
        authority_uuid: &str,
        uuid: &str,
        description: Option<String>,
        given: &[Given],
        actor: &str,
    ) -> Result<RaProfileRow, OperationError> {
        let row = self.ra_profile_of(authority_uuid, uuid).await?;
        let settings = ProfileSettings::from_attributes(ProfileSettings::of(&row)?, given)?;
        let description = description.unwrap_or_else(|| row.description.clone());
        if description.len() > 1024 {
            return Err(OperationError::malformed(
                "the description is longer than 1024 bytes",
            ));
        }
        let text = serde_json::to_string(&settings).unwrap_or_default();
        if !self
            .store
            .update_ra_profile(uuid, &description, &text, row.updated_at)
            .await?
        {
            return Err(OperationError::Ra(RaError::Conflict(
                "the RA profile was changed meanwhile; read it and try again".into(),
            )));
        }
        tracing::info!(ra_profile = %uuid, by = %actor, "RA profile edited");
        self.audit(
            AuditEvent::success(actor, "ra_profile.edited", format!("ra-profile:{uuid}"))
                .with(json!({ "settings": settings })),
        )
        .await;
        Ok(self.ra_profile_of(authority_uuid, uuid).await?)
    }

    /// Enables or disables a profile.
    pub async fn enable_ra_profile(
        &self,
        authority_uuid: &str,
        uuid: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<(), OperationError> {
        self.ra_profile_of(authority_uuid, uuid).await?;
        if !self.store.set_ra_profile_enabled(uuid, enabled).await? {
            return Err(OperationError::not_found(format!("no RA profile {uuid}")));
        }
        tracing::info!(ra_profile = %uuid, enabled, by = %actor, "RA profile enabled or disabled");
        let action = if enabled {
            "ra_profile.enabled"
        } else {
            "ra_profile.disabled"
        };
        self.audit(AuditEvent::success(
            actor,
            action,
            format!("ra-profile:{uuid}"),
        ))
        .await;
        Ok(())
    }

    /// Deletes a profile that holds no certificate and no end entity.
    pub async fn delete_ra_profile(
        &self,
        authority_uuid: &str,
        uuid: &str,
        actor: &str,
    ) -> Result<(), OperationError> {
        self.ra_profile_of(authority_uuid, uuid).await?;
        if !self.store.delete_ra_profile(uuid).await? {
            return Err(OperationError::Ra(RaError::Conflict(
                "the RA profile holds certificates or end entities; disable it instead".into(),
            )));
        }
        tracing::info!(ra_profile = %uuid, by = %actor, "RA profile deleted");
        self.audit(AuditEvent::success(
            actor,
            "ra_profile.deleted",
            format!("ra-profile:{uuid}"),
        ))
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn given(name: &str, values: Vec<serde_json::Value>) -> Given {
        Given {
            uuid: None,
            name: Some(name.into()),
            values,
        }
    }

    #[test]
    fn settings_from_attributes_and_the_policy() {
        let settings = ProfileSettings::from_attributes(
            ProfileSettings::default(),
            &[
                given(attributes::VALIDITY_DAYS, vec![json!(30)]),
                given(
                    attributes::CERTIFICATE_PROFILE,
                    vec![json!("tls-server-client")],
                ),
                given(
                    attributes::ALLOWED_SAN_PATTERNS,
                    vec![json!(r"[a-z0-9-]+\.ra\.test")],
                ),
                given(attributes::ALLOWED_SUBJECT_PATTERNS, vec![json!("CN=.*")]),
            ],
        )
        .unwrap();
        assert_eq!(settings.validity_days, 30);
        let profile = settings.issuance_profile("p", 30);
        assert!(profile.server_auth && profile.client_auth);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = |names: &[&str]| {
            let mut params = rcgen::CertificateParams::new(
                names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            let der = params.serialize_request(&key).unwrap().der().to_vec();
            crate::pki::csr::check_csr(&der).unwrap()
        };
        assert!(settings
            .check_request("CN=a.ra.test", &csr(&["a.ra.test"]))
            .is_ok());
        let faults = settings
            .check_request("O=x", &csr(&["a.ra.test", "b.other.test"]))
            .unwrap_err();
        assert_eq!(faults.len(), 2, "{faults:?}");
        let bad = ProfileSettings::from_attributes(
            ProfileSettings::default(),
            &[
                given(attributes::VALIDITY_DAYS, vec![json!(0)]),
                given(attributes::ALLOWED_SAN_PATTERNS, vec![json!("(")]),
            ],
        );
        assert!(matches!(bad, Err(OperationError::Invalid(f)) if f.len() == 2));
    }
}
