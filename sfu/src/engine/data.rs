//! Application data (`crate::data`): checked and stamped on the sender's worker, delivered to
//! its recipients here and, through the relay, on every other worker and node.

use std::sync::Arc;
use std::time::Instant;

use super::{Sfu, SfuOutput};
use crate::data::{AppData, MAX_DATA_BYTES};
use crate::error::SfuError;
use crate::event::SfuEvent;
use crate::ids::ParticipantId;
use crate::relay::RoomEvent;

impl Sfu {
    /// Send `payload` from participant `from` (of this worker) to `to`: `None` for everyone
    /// else in its room, or these participants (ids not in the room are skipped: they may
    /// have just left). Each recipient gets [`SfuEvent::Data`] with the sender's id and name
    /// as the SFU knows them. Needs the publish grant; at most
    /// [`MAX_DATA_BYTES`](crate::data::MAX_DATA_BYTES) and
    /// [`DATA_RATE_PER_SEC`](crate::data::DATA_RATE_PER_SEC) messages a second per sender.
    pub fn send_data(
        &mut self,
        from: ParticipantId,
        to: Option<Vec<ParticipantId>>,
        payload: Arc<str>,
        now: Instant,
    ) -> Result<(), SfuError> {
        let p = self
            .participants
            .get_mut(&from)
            .ok_or(SfuError::UnknownParticipant(from))?;
        if !p.permissions.can_publish {
            return Err(SfuError::DataNotAllowed);
        }
        if payload.len() > MAX_DATA_BYTES {
            return Err(SfuError::DataTooLarge {
                size: payload.len(),
                max: MAX_DATA_BYTES,
            });
        }
        if !p.data_budget.take(now) {
            return Err(SfuError::DataRateLimited {
                wait_ms: p.data_budget.wait().as_millis() as u64,
            });
        }
        let room = p.room.clone();
        let data = AppData {
            from,
            name: p.name.clone(),
            to,
            payload,
        };
        self.deliver_data(&room, &data);
        let elsewhere = self
            .rooms
            .get(&room)
            .is_some_and(|r| r.remote.iter().any(|m| data.is_for(m.id)));
        if elsewhere {
            self.broadcast(RoomEvent::Data { room, data });
        }
        Ok(())
    }

    /// Hand `data` to its recipients among this worker's members of `room`.
    pub(super) fn deliver_data(&mut self, room: &str, data: &AppData) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        for &to in &r.participants {
            if data.is_for(to) {
                self.outputs.push_back(SfuOutput::Event(SfuEvent::Data {
                    to,
                    data: data.clone(),
                }));
            }
        }
    }
}
