//! Application data through the public API, sans-IO: two workers of one room (their relay
//! messages passed by hand), the sender stamped by the SFU, recipients, grant, size and rate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sfu::data::{DATA_BURST, MAX_DATA_BYTES};
use sfu::{AppData, ParticipantId, Permissions, Sfu, SfuConfig, SfuError, SfuEvent, SfuOutput};

fn worker(shard: u8, now: Instant) -> Sfu {
    let addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let mut config = SfuConfig::new(addr, None);
    config.shard = shard;
    config.workers = 2;
    Sfu::new(config, now)
}

/// Drain both workers, passing relay messages across, until neither has anything; the
/// events each participant was given.
fn pump(workers: &mut [Sfu; 2], now: Instant) -> Vec<SfuEvent> {
    let mut events = Vec::new();
    loop {
        let mut relayed = Vec::new();
        for (from, w) in workers.iter_mut().enumerate() {
            while let Some(output) = w.poll_output() {
                match output {
                    SfuOutput::Event(e) => events.push(e),
                    SfuOutput::RelayControl { to, messages } => {
                        relayed.push((from as u8, to, messages))
                    }
                    _ => {}
                }
            }
        }
        if relayed.is_empty() {
            return events;
        }
        for (from, to, messages) in relayed {
            workers[usize::from(to)].handle_relay(from, messages, now);
        }
    }
}

fn data_for(events: &[SfuEvent], who: ParticipantId) -> Vec<AppData> {
    events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::Data { to, data } if *to == who => Some(data.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn data_reaches_its_recipients_on_every_worker_stamped_with_its_sender() {
    let now = Instant::now();
    let mut workers = [worker(0, now), worker(1, now)];
    let join = |w: &mut Sfu, name: &str, permissions| {
        w.join("room", name, permissions, now)
            .expect("joined")
            .participant
    };
    let alice = join(&mut workers[0], "Alice", Permissions::ALL);
    let bob = join(&mut workers[0], "Bob", Permissions::ALL);
    let carol = join(&mut workers[1], "Carol", Permissions::ALL);
    let viewer = join(
        &mut workers[1],
        "Viewer",
        Permissions {
            can_publish: false,
            can_subscribe: true,
        },
    );
    pump(&mut workers, now);

    workers[0]
        .send_data(alice, None, Arc::from(r#"{"text":"hi all"}"#), now)
        .unwrap();
    let events = pump(&mut workers, now);
    for who in [bob, carol, viewer] {
        let got = data_for(&events, who);
        assert_eq!(got.len(), 1, "{who} gets the room message once: {events:?}");
        assert_eq!((got[0].from, got[0].name.as_str()), (alice, "Alice"));
        assert_eq!(&*got[0].payload, r#"{"text":"hi all"}"#);
    }
    assert!(
        data_for(&events, alice).is_empty(),
        "not echoed to the sender"
    );

    workers[0]
        .send_data(alice, Some(vec![carol, alice]), Arc::from("\"psst\""), now)
        .unwrap();
    let events = pump(&mut workers, now);
    assert_eq!(data_for(&events, carol).len(), 1, "{events:?}");
    for who in [alice, bob, viewer] {
        assert!(data_for(&events, who).is_empty(), "{who} was not addressed");
    }

    assert!(matches!(
        workers[1].send_data(viewer, None, Arc::from("1"), now),
        Err(SfuError::DataNotAllowed)
    ));
    let too_large: Arc<str> = "x".repeat(MAX_DATA_BYTES + 1).into();
    assert!(matches!(
        workers[1].send_data(carol, None, too_large, now),
        Err(SfuError::DataTooLarge { .. })
    ));
    assert!(matches!(
        workers[0].send_data(bob, None, Arc::from("1"), now),
        Ok(())
    ));
    assert!(matches!(
        workers[0].send_data(ParticipantId::from_u64(7), None, Arc::from("1"), now),
        Err(SfuError::UnknownParticipant(_))
    ));
}

#[test]
fn each_sender_has_its_own_rate() {
    let now = Instant::now();
    let mut w = worker(0, now);
    let a = w.join("r", "A", Permissions::ALL, now).unwrap().participant;
    let b = w.join("r", "B", Permissions::ALL, now).unwrap().participant;
    let sent = (0..100)
        .take_while(|_| w.send_data(a, None, Arc::from("1"), now).is_ok())
        .count();
    assert_eq!(sent, DATA_BURST as usize);
    assert!(matches!(
        w.send_data(a, None, Arc::from("1"), now),
        Err(SfuError::DataRateLimited { wait_ms }) if wait_ms > 0
    ));
    assert!(
        w.send_data(b, None, Arc::from("1"), now).is_ok(),
        "B is not limited by A"
    );
    let later = now + Duration::from_millis(500);
    assert!(
        w.send_data(a, None, Arc::from("1"), later).is_ok(),
        "refilled"
    );
}
