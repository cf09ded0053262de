//! OCSP responses (RFC 6960 §4.2), built and signed over a [`KeySigner`] like certificates and
//! CRLs, so software and PKCS#11 keys sign them the same way.
//!
//! The caller (pkid's responder) parses requests and decides each status; this module only lays
//! out `BasicOCSPResponse`: responder id by key hash, each `CertID` echoed byte for byte, the
//! nonce extension echoed (RFC 8954), and the signature.

use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::keys::KeySigner;
use crate::local::builder::{signature_algorithm_der, verify_signature, IssuerInfo};
use crate::local::der;
use crate::{BackendError, RevocationReason};

/// id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1
const OID_OCSP_BASIC: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 1];
/// id-pkix-ocsp-nonce, 1.3.6.1.5.5.7.48.1.2
const OID_OCSP_NONCE: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 2];
/// id-ce-invalidityDate, 2.5.29.24
const OID_INVALIDITY_DATE: &[u64] = &[2, 5, 29, 24];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OcspCertStatus {
    Good,
    Revoked {
        at: OffsetDateTime,
        reason: Option<RevocationReason>,
        /// RFC 5280 §5.3.2, sent as a singleExtension (RFC 6960 §4.4.5: CRL entry extensions
        /// are supported as singleExtensions).
        invalidity_date: Option<OffsetDateTime>,
    },
    Unknown,
}

#[derive(Clone, Debug)]
pub struct OcspSingleResponse {
    /// The request's `CertID`, DER, echoed unchanged.
    pub cert_id_der: Vec<u8>,
    pub status: OcspCertStatus,
    pub this_update: OffsetDateTime,
    pub next_update: Option<OffsetDateTime>,
}

#[derive(Clone, Debug)]
pub struct OcspResponseRequest {
    pub produced_at: OffsetDateTime,
    pub responses: Vec<OcspSingleResponse>,
    /// The contents of the request's nonce extension value, echoed unchanged.
    pub nonce: Option<Vec<u8>>,
}

/// `OCSPResponseStatus` values other than `successful` (RFC 6960 §4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspError {
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    Unauthorized = 6,
}

/// An unsigned error response: `OCSPResponse { responseStatus }`.
pub fn error_response(status: OcspError) -> Vec<u8> {
    der::sequence(&[&der::tlv(0x0a, &[status as u8])])
}

fn generalized_time(t: OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let s = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    der::tlv(0x18, s.as_bytes())
}

/// SHA-1 of the subjectPublicKey BIT STRING's value: the responder id `byKey` and the
/// `issuerKeyHash` of SHA-1 CertIDs.
pub fn key_hash_sha1(spki_der: &[u8]) -> Result<Vec<u8>, BackendError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| BackendError::Build(format!("responder public key: {e}")))?;
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &spki.subject_public_key.data,
    );
    Ok(digest.as_ref().to_vec())
}

/// The `ResponseData` to be signed.
pub fn build_response_data(
    req: &OcspResponseRequest,
    responder_spki: &[u8],
) -> Result<Vec<u8>, BackendError> {
    // ResponderID ::= CHOICE { byName [1], byKey [2] KeyHash } — explicit tagging.
    let responder_id = der::tlv(0xa2, &der::tlv(0x04, &key_hash_sha1(responder_spki)?));
    let mut singles = Vec::new();
    for single in &req.responses {
        let mut single_extensions = None;
        let status = match &single.status {
            OcspCertStatus::Good => der::tlv(0x80, &[]),
            OcspCertStatus::Unknown => der::tlv(0x82, &[]),
            OcspCertStatus::Revoked {
                at,
                reason,
                invalidity_date,
            } => {
                if let Some(invalidity) = invalidity_date {
                    let ext = der::sequence(&[
                        &der::oid(OID_INVALIDITY_DATE),
                        &der::tlv(0x04, &generalized_time(*invalidity)),
                    ]);
                    single_extensions = Some(der::tlv(0xa1, &der::tlv(der::SEQUENCE, &ext)));
                }
                let mut info = generalized_time(*at);
                if let Some(reason) = reason {
                    info.extend(der::tlv(0xa0, &der::tlv(0x0a, &[reason.code()])));
                }
                der::tlv(0xa1, &info)
            }
        };
        let mut body = single.cert_id_der.clone();
        body.extend(status);
        body.extend(generalized_time(single.this_update));
        if let Some(next) = single.next_update {
            body.extend(der::tlv(0xa0, &generalized_time(next)));
        }
        if let Some(extensions) = single_extensions {
            body.extend(extensions);
        }
        singles.extend(der::tlv(der::SEQUENCE, &body));
    }
    let mut data = responder_id;
    data.extend(generalized_time(req.produced_at));
    data.extend(der::tlv(der::SEQUENCE, &singles));
    if let Some(nonce) = &req.nonce {
        let ext = der::sequence(&[&der::oid(OID_OCSP_NONCE), &der::tlv(0x04, nonce)]);
        data.extend(der::tlv(0xa1, &der::tlv(der::SEQUENCE, &ext)));
    }
    Ok(der::tlv(der::SEQUENCE, &data))
}

/// A signed, successful `OCSPResponse`. `certs` are added to the response (a delegated
/// responder's certificate); an issuer signing for itself sends none. Blocking.
pub fn build_ocsp_response(
    req: &OcspResponseRequest,
    signer: &dyn KeySigner,
    certs: &[Vec<u8>],
) -> Result<Vec<u8>, BackendError> {
    let tbs = build_response_data(req, signer.public_key_der())?;
    let signature = signer.sign(&tbs)?;
    verify_signature(
        &tbs,
        signer.algorithm(),
        &signature,
        signer.public_key_der(),
    )
    .map_err(|_| BackendError::Mismatch("the OCSP response signature does not verify".into()))?;
    let mut basic = tbs;
    basic.extend(signature_algorithm_der(signer.algorithm()));
    basic.extend(der::bit_string(&signature));
    if !certs.is_empty() {
        basic.extend(der::tlv(0xa0, &der::tlv(der::SEQUENCE, &certs.concat())));
    }
    let basic = der::tlv(der::SEQUENCE, &basic);
    let response_bytes = der::sequence(&[&der::oid(OID_OCSP_BASIC), &der::tlv(0x04, &basic)]);
    Ok(der::sequence(&[
        &der::tlv(0x0a, &[0]),
        &der::tlv(0xa0, &response_bytes),
    ]))
}

/// Sign for an issuer with its own key (no delegated responder certificate).
pub fn build_ocsp_response_by_issuer(
    req: &OcspResponseRequest,
    issuer: &IssuerInfo,
) -> Result<Vec<u8>, BackendError> {
    build_ocsp_response(req, issuer.key.as_ref(), &[])
}
