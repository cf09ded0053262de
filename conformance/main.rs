//! pkid's conformance suite: the project's one integration-test binary. Real third-party clients
//! (lego, certbot) and a small Rust ACME client drive a real `pkid serve` process on loopback, and
//! the results are checked with the tools a user would use (`openssl verify`, x509-parser).
//!
//! Run everything, installing what is missing, with `./conformance/run`.
//!
//! `harness/`, what the suites stand on (its `mod.rs` gives the layers):
//! - `tls.rs` crypto provider and HTTPS client; `process.rs` child guards, ports, tools
//! - `dns.rs`, `postgres.rs`, `softhsm.rs`, `upstream.rs` (pebble, cfssl): servers beside pkid
//! - `pkid.rs` the pkid process; `environment.rs` one test's world and its time bound
//! - `acme/` the ACME client's core (JWS, thumbprint, nonces, directory) and pkid-loadgen's layer;
//!   `client.rs` the suites' layer over it; `http01.rs` the http-01 responder
//! - `certs.rs` the checks a user would make (openssl, pkilint, CRL, OCSP)
//!
//! The suites, each a module named as its file (test names are `module::test`):
//! - `issuance`: one order issues at most once however finalize races; orders survive restarts
//! - `directories`: an account and every resource stay in the ACME directory they were made in
//!   (EAB of one directory not bypassed through another), on SQLite and PostgreSQL
//! - `jws`: crafted JWS requests (§6.2, §6.5) real clients never send; REST requests signed
//!   with a key bound to a user
//! - `badinput`: requests that break RFC 8555 get their problem and leave the database unchanged
//! - `identity`: who may do what (the authorization matrix: passwords, OAuth2 tokens, linked
//!   certificates, JWS-bound keys, admin tokens), the OAuth2 token endpoint, access tokens,
//!   password guessing slowed, the user, client and admin token commands
//! - `iam`: IAM's certificate linking requests and proxy certificates: both seed documents
//!   replayed with curl, the permission matrix and paging, proxies checked with openssl and
//!   voms-proxy-info, linked certificates and their proxies logging in by TLS
//! - `admin_listener`: the admin API on its own listener only (404 on the public one); no start
//!   beyond loopback without `server.base_url`
//! - `hostile`: hostile bytes on every surface (ACME, admin, CRL/OCSP) get bounded answers
//! - `caa`: CAA (RFC 8659, RFC 8657 parameters) as pkid's validator sees it
//! - `validation`: the validator is no SSRF tool: redirect and address rules, no echoed answers
//! - `rfc_features`: key rollover, profiles, ARI, pre-authorization, IP identifiers, order lists
//! - `third_party`: lego and certbot against pkid, every challenge type, EAB, revocation
//! - `revocation`: operator revocation as relying parties see it (CRL, OCSP, openssl)
//! - `backends`: issuance through PKCS#11 (SoftHSM2), an upstream ACME CA (pebble) and cfssl
//! - `proxy`: pkid's RFC 3820 proxy checks agree with `openssl verify -allow_proxy_certs`
//! - `client_certs`: TLS client authentication offered, never required (curl, openssl s_client);
//!   a linked certificate authenticates its user, by TLS or from a trusted proxy
//! - `czertainly`: the RA client operations (CZERTAINLY-style `/v1`, `/v2`) with a TLS client
//!   certificate: authorities, RA profiles, issue, renew, rekey, revoke on every authority kind
//! - `replicas`: several pkid replicas on one PostgreSQL share nonces, orders and CRLs
//! - `faults`: SIGKILL and PostgreSQL restarts under load, graceful stop, connection limits
//! - `load`: pkid-loadgen issues every ordered certificate and reports JSON that adds up
//! - `notary`: Notary's `/api/v1` (certificate requests, CAs made at run time in software and on
//!   SoftHSM, accounts): the seed replayed with curl, the role matrix, bad input, openssl verify,
//!   CRL and OCSP, schemathesis, `/metrics` and `/readyz`
//! - `surfaces`: one core under every surface: a CA made through `/api/v1` is a CZERTAINLY-style
//!   authority that issues and an IAM trust anchor; disabled there, it issues nothing elsewhere
//! - `ops`: OCSP signs nothing for nonces, unknown serials or several CertIDs, and is limited
//!   per client; pkid's TLS certificate renewed while serving, an operator's reloaded; the
//!   audit trail verifies after real traffic and fails at the first tampered entry

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod admin_listener;
mod backends;
mod badinput;
mod caa;
mod client_certs;
mod czertainly;
mod directories;
mod faults;
mod hostile;
mod iam;
mod identity;
mod issuance;
mod jws;
mod load;
mod notary;
mod ops;
mod proxy;
mod replicas;
mod revocation;
mod rfc_features;
mod surfaces;
mod third_party;
mod validation;
