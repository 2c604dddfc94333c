//! The engine host's loop: owns the [`Client`] and every JavaScript object
//! (tracker sockets, peer connections, fetches, timers), feeds the engine one
//! input at a time, carries out its outputs, and arms one timer.
//!
//! Every JavaScript callback holds only a weak reference to the host and
//! posts a [`Work`] item; the loop takes items in order, so a callback that
//! fires while the host is busy (a re-entrant call) is queued, never nested.
//! Events for the page are collected during a turn and handed to its
//! callback after the host is released, so the page may call back in.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use js_sys::Function;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::spawn_local;
use web_sys::{AbortController, RtcDataChannel};

use crate::engine::api::{ConnId, Input, Output, Role, StoreFailure, WebSeedFetch};
use crate::engine::bitfield::Bitfield;
use crate::engine::client::Client;
use crate::engine::event::{Event, Progress};
use crate::engine::ids::InfoHash;
use crate::engine::link::bundle_status_url;
use crate::engine::metainfo::Info;
use crate::engine::time::Instant;
use crate::engine::upload::Upload;

use super::digest;
use super::js;
use super::net::error::NetError;
use super::net::http;
use super::net::rtc::{PeerLink, RtcSettings};
use super::net::tracker::TrackerSocket;
use super::pieces::FileSet;
use super::storage::{PieceToStore, Storage};
use super::uploader::{self, UploadJob, UploadOutcome};

/// A weak reference to the host, held by every callback.
pub type Weak = std::rc::Weak<Shared>;

/// Most bytes of pieces kept in memory to serve blocks from (a piece is read
/// once from the files or from storage, then its blocks come from here).
/// Peers ask for a piece's blocks close together, so a few pieces do; every
/// byte here is wasm memory held for good once reached.
const PIECE_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// How often a server still receiving a bundle is asked what it holds.
const SEED_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Most bytes of pieces written in one storage transaction.
const STORE_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Verified pieces wait for more until this many bytes are queued, or
/// [`STORE_WAIT`] has passed: every transaction costs the page and the
/// browser's IndexedDB a fixed amount (and reads and writes the
/// have-bitfield), and pieces of a fast download otherwise go one or two at
/// a time.
const STORE_MIN_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Longest a verified piece waits for others to share its transaction.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// A finished signalling step.
#[derive(Debug)]
pub enum Signalled {
    /// Our offer, ICE gathering done.
    Offer(String),
    /// Our answer, ICE gathering done.
    Answer(String),
}

/// Something that happened, for the loop to handle in order.
pub enum Work {
    /// The timer fired.
    Timeout,
    /// A tracker socket opened.
    TrackerOpened { url: String, generation: u64 },
    /// A tracker sent a text frame.
    TrackerText {
        url: String,
        generation: u64,
        text: String,
    },
    /// A tracker socket closed (or failed to open).
    TrackerClosed { url: String, generation: u64 },
    /// An offer or answer is ready, or signalling failed.
    Signalled {
        conn: ConnId,
        result: Result<Signalled, String>,
    },
    /// The remote's data channel arrived (answering side).
    Channel {
        conn: ConnId,
        channel: RtcDataChannel,
    },
    /// The data channel opened.
    PeerOpened { conn: ConnId },
    /// Bytes from a peer.
    PeerData { conn: ConnId, data: Vec<u8> },
    /// `bufferedamountlow` fired.
    PeerLow { conn: ConnId },
    /// The channel is writable now (it already was when the engine asked).
    PeerWritable { conn: ConnId },
    /// The channel or the connection closed.
    PeerClosed { conn: ConnId },
    /// A piece was read (from the files or from storage) for block loads.
    PieceRead {
        info_hash: InfoHash,
        piece: u32,
        result: Result<Rc<Vec<u8>>, String>,
    },
    /// A piece read back wrong (to serve it, or to upload it): it is not
    /// ours any more and is fetched again.
    PieceDamaged { info_hash: InfoHash, piece: u32 },
    /// A complete piece was hashed (`Output::HashPiece`).
    PieceHashed {
        info_hash: InfoHash,
        piece: u32,
        data: Vec<u8>,
        sha1: [u8; 20],
    },
    /// A batch of pieces was persisted, or not: each piece and whether it
    /// is stored; why those that are not failed (none: the disk filled up
    /// part way).
    PiecesStored {
        pieces: Vec<(InfoHash, u32, bool)>,
        failure: Option<StoreFailure>,
    },
    /// A web seed fetch finished.
    WebSeed {
        conn: ConnId,
        piece: u32,
        offset: u32,
        /// The bytes, or the bytes that came before the failure and why.
        result: Result<Vec<u8>, (Vec<u8>, String)>,
    },
    /// A Swarmdrop server answered which pieces its web seed holds.
    SeedStatus {
        info_hash: InfoHash,
        url: String,
        result: Result<Bitfield, String>,
    },
    /// A request of a bundle's upload to the server finished.
    Upload {
        info_hash: InfoHash,
        outcome: UploadOutcome,
    },
}

/// The host and the queue of work waiting for it.
pub struct Shared {
    host: RefCell<Host>,
    queue: RefCell<VecDeque<Work>>,
    on_event: RefCell<Option<Function>>,
}

/// Posts work to the host (if it still exists) and runs the loop unless it
/// is already running further up the stack.
pub fn post(host: &Weak, work: Work) {
    if let Some(shared) = host.upgrade() {
        shared.queue.borrow_mut().push_back(work);
        Shared::run(&shared);
    }
}

thread_local! {
    static PERFORMANCE: Option<web_sys::Performance> =
        web_sys::window().and_then(|w| w.performance());
}

/// Milliseconds from `performance.now()` (the engine's clock; never
/// `std::time::Instant`, which panics on wasm32).
pub fn now_ms() -> f64 {
    PERFORMANCE.with(|p| p.as_ref().map_or_else(js_sys::Date::now, |p| p.now()))
}

fn now() -> Instant {
    Instant::from_millis_f64(now_ms())
}

impl Shared {
    /// Wraps the host made by `make`, which receives the weak reference
    /// its callbacks will hold.
    pub fn new(make: impl FnOnce(Weak) -> Host) -> Rc<Shared> {
        Rc::new_cyclic(|me| Shared {
            host: RefCell::new(make(me.clone())),
            queue: RefCell::new(VecDeque::new()),
            on_event: RefCell::new(None),
        })
    }

    /// Sets the page's event callback.
    pub fn set_on_event(&self, f: Option<Function>) {
        *self.on_event.borrow_mut() = f;
    }

    /// Runs `f` on the host, then the loop. Fails if called from inside the
    /// loop (a page callback must not call back synchronously; events are
    /// delivered after the host is released, so that cannot happen through
    /// them).
    pub fn with<R>(self: &Rc<Self>, f: impl FnOnce(&mut Host) -> R) -> Result<R, NetError> {
        let result = {
            let mut host = self
                .host
                .try_borrow_mut()
                .map_err(|_| NetError::Reentrant)?;
            let r = f(&mut host);
            host.drain();
            r
        };
        Shared::run(self);
        Ok(result)
    }

    /// Handles queued work until there is none, arms the timer, then hands
    /// the collected events to the page.
    fn run(self: &Rc<Self>) {
        let events = {
            let Ok(mut host) = self.host.try_borrow_mut() else {
                // The loop is running further up the stack: it will take it.
                return;
            };
            loop {
                let next = self.queue.borrow_mut().pop_front();
                let Some(work) = next else {
                    break;
                };
                host.handle(work);
            }
            host.arm_timer();
            std::mem::take(&mut host.events)
        };
        if events.is_empty() {
            return;
        }
        let callback = self.on_event.borrow().clone();
        if let Some(f) = callback {
            for e in events {
                if let Err(err) = f.call1(&JsValue::NULL, &e) {
                    web_sys::console::error_2(&"swarmdrop: event handler failed".into(), &err);
                }
            }
        }
    }
}

/// What the host knows of one bundle besides the engine's session.
pub struct Bundle {
    /// Seed or download.
    pub role: Role,
    /// Display name.
    pub name: Option<String>,
    /// The info dictionary, once known.
    pub info: Option<Rc<Info>>,
    /// Pieces held (stored or, for a send, in the files), once the info is known.
    pub have: Option<Bitfield>,
    /// The `.torrent`, when the host has it (sends, and downloads added from one).
    pub torrent: Option<Rc<Vec<u8>>>,
    /// A send's files.
    pub files: Option<FileSet>,
    /// The last figures.
    pub progress: Option<Progress>,
    /// Every wanted piece is stored.
    pub completed: bool,
    /// Why the bundle is paused, if it is.
    pub paused: Option<&'static str>,
    /// The last error reported for it.
    pub error: Option<String>,
    /// The upload to the server, for a send that has one.
    pub upload: Option<UploadJob>,
}

/// The engine and every JavaScript object it drives.
pub struct Host {
    /// The engine.
    pub client: Client,
    /// Ourselves, for callbacks.
    pub me: Weak,
    /// IndexedDB.
    pub storage: Storage,
    /// How peer connections are made.
    pub rtc: RtcSettings,
    trackers: HashMap<String, (u64, TrackerSocket)>,
    tracker_generation: u64,
    peers: HashMap<ConnId, PeerLink>,
    /// Abort controllers of web seed fetches, per web seed connection.
    seeds: HashMap<ConnId, AbortController>,
    /// Bundles.
    pub bundles: BTreeMap<InfoHash, Bundle>,
    cache: PieceCache,
    /// Block loads waiting for their piece to be read.
    loading: HashMap<(InfoHash, u32), Vec<(u32, u32)>>,
    /// Pieces whose bytes read back right this session, per bundle: a
    /// piece is hashed the first time it is read to be served, not again
    /// at every later read (see `load_block`).
    verified: HashMap<InfoHash, Bitfield>,
    /// Saves waiting for a damaged piece to be stored again: `(resolve,
    /// reject)` of the promise each awaits.
    refetch_waiters: HashMap<(InfoHash, u32), Vec<(Function, Function)>>,
    /// Verified pieces waiting for the next storage transaction.
    store_queue: VecDeque<PieceToStore>,
    /// A storage transaction is under way.
    storing: bool,
    /// When the oldest piece in `store_queue` was queued.
    store_since: Option<Instant>,
    /// Web seeds of availability servers that do not hold every piece yet.
    watches: Vec<SeedWatch>,
    timer: Option<(Instant, Timeout)>,
    /// Events for the page, delivered after the turn.
    pub events: Vec<JsValue>,
}

impl Host {
    /// A host around a client.
    pub fn new(client: Client, me: Weak, storage: Storage, rtc: RtcSettings) -> Host {
        Host {
            client,
            me,
            storage,
            rtc,
            trackers: HashMap::new(),
            tracker_generation: 0,
            peers: HashMap::new(),
            seeds: HashMap::new(),
            bundles: BTreeMap::new(),
            cache: PieceCache::new(PIECE_CACHE_BYTES),
            loading: HashMap::new(),
            verified: HashMap::new(),
            refetch_waiters: HashMap::new(),
            store_queue: VecDeque::new(),
            storing: false,
            store_since: None,
            watches: Vec::new(),
            timer: None,
            events: Vec::new(),
        }
    }

    /// Feeds one input and carries out what follows.
    pub fn feed(&mut self, input: Input<'_>) -> Result<(), crate::engine::api::CommandError> {
        let r = self.client.handle_input(now(), input);
        self.drain();
        r
    }

    /// Carries out the engine's outputs until there are none.
    pub fn drain(&mut self) {
        while let Some(output) = self.client.poll_output() {
            self.output(output);
        }
    }

    fn handle(&mut self, work: Work) {
        match work {
            Work::Timeout => {
                self.timer = None;
                let now = now();
                self.client.handle_timeout(now);
                self.drain();
                let due: Vec<InfoHash> = self
                    .bundles
                    .iter()
                    .filter(|(_, b)| {
                        b.upload
                            .as_ref()
                            .and_then(|u| u.plan.poll_timeout())
                            .is_some_and(|t| t <= now)
                    })
                    .map(|(h, _)| *h)
                    .collect();
                for h in due {
                    self.drive_upload(h);
                }
                self.drive_watches();
                self.flush_stores();
            }
            Work::TrackerOpened { url, generation } => {
                if self.tracker_current(&url, generation) {
                    let _ = self.feed(Input::TrackerOpened { url: &url });
                }
            }
            Work::TrackerText {
                url,
                generation,
                text,
            } => {
                if self.tracker_current(&url, generation) {
                    let _ = self.feed(Input::TrackerText {
                        url: &url,
                        text: &text,
                    });
                }
            }
            Work::TrackerClosed { url, generation } => {
                if self.tracker_current(&url, generation) {
                    self.trackers.remove(&url);
                    let _ = self.feed(Input::TrackerClosed { url: &url });
                }
            }
            Work::Signalled { conn, result } => {
                if !self.peers.contains_key(&conn) {
                    return;
                }
                let _ = match &result {
                    Ok(Signalled::Offer(sdp)) => self.feed(Input::OfferCreated { conn, sdp }),
                    Ok(Signalled::Answer(sdp)) => self.feed(Input::AnswerCreated { conn, sdp }),
                    Err(reason) => self.feed(Input::SignalFailed { conn, reason }),
                };
            }
            Work::Channel { conn, channel } => match self.peers.get_mut(&conn) {
                Some(link) => link.attach_channel(conn, channel, self.rtc.low_water, &self.me),
                None => channel.close(),
            },
            Work::PeerOpened { conn } => {
                if self.peers.contains_key(&conn) {
                    let _ = self.feed(Input::PeerOpened { conn });
                }
            }
            Work::PeerData { conn, data } => {
                if self.peers.contains_key(&conn) {
                    let _ = self.feed(Input::PeerData { conn, data: &data });
                }
            }
            Work::PeerLow { conn } => {
                if self.peers.get_mut(&conn).is_some_and(PeerLink::drained) {
                    let _ = self.feed(Input::PeerWritable { conn });
                }
            }
            Work::PeerWritable { conn } => {
                if self.peers.contains_key(&conn) {
                    let _ = self.feed(Input::PeerWritable { conn });
                }
            }
            Work::PeerClosed { conn } => {
                if self.peers.remove(&conn).is_some() {
                    let _ = self.feed(Input::PeerClosed { conn });
                }
            }
            Work::PieceRead {
                info_hash,
                piece,
                result,
            } => self.piece_read(info_hash, piece, result),
            Work::PieceDamaged { info_hash, piece } => self.piece_damaged(info_hash, piece),
            Work::PieceHashed {
                info_hash,
                piece,
                data,
                sha1,
            } => {
                let _ = self.feed(Input::PieceHashed {
                    info_hash,
                    piece,
                    data,
                    sha1,
                });
            }
            Work::PiecesStored { pieces, failure } => {
                self.storing = false;
                // The stored pieces first: a failure pauses their bundle.
                for &(info_hash, piece, _) in pieces.iter().filter(|p| p.2) {
                    for (resolve, _) in self
                        .refetch_waiters
                        .remove(&(info_hash, piece))
                        .unwrap_or_default()
                    {
                        let _ = resolve.call0(&JsValue::NULL);
                    }
                    let _ = self.feed(Input::PieceStored { info_hash, piece });
                }
                let failure = failure.unwrap_or(StoreFailure::DiskFull);
                for &(info_hash, piece, _) in pieces.iter().filter(|p| !p.2) {
                    let _ = self.feed(Input::StoreFailed {
                        info_hash,
                        piece,
                        failure: failure.clone(),
                    });
                }
                self.flush_stores();
            }
            Work::WebSeed {
                conn,
                piece,
                offset,
                result,
            } => {
                let _ = match &result {
                    Ok(data) => self.feed(Input::WebSeedData {
                        conn,
                        piece,
                        offset,
                        data,
                    }),
                    Err((received, reason)) => self.feed(Input::WebSeedFailed {
                        conn,
                        piece,
                        offset,
                        received,
                        reason,
                    }),
                };
            }
            Work::SeedStatus {
                info_hash,
                url,
                result,
            } => self.seed_status(info_hash, url, result),
            Work::Upload { info_hash, outcome } => {
                self.upload_outcome(info_hash, outcome);
            }
        }
    }

    fn tracker_current(&self, url: &str, generation: u64) -> bool {
        self.trackers
            .get(url)
            .is_some_and(|(g, _)| *g == generation)
    }

    fn output(&mut self, output: Output) {
        match output {
            Output::PeerSend { conn, data } => {
                if let Some(link) = self.peers.get(&conn) {
                    if link.send(&data).is_err() {
                        post(&self.me, Work::PeerClosed { conn });
                    }
                }
            }
            Output::WatchWritable { conn } => {
                let low = self.rtc.low_water;
                if self
                    .peers
                    .get_mut(&conn)
                    .is_some_and(|l| l.watch_writable(low))
                {
                    post(&self.me, Work::PeerWritable { conn });
                }
            }
            Output::ClosePeer { conn, .. } => {
                self.peers.remove(&conn);
                if let Some(controller) = self.seeds.remove(&conn) {
                    controller.abort();
                }
            }
            Output::CreateOffer { conn, .. } => match PeerLink::offer(conn, &self.rtc, &self.me) {
                Ok(link) => {
                    self.peers.insert(conn, link);
                }
                Err(e) => self.signal_failed_now(conn, e.to_string()),
            },
            Output::CreateAnswer {
                conn, offer_sdp, ..
            } => match PeerLink::answer(conn, offer_sdp, &self.rtc, &self.me) {
                Ok(link) => {
                    self.peers.insert(conn, link);
                }
                Err(e) => self.signal_failed_now(conn, e.to_string()),
            },
            Output::AcceptAnswer { conn, answer_sdp } => {
                if let Some(link) = self.peers.get(&conn) {
                    link.accept_answer(conn, answer_sdp, &self.me);
                }
            }
            Output::TrackerConnect { url } => {
                self.tracker_generation += 1;
                let generation = self.tracker_generation;
                match TrackerSocket::open(&url, generation, self.me.clone()) {
                    Ok(socket) => {
                        self.trackers.insert(url, (generation, socket));
                    }
                    Err(e) => {
                        self.event(js::error_event(None, &format!("tracker {url}: {e}")));
                        // The engine backs off and tries again.
                        self.trackers.remove(&url);
                        let _ = self
                            .client
                            .handle_input(now(), Input::TrackerClosed { url: &url });
                    }
                }
            }
            Output::TrackerSend { url, text } => {
                if let Some((_, socket)) = self.trackers.get(&url) {
                    let _ = socket.send(&text);
                }
            }
            Output::TrackerClose { url } => {
                self.trackers.remove(&url);
            }
            Output::LoadBlock {
                info_hash,
                piece,
                offset,
                len,
            } => self.load_block(info_hash, piece, offset, len),
            Output::StorePiece {
                info_hash,
                piece,
                data,
            } => self.store_piece(info_hash, piece, data),
            Output::HashPiece {
                info_hash,
                piece,
                data,
            } => {
                // WebCrypto's native SHA-1 (digest.rs), awaited apart from
                // the engine, which goes on with other inputs meanwhile.
                let me = self.me.clone();
                spawn_local(async move {
                    let sha1 = digest::sha1(&data).await;
                    post(
                        &me,
                        Work::PieceHashed {
                            info_hash,
                            piece,
                            data,
                            sha1,
                        },
                    );
                });
            }
            Output::WebSeedFetch(fetch) => self.web_seed_fetch(fetch),
            Output::Event(event) => self.engine_event(event),
        }
    }

    fn signal_failed_now(&mut self, conn: ConnId, reason: String) {
        // Fed at once: the engine takes inputs while outputs are queued, and
        // what it decides goes behind them.
        let _ = self.client.handle_input(
            now(),
            Input::SignalFailed {
                conn,
                reason: &reason,
            },
        );
    }

    // ----- storage and files -----

    fn load_block(&mut self, info_hash: InfoHash, piece: u32, offset: u32, len: u32) {
        let key = (info_hash, piece);
        let waiting = self.loading.entry(key).or_default();
        waiting.push((offset, len));
        if waiting.len() > 1 {
            return; // The piece is being read already.
        }
        if let Some(bytes) = self.cache.get(&key) {
            post(
                &self.me,
                Work::PieceRead {
                    info_hash,
                    piece,
                    result: Ok(bytes),
                },
            );
            return;
        }
        let Some(bundle) = self.bundles.get(&info_hash) else {
            post(
                &self.me,
                Work::PieceRead {
                    info_hash,
                    piece,
                    result: Err("unknown bundle".into()),
                },
            );
            return;
        };
        let me = self.me.clone();
        let files = bundle.files.clone();
        let index = bundle
            .info
            .as_ref()
            .and_then(|i| i.lengths.validate_piece(piece));
        // Each piece is checked against its hash the first time it is read
        // this session (then it is served from the cache, or read again
        // from storage unchecked): what was checked once stays trusted
        // until the host restarts, which keeps the hashing off the P2P
        // path's CPU budget after the first read.
        let check = match (&bundle.info, index) {
            (Some(info), Some(index)) => {
                let done = self
                    .verified
                    .get(&info_hash)
                    .is_some_and(|v| v.get(index.get()));
                (!done).then(|| (info.clone(), index))
            }
            _ => None,
        };
        let lengths = bundle.info.as_ref().map(|i| i.lengths);
        let storage = self.storage.clone();
        spawn_local(async move {
            let mut result = match (files, index, &lengths) {
                (Some(files), Some(index), _) => files.read_piece(index).await,
                (None, Some(index), Some(l)) => {
                    // Missing twice while the engine counts it as stored
                    // (it serves only pieces it has): the browser lost it
                    // (see `IDB_HEADROOM` in `storage.rs`). It is fetched
                    // again like a damaged piece, as a save does; the
                    // second read lets a piece stored meanwhile be found.
                    let mut read = storage.read_piece(info_hash, l, index.get()).await;
                    if read.is_err() {
                        read = storage.read_piece(info_hash, l, index.get()).await;
                        if read.is_err() {
                            post(&me, Work::PieceDamaged { info_hash, piece });
                        }
                    }
                    read
                }
                _ => Err(NetError::Argument(format!("no piece {piece}"))),
            };
            if let (Ok(bytes), Some((info, index))) = (&result, check) {
                if let Err(e) = digest::check_piece_bytes(&info, index, bytes).await {
                    if matches!(e, NetError::Damaged { .. }) {
                        post(&me, Work::PieceDamaged { info_hash, piece });
                    }
                    result = Err(e);
                }
            }
            post(
                &me,
                Work::PieceRead {
                    info_hash,
                    piece,
                    result: result.map(Rc::new).map_err(|e| e.to_string()),
                },
            );
        });
    }

    fn piece_read(&mut self, info_hash: InfoHash, piece: u32, result: Result<Rc<Vec<u8>>, String>) {
        let waiters = self.loading.remove(&(info_hash, piece)).unwrap_or_default();
        if let Ok(bytes) = &result {
            self.cache.insert((info_hash, piece), bytes.clone());
            let num_pieces = self
                .bundles
                .get(&info_hash)
                .and_then(|b| b.info.as_ref())
                .map(|i| i.lengths.num_pieces());
            if let Some(n) = num_pieces {
                let verified = self
                    .verified
                    .entry(info_hash)
                    .or_insert_with(|| Bitfield::new(n));
                if piece < verified.len() {
                    verified.set(piece, true);
                }
            }
        }
        for (offset, len) in waiters {
            let block = result.as_ref().map_err(String::as_str).and_then(|bytes| {
                let (a, b) = (offset as usize, offset as usize + len as usize);
                bytes
                    .get(a..b)
                    .ok_or("the stored piece is shorter than asked")
            });
            let _ = match block {
                Ok(data) => self.feed(Input::BlockLoaded {
                    info_hash,
                    piece,
                    offset,
                    data,
                }),
                Err(reason) => self.feed(Input::LoadFailed {
                    info_hash,
                    piece,
                    offset,
                    reason,
                }),
            };
        }
    }

    /// A piece read back wrong: storage deletes it and clears its have-bit
    /// in one transaction (a send has no stored pieces: its file changed),
    /// and the engine is told at once, so it neither serves the piece nor
    /// counts it; it fetches it again. The delete's transaction is created
    /// before any store of the piece fetched again (that takes a network
    /// round trip), and IndexedDB runs them in that order.
    pub fn piece_damaged(&mut self, info_hash: InfoHash, piece: u32) {
        let Some(bundle) = self.bundles.get_mut(&info_hash) else {
            return;
        };
        let Some(num_pieces) = bundle.info.as_ref().map(|i| i.lengths.num_pieces()) else {
            return;
        };
        if piece >= num_pieces {
            return;
        }
        if let Some(have) = bundle.have.as_mut() {
            have.set(piece, false);
        }
        if bundle.role == Role::Download {
            bundle.completed = false;
        }
        let stored = bundle.files.is_none();
        self.cache.remove((info_hash, piece));
        if let Some(v) = self.verified.get_mut(&info_hash) {
            v.set(piece, false);
        }
        if stored {
            let storage = self.storage.clone();
            spawn_local(async move {
                if let Err(e) = storage.discard_piece(info_hash, piece, num_pieces).await {
                    // Its have-bit may stay set: the piece fetched again
                    // overwrites it, and a later read finds it wrong again.
                    web_sys::console::warn_1(&format!("swarmdrop: {e}").into());
                }
            });
        }
        let _ = self.feed(Input::PieceDamaged { info_hash, piece });
    }

    /// A save met piece `piece` of a download damaged (`damaged`), or
    /// missing: a promise that resolves once the piece is stored again
    /// (rejects if the bundle is removed first), or `None` when the piece
    /// is not being fetched again (the bundle is gone, a send, or the
    /// engine has the piece: the read failed for another reason).
    pub fn await_refetch(
        &mut self,
        info_hash: InfoHash,
        piece: u32,
        damaged: bool,
    ) -> Option<js_sys::Promise> {
        if damaged {
            self.piece_damaged(info_hash, piece);
        }
        let bundle = self.bundles.get(&info_hash)?;
        if bundle.files.is_some() || bundle.have.as_ref()?.get(piece) {
            return None;
        }
        let waiters = self.refetch_waiters.entry((info_hash, piece)).or_default();
        Some(js_sys::Promise::new(&mut |resolve, reject| {
            waiters.push((resolve, reject));
        }))
    }

    fn store_piece(&mut self, info_hash: InfoHash, piece: u32, data: Vec<u8>) {
        let lengths = self
            .bundles
            .get(&info_hash)
            .and_then(|b| b.info.as_ref())
            .map(|i| i.lengths);
        let Some((num_pieces, offset, bundle_len)) = lengths.and_then(|l| {
            let index = l.validate_piece(piece)?;
            Some((l.num_pieces(), l.piece_offset(index), l.total_length()))
        }) else {
            let _ = self.client.handle_input(
                now(),
                Input::StoreFailed {
                    info_hash,
                    piece,
                    failure: StoreFailure::Other("the bundle's metadata is not known".into()),
                },
            );
            return;
        };
        // Shared, not copied: the cache and the storage queue hold the same bytes.
        let bytes = Rc::new(data);
        // Peers told of this piece ask for it soon: serve them from memory.
        self.cache.insert((info_hash, piece), bytes.clone());
        self.store_queue.push_back(PieceToStore {
            info_hash,
            piece,
            num_pieces,
            offset,
            bundle_len,
            data: bytes,
        });
        self.store_since.get_or_insert_with(now);
        self.flush_stores();
    }

    /// Writes the queued pieces in one transaction, unless one is under way
    /// (the pieces that come meanwhile go in the next: a group commit) or
    /// fewer than [`STORE_MIN_BATCH_BYTES`] have waited less than
    /// [`STORE_WAIT`] (the timer comes back then).
    fn flush_stores(&mut self) {
        if self.storing || self.store_queue.is_empty() {
            return;
        }
        let queued: usize = self.store_queue.iter().map(|p| p.data.len()).sum();
        let waited = self
            .store_since
            .is_some_and(|t| now().saturating_since(t) >= STORE_WAIT);
        if queued < STORE_MIN_BATCH_BYTES && !waited {
            return;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(p) = self.store_queue.front() {
            if !batch.is_empty() && bytes + p.data.len() > STORE_BATCH_BYTES {
                break;
            }
            bytes += p.data.len();
            batch.extend(self.store_queue.pop_front());
        }
        // What is left (over one transaction's worth) goes next, at once.
        self.store_since = (!self.store_queue.is_empty()).then_some(Instant::ZERO);
        self.storing = true;
        let (me, storage) = (self.me.clone(), self.storage.clone());
        spawn_local(async move {
            let mut short = vec![false; batch.len()];
            let result = storage.store_pieces(&batch, &mut short).await;
            let pieces = batch
                .iter()
                .zip(short)
                .map(|(p, short)| (p.info_hash, p.piece, result.is_ok() && !short))
                .collect();
            post(
                &me,
                Work::PiecesStored {
                    pieces,
                    failure: result.err(),
                },
            );
        });
    }

    fn web_seed_fetch(&mut self, fetch: WebSeedFetch) {
        let controller = match self.seeds.get(&fetch.conn) {
            Some(c) => Some(c.clone()),
            None => {
                let c = http::abort_controller();
                if let Some(c) = &c {
                    self.seeds.insert(fetch.conn, c.clone());
                }
                c
            }
        };
        let me = self.me.clone();
        spawn_local(async move {
            let signal = controller.as_ref().map(AbortController::signal);
            let result = http::fetch_ranges(&fetch.ranges, signal.as_ref())
                .await
                .map_err(|f| (f.received, f.error.to_string()));
            post(
                &me,
                Work::WebSeed {
                    conn: fetch.conn,
                    piece: fetch.piece,
                    offset: fetch.offset,
                    result,
                },
            );
        });
    }

    // ----- availability servers still receiving a bundle -----

    /// Watches the web seeds of a download that are Swarmdrop servers: until
    /// a server holds every piece, the engine is told which it holds.
    pub fn watch_web_seeds(&mut self, info_hash: InfoHash, urls: &[String]) {
        let at = now();
        for url in urls {
            let Some(status) = bundle_status_url(url, info_hash) else {
                continue;
            };
            if self
                .watches
                .iter()
                .any(|w| w.info_hash == info_hash && w.url == *url)
            {
                continue;
            }
            self.watches.push(SeedWatch {
                info_hash,
                url: url.clone(),
                status,
                next: at,
                busy: false,
            });
        }
        self.drive_watches();
    }

    fn drive_watches(&mut self) {
        let at = now();
        for w in self.watches.iter_mut().filter(|w| !w.busy && w.next <= at) {
            w.busy = true;
            let (me, info_hash, url, status) = (
                self.me.clone(),
                w.info_hash,
                w.url.clone(),
                w.status.clone(),
            );
            spawn_local(async move {
                let result = fetch_server_have(&status).await;
                post(
                    &me,
                    Work::SeedStatus {
                        info_hash,
                        url,
                        result,
                    },
                );
            });
        }
    }

    fn seed_status(&mut self, info_hash: InfoHash, url: String, result: Result<Bitfield, String>) {
        let Some(i) = self
            .watches
            .iter()
            .position(|w| w.info_hash == info_hash && w.url == url)
        else {
            return;
        };
        let done = match &result {
            Ok(have) => {
                let _ = self.feed(Input::WebSeedHave {
                    info_hash,
                    url: &url,
                    have,
                });
                have.is_full()
            }
            // Not there yet (or unreachable): ask again later.
            Err(_) => false,
        };
        if done || !self.bundles.contains_key(&info_hash) {
            self.watches.remove(i);
        } else if let Some(w) = self.watches.get_mut(i) {
            w.busy = false;
            w.next = now() + SEED_POLL_INTERVAL;
        }
    }

    /// Forgets a bundle's cached pieces.
    pub fn forget_pieces(&mut self, info_hash: InfoHash) {
        self.cache.remove_bundle(info_hash);
        self.verified.remove(&info_hash);
        let gone: Vec<(InfoHash, u32)> = self
            .refetch_waiters
            .keys()
            .filter(|(h, _)| *h == info_hash)
            .copied()
            .collect();
        for key in gone {
            for (_, reject) in self.refetch_waiters.remove(&key).unwrap_or_default() {
                let _ = reject.call1(
                    &JsValue::NULL,
                    &js_sys::Error::new("the transfer was removed").into(),
                );
            }
        }
        self.loading.retain(|(h, _), _| *h != info_hash);
        self.store_queue.retain(|p| p.info_hash != info_hash);
        if self.store_queue.is_empty() {
            self.store_since = None;
        }
        self.watches.retain(|w| w.info_hash != info_hash);
    }

    // ----- events -----

    fn engine_event(&mut self, event: Event) {
        match &event {
            Event::BundleAdded {
                info_hash, name, ..
            } => {
                if let Some(b) = self.bundles.get_mut(info_hash) {
                    if b.name.is_none() {
                        b.name.clone_from(name);
                    }
                }
            }
            Event::MetadataReceived {
                info_hash,
                info_bytes,
            } => {
                if let Some(b) = self.bundles.get_mut(info_hash) {
                    if let Ok((info, _)) = Info::from_info_bytes(info_bytes) {
                        b.name = Some(info.name.clone());
                        b.have = Some(Bitfield::new(info.lengths.num_pieces()));
                        b.torrent = Some(Rc::new(torrent_of(info_bytes)));
                        b.info = Some(Rc::new(info));
                    }
                }
            }
            Event::PieceVerified { info_hash, piece } => {
                if let Some(have) = self
                    .bundles
                    .get_mut(info_hash)
                    .and_then(|b| b.have.as_mut())
                {
                    have.set(*piece, true);
                }
            }
            Event::Progress(p) => {
                if let Some(b) = self.bundles.get_mut(&p.info_hash) {
                    b.progress = Some(p.clone());
                }
            }
            Event::Completed { info_hash } => {
                if let Some(b) = self.bundles.get_mut(info_hash) {
                    b.completed = true;
                }
                self.watches.retain(|w| w.info_hash != *info_hash);
            }
            Event::Paused { info_hash, reason } => {
                if let Some(b) = self.bundles.get_mut(info_hash) {
                    b.paused = Some(js::pause_reason(*reason));
                }
            }
            Event::Resumed { info_hash } => {
                if let Some(b) = self.bundles.get_mut(info_hash) {
                    b.paused = None;
                }
            }
            Event::Error {
                info_hash: Some(h),
                message,
            } => {
                if let Some(b) = self.bundles.get_mut(h) {
                    b.error = Some(message.clone());
                }
            }
            _ => {}
        }
        self.event(js::engine_event(&event));
    }

    /// Queues an event for the page.
    pub fn event(&mut self, e: JsValue) {
        self.events.push(e);
    }

    // ----- uploads -----

    /// Starts the requests an upload may make now.
    pub fn drive_upload(&mut self, info_hash: InfoHash) {
        let now = now();
        let Some(bundle) = self.bundles.get_mut(&info_hash) else {
            return;
        };
        let (Some(job), Some(files)) = (bundle.upload.as_mut(), bundle.files.clone()) else {
            return;
        };
        while let Some(action) = job.plan.poll_action(now) {
            uploader::start(
                action,
                info_hash,
                job,
                &files,
                self.storage.clone(),
                self.me.clone(),
            );
        }
    }

    fn upload_outcome(&mut self, info_hash: InfoHash, outcome: UploadOutcome) {
        let now = now();
        let Some(job) = self
            .bundles
            .get_mut(&info_hash)
            .and_then(|b| b.upload.as_mut())
        else {
            return;
        };
        let before = job.plan.progress();
        match outcome {
            UploadOutcome::Status { have, token } => {
                if let Some(token) = token {
                    job.token = Some(token);
                }
                match have {
                    Ok(have) => job.plan.on_status(have),
                    Err(failure) => job.plan.on_request_failed(now, failure),
                }
            }
            UploadOutcome::Piece { piece, result } => match result {
                Ok(()) => job.plan.on_piece_stored(piece),
                Err(failure) => job.plan.on_piece_failed(now, piece, failure),
            },
        }
        let after = job.plan.progress();
        if after != before {
            let e = js::upload_event(info_hash, &after);
            self.event(e);
        }
        self.drive_upload(info_hash);
    }

    // ----- the timer -----

    /// Arms the one timer for the earliest of the engine's and the uploads'
    /// deadlines. A timer already set for an earlier or equal time is kept
    /// (firing early is harmless: nothing is due, the timer is armed again).
    fn arm_timer(&mut self) {
        let uploads = self
            .bundles
            .values()
            .filter_map(|b| b.upload.as_ref().and_then(|u| u.plan.poll_timeout()))
            .min();
        let watches = self
            .watches
            .iter()
            .filter(|w| !w.busy)
            .map(|w| w.next)
            .min();
        let stores = self
            .store_since
            .filter(|_| !self.storing)
            .map(|t| t + STORE_WAIT);
        let Some(deadline) = [self.client.poll_timeout(), uploads, watches, stores]
            .into_iter()
            .flatten()
            .min()
        else {
            self.timer = None;
            return;
        };
        if self.timer.as_ref().is_some_and(|(at, _)| *at <= deadline) {
            return;
        }
        let delay_ms = deadline.saturating_since(now()).as_millis();
        let delay = u32::try_from(delay_ms)
            .unwrap_or(u32::MAX)
            .min(i32::MAX as u32);
        let me = self.me.clone();
        let timeout = Timeout::new(delay, move || post(&me, Work::Timeout));
        self.timer = Some((deadline, timeout));
    }
}

/// A Swarmdrop server's web seed of a bundle it does not fully hold yet.
struct SeedWatch {
    info_hash: InfoHash,
    /// The web seed URL (as in `url-list`).
    url: String,
    /// Its bundle API status URL.
    status: String,
    /// When to ask next.
    next: Instant,
    /// A request is out.
    busy: bool,
}

/// The pieces a server holds, from its bundle API.
async fn fetch_server_have(status: &str) -> Result<Bitfield, String> {
    let answer = http::request("GET", status, &[], None, None)
        .await
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("HTTP {}", answer.status));
    }
    let body = http::json(&answer).map_err(|e| e.to_string())?;
    let pieces = body
        .get("num_pieces")
        .and_then(|n| n.as_u64())
        .and_then(|n| u32::try_from(n).ok())
        .ok_or("no num_pieces")?;
    let bytes = body
        .get("have")
        .and_then(|h| h.as_str())
        .and_then(http::base64_decode)
        .ok_or("no have-bitfield")?;
    Bitfield::from_bytes(&bytes, pieces).ok_or_else(|| "a bitfield of the wrong length".to_owned())
}

/// Recently read or stored pieces, to serve blocks without reading again.
struct PieceCache {
    map: HashMap<(InfoHash, u32), Rc<Vec<u8>>>,
    order: VecDeque<(InfoHash, u32)>,
    bytes: usize,
    cap: usize,
}

impl PieceCache {
    fn new(cap: usize) -> Self {
        PieceCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            cap,
        }
    }

    fn get(&self, key: &(InfoHash, u32)) -> Option<Rc<Vec<u8>>> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: (InfoHash, u32), bytes: Rc<Vec<u8>>) {
        if let Some(old) = self.map.insert(key, bytes.clone()) {
            self.bytes -= old.len();
            self.order.retain(|k| *k != key);
        }
        self.bytes += bytes.len();
        self.order.push_back(key);
        while self.bytes > self.cap {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.map.remove(&oldest) {
                self.bytes -= old.len();
            }
        }
    }

    fn remove(&mut self, key: (InfoHash, u32)) {
        if let Some(old) = self.map.remove(&key) {
            self.bytes -= old.len();
            self.order.retain(|k| *k != key);
        }
    }

    fn remove_bundle(&mut self, info_hash: InfoHash) {
        let map = &mut self.map;
        let mut freed = 0;
        self.order.retain(|k| {
            if k.0 == info_hash {
                freed += map.remove(k).map_or(0, |b| b.len());
                false
            } else {
                true
            }
        });
        self.bytes -= freed;
    }
}

/// The `.torrent` of a bundle known from its info dictionary alone (a
/// magnet link's, once the metadata came): `{"info": ...}`.
fn torrent_of(info_bytes: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(info_bytes.len() + 10);
    t.extend_from_slice(b"d4:info");
    t.extend_from_slice(info_bytes);
    t.push(b'e');
    t
}

/// A bundle entry for a send or a download.
pub fn new_bundle(
    role: Role,
    name: Option<String>,
    info: Option<Rc<Info>>,
    have: Option<Bitfield>,
    torrent: Option<Rc<Vec<u8>>>,
    files: Option<FileSet>,
) -> Bundle {
    Bundle {
        role,
        name,
        info,
        have,
        torrent,
        files,
        progress: None,
        completed: role == Role::Seed,
        paused: None,
        error: None,
        upload: None,
    }
}

/// An upload job for a send.
pub fn new_upload(
    info: &Info,
    server: String,
    token: Option<String>,
    torrent: Rc<Vec<u8>>,
) -> UploadJob {
    UploadJob {
        plan: Upload::new(info.lengths, token.is_some(), Default::default()),
        server,
        token,
        torrent,
    }
}
