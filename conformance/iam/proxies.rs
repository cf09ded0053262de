//! The proxy certificate API with curl, as documented: proxies made by `voms-proxy-init` from
//! the linked certificates, uploaded (`PUT /iam/account/me/proxycert`, the key sealed at rest),
//! then `curl -s -X POST -H "Authorization: Bearer ${BT}" -d client_id=… -d client_secret=…
//! -d lifetimeSecs=… …/iam/proxycert`, with and without `-d issuerDn=…`. What comes back is
//! checked as a grid user would: `openssl verify -allow_proxy_certs`, `openssl x509 -text`
//! (proxyCertInfo critical, inheritAll), the key against the certificate, `voms-proxy-info`,
//! and curl logging in with the file.

use std::collections::BTreeSet;

use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::Row;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::links::by_files;
use super::{openssl, Reply, World, MAX_PROXY_SECS, OTHER_CA, TEST_CA};
use crate::harness::certs::pem_chain;
use crate::harness::process::run_tool;
use crate::identity::{client_from, login_token};

/// `voms-proxy-init` for the certificate `name`, valid `valid` (`HH:MM`), into `out`.
fn voms_proxy(w: &World<'_>, name: &str, valid: &str, out: &str) {
    let certificates = w.dir.join("certificates");
    let (pem, key, out) = (
        w.path(&format!("{name}.pem")),
        w.path(&format!("{name}.key")),
        w.path(out),
    );
    let (ok, text) = run_tool(
        "voms-proxy-init",
        &["-cert", &pem, "-key", &key, "-out", &out, "-valid", valid],
        &[("X509_CERT_DIR", &certificates)],
    );
    assert!(ok, "voms-proxy-init {name}:\n{text}");
}

fn upload(w: &World<'_>, token: &str, file: &str) -> Reply {
    let chain = std::fs::read_to_string(w.dir.join(file)).unwrap();
    w.json(
        Some(token),
        "PUT",
        "/iam/account/me/proxycert",
        &json!({ "certificate_chain": chain }),
    )
}

/// The documented request: `-d client_id -d client_secret -d lifetimeSecs [-d issuerDn]`.
fn generate(w: &World<'_>, token: Option<&str>, lifetime: &str, issuer: Option<&str>) -> Reply {
    let mut fields = vec![format!("lifetimeSecs={lifetime}")];
    fields.extend(issuer.map(|dn| format!("issuerDn={dn}")));
    generate_with(w, token, &fields)
}

/// `POST /iam/proxycert` with the client's credentials and `fields` (`name=value`).
fn generate_with(w: &World<'_>, token: Option<&str>, fields: &[String]) -> Reply {
    let (id, secret) = (
        format!("client_id={}", w.client_id),
        format!("client_secret={}", w.client_secret),
    );
    let mut args = vec!["-X", "POST", "-d", &id, "-d", &secret];
    for field in fields {
        args.extend(["-d", field.as_str()]);
    }
    w.curl(token, &args, "/iam/proxycert")
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A generated proxy: the answer's members and the file written to `name`; the new proxy's
/// notAfter.
fn check_generated(w: &World<'_>, reply: &Reply, name: &str, ca: &str) -> i64 {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = &reply.body;
    let members: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        members,
        BTreeSet::from([
            "subject",
            "issuer",
            "identity",
            "not_after",
            "certificate_chain"
        ])
    );
    assert_eq!(body["identity"], "CN=test0,O=IGI,C=IT");
    let (subject, issuer) = (
        body["subject"].as_str().unwrap(),
        body["issuer"].as_str().unwrap(),
    );
    // The stored proxy's subject (voms-proxy-init's CN under test0's) plus one CN.
    assert!(
        issuer.ends_with(",CN=test0,O=IGI,C=IT") && issuer.starts_with("CN="),
        "{issuer}"
    );
    let (added, rest) = subject.split_once(',').unwrap();
    assert_eq!(rest, issuer);
    assert!(
        added
            .strip_prefix("CN=")
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_digit()),
        "{subject}"
    );
    let not_after: i64 = body["not_after"]
        .as_str()
        .expect("a string")
        .parse()
        .unwrap();

    let file = body["certificate_chain"].as_str().unwrap();
    std::fs::write(w.dir.join(name), file).unwrap();
    let blocks = pem::parse_many(file).unwrap();
    let tags: Vec<&str> = blocks.iter().map(|b| b.tag()).collect();
    assert_eq!(
        tags,
        [
            "CERTIFICATE",
            "RSA PRIVATE KEY",
            "CERTIFICATE",
            "CERTIFICATE"
        ]
    );
    let chain = pem_chain(file);
    let (_, proxy) = X509Certificate::from_der(&chain[0]).unwrap();
    assert_eq!(proxy.validity().not_after.timestamp() * 1000, not_after);

    // openssl: the chain verifies as a proxy chain; the extensions are what RFC 3820 asks.
    let verified = openssl(
        &w.dir,
        &[
            "verify",
            "-allow_proxy_certs",
            "-CAfile",
            ca,
            "-untrusted",
            name,
            name,
        ],
    );
    assert!(verified.contains(": OK"), "{verified}");
    let text = openssl(&w.dir, &["x509", "-in", name, "-noout", "-text"]);
    for expected in [
        "Proxy Certificate Information: critical",
        "Policy Language: Inherit all",
        "X509v3 Key Usage: critical",
        "Digital Signature, Key Encipherment",
        "Public-Key: (2048 bit)",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    // The key is the certificate's.
    let from_certificate = openssl(&w.dir, &["x509", "-in", name, "-noout", "-pubkey"]);
    let from_key = openssl(&w.dir, &["pkey", "-in", name, "-pubout"]);
    assert_eq!(from_certificate, from_key);
    // voms-proxy-info reads it, and verifies it against the CAs of the certificates folder.
    let certificates = w.dir.join("certificates");
    let (ok, info) = run_tool(
        "voms-proxy-info",
        &["-file", &w.path(name), "-all"],
        &[("X509_CERT_DIR", &certificates)],
    );
    assert!(ok, "voms-proxy-info:\n{info}");
    for expected in [
        "RFC compliant proxy",
        "identity  : /C=IT/O=IGI/CN=test0",
        "strength  : 2048",
    ] {
        assert!(info.contains(expected), "{expected:?} in:\n{info}");
    }
    not_after / 1000
}

pub(super) async fn scenario(w: &World<'_>) {
    let http = client_from(w.pkid, "127.0.0.1");
    let test0 = login_token(&http, w.pkid, "test0").await;
    let bob = login_token(&http, w.pkid, "bob").await;
    let bt = w.token("test0", "proxy:generate").await;
    let bob_bt = w.token("bob", "proxy:generate").await;

    // Nothing stored yet.
    let none = generate(w, Some(&bt), "3600", None);
    assert_eq!(
        (none.status, &none.body),
        (412, &json!({"error": "No proxy found for account 'test0'"}))
    );

    // test0's two proxies: the seed CA's for 12 hours, the other CA's for half an hour.
    voms_proxy(w, "test0", "12:00", "proxy-a.pem");
    voms_proxy(w, "test0-other", "0:30", "proxy-b.pem");
    for file in ["proxy-a.pem", "proxy-b.pem"] {
        let stored = upload(w, &test0, file);
        assert_eq!((stored.status, stored.text.as_str()), (200, ""), "{file}");
    }
    // Refused: another account's proxy, a file that is not one, one past 8192 characters.
    let refused = upload(w, &bob, "proxy-a.pem");
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains("not linked"),
        "{}",
        refused.text
    );
    let junk = json!({"certificate_chain": "not a proxy"});
    assert_eq!(
        w.json(Some(&test0), "PUT", "/iam/account/me/proxycert", &junk)
            .status,
        400
    );
    let long = json!({"certificate_chain": "A".repeat(8193)});
    let long = w.json(Some(&test0), "PUT", "/iam/account/me/proxycert", &long);
    assert!(
        long.status == 400 && long.text.contains("8192"),
        "{}",
        long.text
    );

    // At rest the keys are sealed: no private key in the clear in the database.
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(w.pkid.database_path())
                .read_only(true),
        )
        .await
        .unwrap();
    let rows = sqlx::query("SELECT sealed_key, chain_pem FROM user_proxies")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let (sealed, chain): (String, String) = (row.get(0), row.get(1));
        assert!(
            sealed.starts_with("-----BEGIN PKID ENCRYPTED PRIVATE KEY-----"),
            "{sealed}"
        );
        assert!(!chain.contains("PRIVATE KEY"), "{chain}");
    }
    db.close().await;

    // The documented request, without issuerDn: the first stored proxy, its lifetime cut to
    // the configured maximum.
    let asked = 7200;
    let before = now();
    let reply = generate(w, Some(&bt), &asked.to_string(), None);
    let not_after = check_generated(w, &reply, "generated-a.pem", "testca.pem");
    assert!(
        (before + MAX_PROXY_SECS - 5..=now() + MAX_PROXY_SECS).contains(&not_after),
        "capped at {MAX_PROXY_SECS} s: {not_after} (now {before})"
    );
    let (ok, info) = run_tool(
        "voms-proxy-info",
        &[
            "-file",
            &w.path("generated-a.pem"),
            "-exists",
            "-valid",
            "0:50",
        ],
        &[("X509_CERT_DIR", &w.dir.join("certificates"))],
    );
    assert!(ok, "voms-proxy-info -valid 0:50:\n{info}");
    // The generated proxy logs in as test0, as the certificate does.
    assert_eq!(
        by_files(w, "generated-a.pem", "generated-a.pem"),
        Ok("test0".into())
    );

    // With issuerDn: the other CA's proxy, cut to its own end (half an hour), not the
    // hour allowed.
    let reply = generate(w, Some(&bt), "3000", Some(OTHER_CA));
    let not_after = check_generated(w, &reply, "generated-b.pem", "otherca.pem");
    let chain = std::fs::read_to_string(w.dir.join("proxy-b.pem")).unwrap();
    let stored = pem_chain(&chain);
    let (_, stored) = X509Certificate::from_der(&stored[0]).unwrap();
    assert_eq!(not_after, stored.validity().not_after.timestamp());
    assert!(not_after < before + 1900, "{not_after}");

    // IAM's own parameter name, `issuer`, chooses as `issuerDn` does; the two naming
    // different CAs are refused.
    let by_issuer = generate_with(
        w,
        Some(&bt),
        &["lifetimeSecs=600".into(), format!("issuer={OTHER_CA}")],
    );
    let not_after = check_generated(w, &by_issuer, "generated-c.pem", "otherca.pem");
    assert!(not_after <= now() + 600, "{not_after}");
    let both = generate_with(
        w,
        Some(&bt),
        &[format!("issuer={OTHER_CA}"), format!("issuerDn={TEST_CA}")],
    );
    assert_eq!(both.status, 400, "{}", both.text);
    assert!(both.body["error"].is_string(), "{}", both.text);

    // Refusals, in IAM's shapes.
    let short = generate(w, Some(&bt), "60", None);
    assert_eq!(short.status, 400, "{}", short.text);
    let nan = generate(w, Some(&bt), "soon", None);
    assert_eq!(nan.status, 400, "{}", nan.text);
    let long_issuer = generate(w, Some(&bt), "3600", Some(&"C".repeat(130)));
    assert_eq!(long_issuer.status, 400, "{}", long_issuer.text);
    let anonymous = generate(w, None, "3600", None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    assert_eq!(anonymous.body["error"], "unauthorized");
    let unscoped = generate(w, Some(&test0), "3600", None);
    assert_eq!(unscoped.status, 403, "{}", unscoped.text);
    assert_eq!(unscoped.body["error"], "access_denied");
    let wrong_secret = w.curl(
        Some(&bt),
        &[
            "-X",
            "POST",
            "-d",
            &format!("client_id={}", w.client_id),
            "-d",
            "client_secret=wrong",
        ],
        "/iam/proxycert",
    );
    assert_eq!(wrong_secret.status, 401, "{}", wrong_secret.text);
    assert_eq!(wrong_secret.body["error"], "unauthorized");
    let unknown_issuer = generate(w, Some(&bt), "3600", Some("CN=Nobody CA,O=IGI,C=IT"));
    assert_eq!(
        (unknown_issuer.status, &unknown_issuer.body),
        (412, &json!({"error": "No proxy found for account 'test0'"}))
    );

    // bob: nothing stored, then only a proxy about to expire.
    let reply = generate(w, Some(&bob_bt), "3600", None);
    assert_eq!(
        reply.body,
        json!({"error": "No proxy found for account 'bob'"})
    );
    voms_proxy(w, "bob", "0:01", "proxy-bob.pem");
    let stored = upload(w, &bob, "proxy-bob.pem");
    assert_eq!(stored.status, 200, "{}", stored.text);
    let reply = generate(w, Some(&bob_bt), "3600", None);
    assert_eq!(
        (reply.status, &reply.body),
        (
            412,
            &json!({"error": "No valid proxy found for account 'bob'"})
        )
    );
}
