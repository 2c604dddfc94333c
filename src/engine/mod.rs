//! The sans-IO core: no clock, no randomness of its own, no I/O.
//!
//! Every module here compiles and is tested natively; browser crates are not
//! reachable from this tree (they are wasm32-only dependencies).

pub mod api;
pub mod assembly;
pub mod bencode;
pub mod bitfield;
pub mod choker;
pub mod client;
pub mod create;
pub mod event;
pub mod hash;
pub mod ids;
pub mod lengths;
pub mod limiter;
pub mod link;
pub mod loads;
pub mod magnet;
pub mod metafetch;
pub mod metainfo;
pub mod peer;
pub mod picker;
pub mod session;
pub mod sort;
pub mod time;
pub mod timer;
pub mod tracker;
pub mod upload;
pub mod webseed;
pub mod wire;
