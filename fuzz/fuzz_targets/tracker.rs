//! Fuzzes the WebTorrent tracker codec on both sides: arbitrary text never
//! panics either parser, and whatever parses is written again by the encoder
//! for that message (the server's `encode_to_client`, the client's
//! `encode_announce` / `encode_answer` / `encode_scrape`, the wire types'
//! own serializer) and parses back to the same message.
#![no_main]

use std::borrow::Cow;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use swarmdrop::engine::ids::{InfoHash, PeerId};
use swarmdrop::engine::tracker::wire::common::{
    AnnounceAction, InfoHash as WireInfoHash, OfferId as WireOfferId, PeerId as WirePeerId,
    RtcAnswer, RtcAnswerType, RtcOffer, RtcOfferType, ScrapeAction,
};
use swarmdrop::engine::tracker::wire::incoming::{
    AnnounceEvent, AnnounceRequest, InMessage, ScrapeRequest, ScrapeRequestInfoHashes,
};
use swarmdrop::engine::tracker::wire::outgoing::{
    AnnounceResponse, AnswerOutMessage, ErrorResponse, OfferOutMessage, OutMessage, ScrapeResponse,
    ScrapeStatistics,
};
use swarmdrop::engine::tracker::{
    encode_announce, encode_answer, encode_scrape, encode_to_client, parse_from_tracker,
    parse_to_tracker, AnnounceParams, Event, FromTracker, OfferId, TrackerError,
    MAX_FROM_TRACKER_LEN, MAX_TO_TRACKER_LEN,
};

/// A 20-byte id as the protocol writes it: one character per byte.
fn latin1(bytes: &[u8; 20]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Parses `text` again, unless re-encoding made it longer than the parser
/// accepts (then that must be the error).
fn reparse<T>(
    text: &str,
    max: usize,
    parse: impl Fn(&str) -> Result<T, TrackerError>,
) -> Option<T> {
    let result = parse(text);
    if text.len() > max {
        assert!(matches!(result, Err(TrackerError::FrameTooLong { .. })));
        return None;
    }
    match result {
        Ok(value) => Some(value),
        Err(e) => panic!("re-encoded frame {text:?} does not parse: {e}"),
    }
}

/// An announce response written back: through the server's encoder when the
/// wire type can carry it (both counts and a whole-second interval), else as
/// the JSON a tracker that leaves fields out would send.
fn announce_response_text(
    info_hash: InfoHash,
    complete: Option<u64>,
    incomplete: Option<u64>,
    interval: Option<Duration>,
) -> String {
    if let (Some(c), Some(i), Some(d)) = (complete, incomplete, interval) {
        if d.subsec_nanos() == 0 {
            return encode_to_client(&OutMessage::AnnounceResponse(AnnounceResponse {
                action: AnnounceAction::Announce,
                info_hash: WireInfoHash(info_hash.0),
                complete: c as usize,
                incomplete: i as usize,
                announce_interval: d.as_secs() as usize,
            }));
        }
    }
    let mut map = Map::new();
    map.insert("action".into(), json!("announce"));
    map.insert("info_hash".into(), json!(latin1(&info_hash.0)));
    if let Some(c) = complete {
        map.insert("complete".into(), json!(c));
    }
    if let Some(i) = incomplete {
        map.insert("incomplete".into(), json!(i));
    }
    // `0` means "no interval", and keeps the message an announce response
    // when it has no other field.
    let secs = interval.map_or(json!(0), |d| json!(d.as_secs_f64()));
    map.insert("interval".into(), secs);
    Value::Object(map).to_string()
}

fn from_tracker(text: &str) {
    let Ok(message) = parse_from_tracker(text) else {
        return;
    };
    let written = match &message {
        FromTracker::Offer {
            info_hash,
            peer_id,
            offer_id,
            sdp,
        } => encode_to_client(&OutMessage::OfferOutMessage(OfferOutMessage {
            action: AnnounceAction::Announce,
            peer_id: WirePeerId(peer_id.0),
            info_hash: WireInfoHash(info_hash.0),
            offer: RtcOffer {
                t: RtcOfferType::Offer,
                sdp: sdp.clone(),
            },
            offer_id: WireOfferId(offer_id.0),
        })),
        FromTracker::Answer {
            info_hash,
            peer_id,
            offer_id,
            sdp,
        } => encode_to_client(&OutMessage::AnswerOutMessage(AnswerOutMessage {
            action: AnnounceAction::Announce,
            peer_id: WirePeerId(peer_id.0),
            info_hash: WireInfoHash(info_hash.0),
            answer: RtcAnswer {
                t: RtcAnswerType::Answer,
                sdp: sdp.clone(),
            },
            offer_id: WireOfferId(offer_id.0),
        })),
        FromTracker::AnnounceResponse {
            info_hash,
            complete,
            incomplete,
            interval,
        } => {
            if let Some(d) = interval {
                assert!(!d.is_zero() && d.as_secs() <= 7 * 24 * 3600, "{d:?}");
            }
            announce_response_text(*info_hash, *complete, *incomplete, *interval)
        }
        FromTracker::Scrape(files) => {
            assert!(files.windows(2).all(|w| w[0].0 < w[1].0), "not sorted");
            encode_to_client(&OutMessage::ScrapeResponse(ScrapeResponse {
                action: ScrapeAction::Scrape,
                files: files
                    .iter()
                    .map(|(hash, s)| {
                        let stats = ScrapeStatistics {
                            complete: s.complete as usize,
                            incomplete: s.incomplete as usize,
                            downloaded: s.downloaded as usize,
                        };
                        (WireInfoHash(hash.0), stats)
                    })
                    .collect(),
            }))
        }
        FromTracker::Failure { reason, info_hash } => {
            encode_to_client(&OutMessage::ErrorResponse(ErrorResponse {
                failure_reason: Cow::Owned(reason.clone()),
                action: None,
                info_hash: info_hash.map(|h| WireInfoHash(h.0)),
            }))
        }
    };
    let Some(again) = reparse(&written, MAX_FROM_TRACKER_LEN, parse_from_tracker) else {
        return;
    };
    match (&message, &again) {
        // A fractional interval goes through `f64` seconds: equal to the
        // nanosecond.
        (
            FromTracker::AnnounceResponse {
                info_hash: h1,
                complete: c1,
                incomplete: i1,
                interval: Some(d1),
            },
            FromTracker::AnnounceResponse {
                info_hash: h2,
                complete: c2,
                incomplete: i2,
                interval: Some(d2),
            },
        ) => {
            assert_eq!((h1, c1, i1), (h2, c2, i2));
            assert!(d1.abs_diff(*d2) <= Duration::from_nanos(1), "{d1:?} {d2:?}");
        }
        _ => assert_eq!(again, message, "written as {written:?}"),
    }
}

/// The announce a client would send for `request`, through `encode_announce`
/// or `encode_answer`, and what the server must read from it.
fn client_announce(request: &AnnounceRequest) -> Option<(String, AnnounceRequest)> {
    let info_hash = InfoHash(request.info_hash.0);
    let peer_id = PeerId(request.peer_id.0);
    if let Some(answer) = &request.answer {
        let to = request.answer_to_peer_id?;
        let offer_id = request.answer_offer_id?;
        let text = encode_answer(
            info_hash,
            peer_id,
            PeerId(to.0),
            OfferId(offer_id.0),
            &answer.sdp,
        );
        let expected = AnnounceRequest {
            action: AnnounceAction::Announce,
            info_hash: request.info_hash,
            peer_id: request.peer_id,
            bytes_left: None,
            event: None,
            offers: None,
            numwant: None,
            answer: Some(answer.clone()),
            answer_to_peer_id: Some(to),
            answer_offer_id: Some(offer_id),
        };
        return Some((text, expected));
    }
    let event = match request.event {
        Some(AnnounceEvent::Started) => Some(Event::Started),
        Some(AnnounceEvent::Completed) => Some(Event::Completed),
        Some(AnnounceEvent::Stopped) => Some(Event::Stopped),
        // A regular announce carries no event.
        Some(AnnounceEvent::Update) | None => None,
    };
    let offers = request.offers.clone().unwrap_or_default();
    let params = AnnounceParams {
        info_hash,
        peer_id,
        uploaded: 0,
        downloaded: 0,
        left: request.bytes_left.map(|l| l as u64),
        event,
        offers: offers
            .iter()
            .map(|o| (OfferId(o.offer_id.0), o.offer.sdp.clone()))
            .collect(),
    };
    let with_offers = !matches!(event, Some(Event::Stopped | Event::Completed));
    let expected = AnnounceRequest {
        action: AnnounceAction::Announce,
        info_hash: request.info_hash,
        peer_id: request.peer_id,
        bytes_left: request.bytes_left,
        event: request.event.filter(|e| *e != AnnounceEvent::Update),
        numwant: with_offers.then_some(offers.len()),
        offers: with_offers.then_some(offers),
        answer: None,
        answer_to_peer_id: None,
        answer_offer_id: None,
    };
    Some((encode_announce(&params), expected))
}

fn to_tracker(text: &str) {
    let Ok(message) = parse_to_tracker(text) else {
        return;
    };
    // What the wire types themselves write parses back to the same message.
    let written = serde_json::to_string(&message).expect("wire types serialize");
    if let Some(again) = reparse(&written, MAX_TO_TRACKER_LEN, parse_to_tracker) {
        assert_eq!(again, message, "written as {written:?}");
    }
    // What our client writes for the same request reads as that request.
    let client = match &message {
        InMessage::AnnounceRequest(request) => client_announce(request)
            .map(|(text, expected)| (text, InMessage::AnnounceRequest(expected))),
        InMessage::ScrapeRequest(request) => request.info_hashes.clone().map(|hashes| {
            let hashes = hashes.as_vec();
            let ours: Vec<InfoHash> = hashes.iter().map(|h| InfoHash(h.0)).collect();
            // Always written as an array.
            let expected = ScrapeRequest {
                action: ScrapeAction::Scrape,
                info_hashes: Some(ScrapeRequestInfoHashes::Multiple(hashes)),
            };
            (encode_scrape(&ours), InMessage::ScrapeRequest(expected))
        }),
    };
    if let Some((text, expected)) = client {
        if let Some(again) = reparse(&text, MAX_TO_TRACKER_LEN, parse_to_tracker) {
            assert_eq!(again, expected, "written as {text:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    from_tracker(&text);
    to_tracker(&text);
});
