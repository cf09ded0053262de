//! A tiny DER (X.690 §10) writer: just enough to assemble a signed certificate or CRL around a
//! to-be-signed structure and to encode the few extensions rcgen does not know; and a small
//! strict reader ([`read_tlv`], [`expect`]) for what pkid parses by hand (OCSP requests, see
//! [`super::ocsp_request`]). Public: pkid builds RFC 3820 proxy certificates with it too.

pub const SEQUENCE: u8 = 0x30;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OID: u8 = 0x06;
/// `[6] IMPLICIT IA5String`: a GeneralName uniformResourceIdentifier.
pub const URI: u8 = 0x86;

/// The size of a whole element whose contents are `content_len` bytes (one-byte tag).
pub fn encoded_len(content_len: usize) -> usize {
    let length_octets = if content_len < 0x80 {
        1
    } else {
        1 + (usize::BITS - content_len.leading_zeros()).div_ceil(8) as usize
    };
    1 + length_octets + content_len
}

/// Appends a tag and a definite-form length; the caller appends `len` bytes of contents.
pub fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    push_len(out, len);
}

/// Appends a definite-form length.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let significant = &bytes[skip..];
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

/// One tag-length-value.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already-encoded elements.
pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// A non-negative INTEGER from big-endian magnitude bytes: leading zeros stripped, one 0x00
/// prepended when the high bit is set (X.690 §8.3 minimal two's complement).
pub fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len());
    let significant = &magnitude[start..];
    let mut content = Vec::with_capacity(significant.len() + 1);
    if significant.first().is_none_or(|b| *b >= 0x80) {
        content.push(0);
    }
    content.extend_from_slice(significant);
    tlv(INTEGER, &content)
}

/// A BIT STRING with no unused bits.
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(BIT_STRING, &content)
}

/// An OBJECT IDENTIFIER from its arcs (the first two must be 0..=2 and 0..=39, as all ours are).
pub fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    if let [first, second, rest @ ..] = arcs {
        push_base128(&mut content, first * 40 + second);
        for arc in rest {
            push_base128(&mut content, *arc);
        }
    }
    tlv(OID, &content)
}

/// The arcs of a dotted OID ("2.23.140.1.2.1"); `None` unless it has at least two arcs, the first
/// 0..=2 and, under 0 and 1, the second 0..=39 (X.660).
pub fn parse_dotted_oid(dotted: &str) -> Option<Vec<u64>> {
    let arcs = dotted
        .split('.')
        .map(|arc| {
            if arc.is_empty() || !arc.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            arc.parse::<u64>().ok()
        })
        .collect::<Option<Vec<u64>>>()?;
    let well_formed = match arcs.as_slice() {
        [0 | 1, second, ..] => *second <= 39,
        // The first two arcs share one subidentifier, 2 * 40 + second.
        [2, second, ..] => *second <= u64::MAX - 80,
        _ => false,
    };
    well_formed.then_some(arcs)
}

fn push_base128(out: &mut Vec<u8>, mut value: u64) {
    let mut groups = vec![(value & 0x7f) as u8];
    value >>= 7;
    while value > 0 {
        groups.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.extend(groups.iter().rev());
}

// ---- Reading ----

/// One DER element: its tag, its contents, and its whole encoding.
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub whole: &'a [u8],
}

/// Read one element; returns it and the bytes after it.
pub fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated")?;
    if tag & 0x1f == 0x1f {
        return Err("multi-byte tags are not used in OCSP".into());
    }
    let (&first, rest) = rest.split_first().ok_or("truncated length")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad length".into());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 || rest[0] == 0 {
            return Err("length is not minimally encoded".into());
        }
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("truncated content".into());
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        content: &rest[..len],
        whole: &input[..header + len],
    };
    Ok((tlv, &rest[len..]))
}

/// Read one element that must carry `tag`.
pub fn expect(input: &[u8], tag: u8) -> Result<(Tlv<'_>, &[u8]), String> {
    let (tlv, rest) = read_tlv(input)?;
    if tlv.tag != tag {
        return Err(format!("expected tag {tag:#04x}, found {:#04x}", tlv.tag));
    }
    Ok((tlv, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_shortest_form() {
        assert_eq!(tlv(0x04, &[]), vec![0x04, 0x00]);
        assert_eq!(tlv(0x04, &[0; 127])[..2], [0x04, 0x7f]);
        assert_eq!(tlv(0x04, &[0; 128])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(tlv(0x04, &[0; 256])[..4], [0x04, 0x82, 0x01, 0x00]);
        assert_eq!(tlv(0x04, &[0; 70000])[..5], [0x04, 0x83, 0x01, 0x11, 0x70]);
    }

    #[test]
    fn encoded_len_matches_the_encoding() {
        for len in [0, 1, 127, 128, 255, 256, 65535, 65536, 70000, 20_000_000] {
            assert_eq!(encoded_len(len), tlv(0x04, &vec![0; len]).len(), "{len}");
        }
    }

    #[test]
    fn unsigned_integers_are_minimal_and_positive() {
        assert_eq!(unsigned_integer(&[]), vec![0x02, 0x01, 0x00]);
        assert_eq!(unsigned_integer(&[0, 0]), vec![0x02, 0x01, 0x00]);
        assert_eq!(unsigned_integer(&[0x00, 0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(unsigned_integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(
            unsigned_integer(&[0x00, 0x00, 0x01, 0x00, 0x01]),
            vec![0x02, 0x03, 0x01, 0x00, 0x01]
        );
    }

    #[test]
    fn dotted_oids_parse_only_when_well_formed() {
        assert_eq!(
            parse_dotted_oid("2.23.140.1.2.1"),
            Some(vec![2, 23, 140, 1, 2, 1])
        );
        assert_eq!(
            parse_dotted_oid("1.3.6.1.4.1.99999.1"),
            Some(vec![1, 3, 6, 1, 4, 1, 99999, 1])
        );
        for bad in [
            "",
            "2",
            "3.1",
            "1.40",
            "1..2",
            "1.2.",
            "1.2.x",
            "+1.2",
            "1.2.-3",
            "1.2.99999999999999999999",
        ] {
            assert_eq!(parse_dotted_oid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn oids_encode_like_openssl() {
        // id-pe-tlsfeature 1.3.6.1.5.5.7.1.24
        assert_eq!(
            oid(&[1, 3, 6, 1, 5, 5, 7, 1, 24]),
            vec![0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x18]
        );
        // ecdsa-with-SHA256 1.2.840.10045.4.3.2
        assert_eq!(
            oid(&[1, 2, 840, 10045, 4, 3, 2]),
            vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        );
    }
}
