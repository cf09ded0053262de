//! Several pkid replicas on one PostgreSQL (from Debian, started here on loopback): a nonce is
//! single-use across replicas even when both get it at the same moment, an order placed
//! through one replica is finalized through the other, and after a revocation both replicas
//! serve the one CRL generated under the shared lease.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{csr_der, finalize_payload, AcmeClient, Http01Responder};
use crate::env::{free_port, within, ChildGuard, Environment};
use crate::pkid::Pkid;

const TEST_BOUND: Duration = Duration::from_secs(180);

/// A throwaway PostgreSQL cluster owned by the `postgres` user, stopped by its PID on drop.
struct Postgres {
    _server: ChildGuard,
    url: String,
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
    fn start(dir: &Path) -> Postgres {
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
        let mut command = as_postgres(&postgres_bin("postgres"));
        command
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(dir);
        let server = ChildGuard::spawn("postgres", &mut command);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(postgres_bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
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
            _server: server,
            url: format!("postgres://pkid@127.0.0.1:{port}/pkid"),
        }
    }
}

impl Postgres {
    /// Runs one SQL statement on pkid's database with `psql`.
    fn sql(&self, statement: &str) {
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

        // Revoked through A (ACME: no CRL is generated by the revocation itself), then the CRL
        // fetched from both replicas at once: one replica generates it under the lease row, the
        // other waits for it, so both serve the same bytes, listing the serial.
        let leaf = crate::certs::pem_chain(&download.text()).remove(0);
        let revoke = client
            .post(&client.resource("revokeCert"), Some(&json!({"certificate": crate::client::b64(&leaf), "reason": 4})))
            .await;
        assert_eq!(revoke.status, 200, "revokeCert: {}", revoke.describe());
        // Revocation times are whole seconds, so a CRL signed in the revocation's second counts as
        // older than it (the revocation may have committed after the CRL's query): past that
        // second, the first CRL signed is current and the other replica must serve it.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let http = crate::client::https_client(&env.pkid.root_pem()).unwrap();
        let crl_a = format!("{origin_a}/crl/default.crl");
        let crl_b = on(&replica_b, &crl_a);
        let get = |url: String| {
            let http = http.clone();
            async move {
                let response = http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
                assert_eq!(response.status().as_u16(), 200, "GET {url}");
                response.bytes().await.unwrap().to_vec()
            }
        };
        let (from_a, from_b) = tokio::join!(get(crl_a.clone()), get(crl_b.clone()));
        assert_eq!(from_a, from_b, "{crl_a} and {crl_b} serve one CRL");
        assert_eq!(
            crate::certs::crl_entry_reason(&from_a, &download.text()),
            Some(Some(x509_parser::x509::ReasonCode::Superseded)),
            "the shared CRL lists the revoked serial"
        );

        // The lease row decides who signs: while another holder has it, a replica does not sign
        // a CRL after a revocation; after its bounded wait it serves the stored one (still
        // valid). Once the lease is free, the next fetch signs a CRL with the new revocation.
        postgres.sql("INSERT INTO leases (name, holder, expires) VALUES ('crl:default', 'another replica', 99999999999) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires");
        let names = ["replica-second.pkid.test"];
        let order = client.ready_order(&names, &responder).await;
        let answer = client.finalize(&order, &csr_der(&names)).await;
        assert_eq!(answer.status, 200, "finalize: {}", answer.describe());
        let done = client.wait_valid(&order).await;
        let second = client.download_certificate(&done.certificate_url().expect("a certificate URL")).await;
        let leaf = crate::certs::pem_chain(&second).remove(0);
        let revoke = client
            .post(&client.resource("revokeCert"), Some(&json!({"certificate": crate::client::b64(&leaf), "reason": 1})))
            .await;
        assert_eq!(revoke.status, 200, "revokeCert: {}", revoke.describe());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let started = Instant::now();
        let held = get(crl_b.clone()).await;
        assert!(started.elapsed() >= Duration::from_secs(9), "served after {:?}, within the lease wait", started.elapsed());
        assert_eq!(held, from_a, "while the lease is held elsewhere the stored CRL is served");
        postgres.sql("DELETE FROM leases WHERE name = 'crl:default'");
        let fresh = get(crl_b.clone()).await;
        assert_eq!(
            crate::certs::crl_entry_reason(&fresh, &second),
            Some(Some(x509_parser::x509::ReasonCode::KeyCompromise)),
            "with the lease free, {crl_b} signs a CRL with the new revocation"
        );
    })
    .await;
    drop(replica_b);
}
