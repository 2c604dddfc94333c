//! Bundle exports: the plan and the `.torrent` of a bundle hashed in
//! JavaScript (built by the engine's `TorrentBuilder`), and `.torrent` files
//! and magnet links described for the UI.

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::engine::create::TorrentBuilder;
use crate::engine::magnet::Magnet;
use crate::engine::metainfo::Metainfo;

use super::error::GlueError;

/// What JavaScript describes when it plans or creates a torrent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleSpec {
    /// Directory name of the bundle.
    name: String,
    /// Files in stream order; each path is a list of components.
    files: Vec<FileSpec>,
    /// Piece length in bytes; the engine picks one when absent.
    #[serde(default)]
    piece_length: Option<u32>,
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

impl BundleSpec {
    fn from_js(spec: JsValue) -> Result<BundleSpec, GlueError> {
        serde_wasm_bindgen::from_value(spec)
            .map_err(|e| GlueError::Argument(format!("bundle description: {e}")))
    }

    fn builder(&self) -> Result<TorrentBuilder, GlueError> {
        let mut files = Vec::with_capacity(self.files.len());
        for f in &self.files {
            files.push((f.path.clone(), length_from_js(f.length)?));
        }
        let mut b = TorrentBuilder::new(self.name.clone())
            .files(files)
            .created_by(self.created_by.clone());
        if let Some(p) = self.piece_length {
            b = b.piece_length(p);
        }
        for t in &self.trackers {
            b = b.tracker(t.clone());
        }
        for w in &self.web_seeds {
            b = b.web_seed(w.clone());
        }
        if let Some(c) = self.comment.as_ref().filter(|c| !c.is_empty()) {
            b = b.comment(c.clone());
        }
        if let Some(d) = self.creation_date {
            b = b.creation_date(d as i64);
        }
        Ok(b)
    }
}

/// The lengths a bundle will be hashed with.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Plan {
    piece_length: u32,
    piece_count: u32,
    total_length: f64,
}

/// Validates a bundle's names and paths before any hashing, and returns the
/// piece length the engine picks, the piece count and the total length.
#[wasm_bindgen(js_name = planTorrent)]
pub fn plan_torrent(spec: JsValue) -> Result<JsValue, JsValue> {
    let lengths = BundleSpec::from_js(spec)?
        .builder()?
        .lengths()
        .map_err(GlueError::from)?;
    let plan = Plan {
        piece_length: lengths.piece_length(),
        piece_count: lengths.num_pieces(),
        total_length: lengths.total_length() as f64,
    };
    serde_wasm_bindgen::to_value(&plan)
        .map_err(|e| GlueError::Argument(format!("plan: {e}")).into())
}

/// A torrent made by [`create_torrent`].
#[wasm_bindgen(getter_with_clone)]
pub struct CreatedTorrent {
    /// The `.torrent` file.
    pub bytes: Vec<u8>,
    /// The info hash, 40 lower-case hex digits.
    #[wasm_bindgen(js_name = infoHash)]
    pub info_hash: String,
    /// The magnet link: info hash, name, trackers, web seeds.
    pub magnet: String,
}

/// Builds the `.torrent` of a bundle from its description and its piece
/// hashes (20 bytes per piece, in order, hashed with the plan's lengths).
#[wasm_bindgen(js_name = createTorrent)]
pub fn create_torrent(spec: JsValue, piece_hashes: &[u8]) -> Result<CreatedTorrent, JsValue> {
    Ok(build(BundleSpec::from_js(spec)?, piece_hashes)?)
}

fn build(spec: BundleSpec, piece_hashes: &[u8]) -> Result<CreatedTorrent, GlueError> {
    let builder = spec.builder()?;
    let lengths = builder.lengths()?;
    if piece_hashes.len() != lengths.num_pieces() as usize * 20 {
        return Err(GlueError::PieceHashes {
            expected: lengths.num_pieces(),
            got: piece_hashes.len(),
        });
    }
    let hashes = piece_hashes
        .chunks_exact(20)
        .map(|c| {
            let mut h = [0u8; 20];
            h.copy_from_slice(c);
            h
        })
        .collect();
    let metainfo = builder.build(hashes)?;
    Ok(CreatedTorrent {
        bytes: metainfo.to_torrent_bytes(),
        info_hash: metainfo.info_hash.to_hex(),
        magnet: metainfo.magnet().to_uri(),
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

/// A magnet link described for the UI.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MagnetView {
    info_hash: String,
    name: Option<String>,
    trackers: Vec<String>,
    web_seeds: Vec<String>,
}

/// Parses a magnet link: info hash, name, trackers and web seeds.
#[wasm_bindgen(js_name = inspectMagnet)]
pub fn inspect_magnet(uri: &str) -> Result<JsValue, JsValue> {
    let m = Magnet::parse(uri).map_err(GlueError::from)?;
    let view = MagnetView {
        info_hash: m.info_hash.to_hex(),
        name: m.display_name,
        trackers: m.trackers,
        web_seeds: m.web_seeds,
    };
    serde_wasm_bindgen::to_value(&view)
        .map_err(|e| GlueError::Argument(format!("magnet description: {e}")).into())
}
