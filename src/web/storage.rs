//! Persistence of downloads in IndexedDB (through rexie): verified pieces as
//! Blobs, each bundle's have-bitfield written in the same transaction as the
//! piece it covers, and the owner tokens of uploads.
//!
//! The schema lives here and only here, with its version number:
//!
//! | store    | key                        | value                                  |
//! |----------|----------------------------|----------------------------------------|
//! | `pieces` | `[info hash hex, piece]`   | the piece, a `Blob`                    |
//! | `have`   | info hash hex              | `{pieces: n, bits: Uint8Array}` (BEP 3 order) |
//! | `uploads`| info hash hex              | `{server, token}`                      |
//!
//! Issue 5 hardens it (upgrades, restart resume of every transfer); a new
//! version adds its upgrade in [`Storage::open`].

use js_sys::{Array, Object, Reflect, Uint8Array};
use rexie::{KeyRange, ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::Blob;

use crate::engine::api::StoreFailure;
use crate::engine::bitfield::Bitfield;
use crate::engine::ids::InfoHash;
use crate::engine::metainfo::Info;

use super::net::error::{js_message, NetError};

/// The database's name in the extension origin.
pub const DB_NAME: &str = "swarmdrop-engine";
/// The schema version (IndexedDB's `version`).
pub const SCHEMA_VERSION: u32 = 1;

const PIECES: &str = "pieces";
const HAVE: &str = "have";
const UPLOADS: &str = "uploads";

/// A verified piece on its way to storage.
#[derive(Clone, Debug)]
pub struct PieceToStore {
    /// The bundle.
    pub info_hash: InfoHash,
    /// The piece.
    pub piece: u32,
    /// Pieces of the bundle (the have-bitfield's length).
    pub num_pieces: u32,
    /// The bytes.
    pub data: std::rc::Rc<[u8]>,
}

/// The open database.
#[derive(Clone)]
pub struct Storage {
    db: std::rc::Rc<Rexie>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({DB_NAME} v{SCHEMA_VERSION})")
    }
}

fn storage_error(e: rexie::Error) -> NetError {
    NetError::Storage(error_text(&e))
}

/// The DOM exception's name and message inside a rexie error, when there is one.
fn error_text(e: &rexie::Error) -> String {
    match e {
        rexie::Error::IdbError(idb::Error::DomException(d)) => {
            format!("{}: {}", d.name(), d.message())
        }
        other => other.to_string(),
    }
}

fn piece_key(info_hash: InfoHash, piece: u32) -> JsValue {
    let key = Array::new();
    key.push(&JsValue::from_str(&info_hash.to_hex()));
    key.push(&JsValue::from(piece));
    key.into()
}

fn bundle_key(info_hash: InfoHash) -> JsValue {
    JsValue::from_str(&info_hash.to_hex())
}

impl Storage {
    /// Opens (creating or upgrading) the database.
    pub async fn open() -> Result<Storage, NetError> {
        let db = Rexie::builder(DB_NAME)
            .version(SCHEMA_VERSION)
            .add_object_store(ObjectStore::new(PIECES))
            .add_object_store(ObjectStore::new(HAVE))
            .add_object_store(ObjectStore::new(UPLOADS))
            .build()
            .await
            .map_err(storage_error)?;
        Ok(Storage {
            db: std::rc::Rc::new(db),
        })
    }

    /// Stores verified pieces and sets their bits in their bundles'
    /// have-bitfields, all in one transaction: a bit never exists without its
    /// piece, and many pieces cost one commit.
    pub async fn store_pieces(&self, batch: &[PieceToStore]) -> Result<(), StoreFailure> {
        let mut blobs = Vec::with_capacity(batch.len());
        for p in batch {
            let parts = Array::new();
            parts.push(&Uint8Array::from(&p.data[..]));
            let blob = Blob::new_with_u8_array_sequence(&parts)
                .map_err(|e| StoreFailure::Other(js_message(&e)))?;
            blobs.push(blob);
        }
        let tx = self
            .db
            .transaction(&[PIECES, HAVE], TransactionMode::ReadWrite)
            .map_err(failure)?;
        let pieces = tx.store(PIECES).map_err(failure)?;
        let have = tx.store(HAVE).map_err(failure)?;
        for (p, blob) in batch.iter().zip(&blobs) {
            pieces
                .put(blob, Some(&piece_key(p.info_hash, p.piece)))
                .await
                .map_err(failure)?;
        }
        let mut bundles: Vec<InfoHash> = batch.iter().map(|p| p.info_hash).collect();
        bundles.sort_unstable();
        bundles.dedup();
        for info_hash in bundles {
            let mine = batch.iter().filter(|p| p.info_hash == info_hash);
            let Some(num_pieces) = mine.clone().map(|p| p.num_pieces).next() else {
                continue;
            };
            // Read inside the transaction: what earlier transactions committed.
            let current = have.get(bundle_key(info_hash)).await.map_err(failure)?;
            let mut bits = current
                .as_ref()
                .and_then(|v| decode_have(v, num_pieces))
                .unwrap_or_else(|| Bitfield::new(num_pieces));
            for p in mine {
                bits.set(p.piece, true);
            }
            have.put(&encode_have(&bits), Some(&bundle_key(info_hash)))
                .await
                .map_err(failure)?;
        }
        match tx.done().await {
            Ok(r) if r.is_committed() => Ok(()),
            Ok(_) => {
                let bytes = batch.iter().map(|p| p.data.len()).sum();
                Err(aborted_failure(bytes).await)
            }
            Err(e) => Err(failure(e)),
        }
    }

    /// The have-bitfield recorded for a bundle (empty when none, or when the
    /// record does not fit the bundle).
    pub async fn have(&self, info_hash: InfoHash, num_pieces: u32) -> Result<Bitfield, NetError> {
        let tx = self
            .db
            .transaction(&[HAVE], TransactionMode::ReadOnly)
            .map_err(storage_error)?;
        let have = tx.store(HAVE).map_err(storage_error)?;
        let value = have
            .get(bundle_key(info_hash))
            .await
            .map_err(storage_error)?;
        Ok(value
            .as_ref()
            .and_then(|v| decode_have(v, num_pieces))
            .unwrap_or_else(|| Bitfield::new(num_pieces)))
    }

    /// The stored Blob of a piece.
    pub async fn piece_blob(&self, info_hash: InfoHash, piece: u32) -> Result<Blob, NetError> {
        let tx = self
            .db
            .transaction(&[PIECES], TransactionMode::ReadOnly)
            .map_err(storage_error)?;
        let store = tx.store(PIECES).map_err(storage_error)?;
        let value = store
            .get(piece_key(info_hash, piece))
            .await
            .map_err(storage_error)?
            .ok_or_else(|| NetError::Storage(format!("piece {piece} is not stored")))?;
        value
            .dyn_into::<Blob>()
            .map_err(|_| NetError::Storage(format!("piece {piece} is not a blob")))
    }

    /// Reads a stored piece's bytes.
    pub async fn read_piece(&self, info_hash: InfoHash, piece: u32) -> Result<Vec<u8>, NetError> {
        let blob = self.piece_blob(info_hash, piece).await?;
        let buffer = JsFuture::from(blob.array_buffer())
            .await
            .map_err(|e| NetError::Storage(js_message(&e)))?;
        Ok(Uint8Array::new(&buffer).to_vec())
    }

    /// A file of a downloaded bundle as one Blob composed of slices of the
    /// stored pieces: nothing is copied into memory. Only where there is no
    /// origin private file system: Chromium kills the renderer that builds
    /// a Blob over stored Blobs at the wrong moment (see `saves.rs`).
    pub async fn file_blob(
        &self,
        info_hash: InfoHash,
        info: &Info,
        file_index: usize,
        content_type: &str,
    ) -> Result<Blob, NetError> {
        let file = info
            .files
            .get(file_index)
            .ok_or_else(|| NetError::Argument(format!("no file {file_index}")))?;
        let lengths = info.lengths;
        let parts = Array::new();
        let pieces = lengths.pieces_for_range(file.offset, file.length);
        for p in pieces {
            let Some(piece) = lengths.validate_piece(p) else {
                continue;
            };
            let piece_start = lengths.piece_offset(piece);
            let piece_end = piece_start + u64::from(lengths.piece_len(piece));
            let a = file.offset.max(piece_start) - piece_start;
            let b = (file.offset + file.length).min(piece_end) - piece_start;
            if b <= a {
                continue;
            }
            let blob = self.piece_blob(info_hash, p).await.map_err(|_| {
                NetError::Storage(format!(
                    "{} is not completely downloaded (piece {p} is missing)",
                    file.path.join("/")
                ))
            })?;
            let slice = blob
                .slice_with_f64_and_f64(a as f64, b as f64)
                .map_err(|e| NetError::browser(&e))?;
            parts.push(&slice);
        }
        let options = web_sys::BlobPropertyBag::new();
        options.set_type(content_type);
        Blob::new_with_blob_sequence_and_options(&parts, &options)
            .map_err(|e| NetError::browser(&e))
    }

    /// Deletes a bundle's pieces and have-bitfield.
    pub async fn delete_bundle(&self, info_hash: InfoHash) -> Result<(), NetError> {
        let tx = self
            .db
            .transaction(&[PIECES, HAVE, UPLOADS], TransactionMode::ReadWrite)
            .map_err(storage_error)?;
        let range = KeyRange::bound(
            &piece_key(info_hash, 0),
            &piece_key(info_hash, u32::MAX),
            None,
            None,
        )
        .map_err(|e| NetError::Storage(e.to_string()))?;
        tx.store(PIECES)
            .map_err(storage_error)?
            .delete(range.into())
            .await
            .map_err(storage_error)?;
        tx.store(HAVE)
            .map_err(storage_error)?
            .delete(bundle_key(info_hash))
            .await
            .map_err(storage_error)?;
        tx.store(UPLOADS)
            .map_err(storage_error)?
            .delete(bundle_key(info_hash))
            .await
            .map_err(storage_error)?;
        tx.done().await.map_err(storage_error)?;
        Ok(())
    }

    /// The owner token of an upload of this bundle to `server`.
    pub async fn upload_token(
        &self,
        info_hash: InfoHash,
        server: &str,
    ) -> Result<Option<String>, NetError> {
        let tx = self
            .db
            .transaction(&[UPLOADS], TransactionMode::ReadOnly)
            .map_err(storage_error)?;
        let value = tx
            .store(UPLOADS)
            .map_err(storage_error)?
            .get(bundle_key(info_hash))
            .await
            .map_err(storage_error)?;
        let Some(value) = value else {
            return Ok(None);
        };
        let field = |name: &str| {
            Reflect::get(&value, &JsValue::from_str(name))
                .ok()?
                .as_string()
        };
        Ok((field("server").as_deref() == Some(server))
            .then(|| field("token"))
            .flatten())
    }

    /// Remembers the owner token of an upload.
    pub async fn set_upload_token(
        &self,
        info_hash: InfoHash,
        server: &str,
        token: &str,
    ) -> Result<(), NetError> {
        let record = Object::new();
        let _ = Reflect::set(&record, &"server".into(), &JsValue::from_str(server));
        let _ = Reflect::set(&record, &"token".into(), &JsValue::from_str(token));
        let tx = self
            .db
            .transaction(&[UPLOADS], TransactionMode::ReadWrite)
            .map_err(storage_error)?;
        tx.store(UPLOADS)
            .map_err(storage_error)?
            .put(&record, Some(&bundle_key(info_hash)))
            .await
            .map_err(storage_error)?;
        tx.done().await.map_err(storage_error)?;
        Ok(())
    }
}

fn encode_have(bits: &Bitfield) -> JsValue {
    let record = Object::new();
    let _ = Reflect::set(&record, &"pieces".into(), &JsValue::from(bits.len()));
    let _ = Reflect::set(
        &record,
        &"bits".into(),
        &Uint8Array::from(bits.as_bytes()).into(),
    );
    record.into()
}

fn decode_have(value: &JsValue, num_pieces: u32) -> Option<Bitfield> {
    let pieces = Reflect::get(value, &"pieces".into()).ok()?.as_f64()?;
    if pieces != f64::from(num_pieces) {
        return None;
    }
    let bits = Reflect::get(value, &"bits".into())
        .ok()?
        .dyn_into::<Uint8Array>()
        .ok()?;
    Bitfield::from_bytes(&bits.to_vec(), num_pieces)
}

/// A storage error as the engine sees it: a full disk, or anything else.
fn failure(e: rexie::Error) -> StoreFailure {
    let text = error_text(&e);
    if text.contains("QuotaExceeded") {
        StoreFailure::DiskFull
    } else {
        StoreFailure::Other(text)
    }
}

/// A transaction aborted without a request error: browsers abort a write
/// that does not fit in the quota this way. Asks the storage manager how
/// much room is left to tell a full disk from another abort.
async fn aborted_failure(bytes: usize) -> StoreFailure {
    let estimate = async {
        let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
        let storage = Reflect::get(&navigator, &"storage".into()).ok()?;
        let f: js_sys::Function = Reflect::get(&storage, &"estimate".into())
            .ok()?
            .dyn_into()
            .ok()?;
        let promise: js_sys::Promise = f.call0(&storage).ok()?.dyn_into().ok()?;
        let e = JsFuture::from(promise).await.ok()?;
        let quota = Reflect::get(&e, &"quota".into()).ok()?.as_f64()?;
        let usage = Reflect::get(&e, &"usage".into()).ok()?.as_f64()?;
        Some(quota - usage)
    };
    match estimate.await {
        Some(room) if room < 2.0 * bytes as f64 => StoreFailure::DiskFull,
        _ => StoreFailure::Other("the storage transaction was aborted".into()),
    }
}
