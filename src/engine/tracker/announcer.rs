//! Announce scheduling for one torrent on one tracker connection, in virtual time.

use std::time::Duration;

use super::codec::encode_announce;
use super::{AnnounceParams, Event, OfferId};
use crate::engine::ids::{InfoHash, PeerId};
use crate::engine::time::Instant;

/// Re-announce interval until the tracker names one (the reference
/// trackers' default for WebSocket clients).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(120);
/// Shortest re-announce interval honoured, whatever the tracker says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Longest re-announce interval honoured: offers reach only peers already in
/// the swarm, so a long silence means no new connections.
pub const MAX_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Most offers in one announce (`numwant`); more is not safe with every
/// tracker.
pub const MAX_OFFERS: usize = 10;
/// Offers per announce until the caller says otherwise (as WebTorrent).
pub const DEFAULT_OFFERS: usize = 5;
/// First delay after a failure; it doubles with each further failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(15);
/// Longest delay after failures.
pub const BACKOFF_CAP: Duration = Duration::from_secs(10 * 60);
/// First early re-announce of a lonely download (no connected peer): its
/// offers went unanswered or their connections failed. It doubles with each
/// further announce that leaves it alone, up to the regular interval.
pub const LONELY_RETRY_BASE: Duration = Duration::from_secs(5);

/// Exponential backoff: `base`, `2 × base`, `4 × base`, … up to `cap`.
///
/// Used by the [`Announcer`] after tracker failures, and meant for the
/// tracker socket's reconnects too (with
/// [`next_delay_jittered`](Self::next_delay_jittered), so clients that lost the same tracker do not
/// all come back at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BACKOFF_BASE, BACKOFF_CAP)
    }
}

impl Backoff {
    /// A backoff starting at `base` and never longer than `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// Failures recorded since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before trying again.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// Like [`next_delay`](Self::next_delay), but a random point in the
    /// upper half of that delay, drawn from the caller's seeded `rng`.
    pub fn next_delay_jittered(&mut self, rng: &mut fastrand::Rng) -> Duration {
        let delay = self.next_delay();
        let half = delay / 2;
        let extra_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        delay - half + Duration::from_millis(rng.u64(0..=extra_ms))
    }

    /// Forgets past failures (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The counters an announce reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AnnounceStats {
    /// Bytes uploaded to peers.
    pub uploaded: u64,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes still missing; `None` while the size is unknown (no metadata).
    pub left: Option<u64>,
}

/// An announce is due: make this many offers, then call
/// [`Announcer::announce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnounceNeed {
    /// Offers to create (0 to [`MAX_OFFERS`]; always 0 for `completed` and
    /// `stopped`).
    pub offers_wanted: usize,
    /// The event this announce carries.
    pub event: Option<Event>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not started, or stopped.
    Idle,
    /// In the swarm, or trying to join it.
    Running,
    /// Stop requested; a `stopped` announce is due.
    Stopping,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Completion {
    /// The download has not finished (or the announcer was never told).
    NotYet,
    /// It finished; `completed` not yet sent.
    Due,
    /// `completed` sent, or made unnecessary by a later `started`.
    Done,
}

/// Announce scheduling for one torrent on one tracker connection.
///
/// It decides when to announce, with which event and how many
/// offers; the caller makes the offers (asynchronously: WebRTC offers take
/// seconds to gather their candidates) and gets back the JSON to send.
///
/// Its methods fall in three groups, in the style of quinn-proto:
///
/// - inputs: [`on_connected`](Announcer::on_connected),
///   [`on_disconnected`](Announcer::on_disconnected),
///   [`start`](Announcer::start), [`complete`](Announcer::complete),
///   [`stop`](Announcer::stop),
///   [`set_offers_wanted`](Announcer::set_offers_wanted),
///   [`on_response`](Announcer::on_response),
///   [`on_failure`](Announcer::on_failure);
/// - outputs: [`poll`](Announcer::poll) (an [`AnnounceNeed`] when an announce
///   is due) and [`poll_timeout`](Announcer::poll_timeout) (when to call
///   `poll` next);
/// - the answer to a need: [`announce`](Announcer::announce), which returns
///   the frame to send.
///
/// The run loop: after any input, call `poll(now)`; for each need, create
/// `offers_wanted` offers (possibly zero, then answer at once), record them in
/// an [`OfferBook`](super::OfferBook), and call `announce` with the offers that
/// could be made (a failed or slow offer is simply left out: every need must
/// be answered by one `announce` call, or `poll` stays quiet). Arm a timer at
/// `poll_timeout()`.
///
/// Rules: the first announce on a connection is `started` (the tracker forgets
/// a peer whose socket closes, so every reconnect starts again); then a
/// regular announce every `interval` (the tracker's, clamped to
/// [`MIN_INTERVAL`]..=[`MAX_INTERVAL`], [`DEFAULT_INTERVAL`] until it says);
/// `completed` once, at once, when the download finishes (not needed if a
/// `started` goes out after it: its `left` says we are complete); `stopped`
/// on stop, only if the tracker holds us. A failure for this torrent while
/// an announce awaits its response backs off exponentially and retries with
/// `started`; a reconnect resets the backoff. Responses and failures that
/// arrive while no announce of ours awaits one (aquatic_ws also answers the
/// announces that carry our answers, and reports failures about them) are
/// ignored, so they can neither postpone nor fail our schedule. A download
/// with no connected peer is [lonely](Self::set_lonely): it announces again
/// [`LONELY_RETRY_BASE`] after its last announce, then after 10 s, 20 s, …
/// up to the interval, until a peer connects.
#[derive(Clone, Debug)]
pub struct Announcer {
    info_hash: InfoHash,
    peer_id: PeerId,
    phase: Phase,
    connected: bool,
    /// `started` went out on this connection and no failure came since: the
    /// tracker holds us in its swarm.
    announced: bool,
    completion: Completion,
    offers_wanted: usize,
    interval: Duration,
    /// When the next announce is due (while running or stopping).
    due: Option<Instant>,
    /// When the last announce went out.
    last_sent: Option<Instant>,
    /// A need handed out by `poll`, not yet answered by `announce`.
    pending: Option<AnnounceNeed>,
    /// An announce went out and neither its response nor a failure came.
    awaiting_response: bool,
    backoff: Backoff,
    /// A download with no connected peer (see [`set_lonely`](Self::set_lonely)).
    lonely: bool,
    /// Delays between early re-announces while lonely.
    lonely_backoff: Backoff,
    /// While lonely: the next announce is due this long after the last one.
    lonely_delay: Option<Duration>,
}

impl Announcer {
    /// An idle announcer for `info_hash` announcing as `peer_id`, on a
    /// connection not yet open (call [`on_connected`](Self::on_connected) when
    /// it is).
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        Announcer {
            info_hash,
            peer_id,
            phase: Phase::Idle,
            connected: false,
            announced: false,
            completion: Completion::NotYet,
            offers_wanted: DEFAULT_OFFERS,
            interval: DEFAULT_INTERVAL,
            due: None,
            last_sent: None,
            pending: None,
            awaiting_response: false,
            backoff: Backoff::default(),
            lonely: false,
            lonely_backoff: Backoff::new(LONELY_RETRY_BASE, MAX_INTERVAL),
            lonely_delay: None,
        }
    }

    // ------------------------------------------------------------ getters

    /// The torrent.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Started and not (yet) stopped.
    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// The tracker holds us in its swarm (as far as we know).
    pub fn is_announced(&self) -> bool {
        self.announced
    }

    /// The re-announce interval in force.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Offers asked for in `started` and regular announces.
    pub fn offers_wanted(&self) -> usize {
        self.offers_wanted
    }

    // ------------------------------------------------------------- inputs

    /// The tracker socket is open (first time or after a reconnect): the
    /// tracker knows nothing of us, so a running torrent announces `started`
    /// at once, and the backoff starts over.
    pub fn on_connected(&mut self, now: Instant) {
        self.connected = true;
        self.forget_connection_state();
        self.backoff.reset();
        match self.phase {
            Phase::Running => self.due = Some(now),
            // The tracker dropped us with the old socket: nothing to stop.
            Phase::Stopping => self.go_idle(),
            Phase::Idle => {}
        }
    }

    /// The tracker socket closed: the tracker dropped us from its swarm, and
    /// a need handed out but not yet answered is void (`announce` will return
    /// `None` for it).
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.forget_connection_state();
        if self.phase == Phase::Stopping {
            self.go_idle();
        }
    }

    /// Join the swarm: announce `started` as soon as connected. Resumes a
    /// stop that has not gone out yet. No effect while running.
    pub fn start(&mut self, now: Instant) {
        match self.phase {
            Phase::Running => {}
            Phase::Idle | Phase::Stopping => {
                self.phase = Phase::Running;
                self.pending = None;
                self.due = Some(now);
            }
        }
    }

    /// The download finished: announce `completed` once, at once (or let the
    /// next `started` say it, if the tracker does not hold us yet).
    pub fn complete(&mut self, now: Instant) {
        if self.completion != Completion::NotYet {
            return;
        }
        self.completion = Completion::Due;
        if self.phase == Phase::Running && self.announced {
            self.due = Some(self.due.map_or(now, |d| d.min(now)));
        }
    }

    /// Leave the swarm: announce `stopped` at once if the tracker holds us,
    /// else just go idle. A need handed out but not yet answered is void.
    pub fn stop(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        self.pending = None;
        if self.connected && self.announced {
            self.phase = Phase::Stopping;
            self.due = Some(now);
        } else {
            self.go_idle();
        }
    }

    /// How many offers `started` and regular announces should carry: fewer
    /// (or none) when the torrent has enough peers or is seeding. Capped at
    /// [`MAX_OFFERS`]. Takes effect from the next need.
    pub fn set_offers_wanted(&mut self, offers: usize) {
        self.offers_wanted = offers.min(MAX_OFFERS);
    }

    /// Whether the torrent is a download that needs pieces and has no
    /// connected peer (its last offers went unanswered, or their connections
    /// failed). While it is, the next announce comes [`LONELY_RETRY_BASE`]
    /// after the last one, and each announce that leaves it lonely doubles
    /// that delay, up to the interval; once a peer connects the regular
    /// interval applies again. Call it whenever that may have changed (it
    /// does nothing if it has not).
    pub fn set_lonely(&mut self, now: Instant, lonely: bool) {
        if lonely == self.lonely {
            return;
        }
        self.lonely = lonely;
        self.lonely_backoff.reset();
        // Lonely since the announce that went out: that one counts as the
        // first try. Lonely before any: the first announce will count.
        self.lonely_delay = match (lonely, self.announced) {
            (false, _) => None,
            (true, true) => Some(self.lonely_backoff.next_delay()),
            (true, false) => Some(LONELY_RETRY_BASE),
        };
        // Only a regular announce moves: `started`, a retry after a failure
        // and `completed` keep their time.
        if self.phase == Phase::Running
            && self.announced
            && self.pending.is_none()
            && self.completion != Completion::Due
            && self.due.is_some()
        {
            self.schedule_next(now);
        }
    }

    /// The tracker answered an announce for this torrent, asking for
    /// `interval` (unclamped, as
    /// [`FromTracker::AnnounceResponse`](super::FromTracker::AnnounceResponse)
    /// carries it). Returns whether it
    /// was taken as the response to our last announce (`false`: none awaited
    /// one, and it changed nothing).
    pub fn on_response(&mut self, now: Instant, interval: Option<Duration>) -> bool {
        if !self.awaiting_response {
            return false;
        }
        self.awaiting_response = false;
        self.backoff.reset();
        if let Some(interval) = interval {
            self.interval = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
            if self.phase == Phase::Running && self.pending.is_none() {
                self.schedule_next(now);
            }
        }
        true
    }

    /// The tracker sent a failure for this torrent. If an announce of ours
    /// awaited its response, the failure is its outcome: retry with `started`
    /// after a backoff, and return `true`. Otherwise it concerns something
    /// else (an answer we relayed, say) and is ignored: `false`.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        if !self.awaiting_response {
            return false;
        }
        self.awaiting_response = false;
        let delay = self.backoff.next_delay();
        self.announced = false;
        if self.phase == Phase::Running {
            self.pending = None;
            self.due = Some(now + delay);
        }
        true
    }

    // ------------------------------------------------------------ outputs

    /// An announce is due at `now`: create `offers_wanted` offers and call
    /// [`announce`](Self::announce). Returns `None` while disconnected, idle,
    /// not yet due, or while a need handed out earlier is still unanswered.
    #[must_use]
    pub fn poll(&mut self, now: Instant) -> Option<AnnounceNeed> {
        if !self.connected || self.pending.is_some() || now < self.due? {
            return None;
        }
        let need = match self.phase {
            Phase::Idle => return None,
            Phase::Stopping => AnnounceNeed {
                offers_wanted: 0,
                event: Some(Event::Stopped),
            },
            Phase::Running if !self.announced => AnnounceNeed {
                offers_wanted: self.offers_wanted,
                event: Some(Event::Started),
            },
            Phase::Running if self.completion == Completion::Due => AnnounceNeed {
                offers_wanted: 0,
                event: Some(Event::Completed),
            },
            Phase::Running => AnnounceNeed {
                offers_wanted: self.offers_wanted,
                event: None,
            },
        };
        self.pending = Some(need);
        Some(need)
    }

    /// Answers the need [`poll`](Self::poll) handed out: returns the frame to
    /// send, with `stats` and the `offers` made (those beyond the need's
    /// `offers_wanted` are left out; they expire from the offer book). `None`
    /// if no need is outstanding (it was voided by a disconnect, stop or
    /// failure): send nothing and close the offers' connections.
    pub fn announce(
        &mut self,
        now: Instant,
        stats: &AnnounceStats,
        mut offers: Vec<(OfferId, String)>,
    ) -> Option<String> {
        let need = self.pending.take()?;
        offers.truncate(need.offers_wanted);
        let frame = encode_announce(&AnnounceParams {
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            uploaded: stats.uploaded,
            downloaded: stats.downloaded,
            left: stats.left,
            event: need.event,
            offers,
        });
        self.last_sent = Some(now);
        match need.event {
            Some(Event::Stopped) => {
                self.go_idle();
                return Some(frame);
            }
            Some(Event::Started) => {
                self.announced = true;
                if self.completion == Completion::Due {
                    self.completion = Completion::Done;
                }
            }
            Some(Event::Completed) => self.completion = Completion::Done,
            None => {}
        }
        if self.lonely {
            self.lonely_delay = Some(self.lonely_backoff.next_delay());
        }
        self.awaiting_response = true;
        self.schedule_next(now);
        Some(frame)
    }

    /// When [`poll`](Self::poll) will next have something: arm one timer for
    /// it. `None` while disconnected, idle, or waiting for an `announce` call.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.connected || self.pending.is_some() || self.phase == Phase::Idle {
            return None;
        }
        self.due
    }

    // ------------------------------------------------------------ helpers

    /// The next announce while running and announced: `completed` at once if
    /// due, else one interval after the last announce, or sooner while
    /// lonely.
    fn schedule_next(&mut self, now: Instant) {
        let last = self.last_sent.unwrap_or(now);
        let wait = self
            .lonely_delay
            .map_or(self.interval, |d| d.min(self.interval));
        self.due = Some(if self.completion == Completion::Due {
            now
        } else {
            last + wait
        });
    }

    fn forget_connection_state(&mut self) {
        self.announced = false;
        self.awaiting_response = false;
        self.pending = None;
    }

    fn go_idle(&mut self) {
        self.phase = Phase::Idle;
        self.announced = false;
        self.awaiting_response = false;
        self.pending = None;
        self.due = None;
    }
}

#[cfg(test)]
mod tests;
