//! Fetching a magnet link's info dictionary from peers (BEP 9 ut_metadata):
//! whom to ask, and what to make of the answers.
//!
//! One attempt at a time asks one peer for every metadata piece. The
//! dictionary is small (16 KiB pieces; a terabyte bundle's is about 1.3 MB),
//! and a single source means a result that does not hash to the info hash
//! has exactly one culprit, dropped with no doubt about the others. A peer
//! that rejects, stalls or leaves ends the attempt; the next goes to a peer
//! not tried yet (everyone is tried again once all have been).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::engine::api::ConnId;
use crate::engine::event::DropReason;
use crate::engine::ids::InfoHash;
use crate::engine::time::Instant;
use crate::engine::wire::{MetadataAssembler, MetadataError, MetadataProgress};

/// An attempt with no data for this long goes to another peer.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer that can serve the metadata: its connection, its `ut_metadata`
/// id and the size it announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataSource {
    /// The connection.
    pub conn: ConnId,
    /// Its id for ut_metadata messages.
    pub ut_metadata: u8,
    /// The `metadata_size` it announced.
    pub size: u64,
}

/// Requests to send to start an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataRequests {
    /// The peer.
    pub conn: ConnId,
    /// Its ut_metadata id.
    pub ut_metadata: u8,
    /// Pieces to request, in order.
    pub pieces: Vec<u32>,
}

#[derive(Debug)]
struct Attempt {
    conn: ConnId,
    assembler: MetadataAssembler,
    deadline: Instant,
}

/// The metadata fetch of one bundle.
#[derive(Debug)]
pub struct MetadataFetch {
    info_hash: InfoHash,
    attempt: Option<Attempt>,
    tried: BTreeSet<ConnId>,
}

impl MetadataFetch {
    /// Nothing asked yet.
    pub fn new(info_hash: InfoHash) -> Self {
        MetadataFetch {
            info_hash,
            attempt: None,
            tried: BTreeSet::new(),
        }
    }

    /// When the running attempt times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.attempt.as_ref().map(|a| a.deadline)
    }

    /// Starts an attempt if none runs and a source is available: the
    /// requests to send. Sources not tried yet come first.
    pub fn poll(
        &mut self,
        now: Instant,
        sources: &[MetadataSource],
        rng: &mut fastrand::Rng,
    ) -> Option<MetadataRequests> {
        if self.attempt.is_some() || sources.is_empty() {
            return None;
        }
        let mut fresh: Vec<&MetadataSource> = sources
            .iter()
            .filter(|s| !self.tried.contains(&s.conn))
            .collect();
        if fresh.is_empty() {
            // Everyone had a turn: start over.
            self.tried.clear();
            fresh = sources.iter().collect();
        }
        rng.shuffle(&mut fresh);
        for source in fresh {
            // A size out of bounds is the peer's problem, not a reason to stop.
            let Ok(assembler) = MetadataAssembler::new(self.info_hash, source.size) else {
                self.tried.insert(source.conn);
                continue;
            };
            let pieces = assembler.missing().collect();
            self.attempt = Some(Attempt {
                conn: source.conn,
                assembler,
                deadline: now + METADATA_TIMEOUT,
            });
            return Some(MetadataRequests {
                conn: source.conn,
                ut_metadata: source.ut_metadata,
                pieces,
            });
        }
        None
    }

    /// A data message from `conn`. Returns the info dictionary once complete
    /// and verified; `Err` means `conn` sent bad metadata (drop it).
    /// Data nobody asked for is ignored.
    pub fn on_data(
        &mut self,
        now: Instant,
        conn: ConnId,
        piece: u32,
        total_size: u64,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, DropReason> {
        let Some(attempt) = self.attempt.as_mut().filter(|a| a.conn == conn) else {
            return Ok(None);
        };
        match attempt.assembler.add_piece(piece, total_size, data) {
            Ok(MetadataProgress::Incomplete { .. }) => {
                attempt.deadline = now + METADATA_TIMEOUT;
                Ok(None)
            }
            Ok(MetadataProgress::Complete(bytes)) => {
                self.attempt = None;
                Ok(Some(bytes))
            }
            Err(e) => {
                self.fail(conn);
                Err(DropReason::BadMetadata(match e {
                    MetadataError::HashMismatch => {
                        "metadata does not hash to the info hash".to_owned()
                    }
                    other => other.to_string(),
                }))
            }
        }
    }

    /// `conn` rejected a request, or left: its attempt ends.
    pub fn peer_failed(&mut self, conn: ConnId) {
        if self.attempt.as_ref().is_some_and(|a| a.conn == conn) {
            self.fail(conn);
        }
    }

    /// Ends an attempt that passed its deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(conn) = self
            .attempt
            .as_ref()
            .filter(|a| a.deadline <= now)
            .map(|a| a.conn)
        {
            self.fail(conn);
        }
    }

    fn fail(&mut self, conn: ConnId) {
        self.attempt = None;
        self.tried.insert(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::hash::sha1;
    use crate::engine::wire::METADATA_PIECE_SIZE;

    fn at(s: u64) -> Instant {
        Instant::from_duration(Duration::from_secs(s))
    }

    fn info_bytes() -> Vec<u8> {
        (0..METADATA_PIECE_SIZE + 100)
            .map(|i| (i % 7) as u8)
            .collect()
    }

    fn source(conn: u64, size: u64) -> MetadataSource {
        MetadataSource {
            conn: ConnId(conn),
            ut_metadata: 3,
            size,
        }
    }

    #[test]
    fn one_peer_is_asked_for_every_piece_and_the_result_is_verified() {
        let bytes = info_bytes();
        let mut f = MetadataFetch::new(InfoHash(sha1(&bytes)));
        let mut rng = fastrand::Rng::with_seed(1);
        let req = f
            .poll(at(0), &[source(1, bytes.len() as u64)], &mut rng)
            .unwrap();
        assert_eq!(req.pieces, vec![0, 1]);
        assert!(
            f.poll(at(0), &[source(1, 1)], &mut rng).is_none(),
            "one attempt at a time"
        );
        let total = bytes.len() as u64;
        let (a, b) = bytes.split_at(METADATA_PIECE_SIZE);
        assert_eq!(f.on_data(at(1), ConnId(1), 1, total, b), Ok(None));
        assert_eq!(
            f.on_data(at(1), ConnId(1), 0, total, a),
            Ok(Some(bytes.clone()))
        );
    }

    #[test]
    fn metadata_that_does_not_hash_to_the_info_hash_blames_its_only_sender() {
        let bytes = info_bytes();
        let mut f = MetadataFetch::new(InfoHash([9; 20]));
        let mut rng = fastrand::Rng::with_seed(1);
        let total = bytes.len() as u64;
        f.poll(at(0), &[source(1, total)], &mut rng).unwrap();
        let (a, b) = bytes.split_at(METADATA_PIECE_SIZE);
        assert_eq!(f.on_data(at(1), ConnId(1), 0, total, a), Ok(None));
        assert!(matches!(
            f.on_data(at(1), ConnId(1), 1, total, b),
            Err(DropReason::BadMetadata(_))
        ));
        // The next attempt goes to someone else.
        let req = f
            .poll(at(2), &[source(1, total), source(2, total)], &mut rng)
            .unwrap();
        assert_eq!(req.conn, ConnId(2));
    }

    #[test]
    fn a_stalled_attempt_moves_on_and_unasked_data_is_ignored() {
        let bytes = info_bytes();
        let total = bytes.len() as u64;
        let mut f = MetadataFetch::new(InfoHash(sha1(&bytes)));
        let mut rng = fastrand::Rng::with_seed(3);
        let first = f
            .poll(at(0), &[source(1, total), source(2, total)], &mut rng)
            .unwrap()
            .conn;
        let other = if first == ConnId(1) {
            ConnId(2)
        } else {
            ConnId(1)
        };
        assert_eq!(
            f.on_data(at(1), other, 0, total, &bytes[..METADATA_PIECE_SIZE]),
            Ok(None)
        );
        assert_eq!(f.deadline(), Some(at(0) + METADATA_TIMEOUT));
        f.handle_timeout(at(10));
        let next = f
            .poll(at(10), &[source(1, total), source(2, total)], &mut rng)
            .unwrap();
        assert_eq!(next.conn, other);
    }
}
