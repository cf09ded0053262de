//! A new RFC 3820 proxy certificate, signed by a stored (uploaded) one: what IAM's proxy
//! generation hands back, the classic grid proxy file.
//!
//! - A fresh RSA-2048 key (RFC 3820 §2.4: a proxy has a key of its own).
//! - Subject: the signing proxy's subject plus one RDN, `CN=<serial in decimal>` (§3.4); issuer:
//!   the signing proxy's subject, copied byte for byte (so that name chaining holds exactly).
//! - keyUsage, critical: the AND of the chain's non-CA keyUsages, keyCertSign and cRLSign
//!   removed (§3.7); digitalSignature, keyEncipherment, dataEncipherment when none has one.
//! - proxyCertInfo, critical, with the policy language inheritAll (§3.8).
//! - Signed with the signing proxy's key (§3.1: a proxy is issued by the key of its issuer, here
//!   the user's own proxy, never a CA's).
//!
//! The result is checked as an upload is ([`super::check_chain`]) before it is handed out.
//! Key generation and RSA signatures are blocking work: call [`generate`] off the async workers.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
};
use pkid_backends::builder::assemble;
use pkid_backends::local::der;
use pkid_backends::{KeyAlgorithm, KeySigner, SoftwareKey};
use rand::RngCore;
use x509_parser::asn1_rs::{Any, FromDer, Tag};
use x509_parser::certificate::X509Certificate;
use zeroize::Zeroizing;

use super::{
    check_chain, KeyFormat, PrivateKey, ProxyError, OID_PPL_INHERIT_ALL, OID_PROXY_CERT_INFO,
};
use crate::pki::dn::rfc2253;
use crate::pki::pem::to_pem;

/// keyUsage bits as x509-parser numbers them (bit `i` = RFC 5280 §4.2.1.3 usage `i`).
const DIGITAL_SIGNATURE: u16 = 1 << 0;
const KEY_ENCIPHERMENT: u16 = 1 << 2;
const DATA_ENCIPHERMENT: u16 = 1 << 3;
const KEY_CERT_SIGN: u16 = 1 << 5;
const CRL_SIGN: u16 = 1 << 6;
/// A proxy's keyUsage when no certificate of its chain has one.
const DEFAULT_KEY_USAGE: u16 = DIGITAL_SIGNATURE | KEY_ENCIPHERMENT | DATA_ENCIPHERMENT;
/// Seconds a new proxy is back-dated, for clocks a little behind (as voms-proxy-init does).
const BACKDATE_SECS: i64 = 300;

/// What a new proxy is made from.
pub struct ProxyRequest<'a> {
    /// The stored chain, DER, the signing proxy first.
    pub chain: &'a [Vec<u8>],
    /// The signing proxy's private key.
    pub key: &'a PrivateKey,
    /// The new proxy's notAfter, seconds since the epoch (capped by the caller; never past the
    /// chain's own).
    pub not_after: i64,
    /// Now, seconds since the epoch.
    pub at: i64,
}

/// A new proxy and the file that carries it.
pub struct GeneratedProxy {
    /// The new proxy's subject, its issuer, and the end-entity subject it acts for (RFC 2253).
    pub subject: String,
    pub issuer: String,
    pub identity: String,
    /// Seconds since the epoch.
    pub not_after: i64,
    /// The new proxy (PEM), its private key (PKCS#1 PEM), then the stored chain's non-CA
    /// certificates: the classic grid proxy file. It holds a key: wiped when dropped.
    pub file: Zeroizing<String>,
}

/// A signer over an uploaded private key; `UnusableKey` for one pkid cannot sign with.
pub fn signer(key: &PrivateKey) -> Result<SoftwareKey, ProxyError> {
    let unusable = |why: &str| ProxyError::UnusableKey(why.to_owned());
    let pkcs8: Zeroizing<Vec<u8>> = match key.format {
        KeyFormat::Pkcs8 => Zeroizing::new(key.der.to_vec()),
        KeyFormat::Pkcs1 => {
            let pair = RsaKeyPair::from_der(&key.der).map_err(|_| unusable("not an RSA key"))?;
            let der = AsDer::<Pkcs8V1Der<'static>>::as_der(&pair)
                .map_err(|_| unusable("the RSA key cannot be encoded"))?;
            Zeroizing::new(der.as_ref().to_vec())
        }
        KeyFormat::Sec1 => {
            let pair = [
                &ECDSA_P256_SHA256_ASN1_SIGNING,
                &ECDSA_P384_SHA384_ASN1_SIGNING,
            ]
            .into_iter()
            .find_map(|alg| EcdsaKeyPair::from_private_key_der(alg, &key.der).ok())
            .ok_or_else(|| unusable("not a P-256 or P-384 key"))?;
            let doc = pair
                .to_pkcs8v1()
                .map_err(|_| unusable("the EC key cannot be encoded"))?;
            Zeroizing::new(doc.as_ref().to_vec())
        }
    };
    SoftwareKey::from_pkcs8_der(&pkcs8).map_err(|e| ProxyError::UnusableKey(e.to_string()))
}

/// Make a new proxy under the chain's first certificate. Blocking (an RSA key is generated).
pub fn generate(req: &ProxyRequest<'_>) -> Result<GeneratedProxy, ProxyError> {
    let failed = |what: &str| ProxyError::Generation(what.to_owned());
    let signing = signer(req.key)?;
    let first = req.chain.first().ok_or(ProxyError::NoCertificate)?;
    let (_, issuer) = X509Certificate::from_der(first).map_err(|e| ProxyError::NotX509 {
        index: 0,
        detail: e.to_string(),
    })?;
    let not_before = (req.at - BACKDATE_SECS).max(issuer.validity().not_before.timestamp());
    if req.not_after <= req.at {
        return Err(failed("the stored proxy has expired"));
    }
    let fresh = SoftwareKey::generate(KeyAlgorithm::Rsa2048)
        .map_err(|e| ProxyError::Generation(e.to_string()))?;
    let serial = random_serial();
    let subject = extended_name(issuer.subject().as_raw(), serial)
        .ok_or_else(|| failed("the stored proxy's subject is not a Name"))?;
    let key_usage = chain_key_usage(req.chain)?;
    let tbs = der::sequence(&[
        // [0] EXPLICIT Version v3
        &der::tlv(0xa0, &der::tlv(der::INTEGER, &[2])),
        &der::unsigned_integer(&serial.to_be_bytes()),
        &pkid_backends::builder::signature_algorithm_der(signing.algorithm()),
        issuer.subject().as_raw(),
        &der::sequence(&[&time(not_before)?, &time(req.not_after)?]),
        &subject,
        fresh.public_key_der(),
        // [3] EXPLICIT Extensions
        &der::tlv(
            0xa3,
            &der::sequence(&[
                &extension(&[2, 5, 29, 15], &key_usage_bits(key_usage)),
                &extension(OID_PROXY_CERT_INFO, &proxy_cert_info()),
            ]),
        ),
    ]);
    let signature = signing
        .sign(&tbs)
        .map_err(|e| ProxyError::Generation(e.to_string()))?;
    let certificate = assemble(&tbs, signing.algorithm(), &signature);

    // The new chain must be what an upload must be.
    let mut chain = Vec::with_capacity(req.chain.len() + 1);
    chain.push(certificate.clone());
    chain.extend(req.chain.iter().cloned());
    let facts = check_chain(&chain, req.at)?;
    let (_, made) = X509Certificate::from_der(&certificate)
        .map_err(|_| failed("the new proxy does not parse"))?;
    let end_entity = facts
        .proxies
        .checked_sub(1)
        .and_then(|index| req.chain.get(index))
        .ok_or_else(|| failed("the chain has no end-entity certificate"))?;
    let (_, end_entity) = X509Certificate::from_der(end_entity)
        .map_err(|_| failed("the end-entity certificate does not parse"))?;

    let mut file = Zeroizing::new(to_pem("CERTIFICATE", &certificate));
    file.push_str(&pkcs1_pem(&fresh)?);
    for der in req.chain {
        let is_ca = X509Certificate::from_der(der).is_ok_and(|(_, c)| c.is_ca());
        if !is_ca {
            file.push_str(&to_pem("CERTIFICATE", der));
        }
    }
    Ok(GeneratedProxy {
        subject: rfc2253(made.subject()),
        issuer: rfc2253(made.issuer()),
        identity: rfc2253(end_entity.subject()),
        not_after: made.validity().not_after.timestamp(),
        file,
    })
}

/// A positive, non-zero 63-bit serial; the new proxy's CN is its decimal form.
fn random_serial() -> u64 {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    (u64::from_be_bytes(bytes) >> 1).max(1)
}

/// `name` (a DER Name) with one more RDN, `CN=<serial>` as a PrintableString.
fn extended_name(name: &[u8], serial: u64) -> Option<Vec<u8>> {
    let (rest, outer) = Any::from_der(name).ok()?;
    if !rest.is_empty() || outer.tag() != Tag::Sequence {
        return None;
    }
    let common_name = der::sequence(&[
        &der::oid(&[2, 5, 4, 3]),
        &der::tlv(0x13, serial.to_string().as_bytes()),
    ]);
    let rdn = der::tlv(0x31, &common_name);
    Some(der::sequence(&[outer.data, &rdn]))
}

/// The AND of the keyUsages of the chain's non-CA certificates, without keyCertSign and
/// cRLSign; the default when none has one.
fn chain_key_usage(chain: &[Vec<u8>]) -> Result<u16, ProxyError> {
    let mut usage: Option<u16> = None;
    for (index, der) in chain.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| ProxyError::NotX509 {
            index,
            detail: e.to_string(),
        })?;
        if cert.is_ca() {
            continue;
        }
        if let Ok(Some(ku)) = cert.key_usage() {
            usage = Some(usage.map_or(ku.value.flags, |u| u & ku.value.flags));
        }
    }
    let usage = usage.map_or(DEFAULT_KEY_USAGE, |u| u & !(KEY_CERT_SIGN | CRL_SIGN));
    if usage == 0 {
        return Err(ProxyError::Generation(
            "the chain's keyUsages leave nothing for a proxy".into(),
        ));
    }
    Ok(usage)
}

/// keyUsage's value: a named BIT STRING (X.690 §11.2.2: no trailing zero bits).
fn key_usage_bits(flags: u16) -> Vec<u8> {
    let highest = 15 - flags.leading_zeros() as usize;
    let mut bytes = vec![0u8; highest / 8 + 1];
    for bit in 0..=highest {
        if flags & (1 << bit) != 0 {
            bytes[bit / 8] |= 0x80 >> (bit % 8);
        }
    }
    let unused = 7 - (highest % 8) as u8;
    let mut content = vec![unused];
    content.extend_from_slice(&bytes);
    der::tlv(der::BIT_STRING, &content)
}

/// ProxyCertInfo { proxyPolicy { policyLanguage inheritAll } }, no path length (RFC 3820 §3.8).
fn proxy_cert_info() -> Vec<u8> {
    der::sequence(&[&der::sequence(&[&der::oid(OID_PPL_INHERIT_ALL)])])
}

/// A critical extension (RFC 5280 §4.1: `critical` TRUE, `extnValue` the DER of `value`).
fn extension(oid: &[u64], value: &[u8]) -> Vec<u8> {
    der::sequence(&[&der::oid(oid), &[0x01, 0x01, 0xff], &der::tlv(0x04, value)])
}

/// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
fn time(unix: i64) -> Result<Vec<u8>, ProxyError> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| ProxyError::Generation(format!("time: {e}")))?;
    let rest = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Ok(if (1950..2050).contains(&t.year()) {
        der::tlv(0x17, format!("{:02}{rest}", t.year() % 100).as_bytes())
    } else {
        der::tlv(0x18, format!("{:04}{rest}", t.year()).as_bytes())
    })
}

/// The RSA key's PKCS#1 RSAPrivateKey (the privateKey of its PKCS#8 PrivateKeyInfo, RFC 5208
/// §5), as PEM `RSA PRIVATE KEY`: what grid proxy files carry.
fn pkcs1_pem(key: &SoftwareKey) -> Result<Zeroizing<String>, ProxyError> {
    let failed = || ProxyError::Generation("the new key cannot be encoded".into());
    let pkcs8 = key.to_pkcs8_der();
    let (info, _) = der::expect(&pkcs8, der::SEQUENCE).map_err(|_| failed())?;
    let (_, rest) = der::expect(info.content, der::INTEGER).map_err(|_| failed())?;
    let (_, rest) = der::expect(rest, der::SEQUENCE).map_err(|_| failed())?;
    let (private, _) = der::expect(rest, 0x04).map_err(|_| failed())?;
    let key = PrivateKey {
        format: KeyFormat::Pkcs1,
        der: Zeroizing::new(private.content.to_vec()),
    };
    Ok(key.to_pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_usages_are_named_bit_strings_without_trailing_zeros() {
        // digitalSignature, keyEncipherment, dataEncipherment: 1011 0000, four bits unused.
        assert_eq!(key_usage_bits(DEFAULT_KEY_USAGE), [0x03, 0x02, 0x04, 0xb0]);
        assert_eq!(key_usage_bits(DIGITAL_SIGNATURE), [0x03, 0x02, 0x07, 0x80]);
        // decipherOnly is bit 8: a second byte.
        assert_eq!(key_usage_bits(1 << 8), [0x03, 0x03, 0x07, 0x00, 0x80]);
    }

    #[test]
    fn times_switch_to_generalized_time_in_2050() {
        assert_eq!(time(0).ok(), Some(der::tlv(0x17, b"700101000000Z")));
        assert_eq!(
            time(2_524_608_000).ok(),
            Some(der::tlv(0x18, b"20500101000000Z"))
        );
    }
}
