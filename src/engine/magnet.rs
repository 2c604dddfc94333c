//! Magnet links: parsing and writing `magnet:?xt=urn:btih:...` URIs.
//!
//! Understood parameters: `xt` (a v1 `urn:btih:` info hash in hex or
//! base32; other `xt`s such as v2 `urn:btmh:` are skipped), `dn`, `tr`, `ws`
//! and `so` (BEP 53 file selection), each also in the numbered `tr.1` form.
//! Unknown parameters are ignored. Values are percent-decoded after the
//! query is split on `&` and `=`, so `%26` stays inside its value; `+` means
//! a space in `dn` only (trackers are URLs, where `+` is a plus). The writer
//! percent-encodes everything but RFC 3986 unreserved characters, so what it
//! writes parses back to the same link.

use std::fmt;
use std::ops::RangeInclusive;

use thiserror::Error;

use super::ids::InfoHash;
use super::metainfo::Metainfo;

/// Why a string is not a usable magnet link.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MagnetError {
    /// The string does not start with `magnet:?`.
    #[error("not a magnet link (it must start with `magnet:?`)")]
    NotAMagnet,
    /// A `%` not followed by two hexadecimal digits.
    #[error("bad percent escape in parameter `{0}`")]
    BadEscape(String),
    /// A parameter that does not decode to UTF-8.
    #[error("parameter `{0}` is not UTF-8 once decoded")]
    NotUtf8(String),
    /// No `xt=urn:btih:` parameter.
    #[error("no `xt=urn:btih:` info hash")]
    MissingInfoHash,
    /// A `urn:btih:` that is neither 40 hex nor 32 base32 characters.
    #[error("info hash {0:?} is neither 40 hex nor 32 base32 characters")]
    BadInfoHash(String),
    /// Two `urn:btih:` parameters with different hashes.
    #[error("the link names two different info hashes")]
    ConflictingInfoHashes,
    /// An `so` value that is not a list of indices and ranges like `0,2,4-6`.
    #[error("bad file selection {0:?} (expected e.g. `0,2,4-6`)")]
    BadSelection(String),
}

/// A parsed magnet link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    /// The v1 info hash (`xt=urn:btih:`).
    pub info_hash: InfoHash,
    /// `dn`: a name to show until the metadata arrives.
    pub display_name: Option<String>,
    /// `tr`: tracker URLs, each once, in order.
    pub trackers: Vec<String>,
    /// `ws`: BEP 19 web seed URLs, each once, in order.
    pub web_seeds: Vec<String>,
    /// `so` (BEP 53): indices of the files to download, as inclusive ranges;
    /// empty means every file.
    pub select_only: Vec<RangeInclusive<u32>>,
}

impl Magnet {
    /// A link with only an info hash.
    pub fn new(info_hash: InfoHash) -> Self {
        Magnet {
            info_hash,
            display_name: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            select_only: Vec::new(),
        }
    }

    /// Parses a magnet URI.
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        let uri = uri.trim();
        let scheme = uri.get(..8).ok_or(MagnetError::NotAMagnet)?;
        if !scheme.eq_ignore_ascii_case("magnet:?") {
            return Err(MagnetError::NotAMagnet);
        }
        let query = &uri[8..];
        // A fragment is not part of the query.
        let query = query.split_once('#').map_or(query, |(q, _)| q);

        let mut info_hash = None;
        let mut display_name = None;
        let mut trackers = Vec::new();
        let mut web_seeds = Vec::new();
        let mut select_only = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(raw_key, raw_key, false)?;
            // `tr.1`, `xt.2`: the numbered forms mean the same as the plain ones.
            let name = key.split_once('.').map_or(key.as_str(), |(k, _)| k);
            match name {
                "xt" => {
                    let value = decode(raw_value, &key, false)?;
                    let Some(hash) = strip_prefix_ignore_case(&value, "urn:btih:") else {
                        continue;
                    };
                    let hash = parse_btih(hash)?;
                    if info_hash.is_some_and(|h| h != hash) {
                        return Err(MagnetError::ConflictingInfoHashes);
                    }
                    info_hash = Some(hash);
                }
                "dn" => {
                    let value = decode(raw_value, &key, true)?;
                    display_name.get_or_insert(value);
                }
                "tr" => push_unique(&mut trackers, decode(raw_value, &key, false)?),
                "ws" => push_unique(&mut web_seeds, decode(raw_value, &key, false)?),
                "so" => {
                    let value = decode(raw_value, &key, false)?;
                    select_only.extend(parse_selection(&value)?);
                }
                _ => {}
            }
        }
        Ok(Magnet {
            info_hash: info_hash.ok_or(MagnetError::MissingInfoHash)?,
            display_name,
            trackers,
            web_seeds,
            select_only,
        })
    }

    /// Writes the link: `xt` (hex), then `dn`, `tr`, `ws` and `so` when set.
    pub fn to_uri(&self) -> String {
        let mut out = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        if let Some(dn) = &self.display_name {
            out.push_str("&dn=");
            encode_into(dn, &mut out);
        }
        for (key, urls) in [("tr", &self.trackers), ("ws", &self.web_seeds)] {
            for url in urls {
                out.push('&');
                out.push_str(key);
                out.push('=');
                encode_into(url, &mut out);
            }
        }
        if !self.select_only.is_empty() {
            out.push_str("&so=");
            let items: Vec<String> = self
                .select_only
                .iter()
                .map(|r| {
                    if r.start() == r.end() {
                        r.start().to_string()
                    } else {
                        format!("{}-{}", r.start(), r.end())
                    }
                })
                .collect();
            out.push_str(&items.join(","));
        }
        out
    }

    /// Whether file `index` is selected (every file is when `so` is absent).
    pub fn selects(&self, index: u32) -> bool {
        self.select_only.is_empty() || self.select_only.iter().any(|r| r.contains(&index))
    }
}

impl fmt::Display for Magnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl std::str::FromStr for Magnet {
    type Err = MagnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Magnet::parse(s)
    }
}

impl Metainfo {
    /// The magnet link for this torrent: info hash, name, trackers and web seeds.
    pub fn magnet(&self) -> Magnet {
        Magnet {
            info_hash: self.info_hash,
            display_name: Some(self.info.name.clone()),
            trackers: self.trackers(),
            web_seeds: self.url_list.clone(),
            select_only: Vec::new(),
        }
    }
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !value.is_empty() && !list.contains(&value) {
        list.push(value);
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_btih(s: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(s.to_owned());
    match s.len() {
        40 => InfoHash::from_hex(s).ok_or_else(bad),
        32 => base32_20(s).map(InfoHash).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// RFC 4648 base32 (either case, no padding) of exactly 20 bytes.
fn base32_20(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0;
    let mut n = 0;
    for c in s.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (n == 20 && bits == 0).then_some(out)
}

/// Parses a BEP 53 selection such as `0,2,4-6`.
fn parse_selection(s: &str) -> Result<Vec<RangeInclusive<u32>>, MagnetError> {
    let bad = || MagnetError::BadSelection(s.to_owned());
    let number = |t: &str| {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<u32>().map_err(|_| bad())
    };
    s.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (a, b) = match item.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let a = number(item)?;
                    (a, a)
                }
            };
            if a > b {
                return Err(bad());
            }
            Ok(a..=b)
        })
        .collect()
}

/// Percent-decodes one query component to UTF-8; `plus_is_space` turns `+`
/// into a space (form encoding, which `dn` often uses).
fn decode(raw: &str, param: &str, plus_is_space: bool) -> Result<String, MagnetError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(MagnetError::BadEscape(param.to_owned())),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| MagnetError::NotUtf8(param.to_owned()))
}

/// Appends `s` percent-encoded: everything but RFC 3986 unreserved
/// characters becomes `%XX` (UTF-8 bytes, upper-case hex).
pub(crate) fn encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "d2474e86c95b19b8bcfdb92bc12c9d44667cfa36";

    #[test]
    fn hex_and_base32_hashes_parse_to_the_same_info_hash() {
        let hex = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}")).unwrap();
        let upper = Magnet::parse(&format!("MAGNET:?XT=URN:BTIH:{}", HEX.to_uppercase()));
        // Parameter names are case-sensitive: `XT` is not `xt`.
        assert_eq!(upper, Err(MagnetError::MissingInfoHash));
        let b32 = Magnet::parse("magnet:?xt=urn:btih:2JDU5BWJLMM3RPH5XEV4CLE5IRTHZ6RW").unwrap();
        let b32_lower =
            Magnet::parse("magnet:?xt=urn:BTIH:2jdu5bwjlmm3rph5xev4cle5irthz6rw").unwrap();
        assert_eq!(hex.info_hash.to_hex(), HEX);
        assert_eq!(b32.info_hash, hex.info_hash);
        assert_eq!(b32_lower.info_hash, hex.info_hash);
    }

    #[test]
    fn parameters_are_percent_decoded_after_splitting() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Tom+%26+Jerry%20%C3%A9\
             &tr=wss%3A%2F%2Ftracker.example%2Fannounce%3Fa%3D1%26b%3D2\
             &tr.1=udp://t.example:80&ws=https://seed.example/a+b&x.pe=1.2.3.4:5"
        ))
        .unwrap();
        assert_eq!(m.display_name.as_deref(), Some("Tom & Jerry é"));
        assert_eq!(
            m.trackers,
            vec![
                "wss://tracker.example/announce?a=1&b=2".to_owned(),
                "udp://t.example:80".to_owned()
            ]
        );
        assert_eq!(m.web_seeds, vec!["https://seed.example/a+b".to_owned()]);
    }

    #[test]
    fn repeated_trackers_are_kept_once_and_v2_hashes_skipped() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btmh:1220abcd&xt=urn:btih:{HEX}&tr=a&tr=b&tr.2=a&tr="
        ))
        .unwrap();
        assert_eq!(m.trackers, vec!["a".to_owned(), "b".to_owned()]);
        assert!(m.display_name.is_none());
    }

    #[test]
    fn bad_links_are_refused_with_a_reason() {
        assert_eq!(Magnet::parse("http://x"), Err(MagnetError::NotAMagnet));
        assert_eq!(Magnet::parse("magnet:"), Err(MagnetError::NotAMagnet));
        assert_eq!(
            Magnet::parse("magnet:?dn=x"),
            Err(MagnetError::MissingInfoHash)
        );
        assert_eq!(
            Magnet::parse("magnet:?xt=urn:btih:abc"),
            Err(MagnetError::BadInfoHash("abc".to_owned()))
        );
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btih:2JDU5BWJLMM3RPH5XEV4CLE5IRTHZ6R1"),
            Err(MagnetError::BadInfoHash(_))
        ));
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%4")),
            Err(MagnetError::BadEscape("dn".to_owned()))
        );
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%zz")),
            Err(MagnetError::BadEscape("dn".to_owned()))
        );
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%FF")),
            Err(MagnetError::NotUtf8("dn".to_owned()))
        );
        assert_eq!(
            Magnet::parse(&format!(
                "magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{}",
                "0".repeat(40)
            )),
            Err(MagnetError::ConflictingInfoHashes)
        );
        for so in ["a", "3-1", "1-", "-1", "1-2-3", "99999999999"] {
            assert_eq!(
                Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&so={so}")),
                Err(MagnetError::BadSelection(so.to_owned())),
                "{so}"
            );
        }
    }

    #[test]
    fn file_selection_follows_bep_53() {
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&so=0,2,4-6")).unwrap();
        assert_eq!(m.select_only, vec![0..=0, 2..=2, 4..=6]);
        assert!(m.selects(5) && m.selects(2) && !m.selects(3) && !m.selects(7));
        assert!(Magnet::new(m.info_hash).selects(1_000));
        assert!(m.to_uri().ends_with("&so=0,2,4-6"));
    }

    #[test]
    fn written_links_escape_reserved_characters() {
        let mut m = Magnet::new(InfoHash::from_hex(HEX).unwrap());
        m.display_name = Some("a b&c+d/é".to_owned());
        m.trackers = vec!["wss://t.example/x?y=1".to_owned()];
        assert_eq!(
            m.to_string(),
            format!(
                "magnet:?xt=urn:btih:{HEX}&dn=a%20b%26c%2Bd%2F%C3%A9\
                 &tr=wss%3A%2F%2Ft.example%2Fx%3Fy%3D1"
            )
        );
    }

    fn unique(v: Vec<String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in v {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn written_links_parse_back_to_themselves(
            hash in any::<[u8; 20]>(),
            dn in proptest::option::of(any::<String>()),
            trackers in proptest::collection::vec(".+", 0..4),
            web_seeds in proptest::collection::vec(".+", 0..3),
            so in proptest::collection::vec((any::<u32>(), 0u32..5), 0..4),
        ) {
            let m = Magnet {
                info_hash: InfoHash(hash),
                display_name: dn,
                trackers: unique(trackers),
                web_seeds: unique(web_seeds),
                select_only: so.into_iter().map(|(a, n)| a..=a.saturating_add(n)).collect(),
            };
            let uri = m.to_uri();
            prop_assert_eq!(Magnet::parse(&uri), Ok(m));
        }

        #[test]
        fn arbitrary_input_never_panics(s in "magnet:\\?.{0,80}") {
            let _ = Magnet::parse(&s);
        }
    }
}
