//! Which peer a datagram belongs to, without asking every peer.
//!
//! A peer is first seen through a STUN binding request whose USERNAME starts with the ICE
//! ufrag we gave that peer; from then on its remote address (and protocol) is enough. Both are
//! hash-map lookups, so the cost per datagram does not grow with the number of peers.

use std::collections::HashMap;
use std::net::SocketAddr;

use str0m::net::Protocol;

use crate::ids::ParticipantId;

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const STUN_HEADER_LEN: usize = 20;
const STUN_ATTR_USERNAME: u16 = 0x0006;

type Route = (Protocol, SocketAddr);

/// A change to the ufrags a `Demux` routes, so another `Demux` (the media workers' router)
/// can follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteUpdate {
    Add(String, ParticipantId),
    Rename(String, String, ParticipantId),
    Remove(String, ParticipantId),
}

#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<String, ParticipantId>,
    by_route: HashMap<Route, ParticipantId>,
}

impl Demux {
    pub fn add_peer(&mut self, ufrag: String, peer: ParticipantId) {
        self.by_ufrag.insert(ufrag, peer);
    }

    /// The peer's ICE restarted with a new local ufrag; its known addresses stay valid until
    /// checks arrive from new ones.
    pub fn rename_peer(&mut self, old_ufrag: &str, new_ufrag: String, peer: ParticipantId) {
        self.by_ufrag.remove(old_ufrag);
        self.by_ufrag.insert(new_ufrag, peer);
    }

    /// Forget a peer: its ufrag and every address it used.
    pub fn remove_peer(&mut self, ufrag: &str, peer: ParticipantId) {
        self.by_ufrag.remove(ufrag);
        self.by_route.retain(|_, p| *p != peer);
    }

    pub(crate) fn apply(&mut self, update: RouteUpdate) {
        match update {
            RouteUpdate::Add(ufrag, peer) => self.add_peer(ufrag, peer),
            RouteUpdate::Rename(old, new, peer) => self.rename_peer(&old, new, peer),
            RouteUpdate::Remove(ufrag, peer) => self.remove_peer(&ufrag, peer),
        }
    }

    /// The peer this datagram is for. A STUN request naming a known ufrag (re)binds the source
    /// address to that peer; the peer's ICE agent then checks the request's integrity, so a
    /// forged request reaches only the peer it names and is rejected there.
    pub fn route(
        &mut self,
        proto: Protocol,
        source: SocketAddr,
        data: &[u8],
    ) -> Option<ParticipantId> {
        if let Some(ufrag) = stun_target_ufrag(data) {
            if let Some(&peer) = self.by_ufrag.get(ufrag) {
                self.by_route.insert((proto, source), peer);
                return Some(peer);
            }
        }
        self.by_route.get(&(proto, source)).copied()
    }
}

/// For a STUN message, the local (our) part of its USERNAME attribute: `ours:theirs`.
fn stun_target_ufrag(data: &[u8]) -> Option<&str> {
    let header = data.get(..STUN_HEADER_LEN)?;
    // The two top bits of a STUN message are zero; the magic cookie tells STUN from the rest.
    if header[0] & 0xc0 != 0 || header[4..8] != STUN_MAGIC_COOKIE {
        return None;
    }
    let declared_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut attrs = data.get(STUN_HEADER_LEN..STUN_HEADER_LEN + declared_len)?;
    while let [t0, t1, l0, l1, rest @ ..] = attrs {
        let attr_type = u16::from_be_bytes([*t0, *t1]);
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let value = rest.get(..len)?;
        if attr_type == STUN_ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        // Attribute values are padded to a multiple of four bytes.
        attrs = rest.get(len.next_multiple_of(4)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // An attribute before USERNAME, to exercise skipping with padding.
        attrs.extend_from_slice(&[0x80, 0x22, 0x00, 0x03, b'a', b'b', b'c', 0]);
        attrs.extend_from_slice(&STUN_ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&STUN_MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    #[test]
    fn parses_local_ufrag_from_username() {
        assert_eq!(stun_target_ufrag(&stun_request("srv1:cli9")), Some("srv1"));
    }

    #[test]
    fn garbage_is_not_stun() {
        assert_eq!(stun_target_ufrag(&[]), None);
        assert_eq!(stun_target_ufrag(&[0x80; 40]), None, "RTP");
        assert_eq!(stun_target_ufrag(&[0x16, 0xfe, 0xfd]), None, "DTLS");
        let mut truncated = stun_request("srv1:cli9");
        truncated.truncate(30);
        assert_eq!(stun_target_ufrag(&truncated), None);
        let mut lying = stun_request("srv1:cli9");
        lying[3] = 0xff; // declared length beyond the datagram
        assert_eq!(stun_target_ufrag(&lying), None);
    }

    #[test]
    fn routes_by_ufrag_then_by_address() {
        let mut demux = Demux::default();
        let alice = ParticipantId::random_on(0);
        let bob = ParticipantId::random_on(0);
        demux.add_peer("aaaa".into(), alice);
        demux.add_peer("bbbb".into(), bob);
        let a_addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b_addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            demux.route(Protocol::Udp, a_addr, &[0x80, 0x60]),
            None,
            "unknown address"
        );
        assert_eq!(
            demux.route(Protocol::Udp, a_addr, &stun_request("aaaa:x")),
            Some(alice)
        );
        assert_eq!(
            demux.route(Protocol::Udp, b_addr, &stun_request("bbbb:y")),
            Some(bob)
        );
        assert_eq!(
            demux.route(Protocol::Udp, a_addr, &[0x80, 0x60]),
            Some(alice)
        );
        assert_eq!(
            demux.route(Protocol::Tcp, a_addr, &[0x80, 0x60]),
            None,
            "protocol matters"
        );
        assert_eq!(
            demux.route(Protocol::Udp, a_addr, &stun_request("zzzz:x")),
            Some(alice)
        );
        demux.remove_peer("aaaa", alice);
        assert_eq!(demux.route(Protocol::Udp, a_addr, &[0x80, 0x60]), None);
        assert_eq!(demux.route(Protocol::Udp, b_addr, &[0x80, 0x60]), Some(bob));
    }
}
