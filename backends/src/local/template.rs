//! CA certificates and requests from a template, for CAs made at run time: a self-signed root,
//! an intermediate certified by a local issuer through the issuance journal (as a leaf is), and
//! the PKCS#10 request (RFC 2986) of a CA that waits for its certificate.
//!
//! A CA certificate (RFC 5280 §4.2.1.9, §4.2.1.3): basicConstraints `CA:TRUE` critical, with the
//! template's pathLenConstraint; keyUsage keyCertSign, cRLSign and digitalSignature, critical;
//! SKI and AKI; the template's subject in its order, DNS SANs, CRL distribution points and AIA.

use rcgen::{CertificateParams, CrlDistributionPoint, KeyIdMethod, SanType, SerialNumber};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509CertificationRequest};

use super::builder::{
    self, authority_info_access, capture_signed_by, check_serial, check_tbs_public_key,
    check_validity, distinguished_name, sign_tbs, CapturingKey, IssuerInfo,
};
use crate::keys::KeySigner;
use crate::{BackendError, IssuanceJournal, Serial, SubjectAttribute};

/// What a CA certificate (or a CA's request) says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaTemplate {
    /// In RDN order, each type at most once; must not be empty.
    pub subject: Vec<SubjectAttribute>,
    pub dns_names: Vec<String>,
    pub serial: Serial,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// pathLenConstraint; `None`: none.
    pub path_len: Option<u8>,
    /// Where the issuer's CRL is (none for a self-signed root).
    pub crl_distribution_points: Vec<String>,
    pub ocsp_urls: Vec<String>,
    pub ca_issuers_urls: Vec<String>,
}

impl CaTemplate {
    fn params(&self) -> Result<CertificateParams, BackendError> {
        check_serial(&self.serial)?;
        check_validity(self.not_before, self.not_after)?;
        let mut params = self.request_params()?;
        params.serial_number = Some(SerialNumber::from_slice(self.serial.normalized()));
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        if !self.crl_distribution_points.is_empty() {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: self.crl_distribution_points.clone(),
            }];
        }
        if let Some(aia) = authority_info_access(&self.ocsp_urls, &self.ca_issuers_urls) {
            params.custom_extensions.push(aia);
        }
        Ok(params)
    }

    /// What a CA's PKCS#10 request carries: the subject, the DNS names, and the CA's
    /// basicConstraints and keyUsage as requested extensions.
    fn request_params(&self) -> Result<CertificateParams, BackendError> {
        if self.subject.is_empty() {
            return Err(BackendError::Build("a CA needs a subject".into()));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&self.subject)?;
        for name in &self.dns_names {
            let ia5 = rcgen::string::Ia5String::try_from(name.as_str())
                .map_err(|_| BackendError::Build(format!("DNS name {name:?} is not ASCII")))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        builder::make_ca(&mut params, self.path_len);
        Ok(params)
    }
}

/// A self-signed CA certificate for `key`. Blocking (the key signs in place).
pub fn self_signed_ca(key: &dyn KeySigner, template: &CaTemplate) -> Result<Vec<u8>, BackendError> {
    builder::self_sign(&template.params()?, key)
}

/// The to-be-signed CA certificate of `subject_spki` under `issuer`.
pub fn build_ca_tbs(
    template: &CaTemplate,
    subject_spki: &[u8],
    issuer: &IssuerInfo,
) -> Result<Vec<u8>, BackendError> {
    let params = template.params()?;
    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(subject_spki)
        .map_err(|e| BackendError::Build(format!("unsupported subject public key: {e}")))?;
    let tbs = capture_signed_by(&params, &subject_key, issuer)?;
    check_tbs_public_key(&tbs, subject_spki)?;
    Ok(tbs)
}

/// An intermediate CA certificate under `issuer`, through the issuance cycle: built, handed to
/// `journal` (which may refuse), signed, checked.
pub async fn issue_ca(
    template: &CaTemplate,
    subject_spki: &[u8],
    issuer: &IssuerInfo,
    journal: &dyn IssuanceJournal,
) -> Result<Vec<u8>, BackendError> {
    let tbs = build_ca_tbs(template, subject_spki, issuer)?;
    builder::journal_and_sign(tbs, &template.serial, issuer, journal).await
}

/// The PKCS#10 request of a CA whose key is `key`, signed by it. Blocking.
pub fn ca_request(key: &dyn KeySigner, template: &CaTemplate) -> Result<Vec<u8>, BackendError> {
    let params = template.request_params()?;
    let capture = CapturingKey::new(key)?;
    params
        .serialize_request(&capture)
        .map_err(|e| BackendError::Build(format!("building the CA's request: {e}")))?;
    let info = capture.take()?;
    let der = sign_tbs(&info, key)?;
    let (rest, request) = X509CertificationRequest::from_der(&der)
        .map_err(|e| BackendError::Mismatch(format!("the CA's request does not parse: {e}")))?;
    if !rest.is_empty() || request.verify_signature().is_err() {
        return Err(BackendError::Mismatch(
            "the CA's request does not verify".into(),
        ));
    }
    Ok(der)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use time::Duration;
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::X509Certificate;

    use super::*;
    use crate::keys::SoftwareKey;
    use crate::tests::{assert_openssl_ok, now, write_pem};
    use crate::{KeyAlgorithm, NoJournal, StringKind};

    pub(crate) fn template(cn: &str, path_len: Option<u8>) -> CaTemplate {
        CaTemplate {
            subject: vec![
                SubjectAttribute::text(SubjectAttribute::COUNTRY_NAME, "TR"),
                SubjectAttribute::text(SubjectAttribute::STATE_OR_PROVINCE_NAME, "Izmir"),
                SubjectAttribute::text(SubjectAttribute::ORGANIZATION_NAME, "Widgits"),
                SubjectAttribute::text(SubjectAttribute::COMMON_NAME, cn),
            ],
            dns_names: vec!["ca.example.test".into()],
            serial: Serial::random(),
            not_before: now() - Duration::hours(1),
            not_after: now() + Duration::days(365),
            path_len,
            crl_distribution_points: Vec::new(),
            ocsp_urls: Vec::new(),
            ca_issuers_urls: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_root_certifies_an_intermediate_and_openssl_agrees() {
        let root_key = Arc::new(SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap());
        let root_der = self_signed_ca(root_key.as_ref(), &template("Root", None)).unwrap();
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        assert_eq!(
            crate::SubjectAttribute::COUNTRY_NAME,
            &[2, 5, 4, 6],
            "the constant names countryName"
        );
        assert_eq!(
            root.subject().to_string(),
            "C=TR, ST=Izmir, O=Widgits, CN=Root",
            "the subject in the template's order"
        );
        assert!(root.is_ca());

        let inter_key = SoftwareKey::generate(KeyAlgorithm::Rsa2048).unwrap();
        let request = ca_request(&inter_key, &template("Intermediate", Some(0))).unwrap();
        let (_, parsed) = X509CertificationRequest::from_der(&request).unwrap();
        assert_eq!(
            parsed.certification_request_info.subject_pki.raw,
            inter_key.public_key_der()
        );
        let mut inter_template = template("Intermediate", Some(0));
        inter_template.crl_distribution_points = vec!["http://ca.example.test/crl".into()];
        let issuer = IssuerInfo::new(root_der.clone(), root_key).unwrap();
        let inter_der = issue_ca(
            &inter_template,
            inter_key.public_key_der(),
            &issuer,
            &NoJournal,
        )
        .await
        .unwrap();
        let (_, inter) = X509Certificate::from_der(&inter_der).unwrap();
        let path_len = inter
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => Some((bc.ca, bc.path_len_constraint)),
                _ => None,
            });
        assert_eq!(path_len, Some((true, Some(0))));

        let dir = tempfile::tempdir().unwrap();
        write_pem(dir.path(), "root.pem", "CERTIFICATE", &[&root_der]);
        write_pem(dir.path(), "inter.pem", "CERTIFICATE", &[&inter_der]);
        let out = assert_openssl_ok(
            dir.path(),
            &["verify", "-x509_strict", "-CAfile", "root.pem", "inter.pem"],
        );
        assert!(out.contains("inter.pem: OK"), "{out}");
    }

    #[test]
    fn subjects_that_cannot_be_written_exactly_are_refused() {
        let key = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let mut repeated = template("Root", None);
        repeated.subject.push(SubjectAttribute::text(
            SubjectAttribute::COMMON_NAME,
            "Again",
        ));
        assert!(self_signed_ca(&key, &repeated).is_err());
        let mut not_printable = template("Root", None);
        not_printable.subject[0] = SubjectAttribute {
            oid: SubjectAttribute::COUNTRY_NAME.to_vec(),
            value: "T*".into(),
            kind: StringKind::Printable,
        };
        assert!(self_signed_ca(&key, &not_printable).is_err());
        let mut empty = template("Root", None);
        empty.subject.clear();
        assert!(ca_request(&key, &empty).is_err());
    }
}
