//! OCSP requests (RFC 6960 §4.1.1) as a responder receives them: what pkid reads of an
//! OCSPRequest ([`parse_ocsp_request`]: its CertIDs, one issuer and at most 20, and its nonce,
//! RFC 8954), with the strict DER reader of `super::der`. Any error is answered
//! `malformedRequest`; the responses are built in [`super::ocsp`].

use super::der::expect;

/// The hash of a CertID's issuer name and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

/// One CertID (RFC 6960 §4.1.1).
#[derive(Debug, Clone)]
pub struct CertId {
    /// The whole CertID as received: responses echo it.
    pub der: Vec<u8>,
    pub hash: HashAlg,
    pub name_hash: Vec<u8>,
    pub key_hash: Vec<u8>,
    /// The serial number's content octets without leading zero bytes.
    pub serial: Vec<u8>,
}

/// What pkid reads of an RFC 6960 OCSPRequest: its CertIDs (one issuer, at most 20) and nonce.
#[derive(Debug, Clone)]
pub struct OcspRequest {
    pub cert_ids: Vec<CertId>,
    pub nonce: Option<Vec<u8>>,
}

const MAX_CERT_IDS: usize = 20;
/// The content octets of the CertID hash algorithms' OIDs: SHA-1 (1.3.14.3.2.26) and SHA-256
/// (2.16.840.1.101.3.4.2.1).
pub const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
pub const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];

/// `CertID ::= SEQUENCE { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber }` at the
/// start of `der` (RFC 6960 §4.1.1).
pub fn parse_cert_id(der: &[u8]) -> Result<CertId, String> {
    let (cert_id, _) = expect(der, 0x30)?;
    let (alg, r) = expect(cert_id.content, 0x30)?;
    let (oid, _) = expect(alg.content, 0x06)?;
    let hash = match oid.content {
        OID_SHA1 => HashAlg::Sha1,
        OID_SHA256 => HashAlg::Sha256,
        _ => return Err("unsupported CertID hash algorithm".into()),
    };
    let (name_hash, r) = expect(r, 0x04)?;
    let (key_hash, r) = expect(r, 0x04)?;
    let (serial, _) = expect(r, 0x02)?;
    if serial.content.is_empty() || serial.content.len() > 21 {
        return Err("bad serial number".into());
    }
    Ok(CertId {
        der: cert_id.whole.to_vec(),
        hash,
        name_hash: name_hash.content.to_vec(),
        key_hash: key_hash.content.to_vec(),
        serial: serial
            .content
            .iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect(),
    })
}

/// Parse a DER OCSPRequest (RFC 6960 §4.1.1); any error is answered `malformedRequest`.
pub fn parse_ocsp_request(der: &[u8]) -> Result<OcspRequest, String> {
    let (request, trailing) = expect(der, 0x30)?;
    if !trailing.is_empty() {
        return Err("trailing data".into());
    }
    // optionalSignature after tbsRequest is ignored: pkid answers unsigned requests.
    let (tbs, _) = expect(request.content, 0x30)?;
    let mut rest = tbs.content;
    // version [0] and requestorName [1] are optional and ignored.
    for optional in [0xa0u8, 0xa1] {
        if rest.first() == Some(&optional) {
            rest = expect(rest, optional)?.1;
        }
    }
    let (list, after_list) = expect(rest, 0x30)?;
    let mut list = list.content;
    let mut cert_ids = Vec::new();
    while !list.is_empty() {
        let (single, next) = expect(list, 0x30)?;
        list = next;
        cert_ids.push(parse_cert_id(single.content)?);
        if cert_ids.len() > MAX_CERT_IDS {
            return Err("too many certificates in one request".into());
        }
    }
    if cert_ids.is_empty() {
        return Err("no certificate in the request".into());
    }
    let mut nonce = None;
    if after_list.first() == Some(&0xa2) {
        let (exts, _) = expect(after_list, 0xa2)?;
        let (exts, _) = expect(exts.content, 0x30)?;
        let mut exts = exts.content;
        while !exts.is_empty() {
            let (ext, next) = expect(exts, 0x30)?;
            exts = next;
            let (oid, r) = expect(ext.content, 0x06)?;
            let r = if r.first() == Some(&0x01) {
                expect(r, 0x01)?.1
            } else {
                r
            };
            let (value, _) = expect(r, 0x04)?;
            if oid.content == OID_NONCE {
                if value.content.is_empty() || value.content.len() > 128 {
                    return Err("bad nonce length".into());
                }
                nonce = Some(value.content.to_vec());
            }
        }
    }
    Ok(OcspRequest { cert_ids, nonce })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for input in [
            &b""[..],
            b"\x30",
            b"\x30\x80",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01\x00",
            b"\x04\x00",
        ] {
            assert!(parse_ocsp_request(input).is_err());
        }
    }
}
