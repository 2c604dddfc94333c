//! Building a new torrent from file names, lengths and piece hashes.
//!
//! The info dictionary is encoded canonically with the same keys mktorrent
//! and transmission-create write (`files` or `length`, `name`,
//! `piece length`, `pieces`, and `private` / `source` when asked), so the
//! same files with the same options give the same info hash in all three.
//!
//! Creating is two steps, because hashing a large bundle takes a while and
//! happens elsewhere: [`TorrentBuilder::lengths`] validates the names and
//! gives the piece length to hash with, and [`TorrentBuilder::build`] takes
//! the piece hashes.

use std::collections::BTreeMap;

use thiserror::Error;

use super::bencode::OwnedValue;
use super::lengths::{Lengths, LengthsError};
use super::metainfo::{check_component, check_conflicts, FileEntry, Info, Metainfo, MetainfoError};

/// The `created by` value written unless another is given.
pub const DEFAULT_CREATED_BY: &str = "Swarmdrop 0.1";

/// Why a torrent cannot be built from the given parts.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CreateError {
    /// No file was added.
    #[error("the torrent has no files")]
    NoFiles,
    /// A single-file torrent whose file is not called like the torrent.
    #[error("single file {file:?} is not named like the torrent ({name:?})")]
    SingleFileName {
        /// The torrent name.
        name: String,
        /// The file's name.
        file: String,
    },
    /// The file lengths add up to more than a `u64` holds.
    #[error("the file lengths overflow")]
    TotalLengthOverflow,
    /// The piece length or total length is not acceptable, or the number of
    /// piece hashes does not match.
    #[error("bad lengths: {0}")]
    Lengths(#[from] LengthsError),
    /// A name or path is unsafe, or two files clash.
    #[error("invalid torrent: {0}")]
    Invalid(#[from] MetainfoError),
}

/// Collects what a new torrent is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorrentBuilder {
    name: String,
    files: Vec<(Vec<String>, u64)>,
    piece_length: Option<u32>,
    announce_list: Vec<Vec<String>>,
    url_list: Vec<String>,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
    private: bool,
    write_private_zero: bool,
    source: Option<String>,
}

impl TorrentBuilder {
    /// A torrent called `name`: the directory name of a multi-file torrent,
    /// the file name of a single-file one.
    pub fn new(name: impl Into<String>) -> Self {
        TorrentBuilder {
            name: name.into(),
            files: Vec::new(),
            piece_length: None,
            announce_list: Vec::new(),
            url_list: Vec::new(),
            comment: None,
            created_by: Some(DEFAULT_CREATED_BY.to_owned()),
            creation_date: None,
            private: false,
            write_private_zero: false,
            source: None,
        }
    }

    /// Adds a file, as path components under the torrent's directory, in
    /// stream order. A torrent of exactly one file with a one-component path
    /// is a single-file torrent, and that component must equal the name.
    pub fn file(mut self, path: Vec<String>, length: u64) -> Self {
        self.files.push((path, length));
        self
    }

    /// Adds several files (see [`TorrentBuilder::file`]).
    pub fn files(mut self, files: impl IntoIterator<Item = (Vec<String>, u64)>) -> Self {
        self.files.extend(files);
        self
    }

    /// Orders the files by their `/`-joined path, byte by byte, as mktorrent
    /// does (transmission-create keeps the directory's listing order).
    pub fn sort_files(mut self) -> Self {
        self.files.sort_by_cached_key(|(path, _)| path.join("/"));
        self
    }

    /// Sets the piece length (default: [`Lengths::auto_piece_length`]).
    pub fn piece_length(mut self, piece_length: u32) -> Self {
        self.piece_length = Some(piece_length);
        self
    }

    /// Adds a tracker in a tier of its own (the first becomes `announce`).
    pub fn tracker(mut self, url: impl Into<String>) -> Self {
        self.announce_list.push(vec![url.into()]);
        self
    }

    /// Adds a tier of trackers (BEP 12).
    pub fn tracker_tier(mut self, tier: Vec<String>) -> Self {
        if !tier.is_empty() {
            self.announce_list.push(tier);
        }
        self
    }

    /// Adds a BEP 19 web seed URL.
    pub fn web_seed(mut self, url: impl Into<String>) -> Self {
        self.url_list.push(url.into());
        self
    }

    /// Sets the `comment`.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Sets `created by` (default [`DEFAULT_CREATED_BY`]); `None` leaves it out.
    pub fn created_by(mut self, created_by: Option<String>) -> Self {
        self.created_by = created_by;
        self
    }

    /// Sets the `creation date` in seconds since the Unix epoch (the engine
    /// has no clock: the caller passes it, or leaves it out).
    pub fn creation_date(mut self, seconds: i64) -> Self {
        self.creation_date = Some(seconds);
        self
    }

    /// Sets the BEP 27 private flag (`private` = 1 in the info dictionary).
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// Writes `private` = 0 for a public torrent instead of leaving the key
    /// out, as transmission-create does (mktorrent and libtorrent leave it
    /// out). It changes the info hash.
    pub fn write_private_zero(mut self, yes: bool) -> Self {
        self.write_private_zero = yes;
        self
    }

    /// Sets the `source` key inside the info dictionary (mktorrent `-s`);
    /// it changes the info hash, which is what it is for.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sum of the file lengths.
    pub fn total_length(&self) -> Result<u64, CreateError> {
        self.files.iter().try_fold(0u64, |sum, (_, len)| {
            sum.checked_add(*len)
                .ok_or(CreateError::TotalLengthOverflow)
        })
    }

    /// Whether the torrent will be a single-file one.
    pub fn is_single_file(&self) -> bool {
        matches!(self.files.as_slice(), [(path, _)] if path.len() == 1)
    }

    /// Validates names and paths and returns the lengths to hash the files
    /// with (call this before hashing).
    pub fn lengths(&self) -> Result<Lengths, CreateError> {
        if self.files.is_empty() {
            return Err(CreateError::NoFiles);
        }
        check_component("name", &self.name)?;
        if self.is_single_file() {
            let file = &self.files[0].0[0];
            if *file != self.name {
                return Err(CreateError::SingleFileName {
                    name: self.name.clone(),
                    file: file.clone(),
                });
            }
        } else {
            let mut entries = Vec::with_capacity(self.files.len());
            for (path, length) in &self.files {
                if path.is_empty() {
                    return Err(MetainfoError::EmptyPath.into());
                }
                for c in path {
                    check_component("path", c)?;
                }
                entries.push(FileEntry {
                    path: path.clone(),
                    length: *length,
                    offset: 0,
                    padding: false,
                });
            }
            check_conflicts(&entries)?;
        }
        let total = self.total_length()?;
        let piece_length = self
            .piece_length
            .unwrap_or_else(|| Lengths::auto_piece_length(total));
        Ok(Lengths::new(total, piece_length as u64)?)
    }

    /// Builds the torrent from the piece hashes of the concatenated files,
    /// hashed with [`TorrentBuilder::lengths`].
    pub fn build(&self, piece_hashes: Vec<[u8; 20]>) -> Result<Metainfo, CreateError> {
        let lengths = self.lengths()?;
        lengths.check_piece_count(piece_hashes.len())?;

        let mut info = OwnedValue::dict()
            .with("name", OwnedValue::bytes(&self.name))
            .with(
                "piece length",
                OwnedValue::Int(i64::from(lengths.piece_length())),
            )
            .with("pieces", OwnedValue::Bytes(piece_hashes.concat()));
        if self.is_single_file() {
            info = info.with("length", int(lengths.total_length()));
        } else {
            let files = self
                .files
                .iter()
                .map(|(path, length)| {
                    OwnedValue::dict().with("length", int(*length)).with(
                        "path",
                        OwnedValue::List(path.iter().map(OwnedValue::bytes).collect()),
                    )
                })
                .collect();
            info = info.with("files", OwnedValue::List(files));
        }
        if self.private || self.write_private_zero {
            info = info.with("private", OwnedValue::Int(i64::from(self.private)));
        }
        if let Some(source) = &self.source {
            info = info.with("source", OwnedValue::bytes(source));
        }
        let info_bytes = info.encode();
        // Parse what was written: the torrent is checked by the same code
        // that checks everyone else's.
        let (info, info_hash) = Info::from_info_bytes(&info_bytes)?;

        let announce_list: Vec<Vec<String>> = self
            .announce_list
            .iter()
            .map(|tier| tier.iter().filter(|t| !t.is_empty()).cloned().collect())
            .filter(|tier: &Vec<String>| !tier.is_empty())
            .collect();
        let announce = announce_list.first().and_then(|t| t.first()).cloned();
        let announce_list = if announce_list.iter().map(Vec::len).sum::<usize>() > 1 {
            announce_list
        } else {
            Vec::new()
        };
        Ok(Metainfo {
            info_hash,
            info_bytes,
            info,
            announce,
            announce_list,
            url_list: self.url_list.clone(),
            comment: self.comment.clone(),
            created_by: self.created_by.clone(),
            creation_date: self.creation_date,
            extra: BTreeMap::new(),
        })
    }
}

/// A bencode integer from a length; lengths were checked against
/// [`Lengths`]' maximum (1 TiB), far below `i64::MAX`.
fn int(n: u64) -> OwnedValue {
    OwnedValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::hash::PieceHasher;
    use crate::engine::metainfo::Metainfo;
    use proptest::prelude::*;

    fn p(path: &str) -> Vec<String> {
        path.split('/').map(str::to_owned).collect()
    }

    #[test]
    fn one_file_without_a_directory_makes_a_single_file_torrent() {
        let b = TorrentBuilder::new("a.txt")
            .file(p("a.txt"), 40_000)
            .piece_length(32768);
        assert!(b.is_single_file());
        let l = b.lengths().unwrap();
        assert_eq!(l.num_pieces(), 2);
        let m = b.build(vec![[1; 20], [2; 20]]).unwrap();
        assert!(!m.info.multi_file);
        assert_eq!(
            m.info_bytes,
            [
                b"d6:lengthi40000e4:name5:a.txt12:piece lengthi32768e6:pieces40:".as_slice(),
                &[1; 20],
                &[2; 20],
                b"e"
            ]
            .concat()
        );
    }

    #[test]
    fn a_file_in_a_directory_or_several_files_make_a_multi_file_torrent() {
        let b = TorrentBuilder::new("bundle").file(p("dir/a"), 5);
        assert!(!b.is_single_file());
        let m = b.build(vec![[0; 20]]).unwrap();
        assert!(m.info.multi_file);
        assert_eq!(m.info.files[0].path, p("dir/a"));
        assert_eq!(
            m.info_bytes,
            [
                b"d5:filesld6:lengthi5e4:pathl3:dir1:aeee4:name6:bundle".as_slice(),
                b"12:piece lengthi16384e6:pieces20:",
                &[0; 20],
                b"e"
            ]
            .concat()
        );
        let two = TorrentBuilder::new("bundle")
            .file(p("a"), 5)
            .file(p("empty"), 0);
        assert!(two.build(vec![[0; 20]]).unwrap().info.multi_file);
    }

    #[test]
    fn defaults_are_the_auto_piece_length_and_swarmdrop_as_creator() {
        let b = TorrentBuilder::new("big").file(p("big"), 1 << 30);
        assert_eq!(b.lengths().unwrap().piece_length(), 512 * 1024);
        let m = TorrentBuilder::new("x")
            .file(p("x"), 1)
            .build(vec![[0; 20]])
            .unwrap();
        assert_eq!(m.created_by.as_deref(), Some(DEFAULT_CREATED_BY));
        assert_eq!(m.creation_date, None);
        assert!(!m.info.private);
    }

    #[test]
    fn private_flag_is_written_as_each_tool_does() {
        let base = TorrentBuilder::new("x").file(p("x"), 1);
        let omitted = base.clone().build(vec![[0; 20]]).unwrap();
        let zero = base
            .clone()
            .write_private_zero(true)
            .build(vec![[0; 20]])
            .unwrap();
        let one = base.clone().private(true).build(vec![[0; 20]]).unwrap();
        assert!(!String::from_utf8_lossy(&omitted.info_bytes).contains("private"));
        assert!(String::from_utf8_lossy(&zero.info_bytes).contains("7:privatei0e"));
        assert!(String::from_utf8_lossy(&one.info_bytes).contains("7:privatei1e"));
        assert!(!zero.info.private && one.info.private);
        let hashes = [omitted.info_hash, zero.info_hash, one.info_hash];
        assert!(hashes[0] != hashes[1] && hashes[1] != hashes[2] && hashes[0] != hashes[2]);
        let source = base.source("tracker.example").build(vec![[0; 20]]).unwrap();
        assert!(String::from_utf8_lossy(&source.info_bytes).contains("6:source15:tracker.example"));
    }

    #[test]
    fn trackers_web_seeds_and_notes_go_outside_the_info_dictionary() {
        let base = TorrentBuilder::new("x").file(p("x"), 1);
        let bare = base.clone().build(vec![[0; 20]]).unwrap();
        let m = base
            .tracker("wss://a")
            .tracker_tier(vec!["wss://b".into(), "wss://c".into()])
            .web_seed("https://seed/")
            .comment("hello")
            .created_by(None)
            .creation_date(1_700_000_000)
            .build(vec![[0; 20]])
            .unwrap();
        assert_eq!(m.info_hash, bare.info_hash);
        assert_eq!(m.announce.as_deref(), Some("wss://a"));
        assert_eq!(m.announce_list.len(), 2);
        assert_eq!(m.url_list, vec!["https://seed/".to_owned()]);
        assert_eq!(m.created_by, None);
        let back = Metainfo::from_torrent_bytes(&m.to_torrent_bytes()).unwrap();
        assert_eq!(back, m);
        // A single tracker is written as `announce` only, as mktorrent does.
        let one = TorrentBuilder::new("x")
            .file(p("x"), 1)
            .tracker("wss://a")
            .build(vec![[0; 20]])
            .unwrap();
        assert!(one.announce_list.is_empty());
        assert_eq!(one.trackers(), vec!["wss://a".to_owned()]);
    }

    #[test]
    fn bad_inputs_are_refused_before_hashing() {
        assert_eq!(
            TorrentBuilder::new("x").lengths(),
            Err(CreateError::NoFiles)
        );
        assert_eq!(
            TorrentBuilder::new("x").file(p("y"), 1).lengths(),
            Err(CreateError::SingleFileName {
                name: "x".into(),
                file: "y".into()
            })
        );
        assert!(matches!(
            TorrentBuilder::new("b").file(p("a/../c"), 1).lengths(),
            Err(CreateError::Invalid(MetainfoError::UnsafePath { .. }))
        ));
        assert!(matches!(
            TorrentBuilder::new("..").file(p("a/b"), 1).lengths(),
            Err(CreateError::Invalid(MetainfoError::UnsafePath {
                what: "name",
                ..
            }))
        ));
        assert_eq!(
            TorrentBuilder::new("b").file(vec![], 1).lengths(),
            Err(CreateError::Invalid(MetainfoError::EmptyPath))
        );
        assert_eq!(
            TorrentBuilder::new("b")
                .file(p("a/b"), 1)
                .file(p("a"), 1)
                .lengths(),
            Err(CreateError::Invalid(MetainfoError::PathConflict(
                "a".into()
            )))
        );
        assert_eq!(
            TorrentBuilder::new("b")
                .file(p("a"), u64::MAX)
                .file(p("c"), 1)
                .lengths(),
            Err(CreateError::TotalLengthOverflow)
        );
        assert_eq!(
            TorrentBuilder::new("b").file(p("a/e"), 0).lengths(),
            Err(CreateError::Lengths(LengthsError::BadTotalLength(0)))
        );
        assert_eq!(
            TorrentBuilder::new("b")
                .file(p("a/e"), 1)
                .piece_length(1000)
                .lengths(),
            Err(CreateError::Lengths(LengthsError::BadPieceLength(1000)))
        );
        assert_eq!(
            TorrentBuilder::new("b").file(p("a/e"), 1).build(vec![]),
            Err(CreateError::Lengths(LengthsError::PieceCountMismatch {
                expected: 1,
                got: 0
            }))
        );
    }

    #[test]
    fn sort_files_orders_by_joined_path_bytes_like_mktorrent() {
        let b = TorrentBuilder::new("s")
            .files(["a/b", "é", "a.txt", "B/c", "a-b/x", "Z"].map(|s| (p(s), 1)))
            .sort_files();
        let order: Vec<String> = b.files.iter().map(|(path, _)| path.join("/")).collect();
        assert_eq!(order, ["B/c", "Z", "a-b/x", "a.txt", "a/b", "é"]);
    }

    proptest! {
        #[test]
        fn built_torrents_parse_back_and_verify_their_content(
            lens in proptest::collection::vec(0u64..70_000, 1..6),
            shift in 0u32..3,
        ) {
            prop_assume!(lens.iter().sum::<u64>() > 0);
            let b = TorrentBuilder::new("bundle")
                .files(lens.iter().enumerate().map(|(i, l)| (vec!["d".into(), format!("f{i}")], *l)))
                .piece_length(16384 << shift);
            let lengths = b.lengths().unwrap();
            let data: Vec<u8> = (0..lengths.total_length()).map(|i| (i % 251) as u8).collect();
            let hashes = PieceHasher::hash_all(lengths, &data).unwrap();
            let m = b.build(hashes.clone()).unwrap();
            prop_assert_eq!(&m.info.piece_hashes, &hashes);
            prop_assert_eq!(m.info.lengths, lengths);
            let back = Metainfo::from_torrent_bytes(&m.to_torrent_bytes()).unwrap();
            prop_assert_eq!(back, m);
        }
    }
}
