//! Fuzzes the bencode decoder: never panics, and whatever decodes encodes
//! canonically to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmdrop::engine::bencode;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = bencode::decode(data) {
        assert_eq!(node.raw, data);
        let value = node.to_owned_value();
        let encoded = value.encode();
        let again = bencode::decode(&encoded).expect("a canonical encoding decodes");
        assert_eq!(again.to_owned_value(), value);
        assert_eq!(again.to_owned_value().encode(), encoded);
    }
    if let Ok((node, used)) = bencode::decode_prefix(data) {
        assert_eq!(node.raw, &data[..used]);
    }
});
