//! Start-up wiring (pebble's `cmd/pebble/main.go` style: everything explicit, no globals):
//! config → logging → data dir → key-encryption key → store → CA → TLS → HTTP.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use pkid_backends::sealed::KeyEncryptionKey;
use pkid_backends::software::SoftwareBackend;
use pkid_backends::SigningBackend;
use rand::RngCore;

use crate::api::acme::nonce::NonceService;
use crate::api::acme::{AcmeServer, AcmeSettings};
use crate::ca::{Ca, IssuanceProfile};
use crate::config::{BackendSpec, Config, OcspResponderMode};
use crate::http::{App, HttpSettings, Surface};
use crate::pki::csr::check_csr;
use crate::ra::{Directory, Ra, RaSettings};
use crate::revocation::{Revocation, RevocationSettings};
use crate::store::Store;
use crate::va::{Validator, ValidatorSettings};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a log file or a journal would keep the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if cfg.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Write a file atomically (temp file, fsync, rename) with owner-only permissions.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The key sealing private keys at rest: from config/env, else `<data_dir>/kek` (created once).
fn key_encryption_key(cfg: &Config) -> Result<KeyEncryptionKey, BoxError> {
    if !cfg.ca.key_encryption_key.is_empty() {
        return KeyEncryptionKey::from_base64(&cfg.ca.key_encryption_key)
            .map_err(|e| format!("ca.key_encryption_key is unusable: {e}").into());
    }
    let path = cfg.data_dir.join("kek");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        return KeyEncryptionKey::from_base64(text.trim())
            .map_err(|e| format!("{} is unusable: {e}", path.display()).into());
    }
    let kek = KeyEncryptionKey::generate();
    write_private(&path, kek.to_base64().as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    tracing::warn!(path = %path.display(), "created a key-encryption key file; set PKID_CA__KEY_ENCRYPTION_KEY in production");
    Ok(kek)
}

/// The server's own TLS certificate, issued by the CA through the same issuance cycle.
async fn server_tls(cfg: &Config, ca: &Ca) -> Result<Arc<rustls::ServerConfig>, BoxError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in &cfg.server.tls_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let ip = cfg.server.listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr_der = params.serialize_request(&key)?.der().to_vec();
    let csr = check_csr(&csr_der).map_err(|e| format!("server CSR: {e:?}"))?;
    let profile = IssuanceProfile::tls_server("pkid-server", 30 * 86400);
    let issued = ca.issue(&csr, &profile, None, None).await?;
    let mut chain = vec![rustls_pki_types::CertificateDer::from(issued.der.clone())];
    for der in ca.backend.ca_chain().into_iter().take(1) {
        chain.push(rustls_pki_types::CertificateDer::from(der));
    }
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// The store and every issuer, opened (and on first start created) from the configuration.
pub struct Authorities {
    pub store: Store,
    pub cas: Vec<Arc<Ca>>,
    /// The `default` software CA: pkid's own TLS certificate and `root.pem`.
    pub default_ca: Arc<Ca>,
    /// The issuer ACME uses (`acme.backend`).
    pub acme_ca: Arc<Ca>,
    pub revocation: Arc<Revocation>,
    /// `root.pem`, written for clients to trust.
    pub root_path: PathBuf,
    /// Seals secrets at rest (CA keys, EAB keys).
    pub kek: Arc<KeyEncryptionKey>,
}

pub async fn open_authorities(cfg: &Config) -> Result<Authorities, BoxError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("creating {}: {e}", cfg.data_dir.display()))?;
    let kek = key_encryption_key(cfg)?;
    let store = Store::connect(&cfg.database_url(), cfg.database.max_connections)
        .await
        .map_err(|e| format!("opening the database: {e}"))?;

    let kek = Arc::new(kek);
    let revocation_base = cfg.revocation_base_url();
    let mut cas = Vec::new();
    let root_path = cfg.data_dir.join("root.pem");
    for (name, spec) in &cfg.backends {
        let backend = open_backend(cfg, name, spec, &kek, &root_path).await?;
        let mut ca = Ca::new(name.clone(), backend, store.clone(), cfg.ca.backdate_secs)
            .with_revocation_base(revocation_base.as_deref())
            .with_crl_shards(cfg.ca.crl_shards_of(name));
        if let Some(files) = cfg.ca.alternate_chains.get(name) {
            let mut chains = Vec::new();
            for file in files {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("ca.alternate_chains.{name}: {}: {e}", file.display()))?;
                let chain = pkid_backends::pem_certificates(&text)
                    .map_err(|e| format!("ca.alternate_chains.{name}: {}: {e}", file.display()))?;
                chains.push(chain);
            }
            ca = ca
                .with_alternate_chains(chains)
                .map_err(|e| format!("ca.alternate_chains.{name}: {e}"))?;
        }
        cas.push(Arc::new(ca));
    }
    let find = |name: &str| cas.iter().find(|c| c.name == name).cloned();
    let ca = find("default").ok_or("backends.default must be configured (a software CA)")?;
    let acme_ca = find(&cfg.acme.backend).ok_or_else(|| {
        format!(
            "acme.backend {:?} names no configured backend",
            cfg.acme.backend
        )
    })?;
    let delegated: std::collections::HashSet<String> = cfg
        .backends
        .keys()
        .filter(|name| cfg.ca.ocsp_responder_of(name) == OcspResponderMode::Delegated)
        .cloned()
        .collect();
    let revocation = Arc::new(
        Revocation::new(
            store.clone(),
            &cas,
            RevocationSettings {
                crl_lifetime_secs: i64::try_from(cfg.ca.crl_lifetime_secs)
                    .unwrap_or(86400)
                    .max(60),
                ocsp_lifetime_secs: i64::try_from(cfg.ca.ocsp_lifetime_secs)
                    .unwrap_or(86400)
                    .max(60),
            },
        )
        .with_delegated_responders(
            &delegated,
            &kek,
            i64::try_from(cfg.ca.ocsp_responder_lifetime_secs).unwrap_or(345600),
        )
        .with_delta_crls(cfg.ca.delta_crls),
    );
    Ok(Authorities {
        store,
        cas,
        default_ca: ca,
        acme_ca,
        revocation,
        root_path,
        kek,
    })
}

/// A PKCS#11 backend: the issuing key lives in the token (generated there, non-extractable, on
/// first start); its certificate chain is kept in `<data_dir>/ca-<name>/chain.pem`. `issuer`
/// names the software backend whose root certifies it, or `self` for a self-signed token root.
async fn open_pkcs11(
    cfg: &Config,
    name: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    kek: &Arc<KeyEncryptionKey>,
) -> Result<Arc<dyn SigningBackend>, BoxError> {
    use pkid_backends::{Pkcs11Backend, Pkcs11Config, Pkcs11Key};
    let mut map = map.clone();
    let issuer = match map.remove("issuer") {
        None => "default".to_string(),
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(format!("backends.{name}.issuer must be a string").into()),
    };
    let config: Pkcs11Config = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| format!("backends.{name} (pkcs11): {e}"))?;
    let dir = cfg.data_dir.join(format!("ca-{name}"));
    let chain_path = dir.join("chain.pem");
    let root_dir = if issuer == "default" {
        cfg.data_dir.join("ca")
    } else {
        cfg.data_dir.join(format!("ca-{issuer}"))
    };
    let kek = kek.clone();
    let name = name.to_string();
    let backend = tokio::task::spawn_blocking(move || -> Result<Pkcs11Backend, BoxError> {
        let (token, label) = (&config.token_label, &config.key_label);
        if chain_path.exists() {
            // Certified already: only that key may sign. A token that lost it (wiped, replaced)
            // gets no stand-in key: the operator restores it, or removes the CA folder.
            let certified = || {
                format!(
                    "{} certifies the key labelled {label:?} on token {token}; restore the token, \
                     or remove {} to create a new CA",
                    chain_path.display(),
                    dir.display()
                )
            };
            let key = Pkcs11Key::open(&config)
                .map_err(|e| format!("backends.{name}: {e}; {}", certified()))?;
            let text = std::fs::read_to_string(&chain_path)
                .map_err(|e| format!("backends.{name}: reading {}: {e}", chain_path.display()))?;
            let chain = pkid_backends::pem_certificates(&text)
                .map_err(|e| format!("backends.{name}: {}: {e}", chain_path.display()))?;
            return Pkcs11Backend::new(&name, Arc::new(key), chain).map_err(|e| {
                format!("backends.{name}: the token's key is not the CA's ({e}); {}", certified())
                    .into()
            });
        }
        let (key, generated) = Pkcs11Key::open_or_generate(&config)?;
        if generated {
            tracing::info!(backend = %name, token = %token, key = %label, "generated the issuing key inside the token");
        }
        let key = Arc::new(key);
        let backend = if issuer == "self" {
            Pkcs11Backend::create_root(&name, key, &format!("pkid {name} Root CA"))?
        } else {
            let root = SoftwareBackend::load_root(&root_dir, &kek)
                .map_err(|e| format!("backends.{name}: the issuer {issuer:?} root: {e}"))?;
            Pkcs11Backend::create_intermediate(&name, key, &root, &format!("pkid {name} Intermediate CA"))?
        };
        std::fs::create_dir_all(&dir)?;
        let pem: String = backend.ca_chain().iter().map(|der| crate::pki::pem::to_pem("CERTIFICATE", der)).collect();
        write_private(&chain_path, pem.as_bytes())?;
        tracing::info!(backend = %name, "certified the token key as a CA");
        Ok(backend)
    })
    .await
    .map_err(|e| format!("opening the PKCS#11 backend: {e}"))??;
    Ok(Arc::new(backend))
}

/// Open (on first start, create) one configured backend.
async fn open_backend(
    cfg: &Config,
    name: &str,
    spec: &BackendSpec,
    kek: &Arc<KeyEncryptionKey>,
    root_path: &Path,
) -> Result<Arc<dyn SigningBackend>, BoxError> {
    let typed =
        |map: &serde_json::Map<String, serde_json::Value>| serde_json::Value::Object(map.clone());
    match spec {
        BackendSpec::Software { algorithm } => {
            let dir = if name == "default" {
                cfg.data_dir.join("ca")
            } else {
                cfg.data_dir.join(format!("ca-{name}"))
            };
            let (backend, created) =
                SoftwareBackend::open_or_create(name, &dir, kek, *algorithm)
                    .map_err(|e| format!("software CA {name:?} in {}: {e}", dir.display()))?;
            if created {
                tracing::info!(backend = name, dir = %dir.display(), algorithm = %algorithm, "created a software CA (root and intermediate)");
            }
            if name == "default" {
                let root_pem = crate::pki::pem::to_pem("CERTIFICATE", backend.root_der());
                if std::fs::read_to_string(root_path).ok().as_deref() != Some(root_pem.as_str()) {
                    std::fs::write(root_path, &root_pem)
                        .map_err(|e| format!("writing {}: {e}", root_path.display()))?;
                }
            } else {
                let path = cfg.data_dir.join(format!("root-{name}.pem"));
                std::fs::write(
                    &path,
                    crate::pki::pem::to_pem("CERTIFICATE", backend.root_der()),
                )
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
            Ok(Arc::new(backend))
        }
        BackendSpec::Acme(map) => {
            let config: pkid_backends::UpstreamAcmeConfig = serde_json::from_value(typed(map))
                .map_err(|e| format!("backends.{name} (acme): {e}"))?;
            let backend = pkid_backends::UpstreamAcmeBackend::new(name, config, kek.clone())
                .await
                .map_err(|e| format!("backends.{name} (acme): {e}"))?;
            Ok(Arc::new(backend))
        }
        BackendSpec::Cfssl(map) => {
            let config: pkid_backends::UpstreamCfsslConfig = serde_json::from_value(typed(map))
                .map_err(|e| format!("backends.{name} (cfssl): {e}"))?;
            let backend = pkid_backends::UpstreamCfsslBackend::new(name, config)
                .map_err(|e| format!("backends.{name} (cfssl): {e}"))?;
            Ok(Arc::new(backend))
        }
        BackendSpec::Pkcs11(map) => open_pkcs11(cfg, name, map, kek).await,
    }
}

pub async fn run(cfg: Config) -> Result<(), BoxError> {
    let started = std::time::Instant::now();
    init_logging(&cfg);
    // From here on SIGTERM stops pkid cleanly, even during start-up.
    let signal = shutdown_signal();

    let Authorities {
        store,
        cas,
        default_ca: ca,
        revocation,
        root_path,
        kek,
        ..
    } = open_authorities(&cfg).await?;

    // Replicas of one PostgreSQL database share the nonce key and redeem nonces there; the
    // embedded SQLite file has one writer, this process, which redeems them in memory.
    let nonces = match store.database {
        crate::store::Database::Postgres => {
            let mut fresh = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut fresh);
            let secret = store
                .setting_or_insert(
                    "nonce_key",
                    &base64::engine::general_purpose::STANDARD.encode(fresh),
                )
                .await?;
            let secret = base64::engine::general_purpose::STANDARD.decode(secret)?;
            NonceService::new(&secret, cfg.acme.nonce_lifetime_secs, store.clone())
        }
        crate::store::Database::Sqlite => NonceService::in_process(cfg.acme.nonce_lifetime_secs),
    };

    let validator = Arc::new(Validator::new(ValidatorSettings {
        http01_port: cfg.acme.http01_port,
        tls_alpn01_port: cfg.acme.tls_alpn01_port,
        dns_resolver: &cfg.acme.dns_resolver,
        timeout: cfg.validation_timeout(),
    })?);
    // A challenge `processing` for longer than this was left by a process that stopped: no
    // validation of a live one lasts that long.
    let validation_lease = validation_lease(&validator, &cfg.acme.test_mode);
    let ra = Arc::new(Ra::new(
        store.clone(),
        validator,
        revocation.clone(),
        kek.clone(),
        RaSettings {
            order_lifetime_secs: i64::try_from(cfg.acme.order_lifetime_secs).unwrap_or(604800),
            authz_reuse_secs: i64::try_from(cfg.acme.authz_reuse_secs).unwrap_or(0),
            terms_of_service: Some(cfg.acme.terms_of_service.clone()).filter(|s| !s.is_empty()),
            identifier_policy: cfg.acme.policy.clone(),
            rate_limits: cfg.acme.rate_limits.clone(),
            test_mode: cfg.acme.test_mode.clone(),
            caa_identities: cfg.acme.caa_identities.clone(),
            caa_recheck_secs: i64::try_from(cfg.acme.caa_recheck_secs).unwrap_or(28800),
        },
    ));
    // The embedded file has no other writer, so every challenge in flight was this process's
    // before it stopped; replicas of a shared database requeue only those past the lease.
    let started_before = match store.database {
        crate::store::Database::Sqlite => i64::MAX,
        crate::store::Database::Postgres => crate::store::now() - validation_lease,
    };
    let requeued = ra.requeue_stuck_challenges(started_before).await?;
    if requeued > 0 {
        tracing::info!(
            requeued,
            "challenges interrupted by a stop are pending again"
        );
    }
    for (name, p) in &cfg.acme.profiles {
        pkid_backends::builder::check_certificate_policies(&p.certificate_policies)
            .map_err(|e| format!("acme.profiles.{name}.certificate_policies: {e}"))?;
    }
    let profiles: std::collections::BTreeMap<String, IssuanceProfile> = cfg
        .acme
        .profiles
        .iter()
        .map(|(name, p)| {
            let mut profile =
                IssuanceProfile::tls_server(name, i64::from(p.validity_days.max(1)) * 86400);
            profile.client_auth = p.client_auth;
            profile.description = p.description.clone();
            profile.identifier_types = p.identifier_types.clone();
            profile.certificate_policies = p.certificate_policies.clone();
            (name.clone(), profile)
        })
        .collect();
    // The default directory at /acme, then each named one at /acme/NAME, overriding
    // backend, profiles, EAB policy and pre-authorization.
    let mut directories = Vec::new();
    let named = cfg
        .acme
        .directories
        .iter()
        .map(|(n, d)| (Some(n.as_str()), d.clone()));
    for (name, dir) in
        std::iter::once((None, crate::config::DirectoryConfig::default())).chain(named)
    {
        if let Some(n) = name {
            const RESERVED: &[&str] = &[
                "directory",
                "new-nonce",
                "new-account",
                "new-order",
                "new-authz",
                "revoke-cert",
                "key-change",
                "renewal-info",
                "acct",
                "order",
                "authz",
                "chall",
                "cert",
            ];
            let well_formed = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !well_formed || RESERVED.contains(&n) || n == "default" {
                return Err(format!("acme.directories.{n}: a directory name is lowercase letters, digits and '-', and not an ACME resource name").into());
            }
        }
        let backend = dir
            .backend
            .clone()
            .unwrap_or_else(|| cfg.acme.backend.clone());
        let ca = cas
            .iter()
            .find(|c| c.name == backend)
            .cloned()
            .ok_or_else(|| {
                format!("ACME directory {name:?}: backend {backend:?} is not configured")
            })?;
        let offered: std::collections::BTreeMap<String, IssuanceProfile> = profiles
            .iter()
            .filter(|(p, _)| dir.profiles.is_empty() || dir.profiles.contains(p))
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect();
        let default_profile = dir
            .default_profile
            .clone()
            .unwrap_or_else(|| cfg.acme.default_profile.clone());
        if !offered.contains_key(&default_profile) {
            return Err(format!(
                "ACME directory {name:?}: default profile {default_profile:?} is not offered"
            )
            .into());
        }
        let directory = Directory {
            name: name.unwrap_or("default").to_string(),
            ca,
            profiles: offered,
            default_profile,
            eab_policy: dir
                .external_account_binding
                .unwrap_or(cfg.acme.external_account_binding),
            pre_authorization: dir.pre_authorization.unwrap_or(cfg.acme.pre_authorization),
        };
        let settings = AcmeSettings {
            challenge_wait: std::time::Duration::from_millis(cfg.acme.challenge_wait_ms),
        };
        directories.push(Arc::new(AcmeServer::new(
            ra.clone(),
            directory,
            nonces.clone(),
            settings,
        )));
    }
    let tls = server_tls(&cfg, &ca).await?;

    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", cfg.server.listen))?;
    let local = listener.local_addr()?;
    let http_settings = HttpSettings {
        base_url: Some(cfg.server.base_url.clone())
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('/').to_string()),
        default_origin: format!("https://localhost:{}", local.port()),
        max_body_bytes: cfg.server.max_body_bytes,
        header_timeout: Duration::from_secs(cfg.server.header_timeout_secs.max(1)),
        max_connections: cfg.server.max_connections,
    };
    let directory_names = std::iter::once("default".to_string())
        .chain(cfg.acme.directories.keys().cloned())
        .collect();
    let admin = crate::api::admin::AdminApi::new(ra.clone(), directory_names);
    let app = Arc::new(App::new(
        directories.clone(),
        crate::api::repository::Repository::new(revocation.clone()),
        admin,
        http_settings,
    ));

    spawn_housekeeping(
        store.clone(),
        ra,
        directories,
        cfg.acme.processing_timeout_secs,
        validation_lease,
    );
    tokio::spawn(revocation.clone().run_refresh());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut plain_server = None;
    if !cfg.server.http_listen.is_empty() {
        let addr: std::net::SocketAddr = cfg.server.http_listen.parse().map_err(|_| {
            format!(
                "server.http_listen {:?} is not an ip:port address",
                cfg.server.http_listen
            )
        })?;
        let plain = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("binding {addr}: {e}"))?;
        println!(
            "pkid: CRLs and OCSP over http: http://{}",
            plain.local_addr()?
        );
        let mut rx = stop_rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let serve = crate::http::serve(app.clone(), plain, None, Surface::RevocationOnly, stop);
        plain_server = Some(tokio::spawn(serve));
    }

    println!("pkid: root certificate: {}", root_path.display());
    println!("pkid: ACME directory: https://{local}/acme/directory");
    tracing::info!(listen = %local, startup_ms = started.elapsed().as_millis() as u64, "pkid is serving");
    // One signal stops both listeners at once; each then drains its own connections.
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });
    let mut rx = stop_rx.clone();
    let stop = async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    crate::http::serve(app, listener, Some(tls), Surface::All, stop).await?;
    if let Some(plain) = plain_server {
        let _ = plain.await;
    }
    tracing::info!("pkid stopped");
    Ok(())
}

/// Seconds after which a challenge still `processing` counts as abandoned: the validator's
/// deadline, test mode's longest delay, and half a minute for clocks and a busy machine.
fn validation_lease(validator: &Validator, test_mode: &crate::ra::policy::TestMode) -> i64 {
    let lease = validator.deadline() + test_mode.max_validation_delay() + Duration::from_secs(30);
    i64::try_from(lease.as_secs()).unwrap_or(i64::MAX / 2)
}

/// Periodic work: prune redeemed nonces; recover orders stuck in `processing`; requeue
/// challenges whose validation's process stopped (another replica's, on a shared database).
fn spawn_housekeeping(
    store: Store,
    ra: Arc<Ra>,
    directories: Vec<Arc<AcmeServer>>,
    processing_timeout_secs: u64,
    validation_lease: i64,
) {
    let timeout = i64::try_from(processing_timeout_secs).unwrap_or(300).max(1);
    let period = Duration::from_secs(u64::try_from((timeout / 2).clamp(1, 60)).unwrap_or(30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        let mut rounds: u64 = 0;
        loop {
            tick.tick().await;
            rounds += 1;
            let at = crate::store::now();
            for acme in &directories {
                if let Err(e) = ra
                    .recover_stale_orders(acme.directory(), at - timeout)
                    .await
                {
                    tracing::warn!(error = %e, "recovering stale orders failed");
                }
            }
            match ra.requeue_stuck_challenges(at - validation_lease).await {
                Ok(0) => {}
                Ok(requeued) => tracing::info!(
                    requeued,
                    "challenges whose validation was abandoned are pending again"
                ),
                Err(e) => tracing::warn!(error = %e, "requeueing abandoned challenges failed"),
            }
            if rounds % 10 == 1 {
                if let Err(e) = store.prune_nonces(at).await {
                    tracing::warn!(error = %e, "pruning redeemed nonces failed");
                }
            }
        }
    });
}

/// Resolves on SIGTERM or Ctrl-C. The SIGTERM handler is installed at the call, not at the
/// first poll, so a signal that arrives early is not lost to the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        match term {
            Some(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested: draining connections");
    }
}
