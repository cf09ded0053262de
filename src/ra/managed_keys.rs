//! Managed keys (CZERTAINLY's token profiles and keys): keys pkid generates and holds for its
//! clients, in a token profile — the software store (each private key sealed with the
//! key-encryption key, AES-256-GCM bound to its purpose) or a PKCS#11 token (the key generated
//! inside, sensitive and not extractable, found by its label) —; CSRs built from them on the
//! server (an issue's `csrAttributes`, a rekey's subject kept), and keys destroyed on request
//! (`destroyKey` after a revocation): the sealed key dropped, or the token's objects deleted.

use std::path::PathBuf;
use std::sync::Arc;

use pkid_backends::builder::rcgen_algorithm;
use pkid_backends::{KeyAlgorithm, KeySigner, Pkcs11Config, Pkcs11Key, SoftwareKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::attributes::{self, Given};
use super::authorities::new_uuid;
use super::{AuditEvent, OperationError, Ra, RaError};
use crate::store::{now, RaManagedKeyRow, RaTokenProfileRow};

/// Associated data binding a sealed managed key to its purpose.
const MANAGED_KEY_AAD: &[u8] = b"pkid RA managed key";

/// Where a PKCS#11 token profile's keys live (no PIN: its environment variable's name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
}

/// A key that signs for a CSR: the rcgen view of a [`KeySigner`].
struct CsrKey {
    signer: Arc<dyn KeySigner>,
    /// The subjectPublicKey BIT STRING contents.
    public_key: Vec<u8>,
}

impl rcgen::PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen_algorithm(self.signer.algorithm())
    }
}

impl rcgen::SigningKey for CsrKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer
            .sign(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

fn pkcs11_config(
    settings: &TokenSettings,
    key: &RaManagedKeyRow,
) -> Result<Pkcs11Config, OperationError> {
    let (Some(module), Some(token_label), Some(pin_env)) =
        (&settings.module, &settings.token_label, &settings.pin_env)
    else {
        return Err(OperationError::malformed(
            "a pkcs11 token profile needs module, tokenLabel and pinEnv",
        ));
    };
    let algorithm: KeyAlgorithm = key
        .algorithm
        .parse()
        .map_err(|_| RaError::Internal(format!("key {} has an unknown algorithm", key.uuid)))?;
    Ok(Pkcs11Config {
        module: module.clone(),
        token_label: token_label.clone(),
        pin_env: Some(pin_env.clone()),
        pin_file: None,
        key_label: key.label.clone(),
        algorithm,
        sessions: 1,
    })
}

/// Runs blocking key work (a token's, or argon-like sealing) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, pkid_backends::BackendError> + Send + 'static,
) -> Result<T, OperationError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RaError::Internal(format!("a key task did not finish: {e}")))?
        .map_err(super::authorities::backend_failure)
}

impl Ra {
    /// A new token profile: `software`, or `pkcs11` with its module, token label and PIN
    /// variable.
    pub async fn create_token_profile(
        &self,
        name: &str,
        kind: &str,
        settings: TokenSettings,
        actor: &str,
    ) -> Result<RaTokenProfileRow, OperationError> {
        if name.is_empty() || name.len() > 128 {
            return Err(OperationError::malformed(
                "a token profile name is 1 to 128 characters",
            ));
        }
        match kind {
            "software" => {}
            "pkcs11" => {
                if settings.module.is_none()
                    || settings.token_label.is_none()
                    || settings.pin_env.is_none()
                {
                    return Err(OperationError::malformed(
                        "a pkcs11 token profile needs module, tokenLabel and pinEnv",
                    ));
                }
            }
            other => {
                return Err(OperationError::malformed(format!(
                    "kind {other:?} is not software or pkcs11"
                )))
            }
        }
        let row = RaTokenProfileRow {
            uuid: new_uuid(),
            name: name.to_string(),
            kind: kind.to_string(),
            settings: serde_json::to_string(&settings).unwrap_or_default(),
            created_at: now(),
        };
        match self.store.insert_ra_token_profile(&row).await {
            Ok(()) => {}
            Err(e) if e.is_unique_violation() => {
                return Err(OperationError::Ra(RaError::Conflict(format!(
                    "a token profile named {name:?} exists already"
                ))))
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(token_profile = %row.uuid, kind, by = %actor, "token profile created");
        self.audit(
            AuditEvent::success(
                actor,
                "token_profile.created",
                format!("token-profile:{}", row.uuid),
            )
            .with(json!({ "name": row.name, "kind": row.kind })),
        )
        .await;
        Ok(row)
    }

    async fn token_profile(
        &self,
        uuid: &str,
    ) -> Result<(RaTokenProfileRow, TokenSettings), OperationError> {
        let row = self
            .store
            .ra_token_profile(uuid)
            .await?
            .ok_or_else(|| OperationError::not_found(format!("no token profile {uuid}")))?;
        let settings = serde_json::from_str(&row.settings).map_err(|_| {
            RaError::Internal(format!("token profile {uuid}'s settings are unreadable"))
        })?;
        Ok((row, settings))
    }

    /// Generates a key of `algorithm` in token profile `token_uuid`.
    pub async fn generate_managed_key(
        &self,
        token_uuid: &str,
        name: &str,
        algorithm: KeyAlgorithm,
        actor: &str,
    ) -> Result<RaManagedKeyRow, OperationError> {
        let (token, settings) = self.token_profile(token_uuid).await?;
        if name.is_empty() || name.len() > 128 {
            return Err(OperationError::malformed(
                "a key name is 1 to 128 characters",
            ));
        }
        let uuid = new_uuid();
        let mut row = RaManagedKeyRow {
            uuid: uuid.clone(),
            token_profile_uuid: token.uuid.clone(),
            name: name.to_string(),
            algorithm: algorithm.as_str().to_string(),
            public_key: Vec::new(),
            sealed_key: None,
            label: format!("pkid-managed-{uuid}"),
            created_at: now(),
            destroyed_at: None,
        };
        if token.kind == "pkcs11" {
            let config = pkcs11_config(&settings, &row)?;
            row.public_key =
                blocking(move || Pkcs11Key::generate(&config).map(|k| k.public_key_der().to_vec()))
                    .await?;
        } else {
            let kek = self.kek.clone();
            let (public_key, sealed) = blocking(move || {
                let key = SoftwareKey::generate(algorithm)?;
                let sealed = kek.seal_pem(&key.to_pkcs8_der(), MANAGED_KEY_AAD)?;
                Ok((key.public_key_der().to_vec(), sealed))
            })
            .await?;
            row.public_key = public_key;
            row.sealed_key = Some(sealed);
        }
        self.store.insert_ra_managed_key(&row).await?;
        tracing::info!(key = %uuid, token_profile = %token.uuid, algorithm = %algorithm, by = %actor, "managed key generated");
        self.audit(
            AuditEvent::success(actor, "managed_key.generated", format!("managed-key:{uuid}"))
                .with(json!({ "tokenProfile": token.uuid, "kind": token.kind, "algorithm": row.algorithm })),
        )
        .await;
        Ok(row)
    }

    /// The key `key_uuid` of token profile `token_uuid`, able to sign.
    async fn managed_signer(
        &self,
        token_uuid: &str,
        key_uuid: &str,
    ) -> Result<Arc<dyn KeySigner>, OperationError> {
        let (token, settings) = self.token_profile(token_uuid).await?;
        let key = self
            .store
            .ra_managed_key(key_uuid)
            .await?
            .filter(|k| k.token_profile_uuid == token.uuid)
            .ok_or_else(|| {
                OperationError::not_found(format!(
                    "no key {key_uuid} in token profile {token_uuid}"
                ))
            })?;
        if key.destroyed_at.is_some() {
            return Err(OperationError::invalid(format!(
                "key {key_uuid} is destroyed"
            )));
        }
        if token.kind == "pkcs11" {
            let config = pkcs11_config(&settings, &key)?;
            let opened = blocking(move || Pkcs11Key::open(&config)).await?;
            return Ok(Arc::new(opened));
        }
        let sealed = key.sealed_key.clone().unwrap_or_default();
        let kek = self.kek.clone();
        let opened = blocking(move || {
            let pkcs8 = kek.open_pem(&sealed, MANAGED_KEY_AAD)?;
            SoftwareKey::from_pkcs8_der(&pkcs8)
        })
        .await?;
        Ok(Arc::new(opened))
    }

    /// A CSR signed by managed key `key_uuid`, for `params`' subject and names.
    async fn sign_csr(
        &self,
        token_uuid: &str,
        key_uuid: &str,
        params: rcgen::CertificateParams,
    ) -> Result<Vec<u8>, OperationError> {
        let signer = self.managed_signer(token_uuid, key_uuid).await?;
        let public_key = SubjectPublicKeyInfo::from_der(signer.public_key_der())
            .map(|(_, spki)| spki.subject_public_key.data.to_vec())
            .map_err(|_| RaError::Internal("a managed key's public key does not parse".into()))?;
        let key = CsrKey { signer, public_key };
        tokio::task::spawn_blocking(move || {
            params.serialize_request(&key).map(|csr| csr.der().to_vec())
        })
        .await
        .map_err(|e| RaError::Internal(format!("a CSR task did not finish: {e}")))?
        .map_err(|e| {
            OperationError::AuthorityUnreachable(format!(
                "the managed key could not sign the CSR: {e}"
            ))
        })
    }

    /// A CSR built on the server from managed key `key_uuid` and `csrAttributes`.
    pub async fn managed_csr(
        &self,
        token_uuid: &str,
        key_uuid: &str,
        given: &[Given],
    ) -> Result<Vec<u8>, OperationError> {
        let checked = attributes::check(attributes::CSR, given).map_err(OperationError::Invalid)?;
        let mut names = checked.strings("dnsNames").unwrap_or_default();
        names.extend(checked.strings("ipAddresses").unwrap_or_default());
        let mut params = rcgen::CertificateParams::new(names)
            .map_err(|e| OperationError::invalid(format!("a name is not acceptable: {e}")))?;
        let mut subject = rcgen::DistinguishedName::new();
        for (name, kind) in [
            ("country", rcgen::DnType::CountryName),
            ("state", rcgen::DnType::StateOrProvinceName),
            ("locality", rcgen::DnType::LocalityName),
            ("organization", rcgen::DnType::OrganizationName),
            ("organizationalUnit", rcgen::DnType::OrganizationalUnitName),
            ("commonName", rcgen::DnType::CommonName),
        ] {
            if let Some(value) = checked.string(name) {
                subject.push(kind, value);
            }
        }
        params.distinguished_name = subject;
        self.sign_csr(token_uuid, key_uuid, params).await
    }

    /// A rekey's CSR: `source_csr`'s subject and names, signed by managed key `key_uuid`.
    pub async fn managed_rekey_csr(
        &self,
        token_uuid: &str,
        key_uuid: &str,
        source_csr: &[u8],
    ) -> Result<Vec<u8>, OperationError> {
        let der = rustls_pki_types::CertificateSigningRequestDer::from(source_csr);
        let source = rcgen::CertificateSigningRequestParams::from_der(&der).map_err(|e| {
            OperationError::invalid(format!(
                "the certificate's CSR cannot be rebuilt: {e}; send a request"
            ))
        })?;
        self.sign_csr(token_uuid, key_uuid, source.params).await
    }

    /// Destroys managed key `key_uuid` for `actor`: a software key's sealed private key is
    /// dropped; a PKCS#11 key's objects are deleted from the token. Recorded in the audit
    /// trail, a failure too.
    pub async fn destroy_managed_key(
        &self,
        key_uuid: &str,
        actor: &str,
    ) -> Result<(), OperationError> {
        let destroyed = self.destroy_key(key_uuid).await;
        let resource = format!("managed-key:{key_uuid}");
        let recorded = match &destroyed {
            Ok(true) => AuditEvent::success(actor, "managed_key.destroyed", resource),
            // Unknown, or destroyed before: nothing changed, nothing to record.
            Ok(false) | Err(OperationError::Ra(RaError::NotFound(_))) => {
                return destroyed.map(|_| ())
            }
            Err(e) => AuditEvent::failure(actor, "managed_key.destroyed", resource, e.to_string()),
        };
        self.audit(recorded).await;
        destroyed.map(|_| ())
    }

    /// Whether the key was destroyed now (`false`: it was already).
    async fn destroy_key(&self, key_uuid: &str) -> Result<bool, OperationError> {
        let key = self
            .store
            .ra_managed_key(key_uuid)
            .await?
            .ok_or_else(|| OperationError::not_found(format!("no managed key {key_uuid}")))?;
        if key.destroyed_at.is_some() {
            return Ok(false);
        }
        let (token, settings) = self.token_profile(&key.token_profile_uuid).await?;
        if token.kind == "pkcs11" {
            let config = pkcs11_config(&settings, &key)?;
            let destroyed = blocking(move || Pkcs11Key::destroy(&config)).await?;
            tracing::info!(key = %key_uuid, objects = destroyed, "managed key destroyed in its token");
        }
        Ok(self.store.destroy_ra_managed_key(key_uuid).await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use x509_parser::certification_request::X509CertificationRequest;

    /// A CSR signed through [`CsrKey`] by a key of each kind verifies, and carries that key.
    #[test]
    fn a_managed_key_signs_its_csr() {
        for algorithm in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Rsa2048,
            KeyAlgorithm::Ed25519,
        ] {
            let software = SoftwareKey::generate(algorithm).unwrap();
            let spki = software.public_key_der().to_vec();
            let public_key = SubjectPublicKeyInfo::from_der(&spki)
                .map(|(_, s)| s.subject_public_key.data.to_vec())
                .unwrap();
            let key = CsrKey {
                signer: Arc::new(software),
                public_key,
            };
            let mut params = rcgen::CertificateParams::new(vec!["k.ra.test".into()]).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "k.ra.test");
            let der = params.serialize_request(&key).unwrap().der().to_vec();
            let (_, csr) = X509CertificationRequest::from_der(&der).unwrap();
            csr.verify_signature()
                .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
            assert_eq!(csr.certification_request_info.subject_pki.raw, &spki[..]);
        }
    }

    /// A token profile's stored settings name the PIN's variable, never a PIN.
    #[test]
    fn token_settings_hold_no_pin() {
        let settings = TokenSettings {
            module: Some("/usr/lib/softhsm/libsofthsm2.so".into()),
            token_label: Some("ra-keys".into()),
            pin_env: Some("RA_KEYS_PIN".into()),
        };
        let text = serde_json::to_string(&settings).unwrap();
        assert_eq!(
            text,
            r#"{"module":"/usr/lib/softhsm/libsofthsm2.so","tokenLabel":"ra-keys","pinEnv":"RA_KEYS_PIN"}"#
        );
        assert_eq!(
            serde_json::from_str::<TokenSettings>(&text).unwrap(),
            settings
        );
    }
}
