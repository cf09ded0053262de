#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};

use super::*;

/// A certificate with its key and the parameters it was made from (to issue below it).
struct Made {
    der: Vec<u8>,
    key: KeyPair,
    params: CertificateParams,
}

impl Made {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn validity(params: &mut CertificateParams, from: i64, to: i64) {
    params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
}

fn make(params: CertificateParams, key: KeyPair, issuer: Option<&Made>) -> Made {
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, &issuer.issuer()).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    Made {
        der: cert.der().to_vec(),
        key,
        params,
    }
}

/// Parameters named `O=pkid tests, <second>`, valid from an hour ago for `days`.
fn named(second: (DnType, &str), days: i64) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "pkid tests");
    name.push(second.0, second.1);
    params.distinguished_name = name;
    validity(&mut params, now() - 3600, now() + days * 86400);
    params
}

fn ca() -> Made {
    let mut params = named((DnType::CommonName, "Grid CA"), 10);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    make(params, KeyPair::generate().unwrap(), None)
}

/// The end-entity certificate: `O=pkid tests, OU=Alice` (no CN, so that two proxy levels can
/// each add one).
fn eec(ca: &Made) -> Made {
    let mut params = named((DnType::OrganizationalUnitName, "Alice"), 5);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    make(params, KeyPair::generate().unwrap(), Some(ca))
}

/// DER of ProxyCertInfo with inheritAll and an optional path length.
fn info_der(path_len: Option<u8>) -> Vec<u8> {
    let language = [
        0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x15, 0x01, // 1.3.6.1.5.5.7.21.1
    ];
    let mut policy = vec![0x30, language.len() as u8];
    policy.extend_from_slice(&language);
    let mut body = Vec::new();
    if let Some(n) = path_len {
        body.extend_from_slice(&[0x02, 0x01, n]);
    }
    body.extend_from_slice(&policy);
    let mut der = vec![0x30, body.len() as u8];
    der.extend_from_slice(&body);
    der
}

/// What a test proxy looks like; each field breaks one rule when changed.
struct Shape {
    info: Option<Vec<u8>>,
    critical: bool,
    /// The type of the RDN the proxy adds (`None`: adds none).
    added: Option<DnType>,
    san: bool,
    ca: bool,
    key_cert_sign: bool,
    from: i64,
    to: i64,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape {
            info: Some(info_der(None)),
            critical: true,
            added: Some(DnType::CommonName),
            san: false,
            ca: false,
            key_cert_sign: false,
            from: now() - 60,
            to: now() + 12 * 3600,
        }
    }
}

fn proxy(issuer: &Made, shape: Shape, key: KeyPair) -> Made {
    let mut params = CertificateParams::default();
    params.distinguished_name = issuer.params.distinguished_name.clone();
    if let Some(added) = shape.added {
        params.distinguished_name.push(added, "1234567");
    }
    if let Some(info) = shape.info {
        let mut ext = CustomExtension::from_oid_content(OID_PROXY_CERT_INFO, info);
        ext.set_criticality(shape.critical);
        params.custom_extensions.push(ext);
    }
    if shape.san {
        params.subject_alt_names = vec![SanType::DnsName("alice.pkid.test".try_into().unwrap())];
    }
    if shape.ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    if shape.key_cert_sign {
        params.key_usages.push(KeyUsagePurpose::KeyCertSign);
    }
    validity(&mut params, shape.from, shape.to);
    make(params, key, Some(issuer))
}

/// The second proxy level adds its CN under another key of rcgen's name map.
fn second_cn() -> DnType {
    DnType::CustomDnType(vec![2, 5, 4, 3])
}

fn chain(certs: &[&Made]) -> Vec<Vec<u8>> {
    certs.iter().map(|c| c.der.clone()).collect()
}

fn rule_of(result: Result<ChainFacts, ProxyError>) -> (usize, String) {
    match result {
        Err(ProxyError::Rule { index, rule }) => (index, rule),
        other => panic!("expected a rule violation, got {other:?}"),
    }
}

#[test]
fn a_proxy_chain_to_its_end_entity_is_accepted() {
    let ca = ca();
    let eec = eec(&ca);
    let p1 = proxy(&eec, Shape::default(), KeyPair::generate().unwrap());
    let p2 = proxy(
        &p1,
        Shape {
            added: Some(second_cn()),
            to: now() + 3600,
            ..Shape::default()
        },
        KeyPair::generate().unwrap(),
    );
    let facts = check_chain(&chain(&[&p2, &p1, &eec, &ca]), now()).unwrap();
    assert_eq!(facts.proxies, 2);
    assert_eq!(facts.end_entity_subject, {
        let (_, c) = X509Certificate::from_der(&eec.der).unwrap();
        c.subject().as_raw().to_vec()
    });
    assert!(facts.not_after <= now() + 3600 && facts.not_after > now() + 3500);
    assert!(facts.policy.inherits_all());
    assert_eq!(facts.policy.path_len, None);
    // Without the CA: the chain's own links are all there is to check.
    assert_eq!(check_chain(&chain(&[&p1, &eec]), now()).unwrap().proxies, 1);
}

/// One change to a valid proxy's [`Shape`].
type Change = fn(&mut Shape);

#[test]
fn each_rule_of_rfc_3820_refuses_its_chain() {
    let ca = ca();
    let eec = eec(&ca);
    let fresh = || KeyPair::generate().unwrap();
    // Each case changes one thing of a valid proxy: (what, the change, the refusal's words).
    let cases: [(&str, Change, &str); 8] = [
        ("not critical", |s| s.critical = false, "not critical"),
        (
            "malformed",
            |s| s.info = Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
            "malformed",
        ),
        ("no added RDN", |s| s.added = None, "exactly one RDN"),
        (
            "added RDN not a CN",
            |s| s.added = Some(DnType::CustomDnType(vec![2, 5, 4, 11])),
            "single commonName",
        ),
        ("subjectAltName", |s| s.san = true, "subjectAltName"),
        ("a CA", |s| s.ca = true, "not a CA"),
        ("keyCertSign", |s| s.key_cert_sign = true, "keyCertSign"),
        (
            "expired",
            |s| (s.from, s.to) = (now() - 7200, now() - 3600),
            "validity",
        ),
    ];
    for (what, change, expected) in cases {
        let mut shape = Shape::default();
        change(&mut shape);
        let p = proxy(&eec, shape, fresh());
        let (index, rule) = rule_of(check_chain(&chain(&[&p, &eec, &ca]), now()));
        assert_eq!(index, 0, "{what}: {rule}");
        assert!(rule.contains(expected), "{what}: {rule}");
    }
}

/// A proxy under `eec` with pCPathLenConstraint `limit`, and a proxy under that one.
fn two_levels(eec: &Made, limit: u8) -> (Made, Made) {
    let upper = Shape {
        info: Some(info_der(Some(limit))),
        ..Shape::default()
    };
    let upper = proxy(eec, upper, KeyPair::generate().unwrap());
    let lower = Shape {
        added: Some(second_cn()),
        ..Shape::default()
    };
    let lower = proxy(&upper, lower, KeyPair::generate().unwrap());
    (upper, lower)
}

#[test]
fn path_length_signatures_and_issuers_are_checked() {
    let ca = ca();
    let eec = eec(&ca);
    // pCPathLenConstraint 0: no proxy below this one.
    let (limited, below) = two_levels(&eec, 0);
    let (index, rule) = rule_of(check_chain(&chain(&[&below, &limited, &eec]), now()));
    assert_eq!(index, 0);
    assert!(rule.contains("pCPathLenConstraint"), "{rule}");
    let alone = check_chain(&chain(&[&limited, &eec]), now()).unwrap();
    assert_eq!(alone.policy.path_len, Some(0));
    // pCPathLenConstraint 1 allows one.
    let (one, under_one) = two_levels(&eec, 1);
    let facts = check_chain(&chain(&[&under_one, &one, &eec]), now()).unwrap();
    assert_eq!(facts.proxies, 2);

    // Signed by another end entity's key under the same name: the signature fails.
    let impostor = Made {
        der: Vec::new(),
        key: KeyPair::generate().unwrap(),
        params: eec.params.clone(),
    };
    let forged = proxy(&impostor, Shape::default(), KeyPair::generate().unwrap());
    let (index, rule) = rule_of(check_chain(&chain(&[&forged, &eec]), now()));
    assert_eq!(index, 0);
    assert!(rule.contains("signature"), "{rule}");

    // A proxy issued by a CA certificate directly.
    let from_ca = proxy(&ca, Shape::default(), KeyPair::generate().unwrap());
    let (index, rule) = rule_of(check_chain(&chain(&[&from_ca, &ca]), now()));
    assert_eq!(index, 1);
    assert!(rule.contains("CA"), "{rule}");

    // A link missing: the chain's names do not link.
    let p = proxy(&eec, Shape::default(), KeyPair::generate().unwrap());
    let (index, rule) = rule_of(check_chain(&chain(&[&under_one, &eec]), now()));
    assert_eq!(index, 0);
    assert!(rule.contains("issuer"), "{rule}");

    // No proxy at all, or nothing but proxies.
    assert_eq!(
        check_chain(&chain(&[&eec, &ca]), now()),
        Err(ProxyError::NotAProxy)
    );
    assert_eq!(
        check_chain(&chain(&[&p]), now()),
        Err(ProxyError::NoEndEntity)
    );
    let junk = check_chain(&[b"junk".to_vec()], now()).unwrap_err();
    assert!(junk.to_string().contains("not X.509"), "{junk}");
}

fn pem_of(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

/// The RSAPrivateKey (PKCS#1) inside a PKCS#8 PrivateKeyInfo.
fn pkcs1_of(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info) = Any::from_der(pkcs8).unwrap();
    let (rest, _version) = Any::from_der(info.data).unwrap();
    let (rest, _algorithm) = Any::from_der(rest).unwrap();
    let (_, key) = Any::from_der(rest).unwrap();
    key.data.to_vec()
}

#[test]
fn a_bundle_gives_its_chain_and_key_once_they_match() {
    let ca = ca();
    let eec = eec(&ca);
    let rsa = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
    let rsa_pkcs1 = pkcs1_of(&rsa.serialize_der());
    let p = proxy(&eec, Shape::default(), rsa);
    // The classic grid proxy file: proxy, its PKCS#1 key, then the chain.
    let file = [
        pem_of("CERTIFICATE", &p.der),
        pem_of("RSA PRIVATE KEY", &rsa_pkcs1),
        pem_of("CERTIFICATE", &eec.der),
    ]
    .concat();
    let bundle = parse_bundle(&file, now()).unwrap();
    assert_eq!(bundle.certificates, chain(&[&p, &eec]));
    assert_eq!(bundle.facts.proxies, 1);
    assert_eq!(bundle.private_key.format, KeyFormat::Pkcs1);
    assert_eq!(*bundle.private_key.der, rsa_pkcs1);
    assert!(bundle
        .private_key
        .to_pem()
        .contains("BEGIN RSA PRIVATE KEY"));
    assert!(
        !format!("{bundle:?}").contains("PRIVATE KEY-----"),
        "Debug redacts the key"
    );

    // PKCS#8 EC key, certificates after it.
    let ec = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let ec_pem = ec.serialize_pem();
    let p_ec = proxy(&eec, Shape::default(), ec);
    let file = [
        pem_of("CERTIFICATE", &p_ec.der),
        ec_pem.clone(),
        pem_of("CERTIFICATE", &eec.der),
    ]
    .concat();
    assert_eq!(parse_bundle(&file, now()).unwrap().facts.proxies, 1);

    // Another proxy's key.
    let file = [
        pem_of("CERTIFICATE", &p.der),
        ec_pem.clone(),
        pem_of("CERTIFICATE", &eec.der),
    ]
    .concat();
    assert_eq!(
        parse_bundle(&file, now()).unwrap_err(),
        ProxyError::KeyMismatch
    );
    // No key, two keys, an encrypted key.
    let no_key = [
        pem_of("CERTIFICATE", &p.der),
        pem_of("CERTIFICATE", &eec.der),
    ]
    .concat();
    assert_eq!(
        parse_bundle(&no_key, now()).unwrap_err(),
        ProxyError::KeyCount(0)
    );
    let two = [no_key.clone(), ec_pem.clone(), ec_pem.clone()].concat();
    assert_eq!(
        parse_bundle(&two, now()).unwrap_err(),
        ProxyError::KeyCount(2)
    );
    let encrypted = [no_key.clone(), pem_of("ENCRYPTED PRIVATE KEY", b"\x30\x00")].concat();
    assert_eq!(
        parse_bundle(&encrypted, now()).unwrap_err(),
        ProxyError::EncryptedKey
    );
    let junk_key = [
        no_key.clone(),
        pem_of("PRIVATE KEY", b"\x30\x03\x02\x01\x00"),
    ]
    .concat();
    assert_eq!(
        parse_bundle(&junk_key, now()).unwrap_err(),
        ProxyError::UnreadableKey
    );
    // Too long, not PEM, no certificate.
    assert_eq!(
        parse_bundle(&"A".repeat(MAX_BUNDLE_CHARS + 1), now()).unwrap_err(),
        ProxyError::TooLarge
    );
    assert!(matches!(
        parse_bundle(
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
            now()
        ),
        Err(ProxyError::NotPem(_))
    ));
    assert_eq!(
        parse_bundle(&ec_pem, now()).unwrap_err(),
        ProxyError::NoCertificate
    );
}

/// The fuzz target's seeds (made by OpenSSL) are what their names say, so that fuzzing starts
/// from inputs that reach every rule.
#[test]
fn the_fuzz_seeds_are_a_valid_file_and_a_path_length_violation() {
    // The target's time, 2100-01-01: the seeds are valid for a century.
    const AT: i64 = 4_102_444_800;
    let seed = |text: &'static str| text.strip_prefix('0').unwrap();
    let good = parse_bundle(
        seed(include_str!(
            "../../../conformance/fuzz/corpus/proxy_chain/grid-proxy-file.txt"
        )),
        AT,
    )
    .unwrap();
    assert_eq!(good.facts.proxies, 1);
    assert_eq!(good.facts.policy.path_len, Some(0));
    let limited = parse_bundle(
        seed(include_str!(
            "../../../conformance/fuzz/corpus/proxy_chain/two-proxies-past-a-limit.txt"
        )),
        AT,
    );
    assert!(
        matches!(&limited, Err(ProxyError::Rule { index: 0, rule }) if rule.contains("pCPathLenConstraint")),
        "{limited:?}"
    );
}

/// A stored proxy with an RSA (PKCS#1) key, under `eec`: (the proxy, its key as uploaded).
fn stored_rsa_proxy(eec: &Made) -> (Made, PrivateKey) {
    let rsa = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
    let key = PrivateKey {
        format: KeyFormat::Pkcs1,
        der: Zeroizing::new(pkcs1_of(&rsa.serialize_der())),
    };
    (proxy(eec, Shape::default(), rsa), key)
}

#[test]
fn a_generated_proxy_is_a_grid_proxy_file_under_the_stored_one() {
    use x509_parser::extensions::ParsedExtension;
    let ca = ca();
    let eec = eec(&ca);
    let (stored, key) = stored_rsa_proxy(&eec);
    let at = now();
    let made = issue::generate(&issue::ProxyRequest {
        chain: &chain(&[&stored, &eec, &ca]),
        key: &key,
        not_after: at + 3600,
        at,
    })
    .unwrap();

    // The file: the new proxy, its PKCS#1 key, then the stored chain without its CA.
    let blocks = pem::parse_many(made.file.as_bytes()).unwrap();
    let tags: Vec<&str> = blocks.iter().map(|b| b.tag()).collect();
    assert_eq!(
        tags,
        [
            "CERTIFICATE",
            "RSA PRIVATE KEY",
            "CERTIFICATE",
            "CERTIFICATE"
        ]
    );
    assert_eq!(blocks[2].contents(), stored.der.as_slice());
    assert_eq!(blocks[3].contents(), eec.der.as_slice());
    // It is a valid proxy file whose key is the new proxy's (parse_bundle checks both).
    let bundle = parse_bundle(&made.file, at).unwrap();
    assert_eq!(bundle.facts.proxies, 2);
    assert_eq!(bundle.private_key.format, KeyFormat::Pkcs1);
    assert!(bundle.facts.policy.inherits_all());

    let (_, new) = X509Certificate::from_der(blocks[0].contents()).unwrap();
    let (_, parent) = X509Certificate::from_der(&stored.der).unwrap();
    assert_eq!(new.issuer().as_raw(), parent.subject().as_raw());
    let serial = new.tbs_certificate.serial.to_string();
    assert_eq!(
        made.subject,
        format!("CN={serial},{}", crate::pki::dn::rfc2253(parent.subject()))
    );
    assert_eq!(made.issuer, crate::pki::dn::rfc2253(parent.subject()));
    assert_eq!(made.identity, "OU=Alice,O=pkid tests");
    assert_eq!(made.not_after, at + 3600);
    assert_eq!(new.validity().not_after.timestamp(), at + 3600);
    assert!(new.validity().not_before.timestamp() <= at);
    assert_eq!(
        new.public_key().parsed().map(|k| k.key_size()).ok(),
        Some(2048)
    );
    let mut seen = Vec::new();
    for ext in new.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => {
                assert!(ext.critical, "keyUsage is critical");
                // The AND of the proxy's and the end entity's: both digitalSignature and
                // keyEncipherment.
                assert!(ku.digital_signature() && ku.key_encipherment());
                assert!(!ku.data_encipherment() && !ku.key_cert_sign());
                seen.push("keyUsage");
            }
            _ if ext.oid.to_id_string() == "1.3.6.1.5.5.7.1.14" => {
                assert!(ext.critical, "proxyCertInfo is critical");
                seen.push("proxyCertInfo");
            }
            other => panic!("unexpected extension {other:?}"),
        }
    }
    assert_eq!(seen, ["keyUsage", "proxyCertInfo"]);
}

#[test]
fn uploaded_keys_of_every_format_sign_and_an_expired_proxy_makes_nothing() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let ca = ca();
    let eec = eec(&ca);
    // SEC1 (`EC PRIVATE KEY`) and PKCS#8 (`PRIVATE KEY`) keys.
    let ec = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let pkcs8 = ec.serialize_der();
    let sec1 = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8)
        .unwrap()
        .private_key()
        .as_der()
        .unwrap()
        .as_ref()
        .to_vec();
    let stored = proxy(&eec, Shape::default(), ec);
    for (format, der) in [(KeyFormat::Sec1, sec1), (KeyFormat::Pkcs8, pkcs8)] {
        let key = PrivateKey {
            format,
            der: Zeroizing::new(der),
        };
        let made = issue::generate(&issue::ProxyRequest {
            chain: &chain(&[&stored, &eec]),
            key: &key,
            not_after: now() + 600,
            at: now(),
        })
        .unwrap();
        assert_eq!(parse_bundle(&made.file, now()).unwrap().facts.proxies, 2);
    }
    let (stored, key) = stored_rsa_proxy(&eec);
    let expired = issue::generate(&issue::ProxyRequest {
        chain: &chain(&[&stored, &eec]),
        key: &key,
        not_after: now() - 1,
        at: now(),
    });
    assert!(matches!(expired, Err(ProxyError::Generation(_))));
    let junk = PrivateKey {
        format: KeyFormat::Pkcs1,
        der: Zeroizing::new(vec![0x30, 0x00]),
    };
    assert!(matches!(
        issue::signer(&junk),
        Err(ProxyError::UnusableKey(_))
    ));
}

#[test]
fn a_path_length_of_zero_allows_no_proxy_below() {
    let ca = ca();
    let eec = eec(&ca);
    let limited = proxy(
        &eec,
        Shape {
            info: Some(info_der(Some(0))),
            ..Shape::default()
        },
        KeyPair::generate().unwrap(),
    );
    let facts = check_chain(&chain(&[&limited, &eec]), now()).unwrap();
    assert_eq!(facts.allows_below, Some(0));
    let open = proxy(&eec, Shape::default(), KeyPair::generate().unwrap());
    assert_eq!(
        check_chain(&chain(&[&open, &eec]), now())
            .unwrap()
            .allows_below,
        None
    );
}
