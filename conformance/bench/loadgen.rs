//! `pkid-loadgen`: drives full ACME http-01 issuances (RFC 8555 §7) against any ACME server on
//! loopback and reports issuances per second, per-step latency percentiles, errors by kind and,
//! given `--server-pid`, the server's CPU time per issuance and peak resident memory.
//!
//! Each worker registers one account (not measured), then repeats newOrder → authorization →
//! respond to http-01 and poll → finalize and poll → download until `--duration` or `--orders` is
//! spent. The http-01 answers of every worker are served on `--http01-port` (127.0.0.1).
//!
//! ```sh
//! pkid-loadgen --directory https://127.0.0.1:8443/acme/directory --root data/root.pem \
//!     --concurrency 32 --duration 10 --http01-port 5002 --server-pid "$(pidof pkid)"
//! ```

// The harness's ACME client: its core and this binary's layer over it (`acme::load`). A binary
// cannot use the test binary's modules, and the rest of the harness needs dev-dependencies
// (tempfile), so only this folder is mounted; the core items the suites' layer alone uses are
// unused here.
#[allow(dead_code)]
#[path = "../harness/acme/mod.rs"]
mod acme;
mod dns;
mod load;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::load::{LoadConfig, Tokens, Until};

#[derive(Debug, Parser)]
#[command(
    name = "pkid-loadgen",
    about = "Full ACME http-01 issuances against a loopback ACME server"
)]
struct Args {
    /// The ACME directory URL (loopback only).
    #[arg(long)]
    directory: String,
    /// PEM file of the root(s) that sign the server's HTTPS certificate.
    #[arg(long)]
    root: PathBuf,
    /// Workers, each with its own account, each running one issuance at a time.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds during which new issuances start (the default when --orders is absent: 10).
    #[arg(long, conflicts_with = "orders")]
    duration: Option<f64>,
    /// Issuances to start in total, instead of a duration.
    #[arg(long)]
    orders: Option<u64>,
    /// Port of 127.0.0.1 on which the http-01 answers are served.
    #[arg(long, default_value_t = 5002)]
    http01_port: u16,
    /// Answer the DNS queries for the ordered names on this UDP address (`127.0.0.1:5353`):
    /// `A` is 127.0.0.1, every other type empty; point the server's resolver here.
    #[arg(long, value_name = "ADDR")]
    dns_listen: Option<SocketAddr>,
    /// Ordered names are `w<worker>-<n>-<run>.<suffix>`.
    #[arg(long, default_value = "pkid.test")]
    domain_suffix: String,
    /// The server's PID: its CPU time (utime+stime) and memory are read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds one step (with its polling) may take before it counts as a timeout.
    #[arg(long, default_value_t = 30)]
    step_timeout: u64,
    /// First polling interval, in ms; each next one is half as long again.
    #[arg(long, default_value_t = 20)]
    poll_min_ms: u64,
    /// Longest polling interval, in ms.
    #[arg(long, default_value_t = 500)]
    poll_max_ms: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write each downloaded chain to `DIR/<leaf serial hex>.pem` as soon as it arrives.
    #[arg(long, value_name = "DIR")]
    certs_out: Option<PathBuf>,
}

/// The same allocator as the server's: the load generator shares the machine's cores with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pkid-loadgen: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pkid-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    require_loopback(&args.directory)?;
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let until = match (args.duration, args.orders) {
        (_, Some(n)) => Until::Orders(n),
        (Some(secs), None) if secs.is_finite() && secs > 0.0 => {
            Until::Elapsed(Duration::from_secs_f64(secs))
        }
        (Some(_), None) => return Err("--duration must be a positive number of seconds".into()),
        (None, None) => Until::Elapsed(Duration::from_secs(10)),
    };
    if args.step_timeout == 0 || args.poll_min_ms == 0 || args.poll_max_ms < args.poll_min_ms {
        return Err(
            "--step-timeout, --poll-min-ms must be positive, --poll-max-ms ≥ --poll-min-ms".into(),
        );
    }
    let step_timeout = Duration::from_secs(args.step_timeout);
    if let Some(dir) = &args.certs_out {
        std::fs::create_dir_all(dir).map_err(|e| format!("--certs-out {}: {e}", dir.display()))?;
    }
    let http = http_client(&args.root, step_timeout)?;
    let client = acme::load::Client::connect(http, &args.directory)
        .await
        .map_err(|e| format!("{}: {e}", args.directory))?;

    let tokens = Tokens::default();
    let responder_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.http01_port);
    let responder = load::serve_http01(responder_addr, tokens.clone()).await?;
    let dns = match args.dns_listen {
        Some(addr) if addr.ip().is_loopback() => {
            let zone = dns::Zone::new(&args.domain_suffix, Ipv4Addr::LOCALHOST)?;
            Some(dns::serve_dns(addr, zone).await?)
        }
        Some(addr) => return Err(format!("--dns-listen {addr}: not a loopback address")),
        None => None,
    };
    let config = LoadConfig {
        concurrency: args.concurrency,
        until,
        domain_suffix: args.domain_suffix,
        step_timeout,
        poll_min: Duration::from_millis(args.poll_min_ms),
        poll_max: Duration::from_millis(args.poll_max_ms),
        server_pid: args.server_pid,
        certs_out: args.certs_out,
    };
    let report = load::run(client, &args.directory, tokens, config).await;
    responder.abort();
    if let Some(dns) = dns {
        dns.abort();
    }
    let report = report?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| format!("JSON: {e}"))?;
        println!("{text}");
    } else {
        report.print();
    }
    Ok(())
}

/// The load generator only targets servers on this machine.
fn require_loopback(directory: &str) -> Result<(), String> {
    let url =
        reqwest::Url::parse(directory).map_err(|e| format!("--directory {directory}: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!("--directory {directory}: not a loopback address"))
    }
}

/// reqwest over rustls with the aws-lc-rs provider, trusting only the roots in `root_pem`.
fn http_client(root_pem: &Path, timeout: Duration) -> Result<reqwest::Client, String> {
    let text = std::fs::read(root_pem).map_err(|e| format!("{}: {e}", root_pem.display()))?;
    let blocks = pem::parse_many(&text).map_err(|e| format!("{}: {e}", root_pem.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
        roots
            .add(rustls_pki_types::CertificateDer::from(
                block.into_contents(),
            ))
            .map_err(|e| format!("{}: unusable root: {e}", root_pem.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CERTIFICATE block", root_pem.display()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}
