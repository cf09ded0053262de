//! Operator commands beside `serve`: revocation, CRLs, CA inventory, backend checks.
//! They open the same store and issuers as the server (a running server sees their effects).

use std::path::PathBuf;

use pkid_backends::RevocationReason;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::Config;
use crate::startup::{open_authorities, BoxError};

/// `pkid revoke SERIAL --reason R [--invalidity-date RFC3339]`.
pub async fn revoke(
    cfg: &Config,
    serial: &str,
    reason: u8,
    invalidity_date: Option<&str>,
) -> Result<(), BoxError> {
    let reason = RevocationReason::from_code(reason)
        .ok_or_else(|| format!("reason {reason} is not an RFC 5280 reason code (0-10, not 7)"))?;
    let invalidity_date = invalidity_date
        .map(|text| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|e| format!("--invalidity-date {text:?} is not an RFC 3339 time: {e}"))
        })
        .transpose()?;
    let serial = crate::revocation::canonical_serial_hex(serial);
    let authorities = open_authorities(cfg).await?;
    authorities
        .revocation
        .revoke_with_invalidity(&serial, reason, invalidity_date)
        .await?;
    // Publish now rather than at the next fetch.
    let issuer = authorities
        .store
        .certificate(&serial)
        .await?
        .map(|c| c.issuer);
    if let Some(issuer) = issuer {
        if authorities.revocation.issuer_names().contains(&issuer) {
            authorities.revocation.refresh_issuer(&issuer).await;
        }
    }
    println!("revoked {serial} (reason {})", reason.code());
    Ok(())
}

/// `pkid crl generate [ISSUER] [--shard K | --delta] [--out FILE]`: sign a fresh CRL now (the
/// complete one, shard K, or the delta CRL); PEM to stdout or a file.
pub async fn crl_generate(
    cfg: &Config,
    issuer: Option<&str>,
    scope: crate::revocation::CrlScope,
    out: Option<PathBuf>,
) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    let issuer = issuer
        .unwrap_or(authorities.default_ca.name.as_str())
        .to_string();
    let crl = authorities
        .revocation
        .generate_scope_now(&issuer, scope)
        .await?;
    let pem = crate::pki::pem::to_pem("X509 CRL", &crl.der);
    match out {
        Some(path) => {
            std::fs::write(&path, &pem).map_err(|e| format!("writing {}: {e}", path.display()))?;
            eprintln!(
                "CRL number {} for {issuer} written to {}",
                crl.number,
                path.display()
            );
        }
        None => print!("{pem}"),
    }
    Ok(())
}

/// `pkid ca list`: every configured issuer with its certificate.
pub async fn ca_list(cfg: &Config) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    for ca in &authorities.cas {
        let caps = ca.backend.capabilities();
        let chain = ca.backend.ca_chain();
        let described = chain
            .first()
            .and_then(|der| X509Certificate::from_der(der).ok())
            .map(|(_, c)| format!("{} (valid until {})", c.subject(), c.validity().not_after))
            .unwrap_or_else(|| "issuer certificate not known yet".into());
        println!(
            "{}\tissue={} revoke={} crl={} ocsp={}\t{described}",
            ca.name, caps.issue, caps.revoke, caps.crl, caps.ocsp
        );
    }
    Ok(())
}

/// `pkid backend check NAME`: a signing round-trip through the backend — a short-lived
/// certificate for a throwaway key, checked against the backend's chain.
pub async fn backend_check(cfg: &Config, name: &str) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    let ca = authorities
        .cas
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("no backend named {name:?}"))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec!["backend-check.pkid.invalid".to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr_der = params.serialize_request(&key)?.der().to_vec();
    let csr = crate::pki::csr::check_csr(&csr_der).map_err(|e| format!("test CSR: {e:?}"))?;
    // A local key signs a five-minute certificate; an upstream CA chooses its own validity,
    // which must fit the default ACME profile, as for any issuance through it.
    let validity = if ca.backend.capabilities().journals {
        300
    } else {
        cfg.acme
            .profiles
            .get(&cfg.acme.default_profile)
            .map_or(300, |p| i64::from(p.validity_days.max(1)) * 86400)
    };
    let profile = crate::ca::IssuanceProfile::tls_server("backend-check", validity);
    let started = std::time::Instant::now();
    let issued = ca.issue(&csr, &profile, None, None).await?;
    let elapsed = started.elapsed();
    let chain = ca.backend.ca_chain();
    let issuer_der = chain
        .first()
        .ok_or("the backend has no issuer certificate")?;
    let (_, issuer) = X509Certificate::from_der(issuer_der).map_err(|e| format!("issuer: {e}"))?;
    let (_, leaf) = X509Certificate::from_der(&issued.der).map_err(|e| format!("leaf: {e}"))?;
    leaf.verify_signature(Some(issuer.public_key()))
        .map_err(|e| format!("the signature does not verify with the issuer key: {e}"))?;
    println!(
        "backend {name}: OK, signed serial {} in {} ms",
        issued.serial,
        elapsed.as_millis()
    );
    Ok(())
}

/// `pkid eab create [--note N]`: a fresh single-use external account binding key for the
/// default directory. The HMAC key is printed once (it is freshly generated) and stored sealed.
pub async fn eab_create(
    cfg: &Config,
    note: &str,
    policy: &crate::ra::BindingPolicy,
) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    let (kid, hmac_key) = crate::ra::mint_eab_key(
        &authorities.store,
        &authorities.kek,
        "default",
        note,
        policy,
    )
    .await?;
    println!("kid: {kid}");
    println!("hmac_key: {}", hmac_key.as_str());
    Ok(())
}

/// `pkid eab list`: key ids and whether an account is bound to them (never the keys).
pub async fn eab_list(cfg: &Config) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    for key in authorities.store.eab_keys().await? {
        println!(
            "{}\tdirectory={}\tcreated={}\tbound={}\t{}",
            key.kid,
            key.directory,
            crate::pki::rfc3339(key.created_at),
            key.bound_account.as_deref().unwrap_or("-"),
            key.note
        );
    }
    Ok(())
}

/// `pkid ca create NAME`: create the CA material of a configured backend now (a software
/// hierarchy, or a PKCS#11 key and its certificate) instead of at the first start, and show it.
/// Existing material is kept: this never replaces a CA.
pub async fn ca_create(cfg: &Config, name: &str) -> Result<(), BoxError> {
    if !cfg.backends.contains_key(name) {
        return Err(
            format!("no backend named {name:?} in the configuration ([backends.{name}])").into(),
        );
    }
    let authorities = open_authorities(cfg).await?;
    let ca = authorities
        .cas
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("backend {name:?} did not open"))?;
    let chain = ca.backend.ca_chain();
    if chain.is_empty() {
        println!("{name}: an upstream CA; its chain is known after the first issuance");
    }
    for der in chain {
        let (_, cert) =
            X509Certificate::from_der(&der).map_err(|e| format!("CA certificate: {e}"))?;
        println!(
            "{name}: {} issued by {} until {}",
            cert.subject(),
            cert.issuer(),
            cert.validity().not_after
        );
    }
    Ok(())
}

/// `pkid admin token create [--note N]`: an operator bearer token for `/admin/…`, printed once;
/// only its SHA-256 is stored.
pub async fn admin_token_create(cfg: &Config, note: &str) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    let (id, token) = crate::identity::admin_tokens::create(&authorities.store, note).await?;
    println!("id: {id}");
    println!("token: {}", token.as_str());
    Ok(())
}
