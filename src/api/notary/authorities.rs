//! `/api/v1/certificate_authorities`: list, create (a self-signed root, or an intermediate that
//! waits disabled for its certificate), get, `PUT {"enabled"}`, delete, sign an intermediate
//! with another CA here (202), give one an outside CA's chain (201), revoke (202: disabled, and
//! its certificate onto its parent's CRL), and its CRL (open): Notary's JSON `{"crl": PEM}`, or
//! the DER (`application/pkix-crl`) when the request accepts that.

use http::StatusCode;
use pkid_backends::{KeyAlgorithm, KeyCustody, SubjectAttribute};

use super::requests::revocation_reason;
use super::wire::{
    CaAnswer, CaListAnswer, CertificateAuthority, CreateCa, Crl, CrlAnswer, UpdateCa, UploadCaChain,
};
use super::{
    created, done, error, id_and_signer, parse_body, parse_id, ra_error, who, Call, NotaryApi,
};
use crate::api::Reply;
use crate::ca::registry::StoredCa;
use crate::ra::NewCa;

/// The subject of a new CA, in Notary's order (C, ST, L, O, OU, CN), empty fields left out.
fn subject(new: &CreateCa) -> Vec<SubjectAttribute> {
    [
        (SubjectAttribute::COUNTRY_NAME, &new.country_name),
        (
            SubjectAttribute::STATE_OR_PROVINCE_NAME,
            &new.state_or_province_name,
        ),
        (SubjectAttribute::LOCALITY_NAME, &new.locality_name),
        (SubjectAttribute::ORGANIZATION_NAME, &new.organization_name),
        (
            SubjectAttribute::ORGANIZATIONAL_UNIT_NAME,
            &new.organizational_unit_name,
        ),
        (SubjectAttribute::COMMON_NAME, &new.common_name),
    ]
    .into_iter()
    .filter(|(_, value)| !value.trim().is_empty())
    .map(|(oid, value)| SubjectAttribute::text(oid, value.trim()))
    .collect()
}

/// The CA creation asked for, checked as Notary checks it (and a little more).
fn new_ca(new: &CreateCa) -> Result<NewCa, Reply> {
    let bad = |why: &str| error(StatusCode::BAD_REQUEST, format!("invalid request: {why}"));
    if new.common_name.trim().is_empty() {
        return Err(bad("common_name is required"));
    }
    let country = new.country_name.trim();
    if !country.is_empty()
        && (country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err(bad("country_name must be a 2-letter ISO code"));
    }
    let long = [
        &new.common_name,
        &new.sans_dns,
        &new.state_or_province_name,
        &new.locality_name,
        &new.organization_name,
        &new.organizational_unit_name,
    ]
    .iter()
    .any(|v| v.len() > 64 || v.chars().any(char::is_control));
    if long {
        return Err(bad(
            "a name is longer than 64 characters or has control characters",
        ));
    }
    let dns = new.sans_dns.trim();
    if !dns.is_empty() && !crate::pki::csr::is_dns_name(dns.trim_start_matches("*.")) {
        return Err(bad("sans_dns is not a DNS name"));
    }
    let not_after = match new.not_valid_after.trim() {
        "" => None,
        text => Some(
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad("not_valid_after must be a valid RFC3339 timestamp"))?
                .unix_timestamp(),
        ),
    };
    if not_after.is_some_and(|t| t <= crate::store::now()) {
        return Err(bad("not_valid_after must be a future time"));
    }
    let custody = match new.key_custody.as_deref() {
        None => None,
        Some(text) => {
            Some(KeyCustody::parse(text).ok_or_else(|| bad("key_custody is software or pkcs11"))?)
        }
    };
    let algorithm = match new.key_algorithm.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<KeyAlgorithm>().map_err(|_| {
            bad("key_algorithm is ecdsa-p256, ecdsa-p384, rsa2048, rsa3072, rsa4096 or ed25519")
        })?),
    };
    Ok(NewCa {
        self_signed: new.self_signed,
        subject: subject(new),
        dns_names: if dns.is_empty() {
            Vec::new()
        } else {
            vec![dns.to_ascii_lowercase()]
        },
        not_after,
        name: new.name.clone(),
        custody,
        algorithm,
    })
}

impl NotaryApi {
    /// A stored CA as Notary shows it, with its current CRL.
    async fn shown(&self, ca: &StoredCa) -> CertificateAuthority {
        let now = crate::store::now();
        let status = if ca.row.revoked_at.is_some() {
            "revoked"
        } else if ca.row.chain_pem.is_empty() {
            "pending"
        } else if ca.row.not_after.is_some_and(|t| t <= now) {
            "expired"
        } else if !ca.row.enabled {
            "disabled"
        } else {
            "active"
        };
        let crl = match ca.issuer() {
            Some(_) => match self.revocation.current_crl(&ca.row.name).await {
                Ok(crl) => crate::pki::pem::to_pem("X509 CRL", &crl.der),
                Err(e) => {
                    tracing::warn!(ca = ca.row.id, error = %e, "the CA's CRL is not available");
                    String::new()
                }
            },
            None => String::new(),
        };
        CertificateAuthority {
            id: ca.row.id,
            enabled: ca.row.enabled,
            status: status.into(),
            certificate: ca.row.chain_pem.clone(),
            csr: ca.row.csr_pem.clone(),
            crl,
            name: ca.row.name.clone(),
            key_custody: ca.row.key_custody.clone(),
            key_algorithm: ca.row.key_algorithm.clone(),
            parent_id: ca.row.parent_id,
        }
    }

    pub(super) async fn list_cas(&self, _call: &Call<'_>) -> Result<Reply, Reply> {
        let view = self.revocation.issuers().view().await;
        let mut shown = Vec::with_capacity(view.cas.len());
        for ca in &view.cas {
            shown.push(self.shown(ca).await);
        }
        Ok(Reply::json(StatusCode::OK, &CaListAnswer { result: shown }))
    }

    pub(super) async fn create_ca(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let asked: CreateCa = parse_body(&call.body)?;
        let new = new_ca(&asked)?;
        let id = self
            .ra
            .create_ca(new, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(created(id))
    }

    pub(super) async fn get_ca(&self, id: &str) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        let ca = self.ra.stored_ca(id).await.map_err(ra_error)?;
        Ok(Reply::json(
            StatusCode::OK,
            &CaAnswer {
                result: self.shown(&ca).await,
            },
        ))
    }

    pub(super) async fn update_ca(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        let update: UpdateCa = parse_body(&call.body)?;
        self.ra
            .set_ca_enabled(id, update.enabled, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::OK))
    }

    pub(super) async fn delete_ca(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        self.ra
            .delete_ca(id, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::OK))
    }

    pub(super) async fn sign_ca(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let (id, parent) = id_and_signer(id, &call.body)?;
        self.ra
            .sign_ca(id, parent, &[self.crl_url(parent)], &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::ACCEPTED))
    }

    pub(super) async fn upload_ca_chain(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        let upload: UploadCaChain = parse_body(&call.body)?;
        if upload.certificate_chain.trim().is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "certificate_chain is required",
            ));
        }
        self.ra
            .upload_ca_chain(id, &upload.certificate_chain, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(created(id))
    }

    pub(super) async fn revoke_ca(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        let reason = revocation_reason(&call.body)?;
        self.ra
            .revoke_ca(id, reason, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::ACCEPTED))
    }

    /// `GET …/{id}/crl`, open: `{"result": {"crl": PEM}}`, or the DER when `Accept` names
    /// `application/pkix-crl` (what a relying party following the distribution point asks).
    pub(super) async fn ca_crl(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        let ca = self.ra.stored_ca(id).await.map_err(ra_error)?;
        if ca.issuer().is_none() {
            return Err(error(
                StatusCode::NOT_FOUND,
                "the certificate authority has no certificate, so no CRL",
            ));
        }
        let crl = self
            .revocation
            .current_crl(&ca.row.name)
            .await
            .map_err(|e| {
                tracing::error!(ca = id, error = %e, "the CA's CRL could not be made");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the CRL is not available; retry",
                )
            })?;
        let wants_der = call
            .head
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/pkix-crl"));
        if wants_der {
            return Ok(Reply::bytes("application/pkix-crl", crl.der.clone()));
        }
        Ok(Reply::json(
            StatusCode::OK,
            &CrlAnswer {
                result: Crl {
                    crl: crate::pki::pem::to_pem("X509 CRL", &crl.der),
                },
            },
        ))
    }
}
