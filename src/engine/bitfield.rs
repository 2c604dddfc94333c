//! A set of pieces, in the BEP 3 bit order (high bit of byte 0 is piece 0).

/// A fixed-size set of piece indices.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

impl Bitfield {
    /// An empty set over `len` pieces.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }

    /// A full set over `len` pieces.
    pub fn full(len: u32) -> Self {
        let mut b = Bitfield::new(len);
        b.bytes.iter_mut().for_each(|x| *x = 0xff);
        b.clear_spare_bits();
        b.ones = len;
        b
    }

    /// Reads a bitfield message's payload. Returns `None` if its length is not
    /// exactly `ceil(len / 8)` bytes or a spare bit past `len` is set (BEP 3
    /// says peers that do so should be dropped).
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Self> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let mut b = Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones: 0,
        };
        let before: Vec<u8> = b.bytes.clone();
        b.clear_spare_bits();
        if b.bytes != before {
            return None;
        }
        b.ones = b.bytes.iter().map(|x| x.count_ones()).sum();
        Some(b)
    }

    fn clear_spare_bits(&mut self) {
        let spare = (self.bytes.len() * 8) as u32 - self.len;
        if spare > 0 {
            if let Some(last) = self.bytes.last_mut() {
                *last &= 0xffu8 << spare;
            }
        }
    }

    /// The payload of a bitfield message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of pieces the set ranges over.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the set ranges over no pieces at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pieces in the set.
    pub fn count_ones(&self) -> u32 {
        self.ones
    }

    /// True when every piece is in the set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// True when no piece is in the set.
    pub fn none(&self) -> bool {
        self.ones == 0
    }

    /// Whether piece `i` is in the set (false past the end).
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Adds or removes piece `i`; returns whether it changed. Ignores indices
    /// past the end.
    pub fn set(&mut self, i: u32, value: bool) -> bool {
        if i >= self.len {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        let mask = 0x80 >> (i % 8);
        let was = *byte & mask != 0;
        if was == value {
            return false;
        }
        if value {
            *byte |= mask;
            self.ones += 1;
        } else {
            *byte &= !mask;
            self.ones -= 1;
        }
        true
    }

    /// The pieces in the set, in order.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.bytes.iter().enumerate().flat_map(move |(bi, &byte)| {
            (0..8u32).filter_map(move |bit| {
                let i = bi as u32 * 8 + bit;
                (byte & (0x80 >> bit) != 0 && i < self.len).then_some(i)
            })
        })
    }

    /// The pieces not in the set, in order.
    pub fn iter_zeros(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(move |&i| !self.get(i))
    }

    /// True when `other` has a piece this set lacks.
    pub fn lacks_any_of(&self, other: &Bitfield) -> bool {
        self.bytes
            .iter()
            .zip(&other.bytes)
            .any(|(mine, theirs)| theirs & !mine != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bit_order_is_high_bit_first() {
        let mut b = Bitfield::new(10);
        b.set(0, true);
        b.set(9, true);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count_ones(), 2);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![0, 9]);
    }

    #[test]
    fn spare_bits_set_by_a_peer_are_refused() {
        assert!(Bitfield::from_bytes(&[0xff, 0xc0], 10).is_some());
        assert!(Bitfield::from_bytes(&[0xff, 0xe0], 10).is_none());
        assert!(Bitfield::from_bytes(&[0xff], 10).is_none());
        assert!(Bitfield::full(10).is_full());
        assert_eq!(Bitfield::full(10).as_bytes(), &[0xff, 0xc0]);
    }

    #[test]
    fn lacks_any_of_finds_interest() {
        let mut mine = Bitfield::new(20);
        let mut theirs = Bitfield::new(20);
        assert!(!mine.lacks_any_of(&theirs));
        theirs.set(17, true);
        assert!(mine.lacks_any_of(&theirs));
        mine.set(17, true);
        assert!(!mine.lacks_any_of(&theirs));
    }

    proptest! {
        #[test]
        fn count_matches_iteration(len in 1u32..300, ops in proptest::collection::vec((0u32..300, any::<bool>()), 0..200)) {
            let mut b = Bitfield::new(len);
            for (i, v) in ops { b.set(i, v); }
            prop_assert_eq!(b.iter_ones().count() as u32, b.count_ones());
            prop_assert_eq!(b.iter_zeros().count() as u32, len - b.count_ones());
            let back = Bitfield::from_bytes(b.as_bytes(), len).unwrap();
            prop_assert_eq!(back, b);
        }
    }
}
