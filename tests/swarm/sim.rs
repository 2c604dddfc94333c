//! The swarm simulator: several clients, links that re-chunk, delay and
//! throttle their byte streams, a fake WebTorrent tracker, in-memory
//! storage and a web seed, all in virtual time.
//!
//! The harness plays the glue's part for every client: it carries out each
//! output (with the delays a real network and disk would add) and feeds the
//! results back as inputs. [`Sim::run_until`] steps to the next event or
//! timeout until a goal holds, and fails a test whose swarm goes idle or
//! does not reach the goal within its time bound (quinn's `drive`, str0m's
//! `progress`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use swarmdrop::engine::api::{
    AddBundle, BundleSource, Command, ConnId, Input, Output, Role, StoreFailure, WebSeedFetch,
};
use swarmdrop::engine::bitfield::Bitfield;
use swarmdrop::engine::client::{Client, ClientConfig};
use swarmdrop::engine::event::Event;
use swarmdrop::engine::hash::{sha1, PieceHasher};
use swarmdrop::engine::ids::{InfoHash, PeerId};
use swarmdrop::engine::metainfo::Metainfo;
use swarmdrop::engine::time::Instant;
use swarmdrop::engine::webseed::file_url;

use crate::hub::Hub;

/// The tracker every test bundle announces to.
pub const TRACKER: &str = "wss://tracker.test/announce";
/// The web seed base URL of test bundles that have one.
pub const WEB_SEED: &str = "https://seed.test/ws";
/// Most simulation steps a test may take before it is declared stuck.
const MAX_STEPS: u64 = 5_000_000;

/// A node's network link.
#[derive(Clone, Copy, Debug)]
pub struct LinkSpec {
    /// One-way latency.
    pub latency: Duration,
    /// Upload bandwidth in bytes per second, shared by all the node's links.
    pub bandwidth: u64,
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            latency: Duration::from_millis(20),
            bandwidth: 2_000_000,
        }
    }
}

/// A test bundle: its torrent and its bytes.
#[derive(Clone, Debug)]
pub struct Bundle {
    /// The torrent.
    pub meta: Metainfo,
    /// The concatenated file bytes.
    pub content: Vec<u8>,
}

impl Bundle {
    /// A bundle of files with deterministic pseudo-random content.
    pub fn new(
        name: &str,
        files: &[(&str, u64)],
        piece_length: u32,
        web_seed: bool,
        seed: u64,
    ) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let total: u64 = files.iter().map(|(_, l)| l).sum();
        let mut content = vec![0u8; total as usize];
        rng.fill(&mut content);
        let mut builder = swarmdrop::engine::create::TorrentBuilder::new(name)
            .piece_length(piece_length)
            .tracker(TRACKER);
        if files.len() == 1 && files[0].0 == name {
            builder = builder.file(vec![name.to_string()], files[0].1);
        } else {
            for (path, len) in files {
                builder = builder.file(path.split('/').map(str::to_string).collect(), *len);
            }
        }
        if web_seed {
            builder = builder.web_seed(WEB_SEED);
        }
        let lengths = builder.lengths().expect("test bundle lengths");
        let hashes = PieceHasher::hash_all(lengths, &content).expect("hashing test content");
        let meta = builder.build(hashes).expect("test torrent");
        Bundle { meta, content }
    }

    /// The info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.meta.info_hash
    }

    /// The piece count.
    pub fn pieces(&self) -> u32 {
        self.meta.info.lengths.num_pieces()
    }

    /// The bytes of one piece.
    pub fn piece(&self, piece: u32) -> &[u8] {
        let l = self.meta.info.lengths;
        let p = l.validate_piece(piece).expect("piece in range");
        let start = l.piece_offset(p) as usize;
        &self.content[start..start + l.piece_len(p) as usize]
    }

    /// An add command for this bundle.
    pub fn add(&self, role: Role) -> AddBundle {
        let n = self.pieces();
        AddBundle {
            source: BundleSource::Metainfo(Box::new(self.meta.clone())),
            role,
            have: match role {
                Role::Seed => Bitfield::full(n),
                Role::Download => Bitfield::new(n),
            },
            selection: None,
            paused: false,
            client_trackers: true,
        }
    }
}

/// What a node's storage holds for one bundle.
#[derive(Debug, Default)]
pub struct Store {
    /// The whole content, for a node that created the bundle.
    pub content: Option<Vec<u8>>,
    /// Pieces stored from downloads.
    pub pieces: BTreeMap<u32, Vec<u8>>,
    /// Piece length, to slice `content`.
    pub piece_length: u64,
}

/// One simulated browser.
pub struct Node {
    /// Its engine.
    pub client: Client,
    /// Its peer id.
    pub peer_id: PeerId,
    /// Its storage.
    pub stores: BTreeMap<InfoHash, Store>,
    /// Every event it emitted, with the time.
    pub events: Vec<(Instant, Event)>,
    /// Its link.
    pub link: LinkSpec,
    /// Serves corrupted blocks (a malicious or broken peer).
    pub corrupt: bool,
    /// Storage answers every store with a disk-full failure.
    pub disk_full: bool,
    /// Bytes this node put on peer links.
    pub bytes_sent: u64,
    /// When its uplink, shared by all its links, has sent all it was given.
    uplink_busy_until: Instant,
    /// Every output it produced, counted by kind (for assertions).
    pub outputs: BTreeMap<&'static str, u64>,
}

impl Node {
    /// Whether the node reported the bundle complete.
    pub fn completed(&self, h: InfoHash) -> bool {
        self.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Completed { info_hash } if *info_hash == h))
    }

    /// The stored pieces of a bundle, concatenated in order (only if all of
    /// `0..n` are there).
    pub fn assembled(&self, h: InfoHash, n: u32) -> Option<Vec<u8>> {
        let store = self.stores.get(&h)?;
        let mut out = Vec::new();
        for i in 0..n {
            out.extend_from_slice(store.pieces.get(&i)?);
        }
        Some(out)
    }
}

/// Something that happens at a point of virtual time.
#[derive(Debug)]
enum Ev {
    Input { node: usize, input: OwnedInput },
    TrackerReceives { node: usize, text: String },
}

/// An owned [`Input`], waiting in the event queue.
#[derive(Debug)]
enum OwnedInput {
    OfferCreated {
        conn: ConnId,
        sdp: String,
    },
    AnswerCreated {
        conn: ConnId,
        sdp: String,
    },
    PeerOpened {
        conn: ConnId,
    },
    PeerData {
        conn: ConnId,
        data: Vec<u8>,
    },
    PeerWritable {
        conn: ConnId,
    },
    PeerClosed {
        conn: ConnId,
    },
    TrackerOpened {
        url: String,
    },
    TrackerText {
        url: String,
        text: String,
    },
    BlockLoaded {
        h: InfoHash,
        piece: u32,
        offset: u32,
        data: Vec<u8>,
    },
    PieceHashed {
        h: InfoHash,
        piece: u32,
        data: Vec<u8>,
        sha1: [u8; 20],
    },
    PieceStored {
        h: InfoHash,
        piece: u32,
    },
    StoreFailed {
        h: InfoHash,
        piece: u32,
        failure: StoreFailure,
    },
    WebSeedData {
        conn: ConnId,
        piece: u32,
        offset: u32,
        data: Vec<u8>,
    },
    WebSeedFailed {
        conn: ConnId,
        piece: u32,
        offset: u32,
    },
}

impl OwnedInput {
    fn borrow(&self) -> Input<'_> {
        match self {
            OwnedInput::OfferCreated { conn, sdp } => Input::OfferCreated { conn: *conn, sdp },
            OwnedInput::AnswerCreated { conn, sdp } => Input::AnswerCreated { conn: *conn, sdp },
            OwnedInput::PeerOpened { conn } => Input::PeerOpened { conn: *conn },
            OwnedInput::PeerData { conn, data } => Input::PeerData { conn: *conn, data },
            OwnedInput::PeerWritable { conn } => Input::PeerWritable { conn: *conn },
            OwnedInput::PeerClosed { conn } => Input::PeerClosed { conn: *conn },
            OwnedInput::TrackerOpened { url } => Input::TrackerOpened { url },
            OwnedInput::TrackerText { url, text } => Input::TrackerText { url, text },
            OwnedInput::BlockLoaded {
                h,
                piece,
                offset,
                data,
            } => Input::BlockLoaded {
                info_hash: *h,
                piece: *piece,
                offset: *offset,
                data,
            },
            OwnedInput::PieceHashed {
                h,
                piece,
                data,
                sha1,
            } => Input::PieceHashed {
                info_hash: *h,
                piece: *piece,
                data: data.clone(),
                sha1: *sha1,
            },
            OwnedInput::PieceStored { h, piece } => Input::PieceStored {
                info_hash: *h,
                piece: *piece,
            },
            OwnedInput::StoreFailed { h, piece, failure } => Input::StoreFailed {
                info_hash: *h,
                piece: *piece,
                failure: failure.clone(),
            },
            OwnedInput::WebSeedData {
                conn,
                piece,
                offset,
                data,
            } => Input::WebSeedData {
                conn: *conn,
                piece: *piece,
                offset: *offset,
                data,
            },
            OwnedInput::WebSeedFailed {
                conn,
                piece,
                offset,
            } => Input::WebSeedFailed {
                conn: *conn,
                piece: *piece,
                offset: *offset,
                received: &[],
                reason: "HTTP 500",
            },
        }
    }
}

/// One direction of a peer link (its bandwidth is the sender's uplink,
/// shared with the sender's other links).
#[derive(Debug)]
struct Pipe {
    to: (usize, ConnId),
    latency: Duration,
    bandwidth: u64,
    /// When the sender's side has pushed out everything queued so far.
    busy_until: Instant,
}

/// The network, signalling, tracker and storage around the clients.
pub struct Sim {
    /// Virtual time.
    pub now: Instant,
    /// The clients.
    pub nodes: Vec<Node>,
    rng: fastrand::Rng,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: BTreeMap<u64, Ev>,
    seq: u64,
    hub: Hub,
    /// Open peer links, one pipe per direction, keyed by the sending end.
    pipes: BTreeMap<(usize, ConnId), Pipe>,
    /// SDP text → the end that created it.
    sdps: BTreeMap<String, (usize, ConnId)>,
    /// Answer SDP → the offer end it answers.
    answered: BTreeMap<String, (usize, ConnId)>,
    /// Bundles the web seed serves, by info hash.
    pub web_seed: BTreeMap<InfoHash, Bundle>,
    /// The web seed's link.
    pub web_seed_link: LinkSpec,
    /// The web seed answers every fetch with an error (HTTP 500).
    pub web_seed_broken: bool,
    /// Peer links cut so far (both directions dropped).
    pub cut_links: u64,
    steps: u64,
}

impl Sim {
    /// An empty swarm; `seed` drives every random choice of the harness.
    pub fn new(seed: u64) -> Self {
        Sim {
            now: Instant::ZERO,
            nodes: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            hub: Hub::new(seed ^ 0x5eed),
            pipes: BTreeMap::new(),
            sdps: BTreeMap::new(),
            answered: BTreeMap::new(),
            web_seed: BTreeMap::new(),
            web_seed_link: LinkSpec {
                latency: Duration::from_millis(30),
                bandwidth: 1_000_000,
            },
            web_seed_broken: false,
            cut_links: 0,
            steps: 0,
        }
    }

    /// Adds a client; returns its index.
    pub fn add_node(&mut self, link: LinkSpec) -> usize {
        let i = self.nodes.len();
        let mut id_bytes = [0u8; 12];
        self.rng.fill(&mut id_bytes);
        let peer_id = PeerId::generate(id_bytes);
        let mut config = ClientConfig::new(peer_id, self.rng.u64(..));
        // Every other client hashes its pieces as a browser host does: out
        // of the engine, the hash coming back a little later.
        config.host_hashes = i % 2 == 1;
        self.add_node_with(config, link);
        i
    }

    /// Adds a client with its own configuration; returns its index.
    pub fn add_node_with(&mut self, config: ClientConfig, link: LinkSpec) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Node {
            peer_id: config.peer_id,
            client: Client::new(config),
            stores: BTreeMap::new(),
            events: Vec::new(),
            link,
            corrupt: false,
            disk_full: false,
            bytes_sent: 0,
            uplink_busy_until: Instant::ZERO,
            outputs: BTreeMap::new(),
        });
        i
    }

    /// Adds a bundle to a node: a seed gets the content in its storage.
    pub fn add_bundle(&mut self, node: usize, bundle: &Bundle, add: AddBundle) {
        let store = self.nodes[node]
            .stores
            .entry(bundle.info_hash())
            .or_default();
        store.piece_length = bundle.meta.info.lengths.piece_length() as u64;
        if add.role == Role::Seed {
            store.content = Some(bundle.content.clone());
        }
        self.command(node, Command::AddBundle(Box::new(add)));
    }

    /// Feeds a command to a node now.
    pub fn command(&mut self, node: usize, cmd: Command) {
        let now = self.now;
        self.nodes[node]
            .client
            .handle_input(now, Input::Command(cmd))
            .expect("command accepted");
        self.drain(node);
    }

    /// Cuts every link of `node` (as if the browser tab closed): both ends
    /// get `PeerClosed`; the node stays, but is told nothing.
    pub fn vanish(&mut self, node: usize) {
        let ends: Vec<(usize, ConnId)> = self
            .pipes
            .keys()
            .filter(|(n, _)| *n == node)
            .copied()
            .collect();
        for end in ends {
            if let Some(pipe) = self.pipes.remove(&end) {
                self.pipes.remove(&pipe.to);
                self.cut_links += 1;
                let (other, conn) = pipe.to;
                self.schedule(
                    self.now,
                    Ev::Input {
                        node: other,
                        input: OwnedInput::PeerClosed { conn },
                    },
                );
            }
        }
        self.hub.forget_node(node);
        self.nodes[node].link.bandwidth = 0;
    }

    /// Sets a node's uplink to `bandwidth` bytes per second, its open links
    /// included (what is already on the wire keeps its pace).
    pub fn throttle(&mut self, node: usize, bandwidth: u64) {
        self.nodes[node].link.bandwidth = bandwidth;
        for ((from, _), pipe) in self.pipes.iter_mut() {
            if *from == node {
                pipe.bandwidth = bandwidth;
            }
        }
    }

    /// Steps the swarm until `done` holds; panics if it goes idle first, or
    /// takes more than `limit` of virtual time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Sim) -> bool) {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return;
            }
            let Some(next) = self.next_time() else {
                panic!(
                    "the swarm went idle before reaching its goal at {:?}",
                    self.now
                );
            };
            assert!(
                next <= deadline,
                "the swarm did not reach its goal within {limit:?} (now {:?})",
                self.now
            );
            self.step(next);
        }
    }

    /// Runs for `d` of virtual time, whatever happens.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            match self.next_time() {
                Some(next) if next <= end => self.step(next),
                _ => break,
            }
        }
        self.now = end;
    }

    /// The next event or client timeout.
    fn next_time(&self) -> Option<Instant> {
        let next_event = self.queue.peek().map(|Reverse((t, _))| *t);
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.client.poll_timeout())
            .min();
        [next_event, next_timer].into_iter().flatten().min()
    }

    fn step(&mut self, next: Instant) {
        self.steps += 1;
        assert!(
            self.steps < MAX_STEPS,
            "the swarm never settles (step bound hit)"
        );
        self.now = self.now.max(next);
        while let Some(&Reverse((t, seq))) = self.queue.peek() {
            if t > self.now {
                break;
            }
            self.queue.pop();
            if let Some(ev) = self.events.remove(&seq) {
                self.deliver(ev);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .client
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                let now = self.now;
                self.nodes[i].client.handle_timeout(now);
                self.drain(i);
            }
        }
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn deliver(&mut self, ev: Ev) {
        match ev {
            Ev::Input { node, input } => {
                let now = self.now;
                self.nodes[node]
                    .client
                    .handle_input(now, input.borrow())
                    .expect("non-command inputs never fail");
                self.drain(node);
            }
            Ev::TrackerReceives { node, text } => {
                let replies = self.hub.receive(node, &text);
                for (to, text) in replies {
                    let latency = self.nodes[to].link.latency;
                    self.schedule(
                        self.now + latency,
                        Ev::Input {
                            node: to,
                            input: OwnedInput::TrackerText {
                                url: TRACKER.to_string(),
                                text,
                            },
                        },
                    );
                }
            }
        }
    }

    /// Carries out every output of a node.
    fn drain(&mut self, node: usize) {
        while let Some(out) = self.nodes[node].client.poll_output() {
            let kind = output_kind(&out);
            *self.nodes[node].outputs.entry(kind).or_default() += 1;
            self.carry_out(node, out);
        }
    }

    fn carry_out(&mut self, node: usize, out: Output) {
        let now = self.now;
        let latency = self.nodes[node].link.latency;
        match out {
            Output::PeerSend { conn, data } => self.send(node, conn, data),
            Output::WatchWritable { conn } => {
                if let Some(pipe) = self.pipes.get(&(node, conn)) {
                    // bufferedAmount falls to the low-water mark once all but
                    // that much has left.
                    let low = 256 * 1024;
                    let drain = Duration::from_secs_f64(low as f64 / pipe.bandwidth.max(1) as f64);
                    let at = pipe.busy_until.saturating_sub_duration(drain).max(now);
                    self.schedule(
                        at,
                        Ev::Input {
                            node,
                            input: OwnedInput::PeerWritable { conn },
                        },
                    );
                }
            }
            Output::ClosePeer { conn, .. } => {
                self.sdps.retain(|_, end| *end != (node, conn));
                if let Some(pipe) = self.pipes.remove(&(node, conn)) {
                    self.pipes.remove(&pipe.to);
                    let (other, oconn) = pipe.to;
                    self.schedule(
                        now + latency,
                        Ev::Input {
                            node: other,
                            input: OwnedInput::PeerClosed { conn: oconn },
                        },
                    );
                }
            }
            Output::CreateOffer { conn, .. } => {
                let sdp = format!("offer n{node} {conn}");
                self.sdps.insert(sdp.clone(), (node, conn));
                // ICE gathering takes a while.
                self.schedule(
                    now + Duration::from_millis(150),
                    Ev::Input {
                        node,
                        input: OwnedInput::OfferCreated { conn, sdp },
                    },
                );
            }
            Output::CreateAnswer {
                conn, offer_sdp, ..
            } => {
                let Some(&offerer) = self.sdps.get(&offer_sdp) else {
                    return;
                };
                let sdp = format!("answer n{node} {conn}");
                self.sdps.insert(sdp.clone(), (node, conn));
                self.answered.insert(sdp.clone(), offerer);
                self.schedule(
                    now + Duration::from_millis(150),
                    Ev::Input {
                        node,
                        input: OwnedInput::AnswerCreated { conn, sdp },
                    },
                );
            }
            Output::AcceptAnswer { conn, answer_sdp } => {
                let (Some(&answerer), Some(&offerer)) =
                    (self.sdps.get(&answer_sdp), self.answered.get(&answer_sdp))
                else {
                    return;
                };
                assert_eq!(offerer, (node, conn), "answer delivered to the wrong offer");
                let (other, oconn) = answerer;
                if self.nodes[other].link.bandwidth == 0 || self.nodes[node].link.bandwidth == 0 {
                    return;
                }
                let rtt = latency + self.nodes[other].link.latency;
                self.pipes.insert(
                    (node, conn),
                    Pipe {
                        to: answerer,
                        latency,
                        bandwidth: self.nodes[node].link.bandwidth,
                        busy_until: now,
                    },
                );
                self.pipes.insert(
                    answerer,
                    Pipe {
                        to: (node, conn),
                        latency: self.nodes[other].link.latency,
                        bandwidth: self.nodes[other].link.bandwidth,
                        busy_until: now,
                    },
                );
                self.schedule(
                    now + rtt,
                    Ev::Input {
                        node,
                        input: OwnedInput::PeerOpened { conn },
                    },
                );
                self.schedule(
                    now + rtt,
                    Ev::Input {
                        node: other,
                        input: OwnedInput::PeerOpened { conn: oconn },
                    },
                );
            }
            Output::TrackerConnect { url } => {
                assert_eq!(url, TRACKER, "only the test tracker is known");
                self.schedule(
                    now + latency * 2,
                    Ev::Input {
                        node,
                        input: OwnedInput::TrackerOpened { url },
                    },
                );
            }
            Output::TrackerSend { text, .. } => {
                self.schedule(now + latency, Ev::TrackerReceives { node, text });
            }
            Output::TrackerClose { .. } => self.hub.forget_node(node),
            Output::LoadBlock {
                info_hash,
                piece,
                offset,
                len,
            } => {
                let n = &self.nodes[node];
                let store = n.stores.get(&info_hash).expect("load from a known bundle");
                let mut data = match &store.content {
                    Some(c) => {
                        let start = (piece as u64 * store.piece_length + offset as u64) as usize;
                        c[start..start + len as usize].to_vec()
                    }
                    None => {
                        let p = store.pieces.get(&piece).expect("load of a stored piece");
                        p[offset as usize..(offset + len) as usize].to_vec()
                    }
                };
                if n.corrupt {
                    for b in data.iter_mut().step_by(97) {
                        *b ^= 0x5a;
                    }
                }
                self.schedule(
                    now + Duration::from_millis(1),
                    Ev::Input {
                        node,
                        input: OwnedInput::BlockLoaded {
                            h: info_hash,
                            piece,
                            offset,
                            data,
                        },
                    },
                );
            }
            Output::StorePiece {
                info_hash,
                piece,
                data,
            } => {
                let n = &mut self.nodes[node];
                let input = if n.disk_full {
                    OwnedInput::StoreFailed {
                        h: info_hash,
                        piece,
                        failure: StoreFailure::DiskFull,
                    }
                } else {
                    let store = n.stores.entry(info_hash).or_default();
                    store.pieces.insert(piece, data);
                    OwnedInput::PieceStored {
                        h: info_hash,
                        piece,
                    }
                };
                self.schedule(now + Duration::from_millis(2), Ev::Input { node, input });
            }
            Output::HashPiece {
                info_hash,
                piece,
                data,
            } => {
                let input = OwnedInput::PieceHashed {
                    h: info_hash,
                    piece,
                    sha1: sha1(&data),
                    data,
                };
                self.schedule(now + Duration::from_millis(1), Ev::Input { node, input });
            }
            Output::WebSeedFetch(fetch) => self.web_seed_fetch(node, fetch),
            Output::Event(e) => self.nodes[node].events.push((now, e)),
        }
    }

    /// Puts bytes on a link: they leave at the sender's bandwidth and arrive
    /// after the latency, cut into chunks of random sizes.
    fn send(&mut self, node: usize, conn: ConnId, data: Vec<u8>) {
        let now = self.now;
        let Some(pipe) = self.pipes.get_mut(&(node, conn)) else {
            return;
        };
        let sender = &mut self.nodes[node];
        sender.bytes_sent += data.len() as u64;
        // One uplink per node: its links share the bandwidth.
        let start = sender.uplink_busy_until.max(now);
        let secs = data.len() as f64 / pipe.bandwidth.max(1) as f64;
        sender.uplink_busy_until = start + Duration::from_secs_f64(secs);
        pipe.busy_until = sender.uplink_busy_until;
        let (to, latency, bandwidth) = (pipe.to, pipe.latency, pipe.bandwidth);
        let mut offset = 0;
        while offset < data.len() {
            let left = data.len() - offset;
            let take = self.rng.usize(1..=left.min(40_000));
            let sent_by =
                start + Duration::from_secs_f64((offset + take) as f64 / bandwidth.max(1) as f64);
            let chunk = data[offset..offset + take].to_vec();
            offset += take;
            self.schedule(
                sent_by + latency,
                Ev::Input {
                    node: to.0,
                    input: OwnedInput::PeerData {
                        conn: to.1,
                        data: chunk,
                    },
                },
            );
        }
    }

    /// The web seed answers a fetch from the bundle's content, after its
    /// latency and at its bandwidth.
    fn web_seed_fetch(&mut self, node: usize, fetch: WebSeedFetch) {
        let Some(bundle) = self.web_seed.get(&fetch.info_hash) else {
            return;
        };
        if self.web_seed_broken {
            let at = self.now + self.web_seed_link.latency * 2;
            self.schedule(
                at,
                Ev::Input {
                    node,
                    input: OwnedInput::WebSeedFailed {
                        conn: fetch.conn,
                        piece: fetch.piece,
                        offset: fetch.offset,
                    },
                },
            );
            return;
        }
        let info = &bundle.meta.info;
        let mut data = Vec::new();
        for range in &fetch.ranges {
            let file = info
                .files
                .iter()
                .find(|f| file_url(WEB_SEED, &info.name, &f.path, info.multi_file) == range.url)
                .expect("web seed url names a file of the bundle");
            assert!(
                range.end <= file.length && range.start < range.end,
                "range inside the file"
            );
            let start = (file.offset + range.start) as usize;
            let end = (file.offset + range.end) as usize;
            data.extend_from_slice(&bundle.content[start..end]);
        }
        let link = self.web_seed_link;
        let secs = data.len() as f64 / link.bandwidth.max(1) as f64;
        let at = self.now + link.latency * 2 + Duration::from_secs_f64(secs);
        self.schedule(
            at,
            Ev::Input {
                node,
                input: OwnedInput::WebSeedData {
                    conn: fetch.conn,
                    piece: fetch.piece,
                    offset: fetch.offset,
                    data,
                },
            },
        );
    }
}

/// A short name for an output's kind.
fn output_kind(out: &Output) -> &'static str {
    match out {
        Output::PeerSend { .. } => "peer_send",
        Output::WatchWritable { .. } => "watch_writable",
        Output::ClosePeer { .. } => "close_peer",
        Output::CreateOffer { .. } => "create_offer",
        Output::CreateAnswer { .. } => "create_answer",
        Output::AcceptAnswer { .. } => "accept_answer",
        Output::TrackerConnect { .. } => "tracker_connect",
        Output::TrackerSend { .. } => "tracker_send",
        Output::TrackerClose { .. } => "tracker_close",
        Output::LoadBlock { .. } => "load_block",
        Output::StorePiece { .. } => "store_piece",
        Output::HashPiece { .. } => "hash_piece",
        Output::WebSeedFetch(_) => "web_seed_fetch",
        Output::Event(_) => "event",
    }
}

/// `Instant - Duration`, saturating at the origin.
trait SaturatingSub {
    fn saturating_sub_duration(self, d: Duration) -> Instant;
}

impl SaturatingSub for Instant {
    fn saturating_sub_duration(self, d: Duration) -> Instant {
        Instant::from_duration(self.since_origin().saturating_sub(d))
    }
}

/// The set of pieces a node stored for a bundle.
pub fn stored_pieces(node: &Node, h: InfoHash) -> BTreeSet<u32> {
    node.stores
        .get(&h)
        .map(|s| s.pieces.keys().copied().collect())
        .unwrap_or_default()
}
