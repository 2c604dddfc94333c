//! Downloads' pieces in one file per bundle of the origin private file
//! system, written and read by a dedicated worker through sync access
//! handles (`extension/js/host/piece-worker.js`, driven through the
//! `PieceFiles` object of `piece-files.js` the host is created with).
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

/// A failed call: the JavaScript error's `name` (`QuotaExceededError` when
/// the disk or the quota is full) and its message.
#[derive(Debug)]
pub struct FileError {
    /// The error's name.
    pub name: String,
    /// The whole message.
    pub message: String,
}

impl From<FileError> for NetError {
    fn from(e: FileError) -> NetError {
        NetError::Storage(e.message)
    }
}

impl PieceFiles {
    /// The piece files behind `api` (a `PieceFiles` of `piece-files.js`),
    /// or `None` when there is none or its worker cannot open sync access
    /// handles (the worker tries one): pieces then go to IndexedDB.
    pub async fn open(api: JsValue) -> Option<PieceFiles> {
        if api.is_undefined() || api.is_null() {
            return None;
        }
        let files = PieceFiles { api };
        match files.call("probe", &Array::new()).await {
            Ok(v) if v.as_bool() == Some(true) => Some(files),
            _ => None,
        }
    }

    async fn call(&self, method: &str, args: &Array) -> Result<JsValue, FileError> {
        let fail = |e: JsValue| FileError {
            name: Reflect::get(&e, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
                .unwrap_or_default(),
            message: format!("the piece file: {}", js_message(&e)),
        };
        let f: Function = Reflect::get(&self.api, &method.into())
            .map_err(fail)?
            .dyn_into()
            .map_err(fail)?;
        let promise: Promise = f
            .apply(&self.api, args)
            .map_err(fail)?
            .dyn_into()
            .map_err(fail)?;
        JsFuture::from(promise).await.map_err(fail)
    }

    /// Writes pieces (`(byte offset, bytes)`) into the bundle's file and
    /// flushes it: once this succeeds the bytes are on disk.
    pub async fn write(
        &self,
        info_hash: InfoHash,
        pieces: &[(u64, &[u8])],
    ) -> Result<(), FileError> {
        let offsets = Array::new();
        let buffers = Array::new();
        for (offset, bytes) in pieces {
            offsets.push(&JsValue::from(*offset as f64));
            // A copy out of wasm memory, whose buffer the worker receives
            // (transferred, not copied again).
            buffers.push(&Uint8Array::from(*bytes).buffer());
        }
        let args = Array::of3(&bundle(info_hash), &offsets, &buffers);
        self.call("write", &args).await.map(drop)
    }

    /// `len` bytes of the bundle's file from `offset` (fewer at its end).
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
            .await?
            .dyn_into()
            .map_err(|_| NetError::Storage("the piece file read gave no bytes".into()))
    }

    /// Closes and deletes the bundle's file, if it has one.
    pub async fn remove(&self, info_hash: InfoHash) -> Result<(), NetError> {
        self.call("remove", &Array::of1(&bundle(info_hash)))
            .await
            .map(drop)
            .map_err(Into::into)
    }
}

fn bundle(info_hash: InfoHash) -> JsValue {
    JsValue::from_str(&info_hash.to_hex())
}
