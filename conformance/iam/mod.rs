//! The IAM surface against a real pkid, one pkid for the whole scenario: the grid world made
//! with the tools a grid user has (openssl for the CAs and user certificates, `voms-proxy-init`
//! for the proxies, in a hashed certificates folder that is also pkid's `iam.trust_anchors_dir`),
//! then every request of the two seed documents replayed with curl, as written.
//!
//! - `links`: the certificate linking requests API (every rule of a request's life), the trust
//!   anchors, and the certificate logging in by TLS once its request is approved — and not
//!   before;
//! - `matrix`: who may do what (owner, another user, administrators by role and by scope, an
//!   OAuth2 client, an operator, anonymous) and the paging edge cases;
//! - `proxies`: the upload (its key sealed at rest) and the documented `POST /iam/proxycert`,
//!   with and without `issuerDn`; the file checked by `openssl verify -allow_proxy_certs`,
//!   `openssl x509`, `voms-proxy-info`, and curl logging in with it;
//! - `openapi`: the OpenAPI document against the surface, and schemathesis finding no fault;
//! - the audit trail: `pkid audit list` shows the surface's writes with their principals, and
//!   no key;
//! - `postgres`: the IAM writes and the list on PostgreSQL.

mod links;
mod matrix;
mod openapi;
mod postgres;
mod proxies;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::environment::{within, Environment};
use crate::harness::pkid::Pkid;
use crate::harness::process::{require_tool, run_tool};
use crate::identity::{
    access_token, cli_ok, client_from, create_client, create_user, token_request,
};

const TEST_BOUND: Duration = Duration::from_secs(240);
/// The longest proxy pkid makes in this scenario, in seconds.
const MAX_PROXY_SECS: i64 = 3600;

/// The seed documents' CA, and a second one.
const TEST_CA: &str = "CN=Test CA,O=IGI,C=IT";
const OTHER_CA: &str = "CN=Other CA,O=IGI,C=IT";

/// An answer: its status and its body (JSON, or `Null`) and the raw text.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

/// What the scenario's steps share: pkid, its URL and root, the grid folder, the users' tokens.
pub(crate) struct World<'a> {
    pub pkid: &'a Pkid,
    pub base: String,
    pub root: String,
    /// Certificates, keys and proxy files, and `certificates/` (hashed, the anchors).
    pub dir: PathBuf,
    /// The OAuth2 client the users get their tokens through (all three IAM scopes).
    pub client_id: String,
    pub client_secret: String,
}

impl World<'_> {
    /// `curl -sS` to `path` with `args` before the URL (`-X`, `-H`, `-d` …), trusting pkid's
    /// root; a bearer token when given.
    pub fn curl(&self, token: Option<&str>, args: &[&str], path: &str) -> Reply {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut all: Vec<&str> = vec![
            "-sS",
            "--max-time",
            "30",
            "--cacert",
            &self.root,
            "-w",
            "\n%{http_code}",
        ];
        if let Some(auth) = &auth {
            all.extend(["-H", auth]);
        }
        all.extend(args);
        all.push(&url);
        let (ok, out) = run_tool("curl", &all, &[]);
        assert!(ok, "curl {all:?}:\n{out}");
        let (text, status) = out.rsplit_once('\n').unwrap_or(("", &out));
        Reply {
            status: status
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("no status in {out:?}")),
            body: serde_json::from_str(text).unwrap_or(Value::Null),
            text: text.to_owned(),
        }
    }

    /// `curl` with a JSON body.
    pub fn json(&self, token: Option<&str>, method: &str, path: &str, body: &Value) -> Reply {
        let body = body.to_string();
        self.curl(
            token,
            &[
                "-X",
                method,
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
            ],
            path,
        )
    }

    /// A user's access token through the scenario's client (password grant) with `scope`.
    pub async fn token(&self, username: &str, scope: &str) -> String {
        let http = client_from(self.pkid, "127.0.0.1");
        let answer = token_request(
            &http,
            self.pkid,
            Some((&self.client_id, &self.client_secret)),
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", crate::identity::PASSWORD),
                ("scope", scope),
            ],
        )
        .await;
        access_token(answer).await
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// Runs openssl in `dir`; panics with its output when it fails.
/// The anchors `GET /iam/api/trusts` lists (its `Resources`), as subject DNs.
pub(crate) fn anchors_listed(trusts: &Value) -> Vec<&str> {
    trusts["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no Resources: {trusts}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

pub(crate) fn openssl(dir: &Path, args: &[&str]) -> String {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let (ok, out) = crate::harness::certs::openssl_in(dir, &args);
    assert!(ok, "openssl {args:?}:\n{out}");
    out
}

const EXTENSIONS: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[eec]
basicConstraints = CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
";

/// A CA `name` (its files `name.pem`, `name.key`) with the subject `subject` (openssl's form),
/// copied into the certificates folder when it is to be an `anchor`.
pub(crate) fn make_ca(dir: &Path, name: &str, subject: &str, anchor: bool) {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-subj",
            subject,
            "-days",
            "30",
            "-config",
            "ext.cnf",
            "-extensions",
            "ca",
        ],
    );
    if anchor {
        let folder = dir.join("certificates");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(dir.join(&pem), folder.join(&pem)).unwrap();
    }
}

/// A user certificate `name` (`name.pem`, `name.key`, mode 0600 as grid tools want) with
/// `subject`, issued by the CA `ca`.
pub(crate) fn make_user(dir: &Path, name: &str, subject: &str, ca: &str, serial: u32) {
    let (pem, key, csr) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    openssl(
        dir,
        &[
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
            subject, "-config", "ext.cnf",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &serial.to_string(),
            "-days",
            "10",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "eec",
            "-out",
            &pem,
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join(&key), std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The grid world: two CAs in a hashed certificates folder; test0's certificates from each (one
/// subject, two issuers), bob's from the first, and a stranger's from the first that nobody
/// links.
fn grid_world(dir: &Path) {
    require_tool("openssl");
    std::fs::write(dir.join("ext.cnf"), EXTENSIONS).unwrap();
    make_ca(dir, "testca", "/C=IT/O=IGI/CN=Test CA", true);
    make_ca(dir, "otherca", "/C=IT/O=IGI/CN=Other CA", true);
    make_user(dir, "test0", "/C=IT/O=IGI/CN=test0", "testca", 10);
    make_user(dir, "test0-other", "/C=IT/O=IGI/CN=test0", "otherca", 11);
    make_user(dir, "bob", "/C=IT/O=IGI/CN=bob", "testca", 12);
    make_user(dir, "stranger", "/C=IT/O=IGI/CN=stranger", "testca", 13);
    openssl(dir, &["rehash", "certificates"]);
}

/// The grid world in a fresh folder, and pkid's settings for it: its certificates folder as
/// the trust anchors, `extra` after.
fn grid_and_settings(extra: &[(&str, &str)]) -> (tempfile::TempDir, Vec<(String, String)>) {
    for tool in ["curl", "openssl", "voms-proxy-init", "voms-proxy-info"] {
        require_tool(tool);
    }
    let grid = tempfile::Builder::new()
        .prefix("pkid-iam-")
        .tempdir()
        .unwrap();
    grid_world(grid.path());
    let mut settings = vec![
        (
            "PKID_IAM__TRUST_ANCHORS_DIR".to_owned(),
            grid.path().join("certificates").display().to_string(),
        ),
        (
            "PKID_IAM__PROXY_MAX_LIFETIME_SECS".to_owned(),
            MAX_PROXY_SECS.to_string(),
        ),
    ];
    settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    (grid, settings)
}

/// The scenario's users (test0, bob, admin) and OAuth2 client made in `pkid`.
async fn populate<'a>(pkid: &'a Pkid, grid: &Path) -> World<'a> {
    for (name, role) in [
        ("test0", "certificate-requestor"),
        ("bob", "certificate-requestor"),
        ("admin", "admin"),
    ] {
        create_user(pkid, name, role).await;
    }
    let (client_id, client_secret) = create_client(
        pkid,
        "rcauth",
        "proxy:generate iam:admin.read iam:admin.write",
        &[],
    )
    .await;
    World {
        pkid,
        base: format!("https://127.0.0.1:{}", pkid.port()),
        root: pkid.root_pem_path().display().to_string(),
        dir: grid.to_owned(),
        client_id,
        client_secret,
    }
}

/// `pkid audit list` after the links and proxies scenarios: a request created by its owner,
/// approved by an administrator, a proxy stored and one generated by their owner — each with
/// its principal — and no private key anywhere in the trail.
async fn audit_trail(w: &World<'_>) {
    let listing = cli_ok(w.pkid, &["audit", "list"]).await;
    let recorded = |principal: &str, action: &str, resource: &str| {
        listing.lines().any(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            fields.len() == 7
                && fields[2] == principal
                && fields[3] == action
                && fields[4].starts_with(resource)
                && fields[5] == "success"
        })
    };
    for (principal, action, resource) in [
        (
            "user:test0",
            "cert_link_request.created",
            "cert-link-request:",
        ),
        (
            "user:admin",
            "cert_link_request.approved",
            "cert-link-request:",
        ),
        (
            "user:admin",
            "cert_link_request.rejected",
            "cert-link-request:",
        ),
        ("user:test0", "proxy.stored", "user-certificate:"),
        ("user:test0", "proxy.generated", "user-certificate:"),
    ] {
        assert!(
            recorded(principal, action, resource),
            "no {principal} {action} {resource}… in the audit trail:\n{listing}"
        );
    }
    assert!(!listing.contains("PRIVATE KEY"), "{listing}");
}

fn borrowed(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_seed_documents_replayed_with_curl() {
    let (grid, settings) = grid_and_settings(&[]);
    let env = Environment::start_with(&borrowed(&settings)).await;
    within(TEST_BOUND, async {
        let world = populate(&env.pkid, grid.path()).await;
        links::scenario(&world).await;
        matrix::scenario(&world).await;
        proxies::scenario(&world).await;
        audit_trail(&world).await;
        openapi::scenario(&world).await;
    })
    .await;
}

/// The same writes on PostgreSQL: a request's approval (the link written in the same
/// statement group), rejection, the filtered and paged list, a proxy stored twice (replaced),
/// and a proxy generated from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_on_postgresql() {
    let scratch = tempfile::Builder::new()
        .prefix("pkid-iam-pg-")
        .tempdir()
        .unwrap();
    let postgres = crate::harness::postgres::Postgres::start(&scratch.path().join("pg"));
    let (grid, settings) = grid_and_settings(&[("PKID_DATABASE__URL", &postgres.url)]);
    let env = Environment::start_with(&borrowed(&settings)).await;
    within(TEST_BOUND, async {
        let world = populate(&env.pkid, grid.path()).await;
        postgres::scenario(&world).await;
    })
    .await;
}
