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

/// Polls until something accepts TCP connections on `addr` (bounded to 15 s); panics with the
/// process's log if it exits first or never listens.
fn wait_listening(name: &str, child: &mut ChildGuard, addr: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(status) = child.try_exit_status() {
            panic!("{name} exited with {status}:\n{}", read_log(log));
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{name} never listened on {addr} (pid {}):\n{}",
        child.pid(),
        read_log(log)
    );
}

/// Runs `program` with `args` and the environment pairs `vars`; returns (success, stdout +
/// stderr). A program that cannot start fails the test.
pub fn run_tool(program: &str, args: &[&str], vars: &[(&str, &Path)]) -> (bool, String) {
    require_tool(program);
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    for (key, value) in vars {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("run {program} {args:?}: {err}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A SoftHSM2 token folder of the test's own and the `SOFTHSM2_CONF` file naming it: pkid, the
/// CLI, `softhsm2-util` and `pkcs11-tool` all get `SOFTHSM2_CONF`, so they see only this
/// test's tokens. The folder is removed when the guard drops (after the pkid using it, when the
/// guard is declared before the [`Environment`]).
pub struct SoftHsm {
    pub conf: PathBuf,
    pub tokens: PathBuf,
    dir: TempDir,
}

impl SoftHsm {
    /// Where Debian's softhsm2 puts its PKCS#11 module.
    pub const MODULE: &'static str = "/usr/lib/softhsm/libsofthsm2.so";

    pub fn new() -> SoftHsm {
        assert!(
            Path::new(Self::MODULE).is_file(),
            "{} not found: run ./conformance/run (installs softhsm2)",
            Self::MODULE
        );
        let dir = tempfile::Builder::new()
            .prefix("pkid-softhsm-")
            .tempdir()
            .expect("create a folder for SoftHSM");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("create the token folder");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .expect("write softhsm2.conf");
        SoftHsm { conf, tokens, dir }
    }

    /// A folder beside the tokens for the test's own files (token copies, PIN files).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a SoftHSM or OpenSC tool on this token folder; panics with its output on failure.
    pub fn tool(&self, program: &str, args: &[&str]) -> String {
        let (ok, text) = self.try_tool(program, args);
        assert!(ok, "{program} {args:?} failed:\n{text}");
        text
    }

    pub fn try_tool(&self, program: &str, args: &[&str]) -> (bool, String) {
        run_tool(program, args, &[("SOFTHSM2_CONF", &self.conf)])
    }

    /// `softhsm2-util --init-token` on the first free slot.
    pub fn init_token(&self, label: &str, pin: &str, so_pin: &str) {
        self.tool(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                pin,
                "--so-pin",
                so_pin,
            ],
        );
    }

    /// `softhsm2-util --delete-token`: the token's folder and every object in it are gone.
    pub fn delete_token(&self, label: &str) {
        self.tool("softhsm2-util", &["--delete-token", "--token", label]);
    }

    /// `pkcs11-tool` logged in to token `label`.
    pub fn pkcs11_tool(&self, label: &str, pin: &str, args: &[&str]) -> String {
        let mut all = vec![
            "--module",
            Self::MODULE,
            "--token-label",
            label,
            "--login",
            "--pin",
            pin,
        ];
        all.extend_from_slice(args);
        self.tool("pkcs11-tool", &all)
    }

    /// Copies the whole token folder to `to` (`cp -a`), e.g. as a backup to restore later.
    pub fn copy_tokens(&self, to: &Path) {
        let (ok, text) = run_tool(
            "cp",
            &[
                "-a",
                &self.tokens.display().to_string(),
                &to.display().to_string(),
            ],
            &[],
        );
        assert!(
            ok,
            "cp -a {} {}: {text}",
            self.tokens.display(),
            to.display()
        );
    }

    /// Replaces the token folder's contents with those of a copy made by
    /// [`SoftHsm::copy_tokens`].
    pub fn restore_tokens(&self, from: &Path) {
        for entry in std::fs::read_dir(&self.tokens).expect("list the token folder") {
            let path = entry.expect("a token folder entry").path();
            std::fs::remove_dir_all(&path)
                .unwrap_or_else(|err| panic!("remove {}: {err}", path.display()));
        }
        for entry in std::fs::read_dir(from).expect("list the token copy") {
            let path = entry.expect("a token copy entry").path();
            let (ok, text) = run_tool(
                "cp",
                &[
                    "-a",
                    &path.display().to_string(),
                    &self.tokens.display().to_string(),
                ],
                &[],
            );
            assert!(
                ok,
                "cp -a {} {}: {text}",
                path.display(),
                self.tokens.display()
            );
        }
    }
}

/// A self-signed CA and a server certificate it issued for `localhost` and 127.0.0.1, as PEM:
/// (CA certificate, server certificate, server key PKCS#8).
fn loopback_tls_certificate(ca_name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-sign the CA");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("server key");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &*ca)
        .expect("issue the server certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// Let's Encrypt's `pebble` on loopback as an upstream ACME CA, in a folder of its own: HTTPS with
/// a certificate from a test CA (`tls_root`, to trust), every challenge valid
/// (`PEBBLE_VA_ALWAYS_VALID`: the RA in front has validated), no refused nonces. Killed by PID
/// when dropped or [`Pebble::stop`]ped.
pub struct Pebble {
    pub directory_url: String,
    management_url: String,
    /// The CA of pebble's HTTPS certificate (not of what pebble issues).
    pub tls_root: PathBuf,
    config: PathBuf,
    listen: String,
    management: String,
    /// One log file per start.
    logs: Vec<PathBuf>,
    child: Option<ChildGuard>,
    dir: TempDir,
}

impl Pebble {
    pub fn start() -> Pebble {
        require_tool("pebble");
        let dir = tempfile::Builder::new()
            .prefix("pkid-pebble-")
            .tempdir()
            .expect("create a folder for pebble");
        let (ca_pem, cert_pem, key_pem) = loopback_tls_certificate("pebble HTTPS test CA");
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap_or_else(|err| panic!("write {name}: {err}"));
            path
        };
        let tls_root = file("tls-root.pem", &ca_pem);
        let cert = file("cert.pem", &cert_pem);
        let key = file("key.pem", &key_pem);
        let listen = format!("127.0.0.1:{}", free_port());
        let management = format!("127.0.0.1:{}", free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": listen,
                "managementListenAddress": management,
                "certificate": cert,
                "privateKey": key,
                "httpPort": free_port(),
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config = file("pebble.json", &config.to_string());
        let mut pebble = Pebble {
            directory_url: format!("https://{listen}/dir"),
            management_url: format!("https://{management}"),
            tls_root,
            config,
            listen,
            management,
            logs: Vec::new(),
            child: None,
            dir,
        };
        pebble.spawn();
        pebble
    }

    fn spawn(&mut self) {
        let log = self
            .dir
            .path()
            .join(format!("pebble-{}.log", self.logs.len()));
        self.logs.push(log.clone());
        let out = File::create(&log).expect("create pebble's log file");
        let err = out.try_clone().expect("clone a file handle");
        let mut child = ChildGuard::spawn(
            "pebble",
            Command::new("pebble")
                .arg("-config")
                .arg(&self.config)
                .env("PEBBLE_VA_ALWAYS_VALID", "1")
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        );
        wait_listening("pebble", &mut child, &self.listen, &log);
        wait_listening("pebble", &mut child, &self.management, &log);
        self.child = Some(child);
    }

    /// GET on pebble's management API (`/roots/0`, `/cert-status-by-serial/…`); panics unless
    /// it answers 200.
    pub async fn management(&self, path: &str) -> String {
        let root = std::fs::read(&self.tls_root).expect("read pebble's TLS root");
        let http = crate::client::https_client(&root).expect("HTTPS client for pebble");
        let url = format!("{}{path}", self.management_url);
        let response = http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err:?}\npebble:\n{}", self.log()));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "GET {url}: {text}");
        text
    }

    /// What pebble printed, every start in order.
    pub fn log(&self) -> String {
        self.logs.iter().map(|log| read_log(log)).collect()
    }

    /// SIGTERM by PID (then SIGKILL): pebble is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(5));
        }
    }

    /// A fresh pebble on the same addresses and HTTPS certificate. Like any pebble restart it
    /// keeps nothing: accounts, orders and its CA hierarchy are new.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

/// `cfssl serve` on loopback over a CA made by `cfssl gencert -initca` in a folder of its own;
/// its default signing profile requires the "standard" auth key `auth_key_hex` (authsign).
/// Killed by PID when dropped.
pub struct Cfssl {
    pub url: String,
    /// The CA certificate everything this signer issues verifies against.
    pub ca_pem: PathBuf,
    pub auth_key_hex: String,
    child: ChildGuard,
    _dir: TempDir,
}

impl Cfssl {
    pub fn start() -> Cfssl {
        require_tool("cfssl");
        let dir = tempfile::Builder::new()
            .prefix("pkid-cfssl-")
            .tempdir()
            .expect("create a folder for cfssl");
        let csr = dir.path().join("ca-csr.json");
        std::fs::write(
            &csr,
            serde_json::json!({
                "CN": "cfssl conformance CA",
                "key": {"algo": "ecdsa", "size": 256},
                "names": [{"O": "pkid conformance"}]
            })
            .to_string(),
        )
        .expect("write the CA request");
        let (ok, text) = run_tool(
            "cfssl",
            &["gencert", "-initca", &csr.display().to_string()],
            &[],
        );
        assert!(ok, "cfssl gencert -initca failed:\n{text}");
        // stdout is one JSON object (cert, csr, key); stderr adds log lines.
        let json_start = text
            .find("{\"")
            .unwrap_or_else(|| panic!("no JSON from cfssl gencert:\n{text}"));
        let generated: serde_json::Value = serde_json::Deserializer::from_str(&text[json_start..])
            .into_iter()
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("cfssl gencert printed no JSON object:\n{text}"));
        let ca_pem = dir.path().join("ca.pem");
        let ca_key = dir.path().join("ca-key.pem");
        for (path, field) in [(&ca_pem, "cert"), (&ca_key, "key")] {
            let value = generated[field]
                .as_str()
                .unwrap_or_else(|| panic!("cfssl gencert gave no {field}:\n{text}"));
            std::fs::write(path, value).expect("write the cfssl CA");
        }
        // Letters first: a digits-only key would read as a number from PKID_* variables.
        let auth_key_hex = format!("feedface{}", hex::encode(rand::random::<[u8; 12]>()));
        let usages = ["digital signature", "key encipherment", "server auth"];
        let config = serde_json::json!({
            "signing": {
                "default": {"expiry": "168h", "usages": usages, "auth_key": "pkid"}
            },
            "auth_keys": {"pkid": {"type": "standard", "key": auth_key_hex}}
        });
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write cfssl's config");
        let port = free_port();
        let log = dir.path().join("cfssl.log");
        let out = File::create(&log).expect("create cfssl's log file");
        let err = out.try_clone().expect("clone a file handle");
        let mut child = ChildGuard::spawn(
            "cfssl serve",
            Command::new("cfssl")
                .args(["serve", "-address", "127.0.0.1", "-port", &port.to_string()])
                .arg("-ca")
                .arg(&ca_pem)
                .arg("-ca-key")
                .arg(&ca_key)
                .arg("-config")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        );
        let addr = format!("127.0.0.1:{port}");
        wait_listening("cfssl serve", &mut child, &addr, &log);
        Cfssl {
            url: format!("http://{addr}"),
            ca_pem,
            auth_key_hex,
            child,
            _dir: dir,
        }
    }

    /// SIGTERM by PID (then SIGKILL): the signer is gone.
    pub fn stop(&mut self) {
        self.child.terminate(Duration::from_secs(5));
    }
}
