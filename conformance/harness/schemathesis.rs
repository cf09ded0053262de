//! schemathesis (property-based testing from an OpenAPI document) against a running pkid: every
//! operation of a surface's document called with generated input, each answer checked — no 5xx,
//! and, where asked, the status, content type and body within the document. Bounded in examples
//! and in time, with a fixed seed so that a CI run is reproducible. Imports `process` only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::process::require_tool;

/// What one schemathesis run is pointed at, and how it authenticates.
pub struct Fuzz<'a> {
    /// The document's URL, e.g. `https://127.0.0.1:PORT/identity/openapi.json`.
    pub schema_url: String,
    /// The CA bundle that verifies pkid's TLS certificate.
    pub ca_file: &'a Path,
    /// Headers for every request (`Authorization: Bearer …`).
    pub headers: Vec<(String, String)>,
    /// A client certificate and its key, for surfaces that authenticate by TLS.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// Checks beyond "no 5xx", schemathesis' names: `response_schema_conformance`,
    /// `status_code_conformance`, `content_type_conformance` …
    pub checks: &'a [&'a str],
    /// Examples per operation.
    pub max_examples: u32,
}

/// The check every surface must pass: no answer in the 5xx range.
pub const NO_SERVER_ERROR: &str = "not_a_server_error";

/// Seconds one run may take in all: a bound, not a budget (schemathesis' own `--max-time` would
/// keep fuzzing until it is spent); the examples per operation bound the work.
const MAX_SECONDS: u32 = 240;

impl Fuzz<'_> {
    /// Runs schemathesis; panics with its report when a check fails or it cannot run.
    pub fn run(&self) {
        require_tool("schemathesis");
        let mut checks = vec![NO_SERVER_ERROR];
        checks.extend(self.checks.iter().copied());
        // Its run leaves a cache folder (`.schemathesis/`) where it runs: a scratch one.
        let scratch = tempfile::tempdir().unwrap_or_else(|err| panic!("a scratch folder: {err}"));
        let mut command = Command::new("timeout");
        command
            .current_dir(scratch.path())
            .args(["--kill-after=5", &MAX_SECONDS.to_string(), "schemathesis"])
            .args(["run", &self.schema_url])
            .args(["--checks", &checks.join(",")])
            .args(["--max-examples", &self.max_examples.to_string()])
            .args(["--seed", "20261206"])
            .args(["--workers", "1"])
            .args(["--request-timeout", "20"])
            .args(["--generation-database", "none"])
            .args(["--tls-verify", &self.ca_file.display().to_string()])
            .args(["--no-color", "--warnings", "off"])
            .stdin(Stdio::null());
        for (name, value) in &self.headers {
            command.args(["--header", &format!("{name}: {value}")]);
        }
        if let Some((cert, key)) = &self.client_certificate {
            command
                .args(["--request-cert", &cert.display().to_string()])
                .args(["--request-cert-key", &key.display().to_string()]);
        }
        let output = command
            .output()
            .unwrap_or_else(|err| panic!("run schemathesis: {err}"));
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // The report goes to the test's output: what was run, and how often.
        eprintln!("schemathesis against {}:\n{report}", self.schema_url);
        assert_ne!(
            output.status.code(),
            Some(124),
            "schemathesis against {} ran past {MAX_SECONDS} s:\n{report}",
            self.schema_url
        );
        assert!(
            output.status.success(),
            "schemathesis against {} failed:\n{report}",
            self.schema_url
        );
        // A run that tested nothing passes vacuously: the document must have had operations.
        assert!(
            !report.contains("No operations") && !report.contains("0 operations"),
            "schemathesis found nothing to test in {}:\n{report}",
            self.schema_url
        );
    }
}
