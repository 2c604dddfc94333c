//! Fuzzes the BEP 10 / BEP 9 payload decoders: never panic, and whatever
//! decodes round-trips through the encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmdrop::engine::wire::extension::{decode_donthave, encode_donthave};
use swarmdrop::engine::wire::{ExtendedHandshake, MetadataMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ExtendedHandshake::decode(data) {
        assert_eq!(ExtendedHandshake::decode(&h.encode()), Ok(h));
    }
    if let Ok(m) = MetadataMessage::decode(data) {
        let bytes = m.to_vec();
        assert_eq!(MetadataMessage::decode(&bytes), Ok(m));
    }
    if let Ok(piece) = decode_donthave(data) {
        assert_eq!(encode_donthave(piece)[..], data[..]);
    }
});
