//! End entities of the v1 client operations (CZERTAINLY v1, EJBCA-style): a username with a
//! password (kept as an argon2id hash the caller made), a subject DN and the rest of its
//! record, per RA profile; certificates issued for one only for a CSR naming exactly its
//! subject DN (the caller checked the password); deleting one revokes its certificates first.
//!
//! Statuses (EJBCA's): `NEW` (may enrol), `FAILED`, `INITIALIZED`, `IN_PROCESS`, `GENERATED`
//! (issued; set back to `NEW` by an edit or a password reset to enrol again), `REVOKED`,
//! `HISTORICAL`, `KEY_RECOVERY`, `WAITING_FOR_ADD_APPROVAL`.

use std::sync::Arc;

use pkid_backends::RevocationReason;

use super::ra_certificates::{read_csr, state, CertificateRequest, Outcome};
use super::{AuditEvent, OperationError, Ra, RaError};
use crate::pki::dn::normalize;
use crate::store::{now, RaEndEntityRow, RaProfileRow};
use serde_json::json;

/// The audit trail's name of an end entity: `end-entity:<RA profile>/<username>`.
fn entity_resource(profile: &RaProfileRow, username: &str) -> String {
    format!("end-entity:{}/{username}", profile.name)
}

/// Every end entity status.
pub const STATUSES: [&str; 9] = [
    "NEW",
    "FAILED",
    "INITIALIZED",
    "IN_PROCESS",
    "GENERATED",
    "REVOKED",
    "HISTORICAL",
    "KEY_RECOVERY",
    "WAITING_FOR_ADD_APPROVAL",
];

/// The statuses an end entity may enrol in.
const MAY_ENROL: [&str; 4] = ["NEW", "FAILED", "INITIALIZED", "IN_PROCESS"];

/// An end entity's fields as a request gives them (its password already hashed).
pub struct EndEntityFields {
    pub password_hash: String,
    pub subject_dn: String,
    pub subject_alt_name: String,
    pub email: String,
    /// `[{"name", "value"}]` as JSON.
    pub extension_data: String,
    /// `None` on create (`NEW`).
    pub status: Option<String>,
}

/// The key of an end entity in the certificate records.
pub fn end_entity_key(profile: &RaProfileRow, username: &str) -> String {
    format!("{}/{username}", profile.uuid)
}

fn check_fields(fields: &EndEntityFields) -> Result<String, OperationError> {
    let subject =
        normalize(&fields.subject_dn).map_err(|e| OperationError::malformed(e.to_string()))?;
    if let Some(status) = &fields.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(OperationError::malformed(format!(
                "status {status:?} is not one of {}",
                STATUSES.join(", ")
            )));
        }
    }
    if fields.subject_alt_name.len() > 2048
        || fields.email.len() > 320
        || fields.extension_data.len() > 8192
    {
        return Err(OperationError::malformed(
            "subjectAltName, email or extensionData is too long",
        ));
    }
    Ok(subject)
}

/// A DN in the stored form with its RDNs in the other order (commas escaped by a backslash are
/// inside a value).
fn reversed_rdns(dn: &str) -> String {
    let mut rdns = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            rdns.push(std::mem::take(&mut current));
            continue;
        }
        current.push(c);
    }
    rdns.push(current);
    rdns.reverse();
    rdns.join(",")
}

impl Ra {
    /// The end entity `username` of `profile`.
    pub async fn end_entity(
        &self,
        profile: &RaProfileRow,
        username: &str,
    ) -> Result<RaEndEntityRow, OperationError> {
        self.store
            .ra_end_entity(&profile.uuid, username)
            .await?
            .ok_or_else(|| OperationError::not_found(format!("no end entity {username:?}")))
    }

    /// A new end entity (status `NEW`).
    pub async fn create_end_entity(
        &self,
        profile: &RaProfileRow,
        username: &str,
        fields: EndEntityFields,
        actor: &str,
    ) -> Result<(), OperationError> {
        let valid_name = !username.is_empty()
            && username.len() <= 128
            && !username.contains('/')
            && !username.chars().any(char::is_control);
        if !valid_name {
            return Err(OperationError::malformed(
                "a username is 1 to 128 characters, without '/'",
            ));
        }
        let subject_dn = check_fields(&fields)?;
        let at = now();
        let row = RaEndEntityRow {
            ra_profile_uuid: profile.uuid.clone(),
            username: username.to_string(),
            password_hash: fields.password_hash,
            subject_dn,
            subject_alt_name: fields.subject_alt_name,
            email: fields.email,
            extension_data: fields.extension_data,
            status: "NEW".into(),
            created_at: at,
            updated_at: at,
        };
        match self.store.insert_ra_end_entity(&row).await {
            Ok(()) => {}
            Err(e) if e.is_unique_violation() => {
                return Err(OperationError::Ra(RaError::Conflict(format!(
                    "end entity {username:?} exists already"
                ))))
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(ra_profile = %profile.name, end_entity = %username, by = %actor, "end entity created");
        self.audit(
            AuditEvent::success(
                actor,
                "end_entity.created",
                entity_resource(profile, username),
            )
            .with(json!({ "subject": row.subject_dn })),
        )
        .await;
        Ok(())
    }

    /// Replaces an end entity's fields (its status too, when given).
    pub async fn edit_end_entity(
        &self,
        profile: &RaProfileRow,
        username: &str,
        fields: EndEntityFields,
        actor: &str,
    ) -> Result<(), OperationError> {
        let subject_dn = check_fields(&fields)?;
        self.replace_end_entity(profile, username, "end_entity.edited", actor, |current| {
            RaEndEntityRow {
                password_hash: fields.password_hash,
                subject_dn,
                subject_alt_name: fields.subject_alt_name,
                email: fields.email,
                extension_data: fields.extension_data,
                status: fields.status.unwrap_or(current.status.clone()),
                ..current
            }
        })
        .await
    }

    /// A new password (its hash), and the status `NEW`: the entity may enrol again.
    pub async fn reset_end_entity_password(
        &self,
        profile: &RaProfileRow,
        username: &str,
        password_hash: String,
        actor: &str,
    ) -> Result<(), OperationError> {
        self.replace_end_entity(
            profile,
            username,
            "end_entity.password_reset",
            actor,
            |current| RaEndEntityRow {
                password_hash,
                status: "NEW".into(),
                ..current
            },
        )
        .await
    }

    /// The end entity, read and written back as `change` makes it.
    async fn replace_end_entity(
        &self,
        profile: &RaProfileRow,
        username: &str,
        action: &str,
        actor: &str,
        change: impl FnOnce(RaEndEntityRow) -> RaEndEntityRow,
    ) -> Result<(), OperationError> {
        let row = change(self.end_entity(profile, username).await?);
        if !self.store.update_ra_end_entity(&row).await? {
            return Err(OperationError::not_found(format!(
                "no end entity {username:?}"
            )));
        }
        tracing::info!(ra_profile = %profile.name, end_entity = %username, by = %actor, action, "end entity changed");
        self.audit(
            AuditEvent::success(actor, action, entity_resource(profile, username))
                .with(json!({ "status": row.status })),
        )
        .await;
        Ok(())
    }

    /// Issues for an end entity whose password the caller checked: the CSR must name exactly
    /// its subject DN, and the entity must be in a status that may enrol.
    pub async fn issue_for_end_entity(
        self: &Arc<Self>,
        profile: &RaProfileRow,
        username: &str,
        csr_der: Vec<u8>,
        actor: &str,
    ) -> Result<Outcome, OperationError> {
        let entity = self.end_entity(profile, username).await?;
        if !MAY_ENROL.contains(&entity.status.as_str()) {
            return Err(OperationError::malformed(format!(
                "end entity {username:?} is {}; set it to NEW to enrol again",
                entity.status
            )));
        }
        let (_, subject) = read_csr(&csr_der)?;
        if subject != entity.subject_dn {
            return Err(OperationError::malformed(format!(
                "the CSR's subject {subject:?} is not the end entity's {:?}",
                entity.subject_dn
            )));
        }
        let request = CertificateRequest {
            csr_der,
            attributes: Vec::new(),
            key_uuid: None,
            end_entity: Some(end_entity_key(profile, username)),
        };
        let outcome = self.accept(profile, request, None, "issue", actor).await;
        let status = match &outcome {
            Ok(o) if o.certificate.is_some() => "GENERATED",
            Ok(_) => "IN_PROCESS",
            Err(_) => "FAILED",
        };
        self.store
            .set_ra_end_entity_status(&profile.uuid, username, status)
            .await?;
        outcome
    }

    /// Revokes every issued certificate of the end entity (cessationOfOperation), then
    /// deletes it. A revocation that fails leaves the entity in place.
    pub async fn delete_end_entity(
        self: &Arc<Self>,
        profile: &RaProfileRow,
        username: &str,
        actor: &str,
    ) -> Result<(), OperationError> {
        self.end_entity(profile, username).await?;
        let key = end_entity_key(profile, username);
        for record in self.store.ra_certificates_of_end_entity(&key).await? {
            if record.state != state::ISSUED {
                continue;
            }
            self.revoke_ra_certificate(
                profile,
                &record.uuid,
                RevocationReason::CessationOfOperation,
                &[],
                false,
                actor,
            )
            .await?;
        }
        self.store
            .set_ra_end_entity_status(&profile.uuid, username, "REVOKED")
            .await?;
        if !self
            .store
            .delete_ra_end_entity(&profile.uuid, username)
            .await?
        {
            return Err(OperationError::not_found(format!(
                "no end entity {username:?}"
            )));
        }
        tracing::info!(ra_profile = %profile.name, end_entity = %username, by = %actor, "end entity revoked and deleted");
        self.audit(AuditEvent::success(
            actor,
            "end_entity.deleted",
            entity_resource(profile, username),
        ))
        .await;
        Ok(())
    }

    /// The enabled RA profile named `name` (the v1 API names profiles).
    pub async fn usable_profile_named(&self, name: &str) -> Result<RaProfileRow, OperationError> {
        let profile = self
            .store
            .ra_profile_by_name(name)
            .await?
            .ok_or_else(|| OperationError::not_found(format!("no RA profile {name:?}")))?;
        if !profile.enabled {
            return Err(OperationError::malformed(format!(
                "RA profile {name} is disabled"
            )));
        }
        Ok(profile)
    }

    /// v1 revocation: the certificate with serial `serial_hex` issued by `issuer_dn`, which must
    /// be a record of `profile`.
    pub async fn revoke_by_serial(
        self: &Arc<Self>,
        profile: &RaProfileRow,
        serial_hex: &str,
        issuer_dn: &str,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<(), OperationError> {
        let serial = crate::revocation::canonical_serial_hex(serial_hex);
        let wanted_issuer =
            normalize(issuer_dn).map_err(|e| OperationError::malformed(e.to_string()))?;
        let not_found =
            || OperationError::not_found(format!("no certificate {serial_hex} of this RA profile"));
        let record = self
            .store
            .ra_certificate_by_serial(&serial)
            .await?
            .filter(|r| r.ra_profile_uuid == profile.uuid)
            .ok_or_else(not_found)?;
        let der = self
            .store
            .certificate(&serial)
            .await?
            .and_then(|c| c.der)
            .ok_or_else(not_found)?;
        let issuer = x509_parser::parse_x509_certificate(&der)
            .map(|(_, c)| crate::pki::dn::rfc2253(c.issuer()))
            .map_err(|_| not_found())?;
        // Either order of the RDNs: RFC 2253's (the last first, as EJBCA writes it) or the
        // certificate's own (as `openssl x509 -issuer` prints it).
        if issuer != wanted_issuer && issuer != reversed_rdns(&wanted_issuer) {
            return Err(OperationError::malformed(format!(
                "certificate {serial_hex} was issued by {issuer:?}, not {wanted_issuer:?}"
            )));
        }
        self.revoke_ra_certificate(profile, &record.uuid, reason, &[], false, actor)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdns_reversed_keep_escaped_commas() {
        assert_eq!(reversed_rdns("CN=a,O=b\\, c,C=IT"), "C=IT,O=b\\, c,CN=a");
        assert_eq!(reversed_rdns("CN=a"), "CN=a");
    }
}
