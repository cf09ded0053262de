//! One core under every surface: a CA made at run time through the Notary-style `/api/v1` is at
//! once an authority of the CZERTAINLY-style RA client operations, which issue through an RA
//! profile bound to it (the leaf verified with `openssl verify` under that CA), and a trust
//! anchor of the IAM-style `/iam/api/trusts`; disabled through `/api/v1`, it leaves the
//! authorities and an RA profile bound to it issues nothing. Each surface's writes are in the
//! one audit trail under the principal that made them.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::czertainly::{pem_of, Clients, Csr, Ra};
use crate::harness::certs::openssl_verify;
use crate::harness::environment::{within, Environment};
use crate::harness::process::require_tool;
use crate::iam::anchors_listed;
use crate::identity::cli_ok;
use crate::notary::Notary;

const TEST_BOUND: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_made_through_one_surface_serves_the_others() {
    for tool in ["curl", "openssl"] {
        require_tool(tool);
    }
    let clients = Clients::new();
    let (name, value) = clients.setting();
    let env = Environment::start_with(&[(&name, &value)]).await;
    within(TEST_BOUND, async {
        // Notary: the first account, then a root CA made in software.
        let n = Notary::new(&env.pkid, &env.subdir("notary"));
        let (_, admin) = n.account(None, "admin@pkid.test", 0);
        clients.link(&env.pkid).await;
        let ca = n.root_ca(&admin, "Surfaces Root", "software");
        let ca_path = format!("/api/v1/certificate_authorities/{ca}");
        let shown = n.result(Some(&admin), &ca_path);
        let issuer = shown["name"].as_str().unwrap().to_owned();
        let ca_pem = shown["certificate"].as_str().unwrap().to_owned();

        // CZERTAINLY: the CA is an authority; an RA profile on it issues, and the leaf
        // verifies under the CA.
        let ra = Ra::new(&env.pkid, Some(&clients.operator));
        let authority = ra.authority(&issuer).await;
        let base = ra.profile(&authority, "run-time-ca", &[]).await;
        let (_, leaf) = ra.issued(&base, &Csr::new(&["surfaces.pkid.test"])).await;
        let root_file = env.subdir("verify").join("ca.pem");
        std::fs::write(&root_file, &ca_pem).unwrap();
        openssl_verify(&root_file, &pem_of(&leaf), &env.subdir("verify"));

        // IAM: the CA anchors certificate linking.
        let trusts = n.curl("GET", "/iam/api/trusts", Some(&admin), None);
        assert_eq!(trusts.status, 200, "{:?}", trusts.body);
        let anchors = anchors_listed(&trusts.body);
        assert!(
            anchors.iter().any(|a| a.contains("CN=Surfaces Root")),
            "the run-time CA among IAM's anchors: {anchors:?}"
        );

        // Notary disables it: it leaves the authorities (the registry is read again within a
        // second or two), and its RA profile issues nothing.
        n.expect(
            200,
            "PUT",
            &ca_path,
            Some(&admin),
            Some(json!({"enabled": false})),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list = ra.get("/v1/authorities").await;
            assert_eq!(list.status, 200, "{list:?}");
            let listed = list
                .body
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == issuer);
            if !listed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a disabled CA is still an authority"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let refused = ra.issue(&base, &Csr::new(&["after.pkid.test"])).await;
        assert!(
            (400..500).contains(&refused.status),
            "an RA profile on a disabled CA: {refused:?}"
        );
        assert!(
            refused.body["certificateData"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{refused:?}"
        );

        // One audit trail: the CA made by the Notary admin, the certificate by the RA operator.
        let trail = cli_ok(&env.pkid, &["audit", "list"]).await;
        let recorded = |principal: &str, action: &str| {
            trail
                .lines()
                .any(|line| line.contains(principal) && line.contains(action))
        };
        assert!(recorded("user:", "ca.created"), "{trail}");
        assert!(recorded("user:ra-operator", "ra_certificate."), "{trail}");
        cli_ok(&env.pkid, &["audit", "verify"]).await;
    })
    .await;
}
