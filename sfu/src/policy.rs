//! What a participant may do, and how much the SFU accepts: per-participant permissions
//! (from the application's access tokens) and server-wide limits. Exceeding a limit fails the
//! one request with an [`SfuError`](crate::SfuError); nobody else is affected.

use std::sync::atomic::{AtomicUsize, Ordering};

/// What a participant may do in its room, fixed at join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    /// May send media: offers with sending m-lines are refused otherwise
    /// ([`SfuError::PublishNotAllowed`](crate::SfuError::PublishNotAllowed)).
    pub can_publish: bool,
    /// Receives the others' tracks: the SFU never offers it any otherwise.
    pub can_subscribe: bool,
}

impl Permissions {
    /// Publish and subscribe.
    pub const ALL: Permissions = Permissions {
        can_publish: true,
        can_subscribe: true,
    };
}

impl Default for Permissions {
    fn default() -> Self {
        Self::ALL
    }
}

/// Server-wide limits. The defaults are generous: they stop abuse, not real use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SfuLimits {
    /// Rooms at once; a join that would open one more fails with `TooManyRooms`.
    pub max_rooms: usize,
    /// Participants in one room; one more fails with `RoomFull`.
    pub max_participants_per_room: usize,
    /// Media sections one participant may send in its offer (`TooManyTracks`).
    pub max_tracks_per_participant: usize,
    /// Participants joined whose media has not connected yet (`TooManyPendingJoins`).
    pub max_pending_joins: usize,
}

impl Default for SfuLimits {
    fn default() -> Self {
        Self {
            max_rooms: 10_000,
            max_participants_per_room: 1_000,
            max_tracks_per_participant: 16,
            max_pending_joins: 1_000,
        }
    }
}

/// Participants and joins not yet connected on each media worker, shared so that the
/// server-wide limits of [`SfuLimits`] hold, and joins are placed, when several workers (each
/// its own `Sfu`) share a server. Each worker writes only its own slot; the others read it
/// when checking or placing a join, so two joins racing on different workers may overshoot a
/// limit by one each.
#[derive(Debug)]
pub struct ShardLoad {
    pending: Box<[AtomicUsize]>,
    participants: Box<[AtomicUsize]>,
}

impl ShardLoad {
    pub fn new(workers: usize) -> Self {
        Self {
            pending: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            participants: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    pub(crate) fn publish(&self, shard: usize, pending: usize, participants: usize) {
        for (slots, value) in [(&self.pending, pending), (&self.participants, participants)] {
            if let Some(slot) = slots.get(shard) {
                slot.store(value, Ordering::Relaxed);
            }
        }
    }

    pub fn workers(&self) -> usize {
        self.participants.len()
    }

    /// Participants connected to (or joining through) `worker`.
    pub fn participants(&self, worker: usize) -> usize {
        self.participants
            .get(worker)
            .map_or(0, |p| p.load(Ordering::Relaxed))
    }

    /// Pending joins of every worker but `shard`.
    pub(crate) fn others_pending(&self, shard: usize) -> usize {
        self.pending
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != shard)
            .map(|(_, v)| v.load(Ordering::Relaxed))
            .sum()
    }
}

/// How many media sections of an SDP offer send media to the server: not rejected (port 0)
/// audio or video, with direction `sendrecv` (also the default) or `sendonly`. A plain scan of the text:
/// the offer is parsed properly (or refused) by str0m afterwards.
pub fn sending_sections(sdp: &str) -> usize {
    let mut count = 0;
    let mut current: Option<bool> = None; // Some(sending) while inside an m-section
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            count += usize::from(current == Some(true));
            let port = m.split_whitespace().nth(1).unwrap_or("0");
            // A rejected section (port 0) sends nothing, whatever its attributes say.
            current = Some(port != "0" && !m.starts_with("application"));
            continue;
        }
        if let Some(sending) = current.as_mut() {
            match line {
                "a=recvonly" | "a=inactive" => *sending = false,
                _ => {}
            }
        }
    }
    count + usize::from(current == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_live_sending_sections() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n\
                   m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=inactive\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        // The sendrecv audio and the live sendonly video; data channels are not media.
        assert_eq!(sending_sections(sdp), 2);
        assert_eq!(sending_sections(""), 0);
        assert_eq!(sending_sections("m=\nm"), 0);
        assert_eq!(
            sending_sections("m=video 9 x 96\r\n"),
            1,
            "sendrecv by default"
        );
    }
}
