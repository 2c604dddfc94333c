//! Piece assembly: blocks into piece buffers, SHA-1 verification, the pieces
//! in storage's hands, and finding who sent bad data.
//!
//! A piece that fails its hash is kept (a few at a time) with the sender of
//! each block. When the piece later verifies, the blocks that differ from the
//! good copy name the culprits: a peer that mixed bad blocks into a piece
//! with honest ones is caught without blaming the honest senders. A piece
//! whose every block came from one sender blames that sender at once.
//!
//! The SHA-1 of a complete piece is taken here ([`Assembly::verify`]) or by
//! the host ([`Assembly::take_complete`], then [`Assembly::hashed`] with
//! the hash): a browser hashes natively and off its main thread.

use std::collections::BTreeMap;

use crate::engine::api::ConnId;
use crate::engine::hash::verify_piece;
use crate::engine::ids::PeerId;
use crate::engine::lengths::{BlockInfo, Lengths, PieceIndex};
use crate::engine::metainfo::Info;

/// Failed pieces kept to find out, once they verify, who sent the bad blocks.
pub const MAX_SUSPECT_PIECES: usize = 8;

/// Who sent a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A peer, by connection and id (the id outlives the connection, so a
    /// banned peer stays banned when it reconnects).
    Peer(ConnId, PeerId),
    /// A web seed, by connection.
    WebSeed(ConnId),
}

impl Source {
    /// The connection it came over.
    pub fn conn(self) -> ConnId {
        match self {
            Source::Peer(c, _) | Source::WebSeed(c) => c,
        }
    }
}

/// A piece being filled with blocks.
#[derive(Debug)]
struct PartialPiece {
    data: Vec<u8>,
    /// Per block: who sent it.
    sources: Vec<Option<Source>>,
}

impl PartialPiece {
    fn new(lengths: &Lengths, piece: PieceIndex) -> Self {
        PartialPiece {
            data: vec![0; lengths.piece_len(piece) as usize],
            sources: vec![None; lengths.blocks_in_piece(piece) as usize],
        }
    }

    /// The distinct senders, in block order.
    fn senders(&self) -> Vec<Source> {
        let mut out: Vec<Source> = Vec::new();
        for s in self.sources.iter().flatten() {
            if !out.contains(s) {
                out.push(*s);
            }
        }
        out
    }
}

/// What hashing a complete piece found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The piece is good: hand `data` to storage. `culprits` sent bad blocks
    /// of an earlier, failed copy of it.
    Good {
        /// The piece bytes.
        data: Vec<u8>,
        /// Senders to ban.
        culprits: Vec<Source>,
    },
    /// The piece is bad and must be fetched again. `culprit` is its only
    /// sender, if it had only one.
    Bad {
        /// Sender to ban at once.
        culprit: Option<Source>,
    },
}

/// The pieces of one bundle between their first block and their storage.
#[derive(Debug, Default)]
pub struct Assembly {
    partial: BTreeMap<PieceIndex, PartialPiece>,
    /// Verified pieces handed to storage, by length.
    storing: BTreeMap<PieceIndex, u32>,
    /// Complete pieces handed to the host to hash: their length and their
    /// senders, per block.
    hashing: BTreeMap<PieceIndex, (u32, Vec<Option<Source>>)>,
    /// Failed copies, kept to blame the right sender later.
    suspects: BTreeMap<PieceIndex, PartialPiece>,
}

impl Assembly {
    /// Stores a block (the picker accepted it: it is in range and new).
    pub fn put(&mut self, lengths: &Lengths, block: BlockInfo, data: &[u8], source: Source) {
        let piece = self
            .partial
            .entry(block.piece)
            .or_insert_with(|| PartialPiece::new(lengths, block.piece));
        let start = block.offset as usize;
        let Some(slot) = piece.data.get_mut(start..start + data.len()) else {
            return;
        };
        slot.copy_from_slice(data);
        if let Some(s) = piece.sources.get_mut(block.index_in_piece() as usize) {
            *s = Some(source);
        }
    }

    /// Hashes a complete piece. A good piece moves to the storing set.
    /// `None` if no block of it is held.
    pub fn verify(&mut self, info: &Info, piece: PieceIndex) -> Option<Verdict> {
        let assembled = self.partial.remove(&piece)?;
        let good = verify_piece(info.piece_hash(piece), &assembled.data);
        Some(self.judge(info, piece, assembled, good))
    }

    /// Takes a complete piece's bytes for the host to hash; its senders are
    /// kept until [`Assembly::hashed`]. `None` if no block of it is held.
    pub fn take_complete(&mut self, piece: PieceIndex) -> Option<Vec<u8>> {
        let PartialPiece { data, sources } = self.partial.remove(&piece)?;
        self.hashing.insert(piece, (data.len() as u32, sources));
        Some(data)
    }

    /// The host hashed a piece from [`Assembly::take_complete`]: `data` are
    /// its bytes, handed back, and `hash` their SHA-1. A good piece moves to
    /// the storing set. `None` if the piece was not out to be hashed.
    pub fn hashed(
        &mut self,
        info: &Info,
        piece: PieceIndex,
        data: Vec<u8>,
        hash: [u8; 20],
    ) -> Option<Verdict> {
        let (_, sources) = self.hashing.remove(&piece)?;
        if data.len() != info.lengths.piece_len(piece) as usize {
            // Not the bytes that went out: fetched again, no one blamed.
            return Some(Verdict::Bad { culprit: None });
        }
        let good = hash == *info.piece_hash(piece);
        Some(self.judge(info, piece, PartialPiece { data, sources }, good))
    }

    /// The verdict on a complete piece whose hash matched (`good`) or not.
    fn judge(
        &mut self,
        info: &Info,
        piece: PieceIndex,
        assembled: PartialPiece,
        good: bool,
    ) -> Verdict {
        if !good {
            let senders = assembled.senders();
            if let [only] = senders[..] {
                return Verdict::Bad {
                    culprit: Some(only),
                };
            }
            if self.suspects.len() >= MAX_SUSPECT_PIECES && !self.suspects.contains_key(&piece) {
                self.suspects.pop_first();
            }
            self.suspects.insert(piece, assembled);
            return Verdict::Bad { culprit: None };
        }
        let mut culprits = Vec::new();
        if let Some(failed) = self.suspects.remove(&piece) {
            for (block, source) in info.lengths.blocks(piece).zip(&failed.sources) {
                let Some(source) = source else { continue };
                let range = block.offset as usize..(block.offset + block.len) as usize;
                if failed.data[range.clone()] != assembled.data[range] && !culprits.contains(source)
                {
                    culprits.push(*source);
                }
            }
        }
        self.storing.insert(piece, info.lengths.piece_len(piece));
        Verdict::Good {
            data: assembled.data,
            culprits,
        }
    }

    /// Storage answered for a piece (stored or failed); whether it was ours
    /// to wait for.
    pub fn storage_done(&mut self, piece: PieceIndex) -> bool {
        self.storing.remove(&piece).is_some()
    }

    /// Bytes held by pieces being filled.
    pub fn partial_bytes(&self) -> u64 {
        self.partial.values().map(|p| p.data.len() as u64).sum()
    }

    /// The pieces being filled.
    pub fn partial_pieces(&self) -> impl Iterator<Item = PieceIndex> + '_ {
        self.partial.keys().copied()
    }

    /// Bytes of complete pieces out to be hashed or handed to storage and
    /// not yet confirmed.
    pub fn storing_bytes(&self) -> u64 {
        let hashing: u64 = self.hashing.values().map(|&(l, _)| u64::from(l)).sum();
        hashing + self.storing.values().map(|&l| l as u64).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::create::TorrentBuilder;
    use crate::engine::hash::{sha1, PieceHasher};
    use crate::engine::lengths::BLOCK_SIZE;

    /// A one-piece torrent of two blocks, and its bytes.
    fn two_block_piece() -> (Info, Vec<u8>) {
        let content: Vec<u8> = (0..2 * BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
        let builder = TorrentBuilder::new("f")
            .file(vec!["f".into()], content.len() as u64)
            .piece_length(2 * BLOCK_SIZE);
        let lengths = builder.lengths().unwrap();
        let hashes = PieceHasher::hash_all(lengths, &content).unwrap();
        (builder.build(hashes).unwrap().info, content)
    }

    fn peer(n: u8) -> Source {
        Source::Peer(ConnId(n as u64), PeerId([n; 20]))
    }

    fn fill(a: &mut Assembly, info: &Info, data: &[u8], senders: [Source; 2]) -> PieceIndex {
        let p = info.lengths.validate_piece(0).unwrap();
        for (block, sender) in info.lengths.blocks(p).zip(senders) {
            let range = block.offset as usize..(block.offset + block.len) as usize;
            a.put(&info.lengths, block, &data[range], sender);
        }
        p
    }

    #[test]
    fn a_good_piece_goes_to_storage_with_no_one_blamed() {
        let (info, content) = two_block_piece();
        let mut a = Assembly::default();
        let p = fill(&mut a, &info, &content, [peer(1), peer(2)]);
        let Some(Verdict::Good { data, culprits }) = a.verify(&info, p) else {
            panic!("a good piece must verify");
        };
        assert!(data == content && culprits.is_empty());
        assert_eq!(a.storing_bytes(), 2 * BLOCK_SIZE as u64);
        assert!(a.storage_done(p));
        assert!(!a.storage_done(p), "only once");
    }

    #[test]
    fn a_bad_piece_from_one_sender_blames_it_at_once() {
        let (info, mut content) = two_block_piece();
        content[5] ^= 1;
        let mut a = Assembly::default();
        let p = fill(&mut a, &info, &content, [peer(3), peer(3)]);
        assert_eq!(
            a.verify(&info, p),
            Some(Verdict::Bad {
                culprit: Some(peer(3))
            })
        );
        assert_eq!(a.storing_bytes(), 0);
    }

    #[test]
    fn a_mixed_bad_piece_blames_only_the_sender_of_the_differing_block() {
        let (info, good) = two_block_piece();
        let mut bad = good.clone();
        bad[BLOCK_SIZE as usize + 9] ^= 0xff; // in the second block
        let mut a = Assembly::default();
        let p = fill(&mut a, &info, &bad, [peer(1), peer(2)]);
        assert_eq!(a.verify(&info, p), Some(Verdict::Bad { culprit: None }));
        // Refetched from two others: good now, and peer 2 is named.
        let p = fill(&mut a, &info, &good, [peer(4), peer(5)]);
        let Some(Verdict::Good { data, culprits }) = a.verify(&info, p) else {
            panic!("the refetched piece must verify");
        };
        assert!(data == good);
        assert_eq!(culprits, vec![peer(2)]);
    }

    #[test]
    fn a_piece_hashed_by_the_host_is_judged_by_the_hash_it_brings_back() {
        let (info, content) = two_block_piece();
        let mut a = Assembly::default();
        let p = fill(&mut a, &info, &content, [peer(1), peer(2)]);
        let data = a.take_complete(p).expect("the piece is complete");
        assert!(data == content);
        assert_eq!(a.partial_bytes(), 0);
        assert_eq!(
            a.storing_bytes(),
            2 * BLOCK_SIZE as u64,
            "counted while out"
        );
        let Some(Verdict::Good { data, culprits }) = a.hashed(&info, p, data, sha1(&content))
        else {
            panic!("the right hash must verify");
        };
        assert!(data == content && culprits.is_empty());
        assert!(a.storage_done(p));
    }

    #[test]
    fn a_wrong_hash_from_the_host_fails_the_piece_and_blames_its_only_sender() {
        let (info, content) = two_block_piece();
        let mut a = Assembly::default();
        let p = fill(&mut a, &info, &content, [peer(7), peer(7)]);
        let data = a.take_complete(p).expect("the piece is complete");
        assert_eq!(
            a.hashed(&info, p, data, [0; 20]),
            Some(Verdict::Bad {
                culprit: Some(peer(7))
            })
        );
        assert_eq!(a.storing_bytes(), 0);
    }

    #[test]
    fn a_host_hash_counts_only_for_a_piece_that_is_out_and_of_its_length() {
        let (info, content) = two_block_piece();
        let mut a = Assembly::default();
        let p = info.lengths.validate_piece(0).unwrap();
        assert_eq!(a.hashed(&info, p, content.clone(), sha1(&content)), None);
        let p = fill(&mut a, &info, &content, [peer(1), peer(1)]);
        let mut data = a.take_complete(p).expect("the piece is complete");
        data.pop();
        assert_eq!(
            a.hashed(&info, p, data, sha1(&content)),
            Some(Verdict::Bad { culprit: None }),
            "bytes not of the piece's length are not taken"
        );
        assert_eq!(
            a.hashed(&info, p, content.clone(), sha1(&content)),
            None,
            "only once"
        );
    }
}
