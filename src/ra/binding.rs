//! External account binding (RFC 8555 §7.3.4) as RA policy: when a directory requires one, the
//! single-use keys the CA hands out of band (sealed at rest with the key-encryption key, each
//! bound to one directory), the proof a new account brings, and the policy a key carries to the
//! account it creates. Parsing the binding's JWS is the ACME surface's (`api::acme::eab`).

use aws_lc_rs::hmac;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::policy::IdentifierPolicy;
use super::{Directory, Ra, RaError};
use crate::pki::csr::Ident;
use crate::store::Store;

/// When newAccount must carry an external account binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EabPolicy {
    /// Accepted when given, never required.
    #[default]
    NotRequired,
    /// Required to create an account; existing accounts are found without one.
    NewAccountRequired,
    /// Required on every newAccount request, lookups of existing accounts included.
    AlwaysRequired,
}

/// RA policy an EAB key carries to the account it creates: which identifiers and profiles
/// that account may order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BindingPolicy {
    pub identifiers: IdentifierPolicy,
    /// Profiles the account may order; empty: all the directory offers.
    pub profiles: Vec<String>,
}

impl BindingPolicy {
    pub fn check(&self, idents: &[Ident], profile: &str) -> Result<(), RaError> {
        for ident in idents {
            self.identifiers.check(ident).map_err(|_| {
                RaError::IdentifierRefused(format!(
                    "this account's external account binding does not allow {}",
                    ident.value()
                ))
            })?;
        }
        if !self.profiles.is_empty() && !self.profiles.iter().any(|p| p == profile) {
            return Err(RaError::ProfileRefused(format!(
                "this account's external account binding does not allow profile {profile:?}"
            )));
        }
        Ok(())
    }
}

/// AAD binding sealed EAB keys to their purpose.
pub const SEALED_AAD: &[u8] = b"pkid eab hmac key";

/// What a new account brings to prove it holds an EAB key: the key's id and a MAC (HS256/384/512)
/// over `signing_input` (a JWS signing input whose shape the surface has checked).
pub struct BindingProof {
    pub kid: String,
    pub alg: String,
    pub signing_input: Vec<u8>,
    pub mac: Vec<u8>,
}

impl BindingProof {
    /// Verify the MAC with the (unsealed) HMAC key.
    fn verify(&self, hmac_key: &[u8]) -> Result<(), RaError> {
        let alg = match self.alg.as_str() {
            "HS256" => hmac::HMAC_SHA256,
            "HS384" => hmac::HMAC_SHA384,
            _ => hmac::HMAC_SHA512,
        };
        hmac::verify(
            &hmac::Key::new(alg, hmac_key),
            &self.signing_input,
            &self.mac,
        )
        .map_err(|_| RaError::Unauthorized("externalAccountBinding MAC does not verify".into()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the key could not be sealed")]
    Seal,
}

/// A fresh single-use EAB key for `directory`: (kid, base64url HMAC key). The HMAC key is stored
/// sealed and returned this once.
pub async fn mint_eab_key(
    store: &Store,
    kek: &pkid_backends::KeyEncryptionKey,
    directory: &str,
    note: &str,
    policy: &BindingPolicy,
) -> Result<(String, zeroize::Zeroizing<String>), MintError> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill_bytes(key.as_mut());
    let kid = super::ids::random_secret(12).to_string();
    let sealed = kek
        .seal_pem(key.as_ref(), SEALED_AAD)
        .map_err(|_| MintError::Seal)?;
    let policy_json = (policy != &BindingPolicy::default())
        .then(|| serde_json::to_string(policy).ok())
        .flatten();
    store
        .insert_eab_key(&kid, &sealed, directory, note, policy_json.as_deref())
        .await?;
    let hmac_key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_ref());
    Ok((kid, zeroize::Zeroizing::new(hmac_key)))
}

impl Ra {
    /// A fresh EAB key for `directory` (see [`mint_eab_key`]): its id and its HMAC key, which
    /// is returned this once.
    pub async fn mint_eab_key(
        &self,
        directory: &str,
        note: &str,
        policy: &BindingPolicy,
    ) -> Result<(String, zeroize::Zeroizing<String>), RaError> {
        mint_eab_key(&self.store, &self.kek, directory, note, policy)
            .await
            .map_err(|e| match e {
                MintError::Store(e) => RaError::Store(e),
                MintError::Seal => RaError::Internal("the key could not be sealed".into()),
            })
    }

    /// Withdraw an EAB key no account has used yet.
    pub async fn withdraw_eab_key(&self, kid: &str) -> Result<(), RaError> {
        let key = self
            .store
            .eab_key(kid)
            .await?
            .ok_or_else(|| RaError::NotFound("no such EAB key".into()))?;
        if key.bound_account.is_some() {
            return Err(RaError::Conflict(
                "the key is bound to an account already".into(),
            ));
        }
        if !self.store.delete_unbound_eab_key(kid).await? {
            return Err(RaError::Conflict("the key was bound meanwhile".into()));
        }
        Ok(())
    }

    /// Check a binding's proof against the key it names: known, of this directory, the MAC
    /// verifies, not used yet. Returns the key's id.
    pub(super) async fn verify_binding(
        &self,
        directory: &Directory,
        proof: &BindingProof,
    ) -> Result<String, RaError> {
        let key = self.store.eab_key(&proof.kid).await?.ok_or_else(|| {
            RaError::Unauthorized("unknown external account binding key id".into())
        })?;
        if key.directory != directory.name {
            return Err(RaError::Unauthorized(
                "this external account binding key is for another directory".into(),
            ));
        }
        let hmac_key = self
            .kek
            .open_pem(&key.sealed_key, SEALED_AAD)
            .map_err(|_| {
                RaError::Internal("the external account binding key cannot be unsealed".into())
            })?;
        proof.verify(&hmac_key)?;
        if key.bound_account.is_some() {
            return Err(RaError::Unauthorized(
                "this external account binding key was used already".into(),
            ));
        }
        Ok(proof.kid.clone())
    }
}
