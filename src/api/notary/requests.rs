//! `/api/v1/certificate_requests`: list (a requestor sees its own), create (`{"csr"}`, PEM;
//! the same CSR twice is 400), get (a requestor only its own: 403 `access denied`), delete
//! (202), reject (202), sign with a CA here (`{"certificate_authority_id": "<id>"}`, 202),
//! give it an outside CA's chain (201), revoke its certificate (202; 422 without one a CA here
//! signed), delete its certificate (200; only the certificate, the request stays).

use http::StatusCode;
use pkid_backends::RevocationReason;

use super::wire::{
    CertificateRequest, CreateRequest, RequestAnswer, RequestListAnswer, RequestStatus, RevokeWith,
    UploadCertificate,
};
use super::{
    created, done, error, id_and_signer, paging, parse_body, parse_id, ra_error, read_failed,
    sees_all_requests, who, Call, NotaryApi,
};
use crate::api::Reply;
use crate::identity::Principal;
use crate::store::CertRequestRow;

fn shown(row: CertRequestRow) -> CertificateRequest {
    CertificateRequest {
        id: row.id,
        csr: row.csr_pem,
        certificate_chain: row.chain_pem,
        status: RequestStatus::parse(&row.status),
        email: row.owner_email,
    }
}

/// The owner a new request is recorded under: the user, or the operator's token.
fn owner(principal: &Principal) -> (String, String) {
    match principal {
        Principal::User(user) => (user.id.clone(), user.email.clone().unwrap_or_default()),
        other => (other.describe(), String::new()),
    }
}

/// The RFC 5280 reason a revocation body names (camelCase as CZERTAINLY and RFC 5280 spell
/// them, or the code); none: unspecified.
pub(super) fn revocation_reason(body: &[u8]) -> Result<RevocationReason, Reply> {
    let with: RevokeWith = if body.iter().all(u8::is_ascii_whitespace) {
        RevokeWith::default()
    } else {
        parse_body(body)?
    };
    let Some(reason) = with.reason else {
        return Ok(RevocationReason::Unspecified);
    };
    const NAMES: &[(&str, u8)] = &[
        ("unspecified", 0),
        ("keyCompromise", 1),
        ("cACompromise", 2),
        ("affiliationChanged", 3),
        ("superseded", 4),
        ("cessationOfOperation", 5),
        ("certificateHold", 6),
        ("privilegeWithdrawn", 9),
        ("aACompromise", 10),
    ];
    NAMES
        .iter()
        .find(|(name, code)| *name == reason || code.to_string() == reason)
        .and_then(|(_, code)| RevocationReason::from_code(*code))
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("reason {reason:?} is not an RFC 5280 revocation reason pkid gives"),
            )
        })
}

impl NotaryApi {
    pub(super) async fn list_requests(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let page = paging(call.head.query)?;
        let own = (!sees_all_requests(&call.principal)).then(|| owner(&call.principal).0);
        let rows = self
            .reads
            .certificate_requests(own.as_deref(), page)
            .await
            .map_err(read_failed)?;
        Ok(Reply::json(
            StatusCode::OK,
            &RequestListAnswer {
                result: rows.into_iter().map(shown).collect(),
            },
        ))
    }

    pub(super) async fn create_request(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let new: CreateRequest = parse_body(&call.body)?;
        if new.csr.trim().is_empty() {
            return Err(error(StatusCode::BAD_REQUEST, "csr is missing"));
        }
        let (owner_id, email) = owner(&call.principal);
        let id = self
            .ra
            .create_certificate_request(&new.csr, &owner_id, &email, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(created(id))
    }

    /// The request `id`, if the caller may see it.
    async fn visible(&self, call: &Call<'_>, id: &str) -> Result<CertRequestRow, Reply> {
        let id = parse_id(id)?;
        let row = self
            .reads
            .certificate_request(id)
            .await
            .map_err(read_failed)?
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "certificate request not found"))?;
        if !sees_all_requests(&call.principal) && row.owner_id != owner(&call.principal).0 {
            return Err(error(StatusCode::FORBIDDEN, "access denied"));
        }
        Ok(row)
    }

    pub(super) async fn get_request(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let row = self.visible(call, id).await?;
        Ok(Reply::json(
            StatusCode::OK,
            &RequestAnswer { result: shown(row) },
        ))
    }

    pub(super) async fn delete_request(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        self.ra
            .delete_certificate_request(id, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::ACCEPTED))
    }

    pub(super) async fn reject_request(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        self.ra
            .reject_certificate_request(id, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::ACCEPTED))
    }

    pub(super) async fn sign_request(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let (id, ca_id) = id_and_signer(id, &call.body)?;
        self.ra
            .sign_certificate_request(id, ca_id, &[self.crl_url(ca_id)], &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::ACCEPTED))
    }

    pub(super) async fn upload_chain(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        let upload: UploadCertificate = parse_body(&call.body)?;
        if upload.certificate.trim().is_empty() {
            return Err(error(StatusCode::BAD_REQUEST, "certificate is missing"));
        }
        self.ra
            .upload_request_chain(id, &upload.certificate, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(created(id))
    }

    pub(super) async fn delete_certificate(
        &self,
        call: &Call<'_>,
        id: &str,
    ) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        self.ra
            .detach_request_certificate(id, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::OK))
    }

    pub(super) async fn revoke_request(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let id = parse_id(id)?;
        let reason = revocation_reason(&call.body)?;
        self.ra
            .revoke_request_certificate(id, reason, &who(&call.principal))
            .await
            .map_err(ra_error)?;
        Ok(done(StatusCode::ACCEPTED))
    }
}
