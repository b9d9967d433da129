//! A room: who is in it. Members connected to this worker are `participants`, in the order
//! they joined; members on other workers (see `relay.rs`) are `remote`, with their tracks.
//! Tracks live with their publishers (`Sfu::tracks`), relayed ones included.

use crate::ids::{ParticipantId, TrackId};
use crate::speakers::SpeakerDetector;

#[derive(Debug, Default)]
pub struct Room {
    pub participants: Vec<ParticipantId>,
    pub remote: Vec<RemoteMember>,
    /// Who speaks, from every member's audio this worker receives.
    pub speakers: SpeakerDetector,
}

/// A member of the room whose connection lives on another worker.
#[derive(Debug, Clone)]
pub struct RemoteMember {
    pub id: ParticipantId,
    pub name: String,
    pub tracks: Vec<TrackId>,
}

impl Room {
    pub fn remove(&mut self, participant: ParticipantId) {
        self.participants.retain(|p| *p != participant);
    }

    pub fn others(&self, participant: ParticipantId) -> impl Iterator<Item = ParticipantId> + '_ {
        self.participants
            .iter()
            .copied()
            .filter(move |p| *p != participant)
    }

    /// Everyone in the room, on any worker.
    pub fn len(&self) -> usize {
        self.participants.len() + self.remote.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty() && self.remote.is_empty()
    }

    pub fn remote_member(&mut self, id: ParticipantId) -> Option<&mut RemoteMember> {
        self.remote.iter_mut().find(|m| m.id == id)
    }
}
