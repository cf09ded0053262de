//! The load itself: workers that each register one account, then repeat full http-01 issuances
//! (newOrder → authorization → respond and poll → finalize and poll → download) until the run's
//! duration or order count is spent; the http-01 responder they share; per-step latencies, errors
//! by kind, and the server's CPU time and memory read from `/proc/PID/{stat,status}`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;

use crate::acme::load::{authorization_error, Account, Authorization, Client, Order};
use crate::acme::AcmeError;

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// When a run stops starting new issuances.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    Elapsed(Duration),
    Orders(u64),
}

/// Everything a run needs besides the client.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub concurrency: usize,
    pub until: Until,
    pub domain_suffix: String,
    /// Longest a single step (with its polling) may take before it counts as a timeout.
    pub step_timeout: Duration,
    /// Polling starts at `poll_min` and grows by half each time up to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub server_pid: Option<u32>,
    /// Where each downloaded chain is written, as `<leaf serial hex>.pem`.
    pub certs_out: Option<PathBuf>,
}

/// The timed steps of one issuance, in order; `Flow` is the whole of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    NewOrder,
    Authz,
    ChallengeToValid,
    Finalize,
    Download,
    Flow,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::NewOrder,
        Step::Authz,
        Step::ChallengeToValid,
        Step::Finalize,
        Step::Download,
        Step::Flow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::NewOrder => "new-order",
            Step::Authz => "authz",
            Step::ChallengeToValid => "challenge-to-valid",
            Step::Finalize => "finalize",
            Step::Download => "download",
            Step::Flow => "flow",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// http-01 responder

/// Token → key authorization, shared by every worker and the responder.
#[derive(Clone, Default)]
pub struct Tokens(Arc<RwLock<HashMap<String, String>>>);

impl Tokens {
    fn publish(&self, token: &str, key_authorization: String) {
        if let Ok(mut map) = self.0.write() {
            map.insert(token.to_owned(), key_authorization);
        }
    }

    fn withdraw(&self, token: &str) {
        if let Ok(mut map) = self.0.write() {
            map.remove(token);
        }
    }

    fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(CHALLENGE_PREFIX)?;
        self.0.read().ok()?.get(token).cloned()
    }
}

/// Serves `tokens` on `addr` over plain HTTP/1.1 until the returned task is aborted.
pub async fn serve_http01(
    addr: SocketAddr,
    tokens: Tokens,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding the http-01 responder to {addr}: {e}"))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let tokens = tokens.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let answer = tokens.answer(req.uri().path());
                    async move {
                        let mut response = hyper::Response::new(Full::new(Bytes::from(
                            answer.clone().unwrap_or_default(),
                        )));
                        if answer.is_none() {
                            *response.status_mut() = http::StatusCode::NOT_FOUND;
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// The server's process

/// CPU time (utime + stime) of a process, in milliseconds.
pub fn cpu_ms(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{path}: no ')'"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{path}: field {} unreadable", i + 3))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(total as f64 * 1000.0 / clock_ticks_per_second() as f64)
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`), in kibibytes.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------------------------
// Workers

#[derive(Default)]
struct WorkerOutcome {
    latencies_us: BTreeMap<Step, Vec<u64>>,
    errors: BTreeMap<String, u64>,
    issued: u64,
    bad_nonce_retries: u64,
    first_error: Option<String>,
}

impl WorkerOutcome {
    fn record(&mut self, step: Step, took: Duration) {
        self.latencies_us
            .entry(step)
            .or_default()
            .push(took.as_micros() as u64);
    }

    fn error(&mut self, step: Step, error: &AcmeError) {
        *self
            .errors
            .entry(format!("{}: {}", step.name(), error.kind()))
            .or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{}: {error}", step.name()));
        }
    }
}

struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(config: &LoadConfig) -> Backoff {
        Backoff {
            next: config.poll_min,
            max: config.poll_max,
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next + self.next / 2).min(self.max);
    }
}

async fn timed<T>(
    step_timeout: Duration,
    step: impl std::future::Future<Output = Result<T, AcmeError>>,
) -> Result<T, AcmeError> {
    tokio::time::timeout(step_timeout, step)
        .await
        .unwrap_or(Err(AcmeError::Timeout))
}

/// One full issuance for `name`; each finished step's latency goes to `outcome`.
async fn issue(
    client: &Client,
    account: &mut Account,
    tokens: &Tokens,
    config: &LoadConfig,
    name: &str,
    outcome: &mut WorkerOutcome,
) -> Result<(), (Step, AcmeError)> {
    let limit = config.step_timeout;
    let flow_started = Instant::now();

    let started = Instant::now();
    let order = timed(limit, client.new_order(account, name))
        .await
        .map_err(|e| (Step::NewOrder, e))?;
    outcome.record(Step::NewOrder, started.elapsed());

    let started = Instant::now();
    let authz_url = order.authorizations.first().cloned().ok_or((
        Step::Authz,
        AcmeError::Protocol("order without authorizations".into()),
    ))?;
    let authz = timed(limit, client.authorization(account, &authz_url))
        .await
        .map_err(|e| (Step::Authz, e))?;
    outcome.record(Step::Authz, started.elapsed());

    let started = Instant::now();
    if authz.status != "valid" {
        let challenge = authz
            .challenges
            .iter()
            .find(|c| c.challenge_type == "http-01")
            .ok_or((
                Step::ChallengeToValid,
                AcmeError::Protocol("no http-01 challenge offered".into()),
            ))?;
        let token = challenge.token.clone().ok_or((
            Step::ChallengeToValid,
            AcmeError::Protocol("http-01 challenge without token".into()),
        ))?;
        tokens.publish(&token, account.key_authorization(&token));
        let validated = timed(limit, async {
            // As lego does: a challenge answered `valid` needs no polling, one answered
            // `invalid` has failed.
            let answered = client.respond(account, &challenge.url).await?;
            match answered.status.as_str() {
                "valid" => return Ok(()),
                "invalid" => {
                    return Err(authorization_error(Authorization {
                        status: answered.status.clone(),
                        challenges: vec![answered],
                    }))
                }
                _ => {}
            }
            let mut backoff = Backoff::new(config);
            loop {
                backoff.wait().await;
                let authz = client.authorization(account, &authz_url).await?;
                match authz.status.as_str() {
                    "valid" => return Ok(()),
                    "invalid" => return Err(authorization_error(authz)),
                    _ => {}
                }
            }
        })
        .await;
        tokens.withdraw(&token);
        validated.map_err(|e| (Step::ChallengeToValid, e))?;
    }
    outcome.record(Step::ChallengeToValid, started.elapsed());

    let started = Instant::now();
    let csr = crate::acme::csr(&[name]).map_err(|e| (Step::Finalize, e))?;
    let order = timed(
        limit,
        finalize_and_wait(client, account, order, &csr, config),
    )
    .await
    .map_err(|e| (Step::Finalize, e))?;
    outcome.record(Step::Finalize, started.elapsed());

    let started = Instant::now();
    let certificate_url = order.certificate.ok_or((
        Step::Download,
        AcmeError::Protocol("valid order without certificate URL".into()),
    ))?;
    let chain = timed(limit, client.certificate(account, &certificate_url))
        .await
        .map_err(|e| (Step::Download, e))?;
    outcome.record(Step::Download, started.elapsed());
    if let Some(dir) = &config.certs_out {
        write_chain(dir, &chain).map_err(|e| (Step::Download, e))?;
    }

    outcome.record(Step::Flow, flow_started.elapsed());
    Ok(())
}

/// Writes a downloaded chain to `dir/<leaf serial hex>.pem` (the serial's DER bytes, in hex).
fn write_chain(dir: &Path, chain_pem: &str) -> Result<(), AcmeError> {
    let fail = |what: String| AcmeError::Protocol(format!("--certs-out: {what}"));
    let leaf = pem::parse_many(chain_pem.as_bytes())
        .map_err(|e| fail(format!("the chain is not PEM: {e}")))?
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .ok_or_else(|| fail("no CERTIFICATE block".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.contents())
        .map_err(|e| fail(format!("the leaf does not parse: {e}")))?;
    let path = dir.join(format!(
        "{}.pem",
        hex::encode(cert.tbs_certificate.raw_serial())
    ));
    std::fs::write(&path, chain_pem).map_err(|e| fail(format!("{}: {e}", path.display())))
}

/// Finalizes and polls until `valid`. The order's one authorization is valid by now, so the
/// order is `ready` (§7.1.6) although the copy from newOrder still says `pending`: finalize at
/// once, and only if the server answers `orderNotReady` poll the order until it is ready.
async fn finalize_and_wait(
    client: &Client,
    account: &mut Account,
    mut order: Order,
    csr: &[u8],
    config: &LoadConfig,
) -> Result<Order, AcmeError> {
    let mut backoff = Backoff::new(config);
    let mut order = loop {
        match client.finalize(account, &order, csr).await {
            Err(AcmeError::Problem { kind, .. }) if kind == "orderNotReady" => {
                backoff.wait().await;
                order = client.order(account, &order.url).await?;
                if order.status != "pending" && order.status != "ready" {
                    // Finalized meanwhile (`processing` or `valid`): poll it below.
                    break order;
                }
            }
            other => break other?,
        }
    };
    let mut backoff = Backoff::new(config);
    while order.status != "valid" {
        backoff.wait().await;
        order = client.order(account, &order.url).await?;
    }
    Ok(order)
}

struct Shared {
    client: Client,
    tokens: Tokens,
    config: LoadConfig,
    run_tag: String,
    started_orders: AtomicU64,
}

impl Shared {
    /// Whether the worker may start another issuance.
    fn may_start(&self, deadline: Option<Instant>) -> bool {
        match self.config.until {
            Until::Elapsed(_) => deadline.is_some_and(|d| Instant::now() < d),
            Until::Orders(n) => self.started_orders.fetch_add(1, Ordering::Relaxed) < n,
        }
    }
}

async fn worker(
    shared: Arc<Shared>,
    index: usize,
    mut account: Account,
    start: Arc<tokio::sync::Barrier>,
    deadline: Arc<std::sync::OnceLock<Instant>>,
) -> WorkerOutcome {
    let mut outcome = WorkerOutcome::default();
    start.wait().await;
    let deadline = deadline.get().copied();
    let mut sequence = 0u64;
    while shared.may_start(deadline) {
        sequence += 1;
        let name = format!(
            "w{index}-{sequence}-{}.{}",
            shared.run_tag, shared.config.domain_suffix
        );
        match issue(
            &shared.client,
            &mut account,
            &shared.tokens,
            &shared.config,
            &name,
            &mut outcome,
        )
        .await
        {
            Ok(()) => outcome.issued += 1,
            Err((step, error)) => {
                outcome.error(step, &error);
                // A failing server should not be hammered in a tight loop.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    outcome.bad_nonce_retries = account.bad_nonce_retries;
    outcome
}

// ---------------------------------------------------------------------------------------------
// Report

/// Latency percentiles of one step, in milliseconds.
#[derive(Debug, Serialize)]
pub struct StepLatency {
    pub step: &'static str,
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What the server process used during the measured window.
#[derive(Debug, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    pub cpu_ms: f64,
    pub cpu_ms_per_issuance: Option<f64>,
    /// Largest VmRSS sampled during the window (every 100 ms), KiB.
    pub peak_rss_kib: Option<u64>,
    /// VmHWM at the end: the process's lifetime peak, KiB.
    pub hwm_kib: Option<u64>,
}

/// One run's results; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub struct Report {
    pub directory: String,
    pub concurrency: usize,
    pub elapsed_s: f64,
    pub issued: u64,
    pub issuances_per_s: f64,
    pub latency: Vec<StepLatency>,
    pub errors: BTreeMap<String, u64>,
    pub error_total: u64,
    pub first_error: Option<String>,
    pub bad_nonce_retries: u64,
    /// Workers still inside an issuance when the run was cut off (step timeouts exceeded).
    pub abandoned_workers: usize,
    pub server: Option<ServerUsage>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

impl Report {
    /// The human-readable form.
    pub fn print(&self) {
        println!("directory      {}", self.directory);
        println!(
            "issued         {} in {:.2} s at concurrency {}: {:.1} issuances/s",
            self.issued, self.elapsed_s, self.concurrency, self.issuances_per_s
        );
        println!(
            "{:<20} {:>7} {:>10} {:>10} {:>10}",
            "step", "count", "p50 ms", "p99 ms", "max ms"
        );
        for l in &self.latency {
            println!(
                "{:<20} {:>7} {:>10.1} {:>10.1} {:>10.1}",
                l.step, l.count, l.p50_ms, l.p99_ms, l.max_ms
            );
        }
        println!(
            "errors         {} (badNonce retries: {}, abandoned workers: {})",
            self.error_total, self.bad_nonce_retries, self.abandoned_workers
        );
        for (kind, count) in &self.errors {
            println!("  {count:>6}  {kind}");
        }
        if let Some(first) = &self.first_error {
            println!("first error    {first}");
        }
        if let Some(server) = &self.server {
            let per = server
                .cpu_ms_per_issuance
                .map_or("-".into(), |v| format!("{v:.2}"));
            println!(
                "server {}     CPU {:.0} ms, {per} ms per issuance; peak RSS {} (VmHWM {})",
                server.pid,
                server.cpu_ms,
                mib(server.peak_rss_kib),
                mib(server.hwm_kib)
            );
        }
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

// ---------------------------------------------------------------------------------------------
// A run

/// Registers one account per worker (not measured), then runs the load and measures it.
pub async fn run(
    client: Client,
    directory: &str,
    tokens: Tokens,
    config: LoadConfig,
) -> Result<Report, String> {
    let mut accounts = Vec::with_capacity(config.concurrency);
    let mut registrations = tokio::task::JoinSet::new();
    let client = Arc::new(client);
    for _ in 0..config.concurrency {
        let client = client.clone();
        let limit = config.step_timeout;
        registrations.spawn(async move {
            let mut account = Account::generate()?;
            timed(limit, client.new_account(&mut account)).await?;
            Ok::<_, AcmeError>(account)
        });
    }
    while let Some(joined) = registrations.join_next().await {
        let account = joined
            .map_err(|e| format!("newAccount task: {e}"))?
            .map_err(|e| format!("newAccount: {e}"))?;
        accounts.push(account);
    }
    let client = Arc::into_inner(client).ok_or("the client is still shared")?;

    let shared = Arc::new(Shared {
        client,
        tokens,
        config: config.clone(),
        run_tag: format!("{:08x}", rand::random::<u32>()),
        started_orders: AtomicU64::new(0),
    });
    let start = Arc::new(tokio::sync::Barrier::new(config.concurrency + 1));
    let deadline = Arc::new(std::sync::OnceLock::new());
    let mut workers = tokio::task::JoinSet::new();
    for (index, account) in accounts.into_iter().enumerate() {
        workers.spawn(worker(
            shared.clone(),
            index,
            account,
            start.clone(),
            deadline.clone(),
        ));
    }

    let pid = config.server_pid;
    let cpu_before = pid.map(cpu_ms).transpose()?;
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = pid.map(|pid| {
        let peak_rss = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = status_kib(pid, "VmRSS") {
                    peak_rss.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });

    let started = Instant::now();
    if let Until::Elapsed(duration) = config.until {
        let _ = deadline.set(started + duration);
    }
    start.wait().await;

    // Every issuance in flight at the deadline may still use all of its steps' time.
    let cutoff = match config.until {
        Until::Elapsed(duration) => Some(started + duration + config.step_timeout * 5),
        Until::Orders(_) => None,
    };
    let mut outcomes = Vec::new();
    loop {
        let next = match cutoff {
            Some(cutoff) => match tokio::time::timeout_at(cutoff.into(), workers.join_next()).await
            {
                Ok(next) => next,
                Err(_) => break,
            },
            None => workers.join_next().await,
        };
        match next {
            Some(Ok(outcome)) => outcomes.push(outcome),
            Some(Err(e)) => return Err(format!("a worker failed: {e}")),
            None => break,
        }
    }
    let abandoned_workers = workers.len();
    workers.abort_all();
    let elapsed = started.elapsed();

    let server = match pid {
        Some(pid) => {
            let cpu = cpu_ms(pid)? - cpu_before.unwrap_or(0.0);
            if let Some(sampler) = sampler {
                sampler.abort();
            }
            if let Some(rss) = status_kib(pid, "VmRSS") {
                peak_rss.fetch_max(rss, Ordering::Relaxed);
            }
            Some((pid, cpu))
        }
        None => None,
    };

    let mut latencies: BTreeMap<Step, Vec<u64>> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut issued = 0;
    let mut bad_nonce_retries = 0;
    let mut first_error = None;
    for outcome in outcomes {
        for (step, values) in outcome.latencies_us {
            latencies.entry(step).or_default().extend(values);
        }
        for (kind, count) in outcome.errors {
            *errors.entry(kind).or_default() += count;
        }
        issued += outcome.issued;
        bad_nonce_retries += outcome.bad_nonce_retries;
        first_error = first_error.or(outcome.first_error);
    }
    let latency = Step::ALL
        .iter()
        .map(|step| {
            let mut values = latencies.remove(step).unwrap_or_default();
            values.sort_unstable();
            StepLatency {
                step: step.name(),
                count: values.len(),
                p50_ms: percentile(&values, 50.0),
                p99_ms: percentile(&values, 99.0),
                max_ms: percentile(&values, 100.0),
            }
        })
        .collect();
    let elapsed_s = elapsed.as_secs_f64();
    Ok(Report {
        directory: directory.to_owned(),
        concurrency: config.concurrency,
        elapsed_s,
        issued,
        issuances_per_s: issued as f64 / elapsed_s,
        latency,
        error_total: errors.values().sum(),
        errors,
        first_error,
        bad_nonce_retries,
        abandoned_workers,
        server: server.map(|(pid, cpu)| ServerUsage {
            pid,
            cpu_ms: cpu,
            cpu_ms_per_issuance: (issued > 0).then(|| cpu / issued as f64),
            peak_rss_kib: Some(peak_rss.load(Ordering::Relaxed)).filter(|&k| k > 0),
            hwm_kib: status_kib(pid, "VmHWM"),
        }),
    })
}
