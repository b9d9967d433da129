//! Per-subscriber header rewriting: the subscriber sees one continuous RTP stream even when
//! the source behind it changes (a publisher's SSRC change today, a simulcast layer switch
//! tomorrow). Each unit is pure and table-tested; `track::downtrack` composes them.

mod seq;
mod ts;

pub use seq::SeqRewriter;
pub use ts::TsRewriter;
