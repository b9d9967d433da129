//! Hostile and malformed signaling input: every class gets its documented error code, the
//! recoverable ones leave the connection usable, the fatal ones close it with the documented
//! close code, and a participant already in the room is never disturbed.

mod common;

use std::time::Duration;

use common::ws::{closed_with, expect_error, expect_open, recv, send, Ws};
use common::TestServer;
use futures_util::SinkExt;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

async fn connect(server: &TestServer) -> Ws {
    common::ws::connect(&server.ws_url()).await
}

async fn join(ws: &mut Ws, room: &str, name: &str) -> serde_json::Value {
    common::ws::join(ws, room, name, None).await
}

async fn expect_closed_with(ws: &mut Ws, code: CloseCode) {
    assert_eq!(closed_with(ws, Duration::from_secs(5)).await, code);
}

#[tokio::test]
async fn malformed_and_invalid_messages_get_errors_and_the_connection_survives() {
    let server = TestServer::start().await;
    let mut bystander = connect(&server).await;
    join(&mut bystander, "room1", "Bystander").await;

    let mut ws = connect(&server).await;
    send(&mut ws, "{not json").await;
    expect_error(&mut ws, "bad_json").await;
    send(&mut ws, "[1,2,3]").await;
    expect_error(&mut ws, "bad_json").await;
    send(&mut ws, r#"{"type":"join","id":4,"room":7,"name":"x"}"#).await;
    assert_eq!(
        expect_error(&mut ws, "bad_json").await["id"],
        4,
        "errors carry the request id"
    );
    send(&mut ws, r#"{"type":"teleport","id":5}"#).await;
    assert_eq!(expect_error(&mut ws, "unknown_type").await["id"], 5);
    send(&mut ws, r#"{"id":6}"#).await;
    expect_error(&mut ws, "unknown_type").await;

    // Requests that need a room, before joining.
    send(&mut ws, r#"{"type":"offer","id":7,"sdp":"v=0"}"#).await;
    assert_eq!(expect_error(&mut ws, "not_joined").await["id"], 7);
    send(&mut ws, r#"{"type":"answer","sdp":"v=0"}"#).await;
    expect_error(&mut ws, "not_joined").await;
    send(&mut ws, r#"{"type":"mute","mid":"0","muted":true}"#).await;
    expect_error(&mut ws, "not_joined").await;

    // Invalid room and display names.
    for room in ["", "has spaces", "../etc", &"r".repeat(65)] {
        send(
            &mut ws,
            json!({"type": "join", "room": room, "name": "Eve"}).to_string(),
        )
        .await;
        expect_error(&mut ws, "invalid_room").await;
    }
    for name in ["", "   ", "bell\u{7}", &"n".repeat(65)] {
        send(
            &mut ws,
            json!({"type": "join", "room": "room1", "name": name}).to_string(),
        )
        .await;
        expect_error(&mut ws, "invalid_name").await;
    }
    expect_open(&mut ws).await;

    // Joined now: bad SDP, a stray answer, a bad candidate, an unknown track.
    let joined = join(&mut ws, "room1", "Eve").await;
    assert_eq!(joined["participants"][0]["name"], "Bystander");
    send(
        &mut ws,
        r#"{"type":"offer","id":8,"sdp":"this is not SDP"}"#,
    )
    .await;
    assert_eq!(expect_error(&mut ws, "invalid_sdp").await["id"], 8);
    send(&mut ws, r#"{"type":"offer","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"}"#).await;
    expect_error(&mut ws, "invalid_sdp").await;
    send(&mut ws, r#"{"type":"answer","sdp":"v=0\r\n"}"#).await;
    expect_error(&mut ws, "invalid_sdp").await;
    send(
        &mut ws,
        r#"{"type":"candidate","candidate":"candidate:garbage"}"#,
    )
    .await;
    expect_error(&mut ws, "invalid_candidate").await;
    send(&mut ws, r#"{"type":"candidate","candidate":""}"#).await; // end of candidates: ignored
    send(&mut ws, r#"{"type":"mute","id":9,"mid":"42","muted":true}"#).await;
    assert_eq!(expect_error(&mut ws, "unknown_track").await["id"], 9);
    expect_open(&mut ws).await;

    // The bystander saw Eve join (once) and nothing else, and still works.
    let seen = recv(&mut bystander).await;
    assert_eq!(seen["type"], "participant_joined");
    assert_eq!(seen["participant"]["name"], "Eve");
    expect_open(&mut bystander).await;
    ws.close(None).await.ok();
    let left = recv(&mut bystander).await;
    assert_eq!(left["type"], "participant_left");
}

#[tokio::test]
async fn protocol_violations_close_the_connection_with_the_documented_code() {
    let server = TestServer::start().await;
    let mut bystander = connect(&server).await;
    join(&mut bystander, "room2", "Bystander").await;

    // A second join on one connection: 1008.
    let mut ws = connect(&server).await;
    join(&mut ws, "room2", "Twice").await;
    send(
        &mut ws,
        r#"{"type":"join","id":2,"room":"room2","name":"Again"}"#,
    )
    .await;
    assert_eq!(expect_error(&mut ws, "already_joined").await["id"], 2);
    expect_closed_with(&mut ws, CloseCode::Policy).await;

    // A message over 64 KiB: 1009.
    let mut ws = connect(&server).await;
    let huge = json!({"type": "offer", "sdp": "x".repeat(70 * 1024)}).to_string();
    send(&mut ws, huge).await;
    expect_error(&mut ws, "message_too_large").await;
    expect_closed_with(&mut ws, CloseCode::Size).await;

    // A binary frame: 1003.
    let mut ws = connect(&server).await;
    ws.send(Message::Binary(vec![0u8, 1, 2, 3].into()))
        .await
        .expect("send");
    expect_error(&mut ws, "binary_not_supported").await;
    expect_closed_with(&mut ws, CloseCode::Unsupported).await;

    // The bystander saw "Twice" come and go, and is undisturbed.
    assert_eq!(recv(&mut bystander).await["type"], "participant_joined");
    assert_eq!(recv(&mut bystander).await["type"], "participant_left");
    expect_open(&mut bystander).await;
    let health = server.health().await.expect("server healthy");
    assert_eq!(
        health["participants"], 1,
        "only the bystander is left: {health}"
    );
}

#[tokio::test]
async fn garbage_datagrams_on_the_media_port_are_dropped() {
    let server = TestServer::start().await;
    let mut ws = connect(&server).await;
    join(&mut ws, "room3", "Alice").await;

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0x80, 0x60, 0x00],                               // truncated RTP
        vec![0x00, 0x01, 0xff, 0xff, 0x21, 0x12, 0xa4, 0x42], // STUN with a lying length
        vec![0x16, 0xfe, 0xfd, 0x00, 0x00],                   // truncated DTLS
        vec![0xff; 1500],
    ];
    // A STUN binding request naming an unknown ufrag.
    let mut stun = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[1; 12]);
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0x08]);
    stun.extend_from_slice(b"nope:who");
    junk.push(stun);
    for i in 0..200u32 {
        junk.push(
            (0..(i % 300))
                .map(|b| (b as u8).wrapping_mul(31).wrapping_add(i as u8))
                .collect(),
        );
    }
    for datagram in &junk {
        socket
            .send_to(datagram, server.rtc_addr)
            .await
            .expect("send");
    }
    // And on ICE-TCP: a frame header promising more than is sent, then a close.
    if let Ok(mut tcp) = TcpStream::connect(server.rtc_addr).await {
        use tokio::io::AsyncWriteExt;
        let _ = tcp.write_all(&[0xff, 0xff, 1, 2, 3]).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    expect_open(&mut ws).await;
    let health = server.health().await.expect("server healthy after garbage");
    assert_eq!(health["participants"], 1);
}
