//! Shared helpers for the server's integration tests: a server on loopback and torrents built in memory.
#![allow(dead_code)]

use clap::Parser;
use swarmdrop::engine::create::TorrentBuilder;
use swarmdrop::engine::hash::PieceHasher;
use swarmdrop::engine::metainfo::Metainfo;
use swarmdrop_server::{start, Config, Running};
use tempfile::TempDir;

/// A server on 127.0.0.1 with a fresh data directory.
pub struct TestServer {
    pub running: Running,
    pub dir: TempDir,
    pub client: reqwest::Client,
}

impl TestServer {
    /// Starts a server; `args` are extra command-line flags.
    pub async fn start(args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, args).await
    }

    /// Starts a server over an existing data directory.
    pub async fn start_in(dir: TempDir, args: &[&str]) -> TestServer {
        let data_dir = dir.path().to_string_lossy().to_string();
        let mut argv = vec![
            "swarmdrop-server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.as_str(),
        ];
        argv.extend_from_slice(args);
        let config = Config::parse_from(argv);
        let running = start(config).await.expect("server starts");
        TestServer {
            running,
            dir,
            client: reqwest::Client::new(),
        }
    }

    /// `http://127.0.0.1:port` + path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.running.public_url, path)
    }

    /// `ws://127.0.0.1:port/announce`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/announce", self.running.addr)
    }

    /// Stops the server and hands back its data directory.
    pub async fn stop(self) -> TempDir {
        self.running.stop().await.expect("server stops");
        self.dir
    }

    /// Creates a bundle; returns the response status and JSON body.
    pub async fn create(&self, torrent: &[u8]) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url("/api/bundles"))
            .body(torrent.to_vec())
            .send()
            .await
            .expect("request");
        json_of(r).await
    }

    /// Uploads one piece with `token`.
    pub async fn put_piece(
        &self,
        info_hash: &str,
        index: u32,
        data: &[u8],
        token: &str,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .put(self.url(&format!("/api/bundles/{info_hash}/pieces/{index}")))
            .bearer_auth(token)
            .body(data.to_vec())
            .send()
            .await
            .expect("request");
        json_of(r).await
    }

    /// `GET /api/bundles/{info_hash}`.
    pub async fn status(&self, info_hash: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .get(self.url(&format!("/api/bundles/{info_hash}")))
            .send()
            .await
            .expect("request");
        json_of(r).await
    }

    /// `GET /api/stats`.
    pub async fn stats(&self) -> serde_json::Value {
        let r = self
            .client
            .get(self.url("/api/stats"))
            .send()
            .await
            .expect("request");
        json_of(r).await.1
    }

    /// Creates the bundle and uploads every piece; returns the owner token.
    pub async fn upload_all(&self, t: &TestTorrent) -> String {
        let (status, body) = self.create(&t.bytes).await;
        assert_eq!(status, 201, "{body}");
        let token = body["owner_token"].as_str().expect("token").to_string();
        for i in 0..t.num_pieces() {
            let (status, body) = self.put_piece(&t.hex(), i, t.piece(i), &token).await;
            assert_eq!(status, 201, "{body}");
        }
        token
    }
}

/// Status and JSON body of a response (the body must be JSON).
pub async fn json_of(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let bytes = r.bytes().await.expect("body");
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "status {status}, content-type {ct:?}: body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

/// A torrent built in memory, with the content it describes.
pub struct TestTorrent {
    pub bytes: Vec<u8>,
    pub metainfo: Metainfo,
    /// All files concatenated.
    pub content: Vec<u8>,
    /// (path components, offset, length) per file.
    pub files: Vec<(Vec<String>, u64, u64)>,
}

impl TestTorrent {
    pub fn hex(&self) -> String {
        self.metainfo.info_hash.to_hex()
    }

    pub fn piece_length(&self) -> usize {
        self.metainfo.info.lengths.piece_length() as usize
    }

    pub fn num_pieces(&self) -> u32 {
        self.metainfo.info.lengths.num_pieces()
    }

    pub fn piece(&self, i: u32) -> &[u8] {
        let start = i as usize * self.piece_length();
        let end = (start + self.piece_length()).min(self.content.len());
        &self.content[start..end]
    }
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// A torrent named `name` built with the engine's `TorrentBuilder`: a
/// single-file one (`single`, one file called `name`) or a multi-file one with
/// the given `dir/file` paths, over pseudo-random content.
pub fn build_torrent(
    name: &str,
    files: &[(&str, usize)],
    piece_length: u32,
    single: bool,
    seed: u64,
) -> TestTorrent {
    let mut content = Vec::new();
    let mut layout = Vec::new();
    let mut builder = TorrentBuilder::new(name)
        .piece_length(piece_length)
        .created_by(Some("swarmdrop-server tests".into()));
    for (i, (path, len)) in files.iter().enumerate() {
        let components: Vec<String> = if single {
            assert_eq!(files.len(), 1, "a single-file torrent has one file");
            vec![name.to_string()]
        } else {
            path.split('/').map(str::to_string).collect()
        };
        layout.push((components.clone(), content.len() as u64, *len as u64));
        content.extend_from_slice(&random_bytes(seed.wrapping_add(i as u64), *len));
        builder = builder.file(components, *len as u64);
    }
    let lengths = builder.lengths().expect("lengths");
    let hashes = PieceHasher::hash_all(lengths, &content).expect("hashes");
    let metainfo = builder.build(hashes).expect("torrent builds");
    assert_eq!(metainfo.info.multi_file, !single);
    let bytes = metainfo.to_torrent_bytes();
    TestTorrent {
        bytes,
        metainfo,
        content,
        files: layout,
    }
}
