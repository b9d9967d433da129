//! Pin (spotlight): a subscriber names the participant whose video matters most to it, and
//! the allocator serves that participant's videos first (`Priority::Pinned`). Only the
//! subscriber's own allocation changes; the room is not told.

use super::Sfu;
use crate::error::SfuError;
use crate::ids::ParticipantId;

impl Sfu {
    /// Pin `target`'s videos for `id` (`None`: unpin). The target must be another member of
    /// the same room, on this worker or another; the pin ends when either leaves.
    pub fn set_pin(
        &mut self,
        id: ParticipantId,
        target: Option<ParticipantId>,
    ) -> Result<(), SfuError> {
        let p = self
            .participants
            .get(&id)
            .ok_or(SfuError::UnknownParticipant(id))?;
        let Some(target) = target else {
            self.pins.remove(&id);
            return Ok(());
        };
        let in_room = target != id
            && self.rooms.get(&p.room).is_some_and(|room| {
                room.participants.contains(&target) || room.remote.iter().any(|m| m.id == target)
            });
        if !in_room {
            return Err(SfuError::NotPinnable(target));
        }
        self.pins.insert(id, target);
        Ok(())
    }

    /// Whom `id` pinned, if anyone.
    pub fn pinned(&self, id: ParticipantId) -> Option<ParticipantId> {
        self.pins.get(&id).copied()
    }
}
