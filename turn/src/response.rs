//! Building and encoding responses: error reasons, the 401/438 challenge,
//! and integrity + FINGERPRINT on everything we send.

use stun_rs::attributes::stun::{
    ErrorCode as ErrorCodeAttr, Fingerprint, MessageIntegrity, MessageIntegritySha256, Nonce,
    Realm, Software,
};
use stun_rs::attributes::StunAttribute;
use stun_rs::{
    HMACKey, MessageClass, MessageEncoderBuilder, MessageMethod, StunMessageBuilder, TransactionId,
};

use crate::auth::IntegrityKind;
use crate::server::{offered_algorithms, Authed, Output, RelayBinder, Request, Server};

fn reason(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "Server Error",
    }
}

impl<B: RelayBinder> Server<B> {
    /// 401 or 438 with REALM, a fresh NONCE and PASSWORD-ALGORITHMS.
    pub(crate) fn challenge(&self, req: &Request<'_>, code: u16, out: &mut Vec<Output<B::Handle>>) {
        let nonce = self
            .global
            .nonces
            .issue(req.tuple.client.ip(), self.unix(req.now));
        let mut attrs: Vec<StunAttribute> = Vec::with_capacity(3);
        if let Ok(r) = Realm::new(&self.cfg.realm) {
            attrs.push(r.into());
        }
        if let Ok(n) = Nonce::new(nonce) {
            attrs.push(n.into());
        }
        attrs.push(offered_algorithms().into());
        self.reply_error(req, code, None, attrs, out);
    }

    /// Queues an error response. `auth` signs it (for errors after successful
    /// authentication, RFC 8656 §4).
    pub(crate) fn reply_error(
        &self,
        req: &Request<'_>,
        code: u16,
        auth: Option<&Authed>,
        attrs: Vec<StunAttribute>,
        out: &mut Vec<Output<B::Handle>>,
    ) {
        tracing::debug!(client = %req.tuple.client, method = ?req.msg.method(), code, "error response");
        let mut all = Vec::with_capacity(attrs.len() + 1);
        if let Ok(ec) = stun_rs::ErrorCode::new(code, reason(code)) {
            all.push(ErrorCodeAttr::from(ec).into());
        }
        all.extend(attrs);
        self.reply(req, MessageClass::ErrorResponse, all, auth, out);
    }

    /// Queues a success response.
    pub(crate) fn reply_ok(
        &self,
        req: &Request<'_>,
        attrs: Vec<StunAttribute>,
        auth: Option<&Authed>,
        out: &mut Vec<Output<B::Handle>>,
    ) {
        self.reply(req, MessageClass::SuccessResponse, attrs, auth, out);
    }

    fn reply(
        &self,
        req: &Request<'_>,
        class: MessageClass,
        attrs: Vec<StunAttribute>,
        auth: Option<&Authed>,
        out: &mut Vec<Output<B::Handle>>,
    ) {
        if let Some(data) = encode(
            req.msg.method(),
            class,
            req.msg.transaction_id(),
            attrs,
            self.cfg.software.as_deref(),
            auth.map(|a| (&a.key, a.kind)),
        ) {
            out.push(Output::ToClient {
                tuple: req.tuple,
                data,
            });
        }
    }
}

/// Encodes a message with optional SOFTWARE, integrity and a FINGERPRINT.
pub(crate) fn encode(
    method: MessageMethod,
    class: MessageClass,
    tid: &TransactionId,
    attrs: Vec<StunAttribute>,
    software: Option<&str>,
    integrity: Option<(&HMACKey, IntegrityKind)>,
) -> Option<Vec<u8>> {
    let mut extra = 0;
    let mut b = StunMessageBuilder::new(method, class).with_transaction_id(*tid);
    for a in attrs {
        if let Ok(d) = a.as_data() {
            extra += d.as_bytes().len();
        }
        b = b.with_attribute(a);
    }
    if let Some(s) = software.and_then(|s| Software::new(s).ok()) {
        b = b.with_attribute(s);
    }
    match integrity {
        Some((key, IntegrityKind::Sha1)) => {
            b = b.with_attribute(MessageIntegrity::new(key.clone()))
        }
        Some((key, IntegrityKind::Sha256)) => {
            b = b.with_attribute(MessageIntegritySha256::new(key.clone()))
        }
        None => {}
    }
    b = b.with_attribute(Fingerprint::default());
    let msg = b.build();
    let mut buf = vec![0u8; 1024 + extra];
    match MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, &msg)
    {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(e) => {
            tracing::warn!(error = %e, "failed to encode STUN message");
            None
        }
    }
}
