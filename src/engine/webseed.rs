//! Web seeds (BEP 19): a peer that has every piece, reached over HTTP range
//! requests that the glue makes; here the URL mapping and the fetch state.
//!
//! As in WebTorrent's `lib/webconn.js`, the picker sees a web seed as one
//! more peer with every piece: it needs no special case. The session asks
//! the picker for about a piece's worth of blocks at a time and turns each
//! contiguous run of them into one [`WebSeedFetch`].

use std::borrow::Cow;
use std::time::Duration;

use crate::engine::api::{ConnId, UrlRange, WebSeedFetch};
use crate::engine::ids::{InfoHash, PeerId};
use crate::engine::lengths::{BlockInfo, PieceIndex};
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
/// one starts): small pieces get more fetches at once (up to
/// [`MAX_FETCH_SLOTS`]).
pub const IN_FLIGHT_TARGET: u64 = 4 * 1024 * 1024;

/// Fetches in flight for pieces of `piece_length` bytes: enough to keep
/// about [`IN_FLIGHT_TARGET`] bytes in flight, between [`MAX_FETCHES`] and
/// [`MAX_FETCH_SLOTS`]. A fetch is a piece, or [`MAX_FETCH_LEN`] of a
/// larger one.
pub fn fetch_slots(piece_length: u32) -> usize {
    let per = u64::from(piece_length.clamp(1, MAX_FETCH_LEN));
    let wanted = usize::try_from(IN_FLIGHT_TARGET.div_ceil(per)).unwrap_or(MAX_FETCH_SLOTS);
    wanted.clamp(MAX_FETCHES, MAX_FETCH_SLOTS)
}
/// Largest single fetch (a piece or a contiguous part of one).
pub const MAX_FETCH_LEN: u32 = 1024 * 1024;
/// Consecutive failures after which a web seed is dropped.
pub const MAX_FAILURES: u32 = 5;
/// First wait after a failure; doubles with each consecutive one.
pub const RETRY_BASE: Duration = Duration::from_secs(5);

/// One fetch in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// Piece.
    pub piece: PieceIndex,
    /// Offset in the piece.
    pub offset: u32,
    /// Bytes.
    pub len: u32,
    /// The picker's blocks it covers, in order.
    pub blocks: Vec<BlockInfo>,
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
    /// Fetches allowed in flight ([`fetch_slots`]).
    pub slots: usize,
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
            slots: MAX_FETCHES,
        }
    }

    /// Whether another fetch may start at `now`.
    pub fn can_fetch(&self, now: Instant) -> bool {
        self.fetches.len() < self.slots.max(1) && self.retry_at.is_none_or(|t| t <= now)
    }

    /// Groups picked blocks into fetches (contiguous runs inside one piece,
    /// at most [`MAX_FETCH_LEN`] each), records as many as its free
    /// [`slots`](Self::slots) allow and returns what the glue must fetch, with the blocks that
    /// did not fit (to give back to the picker).
    pub fn start_fetches(
        &mut self,
        info_hash: InfoHash,
        info: &Info,
        mut blocks: Vec<BlockInfo>,
    ) -> (Vec<WebSeedFetch>, Vec<BlockInfo>) {
        sort::sort_by(&mut blocks, Ord::cmp);
        let mut runs: Vec<Fetch> = Vec::new();
        for b in blocks {
            match runs.last_mut() {
                Some(run)
                    if run.piece == b.piece
                        && run.offset + run.len == b.offset
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
        let slots = self.slots.max(1).saturating_sub(self.fetches.len());
        let leftover = runs
            .split_off(slots.min(runs.len()))
            .into_iter()
            .flat_map(|run| run.blocks)
            .collect();
        let lengths = info.lengths;
        let mut out = Vec::with_capacity(runs.len());
        for run in runs {
            let start = lengths.piece_offset(run.piece) + run.offset as u64;
            out.push(WebSeedFetch {
                conn: self.conn,
                info_hash,
                piece: run.piece.get(),
                offset: run.offset,
                len: run.len,
                ranges: url_ranges(info, &self.url, start, run.len as u64),
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
    fn picked_blocks_become_one_fetch_per_contiguous_run_in_a_piece() {
        let info = padded_info();
        let l = info.lengths;
        let p0 = l.validate_piece(0).unwrap();
        let p1 = l.validate_piece(1).unwrap();
        let mut seed = WebSeed::new(ConnId(9), PeerKey(1), "https://s/ws".into());
        let blocks = vec![l.block(p1, 0).unwrap(), l.block(p0, 0).unwrap()];
        let (fetches, leftover) = seed.start_fetches(InfoHash([1; 20]), &info, blocks);
        assert!(leftover.is_empty());
        assert_eq!(fetches.len(), 2);
        assert_eq!(
            (fetches[0].piece, fetches[0].offset, fetches[0].len),
            (0, 0, BLOCK_SIZE)
        );
        assert_eq!(fetches[1].piece, 1);
        assert_eq!(fetches[1].len, 16_000);
        assert_eq!(fetches[1].ranges.len(), 1);
        assert_eq!(seed.fetches.len(), 2);
        assert!(seed.take_fetch(1, 0).is_some());
        assert!(seed.take_fetch(1, 0).is_none());
        // One slot free: a second run does not fit and goes back.
        let blocks = vec![l.block(p1, 0).unwrap(), l.block(p0, 0).unwrap()];
        let (fetches, leftover) = seed.start_fetches(InfoHash([1; 20]), &info, blocks);
        assert_eq!(fetches.len(), 1);
        assert_eq!(leftover, vec![l.block(p1, 0).unwrap()]);
    }

    #[test]
    fn every_free_slot_takes_a_fetch_when_a_web_seed_has_more_than_two() {
        let builder = crate::engine::create::TorrentBuilder::new("f.bin")
            .piece_length(16384)
            .file(vec!["f.bin".into()], 4 * 16384);
        let info = builder.build(vec![[0; 20]; 4]).unwrap().info;
        let l = info.lengths;
        let mut seed = WebSeed::new(ConnId(9), PeerKey(1), "https://s/ws".into());
        seed.slots = 3;
        // Pieces 0, 2 and 3: three runs (0 is not contiguous with 2).
        let blocks: Vec<_> = [0, 2, 3]
            .iter()
            .filter_map(|&i| l.block(l.validate_piece(i)?, 0))
            .collect();
        assert_eq!(blocks.len(), 3);
        let (fetches, leftover) = seed.start_fetches(InfoHash([1; 20]), &info, blocks);
        assert_eq!((fetches.len(), leftover.len()), (3, 0));
        assert!(!seed.can_fetch(Instant::ZERO), "all three slots are busy");
    }

    #[test]
    fn fetches_in_flight_keep_about_the_target_bytes_within_the_browsers_connections() {
        assert_eq!(fetch_slots(16 * 1024), MAX_FETCH_SLOTS);
        assert_eq!(fetch_slots(512 * 1024), MAX_FETCH_SLOTS);
        assert_eq!(fetch_slots(1024 * 1024), 4);
        assert_eq!(fetch_slots(3 * 1024 * 1024 / 2), 4, "fetches of 1 MiB");
        assert_eq!(fetch_slots(2 * 1024 * 1024), 4, "two pieces of two fetches");
        assert_eq!(fetch_slots(16 * 1024 * 1024), 4);
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
