//! Load generator for a WebTorrent WebSocket tracker (benchmark row 6), one process of several.
//!
//! The same load as `bench/lib/tracker-load.mjs`, at a fraction of its CPU
//! per message, so that on a small machine the trackers measured, not the
//! generator, set the pace. Opens `clients` WebSocket connections, one peer
//! each, spread over `swarms` swarms of its own; once all have joined, each
//! peer keeps `depth` rounds in flight: a round announces `offers` offers and
//! ends once the announce response and the answers to all its offers are back
//! (or after `roundTimeoutMs`, counting the missing answers as lost), and the
//! next round starts. Every peer answers every offer relayed to it.
//!
//! Driven by its parent over standard input and output, one line each:
//!   stdin  line 1: the configuration (JSON, with the SDP pools)
//!   stdin  `go` | `mark` | `stop`
//!   stdout `{"type":"ready"}` | `{"type":"mark",...}` | `{"type":"error","message":...}`
//! It runs on one thread (a current-thread runtime); a mark reports that
//! thread's CPU time. Its WebSocket layer is tokio-websockets, the server's. It exits after `lifetimeMs`, on `stop`, or when its
//! standard input closes.
//!
//! Build: `cargo build --release -p swarmdrop-server --example tracker_load`.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use memchr::memmem::Finder;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_websockets::{ClientBuilder, Message};

/// The generator's allocator, the server's: this loop allocates a few frames
/// per message, and glibc's malloc costs several times what mimalloc does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes of frames queued on a connection before they are written: the
/// frames a peer sends in reply to what it read go out together.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Most offers per announce: each round keeps its pending offers as bits.
const MAX_OFFERS: usize = 64;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    url: String,
    process: u32,
    clients: usize,
    swarms: usize,
    offers: usize,
    depth: usize,
    round_timeout_ms: u64,
    connect_timeout_ms: u64,
    lifetime_ms: u64,
    /// Offer SDPs, each already a JSON string literal (quotes included).
    offer_sdps: Vec<String>,
    /// Answer SDPs, likewise.
    answer_sdps: Vec<String>,
}

/// What every peer counts; the names are those of the Node generator.
#[derive(Default)]
struct Counters {
    announces: AtomicU64,
    responses: AtomicU64,
    offers_sent: AtomicU64,
    offers_received: AtomicU64,
    answers_sent: AtomicU64,
    answers_received: AtomicU64,
    lost_offers: AtomicU64,
    lost_responses: AtomicU64,
    failures: AtomicU64,
    closed: AtomicU64,
}

impl Counters {
    fn json(&self) -> Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "announces": g(&self.announces), "responses": g(&self.responses),
            "offersSent": g(&self.offers_sent), "offersReceived": g(&self.offers_received),
            "answersSent": g(&self.answers_sent), "answersReceived": g(&self.answers_received),
            "lostOffers": g(&self.lost_offers), "lostResponses": g(&self.lost_responses),
            "failures": g(&self.failures), "closed": g(&self.closed),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Joining,
    Running,
    Stopping,
}

struct Shared {
    config: Config,
    counters: Counters,
    first_failure: OnceLock<String>,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    // The parent reads lines; if it is gone there is nobody to tell.
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// The keys the frames coming back are told apart by, found with SIMD
/// substring search (the standard library's `str::find` is several times slower).
struct Keys {
    offer: Finder<'static>,
    answer: Finder<'static>,
    interval: Finder<'static>,
    peer_id: Finder<'static>,
    offer_id: Finder<'static>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        offer: Finder::new("\"offer\":{"),
        answer: Finder::new("\"answer\":{"),
        interval: Finder::new("\"interval\":"),
        peer_id: Finder::new("\"peer_id\":\""),
        offer_id: Finder::new("\"offer_id\":\""),
    })
}

/// The 20 characters of a binary field written without escapes (as this
/// generator's ids always are), or None when absent or written otherwise.
fn field<'a>(text: &'a str, key: &Finder<'_>) -> Option<&'a str> {
    let start = key.find(text.as_bytes())? + key.needle().len();
    let bytes = text.as_bytes();
    if bytes.get(start + 20) != Some(&b'"') {
        return None;
    }
    let value = &bytes[start..start + 20];
    if value.iter().any(|&b| b == b'\\' || b >= 0x80) {
        return None;
    }
    text.get(start..start + 20)
}

struct Round {
    /// Bit `i` set: offer `i` of the round not answered yet.
    pending: u64,
    got_response: bool,
    started: Instant,
}

struct Peer {
    shared: Rc<Shared>,
    /// `"<info hash>","peer_id":"<peer id>"`, JSON-encoded once.
    prefix: String,
    /// What every offer id of this peer begins with: `o`, process, client.
    offer_id_head: String,
    round: u64,
    rounds: HashMap<u64, Round>,
    awaiting_response: VecDeque<u64>,
    answers_sent: usize,
    /// Frames to send once the frames at hand are handled.
    out: Vec<String>,
}

impl Peer {
    fn new(shared: Rc<Shared>, index: usize) -> Peer {
        let c = &shared.config;
        let info_hash = format!("swarmdrop-bench-p{}s{}", c.process, index % c.swarms);
        let peer_id = format!("-BN0001-p{}c{:0>9}", c.process, radix36(index as u64));
        assert_eq!(info_hash.len(), 20, "info hash {info_hash}");
        assert_eq!(peer_id.len(), 20, "peer id {peer_id}");
        let prefix = format!("{},\"peer_id\":{}", json!(info_hash), json!(peer_id));
        let offer_id_head = format!("o{}{:0>4}", c.process, radix36(index as u64));
        assert_eq!(offer_id_head.len(), 6, "offer id head {offer_id_head}");
        Peer {
            shared,
            prefix,
            offer_id_head,
            round: 0,
            rounds: HashMap::new(),
            awaiting_response: VecDeque::new(),
            answers_sent: 0,
            out: Vec::new(),
        }
    }

    fn join_frame(&self) -> String {
        format!(
            "{{\"action\":\"announce\",\"info_hash\":{},\"numwant\":0,\"uploaded\":0,\"downloaded\":0,\"left\":1000000,\"event\":\"started\"}}",
            self.prefix
        )
    }

    fn announce(&mut self) {
        use std::fmt::Write as _;
        let c = &self.shared.config;
        self.round += 1;
        let round = self.round;
        // offer id: 'o', process, client (4), round (12), offer (2): 20 characters.
        let round36 = radix36(round);
        let sdp_bytes: usize = (0..c.offers)
            .map(|i| c.offer_sdps[(round as usize + i) % c.offer_sdps.len()].len())
            .sum();
        let mut frame = String::with_capacity(160 + self.prefix.len() + c.offers * 80 + sdp_bytes);
        // Writing to a String cannot fail.
        let _ = write!(
            frame,
            "{{\"action\":\"announce\",\"info_hash\":{},\"numwant\":{},\"uploaded\":0,\"downloaded\":0,\"left\":1000000,\"offers\":[",
            self.prefix, c.offers
        );
        for i in 0..c.offers {
            if i > 0 {
                frame.push(',');
            }
            let sdp = &c.offer_sdps[(round as usize + i) % c.offer_sdps.len()];
            let _ = write!(
                frame,
                "{{\"offer_id\":\"{}{round36:0>12}{:0>2}\",\"offer\":{{\"type\":\"offer\",\"sdp\":",
                self.offer_id_head,
                radix36(i as u64)
            );
            frame.push_str(sdp);
            frame.push_str("}}");
        }
        frame.push_str("]}");
        let pending = if c.offers == MAX_OFFERS {
            u64::MAX
        } else {
            (1u64 << c.offers) - 1
        };
        self.rounds.insert(
            round,
            Round {
                pending,
                got_response: false,
                started: Instant::now(),
            },
        );
        self.awaiting_response.push_back(round);
        self.out.push(frame);
        add(&self.shared.counters.announces, 1);
        add(&self.shared.counters.offers_sent, c.offers as u64);
    }

    fn failure(&self, what: String) {
        add(&self.shared.counters.failures, 1);
        let _ = self.shared.first_failure.set(what);
    }

    /// Handles one text frame; `running` says whether finished rounds start new ones.
    fn on_message(&mut self, text: &str, running: bool) {
        let k = keys();
        let bytes = text.as_bytes();
        if k.offer.find(bytes).is_some() {
            if let (Some(peer), Some(offer_id)) =
                (field(text, &k.peer_id), field(text, &k.offer_id))
            {
                return self.on_offer(peer, offer_id);
            }
        } else if k.answer.find(bytes).is_some() {
            if let Some(offer_id) = field(text, &k.offer_id) {
                return self.on_answer(offer_id, running);
            }
        } else if k.interval.find(bytes).is_some() {
            return self.on_response(running);
        }
        // Anything else (a failure, or fields with escapes): the slow path.
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            let head: String = text.chars().take(120).collect();
            return self.failure(format!("not JSON: {head}"));
        };
        if let Some(reason) = v.get("failure reason") {
            self.failure(reason.to_string());
        } else if v.get("offer").is_some() {
            let peer = v["peer_id"].to_string();
            let offer_id = v["offer_id"].to_string();
            self.on_offer(&peer[1..peer.len() - 1], &offer_id[1..offer_id.len() - 1]);
        } else if v.get("answer").is_some() {
            let offer_id = v["offer_id"].as_str().unwrap_or_default().to_string();
            self.on_answer(&offer_id, running);
        } else if v.get("interval").is_some() {
            self.on_response(running);
        }
    }

    /// Answers an offer; `peer` and `offer_id` are JSON string contents.
    fn on_offer(&mut self, peer: &str, offer_id: &str) {
        let c = &self.shared.config;
        add(&self.shared.counters.offers_received, 1);
        let sdp = &c.answer_sdps[self.answers_sent % c.answer_sdps.len()];
        let parts = [
            "{\"action\":\"announce\",\"info_hash\":",
            &self.prefix,
            ",\"to_peer_id\":\"",
            peer,
            "\",\"offer_id\":\"",
            offer_id,
            "\",\"answer\":{\"type\":\"answer\",\"sdp\":",
            sdp,
            "}}",
        ];
        let mut frame = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            frame.push_str(p);
        }
        self.out.push(frame);
        self.answers_sent += 1;
        add(&self.shared.counters.answers_sent, 1);
    }

    /// Counts an answer to one of this peer's pending offers: the offer id
    /// must name this process and client, a round in flight and an offer of
    /// it not answered yet.
    fn on_answer(&mut self, offer_id: &str, running: bool) {
        if offer_id.len() != 20 || !offer_id.starts_with(self.offer_id_head.as_str()) {
            return;
        }
        let (Some(round), Some(offer)) = (
            offer_id
                .get(6..18)
                .and_then(|r| u64::from_str_radix(r, 36).ok()),
            offer_id
                .get(18..20)
                .and_then(|o| u32::from_str_radix(o, 36).ok()),
        ) else {
            return;
        };
        if offer as usize >= self.shared.config.offers {
            return;
        }
        let bit = 1u64 << offer;
        if let Some(r) = self.rounds.get_mut(&round) {
            if r.pending & bit != 0 {
                r.pending &= !bit;
                add(&self.shared.counters.answers_received, 1);
                self.maybe_done(round, running);
            }
        }
    }

    fn on_response(&mut self, running: bool) {
        add(&self.shared.counters.responses, 1);
        if let Some(round) = self.awaiting_response.pop_front() {
            if let Some(r) = self.rounds.get_mut(&round) {
                r.got_response = true;
                self.maybe_done(round, running);
            }
        }
    }

    fn maybe_done(&mut self, round: u64, running: bool) {
        if self
            .rounds
            .get(&round)
            .is_some_and(|r| r.got_response && r.pending == 0)
        {
            self.rounds.remove(&round);
            if running {
                self.announce();
            }
        }
    }

    fn check_timeouts(&mut self, now: Instant, running: bool) {
        let limit = Duration::from_millis(self.shared.config.round_timeout_ms);
        let expired: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, r)| now.duration_since(r.started) > limit)
            .map(|(k, _)| *k)
            .collect();
        for round in expired {
            let Some(r) = self.rounds.remove(&round) else {
                continue;
            };
            add(
                &self.shared.counters.lost_offers,
                u64::from(r.pending.count_ones()),
            );
            if !r.got_response {
                add(&self.shared.counters.lost_responses, 1);
                self.awaiting_response.retain(|x| *x != round);
            }
            if running {
                self.announce();
            }
        }
    }
}

fn radix36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

type Ws = tokio_websockets::WebSocketStream<TcpStream>;

async fn connect(peer: &Peer) -> Result<Ws, String> {
    let c = &peer.shared.config;
    let builder = ClientBuilder::new()
        .uri(c.url.as_str())
        .map_err(|e| format!("url: {e}"))?
        .config(tokio_websockets::Config::default().flush_threshold(WRITE_BUFFER_BYTES));
    let addr = c
        .url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("url: {} is not ws://host:port/...", c.url))?;
    let connecting = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("connect: {e}"))?;
        builder
            .connect_on(tcp)
            .await
            .map_err(|e| format!("connect: {e}"))
    };
    let (mut ws, _) = tokio::time::timeout(Duration::from_millis(c.connect_timeout_ms), connecting)
        .await
        .map_err(|_| "connect timed out".to_string())??;
    ws.send(Message::text(peer.join_frame()))
        .await
        .map_err(|e| format!("join: {e}"))?;
    match ws.next().await {
        Some(Ok(m)) if m.as_text().is_some_and(|t| t.contains("\"interval\"")) => Ok(ws),
        Some(Ok(other)) => Err(format!(
            "joining: {}",
            other
                .as_text()
                .unwrap_or("?")
                .chars()
                .take(200)
                .collect::<String>()
        )),
        Some(Err(e)) => Err(format!("joining: {e}")),
        None => Err("closed before joining".into()),
    }
}

/// Drives one joined peer until the generator stops.
async fn drive(mut peer: Peer, mut ws: Ws, mut phase: watch::Receiver<Phase>) {
    let shared = peer.shared.clone();
    if phase.wait_for(|p| *p != Phase::Joining).await.is_err() {
        return;
    }
    let depth = shared.config.depth;
    let running = *phase.borrow() == Phase::Running;
    if running {
        for _ in 0..depth {
            peer.announce();
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        if !peer.out.is_empty() {
            let mut failed = false;
            for frame in peer.out.drain(..) {
                if ws.feed(Message::text(frame)).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed || ws.flush().await.is_err() {
                break;
            }
        }
        tokio::select! {
            msg = ws.next() => {
                let mut msg = msg;
                // Handle every frame already here before writing the replies.
                loop {
                    match msg {
                        Some(Ok(m)) if !m.is_close() => {
                            if let Some(t) = m.as_text() {
                                peer.on_message(t, running);
                            }
                        }
                        Some(Ok(_)) | Some(Err(_)) | None => {
                            if *phase.borrow() != Phase::Stopping {
                                add(&shared.counters.closed, 1);
                            }
                            return;
                        }
                    }
                    match ws.next().now_or_never() {
                        Some(next) => msg = next,
                        None => break,
                    }
                }
            }
            _ = tick.tick() => peer.check_timeouts(Instant::now(), running),
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Stopping {
                    let _ = ws.close().await;
                    return;
                }
            }
        }
    }
}

/// This process's CPU time (all threads) in microseconds.
fn cpu_micros() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>()
        / 1000
}

async fn run() -> Result<(), String> {
    // Standard input is read on a thread of its own (blocking reads).
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv().await.ok_or("no configuration on stdin")?;
    let config: Config = serde_json::from_str(&first).map_err(|e| format!("configuration: {e}"))?;
    if config.swarms == 0 || config.offer_sdps.is_empty() || config.answer_sdps.is_empty() {
        return Err("configuration: swarms and SDP pools must not be empty".into());
    }
    if config.offers > MAX_OFFERS {
        return Err(format!(
            "configuration: at most {MAX_OFFERS} offers per announce"
        ));
    }
    let lifetime = Duration::from_millis(config.lifetime_ms);
    let shared = Rc::new(Shared {
        config,
        counters: Counters::default(),
        first_failure: OnceLock::new(),
    });
    let started = Instant::now();

    // Join a few at a time: a burst of handshakes is not what is measured.
    let mut joined = Vec::new();
    let all: Vec<usize> = (0..shared.config.clients).collect();
    for batch in all.chunks(25) {
        let attempts = batch.iter().map(|&i| {
            let peer = Peer::new(shared.clone(), i);
            async move {
                let ws = connect(&peer).await?;
                Ok::<_, String>((peer, ws))
            }
        });
        for r in futures_util::future::join_all(attempts).await {
            joined.push(r?);
        }
    }
    let (phase_tx, phase_rx) = watch::channel(Phase::Joining);
    let local = tokio::task::LocalSet::new();
    for (peer, ws) in joined {
        local.spawn_local(drive(peer, ws, phase_rx.clone()));
    }
    emit(json!({"type": "ready"}));

    let control = async {
        loop {
            let line = tokio::select! {
                l = lines.recv() => l,
                _ = tokio::time::sleep(lifetime.saturating_sub(started.elapsed())) => {
                    emit(json!({"type": "error", "message": format!("lifetime of {} ms reached", lifetime.as_millis())}));
                    std::process::exit(2);
                }
            };
            match line.as_deref() {
                Some("go") => {
                    let _ = phase_tx.send(Phase::Running);
                }
                Some("mark") => {
                    let at = started.elapsed().as_secs_f64() * 1000.0;
                    let cpu = cpu_micros();
                    let wall = started.elapsed().as_micros() as u64;
                    emit(json!({
                        "type": "mark", "at": at, "counters": shared.counters.json(),
                        "firstFailure": shared.first_failure.get(),
                        "cpu": {"user": cpu, "system": 0},
                        "elu": {"active": cpu as f64 / 1000.0, "idle": wall.saturating_sub(cpu) as f64 / 1000.0},
                    }));
                }
                Some("stop") | None => {
                    let _ = phase_tx.send(Phase::Stopping);
                    return;
                }
                Some(_) => {}
            }
        }
    };
    local
        .run_until(async {
            control.await;
            // Give the peers a moment to close their connections.
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
        .await;
    Ok(())
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            emit(json!({"type": "error", "message": format!("runtime: {e}")}));
            std::process::exit(1);
        }
    };
    if let Err(message) = runtime.block_on(run()) {
        emit(json!({"type": "error", "message": message}));
        std::process::exit(1);
    }
}
