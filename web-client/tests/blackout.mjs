// Media blocked past the ICE timeout. Two pages are in a call; the test drops every packet to
// and from the server's media port (UDP and ICE-TCP, iptables inside the test's private
// network namespace) for 12 s, longer than the server's ICE timeout, while signaling stays
// up. The server removes the silent participants; when the path opens again the pages must
// recover by themselves (ICE restart, or joining again) and see each other's video, and once
// they close the server must be left with no rooms and no participants.
//
// Needs root in a private network namespace (run-e2e.sh runs inside scripts/loopback-only)
// and iptables. Prints one final line starting with "BLACKOUT PASS" or "BLACKOUT FAIL".

import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASE, CHROMIUM, CHROMIUM_ARGS, captureConsole, health, httpGet, keepPeerConnections, makeLogger, saveEvidence, sleep, videoOf, waitFor } from './lib.mjs';

const { log } = makeLogger('blackout');
const MEDIA_PORT = (process.env.SWITCHBOARD_RTC_ADDR || '127.0.0.1:50000').split(':').pop();
const BLACKOUT_MS = 12_000;
const RECOVER_MS = 60_000;
const RULES = ['udp', 'tcp'].flatMap((proto) => [
  ['INPUT', '-p', proto, '--dport', MEDIA_PORT, '-j', 'DROP'],
  ['INPUT', '-p', proto, '--sport', MEDIA_PORT, '-j', 'DROP'],
]);

const iptables = (op) => { for (const rule of RULES) execFileSync('iptables', [op, ...rule]); };

/**
 * The server's open file descriptors and threads, less its TURN relay sockets: a TURN
 * allocation a browser did not release lives out its lifetime (600 s) by design.
 */
async function serverResources() {
  const pid = process.env.SWITCHBOARD_SERVER_PID;
  if (!pid) throw new Error('SWITCHBOARD_SERVER_PID is not set');
  const metrics = (await httpGet('/metrics')) ?? '';
  const relays = Number((metrics.match(/^switchboard_turn_allocations (\d+)$/m) || [0, 0])[1]);
  return {
    fds: readdirSync(`/proc/${pid}/fd`).length - relays,
    turnRelays: relays,
    threads: readdirSync(`/proc/${pid}/task`).length,
  };
}

/** Both pages play each other's video now (the position advances). */
async function playing(pages) {
  const other = { X: 'Y', Y: 'X' };
  for (const [name, page] of pages) {
    const a = await videoOf(page, other[name]);
    await sleep(1_200);
    const b = await videoOf(page, other[name]);
    if (!(a && b && b.width > 0 && b.time > a.time + 0.5)) return { ok: false, detail: { name, a, b } };
  }
  return { ok: true };
}

async function main() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchboard-blackout-'));
  const consoleLogs = new Map();
  const pages = new Map();
  let context;
  let blocked = false;
  const baseline = await serverResources();
  try {
    context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    await context.grantPermissions(['camera', 'microphone'], { origin: BASE });
    await context.addInitScript(keepPeerConnections);
    for (const name of ['X', 'Y']) {
      const page = await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, () => '');
      pages.set(name, page);
      await page.goto(`${BASE}/?room=blackout&name=${name}&autojoin=1&simulcast=0`);
    }
    await waitFor('the call to play', () => playing(pages), 30_000);

    iptables('-I');
    blocked = true;
    log(`media port ${MEDIA_PORT} blocked for ${BLACKOUT_MS / 1000}s`);
    await sleep(BLACKOUT_MS);
    iptables('-D');
    blocked = false;
    log('media port open again');

    await waitFor('both pages to recover the call', async () => {
      const h = await health();
      if (h?.participants !== 2) return { ok: false, detail: h };
      return playing(pages);
    }, RECOVER_MS);
    log('the call recovered');

    for (const page of pages.values()) await page.close();
    pages.clear();
    await context.close();
    context = null;
    await waitFor('the server to forget everyone and free what it held', async () => {
      const h = await health();
      const now = await serverResources();
      const ok = h?.participants === 0 && h?.rooms === 0 && now.fds <= baseline.fds + 1 && now.threads === baseline.threads;
      return { ok, detail: { health: h, baseline, now } };
    }, 45_000); // ICE-TCP connections the blackout cut are closed after their 20 s idle timeout
    console.log('BLACKOUT PASS: the call recovered after media was blocked past the ICE timeout; nothing left behind');
    return 0;
  } catch (e) {
    console.log(`BLACKOUT FAIL: ${e.message}`);
    await saveEvidence(pages, consoleLogs).catch(() => {});
    return 1;
  } finally {
    if (blocked) { try { iptables('-D'); } catch { /* already gone */ } }
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

process.exit(await main());
