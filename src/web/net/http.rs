//! HTTP through `fetch`: web seed range requests (BEP 19) and the requests of
//! the bundle API.

use std::cell::RefCell;

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortSignal, Headers, ReadableStreamByobReader, ReadableStreamDefaultReader,
    ReadableStreamReadResult, Request, RequestCache, RequestInit, Response,
};

use crate::engine::api::UrlRange;

use super::error::{js_message, NetError};

/// An HTTP answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// The `Content-Range` header, if any.
    pub content_range: Option<String>,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` field of a JSON error body, or the body itself.
    pub fn error_message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| {
                let t = self.text();
                let t = t.trim();
                if t.is_empty() {
                    format!("HTTP {}", self.status)
                } else {
                    t.chars().take(200).collect()
                }
            })
    }
}

/// Makes a request and reads the whole answer. Only network failures (and
/// aborts) are errors; every status is an [`Answer`].
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    signal: Option<&AbortSignal>,
) -> Result<Answer, NetError> {
    let response = send(method, url, headers, body, signal).await?;
    let status = response.status();
    let content_range = response.headers().get("content-range").ok().flatten();
    let buffer = JsFuture::from(
        response
            .array_buffer()
            .map_err(|e| NetError::Http(js_message(&e)))?,
    )
    .await
    .map_err(|e| NetError::Http(format!("{method} {url}: {}", js_message(&e))))?;
    Ok(Answer {
        status,
        body: Uint8Array::new(&buffer).to_vec(),
        content_range,
    })
}

/// Makes a request; the answer's head, its body not read yet.
async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    signal: Option<&AbortSignal>,
) -> Result<Response, NetError> {
    let init = RequestInit::new();
    init.set_method(method);
    init.set_cache(RequestCache::NoStore);
    let h = Headers::new().map_err(|e| NetError::browser(&e))?;
    for (name, value) in headers {
        h.set(name, value).map_err(|e| NetError::browser(&e))?;
    }
    init.set_headers(&h);
    if let Some(body) = body {
        init.set_body(&Uint8Array::from(body));
    }
    init.set_signal(signal);
    let request =
        Request::new_with_str_and_init(url, &init).map_err(|e| NetError::Http(js_message(&e)))?;
    let window = web_sys::window().ok_or_else(|| NetError::Browser("no window".into()))?;
    JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|e| NetError::Http(format!("{method} {url}: {}", js_message(&e))))?
        .dyn_into()
        .map_err(|_| NetError::Http("fetch did not return a response".into()))
}

/// Bytes read from a web seed body per read: the reader's buffer.
const READ_CHUNK: u32 = 256 * 1024;
/// Read buffers kept for the next web seed fetches (one per fetch in flight).
const SPARE_BUFFERS: usize = 8;
/// Most bytes of an error answer's body kept for its message.
const ERROR_BODY_BYTES: usize = 4096;

thread_local! {
    /// Read buffers of finished fetches, reused by the next ones.
    static BUFFERS: RefCell<Vec<ArrayBuffer>> = const { RefCell::new(Vec::new()) };
}

/// A web seed fetch that failed, and what came before it did.
#[derive(Debug)]
pub struct FetchFailed {
    /// The ranges' bytes received before the failure, in order (a prefix of
    /// the answer; the engine keeps the whole blocks among them).
    pub received: Vec<u8>,
    /// What went wrong.
    pub error: NetError,
}

/// Fetches the ranges of a web seed fetch, in order, into one buffer.
///
/// Each range must come back as `206` with a `Content-Range` naming exactly
/// that range, or as `200` when the range is the whole file; anything else
/// (a `503` for a piece the server does not hold yet, included) is an error.
/// Each body is read in chunks straight into its place in the buffer: no
/// piece-sized JavaScript buffer is made (it would be garbage as soon as it
/// was copied, and piles up in the renderer until the garbage collector
/// runs), and a body longer than its range is an error as soon as it shows.
/// A failure returns the bytes that came before it (a fetch may hold several
/// pieces: those that came whole are kept).
pub async fn fetch_ranges(
    ranges: &[UrlRange],
    signal: Option<&AbortSignal>,
) -> Result<Vec<u8>, FetchFailed> {
    let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
    let Ok(total) = usize::try_from(total) else {
        return Err(FetchFailed {
            received: Vec::new(),
            error: NetError::Http(format!("a fetch of {total} bytes is too large")),
        });
    };
    let mut out = vec![0; total];
    let mut at = 0;
    let result = read_ranges(ranges, signal, &mut out, &mut at).await;
    match result {
        Ok(()) => Ok(out),
        Err(error) => {
            out.truncate(at);
            Err(FetchFailed {
                received: out,
                error,
            })
        }
    }
}

/// Reads each range into its place in `out`; `at` is how many bytes of
/// `out` are filled, also when it fails.
async fn read_ranges(
    ranges: &[UrlRange],
    signal: Option<&AbortSignal>,
    out: &mut [u8],
    at: &mut usize,
) -> Result<(), NetError> {
    for r in ranges {
        if r.end <= r.start {
            continue;
        }
        let want = (r.end - r.start) as usize;
        let range = format!("bytes={}-{}", r.start, r.end - 1);
        let response = send("GET", &r.url, &[("range", &range)], None, signal).await?;
        let status = response.status();
        match status {
            206 => {
                let header = response.headers().get("content-range").ok().flatten();
                let header = header.as_deref().unwrap_or("");
                match parse_content_range(header) {
                    Some((a, b)) if a == r.start && b + 1 == r.end => {}
                    _ => {
                        cancel(&response);
                        return Err(NetError::Http(format!(
                            "{}: asked for bytes {}-{}, the server sent content-range {header:?}",
                            r.url,
                            r.start,
                            r.end - 1
                        )));
                    }
                }
            }
            // A server that ignores Range sends the whole file: that is the
            // answer only if the whole file was asked for.
            200 if r.start == 0 => {}
            200 => {
                cancel(&response);
                return Err(ignored_range(r));
            }
            _ => {
                let mut body = [0; ERROR_BODY_BYTES];
                let n = read_body(&response, &mut body).await.len;
                let answer = Answer {
                    status,
                    body: body[..n].to_vec(),
                    content_range: None,
                };
                return Err(NetError::Http(format!(
                    "{}: HTTP {status}: {}",
                    r.url,
                    answer.error_message()
                )));
            }
        }
        let read = read_body(&response, &mut out[*at..*at + want]).await;
        if let Some(e) = read.error {
            *at += read.len;
            return Err(NetError::Http(format!("GET {}: {e}", r.url)));
        }
        if read.more {
            return Err(if status == 200 {
                ignored_range(r)
            } else {
                NetError::Http(format!("{}: more than the {want} bytes asked for", r.url))
            });
        }
        if read.len != want {
            *at += read.len;
            return Err(NetError::Http(format!(
                "{}: {} bytes received, {want} asked for",
                r.url, read.len
            )));
        }
        *at += want;
    }
    Ok(())
}

fn ignored_range(r: &UrlRange) -> NetError {
    NetError::Http(format!("{}: the server ignored the range request", r.url))
}

/// What [`read_body`] read.
struct Read {
    /// Bytes written to the front of the slot.
    len: usize,
    /// The body had more bytes than the slot holds (the rest was not read).
    more: bool,
    /// Reading failed after `len` bytes.
    error: Option<String>,
}

impl Read {
    fn done(len: usize, more: bool) -> Self {
        Read {
            len,
            more,
            error: None,
        }
    }

    fn failed(len: usize, error: String) -> Self {
        Read {
            len,
            more: false,
            error: Some(error),
        }
    }
}

/// Reads a response body into `slot`, in chunks, until the body ends or
/// holds more than the slot. A byte stream is read with a BYOB reader into
/// a reused buffer, so reading makes no garbage but the small read results;
/// a body that is not one, with a default reader, whose chunks die young.
async fn read_body(response: &Response, slot: &mut [u8]) -> Read {
    let Some(body) = response.body() else {
        return Read::done(0, false);
    };
    match ReadableStreamByobReader::new(&body) {
        Ok(reader) => read_byob(&reader, slot).await,
        Err(_) => match ReadableStreamDefaultReader::new(&body) {
            Ok(reader) => read_default(&reader, slot).await,
            Err(e) => Read::failed(0, js_message(&e)),
        },
    }
}

async fn read_byob(reader: &ReadableStreamByobReader, slot: &mut [u8]) -> Read {
    let mut buffer = BUFFERS
        .with(|b| b.borrow_mut().pop())
        .unwrap_or_else(|| ArrayBuffer::new(READ_CHUNK));
    let mut len = 0;
    loop {
        let view = Uint8Array::new(&buffer);
        let result: ReadableStreamReadResult =
            match JsFuture::from(reader.read_with_array_buffer_view(&view)).await {
                Ok(r) => r.unchecked_into(),
                Err(e) => return Read::failed(len, js_message(&e)),
            };
        let done = result.get_done().unwrap_or(false);
        // The buffer moved into the view that came back (empty when done).
        let Ok(chunk) = result.get_value().dyn_into::<Uint8Array>() else {
            return if done {
                Read::done(len, false)
            } else {
                Read::failed(len, "the body stream returned no buffer".into())
            };
        };
        buffer = chunk.buffer();
        let n = chunk.length() as usize;
        if n > slot.len() - len {
            let _ = reader.cancel();
            return Read::done(len, true);
        }
        chunk.copy_to(&mut slot[len..len + n]);
        len += n;
        if done {
            BUFFERS.with(|b| {
                let mut spare = b.borrow_mut();
                if spare.len() < SPARE_BUFFERS && buffer.byte_length() == READ_CHUNK {
                    spare.push(buffer);
                }
            });
            return Read::done(len, false);
        }
    }
}

async fn read_default(reader: &ReadableStreamDefaultReader, slot: &mut [u8]) -> Read {
    let mut len = 0;
    loop {
        let result: ReadableStreamReadResult = match JsFuture::from(reader.read()).await {
            Ok(r) => r.unchecked_into(),
            Err(e) => return Read::failed(len, js_message(&e)),
        };
        if result.get_done().unwrap_or(false) {
            return Read::done(len, false);
        }
        let Ok(chunk) = result.get_value().dyn_into::<Uint8Array>() else {
            return Read::failed(
                len,
                "the body stream returned something other than bytes".into(),
            );
        };
        let n = chunk.length() as usize;
        if n > slot.len() - len {
            let _ = reader.cancel();
            return Read::done(len, true);
        }
        chunk.copy_to(&mut slot[len..len + n]);
        len += n;
    }
}

/// Drops a response's body unread.
fn cancel(response: &Response) {
    if let Some(body) = response.body() {
        let _ = body.cancel();
    }
}

/// `bytes a-b/total` → `(a, b)`.
fn parse_content_range(s: &str) -> Option<(u64, u64)> {
    let rest = s.trim().strip_prefix("bytes ")?;
    let (range, _total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Whether an error should be tried again later: network failures and the
/// statuses that mean "not now".
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || status >= 500
}

/// Standard base64 (the server's encoding of bitfields) decoded; `None` if invalid.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let window = web_sys::window()?;
    let binary = window.atob(s).ok()?;
    binary
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// `AbortController` for a set of requests.
pub fn abort_controller() -> Option<web_sys::AbortController> {
    web_sys::AbortController::new().ok()
}

/// Reads a JSON body.
pub fn json(answer: &Answer) -> Result<serde_json::Value, NetError> {
    serde_json::from_slice(&answer.body)
        .map_err(|e| NetError::Http(format!("the server sent invalid JSON: {e}")))
}

/// Turns a `JsValue` rejection into text (for callers that hold one).
pub fn describe(value: &JsValue) -> String {
    js_message(value)
}
