//! BEP 10 extension protocol: the extended handshake, the extension ids
//! Swarmdrop advertises, and the lt_donthave payload.

use super::metadata::MAX_METADATA_SIZE;
use crate::engine::bencode::{self, DecodeError, Dict, Limits, OwnedValue};
use std::collections::BTreeMap;
use thiserror::Error;

/// Extended-message id of the extended handshake itself.
pub const EXTENDED_HANDSHAKE_ID: u8 = 0;

/// Name of the metadata exchange extension (BEP 9).
pub const UT_METADATA: &str = "ut_metadata";

/// Name of the "don't have" extension (libtorrent's, announces a piece lost).
pub const LT_DONTHAVE: &str = "lt_donthave";

/// The id peers must use when sending us ut_metadata messages.
pub const LOCAL_UT_METADATA_ID: u8 = 1;

/// The id peers must use when sending us lt_donthave messages.
pub const LOCAL_LT_DONTHAVE_ID: u8 = 2;

/// Most entries accepted in a peer's `m` dictionary (real clients send ten
/// or so).
pub const MAX_EXTENSIONS: usize = 64;

/// Longest client name (`v`) kept, in bytes; longer names are cut.
pub const MAX_CLIENT_LEN: usize = 128;

/// Bencode limits for an extended handshake: small and shallow.
const LIMITS: Limits = Limits {
    max_depth: 8,
    max_items: 1024,
};

/// Why an extended handshake or lt_donthave payload is invalid.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ExtensionError {
    /// The payload is not bencode.
    #[error("extended handshake is not valid bencode: {0}")]
    Bencode(#[from] DecodeError),
    /// The payload is bencode but not a dictionary.
    #[error("extended handshake is not a dictionary")]
    NotADict,
    /// A known key holds a value of the wrong type or range.
    #[error("extended handshake key {key:?}: {why}")]
    BadField {
        /// The key.
        key: &'static str,
        /// What is wrong with its value.
        why: &'static str,
    },
    /// The `m` dictionary has more entries than allowed.
    #[error("extended handshake lists {count} extensions, at most {max} allowed")]
    TooManyExtensions {
        /// Entries received.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An `m` entry whose id is not an integer in 0..=255.
    #[error("extension {name:?} has id {id}, expected 0 to 255")]
    BadExtensionId {
        /// The extension name.
        name: String,
        /// The id received (0 when it is not an integer at all).
        id: i64,
    },
    /// `metadata_size` is above [`MAX_METADATA_SIZE`].
    #[error("metadata size {size} is above the limit of {max} bytes")]
    MetadataTooLarge {
        /// Size announced.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// An lt_donthave payload that is not 4 bytes.
    #[error("lt_donthave payload is {got} bytes, expected 4")]
    BadDontHave {
        /// Bytes received.
        got: usize,
    },
}

/// A BEP 10 extended handshake. Keys Swarmdrop has no use for are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// Extension name to the id the sender wants it sent with; 0 disables.
    pub m: BTreeMap<String, u8>,
    /// Size of the info dictionary in bytes (BEP 9), once the sender has it.
    pub metadata_size: Option<u64>,
    /// Client name and version (`v`).
    pub client: Option<String>,
    /// How many outstanding requests the sender queues (`reqq`).
    pub reqq: Option<u32>,
}

impl ExtendedHandshake {
    /// The handshake Swarmdrop sends: ut_metadata and lt_donthave under the
    /// local ids, the metadata size if known, its name, and its queue depth.
    pub fn swarmdrop(metadata_size: Option<u64>, reqq: u32) -> Self {
        let mut m = BTreeMap::new();
        m.insert(UT_METADATA.to_owned(), LOCAL_UT_METADATA_ID);
        m.insert(LT_DONTHAVE.to_owned(), LOCAL_LT_DONTHAVE_ID);
        ExtendedHandshake {
            m,
            metadata_size,
            client: Some(concat!("Swarmdrop ", env!("CARGO_PKG_VERSION")).to_owned()),
            reqq: Some(reqq),
        }
    }

    /// The id the sender wants `name` messages sent with, if it enabled it.
    pub fn id_for(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&id| id != 0)
    }

    /// The sender's ut_metadata id, if it supports it.
    pub fn ut_metadata(&self) -> Option<u8> {
        self.id_for(UT_METADATA)
    }

    /// The sender's lt_donthave id, if it supports it.
    pub fn lt_donthave(&self) -> Option<u8> {
        self.id_for(LT_DONTHAVE)
    }

    /// Applies a later handshake from the same peer (BEP 10 allows several):
    /// its `m` entries are added or replace earlier ones (id 0 removes one),
    /// and fields it carries replace earlier values.
    pub fn update(&mut self, later: ExtendedHandshake) {
        for (name, id) in later.m {
            if id == 0 {
                self.m.remove(&name);
            } else {
                self.m.insert(name, id);
            }
        }
        self.metadata_size = later.metadata_size.or(self.metadata_size);
        self.client = later.client.or(self.client.take());
        self.reqq = later.reqq.or(self.reqq);
    }

    /// Decodes the payload of an extended message with id 0.
    pub fn decode(payload: &[u8]) -> Result<Self, ExtensionError> {
        let node = bencode::decode_with(payload, LIMITS)?;
        let dict = node.as_dict().ok_or(ExtensionError::NotADict)?;
        let m = match dict.get(b"m") {
            None => BTreeMap::new(),
            Some(node) => decode_m(node.as_dict().ok_or(ExtensionError::BadField {
                key: "m",
                why: "not a dictionary",
            })?)?,
        };
        let metadata_size = match dict.get(b"metadata_size") {
            None => None,
            Some(node) => {
                let size = node.as_int().ok_or(ExtensionError::BadField {
                    key: "metadata_size",
                    why: "not an integer",
                })?;
                let size = u64::try_from(size).ok().filter(|&s| s > 0).ok_or(
                    ExtensionError::BadField {
                        key: "metadata_size",
                        why: "not positive",
                    },
                )?;
                if size > MAX_METADATA_SIZE {
                    return Err(ExtensionError::MetadataTooLarge {
                        size,
                        max: MAX_METADATA_SIZE,
                    });
                }
                Some(size)
            }
        };
        let client = match dict.get(b"v") {
            None => None,
            Some(node) => {
                let v = node.as_bytes().ok_or(ExtensionError::BadField {
                    key: "v",
                    why: "not a string",
                })?;
                Some(client_name(v))
            }
        };
        let reqq = match dict.get(b"reqq") {
            None => None,
            Some(node) => Some(node.as_int().and_then(|n| u32::try_from(n).ok()).ok_or(
                ExtensionError::BadField {
                    key: "reqq",
                    why: "not an integer in 0..2^32",
                },
            )?),
        };
        Ok(ExtendedHandshake {
            m,
            metadata_size,
            client,
            reqq,
        })
    }

    /// The bencoded payload (canonical: keys sorted).
    pub fn encode(&self) -> Vec<u8> {
        // Inserted, not collected: collect() would sort first, one more copy
        // of the sort code in the wasm (BENCHMARKS.md row 7).
        let mut m = BTreeMap::new();
        m.extend(
            self.m
                .iter()
                .map(|(name, &id)| (name.as_bytes().to_vec(), OwnedValue::Int(id.into()))),
        );
        let mut dict = OwnedValue::dict().with("m", OwnedValue::Dict(m));
        if let Some(size) = self.metadata_size {
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            dict = dict.with("metadata_size", OwnedValue::Int(size));
        }
        if let Some(client) = &self.client {
            dict = dict.with("v", OwnedValue::bytes(client));
        }
        if let Some(reqq) = self.reqq {
            dict = dict.with("reqq", OwnedValue::Int(reqq.into()));
        }
        dict.encode()
    }
}

fn decode_m(m: &Dict<'_>) -> Result<BTreeMap<String, u8>, ExtensionError> {
    if m.entries.len() > MAX_EXTENSIONS {
        return Err(ExtensionError::TooManyExtensions {
            count: m.entries.len(),
            max: MAX_EXTENSIONS,
        });
    }
    let mut out = BTreeMap::new();
    for (name, node) in &m.entries {
        // A name that is not UTF-8 cannot be an extension anyone implements.
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let raw = node.as_int();
        let id = raw.and_then(|n| u8::try_from(n).ok()).ok_or_else(|| {
            ExtensionError::BadExtensionId {
                name: name.to_owned(),
                id: raw.unwrap_or(0),
            }
        })?;
        out.insert(name.to_owned(), id);
    }
    Ok(out)
}

/// The client name as text (invalid UTF-8 replaced), cut at a character
/// boundary to at most [`MAX_CLIENT_LEN`] bytes. Applying it to its own
/// output changes nothing, so handshakes round-trip.
fn client_name(v: &[u8]) -> String {
    let mut name = String::from_utf8_lossy(v).into_owned();
    if name.len() > MAX_CLIENT_LEN {
        let cut = (0..=MAX_CLIENT_LEN)
            .rev()
            .find(|&i| name.is_char_boundary(i))
            .unwrap_or(0);
        name.truncate(cut);
    }
    name
}

/// The payload of an lt_donthave message: the piece index.
pub fn encode_donthave(piece: u32) -> [u8; 4] {
    piece.to_be_bytes()
}

/// Reads the piece index of an lt_donthave message.
pub fn decode_donthave(payload: &[u8]) -> Result<u32, ExtensionError> {
    let bytes: [u8; 4] = payload
        .try_into()
        .map_err(|_| ExtensionError::BadDontHave { got: payload.len() })?;
    Ok(u32::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn swarmdrop_handshake_encodes_canonically() {
        let h = ExtendedHandshake::swarmdrop(Some(31_235), 250);
        let expected = format!(
            "d1:md11:lt_donthavei2e11:ut_metadatai1ee13:metadata_sizei31235e4:reqqi250e1:v{}:Swarmdrop {}e",
            10 + env!("CARGO_PKG_VERSION").len(),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(String::from_utf8(h.encode()).unwrap(), expected);
        assert_eq!(ExtendedHandshake::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn webtorrent_handshake_decodes() {
        let payload = b"d1:md11:ut_metadatai1e6:ut_pexi2ee13:metadata_sizei2048ee";
        let h = ExtendedHandshake::decode(payload).unwrap();
        assert_eq!(h.ut_metadata(), Some(1));
        assert_eq!(h.id_for("ut_pex"), Some(2));
        assert_eq!(h.lt_donthave(), None);
        assert_eq!(h.metadata_size, Some(2048));
        assert_eq!(h.client, None);
        assert_eq!(h.reqq, None);
    }

    #[test]
    fn libtorrent_handshake_decodes_and_unknown_keys_are_ignored() {
        let payload: &[u8] =
            b"d1:ei0e4:ipv616:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\
            12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e\
            12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei12345e\
            4:reqqi500e11:upload_onlyi1e1:v17:qBittorrent/4.6.26:yourip4:\x7f\x00\x00\x01e";
        let h = ExtendedHandshake::decode(payload).unwrap();
        assert_eq!(h.ut_metadata(), Some(2));
        assert_eq!(h.lt_donthave(), Some(7));
        assert_eq!(h.m.len(), 6);
        assert_eq!(h.metadata_size, Some(12345));
        assert_eq!(h.reqq, Some(500));
        assert_eq!(h.client.as_deref(), Some("qBittorrent/4.6.2"));
    }

    #[test]
    fn id_zero_means_disabled() {
        let h = ExtendedHandshake::decode(b"d1:md11:ut_metadatai0eee").unwrap();
        assert_eq!(h.m.get(UT_METADATA), Some(&0));
        assert_eq!(h.ut_metadata(), None);
    }

    #[test]
    fn a_later_handshake_updates_and_disables_extensions() {
        let mut h = ExtendedHandshake::decode(b"d1:md11:lt_donthavei7e11:ut_metadatai2ee1:v3:abce")
            .unwrap();
        let later =
            ExtendedHandshake::decode(b"d1:md11:lt_donthavei0e6:ut_pexi5ee13:metadata_sizei99ee")
                .unwrap();
        h.update(later);
        assert_eq!(h.lt_donthave(), None);
        assert!(!h.m.contains_key(LT_DONTHAVE));
        assert_eq!(h.ut_metadata(), Some(2));
        assert_eq!(h.id_for("ut_pex"), Some(5));
        assert_eq!(h.metadata_size, Some(99));
        assert_eq!(h.client.as_deref(), Some("abc"));
    }

    #[test]
    fn metadata_size_is_capped_and_must_be_positive() {
        let too_big = format!("d13:metadata_sizei{}ee", MAX_METADATA_SIZE + 1);
        assert_eq!(
            ExtendedHandshake::decode(too_big.as_bytes()),
            Err(ExtensionError::MetadataTooLarge {
                size: MAX_METADATA_SIZE + 1,
                max: MAX_METADATA_SIZE
            })
        );
        let at_cap = format!("d13:metadata_sizei{MAX_METADATA_SIZE}ee");
        assert!(ExtendedHandshake::decode(at_cap.as_bytes()).is_ok());
        for bad in [&b"d13:metadata_sizei0ee"[..], b"d13:metadata_sizei-5ee"] {
            assert_eq!(
                ExtendedHandshake::decode(bad),
                Err(ExtensionError::BadField {
                    key: "metadata_size",
                    why: "not positive"
                })
            );
        }
        assert!(matches!(
            ExtendedHandshake::decode(b"d13:metadata_size3:abce"),
            Err(ExtensionError::BadField {
                key: "metadata_size",
                ..
            })
        ));
    }

    #[test]
    fn m_entries_are_bounded_and_ids_checked() {
        let mut payload = b"d1:md".to_vec();
        for i in 0..=MAX_EXTENSIONS {
            let name = format!("x{i:03}");
            payload.extend_from_slice(format!("{}:{}i1e", name.len(), name).as_bytes());
        }
        payload.extend_from_slice(b"ee");
        assert_eq!(
            ExtendedHandshake::decode(&payload),
            Err(ExtensionError::TooManyExtensions {
                count: MAX_EXTENSIONS + 1,
                max: MAX_EXTENSIONS
            })
        );
        assert_eq!(
            ExtendedHandshake::decode(b"d1:md1:ai256eee"),
            Err(ExtensionError::BadExtensionId {
                name: "a".into(),
                id: 256
            })
        );
        assert_eq!(
            ExtendedHandshake::decode(b"d1:md1:ai-1eee"),
            Err(ExtensionError::BadExtensionId {
                name: "a".into(),
                id: -1
            })
        );
        assert!(matches!(
            ExtendedHandshake::decode(b"d1:mli1eee"),
            Err(ExtensionError::BadField { key: "m", .. })
        ));
        // Names that are not UTF-8 are skipped.
        let h = ExtendedHandshake::decode(b"d1:md2:\xff\xfei3e1:bi4eee").unwrap();
        assert_eq!(h.m.len(), 1);
        assert_eq!(h.id_for("b"), Some(4));
    }

    #[test]
    fn malformed_payloads_are_refused() {
        assert!(matches!(
            ExtendedHandshake::decode(b"d1:m"),
            Err(ExtensionError::Bencode(_))
        ));
        assert_eq!(
            ExtendedHandshake::decode(b"li1ee"),
            Err(ExtensionError::NotADict)
        );
        assert!(matches!(
            ExtendedHandshake::decode(b"de  "),
            Err(ExtensionError::Bencode(DecodeError::Trailing(2)))
        ));
        assert!(matches!(
            ExtendedHandshake::decode(b"d4:reqqi-1ee"),
            Err(ExtensionError::BadField { key: "reqq", .. })
        ));
        let deep = [&b"d1:x"[..], &[b'l'; 20], &[b'e'; 20], b"e"].concat();
        assert!(matches!(
            ExtendedHandshake::decode(&deep),
            Err(ExtensionError::Bencode(DecodeError::TooDeep(_)))
        ));
    }

    #[test]
    fn long_or_invalid_client_names_are_cut_and_cleaned() {
        let long = "é".repeat(100); // 200 bytes
        let payload = format!("d1:v{}:{}e", long.len(), long);
        let h = ExtendedHandshake::decode(payload.as_bytes()).unwrap();
        assert_eq!(h.client.as_deref(), Some("é".repeat(64).as_str()));
        let h = ExtendedHandshake::decode(b"d1:v3:a\xffbe").unwrap();
        assert_eq!(h.client.as_deref(), Some("a\u{FFFD}b"));
        // 100 invalid bytes become 100 three-byte replacements, cut to 42.
        let payload = [&b"d1:v100:"[..], &[0xff; 100], b"e"].concat();
        let h = ExtendedHandshake::decode(&payload).unwrap();
        assert_eq!(h.client.as_deref(), Some("\u{FFFD}".repeat(42).as_str()));
        assert_eq!(ExtendedHandshake::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn donthave_payload_round_trips_and_checks_length() {
        assert_eq!(encode_donthave(0x0102_0304), [1, 2, 3, 4]);
        assert_eq!(decode_donthave(&[0, 0, 1, 0]), Ok(256));
        assert_eq!(
            decode_donthave(&[0, 0, 1]),
            Err(ExtensionError::BadDontHave { got: 3 })
        );
    }

    fn arb_handshake() -> impl Strategy<Value = ExtendedHandshake> {
        (
            proptest::collection::btree_map("[a-z_]{1,16}", any::<u8>(), 0..12),
            proptest::option::of(1..=MAX_METADATA_SIZE),
            // At most 32 characters: never more than MAX_CLIENT_LEN bytes.
            proptest::option::of("\\PC{0,32}"),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(m, metadata_size, client, reqq)| ExtendedHandshake {
                m,
                metadata_size,
                client,
                reqq,
            })
    }

    proptest! {
        #[test]
        fn extended_handshakes_round_trip(h in arb_handshake()) {
            prop_assert_eq!(ExtendedHandshake::decode(&h.encode()), Ok(h));
        }

        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = ExtendedHandshake::decode(&bytes);
        }
    }
}
