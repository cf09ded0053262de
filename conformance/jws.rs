//! Crafted requests against pkid's JWS checks (RFC 8555 §6.2, §6.5): what real clients never send.

use std::time::Duration;

use serde_json::json;

use crate::harness::client::AcmeClient;
use crate::harness::environment::{within, Environment};

const TEST_BOUND: Duration = Duration::from_secs(60);

/// A nonce is redeemable once (§6.5): the same nonce on a second request gets 400 `badNonce`,
/// and that answer carries a fresh nonce to retry with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_nonce_is_rejected() {
    let env = Environment::start().await;
    within(TEST_BOUND, async {
        let client = AcmeClient::new(&env.pkid.directory_url(), &env.pkid.root_pem()).await;
        let url = client.resource("newAccount");
        let payload = json!({"termsOfServiceAgreed": true});
        let nonce = client.new_nonce().await;

        let first = client.post_with_nonce(&url, Some(&payload), &nonce).await;
        assert_eq!(first.status, 201, "newAccount: {}", first.describe());

        let replay = client.post_with_nonce(&url, Some(&payload), &nonce).await;
        assert_eq!(replay.status, 400, "replayed nonce: {}", replay.describe());
        assert_eq!(
            replay.problem_type().as_deref(),
            Some("urn:ietf:params:acme:error:badNonce"),
            "replayed nonce: {}",
            replay.describe()
        );
        let fresh = replay
            .header("replay-nonce")
            .unwrap_or_else(|| panic!("badNonce without Replay-Nonce: {}", replay.describe()));
        assert_ne!(fresh, nonce, "the retry nonce is a new one");

        // The same account key again, with a good nonce: the existing account (§7.3.1).
        let again = client.post_with_nonce(&url, Some(&payload), &fresh).await;
        assert_eq!(
            again.status,
            200,
            "newAccount for a known key: {}",
            again.describe()
        );
        assert_eq!(again.location(), first.location(), "same account URL");
    })
    .await;
}

// JWS-signed REST requests (`identity::signed_request`) end to end go here once users exist:
// bind an ES256 key to a user (`pkid user bind-key NAME --jwk FILE`), take a nonce from
// `/acme/new-nonce`, send `GET /identity/me` signed with `kid` = `{origin}/identity/keys/
// {thumbprint}` and `url` = the request URL, and expect that user; then the same nonce again, a
// wrong `url` and an unbound key, each 401.
