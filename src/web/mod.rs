//! Browser glue: owns every JavaScript object and drives the engine.

mod api;
mod host;
mod js;
pub mod net;
mod pieces;
mod storage;
mod uploader;

pub use api::SwarmHost;
