//! Certificate signing requests as finalize receives them (RFC 8555 §7.4): `check_csr`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pkid::pki::csr::check_csr(data);
});
