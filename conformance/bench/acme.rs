//! `cargo bench --bench acme`: pkid's ACME issuance figures, each next to a baseline measured in
//! the same run, all on loopback. Every server is started and stopped here, by PID.
//!
//! - full http-01 issuances (newOrder → authz → challenge → finalize → download) by
//!   `pkid-loadgen` against the release `pkid` on SQLite, on PostgreSQL and with its issuing key
//!   in a SoftHSM2 token, with pkid's real http-01 validation against the load generator's
//!   responder; against Debian's `pebble` (always-valid, no sleep) as the baseline; SoftHSM
//!   and software twice each, in A-B-B-A order, for their ratio
//! - start-up to the first served request, on a fresh and on an existing data folder
//! - signatures per second of each local key signer, next to `openssl speed`
//!
//! Prints a table and writes `target/bench/acme.json`. Bounded to a few minutes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// A bench target cannot use the test binary's modules: it mounts the harness itself, and uses
// only part of it (pkid, PostgreSQL, processes, TLS).
#[allow(dead_code)]
#[path = "../harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pkid_backends::{KeyAlgorithm, KeySigner, Pkcs11Config, Pkcs11Key, SoftwareKey};
use serde_json::{json, Value};

use crate::harness::pkid::Pkid;
use crate::harness::postgres::{Durability, Postgres};
use crate::harness::process::{free_port, read_log, require_tool, ChildGuard};
use crate::harness::tls::{ensure_crypto_provider, https_client};

/// Clients and seconds of the main pkid runs (the figures are at 32 clients).
const CONCURRENCY: usize = 32;
const DURATION_SECS: u64 = 10;
/// pebble stalls under concurrency (NOTES-STACK.md): a short run at few clients.
const PEBBLE_CONCURRENCY: usize = 8;
const PEBBLE_SECS: u64 = 5;
/// Start-ups timed per kind (fresh data folder, existing one).
const STARTUP_REPETITIONS: usize = 3;
/// How long each signer signs.
const SIGN_SECS: f64 = 1.0;
/// The message each signer signs: about a leaf certificate's TBS.
const SIGN_MESSAGE_LEN: usize = 512;
const HSM_PIN: &str = "4321";
const HSM_SO_PIN: &str = "87654321";

fn main() {
    let started = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix("pkid-bench-")
        .tempdir()
        .expect("a temporary folder");
    // SoftHSM reads its configuration at C_Initialize: this process (the signer figures) and
    // every pkid it starts use one token folder of the bench's own.
    let softhsm_conf = softhsm_setup(scratch.path());
    std::env::set_var("SOFTHSM2_CONF", &softhsm_conf);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let results = runtime.block_on(run_all(scratch.path()));
    let total_s = started.elapsed().as_secs_f64();
    let report = json!({
        "date_utc": utc_now(),
        "command": "cargo bench --bench acme",
        "machine": machine(),
        "total_s": total_s,
        "results": results,
    });
    print_report(&report);
    let out = target_dir().join("bench").join("acme.json");
    std::fs::create_dir_all(out.parent().expect("a parent folder")).expect("create target/bench");
    std::fs::write(&out, serde_json::to_vec_pretty(&report).expect("JSON")).expect("write JSON");
    println!("\nJSON: {}   (whole bench: {total_s:.0} s)", out.display());
}

async fn run_all(scratch: &Path) -> Value {
    let mut results = serde_json::Map::new();
    let mut phase = |name: &str, value: Value| {
        eprintln!("bench: {name} done");
        results.insert(name.to_owned(), value);
    };

    phase("signers", contained(signers(scratch.join("signers"))).await);
    phase("startup", contained(startup(scratch.join("startup"))).await);
    phase(
        "pkid_sqlite",
        contained(pkid_load(
            Setup::Sqlite,
            scratch.join("sqlite"),
            CONCURRENCY,
            DURATION_SECS,
        ))
        .await,
    );
    // SoftHSM against software in A-B-B-A order (the first A above): the machine's speed drifts
    // by more than the difference measured, so the ratio is of the two pairs' sums.
    for (name, setup, dir) in [
        ("pkid_softhsm", Setup::SoftHsm, "softhsm"),
        ("pkid_softhsm_2", Setup::SoftHsm, "softhsm-2"),
        ("pkid_sqlite_2", Setup::Sqlite, "sqlite-2"),
    ] {
        let run = pkid_load(setup, scratch.join(dir), CONCURRENCY, DURATION_SECS);
        phase(name, contained(run).await);
    }
    // The goal's concurrency in pebble's mode (no validation), beside the validating runs.
    phase(
        "pkid_sqlite_always_valid",
        contained(pkid_load(
            Setup::SqliteAlwaysValid,
            scratch.join("sqlite-av"),
            CONCURRENCY,
            DURATION_SECS,
        ))
        .await,
    );
    phase(
        "pkid_sqlite_c8",
        contained(pkid_load(
            Setup::Sqlite,
            scratch.join("sqlite-c8"),
            PEBBLE_CONCURRENCY,
            PEBBLE_SECS,
        ))
        .await,
    );
    phase(
        "pkid_sqlite_c8_always_valid",
        contained(pkid_load(
            Setup::SqliteAlwaysValid,
            scratch.join("sqlite-c8-av"),
            PEBBLE_CONCURRENCY,
            PEBBLE_SECS,
        ))
        .await,
    );
    phase(
        "pkid_postgres",
        contained(pkid_load(
            Setup::Postgres,
            scratch.join("postgres"),
            CONCURRENCY,
            DURATION_SECS,
        ))
        .await,
    );
    phase(
        "pebble",
        contained(pebble_load(scratch.join("pebble"))).await,
    );
    phase("durability", durability());
    Value::Object(results)
}

/// Runs one phase in its own task: a panic (a server that never came up, say) becomes an
/// `error` entry, after the phase's guards have stopped its processes.
async fn contained<F>(phase: F) -> Value
where
    F: std::future::Future<Output = Value> + Send + 'static,
{
    match tokio::spawn(phase).await {
        Ok(value) => value,
        Err(e) => {
            let message = match e.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic".into()),
                Err(e) => e.to_string(),
            };
            eprintln!("bench: phase failed: {message}");
            json!({ "error": message })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ACME load: pkid (SQLite, PostgreSQL, SoftHSM) and pebble, driven by pkid-loadgen

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Sqlite,
    /// SQLite with the test mode's always-valid challenges: no validation, as pebble's run.
    SqliteAlwaysValid,
    Postgres,
    SoftHsm,
}

/// pkid under `concurrency` loadgen workers for `secs`; its database and backend per `setup`.
async fn pkid_load(setup: Setup, dir: PathBuf, concurrency: usize, secs: u64) -> Value {
    std::fs::create_dir_all(&dir).unwrap();
    let postgres =
        (setup == Setup::Postgres).then(|| Postgres::start_with(&dir.join("pg"), Durability::Full));
    // The load generator answers the DNS queries for its names, as it answers http-01.
    let answers = Answers {
        http01_port: free_port(),
        dns_listen: Some(format!("127.0.0.1:{}", free_port())),
    };
    let mut settings: Vec<(String, String)> = vec![
        // The shipped default; the suite's `debug` would measure logging.
        ("PKID_LOG__LEVEL".into(), "info".into()),
    ];
    if let Some(pg) = &postgres {
        settings.push(("PKID_DATABASE__URL".into(), pg.url.clone()));
    }
    if setup == Setup::SqliteAlwaysValid {
        settings.push(("PKID_ACME__TEST_MODE__ENABLED".into(), "true".into()));
        settings.push(("PKID_ACME__TEST_MODE__ALWAYS_VALID".into(), "true".into()));
    }
    if setup == Setup::SoftHsm {
        // A token per run: two tokens of one label would leave pkid to pick either.
        let token = format!(
            "pkid-bench-{}",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("acme")
        );
        let token = token.as_str();
        init_token(token);
        let pin_file = dir.join("hsm.pin");
        std::fs::write(&pin_file, HSM_PIN).unwrap();
        let work_dir = dir.join("pkid");
        std::fs::create_dir_all(&work_dir).unwrap();
        // pkid reads config.toml from its working folder.
        std::fs::write(
            work_dir.join("config.toml"),
            format!(
                "[backends.hsm]\nkind = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{token}\"\n\
                 key_label = \"pkid-issuing\"\npin_file = \"{}\"\nalgorithm = \"ecdsa-p256\"\n",
                pkid_backends::pkcs11::SOFTHSM_MODULE,
                pin_file.display()
            ),
        )
        .unwrap();
        settings.push(("PKID_ACME__BACKEND".into(), "hsm".into()));
    }
    let settings_ref: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let dns_addr = answers.dns_listen.clone().unwrap_or_default();
    let pkid = Pkid::start_with_resolver(&dir, &dns_addr, answers.http01_port, &settings_ref).await;
    let pid = pkid.pid();
    assert_ne!(pid, 0, "pkid is not running");
    let report = loadgen(
        &pkid.directory_url(),
        &pkid.root_pem_path(),
        concurrency,
        secs,
        answers,
        pid,
        10,
    )
    .await;
    let database = match setup {
        Setup::Postgres => "postgresql (fsync=on, synchronous_commit=on)",
        _ => "sqlite (WAL, synchronous=FULL)",
    };
    let backend = match setup {
        Setup::SoftHsm => "pkcs11 SoftHSM2 ecdsa-p256",
        _ => "software ecdsa-p256",
    };
    let mut value = json!({
        "server": "pkid",
        "database": database,
        "backend": backend,
        "validation": if setup == Setup::SqliteAlwaysValid {
            "none: test mode always_valid (as pebble's PEBBLE_VA_ALWAYS_VALID)"
        } else {
            "real http-01 against the load generator's responder, its DNS answers"
        },
        "loadavg_after": loadavg(),
    });
    merge(&mut value, report);
    drop(pkid);
    drop(postgres);
    value
}

/// pebble with `PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1` under the load generator.
async fn pebble_load(dir: PathBuf) -> Value {
    require_tool("pebble");
    std::fs::create_dir_all(&dir).unwrap();
    let tls_root = pebble_tls(&dir);
    let port = free_port();
    let management_port = free_port();
    let config = json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }
    });
    std::fs::write(
        dir.join("pebble.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
    let mut pebble = ChildGuard::spawn(
        "pebble",
        Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .env("PEBBLE_VA_ALWAYS_VALID", "1")
            .env("PEBBLE_VA_NOSLEEP", "1")
            // pebble refuses 5 % of nonces by default; the baseline should not pay for that.
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    let directory = format!("https://127.0.0.1:{port}/dir");
    let http = https_client(&std::fs::read(&tls_root).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = pebble.try_exit_status() {
            panic!(
                "pebble exited with {status}: {}",
                read_log(&dir.join("pebble.log"))
            );
        }
        if let Ok(r) = http.get(&directory).send().await {
            if r.status().as_u16() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "pebble not ready within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = loadgen(
        &directory,
        &tls_root,
        PEBBLE_CONCURRENCY,
        PEBBLE_SECS,
        Answers {
            http01_port: free_port(),
            dns_listen: None,
        },
        pebble.pid(),
        5,
    )
    .await;
    let mut value = json!({
        "server": "pebble (Debian)",
        "validation": "PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0",
        "loadavg_after": loadavg(),
    });
    merge(&mut value, report);
    drop(pebble);
    value
}

/// A test root and a leaf for 127.0.0.1/localhost (pebble's HTTPS); returns the root's path.
fn pebble_tls(dir: &Path) -> PathBuf {
    let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    root_params.distinguished_name = rcgen::DistinguishedName::new();
    root_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pkid bench pebble HTTPS root");
    root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let root = rcgen::CertifiedIssuer::self_signed(root_params, root_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    leaf_params.distinguished_name = rcgen::DistinguishedName::new();
    let leaf = leaf_params.signed_by(&leaf_key, &root).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    let root_path = dir.join("tls-root.pem");
    std::fs::write(&root_path, root.pem()).unwrap();
    root_path
}

/// Where the load generator answers the server's validation.
struct Answers {
    http01_port: u16,
    /// `ip:port` of its DNS answers, if the server resolves through them.
    dns_listen: Option<String>,
}

/// Runs `pkid-loadgen --json` and returns its report (or an `error`), bounded in time.
async fn loadgen(
    directory: &str,
    root: &Path,
    concurrency: usize,
    secs: u64,
    answers: Answers,
    server_pid: u32,
    step_timeout: u64,
) -> Value {
    let bin = env!("CARGO_BIN_EXE_pkid-loadgen");
    let mut args = vec![
        "--directory".to_owned(),
        directory.to_owned(),
        "--root".to_owned(),
        root.display().to_string(),
        "--concurrency".to_owned(),
        concurrency.to_string(),
        "--duration".to_owned(),
        secs.to_string(),
        "--http01-port".to_owned(),
        answers.http01_port.to_string(),
        "--server-pid".to_owned(),
        server_pid.to_string(),
        "--step-timeout".to_owned(),
        step_timeout.to_string(),
        // Polling granularity bounds the challenge step's latency from below.
        "--poll-min-ms".to_owned(),
        "5".to_owned(),
        "--poll-max-ms".to_owned(),
        "200".to_owned(),
        "--json".to_owned(),
    ];
    if let Some(addr) = answers.dns_listen {
        args.extend(["--dns-listen".to_owned(), addr]);
    }
    let mut command = tokio::process::Command::new(bin);
    command.args(&args).stdin(Stdio::null()).kill_on_drop(true);
    // The load generator's own cut-off is the duration plus five step timeouts.
    let bound = Duration::from_secs(secs + 5 * step_timeout + 30);
    let output = match tokio::time::timeout(bound, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return json!({ "error": format!("running {bin}: {e}") }),
        Err(_) => {
            return json!({ "error": format!("pkid-loadgen did not finish within {bound:?}") })
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return json!({ "error": format!("pkid-loadgen failed ({}): {stderr}", output.status) });
    }
    match serde_json::from_slice::<Value>(&output.stdout) {
        Ok(report) => json!({ "loadgen_args": args.join(" "), "report": report }),
        Err(e) => json!({ "error": format!("pkid-loadgen printed no JSON report: {e}; {stderr}") }),
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

// ---------------------------------------------------------------------------------------------
// Start-up: spawn → first 200 on the directory

async fn startup(dir: PathBuf) -> Value {
    ensure_crypto_provider();
    // Only the timing matters here, not who signed pkid's certificate.
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut fresh = Vec::new();
    let mut existing = Vec::new();
    let mut rss = Vec::new();
    let mut last_dir = None;
    for rep in 0..STARTUP_REPETITIONS {
        let work = dir.join(format!("fresh-{rep}"));
        let (ms, hwm) = time_startup(&http, &work).await;
        fresh.push(ms);
        rss.push(hwm);
        last_dir = Some(work);
    }
    let work = last_dir.expect("one fresh start");
    for _ in 0..STARTUP_REPETITIONS {
        let (ms, _) = time_startup(&http, &work).await;
        existing.push(ms);
    }
    json!({
        "what": "spawn of `pkid serve` to the first 200 on /acme/directory, polled every 2 ms",
        "fresh_ms": fresh,
        "existing_ms": existing,
        "idle_hwm_kib_after_fresh_start": rss,
    })
}

/// Starts pkid in `work` (data in `work/data`), times it to its first 200, stops it by PID.
/// Returns the milliseconds and pkid's VmHWM then.
async fn time_startup(http: &reqwest::Client, work: &Path) -> (f64, Option<u64>) {
    std::fs::create_dir_all(work).unwrap();
    let port = free_port();
    let log = std::fs::File::create(work.join("pkid.log")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_pkid"));
    command
        .arg("serve")
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PKID_") {
            command.env_remove(key);
        }
    }
    command
        .env("PKID_DATA_DIR", work.join("data"))
        .env("PKID_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "PKID_SERVER__HTTP_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "PKID_SERVER__ADMIN_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("PKID_LOG__LEVEL", "info");
    let url = format!("https://127.0.0.1:{port}/acme/directory");
    let spawned = Instant::now();
    let mut child = ChildGuard::spawn("pkid", &mut command);
    let deadline = spawned + Duration::from_secs(20);
    let ms = loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().as_u16() == 200 {
                break spawned.elapsed().as_secs_f64() * 1000.0;
            }
        }
        if let Some(status) = child.try_exit_status() {
            panic!(
                "pkid exited during start-up with {status}: {}",
                read_log(&work.join("pkid.log"))
            );
        }
        assert!(Instant::now() < deadline, "pkid not ready within 20 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let hwm = status_kib(child.pid(), "VmHWM");
    child.terminate(Duration::from_secs(10));
    (ms, hwm)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------------------------
// Signers: signatures per second, one thread, against `openssl speed`

/// The SoftHSM configuration file for a token folder under `dir`.
fn softhsm_setup(dir: &Path) -> PathBuf {
    let tokens = dir.join("softhsm-tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

/// A fresh token labelled `label` in the bench's token folder.
fn init_token(label: &str) {
    require_tool("softhsm2-util");
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", HSM_PIN, "--so-pin", HSM_SO_PIN])
        .output()
        .expect("run softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn signers(dir: PathBuf) -> Value {
    tokio::task::spawn_blocking(move || signers_blocking(&dir))
        .await
        .unwrap()
}

fn signers_blocking(dir: &Path) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    let mut rows = Vec::new();
    let software = [
        (KeyAlgorithm::EcdsaP256, "ecdsap256"),
        (KeyAlgorithm::EcdsaP384, "ecdsap384"),
        (KeyAlgorithm::Rsa2048, "rsa2048"),
        (KeyAlgorithm::Ed25519, "ed25519"),
    ];
    for (alg, openssl_name) in software {
        let key = SoftwareKey::generate(alg).unwrap();
        rows.push(signer_row("software", alg, &key, openssl_name));
    }
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, HSM_PIN).unwrap();
    for (alg, openssl_name) in [
        (KeyAlgorithm::EcdsaP256, "ecdsap256"),
        (KeyAlgorithm::Rsa2048, "rsa2048"),
    ] {
        let token = format!("pkid-bench-{alg}");
        init_token(&token);
        let cfg = Pkcs11Config {
            module: PathBuf::from(pkid_backends::pkcs11::SOFTHSM_MODULE),
            token_label: token,
            pin_env: None,
            pin_file: Some(pin_file.clone()),
            key_label: "bench".into(),
            algorithm: alg,
            sessions: 1,
        };
        let key = Pkcs11Key::generate(&cfg).unwrap();
        rows.push(signer_row("softhsm2", alg, &key, openssl_name));
    }
    json!({
        "what": format!(
            "signatures of a {SIGN_MESSAGE_LEN}-byte message on one thread for {SIGN_SECS} s, per \
             second of that thread's CPU time; `openssl speed -seconds 1 ALG` run just before, \
             which also divides by CPU time"
        ),
        "rows": rows,
    })
}

/// One signer's rate, per second of CPU time of the signing thread (the machine is shared,
/// wall time would measure the neighbours), next to `openssl speed` for the algorithm.
fn signer_row(custody: &str, alg: KeyAlgorithm, key: &dyn KeySigner, openssl_name: &str) -> Value {
    let openssl = openssl_speed(openssl_name);
    let message = vec![0x5au8; SIGN_MESSAGE_LEN];
    let cpu_before = thread_cpu_s();
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed().as_secs_f64() < SIGN_SECS {
        key.sign(&message).unwrap();
        count += 1;
    }
    let cpu = thread_cpu_s() - cpu_before;
    let per_cpu_s = (cpu > 0.0).then(|| count as f64 / cpu);
    let baseline = openssl.as_ref().ok().copied();
    json!({
        "signer": format!("{custody} {alg}"),
        "signatures": count,
        "thread_cpu_s": cpu,
        "signs_per_cpu_s": per_cpu_s,
        "signs_per_wall_s": count as f64 / started.elapsed().as_secs_f64(),
        "openssl_speed": openssl_name,
        "openssl_signs_per_s": baseline,
        "ratio_to_openssl": per_cpu_s.zip(baseline).map(|(ours, theirs)| ours / theirs),
        "openssl_error": openssl.err(),
    })
}

/// utime + stime of the calling thread, in seconds.
fn thread_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse().ok())
        .collect();
    // Linux reports these in USER_HZ, 100 per second on every architecture it runs on here.
    fields.iter().sum::<u64>() as f64 / 100.0
}

/// `openssl speed`'s sign/s for one algorithm (`ecdsap256`, `ecdsap384`, `rsa2048`, `ed25519`).
fn openssl_speed(name: &str) -> Result<f64, String> {
    require_tool("openssl");
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "1", name])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("openssl speed: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl speed {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let marker = match name {
        "ecdsap256" => "(nistp256)",
        "ecdsap384" => "(nistp384)",
        "rsa2048" => "rsa 2048 bits",
        _ => "(Ed25519)",
    };
    // `… sign verify sign/s verify/s`: sign/s is the second number from the end.
    let line = text
        .lines()
        .find(|l| l.contains(marker) && !l.contains("Doing"))
        .ok_or_else(|| format!("openssl speed printed no {marker} line"))?;
    let numbers: Vec<f64> = line
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    numbers
        .len()
        .checked_sub(2)
        .and_then(|i| numbers.get(i))
        .copied()
        .ok_or_else(|| format!("openssl speed: unreadable line {line:?}"))
}

// ---------------------------------------------------------------------------------------------
// Durability, context, report

/// How the figures' writes reach the disk; the unit tests `every_sqlite_connection_is_durable`
/// and `the_writer_commits_durably` check the SQLite settings on live connections.
fn durability() -> Value {
    json!({
        "sqlite": "WAL with synchronous = FULL on every connection; writes go through one writer \
                   task that commits every queued write in one transaction (group commit) and \
                   answers each only after that commit's fsync (src/store/group_commit.rs)",
        "postgresql": "started by the bench with its defaults: fsync=on, synchronous_commit=on",
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    json!({ "cpus": cpus, "cpu_model": model, "loadavg_at_end": loadavg() })
}

fn utc_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

// ---- printing ----

fn f(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

fn report_of<'a>(results: &'a Value, run: &str) -> Option<&'a Value> {
    results.get(run).and_then(|r| r.get("report"))
}

fn print_report(report: &Value) {
    let results = &report["results"];
    println!(
        "\n== pkid ACME bench, {} ==",
        report["date_utc"].as_str().unwrap_or("")
    );
    println!(
        "machine: {} CPUs ({}), load average at the end {}",
        report["machine"]["cpus"],
        report["machine"]["cpu_model"].as_str().unwrap_or(""),
        report["machine"]["loadavg_at_end"].as_str().unwrap_or("")
    );

    println!("\n-- full http-01 issuances (pkid-loadgen) --");
    println!(
        "{:<28} {:>5} {:>7} {:>9} {:>7} {:>11} {:>9} {:>9}",
        "run", "conc", "issued", "issued/s", "errors", "CPU ms/iss", "HWM MiB", "flow p99"
    );
    let runs = [
        "pkid_sqlite",
        "pkid_softhsm",
        "pkid_softhsm_2",
        "pkid_sqlite_2",
        "pkid_sqlite_always_valid",
        "pkid_sqlite_c8",
        "pkid_sqlite_c8_always_valid",
        "pkid_postgres",
        "pebble",
    ];
    for run in runs {
        match report_of(results, run) {
            Some(r) => println!(
                "{:<28} {:>5} {:>7} {:>9} {:>7} {:>11} {:>9} {:>9}",
                run,
                r["concurrency"].to_string(),
                r["issued"].to_string(),
                fmt(f(&r["issuances_per_s"]), 1),
                r["error_total"].to_string(),
                fmt(f(&r["server"]["cpu_ms_per_issuance"]), 2),
                fmt(f(&r["server"]["hwm_kib"]).map(|k| k / 1024.0), 1),
                fmt(step(r, "flow", "p99_ms"), 1),
            ),
            None => println!(
                "{run:<28} failed: {}",
                results[run]["error"].as_str().unwrap_or("no report")
            ),
        }
    }
    for run in runs {
        let Some(r) = report_of(results, run) else {
            continue;
        };
        println!("\n{run}: latency per step (ms)");
        println!(
            "  {:<20} {:>7} {:>8} {:>8} {:>8}",
            "step", "count", "p50", "p99", "max"
        );
        for l in r["latency"].as_array().into_iter().flatten() {
            println!(
                "  {:<20} {:>7} {:>8} {:>8} {:>8}",
                l["step"].as_str().unwrap_or(""),
                l["count"].to_string(),
                fmt(f(&l["p50_ms"]), 1),
                fmt(f(&l["p99_ms"]), 1),
                fmt(f(&l["max_ms"]), 1)
            );
        }
        if let Some(first) = r["first_error"].as_str() {
            println!("  first error: {first}");
        }
    }

    println!("\n-- ratios and goals --");
    let rate = |run: &str| report_of(results, run).and_then(|r| f(&r["issuances_per_s"]));
    let cpu =
        |run: &str| report_of(results, run).and_then(|r| f(&r["server"]["cpu_ms_per_issuance"]));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let goal = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    let sqlite_rate = rate("pkid_sqlite");
    println!(
        "pkid SQLite issuances/s at {CONCURRENCY} clients: {} (goal ≥ 1000: {})",
        fmt(sqlite_rate, 1),
        goal(sqlite_rate.map(|r| r >= 1000.0))
    );
    let always_valid_rate = rate("pkid_sqlite_always_valid");
    println!(
        "pkid SQLite issuances/s at {CONCURRENCY} clients, always-valid as pebble's run: {} (≥ 1000: {})",
        fmt(always_valid_rate, 1),
        goal(always_valid_rate.map(|r| r >= 1000.0))
    );
    let worst_p99 = report_of(results, "pkid_sqlite").and_then(|r| {
        r["latency"]
            .as_array()?
            .iter()
            .filter(|l| l["step"] != "flow")
            .filter_map(|l| f(&l["p99_ms"]))
            .reduce(f64::max)
    });
    println!(
        "pkid SQLite worst per-step p99: {} ms (goal ≤ 50: {})",
        fmt(worst_p99, 1),
        goal(worst_p99.map(|p| p <= 50.0))
    );
    let hwm = report_of(results, "pkid_sqlite").and_then(|r| f(&r["server"]["hwm_kib"]));
    println!(
        "pkid SQLite peak RSS (VmHWM): {} MiB (goal ≤ 100 MB: {})",
        fmt(hwm.map(|k| k / 1024.0), 1),
        goal(hwm.map(|k| k * 1024.0 <= 100e6))
    );
    let sum = |a: &str, b: &str| Some(rate(a)? + rate(b)?);
    let hsm_ratio = ratio(
        sum("pkid_softhsm", "pkid_softhsm_2"),
        sum("pkid_sqlite", "pkid_sqlite_2"),
    );
    println!(
        "SoftHSM / software issuances/s, two runs each in A-B-B-A order: {} (goal ≥ 0.8: {})",
        fmt(hsm_ratio, 2),
        goal(hsm_ratio.map(|r| r >= 0.8))
    );
    println!(
        "PostgreSQL / SQLite issuances/s: {}",
        fmt(ratio(rate("pkid_postgres"), sqlite_rate), 2)
    );
    let vs_pebble = ratio(sqlite_rate, rate("pebble"));
    let vs_pebble_c8 = ratio(rate("pkid_sqlite_c8"), rate("pebble"));
    println!(
        "pkid / pebble issuances/s: {} (pkid at {CONCURRENCY}, pebble at {PEBBLE_CONCURRENCY}); {} (both at {PEBBLE_CONCURRENCY}) (goal ≥ 10: {})",
        fmt(vs_pebble, 2),
        fmt(vs_pebble_c8, 2),
        goal(vs_pebble.map(|r| r >= 10.0))
    );
    let vs_pebble_av = ratio(always_valid_rate, rate("pebble"));
    let vs_pebble_av_c8 = ratio(rate("pkid_sqlite_c8_always_valid"), rate("pebble"));
    println!(
        "pkid / pebble issuances/s, both always-valid: {} (pkid at {CONCURRENCY}, pebble at {PEBBLE_CONCURRENCY}); {} (both at {PEBBLE_CONCURRENCY})",
        fmt(vs_pebble_av, 2),
        fmt(vs_pebble_av_c8, 2)
    );
    let cpu_ratio = ratio(cpu("pebble"), cpu("pkid_sqlite"));
    println!(
        "pebble / pkid server CPU ms per issuance: {} (pkid validating) (goal ≥ 10: {})",
        fmt(cpu_ratio, 2),
        goal(cpu_ratio.map(|r| r >= 10.0))
    );
    let cpu_ratio_av = ratio(cpu("pebble"), cpu("pkid_sqlite_c8_always_valid"));
    println!(
        "pebble / pkid server CPU ms per issuance, both always-valid: {} (goal ≥ 10: {})",
        fmt(cpu_ratio_av, 2),
        goal(cpu_ratio_av.map(|r| r >= 10.0))
    );

    println!("\n-- start-up to first served request (ms) --");
    let startup = &results["startup"];
    if let Some(message) = startup["error"].as_str() {
        println!("failed: {message}");
    } else {
        let list = |key: &str| -> Vec<f64> {
            startup[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .collect()
        };
        for (label, key) in [
            ("fresh data folder", "fresh_ms"),
            ("existing data folder", "existing_ms"),
        ] {
            let values = list(key);
            let worst = values.iter().copied().reduce(f64::max);
            println!(
                "{label:<22} {} (goal ≤ 200: {})",
                values
                    .iter()
                    .map(|v| format!("{v:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                goal(worst.map(|w| w <= 200.0))
            );
        }
    }

    println!("\n-- signatures per CPU second, one thread, against openssl speed --");
    let signers = &results["signers"];
    if let Some(message) = signers["error"].as_str() {
        println!("failed: {message}");
    }
    for row in signers["rows"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:>10}/s   openssl {:>10}/s   ratio {}",
            row["signer"].as_str().unwrap_or(""),
            fmt(f(&row["signs_per_cpu_s"]), 0),
            fmt(f(&row["openssl_signs_per_s"]), 0),
            fmt(f(&row["ratio_to_openssl"]), 2)
        );
    }

    println!("\n-- durability --");
    let d = &results["durability"];
    println!("SQLite: {}", d["sqlite"].as_str().unwrap_or(""));
    println!("PostgreSQL: {}", d["postgresql"].as_str().unwrap_or(""));
}

fn step(report: &Value, name: &str, key: &str) -> Option<f64> {
    report["latency"]
        .as_array()?
        .iter()
        .find(|l| l["step"] == name)
        .and_then(|l| f(&l[key]))
}
