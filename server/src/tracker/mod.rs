//! WebTorrent WebSocket tracker: the `/announce` endpoint over the [`core::Tracker`].
//!
//! Each connection is one task, which reads the client's requests and writes
//! what its bounded outgoing queue holds; a connection too slow to drain the
//! queue loses messages rather than memory. The queues live next to the
//! tracker, behind its lock: handling a request queues its frames with plain
//! pushes, and a connection task takes everything queued for it at once.
//! Every connection is driven by one task, the hub's driver: the tracker's
//! work is serial behind its lock anyway, and within one task a relayed
//! frame wakes its connection without a wake-up of another worker thread,
//! no task is stolen across threads, and the lock is never contended by
//! two connections at once. Nothing about a client's address is recorded.

pub mod core;
pub mod protocol;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_websockets::{CloseCode, Limits, Message, ServerBuilder, WebSocketStream};

use self::core::{ConnId, Outgoing, Tracker};
use self::protocol::{parse_request, Request as TrackerRequest};
use crate::app::AppState;
use crate::error::ApiError;

/// Largest frame and message accepted from a client (ten offers with full
/// SDPs fit): the engine codec's limit for frames sent to a tracker. A
/// longer one, whole or in fragments, ends the connection with close code
/// 1009 before it is read.
pub const MAX_FRAME_BYTES: usize = swarmdrop::engine::tracker::MAX_TO_TRACKER_LEN;
/// Frames queued for one connection before further ones are dropped. The
/// connection takes what is queued all at once to write it, so at most twice
/// this many are held for it at a time.
pub const OUTGOING_QUEUE: usize = 64;
/// Bytes read from a connection's socket at once while its read buffer is
/// empty: the WebSocket layer's buffer (tokio-util's framed reader) starts
/// at 8 KiB, grows to hold a longer frame and is never zero-filled. An
/// announce with ten offers (about 7 KiB) fits in one read.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Bytes of frames written to a connection's socket in one write: the
/// writer queues every frame waiting for the connection (header and payload
/// as they are, not copied) and then writes them together with one vectored
/// write, or with one per this many bytes.
pub const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// A connection silent for this long is closed (clients re-announce every 120 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(6 * 60);

/// The GUID of RFC 6455 section 1.3, appended to the client's key.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The tracker shared by every connection, and each connection's queue,
/// behind one lock: a request is handled and its frames queued in one go.
#[derive(Debug)]
pub struct Hub {
    shared: Mutex<Shared>,
    /// Hands new connections to the driver task, started by the first one.
    driver: OnceLock<mpsc::UnboundedSender<Connection>>,
}

/// A connection's future, run by the driver.
type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The driver: runs every connection it is handed, until the hub is gone
/// and every connection has ended. Connections are polled as they are
/// woken; the set yields to the runtime every few dozen polls, so the
/// driver takes no cooperative budget of its own (it is unconstrained).
async fn drive(mut incoming: mpsc::UnboundedReceiver<Connection>) {
    let mut connections = FuturesUnordered::new();
    let mut open = true;
    while open || !connections.is_empty() {
        tokio::select! {
            c = incoming.recv(), if open => match c {
                Some(c) => connections.push(c),
                None => open = false,
            },
            Some(()) = connections.next(), if !connections.is_empty() => {}
        }
    }
}

#[derive(Debug)]
struct Shared {
    tracker: Tracker,
    queues: HashMap<ConnId, Queue, ahash::RandomState>,
}

/// The frames waiting for one connection, and its task's waker while it
/// waits for some.
#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<String>,
    waker: Option<Waker>,
}

impl Shared {
    /// Queues each frame for its connection; a full queue loses the frame.
    /// A connection waiting for frames is woken by the first one.
    fn dispatch(&mut self, out: Vec<Outgoing>) {
        for o in out {
            let Some(queue) = self.queues.get_mut(&o.to) else {
                continue;
            };
            if queue.frames.len() >= OUTGOING_QUEUE {
                tracing::debug!(conn = o.to.0, "tracker queue full, frame dropped");
                continue;
            }
            queue.frames.push_back(o.text);
            if let Some(waker) = queue.waker.take() {
                waker.wake();
            }
        }
    }
}

/// The locked tracker (see [`Hub::tracker`]).
pub struct TrackerGuard<'a>(MutexGuard<'a, Shared>);

impl Deref for TrackerGuard<'_> {
    type Target = Tracker;

    fn deref(&self) -> &Tracker {
        &self.0.tracker
    }
}

impl DerefMut for TrackerGuard<'_> {
    fn deref_mut(&mut self) -> &mut Tracker {
        &mut self.0.tracker
    }
}

impl Hub {
    /// A hub with an empty tracker seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Hub {
            shared: Mutex::new(Shared {
                tracker: Tracker::new(seed),
                queues: HashMap::default(),
            }),
            driver: OnceLock::new(),
        }
    }

    /// Hands a connection to the driver, starting it if need be (on the
    /// current runtime).
    fn run(&self, connection: Connection) {
        let driver = self.driver.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(tokio::task::unconstrained(drive(rx)));
            tx
        });
        if let Err(mpsc::error::SendError(connection)) = driver.send(connection) {
            // The driver is gone only with its runtime: not here.
            tokio::spawn(connection);
        }
    }

    /// Locks the tracker (a panic elsewhere never poisons it for good).
    pub fn tracker(&self) -> TrackerGuard<'_> {
        TrackerGuard(self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles one request from `conn` and queues what it sends.
    fn handle(&self, conn: ConnId, request: TrackerRequest<'_>) {
        let mut shared = self.lock();
        let out = shared.tracker.handle(conn, request, Instant::now());
        shared.dispatch(out);
    }

    fn dispatch(&self, out: Vec<Outgoing>) {
        self.lock().dispatch(out);
    }

    /// Moves every frame queued for `conn` into `batch` (empty on entry);
    /// pending, with the task's waker kept for [`Shared::dispatch`], while
    /// there is none.
    fn poll_queued(
        &self,
        conn: ConnId,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<String>,
    ) -> Poll<()> {
        let mut shared = self.lock();
        let Some(queue) = shared.queues.get_mut(&conn) else {
            return Poll::Pending;
        };
        if queue.frames.is_empty() {
            if !queue
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                queue.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        // The emptied batch's buffer becomes the queue's: no allocation.
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut queue.frames, batch);
        // Not waiting any more: frames queued while it writes wake nobody.
        queue.waker = None;
        Poll::Ready(())
    }
}

/// Why a request to `/announce` is not a WebSocket upgrade this server takes.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeError {
    /// No `Upgrade: websocket` header: a plain HTTP request.
    #[error("this is a websocket endpoint: `upgrade: websocket` is missing")]
    NotWebSocket,
    /// `Connection` does not list `upgrade`.
    #[error("`connection` header does not include `upgrade`")]
    ConnectionNotUpgrade,
    /// A WebSocket version other than 13.
    #[error("`sec-websocket-version` must be 13")]
    Version,
    /// No `Sec-WebSocket-Key`, or not the base64 of 16 bytes.
    #[error("`sec-websocket-key` is missing or malformed")]
    Key,
    /// The connection cannot be taken over (not HTTP/1.1).
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for UpgradeError {
    fn into_response(self) -> Response {
        let status = match self {
            UpgradeError::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = ApiError::new(status, self.to_string()).into_response();
        // What a client must send instead (RFC 6455 section 4.2.2).
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        response
    }
}

/// True when the comma-separated header `name` lists `token` (ASCII case ignored).
fn header_lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks an opening handshake (RFC 6455 section 4.2.1) and gives the
/// `Sec-WebSocket-Accept` value that answers it.
pub fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, UpgradeError> {
    if !header_lists(headers, header::UPGRADE, "websocket") {
        return Err(UpgradeError::NotWebSocket);
    }
    if !header_lists(headers, header::CONNECTION, "upgrade") {
        return Err(UpgradeError::ConnectionNotUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(UpgradeError::Version);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().trim_ascii())
        .ok_or(UpgradeError::Key)?;
    // A nonce of 16 bytes, base64-encoded: 24 characters.
    let nonce = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| UpgradeError::Key)?;
    if nonce.len() != 16 {
        return Err(UpgradeError::Key);
    }
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes());
    HeaderValue::from_str(&accept).map_err(|_| UpgradeError::Key)
}

/// `GET /announce`: upgrades to a WebSocket tracker connection.
pub async fn announce(
    State(state): State<AppState>,
    mut request: Request,
) -> Result<Response, UpgradeError> {
    let accept = accept_key(request.headers())?;
    let on_upgrade = request
        .extensions_mut()
        .remove::<OnUpgrade>()
        .ok_or(UpgradeError::NotUpgradable)?;
    let hub = state.hub.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = websocket().serve(TokioIo::new(upgraded));
                // A panic ends its own connection, not the driver's others.
                let connection = AssertUnwindSafe(serve_connection(hub.clone(), socket))
                    .catch_unwind()
                    .map(|r| {
                        if r.is_err() {
                            tracing::error!("tracker connection panicked");
                        }
                    });
                hub.run(Box::pin(connection));
            }
            Err(e) => tracing::debug!(error = %e, "tracker upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

/// The WebSocket layer's settings for a tracker connection.
fn websocket() -> ServerBuilder {
    ServerBuilder::new()
        .config(
            tokio_websockets::Config::default()
                .flush_threshold(WRITE_BUFFER_BYTES)
                // Frames are never split: none is longer than a client may send.
                .frame_size(MAX_FRAME_BYTES.max(WRITE_BUFFER_BYTES)),
        )
        .limits(Limits::default().max_payload_len(Some(MAX_FRAME_BYTES)))
}

async fn serve_connection<S>(hub: Arc<Hub>, mut socket: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn = {
        let mut shared = hub.lock();
        let conn = shared.tracker.connect();
        shared.queues.insert(conn, Queue::default());
        conn
    };
    // The frames taken from the queue, being written.
    let mut batch: VecDeque<String> = VecDeque::new();

    // One task reads the connection and writes what is queued for it: no
    // second task to wake per frame, and no lock between two halves of the
    // socket. Pushing the idle deadline later touches no timer lock.
    let idle = tokio::time::sleep(IDLE_TIMEOUT);
    tokio::pin!(idle);
    // A failure reason to send last, and a close frame other than the
    // normal one to end with.
    let mut last_words: Option<String> = None;
    let mut close: Option<Message> = None;
    loop {
        tokio::select! {
            () = std::future::poll_fn(|cx| hub.poll_queued(conn, cx, &mut batch)) => {
                // A client that stops reading holds this connection only
                // until its idle deadline.
                let written = tokio::select! {
                    r = write_batch(&mut socket, &mut batch) => r.is_ok(),
                    () = &mut idle => false,
                };
                if !written {
                    break;
                }
            }
            next = socket.next() => {
                idle.as_mut().reset(tokio::time::Instant::now() + IDLE_TIMEOUT);
                let message = match next {
                    None => break,
                    Some(Err(e)) => {
                        // A frame over the limit, a protocol violation (an
                        // unmasked frame, say) or a broken socket: the
                        // WebSocket layer has queued the close frame that
                        // says why, when there is one. Not for a message
                        // whose fragments add up to more than the limit:
                        // that close frame is this task's to send.
                        tracing::debug!(conn = conn.0, error = %e, "tracker connection error");
                        if let tokio_websockets::Error::PayloadTooLong { max_len, .. } = e {
                            last_words = Some(format!("message longer than {max_len} bytes"));
                            close = Some(Message::close(
                                Some(CloseCode::MESSAGE_TOO_BIG),
                                &format!("max length: {max_len}"),
                            ));
                        }
                        break;
                    }
                    Some(Ok(message)) => message,
                };
                if message.is_close() {
                    break;
                }
                // The message is decoded where it lies, without a copy.
                let text = if let Some(text) = message.as_text() {
                    Ok(text)
                } else if message.is_binary() {
                    std::str::from_utf8(message.as_payload())
                } else {
                    // A ping (answered by the WebSocket layer) or a pong.
                    continue;
                };
                match text {
                    Ok(text) => match parse_request(text) {
                        Ok(request) => hub.handle(conn, request),
                        Err(e) => hub.dispatch(vec![Tracker::failure(
                            conn,
                            e.to_string(),
                            e.action(),
                            None,
                        )]),
                    },
                    Err(_) => hub.dispatch(vec![Tracker::failure(
                        conn,
                        "binary frame is not utf-8 json",
                        None,
                        None,
                    )]),
                }
            }
            () = &mut idle => {
                last_words = Some("idle timeout".into());
                break;
            }
        }
    }

    let queued = {
        let mut shared = hub.lock();
        shared.tracker.disconnect(conn);
        shared.queues.remove(&conn)
    };
    // Nothing more is queued from here on: write what is (a failure reason,
    // say) unless the connection is closing already, and close, within a bound.
    batch.extend(queued.into_iter().flat_map(|q| q.frames));
    let _ = tokio::time::timeout(Duration::from_secs(5), async move {
        let farewell = async {
            for text in batch {
                socket.feed(Message::text(text)).await?;
            }
            if let Some(reason) = last_words {
                let f = Tracker::failure(conn, reason, None, None);
                socket.feed(Message::text(f.text)).await?;
            }
            if let Some(close) = close {
                socket.feed(close).await?;
            }
            Ok::<_, tokio_websockets::Error>(())
        };
        // Refused once a close frame is queued (the client's, or one the
        // WebSocket layer queued to say why the connection ends): that
        // frame is sent by `close`.
        let _ = farewell.await;
        socket.close().await
    })
    .await;
}

/// Queues every frame of `batch`, then writes them together (one vectored
/// write for up to [`WRITE_BUFFER_BYTES`]); `batch` is empty once it succeeds.
async fn write_batch<S>(
    socket: &mut WebSocketStream<S>,
    batch: &mut VecDeque<String>,
) -> Result<(), tokio_websockets::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(text) = batch.pop_front() {
        socket.feed(Message::text(text)).await?;
    }
    socket.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn frames(to: ConnId, range: std::ops::Range<usize>) -> Vec<Outgoing> {
        range
            .map(|i| Outgoing {
                to,
                text: format!("{{\"n\":{i}}}"),
            })
            .collect()
    }

    #[test]
    fn a_full_queue_drops_frames_and_a_waiting_connection_is_woken_by_the_first() {
        let hub = Hub::new(1);
        let conn = {
            let mut shared = hub.lock();
            let conn = shared.tracker.connect();
            shared.queues.insert(conn, Queue::default());
            conn
        };
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        assert!(hub.poll_queued(conn, &mut cx, &mut batch).is_pending());

        hub.dispatch(frames(conn, 0..OUTGOING_QUEUE + 5));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(hub.poll_queued(conn, &mut cx, &mut batch).is_ready());
        // The first OUTGOING_QUEUE frames, in order; the rest were dropped.
        let got: Vec<&str> = batch.iter().map(|t| t.as_str()).collect();
        let want: Vec<String> = (0..OUTGOING_QUEUE)
            .map(|i| format!("{{\"n\":{i}}}"))
            .collect();
        assert_eq!(got, want);

        // Taken, so there is room again; a connection busy writing is not woken.
        hub.dispatch(frames(conn, 100..101));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        batch.clear();
        assert!(hub.poll_queued(conn, &mut cx, &mut batch).is_ready());
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].as_str(), "{\"n\":100}");

        // Frames for a connection that is gone are dropped.
        hub.lock().queues.remove(&conn);
        hub.dispatch(frames(conn, 0..1));
        batch.clear();
        assert!(hub.poll_queued(conn, &mut cx, &mut batch).is_pending());
    }

    fn handshake(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn the_handshake_is_answered_with_the_rfc_6455_accept_key() {
        let accept = accept_key(&handshake(&GOOD)).expect("accepted");
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_handshake_missing_what_rfc_6455_asks_for_is_refused() {
        let without = |name: &str| {
            let pairs: Vec<_> = GOOD.iter().copied().filter(|(n, _)| *n != name).collect();
            accept_key(&handshake(&pairs))
        };
        assert_eq!(without("upgrade"), Err(UpgradeError::NotWebSocket));
        assert_eq!(
            without("connection"),
            Err(UpgradeError::ConnectionNotUpgrade)
        );
        assert_eq!(without("sec-websocket-version"), Err(UpgradeError::Version));
        assert_eq!(without("sec-websocket-key"), Err(UpgradeError::Key));

        let with = |name: &'static str, value: &'static str| {
            let mut pairs: Vec<_> = GOOD.iter().copied().filter(|(n, _)| *n != name).collect();
            pairs.push((name, value));
            accept_key(&handshake(&pairs))
        };
        assert_eq!(with("upgrade", "h2c"), Err(UpgradeError::NotWebSocket));
        assert_eq!(
            with("connection", "upgraded"),
            Err(UpgradeError::ConnectionNotUpgrade)
        );
        assert_eq!(
            with("sec-websocket-version", "8"),
            Err(UpgradeError::Version)
        );
        // Not base64, and the base64 of 15 bytes.
        assert_eq!(
            with("sec-websocket-key", "not a key!"),
            Err(UpgradeError::Key)
        );
        assert_eq!(
            with("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAA"),
            Err(UpgradeError::Key)
        );
    }
}
