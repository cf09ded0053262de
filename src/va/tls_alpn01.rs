//! tls-alpn-01 (RFC 8737, and RFC 8738 §6 for IP identifiers): a TLS handshake with ALPN
//! `acme-tls/1` (TLS 1.2+) to `acme.tls_alpn01_port`, SNI the name (or the reverse-DNS name of an
//! IP), whose self-signed certificate has exactly one SAN, the identifier, and a critical
//! acmeIdentifier extension holding SHA-256 of the key authorization. The certificate verifier
//! of the validator's TLS client lives here: it accepts the challenge certificate but checks the
//! handshake signatures with its key.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::{ValidationError, Validator};
use crate::pki::csr::Ident;

/// RFC 8737 §3: id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31.
const OID_ACME_IDENTIFIER: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 31];

impl Validator {
    /// RFC 8737 (and RFC 8738 §6 for IP identifiers).
    pub(super) async fn tls_alpn01(
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
                    .map_err(|_| ValidationError::dns(format!("{d} could not be resolved")))?;
                (d.clone(), ips.iter().collect::<Vec<_>>())
            }
            Ident::Ip(ip) => (reverse_dns_name(ip), vec![*ip]),
        };
        let server_name = rustls_pki_types::ServerName::try_from(sni.clone())
            .map_err(|_| ValidationError::malformed(format!("{sni} cannot be sent as SNI")))?;
        let port = self.tls_alpn01_port;
        let addrs: Vec<IpAddr> = addrs
            .into_iter()
            .filter(|ip| self.addresses.allows(SocketAddr::new(*ip, port)))
            .collect();
        if addrs.is_empty() {
            return Err(ValidationError::connection(format!(
                "every address of {} is refused by the validation address policy",
                ident.value()
            )));
        }
        let mut last_error = None;
        for ip in addrs {
            let addr = SocketAddr::new(ip, port);
            let tcp = match tokio::net::TcpStream::connect(addr).await {
                Ok(t) => t,
                Err(_) => {
                    last_error = Some(ValidationError::connection(format!(
                        "could not connect to {} on port {port}",
                        ident.value()
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
                        "TLS handshake with {} on port {port} (SNI {sni}) failed: {}",
                        ident.value(),
                        handshake_failure(&e)
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
}

/// Why a challenge handshake failed, in few words: a TLS alert or a certificate fault is the
/// client's to fix and is named; anything else is "the connection failed".
fn handshake_failure(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => "the connection failed".into(),
    }
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
pub(super) struct ChallengeCertVerifier(pub(super) Arc<rustls::crypto::CryptoProvider>);

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
    use super::*;

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
