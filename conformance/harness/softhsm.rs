//! A SoftHSM2 token folder of the test's own, and the SoftHSM and OpenSC tools run on it.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::process::run_tool;

/// A SoftHSM2 token folder of the test's own and the `SOFTHSM2_CONF` file naming it: pkid, the
/// CLI, `softhsm2-util` and `pkcs11-tool` all get `SOFTHSM2_CONF`, so they see only this
/// test's tokens. The folder is removed when the guard drops (after the pkid using it, when the
/// guard is declared before the test's `Environment`).
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
