//! The bad-input list of issue 26, on the matrix's pkid: malformed PEM, a certificate where a
//! CSR goes, a CSR whose signature does not verify, a chain that does not match its CSR (and one
//! of a single certificate), unknown and non-numeric ids, a body over 100 KiB, a CA's country
//! not two letters and a date not RFC 3339, and the state guards (no sign after `Rejected`, no
//! reject of an `Active` request, no revoke without a certificate) → the documented 4xx with
//! `{"error": …}`, never a 5xx, and every table as it was.

use serde_json::{json, Value};

use super::checks::outside_chain;
use super::{assert_error, openssl_csr, table_counts, Notary};
use crate::harness::environment::Environment;

/// A CSR whose signature no longer verifies: the last byte of its signature changed.
fn bad_signature(csr_pem: &str) -> String {
    let mut der = pem::parse(csr_pem).unwrap().into_contents();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der))
}

pub(super) async fn everything_refused(env: &Environment, n: &Notary, admin: &str, ca: i64) {
    let csr = openssl_csr(&n.work, "bad-a", "/CN=bad-a.pkid.test", None);
    let outstanding = n.submit(admin, &csr);
    let other_csr = openssl_csr(&n.work, "bad-b", "/CN=bad-b.pkid.test", None);
    let foreign_chain = outside_chain(&n.work, "bad-b");
    let ca_pem = n.result(
        Some(admin),
        &format!("/api/v1/certificate_authorities/{ca}"),
    )["certificate"]
        .as_str()
        .unwrap()
        .to_owned();
    let rejected = n.submit(admin, &other_csr);
    n.expect(
        202,
        "POST",
        &format!("/api/v1/certificate_requests/{rejected}/reject"),
        Some(admin),
        None,
    );
    let active = n.submit(
        admin,
        &openssl_csr(&n.work, "bad-c", "/CN=bad-c.pkid.test", None),
    );
    let sign = json!({"certificate_authority_id": ca.to_string()});
    n.expect(
        202,
        "POST",
        &format!("/api/v1/certificate_requests/{active}/sign"),
        Some(admin),
        Some(sign.clone()),
    );
    let one_cert = foreign_chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .to_owned();
    let big = format!("{{\"csr\": \"{}\"}}", "A".repeat(101 * 1024));
    let requests = "/api/v1/certificate_requests";
    let cas = "/api/v1/certificate_authorities";
    let garbage =
        "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n";
    let not_base64 =
        "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n";
    let ca_body = |country: &str, date: &str| {
        Some(
            json!({"self_signed": true, "common_name": "Bad", "country_name": country, "not_valid_after": date}),
        )
    };
    let cases: Vec<(u16, &str, String, Option<Value>, &str)> = vec![
        (
            400,
            "POST",
            requests.into(),
            Some(json!({"csr": garbage})),
            "malformed PEM",
        ),
        (
            400,
            "POST",
            requests.into(),
            Some(json!({"csr": not_base64})),
            "PEM that is not base64",
        ),
        (
            400,
            "POST",
            requests.into(),
            Some(json!({"csr": "hello"})),
            "no PEM at all",
        ),
        (
            400,
            "POST",
            requests.into(),
            Some(json!({"csr": ca_pem})),
            "a certificate instead of a CSR",
        ),
        (
            400,
            "POST",
            requests.into(),
            Some(json!({"csr": bad_signature(&csr)})),
            "a CSR with a bad signature",
        ),
        (
            400,
            "POST",
            requests.into(),
            Some(json!({"certificate": csr})),
            "no csr field",
        ),
        (
            400,
            "POST",
            requests.into(),
            Some(json!({"csr": csr})),
            "the same CSR again",
        ),
        (
            400,
            "POST",
            format!("{requests}/{outstanding}/certificate"),
            Some(json!({"certificate": foreign_chain})),
            "a chain for another CSR",
        ),
        (
            400,
            "POST",
            format!("{requests}/{outstanding}/certificate"),
            Some(json!({"certificate": one_cert})),
            "a chain of one certificate",
        ),
        (
            400,
            "GET",
            format!("{requests}/abc"),
            None,
            "a non-numeric id",
        ),
        (400, "GET", format!("{requests}/0"), None, "id 0"),
        (
            404,
            "GET",
            format!("{requests}/999999"),
            None,
            "an unknown id",
        ),
        (
            404,
            "DELETE",
            format!("{requests}/999999"),
            None,
            "delete an unknown id",
        ),
        (
            400,
            "POST",
            format!("{requests}/{outstanding}/sign"),
            Some(json!({"certificate_authority_id": "x"})),
            "a non-numeric CA id",
        ),
        (
            404,
            "POST",
            format!("{requests}/{outstanding}/sign"),
            Some(json!({"certificate_authority_id": "999999"})),
            "an unknown CA",
        ),
        (
            422,
            "POST",
            format!("{requests}/{outstanding}/certificate/revoke"),
            None,
            "revoke without a certificate",
        ),
        (
            400,
            "GET",
            format!("{cas}/x"),
            None,
            "a non-numeric CA id in the path",
        ),
        (404, "GET", format!("{cas}/999999"), None, "an unknown CA"),
        (
            404,
            "GET",
            format!("{cas}/999999/crl"),
            None,
            "the CRL of an unknown CA",
        ),
        (
            400,
            "POST",
            cas.into(),
            ca_body("TUR", ""),
            "a country of three letters",
        ),
        (
            400,
            "POST",
            cas.into(),
            ca_body("T1", ""),
            "a country with a digit",
        ),
        (
            400,
            "POST",
            cas.into(),
            ca_body("TR", "next year"),
            "a date not RFC 3339",
        ),
        (
            400,
            "POST",
            cas.into(),
            ca_body("TR", "2001-01-01T00:00:00Z"),
            "a date in the past",
        ),
        (
            400,
            "POST",
            cas.into(),
            Some(json!({"self_signed": true})),
            "no common name",
        ),
        (
            400,
            "PUT",
            format!("{cas}/{ca}"),
            Some(json!({"enabled": "yes"})),
            "enabled not a boolean",
        ),
        (
            400,
            "POST",
            "/api/v1/accounts".into(),
            Some(json!({"email": "weak@pkid.test", "password": "short", "role_id": 2})),
            "a weak password",
        ),
        (
            400,
            "POST",
            "/api/v1/accounts".into(),
            Some(json!({"email": "role@pkid.test", "password": super::PASSWORD, "role_id": 7})),
            "an unknown role",
        ),
        (
            400,
            "POST",
            "/api/v1/accounts".into(),
            Some(json!({"email": "no-at", "password": super::PASSWORD, "role_id": 2})),
            "an e-mail address without @",
        ),
    ];
    let state_guards: Vec<(&str, String, Option<Value>, &str)> = vec![
        (
            "POST",
            format!("{requests}/{rejected}/sign"),
            Some(sign.clone()),
            "sign a Rejected request",
        ),
        (
            "POST",
            format!("{requests}/{rejected}/certificate"),
            Some(json!({"certificate": outside_chain(&n.work, "bad-b")})),
            "upload for a Rejected request",
        ),
        (
            "POST",
            format!("{requests}/{active}/reject"),
            None,
            "reject an Active request",
        ),
        (
            "POST",
            format!("{requests}/{active}/sign"),
            Some(sign.clone()),
            "sign an Active request again",
        ),
    ];
    for (status, method, path, body, what) in cases {
        let body = body.map(|b| b.to_string().into_bytes());
        refused(env, n, admin, Some(status), (method, &path, body), what).await;
    }
    for (method, path, body, what) in state_guards {
        let body = body.map(|b| b.to_string().into_bytes());
        refused(env, n, admin, None, (method, &path, body), what).await;
    }
    // Not JSON, and over 100 KiB (413): raw bodies.
    for (status, body, what) in [
        (400, b"{not json".to_vec(), "a body that is not JSON"),
        (413, big.into_bytes(), "a body over 100 KiB"),
    ] {
        refused(
            env,
            n,
            admin,
            Some(status),
            ("POST", requests, Some(body)),
            what,
        )
        .await;
    }
}

/// `method path body` as the admin: `status` (any 4xx for `None`), `{"error"}`, and every
/// table as it was.
async fn refused(
    env: &Environment,
    n: &Notary,
    admin: &str,
    status: Option<u16>,
    (method, path, body): (&str, &str, Option<Vec<u8>>),
    what: &str,
) {
    let before = table_counts(&env.pkid).await;
    let answer = n.curl_with(method, path, Some(admin), body.as_deref(), &[]);
    let raw = String::from_utf8_lossy(&answer.raw);
    match status {
        Some(status) => assert_eq!(answer.status, status, "{what}: {raw}"),
        None => assert!((400..500).contains(&answer.status), "{what}: {raw}"),
    }
    assert_error(&answer, what);
    assert_eq!(
        table_counts(&env.pkid).await,
        before,
        "{what} changed something"
    );
}
