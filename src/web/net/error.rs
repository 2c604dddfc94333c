//! Errors of the network glue (engine host, HTTP, storage), as they reach JavaScript.

use thiserror::Error;
use wasm_bindgen::JsValue;

use crate::engine::api::CommandError;
use crate::engine::magnet::MagnetError;
use crate::engine::metainfo::MetainfoError;

/// Why a call from JavaScript, a request or a storage operation failed.
#[derive(Debug, Error)]
pub enum NetError {
    /// A value passed from JavaScript does not have the expected shape.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// The `.torrent` is not valid.
    #[error("invalid torrent: {0}")]
    Torrent(#[from] MetainfoError),
    /// The magnet link is not valid.
    #[error("invalid magnet link: {0}")]
    Magnet(#[from] MagnetError),
    /// The engine refused a command.
    #[error("{0}")]
    Command(#[from] CommandError),
    /// No bundle with this info hash in the host.
    #[error("no bundle {0}")]
    UnknownBundle(String),
    /// An HTTP request failed or was answered with an error.
    #[error("{0}")]
    Http(String),
    /// IndexedDB failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The database is at a newer schema version than this build knows
    /// (a newer build upgraded it): the message says what the user can do.
    #[error("{0}")]
    NewerSchema(String),
    /// The browser refused an operation (a JavaScript exception).
    #[error("{0}")]
    Browser(String),
    /// Piece bytes read back (from storage, or a send's files) are not the
    /// piece: their SHA-1 is not the torrent's.
    #[error("piece {piece} read back with the wrong SHA-1")]
    Damaged {
        /// The piece.
        piece: u32,
    },
    /// The host is busy in a callback; the call must not re-enter it.
    #[error("the engine host was called from inside its own callback")]
    Reentrant,
}

impl From<NetError> for JsValue {
    fn from(e: NetError) -> JsValue {
        js_sys::Error::new(&e.to_string()).into()
    }
}

/// The message of a JavaScript exception or rejection value.
pub fn js_message(value: &JsValue) -> String {
    if let Some(s) = value.as_string() {
        return s;
    }
    let name = js_sys::Reflect::get(value, &JsValue::from_str("name"))
        .ok()
        .and_then(|v| v.as_string());
    let message = js_sys::Reflect::get(value, &JsValue::from_str("message"))
        .ok()
        .and_then(|v| v.as_string());
    match (name, message) {
        (Some(n), Some(m)) if !m.is_empty() => format!("{n}: {m}"),
        (Some(n), _) => n,
        (None, Some(m)) => m,
        (None, None) if value.is_undefined() || value.is_null() => "no reason given".into(),
        (None, None) => format!("{value:?}"),
    }
}

impl NetError {
    /// A browser exception as an error.
    pub fn browser(value: &JsValue) -> Self {
        NetError::Browser(js_message(value))
    }
}
