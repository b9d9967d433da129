// VP9 and AV1 SVC end-to-end: one scalable encoding, each subscriber gets the spatial layers
// its screen asks for, and a subscriber's layer changes do not freeze its video.
//
// A publisher page (`codec=vp9&scalability=L3T3_KEY`, fake camera 1280x720: one VP9 encoding
// with three spatial and three temporal layers; or `codec=av1`, whose layers the server reads
// from the Dependency Descriptor header extension) and two watch-only subscribers
// (`publish=none`): Small shows Pub at 320x180, Large at 1280x720. Once settled, both must
// decode VP9, Small at most 640 wide (expect 320: spatial layer 0) and Large at least 960
// (expect 1280: all three layers), and keep decoding. Then Large's tile shrinks to 320x180
// (the server drops its upper layers at the next picture) and grows back (the server asks
// for a keyframe and adds them there): through both, Large's framesDecoded must never stall
// for more than 500 ms (sampled every 50 ms in the page). A Firefox watcher (Fox, 320x180
// tile, through WebDriver BiDi as in firefox.mjs) must decode the same stream's low layer.
//
// Env: as e2e.mjs (SWITCHBOARD_URL, CHROMIUM_PATH, FIREFOX_PATH), SVC_CODEC (vp9, the
// default, or av1), SVC_ROOM (default svc-<codec>), SVC_SETTLE_MS (default 30000), SVC_MODE
// (default L3T3_KEY; L3T3 works too), SVC_FIREFOX (0 leaves the Firefox watcher out).
// Prints one final line starting with "SVC PASS" or "SVC FAIL".

import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BASE, CHROMIUM, CHROMIUM_ARGS, FIREFOX, FIREFOX_PREFS, captureConsole, inboundFrom,
  keepPeerConnections, makeLogger, saveConsoleLogs, saveEvidence, sleep, waitFor,
} from './lib.mjs';

const CODEC = (process.env.SVC_CODEC || 'vp9').toLowerCase();
const MIME = { vp9: 'video/VP9', av1: 'video/AV1' }[CODEC];
if (!MIME) throw new Error(`SVC_CODEC: vp9 or av1, not ${CODEC}`);
const ROOM = process.env.SVC_ROOM || `svc-${CODEC}`;
const MODE = process.env.SVC_MODE || 'L3T3_KEY';
/** A Firefox watcher too (SVC_FIREFOX=0 leaves it out): Firefox ESR decodes VP9 and AV1. */
const WITH_FIREFOX = process.env.SVC_FIREFOX !== '0';
const SETTLE_MS = Number(process.env.SVC_SETTLE_MS || 30_000);
const CONNECT_TIMEOUT_MS = 30_000;
const SWITCH_TIMEOUT_MS = 20_000;
const HOLD_MS = 4_000;
const TOTAL_TIMEOUT_MS = 180_000;
const SMALL_MAX_WIDTH = 640;
const LARGE_MIN_WIDTH = 960;
const MAX_FREEZE_MS = 500;

const PAGES = [
  { name: 'Pub', query: `&codec=${CODEC}&scalability=${MODE}`, viewport: { width: 1280, height: 720 } },
  { name: 'Small', query: '&publish=none&tile=320x180', viewport: { width: 1280, height: 720 } },
  { name: 'Large', query: '&publish=none&tile=1280x720', viewport: { width: 1700, height: 1100 } },
];

const { elapsed, log } = makeLogger('svc');

/** The publisher's outbound video: one stream, its codec and scalability mode. */
function publisherView(page) {
  return page.evaluate(async () => {
    const out = [];
    for (const pc of window.__e2ePeerConnections || []) {
      if (pc.connectionState === 'closed') continue;
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type !== 'outbound-rtp' || r.kind !== 'video') return;
        const codec = r.codecId && stats.get(r.codecId);
        out.push({
          rid: r.rid ?? null,
          mimeType: codec ? codec.mimeType : null,
          scalabilityMode: r.scalabilityMode ?? null,
          frame: `${r.frameWidth ?? 0}x${r.frameHeight ?? 0}`,
          limit: r.qualityLimitationReason ?? null,
          bytesSent: r.bytesSent ?? 0,
        });
      });
    }
    return out;
  });
}

/** Show every remote camera tile of `page` at `width`x`height` CSS pixels (as `tile=` does). */
function setTile(page, width, height) {
  return page.evaluate(([w, h]) => {
    const grid = document.querySelector('.fixed-tiles');
    grid.style.setProperty('--fixed-w', `${w}px`);
    grid.style.setProperty('--fixed-h', `${h}px`);
  }, [width, height]);
}

/** Starts sampling framesDecoded of Pub's video every 50 ms in the page; `freezeReport`
 * reads the longest stall since. */
function startFreezeWatch(page) {
  return page.evaluate(() => {
    const v = document.querySelector('video[data-participant="Pub"]');
    const track = v.srcObject.getVideoTracks()[0];
    const receiver = window.__e2ePeerConnections.flatMap((pc) => pc.getReceivers()).find((r) => r.track === track);
    const watch = { longestMs: 0, last: null, lastChange: performance.now(), samples: 0 };
    window.__svcFreeze = watch;
    clearInterval(window.__svcFreezeTimer);
    window.__svcFreezeTimer = setInterval(async () => {
      let frames = null;
      (await receiver.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') frames = s.framesDecoded ?? 0; });
      const now = performance.now();
      watch.samples += 1;
      if (frames !== watch.last) {
        watch.last = frames;
        watch.lastChange = now;
      }
      watch.longestMs = Math.max(watch.longestMs, now - watch.lastChange);
    }, 50);
  });
}

function freezeReport(page) {
  return page.evaluate(() => {
    const w = window.__svcFreeze;
    return { longestMs: Math.round(w.longestMs), samples: w.samples, frames: w.last };
  });
}

const fmt = (s) => (s ? `${s.frameWidth}x${s.frameHeight} ${s.mimeType} frames ${s.framesDecoded}` : 'nothing received');

/** Waits until `page` decodes Pub's video in the codec under test at a width `ok` accepts, held for `holdMs` while
 * frames keep coming; returns the last stats. */
async function expectWidth(page, what, ok, timeoutMs, holdMs) {
  const start = Date.now();
  let since = null;
  let sinceFrames = 0;
  let last = null;
  for (;;) {
    last = await inboundFrom(page, 'Pub');
    const good = last && last.mimeType === MIME && ok(last.frameWidth);
    if (good) {
      if (since === null) {
        since = Date.now();
        sinceFrames = last.framesDecoded;
      }
      if (Date.now() - since >= holdMs && last.framesDecoded > sinceFrames) return last;
    } else {
      since = null;
    }
    if (Date.now() - start > timeoutMs + holdMs) {
      throw new Error(`${what}: after ${((Date.now() - start) / 1000).toFixed(0)}s: ${fmt(last)}`);
    }
    await sleep(250);
  }
}

async function main() {
  const pages = new Map();
  const consoleLogs = new Map();
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchboard-svc-'));
  let context;
  let firefox;
  const watchdog = setTimeout(() => {
    console.log(`SVC FAIL: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000}s`);
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);

  try {
    log(`server ${BASE}, chromium ${CHROMIUM}, room ${ROOM}, codec ${CODEC}, mode ${MODE}`);
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
    const [pub, small, large] = ['Pub', 'Small', 'Large'].map((n) => pages.get(n));

    // 1. The publisher sends one encoding of the codec with the scalability mode asked for.
    const sending = await waitFor(`Pub to send one ${MIME} ${MODE} encoding`, async () => {
      const out = await publisherView(pub);
      const ok = out.length === 1 && out[0].mimeType === MIME && out[0].scalabilityMode === MODE;
      return { ok, detail: out };
    }, CONNECT_TIMEOUT_MS);
    log(`Pub sends ${JSON.stringify(sending)}`);

    // 2. Small gets the low spatial layer, Large all of them, both decoding the codec.
    const [s, l] = await Promise.all([
      expectWidth(small, `Small to decode ${MIME} at most 640 wide`, (w) => w > 0 && w <= SMALL_MAX_WIDTH, SETTLE_MS, HOLD_MS),
      expectWidth(large, `Large to decode ${MIME} at least 960 wide`, (w) => w >= LARGE_MIN_WIDTH, SETTLE_MS, HOLD_MS),
    ]);
    log(`settled: Small ${fmt(s)}, Large ${fmt(l)}`);
    // What each receives of the one stream, over 2 s: the small one far less. In k-SVC
    // (`_KEY`) Large gets the top layer alone between keyframes, so clearly less than Pub
    // sends; in full SVC it needs every layer, about all of it.
    const sentBytes = async () => (await publisherView(pub)).reduce((sum, o) => sum + o.bytesSent, 0);
    const [before, sentBefore] = await Promise.all([
      Promise.all([inboundFrom(small, 'Pub'), inboundFrom(large, 'Pub')]), sentBytes(),
    ]);
    await sleep(2_000);
    const [after, sentAfter] = await Promise.all([
      Promise.all([inboundFrom(small, 'Pub'), inboundFrom(large, 'Pub')]), sentBytes(),
    ]);
    const [smallKbps, largeKbps] = after.map((a, i) => Math.round(((a.bytesReceived - before[i].bytesReceived) * 8) / 2_000));
    const pubKbps = Math.round(((sentAfter - sentBefore) * 8) / 2_000);
    log(`received: Small ${smallKbps} kbit/s, Large ${largeKbps} kbit/s; Pub sends ${pubKbps} kbit/s`);
    if (!(smallKbps < largeKbps)) throw new Error(`Small receives ${smallKbps} kbit/s, not less than Large's ${largeKbps}`);
    if (MODE.endsWith('_KEY') && !(largeKbps < 0.9 * pubKbps)) {
      throw new Error(`k-SVC: Large receives ${largeKbps} kbit/s of the ${pubKbps} Pub sends: the lower layers were not left out`);
    }

    // 3. Large steps down and back up; its video never stalls past MAX_FREEZE_MS.
    await startFreezeWatch(large);
    await setTile(large, 320, 180);
    const down = await expectWidth(large, 'Large to step down to at most 640 wide', (w) => w > 0 && w <= SMALL_MAX_WIDTH, SWITCH_TIMEOUT_MS, 1_000);
    log(`Large stepped down: ${fmt(down)}, ${JSON.stringify(await freezeReport(large))}`);
    await setTile(large, 1280, 720);
    const up = await expectWidth(large, 'Large to step back up to at least 960 wide', (w) => w >= LARGE_MIN_WIDTH, SWITCH_TIMEOUT_MS, 2_000);
    const freeze = await freezeReport(large);
    log(`Large stepped up: ${fmt(up)}, ${JSON.stringify(freeze)}`);
    if (freeze.samples < 20) throw new Error(`the freeze watch took only ${freeze.samples} samples`);
    if (freeze.longestMs > MAX_FREEZE_MS) {
      throw new Error(`Large's video stalled ${freeze.longestMs} ms during the layer changes (limit ${MAX_FREEZE_MS} ms)`);
    }
    const smallNow = await inboundFrom(small, 'Pub');
    if (!(smallNow.framesDecoded > s.framesDecoded)) throw new Error(`Small stopped decoding: ${fmt(smallNow)}`);

    // 4. Firefox decodes the same stream's low layer.
    let f = null;
    if (WITH_FIREFOX) {
      firefox = await puppeteer.launch({
        browser: 'firefox',
        executablePath: FIREFOX,
        headless: true,
        userDataDir: join(userDataDir, 'firefox-profile'),
        extraPrefsFirefox: FIREFOX_PREFS,
        args: ['--width=1280', '--height=720'],
      });
      const fox = (await firefox.pages())[0] || await firefox.newPage();
      await fox.setViewport({ width: 1280, height: 720 });
      await fox.evaluateOnNewDocument(keepPeerConnections);
      const foxLines = [];
      consoleLogs.set('Fox', foxLines);
      fox.on('console', (m) => foxLines.push(`[${elapsed()}] ${m.type()}: ${m.text()}`));
      await fox.goto(`${BASE}/?room=${encodeURIComponent(ROOM)}&name=Fox&autojoin=1&publish=none&tile=320x180`);
      log(`Fox (Firefox ${await firefox.version()}) joined`);
      f = await expectWidth(fox, `Fox (Firefox) to decode ${MIME} at most 640 wide`, (w) => w > 0 && w <= SMALL_MAX_WIDTH, CONNECT_TIMEOUT_MS, HOLD_MS);
      log(`Fox decodes ${fmt(f)}`);
    }

    saveConsoleLogs(consoleLogs);
    clearTimeout(watchdog);
    console.log(`SVC PASS: ${CODEC} ${MODE}: Pub sends ${pubKbps} kbit/s, Small decodes ${s.frameWidth}x${s.frameHeight} (${smallKbps} kbit/s), Large ${l.frameWidth}x${l.frameHeight} (${largeKbps} kbit/s), ` +
      `down to ${down.frameWidth}x${down.frameHeight} and up to ${up.frameWidth}x${up.frameHeight} with a longest stall of ${freeze.longestMs} ms; ` +
      `${f ? `Firefox decodes ${f.frameWidth}x${f.frameHeight}` : 'no Firefox run'} (${elapsed()})`);
    return 0;
  } catch (e) {
    clearTimeout(watchdog);
    console.log(`[svc ${elapsed()}] failure: ${e.stack || e.message}`);
    await saveEvidence(pages, consoleLogs);
    console.log(`SVC FAIL: ${e.message.split('\n').slice(0, 3).join(' | ')} (${elapsed()})`);
    return 1;
  } finally {
    if (context) await context.close().catch(() => {});
    if (firefox) await firefox.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

process.exit(await main());
