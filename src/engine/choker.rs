//! Upload choking for one torrent: regular rounds by rate, a rotating optimistic unchoke.
//!
//! The policy of BEP 3 as libtorrent applies it, as a pure data structure:
//!
//! - every [`ChokerConfig::regular_interval`] (10 s) a regular round unchokes
//!   the [`ChokerConfig::upload_slots`] (4) interested peers that are fastest:
//!   by the rate they upload to us while we download, by the rate we upload
//!   to them once we seed; ties are broken at random;
//! - one more interested peer is unchoked optimistically, rotated every
//!   [`ChokerConfig::optimistic_interval`] (30 s); peers connected for less
//!   than [`ChokerConfig::new_peer_window`] that never had their turn are
//!   [`ChokerConfig::new_peer_weight`] (3) times as likely to be chosen, so
//!   they get a first piece to trade with;
//! - a snubbed peer (it unchoked us, we want its pieces, and it sent no block
//!   for [`ChokerConfig::snub_timeout`], 60 s) gets no regular slot; it can
//!   still be the optimistic unchoke;
//! - between rounds, an interested peer is unchoked at once while a regular
//!   slot is empty, so with no more interested peers than slots everybody
//!   interested is served immediately.
//!
//! The session calls [`Choker::tick`] with a snapshot of its peers whenever
//! the timer from [`Choker::next_round`] fires or a peer connects, leaves or
//! changes its interest, and sends choke and unchoke messages as the returned
//! [`ChokeDecision`] says. Each call costs `O(peers log peers)`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::picker::PeerKey;
use super::sort;
use super::time::Instant;

/// Choking parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Peers unchoked by rate (the optimistic unchoke comes on top).
    pub upload_slots: usize,
    /// Time between regular rounds.
    pub regular_interval: Duration,
    /// Time between rotations of the optimistic unchoke.
    pub optimistic_interval: Duration,
    /// A peer that unchoked us and sent no block for this long is snubbed.
    pub snub_timeout: Duration,
    /// Peers connected for less than this (and never optimistically
    /// unchoked) count as new.
    pub new_peer_window: Duration,
    /// How much more likely a new peer is to become the optimistic unchoke.
    pub new_peer_weight: u32,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            upload_slots: 4,
            regular_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            snub_timeout: Duration::from_secs(60),
            new_peer_window: Duration::from_secs(60),
            new_peer_weight: 3,
        }
    }
}

/// What the session knows of one connected peer at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// The peer.
    pub peer: PeerKey,
    /// The peer is interested in our pieces.
    pub interested: bool,
    /// Payload bytes per second the peer sends us.
    pub download_rate: u64,
    /// Payload bytes per second we send the peer.
    pub upload_rate: u64,
    /// While the peer unchokes us and we are interested in it: the later of
    /// the time it unchoked us and the time its last block arrived. `None`
    /// otherwise (it cannot be snubbing us).
    pub awaiting_block_since: Option<Instant>,
}

/// Which peers to unchoke and choke now (only changes are listed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChokeDecision {
    /// Send these peers an unchoke.
    pub unchoke: Vec<PeerKey>,
    /// Send these peers a choke.
    pub choke: Vec<PeerKey>,
}

impl ChokeDecision {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.unchoke.is_empty() && self.choke.is_empty()
    }
}

#[derive(Clone, Debug)]
struct PeerEntry {
    first_seen: Instant,
    had_optimistic_turn: bool,
}

/// The choker of one torrent. See the module documentation for the policy.
#[derive(Clone, Debug)]
pub struct Choker {
    config: ChokerConfig,
    peers: BTreeMap<PeerKey, PeerEntry>,
    /// Peers unchoked by rate (or to fill an empty slot).
    regular: BTreeSet<PeerKey>,
    optimistic: Option<PeerKey>,
    last_regular: Option<Instant>,
    last_optimistic: Option<Instant>,
}

impl Choker {
    /// A choker with no peer unchoked; the first tick runs a round.
    pub fn new(config: ChokerConfig) -> Self {
        Choker {
            config,
            peers: BTreeMap::new(),
            regular: BTreeSet::new(),
            optimistic: None,
            last_regular: None,
            last_optimistic: None,
        }
    }

    /// The parameters.
    pub fn config(&self) -> &ChokerConfig {
        &self.config
    }

    /// Changes the number of upload slots; the next tick runs a round.
    pub fn set_upload_slots(&mut self, slots: usize) {
        if slots != self.config.upload_slots {
            self.config.upload_slots = slots;
            self.last_regular = None;
        }
    }

    /// Whether a peer is unchoked (by rate or optimistically).
    pub fn is_unchoked(&self, peer: PeerKey) -> bool {
        self.regular.contains(&peer) || self.optimistic == Some(peer)
    }

    /// Every unchoked peer, in key order.
    pub fn unchoked(&self) -> Vec<PeerKey> {
        self.unchoked_set().into_iter().collect()
    }

    fn unchoked_set(&self) -> BTreeSet<PeerKey> {
        let mut all = self.regular.clone();
        all.extend(self.optimistic);
        all
    }

    /// The optimistic unchoke, if any.
    pub fn optimistic(&self) -> Option<PeerKey> {
        self.optimistic
    }

    /// When the next regular round is due (`None`: at the next tick).
    pub fn next_round(&self) -> Option<Instant> {
        self.last_regular.map(|t| t + self.config.regular_interval)
    }

    /// Brings the unchoked set up to date. `peers` is every connected peer;
    /// peers missing from it are forgotten (without a choke: they are gone).
    /// `seeding` selects the rate regular slots are given by.
    pub fn tick(
        &mut self,
        now: Instant,
        peers: &[PeerSnapshot],
        seeding: bool,
        rng: &mut fastrand::Rng,
    ) -> ChokeDecision {
        let before = self.unchoked_set();
        self.sync_peers(now, peers);
        let due = self.next_round().is_none_or(|t| now >= t);
        if due {
            self.regular_round(now, peers, seeding, rng);
        } else {
            self.fill_empty_slots(now, peers, seeding);
        }
        let after = self.unchoked_set();
        ChokeDecision {
            unchoke: after.difference(&before).copied().collect(),
            choke: before
                .difference(&after)
                .copied()
                .filter(|k| self.peers.contains_key(k))
                .collect(),
        }
    }

    fn sync_peers(&mut self, now: Instant, peers: &[PeerSnapshot]) {
        // Inserted, not collected: collect() would sort first, one more copy
        // of the sort code in the wasm (BENCHMARKS.md row 7).
        let mut present = BTreeSet::new();
        present.extend(peers.iter().map(|s| s.peer));
        self.peers.retain(|k, _| present.contains(k));
        self.regular.retain(|k| present.contains(k));
        if self.optimistic.is_some_and(|k| !present.contains(&k)) {
            self.optimistic = None;
        }
        for s in peers {
            self.peers.entry(s.peer).or_insert(PeerEntry {
                first_seen: now,
                had_optimistic_turn: false,
            });
        }
    }

    fn snubbed(&self, now: Instant, s: &PeerSnapshot) -> bool {
        s.awaiting_block_since
            .is_some_and(|t| now.saturating_since(t) >= self.config.snub_timeout)
    }

    fn rate(s: &PeerSnapshot, seeding: bool) -> u64 {
        if seeding {
            s.upload_rate
        } else {
            s.download_rate
        }
    }

    /// Sorts fastest first (stable: equal rates keep their order, or go by
    /// key when `by_key`).
    fn rank(peers: &mut Vec<&PeerSnapshot>, seeding: bool, by_key: bool) {
        sort::sort_by(peers, |a, b| {
            let order = Self::rate(b, seeding).cmp(&Self::rate(a, seeding));
            if by_key {
                order.then(a.peer.cmp(&b.peer))
            } else {
                order
            }
        });
    }

    fn regular_round(
        &mut self,
        now: Instant,
        peers: &[PeerSnapshot],
        seeding: bool,
        rng: &mut fastrand::Rng,
    ) {
        self.last_regular = Some(now);
        let slots = self.config.upload_slots;
        let interested: Vec<&PeerSnapshot> = peers.iter().filter(|s| s.interested).collect();
        if slots == 0 {
            self.regular.clear();
            self.optimistic = None;
            return;
        }
        if interested.len() <= slots {
            // Room for everybody: no ranking, no optimistic unchoke needed.
            // Inserted, not collected: collect() would sort first, one more copy
            // of the sort code in the wasm (BENCHMARKS.md row 7).
            self.regular.clear();
            self.regular.extend(interested.iter().map(|s| s.peer));
            self.optimistic = None;
            return;
        }
        // Fastest non-snubbed interested peers; shuffled first so that the
        // stable sort breaks ties at random.
        let mut ranked: Vec<&PeerSnapshot> = interested
            .iter()
            .copied()
            .filter(|s| !self.snubbed(now, s))
            .collect();
        rng.shuffle(&mut ranked);
        Self::rank(&mut ranked, seeding, false);
        // Inserted, not collected: collect() would sort first, one more copy
        // of the sort code in the wasm (BENCHMARKS.md row 7).
        self.regular.clear();
        self.regular
            .extend(ranked.iter().take(slots).map(|s| s.peer));

        let optimistic_valid = self
            .optimistic
            .is_some_and(|k| !self.regular.contains(&k) && interested.iter().any(|s| s.peer == k));
        let rotation_due = self
            .last_optimistic
            .is_none_or(|t| now.saturating_since(t) >= self.config.optimistic_interval);
        if !optimistic_valid || rotation_due {
            self.rotate_optimistic(now, &interested, rng);
        }
    }

    /// Chooses a new optimistic unchoke among the interested peers without a
    /// regular slot, other than the current one when possible.
    fn rotate_optimistic(
        &mut self,
        now: Instant,
        interested: &[&PeerSnapshot],
        rng: &mut fastrand::Rng,
    ) {
        let current = self.optimistic;
        let eligible: Vec<PeerKey> = interested
            .iter()
            .map(|s| s.peer)
            .filter(|k| !self.regular.contains(k))
            .collect();
        let others: Vec<PeerKey> = eligible
            .iter()
            .copied()
            .filter(|&k| Some(k) != current)
            .collect();
        let pool = if others.is_empty() { eligible } else { others };
        let weight = |k: &PeerKey| -> u64 {
            match self.peers.get(k) {
                Some(e)
                    if !e.had_optimistic_turn
                        && now.saturating_since(e.first_seen) < self.config.new_peer_window =>
                {
                    u64::from(self.config.new_peer_weight.max(1))
                }
                _ => 1,
            }
        };
        let total: u64 = pool.iter().map(weight).sum();
        self.optimistic = None;
        if total > 0 {
            let mut ticket = rng.u64(..total);
            for k in &pool {
                let w = weight(k);
                if ticket < w {
                    self.optimistic = Some(*k);
                    break;
                }
                ticket -= w;
            }
        }
        if let Some(k) = self.optimistic {
            if let Some(e) = self.peers.get_mut(&k) {
                e.had_optimistic_turn = true;
            }
        }
        self.last_optimistic = Some(now);
    }

    /// Between rounds: gives empty regular slots to interested peers that are
    /// choked, fastest first.
    fn fill_empty_slots(&mut self, now: Instant, peers: &[PeerSnapshot], seeding: bool) {
        let free = self.config.upload_slots.saturating_sub(self.regular.len());
        if free == 0 {
            return;
        }
        let mut waiting: Vec<&PeerSnapshot> = peers
            .iter()
            .filter(|s| s.interested && !self.is_unchoked(s.peer) && !self.snubbed(now, s))
            .collect();
        Self::rank(&mut waiting, seeding, true);
        self.regular
            .extend(waiting.iter().take(free).map(|s| s.peer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    fn peer(k: u32, interested: bool, down: u64, up: u64) -> PeerSnapshot {
        PeerSnapshot {
            peer: PeerKey(k),
            interested,
            download_rate: down,
            upload_rate: up,
            awaiting_block_since: None,
        }
    }

    fn keys(v: &[u32]) -> Vec<PeerKey> {
        v.iter().map(|&k| PeerKey(k)).collect()
    }

    /// Peers 1..=n, all interested, peer k uploading k KB/s to us and
    /// receiving (n - k) KB/s from us.
    fn swarm(n: u32) -> Vec<PeerSnapshot> {
        (1..=n)
            .map(|k| peer(k, true, k as u64 * 1000, (n - k) as u64 * 1000))
            .collect()
    }

    #[test]
    fn few_interested_peers_are_all_unchoked_at_once() {
        // With no more interested peers than slots, everybody interested is
        // unchoked, including one that turns up between rounds.
        let mut c = Choker::new(ChokerConfig::default());
        let mut rng = fastrand::Rng::with_seed(1);
        let mut peers = vec![
            peer(1, true, 0, 0),
            peer(2, true, 0, 0),
            peer(3, false, 0, 0),
        ];
        let d = c.tick(t(0), &peers, false, &mut rng);
        assert_eq!(d.unchoke, keys(&[1, 2]));
        assert!(d.choke.is_empty());
        peers[2].interested = true;
        peers.push(peer(4, true, 0, 0));
        let d = c.tick(t(1), &peers, false, &mut rng);
        assert_eq!(d.unchoke, keys(&[3, 4]));
        assert_eq!(c.unchoked(), keys(&[1, 2, 3, 4]));
        assert!(c.tick(t(2), &peers, false, &mut rng).is_empty());
    }

    #[test]
    fn leeching_round_unchokes_the_peers_that_upload_to_us_fastest() {
        // 8 interested peers: the 4 fastest uploaders to us get the regular
        // slots, one other peer the optimistic unchoke.
        let mut c = Choker::new(ChokerConfig::default());
        let mut rng = fastrand::Rng::with_seed(2);
        let d = c.tick(t(0), &swarm(8), false, &mut rng);
        let opt = c.optimistic().expect("an optimistic unchoke");
        assert!(
            (1..=4).contains(&opt.0),
            "optimistic {opt:?} is not a slow peer"
        );
        let mut expected = keys(&[5, 6, 7, 8]);
        expected.push(opt);
        expected.sort();
        assert_eq!(d.unchoke, expected);
    }

    #[test]
    fn seeding_round_unchokes_the_peers_we_upload_to_fastest() {
        // Seeding, the ranking is by our upload rate to each peer.
        let mut c = Choker::new(ChokerConfig::default());
        let mut rng = fastrand::Rng::with_seed(3);
        c.tick(t(0), &swarm(8), true, &mut rng);
        for k in 1..=4 {
            assert!(c.is_unchoked(PeerKey(k)));
        }
        let opt = c.optimistic().expect("an optimistic unchoke");
        assert!((5..=8).contains(&opt.0));
    }

    #[test]
    fn rankings_change_only_at_regular_rounds() {
        // Rates that change between rounds take effect at the next round, 10 s
        // after the previous one, with a choke for the peer that lost its slot.
        let mut c = Choker::new(ChokerConfig::default());
        let mut rng = fastrand::Rng::with_seed(4);
        let mut peers = swarm(8);
        c.tick(t(0), &peers, false, &mut rng);
        assert_eq!(c.next_round(), Some(t(10)));
        let opt = c.optimistic();
        // Peer 1 (slowest) becomes the fastest.
        peers[0].download_rate = 1_000_000;
        let d = c.tick(t(5), &peers, false, &mut rng);
        assert!(d.is_empty());
        let d = c.tick(t(10), &peers, false, &mut rng);
        assert_eq!(c.regular, keys(&[1, 6, 7, 8]).into_iter().collect());
        let new_opt = c.optimistic().expect("an optimistic unchoke");
        if opt == Some(PeerKey(1)) {
            assert_ne!(new_opt, PeerKey(1), "peer 1 moved to a regular slot");
        } else {
            assert_eq!(Some(new_opt), opt, "rotation is not due before 30 s");
        }
        if new_opt != PeerKey(5) {
            assert!(d.choke.contains(&PeerKey(5)));
        }
        assert_eq!(c.unchoked().len(), 5);
    }

    #[test]
    fn optimistic_unchoke_rotates_every_30_seconds_and_reaches_everybody() {
        // Over regular rounds every 10 s, the optimistic peer only changes
        // every third round, and every slow peer gets a turn eventually.
        let mut c = Choker::new(ChokerConfig::default());
        let mut rng = fastrand::Rng::with_seed(5);
        let peers = swarm(10);
        let mut seen = BTreeSet::new();
        let mut last = None;
        for round in 0..60u64 {
            c.tick(t(round * 10), &peers, false, &mut rng);
            let opt = c.optimistic().expect("an optimistic unchoke");
            assert!(
                opt.0 <= 6,
                "optimistic {opt:?} is not one of the slow peers"
            );
            if round % 3 != 0 {
                assert_eq!(Some(opt), last, "optimistic changed mid-rotation");
            } else if round > 0 {
                assert_ne!(Some(opt), last, "rotation kept the same peer");
            }
            last = Some(opt);
            seen.insert(opt);
            assert_eq!(c.unchoked().len(), 5);
        }
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn new_peers_are_three_times_as_likely_to_be_optimistically_unchoked() {
        // One new peer and two old ones to rotate to: the new one is chosen
        // with probability 3/5 (uniform would be 1/3).
        let mut new_chosen = 0;
        let trials = 3000;
        for seed in 0..trials {
            let mut c = Choker::new(ChokerConfig::default());
            let mut rng = fastrand::Rng::with_seed(seed);
            let old = swarm(7); // 4 regular slots (4..=7), three slow ones
            c.tick(t(0), &old, false, &mut rng);
            let mut peers = old.clone();
            peers.push(peer(100, true, 0, 0));
            // Old peers have all had a turn or are past the new-peer window.
            c.tick(t(90), &peers, false, &mut rng);
            if c.optimistic() == Some(PeerKey(100)) {
                new_chosen += 1;
            }
        }
        let share = new_chosen as f64 / trials as f64;
        assert!((0.55..0.65).contains(&share), "new peer chosen {share}");
    }

    #[test]
    fn snubbed_peers_get_no_regular_slot() {
        // The fastest peer stopped sending blocks 60 s ago: it is passed over
        // for a regular slot.
        let mut c = Choker::new(ChokerConfig::default());
        let mut rng = fastrand::Rng::with_seed(6);
        let mut peers = swarm(8);
        peers[7].awaiting_block_since = Some(t(0));
        peers[6].awaiting_block_since = Some(t(30));
        c.tick(t(60), &peers, false, &mut rng);
        // Peer 7 has waited only 30 s: not snubbed.
        assert_eq!(c.regular, keys(&[4, 5, 6, 7]).into_iter().collect());
    }

    #[test]
    fn peers_that_lose_interest_are_choked_at_the_next_round() {
        // An uninterested peer gives its slot to a waiting one at the round.
        let mut c = Choker::new(ChokerConfig::default());
        let mut rng = fastrand::Rng::with_seed(7);
        let mut peers = swarm(6);
        c.tick(t(0), &peers, false, &mut rng);
        assert!(c.is_unchoked(PeerKey(6)));
        peers[5].interested = false;
        let d = c.tick(t(10), &peers, false, &mut rng);
        assert!(d.choke.contains(&PeerKey(6)));
        assert_eq!(c.unchoked().len(), 5);
        for k in 1..=5 {
            assert!(c.is_unchoked(PeerKey(k)));
        }
    }

    #[test]
    fn a_departed_peers_slot_is_filled_at_once_without_choking_it() {
        // The peer is gone, so it is not choked; its slot goes to a waiting
        // peer before the next round.
        let mut c = Choker::new(ChokerConfig::default());
        let mut rng = fastrand::Rng::with_seed(8);
        let peers = swarm(7);
        c.tick(t(0), &peers, false, &mut rng);
        let waiting: Vec<PeerKey> = (1..=7)
            .map(PeerKey)
            .filter(|&k| !c.is_unchoked(k))
            .collect();
        assert_eq!(waiting.len(), 2);
        let fewer: Vec<PeerSnapshot> = peers.iter().copied().filter(|s| s.peer.0 != 7).collect();
        let d = c.tick(t(1), &fewer, false, &mut rng);
        assert!(d.choke.is_empty());
        assert_eq!(d.unchoke.len(), 1);
        assert!(waiting.contains(&d.unchoke[0]));
        assert_eq!(c.unchoked().len(), 5);
    }

    #[test]
    fn zero_slots_unchoke_nobody() {
        // Uploads disabled: everybody is choked.
        let mut c = Choker::new(ChokerConfig::default());
        let mut rng = fastrand::Rng::with_seed(9);
        c.tick(t(0), &swarm(3), false, &mut rng);
        c.set_upload_slots(0);
        let d = c.tick(t(1), &swarm(3), false, &mut rng);
        assert_eq!(d.choke, keys(&[1, 2, 3]));
        assert!(c.unchoked().is_empty());
    }
}
