//! STUN Binding (RFC 8489 §6): reflect the client's address. No
//! authentication, no state, so the server doubles as a plain STUN server.

use stun_rs::attributes::stun::XorMappedAddress;

use crate::server::{Output, RelayBinder, Request, Server};

/// Answers a Binding request with XOR-MAPPED-ADDRESS.
pub(crate) fn handle<B: RelayBinder>(
    srv: &mut Server<B>,
    req: &Request<'_>,
    out: &mut Vec<Output<B::Handle>>,
) {
    let mapped = XorMappedAddress::from(req.tuple.reflexive());
    srv.reply_ok(req, vec![mapped.into()], None, out);
}
