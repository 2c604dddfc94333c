//! Twenty-byte identifiers: info hashes and peer ids.

use std::fmt;

macro_rules! id20 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 20]);

        impl $name {
            /// Lower-case hexadecimal, 40 characters.
            pub fn to_hex(&self) -> String {
                hex40(&self.0)
            }

            /// Parses 40 hexadecimal characters (either case).
            pub fn from_hex(s: &str) -> Option<Self> {
                parse_hex40(s).map(Self)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 20] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

id20!(
    /// SHA-1 of the raw bencoded `info` dictionary of a v1 torrent.
    InfoHash
);
id20!(
    /// A peer's 20-byte id, as sent in the handshake and to trackers.
    PeerId
);

impl PeerId {
    /// Azureus-style prefix Swarmdrop puts on its peer ids (`-SD0100-`).
    pub const PREFIX: &'static [u8; 8] = b"-SD0100-";

    /// A Swarmdrop peer id: the client prefix followed by 12 bytes taken from
    /// `random` (the caller supplies the entropy; the engine has none).
    pub fn generate(random: [u8; 12]) -> Self {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(Self::PREFIX);
        // Printable bytes keep the id readable in tracker logs and in JSON.
        for (slot, r) in id[8..].iter_mut().zip(random) {
            const ALPHABET: &[u8; 62] =
                b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
            *slot = ALPHABET[(r as usize) % ALPHABET.len()];
        }
        PeerId(id)
    }
}

fn hex40(bytes: &[u8; 20]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(40);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn parse_hex40(s: &str) -> Option<[u8; 20]> {
    let s = s.as_bytes();
    if s.len() != 40 {
        return None;
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(s[2 * i])? << 4) | nibble(s[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let h = InfoHash::from_hex("D2474E86C95B19B8BCFDB92BC12C9D44667CFA36").unwrap();
        assert_eq!(h.to_hex(), "d2474e86c95b19b8bcfdb92bc12c9d44667cfa36");
        assert!(InfoHash::from_hex("d2474e86").is_none());
        assert!(InfoHash::from_hex("z2474e86c95b19b8bcfdb92bc12c9d44667cfa36").is_none());
    }

    #[test]
    fn generated_peer_ids_carry_the_client_prefix() {
        let id = PeerId::generate([200; 12]);
        assert_eq!(&id.0[..8], PeerId::PREFIX);
        assert!(id.0.iter().all(|b| b.is_ascii_graphic()));
    }
}
