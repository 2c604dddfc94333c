//! One bundle: a thin dispatcher over its peers, web seeds, the picker, the
//! choker, the limiter, the tracker announcers and piece assembly.
//!
//! Policy lives in the parts: [`Peer`] checks and answers the wire protocol,
//! [`Picker`] chooses blocks, [`Choker`] chooses whom to serve, the token
//! buckets decide how fast, the [`Announcer`]s decide when to announce. The
//! session routes inputs to them and their decisions to outputs, and owns
//! what no single part can: piece assembly and verification, the pieces in
//! the hands of storage, and who is banned for sending bad data.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::engine::api::{
    AddBundle, BundleSource, CommandError, ConnId, Output, Role, StoreFailure,
};
use crate::engine::assembly::{Assembly, Source, Verdict};
use crate::engine::bitfield::Bitfield;
use crate::engine::choker::{Choker, ChokerConfig, PeerSnapshot};
use crate::engine::client::ClientConfig;
use crate::engine::event::{DropReason, Event, PauseReason, Progress};
use crate::engine::ids::{InfoHash, PeerId};
use crate::engine::lengths::{BlockInfo, Lengths, PieceIndex, BLOCK_SIZE};
use crate::engine::limiter::{Direction, Limiter, RateEstimator};
use crate::engine::loads::Loads;
use crate::engine::metafetch::{MetadataFetch, MetadataSource};
use crate::engine::metainfo::Info;
use crate::engine::peer::{OurExtensionIds, Peer, PeerEvent, PeerHas, Stage, MAX_QUEUED_REQUESTS};
use crate::engine::picker::{priorities_from_files, BlockOutcome, PeerKey, Picker, Priority};
use crate::engine::time::Instant;
use crate::engine::timer::{timer_enum, TimerTable};
use crate::engine::tracker::{AnnounceStats, Announcer};
use crate::engine::webseed::{
    assemble_fetch, assemble_prefix, Fetch, Owners, WebSeed, MAX_FETCH_LEN, MAX_RUN_PIECES,
};
use crate::engine::wire::extension::{LOCAL_LT_DONTHAVE_ID, LOCAL_UT_METADATA_ID};
use crate::engine::wire::{metadata_piece, ExtendedHandshake, Frame, Message, MetadataMessage};

/// Progress events go out this often while the bundle is active.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// A request unanswered this long is released to other peers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// A web seed fetch unanswered this long is abandoned (a whole range, up to
/// [`MAX_FETCH_LEN`](crate::engine::webseed::MAX_FETCH_LEN), per request).
pub const WEB_SEED_TIMEOUT: Duration = Duration::from_secs(60);
/// How often outstanding requests are checked for timeouts.
pub const REQUEST_CHECK: Duration = Duration::from_secs(5);

/// The ids of our extensions, as our extension handshake announces them.
const OUR_EXTENSIONS: OurExtensionIds = OurExtensionIds {
    ut_metadata: Some(LOCAL_UT_METADATA_ID),
    lt_donthave: Some(LOCAL_LT_DONTHAVE_ID),
};

timer_enum! {
    /// A session's own timers (its peers have theirs).
    pub enum SessionTimer {
        /// Next choke round.
        Choke,
        /// Next progress event.
        Progress,
        /// Retry what was held back: rate-limit tokens, a web seed's backoff.
        Wake,
        /// Check outstanding requests for timeouts.
        Requests,
        /// The oldest metadata request times out.
        Metadata,
    }
}

/// What the session needs from its client for one call: the time, where
/// outputs go, the seeded randomness, the global caps and the configuration.
pub struct Ctx<'a> {
    /// The current time.
    pub now: Instant,
    /// Outputs, in order.
    pub out: &'a mut VecDeque<Output>,
    /// The client's seeded generator.
    pub rng: &'a mut fastrand::Rng,
    /// The global and per-bundle caps.
    pub limiter: &'a mut Limiter,
    /// Configuration.
    pub config: &'a ClientConfig,
    /// The client's connection id counter.
    pub next_conn: &'a mut u64,
}

impl Ctx<'_> {
    /// A fresh connection id.
    pub fn new_conn(&mut self) -> ConnId {
        *self.next_conn += 1;
        ConnId(*self.next_conn)
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }
}

/// The part of a session that exists once the metadata is known.
#[derive(Debug)]
struct Ready {
    info: Info,
    info_bytes: Vec<u8>,
    picker: Picker,
    assembly: Assembly,
    completed: bool,
    /// Pieces read back wrong and not fetched again yet.
    damaged: BTreeSet<u32>,
}

impl Ready {
    fn lengths(&self) -> &Lengths {
        &self.info.lengths
    }

    /// Up to `want` blocks for `key`, only in `only` if given (allowed-fast
    /// pieces while choked), and if `unshared` is given only in pieces no
    /// downloading peer has, opening only those it says are ours (see
    /// [`Picker::pick_unshared`]). While pieces being
    /// assembled hold `max_partial` bytes, only those pieces are picked
    /// from, so memory stays bounded even with 16 MiB pieces and many peers.
    fn pick(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PeerKey,
        want: usize,
        only: Option<&[PieceIndex]>,
        unshared: Option<&Owners>,
    ) -> Vec<BlockInfo> {
        let (now, rng) = (ctx.now, &mut *ctx.rng);
        let open: Vec<PieceIndex>;
        let only = if self.assembly.partial_bytes() >= ctx.config.max_partial_bytes {
            open = self
                .assembly
                .partial_pieces()
                .filter(|p| only.is_none_or(|o| o.contains(p)))
                .collect();
            Some(open.as_slice())
        } else {
            only
        };
        match (only, unshared) {
            (_, Some(owners)) => {
                let ours = |p: u32| owners.is_ours(p);
                self.picker.pick_unshared(key, only, &ours, want, now, rng)
            }
            (Some(allowed), None) => self.picker.pick_allowed_fast(key, allowed, want, now, rng),
            (None, None) => self.picker.pick(key, want, now, rng),
        }
    }

    /// Lengthens a web seed's pick into a longer run: when `picked` ends
    /// with the last block of a piece, the open pieces right after it that
    /// `key` has and that are ours under `unshared` (see
    /// [`Picker::pick_following`]), whole, so that `picked` and the result
    /// hold at most `max` blocks. Nothing while pieces being assembled hold
    /// `max_partial` bytes (no new piece is opened then).
    fn pick_following(
        &mut self,
        ctx: &Ctx<'_>,
        key: PeerKey,
        picked: &[BlockInfo],
        max: usize,
        unshared: Option<&Owners>,
    ) -> Vec<BlockInfo> {
        let Some(&last) = picked.iter().max() else {
            return Vec::new();
        };
        let lengths = *self.lengths();
        let ends_piece = lengths
            .blocks_in_piece(last.piece)
            .checked_sub(1)
            .is_some_and(|i| last.index_in_piece() == i);
        if !ends_piece
            || picked.len() >= max
            || self.assembly.partial_bytes() >= ctx.config.max_partial_bytes
        {
            return Vec::new();
        }
        let max = max - picked.len();
        match unshared {
            Some(owners) => {
                let ours = |p: u32| owners.is_ours(p);
                self.picker
                    .pick_following(key, last.piece, Some(&ours), max, ctx.now)
            }
            None => self
                .picker
                .pick_following(key, last.piece, None, max, ctx.now),
        }
    }
}

/// Byte counters and rates.
#[derive(Debug, Default)]
struct Stats {
    downloaded_peers: u64,
    downloaded_server: u64,
    uploaded: u64,
    down_peers: RateEstimator,
    down_server: RateEstimator,
    up: RateEstimator,
}

/// One bundle, driven by the [`Client`](crate::engine::client::Client).
///
/// Like the client it is a state machine whose methods fall in groups:
///
/// - **getters**: [`info_hash`](Self::info_hash), [`is_paused`](Self::is_paused),
///   [`progress`](Self::progress), [`announce_stats`](Self::announce_stats),
///   [`next_timeout`](Self::next_timeout)…;
/// - **commands**: [`pause`](Self::pause), [`resume`](Self::resume),
///   [`remove`](Self::remove), [`set_selection`](Self::set_selection);
/// - **inputs**, one per kind of [`Input`](crate::engine::api::Input):
///   `add_peer` and `peer_*` for connections, `block_loaded`,
///   `load_failed`, `piece_stored`, `store_failed` for storage,
///   `web_seed_data`, `web_seed_failed`, and `handle_timeout`.
///
/// It has no `poll_*` of its own: every method takes a [`Ctx`] and appends
/// its outputs to the client's queue, in order. Each input ends with a
/// [`pump`](Self::pump), which does what the new state allows (choke round,
/// interest, requests, web seed fetches, uploads) and flushes the peers'
/// queued bytes within their send budgets.
#[derive(Debug)]
pub struct Session {
    info_hash: InfoHash,
    name: Option<String>,
    paused: Option<PauseReason>,
    ready: Option<Box<Ready>>,
    metadata: MetadataFetch,
    /// The have-bitfield given at add time for a magnet, checked once the
    /// metadata is known.
    early_have: Bitfield,
    selection: Option<Vec<usize>>,
    /// A magnet link's `so=` (BEP 53), applied once the file list is known
    /// unless the add command chose files itself.
    magnet_select: Vec<std::ops::RangeInclusive<u32>>,
    peers: BTreeMap<ConnId, Peer>,
    keys: BTreeMap<PeerKey, ConnId>,
    next_key: u32,
    web_seeds: BTreeMap<ConnId, WebSeed>,
    web_seed_urls: Vec<String>,
    /// Web seeds known to hold only some pieces (an availability server still
    /// receiving its upload), by URL; absent means every piece.
    web_seed_have: BTreeMap<String, Bitfield>,
    /// Tracker URLs of this bundle.
    pub(crate) trackers: Vec<String>,
    /// One announcer per tracker URL.
    pub(crate) announcers: BTreeMap<String, Announcer>,
    banned: BTreeSet<PeerId>,
    /// Blocks being loaded from storage, with the peers waiting for them.
    loads: Loads,
    choker: Choker,
    stats: Stats,
    timers: TimerTable<SessionTimer>,
    /// Round-robin start for requests and uploads, so caps are shared fairly.
    rotate: usize,
    /// Peers came, went or changed interest: the choker should look again.
    choke_dirty: bool,
    /// The figures last sent to the UI.
    last_progress: Option<Progress>,
}

impl Session {
    /// Builds a session from an add command.
    pub fn new(ctx: &mut Ctx<'_>, add: AddBundle) -> Result<Self, CommandError> {
        let AddBundle {
            source,
            role,
            have,
            selection,
            paused,
            client_trackers,
        } = add;
        let info_hash = source.info_hash();
        let magnet_select = match &source {
            BundleSource::Magnet(m) => m.select_only.clone(),
            BundleSource::Metainfo(_) => Vec::new(),
        };
        let (name, trackers, web_seed_urls, ready, early_have) = match source {
            BundleSource::Metainfo(m) => {
                let m = *m;
                let trackers = m.trackers();
                let ready = Ready::new(m.info, m.info_bytes, have, selection.as_deref())?;
                (
                    Some(ready.info.name.clone()),
                    trackers,
                    m.url_list,
                    Some(ready),
                    Bitfield::new(0),
                )
            }
            BundleSource::Magnet(m) => {
                if role == Role::Seed {
                    return Err(CommandError::MagnetSeed);
                }
                (
                    m.display_name.clone(),
                    m.trackers.clone(),
                    m.web_seeds.clone(),
                    None,
                    have,
                )
            }
        };
        if role == Role::Seed {
            if let Some(r) = &ready {
                let h = r.picker.have();
                if !h.is_full() {
                    return Err(CommandError::SeedIncomplete {
                        have: h.count_ones(),
                        total: h.len(),
                    });
                }
            }
        }
        let mut trackers_all: Vec<String> = Vec::new();
        let client = if client_trackers {
            ctx.config.trackers.as_slice()
        } else {
            &[]
        };
        for t in client.iter().chain(trackers.iter()) {
            let ws = t.starts_with("ws://") || t.starts_with("wss://");
            if ws && !trackers_all.contains(t) {
                trackers_all.push(t.clone());
            }
        }
        // Inserted, not collected: collect() would sort first, one more copy
        // of the sort code in the wasm (BENCHMARKS.md row 7).
        let mut announcers = BTreeMap::new();
        announcers.extend(
            trackers_all
                .iter()
                .map(|url| (url.clone(), Announcer::new(info_hash, ctx.config.peer_id))),
        );
        let mut session = Session {
            info_hash,
            name,
            paused: None,
            ready: ready.map(Box::new),
            metadata: MetadataFetch::new(info_hash),
            early_have,
            selection,
            magnet_select,
            peers: BTreeMap::new(),
            keys: BTreeMap::new(),
            next_key: 0,
            web_seeds: BTreeMap::new(),
            web_seed_urls,
            web_seed_have: BTreeMap::new(),
            trackers: trackers_all,
            announcers,
            banned: BTreeSet::new(),
            loads: Loads::default(),
            choker: Choker::new(ChokerConfig::default()),
            stats: Stats::default(),
            timers: TimerTable::default(),
            rotate: 0,
            choke_dirty: false,
            last_progress: None,
        };
        ctx.event(Event::BundleAdded {
            info_hash,
            name: session.name.clone(),
            total_length: session.ready.as_ref().map(|r| r.lengths().total_length()),
        });
        if paused {
            session.paused = Some(PauseReason::User);
            ctx.event(Event::Paused {
                info_hash,
                reason: PauseReason::User,
            });
        } else {
            session.start(ctx);
        }
        Ok(session)
    }

    // ----- getters -----

    /// The bundle.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Whether the bundle is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// Whether this connection belongs to the session.
    pub fn has_conn(&self, conn: ConnId) -> bool {
        self.peers.contains_key(&conn) || self.web_seeds.contains_key(&conn)
    }

    /// Whether a connection to `peer_id` is open or being set up.
    pub fn knows_peer(&self, peer_id: PeerId) -> bool {
        self.banned.contains(&peer_id) || self.peers.values().any(|p| p.peer_id() == Some(peer_id))
    }

    /// Peer connections, open or being set up.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The bundle's figures now.
    pub fn progress(&mut self, now: Instant) -> Progress {
        let (have_bytes, wanted_bytes, total_bytes) = match &self.ready {
            Some(r) => {
                let l = r.lengths();
                let have: u64 = r
                    .picker
                    .have()
                    .iter_ones()
                    .filter_map(|i| l.validate_piece(i))
                    .map(|p| l.piece_len(p) as u64)
                    .sum();
                let remaining = r.picker.wanted_remaining().bytes;
                let wanted_have: u64 = r
                    .picker
                    .have()
                    .iter_ones()
                    .filter_map(|i| l.validate_piece(i))
                    .filter(|&p| r.picker.priority(p) != Priority::Skip)
                    .map(|p| l.piece_len(p) as u64)
                    .sum();
                (have, wanted_have + remaining, l.total_length())
            }
            None => (0, 0, 0),
        };
        Progress {
            info_hash: self.info_hash,
            have_bytes,
            wanted_bytes,
            total_bytes,
            down_rate_peers: self.stats.down_peers.rate(now),
            down_rate_server: self.stats.down_server.rate(now),
            up_rate: self.stats.up.rate(now),
            downloaded_peers: self.stats.downloaded_peers,
            downloaded_server: self.stats.downloaded_server,
            uploaded: self.stats.uploaded,
            peers: self.peers.values().filter(|p| p.is_active()).count() as u32,
            paused: self.is_paused(),
            damaged: self.ready.as_ref().map_or(0, |r| r.damaged.len() as u32),
        }
    }

    /// Tells the UI the bundle's figures, unless they did not change since
    /// the last time.
    fn emit_progress(&mut self, ctx: &mut Ctx<'_>) {
        let progress = self.progress(ctx.now);
        if self.last_progress.as_ref() != Some(&progress) {
            self.last_progress = Some(progress.clone());
            ctx.event(Event::Progress(progress));
        }
    }

    /// What the next announce reports.
    pub fn announce_stats(&self) -> AnnounceStats {
        let left = self.ready.as_ref().map(|r| {
            let l = r.lengths();
            let have: u64 = r
                .picker
                .have()
                .iter_ones()
                .filter_map(|i| l.validate_piece(i))
                .map(|p| l.piece_len(p) as u64)
                .sum();
            l.total_length() - have
        });
        AnnounceStats {
            uploaded: self.stats.uploaded,
            downloaded: self.stats.downloaded_peers + self.stats.downloaded_server,
            left,
        }
    }

    /// How many more peer connections the session would like.
    pub fn wanted_offers(&self, max_peers: usize) -> usize {
        if self.is_paused() {
            return 0;
        }
        max_peers.saturating_sub(self.peers.len())
    }

    /// Whether this is a running download that still needs pieces (or the
    /// metadata) and has no connected peer: its announcers then re-announce
    /// soon (see [`Announcer::set_lonely`]). Offers awaiting an answer and
    /// connections still being set up do not count as connected.
    pub fn is_lonely(&self) -> bool {
        self.paused.is_none()
            && self.ready.as_ref().is_none_or(|r| !r.picker.is_complete())
            && !self.peers.values().any(Peer::is_active)
    }

    /// The earliest deadline of the session and its peers.
    pub fn next_timeout(&self) -> Option<Instant> {
        let peers = self.peers.values().filter_map(Peer::next_timeout).min();
        let announce = self
            .announcers
            .values()
            .filter_map(Announcer::poll_timeout)
            .min();
        [self.timers.next_timeout(), peers, announce]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- lifecycle -----

    /// Joins the swarm: announcers start, web seeds connect, timers arm.
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        for a in self.announcers.values_mut() {
            a.start(ctx.now);
        }
        if self.ready.as_ref().is_some_and(|r| !r.picker.is_complete()) {
            self.add_web_seeds(ctx);
        }
        self.choke_dirty = true;
        self.timers
            .set(SessionTimer::Progress, ctx.now + PROGRESS_INTERVAL);
    }

    fn add_web_seeds(&mut self, ctx: &mut Ctx<'_>) {
        let Some(ready) = self.ready.as_mut() else {
            return;
        };
        if !self.web_seeds.is_empty() {
            return;
        }
        for url in &self.web_seed_urls {
            let conn = ctx.new_conn();
            let key = PeerKey(self.next_key);
            self.next_key = self.next_key.wrapping_add(1);
            ready.picker.mark_source(key);
            match self.web_seed_have.get(url) {
                // Checked against the bundle when it was recorded.
                Some(have) => {
                    let _ = ready.picker.peer_bitfield(key, have);
                }
                None => ready.picker.peer_have_all(key),
            }
            self.keys.insert(key, conn);
            self.web_seeds
                .insert(conn, WebSeed::new(conn, key, url.clone()));
        }
    }

    /// What a web seed holds (an availability server that has part of the
    /// bundle): the picker asks it only for those pieces, so it is not
    /// tried, and dropped, for pieces it does not have yet. A web seed
    /// dropped after failures comes back. A full bitfield means every piece.
    pub fn web_seed_have(&mut self, ctx: &mut Ctx<'_>, url: &str, have: &Bitfield) {
        if !self.web_seed_urls.iter().any(|u| u == url) {
            return;
        }
        let Some(ready) = self.ready.as_mut() else {
            return;
        };
        if have.len() != ready.lengths().num_pieces() {
            return;
        }
        if have.is_full() {
            self.web_seed_have.remove(url);
        } else {
            self.web_seed_have.insert(url.to_owned(), have.clone());
        }
        let mut present = false;
        for seed in self.web_seeds.values_mut().filter(|s| s.url == url) {
            present = true;
            if have.is_full() {
                ready.picker.peer_have_all(seed.key);
            } else {
                // Same length as the bundle: cannot be refused.
                let _ = ready.picker.peer_bitfield(seed.key, have);
            }
            // Its failures were for pieces it did not have.
            seed.failures = 0;
            seed.retry_at = None;
        }
        if !present && self.paused.is_none() && !ready.picker.is_complete() {
            let conn = ctx.new_conn();
            let key = PeerKey(self.next_key);
            self.next_key = self.next_key.wrapping_add(1);
            ready.picker.mark_source(key);
            if have.is_full() {
                ready.picker.peer_have_all(key);
            } else {
                let _ = ready.picker.peer_bitfield(key, have);
            }
            self.keys.insert(key, conn);
            self.web_seeds
                .insert(conn, WebSeed::new(conn, key, url.to_owned()));
        }
        self.pump(ctx);
    }

    /// Pauses: chokes everyone, withdraws interest and requests, stops
    /// announcing, moves no bytes until resumed.
    pub fn pause(&mut self, ctx: &mut Ctx<'_>, reason: PauseReason) {
        if self.paused.is_some() {
            // A user pause over a disk-full one keeps the first reason.
            return;
        }
        self.paused = Some(reason);
        for a in self.announcers.values_mut() {
            a.stop(ctx.now);
        }
        for peer in self.peers.values_mut() {
            if peer.is_active() {
                // Every request is refused, allowed-fast ones included.
                peer.allowed_fast_out.clear();
                peer.choke(ctx.now);
                peer.set_interested(false);
            }
            if let Some(ready) = self.ready.as_mut() {
                for block in ready.picker.requests(peer.key) {
                    ready.picker.request_cancelled(peer.key, block);
                    peer.cancel(block);
                }
            }
        }
        // Connections still being set up are let go: they would only open
        // to sit idle.
        let signalling: Vec<ConnId> = self
            .peers
            .values()
            .filter(|p| p.stage == Stage::Signalling)
            .map(|p| p.conn)
            .collect();
        for conn in signalling {
            self.remove_peer(ctx, conn, DropReason::BundlePaused, true);
        }
        // The choker starts over on resume (its unchoked set is void now).
        self.choker = Choker::new(ChokerConfig::default());
        let seeds: Vec<ConnId> = self.web_seeds.keys().copied().collect();
        for conn in seeds {
            self.remove_peer(ctx, conn, DropReason::BundlePaused, true);
        }
        self.loads.clear();
        self.timers.stop(SessionTimer::Choke);
        self.timers.stop(SessionTimer::Wake);
        self.flush(ctx);
        ctx.event(Event::Paused {
            info_hash: self.info_hash,
            reason,
        });
        self.emit_progress(ctx);
    }

    /// Undoes a pause.
    pub fn resume(&mut self, ctx: &mut Ctx<'_>) {
        if self.paused.take().is_none() {
            return;
        }
        ctx.event(Event::Resumed {
            info_hash: self.info_hash,
        });
        self.start(ctx);
        self.pump(ctx);
    }

    /// Closes every connection and announces `stopped` (the client sends
    /// the announcers' last frames).
    pub fn remove(&mut self, ctx: &mut Ctx<'_>) {
        for a in self.announcers.values_mut() {
            a.stop(ctx.now);
        }
        let conns: Vec<ConnId> = self
            .peers
            .keys()
            .chain(self.web_seeds.keys())
            .copied()
            .collect();
        for conn in conns {
            ctx.out.push_back(Output::ClosePeer {
                conn,
                reason: DropReason::BundleRemoved,
            });
        }
        self.peers.clear();
        self.web_seeds.clear();
        ctx.event(Event::Removed {
            info_hash: self.info_hash,
        });
    }

    /// Changes which files to fetch.
    pub fn set_selection(
        &mut self,
        ctx: &mut Ctx<'_>,
        files: Option<Vec<usize>>,
    ) -> Result<(), CommandError> {
        let Some(ready) = self.ready.as_mut() else {
            self.selection = files;
            return Ok(());
        };
        let prios = file_priorities(&ready.info, files.as_deref())?;
        // The priorities have one entry per piece: the picker cannot refuse them.
        let released = ready.picker.set_priorities(&prios).unwrap_or_default();
        for (key, block) in released {
            if let Some(peer) = self.keys.get(&key).and_then(|c| self.peers.get_mut(c)) {
                peer.cancel(block);
            }
        }
        self.selection = files;
        let was = ready.completed;
        ready.completed = ready.picker.is_complete();
        if ready.completed && !was {
            // Fewer files chosen, and every one of them is here already.
            ctx.event(Event::Completed {
                info_hash: self.info_hash,
            });
        }
        self.pump(ctx);
        Ok(())
    }

    // ----- peer connections -----

    /// A connection being signalled for this bundle.
    pub fn add_peer(&mut self, now: Instant, conn: ConnId) {
        let key = PeerKey(self.next_key);
        self.next_key = self.next_key.wrapping_add(1);
        self.keys.insert(key, conn);
        let mut peer = Peer::new(conn, key, now);
        if let Some(ready) = self.ready.as_deref() {
            // No bitfield longer than this bundle needs is buffered.
            let limits = peer
                .framer
                .limits()
                .with_piece_count(ready.lengths().num_pieces());
            peer.framer.set_limits(limits);
        }
        self.peers.insert(conn, peer);
    }

    /// The data channel opened: send our handshake.
    pub fn peer_opened(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if peer.stage != Stage::Signalling {
            return;
        }
        peer.on_opened(ctx.now, self.info_hash, ctx.config.peer_id);
        self.flush(ctx);
    }

    /// The glue says the channel drained.
    pub fn peer_writable(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.on_writable(ctx.config.send_low_water);
            self.pump(ctx);
        }
    }

    /// The channel closed from the other side.
    pub fn peer_closed(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        self.remove_peer(ctx, conn, DropReason::Closed, false);
        self.pump(ctx);
    }

    /// Drops a connection: tells the glue to close it and the UI why.
    pub fn drop_peer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, reason: DropReason) {
        self.remove_peer(ctx, conn, reason, true);
    }

    fn remove_peer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, reason: DropReason, close: bool) {
        if let Some(seed) = self.web_seeds.remove(&conn) {
            self.keys.remove(&seed.key);
            if let Some(ready) = self.ready.as_mut() {
                ready.picker.peer_removed(seed.key);
            }
            if close {
                ctx.out.push_back(Output::ClosePeer {
                    conn,
                    reason: reason.clone(),
                });
            }
            if !matches!(reason, DropReason::BundlePaused | DropReason::BundleRemoved) {
                ctx.event(Event::PeerDropped {
                    info_hash: self.info_hash,
                    conn,
                    peer_id: None,
                    reason,
                });
            }
            return;
        }
        let Some(peer) = self.peers.remove(&conn) else {
            return;
        };
        self.choke_dirty = true;
        self.keys.remove(&peer.key);
        if let Some(ready) = self.ready.as_mut() {
            ready.picker.peer_removed(peer.key);
        }
        self.metadata.peer_failed(conn);
        if close {
            ctx.out.push_back(Output::ClosePeer {
                conn,
                reason: reason.clone(),
            });
        }
        if peer.is_active() {
            ctx.event(Event::PeerDropped {
                info_hash: self.info_hash,
                conn,
                peer_id: peer.peer_id(),
                reason,
            });
        }
    }

    /// Bytes from a peer.
    pub fn peer_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &[u8]) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if peer.stage == Stage::Signalling {
            // Data before the channel was reported open: it is open.
            peer.on_opened(ctx.now, self.info_hash, ctx.config.peer_id);
        }
        let mut framer = std::mem::take(&mut peer.framer);
        let mut frames = framer.feed(data);
        let mut failure = None;
        while let Some(frame) = frames.next() {
            let result = match frame {
                Ok(Frame::Handshake(h)) => self.on_handshake(ctx, conn, &h),
                Ok(Frame::Message(m)) => self.on_message(ctx, conn, m),
                Err(e) => Err(match e {
                    crate::engine::wire::FramerError::TooLong { declared, max } => {
                        DropReason::Oversized { len: declared, max }
                    }
                    crate::engine::wire::FramerError::Handshake(_) => DropReason::BadHandshake,
                    crate::engine::wire::FramerError::Message(
                        crate::engine::wire::MessageError::UnknownId { id, .. },
                    ) => DropReason::UnknownMessage(id),
                    crate::engine::wire::FramerError::Message(m) => {
                        DropReason::Malformed(m.to_string())
                    }
                }),
            };
            if let Err(reason) = result {
                failure = Some(reason);
                break;
            }
            if !self.peers.contains_key(&conn) {
                break;
            }
        }
        drop(frames);
        match failure {
            Some(reason) => self.drop_peer(ctx, conn, reason),
            None => {
                if let Some(peer) = self.peers.get_mut(&conn) {
                    peer.framer = framer;
                }
            }
        }
        self.pump(ctx);
    }

    fn on_handshake(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        h: &crate::engine::wire::Handshake,
    ) -> Result<(), DropReason> {
        if self.banned.contains(&h.peer_id) {
            return Err(DropReason::BadData);
        }
        let duplicate = self
            .peers
            .values()
            .any(|p| p.conn != conn && p.peer_id() == Some(h.peer_id));
        if duplicate {
            return Err(DropReason::DuplicatePeer);
        }
        let metadata_size = self.ready.as_ref().map(|r| r.info_bytes.len() as u64);
        let ext = ExtendedHandshake::swarmdrop(metadata_size, MAX_QUEUED_REQUESTS as u32).encode();
        let have = self.ready.as_ref().map(|r| r.picker.have());
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        peer.on_handshake(ctx.now, h, self.info_hash, ctx.config.peer_id)?;
        peer.start(Some(&ext), have);
        self.choke_dirty = true;
        ctx.event(Event::PeerConnected {
            info_hash: self.info_hash,
            conn,
            peer_id: Some(h.peer_id),
        });
        Ok(())
    }

    fn on_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        msg: Message<'_>,
    ) -> Result<(), DropReason> {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        let (lengths, have) = match self.ready.as_deref() {
            Some(r) => (Some(r.lengths()), Some(r.picker.have())),
            None => (None, None),
        };
        let event = peer.on_message(ctx.now, msg, lengths, have, OUR_EXTENSIONS)?;
        let key = peer.key;
        match event {
            PeerEvent::Nothing | PeerEvent::Request | PeerEvent::AllowedFast => {}
            PeerEvent::Unchoked => {}
            PeerEvent::HasReplaced => {
                self.peer_has_replaced(conn)?;
                self.check_useful(conn)?;
            }
            PeerEvent::Have(piece) => {
                if let Some(ready) = self.ready.as_mut() {
                    ready.picker.peer_have(key, piece);
                }
                self.check_useful(conn)?;
            }
            PeerEvent::DontHave(piece) => {
                if let Some(ready) = self.ready.as_mut() {
                    ready.picker.peer_dont_have(key, piece);
                }
            }
            PeerEvent::Choked => {
                let fast = peer.fast();
                if let (false, Some(ready)) = (fast, self.ready.as_mut()) {
                    // Without Fast a choke voids every outstanding request.
                    for block in ready.picker.requests(key) {
                        ready.picker.request_rejected(key, block);
                    }
                }
            }
            PeerEvent::InterestChanged => self.choke_dirty = true,
            PeerEvent::Rejected(block) => {
                if let Some(ready) = self.ready.as_mut() {
                    ready.picker.request_rejected(key, block);
                }
            }
            PeerEvent::Block { block, data } => {
                let Some(peer_id) = peer.peer_id() else {
                    return Ok(());
                };
                self.on_block(ctx, key, Source::Peer(conn, peer_id), block, data);
            }
            PeerEvent::Extensions => self.request_metadata(ctx),
            PeerEvent::Metadata(payload) => self.on_metadata_message(ctx, conn, payload)?,
        }
        Ok(())
    }

    /// Two seeds have nothing to exchange: the connection is dropped.
    fn check_useful(&self, conn: ConnId) -> Result<(), DropReason> {
        let seed = self
            .ready
            .as_ref()
            .is_some_and(|r| r.picker.have().is_full());
        if seed && self.peers.get(&conn).is_some_and(Peer::is_seed) {
            return Err(DropReason::NotUseful);
        }
        Ok(())
    }

    /// Tells the picker what a peer has, after a bitfield (or equivalent).
    fn peer_has_replaced(&mut self, conn: ConnId) -> Result<(), DropReason> {
        let (Some(peer), Some(ready)) = (self.peers.get(&conn), self.ready.as_mut()) else {
            return Ok(());
        };
        match &peer.has {
            PeerHas::All => ready.picker.peer_have_all(peer.key),
            PeerHas::Some(bits) => ready
                .picker
                .peer_bitfield(peer.key, bits)
                .map_err(|_| DropReason::BadBitfield)?,
            PeerHas::Unknown | PeerHas::Early { .. } => {}
        }
        Ok(())
    }

    /// A block from a peer or a web seed; the senders of bad data are
    /// banned at once.
    fn on_block(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PeerKey,
        source: Source,
        block: BlockInfo,
        data: &[u8],
    ) {
        for culprit in self.take_block(ctx, key, source, block, data) {
            self.ban(ctx, culprit);
        }
    }

    /// A block from a peer or a web seed: counted, assembled, and its piece
    /// verified and stored when complete. Returns the senders of bad data
    /// to ban (a web seed's run is taken whole before its server is banned
    /// for one bad piece, so its good pieces are kept).
    fn take_block(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PeerKey,
        source: Source,
        block: BlockInfo,
        data: &[u8],
    ) -> Vec<Source> {
        let Some(ready) = self.ready.as_mut() else {
            return Vec::new();
        };
        let BlockOutcome::Accepted {
            piece_complete,
            cancel,
        } = ready.picker.block_received(key, block)
        else {
            return Vec::new();
        };
        for other in cancel {
            if let Some(peer) = self.keys.get(&other).and_then(|c| self.peers.get_mut(c)) {
                peer.cancel(block);
            }
        }
        let len = data.len() as u64;
        match source {
            Source::Peer(..) => {
                self.stats.downloaded_peers += len;
                self.stats.down_peers.record(len, ctx.now);
            }
            Source::WebSeed(_) => {
                self.stats.downloaded_server += len;
                self.stats.down_server.record(len, ctx.now);
            }
        }
        ready.assembly.put(&ready.info.lengths, block, data, source);
        if !piece_complete {
            return Vec::new();
        }
        if ctx.config.host_hashes {
            if let Some(data) = ready.assembly.take_complete(block.piece) {
                ctx.out.push_back(Output::HashPiece {
                    info_hash: self.info_hash,
                    piece: block.piece.get(),
                    data,
                });
            }
            return Vec::new();
        }
        let verdict = ready.assembly.verify(&ready.info, block.piece);
        self.apply_verdict(ctx, block.piece, verdict)
    }

    /// The host hashed a complete piece ([`Output::HashPiece`]): a good one
    /// goes to storage, a bad one is fetched again, and the senders of bad
    /// data are banned.
    pub fn piece_hashed(&mut self, ctx: &mut Ctx<'_>, piece: u32, data: Vec<u8>, sha1: [u8; 20]) {
        let Some(ready) = self.ready.as_mut() else {
            return;
        };
        let Some(piece) = ready.lengths().validate_piece(piece) else {
            return;
        };
        let verdict = ready.assembly.hashed(&ready.info, piece, data, sha1);
        for culprit in self.apply_verdict(ctx, piece, verdict) {
            self.ban(ctx, culprit);
        }
        self.pump(ctx);
    }

    /// Acts on what hashing a complete piece found: a good piece goes to
    /// storage, a bad one back to the picker. Returns the senders to ban.
    fn apply_verdict(
        &mut self,
        ctx: &mut Ctx<'_>,
        piece: PieceIndex,
        verdict: Option<Verdict>,
    ) -> Vec<Source> {
        let Some(ready) = self.ready.as_mut() else {
            return Vec::new();
        };
        match verdict {
            Some(Verdict::Good { data, culprits }) => {
                ctx.out.push_back(Output::StorePiece {
                    info_hash: self.info_hash,
                    piece: piece.get(),
                    data,
                });
                culprits
            }
            Some(Verdict::Bad { culprit }) => {
                // Every block is free again; the picker refetches the piece.
                let _ = ready.picker.piece_failed(piece);
                culprit.into_iter().collect()
            }
            None => Vec::new(),
        }
    }

    /// A source sent bad data: a peer is banned from this bundle, a web seed
    /// dropped.
    fn ban(&mut self, ctx: &mut Ctx<'_>, source: Source) {
        if let Source::Peer(_, peer_id) = source {
            self.banned.insert(peer_id);
        } else {
            let conn = source.conn();
            if let Some(seed) = self.web_seeds.get(&conn) {
                let url = seed.url.clone();
                self.web_seed_urls.retain(|u| *u != url);
            }
        }
        self.drop_peer(ctx, source.conn(), DropReason::BadData);
    }

    // ----- metadata (magnet links) -----

    /// Starts a metadata attempt if none runs and a peer can serve it.
    fn request_metadata(&mut self, ctx: &mut Ctx<'_>) {
        if self.ready.is_some() {
            return;
        }
        let sources: Vec<MetadataSource> = self
            .peers
            .values()
            .filter(|p| p.is_active())
            .filter_map(|p| {
                let e = p.extensions.as_ref()?;
                Some(MetadataSource {
                    conn: p.conn,
                    ut_metadata: e.ut_metadata()?,
                    size: e.metadata_size?,
                })
            })
            .collect();
        let Some(req) = self.metadata.poll(ctx.now, &sources, ctx.rng) else {
            return;
        };
        if let Some(peer) = self.peers.get_mut(&req.conn) {
            for piece in req.pieces {
                let payload = MetadataMessage::Request { piece }.to_vec();
                peer.send(&Message::Extended {
                    id: req.ut_metadata,
                    payload: &payload,
                });
            }
        }
        if let Some(at) = self.metadata.deadline() {
            self.timers.set(SessionTimer::Metadata, at);
        }
    }

    fn on_metadata_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        let msg =
            MetadataMessage::decode(payload).map_err(|e| DropReason::BadMetadata(e.to_string()))?;
        match msg {
            MetadataMessage::Request { piece } => {
                let Some(peer) = self.peers.get_mut(&conn) else {
                    return Ok(());
                };
                let Some(their_id) = peer.extensions.as_ref().and_then(|e| e.ut_metadata()) else {
                    return Ok(());
                };
                let reply =
                    match self.ready.as_ref().and_then(|r| {
                        Some((r.info_bytes.len(), metadata_piece(&r.info_bytes, piece)?))
                    }) {
                        Some((total, data)) => MetadataMessage::Data {
                            piece,
                            total_size: total as u64,
                            data,
                        }
                        .to_vec(),
                        None => MetadataMessage::Reject { piece }.to_vec(),
                    };
                peer.send(&Message::Extended {
                    id: their_id,
                    payload: &reply,
                });
            }
            MetadataMessage::Reject { .. } => {
                self.metadata.peer_failed(conn);
                self.request_metadata(ctx);
            }
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                if self.ready.is_some() {
                    return Ok(());
                }
                if let Some(bytes) = self
                    .metadata
                    .on_data(ctx.now, conn, piece, total_size, data)?
                {
                    self.metadata_complete(ctx, bytes);
                } else if let Some(at) = self.metadata.deadline() {
                    self.timers.set(SessionTimer::Metadata, at);
                }
            }
        }
        Ok(())
    }

    /// The metadata arrived and hashed right: become a normal session.
    fn metadata_complete(&mut self, ctx: &mut Ctx<'_>, bytes: Vec<u8>) {
        let info = match crate::engine::metainfo::Info::from_info_bytes(&bytes) {
            Ok((info, hash)) if hash == self.info_hash => info,
            Ok(_) | Err(_) => {
                ctx.event(Event::Error {
                    info_hash: Some(self.info_hash),
                    message: "metadata from peers is not a usable torrent".into(),
                });
                // Not usable although it hashed right: nothing to retry.
                return;
            }
        };
        let have = std::mem::take(&mut self.early_have);
        let n = info.lengths.num_pieces();
        if self.selection.is_none() && !self.magnet_select.is_empty() {
            let chosen = (0..info.files.len())
                .filter(|&i| self.magnet_select.iter().any(|r| r.contains(&(i as u32))))
                .collect();
            self.selection = Some(chosen);
        }
        let ready = match Ready::new(info.clone(), bytes.clone(), have, self.selection.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                // A stale have-bitfield or selection: start from nothing, all files.
                ctx.event(Event::Error {
                    info_hash: Some(self.info_hash),
                    message: e.to_string(),
                });
                self.selection = None;
                match Ready::new(info, bytes.clone(), Bitfield::new(n), None) {
                    Ok(r) => r,
                    Err(e) => {
                        ctx.event(Event::Error {
                            info_hash: Some(self.info_hash),
                            message: e.to_string(),
                        });
                        return;
                    }
                }
            }
        };
        self.timers.stop(SessionTimer::Metadata);
        if self.name.is_none() {
            self.name = Some(ready.info.name.clone());
        }
        self.ready = Some(Box::new(ready));
        let metadata_size = bytes.len() as u64;
        ctx.event(Event::MetadataReceived {
            info_hash: self.info_hash,
            info_bytes: bytes,
        });
        // Peers learn that we have the metadata now (our first extended
        // handshake had no `metadata_size`), and what they said before is
        // checked now.
        let ext =
            ExtendedHandshake::swarmdrop(Some(metadata_size), MAX_QUEUED_REQUESTS as u32).encode();
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            let Some(ready) = self.ready.as_deref() else {
                return;
            };
            let lengths = *ready.lengths();
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            peer.resend_extended_handshake(&ext);
            peer.framer
                .set_limits(peer.framer.limits().with_piece_count(lengths.num_pieces()));
            match peer.resolve_early_has(&lengths) {
                Ok(true) => {
                    if let Err(reason) = self.peer_has_replaced(conn) {
                        self.drop_peer(ctx, conn, reason);
                    }
                }
                Ok(false) => {}
                Err(reason) => self.drop_peer(ctx, conn, reason),
            }
        }
        if self.paused.is_none() {
            self.add_web_seeds(ctx);
        }
    }

    // ----- storage -----

    /// Storage read a block for upload.
    pub fn block_loaded(&mut self, ctx: &mut Ctx<'_>, piece: u32, offset: u32, data: &[u8]) {
        let Some(block) = self.pending_load(piece, offset) else {
            return;
        };
        if data.len() != block.len as usize {
            let reason = format!("{} bytes read, {} asked", data.len(), block.len);
            self.load_failed(ctx, piece, offset, &reason);
            return;
        }
        for conn in self.loads.finish(block) {
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            if !peer.take_loaded(block) || self.paused.is_some() {
                continue;
            }
            peer.send_block(ctx.now, block, data);
            self.stats.uploaded += data.len() as u64;
            self.stats.up.record(data.len() as u64, ctx.now);
        }
        self.pump(ctx);
    }

    /// Storage could not read a block: the bundle's data is gone or changed.
    pub fn load_failed(&mut self, ctx: &mut Ctx<'_>, piece: u32, offset: u32, reason: &str) {
        let Some(block) = self.pending_load(piece, offset) else {
            return;
        };
        for conn in self.loads.finish(block) {
            if let Some(peer) = self.peers.get_mut(&conn) {
                if peer.take_loaded(block) && peer.fast() {
                    peer.send(&Message::Reject(crate::engine::peer::request_of(block)));
                }
            }
        }
        ctx.event(Event::Error {
            info_hash: Some(self.info_hash),
            message: format!("could not read piece {piece}: {reason}"),
        });
        self.pump(ctx);
    }

    /// The load asked for at `piece`/`offset`, if one is pending.
    fn pending_load(&self, piece: u32, offset: u32) -> Option<BlockInfo> {
        let piece = self.ready.as_ref()?.lengths().validate_piece(piece)?;
        self.loads.find(piece, offset)
    }

    /// Storage persisted a piece: we have it.
    pub fn piece_stored(&mut self, ctx: &mut Ctx<'_>, piece: u32) {
        let Some(ready) = self.ready.as_mut() else {
            return;
        };
        let Some(piece) = ready.lengths().validate_piece(piece) else {
            return;
        };
        if !ready.assembly.storage_done(piece) {
            return;
        }
        if ready.picker.piece_verified(piece).is_err() {
            return;
        }
        ready.damaged.remove(&piece.get());
        for peer in self.peers.values_mut().filter(|p| p.is_active()) {
            peer.send(&Message::Have(piece.get()));
        }
        ctx.event(Event::PieceVerified {
            info_hash: self.info_hash,
            piece: piece.get(),
        });
        if !ready.completed && ready.picker.is_complete() {
            ready.completed = true;
            for a in self.announcers.values_mut() {
                if ready.picker.have().is_full() {
                    a.complete(ctx.now);
                }
            }
            ctx.event(Event::Completed {
                info_hash: self.info_hash,
            });
            let useless: Vec<ConnId> = self
                .peers
                .keys()
                .copied()
                .filter(|&c| self.check_useful(c).is_err())
                .collect();
            for conn in useless {
                self.drop_peer(ctx, conn, DropReason::NotUseful);
            }
            self.emit_progress(ctx);
        }
        self.pump(ctx);
    }

    /// A piece we have read back wrong: storage deleted it with its
    /// have-bit, so it is no longer ours (see
    /// [`Input::PieceDamaged`](crate::engine::api::Input::PieceDamaged)).
    pub fn piece_damaged(&mut self, ctx: &mut Ctx<'_>, piece: u32) {
        let Some(ready) = self.ready.as_mut() else {
            return;
        };
        let Some(piece) = ready.lengths().validate_piece(piece) else {
            return;
        };
        if !ready.picker.piece_lost(piece) {
            return;
        }
        ready.damaged.insert(piece.get());
        if ready.completed && !ready.picker.is_complete() {
            ready.completed = false;
        }
        // Its blocks being loaded are not served: whatever storage answers
        // for them now finds nobody waiting.
        let loading: Vec<BlockInfo> = self.loads.blocks().filter(|b| b.piece == piece).collect();
        for block in loading {
            self.loads.finish(block);
        }
        for peer in self.peers.values_mut().filter(|p| p.is_active()) {
            peer.retract(piece);
        }
        ctx.event(Event::PieceDamaged {
            info_hash: self.info_hash,
            piece: piece.get(),
        });
        if self.paused.is_none() {
            // A bundle that started complete has no web seed yet.
            self.add_web_seeds(ctx);
        }
        self.choke_dirty = true;
        self.emit_progress(ctx);
        self.pump(ctx);
    }

    /// Storage failed to persist a piece: it is fetched again; a full disk
    /// pauses the bundle.
    pub fn store_failed(&mut self, ctx: &mut Ctx<'_>, piece: u32, failure: StoreFailure) {
        let Some(ready) = self.ready.as_mut() else {
            return;
        };
        let Some(piece) = ready.lengths().validate_piece(piece) else {
            return;
        };
        if !ready.assembly.storage_done(piece) {
            return;
        }
        let _ = ready.picker.piece_failed(piece);
        match failure {
            StoreFailure::DiskFull => self.pause(ctx, PauseReason::DiskFull),
            StoreFailure::Other(message) => ctx.event(Event::Error {
                info_hash: Some(self.info_hash),
                message: format!("could not store piece {}: {message}", piece.get()),
            }),
        }
        self.pump(ctx);
    }

    // ----- web seeds -----

    /// Bytes a web seed returned for a fetch.
    pub fn web_seed_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        piece: u32,
        offset: u32,
        data: &[u8],
    ) {
        let (Some(seed), Some(ready)) = (self.web_seeds.get_mut(&conn), self.ready.as_ref()) else {
            return;
        };
        let Some(fetch) = seed.take_fetch(piece, offset) else {
            return;
        };
        let key = seed.key;
        let start = fetch.start(ready.lengths());
        let Some(bytes) = assemble_fetch(&ready.info, start, u64::from(fetch.len), data) else {
            // Too short: what came is used as far as it goes; too long: none
            // of it lines up with what was asked.
            let received = if data.len() < fetch.len as usize {
                data
            } else {
                &[]
            };
            let reason = format!("{} bytes for a {}-byte range", data.len(), fetch.len);
            self.fetch_failed(ctx, conn, Some(fetch), received, &reason);
            return;
        };
        seed.on_success();
        self.take_fetched(ctx, conn, key, fetch, &bytes);
        self.pump(ctx);
    }

    /// A web seed fetch failed after `received` (the ranges' bytes that came
    /// first, possibly none): the whole blocks among them are used, the
    /// others go back to the picker, and the web seed backs off, or is
    /// dropped after repeated failures.
    pub fn web_seed_failed(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        piece: u32,
        offset: u32,
        received: &[u8],
        reason: &str,
    ) {
        let Some(seed) = self.web_seeds.get_mut(&conn) else {
            return;
        };
        let fetch = seed.take_fetch(piece, offset);
        self.fetch_failed(ctx, conn, fetch, received, reason);
    }

    fn fetch_failed(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        fetch: Option<Fetch>,
        received: &[u8],
        reason: &str,
    ) {
        if let (Some(fetch), Some(seed), Some(ready)) =
            (fetch, self.web_seeds.get(&conn), self.ready.as_ref())
        {
            let key = seed.key;
            let start = fetch.start(ready.lengths());
            let bytes = assemble_prefix(&ready.info, start, u64::from(fetch.len), received);
            self.take_fetched(ctx, conn, key, fetch, &bytes);
        }
        let Some(seed) = self.web_seeds.get_mut(&conn) else {
            // Banned for a bad piece among what came.
            self.pump(ctx);
            return;
        };
        if seed.on_failure(ctx.now) {
            self.drop_peer(ctx, conn, DropReason::WebSeedFailed(reason.to_owned()));
        } else if let Some(at) = seed.retry_at {
            self.timers.set_earliest(SessionTimer::Wake, at);
        }
        self.pump(ctx);
    }

    /// Takes the blocks of a web seed's fetch that `bytes` (the fetch's
    /// bytes from its start, all or a prefix) holds whole, each like a
    /// peer's block (a block a peer brought first is not taken twice), and
    /// gives the others back to the picker. A piece failing its hash is
    /// fetched again alone; the web seed is dropped for it only after the
    /// whole fetch is taken, so its good pieces are kept.
    fn take_fetched(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        key: PeerKey,
        fetch: Fetch,
        bytes: &[u8],
    ) {
        let Some(ready) = self.ready.as_ref() else {
            return;
        };
        let lengths = *ready.lengths();
        let start = fetch.start(&lengths);
        let mut bans: Vec<Source> = Vec::new();
        for block in fetch.blocks {
            let from = lengths.piece_offset(block.piece) + u64::from(block.offset) - start;
            let slice = usize::try_from(from)
                .ok()
                .and_then(|from| bytes.get(from..from + block.len as usize));
            match slice {
                Some(slice) => {
                    for culprit in self.take_block(ctx, key, Source::WebSeed(conn), block, slice) {
                        if !bans.contains(&culprit) {
                            bans.push(culprit);
                        }
                    }
                }
                None => {
                    if let Some(ready) = self.ready.as_mut() {
                        ready.picker.request_rejected(key, block);
                    }
                }
            }
        }
        for culprit in bans {
            self.ban(ctx, culprit);
        }
    }

    // ----- time -----

    /// Fires due timers.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let conns: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.next_timeout().is_some_and(|t| t <= now))
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            if let Err(reason) = peer.handle_timeout(now) {
                self.drop_peer(ctx, conn, reason);
            }
        }
        for timer in self.timers.take_expired(now) {
            match timer {
                SessionTimer::Choke => self.choke_dirty = true,
                SessionTimer::Progress => {
                    self.emit_progress(ctx);
                    if self.paused.is_none() {
                        self.timers
                            .set(SessionTimer::Progress, now + PROGRESS_INTERVAL);
                    }
                }
                SessionTimer::Wake => {}
                SessionTimer::Requests => self.request_timeouts(ctx),
                SessionTimer::Metadata => {
                    self.metadata.handle_timeout(now);
                    self.request_metadata(ctx);
                }
            }
        }
        self.pump(ctx);
    }

    /// Requests unanswered for [`REQUEST_TIMEOUT`] go back to the picker
    /// (with a cancel); their peers are snubbed (one request at a time)
    /// until a block comes. A web seed's fetch gets [`WEB_SEED_TIMEOUT`],
    /// then it is abandoned and counts as a failure.
    fn request_timeouts(&mut self, ctx: &mut Ctx<'_>) {
        let Some(ready) = self.ready.as_mut() else {
            return;
        };
        for peer in self.peers.values_mut() {
            let late = ready
                .picker
                .peer_timed_out(peer.key, ctx.now, REQUEST_TIMEOUT);
            if !late.is_empty() {
                peer.snubbed = true;
            }
            for block in late {
                peer.cancel(block);
            }
        }
        for seed in self.web_seeds.values_mut() {
            let late = ready
                .picker
                .peer_timed_out(seed.key, ctx.now, WEB_SEED_TIMEOUT);
            if late.is_empty() {
                continue;
            }
            for block in seed.abandon_fetches_with(&late) {
                ready.picker.request_cancelled(seed.key, block);
            }
            // A hung server backs off like a failing one (never dropped for it).
            seed.on_failure(ctx.now);
            if let Some(at) = seed.retry_at {
                self.timers.set_earliest(SessionTimer::Wake, at);
            }
        }
    }

    /// Lets the choker bring the unchoked set up to date (a round when one
    /// is due, else only filling empty slots) and sends the changes.
    fn choke_tick(&mut self, ctx: &mut Ctx<'_>) {
        self.choke_dirty = false;
        if self.paused.is_some() {
            return;
        }
        let seeding = self.ready.as_ref().is_some_and(|r| r.picker.is_complete());
        let snapshots: Vec<PeerSnapshot> = self
            .peers
            .values_mut()
            .filter(|p| p.is_active())
            .map(|p| PeerSnapshot {
                peer: p.key,
                interested: p.peer_interested,
                download_rate: p.down.rate(ctx.now),
                upload_rate: p.up.rate(ctx.now),
                awaiting_block_since: p.awaiting_block_since(),
            })
            .collect();
        let decision = self.choker.tick(ctx.now, &snapshots, seeding, ctx.rng);

        for key in decision.unchoke {
            if let Some(peer) = self.keys.get(&key).and_then(|c| self.peers.get_mut(c)) {
                peer.unchoke();
            }
        }
        for key in decision.choke {
            let Some(peer) = self.keys.get(&key).and_then(|c| self.peers.get_mut(c)) else {
                continue;
            };
            peer.choke(ctx.now);
        }
        // A peer with nothing, kept choked, may still fetch a few pieces.
        if let Some(ready) = self.ready.as_deref() {
            for peer in self.peers.values_mut() {
                if peer.is_active() && peer.am_choking && peer.peer_interested && peer.has_nothing()
                {
                    peer.grant_allowed_fast(ready.lengths(), ready.picker.have(), ctx.rng);
                }
            }
        }
        if let Some(at) = self.choker.next_round() {
            self.timers.set(SessionTimer::Choke, at);
        }
    }

    // ----- the pump -----

    /// Does everything the current state allows: interest, requests, web
    /// seed fetches, uploads; then hands queued bytes to the glue.
    pub fn pump(&mut self, ctx: &mut Ctx<'_>) {
        if self.paused.is_none() {
            if self.choke_dirty {
                self.choke_tick(ctx);
            }
            self.update_interest();
            self.fill_requests(ctx);
            self.fill_web_seeds(ctx);
            self.serve(ctx);
            if self.ready.as_ref().is_some_and(|r| !r.picker.is_complete()) {
                self.timers
                    .set_earliest(SessionTimer::Requests, ctx.now + REQUEST_CHECK);
            }
        }
        self.flush(ctx);
    }

    fn update_interest(&mut self) {
        let Some(ready) = self.ready.as_ref() else {
            return;
        };
        for peer in self.peers.values_mut().filter(|p| p.is_active()) {
            peer.set_interested(ready.picker.is_interesting(peer.key));
        }
    }

    fn fill_requests(&mut self, ctx: &mut Ctx<'_>) {
        let Some(ready) = self.ready.as_mut() else {
            return;
        };
        if ready.picker.is_complete()
            || ready.assembly.storing_bytes() >= ctx.config.max_storing_bytes
        {
            return;
        }
        let n = self.peers.len();
        if n == 0 {
            return;
        }
        self.rotate = (self.rotate + 1) % n;
        let conns: Vec<ConnId> = self
            .peers
            .keys()
            .cycle()
            .skip(self.rotate)
            .take(n)
            .copied()
            .collect();
        for conn in conns {
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            if !peer.is_active() || !peer.am_interested {
                continue;
            }
            let choked = peer.peer_choking;
            if choked && peer.allowed_fast_in.is_empty() {
                continue;
            }
            let outstanding = ready.picker.outstanding(peer.key);
            let want = peer.requests_due(ctx.now, outstanding);
            if want == 0 {
                continue;
            }
            if !may_download(ctx, &mut self.timers, self.info_hash) {
                break;
            }
            let only = choked.then_some(peer.allowed_fast_in.as_slice());
            let blocks = ready.pick(ctx, peer.key, want, only, None);
            let blocks = within_caps(
                ctx,
                &mut self.timers,
                self.info_hash,
                &mut ready.picker,
                peer.key,
                blocks,
            );
            for b in blocks {
                peer.request(b);
            }
        }
    }

    fn fill_web_seeds(&mut self, ctx: &mut Ctx<'_>) {
        let Some(ready) = self.ready.as_mut() else {
            return;
        };
        if ready.picker.is_complete()
            || ready.assembly.storing_bytes() >= ctx.config.max_storing_bytes
        {
            return;
        }
        let lengths = *ready.lengths();
        // A piece's worth (or a fetch's, of a larger piece) at a time, then
        // the open pieces after it, so one request brings several pieces.
        let per_fetch_max = (MAX_FETCH_LEN / BLOCK_SIZE).max(1) as usize;
        let per_fetch = (lengths.max_blocks_per_piece() as usize).clamp(1, per_fetch_max);
        // At most MAX_RUN_PIECES pieces: small pieces make short runs, so a
        // small bundle is not taken from the server in a few large requests
        // before the swarm has a chance to share it.
        let per_run = (per_fetch * MAX_RUN_PIECES).min(per_fetch_max);
        // Peers first: while they bring at least the floor, web seeds fetch
        // only what no downloading peer has (new to the swarm, which then
        // shares it), and of that only the pieces that are ours among the
        // downloaders we see, so several downloaders together take each
        // piece from the server about once. Below the floor (no peers, slow
        // or gone peers) web seeds fetch anything, so a download never waits
        // on the swarm, and race the last blocks in endgame.
        let owners =
            (self.stats.down_peers.rate(ctx.now) >= ctx.config.web_seed_peer_floor).then(|| {
                let downloaders = self
                    .peers
                    .values()
                    .filter(|p| p.is_active() && !p.is_seed())
                    .filter_map(|p| p.peer_id());
                Owners::new(&ctx.config.peer_id, downloaders)
            });
        // Runs only where they take nothing another downloader may be
        // taking from the server too: pieces split by ownership, or no other
        // downloader around. Below the floor with downloaders connected,
        // each of them takes a piece at a time, so the server does not send
        // the same long runs to all of them before their haves go round.
        let runs = owners.is_some() || !self.peers.values().any(|p| p.is_active() && !p.is_seed());
        for seed in self.web_seeds.values_mut() {
            while seed.can_fetch(ctx.now) {
                if !may_download(ctx, &mut self.timers, self.info_hash) {
                    break;
                }
                let mut blocks = ready.pick(ctx, seed.key, per_fetch, None, owners.as_ref());
                if runs {
                    let more =
                        ready.pick_following(ctx, seed.key, &blocks, per_run, owners.as_ref());
                    blocks.extend(more);
                }
                let blocks = within_caps(
                    ctx,
                    &mut self.timers,
                    self.info_hash,
                    &mut ready.picker,
                    seed.key,
                    blocks,
                );
                if blocks.is_empty() {
                    break;
                }
                let (fetches, leftover) = seed.start_fetches(self.info_hash, &ready.info, blocks);
                for block in leftover {
                    ready.picker.request_cancelled(seed.key, block);
                }
                if fetches.is_empty() {
                    // No free slot after all: never spin on picks that go nowhere.
                    break;
                }
                for fetch in fetches {
                    ctx.out.push_back(Output::WebSeedFetch(fetch));
                }
            }
            if let Some(at) = seed.retry_at.filter(|&t| t > ctx.now) {
                self.timers.set_earliest(SessionTimer::Wake, at);
            }
        }
    }

    /// Serves queued requests: loads blocks from storage within each peer's
    /// send budget and the upload caps.
    fn serve(&mut self, ctx: &mut Ctx<'_>) {
        if self.ready.is_none() {
            return;
        }
        let budget = ctx.config.send_budget;
        let n = self.peers.len();
        if n == 0 {
            return;
        }
        let conns: Vec<ConnId> = self
            .peers
            .keys()
            .cycle()
            .skip(self.rotate % n)
            .take(n)
            .copied()
            .collect();
        'peers: for conn in conns {
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            while let Some(&block) = peer.serve_queue.front() {
                if !peer.has_send_room(budget) {
                    break;
                }
                let len = block.len as u64;
                let dir = Direction::Upload;
                if !ctx.limiter.try_take(dir, &self.info_hash, len, ctx.now) {
                    wake_when_available(ctx, &mut self.timers, dir, self.info_hash, len);
                    break 'peers;
                }
                peer.serve_queue.pop_front();
                peer.loading.push(block);
                if self.loads.wait_for(block, conn) {
                    ctx.out.push_back(Output::LoadBlock {
                        info_hash: self.info_hash,
                        piece: block.piece.get(),
                        offset: block.offset,
                        len: block.len,
                    });
                }
            }
        }
    }

    /// Hands every peer's queued bytes to the glue, within the send budget.
    fn flush(&mut self, ctx: &mut Ctx<'_>) {
        let budget = ctx.config.send_budget;
        for peer in self.peers.values_mut() {
            while let Some(data) = peer.poll_send(ctx.now, budget) {
                ctx.out.push_back(Output::PeerSend {
                    conn: peer.conn,
                    data,
                });
            }
            if peer.wants_watch(budget) {
                ctx.out.push_back(Output::WatchWritable { conn: peer.conn });
            }
        }
    }
}

/// Whether the download caps allow a block now; if not, arms the wake timer.
fn may_download(
    ctx: &mut Ctx<'_>,
    timers: &mut TimerTable<SessionTimer>,
    info_hash: InfoHash,
) -> bool {
    let block = BLOCK_SIZE as u64;
    let wait = ctx
        .limiter
        .time_until_available(Direction::Download, &info_hash, block, ctx.now);
    if wait == Some(Duration::ZERO) {
        return true;
    }
    if let Some(wait) = wait {
        timers.set_earliest(
            SessionTimer::Wake,
            ctx.now + wait.max(Duration::from_millis(1)),
        );
    }
    false
}

/// Keeps the picked blocks the download caps allow now (taking their
/// tokens); the rest go back to the picker.
fn within_caps(
    ctx: &mut Ctx<'_>,
    timers: &mut TimerTable<SessionTimer>,
    info_hash: InfoHash,
    picker: &mut Picker,
    key: PeerKey,
    blocks: Vec<BlockInfo>,
) -> Vec<BlockInfo> {
    let mut kept = Vec::with_capacity(blocks.len());
    let mut refused = false;
    for b in blocks {
        if !refused
            && ctx
                .limiter
                .try_take(Direction::Download, &info_hash, b.len as u64, ctx.now)
        {
            kept.push(b);
        } else {
            if !refused {
                wake_when_available(ctx, timers, Direction::Download, info_hash, b.len as u64);
            }
            refused = true;
            picker.request_cancelled(key, b);
        }
    }
    kept
}

/// Arms the wake timer for when `n` tokens will be available.
fn wake_when_available(
    ctx: &mut Ctx<'_>,
    timers: &mut TimerTable<SessionTimer>,
    dir: Direction,
    info_hash: InfoHash,
    n: u64,
) {
    if let Some(wait) = ctx
        .limiter
        .time_until_available(dir, &info_hash, n, ctx.now)
    {
        timers.set_earliest(
            SessionTimer::Wake,
            ctx.now + wait.max(Duration::from_millis(1)),
        );
    }
}

impl Ready {
    fn new(
        info: Info,
        info_bytes: Vec<u8>,
        have: Bitfield,
        selection: Option<&[usize]>,
    ) -> Result<Self, CommandError> {
        let n = info.lengths.num_pieces();
        let have = if have.is_empty() {
            Bitfield::new(n)
        } else {
            have
        };
        if have.len() != n {
            return Err(CommandError::HaveLength {
                expected: n,
                got: have.len(),
            });
        }
        let prios = file_priorities(&info, selection)?;
        let picker =
            Picker::new(info.lengths, have, prios).map_err(|_| CommandError::HaveLength {
                expected: n,
                got: n,
            })?;
        let completed = picker.is_complete();
        Ok(Ready {
            info,
            info_bytes,
            picker,
            assembly: Assembly::default(),
            completed,
            damaged: BTreeSet::new(),
        })
    }
}

/// Per-piece priorities for a file selection (`None`: every file). Pieces
/// shared with a selected file are fetched whole; the bundle manifest comes
/// before everything else, whatever the selection (the recipient's mosaic
/// is made from it).
fn file_priorities(
    info: &Info,
    selection: Option<&[usize]>,
) -> Result<Vec<Priority>, CommandError> {
    let files = info.files.len();
    if let Some(sel) = selection {
        if let Some(&index) = sel.iter().find(|&&i| i >= files) {
            return Err(CommandError::BadFileIndex { index, files });
        }
    }
    let n = info.lengths.num_pieces();
    let manifest = info.bundle_manifest();
    Ok(priorities_from_files(
        n,
        (0..files).filter(|i| !info.files[*i].padding).map(|i| {
            let priority = if Some(i) == manifest {
                Priority::Highest
            } else if selection.is_none_or(|s| s.contains(&i)) {
                Priority::Normal
            } else {
                Priority::Skip
            };
            (info.file_piece_range(i), priority)
        }),
    ))
}

#[cfg(test)]
mod manifest_priority_tests {
    use super::*;
    use crate::engine::create::TorrentBuilder;

    fn bundle() -> Info {
        let b = TorrentBuilder::new("photos")
            .piece_length(16384)
            .file(vec![".swarmdrop".into(), "manifest.json".into()], 20_000)
            .file(vec!["a.jpg".into()], 40_000)
            .file(vec!["b.bin".into()], 50_000);
        let pieces = b.lengths().unwrap().num_pieces() as usize;
        b.build(vec![[0; 20]; pieces]).unwrap().info
    }

    #[test]
    fn the_bundle_manifest_is_fetched_before_everything_even_when_not_selected() {
        let info = bundle();
        assert_eq!(info.bundle_manifest(), Some(0));
        let prios = file_priorities(&info, Some(&[2])).unwrap();
        // Manifest: bytes 0..20_000 → pieces 0 and 1 (piece 1 shared with a.jpg).
        assert_eq!(&prios[..2], &[Priority::Highest, Priority::Highest]);
        // a.jpg (20_000..60_000) is not selected: its own pieces are skipped.
        assert_eq!(prios[2], Priority::Skip);
        // b.bin (60_000..110_000) is selected; piece 3 is shared with a.jpg.
        assert!(prios[3..].iter().all(|&p| p == Priority::Normal));
    }

    #[test]
    fn an_ordinary_file_named_like_a_manifest_elsewhere_gets_no_priority() {
        let b = TorrentBuilder::new("x")
            .piece_length(16384)
            .file(vec!["manifest.json".into()], 100)
            .file(vec!["y".into()], 100);
        let info = b.build(vec![[0; 20]]).unwrap().info;
        assert_eq!(info.bundle_manifest(), None);
        assert_eq!(
            file_priorities(&info, None).unwrap(),
            vec![Priority::Normal]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::api::WebSeedFetch;
    use crate::engine::create::TorrentBuilder;
    use crate::engine::hash::PieceHasher;
    use crate::engine::limiter::Limits;
    use crate::engine::metainfo::Metainfo;
    use crate::engine::wire::{BlockRequest, Framer, Handshake};

    const THEM: PeerId = PeerId([3; 20]);

    /// What a test sees of the session's outputs.
    struct Env {
        now: Instant,
        out: VecDeque<Output>,
        rng: fastrand::Rng,
        limiter: Limiter,
        config: ClientConfig,
        next_conn: u64,
        /// The stream each connection received from the session so far.
        framers: BTreeMap<ConnId, Framer>,
    }

    /// A message the session sent: its name and, for requests and haves,
    /// what it names.
    #[derive(Debug, PartialEq, Eq)]
    enum Sent {
        Msg(&'static str),
        Request(BlockRequest),
        Have(u32),
        /// An extension message other than the extended handshake.
        Extended(u8, Vec<u8>),
    }

    impl Env {
        fn new() -> Self {
            Env {
                now: Instant::ZERO,
                out: VecDeque::new(),
                rng: fastrand::Rng::with_seed(5),
                limiter: Limiter::new(Limits::default()),
                config: ClientConfig::new(PeerId([2; 20]), 5),
                next_conn: 100,
                framers: BTreeMap::new(),
            }
        }

        fn ctx(&mut self) -> Ctx<'_> {
            Ctx {
                now: self.now,
                out: &mut self.out,
                rng: &mut self.rng,
                limiter: &mut self.limiter,
                config: &self.config,
                next_conn: &mut self.next_conn,
            }
        }

        /// Drains the outputs: messages sent to `conn` are decoded, the rest
        /// returned.
        fn drain(&mut self, conn: ConnId) -> (Vec<Sent>, Vec<Output>) {
            let mut sent = Vec::new();
            let mut other = Vec::new();
            while let Some(o) = self.out.pop_front() {
                let Output::PeerSend { conn: c, data } = o else {
                    other.push(o);
                    continue;
                };
                if c != conn {
                    continue;
                }
                let framer = self.framers.entry(c).or_default();
                let mut frames = framer.feed(&data);
                while let Some(f) = frames.next() {
                    if let Ok(Frame::Message(m)) = f {
                        sent.push(match m {
                            Message::Request(r) => Sent::Request(r),
                            Message::Have(i) => Sent::Have(i),
                            Message::Extended { id, payload } if id != 0 => {
                                Sent::Extended(id, payload.to_vec())
                            }
                            m => Sent::Msg(m.name()),
                        });
                    }
                }
            }
            (sent, other)
        }
    }

    impl Session {
        /// Answers every pending load with zeros, as storage would.
        fn block_loaded_all(&mut self, env: &mut Env) {
            let loads: Vec<BlockInfo> = self.loads.blocks().collect();
            for b in loads {
                let data = vec![0u8; b.len as usize];
                self.block_loaded(&mut env.ctx(), b.piece.get(), b.offset, &data);
            }
        }
    }

    /// Four 32 KiB pieces in one file, and the bytes.
    fn bundle() -> (Metainfo, Vec<u8>) {
        let content: Vec<u8> = (0..4 * 32 * 1024u32).map(|i| (i * 7 % 253) as u8).collect();
        let builder = TorrentBuilder::new("f.bin")
            .file(vec!["f.bin".into()], content.len() as u64)
            .piece_length(32 * 1024);
        let hashes = PieceHasher::hash_all(builder.lengths().unwrap(), &content).unwrap();
        (builder.build(hashes).unwrap(), content)
    }

    fn add(meta: &Metainfo, role: Role, have: Bitfield) -> AddBundle {
        AddBundle {
            source: BundleSource::Metainfo(Box::new(meta.clone())),
            role,
            have,
            selection: None,
            paused: false,
            client_trackers: true,
        }
    }

    /// A downloading session with one seed peer at `conn` that unchoked us.
    fn downloading(env: &mut Env, meta: &Metainfo, conn: ConnId) -> Session {
        let mut s =
            Session::new(&mut env.ctx(), add(meta, Role::Download, Bitfield::new(0))).unwrap();
        connect_seed(env, &mut s, conn, THEM);
        s
    }

    fn connect_seed(env: &mut Env, s: &mut Session, conn: ConnId, id: PeerId) {
        s.add_peer(env.now, conn);
        s.peer_opened(&mut env.ctx(), conn);
        let mut bytes = Handshake::swarmdrop(s.info_hash(), id).encode().to_vec();
        Message::HaveAll.encode_into(&mut bytes);
        Message::Unchoke.encode_into(&mut bytes);
        s.peer_data(&mut env.ctx(), conn, &bytes);
    }

    fn requests(sent: &[Sent]) -> Vec<BlockRequest> {
        sent.iter()
            .filter_map(|m| match m {
                Sent::Request(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// The requests for the first requested piece.
    fn first_piece(reqs: &[BlockRequest]) -> Vec<BlockRequest> {
        reqs.iter()
            .filter(|r| r.index == reqs[0].index)
            .copied()
            .collect()
    }

    /// Answers requests with blocks of `content` (or garbage).
    fn answer(
        env: &mut Env,
        s: &mut Session,
        conn: ConnId,
        reqs: &[BlockRequest],
        content: &[u8],
        corrupt: bool,
    ) {
        let mut bytes = Vec::new();
        for r in reqs {
            let start = r.index as usize * 32 * 1024 + r.begin as usize;
            let mut block = content[start..start + r.length as usize].to_vec();
            if corrupt {
                block[0] ^= 0xff;
            }
            Message::Piece {
                index: r.index,
                begin: r.begin,
                block: &block,
            }
            .encode_into(&mut bytes);
        }
        s.peer_data(&mut env.ctx(), conn, &bytes);
    }

    /// The pieces the web seed fetches among `outputs` touch (pieces of
    /// 32 KiB, as in [`bundle`]).
    fn fetched(outputs: &[Output]) -> Vec<u32> {
        let mut pieces: Vec<u32> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::WebSeedFetch(f) => {
                    let end = f.piece * 32 * 1024 + f.offset + f.len;
                    Some(f.piece..end.div_ceil(32 * 1024))
                }
                _ => None,
            })
            .flatten()
            .collect();
        pieces.sort_unstable();
        pieces.dedup();
        pieces
    }

    /// The extended handshakes `conn` received from the session so far.
    fn extended_handshakes(env: &mut Env, conn: ConnId) -> Vec<ExtendedHandshake> {
        let mut found = Vec::new();
        let mut rest = VecDeque::new();
        while let Some(o) = env.out.pop_front() {
            let Output::PeerSend { conn: c, data } = &o else {
                rest.push_back(o);
                continue;
            };
            if *c != conn {
                rest.push_back(o);
                continue;
            }
            let framer = env.framers.entry(conn).or_default();
            let mut frames = framer.feed(data);
            while let Some(f) = frames.next() {
                if let Ok(Frame::Message(Message::Extended { id: 0, payload })) = f {
                    found.push(ExtendedHandshake::decode(payload).unwrap());
                }
            }
        }
        env.out = rest;
        found
    }

    #[test]
    fn peers_met_before_the_metadata_get_a_handshake_with_its_size_once_it_arrives() {
        let mut env = Env::new();
        let (meta, _) = bundle();
        let magnet = crate::engine::magnet::Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{}",
            meta.info_hash.to_hex()
        ))
        .unwrap();
        let start = AddBundle {
            source: BundleSource::Magnet(Box::new(magnet)),
            role: Role::Download,
            have: Bitfield::new(0),
            selection: None,
            paused: false,
            client_trackers: true,
        };
        let mut s = Session::new(&mut env.ctx(), start).unwrap();
        // Two peers: one with the metadata, one (a WebTorrent leecher, say) without.
        let (seed, leecher) = (ConnId(1), ConnId(2));
        for (conn, id, size) in [
            (seed, THEM, Some(meta.info_bytes.len() as u64)),
            (leecher, PeerId([4; 20]), None),
        ] {
            s.add_peer(env.now, conn);
            s.peer_opened(&mut env.ctx(), conn);
            let mut bytes = Handshake::swarmdrop(s.info_hash(), id).encode().to_vec();
            let mut m = BTreeMap::new();
            m.insert("ut_metadata".to_owned(), 3);
            let theirs = ExtendedHandshake {
                m,
                metadata_size: size,
                client: None,
                reqq: None,
            };
            Message::Extended {
                id: 0,
                payload: &theirs.encode(),
            }
            .encode_into(&mut bytes);
            s.peer_data(&mut env.ctx(), conn, &bytes);
        }
        let first = extended_handshakes(&mut env, leecher);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].metadata_size, None, "no metadata yet");

        // The seed answers the session's request for the one metadata piece.
        let reply = MetadataMessage::Data {
            piece: 0,
            total_size: meta.info_bytes.len() as u64,
            data: &meta.info_bytes,
        }
        .to_vec();
        let mut bytes = Vec::new();
        Message::Extended {
            id: LOCAL_UT_METADATA_ID,
            payload: &reply,
        }
        .encode_into(&mut bytes);
        s.peer_data(&mut env.ctx(), seed, &bytes);
        assert!(s.ready.is_some(), "the metadata was taken");

        let later = extended_handshakes(&mut env, leecher);
        assert_eq!(later.len(), 1, "one more handshake to the peer met before");
        assert_eq!(later[0].metadata_size, Some(meta.info_bytes.len() as u64));
        assert_eq!(later[0].ut_metadata(), Some(LOCAL_UT_METADATA_ID));
    }

    #[test]
    fn a_web_seed_holding_part_of_the_bundle_is_asked_only_for_those_pieces() {
        let mut env = Env::new();
        let (mut meta, _) = bundle();
        meta.url_list = vec!["http://server/seed/f.bin".into()];
        let mut start = add(&meta, Role::Download, Bitfield::new(0));
        start.paused = true;
        let mut s = Session::new(&mut env.ctx(), start).unwrap();
        let mut partial = Bitfield::new(4);
        partial.set(1, true);
        s.web_seed_have(&mut env.ctx(), "http://server/seed/f.bin", &partial);
        s.web_seed_have(&mut env.ctx(), "http://elsewhere/f.bin", &Bitfield::new(4));
        let _ = env.drain(ConnId(0));
        s.resume(&mut env.ctx());
        let (_, out) = env.drain(ConnId(0));
        assert_eq!(fetched(&out), vec![1], "only the piece the server holds");
        s.web_seed_have(
            &mut env.ctx(),
            "http://server/seed/f.bin",
            &Bitfield::full(4),
        );
        let (_, out) = env.drain(ConnId(0));
        assert_eq!(
            fetched(&out),
            vec![0, 2, 3],
            "the rest once it holds everything"
        );
    }

    // ----- web seed runs -----

    /// `pieces` pieces of `piece_len` bytes in one file, on a web seed; and
    /// the bytes.
    fn web_seeded(pieces: u32, piece_len: u32) -> (Metainfo, Vec<u8>) {
        let content: Vec<u8> = (0..pieces * piece_len)
            .map(|i| (i.wrapping_mul(31) % 251) as u8)
            .collect();
        let builder = TorrentBuilder::new("f.bin")
            .file(vec!["f.bin".into()], content.len() as u64)
            .piece_length(piece_len);
        let hashes = PieceHasher::hash_all(builder.lengths().unwrap(), &content).unwrap();
        let mut meta = builder.build(hashes).unwrap();
        meta.url_list = vec!["http://server/seed/f.bin".into()];
        (meta, content)
    }

    /// A download of `pieces` pieces of `piece_len` bytes with a web seed
    /// and no peers, started: the session, the bytes, and the web seed's
    /// first fetches.
    fn web_seed_download(
        env: &mut Env,
        pieces: u32,
        piece_len: u32,
    ) -> (Session, Vec<u8>, Vec<WebSeedFetch>) {
        let (meta, content) = web_seeded(pieces, piece_len);
        let mut s =
            Session::new(&mut env.ctx(), add(&meta, Role::Download, Bitfield::new(0))).unwrap();
        s.pump(&mut env.ctx());
        let (_, out) = env.drain(ConnId(0));
        (s, content, web_seed_fetches(&out))
    }

    fn web_seed_fetches(outputs: &[Output]) -> Vec<WebSeedFetch> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::WebSeedFetch(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    fn stored_pieces(outputs: &[Output]) -> Vec<u32> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::StorePiece { piece, .. } => Some(*piece),
                _ => None,
            })
            .collect()
    }

    /// The bytes of the bundle a fetch asks for.
    fn fetch_bytes<'a>(s: &Session, content: &'a [u8], f: &WebSeedFetch) -> &'a [u8] {
        let l = s.ready.as_ref().unwrap().lengths();
        let start = l.piece_offset(l.validate_piece(f.piece).unwrap()) + u64::from(f.offset);
        &content[start as usize..start as usize + f.len as usize]
    }

    /// The pieces a fetch touches.
    fn fetch_pieces(s: &Session, f: &WebSeedFetch) -> std::ops::RangeInclusive<u32> {
        let l = s.ready.as_ref().unwrap().lengths();
        let start = l.piece_offset(l.validate_piece(f.piece).unwrap()) + u64::from(f.offset);
        let last = (start + u64::from(f.len) - 1) / u64::from(l.piece_length());
        f.piece..=last as u32
    }

    #[test]
    fn a_web_seed_fetches_runs_of_consecutive_pieces_and_stores_each_piece_once() {
        let mut env = Env::new();
        let piece_len = 64 * 1024;
        let (mut s, content, mut batch) = web_seed_download(&mut env, 80, piece_len);
        let mut taken = BTreeSet::new();
        let mut stored = Vec::new();
        let mut fetches = 0;
        for _ in 0..100 {
            if batch.is_empty() {
                break;
            }
            for f in &batch {
                fetches += 1;
                assert_eq!(f.offset, 0, "runs of whole pieces: {f:?}");
                assert!(f.len <= MAX_FETCH_LEN);
                let pieces = fetch_pieces(&s, f);
                assert_eq!(f.len, pieces.clone().count() as u32 * piece_len);
                for p in pieces.clone() {
                    assert!(taken.insert(p), "piece {p} fetched twice");
                }
                // A run stops at its bound, at the end, or at a piece taken.
                let next = pieces.end() + 1;
                assert!(
                    pieces.clone().count() == MAX_RUN_PIECES
                        || f.len == MAX_FETCH_LEN
                        || next == 80
                        || taken.contains(&next),
                    "{f:?} stopped before piece {next}"
                );
            }
            for f in &batch {
                let data = fetch_bytes(&s, &content, f).to_vec();
                s.web_seed_data(&mut env.ctx(), f.conn, f.piece, f.offset, &data);
            }
            let (_, out) = env.drain(ConnId(0));
            stored.extend(stored_pieces(&out));
            batch = web_seed_fetches(&out);
        }
        stored.sort_unstable();
        assert_eq!(
            stored,
            (0..80).collect::<Vec<_>>(),
            "each piece stored once"
        );
        assert!(fetches <= 80 / 4, "{fetches} fetches for 80 pieces");
        let p = s.progress(env.now);
        assert_eq!(p.downloaded_server, content.len() as u64);
    }

    #[test]
    fn a_bad_piece_in_a_run_is_wanted_again_alone_and_the_good_ones_are_kept() {
        let mut env = Env::new();
        let piece_len = 64 * 1024;
        let (mut s, content, fetches) = web_seed_download(&mut env, 20, piece_len);
        let f = fetches
            .into_iter()
            .find(|f| fetch_pieces(&s, f).count() >= 3)
            .expect("a run of three pieces or more");
        let pieces: Vec<u32> = fetch_pieces(&s, &f).collect();
        let bad = pieces[1];
        let mut data = fetch_bytes(&s, &content, &f).to_vec();
        data[(bad - f.piece) as usize * piece_len as usize + 100] ^= 0xff;
        s.web_seed_data(&mut env.ctx(), f.conn, f.piece, f.offset, &data);
        let (_, out) = env.drain(ConnId(0));
        let mut stored = stored_pieces(&out);
        stored.sort_unstable();
        let good: Vec<u32> = pieces.iter().copied().filter(|&p| p != bad).collect();
        assert_eq!(stored, good, "every piece of the run but the bad one");
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Event(Event::PeerDropped {
                reason: DropReason::BadData,
                peer_id: None,
                ..
            })
        )));
        for &p in &good {
            s.piece_stored(&mut env.ctx(), p);
        }
        let ready = s.ready.as_ref().unwrap();
        assert!(!ready.picker.have().get(bad));
        assert_eq!(
            ready.picker.partial_count(),
            0,
            "the bad piece is open again"
        );
        assert_eq!(
            ready.picker.wanted_remaining().pieces,
            20 - good.len() as u32,
            "and wanted"
        );
        let p = s.progress(env.now);
        assert_eq!(
            p.downloaded_server,
            u64::from(f.len),
            "every block counted once"
        );
    }

    #[test]
    fn a_cut_short_answer_keeps_the_blocks_that_came_and_refetches_the_rest() {
        let mut env = Env::new();
        let piece_len = 64 * 1024;
        let (mut s, content, fetches) = web_seed_download(&mut env, 20, piece_len);
        let f = fetches
            .iter()
            .find(|f| fetch_pieces(&s, f).count() >= 3)
            .expect("a run of three pieces or more")
            .clone();
        // Two pieces, three blocks and 100 bytes came before the failure.
        let came = 2 * piece_len as usize + 3 * BLOCK_SIZE as usize + 100;
        let data = fetch_bytes(&s, &content, &f)[..came].to_vec();
        s.web_seed_failed(&mut env.ctx(), f.conn, f.piece, f.offset, &data, "reset");
        let (_, out) = env.drain(ConnId(0));
        assert_eq!(stored_pieces(&out), vec![f.piece, f.piece + 1]);
        assert!(web_seed_fetches(&out).is_empty(), "backing off");
        let p = s.progress(env.now);
        assert_eq!(
            p.downloaded_server,
            2 * u64::from(piece_len) + 3 * u64::from(BLOCK_SIZE)
        );
        // A short answer to the other fetch is used the same way.
        let other = fetches
            .iter()
            .find(|g| **g != f && fetch_pieces(&s, g).count() >= 2);
        if let Some(g) = other {
            let data = &fetch_bytes(&s, &content, g)[..piece_len as usize];
            s.web_seed_data(&mut env.ctx(), g.conn, g.piece, g.offset, data);
            let (_, out) = env.drain(ConnId(0));
            assert_eq!(stored_pieces(&out), vec![g.piece]);
        }
        // After the backoff the rest of the third piece is fetched first.
        env.now += Duration::from_secs(6);
        s.handle_timeout(&mut env.ctx());
        let (_, out) = env.drain(ConnId(0));
        let again = web_seed_fetches(&out);
        assert!(
            again
                .iter()
                .any(|g| (g.piece, g.offset) == (f.piece + 2, 3 * BLOCK_SIZE)),
            "{again:?}"
        );
    }

    #[test]
    fn runs_skip_pieces_only_in_unselected_files_and_span_file_boundaries() {
        let mut env = Env::new();
        let piece_len: u32 = 32 * 1024;
        // a: pieces 0-2; b (not selected): pieces 2-7; c: pieces 7-8.
        let sizes = [80_000u64, 5 * u64::from(piece_len), 50_000];
        let total: u64 = sizes.iter().sum();
        let content: Vec<u8> = (0..total).map(|i| (i * 13 % 241) as u8).collect();
        let builder = TorrentBuilder::new("dir")
            .piece_length(piece_len)
            .file(vec!["a".into()], sizes[0])
            .file(vec!["b".into()], sizes[1])
            .file(vec!["c".into()], sizes[2]);
        let hashes = PieceHasher::hash_all(builder.lengths().unwrap(), &content).unwrap();
        let mut meta = builder.build(hashes).unwrap();
        meta.url_list = vec!["http://server/seed/".into()];
        let mut start = add(&meta, Role::Download, Bitfield::new(0));
        start.selection = Some(vec![0, 2]);
        let mut s = Session::new(&mut env.ctx(), start).unwrap();
        s.pump(&mut env.ctx());
        let mut stored = Vec::new();
        let mut runs = Vec::new();
        for _ in 0..20 {
            let (_, out) = env.drain(ConnId(0));
            stored.extend(stored_pieces(&out));
            let batch = web_seed_fetches(&out);
            if batch.is_empty() {
                break;
            }
            for f in batch {
                let pieces = fetch_pieces(&s, &f);
                assert!(
                    pieces.clone().all(|p| !(3..=6).contains(&p)),
                    "{f:?} fetches pieces only in b"
                );
                // The ranges are the fetch's bytes, file by file.
                let mut bytes = Vec::new();
                let offsets = [0, sizes[0], sizes[0] + sizes[1]];
                for r in &f.ranges {
                    let i = ["a", "b", "c"]
                        .iter()
                        .position(|n| r.url == format!("http://server/seed/dir/{n}"))
                        .expect("a file's URL");
                    let at = (offsets[i] + r.start) as usize;
                    bytes.extend_from_slice(&content[at..at + (r.end - r.start) as usize]);
                }
                assert_eq!(bytes, fetch_bytes(&s, &content, &f));
                runs.push((*pieces.start(), *pieces.end(), f.ranges.len()));
                s.web_seed_data(&mut env.ctx(), f.conn, f.piece, f.offset, &bytes);
            }
        }
        runs.sort_unstable();
        // Piece 2 holds the end of a and the start of b; piece 7 the end of
        // b and the start of c: each comes in a fetch of two ranges.
        let spanning = |p: u32| runs.iter().any(|&(a, b, n)| (a..=b).contains(&p) && n == 2);
        assert!(spanning(2) && spanning(7), "{runs:?}");
        assert!(runs.contains(&(0, 2, 2)), "one run for a: {runs:?}");
        stored.sort_unstable();
        assert_eq!(stored, vec![0, 1, 2, 7, 8]);
    }

    #[test]
    fn a_piece_a_peer_brings_before_the_web_seed_is_stored_and_counted_once() {
        let mut env = Env::new();
        let (mut meta, content) = bundle();
        meta.url_list = vec!["http://server/seed/f.bin".into()];
        let mut s =
            Session::new(&mut env.ctx(), add(&meta, Role::Download, Bitfield::new(0))).unwrap();
        s.pump(&mut env.ctx());
        let (_, out) = env.drain(ConnId(0));
        let fetches = web_seed_fetches(&out);
        let covered: BTreeSet<u32> = fetches.iter().flat_map(|f| fetch_pieces(&s, f)).collect();
        assert_eq!(covered.len(), 4, "the web seed's runs hold every piece");
        assert!(fetches.len() <= 2, "{fetches:?}");
        // A seed joins: in endgame it is asked for the same blocks, and
        // brings them first.
        let peer = ConnId(7);
        connect_seed(&mut env, &mut s, peer, THEM);
        let (sent, out) = env.drain(peer);
        let reqs = requests(&sent);
        assert!(!reqs.is_empty(), "endgame requests");
        answer(&mut env, &mut s, peer, &reqs, &content, false);
        let (_, more) = env.drain(peer);
        let by_peer: BTreeSet<u32> = stored_pieces(&out)
            .into_iter()
            .chain(stored_pieces(&more))
            .collect();
        assert!(!by_peer.is_empty());
        // Then the web seed's answers come: only the rest is taken.
        let mut stored = Vec::new();
        for f in &fetches {
            let data = fetch_bytes(&s, &content, f).to_vec();
            s.web_seed_data(&mut env.ctx(), f.conn, f.piece, f.offset, &data);
            let (_, out) = env.drain(peer);
            stored.extend(stored_pieces(&out));
        }
        for p in &stored {
            assert!(!by_peer.contains(p), "piece {p} stored twice");
        }
        assert_eq!(by_peer.len() + stored.len(), 4);
        let p = s.progress(env.now);
        assert_eq!(
            p.downloaded_peers + p.downloaded_server,
            content.len() as u64,
            "no block counted twice"
        );
        assert_eq!(
            p.downloaded_peers,
            reqs.iter().map(|r| u64::from(r.length)).sum::<u64>()
        );
    }

    #[test]
    fn pausing_aborts_a_run_in_flight_and_its_late_answer_is_ignored() {
        let mut env = Env::new();
        let (mut s, content, fetches) = web_seed_download(&mut env, 20, 64 * 1024);
        assert!(!fetches.is_empty());
        s.pause(&mut env.ctx(), PauseReason::User);
        let (_, out) = env.drain(ConnId(0));
        for f in &fetches {
            assert!(
                out.iter()
                    .any(|o| matches!(o, Output::ClosePeer { conn, .. } if *conn == f.conn)),
                "the glue aborts the fetch"
            );
            let data = fetch_bytes(&s, &content, f).to_vec();
            s.web_seed_data(&mut env.ctx(), f.conn, f.piece, f.offset, &data);
        }
        let (_, out) = env.drain(ConnId(0));
        assert!(stored_pieces(&out).is_empty());
        assert_eq!(s.progress(env.now).downloaded_server, 0);
        let ready = s.ready.as_ref().unwrap();
        assert_eq!(ready.picker.partial_count(), 0, "every piece is open again");
        s.resume(&mut env.ctx());
        let (_, out) = env.drain(ConnId(0));
        assert!(
            !web_seed_fetches(&out).is_empty(),
            "fetched again on resume"
        );
    }

    #[test]
    fn below_the_floor_with_another_downloader_around_a_web_seed_takes_a_piece_at_a_time() {
        let mut env = Env::new();
        let piece_len = 64 * 1024;
        let (meta, content) = web_seeded(40, piece_len);
        let mut start = add(&meta, Role::Download, Bitfield::new(0));
        start.paused = true;
        let mut s = Session::new(&mut env.ctx(), start).unwrap();
        // Another downloader, with nothing yet: no bytes from peers.
        let peer = ConnId(7);
        s.add_peer(env.now, peer);
        s.peer_opened(&mut env.ctx(), peer);
        let mut bytes = Handshake::swarmdrop(s.info_hash(), THEM).encode().to_vec();
        Message::HaveNone.encode_into(&mut bytes);
        s.peer_data(&mut env.ctx(), peer, &bytes);
        let _ = env.drain(peer);
        s.resume(&mut env.ctx());
        let (_, out) = env.drain(peer);
        let fetches = web_seed_fetches(&out);
        assert!(!fetches.is_empty());
        for f in &fetches {
            assert_eq!((f.offset, f.len), (0, piece_len), "one piece: {f:?}");
        }
        // Once it is gone, runs again.
        s.peer_closed(&mut env.ctx(), peer);
        let (_, _) = env.drain(peer);
        let f = &fetches[0];
        let data = fetch_bytes(&s, &content, f).to_vec();
        s.web_seed_data(&mut env.ctx(), f.conn, f.piece, f.offset, &data);
        let (_, out) = env.drain(peer);
        let again = web_seed_fetches(&out);
        assert!(
            again.iter().any(|g| g.len > piece_len),
            "a run of several pieces: {again:?}"
        );
    }

    #[test]
    fn a_web_seed_dropped_for_failures_comes_back_when_its_pieces_are_known() {
        let mut env = Env::new();
        let (mut meta, _) = bundle();
        meta.url_list = vec!["http://server/seed/f.bin".into()];
        let mut s =
            Session::new(&mut env.ctx(), add(&meta, Role::Download, Bitfield::new(0))).unwrap();
        s.pump(&mut env.ctx());
        // The server has nothing yet: every fetch fails until it is dropped.
        for _ in 0..100 {
            let (_, out) = env.drain(ConnId(0));
            let fetches: Vec<WebSeedFetch> = out
                .into_iter()
                .filter_map(|o| match o {
                    Output::WebSeedFetch(f) => Some(f),
                    _ => None,
                })
                .collect();
            if fetches.is_empty() && s.web_seeds.is_empty() {
                break;
            }
            for f in fetches {
                s.web_seed_failed(&mut env.ctx(), f.conn, f.piece, f.offset, &[], "HTTP 503");
            }
            env.now += Duration::from_secs(600);
            s.handle_timeout(&mut env.ctx());
        }
        assert!(s.web_seeds.is_empty(), "dropped after repeated failures");
        let mut partial = Bitfield::new(4);
        partial.set(2, true);
        s.web_seed_have(&mut env.ctx(), "http://server/seed/f.bin", &partial);
        let (_, out) = env.drain(ConnId(0));
        assert_eq!(fetched(&out), vec![2]);
    }

    #[test]
    fn adds_that_contradict_the_torrent_are_refused() {
        let (meta, _) = bundle();
        let mut env = Env::new();
        let seed = Session::new(&mut env.ctx(), add(&meta, Role::Seed, Bitfield::new(4)));
        assert_eq!(
            seed.err(),
            Some(CommandError::SeedIncomplete { have: 0, total: 4 })
        );
        let wrong = Session::new(&mut env.ctx(), add(&meta, Role::Download, Bitfield::new(5)));
        assert_eq!(
            wrong.err(),
            Some(CommandError::HaveLength {
                expected: 4,
                got: 5
            })
        );
        let mut a = add(&meta, Role::Download, Bitfield::new(4));
        a.selection = Some(vec![1]);
        let bad = Session::new(&mut env.ctx(), a);
        assert_eq!(
            bad.err(),
            Some(CommandError::BadFileIndex { index: 1, files: 1 })
        );
    }

    #[test]
    fn blocks_from_a_peer_become_a_stored_piece_and_then_a_have() {
        let (meta, content) = bundle();
        let mut env = Env::new();
        let conn = ConnId(1);
        let mut s = downloading(&mut env, &meta, conn);
        let (sent, _) = env.drain(conn);
        assert!(sent.contains(&Sent::Msg("interested")));
        let reqs = requests(&sent);
        assert_eq!(
            reqs.len(),
            crate::engine::peer::MIN_PIPELINE,
            "a new peer's pipeline"
        );
        let piece = first_piece(&reqs);
        answer(&mut env, &mut s, conn, &piece, &content, false);
        let (_, other) = env.drain(conn);
        let stored: Vec<(u32, Vec<u8>)> = other
            .into_iter()
            .filter_map(|o| match o {
                Output::StorePiece { piece, data, .. } => Some((piece, data)),
                _ => None,
            })
            .collect();
        assert_eq!(stored.len(), 1);
        let (index, data) = &stored[0];
        let start = *index as usize * 32 * 1024;
        assert!(data[..] == content[start..start + 32 * 1024]);
        // Stored: now it is ours, and the peer hears of it.
        s.piece_stored(&mut env.ctx(), *index);
        let (sent, other) = env.drain(conn);
        assert!(sent.contains(&Sent::Have(*index)));
        assert!(other.iter().any(
            |o| matches!(o, Output::Event(Event::PieceVerified { piece, .. }) if piece == index)
        ));
    }

    /// The pieces a session asked the host to hash, with their bytes.
    fn to_hash(out: Vec<Output>) -> Vec<(u32, Vec<u8>)> {
        out.into_iter()
            .filter_map(|o| match o {
                Output::HashPiece { piece, data, .. } => Some((piece, data)),
                _ => None,
            })
            .collect()
    }

    /// A download with the host hashing (`ClientConfig::host_hashes`) whose
    /// peer has answered the first piece it was asked for (`corrupt`: with a
    /// bad byte): the session, its peer, the bundle's bytes, and what the
    /// session put out after the answer.
    fn host_hashing_after_one_piece(corrupt: bool) -> (Env, Session, ConnId, Vec<u8>, Vec<Output>) {
        let (meta, content) = bundle();
        let mut env = Env::new();
        env.config.host_hashes = true;
        let conn = ConnId(1);
        let mut s = downloading(&mut env, &meta, conn);
        let (sent, _) = env.drain(conn);
        let piece = first_piece(&requests(&sent));
        answer(&mut env, &mut s, conn, &piece, &content, corrupt);
        let (_, other) = env.drain(conn);
        (env, s, conn, content, other)
    }

    #[test]
    fn with_the_host_hashing_a_piece_is_stored_once_the_host_brings_back_its_right_hash() {
        let (mut env, mut s, conn, content, other) = host_hashing_after_one_piece(false);
        assert!(
            !other.iter().any(|o| matches!(o, Output::StorePiece { .. })),
            "not before the hash"
        );
        let hashing = to_hash(other);
        assert_eq!(hashing.len(), 1);
        let (index, data) = hashing.into_iter().next().unwrap();
        let start = index as usize * 32 * 1024;
        assert!(data[..] == content[start..start + 32 * 1024]);
        let hash = crate::engine::hash::sha1(&data);
        s.piece_hashed(&mut env.ctx(), index, data, hash);
        let (_, other) = env.drain(conn);
        assert!(other.iter().any(
            |o| matches!(o, Output::StorePiece { piece, data, .. } if *piece == index && data[..] == content[start..start + 32 * 1024])
        ));
        // The same answer again is not a second piece.
        s.piece_hashed(
            &mut env.ctx(),
            index,
            content[start..start + 32 * 1024].to_vec(),
            hash,
        );
        let (_, other) = env.drain(conn);
        assert!(!other.iter().any(|o| matches!(o, Output::StorePiece { .. })));
    }

    #[test]
    fn with_the_host_hashing_a_corrupt_piece_from_one_peer_drops_it_and_is_not_stored() {
        let (mut env, mut s, conn, _, other) = host_hashing_after_one_piece(true);
        let hashing = to_hash(other);
        assert_eq!(hashing.len(), 1);
        let (index, data) = hashing.into_iter().next().unwrap();
        let hash = crate::engine::hash::sha1(&data);
        s.piece_hashed(&mut env.ctx(), index, data, hash);
        let (_, other) = env.drain(conn);
        assert!(other.contains(&Output::ClosePeer {
            conn,
            reason: DropReason::BadData
        }));
        assert!(!other.iter().any(|o| matches!(o, Output::StorePiece { .. })));
    }

    #[test]
    fn a_peer_that_sends_a_corrupt_piece_alone_is_dropped_and_not_let_back() {
        let (meta, content) = bundle();
        let mut env = Env::new();
        let conn = ConnId(1);
        let mut s = downloading(&mut env, &meta, conn);
        let (sent, _) = env.drain(conn);
        let reqs = requests(&sent);
        let piece = first_piece(&reqs);
        answer(&mut env, &mut s, conn, &piece, &content, true);
        let (_, other) = env.drain(conn);
        assert!(other.contains(&Output::ClosePeer {
            conn,
            reason: DropReason::BadData
        }));
        assert!(!other.iter().any(|o| matches!(o, Output::StorePiece { .. })));
        // The same peer id on a new connection is refused at its handshake.
        let again = ConnId(2);
        connect_seed(&mut env, &mut s, again, THEM);
        let (_, other) = env.drain(again);
        assert!(other.contains(&Output::ClosePeer {
            conn: again,
            reason: DropReason::BadData
        }));
    }

    #[test]
    fn a_second_connection_to_the_same_peer_is_dropped() {
        let (meta, _) = bundle();
        let mut env = Env::new();
        let mut s = downloading(&mut env, &meta, ConnId(1));
        connect_seed(&mut env, &mut s, ConnId(2), THEM);
        let (_, other) = env.drain(ConnId(2));
        assert!(other.contains(&Output::ClosePeer {
            conn: ConnId(2),
            reason: DropReason::DuplicatePeer
        }));
        assert_eq!(s.peer_count(), 1);
    }

    #[test]
    fn a_full_disk_pauses_the_bundle_instead_of_failing_it() {
        let (meta, content) = bundle();
        let mut env = Env::new();
        let conn = ConnId(1);
        let mut s = downloading(&mut env, &meta, conn);
        let (sent, _) = env.drain(conn);
        let reqs = requests(&sent);
        let piece = first_piece(&reqs);
        answer(&mut env, &mut s, conn, &piece, &content, false);
        env.drain(conn);
        s.store_failed(&mut env.ctx(), reqs[0].index, StoreFailure::DiskFull);
        let (sent, other) = env.drain(conn);
        assert!(s.is_paused());
        assert!(other.contains(&Output::Event(Event::Paused {
            info_hash: s.info_hash(),
            reason: PauseReason::DiskFull
        })));
        assert!(sent.contains(&Sent::Msg("not interested")));
        assert!(
            sent.iter().filter(|m| **m == Sent::Msg("cancel")).count() >= 1,
            "outstanding requests cancelled"
        );
        // Resumed, the piece that could not be stored is fetched again.
        s.resume(&mut env.ctx());
        let (sent, _) = env.drain(conn);
        assert!(requests(&sent).iter().any(|r| r.index == reqs[0].index));
    }

    #[test]
    fn no_new_piece_is_started_while_pieces_in_assembly_hold_their_budget() {
        let (meta, content) = bundle();
        let mut env = Env::new();
        env.config.max_partial_bytes = 32 * 1024; // one piece
        let conn = ConnId(1);
        let mut s = downloading(&mut env, &meta, conn);
        let (sent, _) = env.drain(conn);
        let first = requests(&sent);
        let started: BTreeSet<u32> = first.iter().map(|r| r.index).collect();
        assert_eq!(started.len(), 2, "two pieces under way");
        // One block arrives: its piece now takes the whole budget.
        answer(&mut env, &mut s, conn, &first[..1], &content, false);
        let (sent, _) = env.drain(conn);
        assert!(
            requests(&sent).iter().all(|r| started.contains(&r.index)),
            "no third piece while the budget is held"
        );
        // Both pieces complete and go to storage: new pieces start.
        answer(&mut env, &mut s, conn, &first[1..], &content, false);
        let (sent, other) = env.drain(conn);
        assert_eq!(
            other
                .iter()
                .filter(|o| matches!(o, Output::StorePiece { .. }))
                .count(),
            2
        );
        assert!(requests(&sent).iter().any(|r| !started.contains(&r.index)));
    }

    #[test]
    fn a_paused_bundle_serves_nothing_and_asks_for_nothing() {
        let (meta, _) = bundle();
        let mut env = Env::new();
        let conn = ConnId(1);
        let mut s = downloading(&mut env, &meta, conn);
        env.drain(conn);
        s.pause(&mut env.ctx(), PauseReason::User);
        env.drain(conn);
        // The peer unchokes us again and asks for a piece: nothing moves.
        let mut bytes = Vec::new();
        Message::Choke.encode_into(&mut bytes);
        Message::Unchoke.encode_into(&mut bytes);
        s.peer_data(&mut env.ctx(), conn, &bytes);
        env.now += Duration::from_secs(30);
        s.handle_timeout(&mut env.ctx());
        let (sent, other) = env.drain(conn);
        assert!(requests(&sent).is_empty(), "{sent:?}");
        assert!(!other
            .iter()
            .any(|o| matches!(o, Output::LoadBlock { .. } | Output::WebSeedFetch(_))));
    }

    #[test]
    fn pausing_chokes_peers_and_withdraws_interest_then_refuses_their_requests() {
        let (meta, _) = bundle();
        let mut env = Env::new();
        let conn = ConnId(1);
        // We hold pieces 0 and 1; the peer holds 2 and 3: each wants the other's.
        let mut have = Bitfield::new(4);
        have.set(0, true);
        have.set(1, true);
        let mut s = Session::new(&mut env.ctx(), add(&meta, Role::Download, have)).unwrap();
        s.add_peer(env.now, conn);
        s.peer_opened(&mut env.ctx(), conn);
        let mut bytes = Handshake::swarmdrop(s.info_hash(), THEM).encode().to_vec();
        Message::Bitfield(&[0b0011_0000]).encode_into(&mut bytes);
        Message::Interested.encode_into(&mut bytes);
        Message::Unchoke.encode_into(&mut bytes);
        s.peer_data(&mut env.ctx(), conn, &bytes);
        env.now += Duration::from_secs(15);
        s.handle_timeout(&mut env.ctx());
        let (sent, _) = env.drain(conn);
        assert!(sent.contains(&Sent::Msg("interested")), "{sent:?}");
        assert!(sent.contains(&Sent::Msg("unchoke")), "{sent:?}");

        s.pause(&mut env.ctx(), PauseReason::User);
        let (sent, _) = env.drain(conn);
        assert!(sent.contains(&Sent::Msg("choke")), "{sent:?}");
        assert!(sent.contains(&Sent::Msg("not interested")), "{sent:?}");

        // The peer asks for our piece anyway: nothing is read or sent.
        let mut bytes = Vec::new();
        Message::Request(BlockRequest {
            index: 0,
            begin: 0,
            length: 16384,
        })
        .encode_into(&mut bytes);
        s.peer_data(&mut env.ctx(), conn, &bytes);
        env.now += Duration::from_secs(30);
        s.handle_timeout(&mut env.ctx());
        let (sent, other) = env.drain(conn);
        assert!(!sent.contains(&Sent::Msg("piece")), "{sent:?}");
        assert!(!sent.contains(&Sent::Msg("unchoke")), "{sent:?}");
        assert!(!other.iter().any(|o| matches!(o, Output::LoadBlock { .. })));
    }

    /// A complete download of [`bundle`] with the web seed `url-list` names.
    fn complete_with_web_seed(env: &mut Env) -> (Session, Vec<u8>) {
        let (mut meta, content) = bundle();
        meta.url_list = vec!["http://server/seed/f.bin".into()];
        let s = Session::new(
            &mut env.ctx(),
            add(&meta, Role::Download, Bitfield::full(4)),
        )
        .unwrap();
        (s, content)
    }

    /// The last progress figures among `outputs`.
    fn last_progress(outputs: &[Output]) -> Option<Progress> {
        outputs.iter().rev().find_map(|o| match o {
            Output::Event(Event::Progress(p)) => Some(p.clone()),
            _ => None,
        })
    }

    #[test]
    fn a_damaged_piece_of_a_complete_download_is_fetched_again_and_completes_it() {
        // The have-bit is what the engine trusts: once storage says the piece
        // read back wrong, the bundle is downloading again, the status counts
        // the damaged piece, the web seed fetches it, and storing it
        // completes the bundle once more.
        let mut env = Env::new();
        let (mut s, content) = complete_with_web_seed(&mut env);
        s.pump(&mut env.ctx());
        let (_, out) = env.drain(ConnId(0));
        assert!(
            fetched(&out).is_empty(),
            "a complete bundle fetches nothing"
        );
        assert!(s.ready.as_ref().unwrap().completed);

        s.piece_damaged(&mut env.ctx(), 2);
        let (_, out) = env.drain(ConnId(0));
        assert!(out.contains(&Output::Event(Event::PieceDamaged {
            info_hash: s.info_hash(),
            piece: 2
        })));
        let p = last_progress(&out).expect("the figures change");
        assert_eq!(p.damaged, 1);
        assert_eq!(p.have_bytes, 3 * 32 * 1024);
        assert_eq!(p.wanted_bytes, 4 * 32 * 1024);
        let ready = s.ready.as_ref().unwrap();
        assert!(!ready.completed, "downloading again");
        assert!(!ready.picker.have().get(2));
        assert_eq!(fetched(&out), vec![2], "the piece is fetched again");

        let fetch = out
            .iter()
            .find_map(|o| match o {
                Output::WebSeedFetch(f) => Some(f.clone()),
                _ => None,
            })
            .unwrap();
        let start = 2 * 32 * 1024 + fetch.offset as usize;
        let data = content[start..start + fetch.len as usize].to_vec();
        s.web_seed_data(&mut env.ctx(), fetch.conn, 2, fetch.offset, &data);
        let (_, out) = env.drain(ConnId(0));
        let stored: Vec<u32> = out
            .iter()
            .filter_map(|o| match o {
                Output::StorePiece { piece, data, .. } => {
                    assert!(data[..] == content[2 * 32 * 1024..3 * 32 * 1024]);
                    Some(*piece)
                }
                _ => None,
            })
            .collect();
        assert_eq!(stored, vec![2]);
        s.piece_stored(&mut env.ctx(), 2);
        let (_, out) = env.drain(ConnId(0));
        assert!(out.contains(&Output::Event(Event::Completed {
            info_hash: s.info_hash()
        })));
        assert_eq!(last_progress(&out).map(|p| p.damaged), Some(0));
        assert!(s.ready.as_ref().unwrap().picker.have().is_full());
    }

    #[test]
    fn a_damaged_piece_is_requested_again_from_a_peer_that_has_it() {
        // No web seed: the peer holding the piece is asked for it.
        let (meta, _) = bundle();
        let mut env = Env::new();
        let conn = ConnId(1);
        let mut s = Session::new(
            &mut env.ctx(),
            add(&meta, Role::Download, Bitfield::full(4)),
        )
        .unwrap();
        s.add_peer(env.now, conn);
        s.peer_opened(&mut env.ctx(), conn);
        let mut bytes = Handshake::swarmdrop(s.info_hash(), THEM).encode().to_vec();
        Message::Bitfield(&[0b0010_0000]).encode_into(&mut bytes);
        Message::Unchoke.encode_into(&mut bytes);
        s.peer_data(&mut env.ctx(), conn, &bytes);
        let (sent, _) = env.drain(conn);
        assert!(requests(&sent).is_empty());

        s.piece_damaged(&mut env.ctx(), 2);
        let (sent, _) = env.drain(conn);
        assert!(sent.contains(&Sent::Msg("interested")), "{sent:?}");
        let reqs = requests(&sent);
        assert!(!reqs.is_empty());
        assert!(reqs.iter().all(|r| r.index == 2), "{reqs:?}");
    }

    #[test]
    fn requests_for_a_damaged_piece_are_never_answered_with_its_bytes() {
        // A peer asked for blocks of a piece that then read back wrong: the
        // loads in flight are not sent, the peer is told we lost the piece
        // (reject under Fast, lt_donthave), and a request that crosses that
        // is rejected without dropping the peer.
        let (meta, _) = bundle();
        let mut env = Env::new();
        let conn = ConnId(1);
        let mut s = Session::new(
            &mut env.ctx(),
            add(&meta, Role::Download, Bitfield::full(4)),
        )
        .unwrap();
        s.add_peer(env.now, conn);
        s.peer_opened(&mut env.ctx(), conn);
        let mut bytes = Handshake::swarmdrop(s.info_hash(), THEM).encode().to_vec();
        let mut m = BTreeMap::new();
        m.insert("lt_donthave".to_owned(), 7);
        let theirs = ExtendedHandshake {
            m,
            metadata_size: None,
            client: None,
            reqq: None,
        };
        Message::Extended {
            id: 0,
            payload: &theirs.encode(),
        }
        .encode_into(&mut bytes);
        Message::HaveNone.encode_into(&mut bytes);
        Message::Interested.encode_into(&mut bytes);
        s.peer_data(&mut env.ctx(), conn, &bytes);
        env.now += Duration::from_secs(15);
        s.handle_timeout(&mut env.ctx());
        let (sent, _) = env.drain(conn);
        assert!(sent.contains(&Sent::Msg("unchoke")), "{sent:?}");

        let req = |begin: u32| BlockRequest {
            index: 1,
            begin,
            length: BLOCK_SIZE,
        };
        let mut bytes = Vec::new();
        Message::Request(req(0)).encode_into(&mut bytes);
        Message::Request(req(BLOCK_SIZE)).encode_into(&mut bytes);
        s.peer_data(&mut env.ctx(), conn, &bytes);
        let (_, other) = env.drain(conn);
        assert!(other
            .iter()
            .any(|o| matches!(o, Output::LoadBlock { piece: 1, .. })));

        s.piece_damaged(&mut env.ctx(), 1);
        let (sent, _) = env.drain(conn);
        assert_eq!(
            sent.iter().filter(|m| **m == Sent::Msg("reject")).count(),
            2,
            "{sent:?}"
        );
        assert!(
            sent.contains(&Sent::Extended(7, 1u32.to_be_bytes().to_vec())),
            "lt_donthave: {sent:?}"
        );
        // Storage answers the loads anyway: nothing is sent.
        s.block_loaded_all(&mut env);
        let (sent, _) = env.drain(conn);
        assert!(!sent.contains(&Sent::Msg("piece")), "{sent:?}");

        // A request that crossed the retraction: rejected, the peer stays.
        let mut bytes = Vec::new();
        Message::Request(req(0)).encode_into(&mut bytes);
        s.peer_data(&mut env.ctx(), conn, &bytes);
        let (sent, other) = env.drain(conn);
        assert!(sent.contains(&Sent::Msg("reject")), "{sent:?}");
        assert!(!other
            .iter()
            .any(|o| matches!(o, Output::ClosePeer { .. } | Output::LoadBlock { .. })));
        assert!(s.has_conn(conn));
    }

    #[test]
    fn a_piece_reported_damaged_twice_or_not_held_changes_nothing() {
        // Only a piece we have can be lost, once; out of range is ignored.
        let (meta, _) = bundle();
        let mut env = Env::new();
        let mut have = Bitfield::new(4);
        have.set(0, true);
        let mut s = Session::new(&mut env.ctx(), add(&meta, Role::Download, have)).unwrap();
        s.piece_damaged(&mut env.ctx(), 0);
        let _ = env.drain(ConnId(0));
        for piece in [0, 1, 9] {
            s.piece_damaged(&mut env.ctx(), piece);
            let (_, out) = env.drain(ConnId(0));
            assert!(
                !out.iter()
                    .any(|o| matches!(o, Output::Event(Event::PieceDamaged { .. }))),
                "piece {piece}"
            );
        }
        assert_eq!(s.progress(env.now).damaged, 1);
    }

    mod fuzzish {
        use super::*;
        use proptest::prelude::*;

        /// Any message, with values in and out of range.
        fn message() -> impl Strategy<Value = Vec<u8>> {
            let req = (
                0u32..6,
                prop_oneof![Just(0u32), Just(16384), any::<u32>()],
                prop_oneof![Just(16384u32), 1u32..20000],
            )
                .prop_map(|(index, begin, length)| BlockRequest {
                    index,
                    begin,
                    length,
                });
            prop_oneof![
                Just(Message::Choke.to_vec()),
                Just(Message::Unchoke.to_vec()),
                Just(Message::Interested.to_vec()),
                Just(Message::NotInterested.to_vec()),
                Just(Message::HaveAll.to_vec()),
                Just(Message::HaveNone.to_vec()),
                Just(Message::KeepAlive.to_vec()),
                (0u32..6).prop_map(|i| Message::Have(i).to_vec()),
                proptest::collection::vec(any::<u8>(), 0..3)
                    .prop_map(|b| Message::Bitfield(&b).to_vec()),
                req.clone().prop_map(|r| Message::Request(r).to_vec()),
                req.clone().prop_map(|r| Message::Cancel(r).to_vec()),
                req.prop_map(|r| Message::Reject(r).to_vec()),
                (0u32..6).prop_map(|i| Message::AllowedFast(i).to_vec()),
                (
                    0u32..5,
                    prop_oneof![Just(0u32), Just(16384)],
                    proptest::collection::vec(any::<u8>(), 0..16385)
                )
                    .prop_map(|(index, begin, block)| Message::Piece {
                        index,
                        begin,
                        block: &block
                    }
                    .to_vec()),
                (0u8..4, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
                    |(id, payload)| Message::Extended {
                        id,
                        payload: &payload
                    }
                    .to_vec()
                ),
                proptest::collection::vec(any::<u8>(), 0..40),
            ]
        }

        /// A seeding or downloading session with an incoming peer whose
        /// channel just opened.
        fn with_incoming_peer(seeding: bool) -> (Env, Session, ConnId) {
            let (meta, _) = bundle();
            let mut env = Env::new();
            let have = if seeding {
                Bitfield::full(4)
            } else {
                Bitfield::new(4)
            };
            let role = if seeding { Role::Seed } else { Role::Download };
            let mut s = Session::new(&mut env.ctx(), add(&meta, role, have)).unwrap();
            let conn = ConnId(1);
            s.add_peer(env.now, conn);
            s.peer_opened(&mut env.ctx(), conn);
            (env, s, conn)
        }

        /// Messages a well-behaved peer may send (blocks carry random data,
        /// so a complete piece of them fails its hash).
        fn valid_message() -> impl Strategy<Value = Vec<u8>> {
            let block = (0u32..4, 0u32..2).prop_map(|(index, b)| BlockRequest {
                index,
                begin: b * BLOCK_SIZE,
                length: BLOCK_SIZE,
            });
            prop_oneof![
                Just(Message::Choke.to_vec()),
                Just(Message::Unchoke.to_vec()),
                Just(Message::Interested.to_vec()),
                Just(Message::NotInterested.to_vec()),
                Just(Message::KeepAlive.to_vec()),
                (0u32..4).prop_map(|i| Message::Have(i).to_vec()),
                (0u32..4).prop_map(|i| Message::AllowedFast(i).to_vec()),
                block.clone().prop_map(|r| Message::Request(r).to_vec()),
                block.clone().prop_map(|r| Message::Cancel(r).to_vec()),
                block.clone().prop_map(|r| Message::Reject(r).to_vec()),
                (block, any::<u8>()).prop_map(|(r, fill)| {
                    let data = vec![fill; r.length as usize];
                    Message::Piece {
                        index: r.index,
                        begin: r.begin,
                        block: &data,
                    }
                    .to_vec()
                }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// A peer that keeps to the protocol is never dropped for it,
            /// whatever the order of its messages: only for bad data (its
            /// blocks are random) or because both sides are seeds.
            #[test]
            fn a_peer_keeping_to_the_protocol_is_only_dropped_for_bad_data(
                first in prop_oneof![Just(Message::HaveAll.to_vec()), Just(Message::HaveNone.to_vec())],
                msgs in proptest::collection::vec(valid_message(), 0..60),
                seeding in any::<bool>(),
            ) {
                let (mut env, mut s, conn) = with_incoming_peer(seeding);
                let mut stream = Handshake::swarmdrop(s.info_hash(), THEM).encode().to_vec();
                stream.extend_from_slice(&first);
                s.peer_data(&mut env.ctx(), conn, &stream);
                for m in &msgs {
                    s.peer_data(&mut env.ctx(), conn, m);
                    env.now += Duration::from_millis(50);
                    s.handle_timeout(&mut env.ctx());
                    s.block_loaded_all(&mut env);
                }
                let (_, other) = env.drain(conn);
                for o in other {
                    if let Output::ClosePeer { reason, .. } = o {
                        prop_assert!(
                            matches!(reason, DropReason::BadData | DropReason::NotUseful),
                            "dropped for {reason:?}"
                        );
                    }
                }
            }

            /// Whatever a peer sends after its handshake, cut anywhere, the
            /// session neither panics nor loses track: the peer is either
            /// still there or was dropped with a close.
            #[test]
            fn anything_a_peer_sends_is_handled_without_panic(
                msgs in proptest::collection::vec(message(), 0..40),
                cuts in proptest::collection::vec(1usize..5000, 1..20),
                seeding in any::<bool>(),
            ) {
                let (mut env, mut s, conn) = with_incoming_peer(seeding);
                let mut stream = Handshake::swarmdrop(s.info_hash(), THEM).encode().to_vec();
                for m in &msgs {
                    stream.extend_from_slice(m);
                }
                let mut rest = &stream[..];
                for cut in cuts.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (head, tail) = rest.split_at((*cut).min(rest.len()));
                    s.peer_data(&mut env.ctx(), conn, head);
                    rest = tail;
                    env.now += Duration::from_millis(7);
                    s.handle_timeout(&mut env.ctx());
                }
                let (_, other) = env.drain(conn);
                let closed = other.iter().any(|o| matches!(o, Output::ClosePeer { conn: c, .. } if *c == conn));
                prop_assert_eq!(closed, !s.has_conn(conn));
            }
        }
    }
}
