//! Revocation's tests: serials in every printed form, then CRL shards against a model, over a
//! seeded random sequence of issuances, revocations and CRL generations, with a real SQLite
//! store and software CA; delegated responders, the OCSP cache and CRL leases across replicas.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::ca::{crl_shard_of, IssuanceProfile};
use crate::store::now;
use pkid_backends::local::ocsp_request::OID_SHA1;
use pkid_backends::{KeyAlgorithm, Serial};
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::time::Duration;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::CertificateRevocationList;

const SHARDS: u32 = 4;
const BASE: &str = "http://127.0.0.1:9";

#[test]
fn serials_in_every_printed_form_find_the_stored_one() {
    assert_eq!(canonical_serial_hex("8EA8CE24"), "008ea8ce24");
    // 31 digits, as big-integer printers write a 16-byte serial starting 0x08.
    assert_eq!(
        canonical_serial_hex("8ea8ce24af8b31fed4e82fa8b9b2bbf"),
        "08ea8ce24af8b31fed4e82fa8b9b2bbf"
    );
    assert_eq!(canonical_serial_hex("08:EA:8C"), "08ea8c");
    assert_eq!(canonical_serial_hex("0x7f01"), "7f01");
    assert_eq!(canonical_serial_hex("8ea8c"), "08ea8c");
}

struct World {
    revocation: Revocation,
    ca: Arc<Ca>,
    store: Store,
    issuer_spki: Vec<u8>,
    _dir: tempfile::TempDir,
}

async fn world(shards: u32) -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url, 4).await.unwrap();
    let kek = Arc::new(KeyEncryptionKey::generate());
    let (backend, _) = pkid_backends::SoftwareBackend::open_or_create(
        "test",
        &dir.path().join("ca"),
        &kek,
        KeyAlgorithm::EcdsaP256,
    )
    .unwrap();
    let issuer_spki = {
        let chain = pkid_backends::SigningBackend::ca_chain(&backend);
        let (_, cert) = X509Certificate::from_der(&chain[0]).unwrap();
        cert.public_key().raw.to_vec()
    };
    let ca = Arc::new(
        Ca::new("test".into(), Arc::new(backend), store.clone(), 60)
            .with_revocation_base(Some(BASE))
            .with_crl_shards(shards),
    );
    let revocation = replica(&store, &ca);
    World {
        revocation,
        ca,
        store,
        issuer_spki,
        _dir: dir,
    }
}

/// A `Revocation` over the store and CA: the world's own, or another replica's.
fn replica(store: &Store, ca: &Arc<Ca>) -> Revocation {
    Revocation::new(
        store.clone(),
        std::slice::from_ref(ca),
        RevocationSettings {
            crl_lifetime_secs: 3600,
            ocsp_lifetime_secs: 3600,
        },
    )
}

async fn issue(ca: &Ca, validity_secs: i64) -> (String, i64, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["shard.pkid.test".into()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = crate::pki::csr::check_csr(params.serialize_request(&key).unwrap().der()).unwrap();
    let issued = ca
        .issue(
            &csr,
            &IssuanceProfile::tls_server("p", validity_secs),
            None,
            None,
        )
        .await
        .unwrap();
    let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
    let not_after = cert.validity().not_after.timestamp();
    (issued.serial, not_after, issued.der)
}

/// The shard named in a certificate's CRL distribution point.
fn distribution_point_shard(der: &[u8]) -> i64 {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for name in names {
                        if let GeneralName::URI(uri) = name {
                            let shard = uri
                                .strip_prefix(&format!("{BASE}/crl/test/"))
                                .and_then(|s| s.strip_suffix(".crl"))
                                .unwrap_or_else(|| panic!("unexpected CRL DP {uri}"));
                            return shard.parse().unwrap();
                        }
                    }
                }
            }
        }
    }
    panic!("no CRL distribution point");
}

/// The serials a CRL lists, after checking its signature and its issuingDistributionPoint.
fn listed(crl_der: &[u8], issuer_spki: &[u8], shard: Option<i64>) -> BTreeSet<String> {
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(issuer_spki).unwrap();
    let (rest, crl) = CertificateRevocationList::from_der(crl_der).unwrap();
    assert!(rest.is_empty());
    crl.verify_signature(&spki).unwrap();
    let idp = crl
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "2.5.29.28");
    match shard {
        None => assert!(idp.is_none(), "a complete CRL has no IDP"),
        Some(k) => {
            let idp = idp.expect("a shard's CRL has an IDP");
            assert!(idp.critical, "the IDP is critical");
            let url = format!("{BASE}/crl/test/{k}.crl");
            assert!(
                idp.value.windows(url.len()).any(|w| w == url.as_bytes()),
                "the IDP names {url}"
            );
        }
    }
    crl.iter_revoked_certificates()
        .map(|e| canonical_serial_hex(&hex::encode(e.raw_serial())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn union_of_shards_is_the_set_of_revoked_unexpired_serials() {
    let w = world(SHARDS).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x05ee_dc21);
    // serial -> (not_after, revoked, shard baked into the certificate)
    let mut model: Vec<(String, i64, bool, i64)> = Vec::new();
    let mut checks = 0;
    for step in 0..160 {
        let roll: u32 = rng.gen_range(0..100);
        if roll < 55 || model.is_empty() {
            // Short-lived certificates expire before the later-dated CRLs below.
            let validity = if rng.gen_bool(0.3) { 120 } else { 86400 };
            let (serial, not_after, der) = issue(&w.ca, validity).await;
            let shard = distribution_point_shard(&der);
            assert_eq!(
                shard,
                crl_shard_of(&Serial::from_hex(&serial).unwrap(), SHARDS)
            );
            model.push((serial, not_after, false, shard));
        } else if roll < 85 {
            let live: Vec<usize> = (0..model.len()).filter(|i| !model[*i].2).collect();
            if let Some(&i) = live.get(rng.gen_range(0..live.len().max(1))) {
                let reason = RevocationReason::from_code(rng.gen_range(0..6)).unwrap();
                w.revocation.revoke(&model[i].0, reason).await.unwrap();
                model[i].2 = true;
            }
        } else {
            checks += 1;
            let at = now() + if rng.gen_bool(0.5) { 0 } else { 600 };
            let state = w.revocation.issuer("test").await.unwrap();
            let state = state.as_ref();
            let expected: BTreeSet<String> = model
                .iter()
                .filter(|(_, not_after, revoked, _)| *revoked && *not_after > at)
                .map(|(s, ..)| s.clone())
                .collect();
            let mut union = BTreeSet::new();
            for k in 0..i64::from(SHARDS) {
                let crl = w
                    .revocation
                    .sign_scope(state, CrlScope::Shard(k), at)
                    .await
                    .unwrap();
                let serials = listed(&crl.der, &w.issuer_spki, Some(k));
                for s in &serials {
                    assert!(union.insert(s.clone()), "step {step}: {s} in two shards");
                    let shard = model.iter().find(|m| &m.0 == s).unwrap().3;
                    assert_eq!(shard, k, "step {step}: {s} listed in the wrong shard");
                }
            }
            assert_eq!(union, expected, "step {step}: union of shards at {at}");
            let full = w
                .revocation
                .sign_scope(state, CrlScope::Full, at)
                .await
                .unwrap();
            assert_eq!(listed(&full.der, &w.issuer_spki, None), expected);
        }
    }
    assert!(checks >= 10, "the sequence checked the CRLs {checks} times");
    assert!(model.iter().filter(|m| m.2).count() >= 20);
    assert_eq!(w.revocation.crl_shards("test").await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_is_regenerated_after_a_revocation_and_numbers_increase() {
    let w = world(1).await;
    let (serial, _, der) = issue(&w.ca, 86400).await;
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(format!("{:?}", cert.extensions()).contains("/crl/test.crl"));
    let first = w.revocation.current_crl("test").await.unwrap();
    assert!(listed(&first.der, &w.issuer_spki, None).is_empty());
    let again = w.revocation.current_crl("test").await.unwrap();
    assert_eq!(
        again.number, first.number,
        "a fresh CRL is served from the store"
    );
    w.revocation
        .revoke_with_invalidity(&serial, RevocationReason::KeyCompromise, Some(now() - 3600))
        .await
        .unwrap();
    let second = w.revocation.current_crl("test").await.unwrap();
    assert!(second.number > first.number);
    assert_eq!(
        listed(&second.der, &w.issuer_spki, None),
        BTreeSet::from([serial.clone()])
    );
    let (_, crl) = CertificateRevocationList::from_der(&second.der).unwrap();
    let entry = crl.iter_revoked_certificates().next().unwrap();
    assert!(entry
        .extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == "2.5.29.24"));
    // An unsharded issuer has no shards.
    assert_eq!(w.revocation.crl_shards("test").await.unwrap(), 0);
    assert!(matches!(
        w.revocation
            .current_crl_scope("test", CrlScope::Shard(0))
            .await,
        Err(RevocationError::UnknownShard(..))
    ));
    assert!(matches!(
        w.revocation
            .revoke_with_invalidity(&serial, RevocationReason::KeyCompromise, Some(now() + 60))
            .await,
        Err(RevokeError::InvalidityInFuture)
    ));
}

/// A second responder over the world's store and CA, with delegated responders of 600 s.
fn delegated(w: &World, kek: &Arc<KeyEncryptionKey>) -> Revocation {
    replica(&w.store, &w.ca).with_delegated_responders(
        &HashSet::from(["test".to_string()]),
        kek,
        600,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_responder_signs_and_is_renewed_before_expiry() {
    let w = world(1).await;
    let kek = Arc::new(KeyEncryptionKey::generate());
    let revocation = delegated(&w, &kek);
    let at = now();
    let first = revocation
        .responder(&revocation.issuer("test").await.unwrap(), at)
        .await
        .unwrap()
        .unwrap();
    let again = revocation
        .responder(&revocation.issuer("test").await.unwrap(), at + 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.cert_der, again.cert_der,
        "a valid responder is reused"
    );
    let (_, cert) = X509Certificate::from_der(&first.cert_der).unwrap();
    let text = format!("{:?}", cert.extensions());
    assert!(
        text.contains("OCSPSigning") || text.contains("ocsp_signing"),
        "{text}"
    );
    assert!(
        cert.extensions()
            .iter()
            .any(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5"),
        "id-pkix-ocsp-nocheck"
    );
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&w.issuer_spki).unwrap();
    cert.verify_signature(Some(&spki)).unwrap();
    // A response never outlives its responder.
    let (serial, _, _) = issue(&w.ca, 86400).await;
    let stored = w.store.certificate(&serial).await.unwrap().unwrap();
    let (response, expires_at) = revocation
        .sign_response(
            &revocation.issuer("test").await.unwrap(),
            b"\x30\x00",
            &stored,
            at,
        )
        .await
        .unwrap();
    assert!(expires_at <= first.not_after);
    assert!(
        response
            .windows(first.cert_der.len())
            .any(|w| w == first.cert_der.as_slice()),
        "the response carries the responder certificate"
    );
    // Past two thirds of its life it is replaced, and the new one is stored sealed.
    let renewed = revocation
        .responder(
            &revocation.issuer("test").await.unwrap(),
            first.renew_at + 1,
        )
        .await
        .unwrap()
        .unwrap();
    assert_ne!(renewed.cert_der, first.cert_der);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ocsp_responders")
        .fetch_one(w.store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 2);
    let sealed: String = sqlx::query_scalar("SELECT sealed_key FROM ocsp_responders LIMIT 1")
        .fetch_one(w.store.pool())
        .await
        .unwrap();
    assert!(sealed.contains("PKID ENCRYPTED PRIVATE KEY"), "{sealed}");
    // Another replica (same database and KEK) loads the stored responder instead of issuing.
    let replica = delegated(&w, &kek);
    let loaded = replica
        .responder(&replica.issuer("test").await.unwrap(), now())
        .await
        .unwrap()
        .unwrap();
    assert!(loaded.cert_der == renewed.cert_der || loaded.cert_der == first.cert_der);
    let rows_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ocsp_responders")
        .fetch_one(w.store.pool())
        .await
        .unwrap();
    assert_eq!(rows_after, 2, "the replica issued no responder of its own");
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    assert!(content.len() < 256);
    let mut out = if content.len() < 128 {
        vec![tag, content.len() as u8]
    } else {
        vec![tag, 0x81, content.len() as u8]
    };
    out.extend_from_slice(content);
    out
}

/// An OCSPRequest for one serial of the world's issuer, SHA-1 CertID, no nonce.
async fn ocsp_request(w: &World, serial_hex: &str) -> Vec<u8> {
    ocsp_request_for(w, &[serial_hex], None).await
}

/// An OCSPRequest for `serials` of the world's issuer (SHA-1 CertIDs), with `nonce` (RFC 8954)
/// in its requestExtensions when given.
async fn ocsp_request_for(w: &World, serials: &[&str], nonce: Option<&[u8]>) -> Vec<u8> {
    let state = w.revocation.issuer("test").await.unwrap();
    let algorithm = tlv(0x30, &[&tlv(0x06, OID_SHA1)[..], &[0x05, 0x00]].concat());
    let requests: Vec<u8> = serials
        .iter()
        .flat_map(|serial_hex| {
            let cert_id = tlv(
                0x30,
                &[
                    algorithm.clone(),
                    tlv(0x04, &state.name_sha1),
                    tlv(0x04, &state.key_sha1),
                    tlv(0x02, &hex::decode(serial_hex).unwrap()),
                ]
                .concat(),
            );
            tlv(0x30, &cert_id)
        })
        .collect();
    let mut tbs = tlv(0x30, &requests);
    if let Some(nonce) = nonce {
        let oid_nonce = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];
        let extension = tlv(
            0x30,
            &[tlv(0x06, &oid_nonce), tlv(0x04, &tlv(0x04, nonce))].concat(),
        );
        tbs.extend(tlv(0xa2, &tlv(0x30, &extension)));
    }
    tlv(0x30, &tlv(0x30, &tbs))
}

/// The backend's signatures so far (certificates, CRLs, OCSP responses).
fn signatures(w: &World) -> u64 {
    w.ca.backend.signatures().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsp_is_no_signing_oracle() {
    let w = world(1).await;
    let (serial, _, _) = issue(&w.ca, 86400).await;
    let (other, _, _) = issue(&w.ca, 86400).await;
    let plain = w
        .revocation
        .answer_ocsp(&ocsp_request(&w, &serial).await)
        .await;
    assert_eq!(plain[6], 0, "successful: {plain:02x?}");
    let signed = signatures(&w);
    // A nonce is ignored: the cached response, without it.
    for nonce in [&[1u8; 16][..], &[2u8; 32][..]] {
        let answer = w
            .revocation
            .answer_ocsp(&ocsp_request_for(&w, &[&serial], Some(nonce)).await)
            .await;
        assert_eq!(answer, plain, "the nonce changes nothing");
    }
    // A serial never issued: unauthorized, unsigned.
    for unknown in ["01", "7fffffffffffffff", "00ff"] {
        assert_eq!(
            w.revocation
                .answer_ocsp(&ocsp_request_for(&w, &[unknown], Some(&[3u8; 16])).await)
                .await,
            [0x30, 0x03, 0x0a, 0x01, 0x06]
        );
    }
    // Several certificates in one request: malformedRequest, unsigned.
    assert_eq!(
        w.revocation
            .answer_ocsp(&ocsp_request_for(&w, &[&serial, &other], None).await)
            .await,
        [0x30, 0x03, 0x0a, 0x01, 0x01]
    );
    // Concurrent first requests for a certificate share one signature.
    let request = ocsp_request(&w, &other).await;
    let answers =
        futures_util::future::join_all((0..16).map(|_| w.revocation.answer_ocsp(&request))).await;
    assert!(answers.iter().all(|a| *a == answers[0] && a[6] == 0));
    assert_eq!(signatures(&w), signed + 1, "one signature for all of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_ocsp_responses_are_re_signed_before_they_go_stale() {
    let w = world(1).await;
    let (serial, _, _) = issue(&w.ca, 86400).await;
    let request = ocsp_request(&w, &serial).await;
    let first = w.revocation.answer_ocsp(&request).await;
    assert_eq!(
        &first[..5],
        &[0x30, 0x82, first[2], first[3], 0x0a],
        "{first:02x?}"
    );
    assert_eq!(first[6], 0, "successful");
    assert_eq!(
        w.revocation.answer_ocsp(&request).await,
        first,
        "served from the cache"
    );
    // Nothing is due yet; past half of the response's life it is re-signed ahead of use.
    w.revocation.refresh_ocsp_cache(now() + 60).await;
    assert_eq!(w.revocation.answer_ocsp(&request).await, first);
    w.revocation.refresh_ocsp_cache(now() + 1801).await;
    let refreshed = w.revocation.answer_ocsp(&request).await;
    assert_ne!(refreshed, first, "re-signed (ECDSA signatures differ)");
    assert_eq!(w.revocation.answer_ocsp(&request).await, refreshed);
    // A revocation is never hidden by the cache.
    w.revocation
        .revoke(&serial, RevocationReason::Superseded)
        .await
        .unwrap();
    let revoked = w.revocation.answer_ocsp(&request).await;
    assert_ne!(revoked, refreshed);
    assert!(
        revoked
            .windows(5)
            .any(|p| p == [0xa0, 0x03, 0x0a, 0x01, 0x04]),
        "revoked with reason superseded: {revoked:02x?}"
    );
}

/// A certificate issued and revoked, then a wait past the revocation's second, so that a
/// CRL signed now counts as newer than the revocation.
async fn revoked_a_second_ago(w: &World) -> String {
    let (serial, _, _) = issue(&w.ca, 86400).await;
    w.revocation
        .revoke(&serial, RevocationReason::Superseded)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    serial
}

/// How many CRLs (of every scope) are stored with a number above `number`.
async fn crls_numbered_above(w: &World, number: i64) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM crls WHERE number > ?")
        .bind(number)
        .fetch_one(w.store.pool())
        .await
        .unwrap()
}

/// Replicas over one store that fetch the CRL at once after a revocation serve one CRL:
/// one signs under the lease, the others find its CRL (checked again once a replica has
/// the lease, as another may have signed and released in between).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_fetching_at_once_after_a_revocation_serve_one_crl() {
    let w = world(1).await;
    let replicas: Vec<Arc<Revocation>> =
        (0..6).map(|_| Arc::new(replica(&w.store, &w.ca))).collect();
    let mut before = w.revocation.current_crl("test").await.unwrap().number;
    for round in 0..3 {
        let serial = revoked_a_second_ago(&w).await;
        let mut tasks = Vec::new();
        for replica in &replicas {
            for _ in 0..3 {
                let replica = replica.clone();
                tasks.push(tokio::spawn(async move {
                    replica.current_crl("test").await.unwrap()
                }));
            }
        }
        let mut numbers = BTreeSet::new();
        for task in tasks {
            let crl = task.await.unwrap();
            assert!(listed(&crl.der, &w.issuer_spki, None).contains(&serial));
            numbers.insert(crl.number);
        }
        assert_eq!(numbers.len(), 1, "round {round}: one CRL, not {numbers:?}");
        let number = numbers.into_iter().next().unwrap();
        assert!(number > before);
        assert_eq!(
            crls_numbered_above(&w, before).await,
            1,
            "round {round}: one CRL signed for the revocation"
        );
        before = number;
    }
}

/// The race the lease alone leaves open: replica B finds no fresh CRL, replica A signs,
/// stores and releases, then B takes the free lease. B must serve A's CRL, not sign again.
#[tokio::test]
async fn a_replica_taking_the_lease_after_another_signed_serves_its_crl() {
    let w = world(1).await;
    let b = replica(&w.store, &w.ca);
    let before = w.revocation.current_crl("test").await.unwrap().number;
    let serial = revoked_a_second_ago(&w).await;
    let at = now();
    assert!(
        b.fresh_stored("test", CrlScope::Full, at)
            .await
            .unwrap()
            .is_none(),
        "B finds no CRL newer than the revocation"
    );
    let signed = w.revocation.current_crl("test").await.unwrap();
    assert!(signed.number > before);
    let state = b.issuer("test").await.unwrap();
    let state = state.as_ref();
    let served = b
        .sign_if_lease_free(state, CrlScope::Full, false, at)
        .await
        .expect("the lease is free")
        .unwrap();
    assert_eq!(served.number, signed.number, "B serves A's CRL");
    assert!(listed(&served.der, &w.issuer_spki, None).contains(&serial));
    assert_eq!(
        crls_numbered_above(&w, before).await,
        1,
        "one CRL signed for the revocation"
    );
    // Forced (an operator's regeneration), B signs a new one under the lease.
    let forced = b
        .sign_if_lease_free(state, CrlScope::Full, true, now())
        .await
        .expect("the lease is free")
        .unwrap();
    assert!(forced.number > signed.number);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_holder_at_a_time() {
    let w = world(1).await;
    let at = now();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = w.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .try_lease("crl:test", &format!("replica-{i}"), at, at + 60)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one of eight concurrent takers wins");
    let holder =
        sqlx::query_scalar::<_, String>("SELECT holder FROM leases WHERE name = 'crl:test'")
            .fetch_one(w.store.pool())
            .await
            .unwrap();
    assert!(
        w.store
            .try_lease("crl:test", &holder, at, at + 60)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(!w
        .store
        .try_lease("crl:test", "other", at + 30, at + 90)
        .await
        .unwrap());
    assert!(
        w.store
            .try_lease("crl:test", "other", at + 61, at + 120)
            .await
            .unwrap(),
        "an expired lease is taken over"
    );
    w.store.release_lease("crl:test", "other").await.unwrap();
    assert!(
        w.store
            .try_lease("crl:test", &holder, at + 62, at + 120)
            .await
            .unwrap(),
        "a released lease is free"
    );
}
