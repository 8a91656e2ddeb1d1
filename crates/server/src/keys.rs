//! `anchorage keys …`: API key administration straight on the store.

use anchorage_store::{ApiKeyRecord, StoreError};

use crate::app::{open_store, StartError};
use crate::auth::{generate_api_key, hash_api_key, key_prefix};
use crate::config::Config;

/// Creates a key for `team` (creating the team if needed) and returns it.
pub async fn create(config: &Config, team: &str, name: &str) -> Result<String, StartError> {
    let store = open_store(config).await?;
    let team = match store.team_by_name(team).await? {
        Some(team) => team,
        None => match store.create_team(team).await {
            Ok(team) => team,
            // Made by someone else in the meantime.
            Err(StoreError::AlreadyExists(_)) => store
                .team_by_name(team)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("team {team} vanished")))?,
            Err(error) => return Err(error.into()),
        },
    };
    let key = generate_api_key();
    store
        .create_api_key(team.id, name, &hash_api_key(&key), &key_prefix(&key))
        .await?;
    Ok(key)
}

/// Every key, revoked ones included.
pub async fn list(config: &Config) -> Result<Vec<ApiKeyRecord>, StartError> {
    Ok(open_store(config).await?.list_api_keys().await?)
}

/// Revokes by id or prefix; returns how many keys were revoked.
pub async fn revoke(config: &Config, id_or_prefix: &str) -> Result<u64, StartError> {
    Ok(open_store(config).await?.revoke_api_key(id_or_prefix).await?)
}
