//! `cargo bench --bench crl`: revocation figures, printed as ratios against the issue's goals
//! and the baselines measured in the same run.
//!
//! - CRL generation through the software backend (`SigningBackend::sign_crl`: DER TBS written
//!   in one pass, signed with ECDSA P-256, signature checked) for 100k and 1M revoked entries.
//!   Each size runs in a child process of its own, so its peak RSS (`VmHWM`) is that size's
//!   alone; the child also reports its RSS before the entries exist (the baseline). Goal: 1M
//!   entries in ≤ 3 s with ≤ 300 MB peak RSS. The 1M CRL is checked with `openssl crl -verify`.
//! - OCSP responses per second from pkid's responder cache (`Revocation::answer_ocsp` with a
//!   request without nonce: certificate lookup in SQLite + cached response), against the same
//!   responder signing every answer (a request with a nonce is never cached). In-process: no
//!   HTTP in either figure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pkid_backends::{
    CrlRequest, KeyAlgorithm, KeyEncryptionKey, RevocationReason, RevokedEntry, Serial,
    SigningBackend, SoftwareBackend,
};

const SIZES: [usize; 2] = [100_000, 1_000_000];
const GOAL_SECS_1M: f64 = 3.0;
const GOAL_RSS_MB_1M: f64 = 300.0;
const OCSP_RUN: Duration = Duration::from_secs(3);

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// One size, in this (child) process: prints `key=value` pairs on one line.
fn child(entries: usize, dir: &Path) {
    let baseline_kb = status_kb("VmRSS:");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let kek = KeyEncryptionKey::generate();
    let (backend, _) =
        SoftwareBackend::open_or_create("bench", &dir.join("ca"), &kek, KeyAlgorithm::EcdsaP256)
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    let entries: Vec<RevokedEntry> = (0..entries)
        .map(|i| RevokedEntry {
            serial: Serial::random(),
            revoked_at: now - time::Duration::seconds(i as i64 % 86400),
            reason: match i % 4 {
                0 => None,
                1 => Some(RevocationReason::KeyCompromise),
                2 => Some(RevocationReason::Superseded),
                _ => Some(RevocationReason::CessationOfOperation),
            },
            invalidity_date: (i % 10 == 0).then(|| now - time::Duration::days(1)),
        })
        .collect();
    let entries_ms = started.elapsed().as_secs_f64() * 1000.0;
    let request = CrlRequest {
        crl_number: 1,
        this_update: now,
        next_update: now + time::Duration::days(1),
        entries,
        issuing_distribution_point: Some("http://127.0.0.1:8080/crl/bench/0.crl".into()),
        delta_crl_indicator: None,
        freshest_crl: None,
    };
    let started = Instant::now();
    let der = runtime.block_on(backend.sign_crl(request)).unwrap();
    let sign_ms = started.elapsed().as_secs_f64() * 1000.0;
    let hwm_kb = status_kb("VmHWM:");
    std::fs::write(dir.join("crl.der"), &der).unwrap();
    let chain: String = backend
        .ca_chain()
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.clone())))
        .collect();
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    println!(
        "entries_ms={entries_ms:.1} sign_ms={sign_ms:.1} bytes={} baseline_kb={baseline_kb} hwm_kb={hwm_kb}",
        der.len()
    );
}

fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

fn crl_figures() {
    println!("CRL generation (software backend, ECDSA P-256; one child process per size)");
    println!(
        "{:>10} {:>12} {:>12} {:>10} {:>12} {:>12}",
        "entries", "sign (ms)", "entries (ms)", "MB", "peak RSS MB", "base RSS MB"
    );
    let exe = std::env::current_exe().unwrap();
    for size in SIZES {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(&exe)
            .arg("--child-crl")
            .arg(size.to_string())
            .arg(dir.path())
            .output()
            .expect("run the CRL child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child for {size}: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let line = stdout.lines().last().unwrap_or_default();
        let sign_ms = field(line, "sign_ms");
        let hwm_mb = field(line, "hwm_kb") / 1024.0;
        let base_mb = field(line, "baseline_kb") / 1024.0;
        println!(
            "{:>10} {:>12.0} {:>12.0} {:>10.1} {:>12.1} {:>12.1}",
            size,
            sign_ms,
            field(line, "entries_ms"),
            field(line, "bytes") / 1e6,
            hwm_mb,
            base_mb
        );
        let verify = Command::new("openssl")
            .args(["crl", "-inform", "DER", "-noout", "-in"])
            .arg(dir.path().join("crl.der"))
            .arg("-CAfile")
            .arg(dir.path().join("chain.pem"))
            .output()
            .expect("run openssl crl (install openssl)");
        let text = String::from_utf8_lossy(&verify.stderr).into_owned()
            + &String::from_utf8_lossy(&verify.stdout);
        assert!(
            verify.status.success() && text.contains("verify OK"),
            "openssl crl -verify of the {size}-entry CRL:\n{text}"
        );
        println!("{:>10} openssl crl -verify: OK", "");
        if size == 1_000_000 {
            println!(
                "  1M entries: time / goal = {:.2} ({:.2} s of ≤ {GOAL_SECS_1M} s); peak RSS / goal = {:.2} ({:.0} MB of ≤ {GOAL_RSS_MB_1M} MB)",
                sign_ms / 1000.0 / GOAL_SECS_1M,
                sign_ms / 1000.0,
                hwm_mb / GOAL_RSS_MB_1M,
                hwm_mb
            );
        }
    }
}

/// `openssl ocsp -reqout` for the issuer and a serial, with or without a nonce.
fn ocsp_request(dir: &Path, issuer_pem: &Path, serial_hex: &str, nonce: bool) -> Vec<u8> {
    let out = dir.join(if nonce { "nonce.req" } else { "plain.req" });
    let mut command = Command::new("openssl");
    command
        .arg("ocsp")
        .arg("-issuer")
        .arg(issuer_pem)
        .arg("-serial")
        .arg(format!("0x{serial_hex}"))
        .arg("-reqout")
        .arg(&out);
    if !nonce {
        command.arg("-no_nonce");
    }
    let output = command.output().expect("run openssl ocsp -reqout");
    assert!(output.status.success(), "{output:?}");
    std::fs::read(out).unwrap()
}

async fn rate(revocation: &pkid::revocation::Revocation, request: &[u8]) -> (f64, usize) {
    let first = revocation.answer_ocsp(request).await;
    let started = Instant::now();
    let mut count = 0usize;
    while started.elapsed() < OCSP_RUN && count < 10_000_000 {
        let answer = revocation.answer_ocsp(request).await;
        assert!(
            answer.len().abs_diff(first.len()) < 8,
            "a successful response each time"
        );
        count += 1;
    }
    (count as f64 / started.elapsed().as_secs_f64(), first.len())
}

async fn ocsp_figures() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
    let store = pkid::store::Store::connect(&url, 4).await.unwrap();
    let kek = KeyEncryptionKey::generate();
    let (backend, _) = SoftwareBackend::open_or_create(
        "bench",
        &dir.path().join("ca"),
        &kek,
        KeyAlgorithm::EcdsaP256,
    )
    .unwrap();
    let issuer_der = backend.ca_chain()[0].clone();
    let issuer_pem: PathBuf = dir.path().join("issuer.pem");
    std::fs::write(
        &issuer_pem,
        pem::encode(&pem::Pem::new("CERTIFICATE", issuer_der)),
    )
    .unwrap();
    let ca = Arc::new(
        pkid::ca::Ca::new("bench".into(), Arc::new(backend), store.clone(), 60)
            .with_revocation_base(Some("http://127.0.0.1:8080")),
    );
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["ocsp.bench.test".into()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = pkid::pki::csr::check_csr(params.serialize_request(&key).unwrap().der()).unwrap();
    let issued = ca
        .issue(
            &csr,
            &pkid::ca::IssuanceProfile::tls_server("bench", 86400),
            None,
            None,
        )
        .await
        .unwrap();
    let revocation = pkid::revocation::Revocation::new(
        store,
        std::slice::from_ref(&ca),
        pkid::revocation::RevocationSettings {
            crl_lifetime_secs: 86400,
            ocsp_lifetime_secs: 86400,
        },
    );
    let plain = ocsp_request(dir.path(), &issuer_pem, &issued.serial, false);
    let nonce = ocsp_request(dir.path(), &issuer_pem, &issued.serial, true);
    let (cached, _) = rate(&revocation, &plain).await;
    let (signed, _) = rate(&revocation, &nonce).await;
    println!("OCSP responder (in-process, SQLite lookup per request, ECDSA P-256 issuer key)");
    println!("  from cache (no nonce):      {cached:>10.0} responses/s");
    println!("  signed each time (nonce):   {signed:>10.0} responses/s");
    println!(
        "  cache / signing = {:.1}x",
        if signed > 0.0 { cached / signed } else { 0.0 }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-crl") {
        let size = args[i + 1].parse().expect("a size");
        child(size, Path::new(&args[i + 2]));
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    crl_figures();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(ocsp_figures());
}
