//! The WebSocket tracker over real sockets: relay of offers and answers, scrape, errors, cleanup.

mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const IH: &str = "swarmdrop-test-hash1";

fn pid(n: u8) -> String {
    format!("-SD0100-peer{n:08}")
}

async fn connect(server: &TestServer) -> Ws {
    connect_async(server.ws_url()).await.expect("ws connects").0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next JSON frame, failing after two seconds.
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .expect("a frame within 2 s")
            .expect("socket open")
            .expect("frame ok");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("json frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Asserts that nothing arrives for a while.
async fn silent(ws: &mut Ws) {
    if let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
        panic!("expected no frame, got {msg:?}");
    }
}

async fn join(ws: &mut Ws, peer: &str, left: u64) -> Value {
    send(ws, json!({"action":"announce","info_hash":IH,"peer_id":peer,"left":left,"event":"started","uploaded":0,"downloaded":0})).await;
    recv(ws).await
}

fn offer(id: &str) -> Value {
    json!({"offer_id": id, "offer": {"type": "offer", "sdp": format!("v=0 sdp of {id}")}})
}

#[tokio::test]
async fn offers_reach_other_peers_and_answers_reach_only_the_offerer() {
    let server = TestServer::start(&[]).await;
    let (mut a, mut b, mut c) = (
        connect(&server).await,
        connect(&server).await,
        connect(&server).await,
    );
    join(&mut b, &pid(2), 100).await;
    join(&mut c, &pid(3), 0).await;

    send(
        &mut a,
        json!({"action":"announce","info_hash":IH,"peer_id":pid(1),"left":100,"numwant":2,
               "offers":[offer("offer-aaaaaaaaaaaaaa"), offer("offer-bbbbbbbbbbbbbb")]}),
    )
    .await;
    let response = recv(&mut a).await;
    assert_eq!(response["action"], "announce");
    assert_eq!(response["complete"], 1);
    assert_eq!(response["incomplete"], 2);
    assert_eq!(response["interval"], 120);

    let to_b = recv(&mut b).await;
    let to_c = recv(&mut c).await;
    for m in [&to_b, &to_c] {
        assert_eq!(m["peer_id"], pid(1));
        assert_eq!(m["info_hash"], IH);
        assert_eq!(m["offer"]["type"], "offer");
    }
    assert_ne!(
        to_b["offer_id"], to_c["offer_id"],
        "each offer to a different peer"
    );
    silent(&mut a).await;

    // c answers the offer that went to b: not forwarded, c is told why.
    send(
        &mut c,
        json!({"action":"announce","info_hash":IH,"peer_id":pid(3),"to_peer_id":pid(1),
               "offer_id":to_b["offer_id"],"answer":{"type":"answer","sdp":"forged"}}),
    )
    .await;
    assert!(recv(&mut c).await["failure reason"].is_string());
    silent(&mut a).await;

    // b answers its own offer: a gets it.
    send(
        &mut b,
        json!({"action":"announce","info_hash":IH,"peer_id":pid(2),"to_peer_id":pid(1),
               "offer_id":to_b["offer_id"],"answer":{"type":"answer","sdp":"b's answer"}}),
    )
    .await;
    let answer = recv(&mut a).await;
    assert_eq!(answer["peer_id"], pid(2));
    assert_eq!(answer["offer_id"], to_b["offer_id"]);
    assert_eq!(answer["answer"]["sdp"], "b's answer");
    silent(&mut b).await;

    assert_eq!(server.stats().await["offers_relayed"], 2);
}

#[tokio::test]
async fn offers_never_go_back_to_the_sender() {
    let server = TestServer::start(&[]).await;
    let mut a = connect(&server).await;
    join(&mut a, &pid(1), 10).await;
    send(
        &mut a,
        json!({"action":"announce","info_hash":IH,"peer_id":pid(1),"left":10,"numwant":3,
               "offers":[offer("offer-aaaaaaaaaaaaaa"), offer("offer-bbbbbbbbbbbbbb"), offer("offer-cccccccccccccc")]}),
    )
    .await;
    assert_eq!(recv(&mut a).await["incomplete"], 1);
    silent(&mut a).await;
    assert_eq!(server.stats().await["offers_relayed"], 0);
}

#[tokio::test]
async fn scrape_counts_seeders_leechers_and_follows_departures() {
    let server = TestServer::start(&[]).await;
    let (mut a, mut b, mut c) = (
        connect(&server).await,
        connect(&server).await,
        connect(&server).await,
    );
    join(&mut a, &pid(1), 0).await;
    join(&mut b, &pid(2), 50).await;
    send(&mut c, json!({"action":"scrape","info_hash":IH})).await;
    let s = recv(&mut c).await;
    assert_eq!(s["action"], "scrape");
    assert_eq!(
        s["files"][IH],
        json!({"complete":1,"incomplete":1,"downloaded":0})
    );

    // b stops, a's connection goes away.
    send(
        &mut b,
        json!({"action":"announce","info_hash":IH,"peer_id":pid(2),"left":50,"event":"stopped"}),
    )
    .await;
    recv(&mut b).await;
    a.close(None).await.expect("close");
    drop(a);
    let mut counts = Value::Null;
    for _ in 0..20 {
        send(
            &mut c,
            json!({"action":"scrape","info_hash":[IH, "other-hash-xxxxxxxxx"]}),
        )
        .await;
        let s = recv(&mut c).await;
        counts = s["files"][IH].clone();
        if counts["complete"] == 0 {
            assert_eq!(s["files"]["other-hash-xxxxxxxxx"]["incomplete"], 0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts, json!({"complete":0,"incomplete":0,"downloaded":0}));
}

#[tokio::test]
async fn malformed_messages_get_a_failure_reason_and_the_connection_survives() {
    let server = TestServer::start(&[]).await;
    let mut a = connect(&server).await;
    a.send(Message::text("{not json")).await.expect("send");
    assert!(recv(&mut a).await["failure reason"]
        .as_str()
        .expect("reason")
        .contains("json"));
    send(
        &mut a,
        json!({"action":"announce","info_hash":"too-long-info-hash-xx","peer_id":pid(1)}),
    )
    .await;
    let f = recv(&mut a).await;
    assert!(
        f["failure reason"]
            .as_str()
            .expect("reason")
            .contains("info_hash"),
        "{f}"
    );
    send(&mut a, json!({"action":"fly"})).await;
    assert!(recv(&mut a).await["failure reason"].is_string());
    // Still usable.
    assert_eq!(join(&mut a, &pid(1), 0).await["complete"], 1);
}

#[tokio::test]
async fn a_peer_id_belongs_to_its_connection() {
    let server = TestServer::start(&[]).await;
    let (mut a, mut b) = (connect(&server).await, connect(&server).await);
    join(&mut a, &pid(1), 0).await;
    let f = join(&mut b, &pid(1), 0).await;
    assert!(f["failure reason"]
        .as_str()
        .expect("reason")
        .contains("another connection"));
    send(
        &mut b,
        json!({"action":"announce","info_hash":IH,"peer_id":pid(1),"event":"stopped"}),
    )
    .await;
    recv(&mut b).await;
    send(&mut b, json!({"action":"scrape","info_hash":IH})).await;
    assert_eq!(recv(&mut b).await["files"][IH]["complete"], 1);
}

#[tokio::test]
async fn an_oversized_frame_closes_the_connection() {
    let server = TestServer::start(&[]).await;
    let mut a = connect(&server).await;
    let huge = format!(r#"{{"action":"announce","pad":"{}"}}"#, "x".repeat(200_000));
    let _ = a.send(Message::text(huge)).await;
    // The server ends the connection (possibly after a failure reason).
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match a.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true));
    // The server is fine.
    let mut b = connect(&server).await;
    assert_eq!(join(&mut b, &pid(2), 0).await["complete"], 1);
}

#[tokio::test]
async fn an_announce_longer_than_one_socket_read_is_relayed_intact() {
    // Ten offers of 3,000-byte SDPs: about 31 KB, more than the server's
    // read buffer, so the frame arrives over several reads.
    let server = TestServer::start(&[]).await;
    let mut peers = Vec::new();
    for i in 0..10u8 {
        let mut ws = connect(&server).await;
        join(&mut ws, &pid(10 + i), 100).await;
        peers.push(ws);
    }
    let sdp = |i: usize| {
        format!(
            "v=0\r\n{}",
            char::from(b'a' + i as u8).to_string().repeat(3000)
        )
    };
    let offers: Vec<Value> = (0..10)
        .map(|i| json!({"offer_id": format!("offer-big-{i:010}"), "offer": {"type": "offer", "sdp": sdp(i)}}))
        .collect();
    let frame = json!({"action":"announce","info_hash":IH,"peer_id":pid(1),"left":100,"numwant":10,"offers":offers});
    assert!(frame.to_string().len() > swarmdrop_server::tracker::READ_BUFFER_BYTES);
    let mut a = connect(&server).await;
    send(&mut a, frame).await;
    assert_eq!(recv(&mut a).await["incomplete"], 11);
    let mut got = Vec::new();
    for ws in &mut peers {
        let m = recv(ws).await;
        let id = m["offer_id"].as_str().expect("offer id").to_string();
        let i: usize = id["offer-big-".len()..].parse().expect("index");
        assert_eq!(m["offer"]["sdp"], sdp(i));
        got.push(i);
    }
    got.sort_unstable();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn frames_queued_for_a_connection_arrive_complete_and_in_order() {
    let server = TestServer::start(&[]).await;
    let mut a = connect(&server).await;
    // Forty announces sent at once: their responses queue up for the writer,
    // which sends what is queued together.
    let hashes: Vec<String> = (0..40).map(|i| format!("swarmdrop-order{i:05}")).collect();
    for h in &hashes {
        a.feed(Message::text(
            json!({"action":"announce","info_hash":h,"peer_id":pid(1),"left":1}).to_string(),
        ))
        .await
        .expect("feed");
    }
    a.flush().await.expect("flush");
    for h in &hashes {
        let m = recv(&mut a).await;
        assert_eq!(m["info_hash"], h.as_str());
        assert_eq!(m["incomplete"], 1);
    }
    silent(&mut a).await;
}
