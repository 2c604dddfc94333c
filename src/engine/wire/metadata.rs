//! BEP 9 ut_metadata: the metadata messages, the assembler that rebuilds
//! and verifies an info dictionary fetched from peers, and serving pieces.

use crate::engine::bencode::{self, DecodeError, Limits, OwnedValue};
use crate::engine::ids::InfoHash;
use thiserror::Error;

/// Size of every metadata piece but the last.
pub const METADATA_PIECE_SIZE: usize = 16384;

/// Largest info dictionary Swarmdrop fetches or accepts (16 MiB).
pub const MAX_METADATA_SIZE: u64 = 16 * 1024 * 1024;

/// `msg_type` of a request.
const MSG_REQUEST: i64 = 0;
/// `msg_type` of a data message.
const MSG_DATA: i64 = 1;
/// `msg_type` of a reject.
const MSG_REJECT: i64 = 2;

/// Bencode limits for the small dictionary heading a metadata message.
const LIMITS: Limits = Limits {
    max_depth: 4,
    max_items: 64,
};

/// Why a metadata message or piece cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MetadataError {
    /// The message does not start with valid bencode.
    #[error("ut_metadata message is not valid bencode: {0}")]
    Bencode(#[from] DecodeError),
    /// The message starts with bencode that is not a dictionary.
    #[error("ut_metadata message is not a dictionary")]
    NotADict,
    /// A required key is missing, or holds a value of the wrong type or range.
    #[error("ut_metadata key {key:?} is missing or invalid")]
    BadField {
        /// The key.
        key: &'static str,
    },
    /// A `msg_type` other than request, data or reject.
    #[error("unknown ut_metadata message type {0}")]
    UnknownType(i64),
    /// Bytes after the dictionary of a request or a reject.
    #[error("{len} bytes after a ut_metadata {kind}")]
    Trailing {
        /// "request" or "reject".
        kind: &'static str,
        /// How many.
        len: usize,
    },
    /// A data message carrying more than one piece.
    #[error("ut_metadata data carries {len} bytes, more than a {METADATA_PIECE_SIZE}-byte piece")]
    DataTooLong {
        /// Bytes carried.
        len: usize,
    },
    /// A metadata size of zero or above [`MAX_METADATA_SIZE`].
    #[error("metadata size {size} is outside 1..={max}")]
    BadSize {
        /// The size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A data message whose `total_size` disagrees with the size being fetched.
    #[error("piece says the metadata is {got} bytes, expected {expected}")]
    SizeMismatch {
        /// The size being fetched.
        expected: u64,
        /// The size in the message.
        got: u64,
    },
    /// A piece index past the last piece.
    #[error("metadata piece {piece} does not exist ({count} pieces)")]
    PieceOutOfRange {
        /// The index.
        piece: u32,
        /// Pieces in the metadata.
        count: u32,
    },
    /// A piece of the wrong length.
    #[error("metadata piece {piece} is {got} bytes, expected {expected}")]
    WrongPieceSize {
        /// The index.
        piece: u32,
        /// Its length by the total size.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The assembled bytes do not hash to the info hash; everything received
    /// was dropped.
    #[error("assembled metadata does not match the info hash")]
    HashMismatch,
}

/// A ut_metadata message (the payload after the extended-message id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataMessage<'a> {
    /// Asks for a piece.
    Request {
        /// Piece index.
        piece: u32,
    },
    /// Sends a piece.
    Data {
        /// Piece index.
        piece: u32,
        /// Size of the whole info dictionary.
        total_size: u64,
        /// The piece's bytes (they follow the bencoded dictionary).
        data: &'a [u8],
    },
    /// Refuses a request.
    Reject {
        /// Piece index.
        piece: u32,
    },
}

impl<'a> MetadataMessage<'a> {
    /// Decodes a ut_metadata payload. Unknown dictionary keys are ignored.
    pub fn decode(payload: &'a [u8]) -> Result<Self, MetadataError> {
        let (node, used) = bencode::decode_prefix_with(payload, LIMITS)?;
        let dict = node.as_dict().ok_or(MetadataError::NotADict)?;
        let rest = &payload[used..];
        let msg_type = dict
            .get_int(b"msg_type")
            .ok_or(MetadataError::BadField { key: "msg_type" })?;
        let piece = dict
            .get_int(b"piece")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(MetadataError::BadField { key: "piece" })?;
        let no_trailing = |kind| {
            if rest.is_empty() {
                Ok(())
            } else {
                Err(MetadataError::Trailing {
                    kind,
                    len: rest.len(),
                })
            }
        };
        match msg_type {
            MSG_REQUEST => no_trailing("request").map(|_| MetadataMessage::Request { piece }),
            MSG_REJECT => no_trailing("reject").map(|_| MetadataMessage::Reject { piece }),
            MSG_DATA => {
                let total_size = dict
                    .get_int(b"total_size")
                    .and_then(|s| u64::try_from(s).ok())
                    .ok_or(MetadataError::BadField { key: "total_size" })?;
                check_size(total_size)?;
                if rest.len() > METADATA_PIECE_SIZE {
                    return Err(MetadataError::DataTooLong { len: rest.len() });
                }
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data: rest,
                })
            }
            other => Err(MetadataError::UnknownType(other)),
        }
    }

    /// Appends the payload (dictionary, then the data of a data message).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (msg_type, piece) = match *self {
            MetadataMessage::Request { piece } => (MSG_REQUEST, piece),
            MetadataMessage::Data { piece, .. } => (MSG_DATA, piece),
            MetadataMessage::Reject { piece } => (MSG_REJECT, piece),
        };
        let mut dict = OwnedValue::dict()
            .with("msg_type", OwnedValue::Int(msg_type))
            .with("piece", OwnedValue::Int(piece.into()));
        if let MetadataMessage::Data { total_size, .. } = *self {
            let total_size = i64::try_from(total_size).unwrap_or(i64::MAX);
            dict = dict.with("total_size", OwnedValue::Int(total_size));
        }
        dict.encode_into(out);
        if let MetadataMessage::Data { data, .. } = *self {
            out.extend_from_slice(data);
        }
    }

    /// The payload in a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

fn check_size(size: u64) -> Result<(), MetadataError> {
    if size == 0 || size > MAX_METADATA_SIZE {
        Err(MetadataError::BadSize {
            size,
            max: MAX_METADATA_SIZE,
        })
    } else {
        Ok(())
    }
}

/// Number of metadata pieces for an info dictionary of `total_size` bytes.
pub fn metadata_piece_count(total_size: u64) -> u32 {
    // Sizes are capped at 16 MiB, so this fits easily.
    total_size.div_ceil(METADATA_PIECE_SIZE as u64) as u32
}

/// Piece `piece` of an info dictionary, to answer a request; `None` if
/// there is no such piece.
pub fn metadata_piece(info_bytes: &[u8], piece: u32) -> Option<&[u8]> {
    let start = usize::try_from(piece)
        .ok()?
        .checked_mul(METADATA_PIECE_SIZE)?;
    if start >= info_bytes.len() {
        return None;
    }
    let end = info_bytes.len().min(start + METADATA_PIECE_SIZE);
    Some(&info_bytes[start..end])
}

/// What adding a piece achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataProgress {
    /// Stored (or already held); this many pieces are still missing.
    Incomplete {
        /// Pieces still missing.
        missing: u32,
    },
    /// The last piece arrived and the bytes hash to the info hash: the raw
    /// info dictionary. The assembler is empty again afterwards.
    Complete(Vec<u8>),
}

/// Rebuilds an info dictionary from 16 KiB pieces received in any order,
/// and verifies it against the info hash.
#[derive(Clone, Debug)]
pub struct MetadataAssembler {
    info_hash: InfoHash,
    total_size: usize,
    /// Allocated on the first piece.
    bytes: Vec<u8>,
    received: Vec<bool>,
    missing: u32,
}

impl MetadataAssembler {
    /// An assembler for `total_size` bytes (as a peer announced it), refused
    /// when zero or above [`MAX_METADATA_SIZE`].
    pub fn new(info_hash: InfoHash, total_size: u64) -> Result<Self, MetadataError> {
        check_size(total_size)?;
        let count = metadata_piece_count(total_size);
        Ok(MetadataAssembler {
            info_hash,
            total_size: total_size as usize,
            bytes: Vec::new(),
            received: vec![false; count as usize],
            missing: count,
        })
    }

    /// The size being fetched.
    pub fn total_size(&self) -> u64 {
        self.total_size as u64
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.received.len() as u32
    }

    /// Length of piece `piece`: 16 KiB except the last; `None` past the end.
    pub fn piece_len(&self, piece: u32) -> Option<usize> {
        let start = (piece as usize).checked_mul(METADATA_PIECE_SIZE)?;
        (start < self.total_size).then(|| (self.total_size - start).min(METADATA_PIECE_SIZE))
    }

    /// Whether piece `piece` still has to be fetched.
    pub fn is_missing(&self, piece: u32) -> bool {
        self.received.get(piece as usize) == Some(&false)
    }

    /// How many pieces are still missing.
    pub fn missing_count(&self) -> u32 {
        self.missing
    }

    /// The pieces still missing, in order.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        self.received
            .iter()
            .enumerate()
            .filter(|(_, &got)| !got)
            .map(|(i, _)| i as u32)
    }

    /// Drops everything received so far (e.g. to fetch it from another peer).
    pub fn reset(&mut self) {
        self.bytes = Vec::new();
        self.received.fill(false);
        self.missing = self.piece_count();
    }

    /// Adds a piece from a data message. A piece already held is ignored.
    /// On the last piece the whole is hashed: a match returns the bytes, a
    /// mismatch drops everything and returns [`MetadataError::HashMismatch`].
    pub fn add_piece(
        &mut self,
        piece: u32,
        total_size: u64,
        data: &[u8],
    ) -> Result<MetadataProgress, MetadataError> {
        if total_size != self.total_size() {
            return Err(MetadataError::SizeMismatch {
                expected: self.total_size(),
                got: total_size,
            });
        }
        let expected = self
            .piece_len(piece)
            .ok_or(MetadataError::PieceOutOfRange {
                piece,
                count: self.piece_count(),
            })?;
        if data.len() != expected {
            return Err(MetadataError::WrongPieceSize {
                piece,
                expected,
                got: data.len(),
            });
        }
        if !self.is_missing(piece) {
            return Ok(MetadataProgress::Incomplete {
                missing: self.missing,
            });
        }
        if self.bytes.is_empty() {
            self.bytes = vec![0; self.total_size];
        }
        let start = piece as usize * METADATA_PIECE_SIZE;
        self.bytes[start..start + expected].copy_from_slice(data);
        self.received[piece as usize] = true;
        self.missing -= 1;
        if self.missing > 0 {
            return Ok(MetadataProgress::Incomplete {
                missing: self.missing,
            });
        }
        let digest = sha1_smol::Sha1::from(&self.bytes).digest().bytes();
        let bytes = std::mem::take(&mut self.bytes);
        self.reset();
        if digest == self.info_hash.0 {
            Ok(MetadataProgress::Complete(bytes))
        } else {
            Err(MetadataError::HashMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Stand-in info bytes of `len` bytes and their hash (the assembler
    /// does not parse what it assembles).
    fn info_of(len: usize) -> (Vec<u8>, InfoHash) {
        let info: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let hash = InfoHash(sha1_smol::Sha1::from(&info).digest().bytes());
        (info, hash)
    }

    #[test]
    fn messages_match_bep9_examples() {
        let req = MetadataMessage::Request { piece: 0 };
        assert_eq!(req.to_vec(), b"d8:msg_typei0e5:piecei0ee");
        let data = MetadataMessage::Data {
            piece: 0,
            total_size: 3425,
            data: b"xxxx",
        };
        assert_eq!(
            data.to_vec(),
            b"d8:msg_typei1e5:piecei0e10:total_sizei3425eexxxx"
        );
        let rej = MetadataMessage::Reject { piece: 0 };
        assert_eq!(rej.to_vec(), b"d8:msg_typei2e5:piecei0ee");
        for m in [req, data, rej] {
            assert_eq!(MetadataMessage::decode(&m.to_vec()), Ok(m));
        }
    }

    #[test]
    fn data_borrows_the_bytes_after_the_dictionary() {
        let payload = b"d8:msg_typei1e5:piecei2e10:total_sizei40000e1:xi0eeDATA";
        let Ok(MetadataMessage::Data {
            piece: 2,
            total_size: 40000,
            data,
        }) = MetadataMessage::decode(payload)
        else {
            panic!("not a data message");
        };
        assert_eq!(data, b"DATA");
        assert_eq!(data.as_ptr(), payload[payload.len() - 4..].as_ptr());
    }

    #[test]
    fn malformed_messages_are_refused_with_the_reason() {
        let cases: &[(&[u8], MetadataError)] = &[
            (b"d5:piecei0ee", MetadataError::BadField { key: "msg_type" }),
            (b"d8:msg_typei0ee", MetadataError::BadField { key: "piece" }),
            (
                b"d8:msg_typei0e5:piecei-1ee",
                MetadataError::BadField { key: "piece" },
            ),
            (
                b"d8:msg_typei1e5:piecei0eedata",
                MetadataError::BadField { key: "total_size" },
            ),
            (b"d8:msg_typei3e5:piecei0ee", MetadataError::UnknownType(3)),
            (
                b"d8:msg_typei0e5:piecei0eeXY",
                MetadataError::Trailing {
                    kind: "request",
                    len: 2,
                },
            ),
            (
                b"d8:msg_typei1e5:piecei0e10:total_sizei0ee",
                MetadataError::BadSize {
                    size: 0,
                    max: MAX_METADATA_SIZE,
                },
            ),
            (b"li1ee", MetadataError::NotADict),
        ];
        for (payload, err) in cases {
            assert_eq!(
                MetadataMessage::decode(payload).as_ref(),
                Err(err),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
        assert!(matches!(
            MetadataMessage::decode(b"d8:msg_"),
            Err(MetadataError::Bencode(_))
        ));
        let mut big = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        big.extend(std::iter::repeat_n(0, METADATA_PIECE_SIZE + 1));
        assert_eq!(
            MetadataMessage::decode(&big),
            Err(MetadataError::DataTooLong {
                len: METADATA_PIECE_SIZE + 1
            })
        );
    }

    #[test]
    fn assembler_refuses_empty_and_oversized_metadata() {
        let h = InfoHash([0; 20]);
        assert!(matches!(
            MetadataAssembler::new(h, 0),
            Err(MetadataError::BadSize { size: 0, .. })
        ));
        assert!(matches!(
            MetadataAssembler::new(h, MAX_METADATA_SIZE + 1),
            Err(MetadataError::BadSize { .. })
        ));
        let a = MetadataAssembler::new(h, MAX_METADATA_SIZE).unwrap();
        assert_eq!(a.piece_count(), 1024);
        assert!(a.bytes.is_empty(), "nothing allocated before data arrives");
    }

    #[test]
    fn pieces_in_any_order_assemble_and_verify() {
        let (info, hash) = info_of(40_000);
        let mut a = MetadataAssembler::new(hash, info.len() as u64).unwrap();
        assert_eq!(a.piece_count(), 3);
        assert_eq!(a.piece_len(2), Some(40_000 - 32_768));
        assert_eq!(a.piece_len(3), None);
        assert_eq!(a.missing().collect::<Vec<_>>(), [0, 1, 2]);
        let p = |i| metadata_piece(&info, i).unwrap();
        assert_eq!(
            a.add_piece(2, 40_000, p(2)),
            Ok(MetadataProgress::Incomplete { missing: 2 })
        );
        assert_eq!(
            a.add_piece(2, 40_000, p(2)),
            Ok(MetadataProgress::Incomplete { missing: 2 }),
            "a duplicate is ignored"
        );
        assert_eq!(
            a.add_piece(0, 40_000, p(0)),
            Ok(MetadataProgress::Incomplete { missing: 1 })
        );
        assert_eq!(a.missing().collect::<Vec<_>>(), [1]);
        assert!(a.is_missing(1) && !a.is_missing(0) && !a.is_missing(7));
        assert_eq!(
            a.add_piece(1, 40_000, p(1)),
            Ok(MetadataProgress::Complete(info))
        );
    }

    #[test]
    fn a_hash_mismatch_resets_for_another_peer() {
        let (info, hash) = info_of(20_000);
        let mut a = MetadataAssembler::new(hash, 20_000).unwrap();
        let mut bad = metadata_piece(&info, 1).unwrap().to_vec();
        bad[0] ^= 1;
        a.add_piece(0, 20_000, metadata_piece(&info, 0).unwrap())
            .unwrap();
        assert_eq!(
            a.add_piece(1, 20_000, &bad),
            Err(MetadataError::HashMismatch)
        );
        assert_eq!(a.missing_count(), 2);
        assert_eq!(a.missing().collect::<Vec<_>>(), [0, 1]);
        a.add_piece(1, 20_000, metadata_piece(&info, 1).unwrap())
            .unwrap();
        assert_eq!(
            a.add_piece(0, 20_000, metadata_piece(&info, 0).unwrap()),
            Ok(MetadataProgress::Complete(info))
        );
    }

    #[test]
    fn wrong_sizes_and_indices_are_refused() {
        let (info, hash) = info_of(20_000);
        let mut a = MetadataAssembler::new(hash, 20_000).unwrap();
        assert_eq!(
            a.add_piece(0, 20_001, &info[..16384]),
            Err(MetadataError::SizeMismatch {
                expected: 20_000,
                got: 20_001
            })
        );
        assert_eq!(
            a.add_piece(2, 20_000, &[]),
            Err(MetadataError::PieceOutOfRange { piece: 2, count: 2 })
        );
        assert_eq!(
            a.add_piece(0, 20_000, &info[..16383]),
            Err(MetadataError::WrongPieceSize {
                piece: 0,
                expected: 16384,
                got: 16383
            })
        );
        assert_eq!(
            a.add_piece(1, 20_000, &info[16384..19999]),
            Err(MetadataError::WrongPieceSize {
                piece: 1,
                expected: 3616,
                got: 3615
            })
        );
        assert_eq!(
            a.add_piece(u32::MAX, 20_000, &[]),
            Err(MetadataError::PieceOutOfRange {
                piece: u32::MAX,
                count: 2
            })
        );
        assert_eq!(a.missing_count(), 2);
    }

    #[test]
    fn serving_splits_into_16_kib_pieces() {
        let info = vec![1u8; 2 * METADATA_PIECE_SIZE + 5];
        assert_eq!(metadata_piece(&info, 0).map(<[u8]>::len), Some(16384));
        assert_eq!(metadata_piece(&info, 2).map(<[u8]>::len), Some(5));
        assert_eq!(metadata_piece(&info, 3), None);
        assert_eq!(metadata_piece(&info, u32::MAX), None);
        let exact = vec![1u8; METADATA_PIECE_SIZE];
        assert_eq!(metadata_piece(&exact, 1), None);
        assert_eq!(metadata_piece_count(exact.len() as u64), 1);
    }

    fn arb_metadata_message() -> impl Strategy<Value = (u8, u32, u64, Vec<u8>)> {
        (
            0u8..3,
            any::<u32>(),
            1..=MAX_METADATA_SIZE,
            proptest::collection::vec(any::<u8>(), 0..=METADATA_PIECE_SIZE),
        )
    }

    proptest! {
        #[test]
        fn metadata_messages_round_trip((kind, piece, total_size, data) in arb_metadata_message()) {
            let msg = match kind {
                0 => MetadataMessage::Request { piece },
                1 => MetadataMessage::Data { piece, total_size, data: &data },
                _ => MetadataMessage::Reject { piece },
            };
            let bytes = msg.to_vec();
            prop_assert_eq!(MetadataMessage::decode(&bytes), Ok(msg));
        }

        #[test]
        fn any_arrival_order_assembles(len in 1usize..70_000, seed: u64) {
            let (info, hash) = info_of(len);
            let mut a = MetadataAssembler::new(hash, info.len() as u64).unwrap();
            let mut order: Vec<u32> = (0..a.piece_count()).collect();
            fastrand::Rng::with_seed(seed).shuffle(&mut order);
            let (last, rest) = order.split_last().unwrap();
            for &p in rest {
                let r = a.add_piece(p, info.len() as u64, metadata_piece(&info, p).unwrap());
                prop_assert!(
                    matches!(r, Ok(MetadataProgress::Incomplete { .. })),
                    "piece {} gave {:?}", p, r
                );
            }
            let done = a.add_piece(*last, info.len() as u64, metadata_piece(&info, *last).unwrap());
            prop_assert_eq!(done, Ok(MetadataProgress::Complete(info)));
        }

        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = MetadataMessage::decode(&bytes);
        }
    }
}
