//! The cluster's registry in Redis: which nodes are alive, where their relay listens, and how
//! many participants each has.
//!
//! Keys (all under the configured prefix, `switchboard:` by default):
//! - `nodes`: a set of node ids (hex) that ever registered and were not yet found dead;
//! - `node:{id}`: `"{relay address} {participants}"`, written every second with a 3 s expiry:
//!   a node whose key is gone stopped (or cannot reach Redis).
//!
//! Redis is not on any call's path: rooms, events and media go over the relay links. A node
//! only asks Redis who else is there; while Redis is away, links that exist stay, no node is
//! declared dead, and new nodes are not discovered until it is back (then every node writes
//! its key again within a second, so a Redis that restarted empty is rebuilt at once).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::NodeId;

/// How often a node writes its key and reads the others'.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node key lives this long after its last write.
pub const NODE_TTL: Duration = Duration::from_millis(3000);
const REDIS_TIMEOUT: Duration = Duration::from_millis(800);

/// One node as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub relay_addr: SocketAddr,
    pub participants: usize,
}

/// What one look at the registry found.
#[derive(Debug, Default)]
pub struct Membership {
    pub alive: HashMap<NodeId, NodeEntry>,
    /// Registered nodes whose key has expired.
    pub expired: Vec<NodeId>,
}

pub struct Registry {
    client: redis::Client,
    connection: Option<ConnectionManager>,
    prefix: String,
}

impl Registry {
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: None,
            prefix: prefix.to_owned(),
        })
    }

    async fn connection(&mut self) -> Result<&mut ConnectionManager, redis::RedisError> {
        if self.connection.is_none() {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(REDIS_TIMEOUT)
                .set_response_timeout(REDIS_TIMEOUT)
                .set_number_of_retries(1);
            let manager = ConnectionManager::new_with_config(self.client.clone(), config).await?;
            self.connection = Some(manager);
        }
        Ok(self.connection.as_mut().expect("just set"))
    }

    /// Write this node's key and read everyone's, in one round trip each.
    pub async fn heartbeat(
        &mut self,
        me: NodeId,
        entry: &NodeEntry,
    ) -> Result<Membership, redis::RedisError> {
        let prefix = self.prefix.clone();
        let nodes_key = format!("{prefix}nodes");
        let value = format!("{} {}", entry.relay_addr, entry.participants);
        let con = self.connection().await?;
        redis::pipe()
            .atomic()
            .cmd("SADD")
            .arg(&nodes_key)
            .arg(me.to_string())
            .ignore()
            .cmd("SET")
            .arg(format!("{prefix}node:{me}"))
            .arg(value)
            .arg("PX")
            .arg(NODE_TTL.as_millis() as u64)
            .ignore()
            .query_async::<()>(con)
            .await?;
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&nodes_key)
            .query_async(con)
            .await?;
        let ids: Vec<NodeId> = ids.iter().filter_map(|s| NodeId::parse(s)).collect();
        let mut membership = Membership::default();
        if ids.is_empty() {
            return Ok(membership);
        }
        let keys: Vec<String> = ids.iter().map(|id| format!("{prefix}node:{id}")).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(con).await?;
        for (id, value) in ids.into_iter().zip(values) {
            match value.as_deref().and_then(parse_entry) {
                Some(entry) => {
                    membership.alive.insert(id, entry);
                }
                None => membership.expired.push(id),
            }
        }
        Ok(membership)
    }

    /// Forget a node found dead (so the next look does not report it again).
    pub async fn forget(&mut self, node: NodeId) -> Result<(), redis::RedisError> {
        let nodes_key = format!("{}nodes", self.prefix);
        let con = self.connection().await?;
        redis::cmd("SREM")
            .arg(nodes_key)
            .arg(node.to_string())
            .query_async::<()>(con)
            .await
    }

    /// Remove this node's entry at a clean shutdown.
    pub async fn deregister(&mut self, me: NodeId) -> Result<(), redis::RedisError> {
        let prefix = self.prefix.clone();
        let con = self.connection().await?;
        redis::pipe()
            .cmd("SREM")
            .arg(format!("{prefix}nodes"))
            .arg(me.to_string())
            .ignore()
            .cmd("DEL")
            .arg(format!("{prefix}node:{me}"))
            .ignore()
            .query_async::<()>(con)
            .await
    }
}

fn parse_entry(value: &str) -> Option<NodeEntry> {
    let (addr, participants) = value.split_once(' ')?;
    Some(NodeEntry {
        relay_addr: addr.parse().ok()?,
        participants: participants.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_garbage_does_not() {
        assert_eq!(
            parse_entry("127.0.0.2:7000 12"),
            Some(NodeEntry {
                relay_addr: "127.0.0.2:7000".parse().unwrap(),
                participants: 12
            })
        );
        for bad in ["", "x 1", "127.0.0.1:1", "127.0.0.1:1 -3", "[::1]:9 x"] {
            assert_eq!(parse_entry(bad), None, "{bad}");
        }
    }
}
