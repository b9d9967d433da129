//! The node gateway: the relay slot after this node's media workers (`sfu::RelayPort`), joined
//! to the other nodes' gateways by links. To the media workers the gateway looks like one
//! more worker, where every participant of another node lives; to other nodes it speaks for
//! this node's participants.
//!
//! - Room events of this node's participants (which the workers broadcast to every slot) go to
//!   every linked node; other nodes' events go to every worker here, once (a node that links
//!   again sends its state again, and what is known already is not repeated).
//! - A track of another node: the workers' needs are merged into one per track and sent to its
//!   node; its packets come once per node and go to each worker that needs their layer.
//! - A track of this node: the other nodes' needs are merged and given to the worker of its
//!   publisher as the gateway's, so the packets come here once and leave once per node.
//! - A node that dies (its link is down and the registry no longer lists it): every worker is
//!   told that its participants left.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sfu::relay::{has_layer, LayerMask, RelayMessage, RelayedPacket, RoomEvent, WorkerIndex};
use sfu::{ParticipantId, RelayInbox, TrackId};

use crate::link::LinkSender;
use crate::wire::NodeMessage;
use crate::{ClusterStats, NodeId};

/// A participant of this node, as the gateway tells other nodes about it.
#[derive(Debug, Clone)]
struct LocalMember {
    room: String,
    name: String,
    tracks: Vec<(TrackId, RoomEvent)>,
}

/// A participant of another node.
#[derive(Debug, Clone)]
struct RemoteMember {
    node: NodeId,
    room: String,
    tracks: Vec<TrackId>,
}

pub struct Gateway {
    /// This slot's index among the workers' relay slots.
    index: WorkerIndex,
    workers: Vec<RelayInbox>,
    links: HashMap<NodeId, LinkSender>,
    local: HashMap<ParticipantId, LocalMember>,
    /// Local tracks: the worker of the publisher.
    local_tracks: HashMap<TrackId, WorkerIndex>,
    remote: HashMap<ParticipantId, RemoteMember>,
    /// Remote tracks: the node of the publisher.
    remote_tracks: HashMap<TrackId, NodeId>,
    /// Remote tracks: what each worker here needs, and what was asked of the node.
    worker_needs: HashMap<TrackId, (Vec<(WorkerIndex, LayerMask)>, LayerMask)>,
    /// Local tracks: what each node needs, and what was asked of the worker.
    node_needs: HashMap<TrackId, (Vec<(NodeId, LayerMask)>, LayerMask)>,
    /// Per node linking up: the members its snapshot has named so far.
    snapshots: HashMap<NodeId, HashSet<ParticipantId>>,
    stats: Arc<ClusterStats>,
}

impl Gateway {
    pub fn new(index: WorkerIndex, workers: Vec<RelayInbox>, stats: Arc<ClusterStats>) -> Self {
        Self {
            index,
            workers,
            links: HashMap::new(),
            local: HashMap::new(),
            local_tracks: HashMap::new(),
            remote: HashMap::new(),
            remote_tracks: HashMap::new(),
            worker_needs: HashMap::new(),
            node_needs: HashMap::new(),
            snapshots: HashMap::new(),
            stats,
        }
    }

    pub fn linked(&self, node: NodeId) -> bool {
        self.links.contains_key(&node)
    }

    pub fn link(&self, node: NodeId) -> Option<&LinkSender> {
        self.links.get(&node)
    }

    /// The nodes linked now.
    pub fn linked_nodes(&self) -> Vec<NodeId> {
        self.links.keys().copied().collect()
    }

    pub fn link_generation(&self, node: NodeId) -> Option<u64> {
        self.links.get(&node).map(|l| l.generation)
    }

    /// Participants of this node.
    pub fn local_participants(&self) -> usize {
        self.local.len()
    }

    fn tell_workers(&self, messages: Vec<RelayMessage>) {
        if messages.is_empty() {
            return;
        }
        for worker in &self.workers {
            worker.send_control(self.index, messages.clone());
        }
    }

    fn tell_worker(&self, worker: WorkerIndex, message: RelayMessage) {
        if let Some(inbox) = self.workers.get(usize::from(worker)) {
            inbox.send_control(self.index, vec![message]);
        }
    }

    /// Control messages from one of this node's workers.
    pub fn handle_worker_messages(&mut self, worker: WorkerIndex, messages: Vec<RelayMessage>) {
        for message in messages {
            match message {
                RelayMessage::Room(event) => {
                    self.record_local(worker, &event);
                    for link in self.links.values() {
                        link.send(NodeMessage::Room(event.clone()));
                    }
                }
                RelayMessage::Needs { track, layers } => self.worker_needs(worker, track, layers),
                RelayMessage::Operator(action) => {
                    for link in self.links.values() {
                        link.send(NodeMessage::Operator(action.clone()));
                    }
                }
                RelayMessage::KeyframeRequest { track, layer, kind } => {
                    if let Some(link) = self
                        .remote_tracks
                        .get(&track)
                        .and_then(|node| self.links.get(node))
                    {
                        link.send(NodeMessage::KeyframeRequest {
                            track,
                            layer: layer.min(255) as u8,
                            kind,
                        });
                    }
                }
            }
        }
    }

    fn record_local(&mut self, worker: WorkerIndex, event: &RoomEvent) {
        match event {
            RoomEvent::Joined {
                room,
                participant,
                name,
            } => {
                self.local.insert(
                    *participant,
                    LocalMember {
                        room: room.clone(),
                        name: name.clone(),
                        tracks: Vec::new(),
                    },
                );
            }
            RoomEvent::Left { participant, .. } => {
                if let Some(member) = self.local.remove(participant) {
                    for (track, _) in member.tracks {
                        self.local_tracks.remove(&track);
                        self.node_needs.remove(&track);
                    }
                }
            }
            RoomEvent::Published {
                participant, track, ..
            } => {
                if let Some(member) = self.local.get_mut(participant) {
                    member.tracks.push((*track, event.clone()));
                    self.local_tracks.insert(*track, worker);
                }
            }
            RoomEvent::Unpublished {
                participant, track, ..
            } => {
                if let Some(member) = self.local.get_mut(participant) {
                    member.tracks.retain(|(t, _)| t != track);
                }
                self.local_tracks.remove(track);
                self.node_needs.remove(track);
            }
            RoomEvent::Muted { track, muted, .. } => {
                if let Some(member) = self
                    .local
                    .values_mut()
                    .find(|m| m.tracks.iter().any(|(t, _)| t == track))
                {
                    for (t, published) in &mut member.tracks {
                        if let (true, RoomEvent::Published { muted: m, .. }) =
                            (t == track, published)
                        {
                            *m = *muted;
                        }
                    }
                }
            }
            // Not state: nothing to keep for a node that links later.
            RoomEvent::Data { .. } => {}
            RoomEvent::SourceChanged { track, source } => {
                for member in self.local.values_mut() {
                    for (t, published) in &mut member.tracks {
                        if let (true, RoomEvent::Published { source: s, .. }) =
                            (t == track, published)
                        {
                            *s = *source;
                        }
                    }
                }
            }
        }
    }

    fn worker_needs(&mut self, worker: WorkerIndex, track: TrackId, layers: LayerMask) {
        let Some(&node) = self.remote_tracks.get(&track) else {
            return;
        };
        let (needs, asked) = self.worker_needs.entry(track).or_default();
        needs.retain(|(w, _)| *w != worker);
        if layers != 0 {
            needs.push((worker, layers));
        }
        let union = needs.iter().fold(0, |all, (_, l)| all | l);
        if union != *asked {
            *asked = union;
            if let Some(link) = self.links.get(&node) {
                link.send(NodeMessage::Needs {
                    track,
                    layers: union,
                });
            }
        }
    }

    /// Media of this node's tracks that other nodes need.
    pub fn media_from_workers(&mut self, packets: Vec<RelayedPacket>) {
        let mut batches: HashMap<NodeId, Vec<RelayedPacket>> = HashMap::new();
        for packet in packets {
            let Some((needs, _)) = self.node_needs.get(&packet.track) else {
                continue;
            };
            for (node, layers) in needs {
                if has_layer(*layers, packet.layer) {
                    batches.entry(*node).or_default().push(packet.clone());
                }
            }
        }
        for (node, batch) in batches {
            if let Some(link) = self.links.get(&node) {
                let packets = batch.len() as u64;
                if link.send_media(NodeMessage::Media(batch)) {
                    self.stats
                        .packets_to_nodes
                        .fetch_add(packets, Ordering::Relaxed);
                } else {
                    self.stats
                        .media_batches_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%node, "relay link behind, media dropped");
                }
            }
        }
    }

    /// A link to `node` is up (again): tell it everything about this node's participants.
    pub fn link_up(&mut self, node: NodeId, link: LinkSender) {
        tracing::info!(%node, "relay link up");
        for member_id in self.local.keys() {
            let member = &self.local[member_id];
            link.send(NodeMessage::Room(RoomEvent::Joined {
                room: member.room.clone(),
                participant: *member_id,
                name: member.name.clone(),
            }));
            for (_, published) in &member.tracks {
                link.send(NodeMessage::Room(published.clone()));
            }
        }
        link.send(NodeMessage::SnapshotEnd);
        // What this node needs of that node's tracks, again (the other side may have lost it).
        for (track, (_, asked)) in &self.worker_needs {
            if *asked != 0 && self.remote_tracks.get(track) == Some(&node) {
                link.send(NodeMessage::Needs {
                    track: *track,
                    layers: *asked,
                });
            }
        }
        self.snapshots.insert(node, HashSet::new());
        self.links.insert(node, link);
        self.stats
            .linked_nodes
            .store(self.links.len(), Ordering::Relaxed);
    }

    /// The link to `node` ended. Its participants stay until it links again (and says who is
    /// still there) or is declared dead; it no longer needs anything from here.
    pub fn link_down(&mut self, node: NodeId, generation: u64) {
        if self.link_generation(node) != Some(generation) {
            return; // a newer link replaced it
        }
        tracing::info!(%node, "relay link down");
        self.links.remove(&node);
        self.stats
            .linked_nodes
            .store(self.links.len(), Ordering::Relaxed);
        self.snapshots.remove(&node);
        let tracks: Vec<TrackId> = self.node_needs.keys().copied().collect();
        for track in tracks {
            self.node_needs_changed(track, node, 0);
        }
    }

    /// `node` is gone for good: its participants left.
    pub fn node_dead(&mut self, node: NodeId) {
        tracing::warn!(%node, "node gone: its participants left");
        self.links.remove(&node);
        self.stats.nodes_lost.fetch_add(1, Ordering::Relaxed);
        self.stats
            .linked_nodes
            .store(self.links.len(), Ordering::Relaxed);
        self.snapshots.remove(&node);
        let gone: Vec<ParticipantId> = self
            .remote
            .iter()
            .filter(|(_, m)| m.node == node)
            .map(|(id, _)| *id)
            .collect();
        let mut messages = Vec::new();
        for participant in gone {
            if let Some(left) = self.remove_remote(participant) {
                messages.push(RelayMessage::Room(left));
            }
        }
        self.tell_workers(messages);
        let tracks: Vec<TrackId> = self.node_needs.keys().copied().collect();
        for track in tracks {
            self.node_needs_changed(track, node, 0);
        }
    }

    fn remove_remote(&mut self, participant: ParticipantId) -> Option<RoomEvent> {
        let member = self.remote.remove(&participant)?;
        for track in &member.tracks {
            self.remote_tracks.remove(track);
            self.worker_needs.remove(track);
        }
        Some(RoomEvent::Left {
            room: member.room,
            participant,
        })
    }

    fn node_needs_changed(&mut self, track: TrackId, node: NodeId, layers: LayerMask) {
        let Some(&worker) = self.local_tracks.get(&track) else {
            return;
        };
        let (needs, asked) = self.node_needs.entry(track).or_default();
        needs.retain(|(n, _)| *n != node);
        if layers != 0 {
            needs.push((node, layers));
        }
        let union = needs.iter().fold(0, |all, (_, l)| all | l);
        if union != *asked {
            *asked = union;
            self.tell_worker(
                worker,
                RelayMessage::Needs {
                    track,
                    layers: union,
                },
            );
        }
    }

    /// A message from another node.
    pub fn handle_node_message(&mut self, node: NodeId, message: NodeMessage) {
        match message {
            NodeMessage::Room(event) => {
                if let Some(event) = self.record_remote(node, event) {
                    self.tell_workers(vec![RelayMessage::Room(event)]);
                }
            }
            NodeMessage::SnapshotEnd => {
                let Some(named) = self.snapshots.remove(&node) else {
                    return;
                };
                let gone: Vec<ParticipantId> = self
                    .remote
                    .iter()
                    .filter(|(id, m)| m.node == node && !named.contains(id))
                    .map(|(id, _)| *id)
                    .collect();
                let messages: Vec<RelayMessage> = gone
                    .into_iter()
                    .filter_map(|p| self.remove_remote(p))
                    .map(RelayMessage::Room)
                    .collect();
                self.tell_workers(messages);
            }
            NodeMessage::Needs { track, layers } => self.node_needs_changed(track, node, layers),
            NodeMessage::KeyframeRequest { track, layer, kind } => {
                if let Some(&worker) = self.local_tracks.get(&track) {
                    self.tell_worker(
                        worker,
                        RelayMessage::KeyframeRequest {
                            track,
                            layer: usize::from(layer),
                            kind,
                        },
                    );
                }
            }
            NodeMessage::Media(packets) => self.media_from_node(node, packets),
            NodeMessage::Ping => {}
            NodeMessage::Operator(action) => {
                tracing::info!(%node, ?action, "operator action from another node");
                self.tell_workers(vec![RelayMessage::Operator(action)]);
            }
            // Answered by the gateway's task, which can wait for the workers.
            NodeMessage::StatsRequest { .. } | NodeMessage::StatsReply { .. } => {}
        }
    }

    /// Keep what a node says of its participants; the event to pass on, unless it is known
    /// already or names what that node does not own.
    fn record_remote(&mut self, node: NodeId, event: RoomEvent) -> Option<RoomEvent> {
        match &event {
            RoomEvent::Joined {
                room, participant, ..
            } => {
                if let Some(named) = self.snapshots.get_mut(&node) {
                    named.insert(*participant);
                }
                if self.local.contains_key(participant) {
                    return None;
                }
                match self.remote.get(participant) {
                    Some(m) if m.node == node => return None,
                    Some(_) => return None, // another node's: a collision or a lie
                    None => {}
                }
                self.remote.insert(
                    *participant,
                    RemoteMember {
                        node,
                        room: room.clone(),
                        tracks: Vec::new(),
                    },
                );
            }
            RoomEvent::Left { participant, .. } => {
                if self.remote.get(participant)?.node != node {
                    return None;
                }
                return self.remove_remote(*participant);
            }
            RoomEvent::Published {
                participant, track, ..
            } => {
                let member = self.remote.get_mut(participant)?;
                if member.node != node || member.tracks.contains(track) {
                    return None;
                }
                if self.local_tracks.contains_key(track) || self.remote_tracks.contains_key(track) {
                    return None;
                }
                member.tracks.push(*track);
                self.remote_tracks.insert(*track, node);
            }
            RoomEvent::Unpublished {
                participant, track, ..
            } => {
                let member = self.remote.get_mut(participant)?;
                if member.node != node || !member.tracks.contains(track) {
                    return None;
                }
                member.tracks.retain(|t| t != track);
                self.remote_tracks.remove(track);
                self.worker_needs.remove(track);
            }
            RoomEvent::Muted { track, .. } | RoomEvent::SourceChanged { track, .. } => {
                if self.remote_tracks.get(track) != Some(&node) {
                    return None;
                }
            }
            // Only from the sender's own node: a node cannot speak for another's members.
            RoomEvent::Data { data, .. } => {
                if self.remote.get(&data.from)?.node != node {
                    return None;
                }
            }
        }
        Some(event)
    }

    fn media_from_node(&mut self, node: NodeId, packets: Vec<RelayedPacket>) {
        self.stats
            .packets_from_nodes
            .fetch_add(packets.len() as u64, Ordering::Relaxed);
        let mut batches: HashMap<WorkerIndex, Vec<RelayedPacket>> = HashMap::new();
        for packet in packets {
            if self.remote_tracks.get(&packet.track) != Some(&node) {
                continue;
            }
            let Some((needs, _)) = self.worker_needs.get(&packet.track) else {
                continue;
            };
            for (worker, layers) in needs {
                if has_layer(*layers, packet.layer) {
                    batches.entry(*worker).or_default().push(packet.clone());
                }
            }
        }
        for (worker, batch) in batches {
            if let Some(inbox) = self.workers.get(usize::from(worker)) {
                if !inbox.send_media(batch) {
                    self.stats
                        .media_batches_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu::{ForwardedCodec, MediaKind, TrackSource};
    use std::time::Instant;
    use str0m::rtp::Ssrc;
    use tokio::sync::mpsc;

    type Control = mpsc::UnboundedReceiver<(WorkerIndex, Vec<RelayMessage>)>;
    type Media = mpsc::Receiver<Vec<RelayedPacket>>;

    /// A gateway at slot 2 in front of two workers whose inboxes the test reads.
    fn gateway() -> (Gateway, Vec<(Control, Media)>) {
        let mut inboxes = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..2 {
            let (control, control_rx) = mpsc::unbounded_channel();
            let (media, media_rx) = mpsc::channel(16);
            inboxes.push(RelayInbox::from_channels(control, media));
            receivers.push((control_rx, media_rx));
        }
        let gateway = Gateway::new(2, inboxes, Arc::new(ClusterStats::default()));
        (gateway, receivers)
    }

    fn link(generation: u64) -> (LinkSender, mpsc::UnboundedReceiver<NodeMessage>) {
        let (control, control_rx) = mpsc::unbounded_channel();
        let (media, _media_rx) = mpsc::channel(16);
        (
            LinkSender::from_channels(control, media, generation),
            control_rx,
        )
    }

    /// Room events a worker was given, as short strings.
    fn room_events(rx: &mut Control) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok((from, messages)) = rx.try_recv() {
            assert_eq!(from, 2, "sent as the gateway's slot");
            for message in messages {
                match message {
                    RelayMessage::Room(RoomEvent::Joined { participant, .. }) => {
                        seen.push(format!("joined {participant}"))
                    }
                    RelayMessage::Room(RoomEvent::Left { participant, .. }) => {
                        seen.push(format!("left {participant}"))
                    }
                    RelayMessage::Room(RoomEvent::Published { track, .. }) => {
                        seen.push(format!("published {track}"))
                    }
                    other => seen.push(format!("{other:?}")),
                }
            }
        }
        seen
    }

    fn needs_sent(rx: &mut mpsc::UnboundedReceiver<NodeMessage>) -> Vec<(TrackId, u8)> {
        let mut sent = Vec::new();
        while let Ok(message) = rx.try_recv() {
            if let NodeMessage::Needs { track, layers } = message {
                sent.push((track, layers));
            }
        }
        sent
    }

    fn joined(p: ParticipantId) -> NodeMessage {
        NodeMessage::Room(RoomEvent::Joined {
            room: "r".into(),
            participant: p,
            name: "n".into(),
        })
    }

    fn published(p: ParticipantId, t: TrackId) -> NodeMessage {
        NodeMessage::Room(RoomEvent::Published {
            room: "r".into(),
            participant: p,
            track: t,
            kind: MediaKind::Video,
            rids: Vec::new(),
            source: TrackSource::Camera,
            muted: false,
        })
    }

    fn packet(track: TrackId, layer: usize) -> RelayedPacket {
        RelayedPacket {
            track,
            layer,
            codec: ForwardedCodec::Vp8,
            ssrc: Ssrc::from(1),
            seq: 1,
            timestamp: 0,
            marker: false,
            received: Instant::now(),
            audio_level: None,
            voice_activity: None,
            video_orientation: None,
            dependency_descriptor: None,
            payload: vec![0x10, 0],
        }
    }

    #[test]
    fn a_relinked_node_is_settled_by_its_snapshot() {
        let (mut gw, mut workers) = gateway();
        let node = NodeId(7);
        let (p1, p2) = (
            ParticipantId::from_u64(0x100),
            ParticipantId::from_u64(0x200),
        );
        let t1 = TrackId::from_u64(1);
        let (sender, _rx) = link(1);
        gw.link_up(node, sender);
        for message in [
            joined(p1),
            published(p1, t1),
            joined(p1),
            NodeMessage::SnapshotEnd,
        ] {
            gw.handle_node_message(node, message);
        }
        for (control, _) in &mut workers {
            assert_eq!(
                room_events(control),
                [format!("joined {p1}"), format!("published {t1}")],
                "each event once, the repeated join filtered"
            );
        }

        // The link breaks; meanwhile p1 leaves and p2 joins over there. Linked again, the
        // node's snapshot names only p2: p1 has left.
        gw.link_down(node, 1);
        let (sender, _rx) = link(2);
        gw.link_up(node, sender);
        for message in [joined(p2), NodeMessage::SnapshotEnd] {
            gw.handle_node_message(node, message);
        }
        for (control, _) in &mut workers {
            assert_eq!(
                room_events(control),
                [format!("joined {p2}"), format!("left {p1}")]
            );
        }

        // Declared dead: everyone it had left.
        gw.node_dead(node);
        for (control, _) in &mut workers {
            assert_eq!(room_events(control), [format!("left {p2}")]);
        }
        assert!(!gw.linked(node));
    }

    #[test]
    fn data_passes_only_from_the_node_of_its_sender() {
        let (mut gw, mut workers) = gateway();
        let (honest, liar) = (NodeId(3), NodeId(4));
        let p = ParticipantId::from_u64(0x400);
        let (sender, _rx) = link(1);
        gw.link_up(honest, sender);
        let (sender, _rx2) = link(1);
        gw.link_up(liar, sender);
        gw.handle_node_message(honest, joined(p));
        let data = |text: &str| {
            NodeMessage::Room(RoomEvent::Data {
                room: "r".into(),
                data: sfu::AppData {
                    from: p,
                    name: "n".into(),
                    to: None,
                    payload: text.into(),
                },
            })
        };
        gw.handle_node_message(liar, data("forged"));
        gw.handle_node_message(honest, data("real"));
        for (control, _) in &mut workers {
            let events = room_events(control);
            assert_eq!(events.len(), 2, "{events:?}");
            assert!(events[1].contains("real") && !events[1].contains("forged"));
        }
    }

    #[test]
    fn workers_needs_are_merged_per_track_and_media_goes_where_needed() {
        let (mut gw, mut workers) = gateway();
        let node = NodeId(9);
        let p = ParticipantId::from_u64(0x300);
        let t = TrackId::from_u64(5);
        let (sender, mut link_rx) = link(1);
        gw.link_up(node, sender);
        gw.handle_node_message(node, joined(p));
        gw.handle_node_message(node, published(p, t));

        let needs = |layers| vec![RelayMessage::Needs { track: t, layers }];
        gw.handle_worker_messages(0, needs(0b001));
        gw.handle_worker_messages(1, needs(0b100));
        gw.handle_worker_messages(1, needs(0b100)); // no change: nothing sent
        gw.handle_worker_messages(0, needs(0));
        assert_eq!(
            needs_sent(&mut link_rx),
            [(t, 0b001), (t, 0b101), (t, 0b100)],
            "the union, each time it changes"
        );

        gw.handle_node_message(node, NodeMessage::Media(vec![packet(t, 2), packet(t, 0)]));
        let (_, media0) = &mut workers[0];
        assert!(media0.try_recv().is_err(), "worker 0 needs nothing now");
        let (_, media1) = &mut workers[1];
        let got = media1.try_recv().expect("worker 1 gets its layer");
        assert_eq!(got.iter().map(|p| p.layer).collect::<Vec<_>>(), [2]);

        // Media that the node does not own is not passed on.
        gw.handle_node_message(NodeId(10), NodeMessage::Media(vec![packet(t, 2)]));
        assert!(media1.try_recv().is_err());
    }
}
