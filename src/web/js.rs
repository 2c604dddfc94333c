//! Engine values as the JavaScript objects the extension's pages read:
//! events, transfer views, upload figures.

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::JsValue;

use crate::engine::api::Role;
use crate::engine::bitfield::Bitfield;
use crate::engine::event::{Event, PauseReason, Progress};
use crate::engine::ids::InfoHash;
use crate::engine::metainfo::Info;
use crate::engine::upload::{UploadPhase, UploadProgress};

use super::host::Bundle;

/// A plain object from `(key, value)` pairs.
pub fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

fn num(n: u64) -> JsValue {
    // Byte counts stay exact up to 2^53 (8 PiB).
    JsValue::from_f64(n as f64)
}

fn hex(h: &InfoHash) -> JsValue {
    JsValue::from_str(&h.to_hex())
}

fn opt_str(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, JsValue::from_str)
}

/// The name of a pause reason.
pub fn pause_reason(r: PauseReason) -> &'static str {
    match r {
        PauseReason::User => "user",
        PauseReason::DiskFull => "diskFull",
    }
}

/// A progress record.
pub fn progress(p: &Progress) -> JsValue {
    object(&[
        ("infoHash", hex(&p.info_hash)),
        ("haveBytes", num(p.have_bytes)),
        ("wantedBytes", num(p.wanted_bytes)),
        ("totalBytes", num(p.total_bytes)),
        ("downRatePeers", num(p.down_rate_peers)),
        ("downRateServer", num(p.down_rate_server)),
        ("upRate", num(p.up_rate)),
        ("downloadedPeers", num(p.downloaded_peers)),
        ("downloadedServer", num(p.downloaded_server)),
        ("uploadedPeers", num(p.uploaded)),
        ("peers", JsValue::from(p.peers)),
        ("paused", JsValue::from_bool(p.paused)),
        ("damaged", JsValue::from(p.damaged)),
    ])
}

/// An engine event as `{type, infoHash, ...}`.
pub fn engine_event(e: &Event) -> JsValue {
    let t = |s: &str| ("type", JsValue::from_str(s));
    match e {
        Event::BundleAdded {
            info_hash,
            name,
            total_length,
        } => object(&[
            t("added"),
            ("infoHash", hex(info_hash)),
            ("name", opt_str(name.as_deref())),
            ("totalBytes", total_length.map_or(JsValue::NULL, num)),
        ]),
        Event::MetadataReceived { info_hash, .. } => {
            object(&[t("metadata"), ("infoHash", hex(info_hash))])
        }
        Event::Progress(p) => object(&[
            t("progress"),
            ("infoHash", hex(&p.info_hash)),
            ("progress", progress(p)),
        ]),
        Event::PieceVerified { info_hash, piece } => object(&[
            t("piece"),
            ("infoHash", hex(info_hash)),
            ("piece", JsValue::from(*piece)),
        ]),
        Event::PieceDamaged { info_hash, piece } => object(&[
            t("pieceDamaged"),
            ("infoHash", hex(info_hash)),
            ("piece", JsValue::from(*piece)),
        ]),
        Event::Completed { info_hash } => object(&[t("completed"), ("infoHash", hex(info_hash))]),
        Event::Paused { info_hash, reason } => object(&[
            t("paused"),
            ("infoHash", hex(info_hash)),
            ("reason", JsValue::from_str(pause_reason(*reason))),
        ]),
        Event::Resumed { info_hash } => object(&[t("resumed"), ("infoHash", hex(info_hash))]),
        Event::Removed { info_hash } => object(&[t("removed"), ("infoHash", hex(info_hash))]),
        Event::PeerConnected {
            info_hash,
            conn,
            peer_id,
        } => object(&[
            t("peerConnected"),
            ("infoHash", hex(info_hash)),
            ("conn", num(conn.0)),
            ("webSeed", JsValue::from_bool(peer_id.is_none())),
        ]),
        Event::PeerDropped {
            info_hash,
            conn,
            reason,
            ..
        } => object(&[
            t("peerDropped"),
            ("infoHash", hex(info_hash)),
            ("conn", num(conn.0)),
            ("reason", JsValue::from_str(&reason.to_string())),
        ]),
        Event::Error { info_hash, message } => error_event(info_hash.as_ref(), message),
    }
}

/// An `{type: "error"}` event.
pub fn error_event(info_hash: Option<&InfoHash>, message: &str) -> JsValue {
    object(&[
        ("type", JsValue::from_str("error")),
        ("infoHash", info_hash.map_or(JsValue::NULL, hex)),
        ("message", JsValue::from_str(message)),
    ])
}

/// Upload figures.
pub fn upload(p: &UploadProgress) -> JsValue {
    let (phase, error) = match &p.phase {
        UploadPhase::Creating => ("creating", None),
        UploadPhase::Checking => ("checking", None),
        UploadPhase::Uploading => ("uploading", None),
        UploadPhase::Done => ("done", None),
        UploadPhase::Failed(reason) => ("failed", Some(reason.as_str())),
    };
    object(&[
        ("phase", JsValue::from_str(phase)),
        ("error", opt_str(error)),
        ("paused", JsValue::from_bool(p.paused)),
        ("piecesDone", JsValue::from(p.pieces_done)),
        ("piecesTotal", JsValue::from(p.pieces_total)),
        ("bytesDone", num(p.bytes_done)),
        ("bytesTotal", num(p.bytes_total)),
        ("bytesSent", num(p.bytes_sent)),
    ])
}

/// An `{type: "upload"}` event.
pub fn upload_event(info_hash: InfoHash, p: &UploadProgress) -> JsValue {
    object(&[
        ("type", JsValue::from_str("upload")),
        ("infoHash", hex(&info_hash)),
        ("upload", upload(p)),
    ])
}

/// Bytes of file `index` covered by pieces in `have`.
fn file_have_bytes(info: &Info, have: &Bitfield, index: usize) -> u64 {
    let Some(f) = info.files.get(index) else {
        return 0;
    };
    let lengths = info.lengths;
    let end = f.offset + f.length;
    lengths
        .pieces_for_range(f.offset, f.length)
        .filter(|&p| have.get(p))
        .filter_map(|p| lengths.validate_piece(p))
        .map(|p| {
            let a = lengths.piece_offset(p);
            let b = a + u64::from(lengths.piece_len(p));
            b.min(end) - a.max(f.offset)
        })
        .sum()
}

/// One transfer as the popup shows it.
pub fn transfer(info_hash: InfoHash, b: &Bundle, progress: Option<&Progress>) -> JsValue {
    let state = if b.error.is_some() && b.progress.is_none() {
        "error"
    } else if b.paused.is_some() {
        "paused"
    } else if b.info.is_none() {
        "metadata"
    } else if b.role == Role::Seed || b.completed {
        "seeding"
    } else {
        "downloading"
    };
    let files = Array::new();
    if let Some(info) = &b.info {
        for (i, f) in info.files.iter().enumerate() {
            if f.padding {
                continue;
            }
            let have_bytes = b
                .have
                .as_ref()
                .map_or(0, |have| file_have_bytes(info, have, i));
            files.push(&object(&[
                ("index", JsValue::from(i as u32)),
                ("path", JsValue::from_str(&f.path.join("/"))),
                ("length", num(f.length)),
                ("offset", num(f.offset)),
                ("haveBytes", num(have_bytes)),
                ("complete", JsValue::from_bool(have_bytes == f.length)),
            ]));
        }
    }
    object(&[
        ("infoHash", hex(&info_hash)),
        ("name", opt_str(b.name.as_deref())),
        (
            "role",
            JsValue::from_str(if b.role == Role::Seed {
                "send"
            } else {
                "receive"
            }),
        ),
        ("state", JsValue::from_str(state)),
        ("pausedReason", opt_str(b.paused)),
        ("completed", JsValue::from_bool(b.completed)),
        ("error", opt_str(b.error.as_deref())),
        ("progress", progress.map_or(JsValue::NULL, self::progress)),
        (
            "upload",
            b.upload
                .as_ref()
                .map_or(JsValue::NULL, |u| upload(&u.plan.progress())),
        ),
        ("files", files.into()),
    ])
}
