//! Operator commands beside `serve`: revocation, CRLs, CA inventory, backend checks, users,
//! OAuth2 clients and admin tokens, and the audit trail ([`audit`]). They open the same store
//! and issuers as the server (a running server sees their effects), and record what they change
//! in the audit trail as the command line's principal. A secret (a client secret, an admin
//! token) is printed once, to standard output, and never logged.

pub mod audit;

use std::path::PathBuf;

use pkid_backends::RevocationReason;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::audit::{Event, COMMAND_LINE};
use crate::config::Config;
use crate::startup::{open_authorities, Authorities, BoxError};

/// A time given on the command line (`flag`: the option's name, for the error).
fn rfc3339_option(flag: &str, text: &str) -> Result<i64, BoxError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("{flag} {text:?} is not an RFC 3339 time: {e}").into())
}

/// Records what a command changed: `action` on `resource`, by the command line.
async fn record(
    authorities: &Authorities,
    action: &str,
    resource: String,
    detail: serde_json::Value,
) {
    authorities
        .audit
        .record(Event::success(COMMAND_LINE, action, resource).with(detail))
        .await;
}

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
        .map(|text| rfc3339_option("--invalidity-date", text))
        .transpose()?;
    let serial = crate::revocation::canonical_serial_hex(serial);
    let authorities = open_authorities(cfg).await?;
    authorities
        .revocation
        .revoke_with_invalidity(&serial, reason, invalidity_date)
        .await?;
    record(
        &authorities,
        "certificate.revoked",
        format!("certificate:{serial}"),
        serde_json::json!({ "reason": reason.code(), "invalidity_date": invalidity_date }),
    )
    .await;
    // Publish now rather than at the next fetch.
    let issuer = authorities
        .store
        .certificate(&serial)
        .await?
        .map(|c| c.issuer);
    if let Some(issuer) = issuer {
        if authorities
            .revocation
            .issuer_names()
            .await
            .contains(&issuer)
        {
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

/// `pkid eab create [--directory NAME] [--note N]`: a fresh single-use external account binding
/// key for an ACME directory (`default` unless named); the account it binds belongs to that
/// directory. The HMAC key is printed once (it is freshly generated) and stored sealed.
pub async fn eab_create(
    cfg: &Config,
    directory: &str,
    note: &str,
    policy: &crate::ra::BindingPolicy,
) -> Result<(), BoxError> {
    if !cfg
        .acme_directories()
        .iter()
        .any(|(name, _)| name == directory)
    {
        return Err(format!("no ACME directory named {directory:?}").into());
    }
    let authorities = open_authorities(cfg).await?;
    let (kid, hmac_key) = crate::ra::mint_eab_key(
        &authorities.store,
        &authorities.kek,
        directory,
        note,
        policy,
    )
    .await?;
    record(
        &authorities,
        "eab_key.created",
        format!("eab-key:{kid}"),
        serde_json::json!({ "directory": "default" }),
    )
    .await;
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

/// `pkid admin token create [--note N] [--expires-days D]`: an operator bearer token for
/// `/admin/…`, printed once; only its SHA-256 is stored. It expires after `expires_days` days
/// (default `identity.admin_token_days`).
pub async fn admin_token_create(
    cfg: &Config,
    note: &str,
    expires_days: Option<u32>,
) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    let days = expires_days.unwrap_or(cfg.identity.admin_token_days);
    if days == 0 {
        return Err(
            "an admin token is valid for at least one day (--expires-days 1 or more)".into(),
        );
    }
    let (id, token, expires_at) =
        crate::identity::admin_tokens::create(&authorities.store, note, days).await?;
    record(
        &authorities,
        "admin_token.created",
        format!("admin-token:{id}"),
        serde_json::json!({ "expires_at": expires_at }),
    )
    .await;
    println!("id: {id}");
    println!("token: {}", token.as_str());
    println!("expires: {}", crate::pki::rfc3339(expires_at));
    Ok(())
}

/// `pkid admin token list`: every admin token's id, times and state (never the token).
pub async fn admin_token_list(cfg: &Config) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    let at = crate::store::now();
    for token in crate::identity::admin_tokens::list(&authorities.store).await? {
        let state = match (token.revoked_at, token.expires_at) {
            (Some(_), _) => "revoked",
            (None, Some(expires)) if expires <= at => "expired",
            (None, _) => "live",
        };
        println!(
            "{}\t{state}\tcreated={}\texpires={}\t{}",
            token.id,
            crate::pki::rfc3339(token.created_at),
            token
                .expires_at
                .map_or_else(|| "never".to_string(), crate::pki::rfc3339),
            token.note
        );
    }
    Ok(())
}

/// `pkid admin token revoke ID`: the token stops working at its next use.
pub async fn admin_token_revoke(cfg: &Config, id: &str) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    if !crate::identity::admin_tokens::revoke(&authorities.store, id).await? {
        return Err(format!("no live admin token with id {id:?}").into());
    }
    record(
        &authorities,
        "admin_token.revoked",
        format!("admin-token:{id}"),
        serde_json::json!({}),
    )
    .await;
    println!("revoked admin token {id}");
    Ok(())
}

/// What `pkid user create` reads besides the name and roles.
pub struct UserOptions {
    pub email: Option<String>,
    /// Read the password from standard input (one line; the line break is not part of it).
    pub password_stdin: bool,
    /// A certificate (PEM or DER) to link to the user.
    pub certificate: Option<PathBuf>,
}

/// The password on standard input: all of it, less one line break at the end.
fn password_from_stdin() -> Result<zeroize::Zeroizing<String>, BoxError> {
    use std::io::Read;
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    let end = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .map_or(text.len(), str::len);
    Ok(zeroize::Zeroizing::new(text[..end].to_string()))
}

/// `pkid user create NAME --role ROLE …`.
pub async fn user_create(
    cfg: &Config,
    username: &str,
    roles: &[String],
    options: UserOptions,
) -> Result<(), BoxError> {
    use crate::identity::users::{create_user, NewUser};
    let roles = roles
        .iter()
        .map(|r| r.parse::<crate::identity::Role>())
        .collect::<Result<Vec<_>, _>>()?;
    let password = options
        .password_stdin
        .then(password_from_stdin)
        .transpose()?;
    let certificate = options
        .certificate
        .as_ref()
        .map(|path| std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display())))
        .transpose()?;
    let authorities = open_authorities(cfg).await?;
    let user = create_user(
        &authorities.store,
        &NewUser {
            username,
            roles,
            email: options.email.as_deref(),
            password: password.as_ref().map(|p| p.as_str()),
            certificate: certificate.as_deref(),
        },
    )
    .await?;
    record(
        &authorities,
        "user.created",
        format!("user:{}", user.username),
        serde_json::json!({ "id": user.id, "roles": user.roles, "certificate": certificate.is_some() }),
    )
    .await;
    println!("id: {}", user.id);
    println!("username: {}", user.username);
    println!("roles: {}", user.roles);
    for link in authorities.store.user_certificates(&user.id).await? {
        println!(
            "certificate: subject={} issuer={}",
            link.subject_dn, link.issuer_dn
        );
    }
    Ok(())
}

/// `pkid user list`: each user, then its linked certificates and bound keys, indented.
pub async fn user_list(cfg: &Config) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    for listed in crate::identity::users::list_users(&authorities.store).await? {
        let user = &listed.user;
        println!(
            "{}\tid={}\troles={}\temail={}\tenabled={}\tpassword={}",
            user.username,
            user.id,
            user.roles.replace(' ', ","),
            user.email.as_deref().unwrap_or("-"),
            yes_no(user.enabled),
            yes_no(user.password_hash.is_some()),
        );
        for link in &listed.certificates {
            println!(
                "  certificate\tsubject={}\tissuer={}",
                link.subject_dn, link.issuer_dn
            );
        }
        for key in &listed.keys {
            println!("  key\t{}", key.thumbprint);
        }
    }
    Ok(())
}

/// `pkid user disable NAME`: the user's tokens and links stop working at their next use.
pub async fn user_disable(cfg: &Config, username: &str) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    crate::identity::users::disable_user(&authorities.store, username).await?;
    record(
        &authorities,
        "user.disabled",
        format!("user:{username}"),
        serde_json::json!({}),
    )
    .await;
    println!("disabled user {username}");
    Ok(())
}

/// Where `pkid user bind-key` takes the key from.
pub enum KeySource {
    /// A JWK file.
    JwkFile(PathBuf),
    /// An ACME account, by its URL (`…/acme/acct/{id}`) or id.
    Account(String),
}

/// `pkid user bind-key NAME (--jwk FILE | --account ACCOUNT)`: a public key the user signs
/// requests with.
pub async fn user_bind_key(cfg: &Config, username: &str, key: KeySource) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    let text = match key {
        KeySource::JwkFile(file) => std::fs::read_to_string(&file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?,
        KeySource::Account(account) => {
            let id = account
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            let row = authorities
                .store
                .reads()
                .account(id)
                .await?
                .ok_or_else(|| format!("no ACME account {account}"))?;
            if row.status != crate::store::AccountStatus::Valid {
                return Err(format!("the ACME account {account} is not valid").into());
            }
            row.jwk
        }
    };
    let thumbprint = crate::identity::users::bind_key(&authorities.store, username, &text).await?;
    record(
        &authorities,
        "user.key_bound",
        format!("user:{username}"),
        serde_json::json!({ "thumbprint": thumbprint }),
    )
    .await;
    println!("bound key {thumbprint} to user {username}");
    Ok(())
}

/// `pkid client create NAME --scopes "S1 S2" [--grant-type G] [--json]`: the client id and its
/// secret, printed once.
pub async fn client_create(
    cfg: &Config,
    name: &str,
    scopes: &str,
    grant_types: &[String],
    as_json: bool,
) -> Result<(), BoxError> {
    use crate::identity::clients::{create_client, GrantType};
    let grant_types = grant_types
        .iter()
        .map(|g| g.parse::<GrantType>())
        .collect::<Result<Vec<_>, _>>()?;
    let authorities = open_authorities(cfg).await?;
    let (client, secret) = create_client(&authorities.store, name, scopes, &grant_types).await?;
    record(
        &authorities,
        "client.created",
        format!("client:{}", client.client_id),
        serde_json::json!({ "name": client.name, "scopes": client.scopes }),
    )
    .await;
    let split =
        |text: &str| -> Vec<String> { text.split_ascii_whitespace().map(str::to_string).collect() };
    if as_json {
        println!(
            "{}",
            serde_json::json!({
                "client_id": client.client_id,
                "client_secret": secret.as_str(),
                "name": client.name,
                "scopes": split(&client.scopes),
                "grant_types": split(&client.grant_types),
            })
        );
    } else {
        println!("client_id: {}", client.client_id);
        println!("client_secret: {}", secret.as_str());
        println!("scopes: {}", client.scopes);
        println!("grant_types: {}", client.grant_types);
    }
    Ok(())
}

/// `pkid client list`: every client (never its secret).
pub async fn client_list(cfg: &Config) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    for client in crate::identity::clients::list_clients(&authorities.store).await? {
        println!(
            "{}\tclient_id={}\tscopes={}\tgrant_types={}\tenabled={}",
            client.name,
            client.client_id,
            client.scopes.replace(' ', ","),
            client.grant_types.replace(' ', ","),
            if client.enabled { "yes" } else { "no" },
        );
    }
    Ok(())
}

/// `pkid client disable NAME`: its tokens stop working at their next use.
pub async fn client_disable(cfg: &Config, name: &str) -> Result<(), BoxError> {
    let authorities = open_authorities(cfg).await?;
    crate::identity::clients::disable_client(&authorities.store, name).await?;
    record(
        &authorities,
        "client.disabled",
        format!("client-name:{name}"),
        serde_json::json!({}),
    )
    .await;
    println!("disabled client {name}");
    Ok(())
}
