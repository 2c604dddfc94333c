//! `SwarmHost`: the one handle the extension's engine host holds. It sends
//! and downloads bundles over WebRTC, the WebTorrent tracker protocol and
//! the availability server (web seed and bundle API), and reports to the
//! pages through an event callback.
//!
//! ```js
//! const host = await SwarmHost.create({ trackers: ['ws://127.0.0.1:8750/announce'],
//!                                      onEvent: (e) => console.log(e) });
//! const ih = await host.addSend(torrentBytes, [{ path: 'a.jpg', file }],
//!                               { server: 'http://127.0.0.1:8750', upload: true });
//! const other = await host.addDownload('http://127.0.0.1:8750/b/<info hash>');
//! host.transfers(); // [{infoHash, name, role, state, progress, upload, files}]
//! const blob = await host.fileBlob(other, 1); // a save file written from the stored pieces
//! await host.releaseFile(blob); // once the download has read it
//! ```

use std::rc::Rc;
use std::time::Duration;

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;
use web_sys::{RtcConfiguration, RtcIceServer};

use crate::engine::api::{AddBundle, BundleSource, Command, Input, LimitScope, Limits, Role};
use crate::engine::bitfield::Bitfield;
use crate::engine::client::{Client, ClientConfig};
use crate::engine::ids::{InfoHash, PeerId};
use crate::engine::link::torrent_url;
use crate::engine::magnet::Magnet;
use crate::engine::metainfo::Metainfo;

use super::host::{new_bundle, new_upload, Shared};
use super::js;
use super::net::error::NetError;
use super::net::http;
use super::net::rtc::RtcSettings;
use super::piece_files::PieceFiles;
use super::pieces::FileSet;
use super::saves::{Saves, SWEEP_AFTER_MS};
use super::storage::Storage;

/// Longest wait for ICE gathering (below the engine's offer timeout).
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// The engine host's handle. See the module documentation.
#[wasm_bindgen]
pub struct SwarmHost {
    shared: Rc<Shared>,
    saves: Rc<Saves>,
}

fn field(options: &JsValue, name: &str) -> JsValue {
    if options.is_object() {
        Reflect::get(options, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

fn strings(value: &JsValue) -> Vec<String> {
    value
        .dyn_ref::<Array>()
        .map(|a| a.iter().filter_map(|v| v.as_string()).collect())
        .unwrap_or_default()
}

fn rate(value: &JsValue) -> Option<u64> {
    value
        .as_f64()
        .filter(|v| v.is_finite() && *v >= 1.0)
        .map(|v| v as u64)
}

/// The bundle's own caps from an add's `options` (`uploadLimit?`,
/// `downloadLimit?`: bytes per second, null or 0 for none).
fn bundle_limits(info_hash: InfoHash, options: &JsValue) -> Input<'static> {
    Input::Command(Command::SetLimits {
        scope: LimitScope::Bundle(info_hash),
        limits: Limits {
            upload: rate(&field(options, "uploadLimit")),
            download: rate(&field(options, "downloadLimit")),
        },
    })
}

fn parse_hash(s: &str) -> Result<InfoHash, NetError> {
    InfoHash::from_hex(s.trim())
        .ok_or_else(|| NetError::Argument(format!("{s:?} is not an info hash")))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], NetError> {
    let buf = Uint8Array::new_with_length(N as u32);
    let crypto =
        Reflect::get(&js_sys::global(), &"crypto".into()).map_err(|e| NetError::browser(&e))?;
    let get: Function = Reflect::get(&crypto, &"getRandomValues".into())
        .map_err(|e| NetError::browser(&e))?
        .dyn_into()
        .map_err(|_| NetError::Browser("no crypto.getRandomValues".into()))?;
    get.call1(&crypto, &buf)
        .map_err(|e| NetError::browser(&e))?;
    let mut out = [0u8; N];
    buf.copy_to(&mut out);
    Ok(out)
}

fn rtc_configuration(ice_servers: &JsValue) -> RtcConfiguration {
    let configuration = RtcConfiguration::new();
    let servers = Array::new();
    if let Some(list) = ice_servers.dyn_ref::<Array>() {
        for s in list.iter() {
            if let Some(url) = s.as_string() {
                let server = RtcIceServer::new();
                server.set_urls_str(&url);
                servers.push(&server);
            } else if s.is_object() {
                servers.push(&s);
            }
        }
    }
    configuration.set_ice_servers(&servers);
    configuration
}

/// The bytes of a `Uint8Array` or `ArrayBuffer`.
fn bytes_of(value: &JsValue) -> Option<Vec<u8>> {
    if let Some(a) = value.dyn_ref::<Uint8Array>() {
        Some(a.to_vec())
    } else {
        value
            .dyn_ref::<js_sys::ArrayBuffer>()
            .map(|b| Uint8Array::new(b).to_vec())
    }
}

/// What a link or file given to `addDownload` designates.
enum Source {
    Torrent(Vec<u8>),
    Magnet(Box<Magnet>),
}

async fn resolve(source: JsValue) -> Result<Source, NetError> {
    if let Some(bytes) = bytes_of(&source) {
        return Ok(Source::Torrent(bytes));
    }
    let text = source.as_string().ok_or_else(|| {
        NetError::Argument("give a .torrent (bytes), a magnet link or a share link".into())
    })?;
    let text = text.trim();
    if text.starts_with("magnet:") {
        return Ok(Source::Magnet(Box::new(Magnet::parse(text)?)));
    }
    let url = torrent_url(text).ok_or_else(|| {
        NetError::Argument(format!("{text:?} is not a magnet, share or .torrent link"))
    })?;
    let answer = http::request("GET", &url, &[], None, None).await?;
    if answer.status != 200 {
        return Err(NetError::Http(format!(
            "{url}: HTTP {}: {}",
            answer.status,
            answer.error_message()
        )));
    }
    Ok(Source::Torrent(answer.body))
}

#[wasm_bindgen]
impl SwarmHost {
    /// Opens storage and starts an engine. `options`: `{trackers?: string[]`
    /// (WebSocket trackers used for every bundle), `iceServers?:
    /// (string | RTCIceServer)[]`, `maxPeers?: number`, `uploadLimit?`,
    /// `downloadLimit?` (bytes per second), `onEvent?: (event) => void`
    /// (`{type, infoHash, ...}` objects: `added`, `metadata`, `progress`,
    /// `piece`, `completed`, `paused`, `resumed`, `removed`,
    /// `peerConnected`, `peerDropped`, `upload`, `error`),
    /// `pieceFiles?`: a `PieceFiles` of `js/host/network.js` whose
    /// `probe()` succeeded, where new downloads keep their pieces (without
    /// it, in IndexedDB)}.
    pub async fn create(options: JsValue) -> Result<SwarmHost, JsValue> {
        let storage = Storage::open().await?;
        let storage = match PieceFiles::new(field(&options, "pieceFiles")) {
            Some(files) => storage.with_piece_files(files),
            None => storage,
        };
        let random: [u8; 20] = random_bytes()?;
        let mut id_bytes = [0u8; 12];
        id_bytes.copy_from_slice(&random[..12]);
        let mut seed_bytes = [0u8; 8];
        seed_bytes.copy_from_slice(&random[12..]);
        let mut config =
            ClientConfig::new(PeerId::generate(id_bytes), u64::from_le_bytes(seed_bytes));
        config.trackers = strings(&field(&options, "trackers"));
        // Received pieces are hashed by WebCrypto (the browser's native
        // SHA-1, digest.rs), not by `sha1_smol` compiled to wasm.
        config.host_hashes = true;
        if let Some(n) = field(&options, "maxPeers").as_f64().filter(|n| *n >= 1.0) {
            config.max_peers = n as usize;
        }
        config.limits = Limits {
            upload: rate(&field(&options, "uploadLimit")),
            download: rate(&field(&options, "downloadLimit")),
        };
        let rtc = RtcSettings {
            configuration: rtc_configuration(&field(&options, "iceServers")),
            low_water: u32::try_from(config.send_low_water).unwrap_or(u32::MAX),
            gather_timeout: GATHER_TIMEOUT,
        };
        let shared =
            Shared::new(|me| super::host::Host::new(Client::new(config), me, storage, rtc));
        shared.set_on_event(field(&options, "onEvent").dyn_into::<Function>().ok());
        let saves = Rc::new(Saves::default());
        // Save files a page never released (or an earlier host left behind).
        let sweeper = saves.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = sweeper.sweep(SWEEP_AFTER_MS).await {
                web_sys::console::warn_1(
                    &format!("swarmdrop: sweeping old save files: {e}").into(),
                );
            }
        });
        Ok(SwarmHost { shared, saves })
    }

    /// Our peer id (hex).
    #[wasm_bindgen(js_name = peerId)]
    pub fn peer_id(&self) -> Result<String, JsValue> {
        Ok(self.shared.with(|h| h.client.peer_id().to_hex())?)
    }

    /// Starts sending a bundle: its `.torrent` and its files (an array of
    /// `Blob`s in torrent order, or of `{path, file}`), read lazily.
    /// `options`: `{server?: string` (the availability server's base URL),
    /// `upload?: boolean` (default: true when a server is given; false sends
    /// peer-to-peer only), `paused?: boolean`, `clientTrackers?: boolean`
    /// (default true: also announce on the host's trackers; false announces
    /// only on the torrent's), `uploadLimit?`, `downloadLimit?` (the
    /// bundle's own caps, bytes per second)}`.
    /// Resolves to the info hash.
    #[wasm_bindgen(js_name = addSend)]
    pub fn add_send(&self, torrent: Vec<u8>, files: JsValue, options: JsValue) -> Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            let metainfo = Metainfo::from_torrent_bytes(&torrent).map_err(NetError::from)?;
            let info_hash = metainfo.info_hash;
            let info = Rc::new(metainfo.info.clone());
            let fileset = FileSet::new(info.clone(), &files)?;
            let server = field(&options, "server")
                .as_string()
                .map(|s| s.trim().trim_end_matches('/').to_owned())
                .filter(|s| !s.is_empty());
            let upload = field(&options, "upload")
                .as_bool()
                .unwrap_or(server.is_some());
            let paused = field(&options, "paused").as_bool().unwrap_or(false);
            let client_trackers = field(&options, "clientTrackers").as_bool().unwrap_or(true);
            let server = match (upload, server) {
                (true, Some(s)) => Some(s),
                (true, None) => {
                    return Err(
                        NetError::Argument("an upload needs the server's URL".into()).into(),
                    )
                }
                (false, _) => None,
            };
            let storage = shared.with(|h| h.storage.clone())?;
            let token = match &server {
                Some(s) => storage.upload_token(info_hash, s).await?,
                None => None,
            };
            let torrent = Rc::new(torrent);
            let pieces = info.lengths.num_pieces();
            shared.with(move |host| {
                if host.bundles.contains_key(&info_hash) {
                    return Err(NetError::Argument(format!(
                        "bundle {info_hash} is already added"
                    )));
                }
                let mut bundle = new_bundle(
                    Role::Seed,
                    Some(info.name.clone()),
                    Some(info.clone()),
                    Some(Bitfield::full(pieces)),
                    Some(torrent.clone()),
                    Some(fileset),
                );
                if let Some(server) = server {
                    let mut job = new_upload(&info, server, token, torrent);
                    if paused {
                        job.plan.pause();
                    }
                    bundle.upload = Some(job);
                }
                host.bundles.insert(info_hash, bundle);
                let add = AddBundle {
                    source: BundleSource::Metainfo(Box::new(metainfo)),
                    role: Role::Seed,
                    have: Bitfield::full(pieces),
                    selection: None,
                    paused,
                    client_trackers,
                };
                if let Err(e) = host.feed(Input::Command(Command::AddBundle(Box::new(add)))) {
                    host.bundles.remove(&info_hash);
                    return Err(e.into());
                }
                host.feed(bundle_limits(info_hash, &options))?;
                host.drive_upload(info_hash);
                Ok(())
            })??;
            Ok(JsValue::from_str(&info_hash.to_hex()))
        })
    }

    /// Starts downloading a bundle from a `.torrent` (`Uint8Array` or
    /// `ArrayBuffer`), a `magnet:` link, or a share link (the server's
    /// `http(s)://SERVER/b/<info hash>` page, or any `.torrent` URL).
    /// Pieces already stored (an earlier run) are kept. `options`:
    /// `{selection?: number[]` (file indices), `paused?: boolean`,
    /// `uploadLimit?`, `downloadLimit?` (the bundle's own caps, bytes per
    /// second)}`. Resolves to the info hash.
    #[wasm_bindgen(js_name = addDownload)]
    pub fn add_download(&self, source: JsValue, options: JsValue) -> Promise {
        let shared = self.shared.clone();
        future_to_promise(async move {
            let paused = field(&options, "paused").as_bool().unwrap_or(false);
            let selection = field(&options, "selection").dyn_ref::<Array>().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_f64())
                    .filter(|v| *v >= 0.0)
                    .map(|v| v as usize)
                    .collect::<Vec<_>>()
            });
            let storage = shared.with(|h| h.storage.clone())?;
            let (bundle, add, web_seeds) = match resolve(source).await? {
                Source::Torrent(bytes) => {
                    let metainfo = Metainfo::from_torrent_bytes(&bytes).map_err(NetError::from)?;
                    let info = Rc::new(metainfo.info.clone());
                    let have = storage
                        .have(metainfo.info_hash, info.lengths.num_pieces())
                        .await?;
                    let bundle = new_bundle(
                        Role::Download,
                        Some(info.name.clone()),
                        Some(info),
                        Some(have.clone()),
                        Some(Rc::new(bytes)),
                        None,
                    );
                    // A complete download needs no word from the servers.
                    let web_seeds = if have.is_full() {
                        Vec::new()
                    } else {
                        metainfo.url_list.clone()
                    };
                    let add = AddBundle {
                        source: BundleSource::Metainfo(Box::new(metainfo)),
                        role: Role::Download,
                        have,
                        selection,
                        paused,
                        client_trackers: true,
                    };
                    (bundle, add, web_seeds)
                }
                Source::Magnet(magnet) => {
                    let bundle = new_bundle(
                        Role::Download,
                        magnet.display_name.clone(),
                        None,
                        None,
                        None,
                        None,
                    );
                    let web_seeds = magnet.web_seeds.clone();
                    let add = AddBundle {
                        source: BundleSource::Magnet(magnet),
                        role: Role::Download,
                        have: Bitfield::new(0),
                        selection,
                        paused,
                        client_trackers: true,
                    };
                    (bundle, add, web_seeds)
                }
            };
            let info_hash = add.source.info_hash();
            shared.with(move |host| {
                if host.bundles.contains_key(&info_hash) {
                    return Err(NetError::Argument(format!(
                        "bundle {info_hash} is already added"
                    )));
                }
                host.bundles.insert(info_hash, bundle);
                if let Err(e) = host.feed(Input::Command(Command::AddBundle(Box::new(add)))) {
                    host.bundles.remove(&info_hash);
                    return Err(e.into());
                }
                // Before the web seeds start: no byte goes uncapped.
                host.feed(bundle_limits(info_hash, &options))?;
                host.watch_web_seeds(info_hash, &web_seeds);
                Ok(())
            })??;
            Ok(JsValue::from_str(&info_hash.to_hex()))
        })
    }

    /// Pauses a transfer (and its upload): it moves no bytes until resumed.
    pub fn pause(&self, info_hash: &str) -> Result<(), JsValue> {
        let h = parse_hash(info_hash)?;
        self.command(Command::Pause(h))?;
        self.shared.with(|host| {
            if let Some(job) = host.bundles.get_mut(&h).and_then(|b| b.upload.as_mut()) {
                job.plan.pause();
            }
        })?;
        Ok(())
    }

    /// Resumes a paused transfer (and its upload).
    pub fn resume(&self, info_hash: &str) -> Result<(), JsValue> {
        let h = parse_hash(info_hash)?;
        self.command(Command::Resume(h))?;
        self.shared.with(|host| {
            if let Some(job) = host.bundles.get_mut(&h).and_then(|b| b.upload.as_mut()) {
                job.plan.resume();
            }
            host.drive_upload(h);
        })?;
        Ok(())
    }

    /// Stops a transfer and forgets it; with `deleteData`, its stored pieces
    /// (and upload token) are deleted too.
    pub fn remove(&self, info_hash: &str, delete_data: bool) -> Promise {
        let shared = self.shared.clone();
        let info_hash = info_hash.to_owned();
        future_to_promise(async move {
            let h = parse_hash(&info_hash)?;
            let storage = shared.with(|host| {
                let r = host.feed(Input::Command(Command::Remove(h)));
                host.bundles.remove(&h);
                host.forget_pieces(h);
                r.map(|()| host.storage.clone())
            })?;
            let storage = storage.map_err(NetError::from)?;
            if delete_data {
                storage.delete_bundle(h).await?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Chooses the files to download (`null`: all).
    #[wasm_bindgen(js_name = setSelection)]
    pub fn set_selection(&self, info_hash: &str, files: JsValue) -> Result<(), JsValue> {
        let h = parse_hash(info_hash)?;
        let files = files.dyn_ref::<Array>().map(|a| {
            a.iter()
                .filter_map(|v| v.as_f64())
                .filter(|v| *v >= 0.0)
                .map(|v| v as usize)
                .collect()
        });
        self.command(Command::SetSelection {
            info_hash: h,
            files,
        })
    }

    /// Sets rate caps in bytes per second (`null` or 0: none), for one
    /// bundle or (with `infoHash` null) for all together.
    #[wasm_bindgen(js_name = setLimits)]
    pub fn set_limits(
        &self,
        info_hash: Option<String>,
        upload: Option<f64>,
        download: Option<f64>,
    ) -> Result<(), JsValue> {
        let scope = match info_hash {
            Some(s) => LimitScope::Bundle(parse_hash(&s)?),
            None => LimitScope::Global,
        };
        let limits = Limits {
            upload: rate(&upload.map_or(JsValue::NULL, JsValue::from_f64)),
            download: rate(&download.map_or(JsValue::NULL, JsValue::from_f64)),
        };
        self.command(Command::SetLimits { scope, limits })
    }

    /// Every transfer: `{infoHash, name, role, state, pausedReason,
    /// completed, error, progress: {haveBytes, wantedBytes, totalBytes,
    /// downRatePeers, downRateServer, upRate, downloadedPeers,
    /// downloadedServer, uploadedPeers, peers, paused}, upload: {phase,
    /// piecesDone, piecesTotal, bytesDone, bytesTotal, bytesSent, error} |
    /// null, files: [{index, path, length, offset}]}`.
    pub fn transfers(&self) -> Result<Array, JsValue> {
        Ok(self.shared.with(|host| {
            let now = crate::engine::time::Instant::from_millis_f64(super::host::now_ms());
            let list = Array::new();
            let hashes: Vec<InfoHash> = host.bundles.keys().copied().collect();
            for h in hashes {
                let progress = host.client.progress(now, h);
                if let Some(b) = host.bundles.get(&h) {
                    list.push(&js::transfer(h, b, progress.as_ref()));
                }
            }
            list
        })?)
    }

    /// One transfer (see [`transfers`](Self::transfers)), or `null`.
    pub fn transfer(&self, info_hash: &str) -> Result<JsValue, JsValue> {
        let h = parse_hash(info_hash)?;
        Ok(self.shared.with(|host| {
            let now = crate::engine::time::Instant::from_millis_f64(super::host::now_ms());
            let progress = host.client.progress(now, h);
            host.bundles
                .get(&h)
                .map_or(JsValue::NULL, |b| js::transfer(h, b, progress.as_ref()))
        })?)
    }

    /// The `.torrent` of a transfer, when the host has it.
    pub fn torrent(&self, info_hash: &str) -> Result<Option<Uint8Array>, JsValue> {
        let h = parse_hash(info_hash)?;
        Ok(self.shared.with(|host| {
            host.bundles
                .get(&h)
                .and_then(|b| b.torrent.as_ref())
                .map(|t| Uint8Array::from(t.as_slice()))
        })?)
    }

    /// A file of a transfer as a `Blob` (index into the torrent's files), for
    /// `downloads.download`: a send's own file, or for a download a `File`
    /// in the origin private file system written piece by piece from the
    /// stored pieces (one piece in memory at a time; see `saves.rs` for why
    /// not a Blob composed of the stored ones), or without one a Blob the
    /// browser builds from a stream of those pieces. Hand it back to
    /// [`releaseFile`](Self::release_file) once the download has read it.
    #[wasm_bindgen(js_name = fileBlob)]
    pub fn file_blob(&self, info_hash: &str, index: u32, content_type: Option<String>) -> Promise {
        let shared = self.shared.clone();
        let saves = self.saves.clone();
        let info_hash = info_hash.to_owned();
        future_to_promise(async move {
            let h = parse_hash(&info_hash)?;
            let (files, info, storage) = shared.with(|host| {
                let b = host.bundles.get(&h);
                (
                    b.and_then(|b| b.files.clone()),
                    b.and_then(|b| b.info.clone()),
                    host.storage.clone(),
                )
            })?;
            let info = info.ok_or_else(|| NetError::UnknownBundle(info_hash.clone()))?;
            let index = index as usize;
            if let Some(files) = files {
                return files
                    .file(index)
                    .map(JsValue::from)
                    .ok_or_else(|| NetError::Argument(format!("no file {index}")).into());
            }
            // A piece that reads back wrong is fetched again through the
            // engine, and the save waits for it.
            let refetch = |piece: u32, damaged: bool| {
                shared
                    .with(|host| host.await_refetch(h, piece, damaged))
                    .ok()
                    .flatten()
            };
            let blob = saves
                .save(
                    &storage,
                    h,
                    &info,
                    index,
                    content_type
                        .as_deref()
                        .unwrap_or("application/octet-stream"),
                    &refetch,
                )
                .await?;
            Ok(blob.into())
        })
    }

    /// Deletes the save file behind a Blob [`fileBlob`](Self::file_blob)
    /// returned (its `name`), once the download has read it; any other
    /// Blob or name is left alone.
    #[wasm_bindgen(js_name = releaseFile)]
    pub fn release_file(&self, file: JsValue) -> Promise {
        let saves = self.saves.clone();
        let name = file
            .as_string()
            .or_else(|| file.dyn_ref::<web_sys::File>().map(web_sys::File::name));
        future_to_promise(async move {
            if let Some(name) = name {
                saves.release(&name).await;
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    fn command(&self, command: Command) -> Result<(), JsValue> {
        self.shared
            .with(|host| host.feed(Input::Command(command)))?
            .map_err(|e| NetError::from(e).into())
    }
}

/// Where the `.torrent` of a link is: the server's torrent URL for a share
/// link (`http(s)://SERVER/b/<info hash>`), the link itself for another
/// http(s) URL, `null` for anything else.
#[wasm_bindgen(js_name = torrentUrl)]
pub fn torrent_url_of(link: &str) -> Option<String> {
    torrent_url(link)
}
