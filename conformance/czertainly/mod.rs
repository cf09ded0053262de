//! The CZERTAINLY-style RA client operations against a real pkid, replaying the operations of
//! the Client Operations API 2.13.0 (`seeds/czertainly-client-operations-api-2.13.0.txt`) with a
//! TLS client certificate linked to a user, and checking status codes and shapes:
//!
//! - `local`: authorities and RA profiles, the attributes and their validation, issue, renew
//!   (same key), rekey (new key, same subject), revoke (on the CRL), approval and issue-New,
//!   on the software CA and on a SoftHSM2 token; a disabled or mismatching profile refused with
//!   nothing issued; the seed's error shapes;
//! - `upstream`: the same through pebble (an upstream ACME CA that answers late: `""` + uuid,
//!   the certificate collected by the background job, across a restart of pkid) and `cfssl
//!   serve`; an upstream down (503) or refusing (502) leaves the record `failed` with an event;
//! - `v1`: end entities, issue for one (password, subject DN), revoke by serial and issuer DN,
//!   `DELETE` revoking the entity's certificates;
//! - `keys`: managed keys in the software store (sealed with the key-encryption key) and on a
//!   SoftHSM2 token, CSRs built from them on the server, `destroyKey` and `DELETE` removing them;
//! - `openapi`: `/v2/openapi.json` lists what is routed, and schemathesis finds no fault;
//! - `postgres`: the operations on PostgreSQL, the records read back from it.
//!
//! The helpers here: the environment (a clients' CA, users linked to client certificates), the
//! client presenting one, CSRs, and the certificates' checks.

mod keys;
mod local;
mod openapi;
mod postgres;
mod upstream;
mod v1;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Client, Method};
use serde_json::{json, Value};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::harness::environment::Environment;
use crate::harness::made::{self, Made};
use crate::harness::pkid::Pkid;
use crate::harness::tls::https_client_as;
use crate::identity::cli_ok;

pub(crate) const TEST_BOUND: Duration = Duration::from_secs(200);

/// A clients' CA and the certificates of the suite's users: an RA operator
/// (certificate-manager), a requestor, and a read-only user.
pub(crate) struct Clients {
    pub operator: Made,
    pub requestor: Made,
    pub reader: Made,
    /// Keeps the CA file pkid reads.
    pub dir: tempfile::TempDir,
}

impl Clients {
    pub fn new() -> Clients {
        let ca = made::ca("RA clients CA");
        let dir = tempfile::Builder::new()
            .prefix("pkid-czertainly-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("clients-ca.pem"), &ca.pem).unwrap();
        Clients {
            operator: made::client("ra-operator", &ca),
            requestor: made::client("ra-requestor", &ca),
            reader: made::client("ra-reader", &ca),
            dir,
        }
    }

    /// `server.client_ca_files` naming the clients' CA.
    pub fn setting(&self) -> (String, String) {
        (
            "PKID_SERVER__CLIENT_CA_FILES".into(),
            format!("[\"{}\"]", self.dir.path().join("clients-ca.pem").display()),
        )
    }

    /// Links each certificate to a user with its role.
    pub async fn link(&self, pkid: &Pkid) {
        for (name, role, made) in [
            ("ra-operator", "certificate-manager", &self.operator),
            ("ra-requestor", "certificate-requestor", &self.requestor),
            ("ra-reader", "read-only", &self.reader),
        ] {
            let file = self.dir.path().join(format!("{name}.pem"));
            std::fs::write(&file, &made.pem).unwrap();
            cli_ok(
                pkid,
                &[
                    "user",
                    "create",
                    name,
                    "--role",
                    role,
                    "--certificate",
                    &file.display().to_string(),
                ],
            )
            .await;
        }
    }
}

/// Status and JSON body of an answer (`Null` for none), and its content type.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
}

/// A client of the surface, presenting a certificate (or none).
pub(crate) struct Ra {
    http: Client,
    base: String,
}

impl Ra {
    pub fn new(pkid: &Pkid, holder: Option<&Made>) -> Ra {
        let identity = holder.map(Made::identity_pem);
        Ra {
            http: https_client_as(&pkid.root_pem(), None, identity.as_deref()).unwrap(),
            base: format!("https://127.0.0.1:{}", pkid.port()),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = response.bytes().await.unwrap();
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            content_type,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    /// The UUID of the authority named `name`.
    pub async fn authority(&self, name: &str) -> String {
        let list = self.get("/v1/authorities").await;
        assert_eq!(list.status, 200, "{list:?}");
        list.body
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("no authority {name} in {}", list.body))["uuid"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates an RA profile on `authority` with `attributes` (name → values); its v2 base path.
    pub async fn profile(
        &self,
        authority: &str,
        name: &str,
        attributes: &[(&str, Value)],
    ) -> String {
        let attributes: Vec<Value> = attributes
            .iter()
            .map(|(name, values)| {
                let content: Vec<Value> = values
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![values.clone()])
                    .into_iter()
                    .map(|data| json!({"data": data}))
                    .collect();
                json!({"name": name, "content": content})
            })
            .collect();
        let created = self
            .post(
                &format!("/v1/authorities/{authority}/raProfiles"),
                json!({"name": name, "description": format!("{name} for the suite"), "attributes": attributes}),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        let uuid = created.body["uuid"].as_str().unwrap();
        format!("/v2/operations/authorities/{authority}/raProfiles/{uuid}")
    }

    /// `POST {base}/certificates` with a CSR: the answer.
    pub async fn issue(&self, base: &str, csr: &Csr) -> Answer {
        self.post(
            &format!("{base}/certificates"),
            json!({"request": csr.base64(), "attributes": []}),
        )
        .await
    }

    /// Issues and expects the certificate at once: (uuid, leaf DER).
    pub async fn issued(&self, base: &str, csr: &Csr) -> (String, Vec<u8>) {
        let answer = self.issue(base, csr).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        certificate_of(&answer)
    }

    /// Polls `GET {base}/certificates/{uuid}` until its state is `state` (bounded): the record.
    pub async fn wait_state(&self, base: &str, uuid: &str, state: &str, bound: Duration) -> Value {
        let deadline = Instant::now() + bound;
        loop {
            let record = self.get(&format!("{base}/certificates/{uuid}")).await;
            assert_eq!(record.status, 200, "{record:?}");
            if record.body["state"] == state {
                return record.body;
            }
            assert!(
                Instant::now() < deadline,
                "certificate {uuid} never became {state}: {}",
                record.body
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// What [`Ra::cycle`] made: the first certificate, and its rekeyed successor (revoked).
pub(crate) struct Cycle {
    pub uuid: String,
    pub leaf: Vec<u8>,
    pub rekeyed_uuid: String,
    pub rekeyed: Vec<u8>,
}

impl Ra {
    /// Issues for `name` under `base`, renews it (the same key, asserted), rekeys it (the new
    /// key, asserted) and revokes the rekeyed certificate for `reason` (204).
    pub async fn cycle(&self, base: &str, name: &str, reason: &str) -> Cycle {
        let csr = Csr::new(&[name]);
        let (uuid, leaf) = self.issued(base, &csr).await;
        assert_eq!(crate::backends::spki_of(&leaf), csr.spki());
        let renew = format!("{base}/certificates/{uuid}/renew");
        let (_, renewed) = certificate_of(&self.post(&renew, json!({})).await);
        assert_eq!(
            crate::backends::spki_of(&renewed),
            csr.spki(),
            "renew keeps the key"
        );
        let rekey = Csr::new(&[name]);
        let path = format!("{base}/certificates/{uuid}/rekey");
        let answer = self.post(&path, json!({"request": rekey.base64()})).await;
        let (rekeyed_uuid, rekeyed) = certificate_of(&answer);
        assert_eq!(
            crate::backends::spki_of(&rekeyed),
            rekey.spki(),
            "rekey changes it"
        );
        let revoke = format!("{base}/certificates/{rekeyed_uuid}/revoke");
        let revoked = self.post(&revoke, json!({"reason": reason})).await;
        assert_eq!(revoked.status, 204, "{revoked:?}");
        Cycle {
            uuid,
            leaf,
            rekeyed_uuid,
            rekeyed,
        }
    }
}

/// (uuid, leaf DER) of a `{certificateData, uuid}` answer with a certificate.
pub(crate) fn certificate_of(answer: &Answer) -> (String, Vec<u8>) {
    let data = answer.body["certificateData"].as_str().unwrap_or_default();
    assert!(!data.is_empty(), "no certificate yet: {answer:?}");
    (
        answer.body["uuid"].as_str().unwrap().to_string(),
        STANDARD.decode(data).unwrap(),
    )
}

/// A PKCS#10 request made with rcgen: subject `CN=<first name>`, the names as SANs.
pub(crate) struct Csr {
    pub der: Vec<u8>,
    pub key: rcgen::KeyPair,
}

impl Csr {
    pub fn new(names: &[&str]) -> Csr {
        Csr::with_key(
            names,
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        )
    }

    pub fn with_key(names: &[&str], key: rcgen::KeyPair) -> Csr {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        Csr { der, key }
    }

    pub fn base64(&self) -> String {
        STANDARD.encode(&self.der)
    }

    /// The SubjectPublicKeyInfo DER of the key.
    pub fn spki(&self) -> Vec<u8> {
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&self.der)
                .unwrap();
        csr.certification_request_info.subject_pki.raw.to_vec()
    }
}

/// The serial of a certificate, lowercase hex.
pub(crate) fn serial_of(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    hex::encode(cert.raw_serial())
}

pub(crate) fn pem_of(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// The number of certificates stored as issued by `issuer`, read from pkid's database.
pub(crate) async fn issued_count(env: &Environment, issuer: &str) -> i64 {
    let db = env.pkid.read_database().await;
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM certificates WHERE status = 'issued' AND issuer = $1",
    )
    .bind(issuer)
    .fetch_one(&db)
    .await
    .unwrap();
    db.close().await;
    count
}

/// The record's events, as `event/status` strings.
pub(crate) fn events(record: &Value) -> Vec<String> {
    record["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["event"].as_str().unwrap(),
                e["status"].as_str().unwrap()
            )
        })
        .collect()
}
