//! What the engine tells the UI: events, progress figures and drop reasons.

use crate::engine::api::ConnId;
use crate::engine::ids::{InfoHash, PeerId};
use thiserror::Error;

/// Something the UI (or the glue) may want to know about.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A bundle was added; `name` and `total_length` are known unless it
    /// started from a magnet link without its metadata.
    BundleAdded {
        /// The bundle.
        info_hash: InfoHash,
        /// Display name (the torrent's `name`, or the magnet's `dn`).
        name: Option<String>,
        /// Sum of the file lengths, once the metadata is known.
        total_length: Option<u64>,
    },
    /// A magnet-started bundle received and verified its `info` dictionary;
    /// the glue should persist these bytes (they hash to the info hash).
    MetadataReceived {
        /// The bundle.
        info_hash: InfoHash,
        /// The raw bencoded `info` dictionary.
        info_bytes: Vec<u8>,
    },
    /// Periodic figures of one bundle (about once a second while active).
    Progress(Progress),
    /// A piece passed its SHA-1 check and was persisted.
    PieceVerified {
        /// The bundle.
        info_hash: InfoHash,
        /// The piece.
        piece: u32,
    },
    /// A piece we had read back wrong and is no longer ours
    /// ([`Input::PieceDamaged`](crate::engine::api::Input::PieceDamaged)):
    /// it is being fetched again.
    PieceDamaged {
        /// The bundle.
        info_hash: InfoHash,
        /// The piece.
        piece: u32,
    },
    /// Every selected piece is verified and stored.
    Completed {
        /// The bundle.
        info_hash: InfoHash,
    },
    /// The bundle stopped moving bytes.
    Paused {
        /// The bundle.
        info_hash: InfoHash,
        /// Why.
        reason: PauseReason,
    },
    /// The bundle moves bytes again.
    Resumed {
        /// The bundle.
        info_hash: InfoHash,
    },
    /// The bundle is gone from the engine (its stored pieces are the glue's
    /// to delete or keep).
    Removed {
        /// The bundle.
        info_hash: InfoHash,
    },
    /// A peer (or web seed) completed its handshake.
    PeerConnected {
        /// The bundle.
        info_hash: InfoHash,
        /// The connection.
        conn: ConnId,
        /// The remote id (`None` for a web seed).
        peer_id: Option<PeerId>,
    },
    /// A peer connection ended.
    PeerDropped {
        /// The bundle.
        info_hash: InfoHash,
        /// The connection.
        conn: ConnId,
        /// The remote id, when the handshake got that far.
        peer_id: Option<PeerId>,
        /// Why.
        reason: DropReason,
    },
    /// Something the user should read: a tracker refused us, storage
    /// failed, a command could not be applied.
    Error {
        /// The bundle concerned, if any.
        info_hash: Option<InfoHash>,
        /// A clear, lower-case message.
        message: String,
    },
}

/// Why a bundle is paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseReason {
    /// The user asked for it.
    User,
    /// Storage reported that the disk (or the browser's quota) is full; the
    /// bundle resumes on the user's command once space is freed.
    DiskFull,
}

/// A bundle's figures, as the popup shows them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// The bundle.
    pub info_hash: InfoHash,
    /// Verified and stored bytes.
    pub have_bytes: u64,
    /// Bytes of the selected files' pieces (the target of this download).
    pub wanted_bytes: u64,
    /// Sum of all file lengths (0 until the metadata is known).
    pub total_bytes: u64,
    /// Download rate from peers, bytes per second.
    pub down_rate_peers: u64,
    /// Download rate from web seeds (the availability server), bytes per second.
    pub down_rate_server: u64,
    /// Upload rate, bytes per second.
    pub up_rate: u64,
    /// Payload bytes downloaded from peers since the bundle was added.
    pub downloaded_peers: u64,
    /// Payload bytes downloaded from web seeds since the bundle was added.
    pub downloaded_server: u64,
    /// Payload bytes uploaded since the bundle was added.
    pub uploaded: u64,
    /// Connected peers (handshake done, web seeds excluded).
    pub peers: u32,
    /// Whether the bundle is paused.
    pub paused: bool,
    /// Pieces read back wrong since the bundle was added and not fetched
    /// again yet.
    pub damaged: u32,
}

/// Why a peer connection was closed. Peer-local: a drop never ends the
/// session, it is an event and a `ClosePeer` output.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DropReason {
    /// The data channel closed from the other side (or the glue lost it).
    #[error("the connection closed")]
    Closed,
    /// The first 20 bytes are not the BitTorrent protocol string.
    #[error("not a bittorrent handshake")]
    BadHandshake,
    /// The handshake names another bundle than the one this connection is for.
    #[error("handshake for another bundle")]
    WrongInfoHash,
    /// The remote peer id is our own.
    #[error("connected to ourselves")]
    SelfConnection,
    /// Another connection to the same peer id is already open for this bundle.
    #[error("already connected to this peer")]
    DuplicatePeer,
    /// The peer sent data that failed a piece hash earlier; it is not trusted
    /// again for this bundle.
    #[error("peer sent corrupt piece data")]
    BadData,
    /// A message could not be framed or decoded.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message id this client does not know.
    #[error("unknown message id {0}")]
    UnknownMessage(u8),
    /// A message longer than the cap for its kind.
    #[error("message of {len} bytes is over the {max}-byte limit")]
    Oversized {
        /// Declared length.
        len: u32,
        /// The cap.
        max: u32,
    },
    /// A piece index past the end of the bundle.
    #[error("invalid piece index {0}")]
    InvalidPiece(u32),
    /// A request, cancel, reject or piece message whose range is not a valid
    /// block of its piece.
    #[error("invalid block: piece {piece}, offset {offset}, length {len}")]
    InvalidBlock {
        /// Piece index.
        piece: u32,
        /// Offset in the piece.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// A bitfield of the wrong length or with spare bits set, or sent twice.
    #[error("invalid bitfield")]
    BadBitfield,
    /// A request while choked, from a peer without the Fast extension, that
    /// cannot be explained by a choke still in flight.
    #[error("request while choked")]
    RequestWhileChoked,
    /// More queued requests than we accept from one peer.
    #[error("more than {0} requests queued")]
    TooManyRequests(usize),
    /// A Fast-extension message from a peer that did not announce it.
    #[error("fast extension message without the fast extension")]
    FastNotNegotiated,
    /// Nothing received for too long.
    #[error("peer silent for too long")]
    Timeout,
    /// Metadata (ut_metadata) pieces that do not hash to the info hash, or
    /// other metadata misbehaviour.
    #[error("bad metadata: {0}")]
    BadMetadata(String),
    /// Both sides are seeds (or nothing can ever be exchanged).
    #[error("neither side needs anything from the other")]
    NotUseful,
    /// Our offer was not answered in time.
    #[error("offer not answered in time")]
    OfferExpired,
    /// The glue could not set up the WebRTC connection.
    #[error("connection setup failed: {0}")]
    SignalFailed(String),
    /// A web seed failed too often.
    #[error("web seed failed: {0}")]
    WebSeedFailed(String),
    /// The bundle has enough peers.
    #[error("too many peers")]
    TooManyPeers,
    /// The bundle was removed.
    #[error("bundle removed")]
    BundleRemoved,
    /// The bundle was paused (web seeds are let go; peers stay connected).
    #[error("bundle paused")]
    BundlePaused,
}
