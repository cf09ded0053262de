//! The repository (RFC 5280's term for where relying parties fetch what a CA publishes): CRLs
//! (RFC 5280 §5; DER and PEM, complete, sharded and delta) at `/crl/…`, OCSP (RFC 6960; POST,
//! and GET with base64 in the path) at `/ocsp`, and issuing CA certificates (AIA caIssuers,
//! RFC 5280 §4.2.2.1) at `/ca/…`. Served on the HTTPS listener and on the plain-HTTP one.
//! OCSP requests are limited per client address (`limit`).

mod limit;

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::StatusCode;

use super::{Reply, RequestBody};
use crate::revocation::{CrlScope, Revocation, RevocationError};

pub struct Repository {
    revocation: Arc<Revocation>,
    ocsp_limit: limit::RateLimit,
}

impl Repository {
    /// The repository over `revocation`, at most `ocsp_per_minute` OCSP requests per client
    /// address and minute (0: no limit).
    pub fn new(revocation: Arc<Revocation>, ocsp_per_minute: u32) -> Repository {
        Repository {
            revocation,
            ocsp_limit: limit::RateLimit::per_minute(ocsp_per_minute),
        }
    }

    /// Whether `path` is one of the repository's.
    pub fn serves(path: &str) -> bool {
        path.starts_with("/crl/")
            || path == "/ocsp"
            || path.starts_with("/ocsp/")
            || path.starts_with("/ca/")
    }

    /// Serve one request from `peer`.
    pub async fn handle(
        &self,
        method: &http::Method,
        path: &str,
        body: &mut RequestBody,
        peer: IpAddr,
    ) -> Reply {
        if let Some(file) = path.strip_prefix("/ca/") {
            return self.issuer_certificate(method, file).await;
        }
        if path.starts_with("/ocsp") {
            if let Err(wait) = self.ocsp_limit.check(peer) {
                tracing::info!(%peer, "OCSP requests past the limit");
                let retry_after = wait.as_secs().max(1).to_string();
                let mut reply = Reply::bytes(
                    "application/ocsp-response",
                    pkid_backends::ocsp::error_response(pkid_backends::ocsp::OcspError::TryLater),
                );
                reply.status = StatusCode::TOO_MANY_REQUESTS;
                return reply
                    .header(http::header::RETRY_AFTER, retry_after)
                    .header(http::header::CACHE_CONTROL, "no-store");
            }
        }
        self.revocation_document(method, body, path).await
    }
}

impl Repository {
    /// The issuing CA certificate a leaf's AIA caIssuers names (RFC 5280 §4.2.2.1): DER as
    /// `application/pkix-cert` at `/ca/NAME.der`, PEM at `/ca/NAME.pem`.
    async fn issuer_certificate(&self, method: &http::Method, file: &str) -> Reply {
        if method != http::Method::GET && method != http::Method::HEAD {
            return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        let Some((name, pem)) = der_or_pem(file, ".der") else {
            return Reply::text(StatusCode::NOT_FOUND, "not found\n");
        };
        match self.revocation.issuer_certificate(name).await {
            Some(der) if pem => Reply::bytes(
                "application/x-pem-file",
                crate::pki::pem::to_pem("CERTIFICATE", &der),
            ),
            Some(der) => Reply::bytes("application/pkix-cert", der),
            None => Reply::text(StatusCode::NOT_FOUND, "no such issuer\n"),
        }
    }

    /// RFC 5280 CRLs (DER and PEM) and RFC 6960 OCSP (POST, and GET with base64 in the path).
    async fn revocation_document(
        &self,
        method: &http::Method,
        body: &mut RequestBody,
        path: &str,
    ) -> Reply {
        if let Some(file) = path.strip_prefix("/crl/") {
            if method != http::Method::GET && method != http::Method::HEAD {
                return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            }
            let Some((name, pem)) = der_or_pem(file, ".crl") else {
                return Reply::text(StatusCode::NOT_FOUND, "not found\n");
            };
            // `NAME` (the complete CRL), `NAME/SHARD` or `NAME/delta`.
            let (name, scope) = match name.split_once('/') {
                None => (name, CrlScope::Full),
                Some((issuer, "delta")) => (issuer, CrlScope::Delta),
                Some((issuer, shard)) => match shard.parse::<i64>() {
                    Ok(k) if shard.bytes().all(|b| b.is_ascii_digit()) => {
                        (issuer, CrlScope::Shard(k))
                    }
                    _ => return Reply::text(StatusCode::NOT_FOUND, "no such CRL shard\n"),
                },
            };
            return match self.revocation.current_crl_scope(name, scope).await {
                Ok(crl) if pem => Reply::bytes(
                    "application/x-pem-file",
                    crate::pki::pem::to_pem("X509 CRL", &crl.der),
                ),
                // The stored CRL's bytes, shared with other requests rather than copied.
                Ok(crl) => Reply::bytes("application/pkix-crl", Bytes::from_owner(SharedCrl(crl))),
                Err(RevocationError::UnknownIssuer(_)) => {
                    Reply::text(StatusCode::NOT_FOUND, "no such issuer\n")
                }
                Err(RevocationError::UnknownShard(..)) => {
                    Reply::text(StatusCode::NOT_FOUND, "no such CRL shard\n")
                }
                Err(RevocationError::NoDeltaCrls(_)) => Reply::text(
                    StatusCode::NOT_FOUND,
                    "this issuer publishes no delta CRLs\n",
                ),
                Err(e) => {
                    tracing::error!(code = "PKID-CRL", error = %e, "CRL unavailable");
                    Reply::text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "CRL temporarily unavailable\n",
                    )
                }
            };
        }
        let request_der = match (method, path.strip_prefix("/ocsp/")) {
            (&http::Method::GET, Some(encoded)) => {
                let decoded = percent_decode(encoded);
                match base64::engine::general_purpose::STANDARD
                    .decode(decoded.trim_end_matches('\n'))
                {
                    Ok(der) => der,
                    Err(_) => {
                        return Reply::bytes(
                            "application/ocsp-response",
                            pkid_backends::ocsp::error_response(
                                pkid_backends::ocsp::OcspError::MalformedRequest,
                            ),
                        )
                    }
                }
            }
            (&http::Method::POST, None) => match body.read(16 * 1024).await {
                Ok(b) => b.to_vec(),
                Err(_) => {
                    return Reply::bytes(
                        "application/ocsp-response",
                        pkid_backends::ocsp::error_response(
                            pkid_backends::ocsp::OcspError::MalformedRequest,
                        ),
                    )
                }
            },
            _ => {
                return Reply::text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use POST /ocsp or GET /ocsp/{base64}\n",
                )
            }
        };
        Reply::bytes(
            "application/ocsp-response",
            self.revocation.answer_ocsp(&request_der).await,
        )
    }
}

/// `NAME<der_suffix>` → (NAME, false), `NAME.pem` → (NAME, true): a published document's name
/// and whether it is asked for in PEM.
fn der_or_pem<'a>(file: &'a str, der_suffix: &str) -> Option<(&'a str, bool)> {
    match (file.strip_suffix(der_suffix), file.strip_suffix(".pem")) {
        (Some(name), _) => Some((name, false)),
        (_, Some(name)) => Some((name, true)),
        _ => None,
    }
}

/// A served CRL's DER as a response body.
struct SharedCrl(Arc<crate::store::CrlRow>);

impl AsRef<[u8]> for SharedCrl {
    fn as_ref(&self) -> &[u8] {
        &self.0.der
    }
}

/// `%XX` escapes decoded byte by byte (a path may hold any UTF-8 after a `%`).
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes
                .get(i + 1)
                .copied()
                .and_then(hex)
                .zip(bytes.get(i + 2).copied().and_then(hex));
            if let Some((high, low)) = pair {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding_survives_multibyte_text_after_a_percent() {
        assert_eq!(percent_decode("MFQw%2BTjA%3D"), "MFQw+TjA=");
        assert_eq!(percent_decode("%4"), "%4");
        // A '%' followed by one hex digit and a two-byte character once sliced a char in half.
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("%é%"), "%é%");
    }
}
