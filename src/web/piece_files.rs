//! Downloads' pieces in one file per bundle of the origin private file
//! system, written and read by a dedicated worker through sync access
//! handles (`extension/js/host/piece-worker.js`, driven through the
//! `PieceFiles` object of `network.js` the host is created with).
//!
//! Why a file and not IndexedDB: Chromium keeps a large IndexedDB value in a
//! blob file that its browser process writes, so every stored byte crossed
//! to another process and was written there (BENCHMARKS.md rows 2 and 3: the
//! receiver's browser process spent about a third of the receiver's CPU). A
//! `FileSystemSyncAccessHandle` writes from the worker's own renderer
//! process straight to the file. Piece `i` is at byte `i * piece length`;
//! which pieces are there is still the have-bitfield in IndexedDB, written
//! after the bytes are flushed (`storage.rs`).

use js_sys::{Array, ArrayBuffer, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::engine::ids::InfoHash;

use super::net::error::{js_message, NetError};

/// The worker's `PieceFiles` object, where sync access handles work.
#[derive(Clone, Debug)]
pub struct PieceFiles {
    api: JsValue,
}

impl PieceFiles {
    /// The piece files behind `api` (a `PieceFiles` of `network.js`
    /// whose worker opened a sync access handle), or `None` when there is
    /// none: pieces then go to IndexedDB.
    pub fn new(api: JsValue) -> Option<PieceFiles> {
        (!api.is_undefined() && !api.is_null()).then_some(PieceFiles { api })
    }

    /// Calls `method`: its promise's value, or the JavaScript error (its
    /// `name` is `QuotaExceededError` when the disk or the quota is full).
    async fn call(&self, method: &str, args: &Array) -> Result<JsValue, JsValue> {
        let f: Function = Reflect::get(&self.api, &method.into())?.dyn_into()?;
        let promise: Promise = f.apply(&self.api, args)?.dyn_into()?;
        JsFuture::from(promise).await
    }

    /// Writes pieces (`(byte offset, bytes)`) into the bundle's file, in
    /// the order of their offsets, and flushes it: once this succeeds the
    /// bytes are on disk. Fails with the JavaScript error: on a full disk a
    /// `QuotaExceededError` whose `unwritten` lists the positions (in
    /// `pieces`) of those not written; the others are written and flushed.
    pub async fn write<'a>(
        &self,
        info_hash: InfoHash,
        pieces: impl Iterator<Item = (u64, &'a [u8])>,
    ) -> Result<(), JsValue> {
        let bundle = bundle(info_hash);
        let offsets = Array::new();
        let views = Array::new();
        for (offset, bytes) in pieces {
            offsets.push(&JsValue::from(offset as f64));
            // SAFETY: `write` (network.js) copies every view before it
            // returns its promise, and nothing from here to that call
            // allocates in wasm memory (which could move it).
            views.push(unsafe { &Uint8Array::view(bytes) });
        }
        let args = Array::of3(&bundle, &offsets, &views);
        self.call("write", &args).await.map(drop)
    }

    /// `len` bytes of the bundle's file from `offset` (an error when the
    /// file ends before).
    pub async fn read(
        &self,
        info_hash: InfoHash,
        offset: u64,
        len: u32,
    ) -> Result<ArrayBuffer, NetError> {
        let args = Array::of3(
            &bundle(info_hash),
            &JsValue::from(offset as f64),
            &JsValue::from(len),
        );
        self.call("read", &args)
            .await
            .and_then(JsValue::dyn_into)
            .map_err(file_error)
    }

    /// Bytes the origin may still store (its quota less its usage), or
    /// `None` when the browser does not say.
    pub async fn room(&self) -> Option<u64> {
        let room = self.call("room", &Array::new()).await.ok()?.as_f64()?;
        (room >= 0.0).then_some(room as u64)
    }

    /// Closes and deletes the bundle's file, if it has one.
    pub async fn remove(&self, info_hash: InfoHash) -> Result<(), NetError> {
        self.call("remove", &Array::of1(&bundle(info_hash)))
            .await
            .map(drop)
            .map_err(file_error)
    }
}

fn bundle(info_hash: InfoHash) -> JsValue {
    JsValue::from_str(&info_hash.to_hex())
}

/// A failed call as a storage error.
pub fn file_error(e: JsValue) -> NetError {
    NetError::Storage(format!("the piece file: {}", js_message(&e)))
}
