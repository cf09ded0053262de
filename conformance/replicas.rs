//! Several pkid replicas on one PostgreSQL (from Debian, started here on loopback): a nonce is
//! single-use across replicas even when both get it at the same moment, and an order placed
//! through one replica is finalized through the other.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{csr_der, finalize_payload, AcmeClient, Http01Responder};
use crate::env::{free_port, within, ChildGuard, Environment};
use crate::pkid::Pkid;

const TEST_BOUND: Duration = Duration::from_secs(180);

/// A throwaway PostgreSQL cluster owned by the `postgres` user, stopped by its PID on drop.
pub(crate) struct Postgres {
    server: ChildGuard,
    /// The cluster's folder (`-D`) and the folder of its Unix socket (`-k`).
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    pub(crate) url: String,
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
    let setpriv = crate::env::require_tool("setpriv");
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
    pub(crate) fn start(dir: &Path) -> Postgres {
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
        // The postgres user must reach its folder through the test's temporary folder.
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
        let server = Postgres::spawn_server(&data, dir, port);
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
            data,
            socket_dir: dir.to_path_buf(),
            port,
            url: format!("postgres://pkid@127.0.0.1:{port}/pkid"),
        }
    }

    /// Runs `postgres` on the cluster and waits (≤ 30 s) until it accepts connections.
    fn spawn_server(data: &Path, socket_dir: &Path, port: u16) -> ChildGuard {
        let mut command = as_postgres(&postgres_bin("postgres"));
        command
            .arg("-D")
            .arg(data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(socket_dir);
        let server = ChildGuard::spawn("postgres", &mut command);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(postgres_bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ready {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A fast shutdown (SIGINT to the postmaster's PID: sessions are cut, as when the database
    /// restarts under a running server), `down` without a server, then the same cluster again
    /// on the same port.
    pub(crate) fn restart(&mut self, down: Duration) {
        self.server.signal("INT");
        assert!(
            self.server.wait_exit(Duration::from_secs(30)).is_some(),
            "PostgreSQL did not stop within 30 s of SIGINT"
        );
        std::thread::sleep(down);
        self.server = Postgres::spawn_server(&self.data, &self.socket_dir, self.port);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The same request path on another replica.
fn on(replica: &Pkid, url: &str) -> String {
    let origin = replica.directory_url().replace("/acme/directory", "");
    let path = url.splitn(4, '/').nth(3).unwrap_or_default();
    format!("{origin}/{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_nonces_and_orders_through_postgresql() {
    let scratch = tempfile::Builder::new()
        .prefix("pkid-pg-")
        .tempdir()
        .unwrap();
    let postgres = Postgres::start(&scratch.path().join("pg"));
    let env = Environment::start_with(&[("PKID_DATABASE__URL", &postgres.url)]).await;
    // Replica B shares the CA (same files, same key-encryption key) and the database, and
    // answers under A's name, as replicas behind one load balancer do.
    let data_a = env.pkid.root_pem_path().parent().unwrap().to_path_buf();
    let dir_b = env.subdir("replica-b");
    copy_dir(
        &data_a.join("ca"),
        &dir_b.join("pkid").join("data").join("ca"),
    );
    std::fs::copy(
        data_a.join("kek"),
        dir_b.join("pkid").join("data").join("kek"),
    )
    .unwrap();
    let origin_a = env.pkid.directory_url().replace("/acme/directory", "");
    let replica_b = Pkid::start(
        &dir_b,
        &env.dns,
        env.http01_port,
        &[
            ("PKID_DATABASE__URL", &postgres.url),
            ("PKID_SERVER__BASE_URL", &origin_a),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read(env.pkid.root_pem_path()).unwrap(),
        replica_b.root_pem(),
        "one CA"
    );

    within(TEST_BOUND, async {
        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        client.register().await;
        let new_order = client.resource("newOrder");

        // One nonce from replica A, spent on A and B at the same moment: exactly one wins.
        for round in 0..5 {
            let nonce = client.new_nonce().await;
            let payload = json!({"identifiers": [{"type": "dns", "value": format!("race{round}.pkid.test")}]});
            let body = client.jws(&new_order, Some(&payload), &nonce);
            let on_b = on(&replica_b, &new_order);
            let (a, b) = tokio::join!(
                client.post_raw(&new_order, &body, None),
                client.post_raw(&on_b, &body, None)
            );
            let accepted = [&a, &b].iter().filter(|r| r.status == 201).count();
            let refused = [&a, &b]
                .iter()
                .filter(|r| r.problem_type().as_deref() == Some("urn:ietf:params:acme:error:badNonce"))
                .count();
            assert_eq!((accepted, refused), (1, 1), "round {round}:\n{}\n{}", a.describe(), b.describe());
        }

        // An order made ready through A is finalized and downloaded through B.
        let names = ["replica.pkid.test"];
        let order = client.ready_order(&names, &responder).await;
        let finalize = order.finalize_url();
        let body = client.jws(&finalize, Some(&finalize_payload(&csr_der(&names))), &client.new_nonce().await);
        let answer = client.post_raw(&on(&replica_b, &finalize), &body, None).await;
        assert_eq!(answer.status, 200, "finalize through B: {}", answer.describe());
        let done = client.wait_valid(&order).await;
        let certificate = done.certificate_url().expect("a certificate URL");
        let body = client.jws(&certificate, None, &client.new_nonce().await);
        let download = client.post_raw(&on(&replica_b, &certificate), &body, None).await;
        assert_eq!(download.status, 200, "download through B: {}", download.describe());
        crate::certs::check_issued(&env.pkid.root_pem_path(), &download.text(), &names, &env.subdir("replica-check"));
    })
    .await;
    drop(replica_b);
}
