//! The network side of the glue: tracker sockets, WebRTC peers, HTTP.

pub mod error;
pub mod http;
pub mod rtc;
pub mod tracker;
