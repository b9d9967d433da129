//! SDP fragments for WHIP and WHEP `PATCH` (`application/trickle-ice-sdpfrag`, RFC 8840):
//! reading a client's (its ICE credentials and candidates), writing ours after an ICE restart,
//! and the SDP rewriting that turns a client's ICE restart into a new offer for the SFU.

/// Most candidates one fragment may carry: a client has a handful per interface and
/// transport; more is a flood.
pub const MAX_CANDIDATES: usize = 64;

/// What a client's fragment says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceFragment {
    /// `a=ice-ufrag` and `a=ice-pwd`, when the fragment has them (both, or it is refused).
    pub credentials: Option<IceCredentials>,
    /// `a=candidate` lines, without the `a=` prefix.
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// Why a fragment was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("line {0} is not an SDP line (want \"a=...\" or \"m=...\")")]
    NotSdp(usize),
    #[error("a fragment must carry both a=ice-ufrag and a=ice-pwd, or neither")]
    HalfCredentials,
    #[error("the ICE credentials are empty or have characters outside RFC 8839's ice-char")]
    BadCredentials,
    #[error("more than {MAX_CANDIDATES} candidates")]
    TooManyCandidates,
}

impl IceFragment {
    pub fn parse(text: &str) -> Result<Self, FragmentError> {
        let mut fragment = Self::default();
        let (mut ufrag, mut pwd) = (None, None);
        for (number, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() {
                continue;
            }
            let Some(attribute) = line.strip_prefix("a=") else {
                if line.starts_with("m=") {
                    continue;
                }
                return Err(FragmentError::NotSdp(number + 1));
            };
            if let Some(value) = attribute.strip_prefix("ice-ufrag:") {
                ufrag = Some(value.to_owned());
            } else if let Some(value) = attribute.strip_prefix("ice-pwd:") {
                pwd = Some(value.to_owned());
            } else if attribute.starts_with("candidate:") {
                if fragment.candidates.len() == MAX_CANDIDATES {
                    return Err(FragmentError::TooManyCandidates);
                }
                fragment.candidates.push(attribute.to_owned());
            } else if attribute == "end-of-candidates" {
                fragment.end_of_candidates = true;
            }
            // Anything else (a=mid, a=group, a=ice-options) needs nothing: all is bundled.
        }
        fragment.credentials = match (ufrag, pwd) {
            (None, None) => None,
            (Some(ufrag), Some(pwd)) => {
                if !is_ice_chars(&ufrag) || !is_ice_chars(&pwd) {
                    return Err(FragmentError::BadCredentials);
                }
                Some(IceCredentials { ufrag, pwd })
            }
            _ => return Err(FragmentError::HalfCredentials),
        };
        Ok(fragment)
    }
}

/// RFC 8839's `ice-char`: ALPHA / DIGIT / "+" / "/", at most 256 of them.
fn is_ice_chars(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The ICE credentials of a session description (the first `a=ice-ufrag`/`a=ice-pwd`; with
/// BUNDLE every section has the same).
pub fn sdp_credentials(sdp: &str) -> Option<IceCredentials> {
    let find = |prefix: &str| {
        sdp.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::to_owned)
    };
    Some(IceCredentials {
        ufrag: find("a=ice-ufrag:")?,
        pwd: find("a=ice-pwd:")?,
    })
}

/// `offer` with the client's new ICE credentials and none of its old candidates: what the
/// client would have offered for its ICE restart if WHIP could renegotiate. The SFU answers
/// it as it answers a browser's ICE restart.
pub fn restart_offer(offer: &str, credentials: &IceCredentials) -> String {
    let mut out = String::with_capacity(offer.len());
    for line in offer.lines().map(str::trim_end) {
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(&credentials.ufrag);
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(&credentials.pwd);
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// Our fragment after an ICE restart, from the SFU's answer: its first m-section's line and
/// mid, the new credentials and the candidates (RFC 9725 4.3.2), with `a=ice-lite` as in the
/// answer.
pub fn answer_fragment(answer: &str) -> String {
    let mut out = String::new();
    if answer.lines().any(|l| l.trim() == "a=ice-lite") {
        out.push_str("a=ice-lite\r\n");
    }
    let mut in_first_section = false;
    for line in answer.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            if in_first_section {
                break;
            }
            in_first_section = true;
            out.push_str(line);
            out.push_str("\r\n");
            continue;
        }
        let wanted = ["a=mid:", "a=ice-ufrag:", "a=ice-pwd:", "a=candidate:"]
            .iter()
            .any(|p| line.starts_with(p));
        if in_first_section && wanted {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("a=end-of-candidates\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_trickle_fragment() {
        let text = "a=ice-options:trickle ice2\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\na=end-of-candidates\r\n";
        let f = IceFragment::parse(text).expect("parses");
        assert_eq!(
            f.credentials,
            Some(IceCredentials {
                ufrag: "EsAw".into(),
                pwd: "P2uYro0UCOQ4zxjKXaWCBui1".into()
            })
        );
        assert_eq!(f.candidates.len(), 1);
        assert!(f.candidates[0].starts_with("candidate:1387637174 1 udp"));
        assert!(f.end_of_candidates);
        assert_eq!(
            IceFragment::parse("").expect("empty"),
            IceFragment::default()
        );
    }

    #[test]
    fn refuses_what_is_not_a_fragment() {
        assert_eq!(IceFragment::parse("hello"), Err(FragmentError::NotSdp(1)));
        assert_eq!(
            IceFragment::parse("a=ice-ufrag:abcd\r\n"),
            Err(FragmentError::HalfCredentials)
        );
        assert_eq!(
            IceFragment::parse("a=ice-ufrag:ab\"cd\r\na=ice-pwd:x\r\n"),
            Err(FragmentError::BadCredentials)
        );
        let many = "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n".repeat(MAX_CANDIDATES + 1);
        assert_eq!(
            IceFragment::parse(&many),
            Err(FragmentError::TooManyCandidates)
        );
    }

    #[test]
    fn a_restart_offer_has_the_new_credentials_and_no_old_candidates() {
        let offer = "v=0\r\na=ice-ufrag:old\r\nm=audio 9 X 111\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\na=mid:0\r\n";
        let new = IceCredentials {
            ufrag: "nu".into(),
            pwd: "newpwd".into(),
        };
        let restarted = restart_offer(offer, &new);
        assert_eq!(
            restarted,
            "v=0\r\na=ice-ufrag:nu\r\nm=audio 9 X 111\r\na=ice-ufrag:nu\r\na=ice-pwd:newpwd\r\na=mid:0\r\n"
        );
        assert_eq!(sdp_credentials(&restarted), Some(new));
    }

    #[test]
    fn our_fragment_comes_from_the_first_section_of_the_answer() {
        let answer = "v=0\r\na=ice-lite\r\nm=audio 9 X 111\r\na=mid:0\r\na=ice-ufrag:u1\r\na=ice-pwd:p1\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 X 96\r\na=mid:1\r\na=ice-ufrag:u1\r\n";
        assert_eq!(
            answer_fragment(answer),
            "a=ice-lite\r\nm=audio 9 X 111\r\na=mid:0\r\na=ice-ufrag:u1\r\na=ice-pwd:p1\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
        );
    }
}
