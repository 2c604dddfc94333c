//! Swarmdrop's availability server: a WebTorrent tracker, a bundle store with
//! an upload API, a BEP 19 web seed, bundle pages and expiry, on axum.
//!
//! | route | what |
//! |---|---|
//! | `GET /announce` (WebSocket) | WebTorrent tracker: announce, offer/answer relay, scrape |
//! | `POST /api/bundles` | create a bundle from a `.torrent` body; returns the owner token |
//! | `GET /api/bundles/{info_hash}` | bundle state: lengths, files, `have` bitfield, expiry |
//! | `PUT /api/bundles/{info_hash}/pieces/{index}` | upload one piece (owner token; SHA-1 checked) |
//! | `DELETE /api/bundles/{info_hash}` | delete the bundle (owner token) |
//! | `GET /api/bundles/{info_hash}/torrent` | the `.torrent` with this server as web seed and tracker |
//! | `GET`/`HEAD /seed/{info_hash}/{name}[/{path…}]` | BEP 19 web seed with `Range` |
//! | `GET /b/{info_hash}` | landing page |
//! | `GET /api/stats` | `bytes_served`, `bytes_received`, `offers_relayed`, `bundles` |
//!
//! Privacy: no request is logged with a client address, and nothing records
//! who fetched what; the tracker forgets a peer when its connection closes.

pub mod api;
pub mod app;
pub mod bundle;
pub mod config;
pub mod error;
pub mod expiry;
pub mod page;
pub mod seed;
pub mod store;
pub mod tracker;

pub use app::{start, Running};
pub use config::Config;
pub use error::ServerError;
