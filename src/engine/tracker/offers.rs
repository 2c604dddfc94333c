//! The offer book: our WebRTC offers waiting for an answer, each abandoned after [`OFFER_TIMEOUT`].
//!
//! The caller makes an offer (a peer connection it holds under some token),
//! records it here with the offer id it sent to the tracker, and looks it up
//! when an answer arrives. An answer is honoured only for an offer that is
//! still in the book, for the same torrent, and not older than the timeout;
//! everything else is reported, never trusted. Expired offers come back out
//! of [`OfferBook::expire`] so the caller can close their connections.

use std::collections::BTreeMap;
use std::time::Duration;

use super::OfferId;
use crate::engine::ids::InfoHash;
use crate::engine::sort;
use crate::engine::time::Instant;

/// How long an offer waits for its answer before it is abandoned (the
/// reference client's `OFFER_TIMEOUT`).
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(50);

/// What became of an answer looked up with [`OfferBook::answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerLookup<T> {
    /// The answer is for a live offer of ours: here is its token, now out of
    /// the book. Hand the answer to that connection.
    Matched(T),
    /// The offer had timed out (but [`OfferBook::expire`] had not collected it
    /// yet): its token, now out of the book. Close that connection.
    Expired(T),
    /// No offer of ours has that id for that torrent (never made, already
    /// answered or expired, or a different torrent). Ignore the answer.
    Unknown,
}

#[derive(Clone, Debug)]
struct Entry<T> {
    info_hash: InfoHash,
    created_at: Instant,
    token: T,
}

/// Offers waiting for an answer, keyed by offer id. `T` is the caller's token
/// for the peer connection behind each offer.
#[derive(Clone, Debug)]
pub struct OfferBook<T> {
    entries: BTreeMap<OfferId, Entry<T>>,
    timeout: Duration,
}

impl<T> Default for OfferBook<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> OfferBook<T> {
    /// An empty book whose offers expire after [`OFFER_TIMEOUT`].
    pub fn new() -> Self {
        Self::with_timeout(OFFER_TIMEOUT)
    }

    /// An empty book whose offers expire after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        OfferBook {
            entries: BTreeMap::new(),
            timeout,
        }
    }

    /// Offers waiting for an answer.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no offer is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an offer with this id is waiting.
    pub fn contains(&self, id: &OfferId) -> bool {
        self.entries.contains_key(id)
    }

    /// A random offer id (from the caller's seeded `rng`) not already in the
    /// book.
    pub fn fresh_id(&self, rng: &mut fastrand::Rng) -> OfferId {
        loop {
            let id = OfferId::random(rng);
            if !self.entries.contains_key(&id) {
                return id;
            }
        }
    }

    /// Records an offer sent at `now` for `info_hash`. If the id is already in
    /// the book, nothing changes and the token is handed back.
    pub fn insert(
        &mut self,
        now: Instant,
        info_hash: InfoHash,
        id: OfferId,
        token: T,
    ) -> Result<(), T> {
        if self.entries.contains_key(&id) {
            return Err(token);
        }
        self.entries.insert(
            id,
            Entry {
                info_hash,
                created_at: now,
                token,
            },
        );
        Ok(())
    }

    /// Looks up the offer an answer for `info_hash` names, and takes it out of
    /// the book if it is ours.
    pub fn answer(&mut self, now: Instant, info_hash: InfoHash, id: OfferId) -> AnswerLookup<T> {
        match self.entries.get(&id) {
            Some(entry) if entry.info_hash == info_hash => {}
            _ => return AnswerLookup::Unknown,
        }
        let Some(entry) = self.entries.remove(&id) else {
            return AnswerLookup::Unknown;
        };
        if self.is_expired(&entry, now) {
            AnswerLookup::Expired(entry.token)
        } else {
            AnswerLookup::Matched(entry.token)
        }
    }

    /// Takes an offer out of the book (its connection was closed for another
    /// reason).
    pub fn remove(&mut self, id: &OfferId) -> Option<T> {
        self.entries.remove(id).map(|e| e.token)
    }

    /// Takes out every offer that has waited [`OFFER_TIMEOUT`] or longer at
    /// `now`, oldest first: close their connections.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let timeout = self.timeout;
        let mut expired: Vec<(Instant, OfferId)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.created_at + timeout <= now)
            .map(|(id, e)| (e.created_at, *id))
            .collect();
        sort::sort_by(&mut expired, Ord::cmp);
        expired
            .into_iter()
            .filter_map(|(_, id)| self.entries.remove(&id).map(|e| e.token))
            .collect()
    }

    /// Takes out every offer (the tracker connection closed: it will relay
    /// no answer to them).
    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.entries)
            .into_values()
            .map(|e| e.token)
            .collect()
    }

    /// When the oldest offer expires: the instant to call
    /// [`expire`](Self::expire) at.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .values()
            .map(|e| e.created_at + self.timeout)
            .min()
    }

    fn is_expired(&self, entry: &Entry<T>, now: Instant) -> bool {
        entry.created_at + self.timeout <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::ZERO;
    const HASH: InfoHash = InfoHash([7; 20]);

    fn at(secs: u64) -> Instant {
        T0 + Duration::from_secs(secs)
    }

    #[test]
    fn an_answer_to_a_live_offer_yields_its_token_once() {
        let mut book = OfferBook::new();
        let mut rng = fastrand::Rng::with_seed(1);
        let id = book.fresh_id(&mut rng);
        book.insert(T0, HASH, id, "conn-1").unwrap();
        assert_eq!(
            book.answer(at(49), HASH, id),
            AnswerLookup::Matched("conn-1")
        );
        assert_eq!(book.answer(at(49), HASH, id), AnswerLookup::Unknown);
        assert!(book.is_empty());
    }

    #[test]
    fn offers_expire_after_fifty_seconds() {
        let mut book = OfferBook::new();
        book.insert(at(0), HASH, OfferId([1; 20]), 1).unwrap();
        book.insert(at(10), HASH, OfferId([2; 20]), 2).unwrap();
        assert_eq!(book.poll_timeout(), Some(at(50)));
        assert!(book.expire(at(49)).is_empty());
        assert_eq!(book.expire(at(50)), vec![1]);
        assert_eq!(book.poll_timeout(), Some(at(60)));
        assert_eq!(book.expire(at(100)), vec![2]);
        assert_eq!(book.poll_timeout(), None);
    }

    #[test]
    fn expire_returns_the_oldest_offers_first() {
        let mut book = OfferBook::new();
        book.insert(at(5), HASH, OfferId([0; 20]), "young").unwrap();
        book.insert(at(1), HASH, OfferId([9; 20]), "old").unwrap();
        assert_eq!(book.expire(at(60)), vec!["old", "young"]);
    }

    #[test]
    fn a_late_answer_is_reported_expired_with_its_token() {
        let mut book = OfferBook::new();
        let id = OfferId([3; 20]);
        book.insert(T0, HASH, id, "conn").unwrap();
        assert_eq!(book.answer(at(50), HASH, id), AnswerLookup::Expired("conn"));
        assert!(book.is_empty());
    }

    #[test]
    fn an_answer_naming_another_torrent_is_unknown_and_leaves_the_offer() {
        let mut book = OfferBook::new();
        let id = OfferId([4; 20]);
        book.insert(T0, HASH, id, "conn").unwrap();
        assert_eq!(
            book.answer(at(1), InfoHash([8; 20]), id),
            AnswerLookup::Unknown
        );
        assert_eq!(book.answer(at(1), HASH, id), AnswerLookup::Matched("conn"));
    }

    #[test]
    fn unknown_offer_ids_are_reported_unknown() {
        let mut book: OfferBook<u32> = OfferBook::new();
        assert_eq!(
            book.answer(T0, HASH, OfferId([5; 20])),
            AnswerLookup::Unknown
        );
    }

    #[test]
    fn a_duplicate_offer_id_is_refused_and_the_token_returned() {
        let mut book = OfferBook::new();
        let id = OfferId([6; 20]);
        book.insert(T0, HASH, id, 1).unwrap();
        assert_eq!(book.insert(T0, HASH, id, 2), Err(2));
        assert_eq!(book.remove(&id), Some(1));
        assert_eq!(book.remove(&id), None);
    }

    #[test]
    fn fresh_ids_come_from_the_callers_seed_and_avoid_taken_ids() {
        let mut book = OfferBook::new();
        let first = book.fresh_id(&mut fastrand::Rng::with_seed(42));
        assert_eq!(first, book.fresh_id(&mut fastrand::Rng::with_seed(42)));
        book.insert(T0, HASH, first, ()).unwrap();
        let second = book.fresh_id(&mut fastrand::Rng::with_seed(42));
        assert_ne!(first, second);
    }

    #[test]
    fn drain_hands_back_every_offer() {
        let mut book = OfferBook::new();
        book.insert(T0, HASH, OfferId([1; 20]), 'a').unwrap();
        book.insert(T0, HASH, OfferId([2; 20]), 'b').unwrap();
        let mut drained = book.drain();
        drained.sort_unstable();
        assert_eq!(drained, vec!['a', 'b']);
        assert!(book.is_empty());
        assert_eq!(book.poll_timeout(), None);
    }
}
