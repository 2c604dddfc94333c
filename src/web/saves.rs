//! Saving a downloaded file: its bytes copied piece by piece from IndexedDB
//! into a file of the origin private file system (OPFS), handed out as a
//! `File` that no IndexedDB Blob backs.
//!
//! Why not one Blob composed of slices of the stored piece Blobs (no copy at
//! all)? Chromium registers a Blob read from IndexedDB lazily and can drop
//! that registration while the page still holds the Blob; a Blob built over
//! it afterwards (`slice`, `new Blob([...])`) makes the browser kill the
//! whole renderer ("Bad blob references in BlobRegistry::Register",
//! crbug.com/392376370): the engine host and every extension page with it.
//! Reading a stored Blob is safe, so each piece is read (one piece in memory
//! at a time) and written to the save file; the download then reads a plain
//! file from disk, and memory does not grow with the file size.
//!
//! A save file lives until [`Saves::release`] (the page that saved it is done)
//! or, if that never comes, until a later host sweeps it ([`Saves::sweep`]).
//!
//! Where the context has no origin private file system (Firefox before 111,
//! private windows), the same piece-by-piece read feeds a stream that the
//! browser turns into a new Blob ([`streamed_blob`]): still no Blob is ever
//! built over a stored one.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, File, FilePropertyBag, FileSystemDirectoryHandle, FileSystemFileHandle,
    FileSystemGetDirectoryOptions, FileSystemGetFileOptions, FileSystemWritableFileStream, Headers,
    Response, ResponseInit, StorageManager, TransformStream, WritableStreamDefaultWriter,
};

use crate::engine::ids::InfoHash;
use crate::engine::metainfo::Info;

use super::digest;
use super::net::error::{js_message, NetError};
use super::storage::{file_spans, FileSpan, Storage};

/// How a save gets a piece fetched again: called with the piece and
/// whether what is stored of it is to be thrown away (it read back damaged,
/// or it is lost), else it is missing, it answers a promise
/// that resolves once the piece is stored again, or `None` when the piece
/// is not being fetched again (the read failed for another reason).
pub type Refetch<'a> = &'a dyn Fn(u32, bool) -> Option<js_sys::Promise>;

/// How many times one save fetches the same piece again before it gives up
/// (storage that damages every copy it is given).
const MAX_REFETCHES: u32 = 3;

/// The OPFS directory of save files.
const DIR: &str = "swarmdrop-saves";

/// Save files older than this are swept when a host starts (a page that
/// saved a file and never released it, a host that crashed).
pub const SWEEP_AFTER_MS: f64 = 60.0 * 60.0 * 1000.0;

/// The save files this host handed out and not yet released.
#[derive(Debug, Default)]
pub struct Saves {
    names: RefCell<HashSet<String>>,
    counter: Cell<u64>,
}

async fn promise<T: JsCast>(p: js_sys::Promise) -> Result<T, NetError> {
    JsFuture::from(p)
        .await
        .map_err(|e| NetError::browser(&e))?
        .dyn_into::<T>()
        .map_err(|v| NetError::Browser(format!("unexpected value {v:?}")))
}

/// The save files' directory, created when missing; `None` where the
/// browser has no origin private file system.
async fn directory() -> Result<Option<FileSystemDirectoryHandle>, NetError> {
    let navigator =
        Reflect::get(&js_sys::global(), &"navigator".into()).map_err(|e| NetError::browser(&e))?;
    let storage = Reflect::get(&navigator, &"storage".into()).map_err(|e| NetError::browser(&e))?;
    let Ok(storage) = storage.dyn_into::<StorageManager>() else {
        return Ok(None);
    };
    if !Reflect::has(&storage, &"getDirectory".into()).unwrap_or(false) {
        return Ok(None);
    }
    let opened = async {
        let root: FileSystemDirectoryHandle = promise(storage.get_directory()).await?;
        let options = FileSystemGetDirectoryOptions::new();
        options.set_create(true);
        promise::<FileSystemDirectoryHandle>(root.get_directory_handle_with_options(DIR, &options))
            .await
    };
    match opened.await {
        Ok(dir) => Ok(Some(dir)),
        Err(e) => {
            // Some contexts refuse it (private windows): save the other way.
            web_sys::console::warn_1(
                &format!("swarmdrop: no origin private file system: {e}").into(),
            );
            Ok(None)
        }
    }
}

impl Saves {
    /// A file of a downloaded bundle as a `File` on disk (see the module
    /// documentation). Where the context has no origin private file system
    /// (Firefox before 111, private windows), a Blob the browser builds from
    /// a stream of the file's bytes ([`streamed_blob`]).
    pub async fn save(
        &self,
        storage: &Storage,
        info_hash: InfoHash,
        info: &Info,
        file_index: usize,
        content_type: &str,
        refetch: Refetch<'_>,
    ) -> Result<Blob, NetError> {
        let src = Source {
            storage,
            info_hash,
            info,
            file_index,
            refetch,
        };
        let Some(dir) = directory().await? else {
            return streamed_blob(&src, content_type).await;
        };
        let file = info
            .files
            .get(file_index)
            .ok_or_else(|| NetError::Argument(format!("no file {file_index}")))?;
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let name = format!(
            "{}-{file_index}-{}-{n}",
            info_hash.to_hex(),
            super::host::now_ms() as u64
        );
        let options = FileSystemGetFileOptions::new();
        options.set_create(true);
        let handle: FileSystemFileHandle =
            promise(dir.get_file_handle_with_options(&name, &options)).await?;
        self.names.borrow_mut().insert(name.clone());
        let written = async {
            let writable: FileSystemWritableFileStream = promise(handle.create_writable()).await?;
            let copied = copy_pieces(&src, &writable).await;
            if let Err(e) = copied {
                let _ = JsFuture::from(writable.abort()).await;
                return Err(e);
            }
            JsFuture::from(writable.close())
                .await
                .map_err(|e| NetError::browser(&e))?;
            promise::<File>(handle.get_file()).await
        }
        .await;
        match written {
            Ok(f) if f.size() == file.length as f64 => {
                // The file's own type is guessed from its name; downloads
                // rename files by type, so the bundle's type goes on top.
                let options = FilePropertyBag::new();
                options.set_type(content_type);
                File::new_with_blob_sequence_and_options(&Array::of1(&f), &name, &options)
                    .map(Into::into)
                    .map_err(|e| NetError::browser(&e))
            }
            Ok(f) => {
                self.release(&name).await;
                Err(NetError::Storage(format!(
                    "{} was saved with {} bytes instead of {}",
                    file.path.join("/"),
                    f.size(),
                    file.length
                )))
            }
            Err(e) => {
                self.release(&name).await;
                Err(e)
            }
        }
    }

    /// Deletes a save file this host handed out (a name it did not hand out
    /// is left alone). Failures are ignored: the sweep gets it later.
    pub async fn release(&self, name: &str) {
        if !self.names.borrow_mut().remove(name) {
            return;
        }
        if let Ok(Some(dir)) = directory().await {
            let _ = JsFuture::from(dir.remove_entry(name)).await;
        }
    }

    /// Deletes save files last written more than `older_than_ms` ago.
    pub async fn sweep(&self, older_than_ms: f64) -> Result<u32, NetError> {
        let Some(dir) = directory().await? else {
            return Ok(0);
        };
        let now = js_sys::Date::now();
        let entries = dir.entries();
        let mut stale = Vec::new();
        loop {
            let next = entries.next().map_err(|e| NetError::browser(&e))?;
            let step: Object = promise(next).await?;
            if Reflect::get(&step, &"done".into())
                .ok()
                .and_then(|d| d.as_bool())
                == Some(true)
            {
                break;
            }
            let pair: Array = Reflect::get(&step, &"value".into())
                .map_err(|e| NetError::browser(&e))?
                .dyn_into()
                .map_err(|_| NetError::Browser("a directory entry is not a pair".into()))?;
            let Some(name) = pair.get(0).as_string() else {
                continue;
            };
            let Ok(handle) = pair.get(1).dyn_into::<FileSystemFileHandle>() else {
                continue;
            };
            if self.names.borrow().contains(&name) {
                continue;
            }
            let Ok(file) = promise::<File>(handle.get_file()).await else {
                continue;
            };
            if now - file.last_modified() > older_than_ms {
                stale.push(name);
            }
        }
        let mut removed = 0;
        for name in stale {
            if JsFuture::from(dir.remove_entry(&name)).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The bytes of one span of a file, read from its stored piece. A stored
/// Blob is read, never sliced or composed: see the module documentation.
async fn span_bytes(
    storage: &Storage,
    info_hash: InfoHash,
    info: &Info,
    file_index: usize,
    span: &FileSpan,
) -> Result<Uint8Array, NetError> {
    let buffer = storage
        .span_buffer(info_hash, info, file_index, span)
        .await?;
    let (p, a, b) = (span.piece, span.start, span.end);
    if (buffer.byte_length() as u64) < b {
        return Err(NetError::Storage(format!(
            "piece {p} of {} reads back short",
            info.files[file_index].path.join("/")
        )));
    }
    // The whole piece is checked before any of its bytes are written.
    let index = info
        .lengths
        .validate_piece(p)
        .ok_or_else(|| NetError::Storage(format!("no piece {p}")))?;
    digest::check_piece(info, index, &buffer).await?;
    Ok(Uint8Array::new_with_byte_offset_and_length(
        &buffer,
        a as u32,
        (b - a) as u32,
    ))
}

/// What a save reads: one file of a download, from its stored pieces.
struct Source<'a> {
    storage: &'a Storage,
    info_hash: InfoHash,
    info: &'a Info,
    file_index: usize,
    refetch: Refetch<'a>,
}

impl Source<'_> {
    /// The checked bytes of one span: a piece that reads back wrong, or is
    /// missing (because it did and is being fetched again, or because the
    /// browser lost it), is waited for until it is stored again, so a save
    /// never writes a wrong byte and needs no second try from the user.
    async fn span(&self, span: &FileSpan) -> Result<Uint8Array, NetError> {
        let mut refetched = 0;
        let mut reread = false;
        loop {
            let e = match span_bytes(
                self.storage,
                self.info_hash,
                self.info,
                self.file_index,
                span,
            )
            .await
            {
                Ok(bytes) => return Ok(bytes),
                Err(e) => e,
            };
            let damaged = matches!(e, NetError::Damaged { .. });
            if refetched == MAX_REFETCHES {
                return Err(if damaged {
                    NetError::Storage(format!(
                        "piece {} of {} read back wrong {MAX_REFETCHES} times after it was fetched again",
                        span.piece,
                        self.info.files[self.file_index].path.join("/")
                    ))
                } else {
                    e
                });
            }
            // Missing again after a reread, while the engine counts it as
            // stored: the browser lost it (see `IDB_HEADROOM` in
            // `storage.rs`). It is fetched again like a damaged piece.
            let lost = !damaged && reread;
            let Some(stored) = (self.refetch)(span.piece, damaged || lost) else {
                if !damaged && !reread {
                    // Missing a moment ago, ours now: a piece fetched again
                    // was stored in between. Read it once more.
                    reread = true;
                    continue;
                }
                return Err(e);
            };
            refetched += 1;
            JsFuture::from(stored)
                .await
                .map_err(|e| NetError::Storage(js_message(&e)))?;
        }
    }
}

/// Writes the file's bytes, piece by piece, from the stored pieces.
async fn copy_pieces(
    src: &Source<'_>,
    writable: &FileSystemWritableFileStream,
) -> Result<(), NetError> {
    for span in file_spans(src.info, src.file_index)? {
        let bytes = src.span(&span).await?;
        JsFuture::from(
            writable
                .write_with_js_u8_array(&bytes)
                .map_err(|e| NetError::browser(&e))?,
        )
        .await
        .map_err(|e| NetError::browser(&e))?;
    }
    Ok(())
}

/// The save without an origin private file system: the file's bytes, read
/// one piece at a time, are written into a `TransformStream` whose readable
/// side is the body of a `Response`, and `Response.blob()` makes the Blob.
/// The browser builds that Blob from bytes, so nothing references a stored
/// Blob (the Chromium crash of the module documentation cannot happen), and
/// the writer waits for the stream's backpressure (`ready`) before reading
/// the next piece, so this page holds about one piece at a time.
//
// The trade-off: the finished Blob holds the whole file. Chromium and
// Firefox page large Blobs out to temporary files, but a Firefox private
// window keeps them in memory, so there a save needs the file's size in
// memory until the download has read it. Without OPFS no browser offers a
// file to write into, and the one copy-free alternative (a Blob composed of
// slices of the stored Blobs) is the construction Chromium crashes on, so a
// bounded page and a browser-held copy is the safest there is.
async fn streamed_blob(src: &Source<'_>, content_type: &str) -> Result<Blob, NetError> {
    let (info, file_index) = (src.info, src.file_index);
    let spans = file_spans(info, file_index)?;
    let pipe = TransformStream::new().map_err(|e| NetError::browser(&e))?;
    let headers = Headers::new().map_err(|e| NetError::browser(&e))?;
    headers
        .set("content-type", content_type)
        .map_err(|e| NetError::browser(&e))?;
    let init = ResponseInit::new();
    init.set_headers(&headers);
    let response = Response::new_with_opt_readable_stream_and_init(Some(&pipe.readable()), &init)
        .map_err(|e| NetError::browser(&e))?;
    // Reading starts now, before the first write, and the future is made
    // at once so that a failed stream is never an unhandled rejection.
    let blob = JsFuture::from(response.blob().map_err(|e| NetError::browser(&e))?);
    let writer: WritableStreamDefaultWriter = pipe
        .writable()
        .get_writer()
        .map_err(|e| NetError::browser(&e))?;
    // Whether the stream itself failed (not the reading of a piece).
    let stream_failed = Cell::new(false);
    let stream_error = |e: wasm_bindgen::JsValue| {
        stream_failed.set(true);
        NetError::browser(&e)
    };
    let written = async {
        for span in &spans {
            JsFuture::from(writer.ready()).await.map_err(stream_error)?;
            let bytes = src.span(span).await?;
            JsFuture::from(writer.write_with_chunk(&bytes))
                .await
                .map_err(stream_error)?;
        }
        JsFuture::from(writer.close()).await.map_err(stream_error)
    }
    .await;
    let file = &info.files[file_index];
    // Chromium builds a streamed Blob in its Blob storage, which takes only
    // a share of the disk's free space: short of room, `blob()` fails with
    // "Failed to fetch" and cancels the stream, whose writes then fail with
    // no reason at all. That failure is the one to tell.
    let refused = |e: &wasm_bindgen::JsValue| {
        NetError::Storage(format!(
            "{} ({} bytes) could not be saved: the browser refused to build it ({}); \
             this happens when the disk is nearly full",
            file.path.join("/"),
            file.length,
            js_message(e)
        ))
    };
    if let Err(e) = written {
        // Errors the stream, so the Response's read ends too.
        let _ = JsFuture::from(writer.abort_with_reason(&e.to_string().into())).await;
        if stream_failed.get() {
            if let Err(b) = blob.await {
                return Err(refused(&b));
            }
        }
        return Err(e);
    }
    let blob: Blob = blob
        .await
        .map_err(|e| refused(&e))?
        .dyn_into()
        .map_err(|v| NetError::Browser(format!("unexpected value {v:?}")))?;
    let length = file.length;
    if blob.size() != length as f64 {
        return Err(NetError::Storage(format!(
            "{} was saved with {} bytes instead of {length}",
            file.path.join("/"),
            blob.size()
        )));
    }
    Ok(blob)
}
