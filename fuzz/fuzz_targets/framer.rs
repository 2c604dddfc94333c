//! Fuzzes the stream framer: arbitrary bytes in arbitrary chunkings must
//! decode exactly as the same bytes in one chunk, never panic, and never
//! buffer more than one capped frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmdrop::engine::ids::{InfoHash, PeerId};
use swarmdrop::engine::wire::{Frame, FrameLimits, Framer, Handshake, Message};

/// Feeds `chunks` in order; returns what came out, as text, and checks the
/// framer's invariants after every chunk.
fn run<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let mut framer = Framer::new(FrameLimits::default());
    let cap = FrameLimits::default().max_declared_any() as usize + 4;
    let mut out = Vec::new();
    for chunk in chunks {
        let mut frames = framer.feed(chunk);
        while let Some(r) = frames.next() {
            if let Ok(Frame::Message(m)) = &r {
                // Whatever decodes re-encodes and decodes to the same message.
                let bytes = m.to_vec();
                assert_eq!(bytes.len(), m.encoded_len());
                assert_eq!(Message::decode(&bytes[4..]).as_ref(), Ok(m));
            }
            out.push(format!("{r:?}"));
        }
        drop(frames);
        assert!(framer.buffered() <= cap, "buffered {}", framer.buffered());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: bit 7 prepends a valid handshake (to get past it quickly), the
    // low four bits say how many chunk sizes follow. Then the sizes, then
    // the stream.
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let n = ((control & 0x0f) as usize).min(rest.len());
    let (sizes, body) = rest.split_at(n);
    let mut stream = Vec::new();
    if control & 0x80 != 0 {
        let hs = Handshake::swarmdrop(InfoHash([1; 20]), PeerId([2; 20]));
        stream.extend_from_slice(&hs.encode());
    }
    stream.extend_from_slice(body);

    let whole = run([&stream[..]]);
    let mut chunks = Vec::new();
    let mut left = &stream[..];
    let mut i = 0;
    while !left.is_empty() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(1, |&s| s as usize + 1);
        let (a, b) = left.split_at(size.min(left.len()));
        chunks.push(a);
        left = b;
        i += 1;
    }
    assert_eq!(whole, run(chunks));
});
