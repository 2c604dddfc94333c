//! The client: every bundle's session, the tracker sockets they share, the
//! WebRTC signalling between them, and the one input/output API the glue
//! drives.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::engine::api::{Command, CommandError, ConnId, Input, LimitScope, Output};
use crate::engine::event::{DropReason, Event, PauseReason};
use crate::engine::ids::{InfoHash, PeerId};
use crate::engine::limiter::{Limiter, Limits};
use crate::engine::session::{Ctx, Session};
use crate::engine::time::Instant;
use crate::engine::tracker::{
    encode_answer, parse_from_tracker, AnswerLookup, Backoff, FromTracker, OfferBook, OfferId,
    DEFAULT_OFFERS,
};

/// How the client behaves. [`ClientConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Our peer id, sent in handshakes and to trackers.
    pub peer_id: PeerId,
    /// Seed of every random choice the engine makes (tie breaks, offer ids,
    /// optimistic unchokes), so a run can be replayed.
    pub seed: u64,
    /// WebSocket trackers used for every bundle, on top of each bundle's own.
    pub trackers: Vec<String>,
    /// Global upload and download caps.
    pub limits: Limits,
    /// Most peer connections per bundle (open or being set up).
    pub max_peers: usize,
    /// Most bytes handed to one data channel and not yet drained: the
    /// engine stops sending there and asks for [`Input::PeerWritable`].
    pub send_budget: usize,
    /// The `bufferedAmountLowThreshold` the glue sets on data channels.
    pub send_low_water: usize,
    /// How long an announce waits for its offers to be created (ICE
    /// gathering) before it goes out with those that are ready.
    pub offer_gather_timeout: Duration,
    /// Bytes of pieces being assembled per bundle above which no new piece
    /// is started (with 16 MiB pieces and many peers, memory would grow).
    pub max_partial_bytes: u64,
    /// Bytes of verified pieces handed to storage and not yet confirmed per
    /// bundle above which no new block is requested.
    pub max_storing_bytes: u64,
    /// Download rate from peers (bytes per second) from which web seeds
    /// fetch only pieces no downloading peer has, leaving the rest to the
    /// swarm; below it they fetch whatever is needed. Zero: always only
    /// those pieces (in endgame, anything); `u64::MAX`: web seeds are used
    /// like any peer.
    pub web_seed_peer_floor: u64,
    /// The host takes the SHA-1 of complete pieces ([`Output::HashPiece`],
    /// answered by [`Input::PieceHashed`]) instead of the engine: a browser
    /// hashes natively and off the thread the engine runs on.
    pub host_hashes: bool,
}

impl ClientConfig {
    /// The defaults: 30 peers per bundle, 4 MiB send budget, 1 MiB
    /// low-water mark (what a fast channel drains in tens of milliseconds,
    /// time enough for a busy page to refill it), 32 MiB of pieces in assembly and 32 MiB in storage's
    /// hands per bundle, web seeds held back while peers bring 1 MiB/s, no
    /// caps, no default tracker. The memory bounds are
    /// what a download holds at its peak (wasm memory never shrinks), and
    /// are enough in flight for a loopback transfer: a few MiB of requests
    /// outstanding, and two storage transactions' worth of pieces.
    pub fn new(peer_id: PeerId, seed: u64) -> Self {
        ClientConfig {
            peer_id,
            seed,
            trackers: Vec::new(),
            limits: Limits::default(),
            max_peers: 30,
            send_budget: 4 * 1024 * 1024,
            send_low_water: 1024 * 1024,
            offer_gather_timeout: Duration::from_secs(10),
            max_partial_bytes: 32 * 1024 * 1024,
            max_storing_bytes: 32 * 1024 * 1024,
            web_seed_peer_floor: DEFAULT_WEB_SEED_PEER_FLOOR,
            host_hashes: false,
        }
    }
}

/// The default [`ClientConfig::web_seed_peer_floor`]: 1 MiB/s.
pub const DEFAULT_WEB_SEED_PEER_FLOOR: u64 = 1024 * 1024;

/// A tracker socket shared by every bundle that announces there.
#[derive(Debug)]
struct TrackerSocket {
    state: SocketState,
    backoff: Backoff,
    /// Our offers relayed through this tracker, waiting for answers.
    offers: OfferBook<ConnId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SocketState {
    Connecting,
    Open,
    /// Closed; reconnect at this instant if still needed.
    Closed(Instant),
}

/// A connection in the middle of the offer/answer exchange.
#[derive(Clone, Debug)]
enum Signal {
    /// We asked for an offer; it goes out with the announce of `url`, then
    /// waits in that tracker's offer book.
    Offer {
        info_hash: InfoHash,
        url: String,
        offer_id: OfferId,
    },
    /// We asked for an answer to `remote`'s offer.
    Answer {
        info_hash: InfoHash,
        url: String,
        offer_id: OfferId,
        remote: PeerId,
    },
}

/// An announce waiting for its offers.
#[derive(Debug)]
struct Round {
    offers: Vec<(OfferId, String, ConnId)>,
    waiting: BTreeSet<ConnId>,
    deadline: Instant,
}

/// A BitTorrent client for many bundles, as a deterministic state machine.
///
/// It owns one session per bundle (keyed by info hash) and one socket per
/// tracker URL shared by all of them; it never performs I/O, reads a clock
/// or draws randomness of its own. Its methods fall in three groups, as in
/// quinn-proto's `Connection`:
///
/// - **getters**: [`peer_id`](Self::peer_id), [`bundles`](Self::bundles),
///   [`progress`](Self::progress), [`is_paused`](Self::is_paused);
/// - **inputs** (`handle_*`): [`handle_input`](Self::handle_input) for a
///   user [`Command`], a signalling result, peer bytes, a tracker frame, a
///   storage or web-seed answer; [`handle_timeout`](Self::handle_timeout)
///   when the time from `poll_timeout` is reached;
/// - **outputs** (`poll_*`, `#[must_use]`): [`poll_output`](Self::poll_output)
///   hands out the next [`Output`]; [`poll_timeout`](Self::poll_timeout)
///   says when to call `handle_timeout`.
///
/// After every `handle_*` call, drain `poll_output` until it returns `None`
/// (carrying out each output in order: the bytes of one connection must be
/// sent in the order they come), then arm one timer at `poll_timeout`. Feeding
/// an input while outputs are still queued is allowed; they stay in order.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    rng: fastrand::Rng,
    sessions: BTreeMap<InfoHash, Session>,
    next_conn: u64,
    limiter: Limiter,
    trackers: BTreeMap<String, TrackerSocket>,
    signals: BTreeMap<ConnId, Signal>,
    rounds: BTreeMap<(InfoHash, String), Round>,
    out: VecDeque<Output>,
}

impl Client {
    /// A client with no bundle.
    pub fn new(config: ClientConfig) -> Self {
        Client {
            rng: fastrand::Rng::with_seed(config.seed),
            limiter: Limiter::new(config.limits),
            config,
            sessions: BTreeMap::new(),
            next_conn: 0,
            trackers: BTreeMap::new(),
            signals: BTreeMap::new(),
            rounds: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    // ----- getters -----

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.config.peer_id
    }

    /// The bundles, by info hash.
    pub fn bundles(&self) -> impl Iterator<Item = InfoHash> + '_ {
        self.sessions.keys().copied()
    }

    /// A bundle's figures now.
    pub fn progress(
        &mut self,
        now: Instant,
        info_hash: InfoHash,
    ) -> Option<crate::engine::event::Progress> {
        self.sessions.get_mut(&info_hash).map(|s| s.progress(now))
    }

    /// Whether a bundle is paused (`None`: no such bundle).
    pub fn is_paused(&self, info_hash: InfoHash) -> Option<bool> {
        self.sessions.get(&info_hash).map(Session::is_paused)
    }

    // ----- outputs -----

    /// The next effect to carry out, in order; `None` when there is none.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called;
    /// `None` when nothing is scheduled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sessions = self
            .sessions
            .values()
            .filter_map(Session::next_timeout)
            .min();
        let rounds = self.rounds.values().map(|r| r.deadline).min();
        let trackers = self
            .trackers
            .values()
            .filter_map(|t| {
                let retry = match t.state {
                    SocketState::Closed(at) => Some(at),
                    _ => None,
                };
                [retry, t.offers.poll_timeout()].into_iter().flatten().min()
            })
            .min();
        [sessions, rounds, trackers].into_iter().flatten().min()
    }

    // ----- inputs -----

    /// Feeds one input. Only a [`Command`] can fail, and a failed command
    /// changes nothing; other inputs for unknown connections or bundles (a
    /// late message after a close) are ignored.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), CommandError> {
        match input {
            Input::Command(cmd) => self.handle_command(now, cmd)?,
            Input::OfferCreated { conn, sdp } => self.offer_created(now, conn, sdp),
            Input::AnswerCreated { conn, sdp } => self.answer_created(now, conn, sdp),
            Input::SignalFailed { conn, reason } => {
                self.signal_gone(now, conn);
                self.with_conn(now, conn, |s, ctx| {
                    s.drop_peer(ctx, conn, DropReason::SignalFailed(reason.to_owned()))
                });
            }
            Input::PeerOpened { conn } => {
                self.signals.remove(&conn);
                self.with_conn(now, conn, |s, ctx| s.peer_opened(ctx, conn));
            }
            Input::PeerData { conn, data } => {
                self.with_conn(now, conn, |s, ctx| s.peer_data(ctx, conn, data));
            }
            Input::PeerWritable { conn } => {
                self.with_conn(now, conn, |s, ctx| s.peer_writable(ctx, conn));
            }
            Input::PeerClosed { conn } => {
                self.signal_gone(now, conn);
                self.with_conn(now, conn, |s, ctx| s.peer_closed(ctx, conn));
            }
            Input::TrackerOpened { url } => self.tracker_opened(now, url),
            Input::TrackerText { url, text } => self.tracker_text(now, url, text),
            Input::TrackerClosed { url } => self.tracker_closed(now, url),
            Input::BlockLoaded {
                info_hash,
                piece,
                offset,
                data,
            } => {
                self.with_session(now, info_hash, |s, ctx| {
                    s.block_loaded(ctx, piece, offset, data)
                });
            }
            Input::LoadFailed {
                info_hash,
                piece,
                offset,
                reason,
            } => {
                self.with_session(now, info_hash, |s, ctx| {
                    s.load_failed(ctx, piece, offset, reason)
                });
            }
            Input::PieceDamaged { info_hash, piece } => {
                self.with_session(now, info_hash, |s, ctx| s.piece_damaged(ctx, piece));
            }
            Input::PieceStored { info_hash, piece } => {
                self.with_session(now, info_hash, |s, ctx| s.piece_stored(ctx, piece));
            }
            Input::PieceHashed {
                info_hash,
                piece,
                data,
                sha1,
            } => {
                self.with_session(now, info_hash, |s, ctx| {
                    s.piece_hashed(ctx, piece, data, sha1)
                });
            }
            Input::StoreFailed {
                info_hash,
                piece,
                failure,
            } => {
                self.with_session(now, info_hash, |s, ctx| s.store_failed(ctx, piece, failure));
            }
            Input::WebSeedData {
                conn,
                piece,
                offset,
                data,
            } => {
                self.with_conn(now, conn, |s, ctx| {
                    s.web_seed_data(ctx, conn, piece, offset, data)
                });
            }
            Input::WebSeedHave {
                info_hash,
                url,
                have,
            } => {
                self.with_session(now, info_hash, |s, ctx| s.web_seed_have(ctx, url, have));
            }
            Input::WebSeedFailed {
                conn,
                piece,
                offset,
                received,
                reason,
            } => {
                self.with_conn(now, conn, |s, ctx| {
                    s.web_seed_failed(ctx, conn, piece, offset, received, reason)
                });
            }
        }
        self.drive(now);
        Ok(())
    }

    /// Handles everything due at `now`: peer timers, choke rounds, request
    /// timeouts, announces, offer expiry, tracker reconnects.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<InfoHash> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.next_timeout().is_some_and(|t| t <= now))
            .map(|(h, _)| *h)
            .collect();
        for info_hash in due {
            self.with_session(now, info_hash, |s, ctx| s.handle_timeout(ctx));
        }
        let late: Vec<(InfoHash, String)> = self
            .rounds
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for (info_hash, url) in late {
            self.finish_round(now, info_hash, &url);
        }
        let urls: Vec<String> = self.trackers.keys().cloned().collect();
        for url in urls {
            let expired = match self.trackers.get_mut(&url) {
                Some(t) => t.offers.expire(now),
                None => continue,
            };
            for conn in expired {
                self.with_conn(now, conn, |s, ctx| {
                    s.drop_peer(ctx, conn, DropReason::OfferExpired)
                });
            }
        }
        self.drive(now);
    }

    fn handle_command(&mut self, now: Instant, cmd: Command) -> Result<(), CommandError> {
        match cmd {
            Command::AddBundle(add) => {
                let info_hash = add.source.info_hash();
                if self.sessions.contains_key(&info_hash) {
                    return Err(CommandError::DuplicateBundle(info_hash));
                }
                let (_, mut ctx) = self.parts(now);
                let mut session = Session::new(&mut ctx, *add)?;
                // A tracker socket other bundles already opened will not
                // open again: the new bundle's announcer starts on it now.
                for (url, announcer) in session.announcers.iter_mut() {
                    let open = self
                        .trackers
                        .get(url)
                        .is_some_and(|t| t.state == SocketState::Open);
                    if open {
                        announcer.on_connected(now);
                    }
                }
                self.sessions.insert(info_hash, session);
            }
            Command::Pause(h) => {
                self.known(h)?;
                self.with_session(now, h, |s, ctx| s.pause(ctx, PauseReason::User));
            }
            Command::Resume(h) => {
                self.known(h)?;
                self.with_session(now, h, |s, ctx| s.resume(ctx));
            }
            Command::Remove(h) => {
                self.known(h)?;
                self.remove(now, h);
            }
            Command::PauseAll => {
                let all: Vec<InfoHash> = self.sessions.keys().copied().collect();
                for h in all {
                    self.with_session(now, h, |s, ctx| s.pause(ctx, PauseReason::User));
                }
            }
            Command::ResumeAll => {
                let all: Vec<InfoHash> = self.sessions.keys().copied().collect();
                for h in all {
                    self.with_session(now, h, |s, ctx| s.resume(ctx));
                }
            }
            Command::SetSelection { info_hash, files } => {
                self.known(info_hash)?;
                self.with_session(now, info_hash, |s, ctx| s.set_selection(ctx, files))
                    .unwrap_or(Ok(()))?;
            }
            Command::SetLimits { scope, limits } => match scope {
                LimitScope::Global => self.limiter.set_global_limits(limits, now),
                LimitScope::Bundle(h) => {
                    self.known(h)?;
                    self.limiter.set_bundle_limits(h, limits, now);
                }
            },
        }
        Ok(())
    }

    fn known(&self, h: InfoHash) -> Result<(), CommandError> {
        if self.sessions.contains_key(&h) {
            Ok(())
        } else {
            Err(CommandError::UnknownBundle(h))
        }
    }

    /// Removes a bundle: its connections close, `stopped` goes to the
    /// trackers that hold it, sockets no bundle needs any more close.
    fn remove(&mut self, now: Instant, h: InfoHash) {
        self.with_session(now, h, |s, ctx| s.remove(ctx));
        let Some(mut session) = self.sessions.remove(&h) else {
            return;
        };
        let stats = session.announce_stats();
        for (url, announcer) in session.announcers.iter_mut() {
            let open = self
                .trackers
                .get(url)
                .is_some_and(|t| t.state == SocketState::Open);
            if !open {
                continue;
            }
            if announcer.poll(now).is_some() {
                if let Some(text) = announcer.announce(now, &stats, Vec::new()) {
                    self.out.push_back(Output::TrackerSend {
                        url: url.clone(),
                        text,
                    });
                }
            }
        }
        self.rounds.retain(|(ih, _), _| *ih != h);
        let stale: Vec<ConnId> = self
            .signals
            .iter()
            .filter(|(_, s)| match s {
                Signal::Offer { info_hash, .. } | Signal::Answer { info_hash, .. } => {
                    *info_hash == h
                }
            })
            .map(|(c, _)| *c)
            .collect();
        for conn in stale {
            self.signals.remove(&conn);
        }
        self.limiter.remove_bundle(&h);
        // Inserted, not collected: collect() would sort first, one more copy
        // of the sort code in the wasm (BENCHMARKS.md row 7).
        let mut used = BTreeSet::new();
        used.extend(self.sessions.values().flat_map(|s| s.trackers.iter()));
        let unused: Vec<String> = self
            .trackers
            .keys()
            .filter(|u| !used.contains(u))
            .cloned()
            .collect();
        for url in unused {
            if let Some(t) = self.trackers.remove(&url) {
                let _ = t.offers;
                self.out.push_back(Output::TrackerClose { url });
            }
        }
    }

    // ----- signalling -----

    fn offer_created(&mut self, now: Instant, conn: ConnId, sdp: &str) {
        let Some(Signal::Offer {
            info_hash,
            url,
            offer_id,
        }) = self.signals.get(&conn).cloned()
        else {
            return;
        };
        let key = (info_hash, url.clone());
        let alive = self
            .sessions
            .get(&info_hash)
            .is_some_and(|s| s.has_conn(conn));
        if !alive {
            // Closed meanwhile (the bundle paused or went away).
            self.signal_gone(now, conn);
            return;
        }
        let Some(round) = self.rounds.get_mut(&key) else {
            // The announce left without this offer: nobody will answer it.
            self.signals.remove(&conn);
            self.with_conn(now, conn, |s, ctx| {
                s.drop_peer(ctx, conn, DropReason::OfferExpired)
            });
            return;
        };
        if round.waiting.remove(&conn) {
            round.offers.push((offer_id, sdp.to_owned(), conn));
        }
        if round.waiting.is_empty() {
            self.finish_round(now, info_hash, &url);
        }
    }

    fn answer_created(&mut self, now: Instant, conn: ConnId, sdp: &str) {
        let Some(Signal::Answer {
            info_hash,
            url,
            offer_id,
            remote,
        }) = self.signals.remove(&conn)
        else {
            return;
        };
        let open = self
            .trackers
            .get(&url)
            .is_some_and(|t| t.state == SocketState::Open);
        if !open {
            self.with_conn(now, conn, |s, ctx| {
                s.drop_peer(ctx, conn, DropReason::OfferExpired)
            });
            return;
        }
        let text = encode_answer(info_hash, self.config.peer_id, remote, offer_id, sdp);
        self.out.push_back(Output::TrackerSend { url, text });
    }

    /// A connection left signalling (failed or closed): its round, if any,
    /// stops waiting for it.
    fn signal_gone(&mut self, now: Instant, conn: ConnId) {
        let Some(Signal::Offer { info_hash, url, .. }) = self.signals.remove(&conn) else {
            return;
        };
        let key = (info_hash, url.clone());
        if let Some(round) = self.rounds.get_mut(&key) {
            round.waiting.remove(&conn);
            if round.waiting.is_empty() {
                self.finish_round(now, info_hash, &url);
            }
        }
    }

    /// Sends the announce of a round with the offers made so far.
    fn finish_round(&mut self, now: Instant, info_hash: InfoHash, url: &str) {
        let Some(round) = self.rounds.remove(&(info_hash, url.to_owned())) else {
            return;
        };
        let text = self.sessions.get_mut(&info_hash).and_then(|s| {
            let stats = s.announce_stats();
            let offers = round
                .offers
                .iter()
                .map(|(id, sdp, _)| (*id, sdp.clone()))
                .collect();
            s.announcers.get_mut(url)?.announce(now, &stats, offers)
        });
        let late: Vec<ConnId> = round.waiting.iter().copied().collect();
        match (text, self.trackers.get_mut(url)) {
            (Some(text), Some(socket)) => {
                for (offer_id, _, conn) in &round.offers {
                    self.signals.remove(conn);
                    let _ = socket.offers.insert(now, info_hash, *offer_id, *conn);
                }
                self.out.push_back(Output::TrackerSend {
                    url: url.to_owned(),
                    text,
                });
            }
            _ => {
                for (_, _, conn) in &round.offers {
                    self.signals.remove(conn);
                    self.with_conn(now, *conn, |s, ctx| {
                        s.drop_peer(ctx, *conn, DropReason::OfferExpired)
                    });
                }
            }
        }
        // Offers not ready in time are abandoned.
        for conn in late {
            self.signals.remove(&conn);
            self.with_conn(now, conn, |s, ctx| {
                s.drop_peer(ctx, conn, DropReason::OfferExpired)
            });
        }
    }

    // ----- trackers -----

    fn tracker_opened(&mut self, now: Instant, url: &str) {
        let Some(socket) = self.trackers.get_mut(url) else {
            // We did not ask for it (or no longer need it).
            self.out.push_back(Output::TrackerClose {
                url: url.to_owned(),
            });
            return;
        };
        socket.state = SocketState::Open;
        socket.backoff.reset();
        for s in self.sessions.values_mut() {
            if let Some(a) = s.announcers.get_mut(url) {
                a.on_connected(now);
            }
        }
    }

    fn tracker_closed(&mut self, now: Instant, url: &str) {
        let Some(socket) = self.trackers.get_mut(url) else {
            return;
        };
        let delay = socket.backoff.next_delay_jittered(&mut self.rng);
        socket.state = SocketState::Closed(now + delay);
        let abandoned = socket.offers.drain();
        for s in self.sessions.values_mut() {
            if let Some(a) = s.announcers.get_mut(url) {
                a.on_disconnected();
            }
        }
        let rounds: Vec<InfoHash> = self
            .rounds
            .keys()
            .filter(|(_, u)| u == url)
            .map(|(h, _)| *h)
            .collect();
        let mut conns = abandoned;
        for h in rounds {
            if let Some(round) = self.rounds.remove(&(h, url.to_owned())) {
                conns.extend(round.offers.iter().map(|(_, _, c)| *c));
                conns.extend(round.waiting.iter().copied());
            }
        }
        for conn in conns {
            self.signals.remove(&conn);
            self.with_conn(now, conn, |s, ctx| {
                s.drop_peer(ctx, conn, DropReason::OfferExpired)
            });
        }
    }

    fn tracker_text(&mut self, now: Instant, url: &str, text: &str) {
        let Ok(msg) = parse_from_tracker(text) else {
            // A frame we cannot read says nothing we could act on.
            return;
        };
        match msg {
            FromTracker::Offer {
                info_hash,
                peer_id,
                offer_id,
                sdp,
            } => self.remote_offer(now, url, info_hash, peer_id, offer_id, sdp),
            FromTracker::Answer {
                info_hash,
                offer_id,
                sdp,
                ..
            } => {
                let Some(socket) = self.trackers.get_mut(url) else {
                    return;
                };
                match socket.offers.answer(now, info_hash, offer_id) {
                    AnswerLookup::Matched(conn) => {
                        let alive = self
                            .sessions
                            .get(&info_hash)
                            .is_some_and(|s| s.has_conn(conn));
                        if alive {
                            self.out.push_back(Output::AcceptAnswer {
                                conn,
                                answer_sdp: sdp,
                            });
                        }
                    }
                    AnswerLookup::Expired(conn) => {
                        self.with_conn(now, conn, |s, ctx| {
                            s.drop_peer(ctx, conn, DropReason::OfferExpired)
                        });
                    }
                    AnswerLookup::Unknown => {}
                }
            }
            FromTracker::AnnounceResponse {
                info_hash,
                interval,
                ..
            } => {
                if let Some(a) = self
                    .sessions
                    .get_mut(&info_hash)
                    .and_then(|s| s.announcers.get_mut(url))
                {
                    a.on_response(now, interval);
                }
            }
            FromTracker::Failure { reason, info_hash } => {
                let ours = info_hash
                    .and_then(|h| self.sessions.get_mut(&h))
                    .and_then(|s| s.announcers.get_mut(url))
                    .is_some_and(|a| a.on_failure(now));
                if ours || info_hash.is_none() {
                    self.out.push_back(Output::Event(Event::Error {
                        info_hash,
                        message: format!("tracker {url} refused: {reason}"),
                    }));
                }
            }
            FromTracker::Scrape(_) => {}
        }
    }

    /// Another peer's offer, relayed by a tracker: answer it if the bundle
    /// wants more peers and does not know that one.
    fn remote_offer(
        &mut self,
        now: Instant,
        url: &str,
        info_hash: InfoHash,
        peer_id: PeerId,
        offer_id: OfferId,
        sdp: String,
    ) {
        if peer_id == self.config.peer_id {
            return;
        }
        let max = self.config.max_peers;
        let Some(session) = self.sessions.get_mut(&info_hash) else {
            return;
        };
        if session.is_paused() || session.knows_peer(peer_id) || session.peer_count() >= max {
            return;
        }
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        session.add_peer(now, conn);
        self.signals.insert(
            conn,
            Signal::Answer {
                info_hash,
                url: url.to_owned(),
                offer_id,
                remote: peer_id,
            },
        );
        self.out.push_back(Output::CreateAnswer {
            conn,
            info_hash,
            offer_sdp: sdp,
        });
    }

    // ----- the drive step -----

    /// After any input: connects the trackers bundles need, and starts the
    /// announces that are due (asking for offers first).
    fn drive(&mut self, now: Instant) {
        // Sockets.
        // Inserted, not collected: collect() would sort first, one more copy
        // of the sort code in the wasm (BENCHMARKS.md row 7).
        let mut wanted = BTreeSet::new();
        wanted.extend(
            self.sessions
                .values()
                .flat_map(|s| s.trackers.iter().cloned()),
        );
        for url in wanted {
            let socket = self.trackers.entry(url.clone()).or_insert(TrackerSocket {
                state: SocketState::Closed(now),
                backoff: Backoff::default(),
                offers: OfferBook::new(),
            });
            if let SocketState::Closed(at) = socket.state {
                if at <= now {
                    socket.state = SocketState::Connecting;
                    self.out.push_back(Output::TrackerConnect { url });
                }
            }
        }
        // Announces.
        let max = self.config.max_peers;
        let hashes: Vec<InfoHash> = self.sessions.keys().copied().collect();
        for info_hash in hashes {
            let Some(session) = self.sessions.get_mut(&info_hash) else {
                continue;
            };
            let urls: Vec<String> = session.announcers.keys().cloned().collect();
            for url in urls {
                if self.rounds.contains_key(&(info_hash, url.clone())) {
                    continue;
                }
                let Some(session) = self.sessions.get_mut(&info_hash) else {
                    break;
                };
                // Connections being signalled already count as peers.
                let room = session.wanted_offers(max);
                let lonely = session.is_lonely();
                let Some(announcer) = session.announcers.get_mut(&url) else {
                    continue;
                };
                announcer.set_offers_wanted(room.min(DEFAULT_OFFERS));
                announcer.set_lonely(now, lonely);
                let Some(need) = announcer.poll(now) else {
                    continue;
                };
                if need.offers_wanted == 0 {
                    let stats = session.announce_stats();
                    if let Some(text) = session
                        .announcers
                        .get_mut(&url)
                        .and_then(|a| a.announce(now, &stats, Vec::new()))
                    {
                        self.out.push_back(Output::TrackerSend { url, text });
                    }
                    continue;
                }
                let Some(socket) = self.trackers.get(&url) else {
                    continue;
                };
                let mut round = Round {
                    offers: Vec::new(),
                    waiting: BTreeSet::new(),
                    deadline: now + self.config.offer_gather_timeout,
                };
                for _ in 0..need.offers_wanted {
                    self.next_conn += 1;
                    let conn = ConnId(self.next_conn);
                    let offer_id = socket.offers.fresh_id(&mut self.rng);
                    session.add_peer(now, conn);
                    round.waiting.insert(conn);
                    self.signals.insert(
                        conn,
                        Signal::Offer {
                            info_hash,
                            url: url.clone(),
                            offer_id,
                        },
                    );
                    self.out.push_back(Output::CreateOffer { conn, info_hash });
                }
                self.rounds.insert((info_hash, url), round);
            }
        }
    }

    // ----- helpers -----

    /// The sessions, and a context for one of them (disjoint borrows).
    fn parts(&mut self, now: Instant) -> (&mut BTreeMap<InfoHash, Session>, Ctx<'_>) {
        let Client {
            config,
            rng,
            next_conn,
            limiter,
            out,
            sessions,
            ..
        } = self;
        let ctx = Ctx {
            now,
            out,
            rng,
            limiter,
            config,
            next_conn,
        };
        (sessions, ctx)
    }

    /// Runs `f` on a bundle's session with a context; `None` if unknown.
    fn with_session<R>(
        &mut self,
        now: Instant,
        info_hash: InfoHash,
        f: impl FnOnce(&mut Session, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let (sessions, mut ctx) = self.parts(now);
        let session = sessions.get_mut(&info_hash)?;
        Some(f(session, &mut ctx))
    }

    /// Runs `f` on the session a connection belongs to.
    fn with_conn<R>(
        &mut self,
        now: Instant,
        conn: ConnId,
        f: impl FnOnce(&mut Session, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let info_hash = self
            .sessions
            .iter()
            .find(|(_, s)| s.has_conn(conn))
            .map(|(h, _)| *h)?;
        self.with_session(now, info_hash, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::api::{AddBundle, BundleSource, Role};
    use crate::engine::bitfield::Bitfield;
    use crate::engine::create::TorrentBuilder;
    use crate::engine::hash::PieceHasher;
    use crate::engine::metainfo::Metainfo;
    use crate::engine::tracker::wire::common::InfoHash as WireInfoHash;
    use crate::engine::tracker::wire::common::{
        AnnounceAction, OfferId as WireOfferId, PeerId as WirePeerId, RtcAnswer, RtcAnswerType,
        RtcOffer, RtcOfferType,
    };
    use crate::engine::tracker::wire::incoming::InMessage;
    use crate::engine::tracker::wire::outgoing::{AnswerOutMessage, OfferOutMessage, OutMessage};
    use crate::engine::tracker::{encode_to_client, parse_to_tracker};

    const T: &str = "wss://tracker.example/announce";

    fn at(s: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(s))
    }

    fn torrent(name: &str) -> Metainfo {
        let content = vec![7u8; 40_000];
        let b = TorrentBuilder::new(name)
            .file(vec![name.into()], content.len() as u64)
            .tracker(T);
        let hashes = PieceHasher::hash_all(b.lengths().unwrap(), &content).unwrap();
        b.build(hashes).unwrap()
    }

    fn add(meta: &Metainfo) -> Input<'static> {
        Input::Command(Command::AddBundle(Box::new(AddBundle {
            source: BundleSource::Metainfo(Box::new(meta.clone())),
            role: Role::Seed,
            have: Bitfield::full(meta.info.lengths.num_pieces()),
            selection: None,
            paused: false,
            client_trackers: true,
        })))
    }

    fn drain(c: &mut Client) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    fn client() -> Client {
        Client::new(ClientConfig::new(PeerId([2; 20]), 1))
    }

    /// Makes every offer asked for; returns the announces sent.
    fn make_offers(c: &mut Client, now: Instant, outs: &[Output]) -> Vec<Output> {
        let conns: Vec<ConnId> = outs
            .iter()
            .filter_map(|o| match o {
                Output::CreateOffer { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect();
        let mut sent = Vec::new();
        for conn in conns {
            let sdp = format!("sdp of {conn}");
            c.handle_input(now, Input::OfferCreated { conn, sdp: &sdp })
                .unwrap();
            sent.extend(drain(c));
        }
        sent
    }

    fn announces(outs: &[Output]) -> Vec<crate::engine::tracker::wire::incoming::AnnounceRequest> {
        outs.iter()
            .filter_map(|o| match o {
                Output::TrackerSend { text, .. } => match parse_to_tracker(text) {
                    Ok(InMessage::AnnounceRequest(a)) => Some(a),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn bundles_on_the_same_tracker_share_one_socket_until_the_last_leaves() {
        let mut c = client();
        let (a, b) = (torrent("a"), torrent("b"));
        c.handle_input(at(0), add(&a)).unwrap();
        c.handle_input(at(0), add(&b)).unwrap();
        let outs = drain(&mut c);
        let connects = outs
            .iter()
            .filter(|o| matches!(o, Output::TrackerConnect { .. }))
            .count();
        assert_eq!(connects, 1);
        c.handle_input(at(1), Input::TrackerOpened { url: T })
            .unwrap();
        let outs = drain(&mut c);
        let sent = make_offers(&mut c, at(1), &outs);
        let started = announces(&sent);
        assert_eq!(
            started.len(),
            2,
            "one started announce per bundle on the one socket"
        );
        assert!(started
            .iter()
            .all(|a| a.offers.as_ref().is_some_and(|o| o.len() == DEFAULT_OFFERS)));
        c.handle_input(at(2), Input::Command(Command::Remove(a.info_hash)))
            .unwrap();
        let outs = drain(&mut c);
        let stopped = announces(&outs);
        assert_eq!(stopped.len(), 1);
        assert_eq!(stopped[0].info_hash.0, a.info_hash.0);
        assert!(
            !outs
                .iter()
                .any(|o| matches!(o, Output::TrackerClose { .. })),
            "b still uses it"
        );
        assert!(
            outs.iter()
                .filter(|o| matches!(o, Output::ClosePeer { .. }))
                .count()
                >= DEFAULT_OFFERS
        );
        c.handle_input(at(3), Input::Command(Command::Remove(b.info_hash)))
            .unwrap();
        let outs = drain(&mut c);
        assert!(outs.contains(&Output::TrackerClose { url: T.into() }));
    }

    /// The trackers the client connects to after adding `meta` (seeding),
    /// with the client's own trackers or without.
    fn connects_with(client_trackers: bool) -> Vec<String> {
        const OTHER: &str = "wss://other.example/announce";
        let mut config = ClientConfig::new(PeerId([2; 20]), 1);
        config.trackers = vec![OTHER.into()];
        let mut c = Client::new(config);
        let meta = torrent("a");
        let add = AddBundle {
            source: BundleSource::Metainfo(Box::new(meta.clone())),
            role: Role::Seed,
            have: Bitfield::full(meta.info.lengths.num_pieces()),
            selection: None,
            paused: false,
            client_trackers,
        };
        c.handle_input(at(0), Input::Command(Command::AddBundle(Box::new(add))))
            .unwrap();
        let mut urls: Vec<String> = drain(&mut c)
            .into_iter()
            .filter_map(|o| match o {
                Output::TrackerConnect { url } => Some(url),
                _ => None,
            })
            .collect();
        urls.sort();
        urls
    }

    #[test]
    fn a_bundle_without_the_client_trackers_announces_only_on_its_own() {
        assert_eq!(connects_with(false), vec![T.to_string()]);
        assert_eq!(
            connects_with(true),
            vec!["wss://other.example/announce".to_string(), T.to_string()]
        );
    }

    #[test]
    fn a_bundle_added_while_its_tracker_socket_is_open_announces_on_it() {
        let mut c = client();
        let (a, b) = (torrent("a"), torrent("b"));
        c.handle_input(at(0), add(&a)).unwrap();
        drain(&mut c);
        c.handle_input(at(1), Input::TrackerOpened { url: T })
            .unwrap();
        let outs = drain(&mut c);
        assert_eq!(announces(&make_offers(&mut c, at(1), &outs)).len(), 1);
        // The socket is open when b comes: no new socket, b announces at once.
        c.handle_input(at(5), add(&b)).unwrap();
        let outs = drain(&mut c);
        assert!(!outs
            .iter()
            .any(|o| matches!(o, Output::TrackerConnect { .. })));
        let started = announces(&make_offers(&mut c, at(5), &outs));
        assert_eq!(started.len(), 1, "b announced started on the open socket");
        assert_eq!(started[0].info_hash.0, b.info_hash.0);
        assert!(started[0]
            .offers
            .as_ref()
            .is_some_and(|o| o.len() == DEFAULT_OFFERS));
    }

    #[test]
    fn a_tracker_answer_reaches_the_connection_of_its_offer() {
        let mut c = client();
        let a = torrent("a");
        c.handle_input(at(0), add(&a)).unwrap();
        drain(&mut c);
        c.handle_input(at(1), Input::TrackerOpened { url: T })
            .unwrap();
        let outs = drain(&mut c);
        let sent = make_offers(&mut c, at(1), &outs);
        let announce = &announces(&sent)[0];
        let offer = &announce.offers.as_ref().unwrap()[2];
        let answer = encode_to_client(&OutMessage::AnswerOutMessage(AnswerOutMessage {
            action: AnnounceAction::Announce,
            peer_id: WirePeerId([9; 20]),
            info_hash: WireInfoHash(a.info_hash.0),
            answer: RtcAnswer {
                t: RtcAnswerType::Answer,
                sdp: "their answer".into(),
            },
            offer_id: offer.offer_id,
        }));
        c.handle_input(
            at(2),
            Input::TrackerText {
                url: T,
                text: &answer,
            },
        )
        .unwrap();
        let outs = drain(&mut c);
        let conn = outs.iter().find_map(|o| match o {
            Output::AcceptAnswer { conn, answer_sdp } if answer_sdp == "their answer" => {
                Some(*conn)
            }
            _ => None,
        });
        let conn = conn.expect("the answer is applied");
        assert_eq!(
            offer.offer.sdp,
            format!("sdp of {conn}"),
            "to the offer it answers"
        );
        // The same answer again is not applied twice.
        c.handle_input(
            at(2),
            Input::TrackerText {
                url: T,
                text: &answer,
            },
        )
        .unwrap();
        assert!(!drain(&mut c)
            .iter()
            .any(|o| matches!(o, Output::AcceptAnswer { .. })));
    }

    /// Adds `meta` with `role` (a download has nothing yet), opens the
    /// tracker at 1 s and makes the offers of the `started` announce;
    /// returns what that sent and the offers' connections.
    fn announced(c: &mut Client, meta: &Metainfo, role: Role) -> (Vec<Output>, Vec<ConnId>) {
        let n = meta.info.lengths.num_pieces();
        let have = match role {
            Role::Seed => Bitfield::full(n),
            _ => Bitfield::new(n),
        };
        let input = Input::Command(Command::AddBundle(Box::new(AddBundle {
            source: BundleSource::Metainfo(Box::new(meta.clone())),
            role,
            have,
            selection: None,
            paused: false,
            client_trackers: true,
        })));
        c.handle_input(at(0), input).unwrap();
        drain(c);
        c.handle_input(at(1), Input::TrackerOpened { url: T })
            .unwrap();
        let outs = drain(c);
        let conns = outs
            .iter()
            .filter_map(|o| match o {
                Output::CreateOffer { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect();
        (make_offers(c, at(1), &outs), conns)
    }

    /// Runs the client's timers until `end`; returns the announces sent,
    /// with their times.
    fn announces_until(c: &mut Client, end: Instant) -> Vec<(Instant, usize)> {
        let mut seen = Vec::new();
        while let Some(t) = c.poll_timeout().filter(|&t| t <= end) {
            c.handle_timeout(t);
            let outs = drain(c);
            let sent = make_offers(c, t, &outs);
            for a in announces(&outs).into_iter().chain(announces(&sent)) {
                seen.push((t, a.offers.map_or(0, |o| o.len())));
            }
        }
        seen
    }

    #[test]
    fn a_download_whose_only_connection_failed_announces_again_within_5_seconds() {
        let mut c = client();
        let a = torrent("a");
        let (sent, conns) = announced(&mut c, &a, Role::Download);
        assert_eq!(announces(&sent).len(), 1, "started");
        // Every offer's connection fails at 2 s (an answer came, ICE did not
        // connect), so the download has no peer at all.
        assert_eq!(conns.len(), DEFAULT_OFFERS);
        for conn in conns {
            c.handle_input(at(2), Input::PeerClosed { conn }).unwrap();
        }
        drain(&mut c);
        let seen = announces_until(&mut c, at(60));
        let times: Vec<Instant> = seen.iter().map(|&(t, _)| t).collect();
        assert_eq!(
            times,
            vec![at(6), at(16), at(36)],
            "5 s, then 10 s, then 20 s after the one before"
        );
        assert!(seen.iter().all(|&(_, offers)| offers == DEFAULT_OFFERS));
    }

    #[test]
    fn a_piece_damaged_input_reaches_its_bundle_and_an_unknown_bundle_is_ignored() {
        // The glue's report of a piece read back wrong clears the bundle's
        // have-bit (the UI hears of it); one for another bundle is dropped.
        let mut c = client();
        let a = torrent("a");
        c.handle_input(at(0), add(&a)).unwrap();
        drain(&mut c);
        let other = torrent("other").info_hash;
        c.handle_input(
            at(1),
            Input::PieceDamaged {
                info_hash: other,
                piece: 0,
            },
        )
        .unwrap();
        assert!(drain(&mut c).is_empty());
        c.handle_input(
            at(1),
            Input::PieceDamaged {
                info_hash: a.info_hash,
                piece: 1,
            },
        )
        .unwrap();
        let out = drain(&mut c);
        assert!(out.contains(&Output::Event(Event::PieceDamaged {
            info_hash: a.info_hash,
            piece: 1
        })));
        let progress = out.iter().rev().find_map(|o| match o {
            Output::Event(Event::Progress(p)) => Some(p.clone()),
            _ => None,
        });
        let l = a.info.lengths;
        let lost = u64::from(l.piece_len(l.validate_piece(1).unwrap()));
        assert_eq!(
            progress.map(|p| (p.damaged, p.have_bytes)),
            Some((1, l.total_length() - lost))
        );
    }

    #[test]
    fn a_seed_alone_keeps_the_regular_interval() {
        let mut c = client();
        let a = torrent("a");
        let (_, conns) = announced(&mut c, &a, Role::Seed);
        for conn in conns {
            c.handle_input(at(2), Input::PeerClosed { conn }).unwrap();
        }
        drain(&mut c);
        assert!(announces_until(&mut c, at(100)).is_empty());
    }

    #[test]
    fn a_relayed_offer_is_answered_through_the_tracker_to_its_sender() {
        let mut c = client();
        let a = torrent("a");
        c.handle_input(at(0), add(&a)).unwrap();
        c.handle_input(at(1), Input::TrackerOpened { url: T })
            .unwrap();
        drain(&mut c);
        let offer = encode_to_client(&OutMessage::OfferOutMessage(OfferOutMessage {
            action: AnnounceAction::Announce,
            peer_id: WirePeerId([9; 20]),
            info_hash: WireInfoHash(a.info_hash.0),
            offer: RtcOffer {
                t: RtcOfferType::Offer,
                sdp: "their offer".into(),
            },
            offer_id: WireOfferId([4; 20]),
        }));
        c.handle_input(
            at(2),
            Input::TrackerText {
                url: T,
                text: &offer,
            },
        )
        .unwrap();
        let conn = drain(&mut c)
            .iter()
            .find_map(|o| match o {
                Output::CreateAnswer {
                    conn, offer_sdp, ..
                } if offer_sdp == "their offer" => Some(*conn),
                _ => None,
            })
            .expect("an answer is asked for");
        c.handle_input(
            at(3),
            Input::AnswerCreated {
                conn,
                sdp: "our answer",
            },
        )
        .unwrap();
        let outs = drain(&mut c);
        let answer = &announces(&outs)[0];
        assert_eq!(answer.answer_to_peer_id.map(|p| p.0), Some([9; 20]));
        assert_eq!(answer.answer_offer_id.map(|o| o.0), Some([4; 20]));
        assert_eq!(
            answer.answer.as_ref().map(|a| a.sdp.as_str()),
            Some("our answer")
        );
    }

    #[test]
    fn offers_nobody_answers_are_closed_after_their_timeout() {
        let mut c = client();
        c.handle_input(at(0), add(&torrent("a"))).unwrap();
        c.handle_input(at(1), Input::TrackerOpened { url: T })
            .unwrap();
        let outs = drain(&mut c);
        make_offers(&mut c, at(1), &outs);
        let deadline = c.poll_timeout().expect("a timer is armed");
        assert!(deadline <= at(1) + crate::engine::tracker::OFFER_TIMEOUT);
        c.handle_timeout(at(1) + crate::engine::tracker::OFFER_TIMEOUT);
        let expired = drain(&mut c)
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::ClosePeer {
                        reason: DropReason::OfferExpired,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(expired, DEFAULT_OFFERS);
    }

    #[test]
    fn commands_that_cannot_apply_fail_and_change_nothing() {
        let mut c = client();
        let a = torrent("a");
        let unknown = InfoHash([5; 20]);
        assert_eq!(
            c.handle_input(at(0), Input::Command(Command::Pause(unknown))),
            Err(CommandError::UnknownBundle(unknown))
        );
        c.handle_input(at(0), add(&a)).unwrap();
        assert_eq!(
            c.handle_input(at(0), add(&a)),
            Err(CommandError::DuplicateBundle(a.info_hash))
        );
        assert_eq!(c.bundles().count(), 1);
    }
}
