//! Client certificates: which chain a request presents, and whether it proves a certificate
//! pkid trusts — up to "this request presents a verified chain whose end-entity certificate is
//! SUBJECT issued by ISSUER". Whose certificate that is (a user's linked certificate) is the
//! caller's to look up.
//!
//! A chain comes from the TLS handshake (the transport offers client authentication and checks
//! only that the client holds the leaf's key, deferring everything else to here), or from the
//! `X-APP-CERTIFICATE` header (CZERTAINLY: the URL-encoded PEM of the client's certificate,
//! optionally followed by its chain) set by a TLS-terminating proxy — believed only when the
//! peer's address is one of `server.trusted_proxies`, and otherwise ignored as if absent.
//!
//! What is checked:
//! - An ordinary chain: the end-entity certificate is within its validity, chains to one of the
//!   trust anchors through the certificates presented after it, and may be used for client
//!   authentication (an extendedKeyUsage, if present, names clientAuth), as RFC 5280 §6 path
//!   validation in `rustls-webpki` does it.
//! - An RFC 3820 proxy chain (its first certificate carries proxyCertInfo): the proxies by
//!   [`crate::pki::proxy::check_chain`] (signatures, names, validity, path length, §4.1), then
//!   the end-entity certificate under them as an ordinary chain.
//!
//! Revocation is not checked.

use std::net::IpAddr;

use http::HeaderMap;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::pki::dn::rfc2253;
use crate::pki::ip::{in_range, is_range};
use crate::pki::proxy::{check_chain, proxy_cert_info, ProxyError, MAX_CHAIN};

/// The header a TLS-terminating proxy puts the client's certificate in (CZERTAINLY).
pub const APP_CERTIFICATE_HEADER: &str = "x-app-certificate";

/// A chain that verified: whose end-entity certificate it proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    /// The end-entity certificate's subject, RFC 2253.
    pub subject_dn: String,
    /// The end-entity certificate's issuer, RFC 2253.
    pub issuer_dn: String,
    /// The end-entity certificate, DER (under the proxies of a proxy chain).
    pub der: Vec<u8>,
    /// The chain led with RFC 3820 proxy certificates issued under the end-entity certificate.
    pub via_proxy: bool,
    /// Where the chain came from.
    pub source: Source,
}

/// How a chain reached pkid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The TLS handshake of the request's connection.
    Tls,
    /// `X-APP-CERTIFICATE`, set by a trusted TLS-terminating proxy.
    TrustedProxy,
}

/// Why a presented chain proves nothing; the message names no secret and is fit for a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the chain holds no certificate")]
    Empty,
    #[error("the chain holds more than {MAX_CHAIN} certificates")]
    TooLong,
    #[error("certificate {index} of the chain is not X.509: {detail}")]
    NotX509 { index: usize, detail: String },
    #[error("the certificate is not trusted for client authentication: {0}")]
    Untrusted(String),
    #[error("the proxy chain is refused: {0}")]
    Proxy(#[from] ProxyError),
    #[error("X-APP-CERTIFICATE is not URL-encoded PEM certificates: {0}")]
    BadHeader(String),
}

/// Why the trust anchors or the trusted proxies cannot be loaded at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    #[error("{origin}: not PEM: {detail}")]
    NotPem { origin: String, detail: String },
    #[error("{origin}: holds no certificate")]
    NoCertificate { origin: String },
    #[error("{origin}: certificate {index} cannot be a trust anchor: {detail}")]
    Unusable {
        origin: String,
        index: usize,
        detail: String,
    },
    #[error("{0:?} is not an address or a CIDR range")]
    BadRange(String),
}

/// The trust anchors and trusted proxies, loaded once at start.
#[derive(Debug)]
pub struct ClientCertificates {
    anchors: Vec<TrustAnchor<'static>>,
    /// Each anchor's subject, DER (a Name SEQUENCE), for the TLS CertificateRequest.
    subjects: Vec<Vec<u8>>,
    trusted_proxies: Vec<String>,
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
}

/// The certificates of a PEM text (other blocks are skipped), DER; `origin` names it in errors.
pub fn certificates_from_pem(origin: &str, text: &[u8]) -> Result<Vec<Vec<u8>>, AnchorError> {
    let blocks = pem::parse_many(text).map_err(|e| AnchorError::NotPem {
        origin: origin.to_owned(),
        detail: e.to_string(),
    })?;
    let certificates: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certificates.is_empty() {
        return Err(AnchorError::NoCertificate {
            origin: origin.to_owned(),
        });
    }
    Ok(certificates)
}

impl ClientCertificates {
    /// Anchors from `(origin, DER certificates)` pairs (a file's name, or a backend's), and
    /// the trusted proxies' ranges.
    pub fn new(
        anchors: &[(String, Vec<Vec<u8>>)],
        trusted_proxies: &[String],
    ) -> Result<ClientCertificates, AnchorError> {
        let mut trusted = Vec::new();
        let mut subjects = Vec::new();
        for (origin, certificates) in anchors {
            if certificates.is_empty() {
                return Err(AnchorError::NoCertificate {
                    origin: origin.clone(),
                });
            }
            for (index, der) in certificates.iter().enumerate() {
                let unusable = |detail: String| AnchorError::Unusable {
                    origin: origin.clone(),
                    index,
                    detail,
                };
                let cert = CertificateDer::from(der.as_slice());
                let anchor = webpki::anchor_from_trusted_cert(&cert)
                    .map_err(|e| unusable(format!("{e:?}")))?
                    .to_owned();
                let (_, parsed) =
                    X509Certificate::from_der(der).map_err(|e| unusable(e.to_string()))?;
                let subject = parsed.subject().as_raw().to_vec();
                if !subjects.contains(&subject) {
                    subjects.push(subject);
                }
                trusted.push(anchor);
            }
        }
        if let Some(bad) = trusted_proxies.iter().find(|r| !is_range(r)) {
            return Err(AnchorError::BadRange(bad.clone()));
        }
        Ok(ClientCertificates {
            anchors: trusted,
            subjects,
            trusted_proxies: trusted_proxies.to_vec(),
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .all,
        })
    }

    /// No anchor: no certificate can verify, so the transport need not ask for one.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The anchors' subjects (DER Names), the hints a TLS server sends with its request for a
    /// client certificate.
    pub fn anchor_subjects(&self) -> &[Vec<u8>] {
        &self.subjects
    }

    /// Whether `peer` is a trusted TLS-terminating proxy.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|r| in_range(&peer, r))
    }

    /// The certificate a request presents, verified: `X-APP-CERTIFICATE` when the peer is a
    /// trusted proxy and sets it, else the TLS client chain of the connection. `None`: none
    /// presented (the header from any other peer counts as absent).
    pub fn presented(
        &self,
        peer: IpAddr,
        tls_chain: Option<&[CertificateDer<'_>]>,
        headers: &HeaderMap,
    ) -> Option<Result<VerifiedCertificate, CertificateError>> {
        let at = now();
        let mut values = headers.get_all(APP_CERTIFICATE_HEADER).iter();
        if let Some(first) = values.next().filter(|_| self.is_trusted_proxy(peer)) {
            let chain = if values.next().is_some() {
                Err(CertificateError::BadHeader(
                    "more than one header field".into(),
                ))
            } else {
                header_chain(first.as_bytes())
            };
            return Some(chain.and_then(|chain| {
                let chain: Vec<CertificateDer<'_>> =
                    chain.into_iter().map(CertificateDer::from).collect();
                self.verify(&chain, at, Source::TrustedProxy)
            }));
        }
        let chain = tls_chain.filter(|c| !c.is_empty())?;
        Some(self.verify(chain, at, Source::Tls))
    }

    /// Verify `chain` (the end-entity certificate, or the first proxy, leading) at `at`
    /// (seconds since the epoch).
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        at: i64,
        source: Source,
    ) -> Result<VerifiedCertificate, CertificateError> {
        let first = chain.first().ok_or(CertificateError::Empty)?;
        if chain.len() > MAX_CHAIN {
            return Err(CertificateError::TooLong);
        }
        let leaf = parse(first, 0)?;
        let proxied = proxy_cert_info(&leaf)
            .map_err(|rule| ProxyError::Rule { index: 0, rule })?
            .is_some();
        let end_entity = if proxied {
            let ders: Vec<Vec<u8>> = chain.iter().map(|c| c.as_ref().to_vec()).collect();
            check_chain(&ders, at)?.proxies
        } else {
            0
        };
        let (end_entity_der, intermediates) = match chain.get(end_entity..) {
            Some([der, rest @ ..]) => (der, rest),
            _ => return Err(ProxyError::NoEndEntity.into()),
        };
        let seconds = u64::try_from(at).unwrap_or(0);
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
        let cert = webpki::EndEntityCert::try_from(end_entity_der)
            .map_err(|e| CertificateError::Untrusted(format!("{e:?}")))?;
        cert.verify_for_usage(
            self.algorithms,
            &self.anchors,
            intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| CertificateError::Untrusted(format!("{e:?}")))?;
        let parsed = parse(end_entity_der, end_entity)?;
        Ok(VerifiedCertificate {
            subject_dn: rfc2253(parsed.subject()),
            issuer_dn: rfc2253(parsed.issuer()),
            der: end_entity_der.as_ref().to_vec(),
            via_proxy: proxied,
            source,
        })
    }
}

fn parse<'a>(
    der: &'a CertificateDer<'_>,
    index: usize,
) -> Result<X509Certificate<'a>, CertificateError> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CertificateError::NotX509 {
            index,
            detail: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(CertificateError::NotX509 {
            index,
            detail: e.to_string(),
        }),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The certificates of an `X-APP-CERTIFICATE` value: percent-decoded (RFC 3986 §2.1; a `+`
/// stays a `+`, as base64 needs it), then PEM.
fn header_chain(value: &[u8]) -> Result<Vec<Vec<u8>>, CertificateError> {
    let bad = |detail: &str| CertificateError::BadHeader(detail.to_owned());
    let mut decoded = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b != b'%' {
            decoded.push(b);
            continue;
        }
        let hex = [
            bytes.next().copied().unwrap_or(0),
            bytes.next().copied().unwrap_or(0),
        ];
        let byte = std::str::from_utf8(&hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad("a % not followed by two hex digits"))?;
        decoded.push(byte);
    }
    let blocks = pem::parse_many(&decoded).map_err(|e| bad(&e.to_string()))?;
    let mut chain = Vec::new();
    for block in blocks {
        if block.tag() != "CERTIFICATE" {
            return Err(bad("a PEM block that is not a certificate"));
        }
        chain.push(block.into_contents());
    }
    if chain.is_empty() {
        return Err(bad("no certificate"));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests;
