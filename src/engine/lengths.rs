//! All piece and block arithmetic in one place.
//!
//! A [`PieceIndex`] can only be obtained from [`Lengths::validate_piece`] (or by
//! iterating [`Lengths::pieces`]), so code holding one never has to check it
//! again. Blocks are the 16 KiB request units of the wire protocol; the last
//! block of the last piece may be shorter.

use thiserror::Error;

/// Size of a request block: 16 KiB, as every client expects.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// Smallest piece length Swarmdrop creates or accepts.
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;

/// Largest piece length Swarmdrop creates or accepts (16 MiB).
pub const MAX_PIECE_LENGTH: u32 = 16 * 1024 * 1024;

/// Largest total length accepted (just over 1 TiB: 65,536 pieces of 16 MiB).
pub const MAX_TOTAL_LENGTH: u64 = 65_536 * MAX_PIECE_LENGTH as u64;

/// Why a torrent's lengths cannot be used.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum LengthsError {
    /// The piece length is zero, not a multiple of 16 KiB, or outside 16 KiB..=16 MiB.
    #[error("piece length {0} is not a multiple of 16 KiB between 16 KiB and 16 MiB")]
    BadPieceLength(u64),
    /// The total length is zero or above the supported maximum.
    #[error("total length {0} is outside 1 byte ..= 1 TiB")]
    BadTotalLength(u64),
    /// The number of piece hashes does not match the lengths.
    #[error("torrent has {got} piece hashes, its length needs {expected}")]
    PieceCountMismatch {
        /// Pieces implied by the lengths.
        expected: u32,
        /// Hashes present.
        got: usize,
    },
}

/// A piece index checked against a torrent's piece count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The index as a number.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The index as a `usize`, for indexing slices sized by the piece count.
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

/// A block: a byte range inside one piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockInfo {
    /// The piece the block belongs to.
    pub piece: PieceIndex,
    /// Offset of the block inside the piece.
    pub offset: u32,
    /// Length of the block in bytes.
    pub len: u32,
}

impl BlockInfo {
    /// Index of the block inside its piece (offset / 16 KiB).
    pub const fn index_in_piece(&self) -> u32 {
        self.offset / BLOCK_SIZE
    }
}

/// The lengths of one torrent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lengths {
    total_length: u64,
    piece_length: u32,
    num_pieces: u32,
}

impl Lengths {
    /// Checks and builds the lengths of a torrent.
    pub fn new(total_length: u64, piece_length: u64) -> Result<Self, LengthsError> {
        if piece_length < MIN_PIECE_LENGTH as u64
            || piece_length > MAX_PIECE_LENGTH as u64
            || piece_length % BLOCK_SIZE as u64 != 0
        {
            return Err(LengthsError::BadPieceLength(piece_length));
        }
        if total_length == 0 || total_length > MAX_TOTAL_LENGTH {
            return Err(LengthsError::BadTotalLength(total_length));
        }
        let num_pieces = total_length.div_ceil(piece_length);
        Ok(Lengths {
            total_length,
            piece_length: piece_length as u32,
            num_pieces: num_pieces as u32,
        })
    }

    /// Checks that `hash_count` piece hashes fit these lengths.
    pub fn check_piece_count(&self, hash_count: usize) -> Result<(), LengthsError> {
        if hash_count == self.num_pieces as usize {
            Ok(())
        } else {
            Err(LengthsError::PieceCountMismatch {
                expected: self.num_pieces,
                got: hash_count,
            })
        }
    }

    /// Sum of the lengths of all files.
    pub const fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Nominal piece length (every piece but possibly the last).
    pub const fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// Number of pieces.
    pub const fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// Validates a piece index read off the wire or out of storage.
    pub fn validate_piece(&self, index: u32) -> Option<PieceIndex> {
        (index < self.num_pieces).then_some(PieceIndex(index))
    }

    /// The last piece.
    pub const fn last_piece(&self) -> PieceIndex {
        PieceIndex(self.num_pieces - 1)
    }

    /// Every piece, in order.
    pub fn pieces(&self) -> impl DoubleEndedIterator<Item = PieceIndex> + ExactSizeIterator {
        (0..self.num_pieces).map(PieceIndex)
    }

    /// Length of a piece (the last one may be shorter).
    pub const fn piece_len(&self, piece: PieceIndex) -> u32 {
        if piece.0 == self.num_pieces - 1 {
            (self.total_length - self.piece_length as u64 * (self.num_pieces as u64 - 1)) as u32
        } else {
            self.piece_length
        }
    }

    /// Absolute offset of a piece's first byte in the concatenated files.
    pub const fn piece_offset(&self, piece: PieceIndex) -> u64 {
        piece.0 as u64 * self.piece_length as u64
    }

    /// Number of blocks in a piece.
    pub const fn blocks_in_piece(&self, piece: PieceIndex) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// Number of blocks in a nominal piece (the most any piece has).
    pub const fn max_blocks_per_piece(&self) -> u32 {
        self.piece_length / BLOCK_SIZE
    }

    /// The `index`-th block of a piece, if it exists.
    pub fn block(&self, piece: PieceIndex, index: u32) -> Option<BlockInfo> {
        let plen = self.piece_len(piece);
        let offset = index.checked_mul(BLOCK_SIZE)?;
        (offset < plen).then(|| BlockInfo {
            piece,
            offset,
            len: (plen - offset).min(BLOCK_SIZE),
        })
    }

    /// Every block of a piece, in order.
    pub fn blocks(&self, piece: PieceIndex) -> impl Iterator<Item = BlockInfo> + '_ {
        (0..self.blocks_in_piece(piece)).filter_map(move |i| self.block(piece, i))
    }

    /// Validates a request or piece message's block as read off the wire: the
    /// piece must exist, the offset be block-aligned and the length be exactly
    /// the block's (16 KiB, or what is left at the end of the piece).
    pub fn validate_block(&self, index: u32, offset: u32, len: u32) -> Option<BlockInfo> {
        let piece = self.validate_piece(index)?;
        if offset % BLOCK_SIZE != 0 {
            return None;
        }
        let block = self.block(piece, offset / BLOCK_SIZE)?;
        (block.len == len).then_some(block)
    }

    /// Validates a request for an arbitrary sub-range of a piece (other
    /// clients may request unaligned ranges); at most `max_len` bytes.
    pub fn validate_range(
        &self,
        index: u32,
        offset: u32,
        len: u32,
        max_len: u32,
    ) -> Option<BlockInfo> {
        let piece = self.validate_piece(index)?;
        let end = offset.checked_add(len)?;
        (len > 0 && len <= max_len && end <= self.piece_len(piece)).then_some(BlockInfo {
            piece,
            offset,
            len,
        })
    }

    /// The pieces that overlap the byte range `[start, start + len)` of the
    /// concatenated files. Empty for an empty range.
    pub fn pieces_for_range(&self, start: u64, len: u64) -> std::ops::Range<u32> {
        if len == 0 || start >= self.total_length {
            return 0..0;
        }
        let end = (start + len).min(self.total_length);
        let first = (start / self.piece_length as u64) as u32;
        let last = ((end - 1) / self.piece_length as u64) as u32;
        first..last + 1
    }

    /// Piece length Swarmdrop picks for a bundle of `total_length` bytes, as
    /// libtorrent's `create_torrent` does: the whole bytes of
    /// `total_length / 2048` rounded up to a power of two from 16 KiB to 16
    /// MiB. That keeps the bundle at 1,024 to 2,049 pieces (never above
    /// 65,536: 1 TiB at 16 MiB), and a bundle a few bytes over a power of two
    /// (1 GiB of files and the manifest) keeps the smaller pieces: 512 KiB
    /// pieces cost less to hash in the browser than 1 MiB ones (BENCHMARKS.md
    /// row 1).
    pub fn auto_piece_length(total_length: u64) -> u32 {
        let target = total_length / AUTO_PIECES;
        let mut len = MIN_PIECE_LENGTH;
        while len < MAX_PIECE_LENGTH && u64::from(len) < target {
            len *= 2;
        }
        len
    }
}

/// The piece count [`Lengths::auto_piece_length`] aims at.
const AUTO_PIECES: u64 = 2048;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn last_piece_and_last_block_are_short() {
        let l = Lengths::new(100_000, 32 * 1024).unwrap();
        assert_eq!(l.num_pieces(), 4);
        let last = l.last_piece();
        assert_eq!(l.piece_len(last), 100_000 - 3 * 32 * 1024);
        assert_eq!(l.blocks_in_piece(last), 1);
        assert_eq!(l.block(last, 0).unwrap().len, 100_000 - 3 * 32 * 1024);
        assert!(l.block(last, 1).is_none());
    }

    #[test]
    fn piece_indices_exist_only_once_validated() {
        let l = Lengths::new(10 * 16384, 16384).unwrap();
        assert!(l.validate_piece(9).is_some());
        assert!(l.validate_piece(10).is_none());
        assert!(l.validate_piece(u32::MAX).is_none());
    }

    #[test]
    fn wire_blocks_must_be_aligned_and_exact() {
        let l = Lengths::new(40_000, 32768).unwrap();
        assert!(l.validate_block(0, 0, BLOCK_SIZE).is_some());
        assert!(l.validate_block(0, 1, BLOCK_SIZE).is_none());
        assert!(l.validate_block(0, 0, BLOCK_SIZE - 1).is_none());
        assert!(l.validate_block(1, 0, 40_000 - 32768).is_some());
        assert!(l.validate_block(1, BLOCK_SIZE, 1).is_none());
        assert!(l.validate_block(0, u32::MAX - 10, BLOCK_SIZE).is_none());
    }

    #[test]
    fn bad_lengths_are_refused_with_a_reason() {
        assert_eq!(Lengths::new(0, 16384), Err(LengthsError::BadTotalLength(0)));
        assert_eq!(
            Lengths::new(1, 1000),
            Err(LengthsError::BadPieceLength(1000))
        );
        assert_eq!(
            Lengths::new(1, 32 * 1024 * 1024),
            Err(LengthsError::BadPieceLength(32 * 1024 * 1024))
        );
        assert!(Lengths::new(MAX_TOTAL_LENGTH + 1, MAX_PIECE_LENGTH as u64).is_err());
        let l = Lengths::new(3 * 16384, 16384).unwrap();
        assert!(l.check_piece_count(3).is_ok());
        assert_eq!(
            l.check_piece_count(2),
            Err(LengthsError::PieceCountMismatch {
                expected: 3,
                got: 2
            })
        );
    }

    #[test]
    fn auto_piece_length_keeps_a_terabyte_under_65536_pieces() {
        assert_eq!(Lengths::auto_piece_length(1), MIN_PIECE_LENGTH);
        assert_eq!(Lengths::auto_piece_length(1 << 30), 512 * 1024);
        let tb = 1u64 << 40;
        let pl = Lengths::auto_piece_length(tb);
        assert_eq!(pl, MAX_PIECE_LENGTH);
        assert!(tb.div_ceil(pl as u64) <= 65_536);
        assert_eq!(
            Lengths::auto_piece_length(MAX_TOTAL_LENGTH),
            MAX_PIECE_LENGTH
        );
    }

    #[test]
    fn auto_piece_length_keeps_small_pieces_for_a_bundle_just_over_a_power_of_two() {
        // 1 GiB of files and a small manifest: 2,049 pieces of 512 KiB, not
        // 1,025 of 1 MiB.
        assert_eq!(Lengths::auto_piece_length((1 << 30) + 1259), 512 * 1024);
        assert_eq!(Lengths::auto_piece_length((1 << 30) + 2047), 512 * 1024);
        // A whole extra 2,048 bytes per piece count step moves it up.
        assert_eq!(Lengths::auto_piece_length((1 << 30) + 2048), 1024 * 1024);
        assert_eq!(Lengths::auto_piece_length(4 << 30), 2048 * 1024);
        assert_eq!(Lengths::auto_piece_length(32 << 20), 16 * 1024);
        assert_eq!(Lengths::auto_piece_length((32 << 20) + 2048), 32 * 1024);
    }

    proptest! {
        #[test]
        fn auto_piece_length_is_a_power_of_two_giving_about_2048_pieces(
            total in 1u64..=MAX_TOTAL_LENGTH,
        ) {
            let pl = Lengths::auto_piece_length(total);
            prop_assert!(pl.is_power_of_two());
            prop_assert!((MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&pl));
            let pieces = total.div_ceil(u64::from(pl));
            // Never more than 2,049 pieces (one over for the bytes below a
            // whole 2,048th), nor more than 65,536 at the largest pieces.
            prop_assert!(pieces <= 2049 || pl == MAX_PIECE_LENGTH);
            prop_assert!(pieces <= 65_536);
            // Never at least twice the pieces' worth smaller than needed:
            // halving the length would go over 2,049 pieces.
            if pl > MIN_PIECE_LENGTH {
                prop_assert!(total.div_ceil(u64::from(pl / 2)) > 2048);
            }
            prop_assert!(Lengths::new(total, u64::from(pl)).is_ok());
        }
    }

    #[test]
    fn pieces_for_range_covers_boundaries() {
        let l = Lengths::new(100, 16384).unwrap();
        assert_eq!(l.pieces_for_range(0, 0), 0..0);
        assert_eq!(l.pieces_for_range(0, 100), 0..1);
        let l = Lengths::new(5 * 16384, 16384).unwrap();
        assert_eq!(l.pieces_for_range(16383, 2), 0..2);
        assert_eq!(l.pieces_for_range(16384, 16384), 1..2);
        assert_eq!(l.pieces_for_range(4 * 16384, 1_000_000), 4..5);
    }

    proptest! {
        #[test]
        fn blocks_tile_every_piece_exactly(total in 1u64..5_000_000, shift in 0u32..4) {
            let l = Lengths::new(total, (16384u64) << shift).unwrap();
            let mut sum = 0u64;
            for p in l.pieces() {
                let mut expected_offset = 0;
                for b in l.blocks(p) {
                    prop_assert_eq!(b.offset, expected_offset);
                    prop_assert!(b.len > 0 && b.len <= BLOCK_SIZE);
                    prop_assert!(l.validate_block(p.get(), b.offset, b.len).is_some());
                    expected_offset += b.len;
                }
                prop_assert_eq!(expected_offset, l.piece_len(p));
                sum += expected_offset as u64;
            }
            prop_assert_eq!(sum, total);
        }
    }
}
