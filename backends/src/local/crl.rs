//! CRLs (RFC 5280 §5) over a [`crate::KeySigner`]: the `TBSCertList` is written directly as DER into
//! one buffer sized in advance, so a CRL of a million entries costs about its own size in memory
//! and one pass to write (rcgen's builder keeps several copies per entry).
//!
//! Each CRL is version 2 with the authorityKeyIdentifier and cRLNumber extensions (§5.2.1,
//! §5.2.3); a shard of a partitioned CRL also carries a critical issuingDistributionPoint naming
//! the shard's URL (§5.2.5), which is what certificates of that shard name as their CRL
//! distribution point. A delta CRL (§5.2.4) carries a critical deltaCRLIndicator naming its base,
//! and a complete CRL with deltas names them in freshestCRL (§5.2.6). Entries carry a reasonCode (§5.3.1, left out when unspecified) and an
//! invalidityDate (§5.3.2) when given. The signed CRL's signature is verified under the issuer's
//! public key before it is returned, so a wrong key (a swapped token object, say) is caught.

use time::OffsetDateTime;

use crate::local::builder::{check_serial, signature_algorithm_der, verify_signature, IssuerInfo};
use crate::local::der;
use crate::{BackendError, CrlRequest, RevocationReason, RevokedEntry};

/// id-ce-cRLNumber, id-ce-reasonCode, id-ce-invalidityDate, id-ce-issuingDistributionPoint,
/// id-ce-authorityKeyIdentifier (RFC 5280 §4.2.1.1, §5.2, §5.3), content octets.
const OID_CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14];
const OID_REASON_CODE: &[u8] = &[0x55, 0x1d, 0x15];
const OID_INVALIDITY_DATE: &[u8] = &[0x55, 0x1d, 0x18];
const OID_DELTA_CRL_INDICATOR: &[u8] = &[0x55, 0x1d, 0x1b];
const OID_ISSUING_DISTRIBUTION_POINT: &[u8] = &[0x55, 0x1d, 0x1c];
const OID_FRESHEST_CRL: &[u8] = &[0x55, 0x1d, 0x2e];
const OID_AUTHORITY_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 0x23];

const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const OCTET_STRING: u8 = 0x04;
const ENUMERATED: u8 = 0x0a;
/// `[0]` constructed: crlExtensions, IDP's distributionPoint and its fullName.
const CONTEXT_0: u8 = 0xa0;
/// `[1] IMPLICIT BOOLEAN`: IDP's onlyContainsUserCerts.
const ONLY_USER_CERTS: u8 = 0x81;
/// A critical extension's `critical BOOLEAN TRUE`.
const CRITICAL: &[u8] = &[0x01, 0x01, 0xff];

/// `Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE, extnValue OCTET STRING }`.
fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut content = der::tlv(der::OID, oid);
    if critical {
        content.extend_from_slice(CRITICAL);
    }
    content.extend(der::tlv(OCTET_STRING, value));
    der::tlv(der::SEQUENCE, &content)
}

/// RFC 5280 §5.1.2.4/§5.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
fn time_tag(t: OffsetDateTime) -> u8 {
    if (1950..2050).contains(&t.year()) {
        UTC_TIME
    } else {
        GENERALIZED_TIME
    }
}

fn time_len(tag: u8) -> usize {
    if tag == UTC_TIME {
        15
    } else {
        17
    }
}

fn push_digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = [b'0'; 4];
    let mut v = value;
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// Appends `t` (UTC, whole seconds) as UTCTime or GeneralizedTime, as `tag` says.
fn push_time(out: &mut Vec<u8>, tag: u8, t: OffsetDateTime) {
    let t = t.to_offset(time::UtcOffset::UTC);
    der::push_header(out, tag, time_len(tag) - 2);
    if tag == UTC_TIME {
        push_digits(out, (t.year().rem_euclid(100)) as u32, 2);
    } else {
        push_digits(out, t.year().clamp(0, 9999) as u32, 4);
    }
    for part in [
        u32::from(u8::from(t.month())),
        u32::from(t.day()),
        u32::from(t.hour()),
        u32::from(t.minute()),
        u32::from(t.second()),
    ] {
        push_digits(out, part, 2);
    }
    out.push(b'Z');
}

fn time(t: OffsetDateTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    push_time(&mut out, time_tag(t), t);
    out
}

/// Content length of the DER INTEGER of a positive serial (already checked, so non-empty).
fn serial_content_len(serial: &[u8]) -> usize {
    serial.len() + usize::from(serial.first().is_some_and(|b| *b >= 0x80))
}

/// The entry's reasonCode, if one is written (unspecified is left out, §5.3.1).
fn written_reason(entry: &RevokedEntry) -> Option<RevocationReason> {
    entry.reason.filter(|r| *r != RevocationReason::Unspecified)
}

/// Sizes of one entry: (contents of its crlEntryExtensions SEQUENCE, contents of the entry).
fn entry_lengths(entry: &RevokedEntry) -> (usize, usize) {
    // SEQUENCE { OID (5), OCTET STRING { ENUMERATED (3) } (5) }: 12 bytes;
    // SEQUENCE { OID (5), OCTET STRING { GeneralizedTime (17) } (19) }: 26 bytes.
    let reason = if written_reason(entry).is_some() {
        12
    } else {
        0
    };
    let invalidity = if entry.invalidity_date.is_some() {
        26
    } else {
        0
    };
    let extensions = reason + invalidity;
    let serial = der::encoded_len(serial_content_len(entry.serial.normalized()));
    let revoked_at = time_len(time_tag(entry.revoked_at));
    let mut content = serial + revoked_at;
    if extensions > 0 {
        content += der::encoded_len(extensions);
    }
    (extensions, content)
}

fn push_entry(out: &mut Vec<u8>, entry: &RevokedEntry) {
    let (extensions, content) = entry_lengths(entry);
    der::push_header(out, der::SEQUENCE, content);
    let serial = entry.serial.normalized();
    der::push_header(out, der::INTEGER, serial_content_len(serial));
    if serial.first().is_some_and(|b| *b >= 0x80) {
        out.push(0);
    }
    out.extend_from_slice(serial);
    push_time(out, time_tag(entry.revoked_at), entry.revoked_at);
    if extensions == 0 {
        return;
    }
    der::push_header(out, der::SEQUENCE, extensions);
    if let Some(reason) = written_reason(entry) {
        out.extend_from_slice(&[0x30, 0x0a, der::OID, 0x03]);
        out.extend_from_slice(OID_REASON_CODE);
        out.extend_from_slice(&[OCTET_STRING, 0x03, ENUMERATED, 0x01, reason.code()]);
    }
    if let Some(invalidity) = entry.invalidity_date {
        out.extend_from_slice(&[0x30, 0x18, der::OID, 0x03]);
        out.extend_from_slice(OID_INVALIDITY_DATE);
        out.extend_from_slice(&[OCTET_STRING, 0x11]);
        push_time(out, GENERALIZED_TIME, invalidity);
    }
}

/// `distributionPoint [0] DistributionPointName` holding `fullName [0]` with one URI.
fn distribution_point_name(url: &str) -> Vec<u8> {
    let general_names = der::tlv(der::URI, url.as_bytes());
    let full_name = der::tlv(CONTEXT_0, &general_names);
    der::tlv(CONTEXT_0, &full_name)
}

/// `IssuingDistributionPoint` (§5.2.5) naming one URL, for end-entity certificates only.
fn issuing_distribution_point(url: &str) -> Vec<u8> {
    let mut idp = distribution_point_name(url);
    idp.extend_from_slice(&[ONLY_USER_CERTS, 0x01, 0xff]);
    der::tlv(der::SEQUENCE, &idp)
}

/// `FreshestCRL ::= CRLDistributionPoints` (§5.2.6) with one distribution point.
fn freshest_crl(url: &str) -> Vec<u8> {
    let point = der::tlv(der::SEQUENCE, &distribution_point_name(url));
    der::tlv(der::SEQUENCE, &point)
}

/// The `crlExtensions [0]` of a CRL.
fn crl_extensions(req: &CrlRequest, key_id: &[u8]) -> Vec<u8> {
    let aki = der::sequence(&[&der::tlv(0x80, key_id)]);
    let mut extensions = extension(OID_AUTHORITY_KEY_IDENTIFIER, false, &aki);
    extensions.extend(extension(
        OID_CRL_NUMBER,
        false,
        &der::unsigned_integer(&req.crl_number.to_be_bytes()),
    ));
    if let Some(url) = &req.issuing_distribution_point {
        extensions.extend(extension(
            OID_ISSUING_DISTRIBUTION_POINT,
            true,
            &issuing_distribution_point(url),
        ));
    }
    if let Some(base) = req.delta_crl_indicator {
        extensions.extend(extension(
            OID_DELTA_CRL_INDICATOR,
            true,
            &der::unsigned_integer(&base.to_be_bytes()),
        ));
    }
    if let Some(url) = &req.freshest_crl {
        extensions.extend(extension(OID_FRESHEST_CRL, false, &freshest_crl(url)));
    }
    der::tlv(CONTEXT_0, &der::tlv(der::SEQUENCE, &extensions))
}

/// Room left before the TBS for the CertificateList's own header (tag + at most 5 length bytes).
const OUTER_HEADER_ROOM: usize = 6;

/// The CertificateList's buffer: `OUTER_HEADER_ROOM` spare bytes, then the TBSCertList (§5.1).
fn write_tbs(req: &CrlRequest, issuer: &IssuerInfo) -> Result<Vec<u8>, BackendError> {
    if req.next_update <= req.this_update {
        return Err(BackendError::Build(
            "nextUpdate must be later than thisUpdate".into(),
        ));
    }
    let mut entries_len = 0usize;
    for entry in &req.entries {
        check_serial(&entry.serial)?;
        entries_len += der::encoded_len(entry_lengths(entry).1);
    }
    let version = [der::INTEGER, 0x01, 0x01];
    let algorithm = signature_algorithm_der(issuer.key.algorithm());
    let issuer_name = issuer.subject_der()?;
    let this_update = time(req.this_update);
    let next_update = time(req.next_update);
    let extensions = crl_extensions(req, &issuer.key_identifier()?);
    let revoked_len = if req.entries.is_empty() {
        0
    } else {
        der::encoded_len(entries_len)
    };
    let tbs_content = version.len()
        + algorithm.len()
        + issuer_name.len()
        + this_update.len()
        + next_update.len()
        + revoked_len
        + extensions.len();
    let tbs_len = der::encoded_len(tbs_content);
    // Room for the signature algorithm and a signature of up to 4096-bit RSA after the TBS.
    let mut out = Vec::with_capacity(OUTER_HEADER_ROOM + tbs_len + algorithm.len() + 1024);
    out.resize(OUTER_HEADER_ROOM, 0);
    der::push_header(&mut out, der::SEQUENCE, tbs_content);
    out.extend_from_slice(&version);
    out.extend_from_slice(&algorithm);
    out.extend_from_slice(&issuer_name);
    out.extend_from_slice(&this_update);
    out.extend_from_slice(&next_update);
    if !req.entries.is_empty() {
        der::push_header(&mut out, der::SEQUENCE, entries_len);
        for entry in &req.entries {
            push_entry(&mut out, entry);
        }
    }
    out.extend_from_slice(&extensions);
    if out.len() != OUTER_HEADER_ROOM + tbs_len {
        return Err(BackendError::Build(format!(
            "CRL encoding: wrote {} bytes, sized {}",
            out.len() - OUTER_HEADER_ROOM,
            tbs_len
        )));
    }
    Ok(out)
}

/// The DER TBSCertList of `req` under `issuer` (what [`build_crl`] signs).
pub fn build_crl_tbs(req: &CrlRequest, issuer: &IssuerInfo) -> Result<Vec<u8>, BackendError> {
    let mut out = write_tbs(req, issuer)?;
    out.drain(..OUTER_HEADER_ROOM);
    Ok(out)
}

/// A signed DER CRL, its signature checked under the issuer's public key. Blocking (signs in
/// place); the TBS is written once and the CertificateList assembled around it in the same buffer.
pub fn build_crl(req: &CrlRequest, issuer: &IssuerInfo) -> Result<Vec<u8>, BackendError> {
    let mut out = write_tbs(req, issuer)?;
    let key = issuer.key.as_ref();
    let signature = key.sign(&out[OUTER_HEADER_ROOM..])?;
    verify_signature(
        &out[OUTER_HEADER_ROOM..],
        key.algorithm(),
        &signature,
        key.public_key_der(),
    )
    .map_err(|_| BackendError::Mismatch("the CRL's signature does not verify".into()))?;
    out.extend(signature_algorithm_der(key.algorithm()));
    out.extend(der::bit_string(&signature));
    let content = out.len() - OUTER_HEADER_ROOM;
    let mut header = Vec::with_capacity(OUTER_HEADER_ROOM);
    der::push_header(&mut header, der::SEQUENCE, content);
    let start = OUTER_HEADER_ROOM - header.len();
    out[start..OUTER_HEADER_ROOM].copy_from_slice(&header);
    out.drain(..start);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::Serial;

    fn utc(y: i32, m: u8, d: u8, h: u8, min: u8, sec: u8) -> OffsetDateTime {
        time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d)
            .unwrap()
            .with_hms(h, min, sec)
            .unwrap()
            .assume_utc()
    }

    #[test]
    fn times_follow_rfc_5280() {
        assert_eq!(time(utc(2026, 12, 2, 6, 7, 8)), b"\x17\x0d261202060708Z");
        assert_eq!(time(utc(2050, 1, 1, 0, 0, 0)), b"\x18\x0f20500101000000Z");
        let mut out = Vec::new();
        push_time(&mut out, GENERALIZED_TIME, utc(2026, 3, 4, 5, 6, 7));
        assert_eq!(out, b"\x18\x0f20260304050607Z");
    }

    #[test]
    fn entry_sizes_match_what_is_written() {
        let at = utc(2026, 12, 2, 6, 7, 8);
        for serial in [
            vec![0x01],
            vec![0x80, 0x01],
            vec![0x7f; 20],
            vec![0, 0, 0x42],
        ] {
            for reason in [
                None,
                Some(RevocationReason::Unspecified),
                Some(RevocationReason::KeyCompromise),
            ] {
                for invalidity_date in [None, Some(at)] {
                    let entry = RevokedEntry {
                        serial: Serial(serial.clone()),
                        revoked_at: at,
                        reason,
                        invalidity_date,
                    };
                    let mut out = Vec::new();
                    push_entry(&mut out, &entry);
                    assert_eq!(out.len(), der::encoded_len(entry_lengths(&entry).1));
                }
            }
        }
    }
}
