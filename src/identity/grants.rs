//! Issuing access tokens: a user's password login (Notary's `POST /login`) and the OAuth2 token
//! endpoint's grants (RFC 6749 §4.3 `password`, §4.4 `client_credentials`), with their checks in
//! the order that leaks least: throttle first (`throttle`), then the client, then the user.
//! Every failure to prove a secret counts towards the throttle; an unknown user and a wrong
//! password cost one argon2 check each and fail alike ([`GrantError::InvalidGrant`]).
//!
//! Scopes (§3.3): a client gets what it asks for among the scopes it is registered for (all of
//! them when it asks for none); asking for another is `invalid_scope`. Through the password
//! grant, a scope is further kept only if the user's roles allow it (`iam:admin.*` needs the
//! admin role); if nothing is left of what was asked, that is `invalid_scope` too.

use std::net::IpAddr;

use serde_json::json;

use super::authorize::{SCOPE_ADMIN_READ, SCOPE_ADMIN_WRITE};
use super::clients::{self, Client, GrantType};
use super::jwt::{Claims, Kind};
use super::principal::Role;
use super::throttle::Throttled;
use super::users::find_login;
use super::Identity;
use crate::ra::ids::random_secret;
use crate::ra::AuditEvent;
use crate::store::{now, StoreError, UserRow};

/// An access token, as the token endpoint answers it (RFC 6749 §5.1).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
    /// The scopes granted, space-separated; `None`: not scope-limited (a login token).
    pub scope: Option<String>,
    /// The token's id (its `jti`), for the audit trail: not a secret.
    pub id: String,
}

/// Why no token was issued; the token endpoint answers each as RFC 6749 §5.2 says.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("client authentication failed")]
    InvalidClient,
    #[error("the credentials are not valid")]
    InvalidGrant,
    #[error("the client may not use this grant type")]
    UnauthorizedClient,
    #[error("{0}")]
    InvalidScope(String),
    #[error("too many failed attempts; retry later")]
    Throttled(Throttled),
    #[error("the token could not be issued: {0}")]
    Unavailable(String),
}

impl From<StoreError> for GrantError {
    fn from(e: StoreError) -> GrantError {
        GrantError::Unavailable(e.to_string())
    }
}

impl From<Throttled> for GrantError {
    fn from(t: Throttled) -> GrantError {
        GrantError::Throttled(t)
    }
}

/// A client's credentials as presented (HTTP Basic, or the form's `client_id`/`client_secret`).
pub struct ClientCredentials<'a> {
    pub client_id: &'a str,
    pub secret: &'a str,
}

/// The throttle's name for a client: apart from usernames.
fn client_key(client_id: &str) -> String {
    format!("client:{client_id}")
}

/// Whether a user with `roles` may hold `scope`.
fn role_allows(roles: &[Role], scope: &str) -> bool {
    match scope {
        SCOPE_ADMIN_READ | SCOPE_ADMIN_WRITE => roles.contains(&Role::Admin),
        _ => true,
    }
}

impl Identity {
    /// Notary's login: a token for the user `name` (a username, or an e-mail address) whose
    /// password this is; not scope-limited.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<IssuedToken, GrantError> {
        let issued = async {
            let user = self.check_password(name, password, peer).await?;
            Ok((self.issue_for_user(&user, None, None)?, user.username))
        }
        .await;
        self.audit_grant(name, "login", peer, None, issued).await
    }

    /// Records a user's grant: the token issued to the user (by their username), or a
    /// password that did not prove (by the name given). A throttled attempt checked nothing,
    /// and a store failure decided nothing: neither is recorded.
    async fn audit_grant(
        &self,
        name: &str,
        grant: &str,
        peer: IpAddr,
        client_id: Option<&str>,
        issued: Result<(IssuedToken, String), GrantError>,
    ) -> Result<IssuedToken, GrantError> {
        let (principal, issued) = match issued {
            Ok((token, username)) => (format!("user:{username}"), Ok(token)),
            Err(e) => (format!("user:{name}"), Err(e)),
        };
        self.record_grant(&principal, grant, peer, client_id, &issued)
            .await;
        issued
    }

    /// Records a grant's outcome for `principal` (see [`Identity::audit_grant`]).
    async fn record_grant(
        &self,
        principal: &str,
        grant: &str,
        peer: IpAddr,
        client_id: Option<&str>,
        issued: &Result<IssuedToken, GrantError>,
    ) {
        let action = "login";
        let detail = json!({ "grant": grant, "peer": peer.to_string(), "client_id": client_id });
        let event = match issued {
            Ok(token) => AuditEvent::success(principal, action, principal)
                .with(detail)
                .with(json!({ "token": token.id, "expires_in": token.expires_in })),
            Err(GrantError::Throttled(_) | GrantError::Unavailable(_)) => return,
            Err(e) => AuditEvent::failure(principal, action, principal, e.to_string()).with(detail),
        };
        self.audit.record(event).await;
    }

    /// RFC 6749 §4.3: the user's password, through an authenticated client.
    pub async fn password_grant(
        &self,
        client: &ClientCredentials<'_>,
        username: &str,
        password: &str,
        scope: Option<&str>,
        peer: IpAddr,
    ) -> Result<IssuedToken, GrantError> {
        let issued = async {
            let client = self
                .authenticate_client(client, GrantType::Password, peer)
                .await?;
            let requested = client_scopes(&client, scope)?;
            let user = self.check_password(username, password, peer).await?;
            let roles = Role::parse_list(&user.roles).unwrap_or_default();
            let granted: Vec<String> = requested
                .iter()
                .filter(|s| role_allows(&roles, s))
                .cloned()
                .collect();
            if granted.is_empty() && !requested.is_empty() {
                return Err(GrantError::InvalidScope(
                    "the user's roles allow none of the requested scopes".into(),
                ));
            }
            let token =
                self.issue_for_user(&user, Some(granted.join(" ")), Some(&client.client_id))?;
            Ok((token, user.username))
        }
        .await;
        self.audit_grant(username, "password", peer, Some(client.client_id), issued)
            .await
    }

    /// RFC 6749 §4.4: a token for the client itself.
    pub async fn client_credentials_grant(
        &self,
        client: &ClientCredentials<'_>,
        scope: Option<&str>,
        peer: IpAddr,
    ) -> Result<IssuedToken, GrantError> {
        let issued = async {
            let client = self
                .authenticate_client(client, GrantType::ClientCredentials, peer)
                .await?;
            let granted = client_scopes(&client, scope)?.join(" ");
            self.issue(
                &client.client_id,
                Kind::Client,
                Some(granted),
                Vec::new(),
                Some(&client.client_id),
            )
        }
        .await;
        let who = format!("client:{}", client.client_id);
        self.record_grant(&who, "client_credentials", peer, None, &issued)
            .await;
        issued
    }

    /// Whether these are an enabled client's credentials, throttled as the token endpoint's
    /// are: the client's id and scopes. For an endpoint that takes client credentials beside a
    /// user's token (IAM's `POST /iam/proxycert`).
    pub async fn check_client(
        &self,
        credentials: &ClientCredentials<'_>,
        peer: IpAddr,
    ) -> Result<(String, Vec<String>), GrantError> {
        let client = self.client_of(credentials, peer).await?;
        Ok((client.client_id, client.scopes))
    }

    /// The enabled client whose credentials these are; a failure counts towards the throttle.
    async fn client_of(
        &self,
        credentials: &ClientCredentials<'_>,
        peer: IpAddr,
    ) -> Result<Client, GrantError> {
        let key = client_key(credentials.client_id);
        self.throttle.check(&key, peer)?;
        let Some(client) =
            clients::authenticate(&self.reads, credentials.client_id, credentials.secret).await?
        else {
            self.throttle.failed(&key, peer);
            return Err(GrantError::InvalidClient);
        };
        self.throttle.succeeded(&key);
        Ok(client)
    }

    /// The client whose credentials these are, allowed `grant`.
    async fn authenticate_client(
        &self,
        credentials: &ClientCredentials<'_>,
        grant: GrantType,
        peer: IpAddr,
    ) -> Result<Client, GrantError> {
        let client = self.client_of(credentials, peer).await?;
        if !client.grant_types.contains(&grant) {
            return Err(GrantError::UnauthorizedClient);
        }
        Ok(client)
    }

    /// The enabled user `name` names, if `password` is theirs; one argon2 check whatever the
    /// outcome, and the same answer for every failure.
    async fn check_password(
        &self,
        name: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<UserRow, GrantError> {
        self.throttle.check(name, peer)?;
        let user = find_login(&self.reads, name).await?;
        let stored = user.as_ref().and_then(|u| u.password_hash.as_deref());
        let matched = self.passwords.check(password, stored).await;
        match user {
            Some(user) if matched && user.enabled => {
                self.throttle.succeeded(name);
                Ok(user)
            }
            _ => {
                self.throttle.failed(name, peer);
                tracing::info!(%peer, "a login failed");
                Err(GrantError::InvalidGrant)
            }
        }
    }

    fn issue_for_user(
        &self,
        user: &UserRow,
        scope: Option<String>,
        client_id: Option<&str>,
    ) -> Result<IssuedToken, GrantError> {
        let roles = Role::parse_list(&user.roles)
            .unwrap_or_default()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        self.issue(&user.id, Kind::User, scope, roles, client_id)
    }

    /// A signed token for `sub`, valid from now for the configured lifetime.
    fn issue(
        &self,
        sub: &str,
        kind: Kind,
        scope: Option<String>,
        roles: Vec<String>,
        client_id: Option<&str>,
    ) -> Result<IssuedToken, GrantError> {
        let at = now();
        let claims = Claims {
            iss: self.keys.issuer().to_string(),
            sub: sub.to_string(),
            kind,
            scope,
            roles,
            client_id: client_id.map(str::to_string),
            exp: at + self.settings.token_lifetime_secs,
            iat: at,
            jti: random_secret(12).to_string(),
        };
        let access_token = self
            .keys
            .sign(&claims)
            .map_err(|e| GrantError::Unavailable(e.to_string()))?;
        Ok(IssuedToken {
            access_token,
            expires_in: self.settings.token_lifetime_secs,
            scope: claims.scope,
            id: claims.jti,
        })
    }
}

/// The scopes a client asked for (all of its own if none), each one it is registered for.
fn client_scopes(client: &Client, scope: Option<&str>) -> Result<Vec<String>, GrantError> {
    let requested = match scope {
        None => return Ok(client.scopes.clone()),
        Some(text) => clients::parse_scopes(text).map_err(GrantError::InvalidScope)?,
    };
    if requested.is_empty() {
        return Ok(client.scopes.clone());
    }
    match requested.iter().find(|s| !client.scopes.contains(s)) {
        Some(other) => Err(GrantError::InvalidScope(format!(
            "the client is not registered for scope {other:?}"
        ))),
        None => Ok(requested),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_hold_the_admin_scopes() {
        assert!(role_allows(&[Role::Admin], SCOPE_ADMIN_WRITE));
        assert!(!role_allows(&[Role::CertificateManager], SCOPE_ADMIN_READ));
        assert!(role_allows(&[Role::ReadOnly], "proxy:generate"));
    }

    #[test]
    fn a_client_gets_what_it_asks_among_its_scopes() {
        let client = Client {
            client_id: "c".into(),
            scopes: vec!["a".into(), "b".into()],
            grant_types: vec![GrantType::ClientCredentials],
        };
        assert_eq!(
            client_scopes(&client, None).ok(),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            client_scopes(&client, Some("b")).ok(),
            Some(vec!["b".into()])
        );
        assert!(matches!(
            client_scopes(&client, Some("a c")),
            Err(GrantError::InvalidScope(_))
        ));
    }
}
