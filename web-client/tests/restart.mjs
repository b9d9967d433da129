// The server restarts mid-call. This test runs its own server (SWITCHBOARD_BIN) so it can stop
// it: two pages are in a call, the server gets SIGTERM and starts again on the same ports, and
// the pages must rejoin by themselves and see each other's video again. Then the server is
// drained (SIGUSR1): it closes the pages' WebSockets with 1012, exits once they are gone, and
// started again, gets both back. Then both pages close and the server must be left with no
// rooms and no participants.
//
// Prints one final line starting with "RESTART PASS" or "RESTART FAIL".

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, captureConsole, health as healthOf, keepPeerConnections, makeLogger, saveEvidence, sleep, videoOf, waitFor } from './lib.mjs';

const { log } = makeLogger('restart');
const BIN = process.env.SWITCHBOARD_BIN;
const HTTP = '127.0.0.1:8093';
const BASE = `http://${HTTP}`;
const TIMEOUT_MS = 45_000;
const health = () => healthOf(BASE);

function startServer() {
  const child = spawn(BIN, ['serve', '--http-addr', HTTP, '--rtc-addr', '127.0.0.1:50093', '--no-turn'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  return child;
}

async function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return; // already gone
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

async function inCall(pages) {
  const other = { P: 'Q', Q: 'P' };
  for (const [name, page] of pages) {
    await waitFor(`${name} to play ${other[name]}'s video`, async () => {
      const v = await videoOf(page, other[name]);
      return { ok: Boolean(v && v.width > 0 && v.time > 0.5), detail: v };
    }, TIMEOUT_MS);
  }
}

async function main() {
  if (!BIN) {
    console.log('RESTART FAIL: SWITCHBOARD_BIN is not set');
    return 1;
  }
  let server = startServer();
  await waitFor('the server to answer', async () => ({ ok: Boolean(await health()) }), 20_000);
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchboard-restart-'));
  const consoleLogs = new Map();
  const pages = new Map();
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    await context.grantPermissions(['camera', 'microphone'], { origin: BASE });
    await context.addInitScript(keepPeerConnections);
    for (const name of ['P', 'Q']) {
      const page = await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, () => '');
      pages.set(name, page);
      await page.goto(`${BASE}/?room=restart&name=${name}&autojoin=1&simulcast=0`);
    }
    await inCall(pages);
    log('in a call; restarting the server');

    await stopServer(server);
    await sleep(1_000);
    server = startServer();
    await waitFor('both pages to rejoin the restarted server', async () => {
      const h = await health();
      return { ok: Boolean(h && h.participants === 2 && h.rooms === 1), detail: h };
    }, TIMEOUT_MS);
    await inCall(pages);
    // Playing now, not a frozen frame from before the restart.
    const other = { P: 'Q', Q: 'P' };
    const before = new Map();
    for (const [name, page] of pages) before.set(name, await videoOf(page, other[name]));
    await sleep(2_000);
    for (const [name, page] of pages) {
      const v = await videoOf(page, other[name]);
      if (!(v && v.time > before.get(name).time + 1)) throw new Error(`${name}: ${other[name]}'s video is not playing after the restart`);
    }
    log('both pages rejoined by themselves and play each other\'s video');

    // A drain (SIGUSR1): the pages are closed with 1012 and leave, so the server is empty and
    // exits by itself, long before its 60 s deadline; started again, it gets both back.
    const exited = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })));
    const drainedAt = Date.now();
    server.kill('SIGUSR1');
    const exit = await Promise.race([exited, sleep(20_000).then(() => null)]);
    if (!exit) throw new Error('the drained server did not exit within 20 s');
    if (exit.code !== 0) throw new Error(`the drained server exited with ${JSON.stringify(exit)}`);
    log(`drained: the server exited by itself after ${Date.now() - drainedAt} ms`);
    server = startServer();
    await waitFor('both pages to rejoin after the drain', async () => {
      const h = await health();
      return { ok: Boolean(h && h.participants === 2 && h.rooms === 1), detail: h };
    }, TIMEOUT_MS);
    await inCall(pages);
    log('both pages rejoined after the drain');

    for (const page of pages.values()) await page.close();
    pages.clear();
    await waitFor('the server to forget everyone', async () => {
      const after = await health();
      return { ok: after && after.participants === 0 && after.rooms === 0, detail: after };
    }, 10_000);
    console.log('RESTART PASS: the pages rejoined after a server restart and after a drain; nothing left behind when they closed');
    return 0;
  } catch (e) {
    console.log(`RESTART FAIL: ${e.message}`);
    await saveEvidence(pages, consoleLogs).catch(() => {});
    return 1;
  } finally {
    if (context) await context.close().catch(() => {});
    await stopServer(server).catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

process.exit(await main());
