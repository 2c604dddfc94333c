//! Swarmdrop's engine: a sans-IO BitTorrent v1 core that speaks the WebTorrent
//! dialect, and (on wasm32 only) the browser glue that drives it.
//!
//! # What the engine does not do
//!
//! The engine ([`engine`]) performs **no I/O**: it opens no socket, data
//! channel or file, and makes no HTTP request. It **reads no clock**: time is
//! only ever an input (an [`Instant`](engine::time::Instant) the caller
//! passes, `performance.now()` in the browser, virtual time in tests). It has
//! **no randomness of its own**: every random choice comes from a seed in
//! [`ClientConfig`](engine::client::ClientConfig). It never blocks, spawns or
//! waits. So the same inputs always give the same outputs, the whole swarm
//! logic is tested natively in virtual time, and the crate builds for
//! `wasm32-unknown-unknown` without a browser crate in reach.
//!
//! # Data flow
//!
//! ```text
//!   user commands ─┐                                  ┌─► bytes to peers, closes
//!   peer bytes ────┤                                  ├─► WebRTC offers / answers
//!   tracker frames ┤   Input    ┌────────────┐ Output ├─► tracker frames
//!   signalling ────┼──────────► │   Client   │ ──────►├─► block loads, piece stores
//!   storage ───────┤            │ sessions,  │        ├─► web seed fetches (HTTP)
//!   web seed HTTP ─┘            │ trackers   │        └─► events for the UI
//!   the time ────────────────►  └────────────┘ ──► poll_timeout: when to wake
//! ```
//!
//! One [`Client`](engine::client::Client) owns a session per bundle and one
//! socket per tracker URL shared by all of them. The glue (`web`) owns every
//! JavaScript object and turns the outputs into effects and the browser's
//! callbacks into inputs.
//!
//! # The run loop
//!
//! 1. Create the client once: `Client::new(ClientConfig::new(peer_id, seed))`.
//! 2. Feed each input as it happens, with the current time:
//!    `client.handle_input(now, Input::PeerData { conn, data })`, a user
//!    [`Command`](engine::api::Command), a tracker frame, a loaded block…
//!    Only commands can fail (and then change nothing).
//! 3. Drain the outputs: `while let Some(out) = client.poll_output()`, carry
//!    each out in order (send the bytes, create the offer, store the piece,
//!    show the event…). Results come back later as inputs (step 2).
//! 4. Ask when to wake: `client.poll_timeout()`, and arm one timer for that
//!    instant (replacing the previous one).
//! 5. When it fires, call `client.handle_timeout(now)` and go to step 3.
//!
//! ```
//! use swarmdrop::engine::api::{Input, Output};
//! use swarmdrop::engine::client::{Client, ClientConfig};
//! use swarmdrop::engine::ids::PeerId;
//! use swarmdrop::engine::time::Instant;
//!
//! let mut client = Client::new(ClientConfig::new(PeerId::generate([7; 12]), 42));
//! let now = Instant::from_millis_f64(1000.0);
//! // 2. an input (here a tracker socket that opened; nothing uses it yet)
//! client.handle_input(now, Input::TrackerOpened { url: "wss://t.example" }).unwrap();
//! // 3. drain the outputs
//! while let Some(output) = client.poll_output() {
//!     match output {
//!         Output::TrackerClose { url } => assert_eq!(url, "wss://t.example"),
//!         other => unreachable!("{other:?}"),
//!     }
//! }
//! // 4. arm one timer
//! assert_eq!(client.poll_timeout(), None);
//! ```
//!
//! See `DESIGN.md` for the components, the anatomy of a block fetch and of
//! seeding a block, and how errors are handled.

pub mod engine;

#[cfg(target_arch = "wasm32")]
pub mod web;
