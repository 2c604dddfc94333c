//! Errors of the glue layer, as they reach JavaScript.

use wasm_bindgen::JsValue;

use crate::engine::lengths::LengthsError;
use crate::engine::metainfo::MetainfoError;

/// Why a call from JavaScript could not be served.
#[derive(Debug, thiserror::Error)]
pub enum GlueError {
    /// A value passed from JavaScript does not have the expected shape.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// The piece hashes are not one 20-byte SHA-1 per piece.
    #[error("expected {expected} piece hashes ({} bytes), got {got} bytes", expected * 20)]
    PieceHashes {
        /// Pieces the bundle has.
        expected: u32,
        /// Bytes of hashes received.
        got: usize,
    },
    /// The total length and piece length do not make a valid torrent.
    #[error("invalid lengths: {0}")]
    Lengths(#[from] LengthsError),
    /// The torrent is not valid.
    #[error("invalid torrent: {0}")]
    Metainfo(#[from] MetainfoError),
}

impl From<GlueError> for JsValue {
    fn from(e: GlueError) -> JsValue {
        js_sys::Error::new(&e.to_string()).into()
    }
}
