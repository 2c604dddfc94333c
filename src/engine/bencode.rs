//! Bencode: a bounded decoder that keeps the raw bytes of every value, and a
//! canonical encoder.
//!
//! The decoder never allocates more than the input can justify: every string
//! length is checked against the bytes left before it is used, nesting is
//! capped, and integers must fit an `i64`. Each decoded [`Value`] carries the
//! exact bytes it was decoded from, so a torrent's info hash is taken from the
//! `info` dictionary as received, never from a re-encoding.

use std::collections::BTreeMap;
use thiserror::Error;

/// Limits applied while decoding untrusted input.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries.
    pub max_depth: usize,
    /// Most items in all lists and dictionaries together.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_items: 1 << 20,
        }
    }
}

/// Why bytes are not valid bencode.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("input ends inside a {what} at byte {at}")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// Offset where more input was needed.
        at: usize,
    },
    /// A byte that cannot start or continue the value being decoded.
    #[error("unexpected byte 0x{byte:02x} in {what} at byte {at}")]
    Unexpected {
        /// The offending byte.
        byte: u8,
        /// What was being decoded.
        what: &'static str,
        /// Its offset.
        at: usize,
    },
    /// An integer with leading zeros, `-0`, no digits, or out of `i64` range.
    #[error("invalid integer at byte {at}")]
    BadInteger {
        /// Offset of the integer.
        at: usize,
    },
    /// A string whose declared length runs past the end of the input.
    #[error("string at byte {at} declares {len} bytes, only {left} remain")]
    StringTooLong {
        /// Offset of the string.
        at: usize,
        /// Declared length.
        len: u64,
        /// Bytes left in the input.
        left: usize,
    },
    /// Lists and dictionaries nested deeper than the limit.
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    /// More items than the limit.
    #[error("more than {0} list or dictionary items")]
    TooManyItems(usize),
    /// A dictionary key that is not a string, or that appears twice.
    #[error("bad dictionary key at byte {at}: {why}")]
    BadKey {
        /// Offset of the key.
        at: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Bytes left over after the top-level value.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

/// A decoded value, borrowing from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i...e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(&'a [u8]),
    /// `l...e`
    List(Vec<Node<'a>>),
    /// `d...e`, entries in input order.
    Dict(Dict<'a>),
}

/// A decoded value together with the exact bytes it was decoded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node<'a> {
    /// The value.
    pub value: Value<'a>,
    /// Its raw encoding, as received.
    pub raw: &'a [u8],
}

/// A decoded dictionary: entries in input order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Dict<'a> {
    /// Key and value pairs as they appeared.
    pub entries: Vec<(&'a [u8], Node<'a>)>,
}

impl<'a> Dict<'a> {
    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Node<'a>> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The integer under `key`, if present and an integer.
    pub fn get_int(&self, key: &[u8]) -> Option<i64> {
        self.get(key).and_then(Node::as_int)
    }

    /// The byte string under `key`, if present and a string.
    pub fn get_bytes(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.get(key).and_then(Node::as_bytes)
    }

    /// The UTF-8 string under `key`, if present and valid UTF-8.
    pub fn get_str(&self, key: &[u8]) -> Option<&'a str> {
        self.get_bytes(key)
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list under `key`.
    pub fn get_list(&self, key: &[u8]) -> Option<&[Node<'a>]> {
        self.get(key).and_then(Node::as_list)
    }

    /// The dictionary under `key`.
    pub fn get_dict(&self, key: &[u8]) -> Option<&Dict<'a>> {
        self.get(key).and_then(Node::as_dict)
    }
}

impl<'a> Node<'a> {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The string as UTF-8, if this is a valid UTF-8 string.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list items, if this is a list.
    pub fn as_list(&self) -> Option<&[Node<'a>]> {
        match &self.value {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match &self.value {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Converts to an owned value (for editing and re-encoding).
    pub fn to_owned_value(&self) -> OwnedValue {
        match &self.value {
            Value::Int(i) => OwnedValue::Int(*i),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Value::List(l) => OwnedValue::List(l.iter().map(Node::to_owned_value).collect()),
            Value::Dict(d) => {
                // Inserted, not collected: collect() would sort first, one more copy
                // of the sort code in the wasm (BENCHMARKS.md row 7).
                let mut dict = BTreeMap::new();
                dict.extend(
                    d.entries
                        .iter()
                        .map(|(k, v)| (k.to_vec(), v.to_owned_value())),
                );
                OwnedValue::Dict(dict)
            }
        }
    }
}

/// Decodes exactly one value that must span the whole input.
pub fn decode(input: &[u8]) -> Result<Node<'_>, DecodeError> {
    decode_with(input, Limits::default())
}

/// [`decode`] with explicit limits.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Node<'_>, DecodeError> {
    let (node, used) = decode_prefix_with(input, limits)?;
    if used != input.len() {
        return Err(DecodeError::Trailing(input.len() - used));
    }
    Ok(node)
}

/// Decodes one value from the start of the input and returns it with the
/// number of bytes it took (ut_metadata messages carry raw data after a
/// bencoded dictionary).
pub fn decode_prefix(input: &[u8]) -> Result<(Node<'_>, usize), DecodeError> {
    decode_prefix_with(input, Limits::default())
}

/// [`decode_prefix`] with explicit limits.
pub fn decode_prefix_with(input: &[u8], limits: Limits) -> Result<(Node<'_>, usize), DecodeError> {
    let mut d = Decoder {
        input,
        pos: 0,
        limits,
        items: 0,
    };
    let node = d.value(0)?;
    Ok((node, d.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
    items: usize,
}

impl<'a> Decoder<'a> {
    fn peek(&self, what: &'static str) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated { what, at: self.pos })
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, DecodeError> {
        let start = self.pos;
        let value = match self.peek("value")? {
            b'i' => Value::Int(self.int()?),
            b'0'..=b'9' => Value::Bytes(self.bytes()?),
            b'l' => {
                self.enter(depth)?;
                let mut items = Vec::new();
                while self.peek("list")? != b'e' {
                    self.count_item()?;
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Value::List(items)
            }
            b'd' => {
                self.enter(depth)?;
                let mut entries: Vec<(&'a [u8], Node<'a>)> = Vec::new();
                while self.peek("dictionary")? != b'e' {
                    self.count_item()?;
                    let key_at = self.pos;
                    if !self.peek("dictionary key")?.is_ascii_digit() {
                        return Err(DecodeError::BadKey {
                            at: key_at,
                            why: "key is not a string",
                        });
                    }
                    let key = self.bytes()?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(DecodeError::BadKey {
                            at: key_at,
                            why: "duplicate key",
                        });
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                }
                self.pos += 1;
                Value::Dict(Dict { entries })
            }
            byte => {
                return Err(DecodeError::Unexpected {
                    byte,
                    what: "value",
                    at: self.pos,
                })
            }
        };
        Ok(Node {
            value,
            raw: &self.input[start..self.pos],
        })
    }

    fn enter(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth >= self.limits.max_depth {
            return Err(DecodeError::TooDeep(self.limits.max_depth));
        }
        self.pos += 1;
        Ok(())
    }

    fn count_item(&mut self) -> Result<(), DecodeError> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(DecodeError::TooManyItems(self.limits.max_items));
        }
        Ok(())
    }

    fn int(&mut self) -> Result<i64, DecodeError> {
        let at = self.pos;
        self.pos += 1; // 'i'
        let rest = &self.input[self.pos..];
        let end = rest
            .iter()
            .take(21)
            .position(|&b| b == b'e')
            .ok_or(if rest.len() < 21 {
                DecodeError::Truncated {
                    what: "integer",
                    at: self.input.len(),
                }
            } else {
                DecodeError::BadInteger { at }
            })?;
        let digits = &rest[..end];
        let (neg, body) = match digits.split_first() {
            Some((b'-', body)) => (true, body),
            _ => (false, digits),
        };
        let leading_zero = body.len() > 1 && body[0] == b'0';
        let negative_zero = neg && body == b"0";
        let digits_only = !body.is_empty() && body.iter().all(u8::is_ascii_digit);
        if !digits_only || leading_zero || negative_zero {
            return Err(DecodeError::BadInteger { at });
        }
        // Digits only, so the text is ASCII; parse handles the range check.
        let text = std::str::from_utf8(digits).map_err(|_| DecodeError::BadInteger { at })?;
        let n = text
            .parse::<i64>()
            .map_err(|_| DecodeError::BadInteger { at })?;
        self.pos += end + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let mut len: u64 = 0;
        let mut digits = 0;
        loop {
            let b = self.peek("string length")?;
            match b {
                b'0'..=b'9' => {
                    if digits > 0 && len == 0 {
                        return Err(DecodeError::Unexpected {
                            byte: b,
                            what: "string length (leading zero)",
                            at: self.pos,
                        });
                    }
                    len = len * 10 + (b - b'0') as u64;
                    digits += 1;
                    if digits > 15 {
                        return Err(DecodeError::StringTooLong {
                            at,
                            len,
                            left: self.input.len() - self.pos,
                        });
                    }
                    self.pos += 1;
                }
                b':' => {
                    self.pos += 1;
                    break;
                }
                byte => {
                    return Err(DecodeError::Unexpected {
                        byte,
                        what: "string length",
                        at: self.pos,
                    })
                }
            }
        }
        let left = self.input.len() - self.pos;
        if len > left as u64 {
            return Err(DecodeError::StringTooLong { at, len, left });
        }
        let s = &self.input[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }
}

/// An owned value for building and encoding. Dictionaries are `BTreeMap`s, so
/// encoding is canonical (keys sorted as raw bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedValue {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<OwnedValue>),
    /// A dictionary, sorted by key.
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
    /// Bytes that are already bencoded, spliced in as they are (used to keep a
    /// torrent's `info` dictionary byte for byte).
    Raw(Vec<u8>),
}

impl OwnedValue {
    /// A byte string from anything byte-like.
    pub fn bytes(b: impl AsRef<[u8]>) -> Self {
        OwnedValue::Bytes(b.as_ref().to_vec())
    }

    /// An empty dictionary.
    pub fn dict() -> Self {
        OwnedValue::Dict(BTreeMap::new())
    }

    /// Inserts into a dictionary (no effect on other kinds); returns self for chaining.
    pub fn with(mut self, key: &str, value: OwnedValue) -> Self {
        if let OwnedValue::Dict(d) = &mut self {
            d.insert(key.as_bytes().to_vec(), value);
        }
        self
    }

    /// Encodes canonically.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            OwnedValue::Bytes(b) => encode_bytes(b, out),
            OwnedValue::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            OwnedValue::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            OwnedValue::Raw(r) => out.extend_from_slice(r),
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn raw_spans_are_kept_for_nested_values() {
        let input = b"d4:infod6:lengthi5e4:name1:ae3:zzzi1ee";
        let node = decode(input).unwrap();
        let info = node.as_dict().unwrap().get(b"info").unwrap();
        assert_eq!(info.raw, b"d6:lengthi5e4:name1:ae");
        assert_eq!(info.as_dict().unwrap().get_int(b"length"), Some(5));
    }

    #[test]
    fn unsorted_keys_decode_and_keep_their_bytes() {
        // Real torrents sometimes have unsorted keys; the raw span must not change.
        let input = b"d1:bi1e1:ai2ee";
        let node = decode(input).unwrap();
        assert_eq!(node.raw, input);
        assert_eq!(node.to_owned_value().encode(), b"d1:ai2e1:bi1ee");
    }

    #[test]
    fn malformed_input_names_the_problem() {
        assert_eq!(decode(b"i01e"), Err(DecodeError::BadInteger { at: 0 }));
        assert_eq!(decode(b"i-0e"), Err(DecodeError::BadInteger { at: 0 }));
        assert_eq!(decode(b"ie"), Err(DecodeError::BadInteger { at: 0 }));
        assert_eq!(
            decode(b"i99999999999999999999e"),
            Err(DecodeError::BadInteger { at: 0 })
        );
        assert!(matches!(
            decode(b"5:abc"),
            Err(DecodeError::StringTooLong {
                len: 5,
                left: 3,
                ..
            })
        ));
        assert!(matches!(decode(b"l"), Err(DecodeError::Truncated { .. })));
        assert!(matches!(
            decode(b"di1ei2ee"),
            Err(DecodeError::BadKey { .. })
        ));
        assert!(matches!(
            decode(b"d1:ai1e1:ai2ee"),
            Err(DecodeError::BadKey {
                why: "duplicate key",
                ..
            })
        ));
        assert_eq!(decode(b"i1ei2e"), Err(DecodeError::Trailing(3)));
        assert!(matches!(
            decode(b"x"),
            Err(DecodeError::Unexpected { byte: b'x', .. })
        ));
        assert!(matches!(
            decode(b"99999999999999999999:"),
            Err(DecodeError::StringTooLong { .. })
        ));
    }

    #[test]
    fn depth_and_item_limits_hold() {
        let deep = [vec![b'l'; 100], vec![b'e'; 100]].concat();
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep(64)));
        let limits = Limits {
            max_depth: 4,
            max_items: 3,
        };
        assert_eq!(
            decode_with(b"li1ei2ei3ei4ee", limits),
            Err(DecodeError::TooManyItems(3))
        );
    }

    #[test]
    fn prefix_decoding_reports_bytes_used() {
        let (node, used) = decode_prefix(b"d8:msg_typei1e5:piecei0eeRAWDATA").unwrap();
        assert_eq!(used, 25);
        assert_eq!(node.as_dict().unwrap().get_int(b"piece"), Some(0));
    }

    fn arb_value() -> impl Strategy<Value = OwnedValue> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(OwnedValue::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(OwnedValue::Bytes),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(OwnedValue::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(v in arb_value()) {
            let bytes = v.encode();
            let node = decode(&bytes).unwrap();
            prop_assert_eq!(node.raw, &bytes[..]);
            prop_assert_eq!(node.to_owned_value(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
