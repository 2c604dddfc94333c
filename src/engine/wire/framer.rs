//! The incremental stream framer: turns a byte stream cut anywhere into the
//! handshake followed by decoded [`Message`]s, with every declared length
//! checked before a byte of it is buffered.
//!
//! Data-channel message boundaries mean nothing (WebTorrent sends a piece as
//! a 13-byte header and then the block), so the framer keeps at most the
//! unfinished tail of the stream. A message lying whole inside the input is
//! decoded in place, borrowing from the input; so is a piece whose 13-byte
//! header was buffered and whose block then arrives in one chunk, which is
//! WebTorrent's pattern. Everything else is copied once into the framer's
//! buffer, whose capacity is reused from message to message.
//!
//! ```
//! use swarmdrop::engine::wire::framer::{Frame, Framer};
//! # fn handle(_: Frame<'_>) {}
//! let mut framer = Framer::default();
//! # let chunk: &[u8] = &[];
//! let mut frames = framer.feed(chunk);
//! while let Some(frame) = frames.next() {
//!     match frame {
//!         Ok(frame) => handle(frame),
//!         Err(e) if e.is_fatal() => break, // drop the peer
//!         Err(_) => continue,              // e.g. an unknown message id
//!     }
//! }
//! ```

use super::handshake::{Handshake, HandshakeError, HANDSHAKE_LEN};
use super::message::{msg_id, Message, MessageError, PIECE_HEADER_LEN};
use crate::engine::lengths::{BLOCK_SIZE, MAX_TOTAL_LENGTH, MIN_PIECE_LENGTH};
use thiserror::Error;

/// Largest block a piece message may carry whatever the configuration:
/// 128 KiB, the most WebTorrent lets a peer request at once.
pub const HARD_MAX_BLOCK: u32 = 128 * 1024;

/// Largest bitfield whatever the configuration: one bit per piece of the
/// largest torrent [`Lengths`](crate::engine::lengths::Lengths) accepts.
pub const HARD_MAX_BITFIELD: u32 = (MAX_TOTAL_LENGTH / MIN_PIECE_LENGTH as u64 / 8) as u32;

/// Largest extension message whatever the configuration (1 MiB).
pub const HARD_MAX_EXTENDED: u32 = 1024 * 1024;

/// Why the stream cannot be framed, or a frame decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FramerError {
    /// A message declares more bytes than its kind is allowed (fatal).
    #[error("message declares {declared} bytes, at most {max} allowed")]
    TooLong {
        /// The length prefix as received.
        declared: u32,
        /// The limit it broke.
        max: u32,
    },
    /// The first 68 bytes are not a BitTorrent handshake (fatal).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// A correctly framed message whose body is invalid or unknown; the
    /// stream is still in step and the framer goes on (not fatal).
    #[error(transparent)]
    Message(#[from] MessageError),
}

impl FramerError {
    /// Whether the stream is lost: the framer yields nothing more after a
    /// fatal error. A [`FramerError::Message`] is not fatal; the peer layer
    /// decides what it means.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, FramerError::Message(_))
    }
}

/// Per-kind caps on declared message lengths.
///
/// Fixed-size messages are capped at the size of the largest of them (a
/// request: 13 bytes). Message ids this codec does not know are bounded like
/// extension messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    max_block: u32,
    max_bitfield: u32,
    max_extended: u32,
}

impl Default for FrameLimits {
    /// 16 KiB blocks (what everyone requests), bitfields for 65,536 pieces,
    /// extension messages of 64 KiB (a 16 KiB ut_metadata piece and its
    /// dictionary fit many times over).
    fn default() -> Self {
        FrameLimits {
            max_block: BLOCK_SIZE,
            max_bitfield: 65_536 / 8,
            max_extended: 64 * 1024,
        }
    }
}

impl FrameLimits {
    /// Largest declared length of a fixed-size message (a request).
    const MAX_FIXED: u32 = 13;

    /// Sets the largest block a piece message may carry, clamped to
    /// [`HARD_MAX_BLOCK`].
    pub fn with_max_block(mut self, bytes: u32) -> Self {
        self.max_block = bytes.min(HARD_MAX_BLOCK);
        self
    }

    /// Sets the largest bitfield, clamped to [`HARD_MAX_BITFIELD`].
    pub fn with_max_bitfield(mut self, bytes: u32) -> Self {
        self.max_bitfield = bytes.min(HARD_MAX_BITFIELD);
        self
    }

    /// Sets the bitfield cap to exactly fit `num_pieces` pieces.
    pub fn with_piece_count(self, num_pieces: u32) -> Self {
        self.with_max_bitfield(num_pieces.div_ceil(8))
    }

    /// Sets the largest extension payload (and unknown-id payload), clamped
    /// to [`HARD_MAX_EXTENDED`].
    pub fn with_max_extended(mut self, bytes: u32) -> Self {
        self.max_extended = bytes.min(HARD_MAX_EXTENDED);
        self
    }

    /// The largest block a piece message may carry.
    pub fn max_block(&self) -> u32 {
        self.max_block
    }

    /// The largest bitfield payload.
    pub fn max_bitfield(&self) -> u32 {
        self.max_bitfield
    }

    /// The largest extension payload.
    pub fn max_extended(&self) -> u32 {
        self.max_extended
    }

    /// The largest declared length (id byte included) for messages of `id`.
    pub fn max_declared(&self, id: u8) -> u32 {
        match id {
            msg_id::PIECE => 9 + self.max_block,
            msg_id::BITFIELD => 1 + self.max_bitfield,
            msg_id::CHOKE..=msg_id::PORT | msg_id::SUGGEST..=msg_id::ALLOWED_FAST => {
                Self::MAX_FIXED
            }
            // Extended (the id and the extension id) and unknown ids.
            _ => 2 + self.max_extended,
        }
    }

    /// The largest declared length of any message.
    pub fn max_declared_any(&self) -> u32 {
        (9 + self.max_block)
            .max(1 + self.max_bitfield)
            .max(2 + self.max_extended)
    }
}

/// One unit of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The handshake: always the first frame, and only once.
    Handshake(Handshake),
    /// A message after the handshake.
    Message(Message<'a>),
}

/// Where the stream stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the 68-byte handshake.
    Handshake,
    /// Reading length-prefixed messages.
    Messages,
    /// A fatal error happened; `reported` once it has been handed out.
    Failed { error: FramerError, reported: bool },
}

/// How much of a frame sits at the start of some bytes.
enum Head {
    /// The whole frame is there: its length, prefix included.
    Complete(usize),
    /// More bytes are needed: at least this many in total (the whole frame
    /// once the length prefix is known, else the prefix or the id byte).
    Incomplete(usize),
}

/// Reassembles the peer stream. See the module documentation for use.
#[derive(Debug)]
pub struct Framer {
    limits: FrameLimits,
    state: State,
    /// Stream bytes not yet yielded are `buf[start..]`. Normally that is at
    /// most one unfinished frame (and `start` is 0); it holds more only when
    /// a [`Frames`] was dropped before being drained. Consumed bytes are
    /// dropped lazily, never shifted per message.
    buf: Vec<u8>,
    start: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(FrameLimits::default())
    }
}

impl Framer {
    /// A framer that expects the handshake first.
    pub fn new(limits: FrameLimits) -> Self {
        Framer {
            limits,
            state: State::Handshake,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// Changes the limits (e.g. the bitfield cap once the piece count is
    /// known); applies to every frame not yet yielded, including one that
    /// is partly buffered.
    pub fn set_limits(&mut self, limits: FrameLimits) {
        self.limits = limits;
    }

    /// Whether a fatal error has stopped the framer.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed { .. })
    }

    /// Whether the handshake has been received.
    pub fn handshake_received(&self) -> bool {
        matches!(self.state, State::Messages)
    }

    /// Stream bytes held, waiting for the rest of their frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the next chunk of the stream. Drain the returned [`Frames`] with
    /// [`Frames::next`]; whatever is left of `data` when it is dropped is
    /// kept for the next call.
    pub fn feed<'f, 'd>(&'f mut self, data: &'d [u8]) -> Frames<'f, 'd> {
        Frames { framer: self, data }
    }

    /// Stops the framer with a fatal error and frees its buffer.
    fn fail(&mut self, error: FramerError) -> FramerError {
        self.buf = Vec::new();
        self.start = 0;
        self.state = State::Failed {
            error: error.clone(),
            reported: true,
        };
        error
    }

    /// Measures the frame at the start of `bytes`, checking its declared
    /// length before anything of it is kept.
    fn head(&self, bytes: &[u8]) -> Result<Head, FramerError> {
        if self.state == State::Handshake {
            return Ok(if bytes.len() >= HANDSHAKE_LEN {
                Head::Complete(HANDSHAKE_LEN)
            } else {
                Head::Incomplete(HANDSHAKE_LEN)
            });
        }
        let Some(prefix) = bytes.first_chunk::<4>() else {
            return Ok(Head::Incomplete(4));
        };
        let declared = u32::from_be_bytes(*prefix);
        if declared == 0 {
            return Ok(Head::Complete(4));
        }
        let max = self.limits.max_declared_any();
        if declared > max {
            return Err(FramerError::TooLong { declared, max });
        }
        let Some(&id) = bytes.get(4) else {
            return Ok(Head::Incomplete(5));
        };
        let max = self.limits.max_declared(id);
        if declared > max {
            return Err(FramerError::TooLong { declared, max });
        }
        let total = 4 + declared as usize;
        Ok(if bytes.len() >= total {
            Head::Complete(total)
        } else {
            Head::Incomplete(total)
        })
    }

    /// Decodes the frame in `buf[at..at + n]`: the handshake (a bad one is
    /// fatal) or a message (a bad one is not).
    fn decode_buffered(&mut self, at: usize, n: usize) -> Result<Frame<'_>, FramerError> {
        if self.state == State::Handshake {
            return match Handshake::decode(&self.buf[at..at + n]) {
                Ok(h) => {
                    self.state = State::Messages;
                    Ok(Frame::Handshake(h))
                }
                Err(e) => Err(self.fail(e.into())),
            };
        }
        Ok(Frame::Message(Message::decode(&self.buf[at + 4..at + n])?))
    }

    /// [`Framer::decode_buffered`] for a frame lying whole in the input.
    fn decode_input<'a>(&mut self, bytes: &'a [u8]) -> Result<Frame<'a>, FramerError> {
        if self.state == State::Handshake {
            return match Handshake::decode(bytes) {
                Ok(h) => {
                    self.state = State::Messages;
                    Ok(Frame::Handshake(h))
                }
                Err(e) => Err(self.fail(e.into())),
            };
        }
        Ok(Frame::Message(Message::decode(&bytes[4..])?))
    }

    /// The zero-copy path for WebTorrent's split pieces: when the buffer
    /// holds exactly a piece message's 13-byte header and `data` holds at
    /// least the rest of the frame (`need` bytes in all), the header's index,
    /// begin and the block length.
    fn buffered_piece_header(&self, need: usize, data: &[u8]) -> Option<(u32, u32, usize)> {
        let pending = &self.buf[self.start..];
        if self.state != State::Messages
            || pending.len() != PIECE_HEADER_LEN
            || pending[4] != msg_id::PIECE
        {
            return None;
        }
        let block_len = need - PIECE_HEADER_LEN;
        if data.len() < block_len {
            return None;
        }
        let index = u32::from_be_bytes([pending[5], pending[6], pending[7], pending[8]]);
        let begin = u32::from_be_bytes([pending[9], pending[10], pending[11], pending[12]]);
        Some((index, begin, block_len))
    }
}

/// The frames of one fed chunk: a lending iterator (each frame may borrow
/// from the framer's buffer or from the chunk).
#[derive(Debug)]
pub struct Frames<'f, 'd> {
    framer: &'f mut Framer,
    data: &'d [u8],
}

impl Frames<'_, '_> {
    /// The next frame, or `None` once the chunk is used up (its tail then
    /// waits in the framer for the next chunk). After a fatal error, yields
    /// that error once and then nothing, for this and every later chunk.
    #[allow(clippy::should_implement_trait)] // frames borrow from `self`
    pub fn next(&mut self) -> Option<Result<Frame<'_>, FramerError>> {
        let fr = &mut *self.framer;
        if let State::Failed { error, reported } = &mut fr.state {
            self.data = &[];
            if *reported {
                return None;
            }
            *reported = true;
            return Some(Err(error.clone()));
        }
        if fr.start == fr.buf.len() && fr.start > 0 {
            // The previous frame came from the buffer: forget it (no copy).
            fr.buf.clear();
            fr.start = 0;
        }

        // First finish what the buffer holds.
        while fr.start < fr.buf.len() {
            let head = match fr.head(&fr.buf[fr.start..]) {
                Ok(head) => head,
                Err(e) => return Some(Err(fr.fail(e))),
            };
            match head {
                Head::Complete(n) => {
                    let at = fr.start;
                    fr.start += n;
                    return Some(fr.decode_buffered(at, n));
                }
                Head::Incomplete(need) => {
                    let data: &[u8] = self.data;
                    if let Some((index, begin, block_len)) = fr.buffered_piece_header(need, data) {
                        fr.buf.clear();
                        fr.start = 0;
                        let (block, rest) = data.split_at(block_len);
                        self.data = rest;
                        return Some(Ok(Frame::Message(Message::Piece {
                            index,
                            begin,
                            block,
                        })));
                    }
                    if data.is_empty() {
                        return None;
                    }
                    if fr.start > 0 {
                        // Only reached after a `Frames` was dropped early.
                        fr.buf.drain(..fr.start);
                        fr.start = 0;
                    }
                    let have = fr.buf.len();
                    let take = (need - have).min(data.len());
                    fr.buf.reserve(need - have);
                    fr.buf.extend_from_slice(&data[..take]);
                    self.data = &data[take..];
                }
            }
        }

        // The buffer is empty: decode straight from the chunk.
        fr.buf.clear();
        fr.start = 0;
        let data: &[u8] = self.data;
        if data.is_empty() {
            return None;
        }
        match fr.head(data) {
            Err(e) => {
                self.data = &[];
                Some(Err(fr.fail(e)))
            }
            Ok(Head::Complete(n)) => {
                let (frame, rest) = data.split_at(n);
                self.data = rest;
                Some(fr.decode_input(frame))
            }
            Ok(Head::Incomplete(need)) => {
                fr.buf.reserve(need);
                fr.buf.extend_from_slice(data);
                self.data = &[];
                None
            }
        }
    }
}

impl Drop for Frames<'_, '_> {
    /// Keeps the undrained rest of the chunk for the next call.
    fn drop(&mut self) {
        if !self.data.is_empty() && !self.framer.is_failed() {
            self.framer.buf.extend_from_slice(self.data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ids::{InfoHash, PeerId};
    use crate::engine::wire::message::{encode_piece_header, BlockRequest};
    use crate::engine::wire::test_support::{arb_message, Event, OwnedMessage};
    use proptest::prelude::*;

    /// A session as a WebTorrent peer sends it, written out byte by byte
    /// (independently of the encoder): handshake, bitfield, have, unchoke,
    /// interested, request, extended handshake, keep-alive, a piece with a
    /// 2 KiB block, allowed fast, a ut_metadata request.
    fn captured_stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.push(19);
        s.extend_from_slice(b"BitTorrent protocol");
        s.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
        s.extend_from_slice(&[0x11; 20]);
        s.extend_from_slice(b"-WW0208-a1b2c3d4e5f6");
        s.extend_from_slice(&[0, 0, 0, 3, 5, 0xff, 0xc0]); // bitfield, 10 pieces
        s.extend_from_slice(&[0, 0, 0, 5, 4, 0, 0, 0, 9]); // have 9
        s.extend_from_slice(&[0, 0, 0, 1, 1]); // unchoke
        s.extend_from_slice(&[0, 0, 0, 1, 2]); // interested
        s.extend_from_slice(&[0, 0, 0, 13, 6, 0, 0, 0, 3, 0, 0, 0x40, 0, 0, 0, 0x40, 0]);
        let ext = b"d1:md11:ut_metadatai1e11:lt_donthavei2ee13:metadata_sizei2048ee";
        s.extend_from_slice(&(ext.len() as u32 + 2).to_be_bytes());
        s.extend_from_slice(&[20, 0]);
        s.extend_from_slice(ext);
        s.extend_from_slice(&[0, 0, 0, 0]); // keep-alive
        s.extend_from_slice(&[0, 0, 0x08, 0x09, 7, 0, 0, 0, 3, 0, 0, 0x40, 0]);
        s.extend((0..2048u32).map(|i| (i * 7 % 251) as u8));
        s.extend_from_slice(&[0, 0, 0, 5, 0x11, 0, 0, 0, 4]); // allowed fast 4
        let md = b"d8:msg_typei0e5:piecei0ee";
        s.extend_from_slice(&(md.len() as u32 + 2).to_be_bytes());
        s.extend_from_slice(&[20, 3]);
        s.extend_from_slice(md);
        s
    }

    fn expected_events() -> Vec<Event> {
        let mut reserved = [0u8; 8];
        reserved[5] = 0x10;
        reserved[7] = 0x05;
        vec![
            Event::Handshake(Handshake {
                reserved,
                info_hash: InfoHash([0x11; 20]),
                peer_id: PeerId(*b"-WW0208-a1b2c3d4e5f6"),
            }),
            Event::Message(OwnedMessage::Bitfield(vec![0xff, 0xc0])),
            Event::Message(OwnedMessage::Have(9)),
            Event::Message(OwnedMessage::Unchoke),
            Event::Message(OwnedMessage::Interested),
            Event::Message(OwnedMessage::Request(BlockRequest {
                index: 3,
                begin: 16384,
                length: 16384,
            })),
            Event::Message(OwnedMessage::Extended {
                id: 0,
                payload: b"d1:md11:ut_metadatai1e11:lt_donthavei2ee13:metadata_sizei2048ee"
                    .to_vec(),
            }),
            Event::Message(OwnedMessage::KeepAlive),
            Event::Message(OwnedMessage::Piece {
                index: 3,
                begin: 16384,
                block: (0..2048u32).map(|i| (i * 7 % 251) as u8).collect(),
            }),
            Event::Message(OwnedMessage::AllowedFast(4)),
            Event::Message(OwnedMessage::Extended {
                id: 3,
                payload: b"d8:msg_typei0e5:piecei0ee".to_vec(),
            }),
        ]
    }

    /// Feeds the chunks in order and collects everything the framer yields.
    fn run<'c>(framer: &mut Framer, chunks: impl IntoIterator<Item = &'c [u8]>) -> Vec<Event> {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut frames = framer.feed(chunk);
            while let Some(r) = frames.next() {
                out.push(Event::from_result(r));
            }
        }
        out
    }

    fn run_default<'c>(chunks: impl IntoIterator<Item = &'c [u8]>) -> Vec<Event> {
        run(&mut Framer::default(), chunks)
    }

    fn after_handshake() -> Framer {
        let mut f = Framer::default();
        let hs = Handshake::new(InfoHash([1; 20]), PeerId([2; 20])).encode();
        assert_eq!(run(&mut f, [&hs[..]]).len(), 1);
        f
    }

    #[test]
    fn whole_stream_in_one_chunk_decodes_every_frame() {
        let stream = captured_stream();
        assert_eq!(run_default([&stream[..]]), expected_events());
    }

    #[test]
    fn stream_split_at_every_byte_position_decodes_identically() {
        let stream = captured_stream();
        let expected = expected_events();
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(run_default([a, b]), expected, "cut at byte {cut}");
        }
    }

    #[test]
    fn stream_fed_one_byte_at_a_time_decodes_identically() {
        let stream = captured_stream();
        let mut framer = Framer::default();
        let events = run(&mut framer, stream.chunks(1));
        assert_eq!(events, expected_events());
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn whole_messages_in_the_input_are_not_copied() {
        let block = [7u8; 100];
        let mut chunk = Message::Have(1).to_vec();
        chunk.extend_from_slice(&encode_piece_header(1, 0, 100));
        chunk.extend_from_slice(&block);
        let mut framer = after_handshake();
        let mut frames = framer.feed(&chunk);
        assert!(matches!(
            frames.next(),
            Some(Ok(Frame::Message(Message::Have(1))))
        ));
        let Some(Ok(Frame::Message(Message::Piece { block: got, .. }))) = frames.next() else {
            panic!("expected a piece");
        };
        assert_eq!(got.as_ptr(), chunk[22..].as_ptr());
        assert!(frames.next().is_none());
        drop(frames);
        assert_eq!(framer.buf.capacity(), 0, "nothing was buffered");
    }

    #[test]
    fn webtorrent_split_piece_borrows_the_block_from_the_second_chunk() {
        // WebTorrent sends the 13-byte header and the block as two messages.
        let block = vec![0x42u8; 16384];
        let header = encode_piece_header(5, 16384, 16384);
        let mut framer = after_handshake();
        assert!(framer.feed(&header).next().is_none());
        assert_eq!(framer.buffered(), 13);
        let mut frames = framer.feed(&block);
        let Some(Ok(Frame::Message(Message::Piece {
            index: 5,
            begin: 16384,
            block: got,
        }))) = frames.next()
        else {
            panic!("expected the piece");
        };
        assert_eq!(got.as_ptr(), block.as_ptr());
        assert_eq!(got.len(), 16384);
        assert!(frames.next().is_none());
        drop(frames);
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn a_block_split_across_chunks_is_reassembled() {
        let block: Vec<u8> = (0..16384u32).map(|i| i as u8).collect();
        let mut header = encode_piece_header(1, 0, 16384).to_vec();
        header.extend_from_slice(&block[..100]);
        let mut framer = after_handshake();
        let events = run(
            &mut framer,
            [&header[..], &block[100..9000], &block[9000..]],
        );
        assert_eq!(
            events,
            vec![Event::Message(OwnedMessage::Piece {
                index: 1,
                begin: 0,
                block
            })]
        );
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn huge_declared_length_is_refused_before_buffering() {
        let mut framer = after_handshake();
        let events = run(&mut framer, [&[0xff, 0xff, 0xff, 0xff][..]]);
        let max = FrameLimits::default().max_declared_any();
        assert_eq!(
            events,
            vec![Event::Error(FramerError::TooLong {
                declared: u32::MAX,
                max
            })]
        );
        assert!(framer.is_failed());
        assert_eq!(framer.buf.capacity(), 0);
    }

    #[test]
    fn negative_length_is_refused() {
        // 0x80000000 is -2^31 to a reader that uses signed integers.
        let mut framer = after_handshake();
        let events = run(&mut framer, [&[0x80, 0, 0, 0, 7][..]]);
        assert!(matches!(
            events[..],
            [Event::Error(FramerError::TooLong {
                declared: 0x8000_0000,
                ..
            })]
        ));
    }

    #[test]
    fn oversized_piece_is_refused_once_its_id_arrives_without_its_body() {
        let mut framer = after_handshake();
        // 16 KiB + 1 block: 16394 declared bytes; the cap is 9 + 16384.
        let header = encode_piece_header(0, 0, 16385);
        assert!(run(&mut framer, [&header[..4]]).is_empty());
        assert_eq!(
            run(&mut framer, [&header[4..5]]),
            vec![Event::Error(FramerError::TooLong {
                declared: 16394,
                max: 16393
            })]
        );
        assert_eq!(framer.buf.capacity(), 0);
    }

    #[test]
    fn block_cap_can_be_raised_to_128_kib_but_no_further() {
        let limits = FrameLimits::default().with_max_block(1 << 20);
        assert_eq!(limits.max_block(), HARD_MAX_BLOCK);
        let block = vec![1u8; 128 * 1024];
        let msg = Message::Piece {
            index: 0,
            begin: 0,
            block: &block,
        }
        .to_vec();
        let mut framer = after_handshake();
        framer.set_limits(limits);
        let events = run(&mut framer, msg.chunks(5000));
        assert_eq!(events.len(), 1);
        assert!(matches!(
            events[0],
            Event::Message(OwnedMessage::Piece { .. })
        ));
        let too_big = encode_piece_header(0, 0, 128 * 1024 + 1);
        assert!(matches!(
            run(&mut framer, [&too_big[..]])[..],
            [Event::Error(FramerError::TooLong { max: 131081, .. })]
        ));
    }

    #[test]
    fn bitfield_cap_follows_the_piece_count() {
        let bits = [0xffu8; 9];
        let msg = Message::Bitfield(&bits).to_vec();
        let mut framer = after_handshake();
        framer.set_limits(FrameLimits::default().with_piece_count(65));
        assert_eq!(run(&mut framer, [&msg[..]]).len(), 1);
        framer.set_limits(FrameLimits::default().with_piece_count(64));
        assert_eq!(
            run(&mut framer, [&msg[..]]),
            vec![Event::Error(FramerError::TooLong {
                declared: 10,
                max: 9
            })]
        );
    }

    #[test]
    fn fixed_size_messages_cannot_declare_large_bodies() {
        let mut framer = after_handshake();
        // A "have" declaring 1000 bytes is refused before the body comes.
        assert_eq!(
            run(&mut framer, [&[0, 0, 0x03, 0xe8, 4][..]]),
            vec![Event::Error(FramerError::TooLong {
                declared: 1000,
                max: 13
            })]
        );
    }

    #[test]
    fn after_a_fatal_error_the_framer_stays_failed() {
        let mut framer = after_handshake();
        let mut bad = vec![0xff, 0xff, 0xff, 0xff];
        bad.extend_from_slice(&Message::Have(1).to_vec());
        let events = run(&mut framer, [&bad[..]]);
        assert_eq!(events.len(), 1, "the error once, nothing after it");
        assert!(framer.is_failed());
        assert!(run(&mut framer, [&Message::Have(2).to_vec()[..]]).is_empty());
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn bad_handshake_is_fatal() {
        let mut bytes = captured_stream();
        bytes[3] = b'X';
        let mut framer = Framer::default();
        let events = run(&mut framer, [&bytes[..]]);
        assert_eq!(
            events,
            vec![Event::Error(FramerError::Handshake(
                HandshakeError::BadProtocol { pstrlen: 19 }
            ))]
        );
        assert!(framer.is_failed());
        assert!(!framer.handshake_received());
    }

    #[test]
    fn undecodable_messages_are_reported_and_the_stream_goes_on() {
        let mut chunk = vec![0, 0, 0, 3, 21, 1, 2]; // unknown id 21
        chunk.extend_from_slice(&[0, 0, 0, 2, 4, 0]); // have with 1 byte
        chunk.extend_from_slice(&Message::Unchoke.to_vec());
        let mut framer = after_handshake();
        let events = run(&mut framer, [&chunk[..]]);
        assert_eq!(
            events,
            vec![
                Event::Error(FramerError::Message(MessageError::UnknownId {
                    id: 21,
                    len: 2
                })),
                Event::Error(FramerError::Message(MessageError::BadLength {
                    name: "have",
                    expected: 4,
                    got: 1
                })),
                Event::Message(OwnedMessage::Unchoke),
            ]
        );
        assert!(!framer.is_failed());
        assert!(!FramerError::Message(MessageError::UnknownId { id: 1, len: 0 }).is_fatal());
        assert!(FramerError::TooLong {
            declared: 1,
            max: 0
        }
        .is_fatal());
    }

    #[test]
    fn a_chunk_dropped_before_it_is_drained_keeps_its_rest() {
        let stream = captured_stream();
        let mut framer = Framer::default();
        let mut events = Vec::new();
        {
            let mut frames = framer.feed(&stream[..300]);
            for _ in 0..2 {
                events.push(Event::from_result(frames.next().unwrap()));
            }
        }
        events.extend(run(&mut framer, [&stream[300..]]));
        assert_eq!(events, expected_events());
    }

    #[test]
    fn the_handshake_is_only_read_once() {
        let hs = Handshake::new(InfoHash([1; 20]), PeerId([2; 20])).encode();
        let mut framer = Framer::default();
        let mut twice = hs.to_vec();
        twice.extend_from_slice(&hs);
        let events = run(&mut framer, [&twice[..]]);
        // The second copy is read as a message declaring 0x13426974 bytes.
        assert_eq!(events.len(), 2);
        assert!(framer.is_failed());
        assert!(matches!(
            events[1],
            Event::Error(FramerError::TooLong {
                declared: 0x1342_6974,
                ..
            })
        ));
    }

    fn chunk_at(stream: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        let mut rest = stream;
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at(n.min(rest.len()));
            chunks.push(a.to_vec());
            rest = b;
        }
        chunks
    }

    proptest! {
        #[test]
        fn random_chunkings_decode_identically(sizes in proptest::collection::vec(1usize..3000, 1..20)) {
            let stream = captured_stream();
            let chunks = chunk_at(&stream, &sizes);
            prop_assert_eq!(run_default(chunks.iter().map(Vec::as_slice)), expected_events());
        }

        #[test]
        fn random_messages_survive_random_chunkings(
            msgs in proptest::collection::vec(arb_message(), 0..20),
            sizes in proptest::collection::vec(1usize..500, 1..10),
        ) {
            let hs = Handshake::swarmdrop(InfoHash([3; 20]), PeerId([4; 20]));
            let mut stream = hs.encode().to_vec();
            for m in &msgs {
                m.as_message().encode_into(&mut stream);
            }
            let mut expected = vec![Event::Handshake(hs)];
            expected.extend(msgs.into_iter().map(Event::Message));
            let chunks = chunk_at(&stream, &sizes);
            prop_assert_eq!(run_default(chunks.iter().map(Vec::as_slice)), expected);
        }

        #[test]
        fn garbage_never_panics_and_buffers_little(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            sizes in proptest::collection::vec(1usize..64, 1..8),
        ) {
            let mut framer = after_handshake();
            let cap = FrameLimits::default().max_declared_any() as usize + 4;
            for chunk in chunk_at(&bytes, &sizes) {
                let mut frames = framer.feed(&chunk);
                while frames.next().is_some() {}
                drop(frames);
                prop_assert!(framer.buffered() <= cap);
            }
        }
    }
}
