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

/// A self-signed CA named `CN=<name>,O=IGI,C=IT`.
pub(super) fn ca(name: &str) -> rcgen::Certificate {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CountryName, "IT");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "IGI");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap()
}

async fn iam(dir: &std::path::Path) -> Iam {
    let url = format!("sqlite://{}?mode=rwc", dir.join("pkid.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let ca = ca("Test CA").der().to_vec();
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
        .request_link("id-ann", &by_dn("cn=ann, o=IGI, c=IT"))
        .await
        .unwrap();
    assert_eq!(request.subject_dn, "CN=ann,O=IGI,C=IT");
    assert_eq!(request.username, "ann");

    // Two approvals and a rejection at once: one wins, the others meet a decided request.
    let (a, b, c) = tokio::join!(
        iam.approve_link(&request.uuid),
        iam.approve_link(&request.uuid),
        iam.reject_link(&request.uuid, Some("no")),
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
}

#[tokio::test]
async fn an_approval_that_would_link_a_subject_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let iam = iam(dir.path()).await;
    // Both ask for the same subject before either is approved.
    let ann = iam
        .request_link("id-ann", &by_dn("CN=shared,O=IGI,C=IT"))
        .await
        .unwrap();
    let ben = iam
        .request_link("id-ben", &by_dn("CN=shared,O=IGI,C=IT"))
        .await
        .unwrap();
    iam.approve_link(&ann.uuid).await.unwrap();
    let refused = iam.approve_link(&ben.uuid).await.unwrap_err();
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
        iam.request_link("id-ann", &foreign).await,
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
        iam.request_link(user, &by_dn(subject)).await.unwrap();
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
