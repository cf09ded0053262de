//! Operating pkid safely (issue 29, items 4 and 5, and the audit trail), against a real pkid:
//!
//! - `ocsp`: OCSP is no signing oracle — a request with a nonce, for a serial pkid never issued,
//!   or for several certificates signs nothing (the CA key's signatures counted in pkid's log),
//!   `openssl ocsp` still verifies the answer it gets, and a client past its limit gets 429 with
//!   the `tryLater` status;
//! - `tls`: pkid's own TLS certificate is renewed while it serves (a short lifetime: two
//!   handshakes, two serials, one process, an open connection kept), and an operator's
//!   certificate is served, then replaced on disk and served again (a pair that does not hold
//!   together kept out);
//! - `audit`: `pkid audit verify` passes after an issuance, a revocation and a login, with a
//!   signed checkpoint, and fails at the first bad entry after one byte of a past entry is
//!   changed, an entry removed, or two entries swapped in the SQLite file.

mod audit;
mod ocsp;
mod tls;

use std::time::Duration;

use crate::harness::client::{csr_der, AcmeClient};
use crate::harness::environment::Environment;
use crate::harness::http01::Http01Responder;

pub(crate) const TEST_BOUND: Duration = Duration::from_secs(120);

/// Issues a certificate for `names` with `client`; returns its PEM chain.
pub(crate) async fn issue(
    client: &mut AcmeClient,
    responder: &Http01Responder,
    names: &[&str],
) -> String {
    let order = client.ready_order(names, responder).await;
    let answer = client.finalize(&order, &csr_der(names)).await;
    assert_eq!(answer.status, 200, "finalize: {}", answer.describe());
    let issued = client.wait_valid(&order).await;
    let url = issued
        .certificate_url()
        .unwrap_or_else(|| panic!("valid order without certificate: {}", issued.body));
    client.download_certificate(&url).await
}

/// A client of `env`'s pkid with an http-01 responder.
pub(crate) async fn acme(env: &Environment) -> (AcmeClient, Http01Responder) {
    let responder = Http01Responder::bind(env.http01_port).await;
    let client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
    (client, responder)
}
