//! Tests of the tracker codec: round trips, captured messages, strictness.

use std::borrow::Cow;
use std::time::Duration;

use aquatic_ws_protocol::common::{
    AnnounceAction, InfoHash as WireInfoHash, OfferId as WireOfferId, PeerId as WirePeerId,
    RtcAnswer, RtcAnswerType, RtcOffer, RtcOfferType, ScrapeAction,
};
use aquatic_ws_protocol::incoming::{AnnounceEvent, InMessage, ScrapeRequestInfoHashes};
use aquatic_ws_protocol::outgoing::{
    AnnounceResponse, AnswerOutMessage, ErrorResponse, ErrorResponseAction, OfferOutMessage,
    OutMessage, ScrapeResponse, ScrapeStatistics,
};
use proptest::prelude::*;
use serde_json::Value;

use super::*;

// ------------------------------------------------------- captured messages

/// The info hash d2474e86c95b19b8bcfdb92bc12c9d44667cfa36 as `JSON.stringify`
/// writes its latin-1 string: control byte 0x19 escaped, bytes 0x80..=0xFF
/// as raw characters (two bytes of UTF-8 each).
const IH: &str = "\u{d2}GN\u{86}\u{c9}[\\u0019\u{b8}\u{bc}\u{fd}\u{b9}+\u{c1},\u{9d}Df|\u{fa}6";
const IH_HEX: &str = "d2474e86c95b19b8bcfdb92bc12c9d44667cfa36";
/// A WebTorrent peer id (`-WW` + version + 12 base64 characters).
const WT_PEER: &str = "-WW0208-7UsUPnH3J/2+";
/// A libtorrent peer id.
const LT_PEER: &str = "-LT2100-k8Zq1xYb0Pw3";
/// A random offer id as the reference client makes them (`hexToBinary` of 20
/// random bytes): NUL and 0x10 escaped, 0xFF, DEL and 0x80 raw.
const OFFER: &str = "\\u0000\u{ff}\\u0010\u{7f}\u{80}abcdefghijklmno";
const OFFER_BYTES: [u8; 20] = *b"\x00\xff\x10\x7f\x80abcdefghijklmno";
/// An SDP as a browser makes it for a data channel, after ICE gathering.
const SDP_JSON: &str = "v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:BUNDLE 0\\r\\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\\r\\nc=IN IP4 0.0.0.0\\r\\na=candidate:1 1 udp 2113937151 192.168.1.2 54400 typ host generation 0\\r\\na=ice-ufrag:Xb4k\\r\\na=ice-pwd:q0FJ9Vd3u2RkT8yLzW5nA1cE\\r\\na=fingerprint:sha-256 5A:1F:00:C3\\r\\na=setup:actpass\\r\\na=mid:0\\r\\na=sctp-port:5000\\r\\na=max-message-size:262144\\r\\n";

fn sdp() -> String {
    SDP_JSON.replace("\\r\\n", "\r\n")
}

fn ih() -> InfoHash {
    InfoHash::from_hex(IH_HEX).unwrap()
}

fn peer(s: &str) -> PeerId {
    PeerId(s.as_bytes().try_into().unwrap())
}

#[test]
fn bittorrent_tracker_offer_relay_parses() {
    let frame = format!(
        r#"{{"action":"announce","offer":{{"type":"offer","sdp":"{SDP_JSON}"}},"offer_id":"{OFFER}","peer_id":"{WT_PEER}","info_hash":"{IH}"}}"#
    );
    assert_eq!(
        parse_from_tracker(&frame).unwrap(),
        FromTracker::Offer {
            info_hash: ih(),
            peer_id: peer(WT_PEER),
            offer_id: OfferId(OFFER_BYTES),
            sdp: sdp(),
        }
    );
}

#[test]
fn aquatic_offer_relay_parses() {
    let frame = format!(
        r#"{{"action":"announce","peer_id":"{LT_PEER}","info_hash":"{IH}","offer":{{"type":"offer","sdp":"{SDP_JSON}"}},"offer_id":"{OFFER}"}}"#
    );
    let parsed = parse_from_tracker(&frame).unwrap();
    assert!(matches!(parsed, FromTracker::Offer { peer_id, .. } if peer_id == peer(LT_PEER)));
}

#[test]
fn bittorrent_tracker_answer_relay_parses() {
    let frame = format!(
        r#"{{"answer":{{"type":"answer","sdp":"{SDP_JSON}"}},"action":"announce","offer_id":"{OFFER}","peer_id":"{WT_PEER}","info_hash":"{IH}"}}"#
    );
    assert_eq!(
        parse_from_tracker(&frame).unwrap(),
        FromTracker::Answer {
            info_hash: ih(),
            peer_id: peer(WT_PEER),
            offer_id: OfferId(OFFER_BYTES),
            sdp: sdp(),
        }
    );
}

#[test]
fn aquatic_answer_relay_parses() {
    let frame = format!(
        r#"{{"action":"announce","peer_id":"{WT_PEER}","info_hash":"{IH}","answer":{{"type":"answer","sdp":"x"}},"offer_id":"{OFFER}"}}"#
    );
    let parsed = parse_from_tracker(&frame).unwrap();
    assert!(matches!(parsed, FromTracker::Answer { ref sdp, .. } if sdp == "x"));
}

#[test]
fn announce_responses_of_both_trackers_parse() {
    let bittorrent_tracker = format!(
        r#"{{"complete":1,"incomplete":3,"action":"announce","info_hash":"{IH}","interval":120}}"#
    );
    let aquatic = format!(
        r#"{{"action":"announce","info_hash":"{IH}","complete":1,"incomplete":3,"interval":120}}"#
    );
    for frame in [bittorrent_tracker, aquatic] {
        assert_eq!(
            parse_from_tracker(&frame).unwrap(),
            FromTracker::AnnounceResponse {
                info_hash: ih(),
                complete: Some(1),
                incomplete: Some(3),
                interval: Some(Duration::from_secs(120)),
            }
        );
    }
}

#[test]
fn announce_response_falls_back_to_min_interval_and_tolerates_missing_counts() {
    let frame =
        format!(r#"{{"action":"announce","info_hash":"{IH}","interval":0,"min interval":45.5}}"#);
    assert_eq!(
        parse_from_tracker(&frame).unwrap(),
        FromTracker::AnnounceResponse {
            info_hash: ih(),
            complete: None,
            incomplete: None,
            interval: Some(Duration::from_millis(45_500)),
        }
    );
}

#[test]
fn failure_without_action_parses() {
    let frame = r#"{"failure reason":"invalid action in WS request: foo"}"#;
    assert_eq!(
        parse_from_tracker(frame).unwrap(),
        FromTracker::Failure {
            reason: "invalid action in WS request: foo".into(),
            info_hash: None,
        }
    );
}

#[test]
fn failures_with_action_and_info_hash_parse() {
    let bittorrent_tracker =
        format!(r#"{{"action":"announce","failure reason":"invalid event","info_hash":"{IH}"}}"#);
    let aquatic = format!(
        r#"{{"failure reason":"Info hash not allowed","action":"announce","info_hash":"{IH}"}}"#
    );
    assert_eq!(
        parse_from_tracker(&bittorrent_tracker).unwrap(),
        FromTracker::Failure {
            reason: "invalid event".into(),
            info_hash: Some(ih()),
        }
    );
    let parsed = parse_from_tracker(&aquatic).unwrap();
    assert_eq!(parsed.info_hash(), Some(ih()));
}

#[test]
fn scrape_responses_parse_sorted_and_ignore_flags() {
    let other = "aaaaaaaaaaaaaaaaaaaa";
    let frame = format!(
        r#"{{"action":"scrape","files":{{"{IH}":{{"complete":2,"incomplete":1,"downloaded":5}},"{other}":{{"complete":0,"incomplete":0,"downloaded":0}}}},"flags":{{"min_request_interval":600}}}}"#
    );
    assert_eq!(
        parse_from_tracker(&frame).unwrap(),
        FromTracker::Scrape(vec![
            (InfoHash([b'a'; 20]), ScrapeStats::default()),
            (
                ih(),
                ScrapeStats {
                    complete: 2,
                    incomplete: 1,
                    downloaded: 5
                }
            ),
        ])
    );
}

#[test]
fn escaped_and_raw_latin1_characters_decode_to_the_same_bytes() {
    let raw = format!(r#"{{"failure reason":"x","info_hash":"{IH}"}}"#);
    let escaped = raw
        .replace('\u{d2}', "\\u00d2")
        .replace('\u{fa}', "\\u00FA")
        .replace('G', "\\u0047");
    assert_ne!(raw, escaped);
    assert_eq!(
        parse_from_tracker(&raw).unwrap(),
        parse_from_tracker(&escaped).unwrap()
    );
}

#[test]
fn webtorrent_announce_with_offers_parses_on_the_server_side() {
    let frame = format!(
        r#"{{"uploaded":0,"downloaded":0,"left":1048576,"event":"started","numwant":1,"action":"announce","info_hash":"{IH}","peer_id":"{WT_PEER}","offers":[{{"offer":{{"type":"offer","sdp":"{SDP_JSON}"}},"offer_id":"{OFFER}"}}]}}"#
    );
    let InMessage::AnnounceRequest(r) = parse_to_tracker(&frame).unwrap() else {
        panic!("not an announce");
    };
    assert_eq!(r.info_hash.0, ih().0);
    assert_eq!(r.bytes_left, Some(1_048_576));
    assert_eq!(r.event, Some(AnnounceEvent::Started));
    assert_eq!(r.numwant, Some(1));
    let offers = r.offers.unwrap();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].offer_id.0, OFFER_BYTES);
    assert_eq!(offers[0].offer.sdp, sdp());
}

#[test]
fn webtorrent_announce_without_metadata_sends_null_left() {
    let frame = format!(
        r#"{{"uploaded":0,"downloaded":0,"left":null,"numwant":0,"action":"announce","info_hash":"{IH}","peer_id":"{WT_PEER}","offers":[]}}"#
    );
    let InMessage::AnnounceRequest(r) = parse_to_tracker(&frame).unwrap() else {
        panic!("not an announce");
    };
    assert_eq!(r.bytes_left, None);
    assert_eq!(r.event, None);
}

#[test]
fn webtorrent_answer_parses_on_the_server_side() {
    let frame = format!(
        r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{WT_PEER}","to_peer_id":"{LT_PEER}","answer":{{"type":"answer","sdp":"{SDP_JSON}"}},"offer_id":"{OFFER}"}}"#
    );
    let InMessage::AnnounceRequest(r) = parse_to_tracker(&frame).unwrap() else {
        panic!("not an announce");
    };
    assert_eq!(r.answer_to_peer_id.unwrap().0, peer(LT_PEER).0);
    assert_eq!(r.answer_offer_id.unwrap().0, OFFER_BYTES);
    assert_eq!(r.answer.unwrap().sdp, sdp());
}

#[test]
fn libtorrent_announce_with_paused_event_and_extra_fields_parses_as_update() {
    let frame = format!(
        r#"{{"action":"announce","info_hash":"{IH}","uploaded":10,"downloaded":20,"left":0,"corrupt":0,"numwant":1,"key":"1A2B3C4D","event":"paused","peer_id":"{LT_PEER}","offers":[{{"offer_id":"{OFFER}","offer":{{"type":"offer","sdp":"x"}}}}]}}"#
    );
    let InMessage::AnnounceRequest(r) = parse_to_tracker(&frame).unwrap() else {
        panic!("not an announce");
    };
    assert_eq!(r.event, Some(AnnounceEvent::Update));
    assert_eq!(r.bytes_left, Some(0));
}

#[test]
fn single_and_multiple_scrape_requests_parse() {
    let single = format!(r#"{{"action":"scrape","info_hash":"{IH}"}}"#);
    let InMessage::ScrapeRequest(r) = parse_to_tracker(&single).unwrap() else {
        panic!("not a scrape");
    };
    assert_eq!(r.info_hashes.unwrap().as_vec(), vec![WireInfoHash(ih().0)]);
    let multiple = encode_scrape(&[ih(), InfoHash([0; 20])]);
    let InMessage::ScrapeRequest(r) = parse_to_tracker(&multiple).unwrap() else {
        panic!("not a scrape");
    };
    assert!(matches!(
        r.info_hashes,
        Some(ScrapeRequestInfoHashes::Multiple(ref v)) if v.len() == 2
    ));
}

// ------------------------------------------------------------ encoding

#[test]
fn encoded_announce_carries_stats_and_numwant_and_omits_absent_fields() {
    let frame = encode_announce(&AnnounceParams {
        info_hash: ih(),
        peer_id: peer(WT_PEER),
        uploaded: 7,
        downloaded: 9,
        left: None,
        event: Some(Event::Started),
        offers: vec![
            (OfferId(OFFER_BYTES), "s1".into()),
            (OfferId([1; 20]), "s2".into()),
        ],
    });
    let v: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(v["action"], "announce");
    assert_eq!(v["uploaded"], 7);
    assert_eq!(v["downloaded"], 9);
    assert_eq!(v["numwant"], 2);
    assert_eq!(v["event"], "started");
    assert_eq!(v["offers"][0]["offer"]["type"], "offer");
    assert_eq!(v["offers"][1]["offer"]["sdp"], "s2");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    for absent in ["left", "answer", "to_peer_id", "offer_id"] {
        assert!(!keys.contains(&absent), "{absent} must be omitted: {frame}");
    }
}

#[test]
fn stopped_and_completed_announces_carry_no_offers() {
    for event in [Event::Stopped, Event::Completed] {
        let frame = encode_announce(&AnnounceParams {
            info_hash: ih(),
            peer_id: peer(WT_PEER),
            uploaded: 0,
            downloaded: 0,
            left: Some(0),
            event: Some(event),
            offers: vec![(OfferId([1; 20]), "s".into())],
        });
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert!(
            v.get("offers").is_none() && v.get("numwant").is_none(),
            "{frame}"
        );
        assert_eq!(v["left"], 0);
    }
}

#[test]
fn binary_ids_are_written_as_latin1_with_control_bytes_escaped() {
    let mut bytes = [0xffu8; 20];
    bytes[0] = 0x00;
    bytes[1] = b'"';
    bytes[2] = b'\\';
    bytes[3] = 0x80;
    let frame = encode_scrape(&[InfoHash(bytes)]);
    assert!(frame.contains(r#"\u0000\"\\"#), "{frame}");
    // 0x80 and 0xFF are one character each, two bytes of UTF-8.
    assert!(frame.contains("\u{80}\u{ff}"), "{frame}");
    assert!(frame.as_bytes().windows(2).any(|w| w == [0xc3, 0xbf]));
}

#[test]
fn encoded_answer_names_the_offerer_and_the_offer() {
    let frame = encode_answer(
        ih(),
        peer(WT_PEER),
        peer(LT_PEER),
        OfferId(OFFER_BYTES),
        "a",
    );
    let v: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(v["answer"]["type"], "answer");
    assert_eq!(v["to_peer_id"], LT_PEER);
    assert!(v.get("offers").is_none());
}

// --------------------------------------------------------- strictness

fn offer_frame_with(field: &str, value: &str) -> String {
    let mut v = serde_json::json!({
        "action": "announce",
        "offer": {"type": "offer", "sdp": "x"},
        "offer_id": "o".repeat(20),
        "peer_id": "p".repeat(20),
        "info_hash": "i".repeat(20),
    });
    v[field] = Value::String(value.into());
    v.to_string()
}

#[test]
fn ids_of_19_or_21_characters_are_refused() {
    for field in ["info_hash", "peer_id", "offer_id"] {
        for len in [19, 21] {
            let err = parse_from_tracker(&offer_frame_with(field, &"x".repeat(len))).unwrap_err();
            assert!(
                matches!(err, TrackerError::BinaryField { problem: BinaryProblem::Length(n), .. } if n == len),
                "{field} {len}: {err}"
            );
        }
    }
}

#[test]
fn ids_with_characters_above_u00ff_are_refused() {
    // 20 characters each, but not 20 bytes: the upstream deserializer alone
    // only looked at the first 20 characters and would take the first one.
    let euro = format!("{}\u{20ac}", "x".repeat(19));
    let err = parse_from_tracker(&offer_frame_with("peer_id", &euro)).unwrap_err();
    assert_eq!(
        err,
        TrackerError::BinaryField {
            field: "peer_id",
            problem: BinaryProblem::WideChar(0x20ac)
        }
    );
    let emoji_escaped = format!(
        r#"{{"failure reason":"x","info_hash":"{}\ud83d\ude00"}}"#,
        "x".repeat(19)
    );
    assert!(matches!(
        parse_from_tracker(&emoji_escaped).unwrap_err(),
        TrackerError::BinaryField {
            problem: BinaryProblem::WideChar(0x1f600),
            ..
        }
    ));
}

#[test]
fn trailing_characters_past_the_twentieth_are_refused() {
    let long = format!("{}EXTRA", "x".repeat(20));
    let frame = format!(r#"{{"action":"scrape","info_hash":["{long}"]}}"#);
    assert!(matches!(
        parse_to_tracker(&frame).unwrap_err(),
        TrackerError::BinaryField {
            field: "info_hash",
            problem: BinaryProblem::Length(25)
        }
    ));
}

#[test]
fn non_string_ids_are_refused() {
    let frame = r#"{"failure reason":"x","info_hash":12345}"#;
    assert!(matches!(
        parse_from_tracker(frame).unwrap_err(),
        TrackerError::BinaryField {
            problem: BinaryProblem::NotAString,
            ..
        }
    ));
}

#[test]
fn bad_scrape_file_keys_and_offer_ids_in_announces_are_refused() {
    let frame = format!(
        r#"{{"action":"scrape","files":{{"{}":{{"complete":0,"incomplete":0,"downloaded":0}}}}}}"#,
        "k".repeat(21)
    );
    assert!(matches!(
        parse_from_tracker(&frame).unwrap_err(),
        TrackerError::BinaryField {
            field: "files key",
            ..
        }
    ));
    let frame = format!(
        r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{WT_PEER}","offers":[{{"offer_id":"{}","offer":{{"type":"offer","sdp":"x"}}}}]}}"#,
        "o".repeat(19)
    );
    assert!(matches!(
        parse_to_tracker(&frame).unwrap_err(),
        TrackerError::BinaryField {
            field: "offers[].offer_id",
            ..
        }
    ));
}

#[test]
fn frames_over_the_limit_are_refused_before_parsing() {
    let frame = format!("{{{}}}", " ".repeat(MAX_FROM_TRACKER_LEN));
    assert_eq!(
        parse_from_tracker(&frame).unwrap_err(),
        TrackerError::FrameTooLong {
            len: MAX_FROM_TRACKER_LEN + 2,
            max: MAX_FROM_TRACKER_LEN
        }
    );
    let frame = format!("{{{}}}", " ".repeat(MAX_TO_TRACKER_LEN));
    assert!(matches!(
        parse_to_tracker(&frame).unwrap_err(),
        TrackerError::FrameTooLong { .. }
    ));
}

#[test]
fn non_json_and_non_objects_are_clear_errors() {
    assert!(matches!(
        parse_from_tracker("{\"action\":").unwrap_err(),
        TrackerError::Json(_)
    ));
    assert!(matches!(
        parse_from_tracker(r#"{"failure reason":"\ud800"}"#).unwrap_err(),
        TrackerError::Json(_)
    ));
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    assert!(matches!(
        parse_from_tracker(&deep).unwrap_err(),
        TrackerError::Json(_)
    ));
    assert_eq!(
        parse_from_tracker("[1,2]").unwrap_err(),
        TrackerError::NotAnObject
    );
    assert_eq!(
        parse_to_tracker("\"announce\"").unwrap_err(),
        TrackerError::NotAnObject
    );
}

#[test]
fn unknown_messages_are_unrecognised_not_guessed() {
    assert_eq!(
        parse_from_tracker("{}").unwrap_err(),
        TrackerError::Unrecognised { action: None }
    );
    assert_eq!(
        parse_from_tracker(&format!(r#"{{"action":"announce","info_hash":"{IH}"}}"#)).unwrap_err(),
        TrackerError::Unrecognised {
            action: Some("announce".into())
        }
    );
    let long_action = "z".repeat(1000);
    let err = parse_to_tracker(&format!(r#"{{"action":"{long_action}"}}"#)).unwrap_err();
    assert_eq!(
        err,
        TrackerError::Unrecognised {
            action: Some("z".repeat(32))
        }
    );
}

#[test]
fn malformed_messages_name_their_kind() {
    let no_sdp = format!(
        r#"{{"action":"announce","offer":{{"type":"offer"}},"offer_id":"{OFFER}","peer_id":"{WT_PEER}","info_hash":"{IH}"}}"#
    );
    let err = parse_from_tracker(&no_sdp).unwrap_err();
    assert!(
        matches!(err, TrackerError::Malformed { kind: "offer", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("sdp"), "{err}");

    let wrong_type = format!(
        r#"{{"action":"announce","answer":{{"type":"offer","sdp":"x"}},"offer_id":"{OFFER}","peer_id":"{WT_PEER}","info_hash":"{IH}"}}"#
    );
    assert!(matches!(
        parse_from_tracker(&wrong_type).unwrap_err(),
        TrackerError::Malformed { kind: "answer", .. }
    ));

    let reason_not_string = r#"{"failure reason":42}"#;
    assert!(matches!(
        parse_from_tracker(reason_not_string).unwrap_err(),
        TrackerError::Malformed {
            kind: "failure",
            ..
        }
    ));

    let negative_interval = format!(r#"{{"action":"announce","info_hash":"{IH}","interval":-5}}"#);
    assert!(matches!(
        parse_from_tracker(&negative_interval).unwrap_err(),
        TrackerError::Malformed {
            kind: "announce response",
            ..
        }
    ));

    let bad_event = format!(
        r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{WT_PEER}","event":"exploded"}}"#
    );
    assert!(matches!(
        parse_to_tracker(&bad_event).unwrap_err(),
        TrackerError::Malformed {
            kind: "announce",
            ..
        }
    ));
}

#[test]
fn huge_intervals_are_capped_instead_of_overflowing() {
    let frame = format!(r#"{{"action":"announce","info_hash":"{IH}","interval":1e300}}"#);
    let FromTracker::AnnounceResponse { interval, .. } = parse_from_tracker(&frame).unwrap() else {
        panic!("not an announce response");
    };
    assert_eq!(interval, Some(Duration::from_secs(7 * 24 * 3600)));
}

// --------------------------------------------------------- round trips

fn event() -> impl Strategy<Value = Option<Event>> {
    prop_oneof![
        Just(None),
        Just(Some(Event::Started)),
        Just(Some(Event::Completed)),
        Just(Some(Event::Stopped)),
    ]
}

fn wire_event(e: Event) -> AnnounceEvent {
    match e {
        Event::Started => AnnounceEvent::Started,
        Event::Completed => AnnounceEvent::Completed,
        Event::Stopped => AnnounceEvent::Stopped,
    }
}

proptest! {
    #[test]
    fn announces_round_trip_through_the_server_parser(
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        uploaded in any::<u64>(),
        downloaded in any::<u64>(),
        left in any::<Option<u64>>(),
        event in event(),
        offers in prop::collection::vec((any::<[u8; 20]>(), any::<String>()), 0..=MAX_OFFERS_IN_TEST),
    ) {
        let params = AnnounceParams {
            info_hash: InfoHash(info_hash),
            peer_id: PeerId(peer_id),
            uploaded,
            downloaded,
            left,
            event,
            offers: offers.iter().map(|(id, sdp)| (OfferId(*id), sdp.clone())).collect(),
        };
        let frame = encode_announce(&params);
        let InMessage::AnnounceRequest(r) = parse_to_tracker(&frame).unwrap() else {
            panic!("not an announce");
        };
        prop_assert_eq!(r.info_hash.0, info_hash);
        prop_assert_eq!(r.peer_id.0, peer_id);
        prop_assert_eq!(r.bytes_left.map(|l| l as u64), left);
        prop_assert_eq!(r.event, event.map(wire_event));
        prop_assert!(r.answer.is_none() && r.answer_to_peer_id.is_none() && r.answer_offer_id.is_none());
        if matches!(event, Some(Event::Stopped | Event::Completed)) {
            prop_assert!(r.offers.is_none() && r.numwant.is_none());
        } else {
            let got: Vec<([u8; 20], String)> = r.offers.unwrap()
                .into_iter()
                .map(|o| (o.offer_id.0, o.offer.sdp))
                .collect();
            prop_assert_eq!(&got, &offers);
            prop_assert_eq!(r.numwant, Some(offers.len()));
        }
        let v: Value = serde_json::from_str(&frame).unwrap();
        prop_assert_eq!(v["uploaded"].as_u64(), Some(uploaded));
        prop_assert_eq!(v["downloaded"].as_u64(), Some(downloaded));
    }

    #[test]
    fn answers_round_trip_through_the_server_parser(
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        to_peer_id in any::<[u8; 20]>(),
        offer_id in any::<[u8; 20]>(),
        sdp in any::<String>(),
    ) {
        let frame = encode_answer(
            InfoHash(info_hash), PeerId(peer_id), PeerId(to_peer_id), OfferId(offer_id), &sdp,
        );
        let InMessage::AnnounceRequest(r) = parse_to_tracker(&frame).unwrap() else {
            panic!("not an announce");
        };
        prop_assert_eq!(r.info_hash.0, info_hash);
        prop_assert_eq!(r.peer_id.0, peer_id);
        prop_assert_eq!(r.answer_to_peer_id.map(|p| p.0), Some(to_peer_id));
        prop_assert_eq!(r.answer_offer_id.map(|o| o.0), Some(offer_id));
        prop_assert_eq!(r.answer.map(|a| a.sdp), Some(sdp));
        prop_assert!(r.offers.is_none());
    }

    #[test]
    fn scrapes_round_trip_through_the_server_parser(
        hashes in prop::collection::vec(any::<[u8; 20]>(), 0..20),
    ) {
        let ours: Vec<InfoHash> = hashes.iter().copied().map(InfoHash).collect();
        let InMessage::ScrapeRequest(r) = parse_to_tracker(&encode_scrape(&ours)).unwrap() else {
            panic!("not a scrape");
        };
        let got: Vec<[u8; 20]> = r.info_hashes.unwrap().as_vec().into_iter().map(|h| h.0).collect();
        prop_assert_eq!(got, hashes);
    }

    #[test]
    fn relayed_offers_and_answers_round_trip_to_the_client(
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        offer_id in any::<[u8; 20]>(),
        sdp in any::<String>(),
        is_offer in any::<bool>(),
    ) {
        let message = if is_offer {
            OutMessage::OfferOutMessage(OfferOutMessage {
                action: AnnounceAction::Announce,
                peer_id: WirePeerId(peer_id),
                info_hash: WireInfoHash(info_hash),
                offer: RtcOffer { t: RtcOfferType::Offer, sdp: sdp.clone() },
                offer_id: WireOfferId(offer_id),
            })
        } else {
            OutMessage::AnswerOutMessage(AnswerOutMessage {
                action: AnnounceAction::Announce,
                peer_id: WirePeerId(peer_id),
                info_hash: WireInfoHash(info_hash),
                answer: RtcAnswer { t: RtcAnswerType::Answer, sdp: sdp.clone() },
                offer_id: WireOfferId(offer_id),
            })
        };
        let (info_hash, peer_id, offer_id) = (InfoHash(info_hash), PeerId(peer_id), OfferId(offer_id));
        let expected = if is_offer {
            FromTracker::Offer { info_hash, peer_id, offer_id, sdp }
        } else {
            FromTracker::Answer { info_hash, peer_id, offer_id, sdp }
        };
        prop_assert_eq!(parse_from_tracker(&encode_to_client(&message)).unwrap(), expected);
    }

    #[test]
    fn announce_responses_round_trip_to_the_client(
        info_hash in any::<[u8; 20]>(),
        complete in any::<u32>(),
        incomplete in any::<u32>(),
        interval in 0u32..100_000,
    ) {
        let message = OutMessage::AnnounceResponse(AnnounceResponse {
            action: AnnounceAction::Announce,
            info_hash: WireInfoHash(info_hash),
            complete: complete as usize,
            incomplete: incomplete as usize,
            announce_interval: interval as usize,
        });
        prop_assert_eq!(
            parse_from_tracker(&encode_to_client(&message)).unwrap(),
            FromTracker::AnnounceResponse {
                info_hash: InfoHash(info_hash),
                complete: Some(complete.into()),
                incomplete: Some(incomplete.into()),
                interval: (interval > 0).then(|| Duration::from_secs(interval.into())),
            }
        );
    }

    #[test]
    fn scrape_responses_round_trip_to_the_client(
        files in prop::collection::btree_map(any::<[u8; 20]>(), any::<(u32, u32, u32)>(), 0..20),
    ) {
        let message = OutMessage::ScrapeResponse(ScrapeResponse {
            action: ScrapeAction::Scrape,
            files: files
                .iter()
                .map(|(h, &(c, i, d))| {
                    let stats = ScrapeStatistics {
                        complete: c as usize,
                        incomplete: i as usize,
                        downloaded: d as usize,
                    };
                    (WireInfoHash(*h), stats)
                })
                .collect(),
        });
        let expected: Vec<(InfoHash, ScrapeStats)> = files
            .iter()
            .map(|(h, &(c, i, d))| {
                let stats = ScrapeStats {
                    complete: c.into(),
                    incomplete: i.into(),
                    downloaded: d.into(),
                };
                (InfoHash(*h), stats)
            })
            .collect();
        prop_assert_eq!(
            parse_from_tracker(&encode_to_client(&message)).unwrap(),
            FromTracker::Scrape(expected)
        );
    }

    #[test]
    fn failures_round_trip_to_the_client(
        reason in any::<String>(),
        info_hash in any::<Option<[u8; 20]>>(),
        with_action in any::<bool>(),
    ) {
        let message = OutMessage::ErrorResponse(ErrorResponse {
            failure_reason: Cow::Owned(reason.clone()),
            action: with_action.then_some(ErrorResponseAction::Announce),
            info_hash: info_hash.map(WireInfoHash),
        });
        prop_assert_eq!(
            parse_from_tracker(&encode_to_client(&message)).unwrap(),
            FromTracker::Failure { reason, info_hash: info_hash.map(InfoHash) }
        );
    }

    #[test]
    fn ids_of_any_other_length_are_refused(
        chars in prop::collection::vec(0u32..=0xFF, 0..60).prop_filter("not 20", |c| c.len() != 20),
    ) {
        let s: String = chars.iter().filter_map(|&c| char::from_u32(c)).collect();
        let err = parse_from_tracker(&offer_frame_with("offer_id", &s)).unwrap_err();
        prop_assert_eq!(
            err,
            TrackerError::BinaryField { field: "offer_id", problem: BinaryProblem::Length(chars.len()) }
        );
    }

    #[test]
    fn ids_with_any_wide_character_are_refused(
        prefix in prop::collection::vec(0u8..=0xFF, 0..20),
        wide in (0x100u32..0x11_0000).prop_filter_map("scalar", char::from_u32),
    ) {
        let mut s: String = prefix.iter().map(|&b| char::from(b)).collect();
        s.push(wide);
        while s.chars().count() < 20 {
            s.push('x');
        }
        let err = parse_from_tracker(&offer_frame_with("info_hash", &s)).unwrap_err();
        prop_assert_eq!(
            err,
            TrackerError::BinaryField { field: "info_hash", problem: BinaryProblem::WideChar(wide.into()) }
        );
    }

    #[test]
    fn the_client_parser_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = parse_from_tracker(&text);
        let _ = parse_to_tracker(&text);
    }
}

const MAX_OFFERS_IN_TEST: usize = 10;
