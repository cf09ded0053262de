//! CAs made through the API, on the same pkid as `seed`: a root whose key is made inside
//! SoftHSM (non-extractable, under a label of its own) signs a request whose chain `openssl
//! verify` accepts, and whose revocation is on its CRL and in OCSP (and once the token is gone,
//! signs nothing: 503, nothing stored); an intermediate starts disabled with a CSR, signs
//! nothing until a root signs it, then issues a chain that verifies up to the root; a disabled
//! CA refuses to sign (4xx, nothing issued) and signs again once enabled; a revoked
//! intermediate is disabled and its certificate is on its root's CRL; a CA past its
//! `not_valid_after` signs nothing.

use std::time::Duration;

use serde_json::json;

use super::checks::{assert_refused, ca_file, crl_lists, crl_text, openssl_text, PIN, TOKEN};
use super::{openssl_csr, table_counts, Notary};
use crate::harness::certs::{leaf_serial_hex, ocsp_status, openssl_verify, pem_chain, OcspSubject};
use crate::harness::environment::Environment;
use crate::harness::softhsm::SoftHsm;

/// A CA made through the API: its id.
fn make_ca(n: &Notary, admin: &str, body: serde_json::Value) -> i64 {
    let made = n.expect(
        201,
        "POST",
        "/api/v1/certificate_authorities",
        Some(admin),
        Some(body),
    );
    super::created_id(&made)
}

/// Sign request `id` with CA `ca`: the answer.
fn sign(n: &Notary, token: &str, id: i64, ca: i64) -> super::Answer {
    n.curl(
        "POST",
        &format!("/api/v1/certificate_requests/{id}/sign"),
        Some(token),
        Some(json!({"certificate_authority_id": ca.to_string()})),
    )
}

/// The CA lifecycle; the id of the SoftHSM root, for what the caller does once the token is gone.
pub(super) async fn lifecycle(env: &Environment, hsm: &SoftHsm, n: &Notary, admin: &str) -> i64 {
    // A root on SoftHSM: its key is in the token, not extractable.
    let keys_before = hsm.pkcs11_tool(TOKEN, PIN, &["--list-objects", "--type", "privkey"]);
    let root = n.root_ca(admin, "Notary HSM Root", "pkcs11");
    let shown = n.result(
        Some(admin),
        &format!("/api/v1/certificate_authorities/{root}"),
    );
    assert_eq!(shown["key_custody"], "pkcs11", "{shown}");
    assert_eq!(shown["enabled"], true);
    assert_eq!(shown["status"], "active");
    let keys = hsm.pkcs11_tool(TOKEN, PIN, &["--list-objects", "--type", "privkey"]);
    assert!(
        keys.matches("Private Key Object").count()
            > keys_before.matches("Private Key Object").count(),
        "{keys}"
    );
    let access: Vec<&str> = keys
        .lines()
        .filter(|l| l.trim_start().starts_with("Access:"))
        .collect();
    assert!(
        !access.is_empty()
            && access
                .iter()
                .all(|l| l.contains("sensitive") && l.contains("never extractable")),
        "the CA keys leave the token: {keys}"
    );
    let root_pem = ca_file(n, admin, root);
    let text = openssl_text(&root_pem);
    assert!(
        text.contains("CN = Notary HSM Root") && text.contains("CA:TRUE"),
        "{text}"
    );

    // It signs a request (EC key, DNS and IP SANs); the chain verifies.
    let csr = openssl_csr(
        &n.work,
        "hsm-leaf",
        "/C=DE/O=pkid/CN=hsm.pkid.test",
        Some("DNS:hsm.pkid.test,IP:127.0.0.1"),
    );
    let id = n.submit(admin, &csr);
    assert_eq!(sign(n, admin, id, root).status, 202);
    let chain = n.result(Some(admin), &format!("/api/v1/certificate_requests/{id}"))
        ["certificate_chain"]
        .as_str()
        .unwrap()
        .to_owned();
    openssl_verify(&root_pem, &chain, &n.work.join("verify-hsm"));
    let leaf = n.work.join("hsm-leaf.pem");
    std::fs::write(
        &leaf,
        pem::encode(&pem::Pem::new("CERTIFICATE", pem_chain(&chain).remove(0))),
    )
    .unwrap();
    let text = openssl_text(&leaf);
    assert!(
        text.contains("DNS:hsm.pkid.test") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    // Revoked: on the HSM CA's CRL (signed in the token) and revoked in OCSP.
    let serial = leaf_serial_hex(&chain);
    n.expect(
        202,
        "POST",
        &format!("/api/v1/certificate_requests/{id}/certificate/revoke"),
        Some(admin),
        None,
    );
    let crl = crl_text(n, root, &root_pem);
    assert!(
        crl_lists(&crl, &serial),
        "{serial} not on the HSM CA's CRL:\n{crl}"
    );
    let ocsp = format!("http://{}/ocsp", env.pkid.http_addr());
    assert_eq!(
        ocsp_status(&root_pem, &root_pem, &ocsp, OcspSubject::Cert(&leaf)),
        "revoked"
    );

    // An intermediate waits disabled with a CSR, and signs nothing until signed.
    let inter = make_ca(
        n,
        admin,
        json!({
            "self_signed": false, "common_name": "Notary Intermediate", "sans_dns": "",
            "country_name": "DE", "state_or_province_name": "", "locality_name": "",
            "organization_name": "pkid tests", "organizational_unit_name": "",
            "not_valid_after": "2035-01-01T00:00:00Z",
        }),
    );
    let shown = n.result(
        Some(admin),
        &format!("/api/v1/certificate_authorities/{inter}"),
    );
    assert_eq!(shown["enabled"], false, "{shown}");
    assert_eq!(shown["certificate"], "");
    assert!(shown["csr"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE REQUEST"));
    let waiting = n.submit(
        admin,
        &openssl_csr(&n.work, "via-inter", "/CN=inter.pkid.test", None),
    );
    assert_refused(
        &sign(n, admin, waiting, inter),
        "sign with a pending intermediate",
    );
    // The CA's own CSR is no certificate request.
    let requests = n.result(Some(admin), "/api/v1/certificate_requests");
    assert!(!requests
        .to_string()
        .contains(&shown["csr"].as_str().unwrap()[40..120]));

    // The HSM root signs it: enabled, and its leaf verifies up to the root.
    let signed = n.expect(
        202,
        "POST",
        &format!("/api/v1/certificate_authorities/{inter}/sign"),
        Some(admin),
        Some(json!({"certificate_authority_id": root.to_string()})),
    );
    super::assert_done(&signed, "sign an intermediate");
    let shown = n.result(
        Some(admin),
        &format!("/api/v1/certificate_authorities/{inter}"),
    );
    assert_eq!(shown["enabled"], true, "{shown}");
    assert_eq!(shown["parent_id"], root);
    let inter_chain = shown["certificate"].as_str().unwrap().to_owned();
    let inter_serial = leaf_serial_hex(&inter_chain);
    assert_eq!(sign(n, admin, waiting, inter).status, 202);
    let chain = n.result(
        Some(admin),
        &format!("/api/v1/certificate_requests/{waiting}"),
    )["certificate_chain"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        pem_chain(&chain).len() >= 3,
        "leaf, intermediate, root: {chain}"
    );
    openssl_verify(&root_pem, &chain, &n.work.join("verify-inter"));

    // Disabled: refuses to sign, nothing issued; enabled again: signs.
    let ca_path = format!("/api/v1/certificate_authorities/{inter}");
    n.expect(
        200,
        "PUT",
        &ca_path,
        Some(admin),
        Some(json!({"enabled": false})),
    );
    assert_eq!(n.result(Some(admin), &ca_path)["status"], "disabled");
    let third = n.submit(
        admin,
        &openssl_csr(&n.work, "third", "/CN=third.pkid.test", None),
    );
    let before = table_counts(&env.pkid).await;
    assert_refused(&sign(n, admin, third, inter), "sign with a disabled CA");
    assert_eq!(
        table_counts(&env.pkid).await,
        before,
        "a refused signature wrote something"
    );
    n.expect(
        200,
        "PUT",
        &ca_path,
        Some(admin),
        Some(json!({"enabled": true})),
    );
    assert_eq!(sign(n, admin, third, inter).status, 202);

    // Revoked: disabled, and on its root's CRL.
    let revoked = n.expect(
        202,
        "POST",
        &format!("{ca_path}/revoke"),
        Some(admin),
        Some(json!({"reason": "cACompromise"})),
    );
    super::assert_done(&revoked, "revoke a CA");
    let shown = n.result(Some(admin), &ca_path);
    assert_eq!(shown["enabled"], false);
    assert_eq!(shown["status"], "revoked");
    let crl = crl_text(n, root, &root_pem);
    assert!(
        crl_lists(&crl, &inter_serial),
        "{inter_serial} not on the root's CRL:\n{crl}"
    );
    assert!(crl.contains("CA Compromise"), "the reason code: {crl}");
    let fourth = n.submit(
        admin,
        &openssl_csr(&n.work, "fourth", "/CN=fourth.pkid.test", None),
    );
    assert_refused(&sign(n, admin, fourth, inter), "sign with a revoked CA");

    // Past its not_valid_after: signs nothing.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let soon = soon
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let short = make_ca(
        n,
        admin,
        json!({
            "self_signed": true, "common_name": "Short-lived", "sans_dns": "", "country_name": "",
            "state_or_province_name": "", "locality_name": "", "organization_name": "",
            "organizational_unit_name": "", "not_valid_after": soon,
        }),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = table_counts(&env.pkid).await;
    assert_refused(&sign(n, admin, fourth, short), "sign with an expired CA");
    assert_eq!(
        table_counts(&env.pkid).await,
        before,
        "a refused signature wrote something"
    );
    root
}

/// Signing with the SoftHSM root once its token is gone: 503 in the surface's shape, and
/// nothing written but the issuance journal's record of the serial, marked abandoned (a serial
/// once journaled is never used again); the request still `Outstanding`.
pub(super) async fn token_gone(env: &Environment, n: &Notary, admin: &str, root: i64) {
    let id = n.submit(
        admin,
        &openssl_csr(&n.work, "token-gone", "/CN=gone.pkid.test", None),
    );
    let without_certificates = |counts: Vec<(String, i64)>| -> Vec<(String, i64)> {
        counts
            .into_iter()
            .filter(|(t, _)| t != "certificates")
            .collect()
    };
    let before = table_counts(&env.pkid).await;
    let statuses_before = certificate_statuses(&env.pkid).await;
    let answer = sign(n, admin, id, root);
    assert_eq!(
        answer.status,
        503,
        "sign with a CA whose token is gone: {}",
        String::from_utf8_lossy(&answer.raw)
    );
    super::assert_error(&answer, "sign with a CA whose token is gone");
    assert_eq!(
        without_certificates(table_counts(&env.pkid).await),
        without_certificates(before),
        "a failed signature changed a request or a CA"
    );
    let mut statuses = certificate_statuses(&env.pkid).await;
    statuses.retain(|(status, _)| status != "abandoned");
    let mut kept_before = statuses_before;
    kept_before.retain(|(status, _)| status != "abandoned");
    assert_eq!(
        statuses, kept_before,
        "a failed signature stored a certificate"
    );
    let request = n.result(Some(admin), &format!("/api/v1/certificate_requests/{id}"));
    assert_eq!(request["status"], "Outstanding", "{request}");
}

/// How many certificates pkid's database holds in each status.
async fn certificate_statuses(pkid: &crate::harness::pkid::Pkid) -> Vec<(String, i64)> {
    let pool = pkid.read_database().await;
    sqlx::query_as("SELECT status, COUNT(*) FROM certificates GROUP BY status ORDER BY status")
        .fetch_all(&pool)
        .await
        .unwrap()
}
