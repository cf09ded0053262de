//! The software backend: an issuing CA key held in memory, sealed at rest, and the on-disk root +
//! intermediate hierarchy it is created from on first start.
//!
//! Files in the CA directory (keys sealed with the KEK, see [`crate::sealed`]; all written 0600,
//! atomically: temporary file, fsync, rename, fsync of the directory):
//! `root.pem`, `root.key.sealed`, `intermediate.pem`, `intermediate.key.sealed`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use crate::keys::{KeySigner, SoftwareKey};
use crate::local::builder::{self, IssuerInfo};
use crate::sealed::KeyEncryptionKey;
use crate::{BackendError, KeyAlgorithm};

const ROOT_CERT: &str = "root.pem";
const ROOT_KEY: &str = "root.key.sealed";
const INTERMEDIATE_CERT: &str = "intermediate.pem";
const INTERMEDIATE_KEY: &str = "intermediate.key.sealed";
/// Associated data binding each sealed key to its role.
const ROOT_AAD: &[u8] = b"pkid root CA key";
const INTERMEDIATE_AAD: &[u8] = b"pkid intermediate CA key";

pub const ROOT_COMMON_NAME: &str = "pkid Root CA";
pub const INTERMEDIATE_COMMON_NAME: &str = "pkid Intermediate CA";
pub(crate) const ORGANIZATION: &str = "pkid";
pub(crate) const ROOT_VALIDITY: Duration = Duration::days(3652);
pub(crate) const INTERMEDIATE_VALIDITY: Duration = Duration::days(1826);
/// CA certificates are backdated a little so clocks slightly behind still accept them.
pub(crate) const CA_BACKDATE: Duration = Duration::hours(1);

/// Where a software CA hierarchy lives on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftwareCaFiles {
    pub dir: PathBuf,
}

impl SoftwareCaFiles {
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join(ROOT_CERT)
    }
    pub fn root_key(&self) -> PathBuf {
        self.dir.join(ROOT_KEY)
    }
    pub fn intermediate_cert(&self) -> PathBuf {
        self.dir.join(INTERMEDIATE_CERT)
    }
    pub fn intermediate_key(&self) -> PathBuf {
        self.dir.join(INTERMEDIATE_KEY)
    }

    fn all(&self) -> [PathBuf; 4] {
        [
            self.root_cert(),
            self.root_key(),
            self.intermediate_cert(),
            self.intermediate_key(),
        ]
    }
}

/// A CA whose issuing key is a [`SoftwareKey`] in memory.
pub struct SoftwareBackend {
    name: String,
    issuer: IssuerInfo,
    /// Issuing CA first, root last.
    chain: Vec<Vec<u8>>,
    root_der: Vec<u8>,
}

impl std::fmt::Debug for SoftwareBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareBackend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SoftwareBackend {
    /// A backend over an issuing key and its chain (issuing CA certificate first, root last).
    /// Checks the key belongs to the first certificate.
    pub fn new(
        name: &str,
        issuing_key: SoftwareKey,
        chain: Vec<Vec<u8>>,
    ) -> Result<Self, BackendError> {
        let (Some(issuing_cert), Some(root)) = (chain.first(), chain.last()) else {
            return Err(BackendError::Build(
                "a CA chain needs at least one certificate".into(),
            ));
        };
        let issuer = IssuerInfo::new(issuing_cert.clone(), Arc::new(issuing_key))?;
        let root_der = root.clone();
        Ok(SoftwareBackend {
            name: name.to_owned(),
            issuer,
            chain,
            root_der,
        })
    }

    /// Create (first start) or load (later starts) a root + intermediate hierarchy in `dir`:
    /// `root.pem`, `root.key.sealed`, `intermediate.pem`, `intermediate.key.sealed` (keys sealed
    /// with the KEK, files written 0600 atomically: write tmp + fsync + rename).
    /// Root: "pkid Root CA", 10 years; intermediate "pkid Intermediate CA", 5 years, pathlen 0;
    /// both keys of `alg` when created. Loading checks every sealed key matches its certificate
    /// and the intermediate chains to the root. Returns whether the hierarchy was created.
    pub fn open_or_create(
        name: &str,
        dir: &Path,
        kek: &KeyEncryptionKey,
        alg: KeyAlgorithm,
    ) -> Result<(Self, bool), BackendError> {
        let files = SoftwareCaFiles {
            dir: dir.to_path_buf(),
        };
        let present: Vec<bool> = files.all().iter().map(|p| p.exists()).collect();
        if present.iter().all(|p| *p) {
            return Ok((Self::load(name, &files, kek)?, false));
        }
        if present.iter().any(|p| *p) {
            return Err(BackendError::Io(format!(
                "{} holds part of a CA hierarchy; refusing to overwrite it (expected all or none of {ROOT_CERT}, \
                 {ROOT_KEY}, {INTERMEDIATE_CERT}, {INTERMEDIATE_KEY})",
                dir.display()
            )));
        }
        Ok((Self::create(name, &files, kek, alg)?, true))
    }

    fn create(
        name: &str,
        files: &SoftwareCaFiles,
        kek: &KeyEncryptionKey,
        alg: KeyAlgorithm,
    ) -> Result<Self, BackendError> {
        fs::create_dir_all(&files.dir)
            .map_err(|e| BackendError::Io(format!("creating {}: {e}", files.dir.display())))?;
        let now = OffsetDateTime::now_utc() - CA_BACKDATE;

        let root_key = Arc::new(SoftwareKey::generate(alg)?);
        let root_der = builder::self_signed_root(
            root_key.as_ref(),
            ROOT_COMMON_NAME,
            Some(ORGANIZATION),
            now,
            now + ROOT_VALIDITY,
        )?;
        let root = IssuerInfo::new(root_der.clone(), root_key.clone())?;

        let inter_key = SoftwareKey::generate(alg)?;
        let inter_der = builder::intermediate(
            inter_key.public_key_der(),
            &root,
            INTERMEDIATE_COMMON_NAME,
            Some(ORGANIZATION),
            Some(0),
            now,
            now + INTERMEDIATE_VALIDITY,
        )?;

        // Keys first, certificates last: a crash midway leaves a partial set, which the next
        // start refuses to overwrite instead of silently replacing a CA.
        write_private_atomic(
            &files.root_key(),
            kek.seal_pem(&root_key.to_pkcs8_der(), ROOT_AAD)?.as_bytes(),
        )?;
        write_private_atomic(
            &files.intermediate_key(),
            kek.seal_pem(&inter_key.to_pkcs8_der(), INTERMEDIATE_AAD)?
                .as_bytes(),
        )?;
        write_private_atomic(&files.root_cert(), cert_pem(&root_der).as_bytes())?;
        write_private_atomic(&files.intermediate_cert(), cert_pem(&inter_der).as_bytes())?;
        tracing::info!(dir = %files.dir.display(), algorithm = %alg, "created a software CA hierarchy");

        Self::new(name, inter_key, vec![inter_der, root_der])
    }

    fn load(
        name: &str,
        files: &SoftwareCaFiles,
        kek: &KeyEncryptionKey,
    ) -> Result<Self, BackendError> {
        let root_der = read_cert(&files.root_cert())?;
        let inter_der = read_cert(&files.intermediate_cert())?;
        let root_key = read_sealed_key(&files.root_key(), kek, ROOT_AAD)?;
        let inter_key = read_sealed_key(&files.intermediate_key(), kek, INTERMEDIATE_AAD)?;

        let root = IssuerInfo::new(root_der.clone(), Arc::new(root_key))
            .map_err(|e| BackendError::Mismatch(format!("{}: {e}", files.root_key().display())))?;
        // The intermediate must be signed by this root.
        let (_, inter) = x509_parser::parse_x509_certificate(&inter_der).map_err(|e| {
            BackendError::Io(format!("{}: {e}", files.intermediate_cert().display()))
        })?;
        let (_, root_spki) =
            x509_parser::x509::SubjectPublicKeyInfo::from_der(root.key.public_key_der())
                .map_err(|e| BackendError::Key(format!("{}: {e}", files.root_cert().display())))?;
        inter.verify_signature(Some(&root_spki)).map_err(|_| {
            BackendError::Mismatch(format!(
                "{} is not signed by {}",
                files.intermediate_cert().display(),
                files.root_cert().display()
            ))
        })?;
        Self::new(name, inter_key, vec![inter_der, root_der]).map_err(|e| {
            BackendError::Mismatch(format!("{}: {e}", files.intermediate_key().display()))
        })
    }

    /// The root CA of the hierarchy in `dir`, with its key: to certify another issuing CA
    /// (a PKCS#11 token key, say) as a sibling of this intermediate.
    pub fn load_root(dir: &Path, kek: &KeyEncryptionKey) -> Result<IssuerInfo, BackendError> {
        let files = SoftwareCaFiles {
            dir: dir.to_path_buf(),
        };
        let root_der = read_cert(&files.root_cert())?;
        let root_key = read_sealed_key(&files.root_key(), kek, ROOT_AAD)?;
        IssuerInfo::new(root_der, Arc::new(root_key))
            .map_err(|e| BackendError::Mismatch(format!("{}: {e}", files.root_key().display())))
    }

    /// The root CA certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The issuing CA and its key, for building certificates and CRLs directly.
    pub fn issuer(&self) -> &IssuerInfo {
        &self.issuer
    }

    /// A key in memory has no sessions.
    fn session_use(&self) -> Option<crate::SessionUse> {
        None
    }
}

crate::local::local_signing_backend!(SoftwareBackend, "software", "software");

fn cert_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

fn read_cert(path: &Path) -> Result<Vec<u8>, BackendError> {
    let text = fs::read_to_string(path)
        .map_err(|e| BackendError::Io(format!("reading {}: {e}", path.display())))?;
    let parsed = pem::parse(&text)
        .map_err(|e| BackendError::Io(format!("{} is not PEM: {e}", path.display())))?;
    if parsed.tag() != "CERTIFICATE" {
        return Err(BackendError::Io(format!(
            "{} holds a {:?}, not a CERTIFICATE",
            path.display(),
            parsed.tag()
        )));
    }
    Ok(parsed.into_contents())
}

fn read_sealed_key(
    path: &Path,
    kek: &KeyEncryptionKey,
    aad: &[u8],
) -> Result<SoftwareKey, BackendError> {
    let text = fs::read_to_string(path)
        .map_err(|e| BackendError::Io(format!("reading {}: {e}", path.display())))?;
    let pkcs8 = kek
        .open_pem(&text, aad)
        .map_err(|e| BackendError::Key(format!("{}: {e}", path.display())))?;
    SoftwareKey::from_pkcs8_der(&pkcs8)
        .map_err(|e| BackendError::Key(format!("{}: {e}", path.display())))
}

/// Writes `contents` to `path` with mode 0600: a temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> Result<(), BackendError> {
    let io_err =
        |what: &str, e: std::io::Error| BackendError::Io(format!("{what} {}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));

    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options
            .open(&tmp)
            .map_err(|e| io_err("creating a temporary file for", e))?;
        file.write_all(contents).map_err(|e| io_err("writing", e))?;
        file.sync_all().map_err(|e| io_err("syncing", e))?;
        fs::rename(&tmp, path).map_err(|e| io_err("renaming into", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
