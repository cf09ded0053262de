//! Processes a test starts, and the loopback ports they listen on: [`ChildGuard`] (killed by its
//! own PID when dropped, never by name), [`free_port`], [`require_tool`] (a missing tool fails the
//! test, it never skips it), bounded runs of third-party programs and their captured output.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// Polls until something accepts TCP connections on `addr` (bounded to 15 s); panics with the
/// process's log if it exits first or never listens.
pub fn wait_listening(name: &str, child: &mut ChildGuard, addr: &str, log: &Path) {
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
