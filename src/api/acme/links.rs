//! Every absolute ACME URL is built here from one base (smallstep's `Linker`).

#[derive(Debug, Clone)]
pub struct Links {
    /// `https://host:port`, no trailing slash.
    origin: String,
    /// `https://host:port/acme` (or `/acme/NAME` for a named directory), no trailing slash.
    base: String,
}

impl Links {
    /// `prefix`: the directory's path prefix, `/acme` or `/acme/NAME`.
    pub fn new(origin: &str, prefix: &str) -> Links {
        let origin = origin.trim_end_matches('/').to_string();
        Links {
            base: format!("{origin}{prefix}"),
            origin,
        }
    }
    /// The absolute URL of a request path (what a JWS `url` must equal).
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
    pub fn base(&self) -> &str {
        &self.base
    }
    pub fn directory(&self) -> String {
        format!("{}/directory", self.base)
    }
    pub fn new_nonce(&self) -> String {
        format!("{}/new-nonce", self.base)
    }
    pub fn new_account(&self) -> String {
        format!("{}/new-account", self.base)
    }
    pub fn new_order(&self) -> String {
        format!("{}/new-order", self.base)
    }
    pub fn new_authz(&self) -> String {
        format!("{}/new-authz", self.base)
    }
    pub fn renewal_info(&self) -> String {
        format!("{}/renewal-info", self.base)
    }
    pub fn revoke_cert(&self) -> String {
        format!("{}/revoke-cert", self.base)
    }
    pub fn key_change(&self) -> String {
        format!("{}/key-change", self.base)
    }
    pub fn account(&self, id: &str) -> String {
        format!("{}/acct/{id}", self.base)
    }
    pub fn account_orders(&self, id: &str) -> String {
        format!("{}/acct/{id}/orders", self.base)
    }
    pub fn order(&self, id: &str) -> String {
        format!("{}/order/{id}", self.base)
    }
    pub fn finalize(&self, id: &str) -> String {
        format!("{}/order/{id}/finalize", self.base)
    }
    pub fn authz(&self, id: &str) -> String {
        format!("{}/authz/{id}", self.base)
    }
    pub fn challenge(&self, id: &str) -> String {
        format!("{}/chall/{id}", self.base)
    }
    pub fn certificate(&self, serial: &str) -> String {
        format!("{}/cert/{serial}", self.base)
    }
    /// The account id a `kid` names, if it is one of ours.
    pub fn account_id_of<'a>(&self, kid: &'a str) -> Option<&'a str> {
        kid.strip_prefix(self.base.as_str())?
            .strip_prefix("/acct/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }
}
