//! Unit tests of the JWS verifier and its keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use serde_json::json;

fn flattened(header: Value, payload: &[u8]) -> Vec<u8> {
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let body = URL_SAFE_NO_PAD.encode(payload);
    serde_json::to_vec(&json!({"protected": p, "payload": body, "signature": "AAAA"})).unwrap()
}

#[test]
fn rejects_general_serialization_and_unprotected_header() {
    let e = Jws::parse(br#"{"payload":"","signatures":[]}"#).unwrap_err();
    assert_eq!(e.acme_type(), "malformed");
    let mut body: Value = serde_json::from_slice(&flattened(
        json!({"alg":"ES256","kid":"k","nonce":"n","url":"u"}),
        b"",
    ))
    .unwrap();
    body["header"] = json!({"kid": "x"});
    let e = Jws::parse(&serde_json::to_vec(&body).unwrap()).unwrap_err();
    assert_eq!(e.acme_type(), "malformed");
}

#[test]
fn rejects_none_and_mac_algorithms() {
    for alg in ["none", "HS256", "ES512", "PS256"] {
        let e = Jws::parse(&flattened(
            json!({"alg": alg, "kid": "k", "nonce": "n", "url": "u"}),
            b"",
        ))
        .unwrap_err();
        assert_eq!(e.acme_type(), "badSignatureAlgorithm", "{alg}");
        assert!(
            matches!(e, JwsError::BadSignatureAlgorithm { algorithms, .. } if algorithms == ALLOWED_ALGS),
            "{alg}: the refusal lists the accepted algorithms"
        );
    }
}

#[test]
fn requires_exactly_one_of_jwk_and_kid() {
    let jwk = json!({"kty":"EC","crv":"P-256","x":"a","y":"b"});
    let e = Jws::parse(&flattened(
        json!({"alg":"ES256","kid":"k","jwk":jwk,"nonce":"n","url":"u"}),
        b"",
    ))
    .unwrap_err();
    assert_eq!(e.acme_type(), "malformed");
    let e = Jws::parse(&flattened(
        json!({"alg":"ES256","nonce":"n","url":"u"}),
        b"",
    ))
    .unwrap_err();
    assert_eq!(e.acme_type(), "malformed");
}

#[test]
fn rejects_padding_and_non_json() {
    assert_eq!(
        Jws::parse(b"not json").unwrap_err().acme_type(),
        "malformed"
    );
    let e = Jws::parse(br#"{"protected":"e30=","payload":"","signature":"AAAA"}"#).unwrap_err();
    assert_eq!(e.acme_type(), "malformed");
}

#[test]
fn weak_and_private_keys_are_bad_public_keys() {
    let small = json!({"kty":"RSA","e":"AQAB","n": URL_SAFE_NO_PAD.encode([0xffu8; 128])});
    assert_eq!(
        check_public_key(small.as_object().unwrap())
            .unwrap_err()
            .acme_type(),
        "badPublicKey"
    );
    let private = json!({"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"});
    assert_eq!(
        check_public_key(private.as_object().unwrap())
            .unwrap_err()
            .acme_type(),
        "badPublicKey"
    );
    let huge = json!({"kty":"RSA","e":"AQAB","n": URL_SAFE_NO_PAD.encode([0xffu8; 2048])});
    assert_eq!(
        check_public_key(huge.as_object().unwrap())
            .unwrap_err()
            .acme_type(),
        "badPublicKey"
    );
    let curve = json!({"kty":"EC","crv":"P-521","x":"a","y":"b"});
    assert_eq!(
        check_public_key(curve.as_object().unwrap())
            .unwrap_err()
            .acme_type(),
        "badPublicKey"
    );
}

/// A signed request of each accepted algorithm (signed by josekit, an independent library)
/// verifies through both paths, the key the request carries and the registered account's
/// stored key (both parsed by aws-lc, the one library keys go through), and a changed payload
/// fails both.
#[test]
fn both_verification_paths_agree_for_every_algorithm() {
    use josekit::jws::JwsSigner;
    let pairs: Vec<(&str, Box<dyn JwsSigner>, josekit::jwk::Jwk)> = vec![
        {
            let k = josekit::jws::ES256.generate_key_pair().unwrap();
            let s = josekit::jws::ES256
                .signer_from_der(k.to_der_private_key())
                .unwrap();
            ("ES256", Box::new(s), k.to_jwk_public_key())
        },
        {
            let k = josekit::jws::ES384.generate_key_pair().unwrap();
            let s = josekit::jws::ES384
                .signer_from_der(k.to_der_private_key())
                .unwrap();
            ("ES384", Box::new(s), k.to_jwk_public_key())
        },
        {
            let k = josekit::jws::RS256.generate_key_pair(2048).unwrap();
            let s = josekit::jws::RS256
                .signer_from_der(k.to_der_private_key())
                .unwrap();
            ("RS256", Box::new(s), k.to_jwk_public_key())
        },
        {
            let k = josekit::jws::EdDSA
                .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
                .unwrap();
            let s = josekit::jws::EdDSA
                .signer_from_der(k.to_der_private_key())
                .unwrap();
            ("EdDSA", Box::new(s), k.to_jwk_public_key())
        },
    ];
    for (alg, signer, jwk) in pairs {
        let map = public_jwk(jwk.as_ref());
        let header = json!({"alg": alg, "kid": "k", "nonce": "n", "url": "u"});
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        let payload = URL_SAFE_NO_PAD.encode(b"{}");
        let sig = signer.sign(format!("{p}.{payload}").as_bytes()).unwrap();
        let body =
            json!({"protected": p, "payload": payload, "signature": URL_SAFE_NO_PAD.encode(&sig)});
        let jws = Jws::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        jws.verify(&map)
            .unwrap_or_else(|e| panic!("{alg} via josekit: {e:?}"));
        let key = account_key(alg, &map).unwrap();
        jws.verify_with(&key)
            .unwrap_or_else(|e| panic!("{alg} via the account key: {e:?}"));
        // The stored form of the key (its JSON) goes through the cache the same way.
        let keys = AccountKeys::default();
        let stored = Value::Object(map.clone()).to_string();
        jws.verify_with(&keys.get(alg, &stored).unwrap()).unwrap();

        let mut forged = body.clone();
        forged["payload"] = json!(URL_SAFE_NO_PAD.encode(b"{\"x\":1}"));
        let forged = Jws::parse(&serde_json::to_vec(&forged).unwrap()).unwrap();
        assert_eq!(
            forged.verify(&map).unwrap_err().acme_type(),
            "malformed",
            "{alg}"
        );
        assert_eq!(
            forged.verify_with(&key).unwrap_err().acme_type(),
            "malformed",
            "{alg}"
        );
    }
}

/// A key of one type named with another type's algorithm is a bad public key.
/// A key of one type named with another type's algorithm is `badSignatureAlgorithm` with the
/// accepted algorithms (RFC 8555 §6.2, as Boulder answers it), as is a JWK whose own `alg`
/// member names another algorithm than the JWS.
#[test]
fn a_key_that_does_not_fit_its_algorithm_is_a_bad_signature_algorithm() {
    let k = josekit::jws::ES256.generate_key_pair().unwrap();
    let map = public_jwk(k.to_jwk_public_key().as_ref());
    for alg in ["ES384", "RS256", "EdDSA"] {
        for form in [KeyForm::Canonical, KeyForm::Stored] {
            let e = parse_key(alg, &map, form).unwrap_err();
            assert!(
                matches!(&e, JwsError::BadSignatureAlgorithm { detail, algorithms }
                    if *algorithms == ALLOWED_ALGS && detail.contains("ES256")),
                "{alg}: {e:?}"
            );
        }
    }
    let mut named = map.clone();
    named.insert("alg".into(), json!("ES384"));
    assert_eq!(
        account_key("ES256", &named).unwrap_err().acme_type(),
        "badSignatureAlgorithm"
    );
    named.insert("alg".into(), json!("ES256"));
    account_key("ES256", &named).unwrap();
}

/// RFC 7515 §4.1.11: `crit` names extensions the recipient must understand; pkid understands
/// none, so a JWS with `crit` is refused, whatever it lists.
#[test]
fn a_crit_header_is_refused() {
    for crit in [json!(["b64"]), json!(["exp"]), json!([]), json!("x")] {
        let e = Jws::parse(&flattened(
            json!({"alg":"ES256","kid":"k","nonce":"n","url":"u","crit":crit,"b64":false,"exp":1}),
            b"",
        ))
        .unwrap_err();
        assert_eq!(e.acme_type(), "malformed", "{crit}");
        assert!(e.to_string().contains("crit"), "{e}");
    }
}

/// An RSA key whose verification would cost like a private-key operation (a modulus past the
/// bound, an exponent of thousands of bits) is refused from its members' lengths alone.
#[test]
fn rsa_bounds_are_checked_before_any_verification() {
    let mut n = vec![0xffu8; 384];
    n[383] = 0xfb;
    let rsa = |n: &[u8], e: &[u8]| -> Map<String, Value> {
        json!({"kty":"RSA","n":URL_SAFE_NO_PAD.encode(n),"e":URL_SAFE_NO_PAD.encode(e)})
            .as_object()
            .unwrap()
            .clone()
    };
    let huge_exponent = rsa(&n, &n);
    for form in [KeyForm::Canonical, KeyForm::Stored] {
        let e = parse_key("RS256", &huge_exponent, form).unwrap_err();
        assert_eq!(e.acme_type(), "badPublicKey", "{form:?}");
        assert!(e.to_string().contains("exponent"), "{e}");
    }
    let mut big = vec![0xffu8; MAX_RSA_BITS / 8 + 1];
    big[MAX_RSA_BITS / 8] = 0xfb;
    let e = check_public_key(&rsa(&big, &[1, 0, 1])).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    // 2047 bits: the top bit counts, not the byte length.
    let mut short = vec![0xffu8; 256];
    short[0] = 0x7f;
    let e = check_public_key(&rsa(&short, &[1, 0, 1])).unwrap_err();
    assert!(e.to_string().contains("2047 bits"), "{e}");
    let mut even = n.clone();
    even[383] = 0xfa;
    assert_eq!(
        check_public_key(&rsa(&even, &[1, 0, 1]))
            .unwrap_err()
            .acme_type(),
        "badPublicKey"
    );
    // A new key's exponent is 65537; a stored key's may be another small odd one.
    assert_eq!(
        check_public_key(&rsa(&n, &[3])).unwrap_err().acme_type(),
        "badPublicKey"
    );
    parse_key("RS256", &rsa(&n, &[3]), KeyForm::Stored).unwrap();
    for bad in [&[2u8][..], &[1], &[1, 0, 0, 0, 1]] {
        assert!(
            parse_key("RS256", &rsa(&n, bad), KeyForm::Stored).is_err(),
            "{bad:?}"
        );
    }
}

/// A P-256 key pair whose public x coordinate starts with a zero byte.
fn p256_with_leading_zero_x() -> (aws_lc_rs::signature::EcdsaKeyPair, Vec<u8>) {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    for _ in 0..50_000 {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        if point[1] == 0 {
            return (pair, point);
        }
    }
    panic!("no P-256 key with a leading zero byte in x among 50,000");
}

/// One key, one encoding, so one thumbprint: the same key written otherwise (a coordinate
/// short of its leading zero, or padded past the curve's length; `n` or `e` with a leading
/// zero byte) is refused in a request, while a key stored so before keeps verifying.
#[test]
fn a_key_in_another_encoding_than_its_one_is_refused() {
    use aws_lc_rs::rand::SystemRandom;
    let (pair, point) = p256_with_leading_zero_x();
    let jwk = |x: &[u8]| -> Map<String, Value> {
        json!({"kty":"EC","crv":"P-256","x":URL_SAFE_NO_PAD.encode(x),"y":URL_SAFE_NO_PAD.encode(&point[33..])})
            .as_object()
            .unwrap()
            .clone()
    };
    let canonical = jwk(&point[1..33]);
    let short = jwk(&point[2..33]);
    let long = jwk(&[&[0u8][..], &point[1..33]].concat());
    check_public_key(&canonical).unwrap();
    assert_ne!(thumbprint(&canonical).unwrap(), thumbprint(&short).unwrap());
    for other in [&short, &long] {
        let e = check_public_key(other).unwrap_err();
        assert_eq!(e.acme_type(), "badPublicKey");
        assert!(e.to_string().contains("this curve's are 32"), "{e}");
    }
    assert!(parse_key("ES256", &long, KeyForm::Stored).is_err());

    // A signature by the key verifies with the canonical JWK, and with the short one only as
    // a stored key.
    let header = json!({"alg": "ES256", "kid": "k", "nonce": "n", "url": "u"});
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let payload = URL_SAFE_NO_PAD.encode(b"{}");
    let sig = pair
        .sign(&SystemRandom::new(), format!("{p}.{payload}").as_bytes())
        .unwrap();
    let body = json!({"protected": p, "payload": payload, "signature": URL_SAFE_NO_PAD.encode(sig.as_ref())});
    let jws = Jws::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
    jws.verify(&canonical).unwrap();
    assert_eq!(jws.verify(&short).unwrap_err().acme_type(), "badPublicKey");
    let stored = AccountKeys::default();
    jws.verify_with(
        &stored
            .get("ES256", &Value::Object(short).to_string())
            .unwrap(),
    )
    .unwrap();

    // RSA: n or e with a leading zero byte.
    let rsa = josekit::jws::RS256.generate_key_pair(2048).unwrap();
    let rsa = public_jwk(rsa.to_jwk_public_key().as_ref());
    check_public_key(&rsa).unwrap();
    for member in ["n", "e"] {
        let bytes = URL_SAFE_NO_PAD
            .decode(rsa[member].as_str().unwrap())
            .unwrap();
        let mut padded = rsa.clone();
        padded.insert(
            member.into(),
            json!(URL_SAFE_NO_PAD.encode([&[0u8][..], &bytes].concat())),
        );
        let e = check_public_key(&padded).unwrap_err();
        assert_eq!(e.acme_type(), "badPublicKey", "{member}");
        parse_key("RS256", &padded, KeyForm::Stored).unwrap();
    }

    // Ed25519: 32 bytes exactly.
    let short_ed = json!({"kty":"OKP","crv":"Ed25519","x":URL_SAFE_NO_PAD.encode([9u8; 31])});
    assert_eq!(
        check_public_key(short_ed.as_object().unwrap())
            .unwrap_err()
            .acme_type(),
        "badPublicKey"
    );
}

#[test]
fn verifies_a_real_es256_signature_and_rejects_a_forged_one() {
    let key = josekit::jws::ES256.generate_key_pair().unwrap();
    let jwk = key.to_jwk_public_key();
    let header =
        json!({"alg":"ES256","jwk": jwk.as_ref(),"nonce":"n","url":"https://x/acme/new-account"});
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let payload = URL_SAFE_NO_PAD.encode(br#"{"termsOfServiceAgreed":true}"#);
    let signer = josekit::jws::ES256
        .signer_from_der(key.to_der_private_key())
        .unwrap();
    use josekit::jws::JwsSigner;
    let sig = signer.sign(format!("{p}.{payload}").as_bytes()).unwrap();
    let body =
        json!({"protected": p, "payload": payload, "signature": URL_SAFE_NO_PAD.encode(&sig)});
    let jws = Jws::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
    let KeyRef::Jwk(map) = &jws.key else {
        panic!("expected jwk")
    };
    jws.verify(map).unwrap();

    let mut forged = body.clone();
    forged["payload"] = json!(URL_SAFE_NO_PAD.encode(br#"{"termsOfServiceAgreed":false}"#));
    let jws = Jws::parse(&serde_json::to_vec(&forged).unwrap()).unwrap();
    assert_eq!(jws.verify(map).unwrap_err().acme_type(), "malformed");
}
