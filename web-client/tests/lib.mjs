// Shared pieces of the browser tests: Chromium's flags, the init
// script that keeps each page's RTCPeerConnection, polling, and failure evidence.

import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BASE = (process.env.SWITCHBOARD_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const RESULTS = join(dirname(fileURLToPath(import.meta.url)), 'test-results');

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];

export const FIREFOX = process.env.FIREFOX_PATH || '/usr/bin/firefox-esr';

// Firefox needs prefs for fake media, permissions and loopback ICE (/work/shared/FIELD-NOTES.md,
// "Firefox in tests"): without the permission prefs it gathers no candidates here.
export const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.navigator.permission.fake': true,
  'permissions.default.camera': 1,
  'permissions.default.microphone': 1,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
};

// Runs in every page before its scripts: keep each RTCPeerConnection so the test can read its
// stats without any help from the page.
export function keepPeerConnections() {
  const Native = window.RTCPeerConnection;
  const kept = [];
  Object.defineProperty(window, '__e2ePeerConnections', { value: kept });
  class Kept extends Native {
    constructor(...args) {
      super(...args);
      kept.push(this);
    }
  }
  window.RTCPeerConnection = Kept;
}

// Chromium's default fake microphone beeps only 20 ms a second, too short for the server's
// smoothed level: tests that need a speaker play this tone instead
// (`--use-file-for-fake-audio-capture=FILE`). A mono 16-bit 48 kHz WAV of `seconds` of a
// 440 Hz tone at half of full scale.
export function toneWav(seconds) {
  const rate = 48_000;
  const samples = rate * seconds;
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) {
    data.writeInt16LE(Math.round(16_000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

export function makeLogger(tag) {
  const t0 = Date.now();
  const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
  const log = (...a) => console.log(`[${tag} ${elapsed()}]`, ...a);
  return { elapsed, log };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** GET `path` from the server at `base`, as text, or null while it does not answer. Over a
 * connection that closes afterwards: a kept-alive one would count as a server file
 * descriptor in the tests that count them. */
export function httpGet(path, base = BASE) {
  return new Promise((resolve) => {
    http.get(`${base}${path}`, { agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => resolve(body));
    }).on('error', () => resolve(null));
  });
}

/** `/healthz` of the server at `base` as JSON, or null while it does not answer. */
export async function health(base = BASE) {
  const body = await httpGet('/healthz', base);
  try {
    return body === null ? null : JSON.parse(body);
  } catch {
    return null;
  }
}

/** The remote video of participant `name` on `page`: its width and playback position. */
export function videoOf(page, name) {
  return page.$eval(`video[data-participant="${name}"]`, (v) => ({ width: v.videoWidth, time: v.currentTime })).catch(() => null);
}

/** Polls `check` (returning {ok, detail}) until ok or timeout; returns the last detail. */
export async function waitFor(what, check, timeoutMs, intervalMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last.ok) return last.detail;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}: ${JSON.stringify(last.detail)}`);
    await sleep(intervalMs);
  }
}

/**
 * Loads `url` in `page`, again (up to three times) if loads fail with ERR_NETWORK_CHANGED. A
 * Chromium started in a namespace of its own (chromium-in-netns.sh) sees the namespace's link
 * come up after it started and fails what it is loading at that moment; a page whose modules
 * failed never joins (CI saw a watcher in red.mjs lose them all).
 */
export async function gotoAcrossNetworkChange(page, url, log) {
  for (let attempt = 1; ; attempt++) {
    const changed = [];
    const onFailed = (r) => { if (r.failure()?.errorText === 'net::ERR_NETWORK_CHANGED') changed.push(r.url()); };
    page.on('requestfailed', onFailed);
    try {
      await page.goto(url, { waitUntil: 'load' });
    } catch (e) {
      if (!String(e.message).includes('ERR_NETWORK_CHANGED')) throw e;
      changed.push(url);
    } finally {
      page.off('requestfailed', onFailed);
    }
    if (changed.length === 0) return;
    if (attempt === 3) throw new Error(`loads of ${url} failed with ERR_NETWORK_CHANGED three times: ${changed.join(' ')}`);
    log(`${changed.length} loads of ${url} failed with ERR_NETWORK_CHANGED; loading it again`);
    await sleep(500);
  }
}

/** Records a page's console, errors and failed requests into `lines`. */
export function captureConsole(page, lines, elapsed) {
  page.on('console', (m) => lines.push(`[${elapsed()}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`[${elapsed()}] pageerror: ${e.stack || e.message}`));
  page.on('requestfailed', (r) => lines.push(`[${elapsed()}] requestfailed: ${r.url()} ${r.failure()?.errorText}`));
}

export async function screenshots(pages, label) {
  mkdirSync(RESULTS, { recursive: true });
  for (const [name, page] of pages) {
    await page.screenshot({ path: join(RESULTS, `${label}-${name}.png`) }).catch(() => {});
  }
}

/** A summary of the page's RTP streams and transport, for failure reports. */
export function rtpSummary(page) {
  return page.evaluate(async () => {
    const lines = [];
    for (const pc of window.__e2ePeerConnections || []) {
      lines.push(`pc ${pc.connectionState} ice=${pc.iceConnectionState} signaling=${pc.signalingState}`);
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type === 'inbound-rtp' || r.type === 'outbound-rtp') {
          const codec = r.codecId && stats.get(r.codecId);
          lines.push(`  ${r.type} ${r.kind} mid=${r.mid} ${r.rid ? `rid=${r.rid} ` : ''}ssrc=${r.ssrc} codec=${codec ? codec.mimeType : '?'} ` +
            (r.type === 'inbound-rtp'
              ? `packets=${r.packetsReceived} lost=${r.packetsLost} bytes=${r.bytesReceived} frames=${r.framesDecoded ?? '-'} keyframes=${r.keyFramesDecoded ?? '-'} ${r.frameWidth ?? ''}x${r.frameHeight ?? ''} pli=${r.pliCount ?? '-'} nack=${r.nackCount ?? '-'}`
              : `active=${r.active ?? '-'} packets=${r.packetsSent} bytes=${r.bytesSent} frames=${r.framesEncoded ?? '-'} ${r.frameWidth ?? ''}x${r.frameHeight ?? ''} limit=${r.qualityLimitationReason ?? '-'} pli=${r.pliCount ?? '-'} nack=${r.nackCount ?? '-'}`));
        } else if (r.type === 'transport') {
          lines.push(`  transport ice=${r.iceState} dtls=${r.dtlsState} srtp=${r.srtpCipher ?? '-'} sent=${r.bytesSent} received=${r.bytesReceived}`);
        } else if (r.type === 'candidate-pair' && r.nominated) {
          lines.push(`  candidate-pair available-outgoing=${r.availableOutgoingBitrate ?? '-'} rtt=${r.currentRoundTripTime ?? '-'}`);
        }
      });
    }
    return lines.join('\n');
  }).catch((e) => `(no stats: ${e.message})`);
}

/** Saves the pages' console logs to test-results/console-NAME.log (also after a pass). */
export function saveConsoleLogs(consoleLogs) {
  mkdirSync(RESULTS, { recursive: true });
  for (const [name, lines] of consoleLogs) writeFileSync(join(RESULTS, `console-${name}.log`), `${lines.join('\n')}\n`);
}

/** Screenshots, RTP summaries and console logs of every page, printed and saved. */
export async function saveEvidence(pages, consoleLogs) {
  mkdirSync(RESULTS, { recursive: true });
  await screenshots(pages, 'failure');
  for (const [name, page] of pages) {
    const summary = await rtpSummary(page);
    writeFileSync(join(RESULTS, `rtp-${name}.txt`), `${summary}\n`);
    console.log(`----- RTP of page ${name} -----\n${summary}`);
  }
  for (const [name, lines] of consoleLogs) {
    writeFileSync(join(RESULTS, `console-${name}.log`), `${lines.join('\n')}\n`);
    console.log(`----- console of page ${name} -----`);
    for (const l of lines) console.log(l);
  }
  console.log(`(screenshots and console logs in ${RESULTS})`);
}

// Runs in every page before its scripts: keep each WebSocket, record what the page sends
// (`__e2eSent`), and let the test play the server (`__e2eInject(msg)` delivers `msg` as if the
// server had sent it).
export function keepWebSockets() {
  const Native = window.WebSocket;
  const sockets = [];
  const sent = [];
  Object.defineProperty(window, '__e2eSent', { value: sent });
  class Kept extends Native {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }

    send(data) {
      try { sent.push(JSON.parse(data)); } catch { /* not JSON */ }
      return super.send(data);
    }
  }
  window.WebSocket = Kept;
  window.__e2eInject = (msg) => {
    const open = sockets.filter((ws) => ws.readyState === Native.OPEN);
    for (const ws of open) ws.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(msg) }));
    return open.length;
  };
}

/** The inbound-rtp stats of the video received from `name` on `page` (framesDecoded,
 * frameWidth, frameHeight, bytesReceived, and the codec's mimeType), through its kept peer connections
 * (`keepPeerConnections`); null before it is received. Chromium and Firefox alike. */
export function inboundFrom(page, name) {
  return page.evaluate(async (n) => {
    const v = document.querySelector(`video[data-participant="${n}"]`);
    const track = v && v.srcObject && v.srcObject.getVideoTracks()[0];
    if (!track) return null;
    for (const pc of window.__e2ePeerConnections || []) {
      for (const r of pc.getReceivers()) {
        if (r.track !== track) continue;
        const stats = await r.getStats();
        let inbound = null;
        stats.forEach((s) => {
          if (s.type !== 'inbound-rtp') return;
          const codec = s.codecId && stats.get(s.codecId);
          inbound = {
            framesDecoded: s.framesDecoded ?? 0,
            frameWidth: s.frameWidth ?? 0,
            frameHeight: s.frameHeight ?? 0,
            bytesReceived: s.bytesReceived ?? 0,
            mimeType: codec ? codec.mimeType : null,
          };
        });
        return inbound;
      }
    }
    return null;
  }, name);
}

/** framesDecoded of the video received from `name` on `page` (see `inboundFrom`). */
export async function framesFrom(page, name) {
  const inbound = await inboundFrom(page, name);
  return inbound && inbound.framesDecoded;
}

/** The video from `name` is decoded on `page` within `connectMs`, and `more` frames later
 * within `stepMs` (it keeps playing). Returns the two frame counts. */
export async function expectDecoding(page, name, what, { connectMs, stepMs, more }) {
  const first = await waitFor(`${what}: video from ${name} decoded`, async () => {
    const f = await framesFrom(page, name);
    return { ok: f !== null && f > 0, detail: f };
  }, connectMs);
  const later = await waitFor(`${what}: video from ${name} still being decoded`, async () => {
    const f = await framesFrom(page, name);
    return { ok: f !== null && f > first + more, detail: f };
  }, stepMs);
  return { first, now: later };
}

/** Mute or unmute the page's microphone with its button, once the call has enabled it. */
export async function setMic(page, muted, timeoutMs) {
  const button = page.locator('#mic-button');
  await waitFor('the microphone button to be enabled', async () => ({ ok: await button.isEnabled(), detail: null }), timeoutMs);
  if ((await button.getAttribute('aria-pressed')) !== String(muted)) await button.click();
}
