//! The SFU's limits, permissions, operator controls and metrics, driven sans-IO in virtual
//! time through the public API (as an embedding application would).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sfu::{Permissions, RemovalReason, Sfu, SfuConfig, SfuError, SfuEvent, SfuLimits, SfuOutput};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;

fn sfu(limits: SfuLimits, now: Instant) -> Sfu {
    let addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let mut config = SfuConfig::new(addr, None);
    config.limits = limits;
    Sfu::new(config, now)
}

fn events(sfu: &mut Sfu) -> Vec<SfuEvent> {
    std::iter::from_fn(|| sfu.poll_output())
        .filter_map(|o| match o {
            SfuOutput::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// A client offer with `n` audio m-lines in `direction`.
fn offer(n: usize, direction: Direction, now: Instant) -> String {
    let mut rtc = Rtc::builder().build(now);
    let mut api = rtc.sdp_api();
    for _ in 0..n {
        api.add_media(MediaKind::Audio, direction, None, None, None);
    }
    let (offer, _) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

#[test]
fn joins_beyond_the_limits_are_refused_and_counted() {
    let now = Instant::now();
    let limits = SfuLimits {
        max_rooms: 2,
        max_participants_per_room: 2,
        max_tracks_per_participant: 2,
        max_pending_joins: 4,
    };
    let mut sfu = sfu(limits, now);
    let all = Permissions::ALL;
    sfu.join("a", "A1", all, now).unwrap();
    sfu.join("a", "A2", all, now).unwrap();
    assert!(matches!(
        sfu.join("a", "A3", all, now),
        Err(SfuError::RoomFull(2))
    ));
    sfu.join("b", "B1", all, now).unwrap();
    assert!(matches!(
        sfu.join("c", "C1", all, now),
        Err(SfuError::TooManyRooms(2))
    ));
    sfu.join("b", "B2", all, now).unwrap();
    let c = sfu.counters();
    assert_eq!(
        (c.joins, c.refused_room_full, c.refused_too_many_rooms),
        (4, 1, 1)
    );

    // Four joined, none connected: the pending pool is full until the connect timeout
    // removes them.
    let mut limits2 = limits;
    limits2.max_rooms = 10;
    let mut sfu2 = self::sfu(limits2, now);
    for i in 0..4 {
        sfu2.join(&format!("r{i}"), "P", all, now).unwrap();
    }
    assert!(matches!(
        sfu2.join("r9", "P", all, now),
        Err(SfuError::TooManyPendingJoins(4))
    ));
    let later = now + Duration::from_secs(31);
    sfu2.handle_timeout(later);
    let removed = events(&mut sfu2)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                SfuEvent::Removed {
                    reason: RemovalReason::ConnectTimeout,
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        removed, 4,
        "joins that never connect are removed after 30 s"
    );
    assert_eq!(sfu2.participant_count(), 0);
    sfu2.join("r9", "P", all, later)
        .expect("the pool is free again");
}

#[test]
fn permissions_and_track_limits_apply_to_offers() {
    let now = Instant::now();
    let limits = SfuLimits {
        max_tracks_per_participant: 2,
        ..SfuLimits::default()
    };
    let mut sfu = sfu(limits, now);
    let viewer = Permissions {
        can_publish: false,
        can_subscribe: true,
    };
    let v = sfu.join("r", "Viewer", viewer, now).unwrap().participant;
    assert!(matches!(
        sfu.accept_offer(v, &offer(1, Direction::SendRecv, now), now),
        Err(SfuError::PublishNotAllowed)
    ));
    sfu.accept_offer(v, &offer(2, Direction::RecvOnly, now), now)
        .expect("a receive-only offer is fine");

    let p = sfu
        .join("r", "Pub", Permissions::ALL, now)
        .unwrap()
        .participant;
    assert!(matches!(
        sfu.accept_offer(p, &offer(3, Direction::SendOnly, now), now),
        Err(SfuError::TooManyTracks(2))
    ));
    sfu.accept_offer(p, &offer(2, Direction::SendOnly, now), now)
        .expect("two tracks are within the limit");
    let c = sfu.counters();
    assert_eq!((c.refused_publish, c.refused_too_many_tracks), (1, 1));
    let snapshot = sfu.metrics_snapshot();
    assert_eq!((snapshot.rooms, snapshot.participants), (1, 2));
    assert_eq!(snapshot.pending_participants, 2);
    assert_eq!(snapshot.counters, *sfu.counters());
}

#[test]
fn operators_list_remove_and_close() {
    let now = Instant::now();
    let mut sfu = sfu(SfuLimits::default(), now);
    let a = sfu
        .join("ops", "A", Permissions::ALL, now)
        .unwrap()
        .participant;
    let b = sfu
        .join("ops", "B", Permissions::ALL, now)
        .unwrap()
        .participant;
    let c = sfu
        .join("other", "C", Permissions::ALL, now)
        .unwrap()
        .participant;
    events(&mut sfu);
    let rooms: Vec<(String, usize)> = sfu
        .rooms()
        .into_iter()
        .map(|r| (r.name, r.participants))
        .collect();
    assert_eq!(rooms, [("ops".to_owned(), 2), ("other".to_owned(), 1)]);
    assert_eq!(sfu.room_participants("ops").unwrap().len(), 2);
    assert!(matches!(
        sfu.room_participants("nope"),
        Err(SfuError::UnknownRoom(_))
    ));

    assert!(
        sfu.remove_participant("other", a, RemovalReason::Removed, now)
            .is_err(),
        "wrong room"
    );
    sfu.remove_participant("ops", a, RemovalReason::Removed, now)
        .unwrap();
    let seen = events(&mut sfu);
    assert!(seen.iter().any(
        |e| matches!(e, SfuEvent::Removed { to, reason: RemovalReason::Removed } if *to == a)
    ));
    assert!(seen.iter().any(|e| matches!(e, SfuEvent::ParticipantLeft { to, participant } if *to == b && *participant == a)));

    assert_eq!(sfu.close_room("ops", now).unwrap(), 1);
    let seen = events(&mut sfu);
    assert!(seen.iter().any(
        |e| matches!(e, SfuEvent::Removed { to, reason: RemovalReason::RoomClosed } if *to == b)
    ));
    assert_eq!(sfu.room_participants("other").unwrap()[0].id, c);
    assert_eq!(sfu.room_count(), 1);
}
