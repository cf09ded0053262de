//! http-01 (RFC 8555 §8.3): `http://NAME:PORT/.well-known/acme-challenge/TOKEN` answers with the
//! key authorization. PORT is `acme.http01_port` (80 in production); redirects are followed
//! (at most 10, set on the validator's client) and at most 8 KiB are read.

use std::net::IpAddr;

use super::{ValidationError, Validator};
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
        let mut resp = self.http.get(&url).send().await.map_err(|e| {
            let detail = format!("fetching {url}: {}", error_chain(&e));
            if is_dns_error(&e) {
                ValidationError::dns(detail)
            } else {
                ValidationError::connection(detail)
            }
        })?;
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
            .map_err(|e| ValidationError::connection(format!("reading {url}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ValidationError::unauthorized(format!(
                    "{url} answered with more than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let got = String::from_utf8_lossy(&body);
        if got.trim_end() == key_authorization {
            Ok(())
        } else {
            let shown: String = got.chars().take(120).collect();
            Err(ValidationError::incorrect_response(format!(
                "{url}: the key authorization does not match; expected {key_authorization:?}, got {shown:?}"
            )))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn is_dns_error(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<hickory_resolver::ResolveError>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}
