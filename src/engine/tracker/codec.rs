//! The tracker message codec: strict parsing and encoding of WebTorrent tracker JSON frames.
//!
//! Parsing is two steps over one `serde_json::Value`: first every binary
//! field is checked strictly (exactly 20 characters, each at most U+00FF),
//! then the object is classified by its keys and decoded as that one kind of
//! message, so a malformed message gets an error naming its kind instead of
//! "did not match any variant". Both steps see the same value, so a duplicate
//! key cannot slip one version past the check and another into the result.

use std::time::Duration;

use aquatic_ws_protocol::common::{
    AnnounceAction, InfoHash as WireInfoHash, OfferId as WireOfferId, PeerId as WirePeerId,
    ScrapeAction,
};
use aquatic_ws_protocol::incoming::{AnnounceEvent, AnnounceRequest, InMessage, ScrapeRequest};
use aquatic_ws_protocol::outgoing::{
    AnswerOutMessage, OfferOutMessage, OutMessage, ScrapeResponse,
};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    AnnounceParams, BinaryProblem, Event, FromTracker, OfferId, ScrapeStats, TrackerError,
};
use crate::engine::ids::{InfoHash, PeerId};
use crate::engine::sort;

/// Longest frame accepted from a tracker: one relayed offer or answer (an SDP
/// is a few KiB), an announce response or a scrape response.
pub const MAX_FROM_TRACKER_LEN: usize = 64 * 1024;

/// Longest frame a tracker accepts from a client: an announce may carry up to
/// ten offers of a few KiB each.
pub const MAX_TO_TRACKER_LEN: usize = 128 * 1024;

/// Longest interval taken from a tracker before clamping, so that converting
/// it to a `Duration` can never overflow (the announcer clamps it further).
const MAX_RAW_INTERVAL_SECS: f64 = 7.0 * 24.0 * 3600.0;

// ---------------------------------------------------------------- parsing

/// Decodes one text frame received from a tracker.
///
/// Accepts what `bittorrent-tracker` and `aquatic_ws` send: relayed offers and
/// answers, announce responses (every field but `info_hash` optional),
/// scrape responses and failures (with or without `action`). Refuses frames
/// over [`MAX_FROM_TRACKER_LEN`], any binary field that is not exactly 20
/// characters in U+0000..=U+00FF, and objects that are no known message.
pub fn parse_from_tracker(text: &str) -> Result<FromTracker, TrackerError> {
    let mut map = parse_object(text, MAX_FROM_TRACKER_LEN)?;
    check_top_level_ids(&map)?;
    if let Some(files) = map.get("files").and_then(Value::as_object) {
        for key in files.keys() {
            latin1_20(key).map_err(|problem| TrackerError::BinaryField {
                field: "files key",
                problem,
            })?;
        }
    }

    if let Some(reason) = map.remove("failure reason") {
        let Value::String(reason) = reason else {
            return Err(malformed("failure", "`failure reason` is not a string"));
        };
        let info_hash = optional_id(&map, "info_hash")?.map(InfoHash);
        return Ok(FromTracker::Failure { reason, info_hash });
    }

    match action_of(&map) {
        Some("announce") if map.contains_key("offer") => {
            let m: OfferOutMessage = decode("offer", map)?;
            Ok(FromTracker::Offer {
                info_hash: InfoHash(m.info_hash.0),
                peer_id: PeerId(m.peer_id.0),
                offer_id: OfferId(m.offer_id.0),
                sdp: m.offer.sdp,
            })
        }
        Some("announce") if map.contains_key("answer") => {
            let m: AnswerOutMessage = decode("answer", map)?;
            Ok(FromTracker::Answer {
                info_hash: InfoHash(m.info_hash.0),
                peer_id: PeerId(m.peer_id.0),
                offer_id: OfferId(m.offer_id.0),
                sdp: m.answer.sdp,
            })
        }
        Some("announce")
            if ["interval", "min interval", "complete", "incomplete"]
                .iter()
                .any(|k| map.contains_key(*k)) =>
        {
            announce_response(&map)
        }
        Some("scrape") => {
            let m: ScrapeResponse = decode("scrape response", map)?;
            let mut files: Vec<(InfoHash, ScrapeStats)> = m
                .files
                .into_iter()
                .map(|(hash, s)| {
                    let stats = ScrapeStats {
                        complete: s.complete as u64,
                        incomplete: s.incomplete as u64,
                        downloaded: s.downloaded as u64,
                    };
                    (InfoHash(hash.0), stats)
                })
                .collect();
            sort::sort_by(&mut files, |a, b| a.0.cmp(&b.0));
            Ok(FromTracker::Scrape(files))
        }
        _ => Err(unrecognised(&map)),
    }
}

/// Decodes one text frame a client sent to a tracker (the server's side).
///
/// Same strictness as [`parse_from_tracker`], with the limit
/// [`MAX_TO_TRACKER_LEN`]; also checks every `offers[].offer_id` and each
/// entry of a scrape's `info_hash` array. Fields the wire types do not know
/// (`uploaded`, `downloaded`, libtorrent's `key` and `corrupt`, `trackerid`)
/// are accepted and ignored. The event `paused` (libtorrent 2.1) is read as a
/// regular update, which is what it means to a swarm of WebRTC peers.
pub fn parse_to_tracker(text: &str) -> Result<InMessage, TrackerError> {
    let mut map = parse_object(text, MAX_TO_TRACKER_LEN)?;
    check_top_level_ids(&map)?;
    if let Some(Value::Array(offers)) = map.get("offers") {
        for offer in offers {
            if let Some(id) = offer.get("offer_id") {
                check_id_value("offers[].offer_id", id)?;
            }
        }
    }

    match action_of(&map) {
        Some("announce") => {
            if map.get("event").and_then(Value::as_str) == Some("paused") {
                map.insert("event".into(), Value::String("update".into()));
            }
            decode::<AnnounceRequest>("announce", map).map(InMessage::AnnounceRequest)
        }
        Some("scrape") => {
            decode::<ScrapeRequest>("scrape request", map).map(InMessage::ScrapeRequest)
        }
        _ => Err(unrecognised(&map)),
    }
}

/// Caps the length, parses JSON, and insists on an object.
fn parse_object(text: &str, max: usize) -> Result<Map<String, Value>, TrackerError> {
    if text.len() > max {
        return Err(TrackerError::FrameTooLong {
            len: text.len(),
            max,
        });
    }
    // serde_json limits nesting to 128 levels, so a hostile frame cannot
    // exhaust the stack; the length cap bounds everything else.
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TrackerError::NotAnObject),
        Err(e) => Err(TrackerError::Json(e.to_string())),
    }
}

/// Checks the binary fields that may appear at the top level of any message.
/// `info_hash` may also be an array (scrape requests); `null` counts as absent.
fn check_top_level_ids(map: &Map<String, Value>) -> Result<(), TrackerError> {
    for field in ["peer_id", "to_peer_id", "offer_id"] {
        if let Some(value) = map.get(field) {
            check_id_value(field, value)?;
        }
    }
    match map.get("info_hash") {
        Some(Value::Array(hashes)) => {
            for hash in hashes {
                check_id_value("info_hash", hash)?;
            }
        }
        Some(value) => check_id_value("info_hash", value)?,
        None => {}
    }
    Ok(())
}

fn check_id_value(field: &'static str, value: &Value) -> Result<(), TrackerError> {
    let result = match value {
        Value::Null => Ok(()),
        Value::String(s) => latin1_20(s).map(drop),
        _ => Err(BinaryProblem::NotAString),
    };
    result.map_err(|problem| TrackerError::BinaryField { field, problem })
}

/// The bytes of a 20-character latin-1 string: one byte per character, each
/// character at most U+00FF, exactly 20 of them.
pub(crate) fn latin1_20(s: &str) -> Result<[u8; 20], BinaryProblem> {
    let mut out = [0u8; 20];
    let mut n = 0;
    for c in s.chars() {
        let code = u32::from(c);
        if code > 0xFF {
            return Err(BinaryProblem::WideChar(code));
        }
        if n == out.len() {
            return Err(BinaryProblem::Length(s.chars().count()));
        }
        out[n] = code as u8;
        n += 1;
    }
    if n == out.len() {
        Ok(out)
    } else {
        Err(BinaryProblem::Length(n))
    }
}

/// An optional binary field already checked by [`check_top_level_ids`].
fn optional_id(
    map: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<[u8; 20]>, TrackerError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => latin1_20(s)
            .map(Some)
            .map_err(|problem| TrackerError::BinaryField { field, problem }),
        Some(_) => Err(TrackerError::BinaryField {
            field,
            problem: BinaryProblem::NotAString,
        }),
    }
}

fn action_of(map: &Map<String, Value>) -> Option<&str> {
    map.get("action").and_then(Value::as_str)
}

fn decode<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    map: Map<String, Value>,
) -> Result<T, TrackerError> {
    serde_json::from_value(Value::Object(map)).map_err(|e| malformed(kind, e.to_string()))
}

fn malformed(kind: &'static str, detail: impl Into<String>) -> TrackerError {
    TrackerError::Malformed {
        kind,
        detail: detail.into(),
    }
}

fn unrecognised(map: &Map<String, Value>) -> TrackerError {
    TrackerError::Unrecognised {
        action: action_of(map).map(|a| a.chars().take(32).collect()),
    }
}

/// An announce response. Only `info_hash` is required: `bittorrent-tracker`
/// and `aquatic_ws` always send the counts and `interval`, but the reference
/// client treats each as optional, and so do we.
fn announce_response(map: &Map<String, Value>) -> Result<FromTracker, TrackerError> {
    const KIND: &str = "announce response";
    let info_hash = optional_id(map, "info_hash")?
        .ok_or_else(|| malformed(KIND, "missing field `info_hash`"))?;
    let count = |field: &str| -> Result<Option<u64>, TrackerError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| malformed(KIND, format!("`{field}` is not a count"))),
        }
    };
    let seconds = |field: &str| -> Result<Option<Duration>, TrackerError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(s) if s.is_finite() && s >= 0.0 => {
                    Ok(Some(Duration::from_secs_f64(s.min(MAX_RAW_INTERVAL_SECS))))
                }
                _ => Err(malformed(
                    KIND,
                    format!("`{field}` is not a number of seconds"),
                )),
            },
        }
    };
    let interval = match seconds("interval")? {
        // `0` means "unset" to the reference client (`interval || min interval`).
        Some(d) if !d.is_zero() => Some(d),
        _ => seconds("min interval")?.filter(|d| !d.is_zero()),
    };
    Ok(FromTracker::AnnounceResponse {
        info_hash: InfoHash(info_hash),
        complete: count("complete")?,
        incomplete: count("incomplete")?,
        interval,
    })
}

// --------------------------------------------------------------- encoding

#[derive(Serialize)]
struct SdpOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sdp: &'a str,
}

#[derive(Serialize)]
struct OfferOut<'a> {
    offer_id: WireOfferId,
    offer: SdpOut<'a>,
}

/// An announce as the reference clients send it: aquatic's
/// `AnnounceRequest` lacks `uploaded`/`downloaded` and writes `null` for every
/// absent field, which some trackers read as present.
#[derive(Serialize)]
struct AnnounceOut<'a> {
    action: AnnounceAction,
    info_hash: WireInfoHash,
    peer_id: WirePeerId,
    uploaded: u64,
    downloaded: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    left: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<AnnounceEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    numwant: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offers: Option<Vec<OfferOut<'a>>>,
}

#[derive(Serialize)]
struct AnswerOut<'a> {
    action: AnnounceAction,
    info_hash: WireInfoHash,
    peer_id: WirePeerId,
    to_peer_id: WirePeerId,
    offer_id: WireOfferId,
    answer: SdpOut<'a>,
}

#[derive(Serialize)]
struct ScrapeOut {
    action: ScrapeAction,
    info_hash: Vec<WireInfoHash>,
}

/// Serializes a message built from our own typed values.
fn to_json<T: Serialize>(value: &T) -> String {
    // Cannot fail: every map key is a string and there are no floats.
    serde_json::to_string(value).expect("tracker messages always serialize")
}

/// The announce a client sends. `numwant` equals the number of offers; with
/// `stopped` or `completed` neither offers nor `numwant` are sent (as the
/// reference client does), and any offers given are left out.
pub fn encode_announce(params: &AnnounceParams) -> String {
    let with_offers = !matches!(params.event, Some(Event::Stopped | Event::Completed));
    let offers = with_offers.then(|| {
        params
            .offers
            .iter()
            .map(|(id, sdp)| OfferOut {
                offer_id: WireOfferId(id.0),
                offer: SdpOut { kind: "offer", sdp },
            })
            .collect::<Vec<_>>()
    });
    to_json(&AnnounceOut {
        action: AnnounceAction::Announce,
        info_hash: WireInfoHash(params.info_hash.0),
        peer_id: WirePeerId(params.peer_id.0),
        uploaded: params.uploaded,
        downloaded: params.downloaded,
        left: params.left,
        event: params.event.map(|e| match e {
            Event::Started => AnnounceEvent::Started,
            Event::Completed => AnnounceEvent::Completed,
            Event::Stopped => AnnounceEvent::Stopped,
        }),
        numwant: offers.as_ref().map(Vec::len),
        offers,
    })
}

/// Our answer to a relayed offer: `peer_id` is ours, `to_peer_id` the
/// offerer's, `offer_id` the offer's.
pub fn encode_answer(
    info_hash: InfoHash,
    peer_id: PeerId,
    to_peer_id: PeerId,
    offer_id: OfferId,
    sdp: &str,
) -> String {
    to_json(&AnswerOut {
        action: AnnounceAction::Announce,
        info_hash: WireInfoHash(info_hash.0),
        peer_id: WirePeerId(peer_id.0),
        to_peer_id: WirePeerId(to_peer_id.0),
        offer_id: WireOfferId(offer_id.0),
        answer: SdpOut {
            kind: "answer",
            sdp,
        },
    })
}

/// A scrape for the given torrents (always as an array, which both reference
/// trackers accept).
pub fn encode_scrape(info_hashes: &[InfoHash]) -> String {
    to_json(&ScrapeOut {
        action: ScrapeAction::Scrape,
        info_hash: info_hashes.iter().map(|h| WireInfoHash(h.0)).collect(),
    })
}

/// A message from a tracker to a client (the server's side), in the
/// `aquatic_ws_protocol` layout that every client reads.
pub fn encode_to_client(message: &OutMessage) -> String {
    to_json(message)
}

#[cfg(test)]
mod tests;
