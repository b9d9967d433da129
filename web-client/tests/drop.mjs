// A watcher's link suddenly drops, with real Chromium on both ends (issue 15).
//
// The watcher's Chromium runs in a network namespace of its own (chromium-in-netns.sh), joined
// to the test's by a veth pair whose egress toward it the test shapes with tc: an htb class and
// a drop-tail fifo of about 100 ms, as a router's queue. This test runs its own server
// (SWITCHBOARD_BIN) on the pair's address, 10.77.0.1, which the publisher (in the test's
// namespace) reaches as well. Three phases:
//
// 1. Steady and unconstrained: the watcher shows the publisher at 1280x720 and must decode the
//    top layer. Sampled for STEADY_MS after a 20 s settle: at most 2 layer changes (changes of
//    the decoded width) and at least 95% of samples at the top layer.
// 2. The link falls to 300 kbit/s, where the lowest layer (with audio, about 200 kbit/s)
//    fits: no freeze (no new decoded frame) longer than 1.2 s (target 1 s), a lower layer decoded
//    within 3 s, and the video never paused.
// 3. The link is freed: the top layer comes back (reported, with the time it took).
//
// Prints one final line starting with "DROP PASS" or "DROP FAIL", with the measured figures.
// Env: SWITCHBOARD_BIN, CHROMIUM_PATH; DROP_BPS (default 300000: the rate after the drop);
// DROP_SERVER_LOG (the server's RUST_LOG, default warn); DROP_STEADY_MS (default 30000); DROP_EXTRA_PUBLISHERS
// (default 0): more publishing pages, each shown at 1280x720 too, for the steady phase of a
// busy host (QUALITY.md); with DROP_STEADY_ONLY=1 the test ends after the steady phase.

import { chromium } from 'playwright-core';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CHROMIUM, CHROMIUM_ARGS, captureConsole, gotoAcrossNetworkChange, health, keepPeerConnections, makeLogger, saveEvidence, sleep, waitFor,
} from './lib.mjs';

const { elapsed, log } = makeLogger('drop');
const BIN = process.env.SWITCHBOARD_BIN;
const HERE = dirname(fileURLToPath(import.meta.url));
const LINK = 'sbshape0';
const HTTP = '10.77.0.1:8096';
const BASE = `http://${HTTP}`;
const ROOM = 'drop';
const STEADY_MS = Number(process.env.DROP_STEADY_MS || 30_000);
const SETTLE_MS = 20_000;
const TOP_MIN_WIDTH = 960;
const DROP_BPS = Number(process.env.DROP_BPS || 300_000);
// The targets: no freeze over 1 s (plus the 100 ms between samples here) and a lower layer
// within 3 s. 8 runs froze for 208-626 ms and decoded a lower layer after 426-739 ms
// (QUALITY.md), since the fix for the one-in-ten tail of 2-3 s.
const MAX_FREEZE_MS = 1_200;
const LOWER_WITHIN_MS = 3_000;
const EXTRA_PUBLISHERS = Number(process.env.DROP_EXTRA_PUBLISHERS || 0);
const STEADY_ONLY = process.env.DROP_STEADY_ONLY === '1';
const TOTAL_TIMEOUT_MS = 180_000 + STEADY_MS;

const tc = (...args) => execFileSync('tc', args, { stdio: ['ignore', 'ignore', 'inherit'] });

/** The watcher's downlink: `bps`, through a drop-tail queue of about 100 ms at that rate. */
function shape(bps, first = false) {
  const verb = first ? 'add' : 'change';
  const queueBytes = Math.max(Math.round(bps / 8 / 10), 4_000);
  if (first) tc('qdisc', 'add', 'dev', LINK, 'root', 'handle', '1:', 'htb', 'default', '10');
  tc('class', verb, 'dev', LINK, 'parent', '1:', 'classid', '1:10', 'htb', 'rate', `${bps}bit`, 'ceil', `${bps}bit`);
  tc('qdisc', verb, 'dev', LINK, 'parent', '1:10', 'handle', '10:', 'bfifo', 'limit', String(queueBytes));
}

/** What the watcher decodes of Pub now, and whether the server paused it. */
function watcherView(page) {
  return page.evaluate(async () => {
    let frames = 0;
    let width = 0;
    let freezes = 0;
    let freezeSeconds = 0;
    for (const pc of window.__e2ePeerConnections || []) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video' && (r.framesDecoded || 0) >= frames) {
          frames = r.framesDecoded || 0;
          width = r.frameWidth || 0;
          freezes = r.freezeCount || 0;
          freezeSeconds = r.totalFreezesDuration || 0;
        }
      });
    }
    const dbg = window.switchboardStats || {};
    const paused = Object.values(dbg.paused || {}).some((p) => p.paused);
    const last = (dbg.history || []).slice(-1)[0];
    const sub = last && (last.subscriptions || []).find((s) => s.kind === 'video');
    return {
      frames, width, freezes, freezeSeconds, paused, layer: sub ? sub.current_layer : null,
      estimate: last ? last.estimate_bps : null,
    };
  });
}

/** The decoded width and frame count of every video the watcher receives, by stream. */
function inboundWidths(page) {
  return page.evaluate(async () => {
    const widths = {};
    for (const pc of window.__e2ePeerConnections || []) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video' && (r.framesDecoded || 0) > 0) {
          widths[r.id] = { width: r.frameWidth || 0, frames: r.framesDecoded };
        }
      });
    }
    return widths;
  });
}

async function main() {
  if (!BIN) {
    console.log('DROP FAIL: SWITCHBOARD_BIN is not set');
    return 1;
  }
  const watchdog = setTimeout(() => {
    console.log(`DROP FAIL: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000}s`);
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  const dirs = [];
  const contexts = [];
  const pages = new Map();
  const consoleLogs = new Map();
  let server;
  try {
    const args = [
      ...CHROMIUM_ARGS,
      `--unsafely-treat-insecure-origin-as-secure=${BASE}`,
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    ];
    const open = async (name, executablePath, query, viewport) => {
      const dir = mkdtempSync(join(tmpdir(), `switchboard-drop-${name}-`));
      dirs.push(dir);
      const context = await chromium.launchPersistentContext(dir, { executablePath, headless: true, args, viewport });
      contexts.push(context);
      await context.addInitScript(keepPeerConnections);
      const page = context.pages()[0] || await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, elapsed);
      pages.set(name, page);
      return { context, page, url: `${BASE}/?room=${ROOM}&name=${name}&autojoin=1${query}` };
    };

    // The watcher's browser first: it brings the veth pair the server listens on.
    const watcher = await open('Watcher', join(HERE, 'chromium-in-netns.sh'), '&publish=none&tile=1280x720', { width: 1700, height: 1100 });
    await waitFor(`${LINK} to appear`, async () => {
      try {
        execFileSync('ip', ['addr', 'show', LINK], { stdio: 'ignore' });
        return { ok: true };
      } catch {
        return { ok: false };
      }
    }, 10_000);
    shape(1_000_000_000, true);
    server = spawn(BIN, ['serve', '--http-addr', HTTP, '--rtc-addr', '10.77.0.1:50096', '--no-turn'], {
      stdio: ['ignore', process.env.DROP_SERVER_LOG ? 'inherit' : 'ignore', 'inherit'],
      env: { ...process.env, RUST_LOG: process.env.DROP_SERVER_LOG || 'warn' },
    });
    await waitFor('the server to answer', async () => ({ ok: Boolean(await health(BASE)) }), 20_000);

    const pub = await open('Pub', CHROMIUM, '', { width: 1280, height: 720 });
    await pub.context.grantPermissions(['camera', 'microphone'], { origin: BASE });
    await pub.page.goto(pub.url);
    for (let i = 1; i <= EXTRA_PUBLISHERS; i++) {
      const extra = await open(`Pub${i}`, CHROMIUM, '', { width: 1280, height: 720 });
      await extra.context.grantPermissions(['camera', 'microphone'], { origin: BASE });
      await extra.page.goto(extra.url);
    }
    await gotoAcrossNetworkChange(watcher.page, watcher.url, log);

    // 1. Steady.
    await waitFor('the watcher to decode the top layer', async () => {
      const v = await watcherView(watcher.page);
      return { ok: v.width >= TOP_MIN_WIDTH, detail: v };
    }, 60_000);
    log(`watcher decodes the top layer; settling ${SETTLE_MS / 1000}s`);
    await sleep(SETTLE_MS);
    const samples = new Map();
    const steadyEnd = Date.now() + STEADY_MS;
    while (Date.now() < steadyEnd) {
      for (const [id, sample] of Object.entries(await inboundWidths(watcher.page))) {
        if (!samples.has(id)) samples.set(id, []);
        samples.get(id).push(sample);
      }
      await sleep(250);
    }
    // Per video shown (its frame count grows: a video the page does not show, off screen,
    // is paused by the server and keeps its last width), changes of the decoded width (a layer
    // change) and the share of samples at the top layer; the worst video counts.
    for (const [id, s] of [...samples]) {
      if (s[s.length - 1].frames === s[0].frames) samples.delete(id);
    }
    let changes = 0;
    let atTop = samples.size ? 1 : 0;
    for (const widths of [...samples.values()].map((s) => s.map((x) => x.width))) {
      changes = Math.max(changes, widths.slice(1).filter((w, i) => w !== widths[i]).length);
      atTop = Math.min(atTop, widths.filter((w) => w >= TOP_MIN_WIDTH).length / widths.length);
    }
    const perMinute = (changes * 60_000) / STEADY_MS;
    for (const [id, s] of samples) {
      const counts = {};
      for (const { width: w } of s) counts[w] = (counts[w] || 0) + 1;
      log(`  ${id}: decoded widths (samples) ${JSON.stringify(counts)}`);
    }
    const serverView = await watcher.page.evaluate(() => {
      const dbg = window.switchboardStats || {};
      const last = (dbg.history || []).slice(-1)[0];
      return {
        estimate: last && last.estimate_bps,
        videos: ((last && last.subscriptions) || []).filter((x) => x.kind === 'video')
          .map((x) => `${x.current_layer}->${x.target_layer} (${x.reason})`),
        sizes: dbg.sizes || {},
      };
    });
    log(`  server: ${JSON.stringify(serverView)}`);
    log(`steady ${STEADY_MS / 1000}s, ${samples.size} videos: at most ${changes} layer changes per video (${perMinute.toFixed(1)}/min), at least ${(atTop * 100).toFixed(1)}% at the top layer`);
    if (STEADY_ONLY) {
      clearTimeout(watchdog);
      const ok = perMinute <= 2 && atTop >= 0.95;
      console.log(`DROP ${ok ? 'PASS' : 'FAIL'}: steady only, ${samples.size} videos, ${changes} changes in ${STEADY_MS / 1000}s, ${(atTop * 100).toFixed(1)}% at top (${elapsed()})`);
      return ok ? 0 : 1;
    }

    // 2. The drop.
    const before = await watcherView(watcher.page);
    const droppedAt = Date.now();
    shape(DROP_BPS);
    let lastFrames = before.frames;
    let lastNewFrameAt = droppedAt;
    let longestFreeze = 0;
    let lowerAt = null;
    let paused = false;
    const timeline = [];
    while (Date.now() - droppedAt < 12_000) {
      const v = await watcherView(watcher.page);
      const now = Date.now();
      if (v.frames > lastFrames) {
        longestFreeze = Math.max(longestFreeze, now - lastNewFrameAt);
        lastFrames = v.frames;
        lastNewFrameAt = now;
      }
      if (lowerAt === null && v.width > 0 && v.width < TOP_MIN_WIDTH) lowerAt = now - droppedAt;
      paused ||= v.paused;
      timeline.push(`+${now - droppedAt}ms ${v.width}w f${v.frames} ${v.layer} est ${v.estimate}${v.paused ? ' PAUSED' : ''}`);
      await sleep(100);
    }
    longestFreeze = Math.max(longestFreeze, Date.now() - lastNewFrameAt);
    const after = await watcherView(watcher.page);
    const chromeFreezes = `${after.freezes - before.freezes} freezes, ${((after.freezeSeconds - before.freezeSeconds) * 1000).toFixed(0)} ms`;
    log(`drop to ${DROP_BPS / 1000} kbit/s: longest freeze ${longestFreeze} ms, lower layer after ${lowerAt} ms, paused ${paused}; Chromium counts ${chromeFreezes}`);

    // 3. Freed again.
    const freedAt = Date.now();
    shape(1_000_000_000);
    await waitFor('the top layer to come back', async () => {
      const v = await watcherView(watcher.page);
      return { ok: v.width >= TOP_MIN_WIDTH, detail: v };
    }, 60_000);
    const recovered = Date.now() - freedAt;
    log(`freed: top layer again after ${recovered} ms`);

    const problems = [];
    if (perMinute > 2) problems.push(`${changes} layer changes in ${STEADY_MS / 1000}s of a steady link`);
    if (atTop < 0.95) problems.push(`only ${(atTop * 100).toFixed(1)}% of the steady time at the top layer`);
    if (longestFreeze > MAX_FREEZE_MS) problems.push(`froze for ${longestFreeze} ms after the drop`);
    if (lowerAt === null || lowerAt > LOWER_WITHIN_MS) problems.push(`lower layer after ${lowerAt} ms`);
    if (paused) problems.push('the video was paused although the lowest layer fits');
    if (problems.length) {
      throw new Error(`${problems.join('; ')}\n  after the drop:\n    ${timeline.join('\n    ')}`);
    }
    clearTimeout(watchdog);
    console.log(`DROP PASS: steady ${changes} changes in ${STEADY_MS / 1000}s, ${(atTop * 100).toFixed(1)}% at top; drop: freeze ${longestFreeze} ms, lower layer ${lowerAt} ms, not paused; top layer back ${recovered} ms after freeing (${elapsed()})`);
    return 0;
  } catch (e) {
    console.log(`[drop ${elapsed()}] failure: ${e.stack || e.message}`);
    await saveEvidence(pages, consoleLogs).catch(() => {});
    for (const [name, lines] of consoleLogs) {
      console.log(`----- last console lines of ${name} -----\n${lines.slice(-25).join('\n')}`);
    }
    console.log(`DROP FAIL: ${e.message.split('\n')[0]} (${elapsed()})`);
    return 1;
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
    if (server && server.exitCode === null) server.kill('SIGTERM');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

process.exit(await main());
