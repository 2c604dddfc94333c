//! Web seeds (BEP 19): a peer that has every piece, reached over HTTP range
//! requests that the glue makes; here the URL mapping and the fetch state.
//!
//! As in WebTorrent's `lib/webconn.js`, the picker sees a web seed as one
//! more peer with every piece: it needs no special case. The session asks
//! the picker for about a piece's worth of blocks at a time, lengthens it
//! with the open pieces that follow ([`Picker::pick_following`]) and turns
//! each run of consecutive blocks into one [`WebSeedFetch`] of up to
//! [`MAX_FETCH_LEN`] bytes: one HTTP range per file it touches, however
//! many pieces it holds. Every piece of it is still verified on its own.
//!
//! [`Picker::pick_following`]: crate::engine::picker::Picker::pick_following

use std::borrow::Cow;
use std::time::Duration;

use crate::engine::api::{ConnId, UrlRange, WebSeedFetch};
use crate::engine::ids::{InfoHash, PeerId};
use crate::engine::lengths::{BlockInfo, Lengths, PieceIndex};
use crate::engine::metainfo::Info;
use crate::engine::picker::PeerKey;
use crate::engine::sort;
use crate::engine::time::Instant;

/// Fetches in flight towards one web seed at a time, at least.
pub const MAX_FETCHES: usize = 2;
/// Most fetches in flight towards one web seed: browsers open at most six
/// HTTP/1.1 connections to a host.
pub const MAX_FETCH_SLOTS: usize = 6;
/// Bytes a web seed should have in flight to hide the per-request latency
/// (a fetch's answer waits behind the receiver's other work before the next
/// one starts): while fewer are, and a connection is free, another fetch
/// starts, beyond [`MAX_FETCHES`].
pub const IN_FLIGHT_TARGET: u64 = 4 * 1024 * 1024;
/// Largest single fetch: one HTTP range of consecutive blocks, across
/// piece boundaries (a run of whole pieces, or part of a larger piece).
/// Each fetch costs the receiver's main thread about the same whatever its
/// size, so fetches are as large as this allows.
pub const MAX_FETCH_LEN: u32 = 4 * 1024 * 1024;
/// Most pieces in one run (one fetch): with pieces of 512 KiB and more a
/// run reaches [`MAX_FETCH_LEN`]; smaller pieces make shorter runs, so a
/// small bundle is not taken from the server in a few large requests
/// before the swarm can share it.
pub const MAX_RUN_PIECES: usize = 8;
/// Consecutive failures after which a web seed is dropped.
pub const MAX_FAILURES: u32 = 5;
/// First wait after a failure; doubles with each consecutive one.
pub const RETRY_BASE: Duration = Duration::from_secs(5);

/// One fetch in flight: consecutive blocks, possibly of several pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// Piece of its first block.
    pub piece: PieceIndex,
    /// Offset of its first block in that piece.
    pub offset: u32,
    /// Bytes.
    pub len: u32,
    /// The picker's blocks it covers, in order.
    pub blocks: Vec<BlockInfo>,
}

impl Fetch {
    /// Its first byte in the concatenated files.
    pub fn start(&self, lengths: &Lengths) -> u64 {
        lengths.piece_offset(self.piece) + u64::from(self.offset)
    }
}

/// One web seed of a bundle.
#[derive(Debug)]
pub struct WebSeed {
    /// Its connection id.
    pub conn: ConnId,
    /// The picker's name for it.
    pub key: PeerKey,
    /// Base URL as given in `url-list` or `ws=`.
    pub url: String,
    /// Fetches in flight.
    pub fetches: Vec<Fetch>,
    /// Consecutive failures.
    pub failures: u32,
    /// No fetch before this instant (after a failure).
    pub retry_at: Option<Instant>,
}

impl WebSeed {
    /// A web seed for `url`.
    pub fn new(conn: ConnId, key: PeerKey, url: String) -> Self {
        WebSeed {
            conn,
            key,
            url,
            fetches: Vec::new(),
            failures: 0,
            retry_at: None,
        }
    }

    /// Bytes of the fetches in flight.
    pub fn in_flight(&self) -> u64 {
        self.fetches.iter().map(|f| u64::from(f.len)).sum()
    }

    /// Whether one more fetch fits: [`MAX_FETCHES`] always, more (up to
    /// [`MAX_FETCH_SLOTS`]) while fewer than [`IN_FLIGHT_TARGET`] bytes are
    /// in flight.
    fn has_room(&self) -> bool {
        let n = self.fetches.len();
        n < MAX_FETCHES || (n < MAX_FETCH_SLOTS && self.in_flight() < IN_FLIGHT_TARGET)
    }

    /// Whether another fetch may start at `now`.
    pub fn can_fetch(&self, now: Instant) -> bool {
        self.has_room() && self.retry_at.is_none_or(|t| t <= now)
    }

    /// Groups picked blocks into fetches (runs of consecutive blocks, across
    /// piece boundaries, at most [`MAX_FETCH_LEN`] each), records as many as
    /// there is room for (see [`can_fetch`](Self::can_fetch)) and returns
    /// what the glue must fetch, with the blocks that did not fit (to give
    /// back to the picker).
    pub fn start_fetches(
        &mut self,
        info_hash: InfoHash,
        info: &Info,
        mut blocks: Vec<BlockInfo>,
    ) -> (Vec<WebSeedFetch>, Vec<BlockInfo>) {
        let lengths = info.lengths;
        sort::sort_by(&mut blocks, Ord::cmp);
        let mut runs: Vec<Fetch> = Vec::new();
        for b in blocks {
            let at = lengths.piece_offset(b.piece) + u64::from(b.offset);
            match runs.last_mut() {
                Some(run)
                    if run.start(&lengths) + u64::from(run.len) == at
                        && run.len + b.len <= MAX_FETCH_LEN =>
                {
                    run.len += b.len;
                    run.blocks.push(b);
                }
                _ => runs.push(Fetch {
                    piece: b.piece,
                    offset: b.offset,
                    len: b.len,
                    blocks: vec![b],
                }),
            }
        }
        let mut out = Vec::with_capacity(runs.len());
        let mut leftover = Vec::new();
        for run in runs {
            if !self.has_room() {
                leftover.extend(run.blocks);
                continue;
            }
            out.push(WebSeedFetch {
                conn: self.conn,
                info_hash,
                piece: run.piece.get(),
                offset: run.offset,
                len: run.len,
                ranges: url_ranges(info, &self.url, run.start(&lengths), u64::from(run.len)),
            });
            self.fetches.push(run);
        }
        (out, leftover)
    }

    /// Takes the fetch at `piece`/`offset` out of the in-flight list.
    pub fn take_fetch(&mut self, piece: u32, offset: u32) -> Option<Fetch> {
        let i = self
            .fetches
            .iter()
            .position(|f| f.piece.get() == piece && f.offset == offset)?;
        Some(self.fetches.swap_remove(i))
    }

    /// Abandons every fetch holding one of `blocks` (timed out); returns
    /// their other blocks, still requested, to release.
    pub fn abandon_fetches_with(&mut self, blocks: &[BlockInfo]) -> Vec<BlockInfo> {
        let mut rest = Vec::new();
        self.fetches.retain(|f| {
            let hit = f.blocks.iter().any(|b| blocks.contains(b));
            if hit {
                rest.extend(f.blocks.iter().filter(|b| !blocks.contains(b)));
            }
            !hit
        });
        rest
    }

    /// Counts a failure; returns whether the web seed should be dropped.
    /// Fetches that were in flight together fail together: while a backoff
    /// runs, further failures do not count again.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        if self.retry_at.is_some_and(|t| t > now) {
            return false;
        }
        self.failures += 1;
        let delay = RETRY_BASE.saturating_mul(1 << (self.failures - 1).min(6));
        self.retry_at = Some(now + delay);
        self.failures >= MAX_FAILURES
    }

    /// A fetch succeeded.
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }
}

/// Which downloaders take which pieces from the web seed, without talking:
/// rendezvous hashing over the peer ids of the downloaders we are connected
/// to (us included). Each piece has one owner in a set; every downloader
/// that sees the same set computes the same owners, so downloaders starting
/// together fetch different pieces from the server and trade the rest,
/// instead of racing for the same pieces while their have messages wait
/// behind piece data. With no other downloader we own every piece.
#[derive(Clone, Debug)]
pub struct Owners {
    ours: u64,
    others: Vec<u64>,
}

impl Owners {
    /// The owners among `us` and the downloading peers `others`.
    pub fn new(us: &PeerId, others: impl IntoIterator<Item = PeerId>) -> Self {
        Owners {
            ours: id_hash(us),
            others: others.into_iter().map(|id| id_hash(&id)).collect(),
        }
    }

    /// Whether we own `piece`: our score is the highest (ties, only between
    /// equal ids, go to us).
    pub fn is_ours(&self, piece: u32) -> bool {
        let p = u64::from(piece);
        let ours = mix(self.ours ^ p);
        self.others.iter().all(|&o| mix(o ^ p) <= ours)
    }
}

/// FNV-1a of a peer id.
fn id_hash(id: &PeerId) -> u64 {
    id.as_bytes().iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A 64-bit finalizer (SplitMix64's): every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The URL of file `path` (its components) under web seed `base` (BEP 19):
/// a single-file torrent's URL is the file itself unless it ends in `/`
/// (then the name is appended); a multi-file torrent's files live under
/// `base/<name>/<path...>`. Components are percent-encoded.
pub fn file_url(base: &str, name: &str, path: &[String], multi_file: bool) -> String {
    if !multi_file {
        return if base.ends_with('/') {
            format!("{base}{}", percent_encode(name))
        } else {
            base.to_owned()
        };
    }
    let mut url = String::with_capacity(base.len() + 64);
    url.push_str(base);
    if !url.ends_with('/') {
        url.push('/');
    }
    url.push_str(&percent_encode(name));
    for component in path {
        url.push('/');
        url.push_str(&percent_encode(component));
    }
    url
}

/// The HTTP ranges holding bytes `[start, start + len)` of the concatenated
/// files, in order. Padding files (BEP 47) are left out: their bytes are
/// zeros that no server holds.
pub fn url_ranges(info: &Info, base: &str, start: u64, len: u64) -> Vec<UrlRange> {
    info.file_spans(start, len)
        .filter_map(|span| {
            let file = info.files.get(span.file_index)?;
            (!file.padding).then(|| UrlRange {
                url: file_url(base, &info.name, &file.path, info.multi_file),
                start: span.file_offset,
                end: span.file_offset + span.len,
            })
        })
        .collect()
}

/// Rebuilds the bytes of a fetch from what the glue returned (the ranges'
/// bytes concatenated), re-inserting padding zeros (borrowed as is when the
/// range has no padding). `None` if the length does not match.
pub fn assemble_fetch<'a>(
    info: &Info,
    start: u64,
    len: u64,
    fetched: &'a [u8],
) -> Option<Cow<'a, [u8]>> {
    let padded = info
        .file_spans(start, len)
        .any(|span| info.files.get(span.file_index).is_some_and(|f| f.padding));
    if !padded {
        return (fetched.len() as u64 == len).then_some(Cow::Borrowed(fetched));
    }
    let mut out = Vec::with_capacity(len as usize);
    let mut rest = fetched;
    for span in info.file_spans(start, len) {
        let padding = info.files.get(span.file_index).is_some_and(|f| f.padding);
        if padding {
            out.resize(out.len() + span.len as usize, 0);
        } else {
            if (rest.len() as u64) < span.len {
                return None;
            }
            let (head, tail) = rest.split_at(span.len as usize);
            out.extend_from_slice(head);
            rest = tail;
        }
    }
    (rest.is_empty() && out.len() as u64 == len).then_some(Cow::Owned(out))
}

/// Rebuilds the part of a fetch that an answer cut short delivered:
/// `fetched` is the ranges' bytes received before the failure,
/// concatenated; the result is the fetch's bytes from its start to the
/// first missing one, padding zeros re-inserted after ranges that came
/// whole (borrowed as is when the range has no padding).
pub fn assemble_prefix<'a>(info: &Info, start: u64, len: u64, fetched: &'a [u8]) -> Cow<'a, [u8]> {
    let padded = info
        .file_spans(start, len)
        .any(|span| info.files.get(span.file_index).is_some_and(|f| f.padding));
    if !padded {
        let n = fetched
            .len()
            .min(usize::try_from(len).unwrap_or(usize::MAX));
        return Cow::Borrowed(&fetched[..n]);
    }
    let mut out = Vec::with_capacity(fetched.len());
    let mut rest = fetched;
    for span in info.file_spans(start, len) {
        let padding = info.files.get(span.file_index).is_some_and(|f| f.padding);
        if padding {
            out.resize(out.len() + span.len as usize, 0);
            continue;
        }
        let n = rest.len().min(span.len as usize);
        let (head, tail) = rest.split_at(n);
        out.extend_from_slice(head);
        rest = tail;
        if (n as u64) < span.len {
            break;
        }
    }
    Cow::Owned(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters (the
/// magnet link encoder).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    crate::engine::magnet::encode_into(s, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> PeerId {
        PeerId([n; 20])
    }

    #[test]
    fn downloaders_seeing_the_same_set_split_the_pieces_between_them() {
        let ids: Vec<PeerId> = (1..=4).map(id).collect();
        let views: Vec<Owners> = ids
            .iter()
            .map(|me| Owners::new(me, ids.iter().filter(|o| *o != me).copied()))
            .collect();
        let mut shares = [0u32; 4];
        for p in 0..4000 {
            let owners: Vec<usize> = (0..4).filter(|&i| views[i].is_ours(p)).collect();
            assert_eq!(owners.len(), 1, "piece {p} has owners {owners:?}");
            shares[owners[0]] += 1;
        }
        for s in shares {
            assert!((850..=1150).contains(&s), "shares {shares:?}");
        }
    }

    #[test]
    fn a_downloader_alone_owns_every_piece() {
        let alone = Owners::new(&id(9), []);
        assert!((0..1000).all(|p| alone.is_ours(p)));
    }

    #[test]
    fn a_downloader_leaving_hands_its_pieces_to_the_others() {
        let (a, b, c) = (id(1), id(2), id(3));
        let before = Owners::new(&a, [b, c]);
        let after = Owners::new(&a, [b]);
        for p in 0..1000 {
            // Ours stay ours; some of c's become ours.
            assert!(!before.is_ours(p) || after.is_ours(p));
        }
        let gained = (0..1000)
            .filter(|&p| !before.is_ours(p) && after.is_ours(p))
            .count();
        assert!(gained > 100, "only {gained} pieces changed hands");
    }
    use crate::engine::bencode::OwnedValue;
    use crate::engine::lengths::BLOCK_SIZE;

    /// `dir/a` (10 bytes), a padding file up to 16 KiB, `dir/sub dir/b`
    /// (16,000 bytes): two pieces.
    fn padded_info() -> Info {
        let file = |path: &[&str], length: i64, pad: bool| {
            let mut f = OwnedValue::dict()
                .with("length", OwnedValue::Int(length))
                .with(
                    "path",
                    OwnedValue::List(path.iter().map(OwnedValue::bytes).collect()),
                );
            if pad {
                f = f.with("attr", OwnedValue::bytes("p"));
            }
            f
        };
        let info = OwnedValue::dict()
            .with("name", OwnedValue::bytes("dir"))
            .with("piece length", OwnedValue::Int(16384))
            .with("pieces", OwnedValue::Bytes(vec![0; 40]))
            .with(
                "files",
                OwnedValue::List(vec![
                    file(&["a"], 10, false),
                    file(&[".pad", "16374"], 16374, true),
                    file(&["sub dir", "b"], 16_000, false),
                ]),
            );
        Info::from_info_bytes(&info.encode()).unwrap().0
    }

    #[test]
    fn a_range_across_files_maps_to_one_range_per_file_without_padding() {
        let info = padded_info();
        let ranges = url_ranges(&info, "https://s/ws", 5, 16384);
        assert_eq!(
            ranges,
            vec![
                UrlRange {
                    url: "https://s/ws/dir/a".into(),
                    start: 5,
                    end: 10
                },
                UrlRange {
                    url: "https://s/ws/dir/sub%20dir/b".into(),
                    start: 0,
                    end: 5
                },
            ]
        );
    }

    #[test]
    fn fetched_bytes_get_their_padding_zeros_back() {
        let info = padded_info();
        // The two ranges' bytes, concatenated: a[5..10] then b[0..5].
        let fetched: Vec<u8> = (1..=10).collect();
        let whole = assemble_fetch(&info, 5, 16384, &fetched).unwrap();
        assert_eq!(whole.len(), 16384);
        assert_eq!(&whole[..5], &[1, 2, 3, 4, 5]);
        assert!(whole[5..16379].iter().all(|&b| b == 0));
        assert_eq!(&whole[16379..], &[6, 7, 8, 9, 10]);
        assert!(
            assemble_fetch(&info, 5, 16384, &fetched[..9]).is_none(),
            "short answer"
        );
        // No padding in the range: the bytes are used as they came.
        let plain = [7u8; 100];
        assert!(matches!(
            assemble_fetch(&info, 16384, 100, &plain),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn failures_back_off_and_those_in_one_window_count_once() {
        let at = |s: u64| Instant::from_duration(Duration::from_secs(s));
        let mut seed = WebSeed::new(ConnId(9), PeerKey(1), "https://s/ws".into());
        assert!(!seed.on_failure(at(0)));
        assert!(!seed.on_failure(at(1)), "same window: not counted");
        assert!(!seed.can_fetch(at(4)));
        assert!(seed.can_fetch(at(5)));
        let mut t = 5;
        for n in 2..MAX_FAILURES {
            assert!(!seed.on_failure(at(t)));
            t += 5 << (n - 1);
        }
        assert!(seed.on_failure(at(t)), "the fifth failure gives up");
        seed.on_success();
        assert!(seed.can_fetch(at(t)));
    }

    #[test]
    fn consecutive_blocks_across_pieces_become_one_fetch_with_a_range_per_file() {
        let info = padded_info();
        let l = info.lengths;
        let p0 = l.validate_piece(0).unwrap();
        let p1 = l.validate_piece(1).unwrap();
        let mut seed = WebSeed::new(ConnId(9), PeerKey(1), "https://s/ws".into());
        let blocks = vec![l.block(p1, 0).unwrap(), l.block(p0, 0).unwrap()];
        let (fetches, leftover) = seed.start_fetches(InfoHash([1; 20]), &info, blocks);
        assert!(leftover.is_empty());
        assert_eq!(fetches.len(), 1);
        let f = &fetches[0];
        assert_eq!((f.piece, f.offset, f.len), (0, 0, BLOCK_SIZE + 16_000));
        // The padding file between them is not asked for.
        let ranges: Vec<_> = f
            .ranges
            .iter()
            .map(|r| (r.url.as_str(), r.start, r.end))
            .collect();
        assert_eq!(
            ranges,
            vec![
                ("https://s/ws/dir/a", 0, 10),
                ("https://s/ws/dir/sub%20dir/b", 0, 16_000)
            ]
        );
        assert_eq!(seed.fetches[0].blocks.len(), 2);
        assert_eq!(seed.in_flight(), u64::from(f.len));
        assert!(seed.take_fetch(0, 0).is_some());
        assert!(seed.take_fetch(0, 0).is_none());
    }

    fn info_of(pieces: u32, piece_length: u32) -> Info {
        let total = u64::from(pieces) * u64::from(piece_length);
        crate::engine::create::TorrentBuilder::new("f.bin")
            .piece_length(piece_length)
            .file(vec!["f.bin".into()], total)
            .build(vec![[0; 20]; pieces as usize])
            .unwrap()
            .info
    }

    fn blocks_of(info: &Info, pieces: &[u32]) -> Vec<BlockInfo> {
        let l = info.lengths;
        pieces
            .iter()
            .filter_map(|&p| l.validate_piece(p))
            .flat_map(|p| (0..l.blocks_in_piece(p)).filter_map(move |i| l.block(p, i)))
            .collect()
    }

    #[test]
    fn fetches_hold_at_most_the_bound_and_split_at_gaps() {
        let info = info_of(10, 1024 * 1024);
        let mut seed = WebSeed::new(ConnId(9), PeerKey(1), "https://s/f.bin".into());
        let blocks = blocks_of(&info, &[0, 1, 2, 3, 4, 5, 7]);
        let (fetches, leftover) = seed.start_fetches(InfoHash([1; 20]), &info, blocks);
        let got: Vec<_> = fetches.iter().map(|f| (f.piece, f.offset, f.len)).collect();
        assert_eq!(got, vec![(0, 0, MAX_FETCH_LEN), (4, 0, 2 * 1024 * 1024)]);
        assert_eq!(fetches[0].ranges.len(), 1);
        assert_eq!(
            (fetches[0].ranges[0].start, fetches[0].ranges[0].end),
            (0, u64::from(MAX_FETCH_LEN))
        );
        // Two fetches and 6 MiB in flight: piece 7 waits, given back.
        assert_eq!(leftover, blocks_of(&info, &[7]));
        assert!(!seed.can_fetch(Instant::ZERO));
    }

    #[test]
    fn small_fetches_use_more_connections_until_the_target_is_in_flight() {
        let info = info_of(16, 16 * 1024);
        let mut seed = WebSeed::new(ConnId(9), PeerKey(1), "https://s/f.bin".into());
        // Every other piece: eight runs of one block.
        let blocks = blocks_of(&info, &[0, 2, 4, 6, 8, 10, 12, 14]);
        let (fetches, leftover) = seed.start_fetches(InfoHash([1; 20]), &info, blocks);
        assert_eq!(fetches.len(), MAX_FETCH_SLOTS, "one per connection");
        assert_eq!(leftover, blocks_of(&info, &[12, 14]));
        assert!(!seed.can_fetch(Instant::ZERO), "all connections are busy");
        assert!(seed.take_fetch(2, 0).is_some());
        assert!(seed.can_fetch(Instant::ZERO));
    }

    #[test]
    fn a_cut_short_answer_gives_the_bytes_up_to_the_first_missing_one() {
        let info = padded_info();
        // a[0..10] whole, then 3 bytes of b: the padding zeros are known.
        let fetched: Vec<u8> = (1..=13).collect();
        let got = assemble_prefix(&info, 0, 32_384, &fetched);
        assert_eq!(got.len(), 16_384 + 3);
        assert_eq!(&got[..10], &fetched[..10]);
        assert!(got[10..16_384].iter().all(|&b| b == 0));
        assert_eq!(&got[16_384..], &[11, 12, 13]);
        // Part of a: no padding after it.
        assert_eq!(
            &*assemble_prefix(&info, 0, 32_384, &fetched[..4]),
            &fetched[..4]
        );
        // No padding in the range: borrowed, never longer than the fetch.
        let plain = [7u8; 100];
        let got = assemble_prefix(&info, 16_384, 50, &plain);
        assert!(matches!(got, Cow::Borrowed(b) if b.len() == 50));
    }

    #[test]
    fn single_file_url_is_the_base_unless_it_ends_in_a_slash() {
        assert_eq!(
            file_url("https://s/x.bin", "x.bin", &["x.bin".into()], false),
            "https://s/x.bin"
        );
        assert_eq!(
            file_url("https://s/d/", "a b.bin", &["a b.bin".into()], false),
            "https://s/d/a%20b.bin"
        );
    }

    #[test]
    fn multi_file_urls_are_base_name_and_encoded_path() {
        let path = vec!["sub dir".to_string(), "é#?.txt".to_string()];
        assert_eq!(
            file_url("https://s/ws", "Bundle", &path, true),
            "https://s/ws/Bundle/sub%20dir/%C3%A9%23%3F.txt"
        );
        assert_eq!(
            file_url("https://s/ws/", "Bundle", &path, true),
            "https://s/ws/Bundle/sub%20dir/%C3%A9%23%3F.txt"
        );
    }
}
