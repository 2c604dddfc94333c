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
    /// known); applies to lengths not yet checked.
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
