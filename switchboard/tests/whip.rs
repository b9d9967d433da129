//! WHIP ingest and WHEP playback (RFC 9725; docs/whip-whep.md) with webrtc-rs peers, an
//! implementation independent of our str0m core: a WHIP publisher is a participant the room
//! sees and receives intact; a WHEP viewer plays a participant's audio and video intact,
//! counts as a subscriber, and its session ends when the publisher leaves; trickle ICE and
//! ICE restarts through `PATCH`; `DELETE`; and every error status and CORS.

mod common;

use std::time::Duration;

use common::whip::*;
use common::ws::{key_flags, token, PUBLISH_ONLY, PUBLISH_SUBSCRIBE, SUBSCRIBE_ONLY};
use common::TestServer;
use switchboard_testkit::{ClientConfig, LocalCandidate, ReceivedStats, SignalEvent, TestClient};

const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);

/// A participant of `room` that publishes nothing and watches.
async fn watcher(server: &TestServer, room: &str, name: &str) -> TestClient {
    let mut config = ClientConfig::new(server.ws_url(), room, name);
    config.publish_audio = false;
    config.publish_video = false;
    TestClient::join(config)
        .await
        .unwrap_or_else(|e| panic!("{name} could not join: {e:#}"))
}

/// The id of the participant named `name`, from `client`'s `participant_joined` events.
fn joined_id(stats: &ReceivedStats, name: &str) -> Option<String> {
    stats.events.iter().find_map(|e| match e {
        SignalEvent::ParticipantJoined {
            participant_id,
            name: n,
        } if n == name => Some(participant_id.clone()),
        _ => None,
    })
}

fn published_kinds(stats: &ReceivedStats, id: &str) -> Vec<String> {
    let mut kinds: Vec<String> = stats
        .events
        .iter()
        .filter_map(|e| match e {
            SignalEvent::TrackPublished {
                participant_id,
                kind,
                ..
            } if participant_id == id => Some(kind.clone()),
            _ => None,
        })
        .collect();
    kinds.sort();
    kinds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_publisher_is_a_participant_whose_media_arrives_intact() {
    let server = TestServer::start().await;
    let room_member = watcher(&server, "stage", "Watcher").await;

    let (peer, stats) = new_peer("Encoder").await;
    peer.publish_sendonly(true, true).await.expect("tracks");
    let session = open_session(
        server.http_addr,
        "/whip/stage?name=Encoder",
        None,
        peer,
        stats,
    )
    .await;
    let created = &session.created;
    assert_eq!(created.header("content-type"), Some("application/sdp"));
    assert!(
        session.location.starts_with("/whip/stage/sessions/") && session.location.len() > 40,
        "an unguessable session URL: {}",
        session.location
    );
    assert!(session.etag.starts_with('"') && session.etag.ends_with('"'));
    let links = created.headers_named("link");
    assert!(
        links.iter().any(|l| l.starts_with("<turn:")
            && l.contains("rel=\"ice-server\"")
            && l.contains("username=\"")
            && l.contains("credential-type=\"password\"")),
        "the embedded TURN server's credentials as Link headers: {links:?}"
    );
    assert!(created.body.contains("a=ice-lite"), "{}", created.body);
    session.peer.start_media();

    room_member
        .wait_until("the WHIP publisher announced", MEDIA_TIMEOUT, |s| {
            joined_id(s, "Encoder").is_some_and(|id| published_kinds(s, &id).len() == 2)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let id = joined_id(&room_member.stats(), "Encoder").expect("joined");
    let stats = room_member.stats();
    assert_eq!(published_kinds(&stats, &id), ["audio", "video"]);
    room_member
        .wait_until("the WHIP publisher's media", MEDIA_TIMEOUT, |s| {
            s.participant(&id).is_some_and(|p| {
                p.audio_packets() >= 50 && p.keyframes() >= 1 && p.video_frames() >= 20
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let stats = room_member.stats();
    let p = stats.participant(&id).expect("stats");
    assert_eq!(p.integrity_failures(), 0, "{stats}");
    for track in p.tracks.values() {
        assert_eq!(
            track.sender_tag,
            Some(switchboard_testkit::sender_tag("Encoder")),
            "{stats}"
        );
    }

    // DELETE ends it: the room sees it leave, and the resource is gone.
    let deleted = request(server.http_addr, "DELETE", &session.location, &[], b"").await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    room_member
        .wait_until("the WHIP publisher left", MEDIA_TIMEOUT, |s| {
            s.saw_left(&id) && s.participant(&id).is_some_and(|p| p.all_tracks_ended())
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let again = request(server.http_addr, "DELETE", &session.location, &[], b"").await;
    assert_eq!(again.status, 404, "{again:?}");
    session.peer.close().await;
    room_member.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_viewer_plays_a_participant_and_ends_when_it_leaves() {
    let server = TestServer::start().await;
    let empty = post_offer(server.http_addr, "/whep/show", None, "v=0\r\n").await;
    assert_eq!(empty.status, 422, "an offer without tracks: {empty:?}");
    let (peer, _) = new_peer("Early").await;
    peer.add_recvonly_transceivers()
        .await
        .expect("transceivers");
    let offer = peer.create_offer().await.expect("offer");
    let malformed = post_offer(
        server.http_addr,
        "/whep/show",
        None,
        &offer.replace("a=mid:", "a=mid"),
    )
    .await;
    assert_eq!(malformed.status, 400, "malformed SDP: {malformed:?}");
    let unknown_room = post_offer(server.http_addr, "/whep/show", None, &offer).await;
    assert_eq!(
        unknown_room.status, 404,
        "a room that does not exist: {unknown_room:?}"
    );

    let quiet = watcher(&server, "show", "Quiet").await;
    let nothing = post_offer(server.http_addr, "/whep/show", None, &offer).await;
    assert_eq!(nothing.status, 409, "nobody publishes yet: {nothing:?}");
    let path = format!("/whep/show/{}", quiet.participant_id());
    let nothing = post_offer(server.http_addr, &path, None, &offer).await;
    assert_eq!(
        nothing.status, 409,
        "that participant publishes nothing: {nothing:?}"
    );
    let nobody = post_offer(
        server.http_addr,
        "/whep/show/P0123456789abcdef",
        None,
        &offer,
    )
    .await;
    assert_eq!(nobody.status, 404, "no such participant: {nobody:?}");
    peer.close().await;

    let publisher = TestClient::join(ClientConfig::new(server.ws_url(), "show", "Host"))
        .await
        .expect("join");
    publisher.start_media();
    let host = publisher.participant_id();

    for path in ["/whep/show".to_owned(), format!("/whep/show/{host}")] {
        let (peer, stats) = new_peer("Viewer").await;
        peer.add_recvonly_transceivers()
            .await
            .expect("transceivers");
        let viewer = open_session(server.http_addr, &path, None, peer, stats).await;
        assert!(viewer.location.starts_with("/whep/show/sessions/"));
        let deadline = tokio::time::Instant::now() + MEDIA_TIMEOUT;
        loop {
            let s = viewer.stats.lock().unwrap().clone();
            let audio: u64 = s.participants.values().map(|p| p.audio_packets()).sum();
            let keyframes: u64 = s.participants.values().map(|p| p.keyframes()).sum();
            let frames: u64 = s.participants.values().map(|p| p.video_frames()).sum();
            if audio >= 50 && keyframes >= 1 && frames >= 20 {
                assert_eq!(s.total_integrity_failures(), 0, "{s}");
                for p in s.participants.values() {
                    for track in p.tracks.values() {
                        assert_eq!(track.sender_tag, Some(publisher.sender_tag()), "{s}");
                    }
                }
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path}: the viewer did not receive the host's media: {s}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A subscriber like any other: /api/stats lists its two subscriptions.
        let (status, api) =
            common::ws::http_json(server.http_addr, "GET", "/api/stats", None, None).await;
        assert_eq!(status, 200);
        let listed = api["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .find(|p| p["name"] == "WHEP viewer")
            .cloned()
            .unwrap_or_else(|| panic!("the viewer in /api/stats: {api}"));
        assert_eq!(listed["subscriptions"].as_array().map(Vec::len), Some(2));
        if path == "/whep/show" {
            let gone = request(server.http_addr, "DELETE", &viewer.location, &[], b"").await;
            assert_eq!(gone.status, 200);
            viewer.peer.close().await;
            continue;
        }
        // The publisher leaves: the session ends with it.
        publisher.leave().await;
        let deadline = tokio::time::Instant::now() + MEDIA_TIMEOUT;
        loop {
            let reply = request(server.http_addr, "DELETE", &viewer.location, &[], b"").await;
            if reply.status == 404 {
                break;
            }
            assert_eq!(reply.status, 200, "{reply:?}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "the WHEP session outlived its publisher"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        viewer.peer.close().await;
        break;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickle_and_ice_restart_through_patch() {
    let server = TestServer::start().await;
    let (peer, _stats) = new_peer("Trickler").await;
    peer.publish_sendonly(true, true).await.expect("tracks");
    let mut candidates = peer.take_candidates().expect("candidates");
    // Offer at once, before gathering: the candidates follow by PATCH.
    let offer = peer.create_offer().await.expect("offer");
    let offer: String = offer
        .lines()
        .filter(|l| !l.starts_with("a=candidate") && !l.starts_with("a=end-of-candidates"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let created = post_offer(server.http_addr, "/whip/trickle", None, &offer).await;
    assert_eq!(created.status, 201, "{created:?}");
    let location = created.header("location").expect("Location").to_owned();
    let etag = created.header("etag").expect("ETag").to_owned();
    peer.apply_answer(&created.body).await.expect("answer");
    let ufrag = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("ufrag")
        .to_owned();
    let pwd = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-pwd:"))
        .expect("pwd")
        .to_owned();
    let mut fragment = format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
    );
    let mut sent = 0;
    while let Ok(Some(c)) = tokio::time::timeout(Duration::from_secs(5), candidates.recv()).await {
        match c {
            LocalCandidate::Candidate(init) => {
                fragment.push_str(&format!("a={}\r\n", init.candidate));
                sent += 1;
            }
            LocalCandidate::End => {
                fragment.push_str("a=end-of-candidates\r\n");
                break;
            }
        }
    }
    assert!(sent > 0, "no candidate gathered");
    let trickled = request(
        server.http_addr,
        "PATCH",
        &location,
        &frag_headers(&etag),
        fragment.as_bytes(),
    )
    .await;
    assert_eq!(trickled.status, 204, "{trickled:?}");
    assert_eq!(trickled.header("etag"), None, "no ETag on a trickle");
    peer.wait_connected(CONNECT_TIMEOUT)
        .await
        .expect("connected");

    // Without If-Match: 428; with an entity tag of another ICE session: 412.
    let no_match = request(
        server.http_addr,
        "PATCH",
        &location,
        &[("Content-Type", "application/trickle-ice-sdpfrag")],
        fragment.as_bytes(),
    )
    .await;
    assert_eq!(no_match.status, 428, "{no_match:?}");
    let stale = request(
        server.http_addr,
        "PATCH",
        &location,
        &frag_headers("\"not-this-one\""),
        fragment.as_bytes(),
    )
    .await;
    assert_eq!(stale.status, 412, "{stale:?}");
    let garbage = request(
        server.http_addr,
        "PATCH",
        &location,
        &frag_headers("*"),
        b"this is not a fragment",
    )
    .await;
    assert_eq!(garbage.status, 400, "{garbage:?}");
    let wrong_type = request(
        server.http_addr,
        "PATCH",
        &location,
        &[("Content-Type", "text/plain"), ("If-Match", "*")],
        fragment.as_bytes(),
    )
    .await;
    assert_eq!(wrong_type.status, 415, "{wrong_type:?}");

    // New credentials restart ICE: 200, our new credentials, a new entity tag.
    let restart = "a=ice-ufrag:R3st\r\na=ice-pwd:restartpasswordrestartpass\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n";
    let restarted = request(
        server.http_addr,
        "PATCH",
        &location,
        &frag_headers("*"),
        restart.as_bytes(),
    )
    .await;
    assert_eq!(restarted.status, 200, "{restarted:?}");
    assert_eq!(
        restarted.header("content-type"),
        Some("application/trickle-ice-sdpfrag")
    );
    let new_etag = restarted.header("etag").expect("a new ETag");
    assert_ne!(new_etag, etag);
    let old_ufrag = created
        .body
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("our first ufrag");
    let new_ufrag = restarted
        .body
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("our new ufrag");
    assert_ne!(old_ufrag, new_ufrag);
    assert!(restarted.body.contains("a=ice-pwd:"));
    assert!(restarted.body.contains("a=candidate:"));
    assert!(restarted.body.contains("a=ice-lite"));
    // The old ICE session's tag is stale now.
    let stale = request(
        server.http_addr,
        "PATCH",
        &location,
        &frag_headers(&etag),
        fragment.as_bytes(),
    )
    .await;
    assert_eq!(stale.status, 412, "{stale:?}");
    assert_eq!(
        request(server.http_addr, "DELETE", &location, &[], b"")
            .await
            .status,
        200
    );
    peer.close().await;
}

fn frag_headers(if_match: &str) -> [(&'static str, &str); 2] {
    [
        ("Content-Type", "application/trickle-ice-sdpfrag"),
        ("If-Match", if_match),
    ]
}

/// A syntactically plausible offer with `video` video m-lines, for checks made before the
/// SFU parses anything.
fn offer_with_videos(video: usize) -> String {
    let mut sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".to_owned();
    for mid in 0..video {
        sdp.push_str(&format!(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{mid}\r\na=sendonly\r\n"
        ));
    }
    sdp
}

#[tokio::test]
async fn every_error_is_an_http_status_with_a_short_body() {
    let server = TestServer::start_with(&key_flags()).await;
    let addr = server.http_addr;
    let publish = token("enc", Some("secure"), PUBLISH_ONLY);
    let both = token("enc", Some("secure"), PUBLISH_SUBSCRIBE);
    let watch = token("viewer", Some("secure"), SUBSCRIBE_ONLY);
    let other_room = token("enc", Some("elsewhere"), PUBLISH_SUBSCRIBE);
    let offer = offer_with_videos(1);

    let check = |reply: Reply, status: u16, what: &str| {
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        assert!(
            !reply.body.trim().is_empty() && reply.body.len() < 400,
            "{what}: a short body: {:?}",
            reply.body
        );
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("*"),
            "{what}: CORS on errors too"
        );
        reply
    };
    let no_token = check(
        post_offer(addr, "/whip/secure", None, &offer).await,
        401,
        "no token",
    );
    assert_eq!(no_token.header("www-authenticate"), Some("Bearer"));
    check(
        post_offer(addr, "/whip/secure", Some("not.a.jwt"), &offer).await,
        401,
        "a malformed token",
    );
    check(
        post_offer(addr, "/whip/secure", Some(&other_room), &offer).await,
        403,
        "a token for another room",
    );
    check(
        post_offer(addr, "/whip/secure", Some(&watch), &offer).await,
        403,
        "WHIP without the publish grant",
    );
    check(
        post_offer(addr, "/whep/secure", Some(&publish), &offer).await,
        403,
        "WHEP without the subscribe grant",
    );
    check(
        request(
            addr,
            "POST",
            "/whip/secure",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &format!("Bearer {both}")),
            ],
            offer.as_bytes(),
        )
        .await,
        415,
        "not application/sdp",
    );
    check(
        post_offer(
            addr,
            "/whip/secure",
            Some(&both),
            "v=0\r\nm=video nonsense\r\n",
        )
        .await,
        400,
        "malformed SDP",
    );
    check(
        post_offer(addr, "/whip/secure", Some(&both), &"x".repeat(70 * 1024)).await,
        413,
        "an SDP body over 64 KiB",
    );
    check(
        post_offer(addr, "/whip/secure", Some(&both), &offer_with_videos(2)).await,
        422,
        "two video tracks",
    );
    check(
        post_offer(addr, "/whip/secure", Some(&both), &offer_with_videos(0)).await,
        422,
        "no track at all",
    );
    check(
        post_offer(addr, "/whip/bad%20room", Some(&both), &offer).await,
        400,
        "an invalid room name",
    );
    check(
        post_offer(addr, "/whep/secure", Some(&watch), &offer).await,
        422,
        "a WHEP offer that sends",
    );
    for (method, path) in [
        ("PATCH", "/whip/secure/sessions/0123456789abcdef"),
        ("DELETE", "/whip/secure/sessions/0123456789abcdef"),
        ("DELETE", "/whep/secure/sessions/0123456789abcdef"),
    ] {
        check(
            request(
                addr,
                method,
                path,
                &[
                    ("Content-Type", "application/trickle-ice-sdpfrag"),
                    ("If-Match", "*"),
                ],
                b"a=end-of-candidates\r\n",
            )
            .await,
            404,
            &format!("{method} of an unknown session"),
        );
    }
    let put = check(
        request(addr, "PUT", "/whip/secure", &[], b"").await,
        405,
        "PUT on the endpoint",
    );
    assert!(put.header("allow").is_some_and(|a| a.contains("POST")));
    check(
        request(
            addr,
            "POST",
            "/whip/secure/sessions/0123456789abcdef",
            &[],
            b"",
        )
        .await,
        405,
        "POST on a session",
    );
    // RFC 9725 4.1: GET has no representation.
    assert_eq!(
        request(addr, "GET", "/whip/secure", &[], b"").await.status,
        204
    );
}

#[tokio::test]
async fn limits_answer_429_and_503() {
    let server = TestServer::start_with(&[
        "--max-joins-per-ip-per-minute",
        "3",
        "--max-participants-per-room",
        "1",
    ])
    .await;
    let addr = server.http_addr;
    let (peer, stats) = new_peer("First").await;
    peer.publish_sendonly(true, true).await.expect("tracks");
    let first = open_session(addr, "/whip/tiny", None, peer, stats).await;
    // The room holds one participant: the next publisher is refused for the room's limit.
    let (peer, _) = new_peer("Second").await;
    peer.publish_sendonly(true, true).await.expect("tracks");
    let offer = peer.create_offer().await.expect("offer");
    let full = post_offer(addr, "/whip/tiny", None, &offer).await;
    assert_eq!(full.status, 503, "{full:?}");
    assert_eq!(full.header("retry-after"), Some("5"));
    // Three joins a minute from this address: the fourth is refused for the address's limit.
    let _third = post_offer(addr, "/whip/other", None, &offer).await;
    let fourth = post_offer(addr, "/whip/another", None, &offer).await;
    assert_eq!(fourth.status, 429, "{fourth:?}");
    assert!(fourth.header("retry-after").is_some());
    first.peer.close().await;
    peer.close().await;
}

#[tokio::test]
async fn cors_preflights_are_answered() {
    let server = TestServer::start().await;
    for (path, accept) in [
        ("/whip/any", ("accept-post", "application/sdp")),
        ("/whep/any", ("accept-post", "application/sdp")),
        (
            "/whip/any/sessions/abc",
            ("accept-patch", "application/trickle-ice-sdpfrag"),
        ),
    ] {
        let reply = request(
            server.http_addr,
            "OPTIONS",
            path,
            &[
                ("Origin", "https://studio.example"),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
            ],
            b"",
        )
        .await;
        assert_eq!(reply.status, 204, "{path}: {reply:?}");
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        let methods = reply
            .header("access-control-allow-methods")
            .unwrap_or_default();
        for m in ["POST", "PATCH", "DELETE"] {
            assert!(methods.contains(m), "{path}: {methods}");
        }
        let allowed = reply
            .header("access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        for h in ["authorization", "content-type", "if-match"] {
            assert!(allowed.contains(h), "{path}: {allowed}");
        }
        let exposed = reply
            .header("access-control-expose-headers")
            .unwrap_or_default();
        for h in ["Location", "ETag", "Link"] {
            assert!(exposed.contains(h), "{path}: {exposed}");
        }
        assert_eq!(reply.header(accept.0), Some(accept.1), "{path}");
    }
}
