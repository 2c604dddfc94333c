use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use swarmdrop::engine::tracker::wire::common::{AnnounceAction, RtcAnswer, RtcAnswerType};
use swarmdrop::engine::tracker::wire::common::{RtcOffer, RtcOfferType};
use swarmdrop::engine::tracker::wire::incoming::AnnounceRequest;
use swarmdrop::engine::tracker::wire::outgoing::{
    AnnounceResponse, AnswerOutMessage, OfferOutMessage,
};

const IH: &str = "aaaabbbbccccddddeeee";
const PID: &str = "-SD0100-abcdefghijkl";

/// What an announce means, whichever decoder read it.
#[derive(Debug, PartialEq, Eq)]
struct Meaning {
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    left: Option<u64>,
    event: Option<AnnounceEvent>,
    numwant: Option<usize>,
    offers: Option<Vec<([u8; 20], String)>>,
    answer: Option<String>,
    to_peer_id: Option<[u8; 20]>,
    offer_id: Option<[u8; 20]>,
}

fn fast_meaning(a: &Announce<'_>) -> Meaning {
    Meaning {
        info_hash: a.info_hash.0,
        peer_id: a.peer_id.0,
        left: a.bytes_left,
        event: a.event,
        numwant: a.numwant,
        offers: a.offers.as_ref().map(|list| {
            list.iter()
                .map(|o| (o.offer_id.0, o.sdp.text().into_owned()))
                .collect()
        }),
        answer: a.answer.map(|s| s.text().into_owned()),
        to_peer_id: a.answer_to_peer_id.map(|p| p.0),
        offer_id: a.answer_offer_id.map(|o| o.0),
    }
}

fn engine_meaning(a: AnnounceRequest) -> Meaning {
    Meaning {
        info_hash: a.info_hash.0,
        peer_id: a.peer_id.0,
        left: a.bytes_left.map(|l| l as u64),
        // The engine's codec reads `paused` as `update` before decoding.
        event: a.event,
        numwant: a.numwant,
        offers: a.offers.map(|list| {
            list.into_iter()
                .map(|o| (o.offer_id.0, o.offer.sdp))
                .collect()
        }),
        answer: a.answer.map(|s| s.sdp),
        to_peer_id: a.answer_to_peer_id.map(|p| p.0),
        offer_id: a.answer_offer_id.map(|o| o.0),
    }
}

/// Both decoders on one frame: the fast path may only accept what the
/// engine's codec accepts, with the same meaning.
fn assert_agrees(text: &str) {
    let engine = parse_to_tracker(text);
    if let Ok(fast) = fast_announce(text) {
        match engine {
            Ok(InMessage::AnnounceRequest(a)) => {
                assert_eq!(fast_meaning(&fast), engine_meaning(a), "{text}")
            }
            other => panic!("fast path accepted what the codec refuses ({other:?}): {text}"),
        }
    }
}

fn id_string(bytes: &[u8; 20]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn announce_text(sdps: &[&str]) -> String {
    let offers: Vec<Value> = sdps
        .iter()
        .enumerate()
        .map(|(i, sdp)| {
            json!({"offer": {"type": "offer", "sdp": sdp}, "offer_id": format!("offer-{i:014}")})
        })
        .collect();
    json!({
        "action": "announce", "info_hash": IH, "peer_id": PID, "left": 5, "numwant": sdps.len(),
        "uploaded": 0, "downloaded": 0, "event": "started", "offers": offers
    })
    .to_string()
}

#[test]
fn announces_decode_with_every_field() {
    let text = announce_text(&["v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"]);
    let Ok(Request::Announce(a)) = parse_request(&text) else {
        panic!("not an announce");
    };
    assert_eq!(&a.info_hash.0, IH.as_bytes());
    assert_eq!(&a.peer_id.0, PID.as_bytes());
    assert_eq!(a.bytes_left, Some(5));
    assert_eq!(a.event, Some(AnnounceEvent::Started));
    assert_eq!(a.numwant, Some(1));
    let offers = a.offers.expect("offers");
    assert_eq!(&offers[0].offer_id.0, b"offer-00000000000000");
    assert_eq!(offers[0].sdp.text(), "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n");
    assert_agrees(&text);
}

#[test]
fn an_sdp_is_borrowed_from_the_frame_with_its_escapes() {
    let text = announce_text(&["v=0\r\na=\"quoted\" \\ é 😀\r\n"]);
    let Ok(Request::Announce(a)) = parse_request(&text) else {
        panic!("not an announce");
    };
    let sdp = a.offers.expect("offers")[0].sdp;
    let literal = sdp.literal();
    assert!(literal.starts_with('"') && literal.ends_with('"'));
    assert!(literal.contains("\\r\\n") && literal.contains("\\\"quoted\\\""));
    // The very bytes of the frame, not a copy.
    let start = literal.as_ptr() as usize - text.as_ptr() as usize;
    assert_eq!(&text[start..start + literal.len()], literal);
}

#[test]
fn answers_decode_with_their_target() {
    let text = json!({
        "action": "announce", "info_hash": IH, "peer_id": PID, "to_peer_id": "-SD0100-zzzzzzzzzzzz",
        "offer_id": "offer-00000000000000", "answer": {"type": "answer", "sdp": "v=0\r\n"}
    })
    .to_string();
    let Ok(Request::Announce(a)) = parse_request(&text) else {
        panic!("not an announce");
    };
    assert_eq!(a.answer.expect("answer").text(), "v=0\r\n");
    assert_eq!(
        a.answer_to_peer_id.map(|p| p.0),
        Some(*b"-SD0100-zzzzzzzzzzzz")
    );
    assert_eq!(
        a.answer_offer_id.map(|o| o.0),
        Some(*b"offer-00000000000000")
    );
    assert_agrees(&text);
}

#[test]
fn paused_reads_as_update_and_null_as_absent() {
    let text = format!(
        r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{PID}","event":"paused","left":null,"offers":null,"answer":null,"to_peer_id":null}}"#
    );
    let Ok(Request::Announce(a)) = parse_request(&text) else {
        panic!("not an announce");
    };
    assert_eq!(a.event, Some(AnnounceEvent::Update));
    assert_eq!((a.bytes_left, a.offers, a.answer), (None, None, None));
    assert_agrees(&text);
}

#[test]
fn binary_fields_with_escapes_and_high_bytes_decode_to_their_bytes() {
    let mut bytes = [0u8; 20];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = [0x00, b'"', b'\\', 0x7F, 0x80, 0xFF, b'\n', 0x1F][i % 8];
    }
    let text =
        json!({"action": "announce", "info_hash": id_string(&bytes), "peer_id": PID}).to_string();
    let Ok(Request::Announce(a)) = parse_request(&text) else {
        panic!("not an announce");
    };
    assert_eq!(a.info_hash.0, bytes);
    assert_agrees(&text);
}

#[test]
fn a_binary_field_with_an_extra_character_is_refused() {
    let text = format!(r#"{{"action":"announce","info_hash":"{IH}x","peer_id":"{PID}"}}"#);
    assert!(matches!(
        parse_request(&text),
        Err(ProtocolError::Codec(TrackerError::BinaryField {
            field: "info_hash",
            ..
        }))
    ));
}

#[test]
fn a_wide_character_in_a_binary_field_is_refused() {
    let text =
        format!(r#"{{"action":"announce","info_hash":"aaaabbbbccccddddeeeĀ","peer_id":"{PID}"}}"#);
    assert!(matches!(
        parse_request(&text),
        Err(ProtocolError::Codec(TrackerError::BinaryField {
            field: "info_hash",
            ..
        }))
    ));
}

#[test]
fn scrape_needs_a_bounded_list_of_info_hashes() {
    let one = format!(r#"{{"action":"scrape","info_hash":"{IH}"}}"#);
    assert!(matches!(parse_request(&one), Ok(Request::Scrape(_))));
    assert_eq!(
        parse_request(r#"{"action":"scrape"}"#),
        Err(ProtocolError::ScrapeAll)
    );
    let list = |n: usize| {
        format!(
            r#"{{"action":"scrape","info_hash":[{}]}}"#,
            vec![format!("\"{IH}\""); n].join(",")
        )
    };
    assert!(parse_request(&list(MAX_SCRAPE_INFO_HASHES)).is_ok());
    let too_many = list(MAX_SCRAPE_INFO_HASHES + 1);
    assert_eq!(
        parse_request(&too_many),
        Err(ProtocolError::TooManyInfoHashes)
    );
    assert_eq!(ProtocolError::TooManyInfoHashes.action(), Some("scrape"));
}

#[test]
fn failures_name_the_action_when_it_is_known() {
    let bad_left =
        format!(r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{PID}","left":-1}}"#);
    assert_eq!(
        parse_request(&bad_left).unwrap_err().action(),
        Some("announce")
    );
    assert_eq!(parse_request("{nope").unwrap_err().action(), None);
    assert_eq!(
        parse_request(r#"{"action":"fly"}"#).unwrap_err().action(),
        None
    );
}

#[test]
fn an_oversized_frame_is_refused_before_it_is_read() {
    let text = announce_text(&[&"x".repeat(MAX_TO_TRACKER_LEN)]);
    assert!(matches!(
        parse_request(&text),
        Err(ProtocolError::Codec(TrackerError::FrameTooLong {
            max: MAX_TO_TRACKER_LEN,
            ..
        }))
    ));
}

#[test]
fn hostile_frames_are_refused_with_a_reason() {
    let head = format!(r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{PID}""#);
    let offer = |sdp: &str| {
        format!(
            r#"{head},"offers":[{{"offer_id":"offer-00000000000000","offer":{{"type":"offer","sdp":{sdp}}}}}]}}"#
        )
    };
    let cases = [
        // Unterminated strings and objects.
        offer(r#""v=0"#),
        format!(r#"{head},"offers":[{{"offer_id":"offer-0000"#),
        format!("{head},"),
        // Bad escapes.
        offer(r#""v=0\x""#),
        offer(r#""v=0\u12""#),
        offer(r#""v=0\"#),
        // Lone, reversed and split surrogates.
        offer(r#""\ud800""#),
        offer(r#""\udc00""#),
        offer(r#""\udc00\ud800""#),
        offer(r#""\ud800\u0041""#),
        offer(r#""\ud800x\udc00""#),
        offer(r#""\ud800\n""#),
        // A raw control character inside a string.
        offer("\"v=0\u{1}\""),
        // An SDP that is not a string.
        offer("42"),
        offer(r#"{"sdp":"v=0"}"#),
        // The wrong type of SDP.
        format!(r#"{head},"answer":{{"type":"offer","sdp":"v=0"}}}}"#),
        // Numbers out of range.
        format!(r#"{head},"left":1e400}}"#),
        format!(r#"{head},"left":18446744073709551616}}"#),
        format!(r#"{head},"numwant":-1}}"#),
        // A duplicate key.
        format!(r#"{head},"peer_id":"{PID}"}}"#),
        // Nesting deeper than the parser allows, in a field that is read.
        format!(
            r#"{head},"offers":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        ),
        // Not an object.
        format!("[{head}}}]"),
        "\"announce\"".to_string(),
    ];
    for text in &cases {
        let result = parse_request(text);
        assert!(result.is_err(), "accepted {text}");
        assert!(!result.unwrap_err().to_string().is_empty());
        assert_agrees(text);
    }
}

#[test]
fn deep_nesting_in_a_key_nobody_reads_is_skipped_without_recursion() {
    // The engine's codec builds a tree and refuses it at 128 levels; the fast
    // path skips such a value with a loop and no stack, so it need not.
    let text = format!(
        r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{PID}","x":{}{}}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    assert!(matches!(parse_request(&text), Ok(Request::Announce(_))));
    let unbalanced = text.replacen(']', "", 1);
    assert!(parse_request(&unbalanced).is_err());
}

#[test]
fn surrogate_pairs_are_accepted() {
    let text = format!(
        r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{PID}","answer":{{"type":"answer","sdp":"\ud83d\ude00 \\u \u00e9"}}}}"#
    );
    let Ok(Request::Announce(a)) = parse_request(&text) else {
        panic!("not an announce");
    };
    assert_eq!(a.answer.expect("answer").text(), "😀 \\u é");
    assert_agrees(&text);
}

#[test]
fn relayed_frames_match_what_serde_json_writes() {
    let text = announce_text(&["v=0\r\na=x \"y\"\r\n"]);
    let Ok(Request::Announce(a)) = parse_request(&text) else {
        panic!("not an announce");
    };
    let offer = a.offers.as_ref().expect("offers")[0];
    let spliced = offer_frame(&a.peer_id, &a.info_hash, offer.sdp, &offer.offer_id);
    let typed = serde_json::to_string(&OfferOutMessage {
        action: AnnounceAction::Announce,
        peer_id: a.peer_id,
        info_hash: a.info_hash,
        offer: RtcOffer {
            t: RtcOfferType::Offer,
            sdp: offer.sdp.text().into_owned(),
        },
        offer_id: offer.offer_id,
    })
    .expect("serializes");
    assert_eq!(spliced, typed);
    // And the engine, as a client, reads it.
    assert!(swarmdrop::engine::tracker::parse_from_tracker(&spliced).is_ok());
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = parse_request(&text);
        assert_agrees(&text);
    }

    /// Byte-level damage to a valid announce: never a panic, and whatever the
    /// fast path still accepts, the engine's codec reads the same way.
    #[test]
    fn damaged_announces_agree_with_the_engine_codec(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..6),
    ) {
        let mut bytes = announce_text(&["v=0\r\n\\u00e9\"x\"", "v=1\u{e9}\r\n"]).into_bytes();
        for (at, kind, byte) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        if let Ok(text) = String::from_utf8(bytes) {
            let _ = parse_request(&text);
            assert_agrees(&text);
        }
    }

    /// Any SDP and ids the way a client's JSON encoder writes them: the fast
    /// path accepts them, agrees with the engine's codec, and the spliced
    /// frames are byte for byte what serde_json writes for the typed messages.
    #[test]
    fn spliced_frames_round_trip_against_serde_json(
        sdp in "\\PC{0,300}",
        raw_sdp in proptest::collection::vec(any::<char>(), 0..50),
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        offer_id in any::<[u8; 20]>(),
        left in proptest::option::of(any::<u64>()),
    ) {
        let raw_sdp: String = raw_sdp.into_iter().collect();
        for sdp in [sdp.as_str(), raw_sdp.as_str()] {
            let text = json!({
                "action": "announce", "info_hash": id_string(&info_hash), "peer_id": id_string(&peer_id),
                "left": left, "offers": [{"offer_id": id_string(&offer_id), "offer": {"type": "offer", "sdp": sdp}}],
                "to_peer_id": id_string(&peer_id), "offer_id": id_string(&offer_id),
                "answer": {"type": "answer", "sdp": sdp},
            }).to_string();
            let a = fast_announce(&text).map_err(|_| "refused").unwrap();
            assert_agrees(&text);
            let offer = a.offers.as_ref().unwrap()[0];
            prop_assert_eq!(offer.sdp.text(), sdp);
            let spliced = offer_frame(&a.peer_id, &a.info_hash, offer.sdp, &offer.offer_id);
            let typed = serde_json::to_string(&OfferOutMessage {
                action: AnnounceAction::Announce,
                peer_id: PeerId(peer_id),
                info_hash: InfoHash(info_hash),
                offer: RtcOffer { t: RtcOfferType::Offer, sdp: sdp.to_string() },
                offer_id: OfferId(offer_id),
            }).unwrap();
            prop_assert_eq!(&spliced, &typed);
            // Sized exactly, so it becomes `Bytes` without a reallocation.
            prop_assert_eq!(spliced.len(), spliced.capacity());
            let answer = a.answer.unwrap();
            let spliced = answer_frame(&a.peer_id, &a.info_hash, answer, &offer.offer_id);
            let typed = serde_json::to_string(&AnswerOutMessage {
                action: AnnounceAction::Announce,
                peer_id: PeerId(peer_id),
                info_hash: InfoHash(info_hash),
                answer: RtcAnswer { t: RtcAnswerType::Answer, sdp: sdp.to_string() },
                offer_id: OfferId(offer_id),
            }).unwrap();
            prop_assert_eq!(&spliced, &typed);
        }
    }

    #[test]
    fn ids_are_written_as_serde_json_writes_them(
        any_bytes in any::<[u8; 20]>(),
        printable in proptest::array::uniform20(0x20u8..0x7F),
    ) {
        for id in [any_bytes, printable] {
            let mut out = String::new();
            push_id(&mut out, &id);
            prop_assert_eq!(out.len(), id_json_len(&id));
            prop_assert_eq!(&out, &serde_json::to_string(&PeerId(id)).unwrap());
            let back: PeerId = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(back.0, id);
        }
    }

    #[test]
    fn announce_responses_match_what_serde_json_writes(
        info_hash in any::<[u8; 20]>(),
        complete in any::<usize>(),
        incomplete in any::<usize>(),
    ) {
        let typed = serde_json::to_string(&AnnounceResponse {
            action: AnnounceAction::Announce,
            info_hash: InfoHash(info_hash),
            complete,
            incomplete,
            announce_interval: 120,
        }).unwrap();
        prop_assert_eq!(announce_response_frame(&InfoHash(info_hash), complete, incomplete, 120), typed);
    }

    /// Escaped `\u` sequences in an SDP, paired or not: accepted exactly when
    /// the engine's codec accepts them.
    #[test]
    fn unicode_escapes_agree_with_the_engine_codec(
        units in proptest::collection::vec(
            prop_oneof![0xD7F0u16..0xE010, any::<u16>(), Just(0x5C)], 0..6),
        plain in proptest::collection::vec(proptest::bool::ANY, 0..6),
    ) {
        let mut sdp = String::new();
        for (i, u) in units.iter().enumerate() {
            sdp.push_str(&format!("\\u{u:04x}"));
            if plain.get(i).copied().unwrap_or(false) {
                sdp.push('a');
            }
        }
        let text = format!(
            r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{PID}","answer":{{"type":"answer","sdp":"{sdp}"}}}}"#
        );
        let fast = fast_announce(&text).is_ok();
        let engine = parse_to_tracker(&text).is_ok();
        prop_assert_eq!(fast, engine, "{}", text);
        assert_agrees(&text);
    }
}
