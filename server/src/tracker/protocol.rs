//! Requests to the tracker: the engine's strict codec, plus the limits this server adds.
//!
//! [`swarmdrop::engine::tracker::parse_to_tracker`] checks every binary field
//! strictly (`aquatic_ws_protocol`'s own deserializer would read the first
//! twenty characters of a longer string and ignore the rest). On top of it
//! the server refuses a scrape of every torrent (it would list the swarms in
//! use) and scrapes of more than [`MAX_SCRAPE_INFO_HASHES`] torrents.

use swarmdrop::engine::tracker::wire::incoming::{InMessage, ScrapeRequestInfoHashes};
use swarmdrop::engine::tracker::{parse_to_tracker, TrackerError};
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

/// Decodes one text frame from a client.
pub fn parse_request(text: &str) -> Result<InMessage, ProtocolError> {
    let message = parse_to_tracker(text)?;
    if let InMessage::ScrapeRequest(scrape) = &message {
        match &scrape.info_hashes {
            None => return Err(ProtocolError::ScrapeAll),
            Some(ScrapeRequestInfoHashes::Multiple(list))
                if list.len() > MAX_SCRAPE_INFO_HASHES =>
            {
                return Err(ProtocolError::TooManyInfoHashes)
            }
            Some(_) => {}
        }
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IH: &str = "aaaabbbbccccddddeeee";
    const PID: &str = "-SD0100-abcdefghijkl";

    #[test]
    fn announces_decode_through_the_engine_codec() {
        let text = format!(
            r#"{{"action":"announce","info_hash":"{IH}","peer_id":"{PID}","left":0,"uploaded":0,"downloaded":0}}"#
        );
        let Ok(InMessage::AnnounceRequest(a)) = parse_request(&text) else {
            panic!("not an announce");
        };
        assert_eq!(&a.info_hash.0, IH.as_bytes());
        assert_eq!(a.bytes_left, Some(0));
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
    fn scrape_needs_a_bounded_list_of_info_hashes() {
        let one = format!(r#"{{"action":"scrape","info_hash":"{IH}"}}"#);
        assert!(matches!(
            parse_request(&one),
            Ok(InMessage::ScrapeRequest(_))
        ));
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
        let too_many = parse_request(&list(MAX_SCRAPE_INFO_HASHES + 1));
        assert_eq!(too_many, Err(ProtocolError::TooManyInfoHashes));
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

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = parse_request(&text);
        }
    }
}
