//! SHA-1 by WebCrypto, to check piece bytes read back (stored pieces, a
//! send's files) against the torrent before they are served or saved.
//!
//! Why WebCrypto and not the engine's `sha1_smol`: `crypto.subtle.digest`
//! is the browser's native SHA-1 (with the CPU's SHA instructions where it
//! has them), `sha1_smol` compiled to wasm32 portable code. Measured in
//! headless Chromium on the 2-core test machine (64 MiB in 256 KiB pieces,
//! three runs, machine shared): WebCrypto 1.2 to 1.4 GB/s with each digest
//! awaited before the next (as the glue does), `sha1_smol` in wasm32 about
//! 0.5 GB/s. Chromium computes the digest on the thread that calls it,
//! before it returns the promise (8,192 digests of 256 KiB: 1.15 s to call,
//! 1.15 CPU-s of the page's main thread, nothing on other threads), so it
//! is the engine's thread's work either way; hashing in the piece file
//! worker instead was tried and saved no CPU there (BENCHMARKS.md row 3).
//! `digest` copies its input when it is called, so a view into wasm memory
//! may be handed to it.

use js_sys::{ArrayBuffer, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::engine::lengths::PieceIndex;
use crate::engine::metainfo::Info;

use super::net::error::{js_message, NetError};

/// Starts the SHA-1 of `data` (an `ArrayBuffer` or a typed array): the
/// bytes are copied by the time this returns.
fn start_sha1(data: &Object) -> Result<JsFuture, NetError> {
    let subtle = Reflect::get(&js_sys::global(), &"crypto".into())
        .and_then(|c| Reflect::get(&c, &"subtle".into()))
        .map_err(|e| NetError::browser(&e))?;
    let digest: js_sys::Function = Reflect::get(&subtle, &"digest".into())
        .map_err(|e| NetError::browser(&e))?
        .dyn_into()
        .map_err(|_| NetError::Browser("no crypto.subtle.digest in this context".into()))?;
    let promise: Promise = digest
        .call2(&subtle, &JsValue::from_str("SHA-1"), data)
        .map_err(|e| NetError::browser(&e))?
        .dyn_into()
        .map_err(|_| NetError::Browser("crypto.subtle.digest returned no promise".into()))?;
    Ok(JsFuture::from(promise))
}

/// The hash a started digest resolves to.
async fn finish_sha1(digest: JsFuture) -> Result<[u8; 20], NetError> {
    let out: ArrayBuffer = digest
        .await
        .map_err(|e| NetError::Browser(js_message(&e)))?
        .dyn_into()
        .map_err(|_| NetError::Browser("crypto.subtle.digest returned no buffer".into()))?;
    let view = Uint8Array::new(&out);
    if view.length() != 20 {
        return Err(NetError::Browser(format!(
            "a SHA-1 of {} bytes",
            view.length()
        )));
    }
    let mut hash = [0u8; 20];
    view.copy_to(&mut hash);
    Ok(hash)
}

/// Checks the bytes of piece `piece` (an `ArrayBuffer` or typed array of
/// exactly its length) against the torrent: [`NetError::Damaged`] when they
/// are not the piece.
pub async fn check_piece(info: &Info, piece: PieceIndex, data: &Object) -> Result<(), NetError> {
    let digest = start_sha1(data)?;
    verdict(info, piece, finish_sha1(digest).await?)
}

/// [`check_piece`] for bytes in wasm memory.
pub async fn check_piece_bytes(
    info: &Info,
    piece: PieceIndex,
    bytes: &[u8],
) -> Result<(), NetError> {
    let digest = {
        // SAFETY: `digest` copies the view's bytes before it returns its
        // promise, and nothing in between allocates in wasm memory (which
        // could move it); the view is dropped right after.
        let view = unsafe { Uint8Array::view(bytes) };
        start_sha1(&view)?
    };
    verdict(info, piece, finish_sha1(digest).await?)
}

/// The SHA-1 of bytes in wasm memory: WebCrypto's, or the engine's
/// `sha1_smol` when WebCrypto fails (no `crypto.subtle` in this context).
/// The digest of a received piece: the host hashes them
/// (`ClientConfig::host_hashes`) so the engine's thread does not.
pub async fn sha1(bytes: &[u8]) -> [u8; 20] {
    let digest = {
        // SAFETY: as in `check_piece_bytes`: `digest` copies the view's
        // bytes before it returns, and nothing allocates in between.
        let view = unsafe { Uint8Array::view(bytes) };
        start_sha1(&view)
    };
    match digest {
        Ok(d) => match finish_sha1(d).await {
            Ok(hash) => hash,
            Err(_) => crate::engine::hash::sha1(bytes),
        },
        Err(_) => crate::engine::hash::sha1(bytes),
    }
}

fn verdict(info: &Info, piece: PieceIndex, hash: [u8; 20]) -> Result<(), NetError> {
    if hash == *info.piece_hash(piece) {
        Ok(())
    } else {
        Err(NetError::Damaged { piece: piece.get() })
    }
}
