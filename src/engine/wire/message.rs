//! BEP 3 / BEP 6 / BEP 10 peer messages: a `Message` that borrows from the
//! received bytes, and its encoder.
//!
//! A message on the wire is `<u32 big-endian length><id><payload>`; a length
//! of zero is a keep-alive. [`Message::decode`] takes the bytes after the
//! length prefix (the "body"); framing is the job of
//! [`Framer`](super::framer::Framer).

use thiserror::Error;

/// Message ids (BEP 3, BEP 5 `port`, BEP 6 Fast extension, BEP 10 `extended`).
pub mod msg_id {
    /// `choke`
    pub const CHOKE: u8 = 0;
    /// `unchoke`
    pub const UNCHOKE: u8 = 1;
    /// `interested`
    pub const INTERESTED: u8 = 2;
    /// `not interested`
    pub const NOT_INTERESTED: u8 = 3;
    /// `have <index>`
    pub const HAVE: u8 = 4;
    /// `bitfield <bits>`
    pub const BITFIELD: u8 = 5;
    /// `request <index> <begin> <length>`
    pub const REQUEST: u8 = 6;
    /// `piece <index> <begin> <block>`
    pub const PIECE: u8 = 7;
    /// `cancel <index> <begin> <length>`
    pub const CANCEL: u8 = 8;
    /// `port <u16>` (BEP 5, DHT)
    pub const PORT: u8 = 9;
    /// `suggest piece <index>` (BEP 6)
    pub const SUGGEST: u8 = 0x0D;
    /// `have all` (BEP 6)
    pub const HAVE_ALL: u8 = 0x0E;
    /// `have none` (BEP 6)
    pub const HAVE_NONE: u8 = 0x0F;
    /// `reject request <index> <begin> <length>` (BEP 6)
    pub const REJECT: u8 = 0x10;
    /// `allowed fast <index>` (BEP 6)
    pub const ALLOWED_FAST: u8 = 0x11;
    /// `extended <ext id> <payload>` (BEP 10)
    pub const EXTENDED: u8 = 20;
}

/// Bytes of a piece message before its block: length prefix, id, index, begin.
pub const PIECE_HEADER_LEN: usize = 13;

/// Why a message body cannot be decoded. The stream itself is still in step:
/// the framer has consumed exactly the declared bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// A message whose payload must have an exact length has another one.
    #[error("{name} message has a {got}-byte payload, expected {expected}")]
    BadLength {
        /// The message kind.
        name: &'static str,
        /// Payload bytes its id requires.
        expected: usize,
        /// Payload bytes received.
        got: usize,
    },
    /// A message whose payload has a minimum length is shorter.
    #[error("{name} message has a {got}-byte payload, expected at least {min}")]
    TooShort {
        /// The message kind.
        name: &'static str,
        /// Smallest payload its id allows.
        min: usize,
        /// Payload bytes received.
        got: usize,
    },
    /// An id this codec does not know (the peer layer decides whether to ignore it).
    #[error("unknown message id {id} with a {len}-byte payload")]
    UnknownId {
        /// The id byte.
        id: u8,
        /// Payload bytes after the id.
        len: usize,
    },
}

/// The coordinates of a block in `request`, `cancel` and `reject` messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRequest {
    /// Piece index.
    pub index: u32,
    /// Byte offset inside the piece.
    pub begin: u32,
    /// Length of the block in bytes.
    pub length: u32,
}

/// One peer message, borrowing its variable-length parts from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A zero-length message.
    KeepAlive,
    /// The sender will not serve requests.
    Choke,
    /// The sender will serve requests.
    Unchoke,
    /// The sender wants pieces the receiver has.
    Interested,
    /// The sender wants nothing from the receiver.
    NotInterested,
    /// The sender has completed (and verified) this piece.
    Have(u32),
    /// The pieces the sender has, high bit of the first byte is piece 0.
    Bitfield(&'a [u8]),
    /// Asks for a block.
    Request(BlockRequest),
    /// A block of data.
    Piece {
        /// Piece index.
        index: u32,
        /// Byte offset inside the piece.
        begin: u32,
        /// The data.
        block: &'a [u8],
    },
    /// Withdraws a request.
    Cancel(BlockRequest),
    /// The sender's DHT port (BEP 5).
    Port(u16),
    /// Suggests a piece to download (BEP 6).
    Suggest(u32),
    /// The sender has every piece (BEP 6).
    HaveAll,
    /// The sender has no piece (BEP 6).
    HaveNone,
    /// A request that will not be served (BEP 6).
    Reject(BlockRequest),
    /// A piece that may be requested while choked (BEP 6).
    AllowedFast(u32),
    /// An extension message (BEP 10): id 0 is the extended handshake.
    Extended {
        /// The extension id, as the receiver numbered it (0: handshake).
        id: u8,
        /// The extension's payload.
        payload: &'a [u8],
    },
}

impl<'a> Message<'a> {
    /// Decodes a message body: the bytes after the 4-byte length prefix.
    /// An empty body is a keep-alive.
    pub fn decode(body: &'a [u8]) -> Result<Self, MessageError> {
        let Some((&id, payload)) = body.split_first() else {
            return Ok(Message::KeepAlive);
        };
        let msg = match id {
            msg_id::CHOKE => fixed(payload, "choke", 0).map(|_| Message::Choke)?,
            msg_id::UNCHOKE => fixed(payload, "unchoke", 0).map(|_| Message::Unchoke)?,
            msg_id::INTERESTED => fixed(payload, "interested", 0).map(|_| Message::Interested)?,
            msg_id::NOT_INTERESTED => {
                fixed(payload, "not interested", 0).map(|_| Message::NotInterested)?
            }
            msg_id::HAVE => Message::Have(u32_at(fixed(payload, "have", 4)?, 0)),
            msg_id::BITFIELD => Message::Bitfield(payload),
            msg_id::REQUEST => Message::Request(block_request(payload, "request")?),
            msg_id::PIECE => {
                if payload.len() < 8 {
                    return Err(MessageError::TooShort {
                        name: "piece",
                        min: 8,
                        got: payload.len(),
                    });
                }
                Message::Piece {
                    index: u32_at(payload, 0),
                    begin: u32_at(payload, 4),
                    block: &payload[8..],
                }
            }
            msg_id::CANCEL => Message::Cancel(block_request(payload, "cancel")?),
            msg_id::PORT => {
                let p = fixed(payload, "port", 2)?;
                Message::Port(u16::from_be_bytes([p[0], p[1]]))
            }
            msg_id::SUGGEST => Message::Suggest(u32_at(fixed(payload, "suggest", 4)?, 0)),
            msg_id::HAVE_ALL => fixed(payload, "have all", 0).map(|_| Message::HaveAll)?,
            msg_id::HAVE_NONE => fixed(payload, "have none", 0).map(|_| Message::HaveNone)?,
            msg_id::REJECT => Message::Reject(block_request(payload, "reject")?),
            msg_id::ALLOWED_FAST => {
                Message::AllowedFast(u32_at(fixed(payload, "allowed fast", 4)?, 0))
            }
            msg_id::EXTENDED => match payload.split_first() {
                Some((&id, payload)) => Message::Extended { id, payload },
                None => {
                    return Err(MessageError::TooShort {
                        name: "extended",
                        min: 1,
                        got: 0,
                    })
                }
            },
            id => {
                return Err(MessageError::UnknownId {
                    id,
                    len: payload.len(),
                })
            }
        };
        Ok(msg)
    }

    /// The message id, or `None` for a keep-alive.
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => msg_id::CHOKE,
            Message::Unchoke => msg_id::UNCHOKE,
            Message::Interested => msg_id::INTERESTED,
            Message::NotInterested => msg_id::NOT_INTERESTED,
            Message::Have(_) => msg_id::HAVE,
            Message::Bitfield(_) => msg_id::BITFIELD,
            Message::Request(_) => msg_id::REQUEST,
            Message::Piece { .. } => msg_id::PIECE,
            Message::Cancel(_) => msg_id::CANCEL,
            Message::Port(_) => msg_id::PORT,
            Message::Suggest(_) => msg_id::SUGGEST,
            Message::HaveAll => msg_id::HAVE_ALL,
            Message::HaveNone => msg_id::HAVE_NONE,
            Message::Reject(_) => msg_id::REJECT,
            Message::AllowedFast(_) => msg_id::ALLOWED_FAST,
            Message::Extended { .. } => msg_id::EXTENDED,
        })
    }

    /// A short lower-case name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::KeepAlive => "keep-alive",
            Message::Choke => "choke",
            Message::Unchoke => "unchoke",
            Message::Interested => "interested",
            Message::NotInterested => "not interested",
            Message::Have(_) => "have",
            Message::Bitfield(_) => "bitfield",
            Message::Request(_) => "request",
            Message::Piece { .. } => "piece",
            Message::Cancel(_) => "cancel",
            Message::Port(_) => "port",
            Message::Suggest(_) => "suggest",
            Message::HaveAll => "have all",
            Message::HaveNone => "have none",
            Message::Reject(_) => "reject",
            Message::AllowedFast(_) => "allowed fast",
            Message::Extended { .. } => "extended",
        }
    }

    /// Bytes after the id byte.
    fn payload_len(&self) -> usize {
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 0,
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 4,
            Message::Port(_) => 2,
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 12,
            Message::Bitfield(b) => b.len(),
            Message::Piece { block, .. } => 8 + block.len(),
            Message::Extended { payload, .. } => 1 + payload.len(),
        }
    }

    /// Length of the whole encoded message, length prefix included.
    pub fn encoded_len(&self) -> usize {
        match self {
            Message::KeepAlive => 4,
            _ => 5 + self.payload_len(),
        }
    }

    /// Appends the encoded message (length prefix, id, payload) to `out`.
    ///
    /// # Panics
    ///
    /// If the message is longer than `u32::MAX` bytes, which no message
    /// built from data Swarmdrop holds can be.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let Some(id) = self.id() else {
            out.extend_from_slice(&[0; 4]);
            return;
        };
        out.reserve(self.encoded_len());
        out.extend_from_slice(&declared_len(self.payload_len() + 1).to_be_bytes());
        out.push(id);
        match *self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => {}
            Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) => {
                out.extend_from_slice(&i.to_be_bytes())
            }
            Message::Port(p) => out.extend_from_slice(&p.to_be_bytes()),
            Message::Request(r) | Message::Cancel(r) | Message::Reject(r) => {
                out.extend_from_slice(&r.index.to_be_bytes());
                out.extend_from_slice(&r.begin.to_be_bytes());
                out.extend_from_slice(&r.length.to_be_bytes());
            }
            Message::Bitfield(b) => out.extend_from_slice(b),
            Message::Piece {
                index,
                begin,
                block,
            } => {
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&begin.to_be_bytes());
                out.extend_from_slice(block);
            }
            Message::Extended { id, payload } => {
                out.push(id);
                out.extend_from_slice(payload);
            }
        }
    }

    /// The encoded message in a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }
}

/// The 13 bytes that precede a block in a piece message, so a block can be
/// sent as this header followed by the block itself, without copying it.
///
/// # Panics
///
/// If `block_len` is within 9 of `u32::MAX` (no block is).
pub fn encode_piece_header(index: u32, begin: u32, block_len: u32) -> [u8; PIECE_HEADER_LEN] {
    let len = block_len
        .checked_add(9)
        .expect("a block is far shorter than 4 GiB");
    let mut out = [0u8; PIECE_HEADER_LEN];
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out[4] = msg_id::PIECE;
    out[5..9].copy_from_slice(&index.to_be_bytes());
    out[9..13].copy_from_slice(&begin.to_be_bytes());
    out
}

/// The length prefix for a body of `body_len` bytes.
fn declared_len(body_len: usize) -> u32 {
    u32::try_from(body_len).expect("a message is far shorter than 4 GiB")
}

/// Checks that a payload has exactly `expected` bytes.
fn fixed<'a>(
    payload: &'a [u8],
    name: &'static str,
    expected: usize,
) -> Result<&'a [u8], MessageError> {
    if payload.len() == expected {
        Ok(payload)
    } else {
        Err(MessageError::BadLength {
            name,
            expected,
            got: payload.len(),
        })
    }
}

fn block_request(payload: &[u8], name: &'static str) -> Result<BlockRequest, MessageError> {
    let p = fixed(payload, name, 12)?;
    Ok(BlockRequest {
        index: u32_at(p, 0),
        begin: u32_at(p, 4),
        length: u32_at(p, 8),
    })
}

/// Reads a big-endian `u32` at `at`; callers have checked the length.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::test_support::{arb_message, OwnedMessage};
    use proptest::prelude::*;

    /// Decodes a whole encoded message (prefix included), checking the prefix.
    fn decode_frame(bytes: &[u8]) -> Result<Message<'_>, MessageError> {
        let declared = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(declared, bytes.len() - 4, "length prefix");
        Message::decode(&bytes[4..])
    }

    /// Each message's bytes as BEP 3 / BEP 6 / BEP 10 lay them out.
    fn known_vectors() -> Vec<(Message<'static>, Vec<u8>)> {
        let r = BlockRequest {
            index: 1,
            begin: 0x4000,
            length: 0x4000,
        };
        let rq = [0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0];
        let with = |head: &[u8], tail: &[u8]| [head, tail].concat();
        vec![
            (Message::KeepAlive, vec![0, 0, 0, 0]),
            (Message::Choke, vec![0, 0, 0, 1, 0]),
            (Message::Unchoke, vec![0, 0, 0, 1, 1]),
            (Message::Interested, vec![0, 0, 0, 1, 2]),
            (Message::NotInterested, vec![0, 0, 0, 1, 3]),
            (Message::Have(42), vec![0, 0, 0, 5, 4, 0, 0, 0, 42]),
            (
                Message::Bitfield(&[0xff, 0xe0]),
                vec![0, 0, 0, 3, 5, 0xff, 0xe0],
            ),
            (Message::Request(r), with(&[0, 0, 0, 0x0d, 6], &rq)),
            (
                Message::Piece {
                    index: 2,
                    begin: 0x8000,
                    block: b"abc",
                },
                vec![0, 0, 0, 12, 7, 0, 0, 0, 2, 0, 0, 0x80, 0, b'a', b'b', b'c'],
            ),
            (Message::Cancel(r), with(&[0, 0, 0, 0x0d, 8], &rq)),
            (Message::Port(6881), vec![0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (Message::Suggest(7), vec![0, 0, 0, 5, 0x0d, 0, 0, 0, 7]),
            (Message::HaveAll, vec![0, 0, 0, 1, 0x0e]),
            (Message::HaveNone, vec![0, 0, 0, 1, 0x0f]),
            (Message::Reject(r), with(&[0, 0, 0, 0x0d, 0x10], &rq)),
            (
                Message::AllowedFast(0x01020304),
                vec![0, 0, 0, 5, 0x11, 1, 2, 3, 4],
            ),
            (
                Message::Extended {
                    id: 0,
                    payload: b"de",
                },
                vec![0, 0, 0, 4, 20, 0, b'd', b'e'],
            ),
        ]
    }

    #[test]
    fn every_message_encodes_to_its_spec_bytes_and_back() {
        for (msg, bytes) in known_vectors() {
            assert_eq!(msg.to_vec(), bytes, "encoding {}", msg.name());
            assert_eq!(msg.encoded_len(), bytes.len(), "length of {}", msg.name());
            assert_eq!(decode_frame(&bytes), Ok(msg), "decoding {}", msg.name());
            assert_eq!(msg.id(), bytes.get(4).copied(), "id of {}", msg.name());
        }
    }

    #[test]
    fn request_matches_the_classic_capture() {
        // "00 00 00 0d 06": a 13-byte request for piece 0, block 0, 16 KiB.
        let bytes = [0, 0, 0, 0x0d, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0];
        assert_eq!(
            decode_frame(&bytes),
            Ok(Message::Request(BlockRequest {
                index: 0,
                begin: 0,
                length: 16384
            }))
        );
    }

    #[test]
    fn wrong_payload_lengths_name_the_message_and_both_lengths() {
        assert_eq!(
            Message::decode(&[4, 0, 0, 1]),
            Err(MessageError::BadLength {
                name: "have",
                expected: 4,
                got: 3
            })
        );
        assert_eq!(
            Message::decode(&[6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(MessageError::BadLength {
                name: "request",
                expected: 12,
                got: 13
            })
        );
        assert_eq!(
            Message::decode(&[0, 1]),
            Err(MessageError::BadLength {
                name: "choke",
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            Message::decode(&[0x0e, 0]),
            Err(MessageError::BadLength {
                name: "have all",
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            Message::decode(&[9, 1]),
            Err(MessageError::BadLength {
                name: "port",
                expected: 2,
                got: 1
            })
        );
    }

    #[test]
    fn short_piece_and_empty_extended_are_refused() {
        assert_eq!(
            Message::decode(&[7, 0, 0, 0, 1, 0, 0, 0]),
            Err(MessageError::TooShort {
                name: "piece",
                min: 8,
                got: 7
            })
        );
        assert_eq!(
            Message::decode(&[20]),
            Err(MessageError::TooShort {
                name: "extended",
                min: 1,
                got: 0
            })
        );
    }

    #[test]
    fn unknown_ids_are_reported_with_their_payload_length() {
        assert_eq!(
            Message::decode(&[21, 1, 2, 3]),
            Err(MessageError::UnknownId { id: 21, len: 3 })
        );
        assert_eq!(
            Message::decode(&[0x0a]),
            Err(MessageError::UnknownId { id: 10, len: 0 })
        );
    }

    #[test]
    fn empty_bitfield_and_empty_block_decode() {
        assert_eq!(Message::decode(&[5]), Ok(Message::Bitfield(&[])));
        assert_eq!(
            Message::decode(&[7, 0, 0, 0, 1, 0, 0, 0, 2]),
            Ok(Message::Piece {
                index: 1,
                begin: 2,
                block: &[]
            })
        );
    }

    #[test]
    fn piece_header_plus_block_equals_the_encoded_piece() {
        let block = vec![0x5a; 16384];
        let msg = Message::Piece {
            index: 9,
            begin: 32768,
            block: &block,
        };
        let mut split = encode_piece_header(9, 32768, block.len() as u32).to_vec();
        assert_eq!(split[..5], [0, 0, 0x40, 0x09, 7]);
        split.extend_from_slice(&block);
        assert_eq!(split, msg.to_vec());
    }

    #[test]
    fn decoded_blocks_borrow_from_the_input() {
        let bytes = Message::Piece {
            index: 0,
            begin: 0,
            block: &[1, 2, 3],
        }
        .to_vec();
        let Ok(Message::Piece { block, .. }) = Message::decode(&bytes[4..]) else {
            panic!("not a piece");
        };
        assert_eq!(block.as_ptr(), bytes[13..].as_ptr());
    }

    #[test]
    fn encode_into_appends() {
        let mut out = vec![0xAA];
        Message::Have(1).encode_into(&mut out);
        Message::KeepAlive.encode_into(&mut out);
        assert_eq!(out, [0xAA, 0, 0, 0, 5, 4, 0, 0, 0, 1, 0, 0, 0, 0]);
    }

    proptest! {
        #[test]
        fn messages_round_trip(m in arb_message()) {
            let msg = m.as_message();
            let bytes = msg.to_vec();
            prop_assert_eq!(bytes.len(), msg.encoded_len());
            let decoded = decode_frame(&bytes).unwrap();
            prop_assert_eq!(OwnedMessage::from_message(&decoded), m);
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(msg) = Message::decode(&body) {
                // Whatever decodes re-encodes to the same body.
                prop_assert_eq!(&msg.to_vec()[4..], &body[..]);
            }
        }
    }
}
