//! The BEP 19 web seed and the bundle page over real sockets: ranges across pieces and files, 416, 503, CORS.

mod common;

use common::{build_torrent, json_of, TestServer, TestTorrent};

/// Multi-file torrent whose files straddle piece boundaries (16 KiB pieces).
fn album() -> TestTorrent {
    build_torrent(
        "album",
        &[
            ("a.bin", 20_000),
            ("empty", 0),
            ("sub/b.bin", 33_333),
            ("sub/c d.bin", 5),
        ],
        16_384,
        false,
        42,
    )
}

fn file_url(server: &TestServer, t: &TestTorrent, path: &str) -> String {
    let encoded: Vec<String> = path.split('/').map(|s| s.replace(' ', "%20")).collect();
    server.url(&format!(
        "/seed/{}/{}/{}",
        t.hex(),
        t.metainfo.info.name,
        encoded.join("/")
    ))
}

async fn range(server: &TestServer, url: &str, range: &str) -> reqwest::Response {
    server
        .client
        .get(url)
        .header("range", range)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn ranges_across_piece_and_file_boundaries_return_the_exact_bytes() {
    let server = TestServer::start(&[]).await;
    let t = album();
    server.upload_all(&t).await;
    let mut served = 0u64;
    let mut rng = fastrand::Rng::with_seed(5);
    for (path, offset, len) in t.files.iter().filter(|f| f.2 > 0) {
        let path = path.join("/");
        let url = file_url(&server, &t, &path);
        let file = &t.content[*offset as usize..(*offset + *len) as usize];

        // Whole file.
        let r = server.client.get(&url).send().await.expect("request");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["accept-ranges"], "bytes");
        assert_eq!(r.headers()["content-length"], len.to_string().as_str());
        assert_eq!(r.bytes().await.expect("body").as_ref(), file);
        served += len;

        // Ranges that start and end anywhere, including across 16 KiB boundaries.
        for _ in 0..20 {
            let a = rng.u64(0..*len);
            let b = rng.u64(a..*len);
            let r = range(&server, &url, &format!("bytes={a}-{b}")).await;
            assert_eq!(r.status().as_u16(), 206, "{path} {a}-{b}");
            assert_eq!(
                r.headers()["content-range"],
                format!("bytes {a}-{b}/{len}").as_str()
            );
            assert_eq!(
                r.headers()["content-length"],
                (b - a + 1).to_string().as_str()
            );
            assert_eq!(
                r.bytes().await.expect("body").as_ref(),
                &file[a as usize..=b as usize]
            );
            served += b - a + 1;
        }
    }

    // Explicitly across the first piece boundary (16384) of a.bin, and a suffix range.
    let url = file_url(&server, &t, "a.bin");
    let r = range(&server, &url, "bytes=16000-16999").await;
    assert_eq!(
        r.bytes().await.expect("body").as_ref(),
        &t.content[16_000..17_000]
    );
    let r = range(&server, &url, "bytes=-100").await;
    assert_eq!(r.headers()["content-range"], "bytes 19900-19999/20000");
    assert_eq!(
        r.bytes().await.expect("body").as_ref(),
        &t.content[19_900..20_000]
    );
    served += 1100;

    // sub/b.bin spans pieces 1 to 3 of the stream.
    let url = file_url(&server, &t, "sub/b.bin");
    let r = range(&server, &url, "bytes=12000-").await;
    assert_eq!(
        r.bytes().await.expect("body").as_ref(),
        &t.content[20_000 + 12_000..53_333]
    );
    served += 33_333 - 12_000;

    assert_eq!(server.stats().await["bytes_served"], served);
}

#[tokio::test]
async fn unsatisfiable_ranges_get_416_and_empty_files_are_served() {
    let server = TestServer::start(&[]).await;
    let t = album();
    server.upload_all(&t).await;
    let url = file_url(&server, &t, "sub/c d.bin");
    let r = range(&server, &url, "bytes=5-").await;
    assert_eq!(r.status().as_u16(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */5");
    assert!(json_of(r).await.1["error"].is_string());

    let empty = file_url(&server, &t, "empty");
    let r = server.client.get(&empty).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.expect("body").len(), 0);
    assert_eq!(
        range(&server, &empty, "bytes=0-0").await.status().as_u16(),
        416
    );

    let r = server
        .client
        .get(file_url(&server, &t, "missing.bin"))
        .send()
        .await
        .expect("request");
    assert_eq!(json_of(r).await.0, 404);
}

#[tokio::test]
async fn a_range_over_a_missing_piece_is_503_and_others_are_served() {
    let server = TestServer::start(&[]).await;
    let t = album();
    let (_, body) = server.create(&t.bytes).await;
    let token = body["owner_token"].as_str().expect("token").to_string();
    for i in [0, 2, 3] {
        assert_eq!(
            server.put_piece(&t.hex(), i, t.piece(i), &token).await.0,
            201
        );
    }
    let url = file_url(&server, &t, "a.bin");
    // Bytes 0..16383 are in piece 0: served.
    let r = range(&server, &url, "bytes=0-16383").await;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        r.bytes().await.expect("body").as_ref(),
        &t.content[..16_384]
    );
    // Byte 16384 is in piece 1: not yet.
    let r = range(&server, &url, "bytes=16000-16400").await;
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let (_, body) = json_of(r).await;
    assert_eq!(body["missing_piece"], 1);
}

#[tokio::test]
async fn head_gives_the_length_without_a_body() {
    let server = TestServer::start(&[]).await;
    let t = album();
    server.upload_all(&t).await;
    let r = server
        .client
        .head(file_url(&server, &t, "sub/b.bin"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-length"], "33333");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(server.stats().await["bytes_served"], 0);
}

#[tokio::test]
async fn a_single_file_torrent_is_served_at_its_name() {
    let server = TestServer::start(&[]).await;
    let t = build_torrent("movie.mkv", &[("movie.mkv", 40_000)], 32_768, true, 3);
    server.upload_all(&t).await;
    let (_, state) = server.status(&t.hex()).await;
    let seed = state["web_seed"].as_str().expect("web seed").to_string();
    assert_eq!(seed, server.url(&format!("/seed/{}/movie.mkv", t.hex())));
    let r = range(&server, &seed, "bytes=32760-32800").await;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        r.bytes().await.expect("body").as_ref(),
        &t.content[32_760..32_801]
    );
}

#[tokio::test]
async fn cors_preflight_is_answered_and_responses_allow_any_origin() {
    let server = TestServer::start(&[]).await;
    let t = album();
    server.upload_all(&t).await;
    let url = file_url(&server, &t, "a.bin");
    let r = server
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://example.org")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range, cache-control")
        .send()
        .await
        .expect("request");
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    for name in [
        "range",
        "cache-control",
        "user-agent",
        "authorization",
        "content-type",
    ] {
        assert!(allowed.contains(name), "{allowed} lacks {name}");
    }
    assert!(h["access-control-allow-methods"]
        .to_str()
        .expect("ascii")
        .contains("GET"));

    let r = server
        .client
        .get(&url)
        .header("origin", "https://example.org")
        .header("range", "bytes=0-9")
        .send()
        .await
        .expect("request");
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let exposed = h["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    for name in ["content-range", "content-length", "accept-ranges"] {
        assert!(exposed.contains(name), "{exposed} lacks {name}");
    }
    // Errors carry CORS headers too.
    let r = server
        .client
        .get(server.url("/api/bundles/nope"))
        .header("origin", "https://example.org")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn the_bundle_page_names_files_and_links_them() {
    let server = TestServer::start(&[]).await;
    let t = build_torrent(
        "<Trip & co>",
        &[("day 1/a.jpg", 20_000), ("b.jpg", 100)],
        16_384,
        false,
        11,
    );
    server.upload_all(&t).await;
    let r = server
        .client
        .get(server.url(&format!("/b/{}", t.hex())))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/html"));
    let html = r.text().await.expect("body");
    assert!(html.contains(&format!(
        r#"<meta name="swarmdrop-bundle" content="{}">"#,
        t.hex()
    )));
    assert!(html.contains("&lt;Trip &amp; co&gt;"));
    assert!(!html.contains("<Trip"));
    assert!(html.contains("day 1/a.jpg"));
    assert!(html.contains("19.5 KiB"));
    assert!(html.contains(&format!("magnet:?xt=urn:btih:{}", t.hex())));
    assert!(html.contains(&format!(
        "tr=ws%3A%2F%2F{}%2Fannounce",
        server.running.addr.to_string().replace(':', "%3A")
    )));
    assert!(html.contains("&amp;ws=http%3A%2F%2F"));
    assert!(html.contains(&format!("/api/bundles/{}/torrent", t.hex())));
    assert!(html.contains(&format!(
        "/seed/{}/%3CTrip%20%26%20co%3E/day%201/a.jpg",
        t.hex()
    )));
    assert!(html.contains("id=\"swarmdrop-open\""));

    // The file link works.
    let link = server.url(&format!(
        "/seed/{}/%3CTrip%20%26%20co%3E/day%201/a.jpg",
        t.hex()
    ));
    let r = server.client.get(link).send().await.expect("request");
    assert_eq!(
        r.bytes().await.expect("body").as_ref(),
        &t.content[..20_000]
    );
}

#[tokio::test]
async fn web_seed_paths_are_found_however_clients_join_them() {
    let server = TestServer::start(&[]).await;
    let t = album();
    server.upload_all(&t).await;
    let base = server.url(&format!("/seed/{}", t.hex()));
    for url in [
        format!("{base}/album/sub/b.bin"),
        format!("{base}//album/sub/b.bin"),
        format!("{base}/album//sub/b.bin/"),
        format!("{base}/album/sub%2Fb.bin"),
    ] {
        let r = range(&server, &url, "bytes=0-9").await;
        assert_eq!(r.status().as_u16(), 206, "{url}");
        assert_eq!(
            r.bytes().await.expect("body").as_ref(),
            &t.content[20_000..20_010],
            "{url}"
        );
    }
    // The directory itself is not a file of a torrent with several files.
    assert_eq!(
        range(&server, &format!("{base}/"), "bytes=0-9")
            .await
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        range(&server, &format!("{base}/other/sub/b.bin"), "bytes=0-9")
            .await
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test]
async fn a_files_list_with_one_file_is_also_served_at_the_directory_url() {
    // WebTorrent requests the url-list URL unchanged when a torrent has one file.
    let server = TestServer::start(&[]).await;
    let t = build_torrent("folder", &[("sub/only.bin", 30_000)], 16_384, false, 12);
    server.upload_all(&t).await;
    let (_, state) = server.status(&t.hex()).await;
    let dir = state["web_seed"].as_str().expect("web seed").to_string();
    assert!(dir.ends_with('/'));
    for url in [dir.clone(), format!("{dir}folder/sub/only.bin")] {
        let r = range(&server, &url, "bytes=16380-16390").await;
        assert_eq!(r.status().as_u16(), 206, "{url}");
        assert_eq!(
            r.bytes().await.expect("body").as_ref(),
            &t.content[16_380..16_391]
        );
    }
}
