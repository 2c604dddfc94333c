//! Swarmdrop's engine: a sans-IO BitTorrent v1 core that speaks the WebTorrent
//! dialect, and (on wasm32 only) the browser glue that drives it.
//!
//! Crate-level documentation is completed with the engine (see `DESIGN.md`).

pub mod engine;

#[cfg(target_arch = "wasm32")]
pub mod web;
