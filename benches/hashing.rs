//! Piece hashing throughput: `PieceHasher` fed 16 KiB blocks, and bare `sha1`
//! per piece, over 256 MiB in 256 KiB and 1 MiB pieces.
//!
//! The data is 256 MiB of seeded pseudo-random bytes, or the file named by
//! `SWARMDROP_BENCH_FILE` (`benches/compare_sha1sum.sh` passes the file it
//! times `sha1sum` on, so both hash the same bytes).
//!
//! ```text
//! cargo bench --bench hashing
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use swarmdrop::engine::hash::{sha1, PieceHasher};
use swarmdrop::engine::lengths::{Lengths, BLOCK_SIZE};

/// Bytes hashed per iteration when no file is given.
const TOTAL: usize = 256 * 1024 * 1024;

/// The piece lengths measured, with their labels.
const PIECES: [(u32, &str); 2] = [(256 * 1024, "256KiB"), (1024 * 1024, "1MiB")];

/// The bytes to hash: the file in `SWARMDROP_BENCH_FILE`, else [`TOTAL`]
/// seeded pseudo-random bytes.
fn data() -> Vec<u8> {
    match std::env::var_os("SWARMDROP_BENCH_FILE") {
        Some(path) => match std::fs::read(&path) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            Ok(_) => exit(format!("{} is empty", path.to_string_lossy())),
            Err(e) => exit(format!("cannot read {}: {e}", path.to_string_lossy())),
        },
        None => {
            let mut bytes = vec![0u8; TOTAL];
            fastrand::Rng::with_seed(0x5eed).fill(&mut bytes);
            bytes
        }
    }
}

fn exit(message: String) -> ! {
    eprintln!("hashing bench: {message}");
    std::process::exit(2)
}

fn hashing(c: &mut Criterion) {
    let data = data();
    let mut group = c.benchmark_group("hashing");
    // One iteration hashes the whole buffer (about a second): ten flat
    // samples keep a run to a couple of minutes.
    group
        .throughput(Throughput::BytesDecimal(data.len() as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));

    for (piece_length, label) in PIECES {
        let lengths = match Lengths::new(data.len() as u64, piece_length.into()) {
            Ok(lengths) => lengths,
            Err(e) => exit(format!("{} bytes in {label} pieces: {e}", data.len())),
        };
        // Sanity check outside the timing: both ways give the same hashes.
        let streamed = match PieceHasher::hash_all(lengths, &data) {
            Ok(hashes) => hashes,
            Err(e) => exit(e.to_string()),
        };
        let direct: Vec<[u8; 20]> = data.chunks(piece_length as usize).map(sha1).collect();
        assert_eq!(streamed, direct, "hashes differ ({label})");

        // As a download sees the data: blocks in order, pieces completed as
        // their last block lands.
        group.bench_function(format!("piece_hasher/{label}"), |b| {
            b.iter(|| {
                let mut hasher = PieceHasher::new(lengths);
                let mut pieces = 0usize;
                for block in data.chunks(BLOCK_SIZE as usize) {
                    match hasher.update(black_box(block)) {
                        Ok(done) => pieces += done.len(),
                        Err(e) => exit(e.to_string()),
                    }
                }
                black_box(pieces)
            })
        });
        // The bare SHA-1 of each whole piece (what verifying a piece costs).
        group.bench_function(format!("sha1/{label}"), |b| {
            b.iter(|| {
                for piece in data.chunks(piece_length as usize) {
                    black_box(sha1(black_box(piece)));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
