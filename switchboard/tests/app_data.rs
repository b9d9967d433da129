//! Application data over the signaling socket, against the real server with raw WebSocket
//! clients: the server stamps the sender (a client cannot pass for another), delivers to the
//! room or to chosen participants only, and enforces the size, the rate and the grant.

mod common;

use common::ws::*;
use common::TestServer;
use serde_json::{json, Value};

/// Join `names` to `room`, each seeing the ones after it arrive; their ids, in order.
async fn join_all(url: &str, room: &str, names: &[&str]) -> (Vec<Ws>, Vec<String>) {
    let mut sockets = Vec::new();
    let mut ids = Vec::new();
    for name in names {
        let mut ws = connect(url).await;
        let joined = join(&mut ws, room, name, None).await;
        ids.push(joined["participant_id"].as_str().unwrap().to_owned());
        for earlier in &mut sockets {
            recv_type(earlier, "participant_joined").await;
        }
        sockets.push(ws);
    }
    (sockets, ids)
}

fn data(to: Option<&[&str]>, payload: Value) -> String {
    let mut message = json!({"type": "data", "payload": payload});
    if let Some(to) = to {
        message["to"] = json!(to);
    }
    message.to_string()
}

#[tokio::test]
async fn data_is_stamped_by_the_server_and_reaches_only_its_recipients() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (mut ws, ids) = join_all(&url, "chat", &["Alice", "Bob", "Carol"]).await;
    let (alice, bob) = (&ids[0], &ids[1]);

    // Alice claims to be Bob, in every field a client could try.
    let forged = json!({
        "type": "data", "participant_id": bob, "name": "Bob", "from": bob,
        "payload": {"text": "<img src=x onerror=alert(1)>", "participant_id": bob},
    });
    send(&mut ws[0], forged.to_string()).await;
    for receiver in [1, 2] {
        let got = recv_type(&mut ws[receiver], "data").await;
        assert_eq!(
            got["participant_id"],
            json!(alice),
            "stamped by the server: {got}"
        );
        assert_eq!(got["name"], "Alice", "{got}");
        assert_eq!(
            got["payload"],
            json!({"text": "<img src=x onerror=alert(1)>", "participant_id": bob}),
            "the payload arrives as sent"
        );
        assert!(
            got.get("to").is_none(),
            "a room message names no recipients: {got}"
        );
    }

    // To Carol only; then a room message: Bob's next data is that one, never the private one.
    send(&mut ws[0], data(Some(&[&ids[2]]), json!("psst"))).await;
    let got = recv_type(&mut ws[2], "data").await;
    assert_eq!(
        (got["payload"].clone(), got["to"].clone()),
        (json!("psst"), json!([ids[2]]))
    );
    send(&mut ws[0], data(None, json!("everyone"))).await;
    assert_eq!(recv_type(&mut ws[1], "data").await["payload"], "everyone");
    assert_eq!(recv_type(&mut ws[2], "data").await["payload"], "everyone");

    // Not echoed to the sender: its next message is the answer to a ping.
    expect_open(&mut ws[0]).await;
}

#[tokio::test]
async fn data_limits_and_malformed_messages_get_clear_errors() {
    let server = TestServer::start().await;
    let url = server.ws_url();

    let mut outsider = connect(&url).await;
    send(&mut outsider, data(None, json!("hi"))).await;
    expect_error(&mut outsider, "not_joined").await;

    let (mut ws, _ids) = join_all(&url, "limits", &["Alice", "Bob"]).await;
    for malformed in [
        r#"{"type":"data","id":5}"#,
        r#"{"type":"data","to":"everyone","payload":1}"#,
        r#"{"type":"data","to":[42],"payload":1}"#,
        r#"{"type":"data","to":["not-an-id"],"payload":1}"#,
    ] {
        send(&mut ws[0], malformed).await;
        let error = expect_error(&mut ws[0], "bad_json").await;
        assert!(
            error["message"].as_str().unwrap().contains("data"),
            "{error}"
        );
    }

    let big = json!({"type": "data", "id": 9, "payload": "x".repeat(16 * 1024)});
    send(&mut ws[0], big.to_string()).await;
    let error = expect_error(&mut ws[0], "payload_too_large").await;
    assert_eq!(error["id"], 9);
    let fits = "x".repeat(16 * 1024 - 2);
    send(&mut ws[0], data(None, json!(fits))).await;
    assert_eq!(recv_type(&mut ws[1], "data").await["payload"], json!(fits));

    // A burst passes (one was just spent), then the rate applies: errors, no delivery.
    // Requests are handled in order, so every error comes before the pong.
    for n in 0..60 {
        send(&mut ws[0], data(None, json!(n))).await;
    }
    send(&mut ws[0], r#"{"type":"ping","id":1}"#).await;
    let mut limited = 0;
    loop {
        let msg = recv(&mut ws[0]).await;
        if msg["type"] == "pong" {
            break;
        }
        assert_eq!(msg["code"], "rate_limited", "{msg}");
        limited += 1;
    }
    // Once the rate has given a message back, a last one marks the end of the deliveries.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    send(&mut ws[0], data(None, json!("last"))).await;
    let mut delivered = 0;
    while recv_type(&mut ws[1], "data").await["payload"] != "last" {
        delivered += 1;
    }
    assert_eq!(delivered + limited, 60, "each message delivered or refused");
    // A burst's worth (40, one spent before), plus what the rate (20/s) gave back while the
    // 60 were sent: a slow machine may take a few hundred ms over them.
    assert!(
        (39..=50).contains(&delivered),
        "about a burst's worth delivered: {delivered} ({limited} limited)"
    );
}

#[tokio::test]
async fn data_needs_the_publish_grant() {
    let server = TestServer::start_with(&key_flags()).await;
    let url = server.ws_url();
    let mut viewer = connect(&url).await;
    join(
        &mut viewer,
        "granted",
        "V",
        Some(&token("v", Some("granted"), SUBSCRIBE_ONLY)),
    )
    .await;
    send(&mut viewer, data(None, json!("hi"))).await;
    expect_error(&mut viewer, "forbidden").await;
    let mut speaker = connect(&url).await;
    join(
        &mut speaker,
        "granted",
        "S",
        Some(&token("s", Some("granted"), PUBLISH_SUBSCRIBE)),
    )
    .await;
    recv_type(&mut viewer, "participant_joined").await;
    send(&mut speaker, data(None, json!("hello viewer"))).await;
    let got = recv_type(&mut viewer, "data").await;
    assert_eq!(got["payload"], "hello viewer");
}
