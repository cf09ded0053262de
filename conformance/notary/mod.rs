//! Notary's `/api/v1` against a real pkid (issue 26): the seed document replayed with curl
//! (its sample CSR, every request, status codes, envelopes, field names and types), CAs made
//! through the API in software and on SoftHSM signing requests and intermediates that
//! `openssl verify` accepts, revocation on the CA's CRL (`openssl crl`) and in OCSP, a disabled
//! CA that signs nothing, the role matrix, the bad-input list with nothing written, the OpenAPI
//! document run by schemathesis, `/metrics` parsed as Prometheus text and `/readyz`.
//!
//! - `seed`: the seed replayed with curl, then the CA lifecycle (`cas`), metrics and the audit
//!   trail, on one pkid;
//! - `matrix`: every endpoint × every role, then the bad-input list (`badinput`), on one pkid;
//! - `checks`: what they check with (shapes, openssl on CAs and CRLs, `/metrics` parsed);
//! - `openapi`: the document held to the routes, and schemathesis;
//! - `replicas`: a CA made, disabled and used across two replicas on one PostgreSQL.

mod badinput;
mod cas;
mod checks;
mod matrix;
mod openapi;
mod replicas;
mod seed;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::certs::openssl_in;
use crate::harness::pkid::Pkid;
use crate::harness::process::require_tool;

pub(crate) const TEST_BOUND: Duration = Duration::from_secs(240);
/// The password of every account here (Notary's rule: 8+, a capital, a lowercase, a digit).
pub(crate) const PASSWORD: &str = "Notary-Passw0rd";

/// The seed document's sample CSR (C=TR, ST=Izmir, L=Narlidere, O=Internet Widgits Pty Ltd,
/// CN=banana.com; RSA 2048).
pub(crate) const SEED_CSR: &str = "\
-----BEGIN CERTIFICATE REQUEST-----\n\
MIICrjCCAZYCAQAwaTELMAkGA1UEBhMCVFIxDjAMBgNVBAgMBUl6bWlyMRIwEAYD\n\
VQQHDAlOYXJsaWRlcmUxITAfBgNVBAoMGEludGVybmV0IFdpZGdpdHMgUHR5IEx0\n\
ZDETMBEGA1UEAwwKYmFuYW5hLmNvbTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCC\n\
AQoCggEBAK+vJMxO1GTty09/E4M/RbTCPABleCuYc/uzj72KWaIvoDaanuJ4NBWM\n\
2aUiepxWdMNTR6oe31gLq4agLYT309tXwCeBLQnOxvBFWONmBG1qo0fQkvT5kSoq\n\
AO29D7hkQ0gVwg7EF3qOd0JgbDm/yvexKpYLVvWMQAngHwZRnd5vHGk6M3P7G4oG\n\
mIj/CL2bF6va7GWODYHb+a7jI1nkcsrk+vapc+doVszcoJ+2ryoK6JndOSGjt9SD\n\
uxulWZHQO32XC0btyub63pom4QxRtRXmb1mjM37XEwXJSsQO1HOnmc6ycqUK53p0\n\
jF8Qbs0m8y/p2NHFGTUfiyNYA3EdkjUCAwEAAaAAMA0GCSqGSIb3DQEBCwUAA4IB\n\
AQA+hq8kS2Y1Y6D8qH97Mnnc6Ojm61Q5YJ4MghaTD+XXbueTCx4DfK7ujYzK3IEF\n\
pH1AnSeJCsQeBdjT7p6nv5GcwqWXWztNKn9zibXiASK/yYKwqvQpjSjSeqGEh+Sa\n\
9C9SHeaPhZrJRj0i3NkqmN8moWasF9onW6MNKBX0B+pvBB+igGPcjCIFIFGUUaky\n\
upMXY9IG3LlWvlt+HTfuMZV+zSOZgD9oyqkh5K9XRKNq/mnNz/1llUCBZRmfeRBY\n\
+sJ4M6MJRztiyX4/Fjb8UHQviH931rkiEGtG826IvWIyiRSnAeE8B/VzL0GlT9Zq\n\
ge6lFRxB1FlDuU4Blef8FnOI\n\
-----END CERTIFICATE REQUEST-----\n";

/// An answer: status and JSON body (`Null` when the body is not JSON).
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
    pub raw: Vec<u8>,
}

/// Talks to one pkid's Notary surface with curl.
pub(crate) struct Notary {
    pub base: String,
    pub ca_file: PathBuf,
    pub work: PathBuf,
}

impl Notary {
    pub fn new(pkid: &Pkid, work: &Path) -> Notary {
        require_tool("curl");
        std::fs::create_dir_all(work).unwrap();
        Notary {
            base: format!("https://127.0.0.1:{}", pkid.port()),
            ca_file: pkid.root_pem_path(),
            work: work.to_owned(),
        }
    }

    /// `curl -X METHOD BASE+PATH` with a bearer token, a JSON body and extra headers.
    pub fn curl_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        headers: &[&str],
    ) -> Answer {
        let out = self.work.join("answer");
        let input = self.work.join("body");
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time", "30", "-X", method])
            .arg("--cacert")
            .arg(&self.ca_file)
            .arg("-o")
            .arg(&out)
            .args(["-w", "%{http_code}"]);
        if let Some(token) = token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        for header in headers {
            command.args(["-H", header]);
        }
        if let Some(body) = body {
            std::fs::write(&input, body).unwrap();
            command
                .args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(format!("@{}", input.display()));
        }
        command.arg(format!("{}{path}", self.base));
        let output = command.output().expect("run curl");
        let code = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let status: u16 = code.parse().unwrap_or_else(|_| {
            panic!(
                "curl {method} {path}: no status ({code}): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let raw = std::fs::read(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        Answer {
            status,
            body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
            raw,
        }
    }

    pub fn curl(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|b| b.to_string().into_bytes());
        self.curl_with(method, path, token, body.as_deref(), &[])
    }

    /// `method path` must answer `status`; the answer.
    pub fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let answer = self.curl(method, path, token, body);
        assert_eq!(
            answer.status,
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&answer.raw)
        );
        if status >= 400 {
            assert_error(&answer, &format!("{method} {path}"));
        }
        answer
    }

    /// `POST /login`: the token.
    pub fn login(&self, email: &str) -> String {
        let answer = self.expect(
            200,
            "POST",
            "/login",
            None,
            Some(json!({"email": email, "password": PASSWORD})),
        );
        answer.body["result"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {}", answer.body))
            .to_owned()
    }

    /// Make an account (`token`: an admin's; none for the first) and log it in.
    pub fn account(&self, token: Option<&str>, email: &str, role_id: u8) -> (i64, String) {
        let made = self.expect(
            201,
            "POST",
            "/api/v1/accounts",
            token,
            Some(json!({"email": email, "password": PASSWORD, "role_id": role_id})),
        );
        (created_id(&made), self.login(email))
    }

    /// A root CA made through the API (`custody`: `software` or `pkcs11`); its id.
    pub fn root_ca(&self, token: &str, common_name: &str, custody: &str) -> i64 {
        let made = self.expect(
            201,
            "POST",
            "/api/v1/certificate_authorities",
            Some(token),
            Some(json!({
                "self_signed": true, "common_name": common_name, "sans_dns": "",
                "country_name": "TR", "state_or_province_name": "Izmir",
                "locality_name": "Narlidere", "organization_name": "pkid tests",
                "organizational_unit_name": "notary", "not_valid_after": "2036-01-01T00:00:00Z",
                "key_custody": custody,
            })),
        );
        created_id(&made)
    }

    /// Submit `csr`; the request's id.
    pub fn submit(&self, token: &str, csr: &str) -> i64 {
        let made = self.expect(
            201,
            "POST",
            "/api/v1/certificate_requests",
            Some(token),
            Some(json!({ "csr": csr })),
        );
        created_id(&made)
    }

    /// `GET` a JSON resource's `result`.
    pub fn result(&self, token: Option<&str>, path: &str) -> Value {
        self.expect(200, "GET", path, token, None).body["result"].clone()
    }
}

/// `{"result": {"message": "success", "id": N}}`: N.
pub(crate) fn created_id(answer: &Answer) -> i64 {
    assert_eq!(
        answer.body["result"]["message"], "success",
        "{:?}",
        answer.body
    );
    answer.body["result"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer id: {}", answer.body))
}

/// `{"result": {"message": "success"}}` exactly.
pub(crate) fn assert_done(answer: &Answer, what: &str) {
    assert_eq!(
        answer.body,
        json!({"result": {"message": "success"}}),
        "{what}"
    );
}

/// `{"error": "<non-empty>"}` exactly.
pub(crate) fn assert_error(answer: &Answer, what: &str) {
    let object = answer.body.as_object().unwrap_or_else(|| {
        panic!(
            "{what}: not a JSON object: {}",
            String::from_utf8_lossy(&answer.raw)
        )
    });
    assert_eq!(object.len(), 1, "{what}: {}", answer.body);
    assert!(
        object["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {}",
        answer.body
    );
}

/// A fresh EC P-256 key (`<name>.key`) and its CSR (`<name>.csr`) in `work`, with `subject`
/// (openssl's `/C=../CN=..` form) and `sans` (`DNS:a,IP:b`); the CSR PEM.
pub(crate) fn openssl_csr(work: &Path, name: &str, subject: &str, sans: Option<&str>) -> String {
    let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
    let sans = sans.map(|s| format!("subjectAltName={s}"));
    let mut args = vec!["req", "-new"];
    args.extend(NEW_P256_KEY);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    if let Some(sans) = &sans {
        args.extend(["-addext", sans.as_str()]);
    }
    openssl_ok(work, &args);
    std::fs::read_to_string(work.join(&csr)).unwrap()
}

/// openssl's arguments for a new unencrypted EC P-256 key.
pub(crate) const NEW_P256_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// `openssl ARGS` in `work`, which must succeed; its output.
pub(crate) fn openssl_ok(work: &Path, args: &[&str]) -> String {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let (ok, text) = openssl_in(work, &args);
    assert!(ok, "openssl {args:?}: {text}");
    text
}

/// The rows of the tables this surface writes, counted from the SQLite file (a refused request
/// must leave them as they were).
pub(crate) async fn table_counts(pkid: &Pkid) -> Vec<(String, i64)> {
    let pool = pkid.read_database().await;
    let mut counts = Vec::new();
    for table in [
        "certificate_requests",
        "certificate_authorities",
        "certificates",
        "users",
        "account_numbers",
    ] {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        counts.push((table.to_owned(), n));
    }
    // What each request and CA is now, so that a refused change of state shows too.
    let states: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, status, chain_pem FROM certificate_requests ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    for (id, status, chain) in states {
        counts.push((format!("request {id} {status}"), chain.len() as i64));
    }
    let cas: Vec<(i64, bool, Option<i64>)> =
        sqlx::query_as("SELECT id, enabled, revoked_at FROM certificate_authorities ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    for (id, enabled, revoked) in cas {
        counts.push((format!("ca {id} enabled={enabled}"), revoked.unwrap_or(0)));
    }
    pool.close().await;
    counts
}
