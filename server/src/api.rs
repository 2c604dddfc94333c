//! The bundle API: create a bundle from its torrent, upload verified pieces, read its state, delete it.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{json, Value};
use swarmdrop::engine::hash::verify_piece;
use swarmdrop::engine::metainfo::Metainfo;

use crate::app::{parse_info_hash, rfc3339, unix_now, AppState};
use crate::bundle::{token_hash, Bundle};
use crate::error::ApiError;
use crate::expiry;
use crate::store::StoredMeta;

/// A request body that sends nothing for this long is abandoned.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request body not complete after this long is abandoned (16 MiB at 30 KiB/s).
const BODY_TOTAL_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More bytes than allowed arrived.
    #[error("body is larger than {0} bytes")]
    TooLarge(u64),
    /// The client stopped sending, or sent too slowly.
    #[error("body stalled for {} s or took over {} s", BODY_IDLE_TIMEOUT.as_secs(), BODY_TOTAL_TIMEOUT.as_secs())]
    Stalled,
    /// The connection failed mid-body.
    #[error("body could not be read: {0}")]
    Read(String),
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge(_) => ApiError::too_large(e.to_string()),
            BodyError::Stalled => ApiError::new(StatusCode::REQUEST_TIMEOUT, e.to_string()),
            BodyError::Read(_) => ApiError::bad_request(e.to_string()),
        }
    }
}

/// Reads a body of at most `limit` bytes, never buffering more than that;
/// `expected` (at most `limit`) is reserved up front.
pub async fn read_limited(body: Body, limit: u64, expected: u64) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::with_capacity(expected.min(limit) as usize);
    let deadline = tokio::time::Instant::now() + BODY_TOTAL_TIMEOUT;
    loop {
        let wait =
            BODY_IDLE_TIMEOUT.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let chunk = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Err(BodyError::Stalled),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
            Ok(Some(Ok(chunk))) => chunk,
        };
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Checks the owner token in `Authorization: Bearer <token>`.
fn authorize(bundle: &Bundle, headers: &HeaderMap) -> Result<(), ApiError> {
    let missing = || {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing owner token: send `Authorization: Bearer <owner_token>`",
        );
        e.challenge = true;
        e
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    if bundle.token_matches(token.trim()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong owner token for this bundle",
        ))
    }
}

/// The public state of a bundle.
pub fn bundle_json(state: &AppState, bundle: &Bundle) -> Value {
    let m = &bundle.metainfo;
    let info = &m.info;
    let (have, have_count) = {
        let have = bundle.have();
        (
            base64::engine::general_purpose::STANDARD.encode(have.as_bytes()),
            have.count_ones(),
        )
    };
    let files: Vec<Value> = info
        .files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| json!({ "path": f.path.join("/"), "length": f.length, "offset": f.offset }))
        .collect();
    json!({
        "info_hash": m.info_hash.to_hex(),
        "name": info.name,
        "total_length": info.lengths.total_length(),
        "piece_length": info.lengths.piece_length(),
        "num_pieces": info.lengths.num_pieces(),
        "have": have,
        "have_count": have_count,
        "complete": have_count == info.lengths.num_pieces(),
        "files": files,
        "created_at": rfc3339(bundle.created_at),
        "expires_at": rfc3339(bundle.expires_at),
        "url": state.page_url(&m.info_hash),
        "torrent_url": format!("{}/api/bundles/{}/torrent", state.public_url, m.info_hash.to_hex()),
        "web_seed": state.web_seed_url(m),
        "tracker": state.tracker_url(),
    })
}

/// `POST /api/bundles`: the body is a `.torrent`.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.max_torrent_size;
    if content_length(&headers).is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(format!(
            "the .torrent is larger than this server accepts ({limit} bytes)"
        )));
    }
    let _permit =
        state.uploads.clone().acquire_owned().await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down")
        })?;
    // Grown as bytes arrive: a declared length alone reserves nothing.
    let torrent = read_limited(body, limit, 0).await.map_err(|e| match e {
        BodyError::TooLarge(_) => ApiError::too_large(format!(
            "the .torrent is larger than this server accepts ({limit} bytes)"
        )),
        other => other.into(),
    })?;
    if torrent.is_empty() {
        return Err(ApiError::bad_request(
            "empty body: send the .torrent file as the request body",
        ));
    }
    let metainfo = Metainfo::from_torrent_bytes(&torrent)
        .map_err(|e| ApiError::bad_request(format!("not a valid torrent: {e}")))?;
    let total = metainfo.info.lengths.total_length();
    if total > state.max_bundle_size {
        return Err(ApiError::too_large(format!(
            "the bundle holds {total} bytes; this server accepts bundles of at most {} bytes",
            state.max_bundle_size
        )));
    }
    let info_hash = metainfo.info_hash;

    let _guard = state.lifecycle.lock().await;
    if let Some(existing) = state.registry.get_any(&info_hash) {
        if existing.expired(unix_now()) {
            expiry::remove(&state, &existing).await?;
        } else {
            return Err(
                ApiError::new(StatusCode::CONFLICT, "this bundle already exists")
                    .with_extra(bundle_json(&state, &existing)),
            );
        }
    }

    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no randomness: {e}"),
        )
    })?;
    let token = hex(&raw);
    let created_at = unix_now();
    let expires_at = created_at.saturating_add(state.expiry_secs);
    let meta = StoredMeta {
        created_at,
        owner_token_sha256: hex(&token_hash(&token)),
    };
    state.store.create(&info_hash, torrent, &meta).await?;
    let bundle = std::sync::Arc::new(Bundle::new(
        metainfo,
        created_at,
        expires_at,
        token_hash(&token),
    ));
    if state.registry.insert(bundle.clone()).is_err() {
        // Cannot happen under the lifecycle lock; refuse rather than guess.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this bundle already exists",
        ));
    }
    tracing::info!("bundle created");
    let mut body = bundle_json(&state, &bundle);
    if let Some(obj) = body.as_object_mut() {
        obj.insert("owner_token".into(), Value::String(token));
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/bundles/{info_hash}`.
pub async fn status(
    State(state): State<AppState>,
    Path(info_hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let bundle = state.bundle(&parse_info_hash(&info_hash)?)?;
    Ok(Json(bundle_json(&state, &bundle)))
}

/// `PUT /api/bundles/{info_hash}/pieces/{index}` with the owner token; the
/// body is exactly the piece.
pub async fn put_piece(
    State(state): State<AppState>,
    Path((info_hash, index)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bundle = state.bundle(&parse_info_hash(&info_hash)?)?;
    authorize(&bundle, &headers)?;
    let lengths = bundle.metainfo.info.lengths;
    let piece = index
        .parse::<u32>()
        .ok()
        .and_then(|i| lengths.validate_piece(i))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no piece {index:?}: this bundle has pieces 0 to {}",
                lengths.num_pieces() - 1
            ))
        })?;
    let expected = lengths.piece_len(piece) as u64;
    match content_length(&headers) {
        Some(n) if n > expected => {
            return Err(ApiError::too_large(format!(
                "piece {} is {expected} bytes; the body declares {n}",
                piece.get()
            )))
        }
        Some(n) if n < expected => {
            return Err(ApiError::bad_request(format!(
                "piece {} is {expected} bytes; the body declares {n}",
                piece.get()
            )))
        }
        _ => {}
    }

    let _permit =
        state.uploads.clone().acquire_owned().await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down")
        })?;
    let data = read_limited(body, expected, expected)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(_) => ApiError::too_large(format!(
                "piece {} is {expected} bytes; the body is longer",
                piece.get()
            )),
            other => other.into(),
        })?;
    state.stats.received(data.len());
    if data.len() as u64 != expected {
        return Err(ApiError::bad_request(format!(
            "piece {} is {expected} bytes; the body has {}",
            piece.get(),
            data.len()
        )));
    }
    if !verify_piece(bundle.metainfo.info.piece_hash(piece), &data) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "piece {} does not match its SHA-1 in the torrent; not stored",
                piece.get()
            ),
        ));
    }

    let newly = if bundle.have().get(piece.get()) {
        false
    } else {
        state
            .store
            .put_piece(&bundle.info_hash(), piece.get(), data)
            .await?;
        if !state.registry.contains(&bundle) {
            // Deleted (or expired) while the piece was being written.
            state
                .store
                .delete_piece(&bundle.info_hash(), piece.get())
                .await?;
            return Err(ApiError::not_found(format!(
                "no bundle {}",
                bundle.info_hash()
            )));
        }
        bundle.have().set(piece.get(), true)
    };
    let (have_count, complete) = {
        let have = bundle.have();
        (have.count_ones(), have.is_full())
    };
    let status = if newly {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "index": piece.get(),
            "stored": newly,
            "have_count": have_count,
            "num_pieces": lengths.num_pieces(),
            "complete": complete,
            "expires_at": rfc3339(bundle.expires_at),
        })),
    )
        .into_response())
}

/// `DELETE /api/bundles/{info_hash}` with the owner token.
pub async fn delete(
    State(state): State<AppState>,
    Path(info_hash): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let bundle = state.bundle(&parse_info_hash(&info_hash)?)?;
    authorize(&bundle, &headers)?;
    let _guard = state.lifecycle.lock().await;
    expiry::remove(&state, &bundle).await?;
    tracing::info!("bundle deleted by its owner");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/bundles/{info_hash}/torrent`: the `.torrent` with this server's
/// web seed in `url-list` and its tracker among the announce URLs. The
/// `info` dictionary is the uploaded one, byte for byte.
pub async fn torrent(
    State(state): State<AppState>,
    Path(info_hash): Path<String>,
) -> Result<Response, ApiError> {
    let bundle = state.bundle(&parse_info_hash(&info_hash)?)?;
    let bytes = torrent_with_server(&state, &bundle.metainfo);
    let filename = format!("{}.torrent", bundle.metainfo.info.name);
    let disposition = format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        filename.replace(
            |c: char| !c.is_ascii_graphic() && c != ' ' || c == '"' || c == '\\',
            "_"
        ),
        crate::app::encode_segment(&filename)
    );
    let mut response = (StatusCode::OK, bytes).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-bittorrent"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// The torrent with this server's web seed and tracker added (outside `info`).
pub fn torrent_with_server(state: &AppState, metainfo: &Metainfo) -> Vec<u8> {
    let mut m = metainfo.clone();
    let seed = state.web_seed_url(metainfo);
    if !m.url_list.contains(&seed) {
        m.url_list.push(seed);
    }
    let tracker = state.tracker_url();
    match (&m.announce, m.announce_list.is_empty()) {
        (None, true) => m.announce = Some(tracker),
        (Some(a), true) if *a != tracker => {
            m.announce_list = vec![vec![a.clone()], vec![tracker]];
        }
        (Some(_), true) => {}
        (_, false) => {
            if !m.announce_list.iter().flatten().any(|t| *t == tracker) {
                m.announce_list.push(vec![tracker.clone()]);
            }
            if m.announce.is_none() {
                m.announce = m.announce_list.first().and_then(|t| t.first()).cloned();
            }
        }
    }
    m.to_torrent_bytes()
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}
