//! The identity surface's wire types: what its handlers write and read, and, through
//! `utoipa::ToSchema`, what its OpenAPI document (`openapi.rs`) says they are.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::identity::Principal;

/// Every error of `/login` and `/identity/…`: `{"error": message}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// A `/token` error (RFC 6749 §5.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope` or `temporarily_unavailable`.
    pub error: String,
    pub error_description: String,
}

/// `POST /login` (Notary): an email (or a username) and a password.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// `{"result": {"token": "<JWT>"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginAnswer {
    pub result: LoginResult,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResult {
    /// An access token (ES256 JWT), for `Authorization: Bearer`.
    pub token: String,
}

/// The form of `POST /token` (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // The form is parsed by hand (RFC 6749 §3.2: each parameter at most once).
pub struct TokenForm {
    /// `password` or `client_credentials`.
    pub grant_type: String,
    /// The password grant's user.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Space-separated scopes asked for.
    pub scope: Option<String>,
    /// Client authentication in the form, when not by HTTP Basic.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// A granted access token (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenAnswer {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The scopes granted, space-separated.
    pub scope: String,
}

/// The JWK Set of the key that signs access tokens (RFC 7517 §5).
#[derive(Debug, Serialize, ToSchema)]
pub struct JwkSet {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<Value>,
}

/// `{"result": …}` around a principal.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeAnswer {
    pub result: Whoami,
}

/// Who a request's credential names.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Whoami {
    Anonymous,
    /// An admin token's holder.
    Operator {
        token_id: String,
    },
    User {
        id: String,
        username: String,
        email: Option<String>,
        /// `admin`, `certificate-manager`, `certificate-requestor`, `read-only`.
        roles: Vec<String>,
        /// How the request proved it: `bearer`, `certificate` or `jws-key`.
        proof: String,
        /// The scopes a token from `/token` was limited to; absent: not scope-limited.
        scopes: Option<Vec<String>>,
    },
    /// An OAuth2 client's own token (client credentials grant).
    Client {
        client_id: String,
        scopes: Vec<String>,
    },
}

impl From<&Principal> for Whoami {
    fn from(principal: &Principal) -> Whoami {
        match principal {
            Principal::Anonymous => Whoami::Anonymous,
            Principal::Operator { token_id } => Whoami::Operator {
                token_id: token_id.clone(),
            },
            Principal::User(user) => Whoami::User {
                id: user.id.clone(),
                username: user.username.clone(),
                email: user.email.clone(),
                roles: user.roles.iter().map(|r| r.name().to_string()).collect(),
                proof: user.proof.name().to_string(),
                scopes: user.scopes.clone(),
            },
            Principal::Client { client_id, scopes } => Whoami::Client {
                client_id: client_id.clone(),
                scopes: scopes.clone(),
            },
        }
    }
}

/// `{"result": …}` around a key binding.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyBindingAnswer {
    pub result: KeyBinding,
}

/// A public key bound to a user for JWS-signed requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyBinding {
    /// Its RFC 7638 thumbprint.
    pub thumbprint: String,
    /// The public key.
    #[schema(value_type = Object)]
    pub jwk: Map<String, Value>,
    pub username: String,
}
