//! Bundle storage in an object store: one `.torrent`, one record and the verified pieces per bundle.
//!
//! Layout under the store's root:
//!
//! ```text
//! bundles/<info hash hex>/torrent        the .torrent as uploaded
//! bundles/<info hash hex>/meta.json      creation time and owner token hash
//! bundles/<info hash hex>/pieces/<n>     piece n, written only once verified
//! ```
//!
//! `meta.json` is written last when a bundle is created: a directory without
//! it is an interrupted creation and is removed at startup. Every write is a
//! single `put`, which object stores make atomic, so a piece object is either
//! absent or complete.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use swarmdrop::engine::ids::InfoHash;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::config::Config;
use crate::error::ServerError;

/// Chunk size when streaming from local files.
const READ_CHUNK: usize = 256 * 1024;

/// What the server records about a bundle besides its torrent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMeta {
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
    /// SHA-256 of the owner token, lower-case hex.
    pub owner_token_sha256: String,
}

/// A stored bundle as found when listing the store.
#[derive(Debug)]
pub struct Listed {
    /// The bundle.
    pub info_hash: InfoHash,
    /// Its record, or `None` for an interrupted creation.
    pub meta: Option<StoredMeta>,
}

/// The object store holding every bundle.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
}

impl Store {
    /// Opens the store the configuration names.
    pub fn open(config: &Config) -> Result<Store, ServerError> {
        let inner: Arc<dyn ObjectStore> = match config.store_url.as_deref() {
            None => Arc::new(local(&config.data_dir)?),
            Some(url) => {
                if let Some(path) = url.strip_prefix("file://") {
                    Arc::new(local(std::path::Path::new(path))?)
                } else if let Some(rest) = url.strip_prefix("s3://") {
                    s3(rest)?
                } else if url == "memory://" {
                    Arc::new(object_store::memory::InMemory::new())
                } else {
                    return Err(ServerError::Config(format!(
                        "unsupported store URL {url:?} (use s3://bucket/prefix, file:///dir or memory://)"
                    )));
                }
            }
        };
        Ok(Store { inner })
    }

    /// A store over any object store (tests).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>) -> Self {
        Store { inner }
    }

    fn dir(info_hash: &InfoHash) -> Path {
        Path::from_iter(["bundles".to_string(), info_hash.to_hex()])
    }

    fn torrent_path(info_hash: &InfoHash) -> Path {
        Self::dir(info_hash).join("torrent")
    }

    fn meta_path(info_hash: &InfoHash) -> Path {
        Self::dir(info_hash).join("meta.json")
    }

    fn pieces_dir(info_hash: &InfoHash) -> Path {
        Self::dir(info_hash).join("pieces")
    }

    fn piece_path(info_hash: &InfoHash, index: u32) -> Path {
        Self::pieces_dir(info_hash).join(index.to_string())
    }

    /// Stores a bundle's torrent and then its record (which makes it exist).
    pub async fn create(
        &self,
        info_hash: &InfoHash,
        torrent: Bytes,
        meta: &StoredMeta,
    ) -> Result<(), ServerError> {
        let record = serde_json::to_vec(meta).map_err(|e| ServerError::Corrupt {
            path: Self::meta_path(info_hash).to_string(),
            why: e.to_string(),
        })?;
        self.inner
            .put(&Self::torrent_path(info_hash), PutPayload::from(torrent))
            .await?;
        self.inner
            .put(&Self::meta_path(info_hash), PutPayload::from(record))
            .await?;
        Ok(())
    }

    /// The stored `.torrent`.
    pub async fn torrent(&self, info_hash: &InfoHash) -> Result<Bytes, ServerError> {
        Ok(self
            .inner
            .get(&Self::torrent_path(info_hash))
            .await?
            .bytes()
            .await?)
    }

    /// Stores a verified piece.
    pub async fn put_piece(
        &self,
        info_hash: &InfoHash,
        index: u32,
        data: Bytes,
    ) -> Result<(), ServerError> {
        self.inner
            .put(&Self::piece_path(info_hash, index), PutPayload::from(data))
            .await?;
        Ok(())
    }

    /// Removes one piece (a piece stored while its bundle was being deleted).
    pub async fn delete_piece(&self, info_hash: &InfoHash, index: u32) -> Result<(), ServerError> {
        match self.inner.delete(&Self::piece_path(info_hash, index)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The stored pieces of a bundle with their sizes.
    pub async fn pieces(&self, info_hash: &InfoHash) -> Result<Vec<(u32, u64)>, ServerError> {
        let prefix = Self::pieces_dir(info_hash);
        let mut out = Vec::new();
        let mut list = self.inner.list(Some(&prefix));
        while let Some(meta) = list.next().await {
            let meta = meta?;
            if let Some(index) = meta.location.filename().and_then(|f| f.parse::<u32>().ok()) {
                out.push((index, meta.size));
            }
        }
        Ok(out)
    }

    /// Streams `range` of piece `index`. A local file is read in large chunks
    /// on the blocking pool; other stores stream as they answer.
    pub async fn read_piece(
        &self,
        info_hash: &InfoHash,
        index: u32,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, io::Result<Bytes>>, ServerError> {
        let location = Self::piece_path(info_hash, index);
        let result = self
            .inner
            .get_opts(&location, GetOptions::new().with_range(Some(range)))
            .await?;
        let range = result.range.clone();
        match result.payload {
            GetResultPayload::File(file, _) => {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(io::SeekFrom::Start(range.start)).await?;
                let reader = file.take(range.end - range.start);
                Ok(tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK).boxed())
            }
            GetResultPayload::Stream(s) => Ok(s.map_err(io::Error::other).boxed()),
        }
    }

    /// Removes every object of a bundle.
    pub async fn delete_bundle(&self, info_hash: &InfoHash) -> Result<(), ServerError> {
        // The record goes first: a half-deleted bundle is then an interrupted
        // creation, swept at the next start.
        match self.inner.delete(&Self::meta_path(info_hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let prefix = Self::dir(info_hash);
        let locations = self
            .inner
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .boxed();
        let mut deleted = self.inner.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Every bundle directory in the store, with its record when it has one.
    pub async fn list(&self) -> Result<Vec<Listed>, ServerError> {
        let listing = self
            .inner
            .list_with_delimiter(Some(&Path::from("bundles")))
            .await?;
        let mut out = Vec::new();
        for dir in listing.common_prefixes {
            let Some(info_hash) = dir.filename().and_then(InfoHash::from_hex) else {
                continue;
            };
            let meta = match self.inner.get(&Self::meta_path(&info_hash)).await {
                Ok(result) => {
                    let bytes = result.bytes().await?;
                    let meta =
                        serde_json::from_slice(&bytes).map_err(|e| ServerError::Corrupt {
                            path: Self::meta_path(&info_hash).to_string(),
                            why: e.to_string(),
                        })?;
                    Some(meta)
                }
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            out.push(Listed { info_hash, meta });
        }
        Ok(out)
    }
}

fn local(dir: &std::path::Path) -> Result<LocalFileSystem, ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        ServerError::Config(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    Ok(LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true))
}

#[cfg(feature = "s3")]
fn s3(bucket_and_prefix: &str) -> Result<Arc<dyn ObjectStore>, ServerError> {
    use object_store::aws::AmazonS3Builder;
    use object_store::prefix::PrefixStore;
    let (bucket, prefix) = bucket_and_prefix
        .split_once('/')
        .unwrap_or((bucket_and_prefix, ""));
    if bucket.is_empty() {
        return Err(ServerError::Config("s3 URL without a bucket".into()));
    }
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()?;
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    })
}

#[cfg(not(feature = "s3"))]
fn s3(_: &str) -> Result<Arc<dyn ObjectStore>, ServerError> {
    Err(ServerError::Config(
        "this build has no S3 support (enable the `s3` feature)".into(),
    ))
}
