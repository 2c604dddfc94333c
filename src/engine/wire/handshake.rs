//! The 68-byte BEP 3 handshake that opens every peer connection.

use crate::engine::ids::{InfoHash, PeerId};
use thiserror::Error;

/// The protocol string every BitTorrent handshake starts with.
pub const PSTR: &[u8; 19] = b"BitTorrent protocol";

/// Length of a handshake on the wire: 1 + 19 + 8 + 20 + 20.
pub const HANDSHAKE_LEN: usize = 68;

/// Byte of `reserved` holding the extension-protocol bit (BEP 10).
const EXTENSION_BYTE: usize = 5;
/// The extension-protocol bit (BEP 10).
const EXTENSION_BIT: u8 = 0x10;
/// Byte of `reserved` holding the Fast-extension bit (BEP 6).
const FAST_BYTE: usize = 7;
/// The Fast-extension bit (BEP 6).
const FAST_BIT: u8 = 0x04;

/// Why 68 bytes are not a BitTorrent handshake.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The input is not exactly 68 bytes long.
    #[error("handshake is {got} bytes, expected {HANDSHAKE_LEN}")]
    Length {
        /// Bytes given.
        got: usize,
    },
    /// The first 20 bytes are not `\x13BitTorrent protocol`.
    #[error("not a bittorrent handshake (protocol string length {pstrlen})")]
    BadProtocol {
        /// The first byte, which should be 19.
        pstrlen: u8,
    },
}

/// A BitTorrent handshake: reserved bits, the torrent, and the sender's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// Eight reserved bytes announcing protocol extensions.
    pub reserved: [u8; 8],
    /// The torrent this connection is for.
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// A handshake with no extension bits set.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        Handshake {
            reserved: [0; 8],
            info_hash,
            peer_id,
        }
    }

    /// The handshake Swarmdrop sends: extension protocol and Fast extension on.
    pub fn swarmdrop(info_hash: InfoHash, peer_id: PeerId) -> Self {
        let mut h = Self::new(info_hash, peer_id);
        h.set_extension_protocol(true);
        h.set_fast(true);
        h
    }

    /// Whether the sender speaks the extension protocol (BEP 10).
    pub fn supports_extension_protocol(&self) -> bool {
        self.reserved[EXTENSION_BYTE] & EXTENSION_BIT != 0
    }

    /// Whether the sender speaks the Fast extension (BEP 6).
    pub fn supports_fast(&self) -> bool {
        self.reserved[FAST_BYTE] & FAST_BIT != 0
    }

    /// Sets or clears the extension-protocol bit.
    pub fn set_extension_protocol(&mut self, on: bool) {
        set_bit(&mut self.reserved[EXTENSION_BYTE], EXTENSION_BIT, on);
    }

    /// Sets or clears the Fast-extension bit.
    pub fn set_fast(&mut self, on: bool) {
        set_bit(&mut self.reserved[FAST_BYTE], FAST_BIT, on);
    }

    /// The 68 bytes sent on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = PSTR.len() as u8;
        out[1..20].copy_from_slice(PSTR);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Decodes exactly 68 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, HandshakeError> {
        let bytes: &[u8; HANDSHAKE_LEN] = bytes
            .try_into()
            .map_err(|_| HandshakeError::Length { got: bytes.len() })?;
        if bytes[0] as usize != PSTR.len() || &bytes[1..20] != PSTR {
            return Err(HandshakeError::BadProtocol { pstrlen: bytes[0] });
        }
        let mut reserved = [0u8; 8];
        let mut info_hash = [0u8; 20];
        let mut peer_id = [0u8; 20];
        reserved.copy_from_slice(&bytes[20..28]);
        info_hash.copy_from_slice(&bytes[28..48]);
        peer_id.copy_from_slice(&bytes[48..68]);
        Ok(Handshake {
            reserved,
            info_hash: InfoHash(info_hash),
            peer_id: PeerId(peer_id),
        })
    }
}

fn set_bit(byte: &mut u8, bit: u8, on: bool) {
    if on {
        *byte |= bit;
    } else {
        *byte &= !bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Handshake {
        Handshake::swarmdrop(InfoHash([0xAB; 20]), PeerId(*b"-SD0100-abcdefghijkl"))
    }

    #[test]
    fn encoding_matches_the_bep3_layout() {
        let bytes = sample().encode();
        assert_eq!(bytes[0], 19);
        assert_eq!(&bytes[1..20], b"BitTorrent protocol");
        assert_eq!(bytes[20..28], [0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert_eq!(bytes[28..48], [0xAB; 20]);
        assert_eq!(&bytes[48..68], b"-SD0100-abcdefghijkl");
    }

    #[test]
    fn swarmdrop_handshake_announces_extensions_and_fast() {
        let h = sample();
        assert!(h.supports_extension_protocol());
        assert!(h.supports_fast());
        let plain = Handshake::new(h.info_hash, h.peer_id);
        assert!(!plain.supports_extension_protocol());
        assert!(!plain.supports_fast());
    }

    #[test]
    fn bits_can_be_cleared_without_touching_others() {
        let mut h = sample();
        h.reserved[7] |= 0x01; // DHT bit
        h.set_fast(false);
        assert!(!h.supports_fast());
        assert_eq!(h.reserved[7], 0x01);
        h.set_extension_protocol(false);
        assert_eq!(h.reserved, [0, 0, 0, 0, 0, 0, 0, 0x01]);
    }

    #[test]
    fn decoding_a_webtorrent_handshake_reads_its_bits() {
        // bittorrent-protocol (WebTorrent) sets the extension bit and DHT bit.
        let mut bytes = [0u8; 68];
        bytes[0] = 19;
        bytes[1..20].copy_from_slice(b"BitTorrent protocol");
        bytes[25] = 0x10;
        bytes[27] = 0x05;
        bytes[48..68].copy_from_slice(b"-WW0208-123456789012");
        let h = Handshake::decode(&bytes).unwrap();
        assert!(h.supports_extension_protocol());
        assert!(h.supports_fast());
        assert_eq!(&h.peer_id.0[..8], b"-WW0208-");
    }

    #[test]
    fn wrong_protocol_string_is_refused() {
        let mut bytes = sample().encode();
        bytes[5] = b'X';
        assert_eq!(
            Handshake::decode(&bytes),
            Err(HandshakeError::BadProtocol { pstrlen: 19 })
        );
        let mut bytes = sample().encode();
        bytes[0] = 18;
        assert_eq!(
            Handshake::decode(&bytes),
            Err(HandshakeError::BadProtocol { pstrlen: 18 })
        );
        let http = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n0123456789012345678901234567890";
        assert!(matches!(
            Handshake::decode(&http[..68]),
            Err(HandshakeError::BadProtocol { .. })
        ));
    }

    #[test]
    fn wrong_length_is_refused() {
        let bytes = sample().encode();
        assert_eq!(
            Handshake::decode(&bytes[..67]),
            Err(HandshakeError::Length { got: 67 })
        );
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(
            Handshake::decode(&long),
            Err(HandshakeError::Length { got: 69 })
        );
    }

    proptest! {
        #[test]
        fn handshakes_round_trip(reserved: [u8; 8], ih: [u8; 20], pid: [u8; 20]) {
            let h = Handshake { reserved, info_hash: InfoHash(ih), peer_id: PeerId(pid) };
            prop_assert_eq!(Handshake::decode(&h.encode()), Ok(h));
        }
    }
}
