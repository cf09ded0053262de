//! What the process holds before any surface exists: the key-encryption key, the store, and
//! every configured issuer (its backend opened, and created on first start), with the revocation
//! publisher over them. The command line opens the same.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pkid_backends::sealed::KeyEncryptionKey;
use pkid_backends::software::SoftwareBackend;
use pkid_backends::{CaKeys, SigningBackend};

use super::{write_private, BoxError};
use crate::audit::{Audit, Event, SYSTEM};
use crate::ca::registry::{Issuers, RegistrySettings};
use crate::ca::Ca;
use crate::config::{BackendSpec, Config, OcspResponderMode};
use crate::revocation::{Revocation, RevocationSettings};
use crate::store::Store;

/// The key sealing private keys at rest: from config/env, else `<data_dir>/kek` (created once).
fn key_encryption_key(cfg: &Config) -> Result<KeyEncryptionKey, BoxError> {
    if !cfg.ca.key_encryption_key.is_empty() {
        return KeyEncryptionKey::from_base64(&cfg.ca.key_encryption_key)
            .map_err(|e| format!("ca.key_encryption_key is unusable: {e}").into());
    }
    let path = if cfg.ca.key_encryption_key_file.as_os_str().is_empty() {
        cfg.data_dir.join("kek")
    } else {
        cfg.ca.key_encryption_key_file.clone()
    };
    if inside(&path, &cfg.data_dir) {
        tracing::warn!(
            path = %path.display(),
            "the key-encryption key is inside the data folder: a copy of the data folder (the \
             database, every sealed CA and EAB key, and this key) is the whole CA; keep the key \
             elsewhere (ca.key_encryption_key_file, or PKID_CA__KEY_ENCRYPTION_KEY)"
        );
    }
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        return KeyEncryptionKey::from_base64(text.trim())
            .map_err(|e| format!("{} is unusable: {e}", path.display()).into());
    }
    let kek = KeyEncryptionKey::generate();
    write_private(&path, kek.to_base64().as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "created the key-encryption key file");
    Ok(kek)
}

/// Whether `path` is inside `dir` (both made absolute as far as they exist).
fn inside(path: &Path, dir: &Path) -> bool {
    let absolute = |p: &Path| {
        let parent = p.parent().filter(|q| !q.as_os_str().is_empty());
        match (std::fs::canonicalize(p), parent) {
            (Ok(full), _) => full,
            (Err(_), Some(parent)) => std::fs::canonicalize(parent)
                .map(|full| full.join(p.file_name().unwrap_or_default()))
                .unwrap_or_else(|_| p.to_path_buf()),
            (Err(_), None) => std::env::current_dir()
                .map(|cwd| cwd.join(p))
                .unwrap_or_else(|_| p.to_path_buf()),
        }
    };
    absolute(path).starts_with(absolute(dir))
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
    /// Every issuer, live: the configured ones and the CAs made at run time.
    pub issuers: Arc<Issuers>,
    /// `root.pem`, written for clients to trust.
    pub root_path: PathBuf,
    /// Seals secrets at rest (CA keys, EAB keys).
    pub kek: Arc<KeyEncryptionKey>,
    /// The audit trail: the process's one handle.
    pub audit: Audit,
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
    let audit = Audit::new(store.clone());
    let revocation_base = cfg.revocation_base_url();
    let mut cas = Vec::new();
    let root_path = cfg.data_dir.join("root.pem");
    for (name, spec) in &cfg.backends {
        let (backend, created) = open_backend(cfg, name, spec, &kek, &root_path).await?;
        if let Some(what) = created {
            let certificate = backend.ca_chain().into_iter().next().unwrap_or_default();
            let subject = x509_parser::parse_x509_certificate(&certificate)
                .map(|(_, c)| c.subject().to_string())
                .unwrap_or_default();
            audit
                .record(
                    Event::success(SYSTEM, "ca.created", format!("backend:{name}"))
                        .with(serde_json::json!({ "key": what, "subject": subject })),
                )
                .await;
        }
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
    let issuers = Arc::new(
        Issuers::open(
            store.clone(),
            cas.clone(),
            Arc::new(CaKeys::new(kek.clone(), cfg.ca.registry.pkcs11.clone())),
            RegistrySettings {
                backdate_secs: cfg.ca.backdate_secs,
                revocation_base: revocation_base.clone(),
                default_custody: cfg.ca.registry.key_custody,
                default_algorithm: cfg.ca.registry.key_algorithm,
            },
        )
        .await
        .map_err(|e| format!("reading the stored CAs: {e}"))?,
    );
    let revocation = Arc::new(
        Revocation::over(
            store.clone(),
            issuers.clone(),
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
        issuers,
        root_path,
        kek,
        audit,
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
) -> Result<Opened, BoxError> {
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
    let (backend, created) = tokio::task::spawn_blocking(move || -> Result<(Pkcs11Backend, Option<&'static str>), BoxError> {
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
            return Pkcs11Backend::new(&name, Arc::new(key), chain)
                .map(|backend| (backend, None))
                .map_err(|e| {
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
        let created = if generated {
            "generated in the token and certified"
        } else {
            "found in the token and certified"
        };
        Ok((backend, Some(created)))
    })
    .await
    .map_err(|e| format!("opening the PKCS#11 backend: {e}"))??;
    Ok((Arc::new(backend), created))
}

/// An opened backend, and what was created for it this time (a CA key made and certified),
/// if anything.
type Opened = (Arc<dyn SigningBackend>, Option<&'static str>);

/// Open (on first start, create) one configured backend.
async fn open_backend(
    cfg: &Config,
    name: &str,
    spec: &BackendSpec,
    kek: &Arc<KeyEncryptionKey>,
    root_path: &Path,
) -> Result<Opened, BoxError> {
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
            let created = created.then_some("software root and intermediate created");
            Ok((Arc::new(backend), created))
        }
        BackendSpec::Acme(map) => {
            let config: pkid_backends::UpstreamAcmeConfig = serde_json::from_value(typed(map))
                .map_err(|e| format!("backends.{name} (acme): {e}"))?;
            let backend = pkid_backends::UpstreamAcmeBackend::new(name, config, kek.clone())
                .await
                .map_err(|e| format!("backends.{name} (acme): {e}"))?;
            Ok((Arc::new(backend), None))
        }
        BackendSpec::Cfssl(map) => {
            let config: pkid_backends::UpstreamCfsslConfig = serde_json::from_value(typed(map))
                .map_err(|e| format!("backends.{name} (cfssl): {e}"))?;
            let backend = pkid_backends::UpstreamCfsslBackend::new(name, config)
                .map_err(|e| format!("backends.{name} (cfssl): {e}"))?;
            Ok((Arc::new(backend), None))
        }
        BackendSpec::Pkcs11(map) => open_pkcs11(cfg, name, map, kek).await,
    }
}
