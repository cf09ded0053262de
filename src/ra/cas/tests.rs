//! CAs made at run time, end to end in one process over a real SQLite file: a root and an
//! intermediate made through the RA, the intermediate signed by the root, a request signed by
//! the intermediate under Notary's profile, revocations on the right CRLs, a disabled CA that
//! signs nothing, and a second registry over the same database (another replica) that sees
//! every change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use pkid_backends::{KeyAlgorithm, KeyCustody, RevocationReason, SubjectAttribute};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use crate::ca::registry::{Issuers, RegistrySettings};
use crate::ra::{NewCa, Ra, RaError};
use crate::revocation::{Revocation, RevocationSettings};
use crate::store::Store;

struct World {
    ra: Ra,
    store: Store,
    kek: Arc<pkid_backends::KeyEncryptionKey>,
    _dir: tempfile::TempDir,
}

async fn registry(store: &Store, kek: &Arc<pkid_backends::KeyEncryptionKey>) -> Arc<Issuers> {
    Arc::new(
        Issuers::open(
            store.clone(),
            Vec::new(),
            Arc::new(pkid_backends::CaKeys::new(kek.clone(), None)),
            RegistrySettings {
                backdate_secs: 60,
                revocation_base: Some("http://pkid.test".into()),
                default_custody: KeyCustody::Software,
                default_algorithm: KeyAlgorithm::EcdsaP256,
            },
        )
        .await
        .unwrap(),
    )
}

fn ra_over(store: &Store, issuers: Arc<Issuers>, kek: &Arc<pkid_backends::KeyEncryptionKey>) -> Ra {
    let revocation = Arc::new(Revocation::over(
        store.clone(),
        issuers,
        RevocationSettings {
            crl_lifetime_secs: 3600,
            ocsp_lifetime_secs: 3600,
        },
    ));
    crate::ra::tests::ra_for_tests(store, revocation, kek.clone())
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let kek = Arc::new(pkid_backends::KeyEncryptionKey::generate());
    let issuers = registry(&store, &kek).await;
    World {
        ra: ra_over(&store, issuers, &kek),
        store,
        kek,
        _dir: dir,
    }
}

fn new_ca(cn: &str, self_signed: bool) -> NewCa {
    NewCa {
        self_signed,
        subject: vec![
            SubjectAttribute::text(SubjectAttribute::COUNTRY_NAME, "TR"),
            SubjectAttribute::text(SubjectAttribute::COMMON_NAME, cn),
        ],
        dns_names: Vec::new(),
        not_after: None,
        name: None,
        custody: None,
        algorithm: None,
    }
}

async fn certificates(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM certificates")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn crl_serials(der: &[u8]) -> Vec<String> {
    let (_, crl) = CertificateRevocationList::from_der(der).unwrap();
    crl.iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect()
}

#[tokio::test]
async fn a_root_signs_an_intermediate_which_signs_a_request_and_revocations_land_on_their_crls() {
    let w = world().await;
    let root =
        w.ra.create_ca(new_ca("Root", true), "user:ada")
            .await
            .unwrap();
    let inter =
        w.ra.create_ca(new_ca("Intermediate", false), "user:ada")
            .await
            .unwrap();
    let waiting = w.ra.stored_ca(inter).await.unwrap();
    assert!(!waiting.row.enabled && waiting.row.chain_pem.is_empty());
    assert_eq!(waiting.row.created_by, "user:ada");
    assert!(waiting.issuer().is_none());
    w.ra.sign_ca(inter, root, &["https://pkid.test/crl".into()], "user:max")
        .await
        .unwrap();
    let signed = w.ra.stored_ca(inter).await.unwrap();
    assert!(signed.row.enabled);
    assert_eq!(signed.row.updated_by, "user:max");
    assert_eq!(signed.chain.len(), 2, "the intermediate, then the root");
    let root_entry = w.ra.stored_ca(root).await.unwrap();
    let (_, inter_cert) = X509Certificate::from_der(&signed.chain[0]).unwrap();
    let (_, root_cert) = X509Certificate::from_der(&root_entry.chain[0]).unwrap();
    inter_cert
        .verify_signature(Some(root_cert.public_key()))
        .unwrap();

    // Notary's profile: subject and every SAN copied.
    let pem = crate::pki::csr::tests::full_csr_pem();
    let request =
        w.ra.create_certificate_request(&pem, "u1", "rey@pkid.test", "user:rey")
            .await
            .unwrap();
    assert!(
        matches!(
            w.ra.create_certificate_request(&format!("\n{pem}\n"), "u2", "x@pkid.test", "user:x")
                .await,
            Err(RaError::Conflict(_))
        ),
        "the same CSR twice"
    );
    w.ra.sign_certificate_request(request, inter, &[], "user:max")
        .await
        .unwrap();
    let row = w.store.certificate_request(request).await.unwrap().unwrap();
    assert_eq!(row.status, "Active");
    let chain = crate::pki::pem::certificates(&row.chain_pem).unwrap();
    assert_eq!(chain.len(), 3, "leaf, intermediate, root");
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    assert_eq!(
        leaf.subject().to_string(),
        "C=TR, O=Internet Widgits Pty Ltd, CN=banana.com"
    );
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    assert_eq!(sans.value.general_names.len(), 4);

    // The leaf onto the intermediate's CRL, the intermediate onto the root's.
    w.ra.revoke_request_certificate(request, RevocationReason::KeyCompromise, "user:max")
        .await
        .unwrap();
    let inter_name = signed.row.name.clone();
    let crl = w.ra.revocation.current_crl(&inter_name).await.unwrap();
    assert!(crl_serials(&crl.der).contains(&row.certificate_serial.clone().unwrap()));
    w.ra.revoke_ca(inter, RevocationReason::Unspecified, "user:ada")
        .await
        .unwrap();
    let root_crl =
        w.ra.revocation
            .current_crl(&root_entry.row.name)
            .await
            .unwrap();
    assert!(crl_serials(&root_crl.der).contains(&signed.row.certificate_serial.clone().unwrap()));
    let revoked = w.ra.stored_ca(inter).await.unwrap();
    assert!(!revoked.row.enabled && revoked.row.revoked_at.is_some());
    assert!(matches!(
        w.ra.set_ca_enabled(inter, true, "user:ada").await,
        Err(RaError::Conflict(_))
    ));
}

#[tokio::test]
async fn a_disabled_ca_signs_nothing_and_another_replica_sees_every_change() {
    let w = world().await;
    let replica_issuers = registry(&w.store, &w.kek).await;
    let replica = ra_over(&w.store, replica_issuers.clone(), &w.kek);
    let root =
        w.ra.create_ca(new_ca("Root", true), "user:ada")
            .await
            .unwrap();
    let name = w.ra.stored_ca(root).await.unwrap().row.name.clone();
    assert_eq!(name, format!("ca-{root}"));
    // The other replica finds it by name at once (a miss reads the version row).
    assert!(replica_issuers.get(&name).await.is_some());

    w.ra.set_ca_enabled(root, false, "user:ada").await.unwrap();
    let request =
        w.ra.create_certificate_request(
            &crate::pki::csr::tests::full_csr_pem(),
            "u1",
            "rey@pkid.test",
            "user:rey",
        )
        .await
        .unwrap();
    let before = certificates(&w.store).await;
    // The replica signs nothing with the CA disabled here.
    let refused = replica
        .sign_certificate_request(request, root, &[], "user:max")
        .await;
    assert!(matches!(refused, Err(RaError::Conflict(_))), "{refused:?}");
    assert_eq!(certificates(&w.store).await, before, "nothing was issued");
    let row = w.store.certificate_request(request).await.unwrap().unwrap();
    assert_eq!(row.status, "Outstanding");
    assert!(row.signing_since.is_none());

    w.ra.set_ca_enabled(root, true, "user:ada").await.unwrap();
    replica
        .sign_certificate_request(request, root, &[], "user:max")
        .await
        .unwrap();
    // Deleted here, gone there.
    w.ra.delete_ca(root, "user:ada").await.unwrap();
    assert!(replica_issuers
        .refresh()
        .await
        .unwrap()
        .by_id(root)
        .is_none());
    assert!(replica_issuers.get(&name).await.is_none());
}

#[tokio::test]
async fn bad_cas_and_requests_are_refused_before_anything_is_written() {
    let w = world().await;
    let mut nameless = new_ca("Root", true);
    nameless
        .subject
        .retain(|a| a.oid != SubjectAttribute::COMMON_NAME);
    assert!(matches!(
        w.ra.create_ca(nameless, "user:ada").await,
        Err(RaError::Malformed(_))
    ));
    let mut on_token = new_ca("Root", true);
    on_token.custody = Some(KeyCustody::Pkcs11);
    assert!(matches!(
        w.ra.create_ca(on_token, "user:ada").await,
        Err(RaError::Malformed(_))
    ));
    let mut past = new_ca("Root", true);
    past.not_after = Some(1);
    assert!(matches!(
        w.ra.create_ca(past, "user:ada").await,
        Err(RaError::Malformed(_))
    ));
    let cas: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM certificate_authorities")
        .fetch_one(w.store.pool())
        .await
        .unwrap();
    assert_eq!(cas, 0);

    let root =
        w.ra.create_ca(new_ca("Root", true), "user:ada")
            .await
            .unwrap();
    let cert_pem = w.ra.stored_ca(root).await.unwrap().row.chain_pem.clone();
    for (bad, what) in [
        ("garbage".to_string(), "not PEM"),
        (cert_pem.clone(), "a certificate"),
    ] {
        assert!(
            w.ra.create_certificate_request(&bad, "u1", "a@b.test", "user:rey")
                .await
                .is_err(),
            "{what}"
        );
    }
    let request =
        w.ra.create_certificate_request(
            &crate::pki::csr::tests::full_csr_pem(),
            "u1",
            "a@b.test",
            "user:rey",
        )
        .await
        .unwrap();
    // A chain of one, and one not for the CSR's key.
    for chain in [cert_pem.clone(), format!("{cert_pem}{cert_pem}")] {
        assert!(matches!(
            w.ra.upload_request_chain(request, &chain, "user:max").await,
            Err(RaError::Malformed(_))
        ));
    }
    w.ra.reject_certificate_request(request, "user:max")
        .await
        .unwrap();
    assert!(matches!(
        w.ra.sign_certificate_request(request, root, &[], "user:max")
            .await,
        Err(RaError::Conflict(_))
    ));
    assert!(matches!(
        w.ra.revoke_request_certificate(request, RevocationReason::Unspecified, "user:max")
            .await,
        Err(RaError::Unauthorized(_))
    ));
}
