//! The load generator works: `pkid-loadgen` runs a bounded number of full http-01 issuances
//! against a test pkid (real validation against its responder) and every one succeeds, with a
//! JSON report that parses and adds up. A functional check only: no figure is asserted.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::harness::environment::{within, Environment};
use crate::harness::pkid::Pkid;
use crate::harness::process::free_port;
use crate::harness::tls::ensure_crypto_provider;

const ORDERS: u64 = 50;
const TEST_BOUND: Duration = Duration::from_secs(120);

fn loadgen_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pkid-loadgen")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_issues_every_ordered_certificate_and_reports_json() {
    let env = Environment::start().await;
    assert_ne!(env.pkid.pid(), 0, "pkid is not running");
    let pid = env.pkid.pid().to_string();
    let orders = ORDERS.to_string();
    let http01_port = env.http01_port.to_string();
    let directory = env.pkid.directory_url();
    let root = env.pkid.root_pem_path();
    let sockets_before = open_sockets(env.pkid.pid());
    // The most sockets pkid held while the load ran, sampled every 20 ms.
    let pkid_pid = env.pkid.pid();
    let most_sockets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sampler = {
        let most_sockets = most_sockets.clone();
        tokio::spawn(async move {
            loop {
                most_sockets
                    .fetch_max(open_sockets(pkid_pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let report = run_loadgen(&[
        "--directory",
        &directory,
        "--root",
        &root.display().to_string(),
        "--concurrency",
        "4",
        "--orders",
        &orders,
        "--http01-port",
        &http01_port,
        "--server-pid",
        &pid,
    ])
    .await;
    sampler.abort();

    assert_eq!(
        report["issued"], ORDERS,
        "every issuance succeeded: {report:#}"
    );
    assert_eq!(report["error_total"], 0, "{report:#}");
    assert_eq!(report["abandoned_workers"], 0, "{report:#}");
    assert_eq!(report["concurrency"], 4);
    assert_eq!(report["directory"], directory.as_str());
    let latency = report["latency"].as_array().expect("latency rows");
    let steps: Vec<&str> = latency.iter().filter_map(|l| l["step"].as_str()).collect();
    assert_eq!(
        steps,
        [
            "new-order",
            "authz",
            "challenge-to-valid",
            "finalize",
            "download",
            "flow"
        ]
    );
    for row in latency {
        assert_eq!(row["count"], ORDERS, "one sample per issuance: {row}");
        let (p50, p99, max) = (
            row["p50_ms"].as_f64().unwrap(),
            row["p99_ms"].as_f64().unwrap(),
            row["max_ms"].as_f64().unwrap(),
        );
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= max,
            "ordered percentiles: {row}"
        );
    }
    let server = &report["server"];
    assert_eq!(server["pid"].to_string(), pid);
    assert!(server["cpu_ms"].as_f64().unwrap() > 0.0, "{server}");
    assert!(server["hwm_kib"].as_u64().unwrap() > 0, "{server}");
    let rate = report["issuances_per_s"].as_f64().unwrap();
    let elapsed = report["elapsed_s"].as_f64().unwrap();
    assert!(
        (rate * elapsed - ORDERS as f64).abs() < 0.5,
        "rate × time = issued: {report:#}"
    );

    // What pkid stored agrees: every reported issuance is a certificate in its database.
    let db = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(env.pkid.database_path())
                .read_only(true),
        )
        .await
        .expect("open pkid's database read-only");
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM certificates WHERE status = 'issued' AND order_id IS NOT NULL",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(stored, ORDERS as i64, "certificates stored for orders");

    // Validation leaves no connection behind: each is a fresh one, closed when it is done
    // (kept ones, one per validated name, once held thousands of sockets under load). Four
    // workers hold four connections and run at most four validations at a time, each with its
    // resolver's sockets; a socket kept per name would pass the bound below after 35 of the 50.
    let most = most_sockets.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        most < sockets_before + 35,
        "pkid held up to {most} sockets during {ORDERS} issuances, {sockets_before} before"
    );
    // And once the load generator is gone, pkid is back to its own listeners within seconds
    // (a kept connection would idle for a minute and more).
    let mut settled = open_sockets(pkid_pid);
    for _ in 0..50 {
        if settled <= sockets_before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        settled = open_sockets(pkid_pid);
    }
    assert!(
        settled <= sockets_before + 2,
        "pkid still holds {settled} sockets 5 s after the load, {sockets_before} before"
    );
}

/// Runs `pkid-loadgen` with `args` and `--step-timeout 20 --json`, bounded in time; its report,
/// after asserting that it succeeded.
async fn run_loadgen(args: &[&str]) -> Value {
    let output = within(TEST_BOUND, async {
        tokio::process::Command::new(loadgen_bin())
            .args(args)
            .args(["--step-timeout", "20", "--json"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run pkid-loadgen")
    })
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pkid-loadgen failed ({}): {stderr}",
        output.status
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "pkid-loadgen --json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `--dns-listen`: the load generator answers the DNS queries for its names itself, as the
/// bench runs it. pkid's resolver asks nothing else, so every issuance shows the answers work
/// for a real resolver: the http-01 address, and the CAA walk from the name up to the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_answers_the_dns_queries_for_its_names() {
    const DNS_ORDERS: u64 = 10;
    ensure_crypto_provider();
    let tmp = tempfile::Builder::new()
        .prefix("pkid-conformance-")
        .tempdir()
        .expect("create a temporary folder");
    let dns_addr = format!("127.0.0.1:{}", free_port());
    let http01_port = free_port();
    let pkid = Pkid::start_with_resolver(tmp.path(), &dns_addr, http01_port, &[]).await;
    let report = run_loadgen(&[
        "--directory",
        &pkid.directory_url(),
        "--root",
        &pkid.root_pem_path().display().to_string(),
        "--concurrency",
        "2",
        "--orders",
        &DNS_ORDERS.to_string(),
        "--http01-port",
        &http01_port.to_string(),
        "--dns-listen",
        &dns_addr,
    ])
    .await;
    assert_eq!(report["issued"], DNS_ORDERS, "{report:#}");
    assert_eq!(report["error_total"], 0, "{report:#}");

    // A DNS address off loopback is refused before any load starts.
    let refused = tokio::process::Command::new(loadgen_bin())
        .args(["--directory", &pkid.directory_url()])
        .arg("--root")
        .arg(pkid.root_pem_path())
        .args(["--orders", "1", "--dns-listen", "192.0.2.1:53"])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run pkid-loadgen");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not a loopback address"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// The sockets among a process's open file descriptors.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}
