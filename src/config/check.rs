//! The configuration's checks before start: what cannot be served is refused with a message
//! that names the setting, before anything is bound or opened.

use super::{Config, BACKEND_ANCHOR};

impl Config {
    /// Every absolute URL pkid writes (the ACME directory, account URLs that become JWS `kid`s
    /// and CAA `accounturi`s, the `url` a signed request must name, the issuer of access
    /// tokens) comes from `server.base_url`, or else from the request's Host header. Whoever
    /// reaches the listener chooses the Host header: beyond loopback, a base URL is required.
    /// The admin listener is an address of its own.
    fn check_listeners(&self) -> Result<(), String> {
        let listen = self.server.listen;
        if self.server.base_url.is_empty() && !listen.ip().to_canonical().is_loopback() {
            return Err(format!(
                "server.base_url must be set when server.listen ({listen}) is not a loopback \
                 address: without it every URL pkid writes (ACME accounts and orders, the url a \
                 signed request must name, CAA accounturi) would come from each request's Host \
                 header. Set it to the URL clients reach pkid at, e.g. https://ca.example:{}",
                listen.port()
            ));
        }
        if let Some(admin) = self.admin_listen()? {
            if admin == listen {
                return Err(format!(
                    "server.admin_listen ({admin}) must differ from server.listen"
                ));
            }
        }
        Ok(())
    }

    /// What the configuration must hold together before anything is opened: a base URL for a
    /// listener beyond loopback and an admin listener of its own, profiles whose policies can
    /// be written, directory names that are not ACME resource names, each directory's backend
    /// and default profile known, client certificate anchors naming configured backends, and
    /// trusted proxies that are address ranges.
    pub fn check(&self) -> Result<(), String> {
        self.check_listeners()?;
        let (certificate, key) = (&self.server.tls_certificate, &self.server.tls_key);
        if certificate.as_os_str().is_empty() != key.as_os_str().is_empty() {
            return Err("server.tls_certificate and server.tls_key go together: give both".into());
        }
        if self.server.tls_lifetime_secs < 2 {
            return Err("server.tls_lifetime_secs: at least 2 seconds".into());
        }
        if !self.backends.contains_key(&self.audit.checkpoint_backend) {
            return Err(format!(
                "audit.checkpoint_backend: backend {:?} is not configured",
                self.audit.checkpoint_backend
            ));
        }
        let registry = &self.ca.registry;
        if registry.key_custody == pkid_backends::KeyCustody::Pkcs11 && registry.pkcs11.is_none() {
            return Err(
                "ca.registry.key_custody is \"pkcs11\" but ca.registry.pkcs11 names no token"
                    .into(),
            );
        }
        for range in &self.acme.validation.denied_ranges {
            if !crate::pki::ip::is_range(range) {
                return Err(format!(
                    "acme.validation.denied_ranges: {range:?} is not a CIDR range"
                ));
            }
        }
        for entry in &self.server.client_ca_files {
            if let Some(backend) = entry.strip_prefix(BACKEND_ANCHOR) {
                if !self.backends.contains_key(backend) {
                    return Err(format!(
                        "server.client_ca_files: backend {backend:?} is not configured"
                    ));
                }
            }
        }
        for range in &self.server.trusted_proxies {
            if !crate::pki::ip::is_range(range) {
                return Err(format!(
                    "server.trusted_proxies: {range:?} is not an address or a CIDR range"
                ));
            }
        }
        for (name, p) in &self.acme.profiles {
            pkid_backends::builder::check_certificate_policies(&p.certificate_policies)
                .map_err(|e| format!("acme.profiles.{name}.certificate_policies: {e}"))?;
        }
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
        for n in self.acme.directories.keys() {
            let well_formed = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !well_formed || RESERVED.contains(&n.as_str()) || n == "default" {
                return Err(format!("acme.directories.{n}: a directory name is lowercase letters, digits and '-', and not an ACME resource name"));
            }
        }
        for (name, dir) in self.acme_directories() {
            let shown = (name != "default").then_some(name.as_str());
            let backend = dir.backend.unwrap_or_default();
            if !self.backends.contains_key(&backend) {
                return Err(format!(
                    "ACME directory {shown:?}: backend {backend:?} is not configured"
                ));
            }
            let default_profile = dir.default_profile.unwrap_or_default();
            let offered = self.acme.profiles.contains_key(&default_profile)
                && dir.profiles.contains(&default_profile);
            if !offered {
                return Err(format!(
                    "ACME directory {shown:?}: default profile {default_profile:?} is not offered"
                ));
            }
        }
        Ok(())
    }
}
