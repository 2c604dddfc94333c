//! SHA-1 piece hashing and verification, streaming over files of any size.
//!
//! [`PieceHasher`] is fed the concatenated bytes of a torrent's files in
//! slices of any size (a slice may end mid-piece or span several files and
//! pieces) and hands back each piece's hash as soon as its last byte arrives.
//! It holds only a running SHA-1 state, never piece bytes, so hashing a 1 TB
//! bundle needs no more memory than hashing a 1 KB one.

use super::lengths::{Lengths, PieceIndex};
use thiserror::Error;

/// Why a stream of bytes does not match the lengths it was hashed against.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HashError {
    /// More bytes were fed than the torrent's total length.
    #[error("fed {fed} bytes, more than the total length {total}")]
    TooManyBytes {
        /// Bytes fed so far, including the slice that overflowed.
        fed: u64,
        /// The torrent's total length.
        total: u64,
    },
    /// Hashing was finished before the torrent's total length was fed.
    #[error("fed {fed} bytes, fewer than the total length {total}")]
    TooFewBytes {
        /// Bytes fed.
        fed: u64,
        /// The torrent's total length.
        total: u64,
    },
}

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(data).digest().bytes()
}

/// Whether `data` hashes to `expected`.
pub fn verify_piece(expected: &[u8; 20], data: &[u8]) -> bool {
    sha1(data) == *expected
}

/// Hashes a torrent's byte stream piece by piece, whatever the slice sizes.
#[derive(Clone)]
pub struct PieceHasher {
    lengths: Lengths,
    state: sha1_smol::Sha1,
    /// Bytes of the current piece already fed to `state`.
    in_piece: u32,
    /// The piece being hashed (equal to the piece count once all are done).
    piece: u32,
    /// Bytes fed in total.
    fed: u64,
}

impl std::fmt::Debug for PieceHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceHasher")
            .field("piece", &self.piece)
            .field("in_piece", &self.in_piece)
            .field("fed", &self.fed)
            .field("total", &self.lengths.total_length())
            .finish()
    }
}

impl PieceHasher {
    /// A hasher for a stream of `lengths.total_length()` bytes.
    pub fn new(lengths: Lengths) -> Self {
        PieceHasher {
            lengths,
            state: sha1_smol::Sha1::new(),
            in_piece: 0,
            piece: 0,
            fed: 0,
        }
    }

    /// Bytes fed so far.
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// Feeds the next bytes of the stream and returns the pieces they
    /// completed, in order, with their hashes.
    ///
    /// Fails without consuming anything if `data` would run past the total
    /// length.
    pub fn update(&mut self, mut data: &[u8]) -> Result<Vec<(PieceIndex, [u8; 20])>, HashError> {
        let total = self.lengths.total_length();
        let fed = self.fed.saturating_add(data.len() as u64);
        if fed > total {
            return Err(HashError::TooManyBytes { fed, total });
        }
        self.fed = fed;
        let mut done = Vec::new();
        while !data.is_empty() {
            // `fed <= total` guarantees the current piece exists.
            let Some(piece) = self.lengths.validate_piece(self.piece) else {
                break;
            };
            let want = (self.lengths.piece_len(piece) - self.in_piece) as usize;
            let take = want.min(data.len());
            self.state.update(&data[..take]);
            data = &data[take..];
            self.in_piece += take as u32;
            if take == want {
                done.push((piece, self.state.digest().bytes()));
                self.state.reset();
                self.in_piece = 0;
                self.piece += 1;
            }
        }
        Ok(done)
    }

    /// Checks that exactly the total length was fed.
    pub fn finish(self) -> Result<(), HashError> {
        let total = self.lengths.total_length();
        if self.fed == total {
            Ok(())
        } else {
            Err(HashError::TooFewBytes {
                fed: self.fed,
                total,
            })
        }
    }

    /// Hashes a whole in-memory stream: every piece hash, in order.
    pub fn hash_all(lengths: Lengths, data: &[u8]) -> Result<Vec<[u8; 20]>, HashError> {
        let mut hasher = PieceHasher::new(lengths);
        let hashes = hasher.update(data)?.into_iter().map(|(_, h)| h).collect();
        hasher.finish()?;
        Ok(hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    fn reference(lengths: Lengths, data: &[u8]) -> Vec<[u8; 20]> {
        data.chunks(lengths.piece_length() as usize)
            .map(sha1)
            .collect()
    }

    #[test]
    fn sha1_matches_the_known_digest() {
        // FIPS 180 test vector.
        assert_eq!(
            sha1(b"abc"),
            [
                0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
                0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d
            ]
        );
        assert!(verify_piece(&sha1(b"piece"), b"piece"));
        assert!(!verify_piece(&sha1(b"piece"), b"pieca"));
    }

    #[test]
    fn pieces_are_emitted_as_soon_as_their_last_byte_arrives() {
        let l = Lengths::new(3 * 16384 + 5, 16384).unwrap();
        let data = stream(l.total_length() as usize);
        let mut h = PieceHasher::new(l);
        assert!(h.update(&data[..16383]).unwrap().is_empty());
        let done = h.update(&data[16383..16384]).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0.get(), 0);
        assert_eq!(done[0].1, sha1(&data[..16384]));
        let done = h.update(&data[16384..]).unwrap();
        assert_eq!(
            done.iter().map(|(p, _)| p.get()).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(done[2].1, sha1(&data[3 * 16384..]));
        h.finish().unwrap();
    }

    #[test]
    fn too_many_or_too_few_bytes_are_errors() {
        let l = Lengths::new(100, 16384).unwrap();
        let mut h = PieceHasher::new(l);
        h.update(&[0; 60]).unwrap();
        assert_eq!(
            h.update(&[0; 41]),
            Err(HashError::TooManyBytes {
                fed: 101,
                total: 100
            })
        );
        // The failed update consumed nothing.
        assert_eq!(h.bytes_fed(), 60);
        assert_eq!(
            h.clone().finish(),
            Err(HashError::TooFewBytes {
                fed: 60,
                total: 100
            })
        );
        assert_eq!(h.update(&[0; 40]).unwrap().len(), 1);
        h.finish().unwrap();
    }

    proptest! {
        // Byte-at-a-time feeding of up to 200 KB per case is slow in debug builds.
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn hashes_do_not_depend_on_slice_sizes(
            total in 1usize..200_000,
            shift in 0u32..3,
            cuts in proptest::collection::vec(1usize..40_000, 1..64),
        ) {
            let l = Lengths::new(total as u64, 16384u64 << shift).unwrap();
            let data = stream(total);
            let expected = reference(l, &data);
            prop_assert_eq!(expected.len(), l.num_pieces() as usize);
            prop_assert_eq!(&PieceHasher::hash_all(l, &data).unwrap(), &expected);

            for fixed in [1usize, 7] {
                let mut h = PieceHasher::new(l);
                let mut got = Vec::new();
                for chunk in data.chunks(fixed) {
                    got.extend(h.update(chunk).unwrap().into_iter().map(|(_, x)| x));
                }
                h.finish().unwrap();
                prop_assert_eq!(&got, &expected);
            }

            let mut h = PieceHasher::new(l);
            let mut got = Vec::new();
            let mut rest = &data[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                i += 1;
                for (p, x) in h.update(&rest[..n]).unwrap() {
                    prop_assert_eq!(p.as_usize(), got.len());
                    got.push(x);
                }
                rest = &rest[n..];
            }
            // Empty slices are harmless.
            prop_assert!(h.update(&[]).unwrap().is_empty());
            h.finish().unwrap();
            prop_assert_eq!(&got, &expected);
        }
    }
}
