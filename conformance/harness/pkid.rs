//! The pkid process under test, as an RAII guard: spawned with its configuration in the
//! environment, ready once its ACME directory answers 200, stopped, killed and restarted by PID on
//! the same data folder and port. Its output goes to files that are printed when a test fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::dns::Dns;
use super::process::{free_port, read_log, ChildGuard};
use super::tls::https_client;

/// How long pkid may take from spawn to a 200 on its directory.
const READY_BOUND: Duration = Duration::from_secs(20);
/// How long pkid may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The pkid binary: `PKID_BIN` if set, else the one cargo built for this test binary.
fn pkid_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PKID_BIN") {
        return PathBuf::from(bin);
    }
    match option_env!("CARGO_BIN_EXE_pkid") {
        Some(bin) => PathBuf::from(bin),
        None => panic!(
            "no pkid binary: set PKID_BIN or run through `cargo test --test conformance`, \
             which builds it"
        ),
    }
}

pub struct Pkid {
    bin: PathBuf,
    /// The working directory pkid runs in (a fresh folder per test).
    work_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    /// The plain-HTTP listener (CRLs, OCSP).
    http_port: u16,
    /// The admin listener (`/admin/…`).
    admin_port: u16,
    http01_port: u16,
    dns_addr: String,
    /// Extra `PKID_*` settings of this test, applied after the suite's defaults.
    settings: Vec<(String, String)>,
    /// One (stdout, stderr) pair of log files per start.
    logs: Vec<(PathBuf, PathBuf)>,
    /// Roots (PEM) trusted besides `root.pem` when waiting for pkid: an operator's TLS CA.
    extra_roots: Vec<u8>,
    child: Option<ChildGuard>,
}

impl Pkid {
    /// Spawns `pkid serve` in `<dir>/pkid` with the suite's settings plus `settings`, and waits
    /// until it is ready.
    pub async fn start(dir: &Path, dns: &Dns, http01_port: u16, settings: &[(&str, &str)]) -> Pkid {
        Pkid::start_with_resolver(dir, &dns.addr, http01_port, settings).await
    }

    /// As [`Pkid::start`], its validator asking the DNS server at `dns_addr` (`ip:port`).
    pub async fn start_with_resolver(
        dir: &Path,
        dns_addr: &str,
        http01_port: u16,
        settings: &[(&str, &str)],
    ) -> Pkid {
        let work_dir = dir.join("pkid");
        std::fs::create_dir_all(&work_dir).expect("create pkid's working folder");
        let mut pkid = Pkid {
            bin: pkid_bin(),
            data_dir: work_dir.join("data"),
            work_dir,
            port: free_port(),
            http_port: free_port(),
            admin_port: free_port(),
            http01_port,
            dns_addr: dns_addr.to_owned(),
            settings: settings
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            logs: Vec::new(),
            extra_roots: Vec::new(),
            child: None,
        };
        pkid.spawn_and_wait().await;
        pkid
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/acme/directory", self.port)
    }

    /// The HTTPS listener's address.
    pub fn https_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The plain-HTTP listener's address.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    /// The admin listener's address (`server.admin_listen`).
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.admin_port))
    }

    /// The URL of admin resource `path` (`/admin/…`), on the admin listener: the public one
    /// answers it 404.
    pub fn admin_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.admin_port)
    }

    /// The running server's PID (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(ChildGuard::pid).unwrap_or(0)
    }

    /// The plain-HTTP listener (CRLs, OCSP); certificates carry its URLs.
    fn http_listen(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// The SQLite database pkid keeps in its data folder.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("pkid.db")
    }

    /// pkid's SQLite database opened read-only (one connection), to check what it stored.
    pub async fn read_database(&self) -> sqlx::SqlitePool {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.database_path())
            .read_only(true);
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .expect("open pkid's database read-only")
    }

    /// Runs `pkid ARGS` (the CLI: `eab create`, `revoke`, `crl generate` …) in pkid's working
    /// folder with pkid's configuration, so it opens the same database; bounded to 30 s.
    /// Returns (success, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        self.cli_with_input(args, None).await
    }

    /// [`Pkid::cli`], with `input` on the command's standard input (`--password-stdin`).
    pub async fn cli_with_input(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> (bool, String, String) {
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .args(args)
            .current_dir(&self.work_dir)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Only this test's configuration, as for the server.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PKID_") {
                command.env_remove(key);
            }
        }
        for (key, value) in self.environment() {
            command.env(key, value);
        }
        let run = async {
            let mut child = command.spawn()?;
            if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
                use tokio::io::AsyncWriteExt;
                stdin.write_all(input).await?;
                // Dropped: the command reads to the end.
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("pkid {args:?} did not finish within 30 s"))
            .unwrap_or_else(|err| panic!("run pkid {args:?}: {err}"));
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// A fresh operator bearer token for the admin REST surface (`pkid admin token create`).
    pub async fn admin_token(&self, note: &str) -> String {
        let (ok, stdout, stderr) = self
            .cli(&["admin", "token", "create", "--note", note])
            .await;
        assert!(ok, "pkid admin token create:\n{stdout}\n{stderr}");
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("token:"))
            .map(|t| t.trim().to_owned())
            .unwrap_or_else(|| panic!("no token line in:\n{stdout}"))
    }

    /// Every `PKID_*` variable pkid runs with: the suite's defaults, then the test's settings.
    fn environment(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            (
                "PKID_DATA_DIR".to_owned(),
                self.data_dir.display().to_string(),
            ),
            (
                "PKID_SERVER__LISTEN".to_owned(),
                format!("127.0.0.1:{}", self.port),
            ),
            ("PKID_SERVER__HTTP_LISTEN".to_owned(), self.http_listen()),
            (
                "PKID_SERVER__ADMIN_LISTEN".to_owned(),
                self.admin_addr().to_string(),
            ),
            (
                "PKID_ACME__HTTP01_PORT".to_owned(),
                self.http01_port.to_string(),
            ),
            ("PKID_ACME__DNS_RESOLVER".to_owned(), self.dns_addr.clone()),
            ("PKID_LOG__LEVEL".to_owned(), "debug".to_owned()),
        ];
        vars.extend(self.settings.iter().cloned());
        vars
    }

    /// The CA root pkid wrote; it issues pkid's own TLS certificate and every leaf.
    pub fn root_pem_path(&self) -> PathBuf {
        self.data_dir.join("root.pem")
    }

    pub fn root_pem(&self) -> Vec<u8> {
        std::fs::read(self.root_pem_path())
            .unwrap_or_else(|err| panic!("read {}: {err}", self.root_pem_path().display()))
    }

    /// SIGTERM by PID, then SIGKILL if pkid has not exited within the grace period.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.terminate(STOP_GRACE).is_none() {
                eprintln!("pkid did not exit within {STOP_GRACE:?} of SIGTERM: killed");
            }
        }
    }

    /// SIGKILL by PID: a crash, with no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// The HTTPS port; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The plain-HTTP port (CRLs, OCSP).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Sends `SIG<name>` to pkid's PID without waiting (see [`Pkid::wait_exit`]).
    pub fn signal(&mut self, name: &str) {
        if let Some(child) = self.child.as_mut() {
            child.signal(name);
        }
    }

    /// `Some(status)` once pkid has exited, waiting up to `bound`; `None` while it runs.
    pub async fn wait_exit(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.as_mut().and_then(ChildGuard::try_exit_status) {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sets (or replaces) a `PKID_*` setting for the next start.
    pub fn set(&mut self, key: &str, value: &str) {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_owned(), value.to_owned()));
    }

    /// Trusts `root_pem` too when waiting for pkid to be ready (from the next start on): the CA
    /// of a TLS certificate the test gives pkid (`server.tls_certificate`).
    pub fn trust_also(&mut self, root_pem: &str) {
        self.extra_roots.extend_from_slice(root_pem.as_bytes());
    }

    /// Stops pkid if it runs, then starts it again on the same data folder and port.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait().await;
    }

    /// Everything pkid printed, every start in order.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for (run, (stdout, stderr)) in self.logs.iter().enumerate() {
            text.push_str(&format!("--- pkid run {run} stderr ---\n"));
            text.push_str(&read_log(stderr));
            text.push_str(&format!("--- pkid run {run} stdout ---\n"));
            text.push_str(&read_log(stdout));
        }
        text
    }

    async fn spawn_and_wait(&mut self) {
        let run = self.logs.len();
        let stdout_log = self.work_dir.join(format!("pkid-{run}.stdout"));
        let stderr_log = self.work_dir.join(format!("pkid-{run}.stderr"));
        let stdout = File::create(&stdout_log).expect("create pkid's stdout log");
        let stderr = File::create(&stderr_log).expect("create pkid's stderr log");
        self.logs.push((stdout_log, stderr_log));

        let mut command = Command::new(&self.bin);
        command
            .arg("serve")
            .current_dir(&self.work_dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // Only this test's configuration: nothing inherited from the developer's shell.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PKID_") {
                command.env_remove(key);
            }
        }
        for (key, value) in self.environment() {
            command.env(key, value);
        }
        self.child = Some(ChildGuard::spawn("pkid", &mut command));
        self.wait_ready().await;
    }

    /// Polls the directory until it answers 200; panics with pkid's output if pkid exits or the
    /// bound passes.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_BOUND;
        let mut last_error = String::from("root.pem not written yet");
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(ChildGuard::try_exit_status) {
                // The guard's Drop prints pkid's output.
                panic!("pkid exited during start-up with {status}");
            }
            if let Ok(mut root) = std::fs::read(self.root_pem_path()) {
                root.extend_from_slice(&self.extra_roots);
                match https_client(&root) {
                    Ok(http) => match http.get(self.directory_url()).send().await {
                        Ok(response) if response.status().as_u16() == 200 => return,
                        Ok(response) => last_error = format!("status {}", response.status()),
                        Err(err) => last_error = format!("{err:?}"),
                    },
                    Err(err) => last_error = err,
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "pkid not ready within {READY_BOUND:?} at {} (last: {last_error})",
            self.directory_url()
        );
    }
}

impl Drop for Pkid {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
