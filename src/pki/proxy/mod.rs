//! RFC 3820 proxy certificates: what an uploaded proxy bundle must be before pkid stores it and
//! signs new proxies with its key.
//!
//! A bundle is the classic grid proxy file: the proxy certificate, its unencrypted private key,
//! then the chain that issued it (more proxies, the end-entity certificate, perhaps its CAs).
//! [`parse_bundle`] takes it apart and [`check_chain`] checks the proxies of the chain as
//! RFC 3820 §4 validates a proxy path; whether the end-entity certificate is trusted (a trust
//! anchor) and whose it is (a linked account) is the surface's to decide with what it knows.
//!
//! The rules, each with its section:
//! - §3.8: a proxy carries the proxyCertInfo extension, critical, well formed.
//! - §3.4: its subject is its issuer's subject with one more RDN, a single commonName; its
//!   issuer field is its issuer's subject, which is not empty (§3.1).
//! - §3.5, §3.6: no subjectAltName, no issuerAltName.
//! - §3.7: not a CA (basicConstraints cA false), keyCertSign not asserted; an issuer with a
//!   keyUsage extension asserts digitalSignature.
//! - §4.1.3: each certificate is signed by the next one's key; every certificate is within its
//!   validity; the proxies' path length constraints hold.
//! - The end-entity certificate that issued the first proxy is not a CA.
//!
//! [`issue`] makes a new proxy under a stored one (what IAM's proxy generation answers).

pub mod issue;

use std::fmt;

use x509_parser::asn1_rs::{Any, FromDer, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{Oid, OID_X509_COMMON_NAME};
use x509_parser::time::ASN1Time;
use zeroize::Zeroizing;

/// The longest bundle accepted, in characters (the upload's documented limit).
pub const MAX_BUNDLE_CHARS: usize = 8192;
/// The most certificates a chain may hold: proxies, end entity and its CAs.
pub const MAX_CHAIN: usize = 16;

/// id-pe-proxyCertInfo, RFC 3820 §3.8.
pub const OID_PROXY_CERT_INFO: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 14];
/// id-ppl-inheritAll: the proxy has all its issuer's rights.
pub const OID_PPL_INHERIT_ALL: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 21, 1];

/// Why a bundle or a chain is refused; the message is fit for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("the proxy bundle is longer than {MAX_BUNDLE_CHARS} characters")]
    TooLarge,
    #[error("the proxy bundle is not PEM: {0}")]
    NotPem(String),
    #[error("the proxy bundle holds no certificate")]
    NoCertificate,
    #[error("the proxy bundle holds more than {MAX_CHAIN} certificates")]
    TooManyCertificates,
    #[error("the proxy bundle must hold exactly one private key, it holds {0}")]
    KeyCount(usize),
    #[error("the proxy's private key is encrypted; upload it unencrypted")]
    EncryptedKey,
    #[error(
        "the proxy's private key is not an RSA key of 2048 to 8192 bits, an ECDSA P-256 or P-384 key or an Ed25519 key"
    )]
    UnreadableKey,
    #[error("the private key does not belong to the proxy certificate")]
    KeyMismatch,
    #[error("certificate {index} of the chain is not X.509: {detail}")]
    NotX509 { index: usize, detail: String },
    #[error("the first certificate of the bundle is not a proxy certificate (no proxyCertInfo)")]
    NotAProxy,
    #[error("the chain has no end-entity certificate after its proxies")]
    NoEndEntity,
    #[error("certificate {index} of the chain: {rule}")]
    Rule { index: usize, rule: String },
    #[error("the proxy's private key cannot sign new proxies: {0}")]
    UnusableKey(String),
    #[error("no proxy could be made from the stored one: {0}")]
    Generation(String),
}

/// The policy of a proxy, from its proxyCertInfo extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyCertInfo {
    /// pCPathLenConstraint: how many proxies may follow this one.
    pub path_len: Option<u64>,
    /// policyLanguage, dotted.
    pub policy_language: String,
    pub policy: Option<Vec<u8>>,
}

impl ProxyCertInfo {
    pub fn inherits_all(&self) -> bool {
        Oid::from(OID_PPL_INHERIT_ALL).is_ok_and(|oid| oid.to_id_string() == self.policy_language)
    }
}

/// What a valid chain is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainFacts {
    /// How many proxy certificates lead the chain; the end-entity certificate is at this index.
    pub proxies: usize,
    /// The end-entity certificate's subject, DER.
    pub end_entity_subject: Vec<u8>,
    /// The earliest notAfter of the chain (seconds since the epoch): the proxy is usable until
    /// then.
    pub not_after: i64,
    /// The first proxy's policy.
    pub policy: ProxyCertInfo,
    /// How many more proxies the path length constraints allow below the first proxy;
    /// `None`: no limit.
    pub allows_below: Option<u64>,
}

/// How a private key is encoded, by its PEM label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `RSA PRIVATE KEY`: RSAPrivateKey (RFC 8017), as grid proxy files carry it.
    Pkcs1,
    /// `EC PRIVATE KEY`: ECPrivateKey (RFC 5915).
    Sec1,
    /// `PRIVATE KEY`: PrivateKeyInfo (RFC 5208), any algorithm.
    Pkcs8,
}

/// A private key as uploaded; its bytes are wiped when it is dropped, and never printed.
pub struct PrivateKey {
    pub format: KeyFormat,
    pub der: Zeroizing<Vec<u8>>,
}

impl PrivateKey {
    /// The key as PEM under its own label, for a proxy file handed back to its owner.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let label = match self.format {
            KeyFormat::Pkcs1 => "RSA PRIVATE KEY",
            KeyFormat::Sec1 => "EC PRIVATE KEY",
            KeyFormat::Pkcs8 => "PRIVATE KEY",
        };
        let block = pem::Pem::new(label, self.der.to_vec());
        let text = Zeroizing::new(pem::encode_config(
            &block,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ));
        // The block's copy of the key is wiped too.
        drop(Zeroizing::new(block.into_contents()));
        text
    }
}

/// A proxy bundle taken apart and checked.
pub struct ProxyBundle {
    /// DER, the proxy first, in the bundle's order.
    pub certificates: Vec<Vec<u8>>,
    /// The proxy's private key, DER, wiped when dropped (to be stored sealed).
    pub private_key: PrivateKey,
    pub facts: ChainFacts,
}

impl fmt::Debug for ProxyBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyBundle")
            .field("certificates", &self.certificates.len())
            .field("private_key", &self.private_key.format)
            .field("facts", &self.facts)
            .finish()
    }
}

/// Take an uploaded bundle apart and check it, at `at` (seconds since the epoch).
pub fn parse_bundle(text: &str, at: i64) -> Result<ProxyBundle, ProxyError> {
    if text.chars().count() > MAX_BUNDLE_CHARS {
        return Err(ProxyError::TooLarge);
    }
    let blocks = pem::parse_many(text).map_err(|e| ProxyError::NotPem(e.to_string()))?;
    let mut certificates = Vec::new();
    let mut keys = Vec::new();
    for block in blocks {
        match block.tag() {
            "CERTIFICATE" => certificates.push(block.into_contents()),
            "ENCRYPTED PRIVATE KEY" => return Err(ProxyError::EncryptedKey),
            "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY" => {
                // RFC 1421 headers: an OpenSSL "traditional" key encrypted in place.
                if block
                    .headers()
                    .get("Proc-Type")
                    .is_some_and(|v| v.contains("ENCRYPTED"))
                {
                    return Err(ProxyError::EncryptedKey);
                }
                let format = match block.tag() {
                    "RSA PRIVATE KEY" => KeyFormat::Pkcs1,
                    "EC PRIVATE KEY" => KeyFormat::Sec1,
                    _ => KeyFormat::Pkcs8,
                };
                keys.push(PrivateKey {
                    format,
                    der: Zeroizing::new(block.into_contents()),
                });
            }
            // Anything else (parameters, a trailing CRL) is not part of a proxy file.
            other => {
                return Err(ProxyError::NotPem(format!(
                    "unexpected PEM block {other:?}"
                )))
            }
        }
    }
    if certificates.is_empty() {
        return Err(ProxyError::NoCertificate);
    }
    if keys.len() != 1 {
        return Err(ProxyError::KeyCount(keys.len()));
    }
    let key = keys.remove(0);
    let facts = check_chain(&certificates, at)?;
    let (_, proxy) =
        X509Certificate::from_der(&certificates[0]).map_err(|e| ProxyError::NotX509 {
            index: 0,
            detail: e.to_string(),
        })?;
    let public = key_public_bytes(key.format, &key.der)?;
    if public.as_slice() != proxy.public_key().subject_public_key.data.as_ref() {
        return Err(ProxyError::KeyMismatch);
    }
    Ok(ProxyBundle {
        certificates,
        private_key: key,
        facts,
    })
}

/// The public key of a private key, as a certificate's subjectPublicKey bit string holds it.
fn key_public_bytes(format: KeyFormat, der: &[u8]) -> Result<Vec<u8>, ProxyError> {
    use aws_lc_rs::signature::{
        EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
        ECDSA_P384_SHA384_ASN1_SIGNING,
    };
    let ec = [
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &ECDSA_P384_SHA384_ASN1_SIGNING,
    ];
    match format {
        KeyFormat::Pkcs1 => RsaKeyPair::from_der(der)
            .map(|k| k.public_key().as_ref().to_vec())
            .map_err(|_| ProxyError::UnreadableKey),
        KeyFormat::Sec1 => ec
            .iter()
            .find_map(|alg| EcdsaKeyPair::from_private_key_der(alg, der).ok())
            .map(|k| k.public_key().as_ref().to_vec())
            .ok_or(ProxyError::UnreadableKey),
        KeyFormat::Pkcs8 => {
            if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
                return Ok(k.public_key().as_ref().to_vec());
            }
            if let Some(k) = ec
                .iter()
                .find_map(|alg| EcdsaKeyPair::from_pkcs8(alg, der).ok())
            {
                return Ok(k.public_key().as_ref().to_vec());
            }
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(|k| k.public_key().as_ref().to_vec())
                .map_err(|_| ProxyError::UnreadableKey)
        }
    }
}

/// Check a chain of DER certificates, the proxy first, at `at`: the leading proxies by the
/// rules of RFC 3820, and every link of the chain (names and signatures) up to its last
/// certificate.
pub fn check_chain(chain: &[Vec<u8>], at: i64) -> Result<ChainFacts, ProxyError> {
    if chain.is_empty() {
        return Err(ProxyError::NoCertificate);
    }
    if chain.len() > MAX_CHAIN {
        return Err(ProxyError::TooManyCertificates);
    }
    let certs = chain
        .iter()
        .enumerate()
        .map(|(index, der)| match X509Certificate::from_der(der) {
            Ok(([], cert)) => Ok(cert),
            Ok(_) => Err(ProxyError::NotX509 {
                index,
                detail: "trailing bytes after the certificate".into(),
            }),
            Err(e) => Err(ProxyError::NotX509 {
                index,
                detail: e.to_string(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let infos = certs
        .iter()
        .enumerate()
        .map(|(index, cert)| proxy_cert_info(cert).map_err(|rule| ProxyError::Rule { index, rule }))
        .collect::<Result<Vec<_>, _>>()?;
    let proxies = infos.iter().take_while(|info| info.is_some()).count();
    if proxies == 0 {
        return Err(ProxyError::NotAProxy);
    }
    if proxies == certs.len() {
        return Err(ProxyError::NoEndEntity);
    }
    if let Some(index) = infos[proxies..].iter().position(Option::is_some) {
        return Err(ProxyError::Rule {
            index: proxies + index,
            rule: "a proxy certificate after the end-entity certificate".into(),
        });
    }
    let when = ASN1Time::from_timestamp(at).map_err(|e| ProxyError::Rule {
        index: 0,
        rule: format!("time: {e}"),
    })?;
    let rule = |index: usize, rule: &str| ProxyError::Rule {
        index,
        rule: rule.to_owned(),
    };

    let end_entity = &certs[proxies];
    if end_entity.is_ca() {
        return Err(rule(
            proxies,
            "the end-entity certificate is a CA; a CA does not issue proxy certificates",
        ));
    }
    // Every link: names, signatures, validity.
    for (index, cert) in certs.iter().enumerate() {
        if !cert.validity().is_valid_at(when) {
            return Err(rule(index, "not within its validity period"));
        }
        if let Some(issuer) = certs.get(index + 1) {
            if cert.issuer().as_raw() != issuer.subject().as_raw() {
                return Err(rule(
                    index,
                    "its issuer is not the next certificate's subject",
                ));
            }
            cert.verify_signature(Some(issuer.public_key()))
                .map_err(|_| {
                    rule(
                        index,
                        "its signature does not verify with the next certificate's key",
                    )
                })?;
        }
    }
    // The proxies, from the end-entity certificate down (RFC 3820 §4.1).
    let mut remaining: Option<u64> = None;
    for index in (0..proxies).rev() {
        let proxy = &certs[index];
        let issuer = &certs[index + 1];
        let Some((info, critical)) = &infos[index] else {
            return Err(rule(index, "not a proxy certificate"));
        };
        if !critical {
            return Err(rule(index, "proxyCertInfo is not critical"));
        }
        if remaining == Some(0) {
            return Err(rule(
                index,
                "a proxy above it does not allow this many proxies (pCPathLenConstraint)",
            ));
        }
        remaining = remaining.map(|n| n - 1);
        if let Some(limit) = info.path_len {
            remaining = Some(remaining.map_or(limit, |n| n.min(limit)));
        }
        check_proxy_name(proxy, issuer).map_err(|r| rule(index, r))?;
        check_proxy_extensions(proxy, issuer).map_err(|r| rule(index, &r))?;
    }
    let not_after = certs
        .iter()
        .map(|c| c.validity().not_after.timestamp())
        .min()
        .unwrap_or(at);
    let policy = infos
        .into_iter()
        .next()
        .flatten()
        .map(|(info, _)| info)
        .ok_or(ProxyError::NotAProxy)?;
    Ok(ChainFacts {
        proxies,
        end_entity_subject: end_entity.subject().as_raw().to_vec(),
        not_after,
        policy,
        allows_below: remaining,
    })
}

/// §3.4: the subject is the issuer's subject with one more RDN, a single commonName.
fn check_proxy_name(
    proxy: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<(), &'static str> {
    let contents = |raw: &[u8]| -> Option<Vec<u8>> {
        match Any::from_der(raw) {
            Ok((rest, any)) if rest.is_empty() && any.tag() == Tag::Sequence => {
                Some(any.data.to_vec())
            }
            _ => None,
        }
    };
    let issuer_rdns =
        contents(issuer.subject().as_raw()).ok_or("the issuer's subject is not a Name")?;
    if issuer_rdns.is_empty() {
        return Err("the issuer's subject is empty");
    }
    let proxy_rdns = contents(proxy.subject().as_raw()).ok_or("its subject is not a Name")?;
    let added = proxy_rdns
        .strip_prefix(issuer_rdns.as_slice())
        .ok_or("its subject does not extend its issuer's subject")?;
    match Any::from_der(added) {
        Ok((rest, rdn)) if rest.is_empty() && rdn.tag() == Tag::Set => {}
        _ => return Err("its subject does not extend its issuer's subject by exactly one RDN"),
    }
    let last = proxy
        .subject()
        .iter()
        .last()
        .ok_or("its subject is empty")?;
    let mut attributes = last.iter();
    match (attributes.next(), attributes.next()) {
        (Some(cn), None) if cn.attr_type() == &OID_X509_COMMON_NAME => Ok(()),
        _ => Err("the RDN its subject adds is not a single commonName"),
    }
}

/// §3.5–§3.7: what a proxy and its issuer may assert.
fn check_proxy_extensions(
    proxy: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<(), String> {
    let read = |e: x509_parser::error::X509Error| format!("unreadable extension: {e}");
    if proxy.subject_alternative_name().map_err(read)?.is_some() {
        return Err("a proxy certificate has no subjectAltName".into());
    }
    let ian = Oid::from(&[2, 5, 29, 18]).map_err(|_| "issuerAltName OID".to_owned())?;
    if proxy.get_extension_unique(&ian).map_err(read)?.is_some() {
        return Err("a proxy certificate has no issuerAltName".into());
    }
    if proxy
        .basic_constraints()
        .map_err(read)?
        .is_some_and(|bc| bc.value.ca)
    {
        return Err("a proxy certificate is not a CA".into());
    }
    if proxy
        .key_usage()
        .map_err(read)?
        .is_some_and(|ku| ku.value.key_cert_sign())
    {
        return Err("a proxy certificate does not assert keyCertSign".into());
    }
    if issuer
        .key_usage()
        .map_err(read)?
        .is_some_and(|ku| !ku.value.digital_signature())
    {
        return Err("its issuer's keyUsage does not allow digitalSignature".into());
    }
    Ok(())
}

/// The proxyCertInfo extension of `cert` and whether it is critical; `None` for a certificate
/// without one. `Err` for one that is there but malformed or repeated.
pub fn proxy_cert_info(
    cert: &X509Certificate<'_>,
) -> Result<Option<(ProxyCertInfo, bool)>, String> {
    let oid = Oid::from(OID_PROXY_CERT_INFO).map_err(|_| "proxyCertInfo OID".to_owned())?;
    let mut found = cert.iter_extensions().filter(|e| e.oid == oid);
    let Some(ext) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err("proxyCertInfo appears more than once".into());
    }
    let info = parse_proxy_cert_info(ext.value).ok_or("proxyCertInfo is malformed")?;
    Ok(Some((info, ext.critical)))
}

/// ProxyCertInfo ::= SEQUENCE { pCPathLenConstraint INTEGER (0..MAX) OPTIONAL,
///   proxyPolicy ProxyPolicy }
/// ProxyPolicy ::= SEQUENCE { policyLanguage OBJECT IDENTIFIER, policy OCTET STRING OPTIONAL }
fn parse_proxy_cert_info(der: &[u8]) -> Option<ProxyCertInfo> {
    let (rest, outer) = Any::from_der(der).ok()?;
    if !rest.is_empty() || outer.tag() != Tag::Sequence {
        return None;
    }
    let (mut body, first) = Any::from_der(outer.data).ok()?;
    let mut path_len = None;
    let policy_seq = if first.tag() == Tag::Integer {
        let n = first.as_integer().ok()?;
        path_len = Some(n.as_u64().ok()?);
        let (after, policy) = Any::from_der(body).ok()?;
        body = after;
        policy
    } else {
        first
    };
    if !body.is_empty() || policy_seq.tag() != Tag::Sequence {
        return None;
    }
    let (rest, language) = Any::from_der(policy_seq.data).ok()?;
    let language = language.as_oid().ok()?;
    let policy = if rest.is_empty() {
        None
    } else {
        let (after, policy) = Any::from_der(rest).ok()?;
        if !after.is_empty() || policy.tag() != Tag::OctetString {
            return None;
        }
        Some(policy.data.to_vec())
    };
    Some(ProxyCertInfo {
        path_len,
        policy_language: language.to_id_string(),
        policy,
    })
}

#[cfg(test)]
mod tests;
