//! The server's shared state, its routes, and starting and stopping it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use swarmdrop::engine::ids::InfoHash;
use swarmdrop::engine::metainfo::Metainfo;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;
use tower_http::cors::{Any, CorsLayer};

use crate::bundle::{seed_path, Bundle, Registry};
use crate::config::Config;
use crate::error::{ApiError, ServerError};
use crate::store::Store;
use crate::tracker::Hub;
use crate::{api, expiry, page, seed, tracker};

/// Counters read by `GET /api/stats`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Body bytes sent by the web seed.
    pub bytes_served: AtomicU64,
    /// Body bytes of piece uploads received, stored or not (a piece put
    /// twice counts twice): what senders pushed to the server.
    pub bytes_received: AtomicU64,
}

impl Stats {
    /// Adds to the web seed egress.
    pub fn served(&self, n: usize) {
        self.bytes_served.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Adds to the bytes of piece uploads received.
    pub fn received(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Everything a request handler needs.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Bundles in memory.
    pub registry: Arc<Registry>,
    /// Where bundles live.
    pub store: Store,
    /// The WebSocket tracker.
    pub hub: Arc<Hub>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Limits concurrent piece uploads (each may buffer one piece).
    pub uploads: Arc<Semaphore>,
    /// Serializes bundle creation and deletion.
    pub lifecycle: Arc<tokio::sync::Mutex<()>>,
    /// Public base URL, without a trailing slash.
    pub public_url: Arc<str>,
    /// Bundle lifetime in seconds.
    pub expiry_secs: u64,
    /// Largest bundle accepted.
    pub max_bundle_size: u64,
    /// Largest .torrent accepted.
    pub max_torrent_size: u64,
}

impl AppState {
    /// The WebSocket tracker URL (`ws://…/announce` or `wss://…/announce`).
    pub fn tracker_url(&self) -> String {
        let base = &*self.public_url;
        let ws = match base.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => format!("ws://{}", base.strip_prefix("http://").unwrap_or(base)),
        };
        format!("{ws}/announce")
    }

    /// The web seed URL to put in `url-list`: the file itself for a
    /// single-file torrent, the directory (ending in `/`) for a multi-file one.
    pub fn web_seed_url(&self, metainfo: &Metainfo) -> String {
        let base = format!("{}/seed/{}/", self.public_url, metainfo.info_hash.to_hex());
        if metainfo.info.multi_file {
            base
        } else {
            format!("{base}{}", encode_segment(&metainfo.info.name))
        }
    }

    /// The web seed URL of one file.
    pub fn file_url(&self, metainfo: &Metainfo, file_index: usize) -> Option<String> {
        let info = &metainfo.info;
        let file = info.files.get(file_index)?;
        let path = seed_path(&info.name, &file.path, info.multi_file);
        let encoded: Vec<String> = path.split('/').map(encode_segment).collect();
        Some(format!(
            "{}/seed/{}/{}",
            self.public_url,
            metainfo.info_hash.to_hex(),
            encoded.join("/")
        ))
    }

    /// The bundle page URL.
    pub fn page_url(&self, info_hash: &InfoHash) -> String {
        format!("{}/b/{}", self.public_url, info_hash.to_hex())
    }

    /// A live bundle, or a 404 naming it.
    pub fn bundle(&self, info_hash: &InfoHash) -> Result<Arc<Bundle>, ApiError> {
        self.registry
            .get(info_hash, unix_now())
            .ok_or_else(|| ApiError::not_found(format!("no bundle {info_hash}")))
    }
}

/// Percent-encodes one path segment.
pub fn encode_segment(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC time of a Unix timestamp (`2025-01-31T12:00:00Z`).
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// Parses an info hash from a path segment, or answers 400.
pub fn parse_info_hash(s: &str) -> Result<InfoHash, ApiError> {
    InfoHash::from_hex(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{s:?} is not an info hash (40 hexadecimal characters)"
        ))
    })
}

/// The router with every route and the CORS layer.
pub fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::RANGE,
            header::CACHE_CONTROL,
            header::USER_AGENT,
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
        ])
        .expose_headers([
            header::CONTENT_RANGE,
            header::CONTENT_LENGTH,
            header::ACCEPT_RANGES,
        ])
        .max_age(Duration::from_secs(86_400));

    Router::new()
        .route("/announce", get(tracker::announce))
        .route("/api/bundles", post(api::create))
        .route(
            "/api/bundles/{info_hash}",
            get(api::status).delete(api::delete),
        )
        .route("/api/bundles/{info_hash}/torrent", get(api::torrent))
        .route(
            "/api/bundles/{info_hash}/pieces/{index}",
            put(api::put_piece),
        )
        .route("/api/stats", get(stats))
        .route("/seed/{info_hash}", get(seed::serve_root))
        .route("/seed/{info_hash}/", get(seed::serve_root))
        .route("/seed/{info_hash}/{*path}", get(seed::serve))
        .route("/b/{info_hash}", get(page::bundle_page))
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
        .layer(cors)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Gives the bodiless errors axum produces itself (405, rejections) a JSON body.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_string(),
        _ => {
            let (_, body) = response.into_parts();
            let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text).trim().to_string();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_lowercase()
            } else {
                text
            }
        }
    };
    let mut out = ApiError::new(status, message).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

async fn stats(State(state): State<AppState>) -> impl IntoResponse {
    let (offers_relayed, swarms, peers, connections) = {
        let t = state.hub.tracker();
        (
            t.offers_relayed(),
            t.swarm_count(),
            t.peer_count(),
            t.connection_count(),
        )
    };
    Json(json!({
        "bytes_served": state.stats.bytes_served.load(Ordering::Relaxed),
        "bytes_received": state.stats.bytes_received.load(Ordering::Relaxed),
        "offers_relayed": offers_relayed,
        "bundles": state.registry.len(),
        "swarms": swarms,
        "peers": peers,
        "connections": connections,
    }))
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its public base URL.
    pub public_url: String,
    /// Its state (tests read counters from it).
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), std::io::Error>>,
}

impl Running {
    /// Stops accepting connections and waits for the server to end.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(ServerError::Io(std::io::Error::other(e))),
        }
    }

    /// Waits until the server ends (it runs until stopped or failed).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(ServerError::Io(std::io::Error::other(e))),
        }
    }
}

/// Opens the store, loads its bundles, binds the socket, and serves in the
/// background (with the expiry sweeper) until [`Running::stop`].
pub async fn start(config: Config) -> Result<Running, ServerError> {
    let store = Store::open(&config)?;
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let public_url = match &config.public_url {
        Some(url) => {
            let url = url.trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ServerError::Config(format!(
                    "--public-url {url:?} must start with http:// or https://"
                )));
            }
            url.to_string()
        }
        None => format!("http://{addr}"),
    };
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
    let state = AppState {
        registry: Arc::new(Registry::default()),
        store,
        hub: Arc::new(Hub::new(u64::from_le_bytes(seed))),
        stats: Arc::new(Stats::default()),
        uploads: Arc::new(Semaphore::new(config.max_concurrent_uploads.max(1))),
        lifecycle: Arc::new(tokio::sync::Mutex::new(())),
        public_url: public_url.clone().into(),
        expiry_secs: config.expiry().as_secs(),
        max_bundle_size: config.max_bundle_size,
        max_torrent_size: config.max_torrent_size,
    };
    let loaded = expiry::load(&state).await?;
    tracing::info!(bundles = loaded, %public_url, "store loaded");

    let (tx, rx) = oneshot::channel::<()>();
    let sweeper = tokio::spawn(expiry::sweep_forever(
        state.clone(),
        Duration::from_secs(config.expiry_check_secs.max(1)),
    ));
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        // Small writes (headers, then a piece) must not wait for the
        // client's delayed ACK (Nagle): about 40 ms per request otherwise.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        sweeper.abort();
        result
    });
    Ok(Running {
        addr,
        public_url,
        state,
        shutdown: Some(tx),
        task,
    })
}
