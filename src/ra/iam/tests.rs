#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The RA's IAM side against a real SQLite store: requests decided exactly once whoever races,
//! the approval's link written with it, and the list's order and filters.

use std::sync::Arc;

use pkid_backends::KeyEncryptionKey;

use super::*;
use crate::store::{CertLinkFilter, CertLinkStatus, UserRow};

struct NoCas;

#[async_trait::async_trait]
impl CaCertificates for NoCas {
    async fn ca_certificates(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
}

const CA: &str = "CN=Test CA,O=IGI,C=IT";
/// The principal the tests act as.
const BY: &str = "user:tester";

/// A self-signed CA named `CN=<name>,O=IGI,C=IT`.
pub(super) fn ca(name: &str) -> rcgen::Certificate {
    TestCa::new(name).cert
}

/// A CA that can issue: its certificate, key and parameters.
struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = ca_params(name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key, params }
    }

    /// A proxy file (proxy, its key, the end-entity certificate) of a new certificate
    /// `CN=<name>,O=IGI,C=IT` this CA issues.
    fn proxy_file(&self, name: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = igi_name(name);
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let eec = params.signed_by(&key, &issuer).unwrap();
        let at = crate::store::now();
        let made = crate::pki::proxy::issue::generate(&crate::pki::proxy::issue::ProxyRequest {
            chain: &[eec.der().to_vec()],
            key: &crate::pki::proxy::PrivateKey {
                format: crate::pki::proxy::KeyFormat::Pkcs8,
                der: zeroize::Zeroizing::new(key.serialize_der()),
            },
            not_after: at + 3600,
            at,
        })
        .unwrap();
        made.file.to_string()
    }
}

/// `CN=<name>,O=IGI,C=IT`.
fn igi_name(name: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CountryName, "IT");
    dn.push(rcgen::DnType::OrganizationName, "IGI");
    dn.push(rcgen::DnType::CommonName, name);
    dn
}

fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = igi_name(name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
}

async fn iam(dir: &std::path::Path) -> Iam {
    iam_anchored(dir, &ca("Test CA")).await
}

/// The RA's IAM side with `anchor` as its one trust anchor and two users, ann and ben.
async fn iam_anchored(dir: &std::path::Path, anchor: &rcgen::Certificate) -> Iam {
    let url = format!("sqlite://{}?mode=rwc", dir.join("pkid.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let ca = anchor.der().to_vec();
    for name in ["ann", "ben"] {
        let at = crate::store::now();
        let user = UserRow {
            id: format!("id-{name}"),
            username: name.into(),
            email: None,
            roles: "certificate-requestor".into(),
            password_hash: None,
            enabled: true,
            created_at: at,
            updated_at: at,
        };
        store.insert_user(&user, &[]).await.unwrap();
    }
    Iam::new(
        store,
        Arc::new(KeyEncryptionKey::generate()),
        Arc::new(TrustAnchors::new(&[ca], Arc::new(NoCas))),
        IamSettings {
            proxy_max_lifetime_secs: 3600,
        },
    )
}

fn by_dn<'a>(subject: &'a str) -> NewLinkRequest<'a> {
    NewLinkRequest {
        label: Some("label"),
        subject_dn: Some(subject),
        issuer_dn: Some(CA),
        ..NewLinkRequest::default()
    }
}

#[tokio::test]
async fn a_request_is_decided_once_and_its_link_written_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let iam = Arc::new(iam(dir.path()).await);
    let request = iam
        .request_link("id-ann", &by_dn("cn=ann, o=IGI, c=IT"), BY)
        .await
        .unwrap();
    assert_eq!(request.subject_dn, "CN=ann,O=IGI,C=IT");
    assert_eq!(request.username, "ann");

    // Two approvals and a rejection at once: one wins, the others meet a decided request.
    let (a, b, c) = tokio::join!(
        iam.approve_link(&request.uuid, BY),
        iam.approve_link(&request.uuid, BY),
        iam.reject_link(&request.uuid, Some("no"), BY),
    );
    let won = [a.is_ok(), b.is_ok(), c.is_ok()];
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    for lost in [a, b, c].into_iter().filter_map(Result::err) {
        assert!(matches!(lost, IamError::Transition { .. }), "{lost:?}");
    }
    let decided = iam.read(&request.uuid).await.unwrap();
    let links = iam.store.user_certificates("id-ann").await.unwrap();
    match decided.status {
        CertLinkStatus::Approved => assert_eq!(links.len(), 1),
        CertLinkStatus::Rejected => {
            assert!(links.is_empty());
            assert_eq!(decided.motivation.as_deref(), Some("no"));
        }
        CertLinkStatus::Pending => panic!("still pending"),
    }
    // The audit trail: the creation and the one decision, by BY, naming the request.
    let recorded: Vec<(String, String, String)> = audited(&iam)
        .await
        .into_iter()
        .map(|e| (e.principal, e.action, e.resource))
        .collect();
    let decision = match decided.status {
        CertLinkStatus::Approved => "cert_link_request.approved",
        _ => "cert_link_request.rejected",
    };
    let resource = format!("cert-link-request:{}", request.uuid);
    assert_eq!(
        recorded,
        [
            (
                BY.into(),
                "cert_link_request.created".into(),
                resource.clone()
            ),
            (BY.into(), decision.into(), resource),
        ]
    );
}

/// The audit trail's entries (the appender has made each durable before its caller returned).
async fn audited(iam: &Iam) -> Vec<crate::store::AuditEntryRow> {
    iam.store.audit_entries(0, 100).await.unwrap()
}

#[tokio::test]
async fn an_approval_that_would_link_a_subject_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let iam = iam(dir.path()).await;
    // Both ask for the same subject before either is approved.
    let ann = iam
        .request_link("id-ann", &by_dn("CN=shared,O=IGI,C=IT"), BY)
        .await
        .unwrap();
    let ben = iam
        .request_link("id-ben", &by_dn("CN=shared,O=IGI,C=IT"), BY)
        .await
        .unwrap();
    iam.approve_link(&ann.uuid, BY).await.unwrap();
    let refused = iam.approve_link(&ben.uuid, BY).await.unwrap_err();
    assert!(refused.to_string().contains("another account"), "{refused}");
    assert_eq!(
        iam.read(&ben.uuid).await.unwrap().status,
        CertLinkStatus::Pending
    );
    assert!(iam
        .store
        .user_certificates("id-ben")
        .await
        .unwrap()
        .is_empty());
    // Another issuer is no trust anchor.
    let foreign = NewLinkRequest {
        issuer_dn: Some("CN=Elsewhere"),
        ..by_dn("CN=x,O=IGI,C=IT")
    };
    assert!(matches!(
        iam.request_link("id-ann", &foreign, BY).await,
        Err(IamError::Invalid(_))
    ));
}

#[tokio::test]
async fn the_list_is_sorted_filtered_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let iam = iam(dir.path()).await;
    for (user, subject) in [
        ("id-ben", "CN=b2"),
        ("id-ann", "CN=a2"),
        ("id-ben", "CN=b1"),
        ("id-ann", "CN=a1"),
    ] {
        iam.request_link(user, &by_dn(subject), BY).await.unwrap();
    }
    let (total, page) = iam
        .list_links(&CertLinkFilter::default(), 1, 2)
        .await
        .unwrap();
    assert_eq!(total, 4);
    let seen: Vec<(&str, &str)> = page
        .iter()
        .map(|r| (r.username.as_str(), r.subject_dn.as_str()))
        .collect();
    assert_eq!(seen, [("ann", "CN=a2"), ("ben", "CN=b1")]);
    let ben = CertLinkFilter {
        username: Some("ben".into()),
        status: Some(CertLinkStatus::Pending),
        ..CertLinkFilter::default()
    };
    assert_eq!(iam.list_links(&ben, 0, 10).await.unwrap().0, 2);
    assert_eq!(iam.list_links(&ben, 5, 10).await.unwrap(), (2, Vec::new()));
    assert_eq!(iam.list_links(&ben, 0, 0).await.unwrap(), (2, Vec::new()));
}

#[tokio::test]
async fn a_proxy_of_a_look_alike_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let anchor = TestCa::new("Test CA");
    let iam = iam_anchored(dir.path(), &anchor.cert).await;
    // ann's certificate linked by its names only (a request by DN, approved).
    let request = iam
        .request_link("id-ann", &by_dn("CN=ann,O=IGI,C=IT"), BY)
        .await
        .unwrap();
    iam.approve_link(&request.uuid, BY).await.unwrap();

    // The same names from a CA that has the anchor's name but not its key: refused, nothing
    // stored.
    let forged = TestCa::new("Test CA").proxy_file("ann");
    let refused = iam.store_proxy("id-ann", &forged, BY).await.unwrap_err();
    assert!(
        matches!(&refused, IamError::Invalid(m) if m.contains("neither the linked certificate")),
        "{refused}"
    );
    assert!(iam.store.user_proxies("id-ann").await.unwrap().is_empty());

    // The anchor's own certificate with those names: stored.
    let genuine = anchor.proxy_file("ann");
    iam.store_proxy("id-ann", &genuine, BY).await.unwrap();
    assert_eq!(iam.store.user_proxies("id-ann").await.unwrap().len(), 1);
    // Recorded once, the refused one not at all, and never with its key.
    let stored: Vec<_> = audited(&iam)
        .await
        .into_iter()
        .filter(|e| e.action == "proxy.stored")
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let detail = stored[0].detail.as_deref().unwrap_or_default();
    assert!(detail.contains("CN=ann,O=IGI,C=IT"), "{detail}");
    assert!(!detail.contains("PRIVATE KEY"), "{detail}");
}
