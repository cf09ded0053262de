//! The one configuration struct, loaded once at start-up.
//!
//! Layers, later wins: built-in defaults ← `config.toml` (working directory, or `--config PATH`)
//! ← `PKID_*` environment variables, `__` separating nested keys
//! (`PKID_SERVER__LISTEN=127.0.0.1:9443`). The shipped `config.toml` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod check;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folder for the SQLite database, the software CA and `root.pem`.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub ca: CaConfig,
    pub acme: AcmeConfig,
    pub identity: IdentityConfig,
    pub iam: IamConfig,
    pub audit: AuditConfig,
    pub log: LogConfig,
    /// Signing backends by name. `default`, a software CA, always exists: it issues pkid's own
    /// TLS certificate and its root is `root.pem`.
    pub backends: BTreeMap<String, BackendSpec>,
}

fn default_algorithm() -> pkid_backends::KeyAlgorithm {
    pkid_backends::KeyAlgorithm::EcdsaP256
}

/// One named signing backend: who issues, and who holds the key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BackendSpec {
    /// A root + intermediate hierarchy created on first start in `<data_dir>/ca` (`default`)
    /// or `<data_dir>/ca-<name>`, keys sealed with the key-encryption key.
    Software {
        #[serde(default = "default_algorithm")]
        algorithm: pkid_backends::KeyAlgorithm,
    },
    /// An issuing key inside a PKCS#11 token (see the backends crate for the keys).
    Pkcs11(serde_json::Map<String, serde_json::Value>),
    /// An upstream ACME CA; pkid is its RA front-end.
    Acme(serde_json::Map<String, serde_json::Value>),
    /// A `cfssl serve` remote signer.
    Cfssl(serde_json::Map<String, serde_json::Value>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTPS listener binds.
    pub listen: SocketAddr,
    /// Base URL clients use to reach pkid (every absolute URL pkid emits starts with it).
    /// Empty: taken from each request's Host header, which only a loopback `listen` allows.
    pub base_url: String,
    /// Extra names (DNS or IP) for the server's own TLS certificate, besides localhost/127.0.0.1/::1.
    pub tls_names: Vec<String>,
    /// Seconds pkid's own TLS certificate is valid; it is renewed in place at two thirds of it.
    pub tls_lifetime_secs: u64,
    /// The operator's own TLS certificate chain (PEM, leaf first) and its key (PEM, PKCS#8,
    /// PKCS#1 or SEC1), instead of one issued by the default CA; both or neither. Re-read when
    /// either file changes (checked every `tls_reload_secs`).
    pub tls_certificate: PathBuf,
    pub tls_key: PathBuf,
    /// Seconds between checks of `tls_certificate` and `tls_key` for a change.
    pub tls_reload_secs: u64,
    /// Plain-HTTP listener for CRLs and OCSP only (`/crl/…`, `/ocsp`); empty: none.
    pub http_listen: String,
    /// HTTPS listener for the admin API (`/admin/…`) only, with the same TLS certificate;
    /// the public listener answers `/admin/…` 404. Empty: no admin API.
    pub admin_listen: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds a client has to send its request headers, then its body; a connection idle
    /// (no request in flight) for this long is closed.
    pub header_timeout_secs: u64,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Trust anchors for client certificates (TLS client authentication, and
    /// `X-APP-CERTIFICATE` from a trusted proxy): PEM files of CA certificates, or
    /// `backend:NAME` for the CA chain of a configured backend (pkid's own CAs). Empty: the
    /// HTTPS listener does not ask for client certificates.
    pub client_ca_files: Vec<String>,
    /// Addresses (CIDR, or one address) of TLS-terminating proxies whose `X-APP-CERTIFICATE`
    /// header (the client's certificate, URL-encoded PEM) is believed; from any other address
    /// the header is ignored. Empty: none.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// sqlx URL. Empty: the SQLite file `<data_dir>/pkid.db`.
    pub url: String,
    /// Connections: SQLite read connections (writes have one of their own), PostgreSQL
    /// connections for reads and durable writes; 0: automatic (`store::automatic_connections`).
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaConfig {
    /// base64 of 32 bytes sealing private keys at rest. Empty: read from
    /// `key_encryption_key_file`. Prefer setting `PKID_CA__KEY_ENCRYPTION_KEY`.
    pub key_encryption_key: String,
    /// The file holding the key, created (mode 0600) on first start if missing; best kept
    /// outside `data_dir`. Empty: `<data_dir>/kek`.
    pub key_encryption_key_file: PathBuf,
    /// Seconds certificates are back-dated to absorb clock skew.
    pub backdate_secs: u64,
    /// Base of the CRL distribution point and OCSP URLs put in certificates. Empty:
    /// `http://<server.http_listen>` (no revocation URLs if that is empty too).
    pub revocation_base_url: String,
    /// Seconds between a CRL's thisUpdate and nextUpdate.
    pub crl_lifetime_secs: u64,
    /// Seconds an OCSP response is valid.
    pub ocsp_lifetime_secs: u64,
    /// CRL shards per issuer (1: one CRL). A certificate's shard is fixed at issuance from its
    /// serial and written into its CRL distribution point (`…/crl/NAME/SHARD.crl`).
    pub crl_shards: u32,
    /// Publish delta CRLs (RFC 5280 §5.2.4) at `…/crl/NAME/delta.crl`, named in each complete
    /// CRL's freshestCRL; the complete CRL is then regenerated on schedule only.
    pub delta_crls: bool,
    /// Who signs OCSP responses: the issuing CA itself, or a delegated responder certificate.
    pub ocsp_responder: OcspResponderMode,
    /// OCSP requests one client (an IPv4 address, an IPv6 /64) may send per minute; past it:
    /// 429 with the `tryLater` status. 0: no limit.
    pub ocsp_requests_per_minute: u32,
    /// Validity of delegated OCSP responder certificates, seconds (renewed at 2/3 of it).
    pub ocsp_responder_lifetime_secs: u64,
    /// `crl_shards` and `ocsp_responder` for one backend, overriding the values above.
    pub revocation_by_backend: BTreeMap<String, RevocationOverride>,
    /// Other chains for a backend's issuing CA (e.g. through a cross-signed intermediate), by
    /// backend name: PEM files, each the issuing CA's alternate certificate first. ACME offers
    /// them with `Link: rel="alternate"` (RFC 8555 §7.4.2).
    pub alternate_chains: BTreeMap<String, Vec<PathBuf>>,
    /// CAs made at run time: where their keys are made.
    pub registry: RegistryConfig,
}

/// Keys of CAs made at run time (`ca::registry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Who holds a new CA's key when the request does not say.
    pub key_custody: pkid_backends::KeyCustody,
    /// A new CA's key algorithm when the request does not say.
    pub key_algorithm: pkid_backends::KeyAlgorithm,
    /// The token `pkcs11` keys are made in; `None`: only software keys.
    pub pkcs11: Option<pkid_backends::Pkcs11Token>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            key_custody: pkid_backends::KeyCustody::Software,
            key_algorithm: pkid_backends::KeyAlgorithm::EcdsaP256,
            pkcs11: None,
        }
    }
}

/// Who signs an issuer's OCSP responses (RFC 6960 §4.2.2.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OcspResponderMode {
    /// The issuing CA's key, through its backend.
    #[default]
    Issuer,
    /// A short-lived responder certificate issued by the CA (id-kp-OCSPSigning,
    /// id-pkix-ocsp-nocheck), its software key sealed in the database.
    Delegated,
}

/// Revocation settings of one backend; unset keys take the `[ca]` value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevocationOverride {
    pub crl_shards: Option<u32>,
    pub ocsp_responder: Option<OcspResponderMode>,
}

impl CaConfig {
    /// The CRL shards of backend `name`.
    pub fn crl_shards_of(&self, name: &str) -> u32 {
        self.revocation_by_backend
            .get(name)
            .and_then(|o| o.crl_shards)
            .unwrap_or(self.crl_shards)
            .max(1)
    }

    /// Who signs backend `name`'s OCSP responses.
    pub fn ocsp_responder_of(&self, name: &str) -> OcspResponderMode {
        self.revocation_by_backend
            .get(name)
            .and_then(|o| o.ocsp_responder)
            .unwrap_or(self.ocsp_responder)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    /// TCP port the http-01 validator connects to (80 in production; tests use another).
    pub http01_port: u16,
    /// TCP port the tls-alpn-01 validator connects to (443 in production).
    pub tls_alpn01_port: u16,
    /// DNS server (`ip:port`) used to resolve identifiers. Empty: the system resolver.
    pub dns_resolver: String,
    /// Seconds a nonce stays redeemable.
    pub nonce_lifetime_secs: u64,
    /// Seconds an order (and its pending authorizations) stays usable.
    pub order_lifetime_secs: u64,
    /// Seconds a valid authorization can be reused for new orders of the same account.
    pub authz_reuse_secs: u64,
    /// Timeout of one validation attempt, in seconds.
    pub validation_timeout_secs: u64,
    /// Milliseconds the answer to a challenge POST waits for its validation: one that
    /// finishes sooner is answered `valid` or `invalid` at once (no polling); later, the answer
    /// is `processing`, as RFC 8555 §7.5.1 describes. 0: never wait.
    pub challenge_wait_ms: u64,
    /// Terms of service URL published in the directory (empty: none).
    pub terms_of_service: String,
    /// Seconds an order may stay `processing` before it is considered failed.
    pub processing_timeout_secs: u64,
    /// Allow newAuthz pre-authorization (RFC 8555 §7.4.1).
    pub pre_authorization: bool,
    /// External account binding: `not-required`, `new-account-required`, `always-required`.
    pub external_account_binding: crate::ra::EabPolicy,
    /// Which identifiers this directory issues for.
    pub policy: crate::ra::policy::IdentifierPolicy,
    /// Where the validator may connect.
    pub validation: ValidationConfig,
    /// Hourly limits (429 rateLimited past them).
    pub rate_limits: crate::ra::policy::RateLimits,
    /// For ACME client authors; off by default.
    pub test_mode: crate::ra::policy::TestMode,
    /// Issuer domain names of this CA in CAA records (RFC 8659). A name with CAA `issue`
    /// records naming none of these is refused.
    pub caa_identities: Vec<String>,
    /// Seconds after which CAA is checked again at finalize.
    pub caa_recheck_secs: u64,
    /// The backend (a name under `[backends]`) ACME orders are issued through.
    pub backend: String,
    /// More ACME directories, served at `/acme/NAME/directory`, each overriding some settings.
    pub directories: BTreeMap<String, DirectoryConfig>,
    /// The profile an order gets when it names none.
    pub default_profile: String,
    /// Certificate profiles offered in the directory's `meta.profiles`.
    pub profiles: BTreeMap<String, ProfileConfig>,
}

/// The validator's address policy beyond its fixed floor (`va::ALWAYS_DENIED`, pkid's own
/// listeners).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// CIDR ranges the validator never connects to.
    pub denied_ranges: Vec<String>,
}

/// A named ACME directory; unset keys inherit `[acme]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The backend this directory issues through.
    pub backend: Option<String>,
    /// Names of the profiles offered (of `[acme.profiles]`); empty: all.
    pub profiles: Vec<String>,
    pub default_profile: Option<String>,
    pub external_account_binding: Option<crate::ra::EabPolicy>,
    pub pre_authorization: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    pub description: String,
    pub validity_days: u32,
    /// Add the clientAuth EKU besides serverAuth.
    pub client_auth: bool,
    /// Identifier types allowed (`dns`, `ip`); empty: all.
    pub identifier_types: Vec<String>,
    /// Certificate policy OIDs (dotted) written into each certificate.
    pub certificate_policies: Vec<String>,
}

/// The prefix of a `server.client_ca_files` entry that names a backend instead of a file.
pub const BACKEND_ANCHOR: &str = "backend:";

/// The CA/Browser Forum's domain-validated policy (BRs §7.1.6.1): what ACME validation proves.
const DOMAIN_VALIDATED: &str = "2.23.140.1.2.1";

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            description: String::new(),
            validity_days: 90,
            client_auth: false,
            identifier_types: Vec::new(),
            certificate_policies: Vec::new(),
        }
    }
}

/// Users, OAuth2 clients, access tokens and admin tokens (`docs/identity.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Seconds an access token (a JWT from `/login` or `/token`) is valid.
    pub token_lifetime_secs: u64,
    /// Days an admin token is valid when `pkid admin token create` names no `--expires-days`.
    pub admin_token_days: u32,
    /// Failed logins (`/login`, `/token`) on one username or client id within the window
    /// before further attempts on it are refused (429).
    pub failures_per_name: u32,
    /// Failed logins from one address (IPv6: one /64) within the window before its further
    /// attempts are refused.
    pub failures_per_address: u32,
    /// Seconds a window of failures lasts, from its first failure.
    pub throttle_window_secs: u64,
    /// Names (and, apart, addresses) whose failures are remembered at most.
    pub throttle_max_tracked: usize,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            token_lifetime_secs: 900,
            admin_token_days: 90,
            failures_per_name: 10,
            failures_per_address: 30,
            throttle_window_secs: 300,
            throttle_max_tracked: 65_536,
        }
    }
}

/// IAM's certificate linking and proxy certificates (`docs/iam.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IamConfig {
    /// A folder of CA certificates (PEM; IAM's `IAM_X509_TRUST_ANCHORS_DIR`, e.g. a grid
    /// `certificates` folder): certificates they issued may be linked to accounts, and
    /// authenticate by TLS once linked. pkid's own CAs are anchors too. Empty: pkid's CAs only.
    pub trust_anchors_dir: PathBuf,
    /// The longest proxy certificate `POST /iam/proxycert` makes, in seconds (IAM's
    /// `max-ac-lifetime-in-seconds`); a longer lifetime asked for is cut to it.
    pub proxy_max_lifetime_secs: u64,
}

impl Default for IamConfig {
    fn default() -> Self {
        IamConfig {
            trust_anchors_dir: PathBuf::new(),
            proxy_max_lifetime_secs: 43200,
        }
    }
}

/// The audit trail (`docs/security.md`): every state change, hash-chained, with signed
/// checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Seconds between signed checkpoints of the chain's head (one is made only when entries
    /// were added since the last). 0: none.
    pub checkpoint_interval_secs: u64,
    /// The backend (a name under `[backends]`, a local key: software or PKCS#11) whose issuing
    /// key signs the checkpoints.
    pub checkpoint_backend: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_interval_secs: 3600,
            checkpoint_backend: "default".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. `info`, `pkid=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            ca: CaConfig::default(),
            acme: AcmeConfig::default(),
            identity: IdentityConfig::default(),
            iam: IamConfig::default(),
            audit: AuditConfig::default(),
            log: LogConfig::default(),
            backends: BTreeMap::from([(
                "default".to_string(),
                BackendSpec::Software {
                    algorithm: pkid_backends::KeyAlgorithm::EcdsaP256,
                },
            )]),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            base_url: String::new(),
            tls_names: Vec::new(),
            tls_lifetime_secs: 30 * 86400,
            tls_certificate: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_reload_secs: 60,
            http_listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:8444".into(),
            max_body_bytes: 64 * 1024,
            header_timeout_secs: 10,
            max_connections: 4096,
            client_ca_files: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            key_encryption_key: String::new(),
            key_encryption_key_file: PathBuf::new(),
            backdate_secs: 60,
            revocation_base_url: String::new(),
            crl_lifetime_secs: 86400,
            ocsp_lifetime_secs: 86400,
            crl_shards: 1,
            delta_crls: false,
            ocsp_responder: OcspResponderMode::Issuer,
            ocsp_requests_per_minute: 1200,
            ocsp_responder_lifetime_secs: 4 * 86400,
            revocation_by_backend: BTreeMap::new(),
            alternate_chains: BTreeMap::new(),
            registry: RegistryConfig::default(),
        }
    }
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            http01_port: 80,
            tls_alpn01_port: 443,
            dns_resolver: String::new(),
            nonce_lifetime_secs: 3600,
            order_lifetime_secs: 7 * 24 * 3600,
            authz_reuse_secs: 30 * 24 * 3600,
            validation_timeout_secs: 10,
            challenge_wait_ms: 250,
            terms_of_service: String::new(),
            processing_timeout_secs: 300,
            pre_authorization: true,
            external_account_binding: crate::ra::EabPolicy::NotRequired,
            policy: Default::default(),
            validation: ValidationConfig::default(),
            rate_limits: Default::default(),
            test_mode: Default::default(),
            caa_identities: vec!["pkid.invalid".into()],
            caa_recheck_secs: 8 * 3600,
            backend: "default".into(),
            directories: BTreeMap::new(),
            default_profile: "tls-server".into(),
            profiles: BTreeMap::from([
                (
                    "tls-server".to_string(),
                    ProfileConfig {
                        description:
                            "TLS server certificate for DNS names and IP addresses, valid 90 days"
                                .into(),
                        validity_days: 90,
                        client_auth: false,
                        identifier_types: vec!["dns".into(), "ip".into()],
                        certificate_policies: vec![DOMAIN_VALIDATED.into()],
                    },
                ),
                (
                    "short-lived".to_string(),
                    ProfileConfig {
                        description: "TLS server certificate for DNS names, valid 7 days".into(),
                        validity_days: 7,
                        client_auth: false,
                        identifier_types: vec!["dns".into()],
                        certificate_policies: vec![DOMAIN_VALIDATED.into()],
                    },
                ),
            ]),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Config {
    /// Defaults ← the TOML file (if it exists) ← `PKID_*` environment.
    pub fn load(path: Option<&Path>) -> Result<Config, Box<figment::Error>> {
        let file = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("config.toml"));
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if path.is_some() || file.exists() {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(Env::prefixed("PKID_").split("__"))
            .extract()
            .map_err(Box::new)
    }

    pub fn base_url(&self) -> String {
        if self.server.base_url.is_empty() {
            format!("https://localhost:{}", self.server.listen.port())
        } else {
            self.server.base_url.trim_end_matches('/').to_string()
        }
    }

    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("pkid.db").display()
            )
        } else {
            self.database.url.clone()
        }
    }

    /// Where certificates point relying parties for CRLs and OCSP, if anywhere.
    pub fn revocation_base_url(&self) -> Option<String> {
        if !self.ca.revocation_base_url.is_empty() {
            return Some(
                self.ca
                    .revocation_base_url
                    .trim_end_matches('/')
                    .to_string(),
            );
        }
        let listen: SocketAddr = self.server.http_listen.parse().ok()?;
        let host = if listen.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            listen.ip().to_string()
        };
        Some(format!("http://{host}:{}", listen.port()))
    }

    pub fn validation_timeout(&self) -> Duration {
        Duration::from_secs(self.acme.validation_timeout_secs.max(1))
    }

    /// The ACME directories: the default one (named `default`, at `/acme`), then each of
    /// `[acme.directories]`, its unset keys filled from `[acme]`.
    pub fn acme_directories(&self) -> Vec<(String, DirectoryConfig)> {
        let own = |dir: &DirectoryConfig| DirectoryConfig {
            backend: Some(
                dir.backend
                    .clone()
                    .unwrap_or_else(|| self.acme.backend.clone()),
            ),
            profiles: if dir.profiles.is_empty() {
                self.acme.profiles.keys().cloned().collect()
            } else {
                dir.profiles.clone()
            },
            default_profile: Some(
                dir.default_profile
                    .clone()
                    .unwrap_or_else(|| self.acme.default_profile.clone()),
            ),
            external_account_binding: Some(
                dir.external_account_binding
                    .unwrap_or(self.acme.external_account_binding),
            ),
            pre_authorization: Some(dir.pre_authorization.unwrap_or(self.acme.pre_authorization)),
        };
        std::iter::once(("default".to_string(), own(&DirectoryConfig::default())))
            .chain(
                self.acme
                    .directories
                    .iter()
                    .map(|(n, d)| (n.clone(), own(d))),
            )
            .collect()
    }

    /// The admin listener's address, if there is one.
    pub fn admin_listen(&self) -> Result<Option<SocketAddr>, String> {
        if self.server.admin_listen.is_empty() {
            return Ok(None);
        }
        self.server.admin_listen.parse().map(Some).map_err(|_| {
            format!(
                "server.admin_listen {:?} is not an ip:port address",
                self.server.admin_listen
            )
        })
    }
}

#[cfg(test)]
mod tests;
