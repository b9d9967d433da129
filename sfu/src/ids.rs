//! Identifiers the SFU hands out: opaque, unguessable, cheap to copy and hash.

use std::fmt;

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            /// Parse the form produced by `Display` (`<prefix><16 hex digits>`).
            pub fn parse(s: &str) -> Option<Self> {
                let hex = s.strip_prefix($prefix)?;
                if hex.len() != 16 {
                    return None;
                }
                u64::from_str_radix(hex, 16).ok().map(Self)
            }

            /// The id as a number, for compact encodings (the relay between nodes).
            pub fn as_u64(self) -> u64 {
                self.0
            }

            pub fn from_u64(value: u64) -> Self {
                Self(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:016x}"), self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

id_type!(ParticipantId, "P");
id_type!(TrackId, "T");

impl TrackId {
    pub(crate) fn random() -> Self {
        Self(rand::random())
    }
}

impl ParticipantId {
    /// A random id whose low byte is `shard`: whoever holds the id can tell which media
    /// worker owns the participant without asking.
    pub(crate) fn random_on(shard: u8) -> Self {
        Self((rand::random::<u64>() & !0xff) | u64::from(shard))
    }

    /// The media worker the participant belongs to.
    pub fn shard(self) -> u8 {
        (self.0 & 0xff) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_through_parse() {
        let id = ParticipantId::random_on(3);
        assert_eq!(ParticipantId::parse(&id.to_string()), Some(id));
        assert_eq!(TrackId::parse(&id.to_string()), None, "prefix is checked");
        assert_eq!(ParticipantId::parse("P12"), None);
    }

    #[test]
    fn ids_carry_their_shard() {
        for shard in [0, 1, 7, 255] {
            let id = ParticipantId::random_on(shard);
            assert_eq!(id.shard(), shard);
            assert_eq!(ParticipantId::parse(&id.to_string()), Some(id));
        }
    }
}
