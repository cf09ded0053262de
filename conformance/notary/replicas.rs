//! CAs as data on two replicas sharing one PostgreSQL: a CA made through replica A signs at once
//! on replica B; disabled on A, it signs nothing on B at once (nothing written); a certificate
//! B revoked is on the CA's CRL and revoked in OCSP as A serves them; every other write of the
//! surface made on one replica reads back on the other.

use serde_json::json;

use super::checks::{assert_refused, ca_file, crl_lists, crl_text, outside_chain};
use super::{assert_done, created_id, openssl_csr, Notary, TEST_BOUND};
use crate::harness::certs::{leaf_serial_hex, ocsp_status, pem_chain, OcspSubject};
use crate::harness::environment::{within, Environment};
use crate::harness::pkid::Pkid;
use crate::harness::postgres::Postgres;
use crate::replicas::copy_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_made_on_one_replica_signs_and_stops_at_once_on_the_other() {
    let scratch = tempfile::Builder::new()
        .prefix("pkid-pg-")
        .tempdir()
        .unwrap();
    let postgres = Postgres::start(&scratch.path().join("pg"));
    // One base URL for both, as behind one load balancer: tokens name it.
    let settings = [
        ("PKID_DATABASE__URL", postgres.url.as_str()),
        ("PKID_SERVER__BASE_URL", "https://pkid.test"),
    ];
    let env = Environment::start_with(&settings).await;
    // Replica B: the same configured CA files and key-encryption key, the same database.
    let data_a = env.pkid.root_pem_path().parent().unwrap().to_path_buf();
    let dir_b = env.subdir("replica-b");
    let data_b = dir_b.join("pkid").join("data");
    copy_dir(&data_a.join("ca"), &data_b.join("ca"));
    std::fs::copy(data_a.join("kek"), data_b.join("kek")).unwrap();
    let replica_b = Pkid::start(&dir_b, &env.dns, env.http01_port, &settings).await;
    within(TEST_BOUND, async {
        let a = Notary::new(&env.pkid, &env.subdir("notary-a"));
        let b = Notary::new(&replica_b, &env.subdir("notary-b"));
        let (_, admin) = a.account(None, "admin@pkid.test", 0);

        // Made on A, signing on B at once.
        let ca = a.root_ca(&admin, "Replicated Root", "software");
        let first = b.submit(
            &admin,
            &openssl_csr(&b.work, "first", "/CN=first.pkid.test", None),
        );
        let sign = json!({"certificate_authority_id": ca.to_string()});
        let path = format!("/api/v1/certificate_requests/{first}");
        b.expect(
            202,
            "POST",
            &format!("{path}/sign"),
            Some(&admin),
            Some(sign.clone()),
        );
        let chain = a.result(Some(&admin), &path)["certificate_chain"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(pem_chain(&chain).len() >= 2, "{chain}");

        // Disabled on A: B refuses at once, and writes nothing.
        let ca_path = format!("/api/v1/certificate_authorities/{ca}");
        a.expect(
            200,
            "PUT",
            &ca_path,
            Some(&admin),
            Some(json!({"enabled": false})),
        );
        let second = b.submit(
            &admin,
            &openssl_csr(&b.work, "second", "/CN=second.pkid.test", None),
        );
        let second_path = format!("/api/v1/certificate_requests/{second}");
        let refused = b.curl(
            "POST",
            &format!("{second_path}/sign"),
            Some(&admin),
            Some(sign.clone()),
        );
        assert_refused(&refused, "sign on B with a CA disabled on A");
        assert_eq!(
            a.result(Some(&admin), &second_path)["status"],
            "Outstanding"
        );
        // Enabled on B: A signs.
        b.expect(
            200,
            "PUT",
            &ca_path,
            Some(&admin),
            Some(json!({"enabled": true})),
        );
        a.expect(
            202,
            "POST",
            &format!("{second_path}/sign"),
            Some(&admin),
            Some(sign),
        );

        // Revoked through B: on the CRL and in OCSP as A serves them.
        b.expect(
            202,
            "POST",
            &format!("{path}/certificate/revoke"),
            Some(&admin),
            None,
        );
        let ca_pem = ca_file(&a, &admin, ca);
        let crl = crl_text(&a, ca, &ca_pem);
        let serial = leaf_serial_hex(&chain);
        assert!(crl_lists(&crl, &serial), "{serial} not on A's CRL:\n{crl}");
        let leaf = a.work.join("first-leaf.pem");
        std::fs::write(
            &leaf,
            pem::encode(&pem::Pem::new("CERTIFICATE", pem_chain(&chain).remove(0))),
        )
        .unwrap();
        let ocsp = format!("http://{}/ocsp", env.pkid.http_addr());
        assert_eq!(
            ocsp_status(&ca_pem, &ca_pem, &ocsp, OcspSubject::Cert(&leaf)),
            "revoked"
        );

        the_other_writes(&a, &b, &admin, ca, second);
    })
    .await;
}

/// The surface's other writes on PostgreSQL, each made on one replica and read on the other:
/// a certificate deleted, a request rejected, a chain uploaded, a request deleted, an
/// intermediate made and signed by the root, an account made, its password changed and the
/// account deleted; the list paged.
fn the_other_writes(a: &Notary, b: &Notary, admin: &str, ca: i64, active: i64) {
    let active_path = format!("/api/v1/certificate_requests/{active}");
    assert_done(
        &a.expect(
            200,
            "DELETE",
            &format!("{active_path}/certificate"),
            Some(admin),
            None,
        ),
        "delete certificate",
    );
    assert_eq!(b.result(Some(admin), &active_path)["status"], "Outstanding");

    let rejected = a.submit(
        admin,
        &openssl_csr(&a.work, "rejected", "/CN=rejected.pkid.test", None),
    );
    let rejected_path = format!("/api/v1/certificate_requests/{rejected}");
    b.expect(
        202,
        "POST",
        &format!("{rejected_path}/reject"),
        Some(admin),
        None,
    );
    assert_eq!(a.result(Some(admin), &rejected_path)["status"], "Rejected");

    let outside = b.submit(
        admin,
        &openssl_csr(&b.work, "outside", "/CN=outside.pkid.test", None),
    );
    b.expect(
        201,
        "POST",
        &format!("/api/v1/certificate_requests/{outside}/certificate"),
        Some(admin),
        Some(json!({"certificate": outside_chain(&b.work, "outside")})),
    );
    let shown = a.result(
        Some(admin),
        &format!("/api/v1/certificate_requests/{outside}"),
    );
    assert_eq!(shown["status"], "Active", "{shown}");

    a.expect(202, "DELETE", &rejected_path, Some(admin), None);
    b.expect(404, "GET", &rejected_path, Some(admin), None);

    let all = b.result(Some(admin), "/api/v1/certificate_requests");
    let page = a.result(
        Some(admin),
        "/api/v1/certificate_requests?page=2&per_page=1",
    );
    assert_eq!(page.as_array().unwrap(), &all.as_array().unwrap()[1..2]);

    let made = a.expect(
        201,
        "POST",
        "/api/v1/certificate_authorities",
        Some(admin),
        Some(json!({
            "self_signed": false, "common_name": "Replicated Intermediate", "sans_dns": "",
            "country_name": "DE", "state_or_province_name": "", "locality_name": "",
            "organization_name": "pkid tests", "organizational_unit_name": "",
            "not_valid_after": "2035-01-01T00:00:00Z",
        })),
    );
    let inter = created_id(&made);
    b.expect(
        202,
        "POST",
        &format!("/api/v1/certificate_authorities/{inter}/sign"),
        Some(admin),
        Some(json!({"certificate_authority_id": ca.to_string()})),
    );
    let shown = a.result(
        Some(admin),
        &format!("/api/v1/certificate_authorities/{inter}"),
    );
    assert_eq!(shown["enabled"], true, "{shown}");
    assert!(
        pem_chain(shown["certificate"].as_str().unwrap()).len() >= 2,
        "{shown}"
    );

    let (user, _) = b.account(Some(admin), "requestor@pkid.test", 2);
    a.expect(
        201,
        "POST",
        &format!("/api/v1/accounts/{user}/change_password"),
        Some(admin),
        Some(json!({"password": "Another password 2"})),
    );
    b.expect(
        200,
        "POST",
        "/login",
        None,
        Some(json!({"email": "requestor@pkid.test", "password": "Another password 2"})),
    );
    a.expect(
        202,
        "DELETE",
        &format!("/api/v1/accounts/{user}"),
        Some(admin),
        None,
    );
    b.expect(
        404,
        "GET",
        &format!("/api/v1/accounts/{user}"),
        Some(admin),
        None,
    );
}
