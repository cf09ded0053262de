//! Start-up wiring (pebble's `cmd/pebble/main.go` style: everything explicit, no globals), in
//! the order of the layers: configuration → store and issuers ([`authorities`]) → va → ra →
//! api surfaces → http ([`tls`] for pkid's own certificate, kept current) → background work
//! (including the audit trail's signed checkpoints).

mod authorities;
mod iam;
mod tls;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;

use crate::api::acme::{AcmeServer, AcmeSettings};
use crate::api::admin::AdminApi;
use crate::api::czertainly::CzertainlyApi;
use crate::api::iam::IamApi;
use crate::api::identity::IdentityApi;
use crate::api::notary::NotaryApi;
use crate::api::operations::Operations;
use crate::api::repository::Repository;
use crate::audit::{Audit, Event, SYSTEM};
use crate::ca::{Ca, IssuanceProfile};
use crate::config::Config;
use crate::http::{App, HttpSettings, Surface, Surfaces};
use crate::identity::nonce::NonceService;
use crate::identity::throttle::ThrottleSettings;
use crate::identity::{Identity, IdentitySettings};
use crate::ra::{Directory, Ra, RaSettings};
use crate::store::{Database, Store};
use crate::va::{AddressPolicy, Validator, ValidatorSettings};
pub use authorities::{open_authorities, Authorities};
use tls::{client_certificates, server_tls};

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

/// `pkid serve`: the layers built bottom-up, in the order of the layer map (`lib.rs`), then
/// served until SIGTERM.
pub async fn run(cfg: Config) -> Result<(), BoxError> {
    let started = std::time::Instant::now();
    init_logging(&cfg);
    // From here on SIGTERM stops pkid cleanly, even during start-up.
    let signal = shutdown_signal();
    cfg.check()?;

    // store, backends, issuers (ca), revocation
    let Authorities {
        store,
        cas,
        default_ca,
        revocation,
        issuers,
        root_path,
        kek,
        audit,
        ..
    } = open_authorities(&cfg).await?;
    record_configuration(&cfg, &audit).await;

    // va
    let identifiers = cfg.acme.policy.clone();
    let validator = Arc::new(Validator::new(ValidatorSettings {
        http01_port: cfg.acme.http01_port,
        tls_alpn01_port: cfg.acme.tls_alpn01_port,
        dns_resolver: &cfg.acme.dns_resolver,
        timeout: cfg.validation_timeout(),
        addresses: AddressPolicy::new(
            cfg.acme.validation.denied_ranges.clone(),
            own_listeners(&cfg),
        ),
        redirect_names: Arc::new(move |name| {
            identifiers
                .check(&crate::pki::csr::Ident::Dns(name.to_string()))
                .is_ok()
        }),
    })?);
    // A challenge `processing` for longer than this was left by a process that stopped: no
    // validation of a live one lasts that long.
    let validation_lease = validation_lease(&validator, &cfg.acme.test_mode);

    // ra, and what a stop left behind
    let ra = Arc::new(
        Ra::new(
            store.clone(),
            validator,
            revocation.clone(),
            kek.clone(),
            ra_settings(&cfg),
        )
        .with_audit(audit.clone()),
    );
    // The embedded file has no other writer, so every challenge in flight was this process's
    // before it stopped; replicas of a shared database requeue only those past the lease.
    let started_before = match store.database {
        Database::Sqlite => i64::MAX,
        Database::Postgres => crate::store::now() - validation_lease,
    };
    let requeued = ra.requeue_stuck_challenges(started_before).await?;
    if requeued > 0 {
        tracing::info!(
            requeued,
            "challenges interrupted by a stop are pending again"
        );
    }

    // identity: the trust anchors of client certificates (IAM's folder among them), loaded
    // once; users, clients and tokens (the token signing key made on first start); JWS-signed
    // requests use the nonces ACME issues
    let iam_anchors = iam::anchor_folder(&cfg)?;
    let client_certificates = Arc::new(client_certificates(&cfg, &cas, &iam_anchors)?);
    let nonces = nonce_service(&cfg, &store).await?;
    let identity = Arc::new(
        Identity::open(
            &store,
            &kek,
            &cfg.base_url(),
            identity_settings(&cfg),
            client_certificates.clone(),
            nonces.clone(),
        )
        .await
        .map_err(|e| format!("identity: {e}"))?
        .with_audit(audit.clone()),
    );

    // the RA's IAM side: link requests, trust anchors, proxies
    let iam = iam::open(
        &cfg,
        &store,
        &kek,
        &iam_anchors,
        iam::own_cas(&issuers),
        &audit,
    );

    // api: ACME directories (with their nonces), admin, identity, IAM, repository
    let directories = acme_directories(&cfg, &cas, &ra, &nonces);
    let identity_api = IdentityApi::new(identity.clone());
    let notary = NotaryApi::new(
        ra.clone(),
        identity.clone(),
        revocation.clone(),
        &cfg.base_url(),
    );
    let operations = Operations::new(store.reads(), issuers);
    let czertainly = CzertainlyApi::new(ra.clone(), identity.clone());
    let iam_api = IamApi::new(iam, identity.clone());
    let admin = AdminApi::new(
        ra.clone(),
        identity,
        directories
            .iter()
            .map(|d| d.directory().name.clone())
            .collect(),
    );
    let repository = Repository::new(revocation.clone(), cfg.ca.ocsp_requests_per_minute);

    // http
    let tls = server_tls(&cfg, &default_ca, &client_certificates, &audit).await?;
    let tls_config = tls.config.clone();
    tls.keep_current();
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", cfg.server.listen))?;
    let local = listener.local_addr()?;
    // The admin API on a listener of its own (the public one answers `/admin/…` 404).
    let admin_listener = match cfg.admin_listen()? {
        Some(addr) => {
            let admin = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("binding server.admin_listen {addr}: {e}"))?;
            if !addr.ip().to_canonical().is_loopback() {
                tracing::warn!(%addr, "the admin API listens beyond loopback: reachable by whoever reaches that address (admin tokens still required)");
            }
            Some(admin)
        }
        None => None,
    };
    let http_settings = HttpSettings {
        base_url: Some(cfg.server.base_url.clone())
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('/').to_string()),
        default_origin: format!("https://localhost:{}", local.port()),
        default_admin_origin: match &admin_listener {
            Some(admin) => format!("https://localhost:{}", admin.local_addr()?.port()),
            None => String::new(),
        },
        max_body_bytes: cfg.server.max_body_bytes,
        header_timeout: Duration::from_secs(cfg.server.header_timeout_secs.max(1)),
        max_connections: cfg.server.max_connections,
    };
    let surfaces = Surfaces {
        acme: directories.clone(),
        repository,
        admin,
        identity: identity_api,
        iam: iam_api,
        notary,
        operations,
    };
    let app = Arc::new(App::new(surfaces, http_settings).with_czertainly(czertainly));

    // background work
    spawn_ra_operations(ra.clone());
    spawn_audit_checkpoints(&cfg, &cas, &store)?;
    spawn_housekeeping(
        store,
        ra,
        directories,
        cfg.acme.processing_timeout_secs,
        validation_lease,
    );
    tokio::spawn(revocation.run_refresh());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
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
        let serve =
            crate::http::serve(app.clone(), plain, None, Surface::RevocationOnly, stopped());
        plain_server = Some(tokio::spawn(serve));
    }

    let mut admin_server = None;
    if let Some(admin) = admin_listener {
        println!("pkid: admin API: https://{}/admin/", admin.local_addr()?);
        let serve = crate::http::serve(
            app.clone(),
            admin,
            Some(tls_config.clone()),
            Surface::Admin,
            stopped(),
        );
        admin_server = Some(tokio::spawn(serve));
    }

    println!("pkid: root certificate: {}", root_path.display());
    println!("pkid: ACME directory: https://{local}/acme/directory");
    tracing::info!(listen = %local, startup_ms = started.elapsed().as_millis() as u64, "pkid is serving");
    // One signal stops every listener at once; each then drains its own connections.
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });
    crate::http::serve(app, listener, Some(tls_config), Surface::Public, stopped()).await?;
    for other in [plain_server, admin_server].into_iter().flatten() {
        let _ = other.await;
    }
    tracing::info!("pkid stopped");
    Ok(())
}

/// Records the configuration this process runs with: a SHA-256 of it (the key-encryption key
/// left out) and where it listens, so that a change between two starts shows in the trail.
async fn record_configuration(cfg: &Config, audit: &Audit) {
    let mut shown = cfg.clone();
    shown.ca.key_encryption_key = String::new();
    let text = serde_json::to_string(&shown).unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    audit
        .record(
            Event::success(SYSTEM, "config.loaded", "configuration").with(serde_json::json!({
                "sha256": hex::encode(digest.as_ref()),
                "listen": cfg.server.listen.to_string(),
                "base_url": cfg.base_url(),
                "version": env!("CARGO_PKG_VERSION"),
            })),
        )
        .await;
}

/// Signed checkpoints of the audit trail every `audit.checkpoint_interval_secs`, by the
/// issuing key of `audit.checkpoint_backend`, which must be a local key.
fn spawn_audit_checkpoints(cfg: &Config, cas: &[Arc<Ca>], store: &Store) -> Result<(), BoxError> {
    if cfg.audit.checkpoint_interval_secs == 0 {
        return Ok(());
    }
    let name = &cfg.audit.checkpoint_backend;
    let ca = cas
        .iter()
        .find(|ca| &ca.name == name)
        .filter(|ca| ca.backend.signatures().is_some())
        .ok_or_else(|| {
            format!("audit.checkpoint_backend {name:?} is not a backend with a local key (software or pkcs11)")
        })?;
    crate::audit::checkpoint::spawn_checkpoints(
        store.clone(),
        name.clone(),
        ca.backend.clone(),
        Duration::from_secs(cfg.audit.checkpoint_interval_secs),
    );
    Ok(())
}

/// pkid's own listeners, which the validator never connects to.
fn own_listeners(cfg: &Config) -> Vec<std::net::SocketAddr> {
    std::iter::once(cfg.server.listen)
        .chain(cfg.server.http_listen.parse().ok())
        .chain(cfg.server.admin_listen.parse().ok())
        .collect()
}

fn ra_settings(cfg: &Config) -> RaSettings {
    RaSettings {
        order_lifetime_secs: i64::try_from(cfg.acme.order_lifetime_secs).unwrap_or(604800),
        authz_reuse_secs: i64::try_from(cfg.acme.authz_reuse_secs).unwrap_or(0),
        terms_of_service: Some(cfg.acme.terms_of_service.clone()).filter(|s| !s.is_empty()),
        identifier_policy: cfg.acme.policy.clone(),
        rate_limits: cfg.acme.rate_limits.clone(),
        test_mode: cfg.acme.test_mode.clone(),
        caa_identities: cfg.acme.caa_identities.clone(),
        caa_recheck_secs: i64::try_from(cfg.acme.caa_recheck_secs).unwrap_or(28800),
    }
}

fn identity_settings(cfg: &Config) -> IdentitySettings {
    let c = &cfg.identity;
    IdentitySettings {
        token_lifetime_secs: i64::try_from(c.token_lifetime_secs.max(1)).unwrap_or(900),
        throttle: ThrottleSettings {
            failures_per_name: c.failures_per_name.max(1),
            failures_per_address: c.failures_per_address.max(1),
            window: Duration::from_secs(c.throttle_window_secs.max(1)),
            max_tracked: c.throttle_max_tracked.max(1),
        },
    }
}

/// Replicas of one PostgreSQL database share the nonce key and redeem nonces there; the
/// embedded SQLite file has one writer, this process, which redeems them in memory.
async fn nonce_service(cfg: &Config, store: &Store) -> Result<NonceService, BoxError> {
    let lifetime = cfg.acme.nonce_lifetime_secs;
    Ok(match store.database {
        Database::Postgres => {
            let mut fresh = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut fresh);
            let secret = store
                .setting_or_insert(
                    "nonce_key",
                    &base64::engine::general_purpose::STANDARD.encode(fresh),
                )
                .await?;
            let secret = base64::engine::general_purpose::STANDARD.decode(secret)?;
            NonceService::new(&secret, lifetime, store.clone())
        }
        Database::Sqlite => NonceService::in_process(lifetime),
    })
}

/// The default directory at /acme, then each named one at /acme/NAME, with its backend,
/// profiles, EAB rule and pre-authorization (checked by [`Config::check`]).
fn acme_directories(
    cfg: &Config,
    cas: &[Arc<Ca>],
    ra: &Arc<Ra>,
    nonces: &NonceService,
) -> Vec<Arc<AcmeServer>> {
    let profiles: BTreeMap<String, IssuanceProfile> = cfg
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
    let mut directories = Vec::new();
    for (name, dir) in cfg.acme_directories() {
        let backend = dir.backend.unwrap_or_default();
        let Some(ca) = cas.iter().find(|c| c.name == backend).cloned() else {
            continue; // refused by `Config::check`
        };
        let directory = Directory {
            name,
            ca,
            profiles: profiles
                .iter()
                .filter(|(p, _)| dir.profiles.contains(p))
                .map(|(p, v)| (p.clone(), v.clone()))
                .collect(),
            default_profile: dir.default_profile.unwrap_or_default(),
            eab_policy: dir.external_account_binding.unwrap_or_default(),
            pre_authorization: dir.pre_authorization.unwrap_or_default(),
        };
        let settings = AcmeSettings {
            challenge_wait: Duration::from_millis(cfg.acme.challenge_wait_ms),
        };
        directories.push(Arc::new(AcmeServer::new(
            ra.clone(),
            directory,
            nonces.clone(),
            settings,
        )));
    }
    directories
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

/// The RA client operations' background work (an upstream's pending certificate to collect, an
/// operation whose process stopped), taken up every two seconds, on every replica.
fn spawn_ra_operations(ra: Arc<Ra>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            if let Err(e) = ra.run_due_operations().await {
                tracing::warn!(error = %e, "taking up RA operations failed");
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
