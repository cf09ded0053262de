#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http::HeaderValue;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use super::*;
use crate::pki::proxy::OID_PROXY_CERT_INFO;

/// A certificate with its key and the parameters it was made from (to issue below it).
struct Made {
    der: Vec<u8>,
    key: KeyPair,
    params: CertificateParams,
}

impl Made {
    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.der.clone())
    }
}

fn valid(params: &mut CertificateParams, from: i64, to: i64) {
    params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
}

/// Parameters named `O=pkid tests, <kind>=<value>`, valid from an hour ago for a day.
fn named(kind: DnType, value: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "pkid tests");
    name.push(kind, value);
    params.distinguished_name = name;
    valid(&mut params, now() - 3600, now() + 86400);
    params
}

fn make(params: CertificateParams, issuer: Option<&Made>) -> Made {
    let key = KeyPair::generate().unwrap();
    let cert = match issuer {
        Some(i) => params
            .signed_by(&key, &Issuer::from_params(&i.params, &i.key))
            .unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    Made {
        der: cert.der().to_vec(),
        key,
        params,
    }
}

fn ca(cn: &str, issuer: Option<&Made>) -> Made {
    let mut params = named(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    valid(&mut params, now() - 86400, now() + 10 * 86400);
    make(params, issuer)
}

/// `O=pkid tests, OU=<name>`: no CN, so that two proxy levels can each add one.
fn end_entity(name: &str, issuer: &Made, usages: &[ExtendedKeyUsagePurpose]) -> Made {
    let mut params = named(DnType::OrganizationalUnitName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages.to_vec();
    make(params, Some(issuer))
}

/// An RFC 3820 proxy under `issuer` (inheritAll, critical proxyCertInfo), its subject the
/// issuer's with one more CN.
fn proxy(issuer: &Made) -> Made {
    let mut params = CertificateParams::default();
    params.distinguished_name = issuer.params.distinguished_name.clone();
    params
        .distinguished_name
        .push(DnType::CommonName, "1234567");
    // ProxyCertInfo ::= SEQUENCE { SEQUENCE { id-ppl-inheritAll } }
    let info = vec![
        0x30, 0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x15, 0x01,
    ];
    let mut ext = CustomExtension::from_oid_content(OID_PROXY_CERT_INFO, info);
    ext.set_criticality(true);
    params.custom_extensions.push(ext);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    valid(&mut params, now() - 60, now() + 3600);
    make(params, Some(issuer))
}

/// root → intermediate → alice (clientAuth).
struct Pki {
    root: Made,
    intermediate: Made,
    alice: Made,
}

fn pki() -> Pki {
    let root = ca("Clients Root", None);
    let intermediate = ca("Clients Intermediate", Some(&root));
    let alice = end_entity(
        "alice",
        &intermediate,
        &[ExtendedKeyUsagePurpose::ClientAuth],
    );
    Pki {
        root,
        intermediate,
        alice,
    }
}

fn trusting(anchors: &[&Made], proxies: &[&str]) -> ClientCertificates {
    let anchors = vec![(
        "test anchors".to_string(),
        anchors.iter().map(|a| a.der.clone()).collect(),
    )];
    let proxies: Vec<String> = proxies.iter().map(|p| p.to_string()).collect();
    ClientCertificates::new(&anchors, &proxies).unwrap()
}

fn chain(certs: &[&Made]) -> Vec<CertificateDer<'static>> {
    certs.iter().map(|c| c.der()).collect()
}

fn untrusted(result: Result<VerifiedCertificate, CertificateError>) -> String {
    match result {
        Err(CertificateError::Untrusted(why)) => why,
        other => panic!("expected an untrusted chain, got {other:?}"),
    }
}

#[test]
fn an_ordinary_chain_to_an_anchor_gives_its_end_entity() {
    let p = pki();
    let certs = trusting(&[&p.root], &[]);
    let verified = certs
        .verify(&chain(&[&p.alice, &p.intermediate]), now(), Source::Tls)
        .unwrap();
    assert_eq!(
        verified,
        VerifiedCertificate {
            subject_dn: "OU=alice,O=pkid tests".into(),
            issuer_dn: "CN=Clients Intermediate,O=pkid tests".into(),
            der: p.alice.der.clone(),
            via_proxy: false,
            source: Source::Tls,
        }
    );
    // Without its intermediate the path does not reach the root.
    untrusted(certs.verify(&chain(&[&p.alice]), now(), Source::Tls));
    // An intermediate as the anchor (a backend's chain holds its issuing CA): no more needed.
    let by_intermediate = trusting(&[&p.intermediate, &p.root], &[]);
    assert!(by_intermediate
        .verify(&chain(&[&p.alice]), now(), Source::Tls)
        .is_ok());
    // No extendedKeyUsage at all: any use, client authentication included.
    let any_use = end_entity("bob", &p.intermediate, &[]);
    assert!(certs
        .verify(&chain(&[&any_use, &p.intermediate]), now(), Source::Tls)
        .is_ok());
}

#[test]
fn untrusted_expired_and_server_only_certificates_are_refused() {
    let p = pki();
    let certs = trusting(&[&p.root], &[]);

    // Another hierarchy with the same names: the names link, the signatures do not.
    let other = pki();
    let why = untrusted(certs.verify(
        &chain(&[&other.alice, &other.intermediate]),
        now(),
        Source::Tls,
    ));
    assert!(why.contains("Signature"), "{why}");
    // Another hierarchy altogether.
    let stranger_root = ca("Elsewhere Root", None);
    let stranger = end_entity("mallory", &stranger_root, &[]);
    let why = untrusted(certs.verify(&chain(&[&stranger]), now(), Source::Tls));
    assert!(why.contains("UnknownIssuer"), "{why}");

    let mut params = named(DnType::OrganizationalUnitName, "expired");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    valid(&mut params, now() - 7200, now() - 3600);
    let expired = make(params, Some(&p.intermediate));
    let why = untrusted(certs.verify(&chain(&[&expired, &p.intermediate]), now(), Source::Tls));
    assert!(why.contains("CertExpired"), "{why}");
    // The same certificate, judged at a time within its validity, passes: time is `at`.
    assert!(certs
        .verify(
            &chain(&[&expired, &p.intermediate]),
            now() - 5400,
            Source::Tls
        )
        .is_ok());

    let server = end_entity(
        "server",
        &p.intermediate,
        &[ExtendedKeyUsagePurpose::ServerAuth],
    );
    let why = untrusted(certs.verify(&chain(&[&server, &p.intermediate]), now(), Source::Tls));
    assert!(why.contains("RequiredEku"), "{why}");

    assert_eq!(
        certs.verify(&[], now(), Source::Tls),
        Err(CertificateError::Empty)
    );
    let junk = certs.verify(
        &[CertificateDer::from(b"junk".to_vec())],
        now(),
        Source::Tls,
    );
    assert!(
        matches!(junk, Err(CertificateError::NotX509 { index: 0, .. })),
        "{junk:?}"
    );
    let long = vec![p.alice.der(); MAX_CHAIN + 1];
    assert_eq!(
        certs.verify(&long, now(), Source::Tls),
        Err(CertificateError::TooLong)
    );
}

#[test]
fn a_proxy_chain_proves_its_end_entity_certificate() {
    let p = pki();
    let certs = trusting(&[&p.root], &[]);
    let first = proxy(&p.alice);
    let verified = certs
        .verify(
            &chain(&[&first, &p.alice, &p.intermediate]),
            now(),
            Source::Tls,
        )
        .unwrap();
    assert!(verified.via_proxy);
    assert_eq!(verified.subject_dn, "OU=alice,O=pkid tests");
    assert_eq!(verified.issuer_dn, "CN=Clients Intermediate,O=pkid tests");
    assert_eq!(verified.der, p.alice.der);

    // A proxy of a proxy (its CN under rcgen's other key for the type).
    let second = {
        let mut params = CertificateParams::default();
        params.distinguished_name = first.params.distinguished_name.clone();
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 3]), "7654321");
        params.custom_extensions = first.params.custom_extensions.clone();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        valid(&mut params, now() - 60, now() + 1800);
        make(params, Some(&first))
    };
    let verified = certs
        .verify(
            &chain(&[&second, &first, &p.alice, &p.intermediate]),
            now(),
            Source::Tls,
        )
        .unwrap();
    assert!(verified.via_proxy);
    assert_eq!(verified.subject_dn, "OU=alice,O=pkid tests");

    // Forged: made with another key under alice's name, so its signature does not verify
    // with alice's key.
    let impostor = Made {
        der: Vec::new(),
        key: KeyPair::generate().unwrap(),
        params: p.alice.params.clone(),
    };
    let forged = proxy(&impostor);
    match certs.verify(
        &chain(&[&forged, &p.alice, &p.intermediate]),
        now(),
        Source::Tls,
    ) {
        Err(CertificateError::Proxy(ProxyError::Rule { index: 0, rule })) => {
            assert!(rule.contains("signature"), "{rule}")
        }
        other => panic!("a forged proxy: {other:?}"),
    }

    // A proxy whose end-entity certificate is not trusted proves nothing.
    let other = pki();
    let stranger = proxy(&other.alice);
    untrusted(certs.verify(
        &chain(&[&stranger, &other.alice, &other.intermediate]),
        now(),
        Source::Tls,
    ));
    // Nothing under the proxy.
    assert!(matches!(
        certs.verify(&chain(&[&first]), now(), Source::Tls),
        Err(CertificateError::Proxy(ProxyError::NoEndEntity))
    ));
}

/// The URL encoding a proxy applies (nginx's `$ssl_client_escaped_cert`): all but unreserved.
fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn pem_of(certs: &[&Made]) -> String {
    certs
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.der.clone())))
        .collect()
}

fn with_header(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        APP_CERTIFICATE_HEADER,
        HeaderValue::from_str(value).unwrap(),
    );
    headers
}

#[test]
fn x_app_certificate_is_believed_only_from_a_trusted_proxy() {
    let p = pki();
    let certs = trusting(&[&p.root], &["10.0.0.0/8", "::1"]);
    let proxy_peer: IpAddr = "10.1.2.3".parse().unwrap();
    let other_peer: IpAddr = "192.0.2.7".parse().unwrap();
    let headers = with_header(&url_encoded(&pem_of(&[&p.alice, &p.intermediate])));

    let verified = certs
        .presented(proxy_peer, None, &headers)
        .unwrap()
        .unwrap();
    assert_eq!(verified.subject_dn, "OU=alice,O=pkid tests");
    assert_eq!(verified.source, Source::TrustedProxy);
    // The same peer as an IPv4-mapped IPv6 address (a dual-stack listener), and ::1.
    let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
    assert!(certs.presented(mapped, None, &headers).unwrap().is_ok());
    let loopback: IpAddr = "::1".parse().unwrap();
    assert!(certs.presented(loopback, None, &headers).unwrap().is_ok());

    // From any other address: as if absent, never an error.
    assert_eq!(certs.presented(other_peer, None, &headers), None);
    // ... and the connection's own TLS chain is what counts there.
    let bob = end_entity("bob", &p.intermediate, &[]);
    let tls = chain(&[&bob, &p.intermediate]);
    let verified = certs
        .presented(other_peer, Some(&tls), &headers)
        .unwrap()
        .unwrap();
    assert_eq!(verified.subject_dn, "OU=bob,O=pkid tests");
    assert_eq!(verified.source, Source::Tls);
    // A trusted proxy's header wins over the proxy's own TLS certificate.
    let verified = certs
        .presented(proxy_peer, Some(&tls), &headers)
        .unwrap()
        .unwrap();
    assert_eq!(verified.subject_dn, "OU=alice,O=pkid tests");
    // Nothing presented at all.
    assert_eq!(certs.presented(proxy_peer, None, &HeaderMap::new()), None);
    assert_eq!(
        certs.presented(proxy_peer, Some(&[]), &HeaderMap::new()),
        None
    );

    // A trusted proxy's header that is not certificates, or an untrusted certificate in it.
    for bad in ["%zz", "not pem", "%2D%2D%2D"] {
        let result = certs
            .presented(proxy_peer, None, &with_header(bad))
            .unwrap();
        assert!(
            matches!(result, Err(CertificateError::BadHeader(_))),
            "{bad}: {result:?}"
        );
    }
    let key = with_header(&url_encoded(&pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        p.alice.key.serialize_der(),
    ))));
    assert!(matches!(
        certs.presented(proxy_peer, None, &key),
        Some(Err(CertificateError::BadHeader(_)))
    ));
    let other = pki();
    let stranger = with_header(&url_encoded(&pem_of(&[&other.alice, &other.intermediate])));
    untrusted(certs.presented(proxy_peer, None, &stranger).unwrap());
    let mut twice = headers.clone();
    twice.append(
        APP_CERTIFICATE_HEADER,
        HeaderValue::from_str(&url_encoded(&pem_of(&[&bob]))).unwrap(),
    );
    assert!(matches!(
        certs.presented(proxy_peer, None, &twice),
        Some(Err(CertificateError::BadHeader(_)))
    ));
}

#[test]
fn anchors_and_ranges_are_checked_when_loaded() {
    let p = pki();
    let certs = trusting(&[&p.root, &p.intermediate, &p.root], &[]);
    assert!(!certs.is_empty());
    // One hint per distinct subject, as DER Names.
    assert_eq!(certs.anchor_subjects().len(), 2);
    let (_, root) = X509Certificate::from_der(&p.root.der).unwrap();
    assert_eq!(certs.anchor_subjects()[0], root.subject().as_raw());
    assert!(ClientCertificates::new(&[], &[]).unwrap().is_empty());

    let pem_text = format!(
        "{}{}",
        pem_of(&[&p.root]),
        pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]))
    );
    assert_eq!(
        certificates_from_pem("roots.pem", pem_text.as_bytes()).unwrap(),
        vec![p.root.der.clone()]
    );
    assert_eq!(
        certificates_from_pem("empty.pem", b"nothing here"),
        Err(AnchorError::NoCertificate {
            origin: "empty.pem".into()
        })
    );
    let junk = ClientCertificates::new(&[("junk.pem".into(), vec![b"junk".to_vec()])], &[]);
    assert!(
        matches!(&junk, Err(AnchorError::Unusable { origin, index: 0, .. }) if origin == "junk.pem"),
        "{junk:?}"
    );
    assert_eq!(
        ClientCertificates::new(&[], &["10.0.0.0/33".into()]).unwrap_err(),
        AnchorError::BadRange("10.0.0.0/33".into())
    );
}
