// The WebSocket side of the Switchboard signaling protocol (docs/protocol.md).
//
// One JSON object per text frame. Requests may carry an integer `id`; the reply (or the `error`
// it caused) carries the same id. This module owns the socket and the id counter, and knows
// nothing about WebRTC: everything the server sends is dispatched as a `message` event, except
// replies that settle a promise returned by `request()`.

/** The signaling URL for the page's own origin: ws(s)://host/ws. */
export function signalingUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

/** An `error` message from the server, as a JavaScript Error. */
export class ServerError extends Error {
  constructor(msg) {
    super(msg.message || msg.code || 'server error');
    this.name = 'ServerError';
    this.code = msg.code;
    this.id = msg.id;
  }
}

/**
 * Events (all `CustomEvent`s, payload in `detail`):
 * - `message`: a server message not consumed by a pending `request()`.
 * - `state`: `detail` is the new `state` ('connecting' | 'open' | 'closed').
 * - `close`: the socket closed; `detail` is `{code, reason, clean}` where `clean` means
 *   the close was asked for by `close()` or followed our `leave`.
 */
export class Signaling extends EventTarget {
  constructor(url = signalingUrl()) {
    super();
    this.url = url;
    this.state = 'closed';
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, type}
    this.bestEffort = new Map(); // id -> type, for `notify()`
    this.unsupported = new Set(); // message types the server answered with `unknown_type`
    this.leaving = false;
  }

  /** Opens the socket; resolves once it is open, rejects if it cannot connect. */
  connect() {
    this.setState('connecting');
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let opened = false;
      ws.addEventListener('open', () => {
        opened = true;
        this.setState('open');
        resolve();
      });
      ws.addEventListener('message', (ev) => this.onFrame(ev.data));
      ws.addEventListener('close', (ev) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.setState('closed');
        const err = new Error(`signaling connection closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        if (!opened) reject(new Error(`cannot connect to ${this.url}`));
        this.emit('close', { code: ev.code, reason: ev.reason, clean: this.leaving });
      });
      // 'error' is always followed by 'close', which does the work.
    });
  }

  /**
   * Sends a message. With `withId`, gives it the next request id and returns that id, so
   * that a reply arriving later as a `message` event can be matched to it.
   */
  send(msg, { withId = false } = {}) {
    const out = { ...msg };
    if (withId) out.id = this.nextId++;
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      throw new Error('not connected to the server');
    }
    this.ws.send(JSON.stringify(out));
    return out.id;
  }

  /**
   * Sends a best-effort message (`video_size`, `track_source`): no reply is awaited, and an
   * `error` answering it is logged, not dispatched. A type the server does not know
   * (`unknown_type`, an older server) is not sent again on this connection. Returns whether
   * the message was sent.
   */
  notify(msg) {
    if (this.unsupported.has(msg.type)) return false;
    let id;
    try {
      id = this.send(msg, { withId: true });
    } catch {
      return false;
    }
    this.bestEffort.set(id, msg.type);
    if (this.bestEffort.size > 200) this.bestEffort.delete(this.bestEffort.keys().next().value);
    return true;
  }

  /**
   * Sends a request and resolves with its reply (the server message carrying the same id),
   * or rejects with a `ServerError` if the server answers with an `error`.
   */
  request(msg) {
    return new Promise((resolve, reject) => {
      const id = this.send(msg, { withId: true });
      this.pending.set(id, { resolve, reject, type: msg.type });
    });
  }

  /** Sends `leave` (the server then closes the socket) and closes our side soon after. */
  leave() {
    this.leaving = true;
    try {
      this.send({ type: 'leave' });
    } catch {
      // Already gone: nothing to leave.
    }
    const ws = this.ws;
    // The server closes with 1000 after `leave`; do not depend on it.
    setTimeout(() => ws && ws.readyState <= WebSocket.OPEN && ws.close(1000, 'leave'), 1000);
  }

  close() {
    this.leaving = true;
    if (this.ws) this.ws.close(1000, 'bye');
  }

  onFrame(data) {
    if (typeof data !== 'string') {
      console.warn('signaling: ignoring a binary frame');
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      console.warn('signaling: frame is not JSON', e);
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') {
      console.warn('signaling: message without a type', msg);
      return;
    }
    if (msg.id !== undefined && msg.id !== null && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === 'error') p.reject(new ServerError(msg));
      else p.resolve(msg);
      return;
    }
    if (msg.type === 'error' && msg.id != null && this.bestEffort.has(msg.id)) {
      const type = this.bestEffort.get(msg.id);
      this.bestEffort.delete(msg.id);
      if (msg.code === 'unknown_type') {
        this.unsupported.add(type);
        console.info(`signaling: the server does not know \`${type}\`; not sending it again`);
      } else {
        console.debug(`signaling: \`${type}\` refused: ${msg.code} ${msg.message || ''}`);
      }
      return;
    }
    this.emit('message', msg);
  }

  setState(state) {
    this.state = state;
    this.emit('state', state);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
