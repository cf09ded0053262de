//! The certificate linking requests API, every request of the seed document with curl: a
//! request's life and its refusals, the trust anchors, and the certificate logging in by TLS
//! once its request is approved (never before, and never a certificate nobody linked).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{make_ca, make_user, Reply, World, OTHER_CA, TEST_CA};
use crate::identity::{client_from, login_token};

/// The members of an object, sorted.
fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A 400 whose `{"error": …}` contains `words`.
fn assert_refused(reply: &Reply, words: &str) {
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(keys(&reply.body), set(&["error"]), "{}", reply.text);
    let error = reply.body["error"].as_str().unwrap_or_default();
    assert!(error.contains(words), "{error:?} lacks {words:?}");
}

/// Who `GET /identity/me` says the holder of the certificate `name` (`name.pem`, `name.key`)
/// is, or the status.
pub(super) fn by_certificate(w: &World<'_>, name: &str) -> Result<String, u16> {
    by_files(w, &format!("{name}.pem"), &format!("{name}.key"))
}

/// Who `GET /identity/me` says the holder of the certificate file `pem` (a chain, leaf first)
/// and its key file `key` (the same file for a grid proxy file) is, or the status.
pub(super) fn by_files(w: &World<'_>, pem: &str, key: &str) -> Result<String, u16> {
    let (pem, key) = (w.path(pem), w.path(key));
    let reply = w.curl(None, &["--cert", &pem, "--key", &key], "/identity/me");
    match reply.status {
        200 => {
            assert_eq!(
                reply.body["result"]["proof"], "certificate",
                "{}",
                reply.text
            );
            Ok(reply.body["result"]["username"]
                .as_str()
                .unwrap()
                .to_owned())
        }
        status => Err(status),
    }
}

fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp() * 1000
}

/// A request by subject and issuer.
pub(super) fn request_by_dn(w: &World<'_>, token: &str, subject: &str, issuer: &str) -> Reply {
    let body = json!({"label": "mytest", "subjectDn": subject, "issuerDn": issuer});
    w.json(Some(token), "POST", "/iam/cert_link_requests", &body)
}

/// A request by PEM certificate (the file `name.pem`).
fn request_by_pem(w: &World<'_>, token: &str, name: &str, extra: Value) -> Reply {
    let pem = std::fs::read_to_string(w.dir.join(format!("{name}.pem"))).unwrap();
    let mut body = json!({"label": name, "pemEncodedCertificate": pem});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    w.json(Some(token), "POST", "/iam/cert_link_requests", &body)
}

fn post(w: &World<'_>, token: &str, path: &str) -> Reply {
    w.curl(Some(token), &["-X", "POST"], path)
}

pub(super) async fn scenario(w: &World<'_>) {
    let http = client_from(w.pkid, "127.0.0.1");
    let test0 = login_token(&http, w.pkid, "test0").await;
    let bob = login_token(&http, w.pkid, "bob").await;
    let admin = login_token(&http, w.pkid, "admin").await;

    // GET /iam/api/trusts: the folder's CAs and pkid's own, in the list envelope.
    let trusts = w.curl(Some(&test0), &[], "/iam/api/trusts");
    assert_eq!(trusts.status, 200, "{}", trusts.text);
    assert_eq!(
        keys(&trusts.body),
        set(&["totalResults", "itemsPerPage", "startIndex", "Resources"])
    );
    let anchors = super::anchors_listed(&trusts.body);
    assert!(
        anchors.contains(&TEST_CA) && anchors.contains(&OTHER_CA),
        "{anchors:?}"
    );
    assert!(
        anchors.iter().any(|a| a.contains("pkid")),
        "pkid's own CAs: {anchors:?}"
    );
    assert_eq!(trusts.body["totalResults"], anchors.len());
    assert_eq!(trusts.body["startIndex"], 1);
    let anonymous = w.curl(None, &[], "/iam/api/trusts");
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    assert_eq!(keys(&anonymous.body), set(&["error", "error_description"]));
    assert_eq!(anonymous.body["error"], "unauthorized");

    // Before any approval the certificate proves nothing.
    assert_eq!(by_certificate(w, "test0"), Err(401));

    // POST /iam/cert_link_requests by subject and issuer (typed with spaces): 200, PENDING.
    let before = now_ms();
    let body = json!({
        "label": "mytest",
        "subjectDn": "CN=test0, O=IGI, C=IT",
        "issuerDn": TEST_CA,
        "notes": "please link my certificate",
    });
    let created = w.json(Some(&test0), "POST", "/iam/cert_link_requests", &body);
    assert_eq!(created.status, 200, "{}", created.text);
    let request = created.body.clone();
    assert_eq!(
        keys(&request),
        set(&[
            "uuid",
            "userUuid",
            "userFullName",
            "username",
            "label",
            "subjectDn",
            "issuerDn",
            "status",
            "notes",
            "creationTime",
            "lastUpdateTime"
        ])
    );
    assert_eq!(request["subjectDn"], "CN=test0,O=IGI,C=IT");
    assert_eq!(request["issuerDn"], TEST_CA);
    assert_eq!(request["status"], "PENDING");
    assert_eq!(request["username"], "test0");
    assert_eq!(request["label"], "mytest");
    let created_at = request["creationTime"].as_i64().unwrap();
    assert!(
        created_at >= before - 1000 && created_at <= now_ms() + 1000,
        "milliseconds: {created_at}"
    );
    assert_eq!(request["lastUpdateTime"], request["creationTime"]);
    let uuid = request["uuid"].as_str().unwrap().to_owned();
    assert_eq!(uuid.len(), 36, "{uuid}");

    // One pending request per certificate.
    assert_refused(
        &request_by_dn(w, &test0, "CN=test0,O=IGI,C=IT", TEST_CA),
        "PENDING",
    );

    // GET the list and the request.
    let list = w.curl(Some(&test0), &[], "/iam/cert_link_requests");
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        keys(&list.body),
        set(&["totalResults", "itemsPerPage", "startIndex", "Resources"])
    );
    assert_eq!(list.body["Resources"], json!([request.clone()]));
    let one = w.curl(
        Some(&test0),
        &[],
        &format!("/iam/cert_link_requests/{uuid}"),
    );
    assert_eq!((one.status, &one.body), (200, &request));
    let foreign = w.curl(Some(&bob), &[], &format!("/iam/cert_link_requests/{uuid}"));
    assert_eq!(foreign.status, 403, "{}", foreign.text);
    assert_eq!(foreign.body["error"], "access_denied");
    let missing = w.curl(Some(&admin), &[], "/iam/cert_link_requests/no-such-request");
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert_eq!(keys(&missing.body), set(&["error"]));

    // Only administrators decide.
    let by_owner = post(
        w,
        &test0,
        &format!("/iam/cert_link_requests/{uuid}/approve"),
    );
    assert_eq!(by_owner.status, 403, "{}", by_owner.text);

    // POST …/approve: APPROVED, and the certificate now logs in as test0 (a stranger's never).
    let approved = post(
        w,
        &admin,
        &format!("/iam/cert_link_requests/{uuid}/approve"),
    );
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(approved.body["status"], "APPROVED");
    assert!(
        approved.body.get("motivation").is_none(),
        "{}",
        approved.text
    );
    assert!(approved.body["lastUpdateTime"].as_i64() >= approved.body["creationTime"].as_i64());
    assert_eq!(by_certificate(w, "test0"), Ok("test0".into()));
    assert_eq!(by_certificate(w, "stranger"), Err(401));
    // … and it authenticates on the IAM surface itself.
    let (pem, key) = (w.path("test0.pem"), w.path("test0.key"));
    let mine = w.curl(
        None,
        &["--cert", &pem, "--key", &key],
        "/iam/cert_link_requests",
    );
    assert_eq!(
        (mine.status, &mine.body["totalResults"]),
        (200, &json!(1)),
        "{}",
        mine.text
    );

    // Only PENDING → APPROVED | REJECTED.
    let again = post(
        w,
        &admin,
        &format!("/iam/cert_link_requests/{uuid}/approve"),
    );
    assert_eq!(
        (again.status, &again.body),
        (
            400,
            &json!({"error": "Invalid certLink request transition: APPROVED -> APPROVED"})
        )
    );
    let reject = post(
        w,
        &admin,
        &format!("/iam/cert_link_requests/{uuid}/reject?motivation=late"),
    );
    assert_eq!(
        (reject.status, &reject.body),
        (
            400,
            &json!({"error": "Invalid certLink request transition: APPROVED -> REJECTED"})
        )
    );

    // By PEM (the other CA's certificate of the same subject), rejected with a motivation.
    let other = request_by_pem(w, &test0, "test0-other", json!({}));
    assert_eq!(other.status, 200, "{}", other.text);
    assert_eq!(other.body["issuerDn"], OTHER_CA);
    assert_eq!(other.body["subjectDn"], "CN=test0,O=IGI,C=IT");
    // No notes given: stored as "", and the answer has no notes member (as the seed's).
    assert!(other.body.get("notes").is_none(), "{}", other.text);
    assert!(other.body["pemEncodedCertificate"]
        .as_str()
        .is_some_and(|p| p.contains("BEGIN CERTIFICATE")));
    let other_uuid = other.body["uuid"].as_str().unwrap().to_owned();
    let reject_path = format!("/iam/cert_link_requests/{other_uuid}/reject");
    assert_refused(&post(w, &admin, &reject_path), "motivation");
    assert_refused(
        &post(w, &admin, &format!("{reject_path}?motivation=%20%20")),
        "motivation",
    );
    let rejected = post(
        w,
        &admin,
        &format!("{reject_path}?motivation=reject%20motivation"),
    );
    assert_eq!(rejected.status, 200, "{}", rejected.text);
    assert_eq!(rejected.body["status"], "REJECTED");
    assert_eq!(rejected.body["motivation"], "reject motivation");
    let approve_rejected = post(
        w,
        &admin,
        &format!("/iam/cert_link_requests/{other_uuid}/approve"),
    );
    assert_eq!(
        approve_rejected.body,
        json!({"error": "Invalid certLink request transition: REJECTED -> APPROVED"})
    );
    assert_eq!(by_certificate(w, "test0-other"), Err(401));
    // Kept once decided: the history is there.
    let history = w.curl(Some(&test0), &[], "/iam/cert_link_requests?status=REJECTED");
    assert_eq!(history.body["totalResults"], 1, "{}", history.text);
    assert_eq!(
        history.body["Resources"][0]["motivation"],
        "reject motivation"
    );

    // Asked again, by PEM with matching names, and approved by a token that may only write.
    let again = request_by_pem(
        w,
        &test0,
        "test0-other",
        json!({"subjectDn": "CN=test0,O=IGI,C=IT", "issuerDn": OTHER_CA}),
    );
    assert_eq!(again.status, 200, "{}", again.text);
    let writer = w.token("admin", "iam:admin.write").await;
    let approved = post(
        w,
        &writer,
        &format!(
            "/iam/cert_link_requests/{}/approve",
            again.body["uuid"].as_str().unwrap()
        ),
    );
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(by_certificate(w, "test0-other"), Ok("test0".into()));

    // The refusals of a new request.
    assert_refused(
        &request_by_dn(w, &bob, "CN=test0,O=IGI,C=IT", TEST_CA),
        "another account",
    );
    assert_refused(&request_by_pem(w, &test0, "test0", json!({})), "already");
    assert_refused(
        &request_by_dn(w, &test0, "CN=test0,O=IGI,C=IT", "CN=Nobody CA,O=IGI,C=IT"),
        "not a trusted",
    );
    assert_refused(
        &request_by_dn(w, &test0, "no equals sign", TEST_CA),
        "subjectDn",
    );
    assert_refused(
        &request_by_pem(w, &bob, "bob", json!({"subjectDn": "CN=alice,O=IGI,C=IT"})),
        "subjectDn does not match",
    );
    let no_label = json!({"subjectDn": "CN=x,O=IGI,C=IT", "issuerDn": TEST_CA});
    assert_refused(
        &w.json(Some(&bob), "POST", "/iam/cert_link_requests", &no_label),
        "label",
    );
    let label_only = json!({"label": "x"});
    assert_refused(
        &w.json(Some(&bob), "POST", "/iam/cert_link_requests", &label_only),
        "subjectDn",
    );
    let not_json = w.curl(
        Some(&bob),
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            "{nope",
        ],
        "/iam/cert_link_requests",
    );
    assert_eq!(not_json.status, 400, "{}", not_json.text);
    // A certificate under a CA that only copies a trusted CA's name.
    forge(w);
    assert_refused(&request_by_pem(w, &bob, "forged", json!({})), "signature");

    // bob's own certificate, linked (the proxies use it).
    let bobs = request_by_pem(w, &bob, "bob", json!({}));
    assert_eq!(bobs.status, 200, "{}", bobs.text);
    let approved = post(
        w,
        &admin,
        &format!(
            "/iam/cert_link_requests/{}/approve",
            bobs.body["uuid"].as_str().unwrap()
        ),
    );
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(by_certificate(w, "bob"), Ok("bob".into()));

    // DELETE: the owner only while PENDING, an administrator any; 204.
    let delete = |token: &str, id: &str| {
        w.curl(
            Some(token),
            &["-X", "DELETE"],
            &format!("/iam/cert_link_requests/{id}"),
        )
    };
    assert_refused(&delete(&test0, &uuid), "PENDING");
    let extra = request_by_dn(w, &test0, "CN=test0 extra,O=IGI,C=IT", TEST_CA);
    assert_eq!(extra.status, 200, "{}", extra.text);
    let extra_uuid = extra.body["uuid"].as_str().unwrap().to_owned();
    assert_eq!(delete(&bob, &extra_uuid).status, 403);
    let deleted = delete(&test0, &extra_uuid);
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    let gone = w.curl(
        Some(&test0),
        &[],
        &format!("/iam/cert_link_requests/{extra_uuid}"),
    );
    assert_eq!(gone.status, 404, "{}", gone.text);
    assert_eq!(delete(&admin, &other_uuid).status, 204);
    // The link an approved request made stays when the request goes.
    assert_eq!(delete(&admin, &uuid).status, 204);
    assert_eq!(by_certificate(w, "test0"), Ok("test0".into()));
}

/// `forgedca` (subject `CN=Test CA,O=IGI,C=IT`, outside the anchors) and `forged` under it.
fn forge(w: &World<'_>) {
    make_ca(&w.dir, "forgedca", "/C=IT/O=IGI/CN=Test CA", false);
    make_user(&w.dir, "forged", "/C=IT/O=IGI/CN=forged", "forgedca", 99);
}
