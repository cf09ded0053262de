//! TLS client authentication as the HTTPS listener offers it: asked for, never required, and
//! not judged during the handshake.
//!
//! rustls' own client verifier validates the whole chain while handshaking, and refuses RFC 3820
//! proxy chains (their critical proxyCertInfo extension is unknown to it). This one checks only
//! what the handshake alone can: that the client holds the private key of the certificate it
//! leads with (its CertificateVerify signature, RFC 8446 §4.4.3, RFC 5246 §7.4.8), through the
//! crypto provider's signature algorithms, over the key read from the certificate without
//! judging the certificate. Whether the chain proves anything (an anchor, validity, usage,
//! proxies) is decided per request by the identity layer, on the chain the connection keeps; a
//! client without a certificate connects as before.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, PeerMisbehaved,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// Offers client authentication, accepts any chain whose leaf key the client proves it holds.
#[derive(Debug)]
pub struct OptionalClientAuth {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl OptionalClientAuth {
    /// `anchor_subjects`: the trust anchors' subjects (DER Names), sent to the client as the
    /// certificate authorities it should pick a certificate for; `algorithms`: the crypto
    /// provider's signature verification algorithms.
    pub fn new(anchor_subjects: &[Vec<u8>], algorithms: WebPkiSupportedAlgorithms) -> Self {
        OptionalClientAuth {
            hints: anchor_subjects
                .iter()
                .map(|s| DistinguishedName::from(s.clone()))
                .collect(),
            algorithms,
        }
    }
}

/// The leaf's subjectPublicKeyInfo, DER, read without judging the certificate.
fn leaf_key(cert: &CertificateDer<'_>) -> Result<SubjectPublicKeyInfoDer<'static>, Error> {
    match X509Certificate::from_der(cert.as_ref()) {
        Ok(([], parsed)) => Ok(SubjectPublicKeyInfoDer::from(
            parsed.public_key().raw.to_vec(),
        )),
        _ => Err(Error::InvalidCertificate(CertificateError::BadEncoding)),
    }
}

impl ClientCertVerifier for OptionalClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    /// Deferred: the chain is judged per request; here only the leaf must be a certificate
    /// whose key can check the handshake signature.
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        leaf_key(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    /// TLS 1.2 names no curve in its ECDSA schemes: each algorithm of the scheme is tried, as
    /// `rustls::crypto::verify_tls12_signature` does with a parsed certificate.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let spki = leaf_key(cert)?;
        let key = webpki::RawPublicKeyEntity::try_from(&spki)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algorithms)| *algorithms)
            .ok_or(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
        if candidates
            .iter()
            .any(|alg| key.verify_signature(*alg, message, dss.signature()).is_ok())
        {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::BadSignature))
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let spki = leaf_key(cert)?;
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
