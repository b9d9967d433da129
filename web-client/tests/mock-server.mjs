#!/usr/bin/env node
// A stand-in for `switchboard serve`, for working on the web client without the Rust server.
// NOT the server and not a reference for it: it speaks the signaling protocol of
// docs/protocol.md over a WebSocket at /ws and serves web-client/ at /, but the media side is a
// headless Chromium page that forwards each participant's tracks to the others (an SFU made
// of RTCPeerConnections). Server offers carry the `tracks` map; glare is resolved as the
// protocol says (the server ignores a client offer while its own is outstanding).
//
//   node mock-server.mjs [--port 8080]      then open http://127.0.0.1:8080/
//   SWITCHBOARD_BIN=web-client/tests/mock-server.mjs loopback-only bash web-client/tests/run-e2e.sh
//
// Run it inside /work/shared/bin/loopback-only like the real server.

import { chromium } from 'playwright-core';
import { WebSocketServer } from 'ws';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
// Accepts `[serve] [--http-addr 127.0.0.1:PORT] [--port PORT]`, so that run-e2e.sh can start it
// in place of the server binary (SWITCHBOARD_BIN=web-client/tests/mock-server.mjs).
const arg = (name) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const PORT = Number(arg('--port') || (arg('--http-addr') || '').split(':').pop() || 8080);
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.mjs': 'text/javascript' };

// --- the media side: a Chromium page ------------------------------------------------------

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
    '--disable-features=WebRtcHideLocalIpsWithMdns'],
});
const sfuPage = await browser.newPage();
sfuPage.on('console', (m) => console.log(`[sfu-page] ${m.text()}`));
await sfuPage.exposeFunction('onPublished', (pid, mid, kind) => onPublished(pid, mid, kind));
await sfuPage.evaluate(() => {
  const gathered = (pc) => new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 2000);
  });
  const peers = new Map(); // pid -> {pc, published: Map(mid -> track), subs: Map(key -> transceiver)}
  window.sfu = {
    create(pid) {
      const pc = new RTCPeerConnection();
      const peer = { pc, published: new Map(), subs: new Map() };
      pc.ontrack = (ev) => {
        if (ev.transceiver.direction !== 'recvonly' && ev.transceiver.direction !== 'sendrecv') return;
        peer.published.set(ev.transceiver.mid, ev.track);
        // Chromium only pulls a remote audio track (and so forwards it) while something plays it.
        if (ev.track.kind === 'audio') {
          const sink = new Audio();
          sink.muted = true;
          sink.srcObject = new MediaStream([ev.track]);
          sink.play().catch(() => {});
        }
        window.onPublished(pid, ev.transceiver.mid, ev.track.kind);
      };
      peers.set(pid, peer);
    },
    async answer(pid, sdp) {
      const { pc } = peers.get(pid);
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await pc.setLocalDescription();
      await gathered(pc);
      return pc.localDescription.sdp;
    },
    async candidate(pid, candidate) {
      if (!candidate) return;
      const c = candidate.startsWith('candidate:') ? candidate : `candidate:${candidate}`;
      await peers.get(pid).pc.addIceCandidate({ candidate: c, sdpMid: '0' }).catch((e) => console.log('addIceCandidate', e.message));
    },
    subscribe(subPid, pubPid, mid, key) {
      const track = peers.get(pubPid)?.published.get(mid);
      const sub = peers.get(subPid);
      if (!track || !sub || sub.subs.has(key)) return false;
      sub.subs.set(key, sub.pc.addTransceiver(track, { direction: 'sendonly', streams: [new MediaStream()] }));
      return true;
    },
    unsubscribe(subPid, key) {
      const sub = peers.get(subPid);
      const tr = sub && sub.subs.get(key);
      if (!tr) return false;
      tr.stop();
      sub.subs.delete(key);
      return true;
    },
    async offer(pid) {
      const { pc, subs } = peers.get(pid);
      await pc.setLocalDescription();
      await gathered(pc);
      const mids = {};
      for (const [key, tr] of subs) mids[tr.mid] = key;
      return { sdp: pc.localDescription.sdp, mids };
    },
    async accept(pid, sdp) {
      await peers.get(pid).pc.setRemoteDescription({ type: 'answer', sdp });
    },
    signalingState(pid) {
      return peers.get(pid)?.pc.signalingState;
    },
    close(pid) {
      const p = peers.get(pid);
      if (p) p.pc.close();
      peers.delete(pid);
    },
  };
});

// --- the signaling side -------------------------------------------------------------------

let nextId = 1;
const rooms = new Map(); // room -> Map(pid -> participant)

/** A participant: its socket, a serial queue for its peer connection, its published tracks. */
function newParticipant(ws, room, name) {
  const pid = `P${nextId++}`;
  return {
    pid, ws, room, name,
    tracks: new Map(), // track_id -> {mid, kind, muted}
    queue: Promise.resolve(),
    negotiated: false, // first client offer answered
    serverOfferPending: false,
    dirty: false,
    mids: {}, // our mid -> track key (pubPid/trackId), from the last server offer
  };
}

function send(p, msg) {
  if (p.ws.readyState === 1) p.ws.send(JSON.stringify(msg));
}
function others(p) {
  return [...(rooms.get(p.room) || new Map()).values()].filter((o) => o !== p);
}
function describe(p) {
  return { participant_id: p.pid, name: p.name, tracks: [...p.tracks].map(([track_id, t]) => ({ track_id, kind: t.kind, muted: t.muted })) };
}
function enqueue(p, step) {
  p.queue = p.queue.then(step).catch((e) => console.error(`[mock] ${p.pid}:`, e));
  return p.queue;
}
const sfu = (fn, ...args) => sfuPage.evaluate(([f, a]) => window.sfu[f](...a), [fn, args]);

function onPublished(pid, mid, kind) {
  const p = [...rooms.values()].flatMap((r) => [...r.values()]).find((x) => x.pid === pid);
  if (!p) return;
  const trackId = `T${pid}-${mid}`;
  p.tracks.set(trackId, { mid, kind, muted: false });
  for (const o of others(p)) {
    send(o, { type: 'track_published', participant_id: pid, track: { track_id: trackId, kind, muted: false } });
    enqueue(o, async () => {
      if (await sfu('subscribe', o.pid, pid, mid, `${pid}/${trackId}`)) renegotiate(o);
    });
  }
}

/** Sends a server offer to `p` if none is outstanding; otherwise one follows the answer. */
function renegotiate(p) {
  if (!p.negotiated) return;
  if (p.serverOfferPending) { p.dirty = true; return; }
  enqueue(p, async () => {
    if (p.serverOfferPending) { p.dirty = true; return; }
    p.serverOfferPending = true;
    p.dirty = false;
    const { sdp, mids } = await sfu('offer', p.pid);
    const tracks = {};
    for (const [mid, key] of Object.entries(mids)) {
      if (mid === 'null') continue;
      const [pubPid, trackId] = key.split('/');
      const pub = others(p).find((o) => o.pid === pubPid);
      const t = pub && pub.tracks.get(trackId);
      if (t) tracks[mid] = { participant_id: pubPid, track_id: trackId, kind: t.kind };
    }
    send(p, { type: 'offer', sdp, tracks });
  });
}

function subscribeToAll(p) {
  enqueue(p, async () => {
    let any = false;
    for (const o of others(p)) {
      for (const [trackId, t] of o.tracks) any = (await sfu('subscribe', p.pid, o.pid, t.mid, `${o.pid}/${trackId}`)) || any;
    }
    if (any) renegotiate(p);
  });
}

function leave(p) {
  const room = rooms.get(p.room);
  if (!room || !room.has(p.pid)) return;
  room.delete(p.pid);
  sfu('close', p.pid).catch(() => {});
  for (const o of room.values()) {
    send(o, { type: 'participant_left', participant_id: p.pid });
    enqueue(o, async () => {
      let any = false;
      for (const trackId of p.tracks.keys()) any = (await sfu('unsubscribe', o.pid, `${p.pid}/${trackId}`)) || any;
      if (any) renegotiate(o);
    });
  }
  console.log(`[mock] ${p.name} (${p.pid}) left ${p.room}`);
}

function onMessage(ws, state, msg) {
  const p = state.p;
  const err = (code, message) => send({ ws }, { type: 'error', ...(msg.id != null ? { id: msg.id } : {}), code, message });
  switch (msg.type) {
    case 'join': {
      if (p) { err('already_joined', 'already joined'); ws.close(1008); return; }
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(msg.room || '')) return err('invalid_room', 'bad room');
      if (!msg.name || !msg.name.trim()) return err('invalid_name', 'bad name');
      const np = newParticipant(ws, msg.room, msg.name);
      state.p = np;
      if (!rooms.has(np.room)) rooms.set(np.room, new Map());
      const existing = others(np);
      rooms.get(np.room).set(np.pid, np);
      enqueue(np, () => sfu('create', np.pid));
      send(np, { type: 'joined', id: msg.id, participant_id: np.pid, room: np.room, participants: existing.map(describe), ice_servers: [] });
      for (const o of existing) send(o, { type: 'participant_joined', participant: describe(np) });
      console.log(`[mock] ${np.name} (${np.pid}) joined ${np.room}`);
      return;
    }
    case 'ping':
      return send({ ws }, { type: 'pong', id: msg.id });
    case 'leave':
      if (p) leave(p);
      ws.close(1000);
      return;
    default:
      break;
  }
  if (!p) return err('not_joined', 'join first');
  switch (msg.type) {
    case 'offer':
      enqueue(p, async () => {
        if (p.serverOfferPending) { console.log(`[mock] ${p.pid}: glare, ignoring the client offer`); return; }
        const sdp = await sfu('answer', p.pid, msg.sdp);
        send(p, { type: 'answer', id: msg.id, sdp });
        if (!p.negotiated) { p.negotiated = true; subscribeToAll(p); }
      });
      break;
    case 'answer':
      enqueue(p, async () => {
        if (!p.serverOfferPending) { err('invalid_sdp', 'no offer pending'); return; }
        await sfu('accept', p.pid, msg.sdp);
        p.serverOfferPending = false;
        if (p.dirty) renegotiate(p);
      });
      break;
    case 'candidate':
      enqueue(p, () => sfu('candidate', p.pid, msg.candidate));
      break;
    case 'mute': {
      const entry = [...p.tracks].find(([, t]) => t.mid === msg.mid);
      if (!entry) return err('unknown_track', `no track on mid ${msg.mid}`);
      entry[1].muted = Boolean(msg.muted);
      for (const o of others(p)) send(o, { type: 'track_muted', participant_id: p.pid, track_id: entry[0], muted: Boolean(msg.muted) });
      break;
    }
    default:
      err('unknown_type', `unknown type ${msg.type}`);
  }
}

const http = createServer(async (req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  const file = normalize(join(ROOT, path === '/' ? 'index.html' : path));
  if (!file.startsWith(ROOT) || file.includes('/tests/')) { res.writeHead(404).end(); return; }
  try {
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream', 'cache-control': 'no-cache' }).end(body);
  } catch {
    res.writeHead(404).end('not found');
  }
});
const wss = new WebSocketServer({ noServer: true });
http.on('upgrade', (req, socket, head) => {
  if (new URL(req.url, 'http://x').pathname !== '/ws') { socket.destroy(); return; }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const state = { p: null };
    ws.on('message', (data, isBinary) => {
      if (isBinary) { ws.close(1003); return; }
      let msg;
      try { msg = JSON.parse(data.toString()); } catch { send({ ws }, { type: 'error', code: 'bad_json', message: 'not JSON' }); return; }
      onMessage(ws, state, msg);
    });
    ws.on('close', () => state.p && leave(state.p));
  });
});
http.listen(PORT, '127.0.0.1', () => console.log(`[mock] serving ${ROOT} on http://127.0.0.1:${PORT}/`));
process.on('SIGTERM', async () => { await browser.close(); process.exit(0); });
process.on('SIGINT', async () => { await browser.close(); process.exit(0); });
