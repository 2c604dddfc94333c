//! Block-level piece picker for one torrent: availability, priorities, rarest first, endgame.
//!
//! The picker is a pure data structure: the session tells it what peers have
//! and what happened to requests, and asks it which blocks to request next.
//! It never sees block bytes (the session assembles and hashes pieces) and
//! never reads a clock or a random source of its own: `now` and a seeded
//! [`fastrand::Rng`] come in with each call.
//!
//! # States and invariant
//!
//! Every piece is in exactly one state:
//!
//! - **have**: verified, in our have-bitfield; never picked again;
//! - **partial**: at least one of its blocks is requested or received; it has
//!   an entry in the partial table holding one state per block;
//! - **open**: nothing requested or received; if its priority is not
//!   [`Priority::Skip`] it sits in exactly one availability bucket of its
//!   priority class (and in none otherwise).
//!
//! Every block of a partial piece is in exactly one state: **free**,
//! **requested** by a non-empty set of distinct peers (each with the time of
//! its request; more than one only in endgame, at most
//! [`MAX_REQUESTERS_PER_BLOCK`], plus one [source](Picker::mark_source)), or
//! **received** from one peer. Blocks of open
//! pieces are all free; blocks of pieces we have are all received. A partial
//! piece always has a block that is not free (when its last request is
//! released and nothing was received, it goes back to open). A `(peer, block)`
//! request is recorded in the block's state if and only if it is recorded in
//! that peer's request set, and only for peers the picker knows (so a removed
//! peer owns no request). Availability of a piece is the number of known peers
//! with a bitfield that has it, plus the number of have-all peers.
//!
//! # Selection
//!
//! [`Picker::pick`] goes through the priority classes from
//! [`Priority::Highest`] down to [`Priority::Normal`] (skipped pieces are never
//! picked). In each class it first hands out free blocks of partial pieces the
//! peer has (so started pieces complete, get verified and can be served), then
//! opens new pieces, rarest first, ties broken at random. When no free block
//! is left in any wanted piece that some peer has (endgame), a peer may also
//! get blocks already requested from other peers, up to
//! [`MAX_REQUESTERS_PER_BLOCK`] requesters per block (a source, a web seed
//! that never goes away, may always join as one more, so slow peers that
//! took every slot cannot hold the last blocks); [`Picker::block_received`]
//! then names the peers whose duplicate requests should be cancelled.
//!
//! # Cost
//!
//! With `n` pieces, `P` partial pieces, `R` outstanding requests and `A`
//! distinct availability levels (at most the number of peers + 1):
//!
//! - `pick`: `O(A + P·b + S)` where `b` is blocks per piece and `S` the bucket
//!   entries scanned. The scan of a bucket starts at a random position and
//!   stops at the first piece the peer has: `O(1)` for a peer that has every
//!   piece (seeds, web seeds), about `1/f` entries for a peer holding a
//!   fraction `f` of the pieces, and at most the size of the bucket. A
//!   search that finds nothing is remembered per peer and class, and not
//!   repeated until a piece is (re)opened or the peer announces a piece, so
//!   asking again a peer that has nothing left to offer costs `O(A + P)`.
//!   Nothing is ever sorted.
//! - `peer_have`, `request_*`, `block_received`: `O(log)` plus `O(1)` bucket
//!   moves; `piece_verified`, `piece_failed`: `O(b + peers)`.
//! - `set_priority`: `O(len · peers)` for a range of `len` pieces.
//! - `peer_bitfield` and `peer_removed`: `O(n)` for a peer with a bitfield
//!   (one bucket move per piece), `O(R)` for a have-all peer.
//! - `timed_out`: `O(R log P)`; `next_timeout`: `O(P·b)`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use thiserror::Error;

use super::bitfield::Bitfield;
use super::lengths::{BlockInfo, Lengths, PieceIndex};
use super::time::Instant;

/// An opaque peer identity chosen by the session (a connection slot number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(pub u32);

/// How much a piece is wanted. Ordered: `Skip < Normal < High < Highest`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Not wanted (only in files the user did not select); never picked.
    Skip,
    /// Wanted.
    #[default]
    Normal,
    /// Wanted before `Normal` (files the user asked for first).
    High,
    /// Wanted before everything else (the bundle's manifest).
    Highest,
}

impl Priority {
    /// The bucket class of a wanted priority, `None` for `Skip`.
    const fn class(self) -> Option<usize> {
        match self {
            Priority::Skip => None,
            Priority::Normal => Some(0),
            Priority::High => Some(1),
            Priority::Highest => Some(2),
        }
    }
}

/// Number of wanted priority classes (all but `Skip`).
const CLASSES: usize = 3;

/// The most peers one block is requested from at a time (endgame only; out of
/// endgame a block has a single requester).
pub const MAX_REQUESTERS_PER_BLOCK: usize = 3;

/// Per-piece priorities from files: each file is given as the range of pieces
/// it touches (see [`Lengths::pieces_for_range`]) and its priority; a piece
/// touched by several files takes the highest of their priorities, so a piece
/// shared by a selected and an unselected file is downloaded. Pieces no file
/// touches (there are none in a valid torrent) are `Skip`. Ranges past
/// `num_pieces` are clipped.
pub fn priorities_from_files(
    num_pieces: u32,
    files: impl IntoIterator<Item = (Range<u32>, Priority)>,
) -> Vec<Priority> {
    let mut out = vec![Priority::Skip; num_pieces as usize];
    for (range, prio) in files {
        let end = range.end.min(num_pieces);
        for slot in out.iter_mut().take(end as usize).skip(range.start as usize) {
            *slot = (*slot).max(prio);
        }
    }
    out
}

/// What [`Picker::block_received`] made of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// The block was requested from this peer and is now received: the
    /// session keeps its bytes.
    Accepted {
        /// Every block of the piece is now received: hash it, then call
        /// [`Picker::piece_verified`] or [`Picker::piece_failed`].
        piece_complete: bool,
        /// Other peers the same block was requested from (endgame): send them
        /// a cancel. Their requests are already released.
        cancel: Vec<PeerKey>,
    },
    /// The block was already received (or the piece is already verified):
    /// discard the bytes.
    Duplicate,
    /// The block was not requested from this peer (or does not exist):
    /// discard the bytes.
    Unrequested,
}

/// How much of the wanted data is still missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Remaining {
    /// Wanted pieces not yet verified.
    pub pieces: u32,
    /// Their total length in bytes.
    pub bytes: u64,
}

/// Why the picker refused an input.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum PickerError {
    /// A bitfield does not range over the torrent's pieces.
    #[error("bitfield covers {got} pieces, the torrent has {expected}")]
    BitfieldLength {
        /// Pieces in the torrent.
        expected: u32,
        /// Pieces in the bitfield.
        got: u32,
    },
    /// The priority list does not have one entry per piece.
    #[error("{got} priorities given for {expected} pieces")]
    PriorityCount {
        /// Pieces in the torrent.
        expected: u32,
        /// Priorities given.
        got: usize,
    },
    /// A piece was reported verified or failed before all of its blocks were received.
    #[error("piece {0} is not complete")]
    PieceNotComplete(u32),
}

/// What a peer has.
#[derive(Clone, Debug)]
enum PeerHas {
    /// Every piece (BEP 6 have-all, or a web seed); counted in `have_all_peers`.
    All,
    /// The pieces in the bitfield; counted in `availability`.
    Some(Bitfield),
}

impl PeerHas {
    fn get(&self, piece: u32) -> bool {
        match self {
            PeerHas::All => true,
            PeerHas::Some(bf) => bf.get(piece),
        }
    }
}

#[derive(Clone, Debug)]
struct PeerState {
    has: PeerHas,
    /// Number of wanted pieces (not had, not `Skip`) this peer has, for a
    /// bitfield peer; unused for a have-all peer.
    interesting: u32,
    /// Outstanding requests as `(piece, block index)`.
    requests: BTreeSet<(u32, u32)>,
    /// Per class, the `open_gen` at which a search for an open piece this
    /// peer has found none: until a piece is opened again or the peer gets a
    /// piece, the search is skipped.
    open_miss: [Option<u64>; CLASSES],
    /// A source that does not download (a web seed): its pieces count in
    /// availability but not in [`Picker::peer_copies`].
    source: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BlockState {
    Free,
    /// Requested from these distinct peers, each with the time of the request.
    Requested(Vec<(PeerKey, Instant)>),
    Received(PeerKey),
}

#[derive(Clone, Debug)]
struct Partial {
    blocks: Vec<BlockState>,
    free: u32,
    received: u32,
}

impl Partial {
    fn new(blocks: u32) -> Self {
        Partial {
            blocks: vec![BlockState::Free; blocks as usize],
            free: blocks,
            received: 0,
        }
    }

    fn is_complete(&self) -> bool {
        self.received as usize == self.blocks.len()
    }
}

/// The piece picker of one torrent. See the module documentation for its
/// states, invariant and costs.
///
/// Inputs: [`peer_bitfield`](Self::peer_bitfield),
/// [`peer_have`](Self::peer_have), [`peer_have_all`](Self::peer_have_all),
/// [`peer_have_none`](Self::peer_have_none),
/// [`peer_dont_have`](Self::peer_dont_have),
/// [`peer_removed`](Self::peer_removed), [`set_priority`](Self::set_priority),
/// [`block_received`](Self::block_received),
/// [`request_rejected`](Self::request_rejected),
/// [`request_cancelled`](Self::request_cancelled),
/// [`timed_out`](Self::timed_out), [`piece_verified`](Self::piece_verified),
/// [`piece_failed`](Self::piece_failed), [`piece_lost`](Self::piece_lost). Decisions: [`pick`](Self::pick),
/// [`pick_allowed_fast`](Self::pick_allowed_fast).
#[derive(Clone, Debug)]
pub struct Picker {
    lengths: Lengths,
    have: Bitfield,
    priority: Vec<Priority>,
    /// Per piece: bitfield peers that have it (have-all peers not included).
    availability: Vec<u32>,
    /// Per piece: how many of those are sources ([`Picker::mark_source`]).
    source_copies: Vec<u32>,
    /// Known sources: no unshared piece has a higher availability.
    source_peers: u32,
    have_all_peers: u32,
    /// Open wanted pieces: `buckets[class][availability]`.
    buckets: [Vec<Vec<u32>>; CLASSES],
    /// Position of an open wanted piece in its bucket.
    pos: Vec<u32>,
    open_count: u32,
    partials: BTreeMap<u32, Partial>,
    peers: BTreeMap<PeerKey, PeerState>,
    remaining: Remaining,
    /// Bucket entries examined by `pick` so far (a cost measure for tests).
    scanned: u64,
    /// Bumped whenever a piece enters a bucket other than by an availability
    /// change (it may be a new candidate for any peer).
    open_gen: u64,
}

impl Picker {
    /// A picker for a torrent of these lengths, of which we already have the
    /// pieces in `have`, wanting each piece as much as `priorities` says.
    pub fn new(
        lengths: Lengths,
        have: Bitfield,
        priorities: Vec<Priority>,
    ) -> Result<Self, PickerError> {
        let n = lengths.num_pieces();
        if have.len() != n {
            return Err(PickerError::BitfieldLength {
                expected: n,
                got: have.len(),
            });
        }
        if priorities.len() != n as usize {
            return Err(PickerError::PriorityCount {
                expected: n,
                got: priorities.len(),
            });
        }
        let mut picker = Picker {
            lengths,
            have,
            priority: priorities,
            availability: vec![0; n as usize],
            source_copies: vec![0; n as usize],
            source_peers: 0,
            have_all_peers: 0,
            buckets: Default::default(),
            pos: vec![0; n as usize],
            open_count: 0,
            partials: BTreeMap::new(),
            peers: BTreeMap::new(),
            remaining: Remaining::default(),
            scanned: 0,
            open_gen: 0,
        };
        for p in lengths.pieces() {
            if picker.is_wanted(p.get()) {
                picker.remaining.pieces += 1;
                picker.remaining.bytes += lengths.piece_len(p) as u64;
                picker.bucket_insert(p.get());
            }
        }
        Ok(picker)
    }

    // ----- getters -----

    /// The torrent's lengths.
    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    /// The pieces we have verified.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// The priority of a piece.
    pub fn priority(&self, piece: PieceIndex) -> Priority {
        self.priority[piece.as_usize()]
    }

    /// How many known peers have a piece.
    pub fn availability(&self, piece: PieceIndex) -> u32 {
        self.availability[piece.as_usize()] + self.have_all_peers
    }

    /// How many known peers with a bitfield have a piece: availability
    /// without the peers that have every piece (BEP 6 have-all seeds, web
    /// seeds). Zero means the piece is not yet shared among the swarm's
    /// downloaders.
    pub fn peer_copies(&self, piece: PieceIndex) -> u32 {
        self.copies(piece.get())
    }

    /// Downloading peers' copies of piece `p`.
    fn copies(&self, p: u32) -> u32 {
        self.availability[p as usize] - self.source_copies[p as usize]
    }

    /// Wanted pieces (and bytes) not yet verified.
    pub fn wanted_remaining(&self) -> Remaining {
        self.remaining
    }

    /// True when every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.remaining.pieces == 0
    }

    /// True when the peer has a wanted piece we have not verified yet (we
    /// should be interested in it). `O(log peers)`.
    pub fn is_interesting(&self, peer: PeerKey) -> bool {
        match self.peers.get(&peer) {
            None => false,
            Some(st) => match st.has {
                PeerHas::All => self.remaining.pieces > 0,
                PeerHas::Some(_) => st.interesting > 0,
            },
        }
    }

    /// Whether a known peer has a piece.
    pub fn peer_has(&self, peer: PeerKey, piece: PieceIndex) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|st| st.has.get(piece.get()))
    }

    /// Number of outstanding requests to a peer.
    pub fn outstanding(&self, peer: PeerKey) -> usize {
        self.peers.get(&peer).map_or(0, |st| st.requests.len())
    }

    /// The outstanding requests to a peer, in piece and offset order.
    pub fn requests(&self, peer: PeerKey) -> Vec<BlockInfo> {
        self.peers.get(&peer).map_or_else(Vec::new, |st| {
            st.requests
                .iter()
                .filter_map(|&(p, i)| self.block_info(p, i))
                .collect()
        })
    }

    /// Number of pieces with some block requested or received but not yet
    /// verified.
    pub fn partial_count(&self) -> usize {
        self.partials.len()
    }

    /// True when no free block is left in any wanted piece that some known
    /// peer has: every block still to download is requested or received, and
    /// [`pick`](Self::pick) hands out duplicate requests.
    pub fn in_endgame(&self) -> bool {
        if self.remaining.pieces == 0 {
            return false;
        }
        let skip_unavailable = usize::from(self.have_all_peers == 0);
        let open_available = self
            .buckets
            .iter()
            .any(|class| class.iter().skip(skip_unavailable).any(|b| !b.is_empty()));
        if open_available {
            return false;
        }
        !self.partials.iter().any(|(&p, part)| {
            part.free > 0 && self.priority[p as usize] != Priority::Skip && self.available(p)
        })
    }

    // ----- peer inputs -----

    /// Marks a peer as a source that does not download (a web seed, which
    /// may hold only part of the bundle): what it has is not a copy shared
    /// by the swarm ([`peer_copies`](Self::peer_copies),
    /// [`pick_unshared`](Self::pick_unshared)). Idempotent.
    pub fn mark_source(&mut self, peer: PeerKey) {
        let st = self.peer_entry(peer);
        if st.source {
            return;
        }
        st.source = true;
        let ones: Vec<u32> = match &st.has {
            PeerHas::Some(bf) => bf.iter_ones().collect(),
            PeerHas::All => Vec::new(),
        };
        self.source_peers += 1;
        for p in ones {
            self.source_copies[p as usize] += 1;
        }
    }

    /// A peer's bitfield message (or a fresh view of what it has); replaces
    /// what was known of it.
    pub fn peer_bitfield(&mut self, peer: PeerKey, bitfield: &Bitfield) -> Result<(), PickerError> {
        let n = self.lengths.num_pieces();
        if bitfield.len() != n {
            return Err(PickerError::BitfieldLength {
                expected: n,
                got: bitfield.len(),
            });
        }
        self.forget_has(peer);
        let st = self.peer_entry(peer);
        st.has = PeerHas::Some(bitfield.clone());
        st.interesting = 0;
        st.open_miss = [None; CLASSES];
        for p in bitfield.iter_ones() {
            self.add_availability(peer, p);
        }
        Ok(())
    }

    /// A peer's have message.
    pub fn peer_have(&mut self, peer: PeerKey, piece: PieceIndex) {
        let st = self.peer_entry(peer);
        let added = match &mut st.has {
            PeerHas::All => false,
            PeerHas::Some(bf) => bf.set(piece.get(), true),
        };
        if added {
            st.open_miss = [None; CLASSES];
        }
        if added {
            self.add_availability(peer, piece.get());
        }
    }

    /// A peer that has every piece: a BEP 6 have-all message, or a web seed.
    pub fn peer_have_all(&mut self, peer: PeerKey) {
        if matches!(
            self.peers.get(&peer),
            Some(PeerState {
                has: PeerHas::All,
                ..
            })
        ) {
            return;
        }
        self.forget_has(peer);
        let st = self.peer_entry(peer);
        st.has = PeerHas::All;
        st.interesting = 0;
        st.open_miss = [None; CLASSES];
        self.have_all_peers += 1;
    }

    /// A peer that has no piece (BEP 6 have-none); replaces what was known.
    pub fn peer_have_none(&mut self, peer: PeerKey) {
        let n = self.lengths.num_pieces();
        // An empty bitfield of the right length cannot be refused.
        let _ = self.peer_bitfield(peer, &Bitfield::new(n));
    }

    /// A peer no longer has a piece (`lt_donthave`). Its outstanding requests
    /// in that piece stay until rejected, cancelled or timed out.
    pub fn peer_dont_have(&mut self, peer: PeerKey, piece: PieceIndex) {
        let Some(st) = self.peers.get(&peer) else {
            return;
        };
        if matches!(st.has, PeerHas::All) {
            let mut full = Bitfield::full(self.lengths.num_pieces());
            full.set(piece.get(), false);
            // Same length as the torrent: cannot be refused.
            let _ = self.peer_bitfield(peer, &full);
            return;
        }
        let removed = match self.peers.get_mut(&peer).map(|st| &mut st.has) {
            Some(PeerHas::Some(bf)) => bf.set(piece.get(), false),
            _ => false,
        };
        if removed {
            self.remove_availability(peer, piece.get());
        }
    }

    /// A peer is gone: its availability is forgotten and every block it was
    /// asked for is free again (or left to its other requesters). Returns the
    /// released blocks.
    pub fn peer_removed(&mut self, peer: PeerKey) -> Vec<BlockInfo> {
        self.forget_has(peer);
        let Some(st) = self.peers.remove(&peer) else {
            return Vec::new();
        };
        if st.source {
            self.source_peers -= 1;
        }
        let mut released = Vec::with_capacity(st.requests.len());
        for (p, i) in st.requests {
            self.unrequest_block(peer, p, i);
            released.extend(self.block_info(p, i));
        }
        released
    }

    // ----- priorities -----

    /// Sets the priority of the pieces in `range` (clipped to the torrent).
    /// Requests in pieces that become `Skip` are released and returned, so
    /// the session can cancel them; blocks already received are kept.
    pub fn set_priority(&mut self, range: Range<u32>, prio: Priority) -> Vec<(PeerKey, BlockInfo)> {
        let end = range.end.min(self.lengths.num_pieces());
        let mut cancelled = Vec::new();
        for p in range.start..end {
            let old = self.priority[p as usize];
            if old == prio {
                continue;
            }
            let open = self.is_open(p);
            if open && old != Priority::Skip {
                self.bucket_remove(p);
            }
            let was_wanted = self.is_wanted(p);
            self.priority[p as usize] = prio;
            let now_wanted = self.is_wanted(p);
            if was_wanted != now_wanted {
                self.wanted_changed(p, now_wanted);
            }
            if open && prio != Priority::Skip {
                self.bucket_insert(p);
            }
            if prio == Priority::Skip {
                cancelled.extend(self.release_requests_in(p));
            }
        }
        cancelled
    }

    /// Replaces every piece's priority; see [`set_priority`](Self::set_priority).
    pub fn set_priorities(
        &mut self,
        priorities: &[Priority],
    ) -> Result<Vec<(PeerKey, BlockInfo)>, PickerError> {
        let n = self.lengths.num_pieces();
        if priorities.len() != n as usize {
            return Err(PickerError::PriorityCount {
                expected: n,
                got: priorities.len(),
            });
        }
        let mut cancelled = Vec::new();
        for (p, &prio) in (0..n).zip(priorities) {
            cancelled.extend(self.set_priority(p..p + 1, prio));
        }
        Ok(cancelled)
    }

    // ----- decisions -----

    /// Up to `max` blocks to request from `peer` (which must have unchoked
    /// us), recorded as requested at `now`. Empty when the peer is unknown or
    /// has nothing we still need; the session should not call again for this
    /// peer until something changes (a have, a release, a verified piece).
    pub fn pick(
        &mut self,
        peer: PeerKey,
        max: usize,
        now: Instant,
        rng: &mut fastrand::Rng,
    ) -> Vec<BlockInfo> {
        self.pick_inner(peer, None, None, max, now, rng)
    }

    /// Like [`pick`](Self::pick) but only in pieces no peer with a bitfield
    /// has (see [`peer_copies`](Self::peer_copies)): only seeds, web seeds or
    /// nobody we know hold them, so they are new to the peers around us; a
    /// piece not started yet is opened only if `open` accepts it. No endgame
    /// duplicates. A web seed takes these while the swarm shares the rest;
    /// `only` restricts it further as in
    /// [`pick_allowed_fast`](Self::pick_allowed_fast).
    pub fn pick_unshared(
        &mut self,
        peer: PeerKey,
        only: Option<&[PieceIndex]>,
        open: &dyn Fn(u32) -> bool,
        max: usize,
        now: Instant,
        rng: &mut fastrand::Rng,
    ) -> Vec<BlockInfo> {
        self.pick_inner(peer, only, Some(open), max, now, rng)
    }

    /// Like [`pick`](Self::pick) but only in `allowed` (the BEP 6 allowed-fast
    /// set a peer sent us), for use while that peer chokes us.
    pub fn pick_allowed_fast(
        &mut self,
        peer: PeerKey,
        allowed: &[PieceIndex],
        max: usize,
        now: Instant,
        rng: &mut fastrand::Rng,
    ) -> Vec<BlockInfo> {
        self.pick_inner(peer, Some(allowed), None, max, now, rng)
    }

    /// Lengthens a web seed's run: every block of the pieces right after
    /// `after`, in order, recorded as requested by `peer` at `now`, for as
    /// long as each next piece is open (nobody has requested or received
    /// any of its blocks), wanted (not had, not skipped), held by `peer`,
    /// accepted by `unshared` when given (no downloading peer has it and the
    /// filter accepts it, as in [`pick_unshared`](Self::pick_unshared)) and
    /// fits whole in `max` blocks. Stops at the first piece that does not,
    /// so the pieces returned and `after` are consecutive: one HTTP range.
    pub fn pick_following(
        &mut self,
        peer: PeerKey,
        after: PieceIndex,
        unshared: Option<&dyn Fn(u32) -> bool>,
        max: usize,
        now: Instant,
    ) -> Vec<BlockInfo> {
        let mut out = Vec::new();
        let Some(mut st) = self.peers.remove(&peer) else {
            return out;
        };
        let mut p = after.get();
        while let Some(next) = p
            .checked_add(1)
            .and_then(|n| self.lengths.validate_piece(n))
        {
            p = next.get();
            let blocks = self.lengths.blocks_in_piece(next) as usize;
            if out.len() + blocks > max
                || !self.is_open(p)
                || !self.is_wanted(p)
                || !st.has.get(p)
                || unshared.is_some_and(|keep| self.copies(p) != 0 || !keep(p))
            {
                break;
            }
            self.open_piece(p);
            if let Some(part) = self.partials.get_mut(&p) {
                take_free_blocks(&self.lengths, p, part, peer, now, max, &mut out, &mut st);
            }
        }
        self.peers.insert(peer, st);
        out
    }

    // ----- request and piece outcomes -----

    /// A block arrived from `peer`. See [`BlockOutcome`].
    pub fn block_received(&mut self, peer: PeerKey, block: BlockInfo) -> BlockOutcome {
        let p = block.piece.get();
        let i = block.index_in_piece();
        if self.lengths.block(block.piece, i) != Some(block) {
            return BlockOutcome::Unrequested;
        }
        if self.have.get(p) {
            return BlockOutcome::Duplicate;
        }
        let Some(part) = self.partials.get_mut(&p) else {
            return BlockOutcome::Unrequested;
        };
        let slot = &mut part.blocks[i as usize];
        let requesters = match slot {
            BlockState::Free => return BlockOutcome::Unrequested,
            BlockState::Received(_) => return BlockOutcome::Duplicate,
            BlockState::Requested(list) => {
                if !list.iter().any(|&(q, _)| q == peer) {
                    return BlockOutcome::Unrequested;
                }
                std::mem::take(list)
            }
        };
        *slot = BlockState::Received(peer);
        part.received += 1;
        let piece_complete = part.is_complete();
        let mut cancel = Vec::new();
        for (q, _) in requesters {
            if let Some(st) = self.peers.get_mut(&q) {
                st.requests.remove(&(p, i));
            }
            if q != peer {
                cancel.push(q);
            }
        }
        BlockOutcome::Accepted {
            piece_complete,
            cancel,
        }
    }

    /// The peer rejected a request (BEP 6 reject, or choked us without the
    /// Fast extension): the block is free again unless others requested it.
    /// Returns false when no such request was outstanding.
    pub fn request_rejected(&mut self, peer: PeerKey, block: BlockInfo) -> bool {
        self.release_request(peer, block)
    }

    /// We cancelled a request (the session no longer wants it from this
    /// peer). Returns false when no such request was outstanding.
    pub fn request_cancelled(&mut self, peer: PeerKey, block: BlockInfo) -> bool {
        self.release_request(peer, block)
    }

    /// Releases every request made at or before `now - timeout` and returns
    /// them, so the session can cancel them (and count the peer as slow).
    pub fn timed_out(&mut self, now: Instant, timeout: Duration) -> Vec<(PeerKey, BlockInfo)> {
        let peers: Vec<PeerKey> = self.peers.keys().copied().collect();
        peers
            .into_iter()
            .flat_map(|peer| {
                self.peer_timed_out(peer, now, timeout)
                    .into_iter()
                    .map(move |b| (peer, b))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Like [`timed_out`](Self::timed_out), for one peer's requests only.
    pub fn peer_timed_out(
        &mut self,
        peer: PeerKey,
        now: Instant,
        timeout: Duration,
    ) -> Vec<BlockInfo> {
        let Some(st) = self.peers.get(&peer) else {
            return Vec::new();
        };
        let expired: Vec<(u32, u32)> = st
            .requests
            .iter()
            .copied()
            .filter(|&(p, i)| {
                self.request_time(peer, p, i)
                    .is_some_and(|t| t + timeout <= now)
            })
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for (p, i) in expired {
            if let Some(st) = self.peers.get_mut(&peer) {
                st.requests.remove(&(p, i));
            }
            self.unrequest_block(peer, p, i);
            out.extend(self.block_info(p, i));
        }
        out
    }

    /// When the oldest outstanding request will time out, if any.
    pub fn next_timeout(&self, timeout: Duration) -> Option<Instant> {
        self.partials
            .values()
            .flat_map(|part| part.blocks.iter())
            .filter_map(|b| match b {
                BlockState::Requested(list) => list.iter().map(|&(_, t)| t).min(),
                _ => None,
            })
            .min()
            .map(|t| t + timeout)
    }

    /// The session hashed a complete piece and it matched: we have it.
    pub fn piece_verified(&mut self, piece: PieceIndex) -> Result<(), PickerError> {
        let p = piece.get();
        if !self.partials.get(&p).is_some_and(Partial::is_complete) {
            return Err(PickerError::PieceNotComplete(p));
        }
        self.partials.remove(&p);
        let was_wanted = self.is_wanted(p);
        self.have.set(p, true);
        if was_wanted {
            self.wanted_changed(p, false);
        }
        Ok(())
    }

    /// The session hashed a complete piece and it did not match: every block
    /// is free again. Returns the peers that sent its blocks (sorted, without
    /// repeats), so the session can distrust them.
    pub fn piece_failed(&mut self, piece: PieceIndex) -> Result<Vec<PeerKey>, PickerError> {
        let p = piece.get();
        if !self.partials.get(&p).is_some_and(Partial::is_complete) {
            return Err(PickerError::PieceNotComplete(p));
        }
        let part = self
            .partials
            .remove(&p)
            .map(|part| part.blocks)
            .unwrap_or_default();
        // Inserted, not collected: collect() would sort first, one more copy
        // of the sort code in the wasm (BENCHMARKS.md row 7).
        let mut contributors = BTreeSet::new();
        contributors.extend(part.into_iter().filter_map(|b| match b {
            BlockState::Received(q) => Some(q),
            _ => None,
        }));
        if self.priority[p as usize] != Priority::Skip {
            self.bucket_insert(p);
        }
        Ok(contributors.into_iter().collect())
    }

    /// A piece we had read back wrong from storage (or a sent file changed
    /// under it): we no longer have it, and it is wanted again (open, in its
    /// bucket) unless its priority is [`Priority::Skip`]. Returns false, and
    /// changes nothing, when we did not have it.
    pub fn piece_lost(&mut self, piece: PieceIndex) -> bool {
        let p = piece.get();
        if !self.have.get(p) {
            return false;
        }
        self.have.set(p, false);
        if self.is_wanted(p) {
            self.wanted_changed(p, true);
            self.bucket_insert(p);
        }
        true
    }

    // ----- internals -----

    fn is_wanted(&self, p: u32) -> bool {
        !self.have.get(p) && self.priority[p as usize] != Priority::Skip
    }

    fn is_open(&self, p: u32) -> bool {
        !self.have.get(p) && !self.partials.contains_key(&p)
    }

    fn available(&self, p: u32) -> bool {
        self.have_all_peers > 0 || self.availability[p as usize] > 0
    }

    fn block_info(&self, p: u32, i: u32) -> Option<BlockInfo> {
        let piece = self.lengths.validate_piece(p)?;
        self.lengths.block(piece, i)
    }

    fn request_time(&self, peer: PeerKey, p: u32, i: u32) -> Option<Instant> {
        match self.partials.get(&p)?.blocks.get(i as usize)? {
            BlockState::Requested(list) => list.iter().find(|&&(q, _)| q == peer).map(|&(_, t)| t),
            _ => None,
        }
    }

    fn peer_entry(&mut self, peer: PeerKey) -> &mut PeerState {
        self.peers.entry(peer).or_insert_with(|| PeerState {
            has: PeerHas::Some(Bitfield::new(self.lengths.num_pieces())),
            interesting: 0,
            requests: BTreeSet::new(),
            open_miss: [None; CLASSES],
            source: false,
        })
    }

    /// Subtracts a known peer's pieces from availability and leaves it with
    /// an empty bitfield (its requests are kept).
    fn forget_has(&mut self, peer: PeerKey) {
        let n = self.lengths.num_pieces();
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        let old = std::mem::replace(&mut st.has, PeerHas::Some(Bitfield::new(n)));
        st.interesting = 0;
        let source = st.source;
        match old {
            PeerHas::All => self.have_all_peers -= 1,
            PeerHas::Some(bf) => {
                for p in bf.iter_ones() {
                    if source {
                        self.source_copies[p as usize] -= 1;
                    }
                    self.change_availability(p, false);
                }
            }
        }
    }

    fn add_availability(&mut self, peer: PeerKey, p: u32) {
        if self.peers.get(&peer).is_some_and(|st| st.source) {
            self.source_copies[p as usize] += 1;
        }
        self.change_availability(p, true);
        if self.is_wanted(p) {
            if let Some(st) = self.peers.get_mut(&peer) {
                st.interesting += 1;
            }
        }
    }

    fn remove_availability(&mut self, peer: PeerKey, p: u32) {
        if self.peers.get(&peer).is_some_and(|st| st.source) {
            self.source_copies[p as usize] -= 1;
        }
        self.change_availability(p, false);
        if self.is_wanted(p) {
            if let Some(st) = self.peers.get_mut(&peer) {
                st.interesting = st.interesting.saturating_sub(1);
            }
        }
    }

    fn change_availability(&mut self, p: u32, up: bool) {
        let in_bucket = self.is_open(p) && self.priority[p as usize] != Priority::Skip;
        if in_bucket {
            self.bucket_remove(p);
        }
        let a = &mut self.availability[p as usize];
        *a = if up { *a + 1 } else { a.saturating_sub(1) };
        if in_bucket {
            self.bucket_place(p);
        }
    }

    /// A piece became wanted or stopped being wanted: keeps the remaining
    /// counters and the peers' interest counts in step.
    fn wanted_changed(&mut self, p: u32, wanted: bool) {
        let len = self
            .lengths
            .validate_piece(p)
            .map_or(0, |piece| self.lengths.piece_len(piece) as u64);
        if wanted {
            self.remaining.pieces += 1;
            self.remaining.bytes += len;
        } else {
            self.remaining.pieces -= 1;
            self.remaining.bytes -= len;
        }
        for st in self.peers.values_mut() {
            if let PeerHas::Some(bf) = &st.has {
                if bf.get(p) {
                    if wanted {
                        st.interesting += 1;
                    } else {
                        st.interesting -= 1;
                    }
                }
            }
        }
    }

    /// Puts an open wanted piece in its bucket as a possible new candidate.
    fn bucket_insert(&mut self, p: u32) {
        self.open_gen += 1;
        self.bucket_place(p);
    }

    /// Puts an open wanted piece in the bucket of its class and availability.
    fn bucket_place(&mut self, p: u32) {
        let Some(class) = self.priority[p as usize].class() else {
            return;
        };
        let a = self.availability[p as usize] as usize;
        let levels = &mut self.buckets[class];
        if levels.len() <= a {
            levels.resize_with(a + 1, Vec::new);
        }
        self.pos[p as usize] = levels[a].len() as u32;
        levels[a].push(p);
        self.open_count += 1;
    }

    fn bucket_remove(&mut self, p: u32) {
        let Some(class) = self.priority[p as usize].class() else {
            return;
        };
        let a = self.availability[p as usize] as usize;
        let i = self.pos[p as usize] as usize;
        let Some(bucket) = self.buckets[class].get_mut(a) else {
            return;
        };
        if bucket.get(i) != Some(&p) {
            return;
        }
        bucket.swap_remove(i);
        if let Some(&moved) = bucket.get(i) {
            self.pos[moved as usize] = i as u32;
        }
        self.open_count -= 1;
    }

    /// Moves an open piece into the partial table (all blocks free).
    fn open_piece(&mut self, p: u32) {
        self.bucket_remove(p);
        let blocks = self
            .lengths
            .validate_piece(p)
            .map_or(0, |piece| self.lengths.blocks_in_piece(piece));
        self.partials.insert(p, Partial::new(blocks));
    }

    /// Removes `peer` from a block's requesters (the caller has already
    /// removed the request from the peer's set). A block left without
    /// requesters becomes free; a partial piece left with only free blocks
    /// becomes open again.
    fn unrequest_block(&mut self, peer: PeerKey, p: u32, i: u32) {
        let Some(part) = self.partials.get_mut(&p) else {
            return;
        };
        let Some(slot) = part.blocks.get_mut(i as usize) else {
            return;
        };
        if let BlockState::Requested(list) = slot {
            list.retain(|&(q, _)| q != peer);
            if list.is_empty() {
                *slot = BlockState::Free;
                part.free += 1;
            }
        }
        if part.free as usize == part.blocks.len() {
            self.partials.remove(&p);
            self.bucket_insert(p);
        }
    }

    fn release_request(&mut self, peer: PeerKey, block: BlockInfo) -> bool {
        let key = (block.piece.get(), block.index_in_piece());
        let removed = self
            .peers
            .get_mut(&peer)
            .is_some_and(|st| st.requests.remove(&key));
        if removed {
            self.unrequest_block(peer, key.0, key.1);
        }
        removed
    }

    /// Releases every request in a piece; returns them.
    fn release_requests_in(&mut self, p: u32) -> Vec<(PeerKey, BlockInfo)> {
        let Some(part) = self.partials.get(&p) else {
            return Vec::new();
        };
        let requests: Vec<(PeerKey, u32)> = part
            .blocks
            .iter()
            .enumerate()
            .flat_map(|(i, b)| match b {
                BlockState::Requested(list) => list.iter().map(|&(q, _)| (q, i as u32)).collect(),
                _ => Vec::new(),
            })
            .collect();
        let mut out = Vec::with_capacity(requests.len());
        for (q, i) in requests {
            if let Some(st) = self.peers.get_mut(&q) {
                st.requests.remove(&(p, i));
            }
            self.unrequest_block(q, p, i);
            out.extend(self.block_info(p, i).map(|b| (q, b)));
        }
        out
    }

    fn pick_inner(
        &mut self,
        peer: PeerKey,
        only: Option<&[PieceIndex]>,
        unshared: Option<&dyn Fn(u32) -> bool>,
        max: usize,
        now: Instant,
        rng: &mut fastrand::Rng,
    ) -> Vec<BlockInfo> {
        let mut out = Vec::new();
        if max == 0 || self.remaining.pieces == 0 {
            return out;
        }
        // Take the peer out of the table while picking, so its pieces can be
        // read while the partial table and buckets change.
        let Some(mut st) = self.peers.remove(&peer) else {
            return out;
        };
        let allowed = |p: u32| only.is_none_or(|list| list.iter().any(|a| a.get() == p));
        for class in (0..CLASSES).rev() {
            // Started pieces first.
            for (&p, part) in self.partials.iter_mut() {
                if out.len() >= max {
                    break;
                }
                if part.free == 0
                    || self.priority[p as usize].class() != Some(class)
                    || !st.has.get(p)
                    || !allowed(p)
                    || (unshared.is_some()
                        && self.availability[p as usize] > self.source_copies[p as usize])
                {
                    continue;
                }
                take_free_blocks(&self.lengths, p, part, peer, now, max, &mut out, &mut st);
            }
            // Then new pieces, rarest first.
            while out.len() < max {
                let next = match (only, unshared) {
                    // The unshared level is one bucket: no miss memo (it
                    // would hide the other levels from a later full pick).
                    (None, Some(keep)) => {
                        let (next, scanned) = self.find_unshared(&st.has, class, keep, rng);
                        self.scanned += scanned;
                        next
                    }
                    (None, None) if st.open_miss[class] == Some(self.open_gen) => None,
                    (None, None) => {
                        let (next, scanned) = self.find_open(&st.has, class, rng);
                        self.scanned += scanned;
                        if next.is_none() {
                            st.open_miss[class] = Some(self.open_gen);
                        }
                        next
                    }
                    (Some(list), _) => list.iter().map(|a| a.get()).find(|&p| {
                        st.has.get(p)
                            && self.is_open(p)
                            && self.priority[p as usize].class() == Some(class)
                            && unshared.is_none_or(|keep| self.copies(p) == 0 && keep(p))
                    }),
                };
                let Some(p) = next else {
                    break;
                };
                self.open_piece(p);
                if let Some(part) = self.partials.get_mut(&p) {
                    take_free_blocks(&self.lengths, p, part, peer, now, max, &mut out, &mut st);
                }
            }
        }
        if out.len() < max {
            // Endgame is judged with this peer's free blocks already taken.
            self.peers.insert(peer, st);
            let endgame = self.in_endgame();
            let Some(mut st) = self.peers.remove(&peer) else {
                return out;
            };
            if endgame && unshared.is_none() {
                self.pick_endgame(peer, &mut st, &allowed, max, now, &mut out);
            }
            self.peers.insert(peer, st);
        } else {
            self.peers.insert(peer, st);
        }
        out
    }

    /// The rarest open piece of a class that the peer has, starting each
    /// bucket's scan at a random position; also returns how many bucket
    /// entries were examined.
    fn find_open(
        &self,
        has: &PeerHas,
        class: usize,
        rng: &mut fastrand::Rng,
    ) -> (Option<u32>, u64) {
        let mut scanned = 0u64;
        for (a, bucket) in self.buckets[class].iter().enumerate() {
            if bucket.is_empty() {
                continue;
            }
            match has {
                PeerHas::All => return (Some(bucket[rng.usize(..bucket.len())]), scanned + 1),
                PeerHas::Some(bf) => {
                    // Pieces nobody with a bitfield has cannot be in this one.
                    if a == 0 {
                        continue;
                    }
                    let start = rng.usize(..bucket.len());
                    let (tail, head) = bucket.split_at(start);
                    for &p in head.iter().chain(tail) {
                        scanned += 1;
                        if bf.get(p) {
                            return (Some(p), scanned);
                        }
                    }
                }
            }
        }
        (None, scanned)
    }

    /// A random open piece of a class that the peer has, no downloading peer
    /// has (its availability is all sources', so it sits at most at the
    /// level of the number of sources) and `keep` accepts; also returns how
    /// many bucket entries were examined.
    fn find_unshared(
        &self,
        has: &PeerHas,
        class: usize,
        keep: &dyn Fn(u32) -> bool,
        rng: &mut fastrand::Rng,
    ) -> (Option<u32>, u64) {
        let mut scanned = 0u64;
        let levels = self.buckets[class]
            .iter()
            .take(self.source_peers as usize + 1);
        for bucket in levels.filter(|b| !b.is_empty()) {
            let start = rng.usize(..bucket.len());
            let (tail, head) = bucket.split_at(start);
            for &p in head.iter().chain(tail) {
                scanned += 1;
                if has.get(p) && self.copies(p) == 0 && keep(p) {
                    return (Some(p), scanned);
                }
            }
        }
        (None, scanned)
    }

    fn pick_endgame(
        &mut self,
        peer: PeerKey,
        st: &mut PeerState,
        allowed: &dyn Fn(u32) -> bool,
        max: usize,
        now: Instant,
        out: &mut Vec<BlockInfo>,
    ) {
        for class in (0..CLASSES).rev() {
            // Blocks with the fewest requesters first.
            let most = MAX_REQUESTERS_PER_BLOCK + usize::from(st.source);
            for requesters in 1..most {
                for (&p, part) in self.partials.iter_mut() {
                    if self.priority[p as usize].class() != Some(class)
                        || !st.has.get(p)
                        || !allowed(p)
                    {
                        continue;
                    }
                    for (i, slot) in part.blocks.iter_mut().enumerate() {
                        if out.len() >= max {
                            return;
                        }
                        let BlockState::Requested(list) = slot else {
                            continue;
                        };
                        if list.len() != requesters || list.iter().any(|&(q, _)| q == peer) {
                            continue;
                        }
                        let Some(block) = self
                            .lengths
                            .validate_piece(p)
                            .and_then(|piece| self.lengths.block(piece, i as u32))
                        else {
                            continue;
                        };
                        list.push((peer, now));
                        st.requests.insert((p, i as u32));
                        out.push(block);
                    }
                }
            }
        }
    }
}

/// Requests free blocks of a partial piece from `peer`, in order, until `out`
/// holds `max` blocks.
#[allow(clippy::too_many_arguments)]
fn take_free_blocks(
    lengths: &Lengths,
    p: u32,
    part: &mut Partial,
    peer: PeerKey,
    now: Instant,
    max: usize,
    out: &mut Vec<BlockInfo>,
    st: &mut PeerState,
) {
    let Some(piece) = lengths.validate_piece(p) else {
        return;
    };
    for (i, slot) in part.blocks.iter_mut().enumerate() {
        if out.len() >= max || part.free == 0 {
            return;
        }
        if *slot != BlockState::Free {
            continue;
        }
        let Some(block) = lengths.block(piece, i as u32) else {
            continue;
        };
        *slot = BlockState::Requested(vec![(peer, now)]);
        part.free -= 1;
        st.requests.insert((p, i as u32));
        out.push(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: PeerKey = PeerKey(1);
    const B: PeerKey = PeerKey(2);
    const C: PeerKey = PeerKey(3);
    const KIB16: u64 = 16 * 1024;

    fn t(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    /// `pieces` pieces of `blocks` blocks each, nothing had, all `Normal`.
    fn picker(pieces: u32, blocks: u32) -> Picker {
        let lengths =
            Lengths::new(pieces as u64 * blocks as u64 * KIB16, blocks as u64 * KIB16).unwrap();
        Picker::new(
            lengths,
            Bitfield::new(pieces),
            vec![Priority::Normal; pieces as usize],
        )
        .unwrap()
    }

    fn bits(len: u32, ones: impl IntoIterator<Item = u32>) -> Bitfield {
        let mut bf = Bitfield::new(len);
        for i in ones {
            bf.set(i, true);
        }
        bf
    }

    fn pieces_of(blocks: &[BlockInfo]) -> Vec<u32> {
        let mut v: Vec<u32> = blocks.iter().map(|b| b.piece.get()).collect();
        v.dedup();
        v
    }

    fn piece(p: &Picker, i: u32) -> PieceIndex {
        p.lengths().validate_piece(i).unwrap()
    }

    /// Receives every block and verifies the pieces that complete.
    fn receive_all(p: &mut Picker, peer: PeerKey, blocks: &[BlockInfo]) {
        for &b in blocks {
            match p.block_received(peer, b) {
                BlockOutcome::Accepted {
                    piece_complete: true,
                    ..
                } => p.piece_verified(b.piece).unwrap(),
                BlockOutcome::Accepted { .. } => {}
                other => panic!("block {b:?} was {other:?}"),
            }
        }
    }

    /// Checks every invariant stated in the module documentation.
    #[test]
    fn unshared_picks_skip_pieces_a_downloading_peer_has_and_pieces_not_ours() {
        let mut p = picker(6, 1);
        let mut rng = fastrand::Rng::with_seed(3);
        // A web seed still receiving its upload: pieces 0 to 3.
        p.mark_source(A);
        p.peer_bitfield(A, &bits(6, [0, 1, 2, 3])).unwrap();
        // A downloader has piece 1; a seed has everything.
        p.peer_bitfield(B, &bits(6, [1])).unwrap();
        p.peer_have_all(C);
        assert_eq!(
            p.peer_copies(piece(&p, 0)),
            0,
            "the web seed's copy is not shared"
        );
        assert_eq!(p.peer_copies(piece(&p, 1)), 1);
        let not_two = |q: u32| q != 2;
        let got: BTreeSet<u32> = p
            .pick_unshared(A, None, &not_two, 10, t(0), &mut rng)
            .iter()
            .map(|b| b.piece.get())
            .collect();
        assert_eq!(got, BTreeSet::from([0, 3]));
        // A plain pick still gets the rest.
        let rest: BTreeSet<u32> = p
            .pick(A, 10, t(0), &mut rng)
            .iter()
            .map(|b| b.piece.get())
            .collect();
        assert_eq!(rest, BTreeSet::from([1, 2]));
        check_invariants(&p);
    }

    #[test]
    fn a_run_takes_the_following_open_pieces_whole_up_to_the_bound() {
        let mut p = picker(10, 2);
        p.mark_source(A);
        p.peer_have_all(A);
        let got = p.pick_following(A, piece(&p, 2), None, 7, t(0));
        assert_eq!(
            pieces_of(&got),
            vec![3, 4, 5],
            "7 blocks hold 3 whole pieces"
        );
        assert_eq!(got.len(), 6);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
        assert_eq!(p.outstanding(A), 6);
        // The run's pieces are taken: a run after piece 2 again gets nothing.
        assert!(p.pick_following(A, piece(&p, 2), None, 7, t(0)).is_empty());
        assert!(p.pick_following(A, piece(&p, 9), None, 7, t(0)).is_empty());
        check_invariants(&p);
    }

    #[test]
    fn a_run_stops_at_a_piece_requested_elsewhere_had_skipped_or_not_held() {
        let mut p = picker(12, 1);
        p.mark_source(A);
        p.peer_bitfield(A, &bits(12, (0..12).filter(|&i| i != 10)))
            .unwrap();
        p.peer_have_all(B);
        let mut rng = fastrand::Rng::with_seed(1);
        // Piece 3 is had; piece 5 is requested from a peer; piece 7 is in
        // an unselected file; the web seed lacks piece 10.
        let three = p.pick_allowed_fast(B, &[piece(&p, 3)], 1, t(0), &mut rng);
        receive_all(&mut p, B, &three);
        let five = p.pick_allowed_fast(B, &[piece(&p, 5)], 1, t(0), &mut rng);
        assert_eq!(pieces_of(&five), vec![5]);
        p.set_priority(7..8, Priority::Skip);
        let run = |p: &mut Picker, after: u32| {
            let after = piece(p, after);
            pieces_of(&p.pick_following(A, after, None, 100, t(0)))
        };
        assert_eq!(run(&mut p, 1), vec![2], "stops at the piece we have");
        assert_eq!(run(&mut p, 3), vec![4], "stops at the peer's request");
        assert_eq!(run(&mut p, 5), vec![6], "stops at the skipped piece");
        assert_eq!(run(&mut p, 7), vec![8, 9], "stops where the seed has none");
        assert_eq!(run(&mut p, 10), vec![11]);
        // The peer's request was left alone.
        assert_eq!(p.requests(B), five);
        check_invariants(&p);
    }

    #[test]
    fn a_run_ends_with_the_short_last_piece() {
        // 3 pieces of 2 blocks and a last piece of 1 block and 100 bytes.
        let lengths = Lengths::new(3 * 2 * KIB16 + KIB16 + 100, 2 * KIB16).unwrap();
        let mut p = Picker::new(lengths, Bitfield::new(4), vec![Priority::Normal; 4]).unwrap();
        p.peer_have_all(A);
        let got = p.pick_following(A, piece(&p, 1), None, 10, t(0));
        assert_eq!(pieces_of(&got), vec![2, 3]);
        let last = got.last().copied().unwrap();
        assert_eq!((last.piece.get(), last.offset, last.len), (3, 16384, 100));
        check_invariants(&p);
    }

    #[test]
    fn an_unshared_run_stops_at_a_piece_a_downloader_has_or_the_filter_refuses() {
        let mut p = picker(8, 1);
        p.mark_source(A);
        p.peer_have_all(A);
        p.peer_bitfield(B, &bits(8, [3])).unwrap();
        let not_six = |q: u32| q != 6;
        let mut run =
            |after: u32| pieces_of(&p.pick_following(A, piece(&p, after), Some(&not_six), 9, t(0)));
        assert_eq!(run(0), vec![1, 2], "a downloader has piece 3");
        assert_eq!(run(3), vec![4, 5], "piece 6 is not ours");
        assert_eq!(run(6), vec![7]);
        check_invariants(&p);
    }

    fn check_invariants(p: &Picker) {
        let n = p.lengths.num_pieces();
        // Availability and interest recomputed from the peers.
        let mut avail = vec![0u32; n as usize];
        let mut all = 0;
        for st in p.peers.values() {
            match &st.has {
                PeerHas::All => all += 1,
                PeerHas::Some(bf) => {
                    for i in bf.iter_ones() {
                        avail[i as usize] += 1;
                    }
                    let interesting = bf.iter_ones().filter(|&i| p.is_wanted(i)).count();
                    assert_eq!(st.interesting as usize, interesting, "interest count");
                }
            }
        }
        assert_eq!(avail, p.availability, "availability");
        assert_eq!(all, p.have_all_peers, "have-all peers");
        let mut from_sources = vec![0u32; n as usize];
        for st in p.peers.values().filter(|st| st.source) {
            if let PeerHas::Some(bf) = &st.has {
                for i in bf.iter_ones() {
                    from_sources[i as usize] += 1;
                }
            }
        }
        assert_eq!(from_sources, p.source_copies, "source copies");
        let sources = p.peers.values().filter(|st| st.source).count() as u32;
        assert_eq!(sources, p.source_peers, "sources");
        // Buckets: each entry is an open wanted piece at its recorded place.
        let mut in_bucket = vec![false; n as usize];
        let mut count = 0;
        for (class, levels) in p.buckets.iter().enumerate() {
            for (a, bucket) in levels.iter().enumerate() {
                for (i, &q) in bucket.iter().enumerate() {
                    assert!(!in_bucket[q as usize], "piece {q} in two buckets");
                    in_bucket[q as usize] = true;
                    assert_eq!(p.priority[q as usize].class(), Some(class));
                    assert_eq!(p.availability[q as usize] as usize, a);
                    assert_eq!(p.pos[q as usize] as usize, i);
                    count += 1;
                }
            }
        }
        assert_eq!(count, p.open_count);
        // Each piece in exactly one state.
        let mut remaining = Remaining::default();
        for q in 0..n {
            let have = p.have.get(q);
            let partial = p.partials.contains_key(&q);
            assert!(!(have && partial), "piece {q} both had and partial");
            let open_wanted = !have && !partial && p.priority[q as usize] != Priority::Skip;
            assert_eq!(
                in_bucket[q as usize], open_wanted,
                "piece {q} bucket membership"
            );
            if p.is_wanted(q) {
                remaining.pieces += 1;
                remaining.bytes += p.lengths.piece_len(piece(p, q)) as u64;
            }
        }
        assert_eq!(remaining, p.remaining);
        // Each block of a partial piece in exactly one state, counted right,
        // and each request recorded on both sides.
        let mut requests = 0;
        for (&q, part) in &p.partials {
            assert_eq!(
                part.blocks.len() as u32,
                p.lengths.blocks_in_piece(piece(p, q))
            );
            let mut free = 0;
            let mut received = 0;
            for (i, b) in part.blocks.iter().enumerate() {
                match b {
                    BlockState::Free => free += 1,
                    BlockState::Received(_) => received += 1,
                    BlockState::Requested(list) => {
                        let sources = list
                            .iter()
                            .filter(|(q, _)| p.peers.get(q).is_some_and(|st| st.source))
                            .count();
                        assert!(
                            !list.is_empty()
                                && list.len() <= MAX_REQUESTERS_PER_BLOCK + sources.min(1)
                        );
                        let mut seen = BTreeSet::new();
                        for (peer, _) in list {
                            assert!(seen.insert(*peer), "peer twice on one block");
                            let st = p.peers.get(peer).expect("request owned by an unknown peer");
                            assert!(st.requests.contains(&(q, i as u32)));
                            requests += 1;
                        }
                    }
                }
            }
            assert_eq!(part.free, free);
            assert_eq!(part.received, received);
            assert!(
                free < part.blocks.len() as u32,
                "partial piece {q} with only free blocks"
            );
        }
        let recorded: usize = p.peers.values().map(|st| st.requests.len()).sum();
        assert_eq!(recorded, requests, "requests recorded on one side only");
    }

    #[test]
    fn a_lost_piece_is_wanted_and_picked_again() {
        // A complete download loses a piece read back wrong: it is no longer
        // complete, the piece is open again and a peer that has it gets it.
        let mut p = Picker::new(
            Lengths::new(4 * 2 * KIB16, 2 * KIB16).unwrap(),
            bits(4, 0..4),
            vec![Priority::Normal; 4],
        )
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(5);
        p.peer_have_all(A);
        assert!(p.is_complete());
        assert!(!p.is_interesting(A));
        assert!(p.piece_lost(piece(&p, 2)));
        assert!(!p.piece_lost(piece(&p, 2)), "lost once");
        assert!(!p.have().get(2));
        assert!(!p.is_complete());
        assert_eq!(p.wanted_remaining().pieces, 1);
        assert_eq!(p.wanted_remaining().bytes, 2 * KIB16);
        assert!(p.is_interesting(A));
        let picked = p.pick(A, 4, t(0), &mut rng);
        assert_eq!(pieces_of(&picked), vec![2]);
        check_invariants(&p);
        receive_all(&mut p, A, &picked);
        assert!(p.is_complete());
        check_invariants(&p);
    }

    #[test]
    fn a_lost_piece_of_a_skipped_file_is_not_fetched_again() {
        // Only what the selection wants is fetched again.
        let mut p = Picker::new(
            Lengths::new(4 * KIB16, KIB16).unwrap(),
            bits(4, [0, 3]),
            vec![
                Priority::Normal,
                Priority::Normal,
                Priority::Normal,
                Priority::Skip,
            ],
        )
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(5);
        p.peer_have_all(A);
        assert!(p.piece_lost(piece(&p, 3)));
        assert_eq!(p.wanted_remaining().pieces, 2, "pieces 1 and 2 only");
        let picked = p.pick(A, 8, t(0), &mut rng);
        assert!(!pieces_of(&picked).contains(&3));
        check_invariants(&p);
    }

    #[test]
    fn rarest_piece_is_picked_first() {
        // Piece 3 is held only by A; pieces 0..3 by everybody.
        let mut p = picker(4, 1);
        let mut rng = fastrand::Rng::with_seed(1);
        p.peer_have_all(A);
        p.peer_bitfield(B, &bits(4, 0..3)).unwrap();
        p.peer_bitfield(C, &bits(4, [0, 1, 2, 3])).unwrap();
        p.peer_have(B, piece(&p, 2));
        let picked = p.pick(A, 1, t(0), &mut rng);
        assert_eq!(pieces_of(&picked), vec![3]);
        check_invariants(&p);
    }

    #[test]
    fn availability_counts_have_all_peers_and_updates_on_have() {
        // A have-all peer counts for every piece; have messages add one each.
        let mut p = picker(4, 1);
        p.peer_have_all(A);
        p.peer_have(B, piece(&p, 1));
        p.peer_have(B, piece(&p, 1));
        assert_eq!(p.availability(piece(&p, 0)), 1);
        assert_eq!(p.availability(piece(&p, 1)), 2);
        p.peer_removed(A);
        assert_eq!(p.availability(piece(&p, 1)), 1);
        assert_eq!(p.availability(piece(&p, 0)), 0);
        check_invariants(&p);
    }

    #[test]
    fn random_tie_break_is_deterministic_for_a_seed() {
        // Equally rare pieces are chosen at random, and the same seed gives the
        // same choice.
        let first_pick = |seed: u64| {
            let mut p = picker(64, 1);
            p.peer_have_all(A);
            let mut rng = fastrand::Rng::with_seed(seed);
            p.pick(A, 4, t(0), &mut rng)
        };
        for seed in 0..8 {
            assert_eq!(first_pick(seed), first_pick(seed));
        }
        let distinct: BTreeSet<u32> = (0..32).map(|s| first_pick(s)[0].piece.get()).collect();
        assert!(
            distinct.len() > 8,
            "ties are not broken at random: {distinct:?}"
        );
    }

    #[test]
    fn only_selected_files_are_downloaded() {
        // Files: [0,3) selected, [3,6) not, [5,8) selected: piece 5 is shared
        // and must be downloaded; 3 and 4 never.
        let prios = priorities_from_files(
            8,
            [
                (0..3, Priority::Normal),
                (3..6, Priority::Skip),
                (5..8, Priority::Normal),
            ],
        );
        let lengths = Lengths::new(8 * KIB16, KIB16).unwrap();
        let mut p = Picker::new(lengths, Bitfield::new(8), prios).unwrap();
        p.peer_have_all(A);
        let mut rng = fastrand::Rng::with_seed(3);
        let picked = p.pick(A, 100, t(0), &mut rng);
        let mut got = pieces_of(&picked);
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2, 5, 6, 7]);
        assert_eq!(p.wanted_remaining().pieces, 6);
        receive_all(&mut p, A, &picked);
        assert!(p.is_complete());
        assert!(p.pick(A, 100, t(1), &mut rng).is_empty());
        assert!(!p.is_interesting(A));
        check_invariants(&p);
    }

    #[test]
    fn priorities_from_files_take_the_highest_over_shared_pieces() {
        // A piece touched by several files gets the most wanted of their priorities.
        let prios = priorities_from_files(
            5,
            [
                (0..1, Priority::Highest),
                (0..3, Priority::Skip),
                (2..4, Priority::High),
                (3..9, Priority::Normal),
            ],
        );
        use Priority::*;
        assert_eq!(prios, vec![Highest, Skip, High, High, Normal]);
    }

    #[test]
    fn manifest_pieces_come_before_everything_else() {
        // Highest pieces go first even when rarer Normal pieces exist, then High.
        let lengths = Lengths::new(6 * KIB16, KIB16).unwrap();
        use Priority::*;
        let prios = vec![Normal, Normal, High, Highest, Normal, High];
        let mut p = Picker::new(lengths, Bitfield::new(6), prios).unwrap();
        p.peer_have_all(A);
        p.peer_bitfield(B, &bits(6, [2, 3, 5])).unwrap();
        let mut rng = fastrand::Rng::with_seed(9);
        let first = p.pick(A, 1, t(0), &mut rng);
        assert_eq!(pieces_of(&first), vec![3]);
        let next = p.pick(A, 2, t(0), &mut rng);
        let mut got = pieces_of(&next);
        got.sort_unstable();
        assert_eq!(got, vec![2, 5]);
        let rest = p.pick(A, 10, t(0), &mut rng);
        assert!(pieces_of(&rest).iter().all(|&q| [0, 1, 4].contains(&q)));
        check_invariants(&p);
    }

    #[test]
    fn partial_pieces_are_finished_before_new_ones_are_started() {
        // B gets the rest of the piece A started, although another piece is rarer.
        let mut p = picker(3, 4);
        let mut rng = fastrand::Rng::with_seed(5);
        p.peer_have_all(A);
        p.peer_have_all(B);
        p.peer_bitfield(C, &bits(3, [0, 1])).unwrap();
        let a = p.pick(A, 2, t(0), &mut rng);
        assert_eq!(pieces_of(&a), vec![2], "rarest first");
        let b = p.pick(B, 2, t(0), &mut rng);
        assert_eq!(pieces_of(&b), vec![2]);
        assert_eq!(
            b.iter().map(|x| x.index_in_piece()).collect::<Vec<_>>(),
            vec![2, 3]
        );
        check_invariants(&p);
    }

    #[test]
    fn dropped_peers_blocks_are_picked_again_by_another_peer() {
        // When A goes away, B is given exactly the blocks A had been asked for.
        let mut p = picker(2, 4);
        let mut rng = fastrand::Rng::with_seed(11);
        p.peer_have_all(A);
        p.peer_have_all(B);
        let a = p.pick(A, 8, t(0), &mut rng);
        assert_eq!(a.len(), 8);
        receive_all(&mut p, A, &a[..3]);
        let mut lost = a[3..].to_vec();
        lost.sort();
        let released = p.peer_removed(A);
        assert_eq!(released, lost);
        assert_eq!(p.outstanding(A), 0);
        let mut b = p.pick(B, 8, t(1), &mut rng);
        b.sort();
        assert_eq!(b, lost);
        check_invariants(&p);
    }

    #[test]
    fn endgame_duplicates_requests_and_cancels_the_losers() {
        // With every block requested, B and C get duplicates; the first copy
        // to arrive wins and the others are to be cancelled.
        let mut p = picker(1, 2);
        let mut rng = fastrand::Rng::with_seed(2);
        for peer in [A, B, C] {
            p.peer_have_all(peer);
        }
        p.peer_have_all(PeerKey(4));
        let a = p.pick(A, 2, t(0), &mut rng);
        assert_eq!(a.len(), 2);
        assert!(p.in_endgame());
        let b = p.pick(B, 2, t(0), &mut rng);
        assert_eq!(b, a);
        let c = p.pick(C, 2, t(0), &mut rng);
        assert_eq!(c, a);
        // At most MAX_REQUESTERS_PER_BLOCK requesters per block…
        assert!(p.pick(PeerKey(4), 2, t(0), &mut rng).is_empty());
        // … and a web seed, which never goes away.
        let web = PeerKey(5);
        p.mark_source(web);
        p.peer_have_all(web);
        assert_eq!(p.pick(web, 2, t(0), &mut rng), a);
        check_invariants(&p);
        match p.block_received(B, a[0]) {
            BlockOutcome::Accepted {
                piece_complete: false,
                cancel,
            } => assert_eq!(cancel, vec![A, C, web]),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.block_received(A, a[0]), BlockOutcome::Duplicate);
        assert_eq!(p.outstanding(A), 1);
        assert_eq!(p.outstanding(C), 1);
        check_invariants(&p);
    }

    #[test]
    fn failed_piece_is_picked_again_and_its_contributors_are_reported() {
        // A bad piece goes back to free and names every peer that sent a block.
        let mut p = picker(1, 3);
        let mut rng = fastrand::Rng::with_seed(4);
        p.peer_have_all(A);
        p.peer_have_all(B);
        let a = p.pick(A, 2, t(0), &mut rng);
        let b = p.pick(B, 1, t(0), &mut rng);
        assert_eq!(b[0].index_in_piece(), 2, "B finishes the piece A started");
        for blk in &a {
            assert!(matches!(
                p.block_received(A, *blk),
                BlockOutcome::Accepted { .. }
            ));
        }
        assert_eq!(
            p.piece_verified(piece(&p, 0)),
            Err(PickerError::PieceNotComplete(0))
        );
        assert_eq!(
            p.block_received(B, b[0]),
            BlockOutcome::Accepted {
                piece_complete: true,
                cancel: vec![]
            }
        );
        assert_eq!(p.piece_failed(piece(&p, 0)), Ok(vec![A, B]));
        check_invariants(&p);
        let again = p.pick(B, 3, t(1), &mut rng);
        assert_eq!(again.len(), 3);
        receive_all(&mut p, B, &again);
        assert!(p.is_complete());
        check_invariants(&p);
    }

    #[test]
    fn rejected_and_timed_out_requests_are_free_again() {
        // A reject frees one block; the timeout frees the requests older than it.
        let mut p = picker(1, 4);
        let mut rng = fastrand::Rng::with_seed(6);
        p.peer_have_all(A);
        p.peer_have_all(B);
        let early = p.pick(A, 2, t(0), &mut rng);
        let late = p.pick(A, 2, t(10), &mut rng);
        assert!(p.request_rejected(A, early[0]));
        assert!(!p.request_rejected(A, early[0]), "already released");
        assert!(!p.request_cancelled(B, early[1]), "never requested from B");
        assert_eq!(p.next_timeout(Duration::from_secs(30)), Some(t(30)));
        let expired = p.timed_out(t(35), Duration::from_secs(30));
        assert_eq!(expired, vec![(A, early[1])]);
        assert_eq!(p.requests(A), late);
        // Only the two free blocks: B is not given duplicates before them.
        let b = p.pick(B, 2, t(36), &mut rng);
        assert_eq!(b, early);
        assert!(p.in_endgame());
        check_invariants(&p);
    }

    #[test]
    fn allowed_fast_pieces_are_the_only_ones_picked_while_choked() {
        // Choked, only the peer's allowed-fast pieces are requested.
        let mut p = picker(10, 1);
        let mut rng = fastrand::Rng::with_seed(8);
        p.peer_have_all(A);
        let allowed = [piece(&p, 7), piece(&p, 2)];
        let got = p.pick_allowed_fast(A, &allowed, 10, t(0), &mut rng);
        let mut pieces = pieces_of(&got);
        pieces.sort_unstable();
        assert_eq!(pieces, vec![2, 7]);
        check_invariants(&p);
    }

    #[test]
    fn unrequested_and_duplicate_blocks_are_not_accepted() {
        // Data nobody asked this peer for is refused and changes nothing.
        let mut p = picker(2, 2);
        let mut rng = fastrand::Rng::with_seed(10);
        p.peer_have_all(A);
        p.peer_have_all(B);
        let blk = p.lengths().block(piece(&p, 0), 0).unwrap();
        assert_eq!(p.block_received(A, blk), BlockOutcome::Unrequested);
        let a = p.pick(A, 1, t(0), &mut rng);
        assert_eq!(p.block_received(B, a[0]), BlockOutcome::Unrequested);
        let wrong_len = BlockInfo { len: 5, ..a[0] };
        assert_eq!(p.block_received(A, wrong_len), BlockOutcome::Unrequested);
        assert!(matches!(
            p.block_received(A, a[0]),
            BlockOutcome::Accepted { .. }
        ));
        assert_eq!(p.block_received(A, a[0]), BlockOutcome::Duplicate);
        check_invariants(&p);
    }

    #[test]
    fn deselecting_a_file_cancels_its_requests_and_keeps_received_blocks() {
        // Requests in pieces that become Skip are returned for cancelling.
        let mut p = picker(2, 2);
        let mut rng = fastrand::Rng::with_seed(12);
        p.peer_have_all(A);
        let a = p.pick(A, 4, t(0), &mut rng);
        receive_all(&mut p, A, &a[..1]);
        let first = a[0].piece.get();
        let cancelled = p.set_priority(first..first + 1, Priority::Skip);
        assert_eq!(cancelled, vec![(A, a[1])]);
        assert_eq!(p.wanted_remaining().pieces, 1);
        assert!(p.pick(A, 4, t(0), &mut rng).is_empty() || p.in_endgame());
        check_invariants(&p);
        // Selecting it again resumes where it was.
        p.set_priority(first..first + 1, Priority::High);
        assert_eq!(p.pick(A, 4, t(1), &mut rng), vec![a[1]]);
        check_invariants(&p);
    }

    #[test]
    fn interest_follows_what_the_peer_has_that_we_still_want() {
        // A peer whose only wanted piece we verify stops being interesting.
        let mut p = picker(3, 1);
        let mut rng = fastrand::Rng::with_seed(13);
        p.peer_have(A, piece(&p, 1));
        assert!(p.is_interesting(A));
        assert!(!p.is_interesting(B));
        p.peer_have_all(B);
        let got = p.pick(A, 1, t(0), &mut rng);
        receive_all(&mut p, A, &got);
        assert!(!p.is_interesting(A));
        assert!(p.is_interesting(B));
        p.set_priority(0..3, Priority::Skip);
        assert!(!p.is_interesting(B));
        check_invariants(&p);
    }

    #[test]
    fn wrong_sizes_are_refused() {
        // Bitfields and priority lists must match the piece count.
        let lengths = Lengths::new(4 * KIB16, KIB16).unwrap();
        assert_eq!(
            Picker::new(lengths, Bitfield::new(3), vec![Priority::Normal; 4]).unwrap_err(),
            PickerError::BitfieldLength {
                expected: 4,
                got: 3
            }
        );
        assert!(matches!(
            Picker::new(lengths, Bitfield::new(4), vec![]),
            Err(PickerError::PriorityCount { .. })
        ));
        let mut p = picker(4, 1);
        assert!(p.peer_bitfield(A, &Bitfield::new(5)).is_err());
        assert!(p.set_priorities(&[Priority::Skip]).is_err());
    }

    #[test]
    fn pieces_already_had_are_never_picked() {
        // What we start with is not downloaded again.
        let lengths = Lengths::new(4 * KIB16, KIB16).unwrap();
        let mut p = Picker::new(lengths, bits(4, [0, 2]), vec![Priority::Normal; 4]).unwrap();
        p.peer_have_all(A);
        let mut rng = fastrand::Rng::with_seed(0);
        let mut got = pieces_of(&p.pick(A, 10, t(0), &mut rng));
        got.sort_unstable();
        assert_eq!(got, vec![1, 3]);
        assert_eq!(
            p.wanted_remaining(),
            Remaining {
                pieces: 2,
                bytes: 2 * KIB16
            }
        );
    }

    #[test]
    fn picking_in_a_large_torrent_stays_cheap() {
        // 65,536 pieces, 20 peers holding half of them each and a web seed:
        // a pick examines a handful of bucket entries, not the whole torrent.
        let n = 65_536u32;
        let lengths = Lengths::new(n as u64 * KIB16, KIB16).unwrap();
        let mut p = Picker::new(
            lengths,
            Bitfield::new(n),
            vec![Priority::Normal; n as usize],
        )
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(42);
        for k in 0..20 {
            let bf = bits(n, (0..n).filter(|_| rng.bool()));
            p.peer_bitfield(PeerKey(k), &bf).unwrap();
        }
        p.peer_have_all(PeerKey(99));
        let mut picked = 0;
        for i in 0..1_500u32 {
            let peer = if i % 5 == 0 {
                PeerKey(99)
            } else {
                PeerKey(i % 20)
            };
            let got = p.pick(peer, 4, t(0), &mut rng);
            picked += got.len();
            receive_all(&mut p, peer, &got);
        }
        assert_eq!(picked, 6_000);
        assert_eq!(p.wanted_remaining().pieces, n - 6_000);
        // About 2 entries per new piece for a peer holding half the pieces.
        let per_piece = p.scanned as f64 / picked as f64;
        assert!(
            per_piece < 4.0,
            "{per_piece} bucket entries scanned per piece"
        );
    }

    #[test]
    fn asking_again_a_peer_with_nothing_to_offer_scans_nothing() {
        // A peer whose only piece is taken costs one bucket scan, not one per
        // pick; a piece that opens again is found at once.
        let n = 4_096u32;
        let lengths = Lengths::new(n as u64 * 2 * KIB16, 2 * KIB16).unwrap();
        let mut p = Picker::new(
            lengths,
            Bitfield::new(n),
            vec![Priority::Normal; n as usize],
        )
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(14);
        p.peer_have_all(A);
        // Every other piece is held by one more peer, so B's searches have a
        // full bucket to look through.
        p.peer_bitfield(PeerKey(4), &bits(n, (0..n).filter(|&i| i != 77)))
            .unwrap();
        p.peer_bitfield(B, &bits(n, [77])).unwrap();
        p.peer_have(C, piece(&p, 77));
        let c = p.pick(C, 1, t(0), &mut rng);
        assert_eq!(pieces_of(&c), vec![77]);
        // B gets the other block of piece 77 from the partial table.
        assert_eq!(p.pick(B, 1, t(0), &mut rng).len(), 1);
        let before = p.scanned;
        assert!(p.pick(B, 4, t(0), &mut rng).is_empty() || p.in_endgame());
        let first = p.scanned - before;
        assert_eq!(first, n as u64 - 1, "one full scan of the bucket");
        for _ in 0..100 {
            p.pick(B, 4, t(0), &mut rng);
        }
        assert_eq!(p.scanned - before, first, "the failed search was repeated");
        p.peer_removed(C);
        let again = p.pick(B, 4, t(1), &mut rng);
        assert_eq!(again, c);
        check_invariants(&p);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Bitfield(u32, Vec<bool>),
        HaveAll(u32),
        HaveNone(u32),
        Have(u32, u32),
        DontHave(u32, u32),
        Remove(u32),
        Pick(u32, usize),
        Receive(u32, usize),
        Reject(u32, usize),
        Verify(usize, bool),
        Priority(u32, u32, u8),
        Tick(u64),
        MarkSource(u32),
        PickUnshared(u32, usize, u32),
        Lose(u32),
    }

    fn op(pieces: u32) -> impl Strategy<Value = Op> {
        let peer = 0u32..5;
        let pc = 0..pieces;
        prop_oneof![
            1 => (peer.clone(), proptest::collection::vec(any::<bool>(), pieces as usize))
                .prop_map(|(k, v)| Op::Bitfield(k, v)),
            1 => peer.clone().prop_map(Op::HaveAll),
            1 => peer.clone().prop_map(Op::HaveNone),
            1 => (peer.clone(), pc.clone()).prop_map(|(k, i)| Op::Have(k, i)),
            1 => (peer.clone(), pc.clone()).prop_map(|(k, i)| Op::DontHave(k, i)),
            1 => peer.clone().prop_map(Op::Remove),
            4 => (peer.clone(), 0usize..12).prop_map(|(k, m)| Op::Pick(k, m)),
            4 => (peer.clone(), 0usize..16).prop_map(|(k, i)| Op::Receive(k, i)),
            1 => (peer.clone(), 0usize..16).prop_map(|(k, i)| Op::Reject(k, i)),
            2 => (0usize..8, proptest::bool::weighted(0.8)).prop_map(|(i, ok)| Op::Verify(i, ok)),
            1 => (pc.clone(), 1u32..4, 0u8..4).prop_map(|(s, l, x)| Op::Priority(s, l, x)),
            1 => (0u64..40).prop_map(Op::Tick),
            1 => peer.clone().prop_map(Op::MarkSource),
            3 => (peer.clone(), 0usize..12, 1u32..4).prop_map(|(k, m, d)| Op::PickUnshared(k, m, d)),
            1 => pc.clone().prop_map(Op::Lose),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn invariants_hold_under_random_operations(
            seed in any::<u64>(),
            ops in proptest::collection::vec(op(9), 1..150),
        ) {
            // 9 pieces of 3 blocks, the last one short.
            let lengths = Lengths::new(8 * 3 * KIB16 + 20_000, 3 * KIB16).unwrap();
            let mut p = Picker::new(lengths, bits(9, [4]), vec![Priority::Normal; 9]).unwrap();
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut now = Instant::ZERO;
            let mut removed: BTreeSet<PeerKey> = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Bitfield(k, v) => {
                        let bf = bits(9, (0..9).filter(|&i| v[i as usize]));
                        p.peer_bitfield(PeerKey(k), &bf).unwrap();
                        removed.remove(&PeerKey(k));
                    }
                    Op::HaveAll(k) => { p.peer_have_all(PeerKey(k)); removed.remove(&PeerKey(k)); }
                    Op::HaveNone(k) => { p.peer_have_none(PeerKey(k)); removed.remove(&PeerKey(k)); }
                    Op::Have(k, i) => { p.peer_have(PeerKey(k), piece(&p, i)); removed.remove(&PeerKey(k)); }
                    Op::DontHave(k, i) => p.peer_dont_have(PeerKey(k), piece(&p, i)),
                    Op::Remove(k) => {
                        let before = p.requests(PeerKey(k));
                        let released = p.peer_removed(PeerKey(k));
                        prop_assert_eq!(before, released);
                        removed.insert(PeerKey(k));
                    }
                    Op::Pick(k, max) => {
                        let had = p.requests(PeerKey(k));
                        let got = p.pick(PeerKey(k), max, now, &mut rng);
                        prop_assert!(got.len() <= max);
                        for b in &got {
                            let q = b.piece;
                            prop_assert!(!p.have().get(q.get()), "verified piece picked");
                            prop_assert!(p.priority(q) != Priority::Skip, "skipped piece picked");
                            prop_assert!(p.peer_has(PeerKey(k), q), "piece the peer lacks picked");
                            prop_assert!(!had.contains(b), "block picked twice for one peer");
                        }
                        prop_assert!(!removed.contains(&PeerKey(k)) || got.is_empty());
                        if got.len() < max && !removed.contains(&PeerKey(k)) {
                            // Nothing this peer could have been given was left out.
                            for q in 0..9 {
                                let wanted = p.priority[q as usize] != Priority::Skip;
                                if !wanted || !p.peer_has(PeerKey(k), piece(&p, q)) {
                                    continue;
                                }
                                prop_assert!(!p.is_open(q) || p.have.get(q), "open piece {} missed", q);
                                if let Some(part) = p.partials.get(&q) {
                                    prop_assert_eq!(part.free, 0, "free block of piece {} missed", q);
                                }
                            }
                        }
                    }
                    Op::Receive(k, i) => {
                        let reqs = p.requests(PeerKey(k));
                        if let Some(&b) = reqs.get(i) {
                            let out = p.block_received(PeerKey(k), b);
                            prop_assert!(matches!(out, BlockOutcome::Accepted { .. }), "{:?}", out);
                        }
                    }
                    Op::Reject(k, i) => {
                        let reqs = p.requests(PeerKey(k));
                        if let Some(&b) = reqs.get(i) {
                            prop_assert!(p.request_rejected(PeerKey(k), b));
                        }
                    }
                    Op::Verify(i, ok) => {
                        let complete: Vec<u32> = p.partials.iter()
                            .filter(|(_, part)| part.is_complete()).map(|(&q, _)| q).collect();
                        if let Some(&q) = complete.get(i % complete.len().max(1)) {
                            let q = piece(&p, q);
                            if ok { p.piece_verified(q).unwrap(); } else { p.piece_failed(q).unwrap(); }
                        }
                    }
                    Op::Priority(s, l, x) => {
                        let prio = [Priority::Skip, Priority::Normal, Priority::High, Priority::Highest][x as usize];
                        p.set_priority(s..s + l, prio);
                    }
                    Op::Tick(secs) => {
                        now += Duration::from_secs(secs);
                        p.timed_out(now, Duration::from_secs(60));
                    }
                    Op::MarkSource(k) => {
                        p.mark_source(PeerKey(k));
                        removed.remove(&PeerKey(k));
                    }
                    Op::Lose(q) => {
                        let had = p.have.get(q);
                        prop_assert_eq!(p.piece_lost(piece(&p, q)), had);
                        prop_assert!(!p.have.get(q));
                    }
                    Op::PickUnshared(k, max, d) => {
                        // Ours: every d-th piece.
                        let ours = |q: u32| q % d == 0;
                        let open_before: Vec<bool> = (0..9).map(|q| p.is_open(q)).collect();
                        let copies: Vec<u32> = (0..9).map(|q| p.copies(q)).collect();
                        let got = p.pick_unshared(PeerKey(k), None, &ours, max, now, &mut rng);
                        prop_assert!(got.len() <= max);
                        for b in &got {
                            let q = b.piece.get();
                            prop_assert_eq!(copies[q as usize], 0, "piece {} is shared", q);
                            prop_assert!(!open_before[q as usize] || ours(q), "piece {} is not ours", q);
                            prop_assert!(p.peer_has(PeerKey(k), b.piece));
                        }
                    }
                }
                check_invariants(&p);
                for k in &removed {
                    prop_assert_eq!(p.outstanding(*k), 0, "removed peer owns requests");
                }
            }
        }
    }
}
