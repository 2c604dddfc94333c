//! Fuzzes the torrent, info-dictionary and magnet parsers: never panic, and
//! whatever parses writes back to bytes (or a URI) that parse to the same
//! torrent, info hash and files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmdrop::engine::hash::sha1;
use swarmdrop::engine::magnet::Magnet;
use swarmdrop::engine::metainfo::{Info, Metainfo};

/// The invariants every validated info dictionary keeps: files laid end to
/// end, one hash per piece, and each file's pieces inside the torrent.
fn check_info(info: &Info) {
    let lengths = info.lengths;
    assert_eq!(info.piece_hashes.len(), lengths.num_pieces() as usize);
    assert!(!info.files.is_empty());
    let mut offset = 0u64;
    for (i, file) in info.files.iter().enumerate() {
        assert_eq!(file.offset, offset, "file {i} is not where the last ended");
        offset += file.length;
        let pieces = info.file_piece_range(i);
        assert!(pieces.end <= lengths.num_pieces());
        assert_eq!(pieces.is_empty(), file.length == 0);
    }
    assert_eq!(offset, lengths.total_length());
    // The whole stream maps onto the files exactly once.
    let covered: u64 = info.file_spans(0, u64::MAX).map(|s| s.len).sum();
    assert_eq!(covered, lengths.total_length());
}

fn check_torrent(data: &[u8]) {
    let Ok(m) = Metainfo::from_torrent_bytes(data) else {
        return;
    };
    check_info(&m.info);
    assert_eq!(m.info_hash.0, sha1(&m.info_bytes));
    assert!(
        data.windows(m.info_bytes.len()).any(|w| w == m.info_bytes),
        "the info bytes are not a span of the input"
    );

    let written = m.to_torrent_bytes();
    let again = Metainfo::from_torrent_bytes(&written).expect("a written torrent parses");
    assert_eq!(again.info_hash, m.info_hash);
    assert_eq!(again.info.files, m.info.files);
    assert_eq!(again, m);
    assert_eq!(again.to_torrent_bytes(), written, "writing is not stable");

    // The magnet link of a parsed torrent parses back to itself.
    let magnet = m.magnet();
    assert_eq!(Magnet::parse(&magnet.to_uri()), Ok(magnet));
}

fn check_info_bytes(data: &[u8]) {
    let Ok((info, hash)) = Info::from_info_bytes(data) else {
        return;
    };
    check_info(&info);
    assert_eq!(hash.0, sha1(data));
    // What BEP 9 metadata becomes after a magnet link: the same torrent.
    let m = Metainfo::from_info(data.to_vec(), vec![], vec![]).expect("valid info bytes");
    assert_eq!(m.info_hash, hash);
    assert_eq!(m.info, info);
    let again = Metainfo::from_torrent_bytes(&m.to_torrent_bytes()).expect("it writes");
    assert_eq!(again, m);
}

fn check_magnet(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(magnet) = Magnet::parse(&text) else {
        return;
    };
    let uri = magnet.to_uri();
    assert_eq!(Magnet::parse(&uri).as_ref(), Ok(&magnet), "uri {uri:?}");
}

fuzz_target!(|data: &[u8]| {
    check_torrent(data);
    check_info_bytes(data);
    check_magnet(data);
});
