//! Tracker sockets: one WebSocket per tracker URL, shared by every bundle,
//! opened and closed when the engine says (it also decides when to reconnect).

use gloo::events::EventListener;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, WebSocket};

use super::super::host::{post, Weak, Work};
use super::error::NetError;

/// One open (or opening) tracker socket. Dropping it removes its listeners
/// and closes the socket.
pub struct TrackerSocket {
    ws: WebSocket,
    _listeners: [EventListener; 3],
}

impl TrackerSocket {
    /// Opens a socket to `url`; its events come back as [`Work`] tagged with
    /// `generation`, so that a late event of an older socket is recognised.
    pub fn open(url: &str, generation: u64, host: Weak) -> Result<TrackerSocket, NetError> {
        let ws = WebSocket::new(url).map_err(|e| NetError::browser(&e))?;
        let on_open = {
            let (host, url) = (host.clone(), url.to_owned());
            EventListener::new(&ws, "open", move |_| {
                post(
                    &host,
                    Work::TrackerOpened {
                        url: url.clone(),
                        generation,
                    },
                )
            })
        };
        let on_message = {
            let (host, url) = (host.clone(), url.to_owned());
            EventListener::new(&ws, "message", move |event| {
                let text = event
                    .dyn_ref::<MessageEvent>()
                    .and_then(|m| m.data().as_string());
                // Trackers speak text frames only; a binary frame means nothing.
                if let Some(text) = text {
                    post(
                        &host,
                        Work::TrackerText {
                            url: url.clone(),
                            generation,
                            text,
                        },
                    );
                }
            })
        };
        // An error is always followed by a close.
        let on_close = {
            let url = url.to_owned();
            EventListener::new(&ws, "close", move |_| {
                post(
                    &host,
                    Work::TrackerClosed {
                        url: url.clone(),
                        generation,
                    },
                )
            })
        };
        Ok(TrackerSocket {
            ws,
            _listeners: [on_open, on_message, on_close],
        })
    }

    /// Sends a text frame; `false` if the socket is not open.
    pub fn send(&self, text: &str) -> bool {
        self.ws.ready_state() == WebSocket::OPEN && self.ws.send_with_str(text).is_ok()
    }
}

impl Drop for TrackerSocket {
    fn drop(&mut self) {
        // The listeners go with the struct; the socket is told to close.
        let _ = self.ws.close();
    }
}
