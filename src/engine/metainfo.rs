//! Torrent metainfo: `.torrent` files and info dictionaries, validated for safe use.
//!
//! The info hash is the SHA-1 of the `info` dictionary's bytes exactly as
//! received, and those bytes are kept ([`Metainfo::info_bytes`]) so that a
//! torrent written back or served over ut_metadata hashes the same, whatever
//! key order or extra keys its creator used.
//!
//! File paths end up on disk, so every name and path component is checked:
//! empty, `.`, `..`, separators, NUL and drive letters are refused, as are two
//! files with the same path or a file that is also a directory.

use std::collections::BTreeMap;

use thiserror::Error;

use super::bencode::{self, DecodeError, Dict, Node, OwnedValue};
use super::hash::sha1;
use super::ids::InfoHash;
use super::lengths::{Lengths, LengthsError, PieceIndex};
use super::sort;

/// Why bytes are not a usable torrent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MetainfoError {
    /// The bytes are not valid bencode.
    #[error("not valid bencode: {0}")]
    Bencode(#[from] DecodeError),
    /// The top-level value is not a dictionary.
    #[error("the torrent is not a dictionary")]
    NotADictionary,
    /// A key the torrent needs is absent.
    #[error("missing key `{0}`")]
    MissingKey(&'static str),
    /// A key holds a value of the wrong type.
    #[error("key `{key}` is not {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What it should hold.
        expected: &'static str,
    },
    /// An integer that must not be negative is.
    #[error("key `{key}` is negative ({value})")]
    Negative {
        /// The key.
        key: &'static str,
        /// The value found.
        value: i64,
    },
    /// The `pieces` string is not a whole number of 20-byte hashes.
    #[error("`pieces` is {0} bytes long, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    /// The piece length, total length or piece count is not acceptable.
    #[error("bad lengths: {0}")]
    Lengths(#[from] LengthsError),
    /// A multi-file torrent whose `files` list is empty.
    #[error("the `files` list is empty")]
    NoFiles,
    /// A file whose path has no component.
    #[error("the path is empty")]
    EmptyPath,
    /// A name or path component that is unsafe to create on disk.
    #[error("unsafe {what} component {component:?}: {why}")]
    UnsafePath {
        /// `name` or `path`.
        what: &'static str,
        /// The component as decoded.
        component: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Two files share a path, or a file's path is also another file's directory.
    #[error("path {0:?} is used by two files, or as both a file and a directory")]
    PathConflict(String),
    /// The file lengths add up to more than a `u64` holds.
    #[error("the file lengths overflow")]
    TotalLengthOverflow,
    /// A problem with one entry of the `files` list.
    #[error("file {index}: {source}")]
    File {
        /// Index of the entry in `files`.
        index: usize,
        /// The problem.
        source: Box<MetainfoError>,
    },
}

/// One file of a torrent, placed in the concatenated stream of all files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components. For a multi-file torrent they are relative to the
    /// torrent's directory (`Info::name`); for a single-file torrent the path
    /// is `vec![name]`.
    pub path: Vec<String>,
    /// Length in bytes (may be zero).
    pub length: u64,
    /// Offset of the file's first byte in the concatenated stream.
    pub offset: u64,
    /// A BEP 47 padding file (attribute `p`): zeros, never written to disk.
    pub padding: bool,
}

/// A contiguous piece of a file that a range of the stream covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// Index into [`Info::files`].
    pub file_index: usize,
    /// Offset inside that file.
    pub file_offset: u64,
    /// Length of the span (never zero).
    pub len: u64,
}

/// A validated info dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// Suggested name: the file name of a single-file torrent, the directory
    /// name of a multi-file one (`name.utf-8` when present).
    pub name: String,
    /// Total length, piece length and piece count.
    pub lengths: Lengths,
    /// One SHA-1 per piece.
    pub piece_hashes: Vec<[u8; 20]>,
    /// The files in stream order (one for a single-file torrent).
    pub files: Vec<FileEntry>,
    /// Whether the info dictionary has a `files` list (the files live in a
    /// directory called `name`) rather than a single `length`.
    pub multi_file: bool,
    /// BEP 27 private flag.
    pub private: bool,
}

/// A parsed `.torrent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of [`Metainfo::info_bytes`].
    pub info_hash: InfoHash,
    /// The raw `info` dictionary exactly as received.
    pub info_bytes: Vec<u8>,
    /// The parsed `info` dictionary.
    pub info: Info,
    /// `announce`: the tracker of a torrent without an announce list.
    pub announce: Option<String>,
    /// `announce-list` (BEP 12): tiers of tracker URLs.
    pub announce_list: Vec<Vec<String>>,
    /// `url-list` (BEP 19): web seed URLs.
    pub url_list: Vec<String>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date`, seconds since the Unix epoch.
    pub creation_date: Option<i64>,
    /// Every other top-level key (and known keys whose value had an
    /// unexpected type), kept so that writing the torrent back keeps them.
    pub extra: BTreeMap<Vec<u8>, OwnedValue>,
}

impl Metainfo {
    /// Parses and validates a `.torrent` file.
    pub fn from_torrent_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let node = bencode::decode(bytes)?;
        let top = node.as_dict().ok_or(MetainfoError::NotADictionary)?;
        let info_node = top.get(b"info").ok_or(MetainfoError::MissingKey("info"))?;
        let info = Info::from_node(info_node)?;
        let mut m = Metainfo {
            info_hash: InfoHash(sha1(info_node.raw)),
            info_bytes: info_node.raw.to_vec(),
            info,
            announce: None,
            announce_list: Vec::new(),
            url_list: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
            extra: BTreeMap::new(),
        };
        for (key, value) in &top.entries {
            let understood = match *key {
                b"info" => true,
                b"announce" => value
                    .as_bytes()
                    .map(|b| m.announce = non_empty(b))
                    .is_some(),
                b"announce-list" => value
                    .as_list()
                    .map(|tiers| m.announce_list = announce_tiers(tiers))
                    .is_some(),
                b"url-list" => url_list(value).map(|urls| m.url_list = urls).is_some(),
                b"comment" => value
                    .as_bytes()
                    .map(|b| m.comment = Some(text(b)))
                    .is_some(),
                b"created by" => value
                    .as_bytes()
                    .map(|b| m.created_by = Some(text(b)))
                    .is_some(),
                b"creation date" => value.as_int().map(|d| m.creation_date = Some(d)).is_some(),
                _ => false,
            };
            if !understood {
                m.extra.insert(key.to_vec(), value.to_owned_value());
            }
        }
        Ok(m)
    }

    /// A torrent made of info bytes obtained elsewhere (BEP 9 metadata after
    /// a magnet link), with the link's trackers and web seeds. With several
    /// trackers each gets its own tier, as in a magnet link's order.
    pub fn from_info(
        info_bytes: Vec<u8>,
        trackers: Vec<String>,
        web_seeds: Vec<String>,
    ) -> Result<Metainfo, MetainfoError> {
        let (info, info_hash) = Info::from_info_bytes(&info_bytes)?;
        let trackers: Vec<String> = trackers.into_iter().filter(|t| !t.is_empty()).collect();
        let announce_list = if trackers.len() > 1 {
            trackers.iter().map(|t| vec![t.clone()]).collect()
        } else {
            Vec::new()
        };
        Ok(Metainfo {
            info_hash,
            info_bytes,
            info,
            announce: trackers.first().cloned(),
            announce_list,
            url_list: web_seeds.into_iter().filter(|w| !w.is_empty()).collect(),
            comment: None,
            created_by: None,
            creation_date: None,
            extra: BTreeMap::new(),
        })
    }

    /// Writes the torrent: the `info` dictionary spliced in byte for byte,
    /// every other key encoded canonically.
    pub fn to_torrent_bytes(&self) -> Vec<u8> {
        let mut top = self.extra.clone();
        let mut put = |key: &str, value: OwnedValue| {
            top.insert(key.as_bytes().to_vec(), value);
        };
        if let Some(a) = &self.announce {
            put("announce", OwnedValue::bytes(a));
        }
        if !self.announce_list.is_empty() {
            put(
                "announce-list",
                OwnedValue::List(
                    self.announce_list
                        .iter()
                        .map(|tier| OwnedValue::List(tier.iter().map(OwnedValue::bytes).collect()))
                        .collect(),
                ),
            );
        }
        match self.url_list.as_slice() {
            [] => {}
            [one] => put("url-list", OwnedValue::bytes(one)),
            many => put(
                "url-list",
                OwnedValue::List(many.iter().map(OwnedValue::bytes).collect()),
            ),
        }
        if let Some(c) = &self.comment {
            put("comment", OwnedValue::bytes(c));
        }
        if let Some(c) = &self.created_by {
            put("created by", OwnedValue::bytes(c));
        }
        if let Some(d) = self.creation_date {
            put("creation date", OwnedValue::Int(d));
        }
        put("info", OwnedValue::Raw(self.info_bytes.clone()));
        OwnedValue::Dict(top).encode()
    }

    /// Every tracker URL once, in order: the announce list's tiers
    /// flattened, or `announce` when there is no list (BEP 12).
    pub fn trackers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let all: Box<dyn Iterator<Item = &String>> = if self.announce_list.is_empty() {
            Box::new(self.announce.iter())
        } else {
            Box::new(self.announce_list.iter().flatten())
        };
        for t in all {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

impl Info {
    /// Parses and validates a raw info dictionary (BEP 9 metadata) and
    /// returns it with its info hash.
    pub fn from_info_bytes(bytes: &[u8]) -> Result<(Info, InfoHash), MetainfoError> {
        let node = bencode::decode(bytes)?;
        let info = Info::from_node(&node)?;
        Ok((info, InfoHash(sha1(node.raw))))
    }

    fn from_node(node: &Node<'_>) -> Result<Info, MetainfoError> {
        let d = node.as_dict().ok_or(MetainfoError::WrongType {
            key: "info",
            expected: "a dictionary",
        })?;
        let piece_length = non_negative(d, "piece length")?;
        let pieces = required_bytes(d, "pieces")?;
        if pieces.len() % 20 != 0 {
            return Err(MetainfoError::PiecesNotMultipleOf20(pieces.len()));
        }
        let name = utf8_preferred(d, "name", b"name.utf-8")?;
        check_component("name", &name)?;
        let private = d.get_int(b"private").is_some_and(|p| p != 0);

        let (files, multi_file) = match d.get(b"files") {
            Some(list) => {
                let list = list.as_list().ok_or(MetainfoError::WrongType {
                    key: "files",
                    expected: "a list",
                })?;
                if list.is_empty() {
                    return Err(MetainfoError::NoFiles);
                }
                let mut files = Vec::with_capacity(list.len());
                let mut offset = 0u64;
                for (index, entry) in list.iter().enumerate() {
                    let file = file_entry(entry, offset).map_err(|e| MetainfoError::File {
                        index,
                        source: Box::new(e),
                    })?;
                    offset = offset
                        .checked_add(file.length)
                        .ok_or(MetainfoError::TotalLengthOverflow)?;
                    files.push(file);
                }
                check_conflicts(&files)?;
                (files, true)
            }
            None => {
                let length = non_negative(d, "length")?;
                let file = FileEntry {
                    path: vec![name.clone()],
                    length,
                    offset: 0,
                    padding: false,
                };
                (vec![file], false)
            }
        };
        let total = files.last().map_or(0, |f| f.offset + f.length);
        let lengths = Lengths::new(total, piece_length)?;
        lengths.check_piece_count(pieces.len() / 20)?;
        let piece_hashes = pieces
            .chunks_exact(20)
            .map(|c| {
                let mut h = [0u8; 20];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Info {
            name,
            lengths,
            piece_hashes,
            files,
            multi_file,
            private,
        })
    }

    /// The expected SHA-1 of a piece.
    ///
    /// `piece` must have been validated against this torrent's lengths.
    pub fn piece_hash(&self, piece: PieceIndex) -> &[u8; 20] {
        &self.piece_hashes[piece.as_usize()]
    }

    /// Maps the byte range `[offset, offset + len)` of the concatenated
    /// stream to the file segments it covers, in order. Zero-length files
    /// yield nothing; the part of the range past the end is ignored.
    pub fn file_spans(&self, offset: u64, len: u64) -> impl Iterator<Item = FileSpan> + '_ {
        let end = offset.saturating_add(len).min(self.lengths.total_length());
        let first = self
            .files
            .partition_point(|f| f.offset + f.length <= offset);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < end)
            .filter_map(move |(i, f)| {
                let start = offset.max(f.offset);
                let stop = end.min(f.offset + f.length);
                (stop > start).then_some(FileSpan {
                    file_index: first + i,
                    file_offset: start - f.offset,
                    len: stop - start,
                })
            })
    }

    /// The pieces that hold some byte of file `file_index`: empty for an
    /// empty file or an index out of range.
    pub fn file_piece_range(&self, file_index: usize) -> std::ops::Range<u32> {
        self.files
            .get(file_index)
            .map_or(0..0, |f| self.lengths.pieces_for_range(f.offset, f.length))
    }

    /// Index of the Swarmdrop bundle manifest (the file list with thumbnails,
    /// [`BUNDLE_MANIFEST_PATH`]), if this torrent has one of a plausible size.
    pub fn bundle_manifest(&self) -> Option<usize> {
        self.files.iter().position(|f| {
            !f.padding
                && f.length > 0
                && f.length <= MAX_BUNDLE_MANIFEST_LEN
                && f.path
                    .iter()
                    .map(String::as_str)
                    .eq(BUNDLE_MANIFEST_PATH.iter().copied())
        })
    }
}

/// Where a Swarmdrop bundle keeps its manifest (file list, types and
/// thumbnails made by the sender): fetched before every other piece so a
/// recipient sees the mosaic at once. Other clients see an ordinary small file.
pub const BUNDLE_MANIFEST_PATH: [&str; 2] = [".swarmdrop", "manifest.json"];

/// A "manifest" larger than this is treated as an ordinary file.
pub const MAX_BUNDLE_MANIFEST_LEN: u64 = 8 * 1024 * 1024;

fn file_entry(entry: &Node<'_>, offset: u64) -> Result<FileEntry, MetainfoError> {
    let d = entry.as_dict().ok_or(MetainfoError::WrongType {
        key: "files",
        expected: "a list of dictionaries",
    })?;
    let length = non_negative(d, "length")?;
    let padding = d.get_bytes(b"attr").is_some_and(|a| a.contains(&b'p'));
    let path = match d.get(b"path.utf-8").and_then(|p| utf8_path(p)) {
        Some(path) => path,
        None => {
            let list = d
                .get(b"path")
                .ok_or(MetainfoError::MissingKey("path"))?
                .as_list()
                .ok_or(MetainfoError::WrongType {
                    key: "path",
                    expected: "a list of strings",
                })?;
            list.iter()
                .map(|c| {
                    c.as_bytes().map(text).ok_or(MetainfoError::WrongType {
                        key: "path",
                        expected: "a list of strings",
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    if path.is_empty() {
        return Err(MetainfoError::EmptyPath);
    }
    for c in &path {
        check_component("path", c)?;
    }
    Ok(FileEntry {
        path,
        length,
        offset,
        padding,
    })
}

/// A `path.utf-8` list, if it is a non-empty list of valid UTF-8 strings.
fn utf8_path(node: &Node<'_>) -> Option<Vec<String>> {
    let list = node.as_list()?;
    let path = list
        .iter()
        .map(|c| c.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()?;
    (!path.is_empty()).then_some(path)
}

/// Refuses a name or path component that could escape the download
/// directory or cannot be a file name.
pub(crate) fn check_component(what: &'static str, c: &str) -> Result<(), MetainfoError> {
    let why = if c.is_empty() {
        Some("empty")
    } else if c == "." || c == ".." {
        Some("refers to a directory")
    } else if c.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if c.contains('\0') {
        Some("contains a NUL character")
    } else if c.as_bytes()[0].is_ascii_alphabetic() && c.as_bytes().get(1) == Some(&b':') {
        Some("is an absolute path (drive letter)")
    } else {
        None
    };
    match why {
        Some(why) => Err(MetainfoError::UnsafePath {
            what,
            component: c.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// Refuses two non-padding files with the same path, and a file whose path is
/// a directory of another. (Padding files may repeat: `.pad/16384` twice is
/// normal, and they are never written.)
pub(crate) fn check_conflicts(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut paths: Vec<&[String]> = files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| f.path.as_slice())
        .collect();
    sort::sort_by(&mut paths, Ord::cmp);
    // Sorted component-wise, a path is immediately followed by any path it is
    // a prefix of, so comparing neighbours finds every conflict.
    for pair in paths.windows(2) {
        if pair[1].starts_with(pair[0]) {
            return Err(MetainfoError::PathConflict(pair[0].join("/")));
        }
    }
    Ok(())
}

fn required_bytes<'a>(d: &Dict<'a>, key: &'static str) -> Result<&'a [u8], MetainfoError> {
    d.get(key.as_bytes())
        .ok_or(MetainfoError::MissingKey(key))?
        .as_bytes()
        .ok_or(MetainfoError::WrongType {
            key,
            expected: "a string",
        })
}

fn non_negative(d: &Dict<'_>, key: &'static str) -> Result<u64, MetainfoError> {
    let value = d
        .get(key.as_bytes())
        .ok_or(MetainfoError::MissingKey(key))?
        .as_int()
        .ok_or(MetainfoError::WrongType {
            key,
            expected: "an integer",
        })?;
    u64::try_from(value).map_err(|_| MetainfoError::Negative { key, value })
}

/// `utf8_key` when it holds valid UTF-8, else `key` (required), decoded
/// leniently: torrents from old clients sometimes carry other encodings, and
/// a replacement character is still a safe file name.
fn utf8_preferred(
    d: &Dict<'_>,
    key: &'static str,
    utf8_key: &[u8],
) -> Result<String, MetainfoError> {
    if let Some(s) = d.get(utf8_key).and_then(Node::as_str) {
        return Ok(s.to_owned());
    }
    required_bytes(d, key).map(text)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn non_empty(b: &[u8]) -> Option<String> {
    (!b.is_empty()).then(|| text(b))
}

fn announce_tiers(tiers: &[Node<'_>]) -> Vec<Vec<String>> {
    tiers
        .iter()
        .filter_map(Node::as_list)
        .map(|tier| {
            tier.iter()
                .filter_map(|t| t.as_bytes().and_then(non_empty))
                .collect::<Vec<_>>()
        })
        .filter(|tier| !tier.is_empty())
        .collect()
}

/// BEP 19 allows one URL as a string or several as a list.
fn url_list(node: &Node<'_>) -> Option<Vec<String>> {
    match (node.as_bytes(), node.as_list()) {
        (Some(b), _) => Some(non_empty(b).into_iter().collect()),
        (_, Some(list)) => Some(
            list.iter()
                .filter_map(|u| u.as_bytes().and_then(non_empty))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::lengths::MAX_TOTAL_LENGTH;
    use proptest::prelude::*;

    fn hashes(n: usize) -> OwnedValue {
        OwnedValue::Bytes((0..n * 20).map(|i| i as u8).collect())
    }

    fn file(path: &[&str], length: i64) -> OwnedValue {
        OwnedValue::dict()
            .with("length", OwnedValue::Int(length))
            .with(
                "path",
                OwnedValue::List(path.iter().map(OwnedValue::bytes).collect()),
            )
    }

    fn multi(files: Vec<OwnedValue>, pieces: usize) -> OwnedValue {
        OwnedValue::dict()
            .with("name", OwnedValue::bytes("bundle"))
            .with("piece length", OwnedValue::Int(16384))
            .with("pieces", hashes(pieces))
            .with("files", OwnedValue::List(files))
    }

    fn torrent(info: OwnedValue) -> Vec<u8> {
        OwnedValue::dict()
            .with("announce", OwnedValue::bytes("wss://t.example"))
            .with("info", info)
            .encode()
    }

    fn parse_info(info: OwnedValue) -> Result<Metainfo, MetainfoError> {
        Metainfo::from_torrent_bytes(&torrent(info))
    }

    fn tree() -> Metainfo {
        parse_info(multi(
            vec![
                file(&["a.txt"], 20_000),
                file(&["empty"], 0),
                file(&["docs", "deep", "b.md"], 30_000),
                file(&["c"], 1),
            ],
            4,
        ))
        .unwrap()
    }

    #[test]
    fn info_hash_is_taken_from_the_raw_info_bytes_not_a_re_encoding() {
        // Keys out of order and an unknown key: a re-encoding would differ.
        let info = b"d6:lengthi5e4:name5:a.txt6:pieces20:AAAAAAAAAAAAAAAAAAAA\
                     12:piece lengthi16384e1:zi1e1:ai2ee";
        let bytes = [b"d8:announce3:url4:info".as_slice(), info, b"e"].concat();
        let m = Metainfo::from_torrent_bytes(&bytes).unwrap();
        assert_eq!(m.info_bytes, info);
        assert_eq!(m.info_hash, InfoHash(sha1(info)));
        let reencoded = bencode::decode(info).unwrap().to_owned_value().encode();
        assert_ne!(m.info_hash, InfoHash(sha1(&reencoded)));
        // Writing the torrent back keeps the info bytes, so the hash holds.
        let again = Metainfo::from_torrent_bytes(&m.to_torrent_bytes()).unwrap();
        assert_eq!(again, m);
        let (info, hash) = Info::from_info_bytes(info).unwrap();
        assert_eq!((info, hash), (m.info.clone(), m.info_hash));
    }

    #[test]
    fn single_file_torrents_have_one_file_named_like_the_torrent() {
        let m = parse_info(
            OwnedValue::dict()
                .with("name", OwnedValue::bytes("movie.mkv"))
                .with("length", OwnedValue::Int(40_000))
                .with("piece length", OwnedValue::Int(32768))
                .with("pieces", hashes(2))
                .with("private", OwnedValue::Int(1)),
        )
        .unwrap();
        assert!(!m.info.multi_file);
        assert!(m.info.private);
        assert_eq!(m.info.lengths.total_length(), 40_000);
        assert_eq!(m.info.lengths.num_pieces(), 2);
        assert_eq!(
            m.info.files,
            vec![FileEntry {
                path: vec!["movie.mkv".into()],
                length: 40_000,
                offset: 0,
                padding: false
            }]
        );
        let last = m.info.lengths.last_piece();
        assert_eq!(m.info.piece_hash(last)[0], 20);
    }

    #[test]
    fn multi_file_torrents_place_files_in_stream_order() {
        let m = tree();
        let info = &m.info;
        assert!(info.multi_file && !info.private);
        assert_eq!(info.name, "bundle");
        let placed: Vec<(String, u64, u64)> = info
            .files
            .iter()
            .map(|f| (f.path.join("/"), f.offset, f.length))
            .collect();
        assert_eq!(
            placed,
            vec![
                ("a.txt".into(), 0, 20_000),
                ("empty".into(), 20_000, 0),
                ("docs/deep/b.md".into(), 20_000, 30_000),
                ("c".into(), 50_000, 1),
            ]
        );
        assert_eq!(info.lengths.total_length(), 50_001);
    }

    #[test]
    fn utf8_name_and_path_keys_are_preferred() {
        let f = file(&["bad"], 5).with(
            "path.utf-8",
            OwnedValue::List(vec![OwnedValue::bytes("dír"), OwnedValue::bytes("fïle")]),
        );
        let info = multi(vec![f], 1).with("name.utf-8", OwnedValue::bytes("bündle"));
        let m = parse_info(info).unwrap();
        assert_eq!(m.info.name, "bündle");
        assert_eq!(
            m.info.files[0].path,
            vec!["dír".to_owned(), "fïle".to_owned()]
        );
        // A `name.utf-8` that is not UTF-8 falls back to `name`.
        let info =
            multi(vec![file(&["x"], 5)], 1).with("name.utf-8", OwnedValue::Bytes(vec![0xff, 0xfe]));
        assert_eq!(parse_info(info).unwrap().info.name, "bundle");
    }

    #[test]
    fn missing_and_mistyped_keys_are_named() {
        let no_info = OwnedValue::dict()
            .with("announce", OwnedValue::bytes("x"))
            .encode();
        assert_eq!(
            Metainfo::from_torrent_bytes(&no_info),
            Err(MetainfoError::MissingKey("info"))
        );
        assert_eq!(
            Metainfo::from_torrent_bytes(b"li1ee"),
            Err(MetainfoError::NotADictionary)
        );
        assert!(matches!(
            Metainfo::from_torrent_bytes(b"d4:info"),
            Err(MetainfoError::Bencode(_))
        ));
        let good = multi(vec![file(&["x"], 5)], 1);
        for key in ["name", "piece length", "pieces"] {
            let OwnedValue::Dict(mut d) = good.clone() else {
                unreachable!()
            };
            d.remove(key.as_bytes());
            assert_eq!(
                parse_info(OwnedValue::Dict(d.clone())),
                Err(MetainfoError::MissingKey(key))
            );
            d.insert(key.as_bytes().to_vec(), OwnedValue::List(vec![]));
            assert!(matches!(
                parse_info(OwnedValue::Dict(d)),
                Err(MetainfoError::WrongType { key: k, .. }) if k == key
            ));
        }
        let OwnedValue::Dict(mut d) = good.clone() else {
            unreachable!()
        };
        d.remove(b"files".as_slice());
        assert_eq!(
            parse_info(OwnedValue::Dict(d)),
            Err(MetainfoError::MissingKey("length"))
        );
        let no_path = OwnedValue::dict().with("length", OwnedValue::Int(5));
        assert_eq!(
            parse_info(multi(vec![file(&["x"], 5), no_path], 1)),
            Err(MetainfoError::File {
                index: 1,
                source: Box::new(MetainfoError::MissingKey("path"))
            })
        );
        assert_eq!(
            parse_info(multi(vec![file(&["x"], -5)], 1)),
            Err(MetainfoError::File {
                index: 0,
                source: Box::new(MetainfoError::Negative {
                    key: "length",
                    value: -5
                })
            })
        );
        assert_eq!(
            parse_info(multi(vec![file(&[], 5)], 1)),
            Err(MetainfoError::File {
                index: 0,
                source: Box::new(MetainfoError::EmptyPath)
            })
        );
        assert_eq!(parse_info(multi(vec![], 1)), Err(MetainfoError::NoFiles));
    }

    #[test]
    fn piece_hashes_must_fit_the_lengths() {
        let info = multi(vec![file(&["x"], 5)], 1).with("pieces", OwnedValue::bytes([0; 30]));
        assert_eq!(
            parse_info(info),
            Err(MetainfoError::PiecesNotMultipleOf20(30))
        );
        assert_eq!(
            parse_info(multi(vec![file(&["x"], 16385)], 1)),
            Err(MetainfoError::Lengths(LengthsError::PieceCountMismatch {
                expected: 2,
                got: 1
            }))
        );
        let info = multi(vec![file(&["x"], 5)], 1).with("piece length", OwnedValue::Int(1000));
        assert_eq!(
            parse_info(info),
            Err(MetainfoError::Lengths(LengthsError::BadPieceLength(1000)))
        );
        let info = multi(vec![file(&["x"], 5)], 1).with("piece length", OwnedValue::Int(-1));
        assert_eq!(
            parse_info(info),
            Err(MetainfoError::Negative {
                key: "piece length",
                value: -1
            })
        );
        assert_eq!(
            parse_info(multi(vec![file(&["x"], 0)], 0)),
            Err(MetainfoError::Lengths(LengthsError::BadTotalLength(0)))
        );
        let huge = i64::MAX;
        assert_eq!(
            parse_info(multi(
                vec![file(&["x"], huge), file(&["y"], huge), file(&["z"], huge)],
                1
            )),
            Err(MetainfoError::TotalLengthOverflow)
        );
        let too_big = (MAX_TOTAL_LENGTH + 1) as i64;
        assert_eq!(
            parse_info(multi(vec![file(&["x"], too_big)], 1)),
            Err(MetainfoError::Lengths(LengthsError::BadTotalLength(
                MAX_TOTAL_LENGTH + 1
            )))
        );
    }

    #[test]
    fn unsafe_names_and_path_components_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", "C:", "c:\\x", "/"] {
            let err = parse_info(multi(vec![file(&["ok", bad], 5)], 1)).unwrap_err();
            assert!(
                matches!(
                    &err,
                    MetainfoError::File { index: 0, source }
                        if matches!(**source, MetainfoError::UnsafePath { what: "path", .. })
                ),
                "{bad:?}: {err}"
            );
            let info = multi(vec![file(&["x"], 5)], 1).with("name", OwnedValue::bytes(bad));
            assert!(
                matches!(
                    parse_info(info),
                    Err(MetainfoError::UnsafePath { what: "name", .. })
                ),
                "{bad:?}"
            );
        }
        // Dots inside a name, spaces, colons after the first character are fine.
        let ok = multi(vec![file(&["..a", "b. c", "de:f", "~"], 5)], 1);
        assert!(parse_info(ok).is_ok());
    }

    #[test]
    fn clashing_paths_are_refused_but_padding_may_repeat() {
        assert_eq!(
            parse_info(multi(vec![file(&["a"], 5), file(&["a"], 5)], 1)),
            Err(MetainfoError::PathConflict("a".into()))
        );
        assert_eq!(
            parse_info(multi(
                vec![file(&["d", "x"], 5), file(&["e"], 1), file(&["d"], 5)],
                1
            )),
            Err(MetainfoError::PathConflict("d".into()))
        );
        let pad = |n| file(&[".pad", "16379"], n).with("attr", OwnedValue::bytes("p"));
        let m = parse_info(multi(
            vec![
                file(&["a"], 5),
                pad(16379),
                file(&["b"], 5),
                pad(16379),
                file(&["c"], 1),
            ],
            3,
        ))
        .unwrap();
        assert_eq!(
            m.info.files.iter().map(|f| f.padding).collect::<Vec<_>>(),
            vec![false, true, false, true, false]
        );
        assert_eq!(m.info.files[4].offset, 2 * 16384);
    }

    #[test]
    fn top_level_fields_are_read_and_unknown_keys_kept() {
        let info = multi(vec![file(&["x"], 5)], 1);
        let bytes = OwnedValue::dict()
            .with("announce", OwnedValue::bytes("wss://a"))
            .with(
                "announce-list",
                OwnedValue::List(vec![
                    OwnedValue::List(vec![OwnedValue::bytes("wss://a"), OwnedValue::bytes("")]),
                    OwnedValue::List(vec![]),
                    OwnedValue::List(vec![OwnedValue::bytes("wss://b")]),
                ]),
            )
            .with("url-list", OwnedValue::bytes("https://seed/"))
            .with("comment", OwnedValue::bytes("hi"))
            .with("created by", OwnedValue::bytes("mktorrent 1.1"))
            .with("creation date", OwnedValue::Int(1_700_000_000))
            .with("encoding", OwnedValue::bytes("UTF-8"))
            .with("comment.utf-8", OwnedValue::Int(3))
            .with("info", info)
            .encode();
        let m = Metainfo::from_torrent_bytes(&bytes).unwrap();
        assert_eq!(m.announce.as_deref(), Some("wss://a"));
        assert_eq!(
            m.announce_list,
            vec![vec!["wss://a".to_owned()], vec!["wss://b".to_owned()]]
        );
        assert_eq!(
            m.trackers(),
            vec!["wss://a".to_owned(), "wss://b".to_owned()]
        );
        assert_eq!(m.url_list, vec!["https://seed/".to_owned()]);
        assert_eq!(m.comment.as_deref(), Some("hi"));
        assert_eq!(m.created_by.as_deref(), Some("mktorrent 1.1"));
        assert_eq!(m.creation_date, Some(1_700_000_000));
        assert_eq!(
            m.extra.keys().cloned().collect::<Vec<_>>(),
            vec![b"comment.utf-8".to_vec(), b"encoding".to_vec()]
        );
        // Canonical input comes back byte for byte, bar the dropped empty entries.
        let again = Metainfo::from_torrent_bytes(&m.to_torrent_bytes()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn url_list_may_be_a_list_and_mistyped_optional_keys_are_kept_aside() {
        let bytes = OwnedValue::dict()
            .with(
                "url-list",
                OwnedValue::List(vec![
                    OwnedValue::bytes("https://a/"),
                    OwnedValue::bytes("https://b/"),
                ]),
            )
            .with("announce", OwnedValue::Int(7))
            .with("info", multi(vec![file(&["x"], 5)], 1))
            .encode();
        let m = Metainfo::from_torrent_bytes(&bytes).unwrap();
        assert_eq!(m.url_list.len(), 2);
        assert_eq!(m.announce, None);
        assert_eq!(
            m.extra.get(b"announce".as_slice()),
            Some(&OwnedValue::Int(7))
        );
        assert_eq!(
            Metainfo::from_torrent_bytes(&m.to_torrent_bytes()).unwrap(),
            m
        );
    }

    #[test]
    fn from_info_makes_a_torrent_from_metadata_and_link_trackers() {
        let m = tree();
        let t = Metainfo::from_info(
            m.info_bytes.clone(),
            vec!["wss://a".into(), "wss://b".into()],
            vec!["https://seed/".into()],
        )
        .unwrap();
        assert_eq!(t.info_hash, m.info_hash);
        assert_eq!(t.announce.as_deref(), Some("wss://a"));
        assert_eq!(
            t.trackers(),
            vec!["wss://a".to_owned(), "wss://b".to_owned()]
        );
        let back = Metainfo::from_torrent_bytes(&t.to_torrent_bytes()).unwrap();
        assert_eq!(back, t);
        assert!(Metainfo::from_info(b"i1e".to_vec(), vec![], vec![]).is_err());
    }

    #[test]
    fn magnet_of_a_torrent_carries_hash_name_trackers_and_seeds() {
        let mut m = tree();
        m.url_list = vec!["https://seed/".into()];
        let link = m.magnet();
        assert_eq!(link.info_hash, m.info_hash);
        assert_eq!(link.display_name.as_deref(), Some("bundle"));
        assert_eq!(link.trackers, vec!["wss://t.example".to_owned()]);
        assert_eq!(link.web_seeds, m.url_list);
    }

    #[test]
    fn file_spans_cross_boundaries_and_skip_empty_files() {
        let info = tree().info;
        let spans: Vec<_> = info.file_spans(19_000, 12_000).collect();
        assert_eq!(
            spans,
            vec![
                FileSpan {
                    file_index: 0,
                    file_offset: 19_000,
                    len: 1_000
                },
                FileSpan {
                    file_index: 2,
                    file_offset: 0,
                    len: 11_000
                },
            ]
        );
        // The part past the end is ignored; an empty range yields nothing.
        let tail: Vec<_> = info.file_spans(49_999, 100).collect();
        assert_eq!(tail.len(), 2);
        assert_eq!((tail[1].file_index, tail[1].len), (3, 1));
        assert_eq!(info.file_spans(20_000, 0).count(), 0);
        assert_eq!(info.file_spans(60_000, 10).count(), 0);
        assert_eq!(info.file_spans(u64::MAX, u64::MAX).count(), 0);
    }

    #[test]
    fn file_piece_ranges_cover_the_pieces_touching_each_file() {
        let info = tree().info;
        assert_eq!(info.file_piece_range(0), 0..2);
        assert_eq!(info.file_piece_range(1), 0..0);
        assert_eq!(info.file_piece_range(2), 1..4);
        assert_eq!(info.file_piece_range(3), 3..4);
        assert_eq!(info.file_piece_range(4), 0..0);
    }

    proptest! {
        #[test]
        fn file_spans_tile_any_range(
            lengths in proptest::collection::vec(0i64..50_000, 1..8),
            start in 0u64..400_000,
            len in 0u64..400_000,
        ) {
            prop_assume!(lengths.iter().sum::<i64>() > 0);
            let total: u64 = lengths.iter().sum::<i64>() as u64;
            let files = lengths
                .iter()
                .enumerate()
                .map(|(i, l)| file(&[&i.to_string()], *l))
                .collect();
            let pieces = total.div_ceil(16384) as usize;
            let info = parse_info(multi(files, pieces)).unwrap().info;
            let end = (start + len).min(total);
            let mut at = start;
            for span in info.file_spans(start, len) {
                let f = &info.files[span.file_index];
                prop_assert!(span.len > 0);
                prop_assert_eq!(f.offset + span.file_offset, at);
                prop_assert!(span.file_offset + span.len <= f.length);
                at += span.len;
            }
            prop_assert_eq!(at, end.max(start));
            for (i, f) in info.files.iter().enumerate() {
                let range = info.file_piece_range(i);
                if f.length == 0 {
                    prop_assert!(range.is_empty());
                } else {
                    prop_assert_eq!(range.start as u64, f.offset / 16384);
                    prop_assert_eq!(range.end as u64, (f.offset + f.length - 1) / 16384 + 1);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Metainfo::from_torrent_bytes(&bytes);
            let _ = Info::from_info_bytes(&bytes);
        }
    }
}
