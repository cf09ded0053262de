//! One test's world: a temporary folder, the DNS server pkid resolves through and a running pkid,
//! torn down when dropped; and [`within`], the time bound every test body runs under.
//!
//! Modelled on instant-acme's end-to-end tests: an [`Environment`] owns everything one test needs and
//! tears it down when dropped. Processes are always ended through their own PID, never by name, so
//! tests running side by side never touch each other's servers.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use super::dns::Dns;
use super::pkid::Pkid;
use super::process::free_port;
use super::tls::ensure_crypto_provider;

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

/// Runs a test body with an overall time bound. Call it while the [`Environment`] is alive in the
/// caller's scope, so that a timeout panics before the environment drops and pkid's log is printed.
pub async fn within<F: std::future::Future>(bound: Duration, body: F) -> F::Output {
    match tokio::time::timeout(bound, body).await {
        Ok(output) => output,
        Err(_) => panic!("test did not finish within {bound:?}"),
    }
}
