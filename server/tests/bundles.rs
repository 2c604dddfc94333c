//! The bundle API over real sockets: create, upload verified pieces, state, delete, limits, expiry, restart.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{build_torrent, json_of, TestServer};
use swarmdrop::engine::bitfield::Bitfield;
use swarmdrop::engine::metainfo::Metainfo;

fn have_of(body: &serde_json::Value, n: u32) -> Bitfield {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["have"].as_str().expect("have"))
        .expect("base64");
    Bitfield::from_bytes(&bytes, n).expect("bitfield")
}

/// Files stored under the data directory (pieces, torrents, records).
fn stored_files(dir: &std::path::Path) -> Vec<String> {
    fn walk(d: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p.to_string_lossy().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

#[tokio::test]
async fn pieces_upload_in_any_order_and_a_wrong_piece_is_refused() {
    let server = TestServer::start(&[]).await;
    let t = build_torrent(
        "holiday",
        &[("a.jpg", 40_000), ("b/c.mov", 70_001)],
        16_384,
        false,
        1,
    );
    let (status, body) = server.create(&t.bytes).await;
    assert_eq!(status, 201, "{body}");
    let token = body["owner_token"].as_str().expect("token").to_string();
    assert_eq!(token.len(), 64);
    assert_eq!(body["info_hash"], t.hex());
    assert!(body["expires_at"]
        .as_str()
        .expect("expires_at")
        .ends_with('Z'));
    assert_eq!(body["url"], server.url(&format!("/b/{}", t.hex())));

    // A wrong piece is refused and not stored.
    let mut wrong = t.piece(2).to_vec();
    wrong[100] ^= 1;
    let (status, body) = server.put_piece(&t.hex(), 2, &wrong, &token).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().expect("error").contains("SHA-1"));
    let (_, state) = server.status(&t.hex()).await;
    assert_eq!(state["have_count"], 0);
    assert!(!stored_files(server.dir.path())
        .iter()
        .any(|f| f.contains("pieces")));

    // Every other piece in a shuffled order, skipping piece 5.
    let mut order: Vec<u32> = (0..t.num_pieces()).filter(|&i| i != 5).collect();
    fastrand::Rng::with_seed(9).shuffle(&mut order);
    for &i in &order {
        let (status, body) = server.put_piece(&t.hex(), i, t.piece(i), &token).await;
        assert_eq!(status, 201, "piece {i}: {body}");
        assert_eq!(body["stored"], true);
    }
    // Idempotent.
    let (status, body) = server
        .put_piece(&t.hex(), order[0], t.piece(order[0]), &token)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], false);

    let (status, state) = server.status(&t.hex()).await;
    assert_eq!(status, 200);
    let n = t.num_pieces();
    assert_eq!(state["num_pieces"], n);
    assert_eq!(state["have_count"], n - 1);
    assert_eq!(state["complete"], false);
    assert_eq!(state["name"], "holiday");
    assert_eq!(state["total_length"], 110_001);
    assert_eq!(state["piece_length"], 16_384);
    assert_eq!(state["files"][1]["path"], "b/c.mov");
    let have = have_of(&state, n);
    for i in 0..n {
        assert_eq!(have.get(i), i != 5, "piece {i}");
    }

    // The last piece too (it is short).
    let (status, body) = server.put_piece(&t.hex(), 5, t.piece(5), &token).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["complete"], true);

    // Every body received counts, the refused and the repeated ones too.
    let received: usize = wrong.len()
        + order.iter().map(|&i| t.piece(i).len()).sum::<usize>()
        + t.piece(order[0]).len()
        + t.piece(5).len();
    assert_eq!(server.stats().await["bytes_received"], received as u64);
}

#[tokio::test]
async fn uploads_need_the_owner_token_and_the_exact_length() {
    let server = TestServer::start(&[]).await;
    let t = build_torrent("x", &[("x.bin", 50_000)], 16_384, true, 2);
    let (_, body) = server.create(&t.bytes).await;
    let token = body["owner_token"].as_str().expect("token").to_string();
    let url = server.url(&format!("/api/bundles/{}/pieces/0", t.hex()));

    let r = server
        .client
        .put(&url)
        .body(t.piece(0).to_vec())
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_eq!(json_of(r).await.0, 401);
    let (status, _) = server
        .put_piece(&t.hex(), 0, t.piece(0), &"0".repeat(64))
        .await;
    assert_eq!(status, 403);

    let (status, body) = server
        .put_piece(&t.hex(), 0, &t.piece(0)[..100], &token)
        .await;
    assert_eq!(status, 400, "{body}");
    let mut long = t.piece(0).to_vec();
    long.push(0);
    let (status, body) = server.put_piece(&t.hex(), 0, &long, &token).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = server.put_piece(&t.hex(), 99, t.piece(0), &token).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.put_piece(&t.hex(), 0, t.piece(0), &token).await;
    assert_eq!(status, 201, "{body}");

    // A streamed body of unknown length that runs long is cut off.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(t.piece(1).to_vec()), Ok(vec![1; 10])];
    let r = server
        .client
        .put(server.url(&format!("/api/bundles/{}/pieces/1", t.hex())))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("request");
    assert_eq!(json_of(r).await.0, 413);
}

#[tokio::test]
async fn creating_a_bundle_twice_conflicts_without_revealing_the_token() {
    let server = TestServer::start(&[]).await;
    let t = build_torrent("dup", &[("a", 20_000)], 16_384, true, 3);
    let token = server.upload_all(&t).await;
    let (status, body) = server.create(&t.bytes).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].is_string());
    assert_eq!(body["have_count"], t.num_pieces());
    assert!(body.get("owner_token").is_none());
    assert!(!body.to_string().contains(&token));
}

#[tokio::test]
async fn bad_and_oversized_torrents_are_refused_with_a_reason() {
    let server =
        TestServer::start(&["--max-torrent-size", "4K", "--max-bundle-size", "100000"]).await;
    let (status, body) = server.create(b"not bencode").await;
    assert_eq!(status, 400);
    assert!(body["error"]
        .as_str()
        .expect("error")
        .contains("not a valid torrent"));
    let (status, body) = server.create(b"").await;
    assert_eq!(status, 400, "{body}");

    let big = build_torrent("big", &[("a", 200_000)], 16_384, true, 4);
    let (status, body) = server.create(&big.bytes).await;
    assert_eq!(status, 413);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("at most 100000 bytes"),
        "{body}"
    );

    let many = build_torrent("many", &[("a", 90_000)], 16_384, true, 5);
    let mut padded = many.bytes.clone();
    padded.extend(std::iter::repeat_n(b' ', 5000));
    let (status, body) = server.create(&padded).await;
    assert_eq!(status, 413);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains(".torrent is larger"),
        "{body}"
    );
}

#[tokio::test]
async fn delete_needs_the_right_token_and_removes_everything() {
    let server = TestServer::start(&[]).await;
    let t = build_torrent("gone", &[("a", 30_000), ("b", 3)], 16_384, false, 6);
    let token = server.upload_all(&t).await;
    let url = server.url(&format!("/api/bundles/{}", t.hex()));

    let r = server
        .client
        .delete(&url)
        .bearer_auth("f".repeat(64))
        .send()
        .await
        .expect("request");
    assert_eq!(json_of(r).await.0, 403);
    assert_eq!(server.status(&t.hex()).await.0, 200);

    let r = server
        .client
        .delete(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(server.status(&t.hex()).await.0, 404);
    let r = server
        .client
        .get(server.url(&format!("/seed/{}/gone/a", t.hex())))
        .send()
        .await
        .expect("request");
    assert_eq!(json_of(r).await.0, 404);
    assert_eq!(stored_files(server.dir.path()), Vec::<String>::new());
    assert_eq!(server.stats().await["bundles"], 0);
    // It can be created again, with a new token.
    let (status, body) = server.create(&t.bytes).await;
    assert_eq!(status, 201);
    assert_ne!(body["owner_token"], token.as_str());
}

#[tokio::test]
async fn bundles_expire() {
    // Expiry long enough for the upload to finish first on a loaded machine
    // (at 1 s the bundle could expire mid-upload), short enough to wait for.
    let server = TestServer::start(&["--expiry-secs", "4", "--expiry-check-secs", "1"]).await;
    let t = build_torrent("brief", &[("a", 20_000)], 16_384, true, 7);
    server.upload_all(&t).await;
    let (_, body) = server.status(&t.hex()).await;
    assert!(body["expires_at"].is_string());
    // The sweeper drops the bundle from the registry first (every request
    // sees it gone at once), then deletes its objects: wait for both.
    let mut gone = false;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if server.stats().await["bundles"] == 0 && stored_files(server.dir.path()).is_empty() {
            gone = true;
            break;
        }
    }
    assert!(
        gone,
        "the sweeper removed the bundle and its objects: {:?} left",
        stored_files(server.dir.path())
    );
    assert_eq!(server.status(&t.hex()).await.0, 404);
}

#[tokio::test]
async fn bundles_and_their_pieces_survive_a_restart() {
    let server = TestServer::start(&[]).await;
    let t = build_torrent("kept", &[("a", 60_000)], 16_384, true, 8);
    let (_, body) = server.create(&t.bytes).await;
    let token = body["owner_token"].as_str().expect("token").to_string();
    for i in [0, 2] {
        assert_eq!(
            server.put_piece(&t.hex(), i, t.piece(i), &token).await.0,
            201
        );
    }
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, &[]).await;
    let (status, state) = server.status(&t.hex()).await;
    assert_eq!(status, 200, "{state}");
    let have = have_of(&state, t.num_pieces());
    assert_eq!(
        (0..t.num_pieces())
            .filter(|&i| have.get(i))
            .collect::<Vec<_>>(),
        vec![0, 2]
    );
    // The token still works.
    assert_eq!(
        server.put_piece(&t.hex(), 1, t.piece(1), &token).await.0,
        201
    );
}

#[tokio::test]
async fn the_served_torrent_adds_this_server_and_keeps_the_info_hash() {
    let server = TestServer::start(&[]).await;
    let t = build_torrent(
        "album",
        &[("one", 10_000), ("two", 10_000)],
        16_384,
        false,
        10,
    );
    server.upload_all(&t).await;
    let r = server
        .client
        .get(server.url(&format!("/api/bundles/{}/torrent", t.hex())))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-bittorrent");
    let bytes = r.bytes().await.expect("body");
    let m = Metainfo::from_torrent_bytes(&bytes).expect("valid torrent");
    assert_eq!(m.info_hash, t.metainfo.info_hash);
    assert_eq!(m.info_bytes, t.metainfo.info_bytes);
    assert_eq!(m.url_list, vec![server.url(&format!("/seed/{}/", t.hex()))]);
    assert_eq!(
        m.trackers(),
        vec![format!("ws://{}/announce", server.running.addr)]
    );
    assert_eq!(m.created_by.as_deref(), Some("swarmdrop-server tests"));
}

#[tokio::test]
async fn errors_are_json_everywhere() {
    let server = TestServer::start(&[]).await;
    for (method, path, status) in [
        (reqwest::Method::GET, "/nowhere", 404),
        (reqwest::Method::GET, "/api/bundles/xyz", 400),
        (
            reqwest::Method::GET,
            &format!("/api/bundles/{}", "a".repeat(40)),
            404,
        ),
        (reqwest::Method::PATCH, "/api/bundles", 405),
        (reqwest::Method::GET, "/announce", 400),
    ] {
        let r = server
            .client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .expect("request");
        let (got, body) = json_of(r).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {body}"
        );
    }
}

#[tokio::test]
async fn large_pieces_upload_and_serve() {
    // 4 MiB pieces: well past axum's default 2 MB body limit for extractors.
    let server = TestServer::start(&[]).await;
    let t = build_torrent(
        "large",
        &[("big.bin", 4 * 1024 * 1024 + 1000)],
        4 * 1024 * 1024,
        true,
        13,
    );
    server.upload_all(&t).await;
    let (_, state) = server.status(&t.hex()).await;
    assert_eq!(state["complete"], true);
    let r = server
        .client
        .get(server.url(&format!("/seed/{}/large", t.hex())))
        .header("range", "bytes=4194000-4194999")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        r.bytes().await.expect("body").as_ref(),
        &t.content[4_194_000..4_195_000]
    );
}
