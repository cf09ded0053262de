//! Issuance from a template, through the same cycle as every leaf (journal, sign through the
//! backend, check, store): a leaf that copies a CSR's whole subject and SANs (Notary's profile:
//! RFC 5280 §4.1.2.6 subject, §4.2.1.6 SANs of every kind pkid writes), and a CA certificate
//! for another CA's key (an intermediate certified by this issuer, RFC 5280 §4.2.1.9), which is
//! stored as this issuer's certificate so that revoking it puts it on this issuer's CRL.
//!
//! The copied leaf is held to its profile by `check_profile`, as every leaf is: not a CA, no
//! certificate or CRL signing, TLS extended key usages only and those the profile asks for, no
//! longer-lived than the profile.

use std::collections::BTreeSet;

use pkid_backends::{CaTemplate, CertProfile, IssueRequest, Serial, SubjectAttribute};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::issuance::{check_profile, leaf_usages};
use super::{Ca, IssuanceProfile, IssueError, IssuedCert};
use crate::pki::csr::RequestedNames;

impl Ca {
    /// A leaf for `names` (a CSR read whole) under `profile`: its subject and SANs copied,
    /// keyUsage digitalSignature (and keyEncipherment for an RSA key), the profile's extended key
    /// usages, CRL distribution points `crl_urls` and then this issuer's own, OCSP and
    /// caIssuers. Valid for the profile's validity, and never past this CA's own certificate.
    pub async fn issue_copied(
        &self,
        names: &RequestedNames,
        profile: &IssuanceProfile,
        crl_urls: &[String],
    ) -> Result<IssuedCert, IssueError> {
        let now = time::OffsetDateTime::now_utc();
        let not_before = now - time::Duration::seconds(self.backdate_secs);
        let mut not_after = not_before + time::Duration::seconds(profile.validity_secs);
        if let Some(ca_not_after) = self.certificate_not_after() {
            not_after = not_after.min(ca_not_after);
        }
        if not_after <= now {
            return Err(IssueError::Mismatch(
                "the issuing CA's certificate has expired".into(),
            ));
        }
        let (key_usage, ext_key_usage) = leaf_usages(&names.public_key, profile);
        let serial = Serial::random();
        let serial_hex = serial.to_hex();
        let request = IssueRequest {
            csr_der: names.der.clone(),
            subject_public_key_der: names.public_key.clone(),
            common_name: None,
            subject: names.subject.clone(),
            dns_names: names.dns_names.clone(),
            ip_addresses: names.ip_addresses.clone(),
            email_addresses: names.email_addresses.clone(),
            uris: names.uris.clone(),
            serial,
            not_before,
            not_after,
            profile: CertProfile {
                key_usage,
                ext_key_usage,
                crl_distribution_points: crl_urls
                    .iter()
                    .cloned()
                    .chain(self.crl_url(None))
                    .collect(),
                ocsp_urls: self.ocsp_url().into_iter().collect(),
                ca_issuers_urls: self.ca_issuers_url().into_iter().collect(),
                must_staple: false,
                ocsp_no_check: false,
                certificate_policies: profile.certificate_policies.clone(),
            },
        };
        let journal = self.journal(not_before, not_after);
        let chain = self
            .sign_and_check(request, &journal, |leaf| {
                check_copied(leaf, names, profile, now.unix_timestamp())
            })
            .await?;
        self.store_issued(&serial_hex, &chain, &journal.pending)
            .await
    }

    /// A CA certificate for `subject_spki` from `template` (its serial, validity cap and
    /// revocation pointers chosen here: CRL distribution points `crl_urls` then this issuer's
    /// own, OCSP, caIssuers), signed by this issuer through its backend and stored as one of its
    /// certificates. Never valid past this issuer's own certificate. The chain returned starts
    /// with it and ends with this issuer's root.
    pub async fn certify_ca(
        &self,
        mut template: CaTemplate,
        subject_spki: &[u8],
        crl_urls: &[String],
    ) -> Result<IssuedCert, IssueError> {
        template.serial = Serial::random();
        if let Some(ca_not_after) = self.certificate_not_after() {
            template.not_after = template.not_after.min(ca_not_after);
        }
        template.crl_distribution_points =
            crl_urls.iter().cloned().chain(self.crl_url(None)).collect();
        template.ocsp_urls = self.ocsp_url().into_iter().collect();
        template.ca_issuers_urls = self.ca_issuers_url().into_iter().collect();
        let serial_hex = template.serial.to_hex();
        let journal = self.journal(template.not_before, template.not_after);
        let expected = template.subject.clone();
        let signed = self
            .backend
            .sign_ca_certificate(template, subject_spki, &journal)
            .await;
        let checked = signed
            .map_err(IssueError::from)
            .and_then(|der| check_ca(&der, subject_spki, &expected).map(|()| der));
        let der = match checked {
            Ok(der) => der,
            Err(e) => {
                self.store.abandon_tbs(&serial_hex).await?;
                return Err(e);
            }
        };
        let chain: Vec<Vec<u8>> = std::iter::once(der)
            .chain(self.backend.ca_chain())
            .collect();
        self.store_issued(&serial_hex, &chain, &journal.pending)
            .await
    }

    /// This CA's own certificate's notAfter.
    pub fn certificate_not_after(&self) -> Option<time::OffsetDateTime> {
        let chain = self.backend.ca_chain();
        let (_, cert) = X509Certificate::from_der(chain.first()?).ok()?;
        Some(cert.validity().not_after.to_datetime())
    }
}

/// The subject of a certificate as (type arcs, text) in RDN order.
fn subject_of(cert: &X509Certificate<'_>) -> Vec<(Vec<u64>, String)> {
    cert.subject()
        .iter_attributes()
        .map(|a| {
            let arcs = a
                .attr_type()
                .iter()
                .map(Iterator::collect)
                .unwrap_or_default();
            (arcs, a.as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn same_subject(cert: &X509Certificate<'_>, expected: &[SubjectAttribute]) -> bool {
    let expected: Vec<(Vec<u64>, String)> = expected
        .iter()
        .map(|a| (a.oid.clone(), a.value.clone()))
        .collect();
    subject_of(cert) == expected
}

/// Every SAN of a certificate, as `kind:value`, and how many there are.
fn alt_names(cert: &X509Certificate<'_>) -> (BTreeSet<String>, usize) {
    let mut names = BTreeSet::new();
    let mut count = 0;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            count += 1;
            let entry = match name {
                GeneralName::DNSName(d) => format!("dns:{d}"),
                GeneralName::RFC822Name(e) => format!("email:{e}"),
                GeneralName::URI(u) => format!("uri:{u}"),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => <[u8; 4]>::try_from(*b)
                        .map(|a| format!("ip:{}", std::net::IpAddr::from(a)))
                        .unwrap_or_default(),
                    _ => <[u8; 16]>::try_from(*b)
                        .map(|a| {
                            format!(
                                "ip:{}",
                                crate::pki::ip::canonical(std::net::IpAddr::from(a))
                            )
                        })
                        .unwrap_or_default(),
                },
                other => format!("other:{other}"),
            };
            names.insert(entry);
        }
    }
    (names, count)
}

fn requested_alt_names(names: &RequestedNames) -> BTreeSet<String> {
    names
        .dns_names
        .iter()
        .map(|d| format!("dns:{d}"))
        .chain(names.email_addresses.iter().map(|e| format!("email:{e}")))
        .chain(names.uris.iter().map(|u| format!("uri:{u}")))
        .chain(names.ip_addresses.iter().map(|ip| format!("ip:{ip}")))
        .collect()
}

/// The copied leaf carries the CSR's key, exactly its subject and SANs, and is what the
/// profile allows.
fn check_copied(
    der: &[u8],
    names: &RequestedNames,
    profile: &IssuanceProfile,
    now: i64,
) -> Result<(), IssueError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| IssueError::Mismatch(format!("unparseable certificate: {e}")))?;
    if cert.public_key().raw != names.public_key.as_slice() {
        return Err(IssueError::Mismatch(
            "the certificate's public key is not the CSR's".into(),
        ));
    }
    if !same_subject(&cert, &names.subject) {
        return Err(IssueError::Mismatch(
            "the certificate's subject is not the CSR's".into(),
        ));
    }
    let requested = requested_alt_names(names);
    let (found, count) = alt_names(&cert);
    let requested_count = names.dns_names.len()
        + names.email_addresses.len()
        + names.uris.len()
        + names.ip_addresses.len();
    if found != requested || count != requested_count {
        return Err(IssueError::Mismatch(format!(
            "the certificate names {found:?}, the request {requested:?}"
        )));
    }
    check_profile(&cert, profile, now)
}

/// A CA certificate for the key and subject asked for.
fn check_ca(der: &[u8], spki: &[u8], subject: &[SubjectAttribute]) -> Result<(), IssueError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| IssueError::Mismatch(format!("unparseable CA certificate: {e}")))?;
    if cert.public_key().raw != spki {
        return Err(IssueError::Mismatch(
            "the CA certificate does not carry the CA's key".into(),
        ));
    }
    if !same_subject(&cert, subject) {
        return Err(IssueError::Mismatch(
            "the CA certificate's subject is not the one asked for".into(),
        ));
    }
    let is_ca = cert
        .extensions()
        .iter()
        .any(|e| matches!(e.parsed_extension(), ParsedExtension::BasicConstraints(bc) if bc.ca));
    if !is_ca {
        return Err(IssueError::Mismatch(
            "the CA certificate is not a CA's".into(),
        ));
    }
    Ok(())
}
