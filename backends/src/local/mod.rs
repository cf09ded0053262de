//! What the local backends (software keys, PKCS#11 tokens) share: they differ only in who
//! holds the issuing key (a [`crate::KeySigner`]); issuing, CRL and OCSP signing are the same
//! code over the issuer's [`IssuerInfo`].

pub mod builder;
pub mod checkpoint;
pub mod crl;
pub mod der;
pub mod ocsp;
pub mod ocsp_request;
pub mod template;

use self::builder::IssuerInfo;
use crate::{BackendError, Capabilities, CrlRequest, Issuance, IssuanceJournal, IssueRequest};

pub(crate) fn capabilities() -> Capabilities {
    Capabilities {
        issue: true,
        revoke: true,
        crl: true,
        ocsp: true,
        pending: false,
        key_generation: true,
        journals: true,
    }
}

/// The leaf, then the chain's intermediates (the root, last in `chain`, is left out).
pub(crate) async fn issue(
    issuer: &IssuerInfo,
    chain: &[Vec<u8>],
    req: IssueRequest,
    journal: &dyn IssuanceJournal,
) -> Result<Issuance, BackendError> {
    let leaf = builder::issue_leaf(&req, issuer, journal).await?;
    let mut issued = Vec::with_capacity(chain.len());
    issued.push(leaf);
    issued.extend(chain.iter().take(chain.len().saturating_sub(1)).cloned());
    Ok(Issuance::Issued { chain: issued })
}

/// A signature over a fixed probe by the issuing key, checked: whether the key signs now.
pub(crate) async fn probe(issuer: &IssuerInfo) -> Result<(), BackendError> {
    const PROBE: &[u8] = b"pkid readiness probe";
    let key = issuer.key.clone();
    let check = move || {
        let signature = key.sign(PROBE)?;
        builder::verify_signature(PROBE, key.algorithm(), &signature, key.public_key_der())
    };
    if issuer.key.signs_inline() {
        return check();
    }
    builder::on_signing_thread(issuer.key.as_ref(), "probe", check).await
}

pub(crate) async fn sign_crl(
    issuer: &IssuerInfo,
    req: CrlRequest,
) -> Result<Vec<u8>, BackendError> {
    let owned = issuer.clone();
    builder::on_signing_thread(issuer.key.as_ref(), "CRL signing", move || {
        crl::build_crl(&req, &owned)
    })
    .await
}

pub(crate) async fn sign_ocsp(
    issuer: &IssuerInfo,
    req: ocsp::OcspResponseRequest,
) -> Result<Vec<u8>, BackendError> {
    let owned = issuer.clone();
    builder::on_signing_thread(issuer.key.as_ref(), "OCSP signing", move || {
        ocsp::build_ocsp_response_by_issuer(&req, &owned)
    })
    .await
}

/// `SigningBackend` for a local backend type with `name`, `issuer` and `chain` fields; `$what`
/// names it in messages, `$kind` in metrics.
macro_rules! local_signing_backend {
    ($backend:ty, $what:literal, $kind:literal) => {
        #[async_trait::async_trait]
        impl $crate::SigningBackend for $backend {
            fn name(&self) -> &str {
                &self.name
            }

            fn capabilities(&self) -> $crate::Capabilities {
                $crate::local::capabilities()
            }

            fn ca_chain(&self) -> Vec<Vec<u8>> {
                self.chain.clone()
            }

            async fn issue(
                &self,
                req: $crate::IssueRequest,
                journal: &dyn $crate::IssuanceJournal,
            ) -> Result<$crate::Issuance, $crate::BackendError> {
                let work = $crate::local::issue(&self.issuer, &self.chain, req, journal);
                $crate::metrics::timed(
                    &self.name,
                    $kind,
                    $crate::metrics::Operation::Certificate,
                    work,
                )
                .await
            }

            async fn poll(
                &self,
                _upstream_ref: &str,
            ) -> Result<$crate::Issuance, $crate::BackendError> {
                Err($crate::BackendError::Unsupported(concat!(
                    "the ",
                    $what,
                    " backend issues immediately; there is nothing to poll"
                )))
            }

            /// Revocation status lives in the caller's store and reaches relying parties
            /// through the CRL and OCSP this backend signs; there is nothing to forward.
            async fn revoke(
                &self,
                _serial: &$crate::Serial,
                _cert_der: &[u8],
                _reason: $crate::RevocationReason,
            ) -> Result<(), $crate::BackendError> {
                Ok(())
            }

            async fn sign_crl(
                &self,
                req: $crate::CrlRequest,
            ) -> Result<Vec<u8>, $crate::BackendError> {
                let work = $crate::local::sign_crl(&self.issuer, req);
                $crate::metrics::timed(&self.name, $kind, $crate::metrics::Operation::Crl, work)
                    .await
            }

            async fn sign_ocsp(
                &self,
                req: $crate::local::ocsp::OcspResponseRequest,
            ) -> Result<Vec<u8>, $crate::BackendError> {
                let work = $crate::local::sign_ocsp(&self.issuer, req);
                $crate::metrics::timed(&self.name, $kind, $crate::metrics::Operation::Ocsp, work)
                    .await
            }

            async fn sign_ca_certificate(
                &self,
                template: $crate::CaTemplate,
                subject_spki: &[u8],
                journal: &dyn $crate::IssuanceJournal,
            ) -> Result<Vec<u8>, $crate::BackendError> {
                let work = $crate::local::template::issue_ca(
                    &template,
                    subject_spki,
                    &self.issuer,
                    journal,
                );
                $crate::metrics::timed(
                    &self.name,
                    $kind,
                    $crate::metrics::Operation::CaCertificate,
                    work,
                )
                .await
            }

            fn kind(&self) -> &'static str {
                $kind
            }

            async fn probe(&self) -> Result<(), $crate::BackendError> {
                $crate::local::probe(&self.issuer).await
            }

            fn session_use(&self) -> Option<$crate::SessionUse> {
                self.session_use()
            }

            async fn sign_checkpoint(
                &self,
                message: &[u8],
            ) -> Result<($crate::KeyAlgorithm, Vec<u8>), $crate::BackendError> {
                $crate::local::checkpoint::sign_checkpoint(&self.issuer, message).await
            }

            fn signatures(&self) -> Option<u64> {
                Some(self.issuer.signatures())
            }
        }
    };
}
pub(crate) use local_signing_backend;
