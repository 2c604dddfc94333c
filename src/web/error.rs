//! Errors of the glue layer, as they reach JavaScript.

use wasm_bindgen::JsValue;

use crate::engine::create::CreateError;
use crate::engine::magnet::MagnetError;
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
    /// The torrent is not valid.
    #[error("invalid torrent: {0}")]
    Metainfo(#[from] MetainfoError),
    /// The bundle cannot be made into a torrent (names, paths, lengths).
    #[error("cannot create the torrent: {0}")]
    Create(#[from] CreateError),
    /// The magnet link is not valid.
    #[error("invalid magnet link: {0}")]
    Magnet(#[from] MagnetError),
}

impl From<GlueError> for JsValue {
    fn from(e: GlueError) -> JsValue {
        js_sys::Error::new(&e.to_string()).into()
    }
}
