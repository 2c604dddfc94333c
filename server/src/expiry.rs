//! Bundle lifetimes: loading bundles at startup, removing them, and the expiry sweeper.

use std::sync::Arc;
use std::time::Duration;

use swarmdrop::engine::metainfo::Metainfo;

use crate::app::{unix_now, AppState};
use crate::bundle::Bundle;
use crate::error::ServerError;

/// Loads every stored bundle into the registry: interrupted creations and
/// expired bundles are deleted; the have-bitfield is rebuilt from the stored
/// pieces. Returns how many bundles were loaded.
pub async fn load(state: &AppState) -> Result<usize, ServerError> {
    let now = unix_now();
    let mut loaded = 0;
    for listed in state.store.list().await? {
        let info_hash = listed.info_hash;
        let Some(meta) = listed.meta else {
            tracing::warn!(%info_hash, "removing an interrupted bundle creation");
            state.store.delete_bundle(&info_hash).await?;
            continue;
        };
        let expires_at = meta.created_at.saturating_add(state.expiry_secs);
        if now >= expires_at {
            state.store.delete_bundle(&info_hash).await?;
            tracing::info!("expired bundle removed at startup");
            continue;
        }
        let Some(token_sha256) = parse_hex32(&meta.owner_token_sha256) else {
            tracing::error!(%info_hash, "stored owner token hash is not 32 bytes of hex; bundle skipped");
            continue;
        };
        let torrent = state.store.torrent(&info_hash).await?;
        let metainfo = match Metainfo::from_torrent_bytes(&torrent) {
            Ok(m) if m.info_hash == info_hash => m,
            Ok(_) => {
                tracing::error!(%info_hash, "stored torrent has another info hash; bundle skipped");
                continue;
            }
            Err(e) => {
                tracing::error!(%info_hash, error = %e, "stored torrent does not parse; bundle skipped");
                continue;
            }
        };
        let bundle = Bundle::new(metainfo, meta.created_at, expires_at, token_sha256);
        let lengths = bundle.metainfo.info.lengths;
        for (index, size) in state.store.pieces(&info_hash).await? {
            // Pieces are verified before they are written, and writes are atomic;
            // a size mismatch means the object is not ours.
            match lengths.validate_piece(index) {
                Some(p) if lengths.piece_len(p) as u64 == size => {
                    bundle.have().set(index, true);
                }
                _ => {
                    tracing::warn!(%info_hash, index, "removing a stored piece of the wrong size");
                    state.store.delete_piece(&info_hash, index).await?;
                }
            }
        }
        if state.registry.insert(Arc::new(bundle)).is_ok() {
            loaded += 1;
        }
    }
    Ok(loaded)
}

/// Removes a bundle from the registry (so it is gone for every request at
/// once) and then from the store.
pub async fn remove(state: &AppState, bundle: &Arc<Bundle>) -> Result<(), ServerError> {
    state.registry.remove(bundle);
    state.store.delete_bundle(&bundle.info_hash()).await
}

/// Deletes every bundle past its expiry; returns how many.
pub async fn sweep(state: &AppState) -> usize {
    let _guard = state.lifecycle.lock().await;
    let mut removed = 0;
    for bundle in state.registry.expired(unix_now()) {
        match remove(state, &bundle).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::error!(error = %e, "could not delete an expired bundle; will retry"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, "expired bundles deleted");
    }
    removed
}

/// Sweeps every `every` until the task is aborted.
pub async fn sweep_forever(state: AppState, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        sweep(&state).await;
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hashes_parse_from_hex_and_bad_ones_do_not() {
        let h = crate::bundle::token_hash("abc");
        assert_eq!(parse_hex32(&crate::api::hex(&h)), Some(h));
        assert_eq!(parse_hex32("zz"), None);
        assert_eq!(parse_hex32(&"g".repeat(64)), None);
    }
}
