//! Browser glue: owns every JavaScript object and drives the engine.
//!
//! The extension's engine host loads this module (`wasm-bindgen --target
//! web`) and calls its exports. Everything here converts between JavaScript
//! values and engine types at the boundary; decisions stay in the engine.
//!
//! Exports so far (JavaScript names):
//! - `planTorrent(spec)`: validates a bundle's names and paths before
//!   hashing and gives its piece length, piece count and total length;
//! - `createTorrent(spec, pieceHashes)`: the `.torrent` of a bundle whose
//!   pieces the extension hashed (WebCrypto, in workers), with its info hash
//!   and magnet link, built by the engine's `TorrentBuilder`;
//! - `inspectTorrent(bytes)`, `inspectMagnet(uri)`: a validated `.torrent`
//!   or magnet link described for the UI;
//! - `Records`: the bundle records and send file handles, in the one
//!   IndexedDB database whose schema (and upgrades) `storage.rs` defines.
//!
//! The network client (tracker sockets, peer connections, web seeds) plugs in
//! here as one `#[wasm_bindgen]` handle owned by the engine host.

mod api;
mod bundle;
mod digest;
mod error;
mod host;
mod idb_open;
mod js;
pub mod net;
mod piece_files;
mod pieces;
mod records;
mod saves;
mod storage;
mod uploader;

pub use api::SwarmHost;
pub use bundle::{create_torrent, inspect_magnet, inspect_torrent, plan_torrent, CreatedTorrent};
pub use error::GlueError;
pub use records::Records;

use wasm_bindgen::prelude::wasm_bindgen;

/// Runs once when the module is instantiated: panics are reported to the
/// console with their message instead of an opaque `unreachable`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}
