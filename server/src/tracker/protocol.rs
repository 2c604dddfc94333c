//! Requests to the tracker, decoded where they lie, and the frames it sends, written by splicing.
//!
//! An announce is decoded straight from the frame's text into borrowed
//! fields: no `serde_json::Value` tree, no key or SDP copied or unescaped.
//! Each offer's and answer's SDP stays the JSON string literal it arrived as
//! ([`Sdp`]), checked to be one, and is copied into the relayed frame as it
//! is ([`offer_frame`], [`answer_frame`]), so no SDP is ever re-escaped.
//!
//! The engine's strict codec ([`swarmdrop::engine::tracker::parse_to_tracker`])
//! stays the reference: this fast path accepts a frame only when that codec
//! would accept it with the same meaning (property-tested), with one
//! exception: a value under a key it does not read is skipped without a
//! nesting limit (by a loop, not recursion), where the codec stops at 128
//! levels. Every
//! frame the fast path refuses or does not handle (scrapes, anything
//! malformed) is decoded by that codec, so errors read as they always did.
//! On top of it the server refuses a scrape of every torrent (it would list
//! the swarms in use) and scrapes of more than [`MAX_SCRAPE_INFO_HASHES`]
//! torrents.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use swarmdrop::engine::tracker::wire::common::{InfoHash, OfferId, PeerId};
use swarmdrop::engine::tracker::wire::incoming::{
    AnnounceEvent, InMessage, ScrapeRequest, ScrapeRequestInfoHashes,
};
use swarmdrop::engine::tracker::{parse_to_tracker, TrackerError, MAX_TO_TRACKER_LEN};
use thiserror::Error;

/// Most info hashes accepted in one scrape request.
pub const MAX_SCRAPE_INFO_HASHES: usize = 64;

/// Why a frame is not a request this tracker serves.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The engine's codec refused the frame.
    #[error("{0}")]
    Codec(#[from] TrackerError),
    /// A scrape without `info_hash` (a full scrape is not offered).
    #[error("scrape needs `info_hash`")]
    ScrapeAll,
    /// A scrape naming more info hashes than allowed.
    #[error("scrape names more than {MAX_SCRAPE_INFO_HASHES} info hashes")]
    TooManyInfoHashes,
}

impl ProtocolError {
    /// The `action` to echo in the failure response, when it is known.
    pub fn action(&self) -> Option<&'static str> {
        match self {
            ProtocolError::Codec(TrackerError::Malformed { kind, .. }) => match *kind {
                "announce" => Some("announce"),
                "scrape request" => Some("scrape"),
                _ => None,
            },
            ProtocolError::Codec(_) => None,
            ProtocolError::ScrapeAll | ProtocolError::TooManyInfoHashes => Some("scrape"),
        }
    }
}

/// One request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// An announce, borrowing its SDPs from the frame.
    Announce(Announce<'a>),
    /// A scrape of a bounded list of torrents.
    Scrape(ScrapeRequest),
}

/// An announce, with the meaning `aquatic_ws_protocol`'s `AnnounceRequest`
/// gives it, and each SDP left as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce<'a> {
    /// The swarm.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// Bytes left to download (`left`), when given.
    pub bytes_left: Option<u64>,
    /// The event (`paused` reads as `update`), when given.
    pub event: Option<AnnounceEvent>,
    /// Peers wanted, when given.
    pub numwant: Option<usize>,
    /// Offers to relay (every one of them checked), when given.
    pub offers: Option<Vec<Offer<'a>>>,
    /// An answer to relay back to an offerer, when given.
    pub answer: Option<Sdp<'a>>,
    /// The offerer an answer is for (`to_peer_id`).
    pub answer_to_peer_id: Option<PeerId>,
    /// The offer an answer answers (`offer_id`).
    pub answer_offer_id: Option<OfferId>,
}

/// One offer of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer<'a> {
    /// Its id, chosen by the offerer.
    pub offer_id: OfferId,
    /// Its SDP.
    pub sdp: Sdp<'a>,
}

/// An SDP as the JSON string literal it arrived as, quotes and escapes
/// included: a valid JSON string whose `\u` escapes all stand for characters
/// (no lone surrogate), so it can be copied into a frame as it is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sdp<'a>(&'a str);

impl<'a> Sdp<'a> {
    /// The JSON string literal, quotes included.
    pub fn literal(&self) -> &'a str {
        self.0
    }

    /// The SDP itself (unescaped).
    pub fn text(&self) -> Cow<'a, str> {
        // Cannot fail: the literal was checked when it was decoded.
        serde_json::from_str::<Cow<'a, str>>(self.0).unwrap_or_default()
    }

    /// Checks that `raw` (a JSON value the parser accepted) is a string whose
    /// every `\u` escape stands for a character.
    fn from_raw(raw: &'a RawValue) -> Option<Self> {
        let literal = raw.get();
        if !literal.starts_with('"') || !unicode_escapes_pair_up(literal.as_bytes()) {
            return None;
        }
        Some(Sdp(literal))
    }
}

impl fmt::Debug for Sdp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Decodes one text frame from a client.
pub fn parse_request(text: &str) -> Result<Request<'_>, ProtocolError> {
    if text.len() > MAX_TO_TRACKER_LEN {
        return Err(TrackerError::FrameTooLong {
            len: text.len(),
            max: MAX_TO_TRACKER_LEN,
        }
        .into());
    }
    match fast_announce(text) {
        Ok(announce) => Ok(Request::Announce(announce)),
        Err(fast) => parse_other(text, fast),
    }
}

/// What the fast path could not decode: the engine's codec decides, so a
/// malformed frame gets the error it always got.
fn parse_other(text: &str, fast: Refused) -> Result<Request<'_>, ProtocolError> {
    match parse_to_tracker(text)? {
        InMessage::ScrapeRequest(scrape) => {
            match &scrape.info_hashes {
                None => return Err(ProtocolError::ScrapeAll),
                Some(ScrapeRequestInfoHashes::Multiple(list))
                    if list.len() > MAX_SCRAPE_INFO_HASHES =>
                {
                    return Err(ProtocolError::TooManyInfoHashes)
                }
                Some(_) => {}
            }
            Ok(Request::Scrape(scrape))
        }
        // An announce the engine's codec reads but the fast path does not
        // (a duplicate key, say): refused, since the two would disagree.
        InMessage::AnnounceRequest(_) => Err(TrackerError::Malformed {
            kind: "announce",
            detail: match fast {
                Refused::Json(e) => e.to_string(),
                Refused::NotAnAnnounce => "not an announce".into(),
            },
        }
        .into()),
    }
}

/// Why the fast path handed a frame on.
enum Refused {
    /// Not JSON, or a field it does not accept.
    Json(serde_json::Error),
    /// Not an object with `"action":"announce"`.
    NotAnAnnounce,
}

fn fast_announce(text: &str) -> Result<Announce<'_>, Refused> {
    // A top-level array would otherwise fill the struct by position.
    if !text.trim_start().starts_with('{') {
        return Err(Refused::NotAnAnnounce);
    }
    let raw: AnnounceIn<'_> = serde_json::from_str(text).map_err(Refused::Json)?;
    let (Some(Action::Announce), Some(info_hash), Some(peer_id)) =
        (raw.action, raw.info_hash, raw.peer_id)
    else {
        return Err(Refused::NotAnAnnounce);
    };
    let offers = match raw.offers {
        None => None,
        Some(list) => Some(
            list.into_iter()
                .map(|o| {
                    let sdp = Sdp::from_raw(o.offer.sdp)?;
                    Some(Offer {
                        offer_id: OfferId(o.offer_id.0),
                        sdp,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .ok_or(Refused::NotAnAnnounce)?,
        ),
    };
    let answer = match raw.answer {
        None => None,
        Some(a) => Some(Sdp::from_raw(a.sdp).ok_or(Refused::NotAnAnnounce)?),
    };
    Ok(Announce {
        info_hash: InfoHash(info_hash.0),
        peer_id: PeerId(peer_id.0),
        bytes_left: raw.left,
        event: raw.event.map(|e| match e {
            EventIn::Started => AnnounceEvent::Started,
            EventIn::Stopped => AnnounceEvent::Stopped,
            EventIn::Completed => AnnounceEvent::Completed,
            EventIn::Update | EventIn::Paused => AnnounceEvent::Update,
        }),
        numwant: raw.numwant,
        offers,
        answer,
        answer_to_peer_id: raw.to_peer_id.map(|id| PeerId(id.0)),
        answer_offer_id: raw.offer_id.map(|id| OfferId(id.0)),
    })
}

/// True when every `\u` escape in the JSON string literal `s` stands for a
/// character: no lone or reversed surrogate (the JSON parser's own check of a
/// skipped string does not look at them; the engine codec refuses them).
fn unicode_escapes_pair_up(s: &[u8]) -> bool {
    if memchr::memmem::find(s, b"\\u").is_none() {
        return true;
    }
    let mut i = 0;
    let mut pending_high = false;
    while let Some(off) = memchr::memchr(b'\\', &s[i..]) {
        let at = i + off;
        // A high surrogate must be followed at once by its low half.
        if pending_high && at != i {
            return false;
        }
        let Some(&kind) = s.get(at + 1) else {
            return false;
        };
        if kind != b'u' {
            if pending_high {
                return false;
            }
            i = at + 2;
            continue;
        }
        let Some(unit) = s
            .get(at + 2..at + 6)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u16::from_str_radix(h, 16).ok())
        else {
            return false;
        };
        match unit {
            0xDC00..=0xDFFF if pending_high => pending_high = false,
            _ if pending_high => return false,
            0xD800..=0xDBFF => pending_high = true,
            0xDC00..=0xDFFF => return false,
            _ => {}
        }
        i = at + 6;
    }
    !pending_high
}

// ------------------------------------------------------------ borrowed input

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Announce,
    Scrape,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum EventIn {
    Started,
    Stopped,
    Completed,
    Update,
    Paused,
}

#[derive(Deserialize)]
enum OfferType {
    #[serde(rename = "offer")]
    Offer,
}

#[derive(Deserialize)]
enum AnswerType {
    #[serde(rename = "answer")]
    Answer,
}

/// The fields of an announce; any other key is skipped unread.
#[derive(Deserialize)]
struct AnnounceIn<'a> {
    action: Option<Action>,
    info_hash: Option<Id>,
    peer_id: Option<Id>,
    to_peer_id: Option<Id>,
    offer_id: Option<Id>,
    left: Option<u64>,
    event: Option<EventIn>,
    numwant: Option<usize>,
    #[serde(borrow)]
    offers: Option<Vec<OfferIn<'a>>>,
    #[serde(borrow)]
    answer: Option<AnswerIn<'a>>,
}

#[derive(Deserialize)]
struct OfferIn<'a> {
    offer_id: Id,
    #[serde(borrow)]
    offer: OfferSdpIn<'a>,
}

#[derive(Deserialize)]
struct OfferSdpIn<'a> {
    #[serde(rename = "type")]
    _kind: OfferType,
    #[serde(borrow)]
    sdp: &'a RawValue,
}

#[derive(Deserialize)]
struct AnswerIn<'a> {
    #[serde(rename = "type")]
    _kind: AnswerType,
    #[serde(borrow)]
    sdp: &'a RawValue,
}

/// A binary field: a string of exactly 20 characters, each at most U+00FF.
/// Decoded from the parser's buffer (borrowed, or its scratch space when the
/// string has escapes): never allocated.
struct Id([u8; 20]);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(IdVisitor)
    }
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string of 20 characters up to U+00FF")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Id, E> {
        latin1_20(s)
            .map(Id)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(s), &self))
    }
}

/// The bytes of a 20-character latin-1 string, one per character.
fn latin1_20(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut chars = s.chars();
    for byte in &mut out {
        let code = u32::from(chars.next()?);
        *byte = u8::try_from(code).ok()?;
    }
    chars.next().is_none().then_some(out)
}

// ------------------------------------------------------------- spliced output

/// Whether serde_json writes byte `b`, as a character, as itself.
fn plain(b: u8) -> bool {
    (0x20..0x80).contains(&b) && b != b'"' && b != b'\\'
}

/// Appends the JSON string for a 20-byte binary field, each byte one
/// character, escaped as `serde_json` escapes it.
pub fn push_id(out: &mut String, id: &[u8; 20]) {
    out.push('"');
    match std::str::from_utf8(id) {
        // Printable ASCII (what clients' ids mostly are): the bytes are the text.
        Ok(text) if id.iter().all(|&b| plain(b)) => out.push_str(text),
        _ => {
            for &b in id {
                match b {
                    b'"' => out.push_str("\\\""),
                    b'\\' => out.push_str("\\\\"),
                    b'\n' => out.push_str("\\n"),
                    b'\r' => out.push_str("\\r"),
                    b'\t' => out.push_str("\\t"),
                    0x08 => out.push_str("\\b"),
                    0x0C => out.push_str("\\f"),
                    0x00..=0x1F => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        out.push_str("\\u00");
                        out.push(char::from(HEX[usize::from(b >> 4)]));
                        out.push(char::from(HEX[usize::from(b & 0xF)]));
                    }
                    _ => out.push(char::from(b)),
                }
            }
        }
    }
    out.push('"');
}

/// The length in bytes of what [`push_id`] appends for `id`.
pub fn id_json_len(id: &[u8; 20]) -> usize {
    let escaped: usize = id
        .iter()
        .map(|&b| match b {
            _ if plain(b) => 1,
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0C => 2,
            0x00..=0x1F => 6,
            // Two bytes of UTF-8.
            _ => 2,
        })
        .sum();
    2 + escaped
}

/// A relayed offer, as `aquatic_ws_protocol`'s `OfferOutMessage` writes it:
/// `{"action":"announce","peer_id":..,"info_hash":..,"offer":{"type":"offer","sdp":..},"offer_id":..}`.
pub fn offer_frame(
    peer_id: &PeerId,
    info_hash: &InfoHash,
    sdp: Sdp<'_>,
    offer_id: &OfferId,
) -> String {
    relay_frame(peer_id, info_hash, "offer", sdp, offer_id)
}

/// A relayed answer, as `aquatic_ws_protocol`'s `AnswerOutMessage` writes it:
/// `{"action":"announce","peer_id":..,"info_hash":..,"answer":{"type":"answer","sdp":..},"offer_id":..}`.
pub fn answer_frame(
    peer_id: &PeerId,
    info_hash: &InfoHash,
    sdp: Sdp<'_>,
    offer_id: &OfferId,
) -> String {
    relay_frame(peer_id, info_hash, "answer", sdp, offer_id)
}

fn relay_frame(
    peer_id: &PeerId,
    info_hash: &InfoHash,
    kind: &str,
    sdp: Sdp<'_>,
    offer_id: &OfferId,
) -> String {
    const HEAD: &str = "{\"action\":\"announce\",\"peer_id\":";
    const INFO_HASH: &str = ",\"info_hash\":";
    const TYPE: &str = "\":{\"type\":\"";
    const SDP: &str = "\",\"sdp\":";
    const OFFER_ID: &str = "},\"offer_id\":";
    // Exactly the frame's length: a `String` whose length is its capacity
    // becomes the WebSocket layer's `Bytes` without another allocation.
    let len = HEAD.len()
        + id_json_len(&peer_id.0)
        + INFO_HASH.len()
        + 2
        + kind.len()
        + TYPE.len()
        + kind.len()
        + SDP.len()
        + sdp.literal().len()
        + OFFER_ID.len()
        + id_json_len(&offer_id.0)
        + id_json_len(&info_hash.0)
        + 1;
    let mut out = String::with_capacity(len);
    out.push_str(HEAD);
    push_id(&mut out, &peer_id.0);
    out.push_str(INFO_HASH);
    push_id(&mut out, &info_hash.0);
    out.push_str(",\"");
    out.push_str(kind);
    out.push_str(TYPE);
    out.push_str(kind);
    out.push_str(SDP);
    out.push_str(sdp.literal());
    out.push_str(OFFER_ID);
    push_id(&mut out, &offer_id.0);
    out.push('}');
    debug_assert_eq!(out.len(), len);
    out
}

/// An announce response, as `aquatic_ws_protocol`'s `AnnounceResponse` writes it.
pub fn announce_response_frame(
    info_hash: &InfoHash,
    complete: usize,
    incomplete: usize,
    interval: usize,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(192);
    out.push_str("{\"action\":\"announce\",\"info_hash\":");
    push_id(&mut out, &info_hash.0);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        ",\"complete\":{complete},\"incomplete\":{incomplete},\"interval\":{interval}}}"
    );
    out
}

#[cfg(test)]
mod tests;
