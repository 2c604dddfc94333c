//! WebTorrent WebSocket tracker: the `/announce` endpoint over the [`core::Tracker`].
//!
//! Each connection is one task, which reads the client's requests and writes
//! what its bounded outgoing queue holds; a connection too slow to drain the
//! queue loses messages rather than memory. The queues live next to the
//! tracker, behind its lock: handling a request queues its frames with plain
//! pushes, and a connection task takes everything queued for it at once.
//! Nothing about a client's address is recorded.

pub mod core;
pub mod protocol;

use std::collections::{HashMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;

use self::core::{ConnId, Outgoing, Tracker};
use self::protocol::{parse_request, Request};
use crate::app::AppState;

/// Largest frame and message accepted from a client (ten offers with full
/// SDPs fit): the engine codec's limit for frames sent to a tracker.
pub const MAX_FRAME_BYTES: usize = swarmdrop::engine::tracker::MAX_TO_TRACKER_LEN;
/// Frames queued for one connection before further ones are dropped. The
/// connection takes what is queued all at once to write it, so at most twice
/// this many are held for it at a time.
pub const OUTGOING_QUEUE: usize = 64;
/// Most bytes read from a connection's socket at once. Tungstenite zero-fills
/// this much of its read buffer before every read (128 KiB by default), a
/// read that finds nothing included, so it is kept small; but an announce
/// with ten offers (about 7 KiB) should fit in one read, and a read that
/// fills the buffer is followed by another system call (the socket may hold
/// more), so it is not smaller than that.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;
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
    queues: HashMap<ConnId, Queue, ahash::RandomState>,
}

/// The frames waiting for one connection, and its task's waker while it
/// waits for some.
#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Utf8Bytes>,
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
            queue.frames.push_back(Utf8Bytes::from(o.text));
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

    /// Moves every frame queued for `conn` into `batch` (empty on entry);
    /// pending, with the task's waker kept for [`Shared::dispatch`], while
    /// there is none.
    fn poll_queued(
        &self,
        conn: ConnId,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Utf8Bytes>,
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
    let conn = {
        let mut shared = hub.lock();
        let conn = shared.tracker.connect();
        shared.queues.insert(conn, Queue::default());
        conn
    };
    // The frames taken from the queue, being written.
    let mut batch: VecDeque<Utf8Bytes> = VecDeque::new();

    // One task reads the connection and writes what is queued for it: no
    // second task to wake per frame, and no lock between two halves of the
    // socket. Pushing the idle deadline later touches no timer lock.
    let idle = tokio::time::sleep(IDLE_TIMEOUT);
    tokio::pin!(idle);
    let mut last_words: Option<String> = None;
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

    let queued = {
        let mut shared = hub.lock();
        shared.tracker.disconnect(conn);
        shared.queues.remove(&conn)
    };
    // Nothing more is queued from here on: write what is (a failure reason,
    // say) and close, within a bound.
    batch.extend(queued.into_iter().flat_map(|q| q.frames));
    let _ = tokio::time::timeout(Duration::from_secs(5), async move {
        for text in batch {
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

/// Writes every frame of `batch`, then flushes them together (one write for
/// what fits in the write buffer); `batch` is empty once it succeeds.
async fn write_batch(
    socket: &mut WebSocket,
    batch: &mut VecDeque<Utf8Bytes>,
) -> Result<(), axum::Error> {
    while let Some(text) = batch.pop_front() {
        socket.feed(Message::Text(text)).await?;
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
}
