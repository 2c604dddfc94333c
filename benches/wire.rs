//! Wire decoding throughput: a stream of piece messages (16 KiB blocks)
//! through `Framer`, chunked as WebTorrent sends it (each message as its
//! 13-byte header and then its block) and in 64 KiB chunks.
//!
//! ```text
//! cargo bench --bench wire
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use swarmdrop::engine::ids::{InfoHash, PeerId};
use swarmdrop::engine::lengths::BLOCK_SIZE;
use swarmdrop::engine::wire::{
    encode_piece_header, Frame, FrameLimits, Framer, Handshake, Message,
};

/// Blocks in the stream: 64 MiB of block data.
const BLOCKS: u32 = 4096;
/// Blocks per piece (256 KiB pieces).
const BLOCKS_PER_PIECE: u32 = 16;
/// Length of a piece message's header (length prefix, id, index, begin).
const HEADER: usize = 13;

/// The handshake, then [`BLOCKS`] piece messages of [`BLOCK_SIZE`] bytes.
fn stream() -> Vec<u8> {
    let block = BLOCK_SIZE as usize;
    let handshake = Handshake::swarmdrop(InfoHash([7; 20]), PeerId([9; 20])).encode();
    let mut out = Vec::with_capacity(handshake.len() + BLOCKS as usize * (HEADER + block));
    out.extend_from_slice(&handshake);
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut data = vec![0u8; block];
    for i in 0..BLOCKS {
        let index = i / BLOCKS_PER_PIECE;
        let begin = (i % BLOCKS_PER_PIECE) * BLOCK_SIZE;
        out.extend_from_slice(&encode_piece_header(index, begin, BLOCK_SIZE));
        rng.fill(&mut data);
        out.extend_from_slice(&data);
    }
    out
}

/// Feeds `chunks` to a fresh framer and returns the block bytes decoded.
fn decode<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let mut framer = Framer::new(FrameLimits::default());
    let mut block_bytes = 0;
    for chunk in chunks {
        let mut frames = framer.feed(chunk);
        while let Some(frame) = frames.next() {
            match frame {
                Ok(Frame::Message(Message::Piece { block, .. })) => {
                    block_bytes += black_box(block).len();
                }
                Ok(Frame::Handshake(h)) => {
                    black_box(h);
                }
                other => panic!("the bench stream holds only pieces, got {other:?}"),
            }
        }
    }
    block_bytes
}

fn wire(c: &mut Criterion) {
    let stream = stream();
    let (handshake, messages) = stream.split_at(stream.len() - messages_len());
    // WebTorrent's pattern: the handshake, then per message one data-channel
    // message with the header and one with the block.
    let webtorrent: Vec<&[u8]> = std::iter::once(handshake)
        .chain(messages.chunks(HEADER + BLOCK_SIZE as usize).flat_map(|m| {
            let (header, block) = m.split_at(HEADER);
            [header, block]
        }))
        .collect();
    let fixed: Vec<&[u8]> = stream.chunks(64 * 1024).collect();

    let expected = BLOCKS as usize * BLOCK_SIZE as usize;
    assert_eq!(decode(webtorrent.iter().copied()), expected);
    assert_eq!(decode(fixed.iter().copied()), expected);

    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::BytesDecimal(stream.len() as u64));
    group.bench_function("framer/webtorrent_13+16384", |b| {
        b.iter(|| decode(webtorrent.iter().copied()))
    });
    group.bench_function("framer/64KiB_chunks", |b| {
        b.iter(|| decode(fixed.iter().copied()))
    });
    group.finish();
}

/// Bytes of the stream after the handshake.
fn messages_len() -> usize {
    BLOCKS as usize * (HEADER + BLOCK_SIZE as usize)
}

criterion_group!(benches, wire);
criterion_main!(benches);
