//! RFC 3820 proxies (IAM's proxy certificate API): a user uploads a proxy of a certificate
//! linked to their account, with its unencrypted key (`PUT /iam/account/me/proxycert`), and
//! later asks for short proxies made from it (`POST /iam/proxycert`).
//!
//! - Upload: the file checked by `pki::proxy` (RFC 3820 §4 path, key matches, ≤ 8192
//!   characters); its end-entity certificate must be linked to the caller (subject and issuer)
//!   and be the linked certificate itself or one the trust anchor of that issuer signed (not a
//!   look-alike with the same names under another CA key); its key must be one pkid can sign with, and its path length must allow one more proxy.
//!   One proxy is kept per linked certificate; the key is sealed with the key-encryption key,
//!   bound to that certificate, and never stored or logged in the clear.
//! - Generation: the caller's first stored proxy (of the end entity issued by `issuer`, when
//!   one is named) that has not expired; none stored → 412 "No proxy found", all expired → 412
//!   "No valid proxy found". Lifetime: the one asked for (at least 120 s), capped at
//!   `iam.proxy_max_lifetime_secs` and at the stored chain's own expiry. The new proxy is made
//!   by `pki::proxy::issue` off the async workers (an RSA key is generated).

use serde_json::json;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Iam, IamError};
use crate::audit::Event;
use crate::pki::dn::{normalize, rfc2253};
use crate::pki::pem::to_pem;
use crate::pki::proxy::issue::{generate, signer, GeneratedProxy, ProxyRequest};
use crate::pki::proxy::{parse_bundle, KeyFormat, PrivateKey};
use crate::ra::ids::object_id;
use crate::store::{now, UserProxyRow};

/// The shortest proxy that may be asked for, in seconds.
pub const MIN_PROXY_LIFETIME_SECS: i64 = 120;

/// A generation request as the surface read it.
#[derive(Debug)]
pub struct ProxyGeneration<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    /// The principal asking (for the audit trail), and the OAuth2 client it came through.
    pub by: &'a str,
    pub client_id: &'a str,
    /// Seconds asked for.
    pub lifetime_secs: i64,
    /// The issuer (a DN) of the end-entity certificate whose proxy to use.
    pub issuer: Option<&'a str>,
}

/// What a sealed proxy key is bound to: its purpose and its linked certificate.
fn sealed_aad(certificate_id: &str) -> Vec<u8> {
    format!("pkid user proxy key {certificate_id}").into_bytes()
}

impl Iam {
    /// Store an uploaded proxy file for the account `user_id`, as `by`.
    pub async fn store_proxy(&self, user_id: &str, file: &str, by: &str) -> Result<(), IamError> {
        let at = now();
        let bundle = parse_bundle(file, at).map_err(|e| IamError::Invalid(e.to_string()))?;
        signer(&bundle.private_key).map_err(|e| IamError::Invalid(e.to_string()))?;
        if bundle.facts.allows_below == Some(0) {
            return Err(IamError::Invalid(
                "the proxy's path length constraint allows no proxy below it: none could be generated from it"
                    .into(),
            ));
        }
        let end_entity_der = bundle
            .certificates
            .get(bundle.facts.proxies)
            .ok_or_else(|| IamError::Invalid("the chain has no end-entity certificate".into()))?;
        let (_, end_entity) = X509Certificate::from_der(end_entity_der)
            .map_err(|_| IamError::Invalid("the end-entity certificate does not parse".into()))?;
        let (subject_dn, issuer_dn) = (rfc2253(end_entity.subject()), rfc2253(end_entity.issuer()));
        let link = self
            .store
            .user_certificates(user_id)
            .await?
            .into_iter()
            .find(|c| c.subject_dn == subject_dn && c.issuer_dn == issuer_dn)
            .ok_or_else(|| {
                IamError::Invalid(format!(
                    "the proxy's end-entity certificate {subject_dn} (issued by {issuer_dn}) is not linked to this account"
                ))
            })?;
        // The linked certificate itself, or one its CA (a trust anchor) signed: not a copy of
        // its names under another key.
        let anchored = link.der.as_deref() == Some(end_entity_der.as_slice())
            || self.signed_by_anchor(&end_entity, &issuer_dn).await;
        if !anchored {
            return Err(IamError::Invalid(format!(
                "the proxy's end-entity certificate is neither the linked certificate nor signed by the trust anchor {issuer_dn}"
            )));
        }
        let key_pem = bundle.private_key.to_pem();
        let sealed_key = self
            .kek
            .seal_pem(key_pem.as_bytes(), &sealed_aad(&link.id))
            .map_err(|e| IamError::Internal(format!("sealing the proxy key: {e}")))?;
        let chain_pem: String = bundle
            .certificates
            .iter()
            .map(|der| to_pem("CERTIFICATE", der))
            .collect();
        let row = UserProxyRow {
            id: object_id(),
            user_id: user_id.to_owned(),
            certificate_id: link.id,
            subject_dn,
            issuer_dn,
            chain_pem,
            sealed_key,
            expires_at: bundle.facts.not_after,
            created_at: at,
        };
        self.store.put_user_proxy(&row).await?;
        tracing::info!(subject = %row.subject_dn, "proxy certificate stored");
        let detail = json!({
            "subject": row.subject_dn,
            "issuer": row.issuer_dn,
            "not_after": row.expires_at,
        });
        self.audit(proxy_event(by, "proxy.stored", &row.certificate_id, detail))
            .await;
        Ok(())
    }

    /// A new proxy from the caller's stored one.
    pub async fn generate_proxy(
        &self,
        req: &ProxyGeneration<'_>,
    ) -> Result<GeneratedProxy, IamError> {
        if req.lifetime_secs < MIN_PROXY_LIFETIME_SECS {
            return Err(IamError::Invalid(format!(
                "lifetimeSecs must be at least {MIN_PROXY_LIFETIME_SECS}"
            )));
        }
        let issuer = req
            .issuer
            .map(|text| {
                normalize(text)
                    .map_err(|_| IamError::Invalid(format!("not a valid RFC 2253 DN: {text:?}")))
            })
            .transpose()?;
        let at = now();
        let stored: Vec<UserProxyRow> = self
            .store
            .user_proxies(req.user_id)
            .await?
            .into_iter()
            .filter(|p| issuer.as_ref().is_none_or(|i| *i == p.issuer_dn))
            .collect();
        if stored.is_empty() {
            return Err(IamError::NoProxy(format!(
                "No proxy found for account '{}'",
                req.username
            )));
        }
        // A minute of life left at least, or the new proxy would be stillborn.
        let proxy = stored
            .into_iter()
            .find(|p| p.expires_at > at + 60)
            .ok_or_else(|| {
                IamError::NoProxy(format!(
                    "No valid proxy found for account '{}'",
                    req.username
                ))
            })?;
        let lifetime = req.lifetime_secs.min(
            self.settings
                .proxy_max_lifetime_secs
                .max(MIN_PROXY_LIFETIME_SECS),
        );
        let not_after = at.saturating_add(lifetime).min(proxy.expires_at);
        let key_pem = self
            .kek
            .open_pem(&proxy.sealed_key, &sealed_aad(&proxy.certificate_id))
            .map_err(|e| IamError::Internal(format!("opening the stored proxy key: {e}")))?;
        let key = stored_key(&key_pem)?;
        let chain: Vec<Vec<u8>> = pem::parse_many(&proxy.chain_pem)
            .map_err(|e| IamError::Internal(format!("the stored chain: {e}")))?
            .into_iter()
            .map(pem::Pem::into_contents)
            .collect();
        let made = tokio::task::spawn_blocking(move || {
            generate(&ProxyRequest {
                chain: &chain,
                key: &key,
                not_after,
                at,
            })
        })
        .await
        .map_err(|e| IamError::Internal(format!("proxy generation stopped: {e}")))?
        .map_err(|e| IamError::Internal(e.to_string()))?;
        tracing::info!(subject = %made.subject, not_after = made.not_after, "proxy certificate generated");
        let detail = json!({
            "subject": made.subject,
            "identity": made.identity,
            "not_after": made.not_after,
            "client": req.client_id,
        });
        self.audit(proxy_event(
            req.by,
            "proxy.generated",
            &proxy.certificate_id,
            detail,
        ))
        .await;
        Ok(made)
    }
}

/// The audit entry of `by`'s `action` on the proxy of the linked certificate `certificate_id`.
fn proxy_event(by: &str, action: &str, certificate_id: &str, detail: serde_json::Value) -> Event {
    Event::success(by, action, format!("user-certificate:{certificate_id}")).with(detail)
}

/// A stored key (the PEM that was sealed) read back.
fn stored_key(pem_text: &[u8]) -> Result<PrivateKey, IamError> {
    let block = pem::parse(pem_text)
        .map_err(|_| IamError::Internal("the stored proxy key is not PEM".into()))?;
    let format = match block.tag() {
        "RSA PRIVATE KEY" => KeyFormat::Pkcs1,
        "EC PRIVATE KEY" => KeyFormat::Sec1,
        "PRIVATE KEY" => KeyFormat::Pkcs8,
        _ => {
            return Err(IamError::Internal(
                "the stored proxy key has an unknown label".into(),
            ))
        }
    };
    Ok(PrivateKey {
        format,
        der: zeroize::Zeroizing::new(block.into_contents()),
    })
}
