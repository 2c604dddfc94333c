//! WebTorrent tracker support: the JSON message codec, announce scheduling and offer bookkeeping.
//!
//! The WebTorrent tracker protocol (one JSON object per WebSocket text frame,
//! binary ids as 20-character latin-1 strings) is described in
//! `PROTOCOL.md`. This module has three parts, all sans-IO:
//!
//! - [`codec`](self#codec): [`parse_from_tracker`] turns a frame from a
//!   tracker into a [`FromTracker`]; [`encode_announce`], [`encode_answer`] and
//!   [`encode_scrape`] write what a client sends. [`parse_to_tracker`] and
//!   [`encode_to_client`] are the server's side of the same codec. Both
//!   parsers cap the frame size and refuse any binary field that is not exactly
//!   20 characters in U+0000..=U+00FF.
//! - [`Announcer`]: when to announce one torrent to one tracker, with how many
//!   offers and which event; interval, backoff, `completed` once, `stopped`.
//! - [`OfferBook`]: the offers we made that wait for an answer, expired after
//!   [`OFFER_TIMEOUT`].
//!
//! # Codec
//!
//! The wire types are those of the `aquatic_ws_protocol` crate (re-exported as
//! [`wire`]) wherever they fit; this layer adds what that crate leaves out:
//! strict 20-byte strings (its deserializer ignores characters past the
//! twentieth), `uploaded`/`downloaded` in announces, optional announce-response
//! fields, errors that say which message was malformed, and conversion to the
//! engine's own [`InfoHash`] and [`PeerId`].

mod announcer;
mod codec;
mod offers;

use std::fmt;
use std::time::Duration;

use thiserror::Error;

use crate::engine::ids::{InfoHash, PeerId};

pub use announcer::{
    AnnounceNeed, AnnounceStats, Announcer, Backoff, BACKOFF_BASE, BACKOFF_CAP, DEFAULT_INTERVAL,
    DEFAULT_OFFERS, MAX_INTERVAL, MAX_OFFERS, MIN_INTERVAL,
};
pub use aquatic_ws_protocol as wire;
pub use codec::{
    encode_announce, encode_answer, encode_scrape, encode_to_client, parse_from_tracker,
    parse_to_tracker, MAX_FROM_TRACKER_LEN, MAX_TO_TRACKER_LEN,
};
pub use offers::{AnswerLookup, OfferBook, OFFER_TIMEOUT};

/// Identifies one WebRTC offer between the offerer, the tracker and the
/// answerer: 20 bytes, random (taken from the caller's seeded generator).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct OfferId(pub [u8; 20]);

impl OfferId {
    /// A fresh offer id drawn from `rng` (the engine has no randomness of its
    /// own; the caller seeds it).
    pub fn random(rng: &mut fastrand::Rng) -> Self {
        let mut id = [0u8; 20];
        rng.fill(&mut id);
        OfferId(id)
    }
}

impl fmt::Debug for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OfferId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The `event` of an announce; no event is a regular (re-)announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// First announce of this torrent on this connection.
    Started,
    /// The download has just finished (sent once).
    Completed,
    /// We leave the swarm.
    Stopped,
}

/// What an announce carries, for [`encode_announce`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceParams {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// Bytes uploaded to peers since started.
    pub uploaded: u64,
    /// Bytes downloaded since started.
    pub downloaded: u64,
    /// Bytes still missing; `None` while the size is unknown (a magnet link
    /// before its metadata), which omits the field.
    pub left: Option<u64>,
    /// The event, if any.
    pub event: Option<Event>,
    /// Offers to relay to other peers: `(offer id, SDP with all candidates)`.
    /// `numwant` is their number. Not sent with `stopped` or `completed`.
    pub offers: Vec<(OfferId, String)>,
}

/// Swarm counts for one torrent from a scrape response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u64,
    /// Leechers.
    pub incomplete: u64,
    /// Completed downloads the tracker has counted.
    pub downloaded: u64,
}

/// A message from a tracker, as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromTracker {
    /// Another peer's offer, relayed to us: answer it with
    /// [`encode_answer`] (`to_peer_id` = `peer_id`, same `offer_id`).
    Offer {
        /// The torrent the offer is for.
        info_hash: InfoHash,
        /// The offering peer.
        peer_id: PeerId,
        /// The offer's id, to be echoed in our answer.
        offer_id: OfferId,
        /// The offer's SDP.
        sdp: String,
    },
    /// A peer's answer to one of our offers.
    Answer {
        /// The torrent.
        info_hash: InfoHash,
        /// The answering peer.
        peer_id: PeerId,
        /// Which of our offers it answers.
        offer_id: OfferId,
        /// The answer's SDP.
        sdp: String,
    },
    /// The tracker's response to an announce.
    AnnounceResponse {
        /// The torrent.
        info_hash: InfoHash,
        /// Seeders, if the tracker said.
        complete: Option<u64>,
        /// Leechers, if the tracker said.
        incomplete: Option<u64>,
        /// The re-announce interval the tracker asks for (`interval`, else
        /// `min interval`), not yet clamped.
        interval: Option<Duration>,
    },
    /// A scrape response, sorted by info hash.
    Scrape(Vec<(InfoHash, ScrapeStats)>),
    /// The tracker refused a request.
    Failure {
        /// The tracker's `failure reason`.
        reason: String,
        /// The torrent it concerns, when the tracker said (connection-wide
        /// otherwise).
        info_hash: Option<InfoHash>,
    },
}

impl FromTracker {
    /// The torrent a message concerns, for routing it to a session (`None`
    /// for scrapes and connection-wide failures).
    pub fn info_hash(&self) -> Option<InfoHash> {
        match self {
            FromTracker::Offer { info_hash, .. }
            | FromTracker::Answer { info_hash, .. }
            | FromTracker::AnnounceResponse { info_hash, .. } => Some(*info_hash),
            FromTracker::Failure { info_hash, .. } => *info_hash,
            FromTracker::Scrape(_) => None,
        }
    }
}

/// Why a 20-byte binary string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryProblem {
    /// The field is not a JSON string.
    NotAString,
    /// The string has this many characters instead of 20.
    Length(usize),
    /// A character above U+00FF (it cannot stand for one byte).
    WideChar(u32),
}

impl fmt::Display for BinaryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinaryProblem::NotAString => f.write_str("not a string"),
            BinaryProblem::Length(n) => write!(f, "{n} characters instead of 20"),
            BinaryProblem::WideChar(c) => write!(f, "character U+{c:04X} is above U+00FF"),
        }
    }
}

/// Why a tracker message could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TrackerError {
    /// The text frame is longer than this side accepts.
    #[error("tracker message of {len} bytes exceeds the limit of {max}")]
    FrameTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame is not JSON (or nests deeper than the parser allows).
    #[error("tracker message is not valid json: {0}")]
    Json(String),
    /// The frame is JSON but not an object.
    #[error("tracker message is not a json object")]
    NotAnObject,
    /// A binary field (`info_hash`, `peer_id`, `to_peer_id`, `offer_id`, a
    /// scrape `files` key) is not a 20-byte latin-1 string.
    #[error("`{field}` is not a 20-byte string: {problem}")]
    BinaryField {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        problem: BinaryProblem,
    },
    /// A message of a known kind with a missing or mistyped field.
    #[error("malformed {kind}: {detail}")]
    Malformed {
        /// The kind of message, e.g. `offer`.
        kind: &'static str,
        /// What is wrong, as the JSON decoder said it.
        detail: String,
    },
    /// A JSON object that is no message this side understands.
    #[error("unrecognised tracker message (action {action:?})")]
    Unrecognised {
        /// Its `action`, if it had a string one (cut to 32 characters).
        action: Option<String>,
    },
}
