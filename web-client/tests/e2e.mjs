// End-to-end browser test of the web client against a running Switchboard server.
//
// Three Chromium pages join one room through `/?room=ROOM&name=X&autojoin=1`. Each must show
// the other two as playing <video data-participant> elements (videoWidth > 0, currentTime
// advancing) and receive their audio (inbound-rtp audio packetsReceived growing, read from the
// page's RTCPeerConnection, kept by an init script). Then one page leaves and the other two
// must drop its tile.
//
// Env: SWITCHBOARD_URL (default http://127.0.0.1:8080), CHROMIUM_PATH (default
// /usr/bin/chromium), E2E_ROOM (default e2e), E2E_SCREENSHOTS=1 to keep screenshots of a
// passing run. On failure, screenshots and console logs go to ./test-results/.
// Prints one final line starting with "E2E PASS" or "E2E FAIL"; exits non-zero on failure.

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BASE, CHROMIUM, CHROMIUM_ARGS, captureConsole, keepPeerConnections, makeLogger, saveEvidence,
  screenshots, sleep, waitFor,
} from './lib.mjs';

const ROOM = process.env.E2E_ROOM || 'e2e';
const KEEP_SCREENSHOTS = process.env.E2E_SCREENSHOTS === '1';
const NAMES = ['A', 'B', 'C'];
const LEAVER = 'C';

const CONNECT_TIMEOUT_MS = 30_000; // join + ICE + DTLS + first frames, all three pages
const SAMPLE_MS = 2_500; // window over which media must advance
const LEAVE_TIMEOUT_MS = 10_000;
const TOTAL_TIMEOUT_MS = 120_000;

const { elapsed, log } = makeLogger('e2e');

/** The page's remote videos: name, size, playback position. */
function remoteVideos(page) {
  return page.$$eval('video[data-participant]', (vs) =>
    vs.map((v) => ({
      name: v.getAttribute('data-participant'),
      width: v.videoWidth,
      height: v.videoHeight,
      time: v.currentTime,
      paused: v.paused,
    })),
  );
}

/** inbound-rtp audio streams of the page's live peer connections: ssrc -> packetsReceived. */
function inboundAudio(page) {
  return page.evaluate(async () => {
    const out = {};
    const pcs = window.__e2ePeerConnections || [];
    for (const pc of pcs) {
      if (pc.connectionState === 'closed') continue;
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') out[`${r.ssrc}`] = r.packetsReceived || 0;
      });
    }
    if (!pcs.length) out.error = 'no RTCPeerConnection kept by the init script';
    return out;
  });
}

async function main() {
  const pages = new Map(); // name -> page
  const consoleLogs = new Map(); // name -> [lines]
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-'));
  let context;
  const watchdog = setTimeout(() => {
    console.log(`E2E FAIL: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000}s`);
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);

  try {
    log(`server ${BASE}, chromium ${CHROMIUM}, room ${ROOM}`);
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 720 },
    });
    await context.grantPermissions(['camera', 'microphone'], { origin: BASE });
    await context.addInitScript(keepPeerConnections);

    for (const name of NAMES) {
      const page = pages.size === 0 && context.pages()[0] ? context.pages()[0] : await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, elapsed);
      pages.set(name, page);
    }
    // Join one after the other, so each join sees the earlier participants in `joined` and the
    // later ones through `participant_joined`: both paths are exercised.
    for (const [name, page] of pages) {
      const url = `${BASE}/?room=${encodeURIComponent(ROOM)}&name=${encodeURIComponent(name)}&autojoin=1`;
      await page.goto(url);
      log(`${name} opened ${url}`);
    }

    // 1. Every page shows the two others as decoded video.
    for (const [name, page] of pages) {
      const others = NAMES.filter((n) => n !== name).sort();
      await waitFor(`${name} to show playing video of ${others.join(' and ')}`, async () => {
        const vs = await remoteVideos(page);
        const names = vs.map((v) => v.name).sort();
        const ok = JSON.stringify(names) === JSON.stringify(others) && vs.every((v) => v.width > 0);
        return { ok, detail: vs };
      }, CONNECT_TIMEOUT_MS);
      log(`${name} shows video of ${others.join(', ')}`);
    }

    // 2. Video keeps playing and audio keeps arriving, on every page.
    const before = new Map();
    for (const [name, page] of pages) before.set(name, { video: await remoteVideos(page), audio: await inboundAudio(page) });
    await sleep(SAMPLE_MS);
    for (const [name, page] of pages) {
      const b = before.get(name);
      const vs = await remoteVideos(page);
      for (const v of vs) {
        const was = b.video.find((x) => x.name === v.name);
        const advanced = was ? v.time - was.time : 0;
        if (!(advanced > 1)) throw new Error(`${name}: video of ${v.name} did not advance (${was && was.time} -> ${v.time}, paused=${v.paused})`);
        log(`${name}: video of ${v.name} ${v.width}x${v.height}, +${advanced.toFixed(2)}s played`);
      }
      const audio = await inboundAudio(page);
      const growing = Object.entries(audio).filter(([ssrc]) => ssrc !== 'error').filter(([ssrc, n]) => n > (b.audio[ssrc] ?? 0));
      if (growing.length < NAMES.length - 1) {
        throw new Error(`${name}: expected ${NAMES.length - 1} inbound audio streams with packetsReceived growing, got ${growing.length} (before ${JSON.stringify(b.audio)}, after ${JSON.stringify(audio)})`);
      }
      log(`${name}: audio growing on ${growing.length} streams: ${growing.map(([s, n]) => `${s}: ${b.audio[s]} -> ${n}`).join(', ')}`);
    }
    if (KEEP_SCREENSHOTS) await screenshots(pages, 'call');

    // 3. One page leaves; the others drop its tile and keep each other.
    const leaver = pages.get(LEAVER);
    await leaver.getByRole('button', { name: 'Leave' }).click();
    log(`${LEAVER} clicked Leave`);
    await waitFor(`${LEAVER}'s page to return to the join form`, async () => ({
      ok: await leaver.locator('#join-form').isVisible(),
      detail: await leaver.locator('#join-form').isVisible(),
    }), LEAVE_TIMEOUT_MS);
    for (const [name, page] of pages) {
      if (name === LEAVER) continue;
      const others = NAMES.filter((n) => n !== name && n !== LEAVER);
      await waitFor(`${name} to drop ${LEAVER}'s tile`, async () => {
        const vs = await remoteVideos(page);
        const ok = JSON.stringify(vs.map((v) => v.name).sort()) === JSON.stringify(others);
        return { ok, detail: vs.map((v) => v.name) };
      }, LEAVE_TIMEOUT_MS);
      log(`${name} dropped ${LEAVER}'s tile, still shows ${others.join(', ')}`);
    }
    if (KEEP_SCREENSHOTS) await screenshots(pages, 'after-leave');

    clearTimeout(watchdog);
    console.log(`E2E PASS: 3 pages saw and heard each other; ${LEAVER} left and its tile disappeared (${elapsed()})`);
    return 0;
  } catch (e) {
    clearTimeout(watchdog);
    console.log(`[e2e ${elapsed()}] failure: ${e.stack || e.message}`);
    await saveEvidence(pages, consoleLogs);
    console.log(`E2E FAIL: ${e.message.split('\n')[0]} (${elapsed()})`);
    return 1;
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

process.exit(await main());
