//! http-01 (RFC 8555 §8.3): `http://NAME:PORT/.well-known/acme-challenge/TOKEN` answers with the
//! key authorization. PORT is `acme.http01_port` (80 in production); redirects are followed
//! within the rules of `address` (set on the validator's client), every address is checked
//! before a connection, and at most 8 KiB are read. Problems say what was wrong in pkid's words:
//! neither the answer nor the HTTP client's error chain is echoed.

use std::net::IpAddr;

use super::{AddressesRefused, RedirectRefused, ValidationError, Validator};
use crate::pki::csr::Ident;

const MAX_BODY: usize = 8 * 1024;

impl Validator {
    /// RFC 8555 §8.3.
    pub(super) async fn http01(
        &self,
        ident: &Ident,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), ValidationError> {
        let host = match ident {
            Ident::Dns(d) => d.clone(),
            Ident::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Ident::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        };
        let url = format!(
            "http://{host}:{}/.well-known/acme-challenge/{token}",
            self.http01_port
        );
        if let Ident::Ip(ip) = ident {
            let target = std::net::SocketAddr::new(*ip, self.http01_port);
            if !self.addresses.allows(target) {
                return Err(ValidationError::connection(format!(
                    "{url}: the address is refused by the validation address policy"
                )));
            }
        }
        let mut resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| fetch_error(&url, &e))?;
        if !resp.status().is_success() {
            return Err(ValidationError::unauthorized(format!(
                "{url} answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|_| ValidationError::connection(format!("{url}: the answer broke off")))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ValidationError::unauthorized(format!(
                    "{url} answered with more than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // What was answered is not echoed: after a redirect it may come from anywhere.
        if String::from_utf8_lossy(&body).trim_end() == key_authorization {
            Ok(())
        } else {
            Err(ValidationError::incorrect_response(format!(
                "{url}: the answer is not the key authorization {key_authorization:?}"
            )))
        }
    }
}

/// What a failed fetch says: what went wrong, in pkid's words. The error's own chain is not
/// shown: it can name addresses and ports the validator tried, which would make it a scanner.
fn fetch_error(url: &str, e: &reqwest::Error) -> ValidationError {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<RedirectRefused>() {
            return ValidationError::connection(format!("{url}: {refused}"));
        }
        if let Some(refused) = s.downcast_ref::<AddressesRefused>() {
            return ValidationError::connection(format!("{url}: {refused}"));
        }
        if s.downcast_ref::<hickory_resolver::ResolveError>().is_some() {
            return ValidationError::dns(format!("{url}: the name could not be resolved"));
        }
        source = s.source();
    }
    let what = if e.is_timeout() {
        "the connection timed out"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_connect() {
        "the connection was refused or could not be made"
    } else {
        "the exchange failed"
    };
    ValidationError::connection(format!("{url}: {what}"))
}
