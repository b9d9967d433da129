//! Counters of the media path. They are plain integers owned by the `Sfu` (one thread, no
//! atomics or locks per packet); whoever drives the `Sfu` copies a [`MetricsSnapshot`] out
//! now and then (`SfuServer` does it every second) for exporters such as `/metrics`.

/// Cumulative counts since the SFU started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// RTP packets written to subscribers (one per subscriber per packet).
    pub forwarded_packets: u64,
    /// Payload bytes of those packets.
    pub forwarded_bytes: u64,
    /// RTCP NACKs received from subscribers (answered from the send cache by str0m).
    pub nacks_received: u64,
    /// Keyframe requests (PLI/FIR) sent to publishers, after throttling.
    pub plis_sent: u64,
    /// A subscriber moved from one simulcast layer to another.
    pub layer_switches: u64,
    /// Empty packets sent to fill the number of a late packet of a layer the subscriber
    /// does not get (`rewrite::SeqRewriter::skip`).
    pub sequence_holes_filled: u64,
    /// Participants that joined.
    pub joins: u64,
    /// Joins refused by a limit: too many rooms.
    pub refused_too_many_rooms: u64,
    /// Joins refused by a limit: the room is full.
    pub refused_room_full: u64,
    /// Joins refused by a limit: too many joins not connected yet.
    pub refused_pending_joins: u64,
    /// Offers refused for sending more tracks than allowed.
    pub refused_too_many_tracks: u64,
    /// Offers refused for sending media without the publish permission.
    pub refused_publish: u64,
    /// Participants removed by the SFU (timeouts, closed media, admin).
    pub removals: u64,
    /// RTP packets handed to other workers' subscribers through the relay (one per packet
    /// per worker that needs its layer).
    pub relayed_packets_out: u64,
    /// RTP packets received through the relay from other workers.
    pub relayed_packets_in: u64,
    /// Relayed media batches dropped because the receiving worker was behind.
    pub relay_batches_dropped: u64,
}

/// Upper bounds (bits per second) of the subscriber estimate histogram buckets.
pub const ESTIMATE_BUCKETS_BPS: [u64; 8] = [
    150_000, 300_000, 600_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000, 20_000_000,
];

/// Upper bounds of the histogram of layer changes per video subscription in the last minute.
pub const LAYER_CHANGE_BUCKETS: [u64; 6] = [0, 1, 2, 4, 8, 16];

/// The SFU's state at one moment: gauges and the cumulative counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub rooms: usize,
    pub participants: usize,
    /// Participants whose media has not connected yet.
    pub pending_participants: usize,
    /// Published tracks.
    pub tracks: usize,
    /// Down-tracks: one per subscriber per track it receives.
    pub subscriptions: usize,
    /// Current bandwidth estimates towards subscribers: for each bound of
    /// [`ESTIMATE_BUCKETS_BPS`], how many participants are at or below it (cumulative).
    pub estimate_buckets: [u64; ESTIMATE_BUCKETS_BPS.len()],
    pub estimate_count: u64,
    pub estimate_sum_bps: u64,
    /// Video subscriptions by how often their layer changed in the last minute: for each
    /// bound of [`LAYER_CHANGE_BUCKETS`], how many changed at most that often (cumulative).
    pub layer_change_buckets: [u64; LAYER_CHANGE_BUCKETS.len()],
    pub layer_change_count: u64,
    pub layer_change_sum: u64,
    pub counters: Counters,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        // Destructured so that a new counter cannot be left out of the sum.
        let Counters {
            forwarded_packets,
            forwarded_bytes,
            nacks_received,
            plis_sent,
            layer_switches,
            sequence_holes_filled,
            joins,
            refused_too_many_rooms,
            refused_room_full,
            refused_pending_joins,
            refused_too_many_tracks,
            refused_publish,
            removals,
            relayed_packets_out,
            relayed_packets_in,
            relay_batches_dropped,
        } = other;
        self.forwarded_packets += forwarded_packets;
        self.forwarded_bytes += forwarded_bytes;
        self.nacks_received += nacks_received;
        self.plis_sent += plis_sent;
        self.layer_switches += layer_switches;
        self.sequence_holes_filled += sequence_holes_filled;
        self.joins += joins;
        self.refused_too_many_rooms += refused_too_many_rooms;
        self.refused_room_full += refused_room_full;
        self.refused_pending_joins += refused_pending_joins;
        self.refused_too_many_tracks += refused_too_many_tracks;
        self.refused_publish += refused_publish;
        self.removals += removals;
        self.relayed_packets_out += relayed_packets_out;
        self.relayed_packets_in += relayed_packets_in;
        self.relay_batches_dropped += relay_batches_dropped;
    }
}

impl MetricsSnapshot {
    /// Add another worker's snapshot: the server's figures are the sum of its workers'.
    pub fn add(&mut self, other: &MetricsSnapshot) {
        // Every worker's directory has every room (`relay.rs`): the largest count is the
        // server's.
        self.rooms = self.rooms.max(other.rooms);
        self.participants += other.participants;
        self.pending_participants += other.pending_participants;
        self.tracks += other.tracks;
        self.subscriptions += other.subscriptions;
        for (total, count) in self.estimate_buckets.iter_mut().zip(other.estimate_buckets) {
            *total += count;
        }
        self.estimate_count += other.estimate_count;
        self.estimate_sum_bps = self.estimate_sum_bps.saturating_add(other.estimate_sum_bps);
        for (total, count) in self
            .layer_change_buckets
            .iter_mut()
            .zip(other.layer_change_buckets)
        {
            *total += count;
        }
        self.layer_change_count += other.layer_change_count;
        self.layer_change_sum += other.layer_change_sum;
        self.counters.add(&other.counters);
    }

    /// Count one participant's estimate.
    pub(crate) fn observe_estimate(&mut self, bps: u64) {
        for (bucket, bound) in self.estimate_buckets.iter_mut().zip(ESTIMATE_BUCKETS_BPS) {
            if bps <= bound {
                *bucket += 1;
            }
        }
        self.estimate_count += 1;
        self.estimate_sum_bps = self.estimate_sum_bps.saturating_add(bps);
    }

    /// Count one video subscription's layer changes in the last minute.
    pub(crate) fn observe_layer_changes(&mut self, changes: usize) {
        let changes = changes as u64;
        for (bucket, bound) in self
            .layer_change_buckets
            .iter_mut()
            .zip(LAYER_CHANGE_BUCKETS)
        {
            if changes <= bound {
                *bucket += 1;
            }
        }
        self.layer_change_count += 1;
        self.layer_change_sum += changes;
    }
}
