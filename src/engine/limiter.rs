//! Bandwidth caps and speed measurement: token buckets, a global plus per-bundle limiter, a rate estimator.
//!
//! A [`TokenBucket`] holds up to `burst` bytes of credit that refill at
//! `rate` bytes per second; it starts empty, so over any interval of length
//! `T` it grants at most `rate × T + burst` bytes (and at most `rate × T`
//! from creation). The [`Limiter`] takes every grant from two buckets, the
//! user's global cap and the bundle's own cap, for uploads and downloads
//! separately; what one bucket refuses is given back to the other, so both
//! caps hold at once. A [`RateEstimator`] turns byte counts into speeds over
//! a sliding window, for the UI, the choker and request pipelining.
//!
//! Time is an input ([`Instant`]); nothing here reads a clock. Rate changes
//! take effect at the instant given: credit earned until then at the old
//! rate is kept (up to the new burst), and refill continues at the new rate.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ids::InfoHash;
use super::time::Instant;

/// Smallest automatic burst: one whole piece message (a 16 KiB block and its
/// 13-byte header), so a block can always be sent in one go.
pub const MIN_BURST: u64 = 16 * 1024 + 13;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The burst [`TokenBucket::with_rate`] gives a rate: 50 ms of traffic, and
/// at least [`MIN_BURST`].
pub fn default_burst(rate: u64) -> u64 {
    (rate / 20).max(MIN_BURST)
}

/// A token bucket: credit in bytes, refilled at a fixed rate, capped at a burst.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Bytes per second; `None` is unlimited.
    rate: Option<u64>,
    burst: u64,
    /// `burst` follows the rate (see [`default_burst`]).
    auto_burst: bool,
    tokens: u64,
    /// Refill owed below one byte, in byte-nanoseconds per second.
    carry: u128,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A bucket refilling at `rate` bytes per second (`None`: unlimited) and
    /// holding at most `burst` bytes. It starts empty.
    pub fn new(rate: Option<u64>, burst: u64) -> Self {
        TokenBucket {
            rate,
            burst,
            auto_burst: false,
            tokens: 0,
            carry: 0,
            last: None,
        }
    }

    /// A bucket whose burst is [`default_burst`] of its rate, now and after
    /// every [`set_rate`](Self::set_rate).
    pub fn with_rate(rate: Option<u64>) -> Self {
        let mut b = TokenBucket::new(rate, rate.map_or(MIN_BURST, default_burst));
        b.auto_burst = true;
        b
    }

    /// An unlimited bucket.
    pub fn unlimited() -> Self {
        TokenBucket::with_rate(None)
    }

    /// The rate in bytes per second (`None`: unlimited).
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// The most credit the bucket holds.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The credit available (as of the last refill); `u64::MAX` when unlimited.
    pub fn available(&self) -> u64 {
        if self.rate.is_none() {
            u64::MAX
        } else {
            self.tokens
        }
    }

    /// Adds the credit earned since the last refill. Time going backwards is
    /// ignored.
    pub fn refill(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        if now <= last {
            return;
        }
        self.last = Some(now);
        let Some(rate) = self.rate else {
            return;
        };
        let earned = rate as u128 * (now - last).as_nanos() + self.carry;
        let whole = earned / NANOS_PER_SEC;
        self.carry = earned % NANOS_PER_SEC;
        let room = self.burst.saturating_sub(self.tokens);
        if whole >= room as u128 {
            self.tokens = self.burst;
            self.carry = 0;
        } else {
            self.tokens += whole as u64;
        }
    }

    /// Changes the rate from `now` on (credit earned before `now` is kept, up
    /// to the new burst). A zero rate also drops the credit: nothing passes.
    pub fn set_rate(&mut self, rate: Option<u64>, now: Instant) {
        self.refill(now);
        self.rate = rate;
        if self.auto_burst {
            self.burst = rate.map_or(MIN_BURST, default_burst);
        }
        if rate == Some(0) {
            self.tokens = 0;
            self.carry = 0;
        }
        self.tokens = self.tokens.min(self.burst);
    }

    /// Takes `n` bytes of credit if all of it is there (call
    /// [`refill`](Self::refill) first). Never succeeds for `n` above the
    /// burst: use [`take_up_to`](Self::take_up_to) for those.
    pub fn try_take(&mut self, n: u64) -> bool {
        if self.rate.is_none() {
            return true;
        }
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Takes as much of `n` bytes of credit as there is; returns how much.
    pub fn take_up_to(&mut self, n: u64) -> u64 {
        if self.rate.is_none() {
            return n;
        }
        let granted = n.min(self.tokens);
        self.tokens -= granted;
        granted
    }

    /// Returns credit taken but not used (capped at the burst).
    pub fn give_back(&mut self, n: u64) {
        if self.rate.is_some() {
            self.tokens = self.tokens.saturating_add(n).min(self.burst);
        }
    }

    /// How long until `n` bytes of credit are there: zero if they are now,
    /// `None` if never (a zero rate, or `n` above the burst).
    pub fn time_until_available(&mut self, n: u64, now: Instant) -> Option<Duration> {
        self.refill(now);
        let Some(rate) = self.rate else {
            return Some(Duration::ZERO);
        };
        if self.tokens >= n {
            return Some(Duration::ZERO);
        }
        if rate == 0 || n > self.burst {
            return None;
        }
        let missing = (n - self.tokens) as u128 * NANOS_PER_SEC;
        let nanos = missing.saturating_sub(self.carry).div_ceil(rate as u128);
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }
}

/// Which way bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From us to peers.
    Upload,
    /// From peers (and web seeds) to us.
    Download,
}

/// Upload and download caps in bytes per second (`None`: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Upload cap.
    pub upload: Option<u64>,
    /// Download cap.
    pub download: Option<u64>,
}

#[derive(Clone, Debug)]
struct Pair {
    upload: TokenBucket,
    download: TokenBucket,
}

impl Pair {
    fn new(limits: Limits) -> Self {
        Pair {
            upload: TokenBucket::with_rate(limits.upload),
            download: TokenBucket::with_rate(limits.download),
        }
    }

    fn set(&mut self, limits: Limits, now: Instant) {
        self.upload.set_rate(limits.upload, now);
        self.download.set_rate(limits.download, now);
    }

    fn get(&mut self, dir: Direction) -> &mut TokenBucket {
        match dir {
            Direction::Upload => &mut self.upload,
            Direction::Download => &mut self.download,
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            upload: self.upload.rate(),
            download: self.download.rate(),
        }
    }
}

/// The user's global caps and each bundle's own caps, both enforced on every
/// grant. Bundles are keyed by `K` (their info hash by default); a bundle
/// without caps of its own is only bound by the global ones.
#[derive(Clone, Debug)]
pub struct Limiter<K: Ord + Clone = InfoHash> {
    global: Pair,
    bundles: BTreeMap<K, Pair>,
}

impl<K: Ord + Clone> Limiter<K> {
    /// A limiter with these global caps and no bundle caps.
    pub fn new(global: Limits) -> Self {
        Limiter {
            global: Pair::new(global),
            bundles: BTreeMap::new(),
        }
    }

    /// The global caps.
    pub fn global_limits(&self) -> Limits {
        self.global.limits()
    }

    /// A bundle's own caps (unlimited when it has none).
    pub fn bundle_limits(&self, bundle: &K) -> Limits {
        self.bundles
            .get(bundle)
            .map_or_else(Limits::default, Pair::limits)
    }

    /// Changes the global caps from `now` on.
    pub fn set_global_limits(&mut self, limits: Limits, now: Instant) {
        self.global.set(limits, now);
    }

    /// Changes a bundle's caps from `now` on.
    pub fn set_bundle_limits(&mut self, bundle: K, limits: Limits, now: Instant) {
        match self.bundles.get_mut(&bundle) {
            Some(pair) => pair.set(limits, now),
            None => {
                let mut pair = Pair::new(limits);
                pair.upload.refill(now);
                pair.download.refill(now);
                self.bundles.insert(bundle, pair);
            }
        }
    }

    /// Forgets a bundle's caps (the bundle was removed).
    pub fn remove_bundle(&mut self, bundle: &K) {
        self.bundles.remove(bundle);
    }

    /// Grants up to `n` bytes for `bundle` in direction `dir`: as much as both
    /// the global and the bundle's bucket allow. Returns the bytes granted.
    pub fn take_up_to(&mut self, dir: Direction, bundle: &K, n: u64, now: Instant) -> u64 {
        let global = self.global.get(dir);
        global.refill(now);
        let from_global = global.take_up_to(n);
        let Some(own) = self.bundles.get_mut(bundle).map(|p| p.get(dir)) else {
            return from_global;
        };
        own.refill(now);
        let granted = own.take_up_to(from_global);
        self.global.get(dir).give_back(from_global - granted);
        granted
    }

    /// Grants exactly `n` bytes if both buckets have them, else nothing.
    pub fn try_take(&mut self, dir: Direction, bundle: &K, n: u64, now: Instant) -> bool {
        let global = self.global.get(dir);
        global.refill(now);
        if !global.try_take(n) {
            return false;
        }
        let Some(own) = self.bundles.get_mut(bundle).map(|p| p.get(dir)) else {
            return true;
        };
        own.refill(now);
        if own.try_take(n) {
            true
        } else {
            self.global.get(dir).give_back(n);
            false
        }
    }

    /// How long until `n` bytes can be granted for `bundle`: zero if now,
    /// `None` if never under the current caps.
    pub fn time_until_available(
        &mut self,
        dir: Direction,
        bundle: &K,
        n: u64,
        now: Instant,
    ) -> Option<Duration> {
        let global = self.global.get(dir).time_until_available(n, now)?;
        let own = match self.bundles.get_mut(bundle) {
            Some(pair) => pair.get(dir).time_until_available(n, now)?,
            None => Duration::ZERO,
        };
        Some(global.max(own))
    }
}

/// Speed over a sliding window: bytes are counted in fixed slots, and the
/// rate is the bytes of the slots inside the window divided by the time they
/// cover (less at first, so a new transfer shows its speed at once).
#[derive(Clone, Debug)]
pub struct RateEstimator {
    slot: Duration,
    slots: Vec<u64>,
    /// Index (time / slot) of the newest slot written.
    head: u64,
    started: Option<Instant>,
    total: u64,
}

impl RateEstimator {
    /// Slots per window.
    const SLOTS: u32 = 20;

    /// An estimator over a window of `window` (5 s is a good default: steady
    /// enough for the choker and the UI, quick enough to follow a change).
    pub fn new(window: Duration) -> Self {
        let slot = (window / Self::SLOTS).max(Duration::from_millis(1));
        RateEstimator {
            slot,
            slots: vec![0; Self::SLOTS as usize],
            head: 0,
            started: None,
            total: 0,
        }
    }

    fn slot_index(&self, now: Instant) -> u64 {
        (now.since_origin().as_nanos() / self.slot.as_nanos()) as u64
    }

    /// Moves the window to `now`, clearing slots that fell out of it; a
    /// window left empty forgets when the flow started.
    fn advance(&mut self, now: Instant) {
        let idx = self.slot_index(now);
        if idx <= self.head {
            return;
        }
        let n = self.slots.len() as u64;
        let stale = (idx - self.head).min(n);
        for k in 1..=stale {
            let i = ((self.head + k) % n) as usize;
            self.slots[i] = 0;
        }
        if stale == n {
            self.started = None;
        }
        self.head = idx;
    }

    /// Counts `bytes` transferred at `now`.
    pub fn record(&mut self, bytes: u64, now: Instant) {
        self.advance(now);
        if self.started.is_none() {
            self.started = Some(now);
        }
        let n = self.slots.len() as u64;
        let i = (self.head % n) as usize;
        self.slots[i] = self.slots[i].saturating_add(bytes);
        self.total = self.total.saturating_add(bytes);
    }

    /// Bytes per second over the window ending at `now`.
    pub fn rate(&mut self, now: Instant) -> u64 {
        self.advance(now);
        let Some(started) = self.started else {
            return 0;
        };
        let sum: u128 = self.slots.iter().map(|&b| b as u128).sum();
        let n = self.slots.len() as u32;
        let into_slot = now.since_origin().as_nanos() % self.slot.as_nanos();
        let span = self.slot * (n - 1) + Duration::from_nanos(into_slot as u64);
        // A new flow is measured over the time since its first byte, but at
        // least one slot so that a single sample does not read as a huge speed.
        let covered = span.min(now.saturating_since(started)).max(self.slot);
        (sum * NANOS_PER_SEC / covered.as_nanos()) as u64
    }

    /// Every byte ever counted.
    pub fn total(&self) -> u64 {
        self.total
    }
}

impl Default for RateEstimator {
    fn default() -> Self {
        RateEstimator::new(Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_MSG: u64 = 16 * 1024 + 13;

    fn ms(ms: u64) -> Instant {
        Instant::from_duration(Duration::from_millis(ms))
    }

    /// Drives a bucket-like `take` with demand far above the cap for `secs`
    /// seconds of virtual time: random request sizes, each retried at the
    /// time the limiter says it becomes available (or 1 ms later if it
    /// cannot say). Returns the bytes delivered.
    fn drive(
        secs: u64,
        seed: u64,
        mut take: impl FnMut(u64, Instant) -> bool,
        mut wait: impl FnMut(u64, Instant) -> Option<Duration>,
    ) -> u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let end = Instant::from_duration(Duration::from_secs(secs));
        let mut now = Instant::ZERO;
        let mut delivered = 0;
        let mut n = rng.u64(1..=MAX_MSG);
        while now < end {
            if take(n, now) {
                delivered += n;
                n = rng.u64(1..=MAX_MSG);
                continue;
            }
            let step = wait(n, now)
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_millis(1));
            now += step;
        }
        delivered
    }

    fn within(actual: u64, expected: u64, tolerance: f64) -> bool {
        let diff = (actual as f64 - expected as f64).abs();
        diff <= expected as f64 * tolerance
    }

    #[test]
    fn a_capped_bucket_delivers_its_rate_under_heavy_demand() {
        // Over 10 s, with random sizes up to a piece message, delivered bytes
        // stay within 5 % of rate x time, for slow and fast caps. (The request
        // pending at the end may be up to 16 KiB short, so the slowest cap
        // tested is the one where that is 3 % of the total.)
        for (rate, seed) in [(55_000u64, 1), (250_000, 2), (3_000_000, 3)] {
            let bucket = std::cell::RefCell::new(TokenBucket::with_rate(Some(rate)));
            let delivered = drive(
                10,
                seed,
                |n, now| {
                    let mut b = bucket.borrow_mut();
                    b.refill(now);
                    b.try_take(n)
                },
                |n, now| bucket.borrow_mut().time_until_available(n, now),
            );
            assert!(delivered <= rate * 10, "{delivered} above the cap {rate}");
            assert!(
                within(delivered, rate * 10, 0.05),
                "{delivered} for {rate} B/s"
            );
        }
    }

    #[test]
    fn partial_grants_hold_the_cap_too() {
        // take_up_to hands out what there is; the total still follows the rate.
        let mut b = TokenBucket::with_rate(Some(100_000));
        let mut rng = fastrand::Rng::with_seed(4);
        let mut delivered = 0;
        for step in 0..=10_000u64 {
            b.refill(ms(step));
            delivered += b.take_up_to(rng.u64(1..=MAX_MSG));
        }
        assert!(within(delivered, 1_000_000, 0.05), "{delivered}");
    }

    #[test]
    fn unlimited_bucket_passes_everything() {
        // No cap: every request passes at once, whatever its size.
        let mut b = TokenBucket::unlimited();
        b.refill(Instant::ZERO);
        assert!(b.try_take(u64::MAX));
        assert_eq!(b.take_up_to(1 << 40), 1 << 40);
        assert_eq!(b.time_until_available(1 << 40, ms(0)), Some(Duration::ZERO));
    }

    #[test]
    fn zero_rate_delivers_nothing() {
        // A 0 B/s cap never grants a byte and says so.
        let mut b = TokenBucket::with_rate(Some(0));
        for step in 0..1000 {
            b.refill(ms(step * 10));
            assert!(!b.try_take(1));
            assert_eq!(b.take_up_to(MAX_MSG), 0);
        }
        assert_eq!(b.time_until_available(1, ms(10_000)), None);
    }

    #[test]
    fn credit_never_exceeds_the_burst() {
        // A long idle time does not allow more than one burst at once, and a
        // request above the burst is never satisfiable whole.
        let mut b = TokenBucket::new(Some(1_000), 5_000);
        b.refill(ms(0));
        b.refill(ms(3_600_000));
        assert_eq!(b.available(), 5_000);
        assert_eq!(b.time_until_available(5_001, ms(3_600_000)), None);
        assert_eq!(b.take_up_to(10_000), 5_000);
        assert_eq!(
            b.time_until_available(1_500, ms(3_600_000)),
            Some(Duration::from_millis(1_500))
        );
    }

    #[test]
    fn fractional_refills_are_not_lost() {
        // 1,000 refills 1 ms apart at 999 B/s earn 999 bytes, not 0.
        let mut b = TokenBucket::new(Some(999), 10_000);
        for step in 0..=1000 {
            b.refill(ms(step));
        }
        assert_eq!(b.available(), 999);
    }

    #[test]
    fn a_rate_change_takes_effect_at_once() {
        // 5 s at 200 kB/s then 5 s at 50 kB/s deliver 1.25 MB (within 5 %).
        let bucket = std::cell::RefCell::new(TokenBucket::with_rate(Some(200_000)));
        let changed = std::cell::Cell::new(false);
        let delivered = drive(
            10,
            5,
            |n, now| {
                let mut b = bucket.borrow_mut();
                if !changed.get() && now >= ms(5_000) {
                    b.set_rate(Some(50_000), ms(5_000));
                    changed.set(true);
                }
                b.refill(now);
                b.try_take(n)
            },
            |n, now| {
                // Never sleep past the change.
                let d = bucket.borrow_mut().time_until_available(n, now)?;
                Some(if !changed.get() {
                    d.min(ms(5_000) - now)
                } else {
                    d
                })
            },
        );
        assert!(within(delivered, 1_250_000, 0.05), "{delivered}");
        // Down to zero: nothing more passes, even with credit left.
        let mut b = bucket.into_inner();
        b.set_rate(Some(0), ms(20_000));
        assert!(!b.try_take(1));
    }

    #[test]
    fn global_and_bundle_caps_both_hold() {
        // Two bundles under a 300 kB/s global upload cap, one also capped at
        // 100 kB/s: it gets its 100, the other the remaining ~200, and the sum
        // stays at the global cap.
        let a = InfoHash([1; 20]);
        let b = InfoHash([2; 20]);
        let mut lim: Limiter = Limiter::new(Limits {
            upload: Some(300_000),
            download: None,
        });
        lim.set_bundle_limits(
            a,
            Limits {
                upload: Some(100_000),
                download: None,
            },
            ms(0),
        );
        let mut rng = fastrand::Rng::with_seed(6);
        let (mut got_a, mut got_b) = (0, 0);
        for step in 0..10_000u64 {
            let now = ms(step);
            for _ in 0..4 {
                let n = rng.u64(1..=MAX_MSG);
                if lim.try_take(Direction::Upload, &a, n, now) {
                    got_a += n;
                }
                let n = rng.u64(1..=MAX_MSG);
                if lim.try_take(Direction::Upload, &b, n, now) {
                    got_b += n;
                }
            }
        }
        assert!(within(got_a, 1_000_000, 0.05), "bundle a got {got_a}");
        assert!(got_a + got_b <= 3_000_000, "global cap exceeded");
        assert!(
            within(got_a + got_b, 3_000_000, 0.05),
            "sum {}",
            got_a + got_b
        );
        // Downloads are not capped at all here.
        assert!(lim.try_take(Direction::Download, &a, 1 << 30, ms(10_000)));
    }

    #[test]
    fn refused_credit_goes_back_to_the_other_bucket() {
        // The bundle bucket is empty: the global credit taken for it is
        // returned, and another bundle can use it.
        let a = InfoHash([1; 20]);
        let b = InfoHash([2; 20]);
        let mut lim: Limiter = Limiter::new(Limits {
            upload: Some(1_000_000),
            download: Some(1_000_000),
        });
        lim.set_bundle_limits(
            a,
            Limits {
                upload: Some(0),
                download: None,
            },
            ms(0),
        );
        assert_eq!(lim.take_up_to(Direction::Upload, &a, 1_000, ms(0)), 0);
        // 50 ms at 1 MB/s = the global burst of 50,000 bytes.
        assert_eq!(lim.take_up_to(Direction::Upload, &a, 10_000, ms(50)), 0);
        assert!(!lim.try_take(Direction::Upload, &a, 10_000, ms(50)));
        assert_eq!(
            lim.take_up_to(Direction::Upload, &b, 100_000, ms(50)),
            50_000
        );
        assert_eq!(
            lim.time_until_available(Direction::Upload, &a, 1, ms(50)),
            None
        );
        lim.remove_bundle(&a);
        assert_eq!(lim.bundle_limits(&a), Limits::default());
        assert_eq!(
            lim.time_until_available(Direction::Upload, &a, 1_000, ms(50)),
            Some(Duration::from_millis(1))
        );
    }

    #[test]
    fn rate_estimator_follows_a_steady_flow_and_its_changes() {
        // 100 kB/s in 10 ms steps reads as 100 kB/s; after a drop to 20 kB/s
        // the window forgets the old speed within 5 s; silence reads as zero.
        let mut r = RateEstimator::default();
        let mut now = 0;
        while now < 10_000 {
            r.record(1_000, ms(now));
            now += 10;
        }
        assert!(
            within(r.rate(ms(now)), 100_000, 0.03),
            "{}",
            r.rate(ms(now))
        );
        while now < 20_000 {
            r.record(200, ms(now));
            now += 10;
        }
        assert!(within(r.rate(ms(now)), 20_000, 0.03), "{}", r.rate(ms(now)));
        assert_eq!(r.rate(ms(now + 5_500)), 0);
        assert_eq!(r.total(), 1_000 * 1_000 + 1_000 * 200);
    }

    #[test]
    fn rate_estimator_reads_a_new_flow_at_once() {
        // One second into a 50 kB/s transfer the speed is already ~50 kB/s,
        // not a fifth of it.
        let mut r = RateEstimator::default();
        assert_eq!(r.rate(ms(0)), 0);
        for step in 0..100 {
            r.record(500, ms(30_000 + step * 10));
        }
        assert!(
            within(r.rate(ms(31_000)), 50_000, 0.05),
            "{}",
            r.rate(ms(31_000))
        );
    }
}
