//! The WebSocket tracker over real sockets: relay of offers and answers, scrape, errors, cleanup.

mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

// ------------------------------------------------- raw WebSocket frames

/// The opening handshake's key of RFC 6455 section 1.3, and its answer.
const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A TCP connection past the opening handshake, for frames no WebSocket
/// client library sends.
async fn raw_connect(server: &TestServer) -> TcpStream {
    let mut tcp = TcpStream::connect(server.running.addr)
        .await
        .expect("tcp connects");
    let request = format!(
        "GET /announce HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.running.addr
    );
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut byte))
            .await
            .expect("response within 2 s")
            .expect("read");
        assert_eq!(
            n,
            1,
            "response ends early: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("ascii head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains(RFC_ACCEPT), "{head}");
    tcp
}

/// One client frame: masked with `mask` when given.
fn raw_frame(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let masked = u8::from(mask.is_some()) << 7;
    match payload.len() {
        n if n < 126 => out.push(masked | n as u8),
        n if n < 65_536 => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

/// The next server frame as (fin, opcode, payload), or None at the end of
/// the stream; fails after two seconds.
async fn raw_read(tcp: &mut TcpStream) -> Option<(bool, u8, Vec<u8>)> {
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut head = [0u8; 2];
        if tcp.read_exact(&mut head).await.is_err() {
            return None;
        }
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                tcp.read_exact(&mut n).await.ok()?;
                usize::from(u16::from_be_bytes(n))
            }
            127 => {
                let mut n = [0u8; 8];
                tcp.read_exact(&mut n).await.ok()?;
                usize::try_from(u64::from_be_bytes(n)).expect("length")
            }
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.ok()?;
        Some((head[0] & 0x80 != 0, head[0] & 0x0f, payload))
    })
    .await
    .expect("a frame or the end within 2 s")
}

/// Reads until a close frame, and gives its status code.
async fn raw_close_code(tcp: &mut TcpStream) -> u16 {
    loop {
        let (_, opcode, payload) = raw_read(tcp).await.expect("a close frame before the end");
        if opcode == 0x8 {
            assert!(payload.len() >= 2, "close frame with a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

fn join_text(peer: &str) -> String {
    json!({"action":"announce","info_hash":IH,"peer_id":peer,"left":1,"event":"started"})
        .to_string()
}

#[tokio::test]
async fn a_fragmented_announce_is_reassembled_and_a_ping_between_its_fragments_is_answered() {
    let server = TestServer::start(&[]).await;
    let mut tcp = raw_connect(&server).await;
    let text = join_text(&pid(1));
    let (first, rest) = text.as_bytes().split_at(20);
    let mut bytes = raw_frame(false, 0x1, MASK, first);
    bytes.extend(raw_frame(true, 0x9, MASK, b"are you there"));
    bytes.extend(raw_frame(true, 0x0, MASK, rest));
    tcp.write_all(&bytes).await.expect("write");
    let mut got_pong = false;
    let mut response = None;
    while response.is_none() || !got_pong {
        let (fin, opcode, payload) = raw_read(&mut tcp).await.expect("a frame");
        assert!(fin);
        match opcode {
            0xA => {
                assert_eq!(payload, b"are you there");
                got_pong = true;
            }
            0x1 => response = Some(serde_json::from_slice::<Value>(&payload).expect("json")),
            other => panic!("unexpected opcode {other}"),
        }
    }
    assert_eq!(response.expect("response")["complete"], 0);
}

#[tokio::test]
async fn an_unmasked_client_frame_ends_the_connection_with_a_protocol_error() {
    let server = TestServer::start(&[]).await;
    let mut tcp = raw_connect(&server).await;
    tcp.write_all(&raw_frame(true, 0x1, None, join_text(&pid(1)).as_bytes()))
        .await
        .expect("write");
    assert_eq!(raw_close_code(&mut tcp).await, 1002);
    // The announce was not handled: the swarm is empty.
    let mut b = connect(&server).await;
    assert_eq!(join(&mut b, &pid(2), 0).await["incomplete"], 0);
}

#[tokio::test]
async fn fragments_adding_up_to_more_than_the_limit_end_the_connection() {
    let server = TestServer::start(&[]).await;
    let mut tcp = raw_connect(&server).await;
    let limit = swarmdrop_server::tracker::MAX_FRAME_BYTES;
    // Each fragment is well under the limit; together they are over it.
    let piece = vec![b' '; limit / 3 + 1];
    let mut bytes = raw_frame(false, 0x1, MASK, b"{\"action\":\"announce\",");
    for _ in 0..3 {
        bytes.extend(raw_frame(false, 0x0, MASK, &piece));
    }
    bytes.extend(raw_frame(true, 0x0, MASK, b"}"));
    // The server may close before it has read everything.
    let _ = tcp.write_all(&bytes).await;
    // A failure reason, then a close frame saying why.
    let (_, opcode, payload) = raw_read(&mut tcp).await.expect("a frame");
    assert_eq!(opcode, 0x1);
    let failure: Value = serde_json::from_slice(&payload).expect("json");
    assert!(
        failure["failure reason"]
            .as_str()
            .is_some_and(|r| r.contains("longer than")),
        "{failure}"
    );
    assert_eq!(raw_close_code(&mut tcp).await, 1009);
}

#[tokio::test]
async fn text_that_is_not_utf8_ends_the_connection() {
    let server = TestServer::start(&[]).await;
    let mut tcp = raw_connect(&server).await;
    tcp.write_all(&raw_frame(true, 0x1, MASK, b"{\"action\":\"\xff\"}"))
        .await
        .expect("write");
    assert_eq!(raw_close_code(&mut tcp).await, 1007);
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close() {
    let server = TestServer::start(&[]).await;
    let mut tcp = raw_connect(&server).await;
    tcp.write_all(&raw_frame(true, 0x8, MASK, &1000u16.to_be_bytes()))
        .await
        .expect("write");
    assert_eq!(raw_close_code(&mut tcp).await, 1000);
    assert_eq!(raw_read(&mut tcp).await, None);
}

#[tokio::test]
async fn a_plain_http_request_to_announce_is_refused_with_what_to_send() {
    let server = TestServer::start(&[]).await;
    let response = server
        .client
        .get(server.url("/announce"))
        .send()
        .await
        .expect("response");
    assert_eq!(response.headers()["upgrade"], "websocket");
    assert_eq!(response.headers()["sec-websocket-version"], "13");
    let (status, body) = common::json_of(response).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("websocket")),
        "{body}"
    );
}
