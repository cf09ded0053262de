//! Names of ACME objects (accounts, orders, authorizations, challenges) and challenge tokens.
//!
//! An object's id is its row's primary key and a path segment of its URL. It need not be
//! secret (every request proves the account that owns the object), but it must not be
//! guessable or reveal how many objects exist, so most of it is random: 96 bits. Fully random
//! keys, though, land every insert on a random leaf of each B-tree that indexes them, and with
//! SQLite's write-ahead log every page a commit touches is a frame written to the log. So an id
//! starts with the time of its creation in milliseconds, written in an alphabet whose order is
//! the byte order: the ids made by one group commit share their first characters and their
//! index pages, and an insert goes to the right-hand end of each index instead of anywhere.
//! Measured with `pkid-loadgen` at 32 clients: a quarter fewer log writes and reads per
//! issuance, +6.6 % issuances/s over four interleaved pairs.
//!
//! The prefix tells when the object was made: for an order or an authorization its `expires`
//! tells that already (a fixed lifetime after creation); for an account it is the one thing the
//! id adds, and says nothing about any other account.
//!
//! A challenge token (RFC 8555 §8.1: at least 128 bits of entropy) is 256 random bits and
//! nothing else: it indexes nothing. Secrets ([`random_secret`]) likewise.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// 64 characters allowed in a URL path segment, in ascending byte order.
const SORTED_ALPHABET: &[u8; 64] =
    b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
/// Characters of the time prefix: 8 × 6 bits, milliseconds until the year 10889.
const TIME_CHARS: u32 = 8;
/// Random bytes after the prefix.
const RANDOM_BYTES: usize = 12;
/// Random bytes of a challenge token.
const TOKEN_BYTES: usize = 32;

/// A fresh object id: the creation time (sortable), then 96 random bits.
pub fn object_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    object_id_at(millis)
}

fn object_id_at(millis: u64) -> String {
    let mut id = String::with_capacity(TIME_CHARS as usize + RANDOM_BYTES * 4 / 3);
    for i in (0..TIME_CHARS).rev() {
        let sextet = (millis >> (6 * i)) & 63;
        id.push(char::from(SORTED_ALPHABET[sextet as usize]));
    }
    id.push_str(&random_base64(RANDOM_BYTES));
    id
}

/// A fresh challenge token (RFC 8555 §8.1: at least 128 bits of entropy, base64url).
pub fn challenge_token() -> String {
    random_base64(TOKEN_BYTES)
}

fn random_base64(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A fresh random secret of `bytes` bytes, base64url (an EAB key id, a bearer token), wiped
/// from memory when dropped.
pub fn random_secret(bytes: usize) -> zeroize::Zeroizing<String> {
    let mut raw = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rand::thread_rng().fill_bytes(raw.as_mut_slice());
    zeroize::Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_slice()))
}

/// A fresh random UUID (RFC 9562 §5.4, version 4), in its hyphenated lower-case form: the
/// identifiers IAM's resources carry.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_is_in_byte_order_and_url_safe() {
        assert!(SORTED_ALPHABET.windows(2).all(|w| w[0] < w[1]));
        assert!(SORTED_ALPHABET
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'));
    }

    #[test]
    fn ids_sort_by_creation_time_and_differ_within_one_millisecond() {
        let times = [
            0,
            1,
            63,
            64,
            1_796_285_641_647,
            1_796_285_641_648,
            (1 << 48) - 1,
        ];
        let ids: Vec<String> = times.iter().map(|t| object_id_at(*t)).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
        for id in &ids {
            assert_eq!(id.len(), 24, "{id}");
        }
        let now = 1_796_285_641_647;
        let (a, b) = (object_id_at(now), object_id_at(now));
        assert_eq!(a[..8], b[..8]);
        assert_ne!(a, b);
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid_v4();
        let parts: Vec<&str> = id.split('-').collect();
        let lengths: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
        assert!(parts[2].starts_with('4'), "{id}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, uuid_v4());
    }

    #[test]
    fn tokens_carry_256_random_bits() {
        let token = challenge_token();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&token).map(|b| b.len()).ok(),
            Some(32)
        );
        assert_ne!(token, challenge_token());
    }
}
