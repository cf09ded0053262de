//! Managed keys (token profiles): keys pkid generates and holds for its clients, in the
//! software store (sealed with the key-encryption key) or on a SoftHSM2 token; CSRs built on
//! the server from them (`keyUuid` + `tokenProfileUuid` + `csrAttributes` on issue, the
//! certificate's subject on rekey); `destroyKey` on revoke and `DELETE` removing the key (the
//! sealed key dropped; the token's objects gone, as `pkcs11-tool --list-objects` shows); each
//! write in the audit trail with its principal.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pkid_backends::{KeyEncryptionKey, KeySigner, SoftwareKey};
use reqwest::Method;
use serde_json::{json, Value};

use super::local::verify_under;
use super::{certificate_of, events, Clients, Ra, TEST_BOUND};
use crate::backends::{pairs, spki_of, SO_PIN, USER_PIN};
use crate::harness::certs::assert_sans;
use crate::harness::environment::{within, Environment};
use crate::harness::process::require_tool;
use crate::harness::softhsm::SoftHsm;
use crate::identity::cli_ok;

/// The token the managed keys of the `pkcs11` token profile live on.
const KEYS_TOKEN: &str = "pkid-ra-keys";
/// The environment variable pkid reads the token's PIN from.
const PIN_VAR: &str = "CONFORMANCE_RA_KEYS_PIN";
/// The associated data pkid binds a sealed managed key to.
const MANAGED_KEY_AAD: &[u8] = b"pkid RA managed key";

/// `csrAttributes`: a common name and DNS names.
fn csr_attributes(common_name: &str, names: &[&str]) -> Value {
    let names: Vec<Value> = names.iter().map(|n| json!({"data": n})).collect();
    json!([
        {"name": "commonName", "content": [{"data": common_name}]},
        {"name": "organization", "content": [{"data": "pkid suite"}]},
        {"name": "dnsNames", "content": names},
    ])
}

/// The stored row of a managed key: (sealed private key, destroyed).
async fn stored_key(env: &Environment, uuid: &str) -> (Option<String>, bool) {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(env.pkid.database_path())
        .read_only(true);
    let db = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let (sealed, destroyed): (Option<String>, Option<i64>) =
        sqlx::query_as("SELECT sealed_key, destroyed_at FROM ra_managed_keys WHERE uuid = $1")
            .bind(uuid)
            .fetch_one(&db)
            .await
            .unwrap();
    db.close().await;
    (sealed, destroyed.is_some())
}

/// The key's SubjectPublicKeyInfo DER, as the key listing shows it.
fn public_key_of(key: &Value) -> Vec<u8> {
    STANDARD.decode(key["publicKey"].as_str().unwrap()).unwrap()
}

/// The objects on the keys' token, as `pkcs11-tool --list-objects` lists them.
fn token_objects(hsm: &SoftHsm) -> String {
    hsm.pkcs11_tool(KEYS_TOKEN, USER_PIN, &["--list-objects"])
}

/// The state of key `uuid` in its token profile's listing.
async fn key_state(ra: &Ra, token: &str, uuid: &str) -> String {
    let listed = ra.get(&format!("/v1/tokenProfiles/{token}/keys")).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["uuid"] == uuid)
        .unwrap_or_else(|| panic!("no key {uuid} in {}", listed.body))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_keys_in_software_and_on_a_token() {
    for tool in ["openssl", "softhsm2-util", "pkcs11-tool"] {
        require_tool(tool);
    }
    let hsm = SoftHsm::new();
    hsm.init_token(KEYS_TOKEN, USER_PIN, SO_PIN);
    let clients = Clients::new();
    let settings = vec![
        ("SOFTHSM2_CONF".to_owned(), hsm.conf.display().to_string()),
        (PIN_VAR.to_owned(), USER_PIN.to_owned()),
        clients.setting(),
    ];
    let env = Environment::start_with(&pairs(&settings)).await;
    within(TEST_BOUND, async {
        clients.link(&env.pkid).await;
        let ra = Ra::new(&env.pkid, Some(&clients.operator));
        let reader = Ra::new(&env.pkid, Some(&clients.reader));
        let default = ra.authority("default").await;
        let base = ra
            .profile(&default, "managed", &[("allowedSanPatterns", json!([r"[a-z0-9.-]+\.ra\.test"]))])
            .await;

        // A software token profile; what is refused.
        let created = ra.post("/v1/tokenProfiles", json!({"name": "soft", "kind": "software"})).await;
        assert_eq!(created.status, 201, "{created:?}");
        let soft = created.body["uuid"].as_str().unwrap().to_string();
        let again = ra.post("/v1/tokenProfiles", json!({"name": "soft", "kind": "software"})).await;
        assert_eq!(again.status, 400, "a second profile named soft: {again:?}");
        let no_module = ra.post("/v1/tokenProfiles", json!({"name": "half", "kind": "pkcs11"})).await;
        assert_eq!(no_module.status, 400, "a pkcs11 profile without its token: {no_module:?}");
        assert!(no_module.body["message"].is_string(), "{no_module:?}");
        assert_eq!(ra.post("/v1/tokenProfiles", json!({"name": "x", "kind": "cloud"})).await.status, 400);
        let forbidden = reader.post("/v1/tokenProfiles", json!({"name": "mine", "kind": "software"})).await;
        assert_eq!(forbidden.status, 403, "{forbidden:?}");
        assert_eq!(reader.get("/v1/tokenProfiles").await.status, 200, "the read-only user reads");
        assert_eq!(ra.get("/v1/tokenProfiles/no-such-profile/keys").await.status, 404);
        let unknown_algorithm = ra.post(&format!("/v1/tokenProfiles/{soft}/keys"), json!({"name": "k", "algorithm": "dsa1024"})).await;
        assert_eq!(unknown_algorithm.status, 400, "{unknown_algorithm:?}");

        // A software key: its public key shown, its private key sealed at rest with the
        // key-encryption key (and nothing else: opened with it, it is the listed key).
        let key = ra.post(&format!("/v1/tokenProfiles/{soft}/keys"), json!({"name": "web"})).await;
        assert_eq!(key.status, 201, "{key:?}");
        assert_eq!((key.body["algorithm"].as_str(), key.body["state"].as_str()), (Some("ecdsa-p256"), Some("active")));
        assert!(key.body.get("privateKey").is_none() && key.body.get("sealedKey").is_none(), "{key:?}");
        let key_uuid = key.body["uuid"].as_str().unwrap().to_string();
        let (sealed, destroyed) = stored_key(&env, &key_uuid).await;
        let sealed = sealed.expect("a software key is stored sealed");
        assert!(!destroyed);
        assert!(sealed.starts_with("-----BEGIN PKID ENCRYPTED PRIVATE KEY-----"), "{sealed}");
        let data = env.pkid.database_path().parent().unwrap().to_path_buf();
        let kek = KeyEncryptionKey::from_base64(&std::fs::read_to_string(data.join("kek")).unwrap()).unwrap();
        let pkcs8 = kek.open_pem(&sealed, MANAGED_KEY_AAD).unwrap();
        let opened = SoftwareKey::from_pkcs8_der(&pkcs8).unwrap();
        assert_eq!(opened.public_key_der(), public_key_of(&key.body).as_slice());
        assert!(kek.open_pem(&sealed, b"another purpose").is_err(), "bound to its purpose");

        // Issue without a CSR: built on the server from the managed key and csrAttributes.
        let issued = ra
            .post(
                &format!("{base}/certificates"),
                json!({"keyUuid": key_uuid, "tokenProfileUuid": soft, "csrAttributes": csr_attributes("managed.ra.test", &["managed.ra.test", "alt.ra.test"]), "attributes": []}),
            )
            .await;
        assert_eq!(issued.status, 200, "{issued:?}");
        let (uuid, leaf) = certificate_of(&issued);
        assert_eq!(spki_of(&leaf), public_key_of(&key.body), "the managed key is certified");
        let chain = verify_under(&env, "default", &leaf, "verify-managed").await;
        assert_sans(&chain, &["managed.ra.test", "alt.ra.test"]);
        let no_name = ra.post(&format!("{base}/certificates"), json!({"keyUuid": key_uuid, "tokenProfileUuid": soft, "csrAttributes": []})).await;
        assert_eq!(no_name.status, 422, "csrAttributes without a commonName: {no_name:?}");
        let outside = ra.post(&format!("{base}/certificates"), json!({"keyUuid": key_uuid, "tokenProfileUuid": soft, "csrAttributes": csr_attributes("x.elsewhere.test", &["x.elsewhere.test"])})).await;
        assert_eq!(outside.status, 422, "a name outside the profile: {outside:?}");
        let half = ra.post(&format!("{base}/certificates"), json!({"keyUuid": key_uuid})).await;
        assert_eq!(half.status, 422, "a key without its token profile: {half:?}");
        let wrong_token = ra.post(&format!("{base}/certificates"), json!({"keyUuid": key_uuid, "tokenProfileUuid": "no-such-profile", "csrAttributes": csr_attributes("managed.ra.test", &["managed.ra.test"])})).await;
        assert_eq!(wrong_token.status, 404, "{wrong_token:?}");

        // Rekey onto a second managed key: the same subject, the new key.
        let second = ra.post(&format!("/v1/tokenProfiles/{soft}/keys"), json!({"name": "web-next", "algorithm": "ecdsa-p384"})).await;
        assert_eq!(second.status, 201, "{second:?}");
        let second_uuid = second.body["uuid"].as_str().unwrap().to_string();
        let rekeyed = ra.post(&format!("{base}/certificates/{uuid}/rekey"), json!({"keyUuid": second_uuid, "tokenProfileUuid": soft})).await;
        assert_eq!(rekeyed.status, 200, "{rekeyed:?}");
        let (rekeyed_uuid, rekeyed_leaf) = certificate_of(&rekeyed);
        assert_eq!(spki_of(&rekeyed_leaf), public_key_of(&second.body));
        let rekeyed_chain = verify_under(&env, "default", &rekeyed_leaf, "verify-managed-rekeyed").await;
        assert_sans(&rekeyed_chain, &["managed.ra.test", "alt.ra.test"]);

        // Revoke with destroyKey: the sealed key is dropped, the key listed destroyed, the
        // record says so; the key signs nothing more.
        let revoked = ra.post(&format!("{base}/certificates/{rekeyed_uuid}/revoke"), json!({"reason": "keyCompromise", "destroyKey": true})).await;
        assert_eq!(revoked.status, 204, "{revoked:?}");
        assert_eq!(key_state(&ra, &soft, &second_uuid).await, "destroyed");
        assert_eq!(stored_key(&env, &second_uuid).await, (None, true), "the sealed key is gone");
        let record = ra.get(&format!("{base}/certificates/{rekeyed_uuid}")).await;
        assert!(events(&record.body).contains(&"key/succeeded".to_string()), "{record:?}");
        let with_destroyed = ra.post(&format!("{base}/certificates"), json!({"keyUuid": second_uuid, "tokenProfileUuid": soft, "csrAttributes": csr_attributes("managed.ra.test", &["managed.ra.test"])})).await;
        assert_eq!(with_destroyed.status, 422, "a destroyed key: {with_destroyed:?}");
        // Revoked without destroyKey, the first key stays.
        let kept = ra.post(&format!("{base}/certificates/{uuid}/revoke"), json!({"reason": "superseded"})).await;
        assert_eq!(kept.status, 204, "{kept:?}");
        assert_eq!(key_state(&ra, &soft, &key_uuid).await, "active");

        // DELETE: only through the key's own token profile; 204, then listed destroyed.
        let other = ra.post("/v1/tokenProfiles", json!({"name": "soft-2", "kind": "software"})).await;
        let other = other.body["uuid"].as_str().unwrap().to_string();
        let elsewhere = ra.call(Method::DELETE, &format!("/v1/tokenProfiles/{other}/keys/{key_uuid}"), None).await;
        assert_eq!(elsewhere.status, 404, "{elsewhere:?}");
        assert_eq!(ra.call(Method::DELETE, &format!("/v1/tokenProfiles/{soft}/keys/no-such-key"), None).await.status, 404);
        assert_eq!(Ra::new(&env.pkid, Some(&clients.requestor)).call(Method::DELETE, &format!("/v1/tokenProfiles/{soft}/keys/{key_uuid}"), None).await.status, 403);
        let deleted = ra.call(Method::DELETE, &format!("/v1/tokenProfiles/{soft}/keys/{key_uuid}"), None).await;
        assert_eq!(deleted.status, 204, "{deleted:?}");
        assert_eq!(key_state(&ra, &soft, &key_uuid).await, "destroyed");
        assert_eq!(stored_key(&env, &key_uuid).await, (None, true));
        let again = ra.call(Method::DELETE, &format!("/v1/tokenProfiles/{soft}/keys/{key_uuid}"), None).await;
        assert_eq!(again.status, 204, "deleting a destroyed key again changes nothing: {again:?}");

        // A PKCS#11 token profile on SoftHSM2: the key generated inside the token (sensitive,
        // never extractable), the PIN named by its variable and never shown.
        let token = ra
            .post(
                "/v1/tokenProfiles",
                json!({"name": "token", "kind": "pkcs11", "module": SoftHsm::MODULE, "tokenLabel": KEYS_TOKEN, "pinEnv": PIN_VAR}),
            )
            .await;
        assert_eq!(token.status, 201, "{token:?}");
        let token = token.body["uuid"].as_str().unwrap().to_string();
        let listed = ra.get("/v1/tokenProfiles").await;
        assert!(listed.body.to_string().contains(PIN_VAR), "{listed:?}");
        assert!(!listed.body.to_string().contains(USER_PIN), "the PIN is never shown");
        let token_key = ra.post(&format!("/v1/tokenProfiles/{token}/keys"), json!({"name": "hsm-web"})).await;
        assert_eq!(token_key.status, 201, "{token_key:?}");
        let token_key_uuid = token_key.body["uuid"].as_str().unwrap().to_string();
        let label = format!("pkid-managed-{token_key_uuid}");
        let objects = token_objects(&hsm);
        assert!(objects.contains(&label), "the key is on the token:\n{objects}");
        assert!(objects.contains("never extractable"), "the private key stays inside:\n{objects}");
        assert_eq!(stored_key(&env, &token_key_uuid).await, (None, false), "no key material in the database");

        // Issued through a CSR the token key signs; revoked with destroyKey: the token's objects
        // of that key are deleted.
        let on_token = ra
            .post(
                &format!("{base}/certificates"),
                json!({"keyUuid": token_key_uuid, "tokenProfileUuid": token, "csrAttributes": csr_attributes("token.ra.test", &["token.ra.test"])}),
            )
            .await;
        assert_eq!(on_token.status, 200, "{on_token:?}");
        let (token_uuid, token_leaf) = certificate_of(&on_token);
        assert_eq!(spki_of(&token_leaf), public_key_of(&token_key.body));
        verify_under(&env, "default", &token_leaf, "verify-token-key").await;
        let revoked = ra.post(&format!("{base}/certificates/{token_uuid}/revoke"), json!({"reason": "cessationOfOperation", "destroyKey": true})).await;
        assert_eq!(revoked.status, 204, "{revoked:?}");
        let objects = token_objects(&hsm);
        assert!(!objects.contains(&label), "destroyKey deleted the token's objects:\n{objects}");
        assert_eq!(key_state(&ra, &token, &token_key_uuid).await, "destroyed");
        let record = ra.get(&format!("{base}/certificates/{token_uuid}")).await;
        assert!(events(&record.body).contains(&"key/succeeded".to_string()), "{record:?}");

        // DELETE on a token key: the objects go as well.
        let doomed = ra.post(&format!("/v1/tokenProfiles/{token}/keys"), json!({"name": "doomed", "algorithm": "rsa2048"})).await;
        assert_eq!(doomed.status, 201, "{doomed:?}");
        let doomed_uuid = doomed.body["uuid"].as_str().unwrap().to_string();
        let doomed_label = format!("pkid-managed-{doomed_uuid}");
        assert!(token_objects(&hsm).contains(&doomed_label));
        let deleted = ra.call(Method::DELETE, &format!("/v1/tokenProfiles/{token}/keys/{doomed_uuid}"), None).await;
        assert_eq!(deleted.status, 204, "{deleted:?}");
        let objects = token_objects(&hsm);
        assert!(!objects.contains(&doomed_label), "DELETE removed the key from the token:\n{objects}");

        // The audit trail holds each write with its principal (the operator's certificate's
        // user; pkid itself for the key destroyed after a revocation), and no secret.
        let listing = cli_ok(&env.pkid, &["audit", "list"]).await;
        let entries: Vec<Vec<&str>> = listing.lines().map(|l| l.split('\t').collect::<Vec<_>>()).filter(|f| f.len() == 7).collect();
        let has = |principal: &str, action: &str, resource: &str| {
            entries.iter().any(|e| e[2] == principal && e[3] == action && e[4] == resource && e[5] == "success")
        };
        let operator = "user:ra-operator";
        assert!(has(operator, "token_profile.created", &format!("token-profile:{soft}")), "{listing}");
        assert!(has(operator, "managed_key.generated", &format!("managed-key:{key_uuid}")), "{listing}");
        assert!(has(operator, "ra_certificate.issue", &format!("ra-certificate:{uuid}")), "{listing}");
        assert!(has(operator, "ra_certificate.revoke", &format!("ra-certificate:{rekeyed_uuid}")), "{listing}");
        let destructions = entries.iter().filter(|e| e[3] == "managed_key.destroyed" && e[4] == format!("managed-key:{key_uuid}")).count();
        assert_eq!(destructions, 1, "recorded once, though deleted twice: {listing}");
        assert!(has(operator, "managed_key.destroyed", &format!("managed-key:{key_uuid}")), "{listing}");
        assert!(has("pkid", "managed_key.destroyed", &format!("managed-key:{second_uuid}")), "{listing}");
        assert!(entries.iter().any(|e| e[2] == operator && e[3] == "ra_profile.created"), "{listing}");
        assert!(!listing.contains(USER_PIN), "no PIN in the trail");
        cli_ok(&env.pkid, &["audit", "verify"]).await;
    })
    .await;
}
