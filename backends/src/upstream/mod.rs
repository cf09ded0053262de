//! Remote CAs as signing backends: an upstream ACME CA ([`acme`]; its HTTP transport and http-01
//! responder in `acme_http`) and a CFSSL remote signer ([`cfssl`]). This file is what they
//! share: one HTTPS client (rustls over aws-lc-rs, native roots plus configured extra roots),
//! bounded retries, and the check that a certificate coming back from a remote CA is the one that
//! was asked for.
//!
//! An upstream CA is trusted to sign, never to decide what it signs: before a certificate leaves
//! an upstream backend its public key must equal the request's key (RFC 5280 §4.1.2.7), its
//! subjectAltName entries must equal the request's identifiers (RFC 5280 §4.2.1.6), and each
//! certificate of the chain must be signed by the next.

pub mod acme;
mod acme_http;
pub mod cfssl;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tokio::time::Instant;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::X509Certificate;

use crate::{BackendError, IssueRequest};

/// Retries after the first attempt, for failures where the request cannot have been acted on.
pub(crate) const MAX_RETRIES: u32 = 2;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How much of an error body goes into a message.
const BODY_EXCERPT: usize = 300;

/// An HTTPS-capable client with an explicit aws-lc-rs provider (reqwest is built without one, and
/// a library does not install process-wide defaults). Trusts the platform's roots plus every
/// certificate in `extra_roots_pem`.
pub(crate) fn http_client(
    extra_roots_pem: Option<&Path>,
    request_timeout: Duration,
) -> Result<reqwest::Client, BackendError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable platform certificates are skipped: an upstream on a private PKI only needs the
    // configured roots.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_roots_pem {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BackendError::Io(format!("reading {}: {e}", path.display())))?;
        let certs = pem_certificates(&text)
            .map_err(|e| BackendError::Io(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(BackendError::Io(format!(
                "{} holds no CERTIFICATE block",
                path.display()
            )));
        }
        for der in certs {
            roots
                .add(rustls_pki_types::CertificateDer::from(der))
                .map_err(|e| BackendError::Io(format!("{}: unusable root: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BackendError::Build(format!("TLS client configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| BackendError::Build(format!("HTTP client: {}", error_chain(&e))))
}

/// Sends `request`, retrying up to [`MAX_RETRIES`] times with exponential backoff when the
/// connection could not be made or the answer's status satisfies `retry_status`; never sleeps past
/// `deadline`. The last answer is returned whatever its status; `Err` carries a readable message.
pub(crate) async fn send_with_retries(
    client: &reqwest::Client,
    request: reqwest::Request,
    retry_status: fn(reqwest::StatusCode) -> bool,
    deadline: Option<Instant>,
) -> Result<reqwest::Response, String> {
    let target = format!("{} {}", request.method(), request.url());
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        let this_try = request
            .try_clone()
            .ok_or_else(|| format!("{target}: the request body cannot be replayed"))?;
        let result = client.execute(this_try).await;
        let retryable = match &result {
            Ok(response) => retry_status(response.status()),
            Err(e) => e.is_connect(),
        };
        let time_left = deadline.is_none_or(|d| Instant::now() + backoff < d);
        if !retryable || attempt >= MAX_RETRIES || !time_left {
            let attempts = attempt + 1;
            return result.map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "failed"
                };
                format!(
                    "{target} {what} after {attempts} attempt(s): {}",
                    error_chain(&e)
                )
            });
        }
        tracing::debug!(target = %target, attempt, "upstream request failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff *= 3;
        attempt += 1;
    }
}

/// The start of a response body, for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    match trimmed.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

/// An error and all its sources, `: `-separated (reqwest hides "connection refused" in a source).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// Every CERTIFICATE block of a PEM text, DER, in order (other blocks are skipped): the one
/// parser of certificate chains, for upstream answers, stored chains and `ca.alternate_chains`.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("not PEM: {e}"))?;
    Ok(blocks
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect())
}

/// `true` when a certificate names itself as its issuer (a root, as chains end).
pub(crate) fn is_self_issued(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert.subject().as_raw() == cert.issuer().as_raw())
        .unwrap_or(false)
}

/// What a certificate for one request must hold: its key and exactly its identifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expected {
    key_algorithm: String,
    key_bits: Vec<u8>,
    dns_names: BTreeSet<String>,
    ip_addresses: BTreeSet<IpAddr>,
}

impl Expected {
    pub(crate) fn from_request(req: &IssueRequest) -> Result<Expected, BackendError> {
        let (_, spki) =
            <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<
                '_,
                x509_parser::error::X509Error,
            >>::from_der(&req.subject_public_key_der)
            .map_err(|e| {
                BackendError::Build(format!("the request's public key is not SPKI: {e}"))
            })?;
        Ok(Expected {
            key_algorithm: spki.algorithm.algorithm.to_id_string(),
            key_bits: spki.subject_public_key.data.to_vec(),
            dns_names: req.dns_names.iter().map(|n| normalize_dns(n)).collect(),
            ip_addresses: req.ip_addresses.iter().copied().collect(),
        })
    }

    fn from_leaf(leaf: &X509Certificate<'_>) -> Expected {
        let spki = leaf.public_key();
        let mut dns_names = BTreeSet::new();
        let mut ip_addresses = BTreeSet::new();
        for ext in leaf.extensions() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(dns) => {
                            dns_names.insert(normalize_dns(dns));
                        }
                        GeneralName::IPAddress(bytes) => {
                            if let Some(ip) = ip_from_bytes(bytes) {
                                ip_addresses.insert(ip);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Expected {
            key_algorithm: spki.algorithm.algorithm.to_id_string(),
            key_bits: spki.subject_public_key.data.to_vec(),
            dns_names,
            ip_addresses,
        }
    }

    /// The identifiers as `Display`-able strings (DNS names, then IP addresses).
    pub(crate) fn identifiers(&self) -> impl Iterator<Item = String> + '_ {
        self.dns_names
            .iter()
            .cloned()
            .chain(self.ip_addresses.iter().map(IpAddr::to_string))
    }

    pub(crate) fn dns_names(&self) -> impl Iterator<Item = &str> {
        self.dns_names.iter().map(String::as_str)
    }

    pub(crate) fn ip_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ip_addresses.iter().copied()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.dns_names.is_empty() && self.ip_addresses.is_empty()
    }

    /// SHA-256 over a canonical form of the key and identifiers, base64url: lets a later poll
    /// check a certificate against a request it no longer holds.
    pub(crate) fn fingerprint(&self) -> String {
        let mut canonical = String::from("pkid-upstream-expectation-v1\n");
        canonical.push_str(&self.key_algorithm);
        canonical.push('\n');
        canonical.push_str(&hex::encode(&self.key_bits));
        canonical.push('\n');
        canonical.push_str(&self.identifiers().collect::<Vec<_>>().join(","));
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// Checks `chain` (leaf first): the leaf holds this key and exactly these identifiers, and
    /// every certificate is signed by the one after it. `upstream` names the CA for messages.
    pub(crate) fn check_chain(
        &self,
        chain: &[Vec<u8>],
        upstream: &str,
    ) -> Result<(), BackendError> {
        let found = check_signatures(chain, upstream)?;
        if found.key_algorithm != self.key_algorithm || found.key_bits != self.key_bits {
            return Err(BackendError::Mismatch(format!(
                "{upstream} returned a certificate for a different public key than the request's"
            )));
        }
        if found.dns_names != self.dns_names || found.ip_addresses != self.ip_addresses {
            return Err(BackendError::Mismatch(format!(
                "{upstream} returned a certificate for [{}], the request was for [{}]",
                found.identifiers().collect::<Vec<_>>().join(", "),
                self.identifiers().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }
}

/// Checks each certificate of `chain` is signed by the next and returns what the leaf holds, for
/// checks against a [`Expected::fingerprint`].
pub(crate) fn check_chain_fingerprint(
    chain: &[Vec<u8>],
    fingerprint: &str,
    upstream: &str,
) -> Result<(), BackendError> {
    let found = check_signatures(chain, upstream)?;
    if found.fingerprint() != fingerprint {
        return Err(BackendError::Mismatch(format!(
            "{upstream} returned a certificate for [{}] whose key or names differ from the request's",
            found.identifiers().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(())
}

fn check_signatures(chain: &[Vec<u8>], upstream: &str) -> Result<Expected, BackendError> {
    let parsed = chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, cert)| cert)
                .map_err(|e| {
                    BackendError::Upstream(format!(
                        "{upstream} returned an unreadable certificate (#{i} of the chain): {e}"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Some(leaf) = parsed.first() else {
        return Err(BackendError::Upstream(format!(
            "{upstream} returned no certificate"
        )));
    };
    let describe = |cert: &X509Certificate<'_>| {
        let subject = cert.subject().to_string();
        if subject.is_empty() {
            "empty subject".to_owned()
        } else {
            subject
        }
    };
    for (i, pair) in parsed.windows(2).enumerate() {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|_| {
                BackendError::Mismatch(format!(
                    "{upstream} returned a chain whose certificate #{i} ({}) is not signed by #{} ({})",
                    describe(&pair[0]),
                    i + 1,
                    describe(&pair[1])
                ))
            })?;
    }
    Ok(Expected::from_leaf(leaf))
}

fn normalize_dns(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
