//! The upload of a sent bundle to the availability server, as a sans-IO plan:
//! which request goes next, how many pieces at once, retries with backoff.
//!
//! The server verifies every piece against its SHA-1 and tells which pieces it
//! holds, so an upload resumes by nature: [`Upload`] asks for the server's
//! have-bitfield first (creating the bundle there when it does not exist),
//! then puts the missing pieces a few at a time, in order. The glue performs
//! each [`UploadAction`] (an HTTP request) and reports its outcome; time is an
//! input, as everywhere in the engine.
//!
//! Drive it like the client: after each `on_*` call, take actions from
//! [`Upload::poll_action`] until it returns `None`, then wake it at
//! [`Upload::poll_timeout`] and poll again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::engine::bitfield::Bitfield;
use crate::engine::lengths::{Lengths, PieceIndex};
use crate::engine::time::Instant;
use crate::engine::tracker::Backoff;

/// How an upload behaves; [`UploadConfig::default`] gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadConfig {
    /// Piece uploads in flight at once.
    pub parallel: usize,
    /// First wait after a failure that may pass; doubles with each
    /// consecutive failure.
    pub backoff_base: Duration,
    /// Longest wait between retries.
    pub backoff_cap: Duration,
    /// Attempts of one piece before the upload gives up.
    pub max_piece_attempts: u32,
}

impl Default for UploadConfig {
    /// Four pieces at once; retries after 1 s, 2 s, 4 s… up to a minute; a
    /// piece is tried ten times.
    fn default() -> Self {
        UploadConfig {
            parallel: 4,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            max_piece_attempts: 10,
        }
    }
}

/// One request for the glue to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadAction {
    /// `POST` the `.torrent` to create the bundle and receive an owner
    /// token; answer with [`Upload::on_status`] (the new bundle's
    /// have-bitfield) or [`Upload::on_request_failed`].
    Create,
    /// `GET` the bundle's state; answer with [`Upload::on_status`] or
    /// [`Upload::on_request_failed`] ([`UploadFailure::Missing`] when the
    /// server does not know the bundle).
    Status,
    /// `PUT` this piece with the owner token; answer with
    /// [`Upload::on_piece_stored`] or [`Upload::on_piece_failed`].
    Put(PieceIndex),
}

/// How a request failed, as far as the plan is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadFailure {
    /// Worth retrying later: the network, a timeout, a 5xx, a 429.
    Retry(String),
    /// The server does not have the bundle (404): it expired or was deleted;
    /// it is created again.
    Missing,
    /// Retrying cannot help (a piece that does not match its hash, a refused
    /// token, a bundle over the server's limit): the upload stops.
    Fatal(String),
}

/// Where an upload stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadPhase {
    /// Creating the bundle on the server.
    Creating,
    /// Asking the server which pieces it holds.
    Checking,
    /// Putting the missing pieces.
    Uploading,
    /// The server holds every piece.
    Done,
    /// Stopped for good, with the reason.
    Failed(String),
}

/// An upload's figures, for the UI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadProgress {
    /// The phase.
    pub phase: UploadPhase,
    /// Whether the upload is paused.
    pub paused: bool,
    /// Pieces the server holds.
    pub pieces_done: u32,
    /// Pieces of the bundle.
    pub pieces_total: u32,
    /// Bytes the server holds.
    pub bytes_done: u64,
    /// Bytes of the bundle.
    pub bytes_total: u64,
    /// Bytes put by this upload so far (not counting what the server had).
    pub bytes_sent: u64,
}

/// The plan of one bundle's upload. See the module documentation.
#[derive(Debug)]
pub struct Upload {
    lengths: Lengths,
    config: UploadConfig,
    phase: UploadPhase,
    paused: bool,
    /// What the server holds, as far as we know.
    server_have: Bitfield,
    /// Missing pieces not in flight, in the order they go.
    queue: VecDeque<PieceIndex>,
    in_flight: BTreeSet<PieceIndex>,
    /// Failed attempts per piece.
    attempts: BTreeMap<PieceIndex, u32>,
    /// A create or status request is out.
    request_out: bool,
    backoff: Backoff,
    /// No new request before this instant.
    retry_at: Option<Instant>,
    bytes_sent: u64,
}

impl Upload {
    /// A new upload. `token_known`: the owner token of an earlier creation is
    /// at hand (a resumed upload), so the plan starts by asking the server's
    /// state instead of creating the bundle.
    pub fn new(lengths: Lengths, token_known: bool, config: UploadConfig) -> Self {
        let backoff = Backoff::new(config.backoff_base, config.backoff_cap);
        Upload {
            server_have: Bitfield::new(lengths.num_pieces()),
            lengths,
            config,
            phase: if token_known {
                UploadPhase::Checking
            } else {
                UploadPhase::Creating
            },
            paused: false,
            queue: VecDeque::new(),
            in_flight: BTreeSet::new(),
            attempts: BTreeMap::new(),
            request_out: false,
            backoff,
            retry_at: None,
            bytes_sent: 0,
        }
    }

    // ----- getters -----

    /// The phase.
    pub fn phase(&self) -> &UploadPhase {
        &self.phase
    }

    /// Whether the server holds every piece.
    pub fn is_done(&self) -> bool {
        self.phase == UploadPhase::Done
    }

    /// Whether the upload stopped for good.
    pub fn is_failed(&self) -> bool {
        matches!(self.phase, UploadPhase::Failed(_))
    }

    /// Pieces being put now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The figures now.
    pub fn progress(&self) -> UploadProgress {
        let bytes_done = self
            .server_have
            .iter_ones()
            .filter_map(|i| self.lengths.validate_piece(i))
            .map(|p| u64::from(self.lengths.piece_len(p)))
            .sum();
        UploadProgress {
            phase: self.phase.clone(),
            paused: self.paused,
            pieces_done: self.server_have.count_ones(),
            pieces_total: self.lengths.num_pieces(),
            bytes_done,
            bytes_total: self.lengths.total_length(),
            bytes_sent: self.bytes_sent,
        }
    }

    // ----- outputs -----

    /// The next request to make, if any may start at `now`.
    #[must_use]
    pub fn poll_action(&mut self, now: Instant) -> Option<UploadAction> {
        if self.paused || self.retry_at.is_some_and(|t| t > now) {
            return None;
        }
        match self.phase {
            UploadPhase::Creating | UploadPhase::Checking if !self.request_out => {
                // Pieces still out from before a 404 finish first.
                if !self.in_flight.is_empty() {
                    return None;
                }
                self.request_out = true;
                Some(if self.phase == UploadPhase::Creating {
                    UploadAction::Create
                } else {
                    UploadAction::Status
                })
            }
            UploadPhase::Uploading if self.in_flight.len() < self.config.parallel.max(1) => {
                let piece = self.queue.pop_front()?;
                self.in_flight.insert(piece);
                Some(UploadAction::Put(piece))
            }
            _ => None,
        }
    }

    /// When [`poll_action`](Self::poll_action) may have something again
    /// because a backoff ends; `None` when only a request's outcome can
    /// bring new work.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.paused || self.is_done() || self.is_failed() {
            return None;
        }
        self.retry_at
    }

    // ----- inputs -----

    /// The server's have-bitfield, from a create (all zeros, or what a
    /// bundle created earlier holds) or a status request. A bitfield of the
    /// wrong length stops the upload: the server describes another bundle.
    pub fn on_status(&mut self, have: Bitfield) {
        self.request_out = false;
        if self.is_failed() || self.is_done() {
            return;
        }
        if have.len() != self.lengths.num_pieces() {
            self.phase = UploadPhase::Failed(format!(
                "the server describes {} pieces, the bundle has {}",
                have.len(),
                self.lengths.num_pieces()
            ));
            return;
        }
        self.backoff.reset();
        self.retry_at = None;
        // What is in flight stays in flight: its outcome says the rest.
        self.server_have = have;
        self.queue = self
            .server_have
            .iter_zeros()
            .filter_map(|i| self.lengths.validate_piece(i))
            .filter(|p| !self.in_flight.contains(p))
            .collect();
        self.phase = UploadPhase::Uploading;
        self.check_done();
    }

    /// A create or status request failed.
    pub fn on_request_failed(&mut self, now: Instant, failure: UploadFailure) {
        self.request_out = false;
        if self.is_failed() || self.is_done() {
            return;
        }
        match failure {
            UploadFailure::Retry(_) => self.back_off(now),
            UploadFailure::Missing => {
                if self.phase == UploadPhase::Creating {
                    // The server answered "not found" to a creation: it is not
                    // the server we think it is.
                    self.phase =
                        UploadPhase::Failed("the server has no bundle API at this address".into());
                } else {
                    self.phase = UploadPhase::Creating;
                }
            }
            UploadFailure::Fatal(reason) => self.phase = UploadPhase::Failed(reason),
        }
    }

    /// The server stored (or already had) a piece.
    pub fn on_piece_stored(&mut self, piece: PieceIndex) {
        if !self.in_flight.remove(&piece) {
            return;
        }
        if self.server_have.set(piece.get(), true) {
            self.bytes_sent += u64::from(self.lengths.piece_len(piece));
        }
        self.attempts.remove(&piece);
        self.backoff.reset();
        self.retry_at = None;
        self.check_done();
    }

    /// A piece's upload failed.
    pub fn on_piece_failed(&mut self, now: Instant, piece: PieceIndex, failure: UploadFailure) {
        if !self.in_flight.remove(&piece) {
            return;
        }
        if self.is_failed() {
            return;
        }
        match failure {
            UploadFailure::Retry(reason) => {
                let attempts = self.attempts.entry(piece).or_insert(0);
                *attempts += 1;
                if *attempts >= self.config.max_piece_attempts {
                    self.phase = UploadPhase::Failed(format!(
                        "piece {} failed {} times: {reason}",
                        piece.get(),
                        attempts
                    ));
                    return;
                }
                self.queue.push_front(piece);
                self.back_off(now);
            }
            UploadFailure::Missing => {
                self.queue.push_front(piece);
                if self.phase == UploadPhase::Uploading {
                    self.phase = UploadPhase::Creating;
                    self.server_have = Bitfield::new(self.lengths.num_pieces());
                }
            }
            UploadFailure::Fatal(reason) => {
                self.phase = UploadPhase::Failed(format!("piece {}: {reason}", piece.get()));
            }
        }
    }

    /// Stops starting requests (those out still report).
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Starts requests again, at once.
    pub fn resume(&mut self) {
        self.paused = false;
        self.retry_at = None;
    }

    // ----- helpers -----

    fn back_off(&mut self, now: Instant) {
        let delay = self.backoff.next_delay();
        self.retry_at = Some(now + delay);
    }

    fn check_done(&mut self) {
        if self.phase == UploadPhase::Uploading
            && self.server_have.is_full()
            && self.in_flight.is_empty()
        {
            self.phase = UploadPhase::Done;
            self.queue.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIECE: u64 = 16 * 1024;

    fn lengths(pieces: u64) -> Lengths {
        Lengths::new(pieces * PIECE - 100, PIECE).expect("valid lengths")
    }

    fn at(secs: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(secs))
    }

    fn piece(l: &Lengths, i: u32) -> PieceIndex {
        l.validate_piece(i).expect("piece in range")
    }

    fn drain(u: &mut Upload, now: Instant) -> Vec<UploadAction> {
        std::iter::from_fn(|| u.poll_action(now)).collect()
    }

    #[test]
    fn a_new_upload_creates_the_bundle_then_puts_every_piece_a_few_at_a_time() {
        let l = lengths(10);
        let mut u = Upload::new(l, false, UploadConfig::default());
        assert_eq!(drain(&mut u, at(0)), vec![UploadAction::Create]);
        assert_eq!(drain(&mut u, at(0)), vec![], "one create at a time");
        u.on_status(Bitfield::new(10));
        let first = drain(&mut u, at(0));
        assert_eq!(
            first,
            (0..4)
                .map(|i| UploadAction::Put(piece(&l, i)))
                .collect::<Vec<_>>()
        );
        for i in 0..10 {
            u.on_piece_stored(piece(&l, i));
            let _ = drain(&mut u, at(0));
        }
        assert!(u.is_done());
        let p = u.progress();
        assert_eq!((p.pieces_done, p.pieces_total), (10, 10));
        assert_eq!(p.bytes_done, l.total_length());
        assert_eq!(p.bytes_sent, l.total_length());
    }

    #[test]
    fn a_resumed_upload_asks_the_server_and_sends_only_the_missing_pieces() {
        let l = lengths(6);
        let mut u = Upload::new(l, true, UploadConfig::default());
        assert_eq!(drain(&mut u, at(0)), vec![UploadAction::Status]);
        let mut have = Bitfield::new(6);
        for i in [0, 1, 3, 5] {
            have.set(i, true);
        }
        u.on_status(have);
        assert_eq!(
            drain(&mut u, at(0)),
            vec![
                UploadAction::Put(piece(&l, 2)),
                UploadAction::Put(piece(&l, 4))
            ]
        );
        u.on_piece_stored(piece(&l, 2));
        u.on_piece_stored(piece(&l, 4));
        assert!(u.is_done());
        assert_eq!(u.progress().bytes_sent, 2 * PIECE);
    }

    #[test]
    fn a_server_that_already_holds_everything_finishes_the_upload_at_once() {
        let l = lengths(3);
        let mut u = Upload::new(l, true, UploadConfig::default());
        let _ = drain(&mut u, at(0));
        u.on_status(Bitfield::full(3));
        assert!(u.is_done());
        assert_eq!(drain(&mut u, at(0)), vec![]);
        assert_eq!(u.poll_timeout(), None);
    }

    #[test]
    fn failures_back_off_exponentially_and_a_success_resets_the_backoff() {
        let l = lengths(4);
        let config = UploadConfig {
            parallel: 1,
            ..UploadConfig::default()
        };
        let mut u = Upload::new(l, true, config);
        let _ = drain(&mut u, at(0));
        u.on_request_failed(at(0), UploadFailure::Retry("connection refused".into()));
        assert_eq!(u.poll_timeout(), Some(at(1)));
        assert_eq!(drain(&mut u, at(0)), vec![], "nothing during the backoff");
        assert_eq!(drain(&mut u, at(1)), vec![UploadAction::Status]);
        u.on_request_failed(at(1), UploadFailure::Retry("503".into()));
        assert_eq!(u.poll_timeout(), Some(at(3)), "the second wait is 2 s");
        assert_eq!(drain(&mut u, at(3)), vec![UploadAction::Status]);
        u.on_status(Bitfield::new(4));
        assert_eq!(u.poll_timeout(), None);
        assert_eq!(drain(&mut u, at(3)), vec![UploadAction::Put(piece(&l, 0))]);
        u.on_piece_failed(at(3), piece(&l, 0), UploadFailure::Retry("reset".into()));
        assert_eq!(u.poll_timeout(), Some(at(4)), "a success reset the backoff");
        assert_eq!(
            drain(&mut u, at(4)),
            vec![UploadAction::Put(piece(&l, 0))],
            "the failed piece goes first again"
        );
    }

    #[test]
    fn a_piece_that_keeps_failing_stops_the_upload_after_its_attempts() {
        let l = lengths(2);
        let config = UploadConfig {
            max_piece_attempts: 3,
            parallel: 1,
            ..UploadConfig::default()
        };
        let mut u = Upload::new(l, true, config);
        let _ = drain(&mut u, at(0));
        u.on_status(Bitfield::new(2));
        let mut now = at(0);
        for _ in 0..3 {
            let actions = drain(&mut u, now);
            assert_eq!(actions, vec![UploadAction::Put(piece(&l, 0))]);
            u.on_piece_failed(now, piece(&l, 0), UploadFailure::Retry("timeout".into()));
            now = u.poll_timeout().unwrap_or(now);
        }
        assert!(u.is_failed(), "{:?}", u.phase());
        assert_eq!(drain(&mut u, at(1000)), vec![]);
    }

    #[test]
    fn a_piece_refused_for_its_hash_stops_the_upload_with_the_reason() {
        let l = lengths(2);
        let mut u = Upload::new(l, true, UploadConfig::default());
        let _ = drain(&mut u, at(0));
        u.on_status(Bitfield::new(2));
        let _ = drain(&mut u, at(0));
        u.on_piece_failed(
            at(0),
            piece(&l, 1),
            UploadFailure::Fatal("does not match its sha-1".into()),
        );
        assert_eq!(
            u.phase(),
            &UploadPhase::Failed("piece 1: does not match its sha-1".into())
        );
        u.on_piece_stored(piece(&l, 0));
        assert!(u.is_failed(), "a late success does not revive it");
    }

    #[test]
    fn a_bundle_gone_from_the_server_is_created_again_once_pieces_in_flight_return() {
        let l = lengths(5);
        let mut u = Upload::new(l, true, UploadConfig::default());
        let _ = drain(&mut u, at(0));
        u.on_status(Bitfield::new(5));
        let out = drain(&mut u, at(0));
        assert_eq!(out.len(), 4);
        u.on_piece_stored(piece(&l, 0));
        u.on_piece_failed(at(0), piece(&l, 1), UploadFailure::Missing);
        assert_eq!(u.phase(), &UploadPhase::Creating);
        assert_eq!(drain(&mut u, at(0)), vec![], "pieces 2 and 3 are still out");
        u.on_piece_failed(at(0), piece(&l, 2), UploadFailure::Missing);
        u.on_piece_failed(at(0), piece(&l, 3), UploadFailure::Missing);
        assert_eq!(drain(&mut u, at(0)), vec![UploadAction::Create]);
        u.on_status(Bitfield::new(5));
        let puts = drain(&mut u, at(0));
        assert_eq!(
            puts,
            (0..4)
                .map(|i| UploadAction::Put(piece(&l, i)))
                .collect::<Vec<_>>(),
            "the recreated bundle is empty: everything goes again"
        );
        assert_eq!(u.progress().pieces_done, 0);
    }

    #[test]
    fn a_status_of_the_wrong_length_stops_the_upload() {
        let l = lengths(5);
        let mut u = Upload::new(l, true, UploadConfig::default());
        let _ = drain(&mut u, at(0));
        u.on_status(Bitfield::new(7));
        assert!(u.is_failed());
    }

    #[test]
    fn a_paused_upload_starts_nothing_until_resumed() {
        let l = lengths(5);
        let mut u = Upload::new(l, false, UploadConfig::default());
        u.pause();
        assert_eq!(drain(&mut u, at(0)), vec![]);
        assert_eq!(u.poll_timeout(), None);
        assert!(u.progress().paused);
        u.resume();
        assert_eq!(drain(&mut u, at(0)), vec![UploadAction::Create]);
    }

    #[test]
    fn a_late_outcome_for_a_piece_not_in_flight_is_ignored() {
        let l = lengths(3);
        let mut u = Upload::new(l, true, UploadConfig::default());
        let _ = drain(&mut u, at(0));
        u.on_status(Bitfield::new(3));
        u.on_piece_stored(piece(&l, 2));
        assert_eq!(u.progress().pieces_done, 0);
        u.on_piece_failed(at(0), piece(&l, 2), UploadFailure::Fatal("x".into()));
        assert!(!u.is_failed());
    }
}
