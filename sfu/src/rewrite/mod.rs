//! Per-subscriber header rewriting: the subscriber sees one continuous RTP stream even when
//! the source behind it changes (a publisher's SSRC change today, a simulcast layer switch
//! tomorrow). Each unit is pure and table-tested; `track::downtrack` composes them.

mod seq;
mod ts;
mod vp8;

pub use seq::SeqRewriter;
pub use ts::TsRewriter;
pub use vp8::Vp8Rewriter;
