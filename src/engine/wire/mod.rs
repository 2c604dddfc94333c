//! The peer wire protocol: handshake, messages, stream framing, and the
//! BEP 10 / BEP 9 extensions (extended handshake, ut_metadata).

pub mod extension;
pub mod framer;
pub mod handshake;
pub mod message;
pub mod metadata;

pub use extension::{ExtendedHandshake, ExtensionError};
pub use framer::{Frame, FrameLimits, Framer, FramerError, Frames};
pub use handshake::{Handshake, HandshakeError, HANDSHAKE_LEN};
pub use message::{encode_piece_header, msg_id, BlockRequest, Message, MessageError};
pub use metadata::{
    metadata_piece, MetadataAssembler, MetadataError, MetadataMessage, MetadataProgress,
    METADATA_PIECE_SIZE,
};

#[cfg(test)]
mod test_support;
