// Reconnection in the browser. Two pages join through a TCP proxy in front of the server's
// HTTP port; the test then cuts every proxied connection, as a network drop would (no close
// frames). The pages must reconnect and resume their sessions by themselves: the server keeps
// counting two participants, neither page ever loses the other's tile, and the other's
// video keeps playing throughout.
//
// Prints one final line starting with "RECONNECT PASS" or "RECONNECT FAIL".

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASE, CHROMIUM, CHROMIUM_ARGS, captureConsole, health, keepPeerConnections, makeLogger, saveEvidence, sleep, videoOf, waitFor } from './lib.mjs';

const { log } = makeLogger('reconnect');
const TIMEOUT_MS = 30_000;

/** A TCP proxy to the server's HTTP port whose connections the test can cut. */
function startProxy(target) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}`,
      cut: () => { for (const s of sockets) s.destroy(); },
      close: () => server.close(),
    }));
  });
}

async function main() {
  const proxy = await startProxy(new URL(BASE));
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchboard-reconnect-'));
  const consoleLogs = new Map();
  let context;
  const pages = new Map();
  try {
    // The server is shared with the tests before this one, and a page closed without leaving
    // stays a participant for the resume grace period (30 s): the counts below are this
    // test's only once those are gone.
    const waitedFrom = Date.now();
    await waitFor('the earlier tests\' participants to be gone', async () => {
      const h = await health();
      return { ok: h?.participants === 0, detail: h };
    }, 40_000);
    if (Date.now() - waitedFrom > 1000) log(`waited ${((Date.now() - waitedFrom) / 1000).toFixed(1)} s for the earlier tests' participants to be gone`);
    context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    await context.grantPermissions(['camera', 'microphone'], { origin: proxy.url });
    await context.addInitScript(keepPeerConnections);
    for (const name of ['X', 'Y']) {
      const page = await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, () => '');
      pages.set(name, page);
      await page.goto(`${proxy.url}/?room=reconnect&name=${name}&autojoin=1&simulcast=0`);
    }
    const other = { X: 'Y', Y: 'X' };
    for (const [name, page] of pages) {
      await waitFor(`${name} to play ${other[name]}'s video`, async () => {
        const v = await videoOf(page, other[name]);
        return { ok: Boolean(v && v.width > 0 && v.time > 0.5), detail: v };
      }, TIMEOUT_MS);
    }
    const before = (await health())?.participants;
    if (before !== 2) throw new Error(`expected 2 participants before the cut, the server has ${before}`);

    proxy.cut();
    log('cut every signaling connection');
    const start = new Map();
    for (const [name, page] of pages) start.set(name, await videoOf(page, other[name]));
    // For 6 s: the tiles stay, video keeps playing, the server keeps both sessions.
    for (let i = 0; i < 12; i++) {
      await sleep(500);
      for (const [name, page] of pages) {
        const v = await videoOf(page, other[name]);
        if (!v) throw new Error(`${name} lost ${other[name]}'s tile after the cut`);
      }
      const n = (await health())?.participants;
      if (n !== 2) throw new Error(`the server has ${n} participants after the cut, expected 2`);
    }
    for (const [name, page] of pages) {
      const v = await videoOf(page, other[name]);
      const was = start.get(name);
      if (!(v.time > was.time + 4)) throw new Error(`${name}: ${other[name]}'s video stalled (${was.time} -> ${v.time})`);
      const reconnected = await page.evaluate(() => document.getElementById('status-signaling').querySelector('.value').textContent);
      if (reconnected !== 'connected') throw new Error(`${name}: signaling shows "${reconnected}" 6 s after the cut`);
      log(`${name}: resumed; ${other[name]}'s video played on (${was.time.toFixed(1)}s -> ${v.time.toFixed(1)}s)`);
    }
    console.log('RECONNECT PASS: both pages resumed their sessions after the cut; video never stopped');
    return 0;
  } catch (e) {
    console.log(`RECONNECT FAIL: ${e.message}`);
    await saveEvidence(pages, consoleLogs).catch(() => {});
    return 1;
  } finally {
    if (context) await context.close().catch(() => {});
    proxy.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

process.exit(await main());
