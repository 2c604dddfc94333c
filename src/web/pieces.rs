//! File bytes to piece bytes: the one place where a sent bundle's files are
//! read and cut into the bytes of its pieces.
//!
//! A bundle is the concatenation of its files; a range of that stream is read
//! lazily from the user's `File`s (`Blob.slice(a, b).arrayBuffer()`), across
//! file boundaries, with BEP 47 padding files as zeros. Nothing is read
//! before it is asked for, so a bundle of any size is never held in memory.
//! Seeding blocks to peers and uploading pieces to the server both read
//! through [`FileSet::read`]: end-to-end encryption will transform the file
//! bytes here, once, for both.

use std::rc::Rc;

use js_sys::{Array, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::Blob;

use crate::engine::lengths::PieceIndex;
use crate::engine::metainfo::Info;

use super::net::error::{js_message, NetError};

/// The files of a bundle being sent, in torrent order, each matched to its
/// entry in the info dictionary.
#[derive(Clone, Debug)]
pub struct FileSet {
    info: Rc<Info>,
    /// One per entry of `info.files`; `None` for padding files.
    blobs: Rc<Vec<Option<Blob>>>,
}

impl FileSet {
    /// Matches the files given by JavaScript to the torrent's files.
    ///
    /// `files` is an array whose entries are either `Blob`s, in torrent
    /// order without padding files, or `{path, file}` objects, where `path`
    /// is the file's path inside the bundle (`"dir/a.jpg"` or
    /// `["dir", "a.jpg"]`) and `file` its `Blob`. Every file's size must be
    /// the torrent's length for it.
    pub fn new(info: Rc<Info>, files: &JsValue) -> Result<FileSet, NetError> {
        let array: &Array = files
            .dyn_ref()
            .ok_or_else(|| NetError::Argument("files must be an array".into()))?;
        let given: Vec<JsValue> = array.iter().collect();
        let keyed = given.iter().any(|v| !v.is_instance_of::<Blob>());
        let mut blobs: Vec<Option<Blob>> = Vec::with_capacity(info.files.len());
        let mut next = given.iter();
        for entry in &info.files {
            if entry.padding {
                blobs.push(None);
                continue;
            }
            let blob = if keyed {
                find_by_path(&given, &entry.path, info.multi_file)?
            } else {
                next.next()
                    .and_then(|v| v.dyn_ref::<Blob>().cloned())
                    .ok_or_else(|| {
                        NetError::Argument(format!(
                            "{} files given, the torrent has more",
                            given.len()
                        ))
                    })?
            };
            let size = blob.size();
            if size != entry.length as f64 {
                return Err(NetError::Argument(format!(
                    "file {} is {size} bytes, the torrent says {}",
                    entry.path.join("/"),
                    entry.length
                )));
            }
            blobs.push(Some(blob));
        }
        if !keyed && next.next().is_some() {
            return Err(NetError::Argument(format!(
                "{} files given, the torrent has fewer",
                given.len()
            )));
        }
        Ok(FileSet {
            info,
            blobs: Rc::new(blobs),
        })
    }

    /// The file `index` of the torrent as the user gave it (`None` for a
    /// padding file or an index out of range).
    pub fn file(&self, index: usize) -> Option<Blob> {
        self.blobs.get(index).cloned().flatten()
    }

    /// Reads a whole piece.
    pub async fn read_piece(&self, piece: PieceIndex) -> Result<Vec<u8>, NetError> {
        let lengths = self.info.lengths;
        self.read(lengths.piece_offset(piece), lengths.piece_len(piece))
            .await
    }

    /// Reads a whole piece and checks it against the torrent's hash:
    /// [`NetError::Damaged`] when a file no longer holds what the bundle was
    /// made from (changed with its size and date kept, which the browser's
    /// own check of a `File` misses).
    pub async fn read_checked_piece(&self, piece: PieceIndex) -> Result<Vec<u8>, NetError> {
        let bytes = self.read_piece(piece).await?;
        super::digest::check_piece_bytes(&self.info, piece, &bytes).await?;
        Ok(bytes)
    }

    /// Reads `len` bytes of the bundle's stream from `start`: the file bytes
    /// become piece bytes here and nowhere else.
    pub async fn read(&self, start: u64, len: u32) -> Result<Vec<u8>, NetError> {
        let parts = Array::new();
        let mut zeros_at: Vec<(usize, u64)> = Vec::new();
        let mut offset = 0usize;
        for span in self.info.file_spans(start, u64::from(len)) {
            match self.blobs.get(span.file_index).and_then(Option::as_ref) {
                Some(blob) => {
                    let a = span.file_offset as f64;
                    let b = (span.file_offset + span.len) as f64;
                    let slice = blob
                        .slice_with_f64_and_f64(a, b)
                        .map_err(|e| NetError::browser(&e))?;
                    parts.push(&slice);
                }
                None => zeros_at.push((offset, span.len)),
            }
            offset += span.len as usize;
        }
        let read = if parts.length() == 1 {
            parts.get(0).unchecked_into::<Blob>()
        } else {
            Blob::new_with_blob_sequence(&parts).map_err(|e| NetError::browser(&e))?
        };
        let buffer = JsFuture::from(read.array_buffer()).await.map_err(|e| {
            NetError::Browser(format!(
                "could not read the files (were they moved or changed?): {}",
                js_message(&e)
            ))
        })?;
        let file_bytes = Uint8Array::new(&buffer).to_vec();
        // Padding files hold zeros that are not in any file: put them back.
        let bytes = if zeros_at.is_empty() {
            file_bytes
        } else {
            let mut out = Vec::with_capacity(len as usize);
            let mut rest = file_bytes.as_slice();
            for (at, n) in zeros_at {
                let take = at.saturating_sub(out.len()).min(rest.len());
                out.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                out.resize(out.len() + n as usize, 0);
            }
            out.extend_from_slice(rest);
            out
        };
        if bytes.len() != len as usize {
            return Err(NetError::Browser(format!(
                "read {} bytes at offset {start}, expected {len}: a file changed size",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// The `Blob` of the `{path, file}` entry whose path is `path`.
fn find_by_path(given: &[JsValue], path: &[String], multi_file: bool) -> Result<Blob, NetError> {
    let want = path.join("/");
    for v in given {
        let p = js_sys::Reflect::get(v, &JsValue::from_str("path")).unwrap_or(JsValue::UNDEFINED);
        let joined = if let Some(s) = p.as_string() {
            s
        } else if let Some(a) = p.dyn_ref::<Array>() {
            a.iter()
                .filter_map(|c| c.as_string())
                .collect::<Vec<_>>()
                .join("/")
        } else {
            continue;
        };
        // A single-file torrent's one file may be given under any path.
        if joined == want || !multi_file {
            let file =
                js_sys::Reflect::get(v, &JsValue::from_str("file")).unwrap_or(JsValue::UNDEFINED);
            return file
                .dyn_into::<Blob>()
                .map_err(|_| NetError::Argument(format!("the entry for {want} has no file")));
        }
    }
    Err(NetError::Argument(format!("no file given for {want}")))
}
