//! One peer connection's protocol state: handshake, choke and interest, what
//! the peer has, the request pipeline, the requests it made of us, send
//! backpressure, keep-alive and timeouts.
//!
//! A [`Peer`] knows nothing of other peers, of the picker or of storage. The
//! session feeds it decoded frames ([`Peer::on_handshake`],
//! [`Peer::on_message`]); the peer checks them against the protocol and its
//! own state, updates that state, queues any protocol reply in its outbox,
//! and hands back a [`PeerEvent`] for the session to route. Misbehaviour is
//! an `Err(DropReason)`: the session closes the connection and carries on.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use crate::engine::api::ConnId;
use crate::engine::bitfield::Bitfield;
use crate::engine::event::DropReason;
use crate::engine::ids::{InfoHash, PeerId};
use crate::engine::lengths::{BlockInfo, Lengths, PieceIndex, BLOCK_SIZE};
use crate::engine::limiter::RateEstimator;
use crate::engine::picker::PeerKey;
use crate::engine::time::Instant;
use crate::engine::timer::{timer_enum, TimerTable};
use crate::engine::wire::extension::{decode_donthave, encode_donthave, EXTENDED_HANDSHAKE_ID};
use crate::engine::wire::{BlockRequest, ExtendedHandshake, Framer, Handshake, Message};

/// We send a keep-alive after this long without sending anything (peers
/// commonly drop a connection silent for two minutes).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(90);
/// A peer silent for this long is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(180);
/// A peer must send its handshake this soon after the channel opens.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Fewest requests kept outstanding towards an unchoking peer.
pub const MIN_PIPELINE: usize = 4;
/// Most requests kept outstanding towards one peer.
pub const MAX_PIPELINE: usize = 256;
/// The pipeline holds about this much time of the measured download rate.
pub const PIPELINE_TIME: Duration = Duration::from_secs(1);
/// Requests go out in batches of at least the pipeline target over this
/// (see [`requests_due`]).
pub const REQUEST_BATCH_DIVISOR: usize = 4;
/// Most requests we queue from one peer; more is misbehaviour. Announced to
/// peers as `reqq`.
pub const MAX_QUEUED_REQUESTS: usize = 256;
/// Largest block we serve: what every client requests (larger requests are
/// invalid, as WebTorrent also treats anything over 128 KiB).
pub const MAX_SERVED_BLOCK: u32 = BLOCK_SIZE;
/// Requests may still arrive this long after we choked a peer (they crossed
/// our choke on the wire); later ones are misbehaviour without Fast.
pub const CHOKE_GRACE: Duration = Duration::from_secs(30);
/// Pieces we let a peer with nothing request while choked (BEP 6).
pub const ALLOWED_FAST_COUNT: usize = 4;
/// Most allowed-fast pieces we remember from one peer.
const MAX_ALLOWED_FAST_IN: usize = 32;
/// Most `have` messages kept from a peer before the metadata is known.
const MAX_EARLY_HAVES: usize = 65_536;
/// Largest data a single [`Output::PeerSend`](crate::engine::api::Output)
/// carries: one data channel message where the peer takes it (Chromium's
/// `a=max-message-size` is 256 KiB; the glue cuts a chunk to the peer's
/// limit). Fewer, larger messages cost both browsers less.
pub const MAX_SEND_CHUNK: usize = 256 * 1024;

/// How many requests to send to keep `target` outstanding when
/// `outstanding` are: none until at least a batch (the target over
/// [`REQUEST_BATCH_DIVISOR`], at least one) is missing, then all that is.
/// The requests of a batch leave in one data channel message, so a fast
/// peer gets one message of requests per several of blocks rather than one
/// per message of blocks received (every data channel message costs both
/// browsers a fixed overhead); the pipeline stays at least three quarters
/// full.
pub fn requests_due(outstanding: usize, target: usize) -> usize {
    let missing = target.saturating_sub(outstanding);
    let batch = (target / REQUEST_BATCH_DIVISOR).max(1);
    if missing >= batch {
        missing
    } else {
        0
    }
}

timer_enum! {
    /// A peer's timers.
    pub enum PeerTimer {
        /// Send a keep-alive.
        KeepAlive,
        /// Drop the peer: no handshake yet, or silent for too long.
        Idle,
    }
}

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Offer/answer exchange in progress; the data channel is not open.
    Signalling,
    /// The channel is open and our handshake sent; theirs has not arrived.
    AwaitingHandshake,
    /// Both handshakes done: messages flow.
    Active,
}

/// What the remote side said about itself in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Its peer id.
    pub peer_id: PeerId,
    /// It speaks the Fast extension (and so do we).
    pub fast: bool,
    /// It speaks the extension protocol (and so do we).
    pub extended: bool,
}

/// What the peer has, as far as we know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerHas {
    /// Nothing said yet (a bitfield may still come).
    Unknown,
    /// Before the metadata is known: the raw bitfield and the haves seen,
    /// checked once the piece count is known.
    Early {
        /// The bitfield payload, or `None` for have-none / no bitfield.
        bitfield: Option<Vec<u8>>,
        /// Have-all was received.
        all: bool,
        /// Have messages received.
        haves: Vec<u32>,
    },
    /// A set of pieces.
    Some(Bitfield),
    /// Every piece (have-all).
    All,
}

/// What a message meant, for the session to route.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerEvent<'a> {
    /// Nothing for the session to do.
    Nothing,
    /// The peer sent its bitfield, have-all or have-none (with the metadata
    /// known): tell the picker [`Peer::has`].
    HasReplaced,
    /// The peer has a new piece.
    Have(PieceIndex),
    /// The peer no longer has a piece (`lt_donthave`).
    DontHave(PieceIndex),
    /// The peer choked us. Without Fast every outstanding request is void.
    Choked,
    /// The peer unchoked us: fill the pipeline.
    Unchoked,
    /// The peer became interested or not.
    InterestChanged,
    /// A valid request was queued (serve it when possible).
    Request,
    /// A block arrived (the session checks it was requested).
    Block {
        /// Where it belongs.
        block: BlockInfo,
        /// The bytes.
        data: &'a [u8],
    },
    /// The peer will not serve this request (BEP 6).
    Rejected(BlockInfo),
    /// The peer lets us request this piece while it chokes us.
    AllowedFast,
    /// The extension handshake arrived: [`Peer::extensions`] is set.
    Extensions,
    /// A `ut_metadata` message (the payload after the extension id).
    Metadata(&'a [u8]),
}

/// One connection.
#[derive(Debug)]
pub struct Peer {
    /// The connection.
    pub conn: ConnId,
    /// The picker's name for this peer.
    pub key: PeerKey,
    /// The stream framer (taken out by the session while it feeds it).
    pub framer: Framer,
    /// Where the connection stands.
    pub stage: Stage,
    /// Set after the handshake.
    pub remote: Option<Remote>,
    /// Set after the extension handshake (later ones update it).
    pub extensions: Option<ExtendedHandshake>,
    /// We choke the peer.
    pub am_choking: bool,
    /// We want pieces the peer has.
    pub am_interested: bool,
    /// The peer chokes us.
    pub peer_choking: bool,
    /// The peer wants pieces we have.
    pub peer_interested: bool,
    /// What the peer has.
    pub has: PeerHas,
    /// Requests the peer made of us, waiting to be served, oldest first.
    pub serve_queue: VecDeque<BlockInfo>,
    /// Requests taken from the queue whose blocks storage is loading; a
    /// block that comes back is sent only if it is still here.
    pub loading: Vec<BlockInfo>,
    /// Pieces the peer lets us request while it chokes us.
    pub allowed_fast_in: Vec<PieceIndex>,
    /// Pieces we let the peer request while we choke it.
    pub allowed_fast_out: Vec<PieceIndex>,
    /// Payload received from the peer.
    pub down: RateEstimator,
    /// Payload sent to the peer.
    pub up: RateEstimator,
    /// A request timed out and no block arrived since: one request at a time.
    pub snubbed: bool,
    /// While it unchokes us: when it did, or when its last block came.
    last_block_or_unchoke: Option<Instant>,
    /// When we last choked the peer, for [`CHOKE_GRACE`].
    choked_at: Option<Instant>,
    /// Bytes waiting to be handed to the glue.
    outbox: Vec<u8>,
    /// Bytes handed to the glue that may still sit in the channel's buffer.
    in_flight: usize,
    /// We asked the glue for a [`PeerWritable`](crate::engine::api::Input).
    watching: bool,
    /// Pieces we announced and then lost (read back wrong): a request for
    /// one that crossed our retraction is refused, not misbehaviour.
    retracted: BTreeSet<u32>,
    timers: TimerTable<PeerTimer>,
}

impl Peer {
    /// A connection being signalled.
    pub fn new(conn: ConnId, key: PeerKey, now: Instant) -> Self {
        let mut timers = TimerTable::default();
        // Signalling must finish, too: the tracker's offer lifetime is ~50 s.
        timers.set(PeerTimer::Idle, now + IDLE_TIMEOUT);
        Peer {
            conn,
            key,
            framer: Framer::default(),
            stage: Stage::Signalling,
            remote: None,
            extensions: None,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            has: PeerHas::Unknown,
            serve_queue: VecDeque::new(),
            loading: Vec::new(),
            allowed_fast_in: Vec::new(),
            allowed_fast_out: Vec::new(),
            down: RateEstimator::default(),
            up: RateEstimator::default(),
            snubbed: false,
            last_block_or_unchoke: None,
            choked_at: None,
            outbox: Vec::new(),
            in_flight: 0,
            watching: false,
            retracted: BTreeSet::new(),
            timers,
        }
    }

    // ----- getters -----

    /// The remote peer id, once the handshake arrived.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.remote.map(|r| r.peer_id)
    }

    /// Whether the handshake is done.
    pub fn is_active(&self) -> bool {
        self.stage == Stage::Active
    }

    /// Whether both sides negotiated the Fast extension.
    pub fn fast(&self) -> bool {
        self.remote.is_some_and(|r| r.fast)
    }

    /// Whether the peer has every piece (have-all, or a full bitfield).
    pub fn is_seed(&self) -> bool {
        match &self.has {
            PeerHas::All => true,
            PeerHas::Some(b) => b.is_full(),
            PeerHas::Early { all, .. } => *all,
            PeerHas::Unknown => false,
        }
    }

    /// Whether the peer has no piece at all (as far as we know).
    pub fn has_nothing(&self) -> bool {
        match &self.has {
            PeerHas::Unknown => true,
            PeerHas::Some(b) => b.none(),
            PeerHas::All | PeerHas::Early { .. } => false,
        }
    }

    /// Whether the peer has `piece`.
    pub fn has_piece(&self, piece: PieceIndex) -> bool {
        match &self.has {
            PeerHas::All => true,
            PeerHas::Some(b) => b.get(piece.get()),
            _ => false,
        }
    }

    /// How many requests to keep outstanding: about [`PIPELINE_TIME`] of the
    /// measured rate in 16 KiB blocks, clamped to
    /// [`MIN_PIPELINE`]`..=`[`MAX_PIPELINE`] and to the peer's `reqq`; one
    /// while snubbed.
    pub fn pipeline_target(&mut self, now: Instant) -> usize {
        if self.snubbed {
            return 1;
        }
        let bytes = self.down.rate(now) as f64 * PIPELINE_TIME.as_secs_f64();
        let blocks = (bytes / BLOCK_SIZE as f64).ceil() as usize;
        let reqq = self
            .extensions
            .as_ref()
            .and_then(|e| e.reqq)
            .map_or(MAX_PIPELINE, |q| (q as usize).max(1));
        blocks.clamp(MIN_PIPELINE, MAX_PIPELINE).min(reqq)
    }

    /// How many requests to send now to `target` outstanding (see [`requests_due`]).
    pub fn requests_due(&mut self, now: Instant, outstanding: usize) -> usize {
        requests_due(outstanding, self.pipeline_target(now))
    }

    /// For the choker's snub test: while the peer unchokes us and we want
    /// its pieces, the later of its unchoke and its last block.
    pub fn awaiting_block_since(&self) -> Option<Instant> {
        if self.peer_choking || !self.am_interested {
            return None;
        }
        self.last_block_or_unchoke
    }

    /// Bytes handed out or waiting to be, towards the send budget.
    pub fn queued_bytes(&self) -> usize {
        self.in_flight + self.outbox.len()
    }

    /// The earliest timer deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    // ----- lifecycle -----

    /// The data channel opened: our handshake goes out.
    pub fn on_opened(&mut self, now: Instant, info_hash: InfoHash, our_id: PeerId) {
        self.stage = Stage::AwaitingHandshake;
        self.outbox
            .extend_from_slice(&Handshake::swarmdrop(info_hash, our_id).encode());
        self.timers.set(PeerTimer::Idle, now + HANDSHAKE_TIMEOUT);
        self.timers
            .set(PeerTimer::KeepAlive, now + KEEPALIVE_INTERVAL);
    }

    /// The peer's handshake arrived. Checks it names our bundle and is not
    /// ourselves; the session then checks duplicates and bans and calls
    /// [`Peer::start`].
    pub fn on_handshake(
        &mut self,
        now: Instant,
        handshake: &Handshake,
        info_hash: InfoHash,
        our_id: PeerId,
    ) -> Result<(), DropReason> {
        if handshake.info_hash != info_hash {
            return Err(DropReason::WrongInfoHash);
        }
        if handshake.peer_id == our_id {
            return Err(DropReason::SelfConnection);
        }
        self.remote = Some(Remote {
            peer_id: handshake.peer_id,
            fast: handshake.supports_fast(),
            extended: handshake.supports_extension_protocol(),
        });
        self.stage = Stage::Active;
        self.timers.set(PeerTimer::Idle, now + IDLE_TIMEOUT);
        Ok(())
    }

    /// Sends what follows the handshake: the extension handshake (when both
    /// speak it) and what we have.
    pub fn start(&mut self, ext_handshake: Option<&[u8]>, have: Option<&Bitfield>) {
        let Some(remote) = self.remote else { return };
        if remote.extended {
            if let Some(payload) = ext_handshake {
                self.send(&Message::Extended { id: 0, payload });
            }
        }
        match have {
            // No metadata yet: we have nothing.
            None => {
                if remote.fast {
                    self.send(&Message::HaveNone);
                }
            }
            Some(have) if remote.fast && have.is_full() => self.send(&Message::HaveAll),
            Some(have) if remote.fast && have.none() => self.send(&Message::HaveNone),
            // Without Fast, a peer with nothing may skip the bitfield (BEP 3).
            Some(have) if have.none() => {}
            Some(have) => self.send(&Message::Bitfield(have.as_bytes())),
        }
    }

    /// Sends a later extended handshake (BEP 10 allows several): the one
    /// with `metadata_size`, once a magnet-started bundle has its metadata.
    /// WebTorrent asks a peer for the metadata only after a handshake that
    /// announced its size, and its BEP 9 extension never asks again.
    pub fn resend_extended_handshake(&mut self, payload: &[u8]) {
        if self.remote.is_some_and(|r| r.extended) {
            self.send(&Message::Extended { id: 0, payload });
        }
    }

    /// Checks what the peer said before the metadata was known, now that it
    /// is. Returns true when the peer's possessions are now known (tell the
    /// picker).
    pub fn resolve_early_has(&mut self, lengths: &Lengths) -> Result<bool, DropReason> {
        if !matches!(self.has, PeerHas::Early { .. }) {
            return Ok(!matches!(self.has, PeerHas::Unknown));
        }
        let PeerHas::Early {
            bitfield,
            all,
            haves,
        } = std::mem::replace(&mut self.has, PeerHas::Unknown)
        else {
            return Ok(false);
        };
        let n = lengths.num_pieces();
        let mut bits = if all {
            self.has = PeerHas::All;
            return Ok(true);
        } else if let Some(bytes) = bitfield {
            Bitfield::from_bytes(&bytes, n).ok_or(DropReason::BadBitfield)?
        } else {
            Bitfield::new(n)
        };
        for i in haves {
            if i >= n {
                return Err(DropReason::InvalidPiece(i));
            }
            bits.set(i, true);
        }
        self.has = PeerHas::Some(bits);
        Ok(true)
    }

    // ----- messages -----

    /// Handles one message. `lengths` is `None` while the metadata is
    /// unknown; `have` is what we have (`None` likewise); `ours` are our
    /// extension ids (ut_metadata, lt_donthave).
    pub fn on_message<'a>(
        &mut self,
        now: Instant,
        msg: Message<'a>,
        lengths: Option<&Lengths>,
        have: Option<&Bitfield>,
        ours: OurExtensionIds,
    ) -> Result<PeerEvent<'a>, DropReason> {
        self.timers.set(PeerTimer::Idle, now + IDLE_TIMEOUT);
        let fast = self.fast();
        let need_fast = |fast: bool| {
            if fast {
                Ok(())
            } else {
                Err(DropReason::FastNotNegotiated)
            }
        };
        Ok(match msg {
            Message::KeepAlive | Message::Port(_) | Message::Suggest(_) => PeerEvent::Nothing,
            Message::Choke => {
                if self.peer_choking {
                    return Ok(PeerEvent::Nothing);
                }
                self.peer_choking = true;
                PeerEvent::Choked
            }
            Message::Unchoke => {
                if !self.peer_choking {
                    return Ok(PeerEvent::Nothing);
                }
                self.peer_choking = false;
                self.last_block_or_unchoke = Some(now);
                PeerEvent::Unchoked
            }
            Message::Interested => {
                let changed = !self.peer_interested;
                self.peer_interested = true;
                if changed {
                    PeerEvent::InterestChanged
                } else {
                    PeerEvent::Nothing
                }
            }
            Message::NotInterested => {
                let changed = self.peer_interested;
                self.peer_interested = false;
                // Nothing to serve to a peer that wants nothing.
                self.serve_queue.clear();
                if changed {
                    PeerEvent::InterestChanged
                } else {
                    PeerEvent::Nothing
                }
            }
            Message::Have(i) => self.on_have(i, lengths)?,
            Message::Bitfield(bytes) => self.on_bitfield(Some(bytes), false, lengths)?,
            Message::HaveAll => {
                need_fast(fast)?;
                self.on_bitfield(None, true, lengths)?
            }
            Message::HaveNone => {
                need_fast(fast)?;
                self.on_bitfield(None, false, lengths)?
            }
            Message::Request(r) => self.on_request(now, r, lengths, have)?,
            Message::Cancel(r) => {
                let Some(block) = valid_request(lengths, r)? else {
                    return Ok(PeerEvent::Nothing);
                };
                self.serve_queue.retain(|b| *b != block);
                self.loading.retain(|b| *b != block);
                PeerEvent::Nothing
            }
            Message::Piece {
                index,
                begin,
                block,
            } => {
                let lengths = lengths.ok_or(DropReason::InvalidPiece(index))?;
                let len = u32::try_from(block.len()).unwrap_or(u32::MAX);
                let info =
                    lengths
                        .validate_block(index, begin, len)
                        .ok_or(DropReason::InvalidBlock {
                            piece: index,
                            offset: begin,
                            len,
                        })?;
                self.down.record(block.len() as u64, now);
                self.last_block_or_unchoke = Some(now);
                self.snubbed = false;
                PeerEvent::Block {
                    block: info,
                    data: block,
                }
            }
            Message::Reject(r) => {
                need_fast(fast)?;
                match valid_request(lengths, r)? {
                    Some(block) => PeerEvent::Rejected(block),
                    None => PeerEvent::Nothing,
                }
            }
            Message::AllowedFast(i) => {
                need_fast(fast)?;
                let Some(lengths) = lengths else {
                    return Ok(PeerEvent::Nothing);
                };
                let piece = lengths
                    .validate_piece(i)
                    .ok_or(DropReason::InvalidPiece(i))?;
                if !self.allowed_fast_in.contains(&piece)
                    && self.allowed_fast_in.len() < MAX_ALLOWED_FAST_IN
                {
                    self.allowed_fast_in.push(piece);
                }
                PeerEvent::AllowedFast
            }
            Message::Extended { id, payload } => {
                if !self.remote.is_some_and(|r| r.extended) {
                    return Err(DropReason::Malformed(
                        "extension message without the extension protocol".into(),
                    ));
                }
                if id == EXTENDED_HANDSHAKE_ID {
                    let theirs = ExtendedHandshake::decode(payload)
                        .map_err(|e| DropReason::Malformed(e.to_string()))?;
                    match &mut self.extensions {
                        Some(known) => known.update(theirs),
                        None => self.extensions = Some(theirs),
                    }
                    PeerEvent::Extensions
                } else if Some(id) == ours.ut_metadata {
                    PeerEvent::Metadata(payload)
                } else if Some(id) == ours.lt_donthave {
                    let i = decode_donthave(payload)
                        .map_err(|e| DropReason::Malformed(e.to_string()))?;
                    match lengths {
                        Some(l) => {
                            let piece = l.validate_piece(i).ok_or(DropReason::InvalidPiece(i))?;
                            if let PeerHas::Some(b) = &mut self.has {
                                b.set(i, false);
                            } else if self.has == PeerHas::All {
                                let mut b = Bitfield::full(l.num_pieces());
                                b.set(i, false);
                                self.has = PeerHas::Some(b);
                            }
                            PeerEvent::DontHave(piece)
                        }
                        None => PeerEvent::Nothing,
                    }
                } else {
                    // An extension we did not announce: ignored, as BEP 10 asks.
                    PeerEvent::Nothing
                }
            }
        })
    }

    fn on_have(
        &mut self,
        i: u32,
        lengths: Option<&Lengths>,
    ) -> Result<PeerEvent<'static>, DropReason> {
        let Some(lengths) = lengths else {
            match &mut self.has {
                PeerHas::Early { haves, .. } => {
                    if haves.len() < MAX_EARLY_HAVES {
                        haves.push(i);
                    }
                }
                has => {
                    *has = PeerHas::Early {
                        bitfield: None,
                        all: false,
                        haves: vec![i],
                    }
                }
            }
            return Ok(PeerEvent::Nothing);
        };
        let piece = lengths
            .validate_piece(i)
            .ok_or(DropReason::InvalidPiece(i))?;
        match &mut self.has {
            PeerHas::All => return Ok(PeerEvent::Nothing),
            PeerHas::Some(b) => {
                if !b.set(i, true) {
                    return Ok(PeerEvent::Nothing);
                }
            }
            has => {
                let mut b = Bitfield::new(lengths.num_pieces());
                b.set(i, true);
                *has = PeerHas::Some(b);
                return Ok(PeerEvent::HasReplaced);
            }
        }
        Ok(PeerEvent::Have(piece))
    }

    /// A bitfield (`bytes`), have-all (`all`) or have-none (neither).
    fn on_bitfield(
        &mut self,
        bytes: Option<&[u8]>,
        all: bool,
        lengths: Option<&Lengths>,
    ) -> Result<PeerEvent<'static>, DropReason> {
        if self.has != PeerHas::Unknown {
            // BEP 3: only directly after the handshake; have messages may
            // not precede it either.
            return Err(DropReason::BadBitfield);
        }
        let Some(lengths) = lengths else {
            self.has = PeerHas::Early {
                bitfield: bytes.map(<[u8]>::to_vec),
                all,
                haves: Vec::new(),
            };
            return Ok(PeerEvent::Nothing);
        };
        let n = lengths.num_pieces();
        self.has = if all {
            PeerHas::All
        } else if let Some(bytes) = bytes {
            PeerHas::Some(Bitfield::from_bytes(bytes, n).ok_or(DropReason::BadBitfield)?)
        } else {
            PeerHas::Some(Bitfield::new(n))
        };
        Ok(PeerEvent::HasReplaced)
    }

    fn on_request(
        &mut self,
        now: Instant,
        r: BlockRequest,
        lengths: Option<&Lengths>,
        have: Option<&Bitfield>,
    ) -> Result<PeerEvent<'static>, DropReason> {
        let (Some(lengths), Some(have)) = (lengths, have) else {
            // We have nothing before the metadata; nobody should ask.
            return self.refuse(now, r, DropReason::InvalidPiece(r.index));
        };
        let block = lengths
            .validate_range(r.index, r.begin, r.length, MAX_SERVED_BLOCK)
            .ok_or(DropReason::InvalidBlock {
                piece: r.index,
                offset: r.begin,
                len: r.length,
            })?;
        if !have.get(r.index) {
            if self.retracted.contains(&r.index) {
                // We told it we had this piece: not its fault.
                if self.fast() {
                    self.send(&Message::Reject(r));
                }
                return Ok(PeerEvent::Nothing);
            }
            return self.refuse(now, r, DropReason::InvalidPiece(r.index));
        }
        if self.am_choking && !self.allowed_fast_out.contains(&block.piece) {
            return self.refuse(now, r, DropReason::RequestWhileChoked);
        }
        if self.serve_queue.len() >= MAX_QUEUED_REQUESTS {
            return Err(DropReason::TooManyRequests(MAX_QUEUED_REQUESTS));
        }
        if !self.serve_queue.contains(&block) {
            self.serve_queue.push_back(block);
        }
        Ok(PeerEvent::Request)
    }

    /// A request we will not serve: rejected under Fast; without it,
    /// ignored if a choke may have crossed it, else misbehaviour.
    fn refuse(
        &mut self,
        now: Instant,
        r: BlockRequest,
        reason: DropReason,
    ) -> Result<PeerEvent<'static>, DropReason> {
        if self.fast() {
            self.send(&Message::Reject(r));
            return Ok(PeerEvent::Nothing);
        }
        let in_grace = self
            .choked_at
            .is_some_and(|t| now.saturating_since(t) < CHOKE_GRACE);
        if in_grace && reason == DropReason::RequestWhileChoked {
            Ok(PeerEvent::Nothing)
        } else {
            Err(reason)
        }
    }

    // ----- actions the session takes -----

    /// We no longer have `piece` (it read back wrong): its requests waiting
    /// to be served or loading are dropped (rejected under Fast; without
    /// it a request may go unanswered, BEP 3 allows that), the peer is told
    /// with `lt_donthave` when it supports it, and a request for it that
    /// crosses this is refused without blaming the peer.
    pub fn retract(&mut self, piece: PieceIndex) {
        self.retracted.insert(piece.get());
        self.drop_requests(|p| p != piece);
        if let Some(id) = self.extensions.as_ref().and_then(|e| e.lt_donthave()) {
            let payload = encode_donthave(piece.get());
            self.send(&Message::Extended {
                id,
                payload: &payload,
            });
        }
    }

    /// Queues a message.
    pub fn send(&mut self, msg: &Message<'_>) {
        msg.encode_into(&mut self.outbox);
    }

    /// Queues a piece message carrying `data`, and counts it as uploaded.
    pub fn send_block(&mut self, now: Instant, block: BlockInfo, data: &[u8]) {
        self.send(&Message::Piece {
            index: block.piece.get(),
            begin: block.offset,
            block: data,
        });
        self.up.record(data.len() as u64, now);
    }

    /// Chokes the peer. Under Fast, every queued (or loading) request not in
    /// an allowed-fast piece is rejected; without it they are dropped
    /// silently (the peer knows they are void). Returns the dropped requests.
    pub fn choke(&mut self, now: Instant) -> Vec<BlockInfo> {
        if self.am_choking {
            return Vec::new();
        }
        self.am_choking = true;
        self.choked_at = Some(now);
        self.send(&Message::Choke);
        // The allowed-fast set is a handful of pieces.
        let allowed = self.allowed_fast_out.clone();
        self.drop_requests(|p| allowed.contains(&p))
    }

    /// Drops the peer's requests waiting to be served or loading whose piece
    /// `keep` refuses, rejecting each under Fast (without it they go
    /// unanswered, which BEP 3 allows); returns the dropped requests.
    fn drop_requests(&mut self, keep: impl Fn(PieceIndex) -> bool) -> Vec<BlockInfo> {
        let mut dropped: Vec<BlockInfo> = Vec::new();
        let mut sieve = |b: &BlockInfo| {
            let kept = keep(b.piece);
            if !kept {
                dropped.push(*b);
            }
            kept
        };
        self.serve_queue.retain(&mut sieve);
        self.loading.retain(&mut sieve);
        if self.fast() {
            for b in &dropped {
                self.send(&Message::Reject(request_of(*b)));
            }
        }
        dropped
    }

    /// Unchokes the peer.
    pub fn unchoke(&mut self) {
        if self.am_choking {
            self.am_choking = false;
            self.send(&Message::Unchoke);
        }
    }

    /// Says whether we are interested; sends only on change.
    pub fn set_interested(&mut self, interested: bool) {
        if self.am_interested != interested {
            self.am_interested = interested;
            self.send(if interested {
                &Message::Interested
            } else {
                &Message::NotInterested
            });
        }
    }

    /// Sends a request.
    pub fn request(&mut self, block: BlockInfo) {
        self.send(&Message::Request(request_of(block)));
    }

    /// Sends a cancel.
    pub fn cancel(&mut self, block: BlockInfo) {
        self.send(&Message::Cancel(request_of(block)));
    }

    /// Grants allowed-fast pieces (BEP 6) to a peer that has nothing, picked
    /// among the pieces we have by `rng`.
    pub fn grant_allowed_fast(
        &mut self,
        lengths: &Lengths,
        have: &Bitfield,
        rng: &mut fastrand::Rng,
    ) {
        if !self.fast() || !self.allowed_fast_out.is_empty() || have.none() {
            return;
        }
        let n = have.len();
        let mut tries = 0;
        while self.allowed_fast_out.len() < ALLOWED_FAST_COUNT.min(have.count_ones() as usize)
            && tries < 64
        {
            tries += 1;
            let i = rng.u32(0..n);
            let Some(piece) = lengths.validate_piece(i).filter(|_| have.get(i)) else {
                continue;
            };
            if !self.allowed_fast_out.contains(&piece) {
                self.allowed_fast_out.push(piece);
                self.send(&Message::AllowedFast(i));
            }
        }
    }

    // ----- sending and timers -----

    /// Takes the next chunk to hand to the glue, within `budget` bytes in
    /// flight. Returns `None` when nothing is queued, the budget is used
    /// up (then [`Peer::wants_watch`] says whether to ask for a
    /// `PeerWritable`), or less than [`MAX_SEND_CHUNK`] is queued while
    /// blocks for the peer are still being loaded.
    pub fn poll_send(&mut self, now: Instant, budget: usize) -> Option<Vec<u8>> {
        if self.outbox.is_empty() || self.stage == Stage::Signalling {
            return None;
        }
        if self.in_flight >= budget {
            return None;
        }
        if self.outbox.len() < MAX_SEND_CHUNK && !self.loading.is_empty() {
            // More blocks for this peer are being loaded: the partial chunk
            // waits for them, so the channel carries full chunks rather than
            // one message per block (every data channel message costs both
            // sides a fixed overhead). The last load to finish releases it.
            return None;
        }
        let chunk = if self.outbox.len() <= MAX_SEND_CHUNK {
            std::mem::take(&mut self.outbox)
        } else {
            let rest = self.outbox.split_off(MAX_SEND_CHUNK);
            std::mem::replace(&mut self.outbox, rest)
        };
        self.in_flight += chunk.len();
        self.timers
            .set(PeerTimer::KeepAlive, now + KEEPALIVE_INTERVAL);
        Some(chunk)
    }

    /// Whether the send budget holds back queued bytes or requests to serve
    /// and no watch is pending; marks the watch as pending.
    pub fn wants_watch(&mut self, budget: usize) -> bool {
        let waiting = !self.outbox.is_empty() || !self.serve_queue.is_empty();
        if waiting && self.in_flight >= budget && !self.watching {
            self.watching = true;
            return true;
        }
        false
    }

    /// Whether the budget lets another block be loaded for this peer
    /// (blocks being loaded count as queued).
    pub fn has_send_room(&self, budget: usize) -> bool {
        let loading: usize = self.loading.iter().map(|b| b.len as usize).sum();
        self.queued_bytes() + loading < budget
    }

    /// Takes a loaded block off the loading list; whether the peer still
    /// wants it (it may have cancelled, or been choked, meanwhile).
    pub fn take_loaded(&mut self, block: BlockInfo) -> bool {
        match self.loading.iter().position(|b| *b == block) {
            Some(i) => {
                self.loading.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// The glue reports the channel drained to the low-water mark.
    pub fn on_writable(&mut self, low_water: usize) {
        self.watching = false;
        self.in_flight = self.in_flight.min(low_water);
    }

    /// Fires due timers: a keep-alive is queued, or the peer is dropped.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DropReason> {
        for timer in self.timers.take_expired(now) {
            match timer {
                PeerTimer::KeepAlive => {
                    if self.stage != Stage::Signalling {
                        if self.outbox.is_empty() {
                            self.send(&Message::KeepAlive);
                        }
                        self.timers
                            .set(PeerTimer::KeepAlive, now + KEEPALIVE_INTERVAL);
                    }
                }
                PeerTimer::Idle => {
                    return Err(match self.stage {
                        Stage::Signalling => DropReason::OfferExpired,
                        _ => DropReason::Timeout,
                    })
                }
            }
        }
        Ok(())
    }
}

/// Our extension ids, as announced in our extension handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OurExtensionIds {
    /// Our id for `ut_metadata`.
    pub ut_metadata: Option<u8>,
    /// Our id for `lt_donthave`.
    pub lt_donthave: Option<u8>,
}

/// The wire form of a block.
pub fn request_of(b: BlockInfo) -> BlockRequest {
    BlockRequest {
        index: b.piece.get(),
        begin: b.offset,
        length: b.len,
    }
}

/// A cancel or reject's block, checked like a request; `None` before the
/// metadata is known (nothing can have been requested).
fn valid_request(
    lengths: Option<&Lengths>,
    r: BlockRequest,
) -> Result<Option<BlockInfo>, DropReason> {
    let Some(lengths) = lengths else {
        return Ok(None);
    };
    lengths
        .validate_range(r.index, r.begin, r.length, MAX_SERVED_BLOCK)
        .map(Some)
        .ok_or(DropReason::InvalidBlock {
            piece: r.index,
            offset: r.begin,
            len: r.length,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::Frame;
    use proptest::prelude::*;

    const IH: InfoHash = InfoHash([1; 20]);
    const US: PeerId = PeerId([2; 20]);
    const THEM: PeerId = PeerId([3; 20]);

    fn at(ms: u64) -> Instant {
        Instant::from_duration(Duration::from_millis(ms))
    }

    /// 8 pieces of 32 KiB.
    fn lengths() -> Lengths {
        Lengths::new(8 * 32 * 1024, 32 * 1024).unwrap()
    }

    /// A peer past both handshakes; the remote speaks Fast if `fast`.
    fn active(fast: bool) -> Peer {
        let mut p = Peer::new(ConnId(1), PeerKey(0), at(0));
        p.on_opened(at(0), IH, US);
        let mut h = Handshake::swarmdrop(IH, THEM);
        h.set_fast(fast);
        p.on_handshake(at(0), &h, IH, US).unwrap();
        p
    }

    fn msg<'a>(p: &mut Peer, m: Message<'a>, have: &Bitfield) -> Result<PeerEvent<'a>, DropReason> {
        p.on_message(
            at(10),
            m,
            Some(&lengths()),
            Some(have),
            OurExtensionIds::default(),
        )
    }

    /// The messages the peer queued, by name, after its handshake.
    fn sent(p: &mut Peer) -> Vec<(&'static str, Option<BlockRequest>)> {
        let mut bytes = Vec::new();
        while let Some(chunk) = p.poll_send(at(10), usize::MAX) {
            bytes.extend(chunk);
        }
        let mut framer = Framer::default();
        if bytes.first() != Some(&19) {
            // Past the handshake: put one in front for the framer.
            let mut with = Handshake::swarmdrop(IH, US).encode().to_vec();
            with.extend(bytes);
            bytes = with;
        }
        let mut frames = framer.feed(&bytes);
        let mut out = Vec::new();
        while let Some(frame) = frames.next() {
            match frame.unwrap() {
                Frame::Handshake(_) => {}
                Frame::Message(m) => out.push((
                    m.name(),
                    match m {
                        Message::Request(r) | Message::Reject(r) | Message::Cancel(r) => Some(r),
                        _ => None,
                    },
                )),
            }
        }
        out
    }

    fn req(index: u32) -> BlockRequest {
        BlockRequest {
            index,
            begin: 0,
            length: BLOCK_SIZE,
        }
    }

    #[test]
    fn a_handshake_for_another_bundle_or_from_ourselves_is_refused() {
        let mut p = Peer::new(ConnId(1), PeerKey(0), at(0));
        p.on_opened(at(0), IH, US);
        let other = Handshake::swarmdrop(InfoHash([9; 20]), THEM);
        assert_eq!(
            p.on_handshake(at(1), &other, IH, US),
            Err(DropReason::WrongInfoHash)
        );
        let me = Handshake::swarmdrop(IH, US);
        assert_eq!(
            p.on_handshake(at(1), &me, IH, US),
            Err(DropReason::SelfConnection)
        );
        assert!(!p.is_active());
    }

    #[test]
    fn a_bitfield_with_spare_bits_or_sent_twice_drops_the_peer() {
        let have = Bitfield::new(8);
        let mut p = active(false);
        // 8 pieces fit one byte exactly; a second byte is a wrong length.
        assert_eq!(
            msg(&mut p, Message::Bitfield(&[0xff, 0x80]), &have),
            Err(DropReason::BadBitfield)
        );
        let mut p = active(false);
        assert_eq!(
            msg(&mut p, Message::Bitfield(&[0x81]), &have),
            Ok(PeerEvent::HasReplaced)
        );
        assert!(p.has_piece(lengths().validate_piece(7).unwrap()));
        assert_eq!(
            msg(&mut p, Message::Bitfield(&[0x81]), &have),
            Err(DropReason::BadBitfield)
        );
    }

    #[test]
    fn a_have_past_the_last_piece_drops_the_peer() {
        let mut p = active(false);
        assert_eq!(
            msg(&mut p, Message::Have(8), &Bitfield::new(8)),
            Err(DropReason::InvalidPiece(8))
        );
    }

    #[test]
    fn fast_messages_from_a_peer_without_fast_drop_it() {
        let mut p = active(false);
        assert_eq!(
            msg(&mut p, Message::HaveAll, &Bitfield::new(8)),
            Err(DropReason::FastNotNegotiated)
        );
        let mut p = active(true);
        assert_eq!(
            msg(&mut p, Message::HaveAll, &Bitfield::new(8)),
            Ok(PeerEvent::HasReplaced)
        );
        assert!(p.is_seed());
    }

    #[test]
    fn a_request_while_choked_is_rejected_under_fast() {
        let have = Bitfield::full(8);
        let mut p = active(true);
        sent(&mut p);
        assert_eq!(
            msg(&mut p, Message::Request(req(2)), &have),
            Ok(PeerEvent::Nothing)
        );
        assert!(p.serve_queue.is_empty());
        assert_eq!(sent(&mut p), vec![("reject", Some(req(2)))]);
    }

    #[test]
    fn a_request_while_choked_without_fast_drops_the_peer_unless_a_choke_crossed_it() {
        let have = Bitfield::full(8);
        let mut p = active(false);
        assert_eq!(
            msg(&mut p, Message::Request(req(2)), &have),
            Err(DropReason::RequestWhileChoked)
        );
        let mut p = active(false);
        p.unchoke();
        assert_eq!(
            msg(&mut p, Message::Request(req(2)), &have),
            Ok(PeerEvent::Request)
        );
        p.choke(at(5));
        assert!(p.serve_queue.is_empty(), "a choke voids queued requests");
        // Sent before our choke arrived: ignored, not held against the peer.
        assert_eq!(
            msg(&mut p, Message::Request(req(3)), &have),
            Ok(PeerEvent::Nothing)
        );
    }

    #[test]
    fn requests_for_pieces_we_lack_or_bad_ranges_are_refused() {
        let mut have = Bitfield::new(8);
        have.set(1, true);
        let mut p = active(true);
        p.unchoke();
        sent(&mut p);
        assert_eq!(
            msg(&mut p, Message::Request(req(0)), &have),
            Ok(PeerEvent::Nothing)
        );
        assert_eq!(sent(&mut p), vec![("reject", Some(req(0)))]);
        let too_long = BlockRequest {
            length: 2 * BLOCK_SIZE,
            ..req(1)
        };
        assert!(matches!(
            msg(&mut p, Message::Request(too_long), &have),
            Err(DropReason::InvalidBlock { .. })
        ));
    }

    #[test]
    fn more_queued_requests_than_the_limit_drop_the_peer() {
        let have = Bitfield::full(8);
        let mut p = active(true);
        p.unchoke();
        // Any sub-range of a piece may be requested: 1-byte requests are distinct.
        let tiny = |begin: u32| BlockRequest {
            index: 0,
            begin,
            length: 1,
        };
        for begin in 0..MAX_QUEUED_REQUESTS as u32 {
            assert_eq!(
                msg(&mut p, Message::Request(tiny(begin)), &have),
                Ok(PeerEvent::Request)
            );
        }
        let result = msg(
            &mut p,
            Message::Request(tiny(MAX_QUEUED_REQUESTS as u32)),
            &have,
        );
        assert_eq!(
            result,
            Err(DropReason::TooManyRequests(MAX_QUEUED_REQUESTS))
        );
    }

    #[test]
    fn a_block_that_is_not_a_valid_block_drops_the_peer() {
        let mut p = active(true);
        let data = [0u8; 100];
        let r = msg(
            &mut p,
            Message::Piece {
                index: 0,
                begin: 0,
                block: &data,
            },
            &Bitfield::new(8),
        );
        assert_eq!(
            r,
            Err(DropReason::InvalidBlock {
                piece: 0,
                offset: 0,
                len: 100
            })
        );
    }

    #[test]
    fn requests_wait_until_a_quarter_of_the_pipeline_is_missing() {
        assert_eq!(requests_due(0, 256), 256);
        assert_eq!(requests_due(255, 256), 0);
        assert_eq!(requests_due(193, 256), 0);
        assert_eq!(requests_due(192, 256), 64);
        assert_eq!(requests_due(10, 256), 246);
        assert_eq!(requests_due(300, 256), 0);
    }

    #[test]
    fn a_small_pipeline_is_refilled_one_request_at_a_time() {
        for target in 1..REQUEST_BATCH_DIVISOR {
            assert_eq!(requests_due(target - 1, target), 1);
            assert_eq!(requests_due(target, target), 0);
        }
        assert_eq!(requests_due(MIN_PIPELINE - 1, MIN_PIPELINE), 1);
    }

    proptest! {
        #[test]
        fn requests_due_never_overfills_and_never_leaves_a_batch_missing(
            outstanding in 0usize..600,
            target in 1usize..=MAX_PIPELINE,
        ) {
            let due = requests_due(outstanding, target);
            prop_assert!(outstanding + due <= target.max(outstanding));
            let after = outstanding + due;
            prop_assert!(target.saturating_sub(after) < (target / REQUEST_BATCH_DIVISOR).max(1));
        }
    }

    #[test]
    fn the_pipeline_follows_the_measured_rate_within_its_bounds() {
        let mut p = active(true);
        assert_eq!(p.pipeline_target(at(0)), MIN_PIPELINE);
        // 1.6 MB/s: about a hundred 16 KiB blocks per second.
        for ms in 0..1000 {
            p.down.record(1_600, at(ms));
        }
        let t = p.pipeline_target(at(1000));
        assert!((90..=110).contains(&t), "{t}");
        for ms in 1000..2000 {
            p.down.record(100_000, at(ms));
        }
        assert_eq!(p.pipeline_target(at(2000)), MAX_PIPELINE);
        p.extensions = Some(ExtendedHandshake {
            reqq: Some(50),
            ..Default::default()
        });
        assert_eq!(p.pipeline_target(at(2000)), 50);
        p.snubbed = true;
        assert_eq!(p.pipeline_target(at(2000)), 1);
    }

    #[test]
    fn silence_sends_a_keep_alive_and_longer_silence_drops_the_peer() {
        let mut p = active(true);
        sent(&mut p);
        let quiet = at(10) + KEEPALIVE_INTERVAL;
        assert_eq!(p.handle_timeout(quiet), Ok(()));
        assert_eq!(sent(&mut p), vec![("keep-alive", None)]);
        assert_eq!(
            p.handle_timeout(at(0) + IDLE_TIMEOUT),
            Err(DropReason::Timeout)
        );
    }

    #[test]
    fn the_send_budget_holds_bytes_back_until_the_channel_drains() {
        let mut p = active(true);
        let budget = 100;
        let first = p.poll_send(at(1), budget).unwrap();
        assert_eq!(first.len(), 68, "the handshake");
        for _ in 0..10 {
            p.send(&Message::Have(1));
        }
        assert!(
            p.poll_send(at(1), budget).is_some(),
            "68 < 100: one more chunk"
        );
        p.send(&Message::Have(2));
        assert_eq!(p.poll_send(at(1), budget), None);
        assert!(p.wants_watch(budget));
        assert!(!p.wants_watch(budget), "asked once");
        p.on_writable(0);
        assert!(p.poll_send(at(2), budget).is_some());
    }

    #[test]
    fn blocks_being_loaded_hold_a_partial_chunk_until_it_is_full_or_they_are_done() {
        let mut p = active(true);
        p.unchoke();
        sent(&mut p);
        let piece_message = 13 + BLOCK_SIZE as usize;
        // The blocks whose piece messages make one chunk, and two more.
        let fill = MAX_SEND_CHUNK.div_ceil(piece_message);
        let total = fill + 2;
        let big = Lengths::new(total as u64 * 32 * 1024, 32 * 1024).unwrap();
        let blocks: Vec<BlockInfo> = (0..total as u32)
            .map(|i| {
                big.validate_block(i, 0, BLOCK_SIZE)
                    .expect("a block of the bundle")
            })
            .collect();
        p.loading.extend(blocks.iter().copied());
        let budget = usize::MAX;
        let data = vec![7u8; BLOCK_SIZE as usize];
        for b in &blocks[..fill - 1] {
            assert!(p.take_loaded(*b));
            p.send_block(at(2), *b, &data);
            assert_eq!(
                p.poll_send(at(2), budget),
                None,
                "under one chunk, loads pending"
            );
        }
        assert!(p.take_loaded(blocks[fill - 1]));
        p.send_block(at(2), blocks[fill - 1], &data);
        let full = p.poll_send(at(2), budget).expect("a full chunk");
        assert_eq!(full.len(), MAX_SEND_CHUNK);
        assert_eq!(p.poll_send(at(2), budget), None, "the rest waits");
        for b in &blocks[fill..] {
            assert!(p.take_loaded(*b));
            p.send_block(at(3), *b, &data);
        }
        let mut rest = Vec::new();
        while let Some(c) = p.poll_send(at(3), budget) {
            assert!(c.len() <= MAX_SEND_CHUNK);
            rest.extend(c);
        }
        assert_eq!(
            full.len() + rest.len(),
            total * piece_message,
            "every byte goes out once the loads are done"
        );
    }

    #[test]
    fn what_a_peer_said_before_the_metadata_is_checked_once_it_is_known() {
        let mut p = active(true);
        let r = p.on_message(
            at(1),
            Message::Bitfield(&[0xff, 0xff]),
            None,
            None,
            OurExtensionIds::default(),
        );
        assert_eq!(r, Ok(PeerEvent::Nothing));
        assert_eq!(
            p.resolve_early_has(&lengths()),
            Err(DropReason::BadBitfield)
        );
        let mut p = active(true);
        p.on_message(
            at(1),
            Message::Have(3),
            None,
            None,
            OurExtensionIds::default(),
        )
        .unwrap();
        assert_eq!(p.resolve_early_has(&lengths()), Ok(true));
        assert!(p.has_piece(lengths().validate_piece(3).unwrap()));
    }

    #[test]
    fn choking_under_fast_rejects_every_queued_request() {
        let have = Bitfield::full(8);
        let mut p = active(true);
        p.unchoke();
        msg(&mut p, Message::Request(req(4)), &have).unwrap();
        msg(&mut p, Message::Request(req(5)), &have).unwrap();
        sent(&mut p);
        let dropped = p.choke(at(20));
        assert_eq!(dropped.len(), 2);
        assert_eq!(
            sent(&mut p),
            vec![
                ("choke", None),
                ("reject", Some(req(4))),
                ("reject", Some(req(5)))
            ]
        );
    }
}
