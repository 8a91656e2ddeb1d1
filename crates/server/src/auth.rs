//! API keys and session tokens.
//!
//! Keys are random, shown once, and stored only as their SHA-256 hash; a
//! request's key is hashed and looked up. Session tokens (the secret in a
//! `cdp_url`) are an HMAC of the session id under a server secret kept in the
//! store, so they can be shown again without being stored, and checked in
//! constant time.

use anchorage_core::SessionId;
use anchorage_store::{AuthenticatedKey, Store};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// The header that carries the key.
pub const API_KEY_HEADER: &str = "anchor-api-key";

/// A fresh key: `anc_` and 64 hex characters (256 random bits).
pub fn generate_api_key() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("anc_{}", hex::encode(bytes))
}

/// The stored form of a key.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The part of a key shown in listings.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(12).collect()
}

/// Signs and checks session tokens.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TokenSigner(..)")
    }
}

const TOKEN_SECRET_SETTING: &str = "session_token_secret";

impl TokenSigner {
    /// Loads the server secret from the store, creating it on first use.
    pub async fn load(store: &dyn Store) -> Result<Self, anchorage_store::StoreError> {
        let mut bytes = [0_u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = store
            .setting_or_insert(TOKEN_SECRET_SETTING, &hex::encode(bytes))
            .await?;
        Ok(Self {
            secret: secret.into_bytes(),
        })
    }

    fn mac(&self, session_id: SessionId) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(b"session-token:");
        mac.update(session_id.to_string().as_bytes());
        mac
    }

    /// The token of a session.
    pub fn token(&self, session_id: SessionId) -> String {
        hex::encode(self.mac(session_id).finalize().into_bytes())
    }

    /// Whether `token` is the session's, compared in constant time.
    pub fn verify(&self, session_id: SessionId, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) => self.mac(session_id).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

impl TokenSigner {
    /// The key nodes of one database give each other on their internal
    /// calls (derived from the shared secret, so every node has it and no
    /// client does).
    pub fn node_key(&self) -> String {
        hex::encode(self.node_mac().finalize().into_bytes())
    }

    /// Whether `key` is [`TokenSigner::node_key`], compared in constant time.
    pub fn verify_node_key(&self, key: &str) -> bool {
        match hex::decode(key) {
            Ok(bytes) => self.node_mac().verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    fn node_mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(b"node-key");
        mac
    }
}

/// The start of a run's credential (see [`TokenSigner::run_key`]).
const RUN_KEY_PREFIX: &str = "anr_";

impl TokenSigner {
    /// The credential of one run of users' code (`anchorClient` and the
    /// `ANCHOR_API_KEY` of a task): `anr_`, the execution's id, and an HMAC
    /// of it. Nothing is stored: any node checks the HMAC, and the key acts
    /// for the execution's team only while the execution is unfinished.
    pub fn run_key(&self, execution_id: anchorage_core::ExecutionId) -> String {
        let mac = self.run_mac(execution_id);
        format!(
            "{RUN_KEY_PREFIX}{}_{}",
            execution_id.as_uuid().simple(),
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// The execution a run's credential names, if its HMAC is right.
    pub fn run_key_execution(&self, key: &str) -> Option<anchorage_core::ExecutionId> {
        let (id, mac) = key.strip_prefix(RUN_KEY_PREFIX)?.split_once('_')?;
        let execution_id = anchorage_core::ExecutionId::from(uuid::Uuid::try_parse(id).ok()?);
        let bytes = hex::decode(mac).ok()?;
        self.run_mac(execution_id).verify_slice(&bytes).ok()?;
        Some(execution_id)
    }

    fn run_mac(&self, execution_id: anchorage_core::ExecutionId) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(b"run-key:");
        mac.update(execution_id.to_string().as_bytes());
        mac
    }
}

/// The caller of a `/v1` route, authenticated by its key.
#[derive(Debug, Clone)]
pub struct Caller(pub AuthenticatedKey);

/// Looks a key up; `None` when it is unknown or revoked.
pub async fn authenticate(state: &AppState, key: &str) -> Result<Option<AuthenticatedKey>, ApiError> {
    if key.is_empty() || key.len() > 512 {
        return Ok(None);
    }
    if let Some(execution_id) = state.tokens.run_key_execution(key) {
        // A run's credential: its team's, while the run lasts.
        let execution = state.store.execution_by_id(execution_id).await?;
        return Ok(execution
            .filter(|execution| !execution.status.is_finished())
            .map(|execution| AuthenticatedKey {
                key_id: anchorage_core::ApiKeyId::from(execution.id.as_uuid()),
                key_name: format!("run {}", execution.id),
                team_id: execution.team_id,
            }));
    }
    Ok(state.store.authenticate(&hash_api_key(key)).await?)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(API_KEY_HEADER)
            .and_then(|value| value.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        authenticate(state, key)
            .await?
            .map(Caller)
            .ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hash_stably() {
        let first = generate_api_key();
        let second = generate_api_key();
        assert_ne!(first, second);
        assert_eq!(first.len(), 68);
        assert_eq!(hash_api_key(&first), hash_api_key(&first));
        assert_ne!(hash_api_key(&first), first);
    }

    #[test]
    fn run_keys_name_their_execution_and_nothing_else() {
        let signer = TokenSigner {
            secret: b"secret".to_vec(),
        };
        let execution = anchorage_core::ExecutionId::new_random();
        let key = signer.run_key(execution);
        assert_eq!(signer.run_key_execution(&key), Some(execution));
        let other = anchorage_core::ExecutionId::new_random();
        let forged = format!(
            "anr_{}_{}",
            other.as_uuid().simple(),
            key.rsplit('_').next().unwrap_or_default()
        );
        assert_eq!(signer.run_key_execution(&forged), None);
        assert_eq!(signer.run_key_execution("anr_x_y"), None);
        assert_eq!(signer.run_key_execution(&generate_api_key()), None);
        let stranger = TokenSigner {
            secret: b"other".to_vec(),
        };
        assert_eq!(stranger.run_key_execution(&key), None);
    }

    #[test]
    fn tokens_are_bound_to_their_session() {
        let signer = TokenSigner {
            secret: b"secret".to_vec(),
        };
        let session = SessionId::new_random();
        let token = signer.token(session);
        assert!(signer.verify(session, &token));
        assert!(!signer.verify(SessionId::new_random(), &token));
        assert!(!signer.verify(session, "zz"));
        assert!(!signer.verify(session, ""));
        let other = TokenSigner {
            secret: b"other".to_vec(),
        };
        assert!(!other.verify(session, &token));
    }
}
