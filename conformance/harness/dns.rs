//! `pebble-challtestsrv` as pkid's DNS server in a test: every A query answers 127.0.0.1, and the
//! test adds TXT and CAA records (RFC 8659) through its management API.

use std::fs::File;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{free_port, read_log, require_tool, ChildGuard};

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
