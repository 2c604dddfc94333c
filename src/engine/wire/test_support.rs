//! Owned copies of frames and proptest strategies shared by the wire tests.

use super::framer::Frame;
use super::handshake::Handshake;
use super::message::{BlockRequest, Message};
use proptest::prelude::*;

/// An owned [`Message`], so tests can collect and compare decoded output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedMessage {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    Request(BlockRequest),
    Piece {
        index: u32,
        begin: u32,
        block: Vec<u8>,
    },
    Cancel(BlockRequest),
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRequest),
    AllowedFast(u32),
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
}

impl OwnedMessage {
    pub fn from_message(m: &Message<'_>) -> Self {
        match *m {
            Message::KeepAlive => OwnedMessage::KeepAlive,
            Message::Choke => OwnedMessage::Choke,
            Message::Unchoke => OwnedMessage::Unchoke,
            Message::Interested => OwnedMessage::Interested,
            Message::NotInterested => OwnedMessage::NotInterested,
            Message::Have(i) => OwnedMessage::Have(i),
            Message::Bitfield(b) => OwnedMessage::Bitfield(b.to_vec()),
            Message::Request(r) => OwnedMessage::Request(r),
            Message::Piece {
                index,
                begin,
                block,
            } => OwnedMessage::Piece {
                index,
                begin,
                block: block.to_vec(),
            },
            Message::Cancel(r) => OwnedMessage::Cancel(r),
            Message::Port(p) => OwnedMessage::Port(p),
            Message::Suggest(i) => OwnedMessage::Suggest(i),
            Message::HaveAll => OwnedMessage::HaveAll,
            Message::HaveNone => OwnedMessage::HaveNone,
            Message::Reject(r) => OwnedMessage::Reject(r),
            Message::AllowedFast(i) => OwnedMessage::AllowedFast(i),
            Message::Extended { id, payload } => OwnedMessage::Extended {
                id,
                payload: payload.to_vec(),
            },
        }
    }

    pub fn as_message(&self) -> Message<'_> {
        match self {
            OwnedMessage::KeepAlive => Message::KeepAlive,
            OwnedMessage::Choke => Message::Choke,
            OwnedMessage::Unchoke => Message::Unchoke,
            OwnedMessage::Interested => Message::Interested,
            OwnedMessage::NotInterested => Message::NotInterested,
            OwnedMessage::Have(i) => Message::Have(*i),
            OwnedMessage::Bitfield(b) => Message::Bitfield(b),
            OwnedMessage::Request(r) => Message::Request(*r),
            OwnedMessage::Piece {
                index,
                begin,
                block,
            } => Message::Piece {
                index: *index,
                begin: *begin,
                block,
            },
            OwnedMessage::Cancel(r) => Message::Cancel(*r),
            OwnedMessage::Port(p) => Message::Port(*p),
            OwnedMessage::Suggest(i) => Message::Suggest(*i),
            OwnedMessage::HaveAll => Message::HaveAll,
            OwnedMessage::HaveNone => Message::HaveNone,
            OwnedMessage::Reject(r) => Message::Reject(*r),
            OwnedMessage::AllowedFast(i) => Message::AllowedFast(*i),
            OwnedMessage::Extended { id, payload } => Message::Extended { id: *id, payload },
        }
    }
}

/// What a framer produced, owned: frames and non-fatal errors in order, then
/// the fatal error if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Handshake(Handshake),
    Message(OwnedMessage),
    Error(super::framer::FramerError),
}

impl Event {
    pub fn from_result(r: Result<Frame<'_>, super::framer::FramerError>) -> Self {
        match r {
            Ok(Frame::Handshake(h)) => Event::Handshake(h),
            Ok(Frame::Message(m)) => Event::Message(OwnedMessage::from_message(&m)),
            Err(e) => Event::Error(e),
        }
    }
}

pub fn arb_request() -> impl Strategy<Value = BlockRequest> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, length)| BlockRequest {
        index,
        begin,
        length,
    })
}

pub fn arb_message() -> impl Strategy<Value = OwnedMessage> {
    let bytes = |max: usize| proptest::collection::vec(any::<u8>(), 0..max);
    prop_oneof![
        Just(OwnedMessage::KeepAlive),
        Just(OwnedMessage::Choke),
        Just(OwnedMessage::Unchoke),
        Just(OwnedMessage::Interested),
        Just(OwnedMessage::NotInterested),
        any::<u32>().prop_map(OwnedMessage::Have),
        bytes(300).prop_map(OwnedMessage::Bitfield),
        arb_request().prop_map(OwnedMessage::Request),
        (any::<u32>(), any::<u32>(), bytes(3000)).prop_map(|(index, begin, block)| {
            OwnedMessage::Piece {
                index,
                begin,
                block,
            }
        }),
        arb_request().prop_map(OwnedMessage::Cancel),
        any::<u16>().prop_map(OwnedMessage::Port),
        any::<u32>().prop_map(OwnedMessage::Suggest),
        Just(OwnedMessage::HaveAll),
        Just(OwnedMessage::HaveNone),
        arb_request().prop_map(OwnedMessage::Reject),
        any::<u32>().prop_map(OwnedMessage::AllowedFast),
        (any::<u8>(), bytes(300)).prop_map(|(id, payload)| OwnedMessage::Extended { id, payload }),
    ]
}
