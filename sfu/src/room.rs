//! A room: who is in it, in the order they joined. Tracks live with their publishers.

use crate::ids::ParticipantId;

#[derive(Debug, Default)]
pub struct Room {
    pub participants: Vec<ParticipantId>,
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
}
