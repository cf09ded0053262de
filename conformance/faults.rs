//! Faults: pkid killed with SIGKILL under load, its PostgreSQL restarted under load, a graceful
//! stop (SIGTERM) with requests in flight, and the connection limits (a slowloris is cut off after
//! the header timeout; more clients than `server.max_connections` wait instead of failing).
//!
//! The load is `pkid-loadgen` (full http-01 issuances); the truth is pkid's database, read
//! directly after the fault: every certificate the load generator received is stored with the
//! same DER, each order ends `valid` (with exactly one issued certificate, the one it names),
//! `invalid` or `pending`, and no serial is left at the `tbs` step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::harness::certs::pem_chain;
use crate::harness::client::AcmeClient;
use crate::harness::environment::{within, Environment};
use crate::harness::pkid::Pkid;
use crate::harness::postgres::Postgres;
use crate::harness::process::read_log;

/// The load generator cargo built beside the test binary.
const LOADGEN: &str = env!("CARGO_BIN_EXE_pkid-loadgen");
/// Short, so that orders interrupted by a kill are recovered within seconds.
const PROCESSING_TIMEOUT_SECS: &str = "2";
/// How long a recovery may take once pkid runs again: the processing timeout, the housekeeping
/// period and the re-issuance, with room for a loaded machine.
const RECOVERY_BOUND: Duration = Duration::from_secs(20);

/// `pkid-loadgen` as a child process, killed by PID if the test ends first.
struct Loadgen {
    name: String,
    child: tokio::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Loadgen {
    /// Full issuances against `pkid` at concurrency 8, writing each received chain to
    /// `certs_out`; `until` is `--duration S` or `--orders N`.
    fn spawn(
        pkid: &Pkid,
        http01_port: u16,
        certs_out: &Path,
        until: &[&str],
        name: &str,
    ) -> Loadgen {
        let dir = certs_out.parent().unwrap_or(certs_out);
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = tokio::process::Command::new(LOADGEN)
            .args(["--directory", &pkid.directory_url()])
            .arg("--root")
            .arg(pkid.root_pem_path())
            .args(["--http01-port", &http01_port.to_string()])
            .args(["--concurrency", "8", "--step-timeout", "10"])
            .args(["--poll-min-ms", "20", "--poll-max-ms", "200", "--json"])
            .arg("--certs-out")
            .arg(certs_out)
            .args(until)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create the loadgen's stdout log"))
            .stderr(std::fs::File::create(&stderr).expect("create the loadgen's stderr log"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("start {LOADGEN}: {err}"));
        Loadgen {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
        }
    }

    /// Waits (bounded) for the run to end and returns its JSON report.
    async fn report(mut self, bound: Duration) -> Value {
        let status = match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(status) => status.expect("wait for pkid-loadgen"),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "{} did not finish within {bound:?}:\n{}",
                    self.name,
                    read_log(&self.stderr)
                );
            }
        };
        assert!(
            status.success(),
            "{} failed with {status}:\n{}",
            self.name,
            read_log(&self.stderr)
        );
        let report: Value = serde_json::from_str(&read_log(&self.stdout)).unwrap_or_else(|err| {
            panic!(
                "{}: the report is not JSON ({err}):\n{}",
                self.name,
                read_log(&self.stdout)
            )
        });
        eprintln!(
            "{}: issued {}, errors {} {}",
            self.name, report["issued"], report["error_total"], report["errors"]
        );
        report
    }
}

fn issued(report: &Value) -> u64 {
    report["issued"].as_u64().expect("`issued` in the report")
}

/// One certificate the load generator received: its file and leaf.
struct Delivered {
    file: PathBuf,
    serial: String,
    leaf_der: Vec<u8>,
}

/// Every chain the load generator wrote into `dirs`, checked to be named by its leaf's serial.
fn delivered(dirs: &[PathBuf]) -> Vec<Delivered> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.path();
            let text = std::fs::read_to_string(&file).expect("read a delivered chain");
            let leaf_der = pem_chain(&text)
                .into_iter()
                .next()
                .expect("a leaf in the chain");
            let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("parse a delivered leaf");
            let serial = hex::encode(leaf.tbs_certificate.raw_serial());
            assert_eq!(
                file.file_stem().and_then(|s| s.to_str()),
                Some(serial.as_str()),
                "--certs-out names each file by its leaf's serial"
            );
            found.push(Delivered {
                file,
                serial,
                leaf_der,
            });
        }
    }
    found
}

/// pkid's database, opened beside (or after) the server: SQLite read-only, or PostgreSQL.
async fn open_database(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|err| panic!("open {url}: {err}"))
}

fn sqlite_url(pkid: &Pkid) -> String {
    format!("sqlite://{}?mode=ro", pkid.database_path().display())
}

struct OrderRecord {
    status: String,
    certificate_serial: Option<String>,
}

struct CertificateRecord {
    issuer: String,
    order_id: Option<String>,
    status: String,
    der: Option<Vec<u8>>,
}

async fn orders(db: &sqlx::AnyPool) -> BTreeMap<String, OrderRecord> {
    sqlx::query("SELECT id, status, certificate_serial FROM orders")
        .fetch_all(db)
        .await
        .expect("read the orders")
        .iter()
        .map(|r| {
            (
                r.get("id"),
                OrderRecord {
                    status: r.get("status"),
                    certificate_serial: r.get("certificate_serial"),
                },
            )
        })
        .collect()
}

async fn certificates(db: &sqlx::AnyPool) -> BTreeMap<String, CertificateRecord> {
    sqlx::query("SELECT serial, issuer, order_id, status, der FROM certificates")
        .fetch_all(db)
        .await
        .expect("read the certificates")
        .iter()
        .map(|r| {
            (
                r.get("serial"),
                CertificateRecord {
                    issuer: r.get("issuer"),
                    order_id: r.get("order_id"),
                    status: r.get("status"),
                    der: r.get("der"),
                },
            )
        })
        .collect()
}

/// Waits until no order is `processing` (pkid's recovery finished them), at most `bound`.
async fn wait_no_processing(db_url: &str, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let db = open_database(db_url).await;
        let processing: Vec<String> = orders(&db)
            .await
            .into_iter()
            .filter(|(_, o)| o.status == "processing")
            .map(|(id, _)| id)
            .collect();
        db.close().await;
        if processing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "orders still processing {bound:?} after the fault: {processing:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The invariants of the issuance cycle after a fault, read from the database; returns counts
/// by status for the test's log.
async fn check_invariants(db_url: &str, delivered: &[Delivered]) -> BTreeMap<String, usize> {
    let db = open_database(db_url).await;
    let orders = orders(&db).await;
    let certificates = certificates(&db).await;
    db.close().await;

    let mut counts = BTreeMap::new();
    for order in orders.values() {
        *counts
            .entry(format!("orders/{}", order.status))
            .or_insert(0) += 1;
    }
    for cert in certificates.values() {
        *counts
            .entry(format!("certificates/{}", cert.status))
            .or_insert(0) += 1;
    }

    // Every stored certificate is the one its row names: its DER carries the row's serial, and
    // no serial appears twice for one issuer.
    let mut serials_per_issuer: BTreeSet<(String, String)> = BTreeSet::new();
    for (serial, cert) in &certificates {
        assert!(
            ["tbs", "issued", "abandoned"].contains(&cert.status.as_str()),
            "certificate {serial} has an unknown status {}",
            cert.status
        );
        assert!(
            serials_per_issuer.insert((cert.issuer.clone(), serial.to_lowercase())),
            "serial {serial} twice for issuer {}",
            cert.issuer
        );
        if cert.status == "issued" {
            let der = cert
                .der
                .as_deref()
                .unwrap_or_else(|| panic!("issued certificate {serial} without DER"));
            let (_, parsed) = X509Certificate::from_der(der)
                .unwrap_or_else(|err| panic!("issued certificate {serial} does not parse: {err}"));
            assert_eq!(
                hex::encode(parsed.tbs_certificate.raw_serial()),
                *serial,
                "the stored DER carries another serial than its row"
            );
        }
        // A serial at the `tbs` step belongs to an issuance still running: after recovery there
        // is none.
        assert_ne!(
            cert.status, "tbs",
            "certificate {serial} (order {:?}) left at the tbs step after recovery",
            cert.order_id
        );
    }

    // Each order ends valid with exactly one issued certificate (the one it names), or invalid,
    // or still pending (the load generator gave up on it); none is left processing.
    for (id, order) in &orders {
        let issued: Vec<&String> = certificates
            .iter()
            .filter(|(_, c)| c.order_id.as_deref() == Some(id) && c.status == "issued")
            .map(|(serial, _)| serial)
            .collect();
        match order.status.as_str() {
            "valid" => {
                let named = order
                    .certificate_serial
                    .as_ref()
                    .unwrap_or_else(|| panic!("valid order {id} names no certificate"));
                assert_eq!(
                    issued,
                    vec![named],
                    "valid order {id}: its issued certificates are not exactly the one it names"
                );
            }
            "invalid" | "pending" => assert!(
                issued.is_empty(),
                "{} order {id} has issued certificates {issued:?}",
                order.status
            ),
            other => panic!("order {id} is {other} after recovery"),
        }
    }

    // Every certificate a client received is stored, with the same DER, as its order's.
    for cert in delivered {
        let stored = certificates.get(&cert.serial).unwrap_or_else(|| {
            panic!(
                "delivered certificate {} ({}) is not in the database",
                cert.serial,
                cert.file.display()
            )
        });
        assert_eq!(
            stored.status, "issued",
            "delivered certificate {}",
            cert.serial
        );
        assert!(
            stored.der.as_deref() == Some(cert.leaf_der.as_slice()),
            "delivered certificate {} differs from the stored DER",
            cert.serial
        );
        let order_id = stored
            .order_id
            .as_ref()
            .expect("an ACME certificate has an order");
        assert_eq!(
            orders[order_id].certificate_serial.as_deref(),
            Some(cert.serial.as_str()),
            "order {order_id} names another certificate than the one delivered"
        );
    }
    counts.insert("delivered".into(), delivered.len());
    counts
}

/// pkid on SQLite under load is killed with SIGKILL at three moments of a run and restarted on
/// its data folder each time; afterwards every delivered certificate is stored, interrupted
/// orders were recovered, and the issuance cycle's invariants hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_load_loses_no_certificate() {
    let mut env = Environment::start_with(&[(
        "PKID_ACME__PROCESSING_TIMEOUT_SECS",
        PROCESSING_TIMEOUT_SECS,
    )])
    .await;
    let http01_port = env.http01_port;
    let mut dirs = Vec::new();
    within(Duration::from_secs(150), async {
        for (round, kill_after_ms) in [700u64, 1500, 2300].into_iter().enumerate() {
            let certs_out = env.subdir(&format!("round-{round}")).join("certs");
            dirs.push(certs_out.clone());
            let load = Loadgen::spawn(
                &env.pkid,
                http01_port,
                &certs_out,
                &["--duration", "3"],
                &format!("loadgen-round-{round}"),
            );
            tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
            let before = delivered(&dirs).len();
            let pid = env.pkid.pid();
            env.pkid.kill9();
            eprintln!(
                "round {round}: killed pkid {pid} after {kill_after_ms} ms; \
                 {before} certificates delivered so far"
            );
            env.pkid.restart().await;
            let report = load.report(Duration::from_secs(90)).await;
            assert!(
                issued(&report) > 0,
                "round {round}: no issuance at all: {report}"
            );
        }
        let url = sqlite_url(&env.pkid);
        wait_no_processing(&url, RECOVERY_BOUND).await;
        let counts = check_invariants(&url, &delivered(&dirs)).await;
        eprintln!("after three kills: {counts:?}");
        assert!(
            counts["delivered"] > 0,
            "the load generator received no certificate"
        );
    })
    .await;
    assert!(
        !env.pkid.logs().contains("panicked"),
        "pkid panicked:\n{}",
        env.pkid.logs()
    );
}

/// A throwaway PostgreSQL cluster in a temporary folder named `prefix…` (kept while the folder
/// is: the caller holds both).
fn scratch_postgres(prefix: &str) -> (tempfile::TempDir, Postgres) {
    let scratch = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let postgres = Postgres::start(&scratch.path().join("pg"));
    (scratch, postgres)
}

/// pkid on PostgreSQL under load; PostgreSQL is shut down fast (sessions cut), stays down 2 s
/// and comes back on the same port. The same pkid process (never restarted) serves a fresh run
/// afterwards without a single error, and the invariants hold in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_load_is_survived() {
    let (_scratch, mut postgres) = scratch_postgres("pkid-pg-faults-");
    let mut env = Environment::start_with(&[
        ("PKID_DATABASE__URL", &postgres.url),
        (
            "PKID_ACME__PROCESSING_TIMEOUT_SECS",
            PROCESSING_TIMEOUT_SECS,
        ),
    ])
    .await;
    let http01_port = env.http01_port;
    let pid = env.pkid.pid();
    within(Duration::from_secs(150), async {
        let during = env.subdir("during").join("certs");
        let load = Loadgen::spawn(
            &env.pkid,
            http01_port,
            &during,
            &["--duration", "4"],
            "loadgen-during",
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let down = Instant::now();
        tokio::task::block_in_place(|| postgres.restart(Duration::from_secs(2)));
        eprintln!("PostgreSQL was down for {:?}", down.elapsed());
        let report = load.report(Duration::from_secs(90)).await;
        assert!(
            issued(&report) > 0,
            "no issuance around the restart: {report}"
        );
        // Requests caught by the shutdown get a serverInternal problem (ACME clients retry on
        // it), or their finalize leaves the order invalid with one; those during the outage wait
        // for the pool. None hangs or loses its connection.
        let errors = report["errors"]
            .as_object()
            .expect("`errors` in the report");
        assert!(
            errors
                .keys()
                .all(|kind| kind.ends_with(": 500 serverInternal")
                    || kind == "finalize: invalid serverInternal"),
            "errors other than serverInternal around the restart: {report}"
        );
        assert_eq!(
            env.pkid.wait_exit(Duration::ZERO).await,
            None,
            "pkid exited while PostgreSQL restarted"
        );
        assert_eq!(env.pkid.pid(), pid, "pkid is the same process");

        // Orders cut off by the outage are recovered; then a fresh run has no error at all.
        wait_no_processing(&postgres.url, RECOVERY_BOUND).await;
        let after = env.subdir("after").join("certs");
        let load = Loadgen::spawn(
            &env.pkid,
            http01_port,
            &after,
            &["--orders", "24"],
            "loadgen-after",
        );
        let report = load.report(Duration::from_secs(90)).await;
        assert_eq!(
            (issued(&report), report["error_total"].as_u64()),
            (24, Some(0)),
            "the run after PostgreSQL came back: {report}"
        );
        wait_no_processing(&postgres.url, RECOVERY_BOUND).await;
        let counts = check_invariants(&postgres.url, &delivered(&[during, after])).await;
        eprintln!("after the PostgreSQL restart: {counts:?}");
    })
    .await;
}

/// The store's own PostgreSQL connections (no pool, no ping per query) across a server
/// restart: a connection idle past the check is tested and replaced before use; one used since
/// fails its next query once, is closed, and the next holder gets a new one; a holder that
/// needs a new connection while the server is down waits for it to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_connections_are_replaced_after_a_postgres_restart() {
    use pkid::store::connections::{Connections, Kind, CHECK_AFTER_IDLE};
    use sqlx::any::AnyConnectOptions;
    use std::str::FromStr;

    async fn answer(conns: &Connections) -> Result<i64, sqlx::Error> {
        let mut conn = conns.get().await?;
        sqlx::query("SELECT 42 AS n")
            .fetch_one(&mut conn)
            .await
            .map(|row| row.get::<i64, _>("n"))
    }

    let (_scratch, postgres) = scratch_postgres("pkid-pg-conns-");
    let postgres = Arc::new(std::sync::Mutex::new(postgres));
    let url = postgres.lock().unwrap().url.clone();
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str(&url).unwrap();
    within(Duration::from_secs(120), async {
        let checked = Connections::open(&options, 1, Kind::Server).await.unwrap();
        let unchecked =
            Connections::open_checking(&options, 1, Kind::Server, Duration::from_secs(3600))
                .await
                .unwrap();
        assert_eq!(answer(&checked).await.unwrap(), 42);
        assert_eq!(answer(&unchecked).await.unwrap(), 42);

        let restarting = postgres.clone();
        tokio::task::spawn_blocking(move || {
            restarting
                .lock()
                .unwrap()
                .restart(Duration::from_millis(200))
        })
        .await
        .unwrap();
        tokio::time::sleep(CHECK_AFTER_IDLE).await;
        // Idle past the check: pinged, found broken, replaced: the first query succeeds.
        assert_eq!(answer(&checked).await.unwrap(), 42);
        // Never checked: its next query meets the broken connection, once.
        let broken = answer(&unchecked).await;
        assert!(
            broken.is_err(),
            "a query on a connection the restart cut: {broken:?}"
        );
        assert_eq!(answer(&unchecked).await.unwrap(), 42);

        // While the server is down, a holder needing a new connection waits for its return.
        let restarting = postgres.clone();
        let outage = tokio::task::spawn_blocking(move || {
            restarting.lock().unwrap().restart(Duration::from_secs(2))
        });
        let port = url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap()
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .is_ok()
        {
            assert!(Instant::now() < deadline, "PostgreSQL did not go down");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(CHECK_AFTER_IDLE).await;
        let started = Instant::now();
        assert_eq!(answer(&checked).await.unwrap(), 42);
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "answered during the outage, after {:?}",
            started.elapsed()
        );
        outage.await.unwrap();
    })
    .await;
}

/// Each PostgreSQL connection of the store, of either kind, runs a statement it prepared on one
/// generic plan, never on a plan made for one execution's values; only the kind for writes no
/// client relies on skips waiting for the flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_plan_each_statement_once() {
    use pkid::store::connections::{Connections, Kind};
    use sqlx::any::AnyConnectOptions;
    use std::str::FromStr;

    const STATEMENT: &str = "SELECT COUNT(*) AS n FROM pg_class WHERE relname = $1";
    let (_scratch, postgres) = scratch_postgres("pkid-pg-plans-");
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str(&postgres.url).unwrap();
    within(Duration::from_secs(60), async {
        for (kind, flushed) in [(Kind::Server, "on"), (Kind::ServerUnflushed, "off")] {
            let conns = Connections::open(&options, 1, kind).await.unwrap();
            let mut conn = conns.get().await.unwrap();
            for name in ["pg_class", "pg_proc", "nothing", "pg_type", "pg_class", "x", "y"] {
                let n: i64 = sqlx::query(STATEMENT)
                    .bind(name)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap()
                    .get("n");
                assert_eq!(n, i64::from(name.starts_with("pg_")), "{name}");
            }
            let plans = sqlx::query(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            )
            .bind(STATEMENT)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            let (generic, custom): (i64, i64) = (plans.get(0), plans.get(1));
            assert_eq!(
                (generic, custom),
                (7, 0),
                "{kind:?}: seven executions on the generic plan, none planned for its values \
                 (PostgreSQL's default plans the first five for their values)"
            );
            let commit: String = sqlx::query("SELECT current_setting('synchronous_commit') AS s")
                .fetch_one(&mut conn)
                .await
                .unwrap()
                .get("s");
            assert_eq!(commit, flushed, "{kind:?}");
        }
    })
    .await;
}

/// Several writes on PostgreSQL run as one statement (data-modifying `WITH`s): the rows each
/// changed are told apart, and a failing one undoes the others, as a transaction would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writes_run_as_one_statement_all_or_nothing() {
    use pkid::store::{Arg, Statement, Store};

    fn setting(name: &str, value: &str) -> Statement {
        Statement::new(
            "INSERT INTO settings (name, value) VALUES ($1, $2)",
            vec![Arg::from(name), Arg::from(value)],
        )
    }
    fn rename(from: &str, to: &str) -> Statement {
        Statement::new(
            "UPDATE settings SET value = $1 WHERE name = $2 AND value <> $1",
            vec![Arg::from(to), Arg::from(from)],
        )
    }

    let (_scratch, postgres) = scratch_postgres("pkid-pg-combined-");
    within(Duration::from_secs(60), async {
        let store = Store::connect(&postgres.url, 2).await.unwrap();
        let changed = store
            .execute_all(vec![
                setting("combined-a", "1"),
                setting("combined-b", "1"),
                rename("combined-none", "2"),
            ])
            .await
            .unwrap();
        assert_eq!(changed, vec![1, 1, 0]);
        // The second insert collides: the first and the update are undone with it.
        let failed = store
            .execute_all(vec![
                setting("combined-c", "1"),
                rename("combined-a", "2"),
                setting("combined-b", "again"),
            ])
            .await;
        assert!(failed.is_err(), "{failed:?}");
        let rows: Vec<(String, String)> = sqlx::query(
            "SELECT name, value FROM settings WHERE name LIKE 'combined-%' ORDER BY name",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("name"), r.get("value")))
        .collect();
        assert_eq!(
            rows,
            vec![
                ("combined-a".to_owned(), "1".to_owned()),
                ("combined-b".to_owned(), "1".to_owned())
            ]
        );
    })
    .await;
}

/// newOrder's reuse lookups, one statement on both databases: the account's three newest
/// unexpired pending orders for exactly the identifiers and profile, newest first (not a valid,
/// an expiring, another account's or other identifiers' order, nor a fourth), and its valid
/// authorization for the identifier with the challenge that validated it (not a pending, a
/// wildcard's or an expiring one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_candidates_are_read_in_one_statement_on_both_databases() {
    use pkid::store::{AuthzReuse, AuthzStatus, OrderReuse, Store};

    const X: &str = r#"[{"type":"dns","value":"x.test"}]"#;
    let (scratch, postgres) = scratch_postgres("pkid-reuse-");
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        scratch.path().join("pkid.db").display()
    );
    within(Duration::from_secs(60), async {
        for url in [sqlite.as_str(), postgres.url.as_str()] {
            let store = Store::connect(url, 2).await.unwrap();
            let far = 9_999_999_999i64;
            let now = pkid::store::now();
            let order =
                |id: &str, account: &str, status: &str, expires: i64, ids: &str, at: i64| {
                    format!(
                    "('{id}', '{account}', 'default', '{status}', {expires}, '{ids}', 'p', {at})"
                )
                };
            let authz = |id: &str, wildcard: i64, status: &str, expires: i64| {
                format!("('{id}', 'acct', 'dns', 'x.test', {wildcard}, '{status}', {expires}, 0)")
            };
            let seed = [
                "INSERT INTO accounts (id, thumbprint, jwk, status, contact, directory, created_at) \
                 VALUES ('acct', 't1', '{}', 'valid', '[]', 'default', 0), \
                 ('other', 't2', '{}', 'valid', '[]', 'default', 0)"
                    .to_owned(),
                format!(
                    "INSERT INTO orders (id, account_id, directory, status, expires, \
                     identifiers, profile_name, created_at) VALUES {}",
                    [
                        order("oldest", "acct", "pending", far, X, 5),
                        order("old", "acct", "pending", far, X, 10),
                        order("new", "acct", "pending", far, X, 30),
                        order("mid", "acct", "pending", far, X, 20),
                        order("valid", "acct", "valid", far, X, 50),
                        order("expiring", "acct", "pending", now + 60, X, 60),
                        order("theirs", "other", "pending", far, X, 70),
                        order("other-ids", "acct", "pending", far, "[]", 80),
                    ]
                    .join(", ")
                ),
                format!(
                    "INSERT INTO authorizations (id, account_id, id_type, id_value, wildcard, \
                     status, expires, created_at) VALUES {}",
                    [
                        authz("a-valid", 0, "valid", far),
                        authz("a-pending", 0, "pending", far),
                        authz("a-wildcard", 1, "valid", far),
                        authz("a-expiring", 0, "valid", now + 10),
                    ]
                    .join(", ")
                ),
                "INSERT INTO challenges (id, authz_id, kind, token, status, validated) VALUES \
                 ('c-pending', 'a-valid', 'dns-01', 'k1', 'pending', NULL), \
                 ('c-valid', 'a-valid', 'http-01', 'k2', 'valid', 12345)"
                    .to_owned(),
            ];
            for statement in seed {
                sqlx::query(&statement)
                    .execute(store.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {statement}: {e}"));
            }
            let orders = OrderReuse {
                account_id: "acct",
                directory: "default",
                identifiers: X,
                profile_name: "p",
                at: now,
            };
            let authz = AuthzReuse {
                account_id: "acct",
                id_type: "dns",
                id_value: "x.test",
                wildcard: false,
                valid_until: now + 86400,
            };
            let (found, valid) = store.reuse_candidates(&orders, &authz).await.unwrap();
            let ids: Vec<&str> = found.iter().map(|o| o.id.as_str()).collect();
            assert_eq!(ids, ["new", "mid", "old"], "{url}");
            let valid = valid.unwrap_or_else(|| panic!("{url}: no authorization"));
            assert_eq!(valid.id, "a-valid", "{url}");
            assert_eq!(
                valid.validation,
                Some(("http-01".to_owned(), 12345)),
                "{url}"
            );
            assert!(
                !valid.wildcard && valid.status == AuthzStatus::Valid,
                "{url}"
            );
            assert_eq!(
                store.reusable_authz(&authz).await.unwrap().map(|a| a.id),
                Some("a-valid".to_owned()),
                "{url}: the later identifiers' own lookup agrees"
            );

            let nothing = OrderReuse {
                identifiers: "[]",
                profile_name: "q",
                ..orders
            };
            let elsewhere = AuthzReuse {
                id_value: "y.test",
                ..authz
            };
            let (found, valid) = store.reuse_candidates(&nothing, &elsewhere).await.unwrap();
            assert!(
                found.is_empty() && valid.is_none(),
                "{url}: {found:?} {valid:?}"
            );
        }
    })
    .await;
}

/// Account `acct` and its `orders` (id, status), unexpired, in the store's PostgreSQL tables.
fn seed_account_and_orders(postgres: &Postgres, orders: &[(&str, &str)]) {
    let values: Vec<String> = orders
        .iter()
        .map(|(id, status)| format!("('{id}', 'acct', 'default', '{status}', 9999999999, '[]', 0)"))
        .collect();
    postgres.sql(&format!(
        "INSERT INTO accounts (id, thumbprint, jwk, status, contact, directory, created_at) \
         VALUES ('acct', 't', '{{}}', 'valid', '[]', 'default', 0); \
         INSERT INTO orders (id, account_id, directory, status, expires, identifiers, created_at) \
         VALUES {}",
        values.join(", ")
    ));
}

/// An issuance's last step on PostgreSQL (one statement): the order settles and its `tbs` row
/// becomes the certificate; a certificate with no `tbs` row (an upstream CA chose the serial)
/// is inserted; an order settled already keeps what it has, and nothing is written. Its first
/// step, the finalize's claim with the `tbs` record, is one statement too, made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_completes_an_issuance_in_one_statement() {
    use pkid::store::{Claim, IssuedRecord, PendingCertificate, Store, StoreError};

    let (_scratch, postgres) = scratch_postgres("pkid-pg-complete-");
    within(Duration::from_secs(60), async {
        let store = Store::connect(&postgres.url, 2).await.unwrap();
        // After the migrations that `connect` ran:
        seed_account_and_orders(
            &postgres,
            &[
                ("o-tbs", "processing"),
                ("o-upstream", "processing"),
                ("o-settled", "valid"),
                ("o-claimed", "pending"),
            ],
        );
        let pending = |order: &'static str| PendingCertificate {
            issuer: "ca",
            order_id: Some(order),
            account_id: Some("acct"),
            not_before: 1,
            not_after: 2,
            crl_shard: None,
        };
        let issued = |serial: &'static str| IssuedRecord {
            serial,
            tbs: b"tbs",
            der: b"der",
            chain_pem: "chain",
        };
        store
            .record_tbs(&pending("o-tbs"), "01", b"tbs")
            .await
            .unwrap();
        store
            .complete_issuance(&issued("01"), &pending("o-tbs"))
            .await
            .unwrap();
        store
            .complete_issuance(&issued("02"), &pending("o-upstream"))
            .await
            .unwrap();
        store
            .record_tbs(&pending("o-settled"), "03", b"tbs")
            .await
            .unwrap();
        let settled = store
            .complete_issuance(&issued("03"), &pending("o-settled"))
            .await;
        assert!(
            matches!(settled, Err(StoreError::OrderSettled(_))),
            "{settled:?}"
        );
        // A certificate of no order (the REST surfaces) needs no order to settle.
        let no_order = PendingCertificate {
            order_id: None,
            ..pending("o-tbs")
        };
        store.record_tbs(&no_order, "04", b"tbs").await.unwrap();
        store
            .complete_issuance(&issued("04"), &no_order)
            .await
            .unwrap();
        // A finalize's claim with its to-be-signed record, one statement: the first claim
        // records its serial, a second finds the order taken and records nothing.
        let claim = Claim {
            order_id: "o-claimed",
            profile_snapshot: "{}",
            csr: b"csr",
            now: 1,
        };
        for (serial, claimed) in [("05", true), ("06", false)] {
            assert_eq!(
                store
                    .claim_with_tbs(&claim, &pending("o-claimed"), serial, b"tbs")
                    .await
                    .unwrap(),
                claimed,
                "{serial}"
            );
        }

        let rows: Vec<(String, String, Option<Vec<u8>>)> =
            sqlx::query("SELECT serial, status, der FROM certificates ORDER BY serial")
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("serial"), r.get("status"), r.get("der")))
                .collect();
        let der = Some(b"der".to_vec());
        assert_eq!(
            rows,
            vec![
                ("01".into(), "issued".into(), der.clone()),
                ("02".into(), "issued".into(), der.clone()),
                ("03".into(), "tbs".into(), None),
                ("04".into(), "issued".into(), der),
                ("05".into(), "tbs".into(), None),
            ]
        );
        let orders: Vec<(String, String, Option<String>)> =
            sqlx::query("SELECT id, status, certificate_serial FROM orders ORDER BY id")
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("id"), r.get("status"), r.get("certificate_serial")))
                .collect();
        assert_eq!(
            orders,
            vec![
                ("o-claimed".into(), "processing".into(), None),
                ("o-settled".into(), "valid".into(), None),
                ("o-tbs".into(), "valid".into(), Some("01".into())),
                ("o-upstream".into(), "valid".into(), Some("02".into())),
            ]
        );
    })
    .await;
}

/// On PostgreSQL the statement that redeems a request's nonce also reads the resource its URL
/// names: each read gives what the store's own read of it gives (an order's authorizations and
/// an authorization's challenges in their order included), a missing resource or account
/// reads as none, and the nonce stays single-use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_a_requests_resource_with_its_nonce() {
    use pkid::store::{AccountStatus, Prefetch, Prefetched, Store};

    let (_scratch, postgres) = scratch_postgres("pkid-pg-prefetch-");
    within(Duration::from_secs(60), async {
        let store = Store::connect(&postgres.url, 2).await.unwrap();
        seed_account_and_orders(&postgres, &[("o", "pending"), ("o-bare", "pending")]);
        postgres.sql(
            "INSERT INTO authorizations (id, account_id, id_type, id_value, wildcard, status, expires, created_at) \
             VALUES ('a-z', 'acct', 'dns', 'z.test', 0, 'pending', 9999999999, 0), \
                    ('a-y', 'acct', 'dns', 'y.test', 0, 'valid', 9999999999, 0); \
             INSERT INTO order_authorizations (order_id, authz_id, position) \
             VALUES ('o', 'a-z', 1), ('o', 'a-y', 0); \
             INSERT INTO challenges (id, authz_id, kind, token, status, validated, error) \
             VALUES ('c-tls', 'a-z', 'tls-alpn-01', 'k1', 'pending', NULL, NULL), \
                    ('c-http', 'a-z', 'http-01', 'k2', 'processing', NULL, NULL), \
                    ('c-dns', 'a-z', 'dns-01', 'k3', 'invalid', NULL, '{\"type\":\"x\"}'), \
                    ('c-y', 'a-y', 'http-01', 'k4', 'valid', 1234, NULL); \
             INSERT INTO certificates (serial, issuer, order_id, account_id, status, tbs, der, chain_pem, not_before, not_after, created_at) \
             VALUES ('0a', 'ca', 'o', 'acct', 'issued', '\\x01', '\\x02', 'chain', 1, 2, 0)",
        );
        let mut n = 0;
        let mut read = |prefetch: Prefetch<'static>, account: &'static str| {
            n += 1;
            let store = store.clone();
            async move {
                store
                    .account_redeeming_nonce(account, &format!("nonce-{n}"), 9999999999, prefetch)
                    .await
                    .unwrap()
            }
        };
        let debug = |x: &dyn std::fmt::Debug| format!("{x:?}");

        let (account, first, mut got) = read(Prefetch::Order("o"), "acct").await;
        assert!(first && account.is_some_and(|a| a.id == "acct" && a.status == AccountStatus::Valid));
        let order = got.take_order("o").expect("an order was read").expect("it exists");
        assert_eq!(order.1.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["a-y", "a-z"]);
        assert_eq!(
            order.1[0].validation,
            Some(("http-01".to_string(), 1234)),
            "{order:?}"
        );
        assert_eq!(debug(&order), debug(&store.order_with_authzs("o").await.unwrap().unwrap()));
        let (_, _, mut got) = read(Prefetch::Order("o-bare"), "acct").await;
        let bare = got.take_order("o-bare").unwrap().unwrap();
        assert!(bare.1.is_empty(), "{bare:?}");

        let (_, _, mut got) = read(Prefetch::Authz("a-z"), "acct").await;
        let authz = got.take_authz("a-z").unwrap().unwrap();
        assert_eq!(
            authz.1.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
            ["dns-01", "http-01", "tls-alpn-01"]
        );
        assert_eq!(debug(&authz), debug(&store.authz_with_challenges("a-z").await.unwrap().unwrap()));

        let (_, _, mut got) = read(Prefetch::Challenge("c-y"), "acct").await;
        let chall = got.take_challenge("c-y").unwrap().unwrap();
        assert_eq!((chall.0.authz_id.as_str(), chall.1.id.as_str()), ("a-y", "a-y"));
        assert_eq!(debug(&chall), debug(&store.challenge_with_authz("c-y").await.unwrap().unwrap()));

        let (_, _, mut got) = read(Prefetch::Certificate("0a"), "acct").await;
        let cert = got.take_certificate("0a").unwrap().unwrap();
        assert_eq!(cert.der.as_deref(), Some(&[2u8][..]));
        assert_eq!(debug(&cert), debug(&store.certificate("0a").await.unwrap().unwrap()));

        // Nothing of that name: read, and found to be none.
        for (prefetch, mut got) in [
            (Prefetch::Order("nope"), read(Prefetch::Order("nope"), "acct").await.2),
            (Prefetch::Authz("nope"), read(Prefetch::Authz("nope"), "acct").await.2),
            (Prefetch::Challenge("nope"), read(Prefetch::Challenge("nope"), "acct").await.2),
            (Prefetch::Certificate("nope"), read(Prefetch::Certificate("nope"), "acct").await.2),
        ] {
            let none = match prefetch {
                Prefetch::Order(k) => got.take_order(k).map(|f| f.is_none()),
                Prefetch::Authz(k) => got.take_authz(k).map(|f| f.is_none()),
                Prefetch::Challenge(k) => got.take_challenge(k).map(|f| f.is_none()),
                Prefetch::Certificate(k) => got.take_certificate(k).map(|f| f.is_none()),
                Prefetch::Nothing => None,
            };
            assert_eq!(none, Some(true), "{prefetch:?}");
        }
        // No such account: the resource is still read, the account is none.
        let (account, first, mut got) = read(Prefetch::Authz("a-y"), "ghost").await;
        assert!(first && account.is_none());
        assert!(got.take_authz("a-y").unwrap().is_some());
        // Nothing to read beyond the account.
        let (account, _, got) = read(Prefetch::Nothing, "acct").await;
        assert!(account.is_some() && matches!(got, Prefetched::Nothing));

        // A nonce redeemed once, whatever was read with it.
        let (_, first, _) = store
            .account_redeeming_nonce("acct", "twice", 9999999999, Prefetch::Certificate("0a"))
            .await
            .unwrap();
        let (account, again, mut got) = store
            .account_redeeming_nonce("acct", "twice", 9999999999, Prefetch::Order("o"))
            .await
            .unwrap();
        assert!(first && !again && account.is_some());
        assert!(got.take_order("o").unwrap().is_some());
    })
    .await;
}

// ---- graceful stop and connection limits: raw HTTP/1.1 over TLS ----

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to pkid offering only `alpn` (`http/1.1`, `h2`), trusting pkid's root.
async fn connect_tls(pkid: &Pkid, alpn: &[u8]) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_chain(&String::from_utf8_lossy(&pkid.root_pem())) {
        roots.add(der.into()).expect("pkid's root");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", pkid.port()))
        .await
        .expect("connect to pkid");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("a server name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with pkid")
}

/// Reads until the server closes the connection (bounded); a TLS close without close_notify
/// counts as a close.
async fn read_to_close(tls: &mut Tls, bound: Duration) -> Result<Vec<u8>, String> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + bound;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
            Err(_) => return Err(format!("still open after {bound:?}")),
            Ok(Ok(0)) => return Ok(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(received),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(received),
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
        }
    }
}

/// Panics unless connecting to `port` is refused within 3 s (a listener being closed).
async fn assert_refused_soon(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            other => assert!(
                Instant::now() < deadline,
                "port {port} still accepts connections after SIGTERM: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads one response head (through the empty line), byte by byte so nothing after it is taken.
async fn read_head(tls: &mut Tls, bound: Duration) -> String {
    let mut head = Vec::new();
    let reading = async {
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tls.read_u8().await.expect("read a response head"));
        }
    };
    tokio::time::timeout(bound, reading)
        .await
        .unwrap_or_else(|_| panic!("no response head within {bound:?}"));
    String::from_utf8_lossy(&head).into_owned()
}

/// A complete HTTP/1.1 response: (status, lowercase headers, body), the body exactly as long as
/// Content-Length says.
fn parse_response(raw: &[u8]) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let text = String::from_utf8_lossy(raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let body = raw[end + 4..].to_vec();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(body.len(), length, "a truncated body: {text:?}");
    (status, headers, body)
}

/// SIGTERM while requests are in flight (their headers arrived, their bodies not yet): each gets
/// its complete answer and its account is stored; an idle keep-alive connection is closed; new
/// connections are refused; pkid exits 0 once the answers are out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight() {
    let mut env = Environment::start().await;
    within(Duration::from_secs(60), async {
        let port = env.pkid.port();
        // Four newAccount requests, each cut after half of its body. `Expect: 100-continue`
        // makes pkid say when its handler is reading the body: the request is then in flight.
        let mut in_flight = Vec::new();
        for _ in 0..4 {
            let client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
            let url = client.resource("newAccount");
            let nonce = client.new_nonce().await;
            let payload = json!({"termsOfServiceAgreed": true});
            let body = serde_json::to_vec(&client.jws(&url, Some(&payload), &nonce)).unwrap();
            let mut tls = connect_tls(&env.pkid, b"http/1.1").await;
            let head = format!(
                "POST /acme/new-account HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                 Content-Type: application/jose+json\r\nContent-Length: {}\r\n\
                 Expect: 100-continue\r\n\r\n",
                body.len()
            );
            tls.write_all(head.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            let interim = read_head(&mut tls, Duration::from_secs(10)).await;
            assert!(
                interim.starts_with("HTTP/1.1 100"),
                "pkid's interim answer: {interim:?}"
            );
            let (first, rest) = body.split_at(body.len() / 2);
            tls.write_all(first).await.unwrap();
            tls.flush().await.unwrap();
            in_flight.push((tls, rest.to_vec()));
        }
        // A keep-alive connection that was served once and is now idle.
        let mut idle = connect_tls(&env.pkid, b"http/1.1").await;
        let healthz = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        idle.write_all(healthz.as_bytes()).await.unwrap();
        idle.flush().await.unwrap();
        let answer = read_head(&mut idle, Duration::from_secs(10)).await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "GET /healthz on the idle connection: {answer:?}"
        );
        // The body of that answer ("ok\n").
        let mut body = [0u8; 3];
        idle.read_exact(&mut body).await.unwrap();

        env.pkid.signal("TERM");
        let closed = read_to_close(&mut idle, Duration::from_secs(3)).await;
        assert_eq!(
            closed,
            Ok(Vec::new()),
            "the idle keep-alive connection after SIGTERM"
        );
        // Both listeners, HTTPS and plain HTTP (CRLs, OCSP), stop accepting at once.
        for listener in [port, env.pkid.http_port()] {
            assert_refused_soon(listener).await;
        }
        assert_eq!(
            env.pkid.wait_exit(Duration::ZERO).await,
            None,
            "pkid waits for the requests in flight"
        );

        for (index, (mut tls, rest)) in in_flight.into_iter().enumerate() {
            tls.write_all(&rest).await.unwrap();
            tls.flush().await.unwrap();
            let raw = read_to_close(&mut tls, Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("request {index} in flight: {e}"));
            let (status, headers, body) = parse_response(&raw);
            assert_eq!(
                status,
                201,
                "request {index}: {}",
                String::from_utf8_lossy(&raw)
            );
            assert!(
                headers.contains_key("location"),
                "request {index}: an account URL"
            );
            let account: Value = serde_json::from_slice(&body).expect("the account is JSON");
            assert_eq!(account["status"], "valid", "request {index}: {account}");
        }
        let status = env
            .pkid
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("pkid exits within 10 s of its last answer");
        assert!(
            status.success(),
            "pkid's exit status after SIGTERM: {status}"
        );

        let db = open_database(&sqlite_url(&env.pkid)).await;
        let accounts: i64 = sqlx::query("SELECT COUNT(*) AS n FROM accounts")
            .fetch_one(&db)
            .await
            .unwrap()
            .get("n");
        assert_eq!(
            accounts, 4,
            "every account answered during the drain is stored"
        );
        db.close().await;
    })
    .await;
}

/// `server.max_connections = 3`, `server.header_timeout_secs = 2`: three slowloris connections
/// (silent after the TLS handshake over HTTP/1.1 and over HTTP/2, and one trickling header
/// bytes) fill the limit and are cut off after the header timeout; meanwhile eight more clients
/// wait in the accept queue, are not served before a slot frees, and are all served then; pkid
/// keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_and_clients_over_the_limit_wait() {
    const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
    let mut env = Environment::start_with(&[
        ("PKID_SERVER__MAX_CONNECTIONS", "3"),
        ("PKID_SERVER__HEADER_TIMEOUT_SECS", "2"),
    ])
    .await;
    within(Duration::from_secs(60), async {
        let port = env.pkid.port();
        // Give pkid time to drop the readiness probe's connection.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let opened = Instant::now();
        let mut silent_h1 = connect_tls(&env.pkid, b"http/1.1").await;
        let mut silent_h2 = connect_tls(&env.pkid, b"h2").await;
        let mut trickle = connect_tls(&env.pkid, b"http/1.1").await;
        let trickling = async {
            let start = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
            trickle.write_all(start.as_bytes()).await.unwrap();
            // One header byte every 200 ms, for at most 10 s: never a complete header block.
            for _ in 0..50 {
                if trickle.write_all(b"x").await.is_err() || trickle.flush().await.is_err() {
                    break;
                }
                let mut probe = [0u8; 64];
                let answer =
                    tokio::time::timeout(Duration::from_millis(200), trickle.read(&mut probe));
                match answer.await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) | Err(_) => {}
                }
            }
            opened.elapsed()
        };
        let root = env.pkid.root_pem();
        let waiting = async {
            // Each client its own connection, all started while the slots are taken.
            let clients: Vec<_> = (0..8)
                .map(|_| {
                    let http = crate::harness::tls::https_client(&root).unwrap();
                    let url = format!("https://127.0.0.1:{port}/healthz");
                    tokio::spawn(async move {
                        let response = http.get(&url).send().await;
                        let status = response
                            .map(|r| r.status().as_u16())
                            .map_err(|e| format!("{e:?}"));
                        (status, opened.elapsed())
                    })
                })
                .collect();
            let mut served = Vec::new();
            for client in clients {
                served.push(client.await.expect("a client task"));
            }
            served
        };
        let closed_h1 = async {
            let result = read_to_close(&mut silent_h1, Duration::from_secs(10)).await;
            (result.map(|bytes| bytes.len()), opened.elapsed())
        };
        let closed_h2 = async {
            // The server's own HTTP/2 preface (SETTINGS) may arrive before the close.
            let result = read_to_close(&mut silent_h2, Duration::from_secs(10)).await;
            (result.map(|_| 0), opened.elapsed())
        };
        let (h1, h2, trickle_at, served) = tokio::join!(closed_h1, closed_h2, trickling, waiting);
        eprintln!(
            "silent HTTP/1.1 closed after {:?}, silent HTTP/2 after {:?}, \
             trickle after {trickle_at:?}",
            h1.1, h2.1
        );
        let bound = HEADER_TIMEOUT + Duration::from_secs(3);
        for (what, (result, at)) in [("HTTP/1.1", h1), ("HTTP/2", h2)] {
            assert!(
                result == Ok(0) && at < bound,
                "the silent {what} connection: {result:?} after {at:?}"
            );
        }
        assert!(
            trickle_at < bound,
            "the trickling connection was open for {trickle_at:?}"
        );
        for (index, (status, at)) in served.iter().enumerate() {
            assert_eq!(
                status,
                &Ok(200),
                "client {index} over the limit (after {at:?})"
            );
            // No slot was free before the first slowloris was cut off.
            assert!(
                *at >= HEADER_TIMEOUT - Duration::from_millis(100),
                "client {index} was served after {at:?}, while the limit was taken"
            );
        }
        assert_eq!(
            env.pkid.wait_exit(Duration::ZERO).await,
            None,
            "pkid still runs"
        );
    })
    .await;
}
