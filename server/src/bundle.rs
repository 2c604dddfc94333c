//! Bundles in memory: each one's torrent, owner token hash, expiry and verified pieces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use sha2::{Digest, Sha256};
use swarmdrop::engine::bitfield::Bitfield;
use swarmdrop::engine::ids::InfoHash;
use swarmdrop::engine::metainfo::Metainfo;

/// One bundle the server holds.
#[derive(Debug)]
pub struct Bundle {
    /// The torrent as parsed (its `info` bytes are kept as uploaded).
    pub metainfo: Metainfo,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
    /// Expiry time, seconds since the Unix epoch.
    pub expires_at: u64,
    token_sha256: [u8; 32],
    have: Mutex<Bitfield>,
    /// Web seed path (`name` or `name/dir/file`) to file index; padding files excluded.
    files_by_path: HashMap<String, usize>,
}

impl Bundle {
    /// A bundle with no piece yet.
    pub fn new(
        metainfo: Metainfo,
        created_at: u64,
        expires_at: u64,
        token_sha256: [u8; 32],
    ) -> Self {
        let info = &metainfo.info;
        let files_by_path = info
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.padding)
            .map(|(i, f)| (seed_path(&info.name, &f.path, info.multi_file), i))
            .collect();
        let have = Bitfield::new(info.lengths.num_pieces());
        Bundle {
            metainfo,
            created_at,
            expires_at,
            token_sha256,
            have: Mutex::new(have),
            files_by_path,
        }
    }

    /// The bundle's info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.metainfo.info_hash
    }

    /// The verified pieces (locked briefly; never held across an await).
    pub fn have(&self) -> MutexGuard<'_, Bitfield> {
        self.have.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `token` (the hex string the owner got) is this bundle's owner token.
    pub fn token_matches(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare without an early exit.
        digest
            .iter()
            .zip(self.token_sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// The file a web seed path names (`name` for a single-file torrent,
    /// `name/dir/file` for a multi-file one).
    pub fn file_at(&self, path: &str) -> Option<usize> {
        self.files_by_path.get(path).copied()
    }

    /// Whether the bundle is past its expiry at `now` (Unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

/// The web seed path of a file: its components joined by `/`, under the
/// torrent's name for a multi-file torrent.
pub fn seed_path(name: &str, path: &[String], multi_file: bool) -> String {
    if multi_file {
        std::iter::once(name)
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("/")
    } else {
        name.to_string()
    }
}

/// SHA-256 of an owner token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Every live bundle by info hash.
#[derive(Debug, Default)]
pub struct Registry {
    bundles: RwLock<HashMap<InfoHash, Arc<Bundle>>>,
}

impl Registry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<InfoHash, Arc<Bundle>>> {
        self.bundles.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<InfoHash, Arc<Bundle>>> {
        self.bundles.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The bundle, unless absent or expired at `now`.
    pub fn get(&self, info_hash: &InfoHash, now: u64) -> Option<Arc<Bundle>> {
        self.read()
            .get(info_hash)
            .filter(|b| !b.expired(now))
            .cloned()
    }

    /// The bundle even if expired (creation must not shadow one awaiting deletion).
    pub fn get_any(&self, info_hash: &InfoHash) -> Option<Arc<Bundle>> {
        self.read().get(info_hash).cloned()
    }

    /// Adds a bundle; returns the existing one instead if there is one.
    pub fn insert(&self, bundle: Arc<Bundle>) -> Result<(), Arc<Bundle>> {
        let mut map = self.write();
        match map.get(&bundle.info_hash()) {
            Some(existing) => Err(existing.clone()),
            None => {
                map.insert(bundle.info_hash(), bundle);
                Ok(())
            }
        }
    }

    /// Removes this very bundle (not a newer one with the same info hash).
    pub fn remove(&self, bundle: &Arc<Bundle>) -> bool {
        let mut map = self.write();
        match map.get(&bundle.info_hash()) {
            Some(b) if Arc::ptr_eq(b, bundle) => {
                map.remove(&bundle.info_hash());
                true
            }
            _ => false,
        }
    }

    /// Whether this very bundle is still registered.
    pub fn contains(&self, bundle: &Arc<Bundle>) -> bool {
        self.read()
            .get(&bundle.info_hash())
            .is_some_and(|b| Arc::ptr_eq(b, bundle))
    }

    /// Bundles expired at `now`.
    pub fn expired(&self, now: u64) -> Vec<Arc<Bundle>> {
        self.read()
            .values()
            .filter(|b| b.expired(now))
            .cloned()
            .collect()
    }

    /// Number of bundles held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when no bundle is held.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}
