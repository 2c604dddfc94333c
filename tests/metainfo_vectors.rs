//! Torrents made by mktorrent and transmission-create, checked against the
//! info hashes those tools print, the content they hashed, and our builder.
//!
//! The vectors and their manifest come from `tests/vectors/make.sh`; the
//! content is regenerated here from the formula documented there, so this
//! test needs none of the tools.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use swarmdrop::engine::create::TorrentBuilder;
use swarmdrop::engine::hash::{sha1, verify_piece, PieceHasher};
use swarmdrop::engine::magnet::Magnet;
use swarmdrop::engine::metainfo::Metainfo;

#[derive(Deserialize)]
struct Manifest {
    cases: BTreeMap<String, Case>,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    single_file: bool,
    files: Vec<CaseFile>,
}

#[derive(Deserialize, Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct CaseFile {
    path: Vec<String>,
    length: u64,
}

#[derive(Deserialize)]
struct Vector {
    torrent: String,
    tool: String,
    case: String,
    piece_length: u32,
    includes_empty_files: bool,
    writes_private_zero: bool,
    private: bool,
    source: Option<String>,
    trackers: Vec<Vec<String>>,
    web_seeds: Vec<String>,
    comment: Option<String>,
    created_by: String,
    info_hash: String,
    piece_count: u32,
}

impl Vector {
    fn is_mktorrent(&self) -> bool {
        self.tool.starts_with("mktorrent")
    }
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn manifest() -> Manifest {
    let text = fs::read_to_string(vectors_dir().join("vectors.json")).expect("read vectors.json");
    let m: Manifest = serde_json::from_str(&text).expect("parse vectors.json");
    assert!(m.vectors.len() >= 10, "the manifest lists too few vectors");
    m
}

fn load(v: &Vector) -> (Vec<u8>, Metainfo) {
    let bytes = fs::read(vectors_dir().join(&v.torrent)).expect("read torrent");
    let m = Metainfo::from_torrent_bytes(&bytes)
        .unwrap_or_else(|e| panic!("{}: does not parse: {e}", v.torrent));
    (bytes, m)
}

/// The file's bytes by the formula in `make.sh`.
fn content(case: &str, path: &[String], length: u64) -> Vec<u8> {
    let seed = format!("swarmdrop-vector/{case}/{}", path.join("/"));
    let mut out = Vec::with_capacity(length as usize + 20);
    let mut i = 0u64;
    while (out.len() as u64) < length {
        let block = [seed.as_bytes(), &[0], &i.to_be_bytes()].concat();
        out.extend_from_slice(&sha1(&block));
        i += 1;
    }
    out.truncate(length as usize);
    out
}

/// The files the tool put in the torrent, in the case's order.
fn expected_files(v: &Vector, case: &Case) -> Vec<CaseFile> {
    case.files
        .iter()
        .filter(|f| v.includes_empty_files || f.length > 0)
        .cloned()
        .collect()
}

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("swarmdrop-vectors-{}-{label}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_vector_parses_to_the_info_hash_its_tool_printed() {
    let manifest = manifest();
    for v in &manifest.vectors {
        let case = &manifest.cases[&v.case];
        let (_, m) = load(v);
        let t = &v.torrent;
        assert_eq!(m.info_hash.to_hex(), v.info_hash, "{t}: info hash");
        assert_eq!(
            m.info.lengths.num_pieces(),
            v.piece_count,
            "{t}: piece count"
        );
        assert_eq!(m.info.piece_hashes.len(), v.piece_count as usize, "{t}");
        assert_eq!(m.info.lengths.piece_length(), v.piece_length, "{t}");
        assert_eq!(m.info.name, case.name, "{t}: name");
        assert_eq!(m.info.multi_file, !case.single_file, "{t}: multi-file");
        assert_eq!(m.info.private, v.private, "{t}: private");

        // Same files (mktorrent in path order, transmission in listing order),
        // placed one after the other.
        let mut want = expected_files(v, case);
        let mut got: Vec<CaseFile> = m
            .info
            .files
            .iter()
            .map(|f| CaseFile {
                path: f.path.clone(),
                length: f.length,
            })
            .collect();
        if v.is_mktorrent() {
            want.sort_by_cached_key(|f| f.path.join("/"));
        } else {
            want.sort();
            got.sort();
        }
        assert_eq!(got, want, "{t}: files");
        let mut offset = 0;
        for f in &m.info.files {
            assert_eq!(f.offset, offset, "{t}: offset of {:?}", f.path);
            assert!(!f.padding);
            offset += f.length;
        }
        assert_eq!(m.info.lengths.total_length(), offset, "{t}: total");

        // Everything outside the info dictionary.
        let trackers: Vec<String> = v.trackers.iter().flatten().cloned().collect();
        assert_eq!(m.trackers(), trackers, "{t}: trackers");
        assert_eq!(m.announce.as_ref(), trackers.first(), "{t}: announce");
        if trackers.len() > 1 {
            assert_eq!(m.announce_list, v.trackers, "{t}: announce-list tiers");
        }
        assert_eq!(m.url_list, v.web_seeds, "{t}: url-list");
        assert_eq!(m.comment, v.comment, "{t}: comment");
        assert_eq!(m.created_by.as_deref(), Some(v.created_by.as_str()), "{t}");
    }
}

#[test]
fn every_piece_hash_matches_the_regenerated_content() {
    let manifest = manifest();
    for v in &manifest.vectors {
        let case = &manifest.cases[&v.case];
        let (_, m) = load(v);
        let t = &v.torrent;

        // Write the content to disk as the tool saw it.
        let dir = TempDir::new(v.torrent.trim_end_matches(".torrent"));
        let root = if case.single_file {
            dir.0.clone()
        } else {
            dir.0.join(&case.name)
        };
        for f in &case.files {
            let path = f.path.iter().fold(root.clone(), |p, c| p.join(c));
            fs::create_dir_all(path.parent().expect("file has a parent")).expect("mkdir");
            fs::write(&path, content(&v.case, &f.path, f.length)).expect("write content");
        }

        // Read the files back in torrent order with an odd buffer size, so
        // reads straddle file and piece boundaries, and hash the stream.
        let mut hasher = PieceHasher::new(m.info.lengths);
        let mut hashes = Vec::new();
        let mut buf = vec![0u8; 7919];
        let mut stream = Vec::new();
        for f in &m.info.files {
            let path = f.path.iter().fold(root.clone(), |p, c| p.join(c));
            let mut file = fs::File::open(&path).expect("open content");
            loop {
                let n = file.read(&mut buf).expect("read content");
                if n == 0 {
                    break;
                }
                stream.extend_from_slice(&buf[..n]);
                for (piece, hash) in hasher.update(&buf[..n]).expect("not past the end") {
                    assert_eq!(piece.as_usize(), hashes.len(), "{t}: pieces in order");
                    hashes.push(hash);
                }
            }
        }
        hasher
            .finish()
            .expect("the files add up to the total length");
        assert_eq!(hashes, m.info.piece_hashes, "{t}: piece hashes");

        // Each piece reassembled from its file spans verifies too.
        for piece in m.info.lengths.pieces() {
            let start = m.info.lengths.piece_offset(piece);
            let len = m.info.lengths.piece_len(piece) as u64;
            let mut bytes = Vec::with_capacity(len as usize);
            for span in m.info.file_spans(start, len) {
                let f = &m.info.files[span.file_index];
                let data = &stream[f.offset as usize..(f.offset + f.length) as usize];
                let at = span.file_offset as usize;
                bytes.extend_from_slice(&data[at..at + span.len as usize]);
            }
            assert!(
                verify_piece(m.info.piece_hash(piece), &bytes),
                "{t}: piece {} from its file spans",
                piece.get()
            );
        }
    }
}

#[test]
fn the_builder_reproduces_every_tools_info_hash() {
    let manifest = manifest();
    for v in &manifest.vectors {
        let case = &manifest.cases[&v.case];
        let (_, m) = load(v);
        let t = &v.torrent;

        let files = if v.is_mktorrent() {
            // The case's files, sorted by our rule: this proves it is mktorrent's.
            expected_files(v, case)
        } else {
            // transmission-create keeps the directory listing order, which
            // depends on the file system it ran on: take it from the torrent.
            m.info
                .files
                .iter()
                .map(|f| CaseFile {
                    path: f.path.clone(),
                    length: f.length,
                })
                .collect()
        };
        let mut b = TorrentBuilder::new(case.name.clone())
            .files(files.into_iter().map(|f| (f.path, f.length)))
            .piece_length(v.piece_length)
            .private(v.private)
            .write_private_zero(v.writes_private_zero);
        if v.is_mktorrent() {
            b = b.sort_files();
        }
        if let Some(source) = &v.source {
            b = b.source(source.clone());
        }
        for tier in &v.trackers {
            b = b.tracker_tier(tier.clone());
        }
        for w in &v.web_seeds {
            b = b.web_seed(w.clone());
        }
        assert_eq!(b.is_single_file(), case.single_file, "{t}");
        let lengths = b.lengths().expect("valid builder");
        assert_eq!(lengths, m.info.lengths, "{t}: lengths before hashing");

        let mut hasher = PieceHasher::new(lengths);
        let mut hashes = Vec::new();
        for f in &m.info.files {
            let data = content(&v.case, &f.path, f.length);
            hashes.extend(
                hasher
                    .update(&data)
                    .expect("fits")
                    .into_iter()
                    .map(|(_, h)| h),
            );
        }
        hasher.finish().expect("whole stream");

        let built = b.build(hashes).expect("build");
        assert_eq!(
            built.info_hash.to_hex(),
            v.info_hash,
            "{t}: rebuilt info hash"
        );
        assert_eq!(built.info_bytes, m.info_bytes, "{t}: rebuilt info bytes");
        assert_eq!(built.info, m.info, "{t}");
        assert_eq!(built.trackers(), m.trackers(), "{t}");
        assert_eq!(built.url_list, m.url_list, "{t}");
    }
}

#[test]
fn vectors_write_back_byte_for_byte_and_survive_a_magnet_round_trip() {
    let manifest = manifest();
    for v in &manifest.vectors {
        let (bytes, m) = load(v);
        let t = &v.torrent;
        // Both tools write canonical bencode, so our writer reproduces it.
        assert_eq!(m.to_torrent_bytes(), bytes, "{t}: written back");
        let link = m.magnet();
        let parsed = Magnet::parse(&link.to_uri()).expect("own link parses");
        assert_eq!(parsed, link, "{t}: magnet");
        assert_eq!(parsed.info_hash.to_hex(), v.info_hash, "{t}");
        // A torrent rebuilt from BEP 9 metadata and the link is the same torrent.
        let rebuilt = Metainfo::from_info(m.info_bytes.clone(), parsed.trackers, parsed.web_seeds)
            .expect("metadata parses");
        assert_eq!(rebuilt.info, m.info, "{t}");
        assert_eq!(rebuilt.info_hash, m.info_hash, "{t}");
        assert_eq!(rebuilt.trackers(), m.trackers(), "{t}");
    }
}
