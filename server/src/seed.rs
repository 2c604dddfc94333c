//! BEP 19 web seed: files of a bundle served with byte ranges, assembled from stored pieces.
//!
//! `GET`/`HEAD /seed/{info_hash}/{name}` serves a single-file torrent's file,
//! `/seed/{info_hash}/{name}/{path…}` a file of a multi-file one (the URL in
//! `url-list` is then `/seed/{info_hash}/`, and clients append `name/path`).
//!
//! A range that touches a piece not uploaded yet is answered `503` with a
//! JSON reason and `Retry-After`: WebTorrent counts any non-2xx answer as a
//! failed request and asks for the piece again later (or from a peer), which
//! is what should happen while the sender is still uploading. A request with
//! several ranges is answered with the whole file (RFC 9110 lets a server
//! ignore `Range`); WebTorrent and libtorrent send one range at a time.

use std::io;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde_json::json;

use crate::app::{parse_info_hash, AppState};
use crate::error::ApiError;

/// What a `Range` header asks of a resource of a given length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: the whole resource, `200`.
    Full,
    /// Bytes `start..end` (end exclusive), `206`.
    Partial {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// A syntactically valid range that selects nothing, `416`.
    Unsatisfiable,
}

/// Interprets a `Range` header value for a resource of `len` bytes.
///
/// Invalid headers, other units and multiple ranges are ignored (the whole
/// resource is sent), as RFC 9110 allows.
pub fn parse_range(value: Option<&str>, len: u64) -> RangeRequest {
    let Some(value) = value else {
        return RangeRequest::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match number(last) {
            None => RangeRequest::Full,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial {
                start: len.saturating_sub(n),
                end: len,
            },
        },
        // `a-`: from a to the end.
        (false, true) => match number(first) {
            None => RangeRequest::Full,
            Some(a) if a >= len => RangeRequest::Unsatisfiable,
            Some(a) => RangeRequest::Partial { start: a, end: len },
        },
        // `a-b`, inclusive.
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= len {
                    RangeRequest::Unsatisfiable
                } else {
                    RangeRequest::Partial {
                        start: a,
                        end: b.saturating_add(1).min(len),
                    }
                }
            }
            _ => RangeRequest::Full,
        },
        (true, true) => RangeRequest::Full,
    }
}

/// `GET`/`HEAD /seed/{info_hash}/{*path}`.
pub async fn serve(
    State(state): State<AppState>,
    method: Method,
    Path((info_hash, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_path(state, method, &info_hash, &path, headers).await
}

/// `GET`/`HEAD /seed/{info_hash}/`: the directory URL of `url-list`. A
/// torrent with a single file in its `files` list is served here too, since
/// WebTorrent requests the URL unchanged whenever a torrent has one file.
pub async fn serve_root(
    State(state): State<AppState>,
    method: Method,
    Path(info_hash): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_path(state, method, &info_hash, "", headers).await
}

async fn serve_path(
    state: AppState,
    method: Method,
    info_hash: &str,
    path: &str,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let bundle = state.bundle(&parse_info_hash(info_hash)?)?;
    // Clients join URL parts differently (`dir//name/file`, a trailing `/`):
    // empty segments carry nothing, since no name or path component is empty.
    let path = path
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    let only_file = (bundle.metainfo.info.files.len() == 1).then_some(0);
    let file_index = if path.is_empty() {
        only_file
    } else {
        bundle.file_at(&path)
    }
    .ok_or_else(|| ApiError::not_found(format!("no file {path:?} in bundle {info_hash}")))?;
    let info = &bundle.metainfo.info;
    let file = &info.files[file_index];
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match parse_range(range_header, file.length) {
        RangeRequest::Full => (StatusCode::OK, 0, file.length),
        RangeRequest::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeRequest::Unsatisfiable => {
            let mut e = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the range is outside the file ({} bytes)", file.length),
            )
            .into_response();
            let h = e.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", file.length)) {
                h.insert(header::CONTENT_RANGE, v);
            }
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return Ok(e);
        }
    };

    // The range in the stream of all files, and the pieces holding it.
    let lengths = info.lengths;
    let abs_start = file.offset + start;
    let len = end - start;
    let pieces = lengths.pieces_for_range(abs_start, len);
    {
        let have = bundle.have();
        if let Some(missing) = pieces.clone().find(|&p| !have.get(p)) {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("piece {missing} of this bundle is not uploaded yet; try again later"),
            )
            .with_extra(json!({ "missing_piece": missing }))
            .into_response();
            e.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            return Ok(e);
        }
    }

    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{}", end - 1, file.length))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    if method == Method::HEAD || len == 0 {
        return Ok(response);
    }

    // Pieces are opened one after another as the body is sent.
    let store = state.store.clone();
    let stats = state.stats.clone();
    let info_hash = bundle.info_hash();
    let abs_end = abs_start + len;
    let segments = pieces.map(move |p| {
        let piece_start = p as u64 * lengths.piece_length() as u64;
        let from = abs_start.max(piece_start) - piece_start;
        let to = abs_end.min(piece_start + lengths.piece_length() as u64) - piece_start;
        (p, from..to)
    });
    let body = stream::iter(segments)
        .then(move |(p, range)| {
            let store = store.clone();
            async move {
                store
                    .read_piece(&info_hash, p, range)
                    .await
                    .map_err(io::Error::other)
            }
        })
        .try_flatten()
        .inspect_ok(move |bytes| stats.served(bytes.len()));
    *response.body_mut() = Body::from_stream(body);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_of_every_form_are_understood() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(
            parse_range(Some("bytes=0-9"), 100),
            Partial { start: 0, end: 10 }
        );
        assert_eq!(
            parse_range(Some("bytes=90-"), 100),
            Partial {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100),
            Partial {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            parse_range(Some("bytes=-500"), 100),
            Partial { start: 0, end: 100 }
        );
        assert_eq!(
            parse_range(Some("bytes=50-500"), 100),
            Partial {
                start: 50,
                end: 100
            }
        );
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable() {
        use RangeRequest::*;
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=100-200"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-5"), 0), Unsatisfiable);
    }

    #[test]
    fn invalid_or_multiple_ranges_are_ignored() {
        use RangeRequest::*;
        assert_eq!(parse_range(Some("bytes=9-0"), 100), Full);
        assert_eq!(parse_range(Some("bytes=a-b"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("bytes=-"), 100), Full);
        assert_eq!(parse_range(Some("bytes=+1-2"), 100), Full);
        assert_eq!(
            parse_range(Some("bytes=99999999999999999999999-"), 100),
            Full
        );
    }

    proptest! {
        #[test]
        fn a_partial_range_is_never_empty_and_never_past_the_end(
            a in 0u64..300, b in 0u64..300, len in 0u64..200, form in 0u8..3
        ) {
            let value = match form {
                0 => format!("bytes={a}-{b}"),
                1 => format!("bytes={a}-"),
                _ => format!("bytes=-{b}"),
            };
            if let RangeRequest::Partial { start, end } = parse_range(Some(&value), len) {
                prop_assert!(start < end);
                prop_assert!(end <= len);
            }
        }
    }
}
