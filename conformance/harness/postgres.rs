//! A throwaway PostgreSQL cluster from Debian's server binaries, on a free loopback port in a
//! folder of the caller's, owned by the `postgres` user and stopped by its PID when dropped.
//! Used by the replica tests and by `cargo bench --bench acme`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::process::{free_port, read_log, require_tool, ChildGuard};

/// Whether the cluster flushes its commits to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`: fast, for functional tests.
    Off,
    /// PostgreSQL's defaults (`fsync=on`, `synchronous_commit=on`): for figures
    /// (`cargo bench --bench acme`; the test suite uses `Off`).
    #[allow(dead_code)]
    Full,
}

pub struct Postgres {
    server: ChildGuard,
    /// The caller's folder: the cluster in `data/`, the Unix socket and `postgres.log`.
    dir: PathBuf,
    port: u16,
    durability: Durability,
    /// `postgres://pkid@127.0.0.1:PORT/pkid`, trust authentication.
    pub url: String,
}

fn postgres_bin(tool: &str) -> PathBuf {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin").join(tool))
        .find(|path| path.exists());
    found.unwrap_or_else(|| {
        panic!("PostgreSQL's {tool} not found: run ./conformance/run (installs postgresql)")
    })
}

fn as_postgres(program: &Path) -> Command {
    let setpriv = require_tool("setpriv");
    let mut command = Command::new(setpriv);
    command
        .args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
    command
}

impl Postgres {
    /// A cluster for functional tests (`fsync=off`) in `dir`.
    pub fn start(dir: &Path) -> Postgres {
        Postgres::start_with(dir, Durability::Off)
    }

    /// `initdb` in `dir/data`, `postgres` on a free loopback port, a `pkid` database; panics
    /// with the tool's output if any step fails or the server is not ready within 30 s.
    pub fn start_with(dir: &Path, durability: Durability) -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        let uid = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .expect("id -u postgres");
        assert!(
            uid.status.success(),
            "no postgres user: run ./conformance/run (installs postgresql)"
        );
        let uid: u32 = String::from_utf8_lossy(&uid.stdout)
            .trim()
            .parse()
            .expect("a uid");
        // The postgres user must reach its folder through the caller's temporary folder.
        let mut parent = dir.to_path_buf();
        while parent.pop() && parent != Path::new("/tmp") && parent != Path::new("/") {
            let _ = std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755));
        }
        std::fs::create_dir_all(dir).unwrap();
        std::os::unix::fs::chown(dir, Some(uid), None).unwrap();
        let data = dir.join("data");
        let init = as_postgres(&postgres_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "pkid", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = free_port();
        let server = Postgres::spawn_server(dir, port, durability);
        let created = Command::new(postgres_bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "pkid",
                "-d",
                "postgres",
            ])
            .args(["-c", "CREATE DATABASE pkid"])
            .output()
            .expect("run psql");
        assert!(
            created.status.success(),
            "CREATE DATABASE: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        Postgres {
            server,
            dir: dir.to_path_buf(),
            port,
            durability,
            url: format!("postgres://pkid@127.0.0.1:{port}/pkid"),
        }
    }

    /// `postgres` on the cluster in `dir/data`, ready to accept connections (bounded to 30 s).
    fn spawn_server(dir: &Path, port: u16, durability: Durability) -> ChildGuard {
        let mut command = as_postgres(&postgres_bin("postgres"));
        command
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(dir);
        if durability == Durability::Off {
            command.args(["-c", "fsync=off"]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("postgres.log"))
            .expect("open postgres.log");
        command
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log);
        let server = ChildGuard::spawn("postgres", &mut command);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(postgres_bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "pkid"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ready {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 30 s: {}",
                read_log(&dir.join("postgres.log"))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs one SQL statement on pkid's database with `psql`; panics with its error if it fails.
    pub fn sql(&self, statement: &str) {
        let output = Command::new(postgres_bin("psql"))
            .arg(&self.url)
            .args(["-v", "ON_ERROR_STOP=1", "-c", statement])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {statement}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A fast shutdown (SIGINT: open transactions roll back, connections drop), `down` of
    /// outage, then the same cluster again on the same port.
    pub fn restart(&mut self, down: Duration) {
        self.server.signal("INT");
        assert!(
            self.server.wait_exit(Duration::from_secs(30)).is_some(),
            "PostgreSQL did not stop within 30 s of SIGINT"
        );
        std::thread::sleep(down);
        self.server = Postgres::spawn_server(&self.dir, self.port, self.durability);
    }
}
