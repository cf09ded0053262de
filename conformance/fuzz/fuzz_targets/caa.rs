//! CAA records (RFC 8659 §4.1 wire format, RFC 8657 parameters) and their evaluation.
//!
//! Input: one byte of query options (bit 0: wildcard; bits 1-2: the validation method), then
//! records, each a length byte and that many bytes of RDATA.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pkid::va::{caa_permits, parse_caa_rdata, CaaQuery};

const METHODS: [&str; 4] = ["http-01", "dns-01", "tls-alpn-01", ""];

fuzz_target!(|data: &[u8]| {
    let Some((&options, mut rest)) = data.split_first() else {
        return;
    };
    let mut records = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        if let Ok(record) = parse_caa_rdata(&tail[..len]) {
            records.push(record);
        }
        rest = &tail[len..];
    }
    let query = CaaQuery {
        domain: "www.example.test",
        wildcard: options & 1 == 1,
        account_uri: "https://ca.example.test/acme/acct/1",
        method: METHODS[usize::from((options >> 1) & 3)],
    };
    let identities = ["pkid.test".to_owned(), "ca.example.test".to_owned()];
    let _ = caa_permits("example.test.", &records, &query, &identities);
});
