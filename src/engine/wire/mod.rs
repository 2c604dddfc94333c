//! The peer wire protocol: handshake, messages, stream framing, and the
//! BEP 10 / BEP 9 extensions (extended handshake, ut_metadata).

pub mod framer;
pub mod handshake;
pub mod message;

pub use framer::{Frame, FrameLimits, Framer, FramerError, Frames};
pub use handshake::{Handshake, HandshakeError, HANDSHAKE_LEN};
pub use message::{encode_piece_header, msg_id, BlockRequest, Message, MessageError};
