//! JWS request bodies (RFC 8555 §6.2) and JWKs: `Jws::parse`, then for an embedded key
//! `check_public_key`, `thumbprint` and a signature check, as every JWS-signed request runs them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pkid::identity::jws::{check_public_key, thumbprint, Jws, KeyRef};

fuzz_target!(|data: &[u8]| {
    if let Ok(jws) = Jws::parse(data) {
        if let KeyRef::Jwk(jwk) = &jws.key {
            let _ = check_public_key(jwk);
            let _ = thumbprint(jwk);
            let _ = jws.verify(jwk);
        }
        let _ = jws.json_payload::<serde_json::Value>();
    }
    // The same bytes as a bare JWK (keyChange's inner key, a stored account key).
    if let Ok(serde_json::Value::Object(jwk)) = serde_json::from_slice(data) {
        let _ = check_public_key(&jwk);
        let _ = thumbprint(&jwk);
    }
});
