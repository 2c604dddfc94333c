//! The engine's vocabulary: what goes in ([`Input`], [`Command`]) and what
//! comes out ([`Output`]).
//!
//! Inputs borrow their bytes and strings from the caller (a data channel's
//! `ArrayBuffer`, a WebSocket frame): the engine copies what it keeps.

use crate::engine::bitfield::Bitfield;
use crate::engine::event::{DropReason, Event};
use crate::engine::ids::InfoHash;
pub use crate::engine::limiter::Limits;
use crate::engine::magnet::Magnet;
use crate::engine::metainfo::Metainfo;
use std::fmt;
use thiserror::Error;

/// A connection chosen by the engine: a WebRTC peer or a web seed. Never
/// reused within one [`Client`](crate::engine::client::Client).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Whether this client created the bundle (and holds every byte) or fetches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We hold every piece: `have` must be full.
    Seed,
    /// We fetch the selected files' pieces and serve what we have.
    Download,
}

/// Where a bundle's description comes from.
#[derive(Clone, Debug)]
pub enum BundleSource {
    /// A full `.torrent` (or a bundle just created): the info dictionary is known.
    Metainfo(Box<Metainfo>),
    /// A magnet link: the info dictionary is fetched from peers (BEP 9) first.
    Magnet(Box<Magnet>),
}

impl BundleSource {
    /// The bundle's info hash.
    pub fn info_hash(&self) -> InfoHash {
        match self {
            BundleSource::Metainfo(m) => m.info_hash,
            BundleSource::Magnet(m) => m.info_hash,
        }
    }
}

/// Everything needed to start (or restart) a bundle.
#[derive(Clone, Debug)]
pub struct AddBundle {
    /// The torrent or the magnet link.
    pub source: BundleSource,
    /// Seed or download.
    pub role: Role,
    /// Pieces already verified and stored (the persisted have-bitfield).
    /// Empty (`Bitfield::new(0)`) for a new download or a magnet link.
    pub have: Bitfield,
    /// Indices of the files to fetch; `None` means every file.
    pub selection: Option<Vec<usize>>,
    /// Start paused.
    pub paused: bool,
    /// Also announce on the client's trackers ([`ClientConfig::trackers`]),
    /// besides the bundle's own (its torrent's or magnet's). False for a
    /// send, which announces where its torrent says: the trackers named
    /// when it was made, whatever the client's are now.
    ///
    /// [`ClientConfig::trackers`]: crate::engine::client::ClientConfig::trackers
    pub client_trackers: bool,
}

/// What a [`Command::SetLimits`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitScope {
    /// All bundles together.
    Global,
    /// One bundle (on top of the global caps).
    Bundle(InfoHash),
}

/// Something the user asked for.
#[derive(Clone, Debug)]
pub enum Command {
    /// Starts a bundle.
    AddBundle(Box<AddBundle>),
    /// Stops moving bytes for a bundle (connections stay open, choked).
    Pause(InfoHash),
    /// Undoes [`Command::Pause`] (also after a disk-full pause).
    Resume(InfoHash),
    /// Forgets a bundle: closes its connections and announces `stopped`.
    Remove(InfoHash),
    /// Pauses every bundle.
    PauseAll,
    /// Resumes every bundle.
    ResumeAll,
    /// Changes which files to fetch (`None`: all).
    SetSelection {
        /// The bundle.
        info_hash: InfoHash,
        /// File indices.
        files: Option<Vec<usize>>,
    },
    /// Changes rate caps.
    SetLimits {
        /// Global or one bundle.
        scope: LimitScope,
        /// The new caps.
        limits: Limits,
    },
}

/// Why storage could not persist a piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreFailure {
    /// No space left (IndexedDB `QuotaExceededError`): the bundle is paused,
    /// not failed, and keeps its state.
    DiskFull,
    /// Anything else, with the storage layer's message.
    Other(String),
}

/// One input to the engine. See [`Client`](crate::engine::client::Client)
/// for when to feed each.
#[derive(Clone, Debug)]
pub enum Input<'a> {
    /// A user command.
    Command(Command),
    /// The glue created the WebRTC offer asked for by
    /// [`Output::CreateOffer`] (ICE gathering complete, candidates inside).
    OfferCreated {
        /// The connection.
        conn: ConnId,
        /// The offer SDP.
        sdp: &'a str,
    },
    /// The glue created the answer asked for by [`Output::CreateAnswer`].
    AnswerCreated {
        /// The connection.
        conn: ConnId,
        /// The answer SDP.
        sdp: &'a str,
    },
    /// Creating an offer or answer, or applying an answer, failed.
    SignalFailed {
        /// The connection.
        conn: ConnId,
        /// The browser's message.
        reason: &'a str,
    },
    /// The data channel opened: the handshake goes out now.
    PeerOpened {
        /// The connection.
        conn: ConnId,
    },
    /// Bytes arrived on the data channel (any chunking).
    PeerData {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: &'a [u8],
    },
    /// The data channel's `bufferedAmount` is at or below
    /// [`ClientConfig::send_low_water`](crate::engine::client::ClientConfig),
    /// after an [`Output::WatchWritable`].
    PeerWritable {
        /// The connection.
        conn: ConnId,
    },
    /// The data channel or the peer connection closed.
    PeerClosed {
        /// The connection.
        conn: ConnId,
    },
    /// A tracker WebSocket opened.
    TrackerOpened {
        /// The URL from [`Output::TrackerConnect`].
        url: &'a str,
    },
    /// A text frame from a tracker.
    TrackerText {
        /// The tracker.
        url: &'a str,
        /// The frame (one JSON object).
        text: &'a str,
    },
    /// A tracker WebSocket closed or failed to open.
    TrackerClosed {
        /// The tracker.
        url: &'a str,
    },
    /// The bytes asked for by [`Output::LoadBlock`].
    BlockLoaded {
        /// The bundle.
        info_hash: InfoHash,
        /// Piece index.
        piece: u32,
        /// Offset in the piece.
        offset: u32,
        /// The block (exactly the requested length).
        data: &'a [u8],
    },
    /// An [`Output::LoadBlock`] failed (the file went away, was changed...).
    LoadFailed {
        /// The bundle.
        info_hash: InfoHash,
        /// Piece index.
        piece: u32,
        /// Offset in the piece.
        offset: u32,
        /// The storage layer's message.
        reason: &'a str,
    },
    /// The piece of an [`Output::StorePiece`] is persisted, with its have-bit.
    PieceStored {
        /// The bundle.
        info_hash: InfoHash,
        /// Piece index.
        piece: u32,
    },
    /// A piece we have read back wrong (its SHA-1 is not the torrent's)
    /// when it was loaded to serve or to save: storage deleted it and cleared
    /// its have-bit in one transaction (for a send, a file changed under
    /// it). The engine trusts only what the have-bitfield records: the piece
    /// is no longer ours, its pending and later requests from peers are not
    /// served (rejected under Fast, retracted with `lt_donthave` where the
    /// peer has it), a complete bundle is downloading again, and the picker
    /// fetches the piece again from peers or web seeds. A piece the engine
    /// does not have is ignored.
    PieceDamaged {
        /// The bundle.
        info_hash: InfoHash,
        /// Piece index.
        piece: u32,
    },
    /// The SHA-1 of the piece of an [`Output::HashPiece`], and its bytes
    /// handed back.
    PieceHashed {
        /// The bundle.
        info_hash: InfoHash,
        /// Piece index.
        piece: u32,
        /// The piece bytes, as [`Output::HashPiece`] gave them.
        data: Vec<u8>,
        /// Their SHA-1.
        sha1: [u8; 20],
    },
    /// An [`Output::StorePiece`] failed.
    StoreFailed {
        /// The bundle.
        info_hash: InfoHash,
        /// Piece index.
        piece: u32,
        /// Why.
        failure: StoreFailure,
    },
    /// The bytes asked for by [`Output::WebSeedFetch`]: the concatenation of
    /// its `ranges`, in order.
    WebSeedData {
        /// The web seed connection.
        conn: ConnId,
        /// Piece index of the fetch.
        piece: u32,
        /// Offset of the fetch in the piece.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// What a web seed holds, when it is known to hold only part of the
    /// bundle (an availability server still receiving the upload says so in
    /// its bundle API): it is asked only for those pieces. A full bitfield
    /// means every piece again. Ignored for a URL the bundle does not use.
    WebSeedHave {
        /// The bundle.
        info_hash: InfoHash,
        /// The web seed's URL, as in `url-list` or `ws=`.
        url: &'a str,
        /// Its pieces.
        have: &'a Bitfield,
    },
    /// An [`Output::WebSeedFetch`] failed (HTTP error, network, bad range,
    /// an answer cut short).
    WebSeedFailed {
        /// The web seed connection.
        conn: ConnId,
        /// Piece index of the fetch.
        piece: u32,
        /// Offset of the fetch in the piece.
        offset: u32,
        /// The bytes that came before the failure (the concatenation of the
        /// ranges, as in [`Input::WebSeedData`], cut where it stopped;
        /// possibly empty): the whole blocks among them are used, so the
        /// pieces of a long fetch that came whole are kept.
        received: &'a [u8],
        /// What went wrong.
        reason: &'a str,
    },
}

/// A byte range of one URL, part of a [`WebSeedFetch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRange {
    /// The file's URL (BEP 19 mapping, path percent-encoded).
    pub url: String,
    /// First byte in the file.
    pub start: u64,
    /// One past the last byte: the HTTP header is `Range: bytes=start-(end-1)`.
    pub end: u64,
}

/// A range to fetch from a web seed over HTTP: consecutive bytes of the
/// bundle from `offset` in `piece`, possibly through the pieces after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSeedFetch {
    /// The web seed connection; answer with [`Input::WebSeedData`] or
    /// [`Input::WebSeedFailed`] quoting it, `piece` and `offset`.
    pub conn: ConnId,
    /// The bundle.
    pub info_hash: InfoHash,
    /// Piece index of its first byte.
    pub piece: u32,
    /// Offset of its first byte in that piece.
    pub offset: u32,
    /// Bytes wanted, at most
    /// [`MAX_FETCH_LEN`](crate::engine::webseed::MAX_FETCH_LEN) (the sum of the ranges plus any padding-file bytes,
    /// which are zeros and never fetched).
    pub len: u32,
    /// The HTTP ranges to fetch, in order (several when the range spans files).
    pub ranges: Vec<UrlRange>,
}

/// One effect for the glue to carry out.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send these bytes on the data channel.
    PeerSend {
        /// The connection.
        conn: ConnId,
        /// The bytes (at most 64 KiB, under every browser's message size).
        data: Vec<u8>,
    },
    /// The engine stopped sending to `conn` because its send budget is used
    /// up: feed [`Input::PeerWritable`] once `bufferedAmount` is at or below
    /// the low-water mark (at once if it already is).
    WatchWritable {
        /// The connection.
        conn: ConnId,
    },
    /// Close the connection (or abort a web seed's fetches); no
    /// [`Input::PeerClosed`] is expected back.
    ClosePeer {
        /// The connection.
        conn: ConnId,
        /// Why (also reported as an [`Event::PeerDropped`] once the
        /// handshake was done).
        reason: DropReason,
    },
    /// Create an `RTCPeerConnection` with one data channel, gather ICE fully,
    /// and feed [`Input::OfferCreated`].
    CreateOffer {
        /// The new connection.
        conn: ConnId,
        /// The bundle it is for.
        info_hash: InfoHash,
    },
    /// Create an `RTCPeerConnection` for this remote offer and feed
    /// [`Input::AnswerCreated`].
    CreateAnswer {
        /// The new connection.
        conn: ConnId,
        /// The bundle it is for.
        info_hash: InfoHash,
        /// The remote offer SDP.
        offer_sdp: String,
    },
    /// Apply the remote answer to our offer's connection.
    AcceptAnswer {
        /// The connection of the offer.
        conn: ConnId,
        /// The remote answer SDP.
        answer_sdp: String,
    },
    /// Open a WebSocket to this tracker; feed [`Input::TrackerOpened`] or
    /// [`Input::TrackerClosed`].
    TrackerConnect {
        /// The tracker.
        url: String,
    },
    /// Send one text frame to an open tracker socket.
    TrackerSend {
        /// The tracker.
        url: String,
        /// The JSON text.
        text: String,
    },
    /// Close a tracker socket (no bundle needs it any more).
    TrackerClose {
        /// The tracker.
        url: String,
    },
    /// Read a block of a piece this client has; feed [`Input::BlockLoaded`]
    /// or [`Input::LoadFailed`].
    LoadBlock {
        /// The bundle.
        info_hash: InfoHash,
        /// Piece index.
        piece: u32,
        /// Offset in the piece.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// Persist a verified piece and set its have-bit in the same transaction;
    /// feed [`Input::PieceStored`] or [`Input::StoreFailed`].
    StorePiece {
        /// The bundle.
        info_hash: InfoHash,
        /// Piece index.
        piece: u32,
        /// The piece bytes (SHA-1 checked).
        data: Vec<u8>,
    },
    /// Take the SHA-1 of a complete piece (only with
    /// [`ClientConfig::host_hashes`](crate::engine::client::ClientConfig));
    /// feed [`Input::PieceHashed`] with the bytes and the hash. The engine
    /// checks the hash, and hands a good piece to [`Output::StorePiece`].
    HashPiece {
        /// The bundle.
        info_hash: InfoHash,
        /// Piece index.
        piece: u32,
        /// The piece bytes, not checked yet.
        data: Vec<u8>,
    },
    /// Fetch a range from a web seed.
    WebSeedFetch(WebSeedFetch),
    /// Tell the UI.
    Event(Event),
}

/// Why a command could not be applied. Only commands fail; every other input
/// is either used or ignored (a late message for a closed connection).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CommandError {
    /// The bundle is already in the client.
    #[error("bundle {0} is already added")]
    DuplicateBundle(InfoHash),
    /// No bundle with this info hash.
    #[error("no bundle {0}")]
    UnknownBundle(InfoHash),
    /// The have-bitfield does not have one bit per piece.
    #[error("have-bitfield covers {got} pieces, the bundle has {expected}")]
    HaveLength {
        /// Pieces of the bundle.
        expected: u32,
        /// Bits given.
        got: u32,
    },
    /// A seed must hold every piece.
    #[error("a seed must have every piece ({have} of {total})")]
    SeedIncomplete {
        /// Pieces held.
        have: u32,
        /// Pieces of the bundle.
        total: u32,
    },
    /// A selection names a file the bundle does not have.
    #[error("file index {index} is out of range ({files} files)")]
    BadFileIndex {
        /// The index given.
        index: usize,
        /// Files in the bundle.
        files: usize,
    },
    /// A magnet link cannot start as a seed (its pieces are unknown).
    #[error("a magnet link cannot be seeded")]
    MagnetSeed,
    /// The selection can only be set once the metadata is known.
    #[error("the bundle's metadata is not known yet")]
    NoMetadata,
}
