//! Identifiers the SFU hands out: opaque, unguessable, cheap to copy and hash.

use std::fmt;

macro_rules! id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            pub(crate) fn random() -> Self {
                Self(rand::random())
            }

            /// Parse the form produced by `Display` (`<prefix><16 hex digits>`).
            pub fn parse(s: &str) -> Option<Self> {
                let hex = s.strip_prefix($prefix)?;
                if hex.len() != 16 {
                    return None;
                }
                u64::from_str_radix(hex, 16).ok().map(Self)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_through_parse() {
        let id = ParticipantId::random();
        assert_eq!(ParticipantId::parse(&id.to_string()), Some(id));
        assert_eq!(TrackId::parse(&id.to_string()), None, "prefix is checked");
        assert_eq!(ParticipantId::parse("P12"), None);
    }
}
