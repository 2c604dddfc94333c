//! Strict decoding of WebTorrent tracker requests into `aquatic_ws_protocol` types.
//!
//! `aquatic_ws_protocol`'s 20-byte string deserializer reads the first twenty
//! characters and ignores the rest, so a 21-character `peer_id` would quietly
//! alias another peer's id. Every binary field is therefore checked here first
//! (exactly 20 characters, each at most U+00FF) on the parsed JSON tree, and
//! only then handed to serde.

use aquatic_ws_protocol::incoming::{AnnounceRequest, ScrapeRequest};
use serde_json::{Map, Value};
use thiserror::Error;

/// Most info hashes accepted in one scrape request.
pub const MAX_SCRAPE_INFO_HASHES: usize = 64;

/// A request from a tracker client, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `action: "announce"` (membership, offers, or an answer).
    Announce(AnnounceRequest),
    /// `action: "scrape"`.
    Scrape(ScrapeRequest),
}

/// Why a frame is not a request this tracker accepts.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The frame is not JSON.
    #[error("invalid json: {0}")]
    Json(String),
    /// The frame is JSON but not an object.
    #[error("message is not a json object")]
    NotAnObject,
    /// `action` is missing or names something this tracker does not do.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    /// A required binary field is missing.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A binary field is not a string of exactly 20 characters in U+0000..=U+00FF.
    #[error("field `{0}` must be a string of exactly 20 characters in the range U+0000..=U+00FF")]
    BadBinary(&'static str),
    /// A scrape names more info hashes than allowed.
    #[error("scrape names more than {MAX_SCRAPE_INFO_HASHES} info hashes")]
    TooManyInfoHashes,
    /// A scrape without any info hash (a full scrape is not offered).
    #[error("scrape needs `info_hash`")]
    ScrapeAll,
    /// The fields have the wrong shape for the action.
    #[error("malformed {action}: {why}")]
    Malformed {
        /// The action being decoded.
        action: &'static str,
        /// What serde said.
        why: String,
    },
}

impl ProtocolError {
    /// The `action` to echo in the failure response, when it is known.
    pub fn action(&self) -> Option<&'static str> {
        match self {
            ProtocolError::Malformed { action, .. } => Some(action),
            ProtocolError::TooManyInfoHashes | ProtocolError::ScrapeAll => Some("scrape"),
            _ => None,
        }
    }
}

/// Decodes one text frame.
pub fn parse_request(text: &str) -> Result<Request, ProtocolError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::Json(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(ProtocolError::NotAnObject);
    };
    match obj.get("action") {
        Some(Value::String(a)) if a == "announce" => {
            check_announce(&mut obj)?;
            serde_json::from_value(Value::Object(obj))
                .map(Request::Announce)
                .map_err(|e| ProtocolError::Malformed {
                    action: "announce",
                    why: e.to_string(),
                })
        }
        Some(Value::String(a)) if a == "scrape" => {
            check_scrape(&obj)?;
            serde_json::from_value(Value::Object(obj))
                .map(Request::Scrape)
                .map_err(|e| ProtocolError::Malformed {
                    action: "scrape",
                    why: e.to_string(),
                })
        }
        Some(Value::String(a)) => Err(ProtocolError::UnknownAction(a.chars().take(32).collect())),
        Some(_) | None => Err(ProtocolError::UnknownAction(String::new())),
    }
}

/// True when `s` is exactly 20 characters, each one byte (U+0000..=U+00FF).
pub fn is_binary20(s: &str) -> bool {
    let mut n = 0;
    for c in s.chars() {
        if c as u32 > 0xFF {
            return false;
        }
        n += 1;
        if n > 20 {
            return false;
        }
    }
    n == 20
}

fn require_binary(obj: &Map<String, Value>, field: &'static str) -> Result<(), ProtocolError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(ProtocolError::Missing(field)),
        Some(v) => check_binary(v, field),
    }
}

fn optional_binary(obj: &Map<String, Value>, field: &'static str) -> Result<(), ProtocolError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => check_binary(v, field),
    }
}

fn check_binary(v: &Value, field: &'static str) -> Result<(), ProtocolError> {
    match v {
        Value::String(s) if is_binary20(s) => Ok(()),
        _ => Err(ProtocolError::BadBinary(field)),
    }
}

fn check_announce(obj: &mut Map<String, Value>) -> Result<(), ProtocolError> {
    require_binary(obj, "info_hash")?;
    require_binary(obj, "peer_id")?;
    optional_binary(obj, "to_peer_id")?;
    optional_binary(obj, "offer_id")?;
    if let Some(Value::Array(offers)) = obj.get("offers") {
        for offer in offers {
            match offer.get("offer_id") {
                Some(v) => check_binary(v, "offers[].offer_id")?,
                None => return Err(ProtocolError::Missing("offers[].offer_id")),
            }
        }
    }
    // Events outside the four known ones (libtorrent's `paused`, an empty
    // string) carry nothing for this tracker: treat them as a plain update.
    let known_event = matches!(obj.get("event"), None | Some(Value::Null))
        || matches!(
            obj.get("event").and_then(Value::as_str),
            Some("started" | "stopped" | "completed" | "update")
        );
    if !known_event {
        obj.remove("event");
    }
    Ok(())
}

fn check_scrape(obj: &Map<String, Value>) -> Result<(), ProtocolError> {
    match obj.get("info_hash") {
        None | Some(Value::Null) => Err(ProtocolError::ScrapeAll),
        Some(Value::Array(list)) => {
            if list.len() > MAX_SCRAPE_INFO_HASHES {
                return Err(ProtocolError::TooManyInfoHashes);
            }
            list.iter().try_for_each(|v| check_binary(v, "info_hash"))
        }
        Some(v) => check_binary(v, "info_hash"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aquatic_ws_protocol::incoming::{AnnounceEvent, ScrapeRequestInfoHashes};
    use proptest::prelude::*;

    const IH: &str = "aaaabbbbccccddddeeee";
    const PID: &str = "-SD0100-abcdefghijkl";

    fn announce(extra: &str) -> String {
        format!(r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{PID}"{extra}}}"#)
    }

    #[test]
    fn a_plain_announce_decodes() {
        let Request::Announce(a) =
            parse_request(&announce(r#","left":0,"event":"started""#)).unwrap()
        else {
            panic!("not an announce");
        };
        assert_eq!(&a.info_hash.0, IH.as_bytes());
        assert_eq!(&a.peer_id.0, PID.as_bytes());
        assert_eq!(a.bytes_left, Some(0));
        assert_eq!(a.event, Some(AnnounceEvent::Started));
    }

    #[test]
    fn binary_fields_with_latin1_escapes_decode_to_their_bytes() {
        let ih = "\\u0000\\u00ff".to_string() + &"x".repeat(18);
        let text = format!(r#"{{"action":"announce","info_hash":"{ih}","peer_id":"{PID}"}}"#);
        let Request::Announce(a) = parse_request(&text).unwrap() else {
            panic!("not an announce");
        };
        assert_eq!(a.info_hash.0[0], 0);
        assert_eq!(a.info_hash.0[1], 0xFF);
    }

    #[test]
    fn a_binary_field_with_extra_characters_is_refused() {
        // aquatic's deserializer alone would accept this and keep the first 20.
        let text = format!(r#"{{"action":"announce","info_hash":"{IH}x","peer_id":"{PID}"}}"#);
        assert_eq!(
            parse_request(&text),
            Err(ProtocolError::BadBinary("info_hash"))
        );
    }

    #[test]
    fn a_binary_field_with_a_wide_character_is_refused() {
        let pid = "\u{100}".to_string() + &"x".repeat(19);
        let text = format!(r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{pid}"}}"#);
        assert_eq!(
            parse_request(&text),
            Err(ProtocolError::BadBinary("peer_id"))
        );
    }

    #[test]
    fn short_offer_ids_and_to_peer_ids_are_refused() {
        let text =
            announce(r#","offers":[{"offer_id":"short","offer":{"type":"offer","sdp":"x"}}]"#);
        assert_eq!(
            parse_request(&text),
            Err(ProtocolError::BadBinary("offers[].offer_id"))
        );
        let text = announce(r#","to_peer_id":"short","offer_id":"aaaabbbbccccddddeeee""#);
        assert_eq!(
            parse_request(&text),
            Err(ProtocolError::BadBinary("to_peer_id"))
        );
    }

    #[test]
    fn an_unknown_event_is_read_as_an_update() {
        let Request::Announce(a) = parse_request(&announce(r#","event":"paused""#)).unwrap() else {
            panic!("not an announce");
        };
        assert_eq!(a.event, None);
    }

    #[test]
    fn an_answer_decodes_with_its_target() {
        let text = announce(&format!(
            r#","to_peer_id":"{IH}","offer_id":"{IH}","answer":{{"type":"answer","sdp":"v=0"}}"#
        ));
        let Request::Announce(a) = parse_request(&text).unwrap() else {
            panic!("not an announce");
        };
        assert_eq!(a.answer.map(|x| x.sdp), Some("v=0".to_string()));
        assert!(a.answer_to_peer_id.is_some() && a.answer_offer_id.is_some());
    }

    #[test]
    fn scrape_takes_one_or_many_info_hashes_but_not_none() {
        let one = format!(r#"{{"action":"scrape","info_hash":"{IH}"}}"#);
        let Request::Scrape(s) = parse_request(&one).unwrap() else {
            panic!("not a scrape");
        };
        assert!(matches!(
            s.info_hashes,
            Some(ScrapeRequestInfoHashes::Single(_))
        ));
        let many = format!(r#"{{"action":"scrape","info_hash":["{IH}","{PID}"]}}"#);
        let Request::Scrape(s) = parse_request(&many).unwrap() else {
            panic!("not a scrape");
        };
        assert_eq!(s.info_hashes.map(|h| h.as_vec().len()), Some(2));
        assert_eq!(
            parse_request(r#"{"action":"scrape"}"#),
            Err(ProtocolError::ScrapeAll)
        );
        let too_many = format!(
            r#"{{"action":"scrape","info_hash":[{}]}}"#,
            vec![format!("\"{IH}\""); MAX_SCRAPE_INFO_HASHES + 1].join(",")
        );
        assert_eq!(
            parse_request(&too_many),
            Err(ProtocolError::TooManyInfoHashes)
        );
    }

    #[test]
    fn non_requests_are_refused_with_a_reason() {
        assert!(matches!(
            parse_request("{nope"),
            Err(ProtocolError::Json(_))
        ));
        assert_eq!(parse_request("[1]"), Err(ProtocolError::NotAnObject));
        assert_eq!(
            parse_request(r#"{"action":"dance"}"#),
            Err(ProtocolError::UnknownAction("dance".into()))
        );
        assert_eq!(
            parse_request(r#"{"action":"announce","peer_id":"-SD0100-abcdefghijkl"}"#),
            Err(ProtocolError::Missing("info_hash"))
        );
        assert!(matches!(
            parse_request(&announce(r#","left":-1"#)),
            Err(ProtocolError::Malformed {
                action: "announce",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn binary20_accepts_exactly_twenty_latin1_characters(chars in proptest::collection::vec(any::<char>(), 0..30)) {
            let s: String = chars.iter().collect();
            let expected = chars.len() == 20 && chars.iter().all(|&c| (c as u32) <= 0xFF);
            prop_assert_eq!(is_binary20(&s), expected);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = parse_request(&text);
        }

        #[test]
        fn every_byte_string_round_trips_through_the_wire_form(bytes in proptest::array::uniform20(any::<u8>())) {
            let ih = aquatic_ws_protocol::common::InfoHash(bytes);
            let json = serde_json::to_string(&ih).unwrap();
            let text = format!(r#"{{"action":"scrape","info_hash":{json}}}"#);
            let Ok(Request::Scrape(s)) = parse_request(&text) else {
                return Err(TestCaseError::fail("scrape did not decode"));
            };
            prop_assert_eq!(s.info_hashes.map(|h| h.as_vec()), Some(vec![ih]));
        }
    }
}
