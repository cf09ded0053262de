//! Validation authority: proves control of identifiers (RFC 8555 §8).
//!
//! - http-01 (§8.3) fetches `http://NAME:PORT/.well-known/acme-challenge/TOKEN`, where PORT is
//!   `acme.http01_port` (80 in production), following at most 10 redirects, reading ≤ 8 KiB.
//! - dns-01 (§8.4) looks up TXT `_acme-challenge.NAME` for base64url(SHA-256(key authorization)).
//! - tls-alpn-01 (RFC 8737) connects with ALPN `acme-tls/1` (TLS 1.2+) to `acme.tls_alpn01_port`,
//!   SNI the name (or the reverse-DNS name of an IP, RFC 8738 §6), and checks the self-signed
//!   certificate: exactly one SAN, the identifier, and a critical acmeIdentifier extension.
//!
//! Names resolve through `acme.dns_resolver` when set (a test DNS server), else the system.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::rdata::CAA;
use hickory_resolver::TokioResolver;

use crate::pki::csr::Ident;

mod error;
pub use error::{ValidationError, ValidationErrorKind};

const MAX_BODY: usize = 8 * 1024;
const MAX_REDIRECTS: usize = 10;
/// Each DNS query of the validator (CAA, dns-01 TXT, addresses) is tried this many times, each
/// waiting this long.
const RESOLVER_ATTEMPTS: usize = 2;
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Validator {
    http: reqwest::Client,
    resolver: Arc<TokioResolver>,
    tls: Arc<rustls::ClientConfig>,
    http01_port: u16,
    tls_alpn01_port: u16,
    timeout: Duration,
}

/// Where and how long the validator looks.
pub struct ValidatorSettings<'a> {
    pub http01_port: u16,
    pub tls_alpn01_port: u16,
    pub dns_resolver: &'a str,
    pub timeout: Duration,
}

/// What a CAA check is about (RFC 8659, RFC 8657).
pub struct CaaQuery<'a> {
    /// The base name (no `*.`).
    pub domain: &'a str,
    pub wildcard: bool,
    pub account_uri: &'a str,
    /// The challenge type that validated (`http-01`, …).
    pub method: &'a str,
}

/// RFC 8737 §3: id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31.
const OID_ACME_IDENTIFIER: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 31];

/// reqwest name resolution through hickory, pointed at the configured server.
struct HickoryResolve(Arc<TokioResolver>);

impl reqwest::dns::Resolve for HickoryResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            let lookup = resolver.lookup_ip(name.as_str()).await?;
            let addrs: Box<dyn Iterator<Item = SocketAddr> + Send> = Box::new(
                lookup
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

pub fn build_resolver(dns_resolver: &str) -> Result<TokioResolver, String> {
    if dns_resolver.is_empty() {
        return TokioResolver::builder_tokio()
            .map(|b| b.build())
            .map_err(|e| format!("system resolver: {e}"));
    }
    let addr: SocketAddr = dns_resolver
        .parse()
        .map_err(|_| format!("acme.dns_resolver {dns_resolver:?} is not an ip:port address"))?;
    let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
    let config = ResolverConfig::from_parts(None, vec![], group);
    let mut builder =
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    builder.options_mut().cache_size = 0;
    builder.options_mut().attempts = RESOLVER_ATTEMPTS;
    builder.options_mut().timeout = RESOLVER_TIMEOUT;
    Ok(builder.build())
}

impl Validator {
    pub fn new(settings: ValidatorSettings<'_>) -> Result<Validator, String> {
        let ValidatorSettings {
            http01_port,
            tls_alpn01_port,
            dns_resolver,
            timeout,
        } = settings;
        // reqwest's rustls needs a process-wide provider; a no-op if one is installed already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let resolver = Arc::new(build_resolver(dns_resolver)?);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("pkid-validator/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(HickoryResolve(resolver.clone())))
            .no_proxy()
            // Every validation makes a fresh connection, as Boulder's VA does: a connection
            // kept for one name proves nothing about the next, and kept ones (one per validated
            // name, each for the pool's idle time) held thousands of sockets under load.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("http-01 client: {e}"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("tls-alpn-01 client: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChallengeCertVerifier(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"acme-tls/1".to_vec()];
        Ok(Validator {
            http,
            resolver,
            tls: Arc::new(tls),
            http01_port,
            tls_alpn01_port,
            timeout,
        })
    }

    /// The longest one validation takes with its CAA check: the challenge's own bound or two
    /// rounds of DNS queries (a CAA walk's names, then an alias's), whichever is longer, and a
    /// second of slack. A validation still running past it is ended as timed out.
    pub fn deadline(&self) -> Duration {
        let dns = RESOLVER_TIMEOUT * 2 * u32::try_from(RESOLVER_ATTEMPTS).unwrap_or(2);
        (self.timeout + Duration::from_secs(1)).max(dns) + Duration::from_secs(1)
    }

    /// Validate one challenge; `Ok(())` means the identifier is proven.
    pub async fn validate(
        &self,
        kind: &str,
        ident: &Ident,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), ValidationError> {
        let bound = self.timeout + Duration::from_secs(1);
        let outcome = match kind {
            "http-01" => {
                tokio::time::timeout(bound, self.http01(ident, token, key_authorization)).await
            }
            "dns-01" => tokio::time::timeout(bound, self.dns01(ident, key_authorization)).await,
            "tls-alpn-01" => {
                tokio::time::timeout(bound, self.tls_alpn01(ident, key_authorization)).await
            }
            other => {
                return Err(ValidationError::malformed(format!(
                    "challenge type {other} is not supported"
                )))
            }
        };
        outcome.unwrap_or_else(|_| {
            Err(ValidationError::connection(format!(
                "{kind} validation of {} timed out",
                ident.value()
            )))
        })
    }

    /// RFC 8659 §3: the relevant CAA RRset is the first one found walking from the name to the
    /// top; issuance is allowed when there is none, or when an `issue`/`issuewild` record names
    /// one of `identities` with matching RFC 8657 `accounturi`/`validationmethods`. A lookup
    /// failure (SERVFAIL, timeout) never counts as permission.
    ///
    /// The names of the walk are looked up at once (one round trip, not one per label) and
    /// decided in the walk's order, so the outcome is the sequential walk's: a name's answer
    /// counts only when every name below it answered with no CAA records.
    pub async fn check_caa(
        &self,
        query: &CaaQuery<'_>,
        identities: &[String],
    ) -> Result<(), ValidationError> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let labels: Vec<&str> = query.domain.trim_end_matches('.').split('.').collect();
        let names: Vec<String> = (0..labels.len())
            .map(|start| format!("{}.", labels[start..].join(".")))
            .collect();
        let mut lookups = tokio::task::JoinSet::new();
        for (position, name) in names.iter().enumerate() {
            let resolver = self.resolver.clone();
            let name = name.clone();
            lookups.spawn(async move {
                let records = match resolver.lookup(name.as_str(), RecordType::CAA).await {
                    Ok(lookup) => Ok(lookup
                        .record_iter()
                        .filter_map(|r| match r.data() {
                            RData::CAA(caa) => Some(caa.clone()),
                            _ => None,
                        })
                        .collect::<Vec<_>>()),
                    Err(e) if is_empty_answer(&e) => Ok(Vec::new()),
                    Err(e) => Err(e.to_string()),
                };
                (position, records)
            });
        }
        let mut answers: Vec<Option<Result<Vec<CAA>, String>>> = vec![None; names.len()];
        let mut next = 0;
        while let Some(joined) = lookups.join_next().await {
            let (position, records) = joined.map_err(|e| {
                ValidationError::caa(format!("CAA lookup failed ({e}); issuance is not allowed"))
            })?;
            answers[position] = Some(records);
            // Decide as far as the walk's order allows; the lookups still running are
            // dropped (aborted) with the set once decided.
            while let Some(Some(answer)) = answers.get(next) {
                let name = &names[next];
                match answer {
                    Err(e) => {
                        return Err(ValidationError::caa(format!(
                            "CAA lookup of {name} failed ({e}); issuance is not allowed without an answer"
                        )))
                    }
                    Ok(records) if !records.is_empty() => {
                        return caa_permits(name, records, query, identities)
                    }
                    Ok(_) => next += 1,
                }
            }
        }
        Ok(())
    }

    /// RFC 8555 §8.4.
    async fn dns01(&self, ident: &Ident, key_authorization: &str) -> Result<(), ValidationError> {
        let Ident::Dns(domain) = ident else {
            return Err(ValidationError::malformed(
                "dns-01 validates DNS names only",
            ));
        };
        let expected = digest_b64(key_authorization);
        let name = format!("_acme-challenge.{domain}.");
        let lookup = self
            .resolver
            .txt_lookup(name.as_str())
            .await
            .map_err(|e| ValidationError::dns(format!("TXT lookup of {name} failed: {e}")))?;
        let found: Vec<String> = lookup
            .iter()
            .map(|txt| {
                txt.txt_data()
                    .iter()
                    .map(|part| String::from_utf8_lossy(part))
                    .collect::<String>()
            })
            .collect();
        if found.iter().any(|v| v == &expected) {
            Ok(())
        } else {
            Err(ValidationError::incorrect_response(format!(
                "no TXT record at {name} holds the expected digest; found {} record(s)",
                found.len()
            )))
        }
    }

    /// RFC 8737 (and RFC 8738 §6 for IP identifiers).
    async fn tls_alpn01(
        &self,
        ident: &Ident,
        key_authorization: &str,
    ) -> Result<(), ValidationError> {
        let (sni, addrs) = match ident {
            Ident::Dns(d) => {
                let ips = self
                    .resolver
                    .lookup_ip(d.as_str())
                    .await
                    .map_err(|e| ValidationError::dns(format!("looking up {d}: {e}")))?;
                (d.clone(), ips.iter().collect::<Vec<_>>())
            }
            Ident::Ip(ip) => (reverse_dns_name(ip), vec![*ip]),
        };
        let server_name = rustls_pki_types::ServerName::try_from(sni.clone())
            .map_err(|_| ValidationError::malformed(format!("{sni} cannot be sent as SNI")))?;
        let mut last_error = None;
        for ip in addrs {
            let addr = SocketAddr::new(ip, self.tls_alpn01_port);
            let tcp = match tokio::net::TcpStream::connect(addr).await {
                Ok(t) => t,
                Err(e) => {
                    last_error = Some(ValidationError::connection(format!(
                        "connecting to {addr}: {e}"
                    )));
                    continue;
                }
            };
            let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
            let tls = connector
                .connect(server_name.clone(), tcp)
                .await
                .map_err(|e| {
                    ValidationError::tls(format!(
                        "TLS handshake with {addr} (SNI {sni}) failed: {e}"
                    ))
                })?;
            let (_, conn) = tls.get_ref();
            if conn.alpn_protocol() != Some(b"acme-tls/1") {
                return Err(ValidationError::unauthorized(format!(
                    "{addr} did not negotiate the acme-tls/1 protocol"
                )));
            }
            let cert = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or_else(|| ValidationError::tls(format!("{addr} sent no certificate")))?;
            return check_alpn_certificate(cert.as_ref(), ident, key_authorization);
        }
        Err(last_error
            .unwrap_or_else(|| ValidationError::dns(format!("{} has no address", ident.value()))))
    }

    async fn http01(
        &self,
        ident: &Ident,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), ValidationError> {
        let host = match ident {
            Ident::Dns(d) => d.clone(),
            Ident::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Ident::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        };
        let url = format!(
            "http://{host}:{}/.well-known/acme-challenge/{token}",
            self.http01_port
        );
        let mut resp = self.http.get(&url).send().await.map_err(|e| {
            let detail = format!("fetching {url}: {}", error_chain(&e));
            if is_dns_error(&e) {
                ValidationError::dns(detail)
            } else {
                ValidationError::connection(detail)
            }
        })?;
        if !resp.status().is_success() {
            return Err(ValidationError::unauthorized(format!(
                "{url} answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ValidationError::connection(format!("reading {url}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ValidationError::unauthorized(format!(
                    "{url} answered with more than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let got = String::from_utf8_lossy(&body);
        if got.trim_end() == key_authorization {
            Ok(())
        } else {
            let shown: String = got.chars().take(120).collect();
            Err(ValidationError::incorrect_response(format!(
                "{url}: the key authorization does not match; expected {key_authorization:?}, got {shown:?}"
            )))
        }
    }
}

/// RFC 8659 §4 and RFC 8657 over the relevant (non-empty) CAA RRset found at `name`: may a CA
/// answering to one of `identities` issue for `query`? An unknown critical property forbids;
/// a set with no applicable `issue`/`issuewild` property permits.
pub fn caa_permits(
    name: &str,
    records: &[CAA],
    query: &CaaQuery<'_>,
    identities: &[String],
) -> Result<(), ValidationError> {
    use hickory_resolver::proto::rr::rdata::caa::Property;
    if records
        .iter()
        .any(|r| r.issuer_critical() && matches!(r.tag(), Property::Unknown(_)))
    {
        return Err(ValidationError::caa(format!(
            "{name} has a critical CAA property pkid does not know"
        )));
    }
    let wild: Vec<_> = records.iter().filter(|r| r.tag().is_issuewild()).collect();
    let relevant: Vec<_> = if query.wildcard && !wild.is_empty() {
        wild
    } else {
        records.iter().filter(|r| r.tag().is_issue()).collect()
    };
    if relevant.is_empty() {
        return Ok(());
    }
    let permitted = relevant.iter().any(|r| {
        let Ok((Some(issuer), params)) = r.value_as_issue() else {
            return false;
        };
        let issuer = issuer.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        identities.iter().any(|id| id.eq_ignore_ascii_case(&issuer))
            && params.iter().all(|kv| match kv.key() {
                "accounturi" => kv.value() == query.account_uri,
                "validationmethods" => kv.value().split(',').any(|m| m.trim() == query.method),
                _ => true,
            })
    });
    if permitted {
        Ok(())
    } else {
        Err(ValidationError::caa(format!(
            "CAA records at {name} do not allow this CA to issue for {}",
            query.domain
        )))
    }
}

/// One CAA record from its DNS wire-format RDATA (RFC 8659 §4.1), as a resolver receives it.
pub fn parse_caa_rdata(rdata: &[u8]) -> Result<CAA, String> {
    use hickory_resolver::proto::rr::{RData, RecordType};
    use hickory_resolver::proto::serialize::binary::{BinDecoder, Restrict};
    let length = u16::try_from(rdata.len()).map_err(|_| "CAA RDATA is over 65535 bytes")?;
    let mut decoder = BinDecoder::new(rdata);
    match RData::read(&mut decoder, RecordType::CAA, Restrict::new(length)) {
        Ok(RData::CAA(caa)) => Ok(caa),
        Ok(other) => Err(format!("not a CAA record: {other}")),
        Err(e) => Err(e.to_string()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn is_dns_error(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<hickory_resolver::ResolveError>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

fn digest_b64(key_authorization: &str) -> String {
    use base64::Engine;
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// `4.3.2.1.in-addr.arpa` / nibble `ip6.arpa` name of an address (RFC 8738 §6).
pub fn reverse_dns_name(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut labels: Vec<String> = Vec::with_capacity(33);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.push("ip6.arpa".into());
            labels.join(".")
        }
    }
}

/// A lookup that definitely found nothing: NOERROR with no records, or NXDOMAIN. hickory also
/// reports SERVFAIL and REFUSED as "no records found"; those are failures, never an empty answer.
fn is_empty_answer(e: &hickory_resolver::ResolveError) -> bool {
    use hickory_resolver::proto::op::ResponseCode;
    use hickory_resolver::proto::ProtoErrorKind;
    matches!(
        e.proto().map(|p| p.kind()),
        Some(ProtoErrorKind::NoRecordsFound {
            response_code: ResponseCode::NoError | ResponseCode::NXDomain,
            ..
        })
    )
}

/// RFC 8737 §3: exactly one SAN, equal to the identifier, and a critical acmeIdentifier
/// extension holding SHA-256 of the key authorization.
fn check_alpn_certificate(
    der: &[u8],
    ident: &Ident,
    key_authorization: &str,
) -> Result<(), ValidationError> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| {
        ValidationError::unauthorized("the tls-alpn-01 certificate cannot be parsed")
    })?;
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .ok_or_else(|| ValidationError::unauthorized("the tls-alpn-01 certificate has no SAN"))?;
    let names = &san.value.general_names;
    let matches = names.len() == 1
        && match (&names[0], ident) {
            (GeneralName::DNSName(d), Ident::Dns(want)) => d.eq_ignore_ascii_case(want),
            (GeneralName::IPAddress(b), Ident::Ip(IpAddr::V4(want))) => *b == want.octets(),
            (GeneralName::IPAddress(b), Ident::Ip(IpAddr::V6(want))) => *b == want.octets(),
            _ => false,
        };
    if !matches {
        return Err(ValidationError::unauthorized(format!(
            "the tls-alpn-01 certificate must name exactly {} in its SAN",
            ident.value()
        )));
    }
    let oid = x509_parser::der_parser::oid::Oid::from(OID_ACME_IDENTIFIER)
        .map_err(|_| ValidationError::internal("acmeIdentifier OID"))?;
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid == oid)
        .ok_or_else(|| {
            ValidationError::unauthorized(
                "the tls-alpn-01 certificate has no acmeIdentifier extension",
            )
        })?;
    if !ext.critical {
        return Err(ValidationError::unauthorized(
            "the acmeIdentifier extension must be critical",
        ));
    }
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(digest.as_ref());
    if ext.value != expected.as_slice() {
        return Err(ValidationError::incorrect_response(
            "the acmeIdentifier extension does not hold the key authorization digest",
        ));
    }
    Ok(())
}

/// Check the handshake signature with the challenge certificate's key. webpki is not used: it
/// refuses the critical acmeIdentifier extension the challenge certificate must carry.
fn verify_handshake_signature(
    message: &[u8],
    cert: &rustls_pki_types::CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    use aws_lc_rs::signature as sig;
    use rustls::SignatureScheme as S;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let bad = |what: &str| rustls::Error::General(format!("tls-alpn-01: {what}"));
    let (_, parsed) =
        X509Certificate::from_der(cert.as_ref()).map_err(|_| bad("unparseable certificate"))?;
    let key = &parsed.public_key().subject_public_key.data;
    let algorithm: &dyn sig::VerificationAlgorithm = match dss.scheme {
        S::ECDSA_NISTP256_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        S::ECDSA_NISTP384_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        S::ED25519 => &sig::ED25519,
        S::RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        S::RSA_PSS_SHA384 => &sig::RSA_PSS_2048_8192_SHA384,
        S::RSA_PSS_SHA512 => &sig::RSA_PSS_2048_8192_SHA512,
        S::RSA_PKCS1_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        S::RSA_PKCS1_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        S::RSA_PKCS1_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        _ => return Err(bad("unsupported signature scheme")),
    };
    sig::UnparsedPublicKey::new(algorithm, key.as_ref())
        .verify(message, dss.signature())
        .map_err(|_| bad("the handshake signature does not verify"))?;
    Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
}

/// Accepts any certificate (the challenge certificate is self-signed and checked by
/// `check_alpn_certificate`), but still verifies the handshake signatures, so the peer proves
/// it holds the certificate's key.
#[derive(Debug)]
struct ChallengeCertVerifier(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for ChallengeCertVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        use rustls::SignatureScheme as S;
        let _ = &self.0;
        vec![
            S::ECDSA_NISTP256_SHA256,
            S::ECDSA_NISTP384_SHA384,
            S::ED25519,
            S::RSA_PSS_SHA256,
            S::RSA_PSS_SHA384,
            S::RSA_PSS_SHA512,
            S::RSA_PKCS1_SHA256,
            S::RSA_PKCS1_SHA384,
            S::RSA_PKCS1_SHA512,
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// RFC 8659 §4.1 RDATA: flags, tag length, tag, value.
    fn rdata(flags: u8, tag: &str, value: &str) -> Vec<u8> {
        let mut out = vec![flags, tag.len() as u8];
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(value.as_bytes());
        out
    }

    #[test]
    fn caa_records_from_wire_format_decide_issuance() {
        let query = CaaQuery {
            domain: "www.example.test",
            wildcard: false,
            account_uri: "https://ca.test/acme/acct/1",
            method: "http-01",
        };
        let ids = ["pkid.test".to_owned()];
        let ours = parse_caa_rdata(&rdata(0, "issue", "pkid.test")).unwrap();
        let theirs = parse_caa_rdata(&rdata(0, "issue", "other.test")).unwrap();
        assert!(caa_permits("example.test.", std::slice::from_ref(&ours), &query, &ids).is_ok());
        assert!(caa_permits("example.test.", &[theirs], &query, &ids).is_err());
        let other_account = parse_caa_rdata(&rdata(
            0,
            "issue",
            "pkid.test; accounturi=https://ca.test/acme/acct/2",
        ))
        .unwrap();
        assert!(caa_permits("example.test.", &[other_account], &query, &ids).is_err());
        let critical = parse_caa_rdata(&rdata(128, "tbs", "x")).unwrap();
        assert!(caa_permits("example.test.", &[ours, critical], &query, &ids).is_err());
        assert!(parse_caa_rdata(&[0, 200, b'x']).is_err());
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_dns_name(&"127.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            "1.0.0.127.in-addr.arpa"
        );
        let v6 = reverse_dns_name(&"2001:db8::1".parse().unwrap_or(IpAddr::from([0u8; 16])));
        assert!(v6.starts_with("1.0.0.0.0.0.0.0"));
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.ip6.arpa"));
    }
}
