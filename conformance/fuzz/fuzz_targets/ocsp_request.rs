//! DER OCSP requests (RFC 6960 §4.1.1) as the responder receives them: `parse_ocsp_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pkid_backends::local::ocsp_request::parse_ocsp_request(data);
});
