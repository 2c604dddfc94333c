//! The tracker's state machine: swarms, offer and answer relay, scrape; no I/O.
//!
//! The WebSocket layer gives each connection a [`ConnId`], feeds every decoded
//! request to [`Tracker::handle`] together with the current time, and sends
//! each returned [`Outgoing`] text to its connection. [`Tracker::disconnect`]
//! removes everything a connection announced.
//!
//! Invariants:
//! - a peer id in a swarm belongs to exactly one connection, and only that
//!   connection can speak for it (announce, stop, answer);
//! - an offer is relayed to peers of the swarm on other connections only,
//!   each offer to a different peer, chosen at random;
//! - an answer is forwarded only when the offer it answers was relayed by this
//!   tracker to the answering connection and peer, and only once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use swarmdrop::engine::tracker::encode_to_client;
use swarmdrop::engine::tracker::wire::common::{InfoHash, OfferId, PeerId, ScrapeAction};
use swarmdrop::engine::tracker::wire::incoming::{
    AnnounceEvent, ScrapeRequest, ScrapeRequestInfoHashes,
};
use swarmdrop::engine::tracker::wire::outgoing::{
    ErrorResponse, ErrorResponseAction, OutMessage, ScrapeResponse, ScrapeStatistics,
};

use super::protocol::{announce_response_frame, answer_frame, offer_frame, Announce, Request};

/// Announce interval sent to clients (WebSocket trackers use two minutes).
pub const ANNOUNCE_INTERVAL_SECS: usize = 120;
/// Most offers relayed from one announce; extra offers are ignored.
pub const MAX_OFFERS_PER_ANNOUNCE: usize = 10;
/// Most swarm memberships (info hash and peer id pairs) one connection may hold.
pub const MAX_SWARMS_PER_CONNECTION: usize = 1024;
/// How long a relayed offer can be answered (initiators give up after ~50 s).
pub const OFFER_TTL: Duration = Duration::from_secs(90);
/// Most relayed offers remembered at once; the oldest are forgotten first.
pub const MAX_RELAYED_OFFERS: usize = 200_000;

/// Random draws per wanted peer before [`Tracker::random_peers`] falls back
/// to shuffling the whole swarm; also the least swarm size (per wanted peer)
/// at which it draws at all.
const RANDOM_DRAW_FACTOR: usize = 4;

/// Hash maps and sets keyed by ids that peers choose: aHash, with keys drawn
/// at random per process, is quick on 20-byte keys and gives a peer no way
/// to aim collisions at one bucket.
type Map<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
type Set<K> = std::collections::HashSet<K, ahash::RandomState>;

/// Identifies one WebSocket connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A text frame to send to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Recipient.
    pub to: ConnId,
    /// One JSON object.
    pub text: String,
}

#[derive(Debug)]
struct Peer {
    conn: ConnId,
    seeding: bool,
}

#[derive(Debug, Default)]
struct Swarm {
    /// Indexed so that a random peer is found without walking the swarm.
    peers: IndexMap<PeerId, Peer, ahash::RandomState>,
    seeders: usize,
    /// `completed` events seen (the scrape's `downloaded`).
    completed: usize,
}

impl Swarm {
    fn leechers(&self) -> usize {
        self.peers.len() - self.seeders
    }
}

#[derive(Debug, Default)]
struct Connection {
    memberships: Set<(InfoHash, PeerId)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct RelayKey {
    recipient: ConnId,
    info_hash: InfoHash,
    offer_id: OfferId,
}

#[derive(Clone, Copy, Debug)]
struct Relayed {
    offerer_conn: ConnId,
    offerer_peer: PeerId,
    recipient_peer: PeerId,
    expires: Instant,
}

/// Relayed offers awaiting an answer: a map with expiry, bounded in size.
#[derive(Debug, Default)]
struct RelayedOffers {
    map: Map<RelayKey, Relayed>,
    /// Insertion order with each entry's expiry; may hold keys already answered.
    order: VecDeque<(Instant, RelayKey)>,
}

impl RelayedOffers {
    fn insert(&mut self, key: RelayKey, value: Relayed) {
        while self.map.len() >= MAX_RELAYED_OFFERS || self.order.len() >= 2 * MAX_RELAYED_OFFERS {
            if !self.pop_oldest() {
                break;
            }
        }
        self.order.push_back((value.expires, key));
        self.map.insert(key, value);
    }

    /// Forgets the oldest queued entry; false when the queue is empty.
    fn pop_oldest(&mut self) -> bool {
        let Some((expires, key)) = self.order.pop_front() else {
            return false;
        };
        if self.map.get(&key).is_some_and(|r| r.expires == expires) {
            self.map.remove(&key);
        }
        true
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(expires, _)| *expires <= now)
        {
            self.pop_oldest();
        }
    }

    fn take(&mut self, key: &RelayKey, now: Instant) -> Option<Relayed> {
        let relayed = self.map.remove(key)?;
        (relayed.expires > now).then_some(relayed)
    }
}

/// The tracker: every swarm and connection, and the offers in flight.
#[derive(Debug)]
pub struct Tracker {
    swarms: Map<InfoHash, Swarm>,
    conns: Map<ConnId, Connection>,
    relayed: RelayedOffers,
    next_conn: u64,
    rng: fastrand::Rng,
    offers_relayed: u64,
}

impl Tracker {
    /// An empty tracker whose random peer choice is seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Tracker {
            swarms: Map::default(),
            conns: Map::default(),
            relayed: RelayedOffers::default(),
            next_conn: 0,
            rng: fastrand::Rng::with_seed(seed),
            offers_relayed: 0,
        }
    }

    /// Registers a new connection.
    pub fn connect(&mut self) -> ConnId {
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        self.conns.insert(id, Connection::default());
        id
    }

    /// Removes a connection and every peer it announced.
    pub fn disconnect(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        for (info_hash, peer_id) in c.memberships {
            self.remove_peer(info_hash, peer_id);
        }
    }

    /// Offers relayed since start.
    pub fn offers_relayed(&self) -> u64 {
        self.offers_relayed
    }

    /// Number of swarms with at least one peer.
    pub fn swarm_count(&self) -> usize {
        self.swarms.len()
    }

    /// Number of peers over all swarms.
    pub fn peer_count(&self) -> usize {
        self.swarms.values().map(|s| s.peers.len()).sum()
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Handles one request from `conn`; returns the frames to send.
    pub fn handle(&mut self, conn: ConnId, request: Request<'_>, now: Instant) -> Vec<Outgoing> {
        self.relayed.expire(now);
        if !self.conns.contains_key(&conn) {
            return Vec::new();
        }
        match request {
            Request::Announce(a) => self.announce(conn, a, now),
            Request::Scrape(s) => vec![self.scrape(conn, s)],
        }
    }

    /// A `{"failure reason": ...}` frame for `conn`.
    pub fn failure(
        conn: ConnId,
        reason: impl Into<String>,
        action: Option<&str>,
        info_hash: Option<InfoHash>,
    ) -> Outgoing {
        let action = match action {
            Some("announce") => Some(ErrorResponseAction::Announce),
            Some("scrape") => Some(ErrorResponseAction::Scrape),
            _ => None,
        };
        let message = OutMessage::ErrorResponse(ErrorResponse {
            failure_reason: reason.into().into(),
            action,
            info_hash,
        });
        encode(conn, &message)
    }

    fn announce(&mut self, conn: ConnId, a: Announce<'_>, now: Instant) -> Vec<Outgoing> {
        let fail = |reason: &str| {
            vec![Self::failure(
                conn,
                reason,
                Some("announce"),
                Some(a.info_hash),
            )]
        };

        // A peer id already in the swarm speaks only through its own connection.
        if let Some(peer) = self
            .swarms
            .get(&a.info_hash)
            .and_then(|s| s.peers.get(&a.peer_id))
        {
            if peer.conn != conn {
                return fail("peer id is in use by another connection");
            }
        }

        if let Some(answer) = a.answer {
            let (Some(to_peer), Some(offer_id)) = (a.answer_to_peer_id, a.answer_offer_id) else {
                return fail("an answer needs `to_peer_id` and `offer_id`");
            };
            let key = RelayKey {
                recipient: conn,
                info_hash: a.info_hash,
                offer_id,
            };
            return match self.relayed.take(&key, now) {
                Some(r) if r.offerer_peer == to_peer && r.recipient_peer == a.peer_id => {
                    vec![Outgoing {
                        to: r.offerer_conn,
                        text: answer_frame(&a.peer_id, &a.info_hash, answer, &offer_id),
                    }]
                }
                Some(r) => {
                    // Not this peer's to answer: keep the offer for its real recipient.
                    self.relayed.insert(key, r);
                    fail("no offer with that `offer_id` was relayed to this peer")
                }
                None => fail("no offer with that `offer_id` was relayed to this peer"),
            };
        }

        let event = a.event.unwrap_or_default();
        if event == AnnounceEvent::Stopped {
            if self.is_member(conn, a.info_hash, a.peer_id) {
                self.remove_peer(a.info_hash, a.peer_id);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.memberships.remove(&(a.info_hash, a.peer_id));
                }
            }
            return vec![self.announce_response(conn, a.info_hash)];
        }

        if !self.is_member(conn, a.info_hash, a.peer_id) {
            let Some(c) = self.conns.get_mut(&conn) else {
                return Vec::new();
            };
            if c.memberships.len() >= MAX_SWARMS_PER_CONNECTION {
                return fail("too many swarms on this connection");
            }
            c.memberships.insert((a.info_hash, a.peer_id));
        }
        let seeding = a.bytes_left == Some(0) || event == AnnounceEvent::Completed;
        let swarm = self.swarms.entry(a.info_hash).or_default();
        let was_seeding = swarm.peers.get(&a.peer_id).is_some_and(|p| p.seeding);
        match swarm.peers.get_mut(&a.peer_id) {
            Some(peer) => {
                if peer.seeding != seeding {
                    if seeding {
                        swarm.seeders += 1;
                    } else {
                        swarm.seeders -= 1;
                    }
                    peer.seeding = seeding;
                }
            }
            None => {
                swarm.peers.insert(a.peer_id, Peer { conn, seeding });
                if seeding {
                    swarm.seeders += 1;
                }
            }
        }
        // A download counts once, however often a seeder repeats `completed`.
        if event == AnnounceEvent::Completed && !was_seeding {
            swarm.completed += 1;
        }

        let mut out = vec![self.announce_response(conn, a.info_hash)];
        if let Some(offers) = a.offers {
            let wanted = offers
                .len()
                .min(a.numwant.unwrap_or(usize::MAX))
                .min(MAX_OFFERS_PER_ANNOUNCE);
            let targets = self.random_peers(a.info_hash, conn, wanted);
            for (offer, (peer_id, peer_conn)) in offers.into_iter().zip(targets) {
                self.relayed.insert(
                    RelayKey {
                        recipient: peer_conn,
                        info_hash: a.info_hash,
                        offer_id: offer.offer_id,
                    },
                    Relayed {
                        offerer_conn: conn,
                        offerer_peer: a.peer_id,
                        recipient_peer: peer_id,
                        expires: now + OFFER_TTL,
                    },
                );
                out.push(Outgoing {
                    to: peer_conn,
                    text: offer_frame(&a.peer_id, &a.info_hash, offer.sdp, &offer.offer_id),
                });
                self.offers_relayed += 1;
            }
        }
        out
    }

    fn is_member(&self, conn: ConnId, info_hash: InfoHash, peer_id: PeerId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.memberships.contains(&(info_hash, peer_id)))
    }

    /// Up to `n` distinct peers of the swarm on connections other than `not`,
    /// chosen uniformly at random.
    ///
    /// In a swarm much larger than `n`, peers are drawn at random positions
    /// and the ineligible or repeated ones redrawn, so an announce costs the
    /// same in a swarm of ten thousand as in one of fifty. When the draws run
    /// out (a small swarm, or one mostly on `not`) it starts over with a
    /// partial shuffle of every eligible peer. Either way each ordered choice
    /// is equally likely: the draws treat every eligible peer alike.
    fn random_peers(
        &mut self,
        info_hash: InfoHash,
        not: ConnId,
        n: usize,
    ) -> Vec<(PeerId, ConnId)> {
        let Some(swarm) = self.swarms.get(&info_hash) else {
            return Vec::new();
        };
        let len = swarm.peers.len();
        if n == 0 || len == 0 {
            return Vec::new();
        }
        if len >= RANDOM_DRAW_FACTOR * n {
            let mut chosen: Vec<(PeerId, ConnId)> = Vec::with_capacity(n);
            for _ in 0..RANDOM_DRAW_FACTOR * n {
                let Some((id, peer)) = swarm.peers.get_index(self.rng.usize(0..len)) else {
                    break;
                };
                if peer.conn != not && chosen.iter().all(|(c, _)| c != id) {
                    chosen.push((*id, peer.conn));
                    if chosen.len() == n {
                        return chosen;
                    }
                }
            }
        }
        let mut candidates: Vec<(PeerId, ConnId)> = swarm
            .peers
            .iter()
            .filter(|(_, p)| p.conn != not)
            .map(|(id, p)| (*id, p.conn))
            .collect();
        let n = n.min(candidates.len());
        for i in 0..n {
            let j = self.rng.usize(i..candidates.len());
            candidates.swap(i, j);
        }
        candidates.truncate(n);
        candidates
    }

    fn remove_peer(&mut self, info_hash: InfoHash, peer_id: PeerId) {
        let Some(swarm) = self.swarms.get_mut(&info_hash) else {
            return;
        };
        if let Some(peer) = swarm.peers.swap_remove(&peer_id) {
            if peer.seeding {
                swarm.seeders -= 1;
            }
        }
        if swarm.peers.is_empty() {
            self.swarms.remove(&info_hash);
        }
    }

    fn announce_response(&self, conn: ConnId, info_hash: InfoHash) -> Outgoing {
        let (complete, incomplete) = self
            .swarms
            .get(&info_hash)
            .map_or((0, 0), |s| (s.seeders, s.leechers()));
        Outgoing {
            to: conn,
            text: announce_response_frame(&info_hash, complete, incomplete, ANNOUNCE_INTERVAL_SECS),
        }
    }

    fn scrape(&self, conn: ConnId, s: ScrapeRequest) -> Outgoing {
        let hashes = match s.info_hashes {
            Some(ScrapeRequestInfoHashes::Single(h)) => vec![h],
            Some(ScrapeRequestInfoHashes::Multiple(hs)) => hs,
            None => Vec::new(),
        };
        let files = hashes
            .into_iter()
            .map(|h| {
                let stats = self.swarms.get(&h).map_or(
                    ScrapeStatistics {
                        complete: 0,
                        incomplete: 0,
                        downloaded: 0,
                    },
                    |s| ScrapeStatistics {
                        complete: s.seeders,
                        incomplete: s.leechers(),
                        downloaded: s.completed,
                    },
                );
                (h, stats)
            })
            .collect();
        let message = OutMessage::ScrapeResponse(ScrapeResponse {
            action: ScrapeAction::Scrape,
            files,
        });
        encode(conn, &message)
    }
}

fn encode(to: ConnId, message: &OutMessage) -> Outgoing {
    Outgoing {
        to,
        text: encode_to_client(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::protocol::parse_request;
    use serde_json::{json, Value};
    use std::collections::{HashMap, HashSet};

    fn bin(s: &str) -> String {
        assert_eq!(s.len(), 20);
        s.to_string()
    }

    const IH: &str = "aaaabbbbccccddddeeee";

    fn pid(n: u8) -> String {
        format!("-SD0100-peer{n:08}")
    }

    /// A request decoded from `v`'s text, which the test keeps for its whole
    /// run (leaked: requests borrow their SDPs from the frame).
    fn req(v: Value) -> Request<'static> {
        let text: &'static str = Box::leak(v.to_string().into_boxed_str());
        parse_request(text).expect("valid request")
    }

    fn announce(peer: &str, left: u64, offers: &[&str]) -> Request<'static> {
        let offers: Vec<Value> = offers
            .iter()
            .map(|id| json!({"offer_id": bin(id), "offer": {"type": "offer", "sdp": format!("sdp-{id}")}}))
            .collect();
        req(json!({
            "action": "announce", "info_hash": IH, "peer_id": peer, "left": left,
            "numwant": offers.len(), "offers": offers
        }))
    }

    fn answer(peer: &str, to: &str, offer_id: &str) -> Request<'static> {
        req(json!({
            "action": "announce", "info_hash": IH, "peer_id": peer, "to_peer_id": to,
            "offer_id": offer_id, "answer": {"type": "answer", "sdp": "answer-sdp"}
        }))
    }

    fn parsed(o: &Outgoing) -> Value {
        serde_json::from_str(&o.text).unwrap()
    }

    fn offers_to(out: &[Outgoing]) -> Vec<(ConnId, Value)> {
        out.iter()
            .map(|o| (o.to, parsed(o)))
            .filter(|(_, v)| v.get("offer").is_some())
            .collect()
    }

    #[test]
    fn announce_counts_seeders_and_leechers_from_left() {
        let mut t = Tracker::new(1);
        let now = Instant::now();
        let (a, b) = (t.connect(), t.connect());
        t.handle(a, announce(&pid(1), 0, &[]), now);
        let out = t.handle(b, announce(&pid(2), 100, &[]), now);
        let v = parsed(&out[0]);
        assert_eq!(v["complete"], 1);
        assert_eq!(v["incomplete"], 1);
        assert_eq!(v["interval"], 120);
        assert_eq!(v["action"], "announce");
    }

    #[test]
    fn offers_go_to_distinct_other_peers_and_never_back() {
        let mut t = Tracker::new(7);
        let now = Instant::now();
        let conns: Vec<ConnId> = (0..4).map(|_| t.connect()).collect();
        for (i, c) in conns.iter().enumerate() {
            t.handle(*c, announce(&pid(i as u8), 10, &[]), now);
        }
        let out = t.handle(
            conns[0],
            announce(
                &pid(0),
                10,
                &[
                    "offer-aaaaaaaaaaaaaa",
                    "offer-bbbbbbbbbbbbbb",
                    "offer-cccccccccccccc",
                    "offer-dddddddddddddd",
                ],
            ),
            now,
        );
        let offers = offers_to(&out);
        // Three other peers: three offers relayed, the fourth has nobody left.
        assert_eq!(offers.len(), 3);
        let recipients: HashSet<ConnId> = offers.iter().map(|(c, _)| *c).collect();
        assert_eq!(recipients.len(), 3);
        assert!(!recipients.contains(&conns[0]));
        for (_, v) in &offers {
            assert_eq!(v["peer_id"], pid(0));
            assert_eq!(v["offer"]["type"], "offer");
        }
        assert_eq!(t.offers_relayed(), 3);
    }

    #[test]
    fn offer_recipients_are_random() {
        let mut t = Tracker::new(3);
        let now = Instant::now();
        let conns: Vec<ConnId> = (0..6).map(|_| t.connect()).collect();
        for (i, c) in conns.iter().enumerate() {
            t.handle(*c, announce(&pid(i as u8), 10, &[]), now);
        }
        let mut seen = HashSet::new();
        for round in 0..50u32 {
            let id = format!("offer{round:015}");
            let out = t.handle(conns[0], announce(&pid(0), 10, &[&id]), now);
            seen.extend(offers_to(&out).into_iter().map(|(c, _)| c));
        }
        assert_eq!(seen.len(), 5, "every other peer is chosen sometime");
    }

    /// A swarm of `others` peers on their own connections plus `own` peers
    /// on the offerer's connection `a` (returned first).
    fn swarm_with(t: &mut Tracker, others: usize, own: usize) -> (ConnId, Vec<ConnId>) {
        let now = Instant::now();
        let a = t.connect();
        for i in 0..own {
            let peer = format!("-SD0100-own{i:09}");
            t.handle(a, announce(&peer, 10, &[]), now);
        }
        let conns: Vec<ConnId> = (0..others)
            .map(|i| {
                let c = t.connect();
                let peer = format!("-SD0100-oth{i:09}");
                t.handle(c, announce(&peer, 10, &[]), now);
                c
            })
            .collect();
        (a, conns)
    }

    #[test]
    fn in_a_large_swarm_offers_go_to_distinct_peers_chosen_evenly() {
        let mut t = Tracker::new(11);
        // Ten peers on the offerer's own connection must never be chosen.
        let (a, others) = swarm_with(&mut t, 100, 10);
        let info_hash = InfoHash(*b"aaaabbbbccccddddeeee");
        let mut counts: HashMap<ConnId, usize> = HashMap::new();
        for _ in 0..2000 {
            let chosen = t.random_peers(info_hash, a, MAX_OFFERS_PER_ANNOUNCE);
            assert_eq!(chosen.len(), MAX_OFFERS_PER_ANNOUNCE);
            let distinct: HashSet<PeerId> = chosen.iter().map(|(p, _)| *p).collect();
            assert_eq!(
                distinct.len(),
                chosen.len(),
                "no peer twice in one announce"
            );
            for (_, c) in chosen {
                assert_ne!(c, a, "never a peer of the offerer's connection");
                *counts.entry(c).or_default() += 1;
            }
        }
        // 20,000 offers over 100 peers: 200 each on average.
        assert_eq!(counts.len(), others.len());
        for c in &others {
            let n = counts[c];
            assert!((120..=290).contains(&n), "peer on {c:?} chosen {n} times");
        }
    }

    #[test]
    fn a_swarm_mostly_on_the_offerers_connection_still_yields_every_other_peer() {
        let mut t = Tracker::new(5);
        // 3 eligible peers among 83: random draws mostly miss them.
        let (a, others) = swarm_with(&mut t, 3, 80);
        let info_hash = InfoHash(*b"aaaabbbbccccddddeeee");
        for _ in 0..50 {
            let chosen = t.random_peers(info_hash, a, MAX_OFFERS_PER_ANNOUNCE);
            let conns: HashSet<ConnId> = chosen.iter().map(|(_, c)| *c).collect();
            assert_eq!(conns, others.iter().copied().collect());
        }
    }

    #[test]
    fn leaving_peers_are_never_chosen_again() {
        let mut t = Tracker::new(9);
        let (a, others) = swarm_with(&mut t, 60, 0);
        let info_hash = InfoHash(*b"aaaabbbbccccddddeeee");
        // Half the swarm leaves (swap-removal reorders the rest).
        for c in others.iter().step_by(2) {
            t.disconnect(*c);
        }
        let remaining: HashSet<ConnId> = others.iter().skip(1).step_by(2).copied().collect();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            for (_, c) in t.random_peers(info_hash, a, 3) {
                assert!(remaining.contains(&c));
                seen.insert(c);
            }
        }
        assert_eq!(seen, remaining);
    }

    #[test]
    fn an_answer_reaches_the_offerer_once() {
        let mut t = Tracker::new(1);
        let now = Instant::now();
        let (a, b) = (t.connect(), t.connect());
        t.handle(b, announce(&pid(2), 10, &[]), now);
        let out = t.handle(a, announce(&pid(1), 0, &["offer-aaaaaaaaaaaaaa"]), now);
        assert_eq!(offers_to(&out)[0].0, b);
        let out = t.handle(b, answer(&pid(2), &pid(1), "offer-aaaaaaaaaaaaaa"), now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, a);
        let v = parsed(&out[0]);
        assert_eq!(v["peer_id"], pid(2));
        assert_eq!(v["offer_id"], "offer-aaaaaaaaaaaaaa");
        assert_eq!(v["answer"]["sdp"], "answer-sdp");
        assert!(v.get("to_peer_id").is_none());
        // A second answer to the same offer is not forwarded.
        let out = t.handle(b, answer(&pid(2), &pid(1), "offer-aaaaaaaaaaaaaa"), now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, b);
        assert!(parsed(&out[0]).get("failure reason").is_some());
    }

    #[test]
    fn an_answer_to_an_offer_not_relayed_to_the_answerer_is_refused() {
        let mut t = Tracker::new(1);
        let now = Instant::now();
        let (a, b, c) = (t.connect(), t.connect(), t.connect());
        t.handle(b, announce(&pid(2), 10, &[]), now);
        t.handle(a, announce(&pid(1), 0, &["offer-aaaaaaaaaaaaaa"]), now);
        // c joins later and never saw the offer, but knows its id.
        t.handle(c, announce(&pid(3), 10, &[]), now);
        let out = t.handle(c, answer(&pid(3), &pid(1), "offer-aaaaaaaaaaaaaa"), now);
        assert!(out.iter().all(|o| o.to == c));
        // The real recipient can still answer.
        let out = t.handle(b, answer(&pid(2), &pid(1), "offer-aaaaaaaaaaaaaa"), now);
        assert_eq!(out[0].to, a);
    }

    #[test]
    fn an_answer_naming_the_wrong_offerer_is_refused() {
        let mut t = Tracker::new(1);
        let now = Instant::now();
        let (a, b) = (t.connect(), t.connect());
        t.handle(b, announce(&pid(2), 10, &[]), now);
        t.handle(a, announce(&pid(1), 0, &["offer-aaaaaaaaaaaaaa"]), now);
        let out = t.handle(b, answer(&pid(2), &pid(9), "offer-aaaaaaaaaaaaaa"), now);
        assert!(out.iter().all(|o| o.to == b));
    }

    #[test]
    fn relayed_offers_expire() {
        let mut t = Tracker::new(1);
        let now = Instant::now();
        let (a, b) = (t.connect(), t.connect());
        t.handle(b, announce(&pid(2), 10, &[]), now);
        t.handle(a, announce(&pid(1), 0, &["offer-aaaaaaaaaaaaaa"]), now);
        let later = now + OFFER_TTL + Duration::from_secs(1);
        let out = t.handle(b, answer(&pid(2), &pid(1), "offer-aaaaaaaaaaaaaa"), later);
        assert!(out.iter().all(|o| o.to == b));
        assert!(t.relayed.map.is_empty());
    }

    #[test]
    fn relayed_offers_stay_bounded() {
        let mut r = RelayedOffers::default();
        let now = Instant::now();
        let relayed = Relayed {
            offerer_conn: ConnId(1),
            offerer_peer: PeerId([1; 20]),
            recipient_peer: PeerId([2; 20]),
            expires: now + OFFER_TTL,
        };
        for i in 0..(MAX_RELAYED_OFFERS as u64 + 10) {
            let mut id = [0u8; 20];
            id[..8].copy_from_slice(&i.to_be_bytes());
            r.insert(
                RelayKey {
                    recipient: ConnId(2),
                    info_hash: InfoHash([0; 20]),
                    offer_id: OfferId(id),
                },
                relayed,
            );
        }
        assert_eq!(r.map.len(), MAX_RELAYED_OFFERS);
        // The oldest went first.
        let first = RelayKey {
            recipient: ConnId(2),
            info_hash: InfoHash([0; 20]),
            offer_id: OfferId([0; 20]),
        };
        assert!(!r.map.contains_key(&first));
    }

    #[test]
    fn a_peer_id_cannot_be_used_from_another_connection() {
        let mut t = Tracker::new(1);
        let now = Instant::now();
        let (a, b) = (t.connect(), t.connect());
        t.handle(a, announce(&pid(1), 10, &[]), now);
        let out = t.handle(b, announce(&pid(1), 0, &[]), now);
        assert!(parsed(&out[0])["failure reason"].is_string());
        // Nor can it stop the other connection's peer.
        let stop =
            req(json!({"action":"announce","info_hash":IH,"peer_id":pid(1),"event":"stopped"}));
        t.handle(b, stop, now);
        assert_eq!(t.peer_count(), 1);
    }

    #[test]
    fn stopped_removes_the_peer_and_disconnect_removes_the_rest() {
        let mut t = Tracker::new(1);
        let now = Instant::now();
        let (a, b) = (t.connect(), t.connect());
        t.handle(a, announce(&pid(1), 0, &[]), now);
        t.handle(b, announce(&pid(2), 5, &[]), now);
        let stop = req(
            json!({"action":"announce","info_hash":IH,"peer_id":pid(1),"event":"stopped","left":0}),
        );
        let out = t.handle(a, stop, now);
        let v = parsed(&out[0]);
        assert_eq!(
            (v["complete"].as_u64(), v["incomplete"].as_u64()),
            (Some(0), Some(1))
        );
        t.disconnect(b);
        assert_eq!(t.peer_count(), 0);
        assert_eq!(t.swarm_count(), 0);
    }

    #[test]
    fn completing_turns_a_leecher_into_a_seeder_and_counts_one_download() {
        let mut t = Tracker::new(1);
        let now = Instant::now();
        let a = t.connect();
        t.handle(a, announce(&pid(1), 5, &[]), now);
        let done = req(
            json!({"action":"announce","info_hash":IH,"peer_id":pid(1),"event":"completed","left":0}),
        );
        let v = parsed(&t.handle(a, done, now)[0]);
        assert_eq!(
            (v["complete"].as_u64(), v["incomplete"].as_u64()),
            (Some(1), Some(0))
        );
        let done = req(
            json!({"action":"announce","info_hash":IH,"peer_id":pid(1),"event":"completed","left":0}),
        );
        t.handle(a, done, now);
        let scrape = req(json!({"action":"scrape","info_hash":[IH, "zzzzzzzzzzzzzzzzzzzz"]}));
        let v = parsed(&t.handle(a, scrape, now)[0]);
        assert_eq!(v["files"][IH]["complete"], 1);
        assert_eq!(v["files"][IH]["downloaded"], 1);
        assert_eq!(v["files"]["zzzzzzzzzzzzzzzzzzzz"]["incomplete"], 0);
    }

    #[test]
    fn at_most_ten_offers_are_relayed_per_announce() {
        let mut t = Tracker::new(1);
        let now = Instant::now();
        let conns: Vec<ConnId> = (0..13).map(|_| t.connect()).collect();
        for (i, c) in conns.iter().enumerate() {
            t.handle(*c, announce(&pid(i as u8), 10, &[]), now);
        }
        let ids: Vec<String> = (0..12).map(|i| format!("offer{i:015}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let out = t.handle(conns[0], announce(&pid(0), 10, &refs), now);
        assert_eq!(offers_to(&out).len(), MAX_OFFERS_PER_ANNOUNCE);
    }

    #[test]
    fn a_connection_cannot_join_unbounded_swarms() {
        let mut t = Tracker::new(1);
        let now = Instant::now();
        let a = t.connect();
        for i in 0..MAX_SWARMS_PER_CONNECTION {
            let ih = format!("{i:020}");
            let r = req(json!({"action":"announce","info_hash":ih,"peer_id":pid(1),"left":1}));
            t.handle(a, r, now);
        }
        let r = req(
            json!({"action":"announce","info_hash":"xxxxxxxxxxxxxxxxxxxx","peer_id":pid(1),"left":1}),
        );
        let out = t.handle(a, r, now);
        assert!(parsed(&out[0])["failure reason"].is_string());
        assert_eq!(t.swarm_count(), MAX_SWARMS_PER_CONNECTION);
    }
}
