//! The upstream CAs pkid's backends forward to in a test, each on loopback in a folder of its own
//! and killed by PID when dropped: Let's Encrypt's `pebble` (ACME) and `cfssl serve`.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, read_log, require_tool, run_tool, wait_listening, ChildGuard};
use super::tls::https_client;

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
                "externalAccountBindingRequired": false,
                // Within pkid's profiles (pkid refuses a longer-lived certificate): 7 days.
                "certificateValidityPeriod": 604800
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
        let http = https_client(&root).expect("HTTPS client for pebble");
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
        let usages = ["digital signature", "key encipherment", "server auth"];
        Cfssl::start_with(serde_json::json!({"expiry": "168h", "usages": usages}))
    }

    /// [`Cfssl::start`] with `profile` as the default signing profile (its `auth_key` is set
    /// here): for a signer that issues what it should not.
    pub fn start_with(mut profile: serde_json::Value) -> Cfssl {
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
        profile["auth_key"] = serde_json::json!("pkid");
        let config = serde_json::json!({
            "signing": {"default": profile},
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
