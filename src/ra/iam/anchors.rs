//! The trust anchors of certificate linking: the CAs whose certificates may be linked to an
//! account (a request's `issuerDn` must be one of their subjects), listed by `GET
//! /iam/api/trusts`. Two sources:
//!
//! - a folder of CA certificates, `iam.trust_anchors_dir` (IAM's `IAM_X509_TRUST_ANCHORS_DIR`,
//!   typically a grid `certificates` folder), read once at start ([`load_anchor_folder`]);
//! - pkid's own CAs, read at each use through [`CaCertificates`], so that CAs that come and go
//!   while pkid runs are anchors while they exist.

use std::path::Path;
use std::sync::Arc;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::dn::rfc2253;

/// Largest file read from the anchor folder.
const MAX_ANCHOR_FILE: u64 = 1 << 20;
/// Most files read from the anchor folder.
const MAX_ANCHOR_FILES: usize = 10_000;

/// pkid's own CA certificates, as they are now.
#[async_trait::async_trait]
pub trait CaCertificates: Send + Sync {
    /// Every CA certificate (DER) of pkid's issuers.
    async fn ca_certificates(&self) -> Vec<Vec<u8>>;
}

/// One anchor: its subject (RFC 2253) and certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub subject_dn: String,
    pub der: Vec<u8>,
}

/// The folder's anchors and pkid's own CAs.
pub struct TrustAnchors {
    folder: Vec<Anchor>,
    own: Arc<dyn CaCertificates>,
}

fn anchor(der: &[u8]) -> Option<Anchor> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(Anchor {
        subject_dn: rfc2253(cert.subject()),
        der: der.to_vec(),
    })
}

impl TrustAnchors {
    /// The folder's certificates (DER, as [`load_anchor_folder`] read them) and pkid's CAs.
    pub fn new(folder: &[Vec<u8>], own: Arc<dyn CaCertificates>) -> TrustAnchors {
        TrustAnchors {
            folder: folder.iter().filter_map(|der| anchor(der)).collect(),
            own,
        }
    }

    /// Every anchor: the folder's, then pkid's CAs, each certificate once.
    pub async fn all(&self) -> Vec<Anchor> {
        let mut all = self.folder.clone();
        for der in self.own.ca_certificates().await {
            if all.iter().all(|a| a.der != der) {
                all.extend(anchor(&der));
            }
        }
        all
    }

    /// The anchors' subjects, each once, in the order of [`TrustAnchors::all`].
    pub async fn subjects(&self) -> Vec<String> {
        let mut subjects: Vec<String> = Vec::new();
        for a in self.all().await {
            if !subjects.contains(&a.subject_dn) {
                subjects.push(a.subject_dn);
            }
        }
        subjects
    }

    /// The anchors whose subject is `subject_dn` (RFC 2253, as `pki::dn` writes it).
    pub async fn named(&self, subject_dn: &str) -> Vec<Anchor> {
        self.all()
            .await
            .into_iter()
            .filter(|a| a.subject_dn == subject_dn)
            .collect()
    }
}

/// The certificates (DER) of the folder `dir`, each with the file it came from, in file name
/// order: every PEM `CERTIFICATE` block of every file. Files that hold none (a grid folder's
/// `.signing_policy`, `.namespace`, CRLs) are skipped; a folder that cannot be read is an error.
pub fn load_anchor_folder(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let shown = dir.display();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("iam.trust_anchors_dir {shown}: {e}"))?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    if files.len() > MAX_ANCHOR_FILES {
        return Err(format!(
            "iam.trust_anchors_dir {shown}: more than {MAX_ANCHOR_FILES} files"
        ));
    }
    let mut anchors: Vec<(String, Vec<u8>)> = Vec::new();
    for file in files {
        let too_large = std::fs::metadata(&file).map_or(true, |m| m.len() > MAX_ANCHOR_FILE);
        if too_large {
            continue;
        }
        let Ok(text) = std::fs::read(&file) else {
            continue;
        };
        let Ok(blocks) = pem::parse_many(&text) else {
            continue;
        };
        for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
            let der = block.into_contents();
            if X509Certificate::from_der(&der).is_ok() && anchors.iter().all(|(_, d)| *d != der) {
                anchors.push((file.display().to_string(), der));
            }
        }
    }
    Ok(anchors)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::tests::ca;
    use super::*;

    struct Fixed(Vec<Vec<u8>>);

    #[async_trait::async_trait]
    impl CaCertificates for Fixed {
        async fn ca_certificates(&self) -> Vec<Vec<u8>> {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn the_folder_and_pkids_cas_are_anchors_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let (grid, own) = (ca("Grid CA"), ca("Own CA"));
        std::fs::write(dir.path().join("10b10516.0"), grid.pem()).unwrap();
        std::fs::write(
            dir.path().join("grid.signing_policy"),
            "access_id_CA X509 'x'",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("garbage.pem"),
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let folder = load_anchor_folder(dir.path()).unwrap();
        assert_eq!(folder.len(), 1, "{folder:?}");
        assert!(folder[0].0.ends_with("10b10516.0"));
        let ders: Vec<Vec<u8>> = folder.into_iter().map(|(_, der)| der).collect();
        let anchors = TrustAnchors::new(
            &ders,
            Arc::new(Fixed(vec![own.der().to_vec(), grid.der().to_vec()])),
        );
        assert_eq!(
            anchors.subjects().await,
            ["CN=Grid CA,O=IGI,C=IT", "CN=Own CA,O=IGI,C=IT"]
        );
        assert_eq!(anchors.named("CN=Own CA,O=IGI,C=IT").await.len(), 1);
        assert!(anchors.named("CN=Nobody").await.is_empty());
        assert!(load_anchor_folder(&dir.path().join("missing")).is_err());
    }
}
