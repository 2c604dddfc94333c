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
}

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
fn check_conflicts(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut paths: Vec<&[String]> = files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| f.path.as_slice())
        .collect();
    paths.sort_unstable();
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
