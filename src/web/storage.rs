//! Persistence in IndexedDB (through rexie): every bundle's record, verified
//! pieces (in the bundle's piece file, `piece_files.rs`, or as bytes here),
//! each bundle's have-bitfield written after the pieces it covers are, the
//! owner tokens of uploads and the file handles a send needs to resume.
//!
//! The schema lives here and only here, with its version number. One
//! database, `swarmdrop-engine`, version 2:
//!
//! | store     | key                        | value                                  |
//! |-----------|----------------------------|----------------------------------------|
//! | `bundles` | `id` (in the record)       | the transfer record the engine host keeps: metainfo (`.torrent` bytes or magnet), role, state, file list and selection, the bundle's own caps (`limits: {uploadKBps, downloadKBps}`, 0 for none), a send's choice to upload to the server (`uploadToServer`) and the server it was made with (`server`), its last upload figures (`upload`), statistics |
//! | `handles` | `id` (in the record)       | `{id, handles}`: a send's file system handles, where the browser has them |
//! | `pieces`  | `[info hash hex, piece]`   | the piece, a `Uint8Array` (a `Blob` when written before 2026-11-21; both are read), for bundles whose pieces are not in a piece file |
//! | `have`    | info hash hex              | `{pieces: n, bits: Uint8Array, file?: true}` (BEP 3 order); `file`: the pieces are in the bundle's piece file, not in `pieces` |
//! | `uploads` | info hash hex              | `{server, token}`                      |
//!
//! Versions and upgrades:
//! - 1: `pieces`, `have`, `uploads` here; the records (`bundles`, `handles`)
//!   in a second database, `swarmdrop` v1, written by the extension's JS.
//! - 2: the records move here. Opening creates the two stores (IndexedDB's
//!   upgrade), then copies every record of `swarmdrop` that is not here yet
//!   and deletes `swarmdrop`. The copy is idempotent: a crash between the
//!   copy and the delete copies nothing twice. The pieces never move (they
//!   can be gigabytes).
//!
//! Where a bundle's pieces live is decided once, when its first pieces are
//! stored, and kept in its have record (`file`): in its piece file (OPFS,
//! written by a worker, `piece_files.rs`) where the host has one and the
//! origin has room for the whole bundle (a piece file counts against the
//! quota up to its last piece, holes included), else in `pieces`. Bundles
//! stored before piece files existed have no `file` and stay in `pieces`
//! (read, resumed and saved as before). A piece file's
//! bytes are written and flushed before the have record marks them, so a
//! crash in between loses at most one batch of pieces, fetched again.
//!
//! Records are schemaless values: a field added to them needs no version
//! (`limits`, which records written before it lack and the host reads as
//! "no cap"; `uploadToServer`, which the host reads for older sends as "if
//! it had begun to upload", else the settings; `server`, which the host
//! takes for older sends from their share link, else the settings, and
//! keeps). A new version is for
//! stores, keys and indexes, and for rewriting records: it adds its step to
//! `upgrade_steps` (run inside IndexedDB's upgrade, so only store changes)
//! or to [`Storage::open`] after it (copies and rewrites), and a line above.
//!
//! An upgrade waits for every other connection to the database to close.
//! Every connection opened here closes itself on `versionchange`, and the
//! next operation opens the database again (a database another build
//! upgraded past [`SCHEMA_VERSION`] meanwhile fails with a message telling
//! the user to reload the extension). A connection that does not close
//! (another context, an older build still running) makes opening
//! fail after a bounded wait with an error saying so (`idb_open.rs`), which
//! the popup shows, instead of a host that never answers.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use rexie::{KeyRange, ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, IdbDatabase, IdbObjectStoreParameters};

use crate::engine::api::StoreFailure;
use crate::engine::bitfield::Bitfield;
use crate::engine::ids::InfoHash;
use crate::engine::lengths::Lengths;
use crate::engine::metainfo::Info;
use crate::engine::sort;

use super::idb_open;
use super::net::error::{js_message, NetError};
use super::piece_files::{file_error, PieceFiles};

/// The database's name in the extension origin.
pub const DB_NAME: &str = "swarmdrop-engine";
/// The schema version (IndexedDB's `version`).
pub const SCHEMA_VERSION: u32 = 2;
/// Schema 1's database of bundle records, folded into [`DB_NAME`] by schema 2.
pub const LEGACY_RECORDS_DB: &str = "swarmdrop";

const BUNDLES: &str = "bundles";
const HANDLES: &str = "handles";
const PIECES: &str = "pieces";
const HAVE: &str = "have";
const UPLOADS: &str = "uploads";
/// Why pieces kept in a piece file cannot be read or written now.
const NO_PIECE_FILES: &str = "its piece file cannot be opened here";

/// Room a batch of pieces put in IndexedDB leaves on the disk (the origin's
/// quota, which is the disk's free space with `unlimitedStorage`), at
/// least; a piece that would leave less is not stored (the disk is full).
/// Chromium's IndexedDB does not stop short of the disk's last byte by
/// itself, and a backing store that runs out of disk can be found corrupt
/// and deleted with everything in it (seen with Chromium 148: pieces
/// committed earlier gone; electron/electron#41877). Its own writes beyond
/// the values (log, manifest, compaction) need room too, so this is more
/// than the piece-file worker's 1 MiB.
const IDB_HEADROOM: f64 = 4.0 * 1024.0 * 1024.0;
/// The key path of records in `bundles` and `handles`.
const RECORD_KEY: &str = "id";

thread_local! {
    /// The connection of this context, shared by the records and the engine.
    static OPEN: std::cell::RefCell<Option<Storage>> = const { std::cell::RefCell::new(None) };
}

/// A verified piece on its way to storage.
#[derive(Clone, Debug)]
pub struct PieceToStore {
    /// The bundle.
    pub info_hash: InfoHash,
    /// The piece.
    pub piece: u32,
    /// Pieces of the bundle (the have-bitfield's length).
    pub num_pieces: u32,
    /// Where the piece begins in the bundle (its place in a piece file).
    pub offset: u64,
    /// The bundle's length in bytes (a piece file needs room for all of it).
    pub bundle_len: u64,
    /// The bytes.
    pub data: std::rc::Rc<Vec<u8>>,
}

/// The open database: one connection per context, shared by every clone of
/// this handle. Another context's upgrade or delete closes it
/// (`versionchange`); the next operation then opens it again.
#[derive(Clone)]
pub struct Storage {
    db: Rc<RefCell<Rc<Rexie>>>,
    /// Piece files, where this context has them (the engine host).
    files: Option<PieceFiles>,
    /// Whether each bundle's pieces are in its piece file, once known (a
    /// list: a host holds a few bundles).
    places: Rc<RefCell<Vec<(InfoHash, bool)>>>,
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

/// The bytes of a stored piece value: a `Uint8Array` (written since
/// 2026-11-21), a `Blob` (before) or an `ArrayBuffer`. A stored Blob is
/// read, never sliced or composed (see `saves.rs`).
async fn stored_bytes(value: JsValue, piece: u32) -> Result<ArrayBuffer, NetError> {
    if let Some(view) = value.dyn_ref::<Uint8Array>() {
        let buffer = view.buffer();
        if view.byte_offset() == 0 && view.byte_length() == buffer.byte_length() {
            return Ok(buffer);
        }
        return Ok(view.slice(0, view.length()).buffer());
    }
    if let Some(blob) = value.dyn_ref::<Blob>() {
        return JsFuture::from(blob.array_buffer())
            .await
            .map_err(|e| NetError::Storage(js_message(&e)))?
            .dyn_into()
            .map_err(|_| NetError::Storage(format!("piece {piece} did not read as bytes")));
    }
    value
        .dyn_into::<ArrayBuffer>()
        .map_err(|_| NetError::Storage(format!("piece {piece} is not bytes")))
}

fn piece_key(info_hash: InfoHash, piece: u32) -> JsValue {
    let key = Array::new();
    key.push(&JsValue::from_str(&info_hash.to_hex()));
    key.push(&JsValue::from(piece));
    key.into()
}

/// The keys of every piece of a bundle in `pieces`.
fn bundle_pieces(info_hash: InfoHash) -> Result<KeyRange, NetError> {
    KeyRange::bound(
        &piece_key(info_hash, 0),
        &piece_key(info_hash, u32::MAX),
        None,
        None,
    )
    .map_err(|e| NetError::Storage(e.to_string()))
}

fn bundle_key(info_hash: InfoHash) -> JsValue {
    JsValue::from_str(&info_hash.to_hex())
}

/// The upgrade steps of [`DB_NAME`], from the version it had (0: new) to
/// [`SCHEMA_VERSION`]. Each step only adds what is missing, so a step that
/// ran half (an aborted upgrade rolls back anyway) is safe to run again.
fn upgrade_steps(db: &IdbDatabase, old: u32) -> Result<(), JsValue> {
    if old < 1 {
        create_store(db, PIECES, None)?;
        create_store(db, HAVE, None)?;
        create_store(db, UPLOADS, None)?;
    }
    if old < 2 {
        // The records move here; their copy runs once the upgrade is done
        // (`Storage::migrate_legacy_records`), outside the upgrade.
        create_store(db, BUNDLES, Some(RECORD_KEY))?;
        create_store(db, HANDLES, Some(RECORD_KEY))?;
    }
    Ok(())
}

/// Schema 1's [`LEGACY_RECORDS_DB`], made empty when it does not exist (the
/// copy then copies nothing and deletes it).
fn legacy_steps(db: &IdbDatabase, _old: u32) -> Result<(), JsValue> {
    create_store(db, BUNDLES, Some(RECORD_KEY))?;
    create_store(db, HANDLES, Some(RECORD_KEY))
}

fn create_store(db: &IdbDatabase, name: &str, key_path: Option<&str>) -> Result<(), JsValue> {
    if db.object_store_names().contains(name) {
        return Ok(());
    }
    let params = IdbObjectStoreParameters::new();
    if let Some(key_path) = key_path {
        params.set_key_path(&JsValue::from_str(key_path));
    }
    db.create_object_store_with_optional_parameters(name, &params)?;
    Ok(())
}

impl Storage {
    /// Opens (creating or upgrading) the database, once per context: later
    /// calls share the first connection. An upgrade that another connection
    /// blocks fails after [`idb_open::BLOCKED_WAIT_MS`] with an error saying
    /// so (the next call tries again), never hangs.
    pub async fn open() -> Result<Storage, NetError> {
        if let Some(open) = OPEN.with(|o| o.borrow().clone()) {
            return Ok(open);
        }
        let storage = Storage {
            db: Rc::new(RefCell::new(Rc::new(connect().await?))),
            files: None,
            places: Rc::default(),
        };
        storage.migrate_legacy_records().await?;
        // Two first calls may race: both connections work, the first is kept.
        Ok(OPEN.with(|o| o.borrow_mut().get_or_insert(storage).clone()))
    }

    /// This storage with piece files: bundles whose pieces are not stored
    /// yet keep them there (see the module documentation).
    pub fn with_piece_files(&self, files: PieceFiles) -> Storage {
        Storage {
            files: Some(files),
            ..self.clone()
        }
    }

    /// Whether a bundle's pieces are (or will be) in its piece file: as its
    /// have record says, else (nothing stored yet) where this storage puts
    /// the bundle's first pieces when `storing` gives its length: in a piece
    /// file where this context has them and the origin has room for the
    /// whole bundle, else here. A piece file is as long as the last piece
    /// written to it, and the browser counts that length against the quota
    /// even where pieces before it were never written: a few files picked
    /// at the end of a bundle larger than the disk would fill the quota
    /// there, while IndexedDB holds only the pieces taken. Without
    /// `storing` (a read), a bundle with nothing stored is not in a file,
    /// and nothing is decided.
    async fn in_file(&self, info_hash: InfoHash, storing: Option<u64>) -> Result<bool, NetError> {
        if let Some((_, known)) = self.places.borrow().iter().find(|(h, _)| *h == info_hash) {
            return Ok(*known);
        }
        let in_file = match (self.have_record(info_hash).await?, storing) {
            (Some(r), _) => have_in_file(&r),
            (None, None) => return Ok(false),
            (None, Some(bundle_len)) => match &self.files {
                Some(files) => files.room().await.is_some_and(|room| room >= bundle_len),
                None => false,
            },
        };
        self.places.borrow_mut().push((info_hash, in_file));
        Ok(in_file)
    }

    /// Schema 1 to 2: copies the records of [`LEGACY_RECORDS_DB`] that are
    /// not here yet, then deletes that database.
    async fn migrate_legacy_records(&self) -> Result<(), NetError> {
        if !database_may_exist(LEGACY_RECORDS_DB).await {
            return Ok(());
        }
        idb_open::open(LEGACY_RECORDS_DB, 1, legacy_steps)
            .await?
            .close();
        let old = Rexie::builder(LEGACY_RECORDS_DB)
            .version(1)
            .add_object_store(ObjectStore::new(BUNDLES).key_path(RECORD_KEY))
            .add_object_store(ObjectStore::new(HANDLES).key_path(RECORD_KEY))
            .build()
            .await
            .map_err(storage_error)?;
        let read = async {
            let tx = old
                .transaction(&[BUNDLES, HANDLES], TransactionMode::ReadOnly)
                .map_err(storage_error)?;
            let bundles = tx
                .store(BUNDLES)
                .map_err(storage_error)?
                .get_all(None, None)
                .await
                .map_err(storage_error)?;
            let handles = tx
                .store(HANDLES)
                .map_err(storage_error)?
                .get_all(None, None)
                .await
                .map_err(storage_error)?;
            tx.done().await.map_err(storage_error)?;
            Ok::<_, NetError>((bundles, handles))
        };
        let read = read.await;
        old.close();
        let (bundles, handles) = read?;
        let tx = self
            .transaction(&[BUNDLES, HANDLES], TransactionMode::ReadWrite)
            .await?;
        for (name, records) in [(BUNDLES, bundles), (HANDLES, handles)] {
            let store = tx.store(name).map_err(storage_error)?;
            for record in records {
                let Ok(id) = Reflect::get(&record, &RECORD_KEY.into()) else {
                    continue;
                };
                if id.as_string().is_none() {
                    continue;
                }
                // A record written here since is newer than its old copy.
                if !store.key_exists(id).await.map_err(storage_error)? {
                    store.put(&record, None).await.map_err(storage_error)?;
                }
            }
        }
        match tx.done().await {
            Ok(r) if r.is_committed() => {}
            Ok(_) => {
                return Err(NetError::Storage(format!(
                    "copying the records of {LEGACY_RECORDS_DB} was aborted"
                )))
            }
            Err(e) => return Err(storage_error(e)),
        }
        // Not awaited: a connection left open by an older build (it cannot
        // be, after an update, but a blocked delete must not stop the host)
        // delays the delete until it closes; the copy above is idempotent.
        wasm_bindgen_futures::spawn_local(async {
            if let Err(e) = idb_open::delete(LEGACY_RECORDS_DB).await {
                web_sys::console::warn_1(&JsValue::from_str(&format!("swarmdrop: {e}")));
            }
        });
        Ok(())
    }

    /// A transaction on `stores`. When another context's upgrade or delete
    /// closed the connection (`versionchange`), the database is opened again
    /// first, through the same bounded open as at the start; a database
    /// upgraded past [`SCHEMA_VERSION`] meanwhile fails with
    /// [`NetError::NewerSchema`], telling the user to reload.
    async fn transaction(
        &self,
        stores: &[&str],
        mode: TransactionMode,
    ) -> Result<rexie::Transaction, NetError> {
        let db = self.db.borrow().clone();
        match db.transaction(stores, mode) {
            Ok(tx) => return Ok(tx),
            Err(e) if !is_closed(&e) => return Err(storage_error(e)),
            Err(_) => {}
        }
        web_sys::console::info_1(&JsValue::from_str(&format!(
            "swarmdrop: {DB_NAME} was closed by another context's upgrade or delete; opening it again"
        )));
        let fresh = connect().await.map_err(|e| match e {
            NetError::NewerSchema(_) => NetError::NewerSchema(format!(
                "another Swarmdrop page upgraded {DB_NAME} past version {SCHEMA_VERSION}, the one \
                 this Swarmdrop knows, and closed this engine's connection to it: reload the \
                 extension (or restart the browser) so that one Swarmdrop runs"
            )),
            other => other,
        })?;
        let current = {
            let mut slot = self.db.borrow_mut();
            if Rc::ptr_eq(&slot, &db) {
                *slot = Rc::new(fresh);
            } else {
                // Another operation opened it again meanwhile: keep that one.
                fresh.close();
            }
            slot.clone()
        };
        current.transaction(stores, mode).map_err(storage_error)
    }

    /// Every bundle record.
    pub async fn records(&self) -> Result<Vec<JsValue>, NetError> {
        let tx = self
            .transaction(&[BUNDLES], TransactionMode::ReadOnly)
            .await?;
        tx.store(BUNDLES)
            .map_err(storage_error)?
            .get_all(None, None)
            .await
            .map_err(storage_error)
    }

    /// One record of `bundles` or `handles` by its id.
    async fn record_in(&self, store: &str, id: &str) -> Result<Option<JsValue>, NetError> {
        let tx = self
            .transaction(&[store], TransactionMode::ReadOnly)
            .await?;
        tx.store(store)
            .map_err(storage_error)?
            .get(JsValue::from_str(id))
            .await
            .map_err(storage_error)
    }

    /// The bundle record `id`.
    pub async fn record(&self, id: &str) -> Result<Option<JsValue>, NetError> {
        self.record_in(BUNDLES, id).await
    }

    /// Writes a bundle record (it carries its `id`).
    pub async fn put_record(&self, record: &JsValue) -> Result<(), NetError> {
        self.put_in(BUNDLES, record).await
    }

    async fn put_in(&self, store: &str, record: &JsValue) -> Result<(), NetError> {
        let id = Reflect::get(record, &RECORD_KEY.into())
            .ok()
            .and_then(|v| v.as_string());
        if id.is_none() {
            return Err(NetError::Argument("a record needs a string id".into()));
        }
        let tx = self
            .transaction(&[store], TransactionMode::ReadWrite)
            .await?;
        tx.store(store)
            .map_err(storage_error)?
            .put(record, None)
            .await
            .map_err(storage_error)?;
        tx.done().await.map_err(storage_error)?;
        Ok(())
    }

    /// Deletes the bundle record `id` and its file handles (not its pieces:
    /// see [`Storage::delete_bundle`]).
    pub async fn delete_record(&self, id: &str) -> Result<(), NetError> {
        let tx = self
            .transaction(&[BUNDLES, HANDLES], TransactionMode::ReadWrite)
            .await?;
        for store in [BUNDLES, HANDLES] {
            tx.store(store)
                .map_err(storage_error)?
                .delete(JsValue::from_str(id))
                .await
                .map_err(storage_error)?;
        }
        tx.done().await.map_err(storage_error)?;
        Ok(())
    }

    /// The file handles kept for the send `id`.
    pub async fn handles(&self, id: &str) -> Result<Option<JsValue>, NetError> {
        let record = self.record_in(HANDLES, id).await?;
        Ok(record.and_then(|r| Reflect::get(&r, &"handles".into()).ok()))
    }

    /// Keeps the file handles of the send `id`.
    pub async fn put_handles(&self, id: &str, handles: &JsValue) -> Result<(), NetError> {
        let record = Object::new();
        let _ = Reflect::set(&record, &RECORD_KEY.into(), &JsValue::from_str(id));
        let _ = Reflect::set(&record, &"handles".into(), handles);
        self.put_in(HANDLES, &record).await
    }

    /// Stores verified pieces and sets their bits in their bundles'
    /// have-bitfields. Pieces kept in IndexedDB are put in the same
    /// transaction as their bits (a bit never exists without its piece, and
    /// many pieces cost one commit); pieces kept in piece files are written
    /// and flushed first, in the order of their place in the file, and their
    /// bits set only once that succeeded. When the disk fills up part way
    /// through a piece file, or the pieces for IndexedDB would leave it less
    /// than [`IDB_HEADROOM`], the pieces that fit are recorded, and the
    /// others are marked in `short` (not stored: the disk is full).
    pub async fn store_pieces(
        &self,
        batch: &[PieceToStore],
        short: &mut [bool],
    ) -> Result<(), StoreFailure> {
        let mut bundles: Vec<InfoHash> = batch.iter().map(|p| p.info_hash).collect();
        sort::sort_by(&mut bundles, Ord::cmp);
        bundles.dedup();
        let mut in_file = Vec::with_capacity(bundles.len());
        // Indices in `batch` of the pieces put in IndexedDB.
        let mut kept_here: Vec<usize> = Vec::new();
        for &info_hash in &bundles {
            let bundle_len = batch
                .iter()
                .find(|p| p.info_hash == info_hash)
                .map(|p| p.bundle_len);
            let here = self
                .in_file(info_hash, bundle_len)
                .await
                .map_err(|e| StoreFailure::Other(e.to_string()))?;
            if !here {
                kept_here.extend((0..batch.len()).filter(|&i| batch[i].info_hash == info_hash));
            } else {
                let files = self
                    .files
                    .as_ref()
                    .ok_or_else(|| StoreFailure::Other(NO_PIECE_FILES.into()))?;
                let mine: Vec<usize> = (0..batch.len())
                    .filter(|&i| batch[i].info_hash == info_hash)
                    .collect();
                // Positions in `mine` of the pieces not written.
                let unwritten = if short.iter().any(|s| *s) {
                    // The disk filled up with an earlier bundle's pieces.
                    None
                } else {
                    let pieces = mine.iter().map(|&i| (batch[i].offset, &batch[i].data[..]));
                    match files.write(info_hash, pieces).await {
                        Ok(()) => Some(Array::new()),
                        Err(e) => {
                            if !js_message(&e).starts_with("QuotaExceededError") {
                                return Err(StoreFailure::Other(file_error(e).to_string()));
                            }
                            Reflect::get(&e, &"unwritten".into())
                                .ok()
                                .and_then(|a| a.dyn_into::<Array>().ok())
                        }
                    }
                };
                match unwritten {
                    Some(list) => list
                        .iter()
                        .filter_map(|n| mine.get(n.as_f64()? as usize))
                        .for_each(|&i| short[i] = true),
                    None => mine.iter().for_each(|&i| short[i] = true),
                }
            }
            in_file.push(here);
        }
        // A bundle removed while its pieces were written (`delete_bundle`
        // forgets its place first) gets no have record again.
        if bundles
            .iter()
            .zip(&in_file)
            .any(|(h, file)| *file && !self.places.borrow().iter().any(|(p, _)| p == h))
        {
            return Err(StoreFailure::Other("the bundle was removed".into()));
        }
        // The pieces that fit, in batch order, leaving [`IDB_HEADROOM`]; the
        // others are short. (Without an estimate the browser's own quota
        // check is all there is.)
        if !kept_here.is_empty() {
            if let Some(mut room) = origin_room().await {
                let fits = kept_here
                    .iter()
                    .take_while(|&&i| {
                        room -= batch[i].data.len() as f64;
                        room >= IDB_HEADROOM
                    })
                    .count();
                for i in kept_here.drain(fits..) {
                    short[i] = true;
                }
            }
        }
        // Each piece kept here is put as a JavaScript copy of its bytes, not
        // a view into wasm memory (a view would be cloned with the whole
        // memory behind it), and not as a Blob: a Blob made from bytes costs
        // the engine's thread about half again as much as putting the bytes
        // (measured in headless Chromium, 256 MiB in 512 KiB pieces, eight
        // per transaction: 1.3 to 1.6 s of the thread for Blobs, 0.9 s for
        // bytes), and the browser keeps large values in its own blob files
        // either way. The copy is garbage once `put` has cloned it.
        let values: Vec<JsValue> = kept_here
            .iter()
            .map(|&i| Uint8Array::from(&batch[i].data[..]).into())
            .collect();
        let tx = self
            .transaction(&[PIECES, HAVE], TransactionMode::ReadWrite)
            .await
            .map_err(|e| StoreFailure::Other(e.to_string()))?;
        let pieces = tx.store(PIECES).map_err(failure)?;
        let have = tx.store(HAVE).map_err(failure)?;
        // Every put is issued before any is awaited (one wait for the batch,
        // not one browser round trip per piece); they complete in order, and
        // a failed one aborts the transaction, which `done` reports.
        if !kept_here.is_empty() {
            pieces
                .put_all(kept_here.iter().zip(values).map(|(&i, value)| {
                    (value, Some(piece_key(batch[i].info_hash, batch[i].piece)))
                }))
                .await
                .map_err(failure)?;
        }
        for (&info_hash, &file) in bundles.iter().zip(&in_file) {
            let mine = batch
                .iter()
                .zip(short.iter())
                .filter(|(p, s)| p.info_hash == info_hash && !**s)
                .map(|(p, _)| p);
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
            have.put(&encode_have(&bits, file), Some(&bundle_key(info_hash)))
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

    /// Deletes a piece that read back wrong and clears its have-bit, in one
    /// transaction: the have-bitfield never records a piece that is not
    /// there, and what it records is all the engine trusts. (In a piece
    /// file the bytes stay until the piece fetched again overwrites them.)
    pub async fn discard_piece(
        &self,
        info_hash: InfoHash,
        piece: u32,
        num_pieces: u32,
    ) -> Result<(), NetError> {
        let tx = self
            .transaction(&[PIECES, HAVE], TransactionMode::ReadWrite)
            .await?;
        tx.store(PIECES)
            .map_err(storage_error)?
            .delete(piece_key(info_hash, piece))
            .await
            .map_err(storage_error)?;
        let have = tx.store(HAVE).map_err(storage_error)?;
        let current = have
            .get(bundle_key(info_hash))
            .await
            .map_err(storage_error)?;
        if let Some(current) = current {
            if let Some(mut bits) = decode_have(&current, num_pieces) {
                if piece < bits.len() {
                    bits.set(piece, false);
                }
                have.put(
                    &encode_have(&bits, have_in_file(&current)),
                    Some(&bundle_key(info_hash)),
                )
                .await
                .map_err(storage_error)?;
            }
        }
        match tx.done().await {
            Ok(r) if r.is_committed() => Ok(()),
            Ok(_) => Err(NetError::Storage(format!(
                "deleting damaged piece {piece} was aborted"
            ))),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// The have-bitfield recorded for a bundle (empty when none, or when the
    /// record does not fit the bundle).
    pub async fn have(&self, info_hash: InfoHash, num_pieces: u32) -> Result<Bitfield, NetError> {
        Ok(self
            .have_record(info_hash)
            .await?
            .as_ref()
            .and_then(|v| decode_have(v, num_pieces))
            .unwrap_or_else(|| Bitfield::new(num_pieces)))
    }

    /// A bundle's have record, if it has one.
    async fn have_record(&self, info_hash: InfoHash) -> Result<Option<JsValue>, NetError> {
        let tx = self.transaction(&[HAVE], TransactionMode::ReadOnly).await?;
        tx.store(HAVE)
            .map_err(storage_error)?
            .get(bundle_key(info_hash))
            .await
            .map_err(storage_error)
    }

    /// The stored bytes of a piece, as one `ArrayBuffer` of exactly them; a
    /// piece the have record does not mark is not stored.
    pub async fn piece_buffer(
        &self,
        info_hash: InfoHash,
        lengths: &Lengths,
        piece: u32,
    ) -> Result<ArrayBuffer, NetError> {
        let missing = || NetError::Storage(format!("piece {piece} is not stored"));
        let index = lengths.validate_piece(piece).ok_or_else(missing)?;
        if self.in_file(info_hash, None).await? {
            if !self.have(info_hash, lengths.num_pieces()).await?.get(piece) {
                return Err(missing());
            }
            let files = self
                .files
                .as_ref()
                .ok_or_else(|| NetError::Storage(NO_PIECE_FILES.into()))?;
            return files
                .read(
                    info_hash,
                    lengths.piece_offset(index),
                    lengths.piece_len(index),
                )
                .await;
        }
        let tx = self
            .transaction(&[PIECES], TransactionMode::ReadOnly)
            .await?;
        let value = tx
            .store(PIECES)
            .map_err(storage_error)?
            .get(piece_key(info_hash, piece))
            .await
            .map_err(storage_error)?
            .ok_or_else(missing)?;
        drop(tx);
        stored_bytes(value, piece).await
    }

    /// Reads a stored piece's bytes.
    pub async fn read_piece(
        &self,
        info_hash: InfoHash,
        lengths: &Lengths,
        piece: u32,
    ) -> Result<Vec<u8>, NetError> {
        let buffer = self.piece_buffer(info_hash, lengths, piece).await?;
        Ok(Uint8Array::new(&buffer).to_vec())
    }

    /// The stored bytes of the piece `span` lies in, or an error naming the
    /// file when that piece is missing.
    pub async fn span_buffer(
        &self,
        info_hash: InfoHash,
        info: &Info,
        file_index: usize,
        span: &FileSpan,
    ) -> Result<ArrayBuffer, NetError> {
        self.piece_buffer(info_hash, &info.lengths, span.piece)
            .await
            .map_err(|_| {
                let path = info.files.get(file_index).map(|f| f.path.join("/"));
                NetError::Storage(format!(
                    "{} is not completely downloaded (piece {} is missing)",
                    path.unwrap_or_default(),
                    span.piece
                ))
            })
    }

    /// Deletes a bundle's pieces (its piece file too) and have-bitfield.
    pub async fn delete_bundle(&self, info_hash: InfoHash) -> Result<(), NetError> {
        self.places.borrow_mut().retain(|(h, _)| *h != info_hash);
        let tx = self
            .transaction(&[PIECES, HAVE, UPLOADS], TransactionMode::ReadWrite)
            .await?;
        let range = bundle_pieces(info_hash)?;
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
        if let Some(files) = &self.files {
            files.remove(info_hash).await?;
        }
        Ok(())
    }

    /// The owner token of an upload of this bundle to `server`.
    pub async fn upload_token(
        &self,
        info_hash: InfoHash,
        server: &str,
    ) -> Result<Option<String>, NetError> {
        let tx = self
            .transaction(&[UPLOADS], TransactionMode::ReadOnly)
            .await?;
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
            .transaction(&[UPLOADS], TransactionMode::ReadWrite)
            .await?;
        tx.store(UPLOADS)
            .map_err(storage_error)?
            .put(&record, Some(&bundle_key(info_hash)))
            .await
            .map_err(storage_error)?;
        tx.done().await.map_err(storage_error)?;
        Ok(())
    }
}

fn encode_have(bits: &Bitfield, in_file: bool) -> JsValue {
    let record = Object::new();
    let _ = Reflect::set(&record, &"pieces".into(), &JsValue::from(bits.len()));
    if in_file {
        let _ = Reflect::set(&record, &"file".into(), &JsValue::TRUE);
    }
    let _ = Reflect::set(
        &record,
        &"bits".into(),
        &Uint8Array::from(bits.as_bytes()).into(),
    );
    record.into()
}

/// Whether a have record says its bundle's pieces are in its piece file.
fn have_in_file(value: &JsValue) -> bool {
    Reflect::get(value, &"file".into())
        .ok()
        .and_then(|v| v.as_bool())
        == Some(true)
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

/// Whether a database may exist: `indexedDB.databases()` says so where the
/// browser has it; without it, assume it may.
async fn database_may_exist(name: &str) -> bool {
    let list = async {
        let factory = Reflect::get(&js_sys::global(), &"indexedDB".into()).ok()?;
        let f: js_sys::Function = Reflect::get(&factory, &"databases".into())
            .ok()?
            .dyn_into()
            .ok()?;
        let promise: js_sys::Promise = f.call0(&factory).ok()?.dyn_into().ok()?;
        let list: Array = JsFuture::from(promise).await.ok()?.dyn_into().ok()?;
        Some(list.iter().any(|d| {
            Reflect::get(&d, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
                .as_deref()
                == Some(name)
        }))
    };
    list.await.unwrap_or(true)
}

/// Opens (creating or upgrading) [`DB_NAME`] at [`SCHEMA_VERSION`].
async fn connect() -> Result<Rexie, NetError> {
    // The upgrade runs here, bounded in time; rexie then opens the
    // database at its current version (nothing left to upgrade, so
    // nothing can block it). Its connection closes itself on
    // `versionchange`, as this one does.
    idb_open::open(DB_NAME, SCHEMA_VERSION, upgrade_steps)
        .await?
        .close();
    Rexie::builder(DB_NAME)
        .version(SCHEMA_VERSION)
        .add_object_store(ObjectStore::new(BUNDLES).key_path(RECORD_KEY))
        .add_object_store(ObjectStore::new(HANDLES).key_path(RECORD_KEY))
        .add_object_store(ObjectStore::new(PIECES))
        .add_object_store(ObjectStore::new(HAVE))
        .add_object_store(ObjectStore::new(UPLOADS))
        .build()
        .await
        .map_err(storage_error)
}

/// Whether a transaction could not start because the connection is closed
/// (an `InvalidStateError`: `versionchange` closed it).
fn is_closed(e: &rexie::Error) -> bool {
    match e {
        rexie::Error::IdbError(idb::Error::TransactionOpenFailed(v)) => {
            Reflect::get(v, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
                .is_some_and(|n| n == "InvalidStateError")
        }
        _ => false,
    }
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
    match origin_room().await {
        Some(room) if room < 2.0 * bytes as f64 + IDB_HEADROOM => StoreFailure::DiskFull,
        _ => StoreFailure::Other("the storage transaction was aborted".into()),
    }
}

/// Bytes the origin may still store (quota less usage, from the storage
/// manager's estimate), or `None` where there is no estimate.
async fn origin_room() -> Option<f64> {
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
}

/// The part of one piece that holds bytes of a file: `start..end` within
/// the piece.
pub struct FileSpan {
    pub piece: u32,
    pub start: u64,
    pub end: u64,
}

/// The spans of the pieces holding file `file_index` of `info`, in order.
pub fn file_spans(info: &Info, file_index: usize) -> Result<Vec<FileSpan>, NetError> {
    let file = info
        .files
        .get(file_index)
        .ok_or_else(|| NetError::Argument(format!("no file {file_index}")))?;
    let lengths = info.lengths;
    let mut spans = Vec::new();
    for p in lengths.pieces_for_range(file.offset, file.length) {
        let Some(piece) = lengths.validate_piece(p) else {
            continue;
        };
        let piece_start = lengths.piece_offset(piece);
        let piece_end = piece_start + u64::from(lengths.piece_len(piece));
        let start = file.offset.max(piece_start) - piece_start;
        let end = (file.offset + file.length).min(piece_end) - piece_start;
        if end > start {
            spans.push(FileSpan {
                piece: p,
                start,
                end,
            });
        }
    }
    Ok(spans)
}
