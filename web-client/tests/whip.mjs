// WHIP and WHEP from Chromium pages that use nothing but fetch and RTCPeerConnection, served
// from another origin than the server (so every request goes through CORS):
//
// 1. Watch, a browser participant of room `wh` that publishes nothing, is in the room.
// 2. Studio publishes through WHIP: camera 1280x720 with simulcast q/h/f, H.264 only
//    (setCodecPreferences), microphone; the offer goes out before ICE gathering and every
//    candidate follows by PATCH (trickle, 204 each).
// 3. Watch sees Studio's tile playing, decoding H.264 (framesDecoded growing), at a simulcast
//    layer the server chose after switching from the lowest, and keeps decoding across the
//    switch; Studio sends at least two of its three layers.
// 4. A WHEP page plays the room's default publisher (Studio): H.264 video decoding and audio.
// 5. Cam, a browser participant, joins and publishes; the WHEP page plays it by participant id
//    (/whep/wh/{id}): VP8 video decoding and audio.
// 6. DELETE ends each session (200); Studio's tile leaves Watch's page; DELETE again is 404.
//
// Env: as e2e.mjs (SWITCHBOARD_URL, CHROMIUM_PATH). Prints "WHIP PASS" or "WHIP FAIL".

import { chromium } from 'playwright-core';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BASE, CHROMIUM, CHROMIUM_ARGS, captureConsole, keepPeerConnections, makeLogger, saveConsoleLogs,
  saveEvidence, sleep, videoOf, waitFor,
} from './lib.mjs';

const ROOM = 'wh';
const TIMEOUT_MS = 30_000;
const TOTAL_TIMEOUT_MS = 180_000;
const { elapsed, log } = makeLogger('whip');

// Runs in the other-origin page: a WHIP publisher and WHEP player in plain WebRTC.
function httpPeers() {
  const sessionOf = (res, url) => ({
    location: new URL(res.headers.get('Location'), url).href,
    etag: res.headers.get('ETag'),
    links: res.headers.get('Link'),
  });
  const iceOf = (sdp) => ({
    ufrag: /a=ice-ufrag:(.*)/.exec(sdp)[1].trim(),
    pwd: /a=ice-pwd:(.*)/.exec(sdp)[1].trim(),
    mid: /a=mid:(.*)/.exec(sdp)[1].trim(),
  });

  window.__whipPublish = async (url) => {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720 } });
    const pc = new RTCPeerConnection();
    window.__publisher = pc;
    const video = pc.addTransceiver(stream.getVideoTracks()[0], {
      direction: 'sendonly',
      streams: [stream],
      sendEncodings: [
        { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
        { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
        { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
      ],
    });
    pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendonly', streams: [stream] });
    // H.264 only, packetization mode 1, constrained baseline first.
    const h264 = RTCRtpSender.getCapabilities('video').codecs
      .filter((c) => c.mimeType === 'video/H264' && /packetization-mode=1/.test(c.sdpFmtpLine || ''));
    const cb = (c) => (/profile-level-id=42e0/.test(c.sdpFmtpLine) ? 0 : 1);
    h264.sort((a, b) => cb(a) - cb(b));
    if (!h264.length) throw new Error('this Chromium cannot send H.264');
    video.setCodecPreferences(h264);

    // Trickle: candidates wait for the session URL, then go by PATCH.
    const pending = [];
    let session = null;
    let ice = null;
    window.__patchStatuses = [];
    const flush = async () => {
      if (!session || !pending.length) return;
      const lines = pending.splice(0).map((c) => `a=${c}\r\n`).join('');
      const body = `a=ice-ufrag:${ice.ufrag}\r\na=ice-pwd:${ice.pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:${ice.mid}\r\n${lines}`;
      const res = await fetch(session.location, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': session.etag },
        body,
      });
      window.__patchStatuses.push(res.status);
    };
    pc.onicecandidate = (e) => {
      pending.push(e.candidate ? e.candidate.candidate : 'end-of-candidates');
      flush();
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    ice = iceOf(offer.sdp);
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offer.sdp });
    if (res.status !== 201) throw new Error(`WHIP POST: ${res.status} ${await res.text()}`);
    session = sessionOf(res, url);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    flush();
    return { ...session, offerHasCandidates: /a=candidate/.test(offer.sdp) };
  };

  window.__whepPlay = async (url) => {
    const pc = new RTCPeerConnection();
    window.__player = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const stream = new MediaStream();
    let v = document.getElementById('player');
    if (!v) {
      v = document.createElement('video');
      v.id = 'player';
      v.autoplay = true;
      v.muted = true;
      v.playsInline = true;
      document.body.appendChild(v);
    }
    v.srcObject = stream;
    pc.ontrack = (e) => stream.addTrack(e.track);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offer.sdp });
    if (res.status !== 201) throw new Error(`WHEP POST: ${res.status} ${await res.text()}`);
    const session = sessionOf(res, url);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    return session;
  };

  window.__remove = async (location) => (await fetch(location, { method: 'DELETE' })).status;

  // Inbound RTP of `pc`: per kind, codec, packets, frames decoded, size. Per kind, the
  // stream that carried the most payload: a page that publishes also has an inbound stream
  // on its own sendrecv m-line that only ever carries the server's probing padding.
  window.__inbound = async (pc) => {
    const out = {};
    const most = {};
    const stats = await pc.getStats();
    stats.forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      if ((most[r.kind] ?? -1) >= (r.bytesReceived ?? 0)) return;
      most[r.kind] = r.bytesReceived ?? 0;
      const codec = r.codecId && stats.get(r.codecId);
      out[r.kind] = {
        codec: codec ? codec.mimeType : null,
        packets: r.packetsReceived,
        frames: r.framesDecoded ?? null,
        width: r.frameWidth ?? null,
      };
    });
    return out;
  };
  window.__outboundVideo = async () => {
    const out = [];
    (await window.__publisher.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') out.push({ rid: r.rid, frames: r.framesEncoded ?? 0, width: r.frameWidth ?? 0 });
    });
    return out;
  };
}

/** A blank page on another origin than the server's. */
function otherOrigin() {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><title>studio</title><body></body>');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** Whether `page`'s inbound `kind` keeps decoding (video) or receiving (audio). */
async function keepsPlaying(what, page, pcExpr, kind, codec) {
  const read = () => page.evaluate(`window.__inbound(${pcExpr})`);
  const first = await waitFor(`${what}: ${kind} arriving`, async () => {
    const s = (await read())[kind];
    const ok = s && (kind === 'audio' ? s.packets > 50 : s.frames > 20) && (!codec || s.codec === codec);
    return { ok, detail: s || null };
  }, TIMEOUT_MS);
  await sleep(1500);
  const later = (await read())[kind];
  const grew = kind === 'audio' ? later.packets > first.packets : later.frames > first.frames;
  if (!grew) throw new Error(`${what}: ${kind} stalled: ${JSON.stringify(first)} then ${JSON.stringify(later)}`);
  log(`${what}: ${kind} ${JSON.stringify(later)}`);
}

async function apiStats() {
  const res = await fetch(`${BASE}/api/stats`);
  return (await res.json()).participants;
}

async function main() {
  const pages = new Map();
  const consoleLogs = new Map();
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchboard-whip-'));
  const origin = await otherOrigin();
  const ORIGIN = `http://127.0.0.1:${origin.address().port}`;
  let context;
  const watchdog = setTimeout(() => {
    console.log(`WHIP FAIL: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000}s`);
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  try {
    log(`server ${BASE}, pages from ${ORIGIN}`);
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1280, height: 720 },
    });
    for (const o of [BASE, ORIGIN]) await context.grantPermissions(['camera', 'microphone'], { origin: o });
    await context.addInitScript(keepPeerConnections);
    await context.addInitScript(httpPeers);
    const open = async (name, url) => {
      const page = pages.size === 0 && context.pages()[0] ? context.pages()[0] : await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, elapsed);
      pages.set(name, page);
      await page.goto(url);
      return page;
    };

    // 1. A browser participant that watches.
    const watch = await open('Watch', `${BASE}/?room=${ROOM}&name=Watch&autojoin=1&publish=none`);
    await waitFor('Watch joined', async () => ({ ok: (await apiStats()).some((p) => p.name === 'Watch'), detail: null }), TIMEOUT_MS);

    // 2. Studio publishes through WHIP, trickling its candidates.
    const studio = await open('Studio', `${ORIGIN}/`);
    const whip = await studio.evaluate((url) => window.__whipPublish(url), `${BASE}/whip/${ROOM}?name=Studio`);
    log(`WHIP session ${whip.location}, ETag ${whip.etag}, Link ${whip.links}`);
    if (!whip.links || !whip.links.includes('rel="ice-server"')) throw new Error(`no ice-server Link: ${whip.links}`);
    await waitFor('Studio connected', async () => {
      const state = await studio.evaluate(() => window.__publisher.connectionState);
      return { ok: state === 'connected', detail: state };
    }, TIMEOUT_MS);
    const patches = await waitFor('trickle PATCHes answered', async () => {
      const statuses = await studio.evaluate(() => window.__patchStatuses);
      return { ok: statuses.length > 0 && statuses.every((s) => s === 204), detail: statuses };
    }, TIMEOUT_MS);
    log(`trickle PATCH statuses ${JSON.stringify(patches)} (offer had candidates: ${whip.offerHasCandidates})`);

    // 3. Watch sees Studio playing, in H.264, at a simulcast layer.
    await waitFor('Studio\'s tile playing on Watch', async () => {
      const v = await videoOf(watch, 'Studio');
      if (!v || v.width === 0) return { ok: false, detail: v };
      await sleep(500);
      const v2 = await videoOf(watch, 'Studio');
      return { ok: v2 && v2.time > v.time, detail: v2 };
    }, TIMEOUT_MS);
    await keepsPlaying('Watch receiving Studio', watch, 'window.__e2ePeerConnections.find((pc) => pc.connectionState === "connected")', 'video', 'video/H264');
    const layers = await waitFor('Studio sending simulcast', async () => {
      const out = await studio.evaluate(() => window.__outboundVideo());
      return { ok: out.filter((l) => l.frames > 0).length >= 2, detail: out };
    }, TIMEOUT_MS);
    log(`Studio's layers ${JSON.stringify(layers)}`);
    const watchView = await waitFor('Watch\'s layer of Studio', async () => {
      const me = (await apiStats()).find((p) => p.name === 'Watch');
      const sub = me && me.subscriptions.find((s) => s.kind === 'video');
      return { ok: !!(sub && ['q', 'h', 'f'].includes(sub.current_layer)), detail: sub || null };
    }, TIMEOUT_MS);
    log(`Watch gets Studio's layer ${watchView.current_layer}`);
    // Force an H.264 layer switch: Watch's window shrinks, so Studio's tile wants the lowest
    // layer, whatever the bandwidth. (Waiting for an upward switch depended on whether the
    // estimate let Watch start on q, and sometimes it started higher and never switched.)
    const switchesBefore = async () => {
      const text = await (await fetch(`${BASE}/metrics`)).text();
      const m = /^switchboard_layer_switches_total (\d+)/m.exec(text);
      return m ? Number(m[1]) : 0;
    };
    const before = await switchesBefore();
    if (watchView.current_layer !== 'q') {
      await watch.setViewportSize({ width: 360, height: 240 });
    } else {
      // Already on q: a large window asks for a higher layer instead.
      await watch.setViewportSize({ width: 1920, height: 1080 });
    }
    const switches = await waitFor('an H.264 layer switch', async () => {
      const n = await switchesBefore();
      const me = (await apiStats()).find((p) => p.name === 'Watch');
      const sub = me && me.subscriptions.find((x) => x.kind === 'video');
      const moved = sub && sub.current_layer && sub.current_layer !== watchView.current_layer;
      return { ok: n > before && Boolean(moved), detail: { switches: n, before, now: sub || null } };
    }, TIMEOUT_MS);
    await keepsPlaying('Watch after the switch', watch, 'window.__e2ePeerConnections.find((pc) => pc.connectionState === "connected")', 'video', 'video/H264');
    log(`layer switch: ${JSON.stringify(switches)}`);

    // 4. WHEP of the room's default publisher: Studio.
    const viewer = await open('Viewer', `${ORIGIN}/`);
    const whepStudio = await viewer.evaluate((url) => window.__whepPlay(url), `${BASE}/whep/${ROOM}`);
    log(`WHEP session ${whepStudio.location}`);
    await keepsPlaying('WHEP of Studio', viewer, 'window.__player', 'video', 'video/H264');
    await keepsPlaying('WHEP of Studio', viewer, 'window.__player', 'audio', 'audio/opus');
    const counted = (await apiStats()).find((p) => p.name === 'WHEP viewer');
    if (!counted || counted.subscriptions.length !== 2) throw new Error(`the WHEP viewer in /api/stats: ${JSON.stringify(counted)}`);
    if (await viewer.evaluate((l) => window.__remove(l), whepStudio.location) !== 200) throw new Error('WHEP DELETE');

    // 5. WHEP of a browser participant, by id.
    await open('Cam', `${BASE}/?room=${ROOM}&name=Cam&autojoin=1`);
    const cam = await waitFor('Cam publishing', async () => {
      const p = (await apiStats()).find((x) => x.name === 'Cam');
      const tracks = (await fetch(`${BASE}/api/stats`).then((r) => r.json())).participants
        .filter((x) => x.name === 'Watch')
        .flatMap((x) => x.subscriptions)
        .filter((s) => p && s.participant_id === p.participant_id);
      return { ok: !!p && tracks.length === 2, detail: p ? p.participant_id : null };
    }, TIMEOUT_MS);
    const whepCam = await viewer.evaluate((url) => window.__whepPlay(url), `${BASE}/whep/${ROOM}/${cam}`);
    await keepsPlaying('WHEP of Cam', viewer, 'window.__player', 'video', null);
    await keepsPlaying('WHEP of Cam', viewer, 'window.__player', 'audio', 'audio/opus');
    if (await viewer.evaluate((l) => window.__remove(l), whepCam.location) !== 200) throw new Error('WHEP DELETE');

    // 6. DELETE ends the WHIP session: Studio leaves Watch's page; the resource is gone.
    const deleted = await studio.evaluate((l) => window.__remove(l), whip.location);
    if (deleted !== 200) throw new Error(`WHIP DELETE: ${deleted}`);
    await waitFor('Studio\'s tile gone from Watch', async () => {
      const v = await videoOf(watch, 'Studio');
      return { ok: v === null, detail: v };
    }, TIMEOUT_MS);
    const again = await studio.evaluate((l) => window.__remove(l), whip.location);
    if (again !== 404) throw new Error(`WHIP DELETE again: ${again} (want 404)`);

    saveConsoleLogs(consoleLogs);
    console.log(`WHIP PASS after ${elapsed()}`);
  } catch (e) {
    console.log(`WHIP FAIL: ${e.message}`);
    await saveEvidence(pages, consoleLogs);
    process.exitCode = 1;
  } finally {
    clearTimeout(watchdog);
    if (context) await context.close().catch(() => {});
    origin.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

main();
