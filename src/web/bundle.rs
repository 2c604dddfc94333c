//! Bundle exports: the piece length, the `.torrent` of a bundle hashed in
//! JavaScript, and a validated `.torrent` described for the UI.

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::engine::bencode::OwnedValue;
use crate::engine::lengths::Lengths;
use crate::engine::metainfo::Metainfo;

use super::error::GlueError;

/// The piece length the engine picks for a bundle of `total_length` bytes.
#[wasm_bindgen(js_name = pieceLengthFor)]
pub fn piece_length_for(total_length: f64) -> Result<u32, JsValue> {
    let total = length_from_js(total_length)?;
    Ok(Lengths::auto_piece_length(total))
}

/// What JavaScript describes when it asks for a torrent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleSpec {
    /// Directory name of the bundle.
    name: String,
    /// Piece length in bytes (from `pieceLengthFor`).
    piece_length: u32,
    /// Files in stream order; each path is a list of components.
    files: Vec<FileSpec>,
    /// Tracker URLs, each its own tier.
    #[serde(default)]
    trackers: Vec<String>,
    /// BEP 19 web seed URLs.
    #[serde(default)]
    web_seeds: Vec<String>,
    /// `comment`.
    #[serde(default)]
    comment: Option<String>,
    /// `created by`.
    #[serde(default)]
    created_by: Option<String>,
    /// `creation date`, seconds since the Unix epoch (JavaScript owns the clock).
    #[serde(default)]
    creation_date: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct FileSpec {
    path: Vec<String>,
    length: f64,
}

/// A torrent made by [`create_torrent`].
#[wasm_bindgen(getter_with_clone)]
pub struct CreatedTorrent {
    /// The `.torrent` file.
    pub bytes: Vec<u8>,
    /// The info hash, 40 lower-case hex digits.
    #[wasm_bindgen(js_name = infoHash)]
    pub info_hash: String,
}

/// Builds the `.torrent` of a multi-file bundle from its description and its
/// piece hashes (20 bytes per piece, in order). The result is validated by
/// parsing it back, so a torrent that leaves here is one the engine accepts.
#[wasm_bindgen(js_name = createTorrent)]
pub fn create_torrent(spec: JsValue, piece_hashes: &[u8]) -> Result<CreatedTorrent, JsValue> {
    let spec: BundleSpec = serde_wasm_bindgen::from_value(spec)
        .map_err(|e| GlueError::Argument(format!("bundle description: {e}")))?;
    Ok(build(spec, piece_hashes)?)
}

fn build(spec: BundleSpec, piece_hashes: &[u8]) -> Result<CreatedTorrent, GlueError> {
    let mut files = Vec::with_capacity(spec.files.len());
    let mut total: u64 = 0;
    for f in &spec.files {
        let length = length_from_js(f.length)?;
        total = total
            .checked_add(length)
            .ok_or_else(|| GlueError::Argument("total length overflows".into()))?;
        files.push(
            OwnedValue::dict()
                .with("length", OwnedValue::Int(to_i64(length)?))
                .with(
                    "path",
                    OwnedValue::List(f.path.iter().map(OwnedValue::bytes).collect()),
                ),
        );
    }
    let lengths = Lengths::new(total, u64::from(spec.piece_length))?;
    if piece_hashes.len() != lengths.num_pieces() as usize * 20 {
        return Err(GlueError::PieceHashes {
            expected: lengths.num_pieces(),
            got: piece_hashes.len(),
        });
    }
    let info = OwnedValue::dict()
        .with("name", OwnedValue::bytes(&spec.name))
        .with(
            "piece length",
            OwnedValue::Int(i64::from(spec.piece_length)),
        )
        .with("pieces", OwnedValue::bytes(piece_hashes))
        .with("files", OwnedValue::List(files));
    let mut metainfo = Metainfo::from_info(info.encode(), spec.trackers, spec.web_seeds)?;
    metainfo.comment = spec.comment.filter(|c| !c.is_empty());
    metainfo.created_by = spec.created_by;
    metainfo.creation_date = spec.creation_date.map(|d| d as i64);
    let bytes = metainfo.to_torrent_bytes();
    // What leaves here must be a torrent the engine itself accepts.
    let check = Metainfo::from_torrent_bytes(&bytes)?;
    Ok(CreatedTorrent {
        bytes,
        info_hash: check.info_hash.to_hex(),
    })
}

/// A `.torrent` described for the UI (every number fits a JavaScript number).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TorrentView {
    info_hash: String,
    name: String,
    piece_length: u32,
    piece_count: u32,
    total_length: f64,
    files: Vec<FileView>,
    trackers: Vec<String>,
    web_seeds: Vec<String>,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<f64>,
}

#[derive(Debug, Serialize)]
struct FileView {
    path: String,
    length: f64,
    offset: f64,
    padding: bool,
}

/// Parses and validates a `.torrent` and describes it: info hash, name,
/// lengths, files (paths joined with `/`), trackers and web seeds.
#[wasm_bindgen(js_name = inspectTorrent)]
pub fn inspect_torrent(bytes: &[u8]) -> Result<JsValue, JsValue> {
    let m = Metainfo::from_torrent_bytes(bytes).map_err(GlueError::from)?;
    let view = TorrentView {
        info_hash: m.info_hash.to_hex(),
        name: m.info.name.clone(),
        piece_length: m.info.lengths.piece_length(),
        piece_count: m.info.lengths.num_pieces(),
        total_length: m.info.lengths.total_length() as f64,
        files: m
            .info
            .files
            .iter()
            .map(|f| FileView {
                path: f.path.join("/"),
                length: f.length as f64,
                offset: f.offset as f64,
                padding: f.padding,
            })
            .collect(),
        trackers: m.trackers(),
        web_seeds: m.url_list.clone(),
        comment: m.comment.clone(),
        created_by: m.created_by.clone(),
        creation_date: m.creation_date.map(|d| d as f64),
    };
    serde_wasm_bindgen::to_value(&view)
        .map_err(|e| GlueError::Argument(format!("torrent description: {e}")).into())
}

/// A byte length given as a JavaScript number: a whole, non-negative number
/// no larger than 2^53 (beyond it a number no longer counts bytes exactly).
fn length_from_js(n: f64) -> Result<u64, GlueError> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if !(0.0..=MAX_SAFE).contains(&n) || n.fract() != 0.0 {
        return Err(GlueError::Argument(format!("not a byte length: {n}")));
    }
    Ok(n as u64)
}

fn to_i64(n: u64) -> Result<i64, GlueError> {
    i64::try_from(n).map_err(|_| GlueError::Argument(format!("length too large: {n}")))
}
