// Simulcast end-to-end: each subscriber gets the layer its screen asks for.
//
// A publisher page (`?room=sc&name=Pub&autojoin=1`, fake camera 1280x720, simulcast q/h/f) and
// two watch-only subscribers (`publish=none`) that show Pub's video at a fixed size:
// Small at 320x180 (`tile=320x180`) and Large at 1280x720 (`tile=1280x720`). Each reports its
// tile size with `video_size`; once the server has settled, Small must decode at most 640 wide
// (expect 320: layer q) and Large at least 960 wide (expect 1280: layer f), and both must keep
// it for a few seconds.
//
// The client's part is checked first and separately (tile sizes, `video_size` reports, three
// encodings sent by Pub), so a failure says which side is at fault. On failure it prints both
// sizes, the last `stats` messages of each subscriber, the publisher's `publisher_layers`,
// outbound layers, and the pages' logs.
//
// Env: as e2e.mjs (SWITCHBOARD_URL, CHROMIUM_PATH), SC_ROOM (default sc), SC_SETTLE_MS
// (default 25000), E2E_SCREENSHOTS=1 to keep screenshots of a passing run.
// Prints one final line starting with "SIMULCAST PASS" or "SIMULCAST FAIL".

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BASE, CHROMIUM, CHROMIUM_ARGS, captureConsole, keepPeerConnections, makeLogger, saveConsoleLogs,
  saveEvidence, screenshots, sleep, waitFor,
} from './lib.mjs';

const ROOM = process.env.SC_ROOM || 'sc';
const KEEP_SCREENSHOTS = process.env.E2E_SCREENSHOTS === '1';
const SETTLE_MS = Number(process.env.SC_SETTLE_MS || 25_000);
const CONNECT_TIMEOUT_MS = 30_000;
const HOLD_MS = 4_000; // the right sizes must hold this long
const TOTAL_TIMEOUT_MS = 150_000;
const SMALL_MAX_WIDTH = 640;
const LARGE_MIN_WIDTH = 960;

const PAGES = [
  { name: 'Pub', query: '', viewport: { width: 1280, height: 720 } },
  { name: 'Small', query: '&publish=none&tile=320x180', viewport: { width: 1280, height: 720 }, tile: [320, 180] },
  // Big enough for a 1280x720 tile next to the (avatar-only) local tile.
  { name: 'Large', query: '&publish=none&tile=1280x720', viewport: { width: 1700, height: 1100 }, tile: [1280, 720] },
];

const { elapsed, log } = makeLogger('simulcast');

/** What a subscriber page shows of Pub: decoded size, tile size, what it reported, stats. */
function subscriberView(page) {
  return page.evaluate(() => {
    const v = document.querySelector('video[data-participant="Pub"]');
    const dbg = window.switchboardStats || {};
    const rect = v ? v.getBoundingClientRect() : null;
    return {
      videoWidth: v ? v.videoWidth : null,
      videoHeight: v ? v.videoHeight : null,
      time: v ? v.currentTime : null,
      tile: rect ? `${Math.round(rect.width)}x${Math.round(rect.height)}` : null,
      reported: dbg.sizes || {},
      serverUnknown: dbg.unsupported ? dbg.unsupported() : [],
      paused: dbg.paused || {},
      stats: (dbg.history || []).slice(-3),
    };
  });
}

/** The publisher's simulcast state: active flags, publisher_layers seen, outbound layers. */
function publisherView(page) {
  return page.evaluate(async () => {
    const dbg = window.switchboardStats || {};
    const out = [];
    for (const pc of window.__e2ePeerConnections || []) {
      if (pc.connectionState === 'closed') continue;
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type === 'outbound-rtp' && r.kind === 'video') {
          out.push({ rid: r.rid ?? null, active: r.active ?? null, frame: `${r.frameWidth ?? 0}x${r.frameHeight ?? 0}`, framesEncoded: r.framesEncoded ?? 0, bytesSent: r.bytesSent ?? 0, limit: r.qualityLimitationReason ?? null });
        }
      });
    }
    out.sort((a, b) => String(a.rid).localeCompare(String(b.rid)));
    return { cameraLayers: dbg.cameraLayers ? dbg.cameraLayers() : null, outbound: out };
  });
}

const fmtStats = (view) => view.stats.map((m) => JSON.stringify({
  estimate_bps: m.estimate_bps,
  subscriptions: (m.subscriptions || []).filter((s) => s.kind === 'video'),
})).join('\n      ') || '(no stats message received)';

/** One line of the timeline: decoded width, the server's layers and estimate. */
function brief(view) {
  const m = view.stats[view.stats.length - 1];
  const sub = m && (m.subscriptions || []).find((x) => x.kind === 'video');
  const est = m && typeof m.estimate_bps === 'number' ? `${Math.round(m.estimate_bps / 1000)}k` : '?';
  const layers = sub ? `${sub.current_layer}->${sub.target_layer}` : 'no stats';
  const paused = Object.values(view.paused).find((x) => x.paused);
  return `${view.videoWidth}w ${layers} est ${est}${paused ? ` PAUSED (${paused.reason})` : ''}`;
}

function describe(small, large, pub) {
  const unknown = [...new Set([...small.serverUnknown, ...large.serverUnknown])];
  return [
    ...(unknown.length ? [`the server answered unknown_type to: ${unknown.join(', ')} (its simulcast support has not landed?)`] : []),
    `Small decodes ${small.videoWidth}x${small.videoHeight} (want width <= ${SMALL_MAX_WIDTH}), tile ${small.tile}, reported ${JSON.stringify(small.reported)}, paused ${JSON.stringify(small.paused)}`,
    `Large decodes ${large.videoWidth}x${large.videoHeight} (want width >= ${LARGE_MIN_WIDTH}), tile ${large.tile}, reported ${JSON.stringify(large.reported)}, paused ${JSON.stringify(large.paused)}`,
    `Pub camera layers active ${JSON.stringify(pub.cameraLayers)}, outbound ${JSON.stringify(pub.outbound)}`,
    `Small last stats:\n      ${fmtStats(small)}`,
    `Large last stats:\n      ${fmtStats(large)}`,
  ].join('\n  ');
}

async function main() {
  const pages = new Map();
  const consoleLogs = new Map();
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchboard-sc-'));
  let context;
  const watchdog = setTimeout(() => {
    console.log(`SIMULCAST FAIL: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000}s`);
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

    for (const p of PAGES) {
      const page = pages.size === 0 && context.pages()[0] ? context.pages()[0] : await context.newPage();
      await page.setViewportSize(p.viewport);
      const lines = [];
      consoleLogs.set(p.name, lines);
      captureConsole(page, lines, elapsed);
      pages.set(p.name, page);
    }
    for (const p of PAGES) {
      const url = `${BASE}/?room=${encodeURIComponent(ROOM)}&name=${p.name}&autojoin=1${p.query}`;
      await pages.get(p.name).goto(url);
      log(`${p.name} opened ${url}`);
    }
    const pub = pages.get('Pub');
    const small = pages.get('Small');
    const large = pages.get('Large');

    // 1. Both subscribers show Pub's video.
    for (const name of ['Small', 'Large']) {
      await waitFor(`${name} to show Pub's video`, async () => {
        const v = await subscriberView(pages.get(name));
        return { ok: v.videoWidth > 0, detail: { videoWidth: v.videoWidth, tile: v.tile } };
      }, CONNECT_TIMEOUT_MS);
      log(`${name} shows Pub's video`);
    }

    // 2. The client's part: tiles at the forced size, that size reported, three layers sent.
    for (const p of PAGES.filter((x) => x.tile)) {
      const [w, h] = p.tile;
      const detail = await waitFor(`${p.name} to show Pub at ${w}x${h} and report it with video_size`, async () => {
        const v = await subscriberView(pages.get(p.name));
        const sizes = Object.values(v.reported);
        const ok = v.tile === `${w}x${h}` && sizes.length === 1 && sizes[0].width === w && sizes[0].height === h;
        return { ok, detail: { tile: v.tile, reported: v.reported } };
      }, 5_000);
      log(`${p.name}: tile ${detail.tile}, reported ${JSON.stringify(detail.reported)}`);
    }
    const sending = await waitFor('Pub to send three encodings', async () => {
      const v = await publisherView(pub);
      return { ok: v.outbound.filter((o) => o.rid).length === 3, detail: v };
    }, 10_000);
    log(`Pub sends ${sending.outbound.map((o) => `${o.rid} ${o.frame}`).join(', ')}`);

    // 3. The server's part: after settling, Small gets a small layer and Large the full one.
    const want = (s, l) => s.videoWidth > 0 && s.videoWidth <= SMALL_MAX_WIDTH && l.videoWidth >= LARGE_MIN_WIDTH;
    const settleStart = Date.now();
    let s;
    let l;
    let holdingSince = null;
    const timeline = [];
    let lastKey = '';
    for (;;) {
      [s, l] = await Promise.all([subscriberView(small), subscriberView(large)]);
      const now = `Small ${brief(s)} | Large ${brief(l)}`;
      if (now !== lastKey) {
        lastKey = now;
        timeline.push(`+${((Date.now() - settleStart) / 1000).toFixed(1)}s ${now}`);
        log(now);
      }
      if (want(s, l)) {
        holdingSince ??= Date.now();
        if (Date.now() - holdingSince >= HOLD_MS) break;
      } else {
        holdingSince = null;
      }
      if (Date.now() - settleStart > SETTLE_MS + HOLD_MS) {
        const p = await publisherView(pub);
        throw new Error(`after ${((Date.now() - settleStart) / 1000).toFixed(0)}s the layers are not right (or did not hold ${HOLD_MS / 1000}s):\n  ${describe(s, l, p)}\n  timeline (decoded width, server's current->target layer, estimate):\n    ${timeline.join('\n    ')}`);
      }
      await sleep(500);
    }
    const p = await publisherView(pub);
    log(`settled after ${((holdingSince - settleStart) / 1000).toFixed(1)}s and held ${HOLD_MS / 1000}s:\n  ${describe(s, l, p)}`);
    if (KEEP_SCREENSHOTS) await screenshots(pages, 'simulcast');
    saveConsoleLogs(consoleLogs);

    clearTimeout(watchdog);
    console.log(`SIMULCAST PASS: Small decodes ${s.videoWidth}x${s.videoHeight}, Large ${l.videoWidth}x${l.videoHeight} (${elapsed()})`);
    return 0;
  } catch (e) {
    clearTimeout(watchdog);
    console.log(`[simulcast ${elapsed()}] failure: ${e.stack || e.message}`);
    await saveEvidence(pages, consoleLogs);
    console.log(`SIMULCAST FAIL: ${e.message.split('\n').slice(0, 3).join(' | ')} (${elapsed()})`);
    return 1;
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

process.exit(await main());
