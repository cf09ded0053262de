//! The audit trail on a real log: after an ACME issuance, an ACME revocation and a password
//! login (one that fails, one that succeeds), `pkid audit list` shows each with its principal,
//! action, resource and outcome (and `--principal`, `--since` select), `pkid audit checkpoint`
//! signs the head and `pkid audit verify` passes. Then, pkid stopped, the SQLite file is edited
//! as an intruder would: one byte of a past entry changed, two entries swapped, an entry
//! removed — and `pkid audit verify` fails (non-zero exit) naming the first bad entry each time.
//! Two replicas on one PostgreSQL append to one chain, and a replica killed mid-append leaves
//! it whole.

use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;

use super::{acme, issue, TEST_BOUND};
use crate::harness::acme::b64;
use crate::harness::certs::pem_chain;
use crate::harness::client::AcmeClient;
use crate::harness::environment::{within, Environment};
use crate::harness::pkid::Pkid;
use crate::harness::postgres::Postgres;
use crate::harness::tls::https_client;
use crate::identity::{cli_ok, create_user, login, login_token};
use crate::replicas::copy_dir;

/// One line of `pkid audit list`, split: seq, time, principal, action, resource, outcome, detail.
fn entries(listing: &str) -> Vec<Vec<String>> {
    listing
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .filter(|fields| fields.len() == 7)
        .collect()
}

/// The position of the first entry of a principal starting `principal`, with `action`,
/// `outcome` and a resource starting `resource`.
fn find(
    listed: &[Vec<String>],
    principal: &str,
    action: &str,
    resource: &str,
    outcome: &str,
) -> i64 {
    listed
        .iter()
        .find(|e| {
            e[2].starts_with(principal)
                && e[3] == action
                && e[4].starts_with(resource)
                && e[5] == outcome
        })
        .unwrap_or_else(|| panic!("no {principal} {action} {resource} {outcome} in {listed:#?}"))[0]
        .parse()
        .expect("a position")
}

/// `pkid audit verify` fails, naming entry `seq` first.
async fn broken_at(pkid: &Pkid, seq: i64, what: &str) {
    let (ok, stdout, stderr) = pkid.cli(&["audit", "verify"]).await;
    assert!(!ok, "{what}: verify passed:\n{stdout}");
    assert!(
        stdout.contains(&format!("BROKEN at entry {seq}:")),
        "{what}: not entry {seq} first:\n{stdout}\n{stderr}"
    );
}

async fn intact(pkid: &Pkid) -> String {
    let verified = cli_ok(pkid, &["audit", "verify"]).await;
    assert!(verified.contains("audit trail intact"), "{verified}");
    verified
}

async fn sql(db: &SqlitePool, statement: &str) {
    sqlx::query(statement)
        .execute(db)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_on_real_traffic_and_fails_at_the_first_tampered_entry() {
    // The server signs a checkpoint every second while entries are added.
    let mut env = Environment::start_with(&[("PKID_AUDIT__CHECKPOINT_INTERVAL_SECS", "1")]).await;
    within(TEST_BOUND, async {
        let (mut client, responder) = acme(&env).await;
        let chain = issue(&mut client, &responder, &["audit.pkid.test"]).await;
        let leaf = pem_chain(&chain).remove(0);
        let revoked = client
            .post(
                &client.resource("revokeCert"),
                Some(&json!({"certificate": b64(&leaf), "reason": 4})),
            )
            .await;
        assert_eq!(revoked.status, 200, "revokeCert: {}", revoked.describe());
        create_user(&env.pkid, "alice", "certificate-manager").await;
        let http = https_client(&env.pkid.root_pem()).expect("an HTTPS client");
        let refused = login(&http, &env.pkid, "alice@pkid.test", "not her password").await;
        assert_eq!(refused.status, 401, "{}", refused.body);
        login_token(&http, &env.pkid, "alice").await;

        let listed = entries(&cli_ok(&env.pkid, &["audit", "list"]).await);
        find(&listed, "pkid", "config.loaded", "configuration", "success");
        find(&listed, "pkid", "ca.created", "backend:default", "success");
        find(
            &listed,
            "pkid",
            "certificate.issued",
            "certificate:",
            "success",
        );
        let account = "acme-account:";
        find(&listed, account, "acme.account.created", account, "success");
        let issued = find(
            &listed,
            account,
            "certificate.issued",
            "certificate:",
            "success",
        );
        let revocation = find(
            &listed,
            account,
            "certificate.revoked",
            "certificate:",
            "success",
        );
        let operator = "operator:command-line";
        find(&listed, operator, "user.created", "user:alice", "success");
        let failed_login = find(&listed, "user:alice@", "login", "user:alice@", "failure");
        let login_entry = find(&listed, "user:alice", "login", "user:alice", "success");
        assert!(issued < revocation && failed_login < login_entry);
        let account_issued = &listed[usize::try_from(issued - 1).expect("a position")];
        assert!(
            account_issued[6].contains("\"issuer\":\"default\""),
            "{account_issued:?}"
        );
        let revocation_entry = &listed[usize::try_from(revocation - 1).expect("a position")];
        assert!(
            revocation_entry[6].contains("\"reason\":4"),
            "{revocation_entry:?}"
        );
        // Nothing secret is recorded.
        let text = cli_ok(&env.pkid, &["audit", "list"]).await;
        assert!(!text.contains(crate::identity::PASSWORD) && !text.contains("not her password"));

        let alices =
            entries(&cli_ok(&env.pkid, &["audit", "list", "--principal", "user:alice"]).await);
        assert_eq!(alices.len(), 1, "{alices:?}");
        assert_eq!(alices[0][3], "login");
        let later = cli_ok(
            &env.pkid,
            &["audit", "list", "--since", "2999-01-01T00:00:00Z"],
        )
        .await;
        assert!(entries(&later).is_empty(), "{later}");

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !env.pkid.logs().contains("signed an audit checkpoint") {
            assert!(
                std::time::Instant::now() < deadline,
                "no periodic checkpoint"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        // And one on demand (the server's may have covered the head already).
        env.pkid.stop();
        let signed = cli_ok(&env.pkid, &["audit", "checkpoint"]).await;
        assert!(
            signed.contains("signed a checkpoint at entry") || signed.contains("nothing to sign"),
            "{signed}"
        );
        let verified = intact(&env.pkid).await;
        let head = verified
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("no entry count in: {verified}"));
        assert!(
            verified.contains(&format!("the last at entry {head} by backend default")),
            "the head is signed: {verified}"
        );

        // pkid stopped, the file edited.
        let db = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(env.pkid.database_path()))
            .await
            .expect("open pkid's database");
        intact(&env.pkid).await;

        // One byte of a past entry.
        sql(
            &db,
            &format!("UPDATE audit_log SET action = 'certificate.issueD' WHERE seq = {issued}"),
        )
        .await;
        broken_at(&env.pkid, issued, "one byte changed").await;
        sql(
            &db,
            &format!("UPDATE audit_log SET action = 'certificate.issued' WHERE seq = {issued}"),
        )
        .await;
        intact(&env.pkid).await;

        // Two entries swapped.
        let (a, b) = (revocation - 1, revocation);
        let swap = [
            format!("UPDATE audit_log SET seq = -1 WHERE seq = {a}"),
            format!("UPDATE audit_log SET seq = {a} WHERE seq = {b}"),
            format!("UPDATE audit_log SET seq = {b} WHERE seq = -1"),
        ];
        for statement in &swap {
            sql(&db, statement).await;
        }
        broken_at(&env.pkid, a, "two entries swapped").await;
        for statement in &swap {
            sql(&db, statement).await;
        }
        intact(&env.pkid).await;

        // An entry removed.
        sql(
            &db,
            &format!("DELETE FROM audit_log WHERE seq = {login_entry}"),
        )
        .await;
        broken_at(&env.pkid, login_entry, "an entry removed").await;
        db.close().await;
    })
    .await;
}

/// Registers `count` ACME accounts at once through the directory at `url`, each in a task of
/// its own (await them with [`answered`]).
async fn register_accounts(
    url: &str,
    root: &[u8],
    count: usize,
) -> Vec<tokio::task::JoinHandle<String>> {
    (0..count)
        .map(|_| {
            let (url, root) = (url.to_owned(), root.to_vec());
            tokio::spawn(async move {
                let mut client = AcmeClient::new(&url, &root).await;
                client.register().await
            })
        })
        .collect()
}

/// How many registrations were answered (a task whose server went away panics: not counted).
async fn answered(tasks: Vec<tokio::task::JoinHandle<String>>) -> usize {
    let mut answered = 0;
    for task in tasks {
        if task.await.is_ok() {
            answered += 1;
        }
    }
    answered
}

/// Two replicas on one PostgreSQL append to one chain at once (the advisory lock serialises
/// them); one of them killed (SIGKILL) in the middle of its appends leaves no half-written
/// entry: `pkid audit verify` passes, and every account a client was answered for is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_and_a_kill_9_leave_one_intact_chain() {
    let scratch = tempfile::Builder::new()
        .prefix("pkid-pg-")
        .tempdir()
        .expect("a scratch folder");
    let postgres = Postgres::start(&scratch.path().join("pg"));
    let env = Environment::start_with(&[("PKID_DATABASE__URL", &postgres.url)]).await;
    let data_a = env
        .pkid
        .database_path()
        .parent()
        .expect("the data folder")
        .to_path_buf();
    let dir_b = env.subdir("replica-b");
    let data_b = dir_b.join("pkid").join("data");
    copy_dir(&data_a.join("ca"), &data_b.join("ca"));
    std::fs::copy(data_a.join("kek"), data_b.join("kek")).expect("share the key-encryption key");
    let mut replica_b = Pkid::start(
        &dir_b,
        &env.dns,
        env.http01_port,
        &[("PKID_DATABASE__URL", &postgres.url)],
    )
    .await;
    within(TEST_BOUND, async {
        let root = env.pkid.root_pem();
        let (url_a, url_b) = (env.pkid.directory_url(), replica_b.directory_url());
        let mut tasks = register_accounts(&url_a, &root, 12).await;
        tasks.extend(register_accounts(&url_b, &root, 12).await);
        assert_eq!(answered(tasks).await, 24, "every account registered");

        // B killed while its accounts are being registered.
        let in_flight = register_accounts(&url_b, &root, 12).await;
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        replica_b.kill9();
        let more = answered(in_flight).await;

        let verified = intact(&env.pkid).await;
        let listed = entries(&cli_ok(&env.pkid, &["audit", "list"]).await);
        let accounts = listed
            .iter()
            .filter(|e| e[3] == "acme.account.created")
            .count();
        assert!(
            accounts >= 24 + more,
            "{accounts} accounts recorded, {} answered:\n{verified}",
            24 + more
        );
        let seqs: Vec<i64> = listed
            .iter()
            .map(|e| e[0].parse().expect("a position"))
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "no gap");
    })
    .await;
}
