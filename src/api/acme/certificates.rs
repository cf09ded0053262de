//! Certificate resources: download with alternate chains (RFC 8555 §7.4.2) and revocation
//! (§7.6), by the account that holds the certificate or signed by the certificate's key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::StatusCode;

use super::links::Links;
use super::problem::Problem;
use super::{require_account, wire, AcmeResult, AcmeServer, Authenticated, Reply};
use crate::identity::jws::{self, KeyRef};
use crate::ra::Revoker;
use crate::store::CertificateStatus;

impl AcmeServer {
    /// RFC 8555 §7.4.2: the chain (`alternate` 0) or one of the issuer's alternate chains, with
    /// `Link: rel="alternate"` to the others.
    pub(super) async fn certificate(
        &self,
        serial: &str,
        alternate: usize,
        mut auth: Authenticated,
        links: &Links,
    ) -> AcmeResult {
        let mut prefetched = std::mem::take(&mut auth.prefetched);
        let account = require_account(&auth)?;
        let found = match prefetched.take_certificate(serial) {
            Some(found) => found,
            None => self.reads.certificate_for_download(serial).await?,
        };
        let cert = found.ok_or_else(|| Problem::not_found("no such certificate"))?;
        if cert.account_id.as_deref() != Some(account.id.as_str()) {
            return Err(Problem::unauthorized(
                "this certificate belongs to another account",
            ));
        }
        let Some(chain) = cert
            .chain_pem
            .clone()
            .filter(|_| cert.status == CertificateStatus::Issued)
        else {
            return Err(Problem::not_found("no such certificate"));
        };
        let ca = &self.directory.ca;
        let alternates: &[Vec<Vec<u8>>] = if cert.issuer == ca.name {
            ca.alternate_chains()
        } else {
            &[]
        };
        let body = match alternate {
            0 => chain,
            n => {
                let alt = alternates
                    .get(n - 1)
                    .ok_or_else(|| Problem::not_found("no such certificate chain"))?;
                let leaf = cert.der.as_deref().unwrap_or_default();
                std::iter::once(leaf)
                    .chain(alt.iter().map(Vec::as_slice))
                    .map(|der| crate::pki::pem::to_pem("CERTIFICATE", der))
                    .collect()
            }
        };
        let base = links.certificate(serial);
        let mut headers = Vec::new();
        for n in (0..=alternates.len()).filter(|n| *n != alternate) {
            let url = if n == 0 {
                base.clone()
            } else {
                format!("{base}/{n}")
            };
            headers.push((http::header::LINK, format!("<{url}>;rel=\"alternate\"")));
        }
        Ok(Reply {
            status: StatusCode::OK,
            headers,
            content_type: "application/pem-certificate-chain",
            body: Bytes::from(body),
        })
    }

    /// RFC 8555 §7.6: by the account that holds the certificate, or signed by the certificate's key.
    pub(super) async fn revoke_certificate(&self, auth: Authenticated) -> AcmeResult {
        let req: wire::RevocationRequest = auth.jws.json_payload()?;
        let der = URL_SAFE_NO_PAD
            .decode(req.certificate.trim_end_matches('='))
            .map_err(|_| Problem::malformed("certificate is not base64url DER"))?;
        let signer;
        let by = match (&auth.account, &auth.jws.key) {
            (Some(account), _) => Revoker::Account(&account.id),
            (None, KeyRef::Jwk(jwk)) => {
                signer = jws::thumbprint(jwk)?;
                Revoker::KeyHolder(&signer)
            }
            (None, KeyRef::Kid(_)) => return Err(Problem::unauthorized("unknown account")),
        };
        self.ra
            .revoke_certificate(&self.directory, &der, req.reason.unwrap_or(0), by)
            .await?;
        Ok(Reply::empty(StatusCode::OK))
    }
}
