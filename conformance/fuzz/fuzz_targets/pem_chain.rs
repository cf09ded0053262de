//! PEM certificate chains (`ca.alternate_chains` files, stored HSM chains, upstream ACME and
//! CFSSL answers): `pem_certificates`, then each certificate parsed as X.509.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(chain) = pkid_backends::pem_certificates(text) {
        for der in chain {
            let _ = x509_parser::parse_x509_certificate(&der);
        }
    }
});
