//! The DER a token's keys and signatures need (PKCS#11 v2.40 §2.3.3, RFC 5480, RFC 3279): curve
//! and algorithm OIDs, the sizes of coordinates and moduli, `CKA_EC_POINT` as an uncompressed
//! point, and the token's raw ECDSA `r ‖ s` as the X.509 `Ecdsa-Sig-Value`.

use crate::local::der;
use crate::KeyAlgorithm;

/// id-ecPublicKey (RFC 5480 §2.1.1), secp256r1 and secp384r1 (§2.1.1.1), rsaEncryption
/// (RFC 8017 appendix A.1).
pub(super) const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
pub(super) const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
pub(super) const OID_P384: &[u64] = &[1, 3, 132, 0, 34];
pub(super) const OID_RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
pub(super) const DER_NULL: &[u8] = &[0x05, 0x00];
pub(super) const RSA_PUBLIC_EXPONENT: &[u8] = &[0x01, 0x00, 0x01];

pub(super) fn curve_oid(alg: KeyAlgorithm) -> &'static [u64] {
    match alg {
        KeyAlgorithm::EcdsaP384 => OID_P384,
        _ => OID_P256,
    }
}

/// Bytes of one ECDSA coordinate (and of r and s).
pub(super) fn coordinate_len(alg: KeyAlgorithm) -> usize {
    match alg {
        KeyAlgorithm::EcdsaP384 => 48,
        _ => 32,
    }
}

pub(super) fn rsa_modulus_len(alg: KeyAlgorithm) -> usize {
    match alg {
        KeyAlgorithm::Rsa3072 => 384,
        KeyAlgorithm::Rsa4096 => 512,
        _ => 256,
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); some tokens
/// give the bare point. Either way, the uncompressed point `04 ‖ X ‖ Y`.
pub(super) fn uncompressed_point(value: &[u8], coordinate_len: usize) -> Option<&[u8]> {
    let len = 1 + 2 * coordinate_len;
    let point = match value {
        [0x04, l, rest @ ..] if usize::from(*l) == len && rest.len() == len => rest,
        bare if bare.len() == len => bare,
        _ => return None,
    };
    (point.first() == Some(&0x04)).then_some(point)
}

/// The token's raw `r ‖ s` as `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
pub(super) fn ecdsa_raw_to_der(raw: &[u8], coordinate_len: usize) -> Option<Vec<u8>> {
    if raw.len() != 2 * coordinate_len {
        return None;
    }
    let (r, s) = raw.split_at(coordinate_len);
    Some(der::sequence(&[
        &der::unsigned_integer(r),
        &der::unsigned_integer(s),
    ]))
}
