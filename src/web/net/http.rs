//! HTTP through `fetch`: web seed range requests (BEP 19) and the requests of
//! the bundle API.

use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Headers, Request, RequestCache, RequestInit, Response};

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
    let response: Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|e| NetError::Http(format!("{method} {url}: {}", js_message(&e))))?
        .dyn_into()
        .map_err(|_| NetError::Http("fetch did not return a response".into()))?;
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

/// Fetches the ranges of a web seed fetch, in order, and concatenates them.
///
/// Each range must come back as `206` with a `Content-Range` naming exactly
/// that range, or as `200` when the range is the whole file; anything else
/// (a `503` for a piece the server does not hold yet, included) is an error.
pub async fn fetch_ranges(
    ranges: &[UrlRange],
    signal: Option<&AbortSignal>,
) -> Result<Vec<u8>, NetError> {
    let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for r in ranges {
        if r.end <= r.start {
            continue;
        }
        let range = format!("bytes={}-{}", r.start, r.end - 1);
        let answer = request("GET", &r.url, &[("range", &range)], None, signal).await?;
        check_range(&answer, r)?;
        out.extend_from_slice(&answer.body);
    }
    Ok(out)
}

/// Checks that an answer carries exactly the bytes of `r`.
fn check_range(answer: &Answer, r: &UrlRange) -> Result<(), NetError> {
    let want = r.end - r.start;
    match answer.status {
        206 => {
            let header = answer.content_range.as_deref().unwrap_or("");
            match parse_content_range(header) {
                Some((a, b)) if a == r.start && b + 1 == r.end => {}
                _ => {
                    return Err(NetError::Http(format!(
                        "{}: asked for bytes {}-{}, the server sent content-range {header:?}",
                        r.url,
                        r.start,
                        r.end - 1
                    )))
                }
            }
        }
        // A server that ignores Range sends the whole file: that is the
        // answer only if the whole file was asked for.
        200 if r.start == 0 && answer.body.len() as u64 == want => {}
        200 => {
            return Err(NetError::Http(format!(
                "{}: the server ignored the range request",
                r.url
            )))
        }
        _ => {
            return Err(NetError::Http(format!(
                "{}: HTTP {}: {}",
                r.url,
                answer.status,
                answer.error_message()
            )))
        }
    }
    if answer.body.len() as u64 != want {
        return Err(NetError::Http(format!(
            "{}: {} bytes received, {want} asked for",
            r.url,
            answer.body.len()
        )));
    }
    Ok(())
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
