//! WebTorrent WebSocket tracker: the `/announce` endpoint over the [`core::Tracker`].
//!
//! Each connection is one task, which reads the client's requests and writes
//! what its bounded outgoing queue holds; a connection too slow to drain the
//! queue loses messages rather than memory.
//! Nothing about a client's address is recorded.

pub mod core;
pub mod protocol;

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::sync::mpsc;

use self::core::{ConnId, Outgoing, Tracker};
use self::protocol::{parse_request, Request};
use crate::app::AppState;

/// Largest frame and message accepted from a client (ten offers with full
/// SDPs fit): the engine codec's limit for frames sent to a tracker.
pub const MAX_FRAME_BYTES: usize = swarmdrop::engine::tracker::MAX_TO_TRACKER_LEN;
/// Frames queued for one connection before further ones are dropped.
pub const OUTGOING_QUEUE: usize = 64;
/// Most bytes read from a connection's socket at once. Tungstenite zero-fills
/// this much of its read buffer before every read (128 KiB by default), a
/// read that finds nothing included, so it is kept small: most requests
/// (answers, announces without offers) are under 1 KiB, and an announce with
/// ten offers (about 7 KiB) takes two reads.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Frames written to a connection's socket in one write: the writer queues
/// every frame waiting for the connection and then flushes them together.
pub const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// A connection silent for this long is closed (clients re-announce every 120 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(6 * 60);

/// The tracker shared by every connection, and each connection's queue,
/// behind one lock: a request is handled and its frames queued in one go.
#[derive(Debug)]
pub struct Hub {
    shared: Mutex<Shared>,
}

#[derive(Debug)]
struct Shared {
    tracker: Tracker,
    senders: HashMap<ConnId, mpsc::Sender<Utf8Bytes>, ahash::RandomState>,
}

impl Shared {
    /// Queues each frame for its connection; a full queue loses the frame.
    fn dispatch(&self, out: Vec<Outgoing>) {
        for o in out {
            if let Some(tx) = self.senders.get(&o.to) {
                if tx.try_send(Utf8Bytes::from(o.text)).is_err() {
                    tracing::debug!(conn = o.to.0, "tracker queue full, frame dropped");
                }
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
                senders: HashMap::default(),
            }),
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
    fn handle(&self, conn: ConnId, request: Request<'_>) {
        let mut shared = self.lock();
        let out = shared.tracker.handle(conn, request, Instant::now());
        shared.dispatch(out);
    }

    fn dispatch(&self, out: Vec<Outgoing>) {
        self.lock().dispatch(out);
    }
}

/// One data frame from a client, text or binary.
enum Payload {
    Text(Utf8Bytes),
    Binary(Bytes),
}

/// `GET /announce`: upgrades to a WebSocket tracker connection.
pub async fn announce(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| serve_connection(state.hub.clone(), socket))
}

async fn serve_connection(hub: Arc<Hub>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(OUTGOING_QUEUE);
    let conn = {
        let mut shared = hub.lock();
        let conn = shared.tracker.connect();
        shared.senders.insert(conn, tx);
        conn
    };

    // One task reads the connection and writes what is queued for it: no
    // second task to wake per frame, and no lock between two halves of the
    // socket. Pushing the idle deadline later touches no timer lock.
    let idle = tokio::time::sleep(IDLE_TIMEOUT);
    tokio::pin!(idle);
    let mut last_words: Option<String> = None;
    loop {
        tokio::select! {
            Some(text) = rx.recv() => {
                // A client that stops reading holds this connection only
                // until its idle deadline.
                let written = tokio::select! {
                    r = write_queued(&mut socket, text, &mut rx) => r.is_ok(),
                    () = &mut idle => false,
                };
                if !written {
                    break;
                }
            }
            next = socket.recv() => {
                idle.as_mut().reset(tokio::time::Instant::now() + IDLE_TIMEOUT);
                let payload = match next {
                    None => break,
                    Some(Err(e)) => {
                        // Oversized frames end here; tell the client why if it still listens.
                        tracing::debug!(conn = conn.0, error = %e, "tracker connection error");
                        last_words = Some(format!("connection error: {e}"));
                        break;
                    }
                    Some(Ok(Message::Text(text))) => Payload::Text(text),
                    Some(Ok(Message::Binary(bytes))) => Payload::Binary(bytes),
                    Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                };
                // The frame is decoded where it lies, without a copy.
                let text = match &payload {
                    Payload::Text(text) => Ok(text.as_str()),
                    Payload::Binary(bytes) => std::str::from_utf8(bytes),
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

    {
        let mut shared = hub.lock();
        shared.tracker.disconnect(conn);
        shared.senders.remove(&conn);
    }
    // Nothing more is queued from here on: write what is (a failure reason,
    // say) and close, within a bound.
    let _ = tokio::time::timeout(Duration::from_secs(5), async move {
        while let Ok(text) = rx.try_recv() {
            socket.feed(Message::Text(text)).await?;
        }
        if let Some(reason) = last_words {
            let f = Tracker::failure(conn, reason, None, None);
            socket.feed(Message::Text(Utf8Bytes::from(f.text))).await?;
        }
        socket.flush().await?;
        socket.close().await
    })
    .await;
}

/// Writes `first` and every frame queued behind it, then flushes them
/// together (one write for what fits in the write buffer).
async fn write_queued(
    socket: &mut WebSocket,
    first: Utf8Bytes,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
) -> Result<(), axum::Error> {
    socket.feed(Message::Text(first)).await?;
    while let Ok(text) = rx.try_recv() {
        socket.feed(Message::Text(text)).await?;
    }
    socket.flush().await
}
