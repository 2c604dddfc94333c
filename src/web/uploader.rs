//! The upload of a sent bundle to the availability server, carried out:
//! the engine's [`Upload`] plan decides, this module makes its HTTP requests
//! (create, status, put) and reports their outcomes to the host.

use std::rc::Rc;

use wasm_bindgen_futures::spawn_local;

use crate::engine::bitfield::Bitfield;
use crate::engine::ids::InfoHash;
use crate::engine::lengths::PieceIndex;
use crate::engine::upload::{Upload, UploadAction, UploadFailure};

use super::host::{post, Weak, Work};
use super::net::error::NetError;
use super::net::http::{self, Answer};
use super::pieces::FileSet;
use super::storage::Storage;

/// One bundle's upload: the plan and what its requests need.
#[derive(Debug)]
pub struct UploadJob {
    /// The decisions.
    pub plan: Upload,
    /// The server's base URL (`http://127.0.0.1:8750`).
    pub server: String,
    /// The owner token, once known.
    pub token: Option<String>,
    /// The `.torrent` to create the bundle with.
    pub torrent: Rc<Vec<u8>>,
}

/// How a request of an upload ended.
#[derive(Debug)]
pub enum UploadOutcome {
    /// A create or status request: the server's have-bitfield (and, from a
    /// create, the new owner token).
    Status {
        /// What the server holds, or why we do not know.
        have: Result<Bitfield, UploadFailure>,
        /// A new owner token.
        token: Option<String>,
    },
    /// A piece was put.
    Piece {
        /// The piece.
        piece: PieceIndex,
        /// Stored, or why not.
        result: Result<(), UploadFailure>,
    },
}

/// Starts the request of `action` in the background; its outcome comes back
/// to the host as [`Work::Upload`].
pub fn start(
    action: UploadAction,
    info_hash: InfoHash,
    job: &UploadJob,
    files: &FileSet,
    storage: Storage,
    host: Weak,
) {
    let server = job.server.trim_end_matches('/').to_owned();
    let num_pieces = job.plan.progress().pieces_total;
    let token = job.token.clone();
    let torrent = job.torrent.clone();
    let files = files.clone();
    spawn_local(async move {
        let outcome = match action {
            UploadAction::Create => {
                create(&server, info_hash, num_pieces, &torrent, &storage).await
            }
            UploadAction::Status => UploadOutcome::Status {
                have: status(&server, info_hash, num_pieces).await,
                token: None,
            },
            UploadAction::Put(piece) => UploadOutcome::Piece {
                piece,
                result: put(&server, info_hash, token.as_deref(), &files, piece, &host).await,
            },
        };
        post(&host, Work::Upload { info_hash, outcome });
    });
}

/// `POST /api/bundles` with the `.torrent`.
async fn create(
    server: &str,
    info_hash: InfoHash,
    num_pieces: u32,
    torrent: &[u8],
    storage: &Storage,
) -> UploadOutcome {
    let url = format!("{server}/api/bundles");
    let answer = match http::request(
        "POST",
        &url,
        &[("content-type", "application/x-bittorrent")],
        Some(torrent),
        None,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            return UploadOutcome::Status {
                have: Err(UploadFailure::Retry(e.to_string())),
                token: None,
            }
        }
    };
    match answer.status {
        200 | 201 => {
            let body = match http::json(&answer) {
                Ok(b) => b,
                Err(e) => {
                    return UploadOutcome::Status {
                        have: Err(UploadFailure::Retry(e.to_string())),
                        token: None,
                    }
                }
            };
            let token = body
                .get("owner_token")
                .and_then(|t| t.as_str())
                .map(str::to_owned);
            let Some(token) = token else {
                return UploadOutcome::Status {
                    have: Err(UploadFailure::Fatal(
                        "the server created the bundle without an owner token".into(),
                    )),
                    token: None,
                };
            };
            // Without the token the upload could not resume: keep it first.
            if let Err(e) = storage.set_upload_token(info_hash, server, &token).await {
                web_sys::console::warn_1(&format!("swarmdrop: {e}").into());
            }
            UploadOutcome::Status {
                have: have_of(&body, num_pieces),
                token: Some(token),
            }
        }
        409 => {
            // The bundle is there already and we do not hold its token:
            // nothing to do if the server has every piece.
            let complete = http::json(&answer)
                .ok()
                .and_then(|b| b.get("complete").and_then(|c| c.as_bool()))
                .unwrap_or(false);
            UploadOutcome::Status {
                have: if complete {
                    Ok(Bitfield::full(num_pieces))
                } else {
                    Err(UploadFailure::Fatal(
                        "the server already has this bundle, created by someone else: \
                         its owner token is not known here"
                            .into(),
                    ))
                },
                token: None,
            }
        }
        _ => UploadOutcome::Status {
            have: Err(failure_of(&answer)),
            token: None,
        },
    }
}

/// `GET /api/bundles/{info_hash}`.
async fn status(
    server: &str,
    info_hash: InfoHash,
    num_pieces: u32,
) -> Result<Bitfield, UploadFailure> {
    let url = format!("{server}/api/bundles/{}", info_hash.to_hex());
    let answer = http::request("GET", &url, &[], None, None)
        .await
        .map_err(|e| UploadFailure::Retry(e.to_string()))?;
    if answer.status != 200 {
        return Err(failure_of(&answer));
    }
    let body = http::json(&answer).map_err(|e| UploadFailure::Retry(e.to_string()))?;
    have_of(&body, num_pieces)
}

/// `PUT /api/bundles/{info_hash}/pieces/{index}` with the owner token.
async fn put(
    server: &str,
    info_hash: InfoHash,
    token: Option<&str>,
    files: &FileSet,
    piece: PieceIndex,
    host: &Weak,
) -> Result<(), UploadFailure> {
    let token = token.ok_or_else(|| UploadFailure::Fatal("no owner token".into()))?;
    // Checked here, not only by the server: a file changed with its date
    // kept reads without error, and is named to the user through the
    // engine's damaged piece (see `Host::piece_damaged`).
    let bytes = match files.read_checked_piece(piece).await {
        Ok(bytes) => bytes,
        Err(NetError::Damaged { .. }) => {
            post(
                host,
                Work::PieceDamaged {
                    info_hash,
                    piece: piece.get(),
                },
            );
            return Err(UploadFailure::Fatal(format!(
                "piece {} of the files is not what the bundle was made from \
                 (did a file change since the bundle was made?)",
                piece.get()
            )));
        }
        Err(e) => return Err(UploadFailure::Fatal(e.to_string())),
    };
    let url = format!(
        "{server}/api/bundles/{}/pieces/{}",
        info_hash.to_hex(),
        piece.get()
    );
    let auth = format!("Bearer {token}");
    let answer = http::request(
        "PUT",
        &url,
        &[
            ("authorization", &auth),
            ("content-type", "application/octet-stream"),
        ],
        Some(&bytes),
        None,
    )
    .await
    .map_err(|e| UploadFailure::Retry(e.to_string()))?;
    match answer.status {
        200 | 201 => Ok(()),
        422 => Err(UploadFailure::Fatal(format!(
            "the server refused piece {} as not matching the torrent \
             (did a file change since the bundle was made?)",
            piece.get()
        ))),
        _ => Err(failure_of(&answer)),
    }
}

/// The `have` field of the server's bundle JSON.
fn have_of(body: &serde_json::Value, num_pieces: u32) -> Result<Bitfield, UploadFailure> {
    let b64 = body
        .get("have")
        .and_then(|h| h.as_str())
        .ok_or_else(|| UploadFailure::Fatal("the server's answer has no have-bitfield".into()))?;
    let bytes = http::base64_decode(b64)
        .ok_or_else(|| UploadFailure::Fatal("the server sent an invalid bitfield".into()))?;
    Bitfield::from_bytes(&bytes, num_pieces).ok_or_else(|| {
        UploadFailure::Fatal(format!(
            "the server's bitfield does not cover the bundle's {num_pieces} pieces"
        ))
    })
}

/// What an error status means for the plan.
fn failure_of(answer: &Answer) -> UploadFailure {
    let message = format!("HTTP {}: {}", answer.status, answer.error_message());
    match answer.status {
        404 => UploadFailure::Missing,
        s if http::retryable_status(s) => UploadFailure::Retry(message),
        _ => UploadFailure::Fatal(message),
    }
}
