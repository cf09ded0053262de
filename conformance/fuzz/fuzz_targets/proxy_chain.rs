//! RFC 3820 proxy files as a user uploads them (`pkid::pki::proxy::parse_bundle`: PEM blocks, the
//! private key, then every proxy rule over the chain), and raw DER chains
//! (`pkid::pki::proxy::check_chain`) cut from the input by two-byte length prefixes.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// A fixed time, 2100-01-01, inside the seed corpus's century of validity (`make-corpus`), so
/// that a crash replays the same way.
const AT: i64 = 4_102_444_800;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = pkid::pki::proxy::parse_bundle(text, AT);
        }
        return;
    }
    let mut chain = Vec::new();
    let mut input = rest;
    while input.len() >= 2 && chain.len() < 20 {
        let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
        let take = len.min(input.len() - 2);
        chain.push(input[2..2 + take].to_vec());
        input = &input[2 + take..];
    }
    let _ = pkid::pki::proxy::check_chain(&chain, AT);
});
