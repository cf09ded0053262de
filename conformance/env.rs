//! The test environment: loopback ports, a temporary folder, and RAII guards for every process a
//! test starts (pkid, the `pebble-challtestsrv` DNS server, third-party clients).
//!
//! Modelled on instant-acme's end-to-end tests: an [`Environment`] owns everything one test needs and
//! tears it down when dropped. Processes are always ended through their own PID, never by name, so
//! tests running side by side never touch each other's servers.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::pkid::Pkid;

/// One test's world: a DNS server that resolves every name to 127.0.0.1, a running pkid whose
/// http-01 validator connects to `http01_port`, and the folder both live in.
///
/// Fields drop in declaration order: the processes go before the folder they write to.
pub struct Environment {
    pub pkid: Pkid,
    /// pkid's resolver; tests add TXT and CAA records through its management API.
    pub dns: Dns,
    /// The port pkid's http-01 validator connects to; the test's client listens on it.
    pub http01_port: u16,
    pub tmp: TempDir,
}

impl Environment {
    /// Starts the DNS server and pkid; panics with pkid's output if pkid never becomes ready.
    pub async fn start() -> Environment {
        Environment::start_with(&[]).await
    }

    /// As [`Environment::start`], with extra `PKID_*` settings for pkid (later pairs win over the
    /// suite's defaults).
    pub async fn start_with(settings: &[(&str, &str)]) -> Environment {
        ensure_crypto_provider();
        let tmp = tempfile::Builder::new()
            .prefix("pkid-conformance-")
            .tempdir()
            .expect("create a temporary folder");
        let dns = Dns::start(tmp.path());
        let http01_port = free_port();
        let pkid = Pkid::start(tmp.path(), &dns, http01_port, settings).await;
        Environment {
            pkid,
            dns,
            http01_port,
            tmp,
        }
    }

    /// A fresh folder inside the test's temporary folder.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("create a folder in the test's temporary folder");
        dir
    }
}

/// rustls needs one process-wide crypto provider; reqwest is built without one.
pub fn ensure_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Err means another thread installed one first: that is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// A loopback port that was free a moment ago, never handed out twice in this test process.
///
/// Binding to port 0 lets the kernel choose; the socket is closed again so that the process under
/// test can bind it. TCP and UDP are both checked, as the DNS server uses the port for both.
pub fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut taken = handed_out.lock().expect("port registry");
        if taken.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port found in 100 tries");
}

/// Panics unless `tool` is on PATH: a missing tool fails the test, it never skips it.
pub fn require_tool(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{tool} not found: run ./conformance/run (installs it)"))
}

/// A child process that is killed through its own PID when the guard drops.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    pub fn spawn(name: &str, command: &mut Command) -> ChildGuard {
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("start {name} ({command:?}): {err}"));
        ChildGuard {
            name: name.to_owned(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// `Some(status)` once the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child
            .try_wait()
            .unwrap_or_else(|err| panic!("wait for {}: {err}", self.name))
    }

    /// Sends SIGTERM to this child's PID and waits up to `grace` for it to exit, then SIGKILLs it.
    /// Returns the exit status, or `None` if it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(status)) = child.try_wait() {
            self.child = None;
            return Some(status);
        }
        self.signal("TERM");
        match self.wait_exit(grace) {
            Some(status) => Some(status),
            None => {
                self.kill();
                None
            }
        }
    }

    /// Sends `SIG<name>` (`TERM`, `INT` …) to this child's PID, if it still runs.
    pub fn signal(&mut self, name: &str) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = child.id().to_string();
        // std has no SIGTERM and the workspace forbids unsafe code: kill(1) by PID.
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Waits up to `bound` for the child to exit; `None` if it still runs (it is left running).
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + bound;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL this child by PID and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a process's captured output file (for failure messages).
pub fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// `pebble-challtestsrv` as a DNS server on loopback: every A query answers 127.0.0.1, AAAA nothing.
pub struct Dns {
    pub addr: String,
    /// The management API (`-management`): add and clear TXT, CAA … records.
    pub management_url: String,
    log: PathBuf,
    child: ChildGuard,
}

impl Dns {
    pub fn start(dir: &Path) -> Dns {
        require_tool("pebble-challtestsrv");
        let dns_port = free_port();
        let management_port = free_port();
        let addr = format!("127.0.0.1:{dns_port}");
        let management_addr = format!("127.0.0.1:{management_port}");
        let log = dir.join("challtestsrv.log");
        let out = File::create(&log).expect("create the DNS server's log file");
        let err = out.try_clone().expect("clone a file handle");
        let child = ChildGuard::spawn(
            "pebble-challtestsrv",
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &addr])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &management_addr])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        );
        let mut dns = Dns {
            addr,
            management_url: format!("http://{management_addr}"),
            log,
            child,
        };
        dns.wait_ready();
        dns
    }

    /// POSTs `body` to a management endpoint (`/set-txt`, `/add-caa` …); panics unless it
    /// answers 200.
    pub async fn manage(&self, endpoint: &str, body: serde_json::Value) {
        let url = format!("{}{endpoint}", self.management_url);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err:?}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "POST {url} {body}: {text}");
    }

    /// CAA records for `host` (RFC 8659): `(tag, value)` pairs, flag 0.
    pub async fn add_caa(&self, host: &str, records: &[(&str, &str)]) {
        let policies: Vec<serde_json::Value> = records
            .iter()
            .map(|(tag, value)| serde_json::json!({"tag": tag, "value": value}))
            .collect();
        self.manage(
            "/add-caa",
            serde_json::json!({"host": fqdn(host), "policies": policies}),
        )
        .await;
    }

    /// Polls with a real A query until the server answers (bounded to 10 s).
    fn wait_ready(&mut self) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set a read timeout");
        let query = dns_a_query(0x5043, "ready.pkid.test");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_exit_status() {
                panic!(
                    "pebble-challtestsrv exited with {status}:\n{}",
                    read_log(&self.log)
                );
            }
            if socket.send_to(&query, &self.addr).is_ok() {
                let mut answer = [0u8; 512];
                if let Ok((len, _)) = socket.recv_from(&mut answer) {
                    if len >= 12 && answer[0..2] == query[0..2] {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "pebble-challtestsrv never answered DNS on {} (pid {}):\n{}",
            self.addr,
            self.child.pid(),
            read_log(&self.log)
        );
    }
}

/// `name` with the trailing dot the management API expects.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

/// A minimal RFC 1035 query for the A record of `name`, recursion desired.
fn dns_a_query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(32 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    packet
}

/// Runs a third-party program with a time bound, its stdout and stderr going to `log`; returns
/// its exit status and that output. The child is killed by PID if the bound passes.
pub async fn run_bounded(
    name: &str,
    command: &mut tokio::process::Command,
    bound: Duration,
    log: &Path,
) -> (ExitStatus, String) {
    let out = File::create(log).expect("create a log file");
    let err = out.try_clone().expect("clone a file handle");
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("start {name}: {err}"));
    match tokio::time::timeout(bound, child.wait()).await {
        Ok(Ok(status)) => (status, read_log(log)),
        Ok(Err(err)) => panic!("wait for {name}: {err}"),
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "{name} did not finish within {bound:?}; its output:\n{}",
                read_log(log)
            )
        }
    }
}

/// Runs a test body with an overall time bound. Call it while the [`Environment`] is alive in the
/// caller's scope, so that a timeout panics before the environment drops and pkid's log is printed.
pub async fn within<F: std::future::Future>(bound: Duration, body: F) -> F::Output {
    match tokio::time::timeout(bound, body).await {
        Ok(output) => output,
        Err(_) => panic!("test did not finish within {bound:?}"),
    }
}
