// Browser test of the active-speaker ring and the chat panel against a running server.
//
// Three Chromium pages (A, B, C) join one room, audio only (three 720p publishers would
// saturate this machine, and speaking needs only audio). Their fake microphone plays a
// continuous tone from a WAV file this test writes (Chromium's default fake device beeps only
// 20 ms a second, too short for the server's smoothed level). B mutes at once: on every page
// the ring must settle on exactly A and C. Then A mutes and B unmutes: the ring follows, to
// B and C. Chat: A sends `<img src=x onerror=...>`; B and C show it as text under A's name,
// with an unread badge until the panel is opened, and no image element or script ever runs.
//
// Env: as e2e.mjs (SWITCHBOARD_URL, CHROMIUM_PATH); E2E_ROOM (default speaking-chat).
// Prints one final line starting with "E2E PASS" or "E2E FAIL"; exits non-zero on failure.

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BASE, captureConsole, CHROMIUM, CHROMIUM_ARGS, makeLogger, saveEvidence, setMic, toneWav, waitFor,
} from './lib.mjs';

const ROOM = process.env.E2E_ROOM || 'speaking-chat';
const NAMES = ['A', 'B', 'C'];
const XSS = '<img src=x onerror="window.__chatXss=1">';
const CONNECT_TIMEOUT_MS = 30_000;
const SPEAKER_TIMEOUT_MS = 10_000;
const TOTAL_TIMEOUT_MS = 120_000;

const { elapsed, log } = makeLogger('speaking-chat');

/** The names whose tiles carry the speaking ring on `page` (`self` is the page's own name). */
function ringed(page, self) {
  return page.$$eval('figure.tile.speaking', (tiles, me) => tiles.map((t) => (
    t.classList.contains('local') ? me : t.querySelector('video')?.getAttribute('data-participant')
  )).sort(), self);
}

async function expectRings(pages, expected, why) {
  for (const [name, page] of pages) {
    await waitFor(`${name} to ring exactly ${expected.join(', ')} (${why})`, async () => {
      const now = await ringed(page, name);
      return { ok: JSON.stringify(now) === JSON.stringify(expected), detail: now };
    }, SPEAKER_TIMEOUT_MS);
  }
  log(`every page rings ${expected.join(' and ')} (${why})`);
}


async function main() {
  const pages = new Map();
  const consoleLogs = new Map();
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-speaking-'));
  const wav = join(dir, 'tone.wav');
  writeFileSync(wav, toneWav(3));
  let context;
  const watchdog = setTimeout(() => {
    console.log(`E2E FAIL: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000}s`);
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  try {
    log(`server ${BASE}, room ${ROOM}`);
    context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, `--use-file-for-fake-audio-capture=${wav}`],
      viewport: { width: 1280, height: 720 },
    });
    await context.grantPermissions(['camera', 'microphone'], { origin: BASE });
    for (const name of NAMES) {
      const page = pages.size === 0 && context.pages()[0] ? context.pages()[0] : await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, elapsed);
      pages.set(name, page);
    }
    for (const [name, page] of pages) {
      await page.goto(`${BASE}/?room=${ROOM}&name=${name}&autojoin=1&publish=audio`);
      if (name === 'B') await setMic(page, true, CONNECT_TIMEOUT_MS);
    }
    for (const [name, page] of pages) {
      const others = NAMES.filter((n) => n !== name);
      await waitFor(`${name} to show tiles of ${others.join(', ')}`, async () => {
        const shown = (await page.$$eval('video[data-participant]', (vs) => vs.map((v) => v.getAttribute('data-participant')))).sort();
        return { ok: JSON.stringify(shown) === JSON.stringify(others), detail: shown };
      }, CONNECT_TIMEOUT_MS);
    }

    // 1. The ring is on the unmuted, sounding microphones only; then it follows the mutes.
    await expectRings(pages, ['A', 'C'], 'B muted');
    await setMic(pages.get('A'), true, CONNECT_TIMEOUT_MS);
    await setMic(pages.get('B'), false, CONNECT_TIMEOUT_MS);
    await expectRings(pages, ['B', 'C'], 'A muted, B unmuted');

    // 2. Chat: A's message reaches B and C, as text, under A's name, with an unread badge.
    const a = pages.get('A');
    await a.locator('#chat-button').click();
    await a.locator('#chat-input').fill(XSS);
    await a.locator('.chat-send').click();
    const own = await a.locator('.chat-message.own .chat-text').last().textContent();
    if (own !== XSS) throw new Error(`A's own message shows as ${JSON.stringify(own)}`);
    for (const name of ['B', 'C']) {
      const page = pages.get(name);
      await waitFor(`${name} to show A's message`, async () => {
        const shown = await page.$$eval('.chat-message', (items) => items.map((i) => ({
          name: i.querySelector('.chat-name').textContent,
          text: i.querySelector('.chat-text').textContent,
          time: i.querySelector('time').textContent,
        })));
        const ok = shown.length === 1 && shown[0].name === 'A' && shown[0].text === XSS && shown[0].time.length > 0;
        return { ok, detail: shown };
      }, SPEAKER_TIMEOUT_MS);
      const badge = await page.locator('#chat-button .unread');
      if (!(await badge.isVisible()) || (await badge.textContent()) !== '1') {
        throw new Error(`${name}: the unread badge shows ${JSON.stringify(await badge.textContent())}, visible ${await badge.isVisible()}`);
      }
      const injected = await page.evaluate(() => ({
        images: document.querySelectorAll('.chat-list img').length,
        ran: window.__chatXss === 1,
      }));
      if (injected.images || injected.ran) throw new Error(`${name}: the message was parsed as HTML: ${JSON.stringify(injected)}`);
      log(`${name} shows A's message as text, unread badge 1`);
    }
    const b = pages.get('B');
    await b.locator('#chat-button').click();
    if (await b.locator('#chat-button .unread').isVisible()) throw new Error('B: the unread badge stayed after opening the chat');
    if (!(await b.locator('#chat-panel').isVisible())) throw new Error('B: the chat panel did not open');
    log('B opened the chat: badge cleared');

    clearTimeout(watchdog);
    console.log(`E2E PASS: the speaking ring followed the unmuted microphones (A, C then B, C); chat from A reached B and C as text (${elapsed()})`);
    return 0;
  } catch (e) {
    clearTimeout(watchdog);
    console.log(`[speaking-chat ${elapsed()}] failure: ${e.stack || e.message}`);
    await saveEvidence(pages, consoleLogs);
    console.log(`E2E FAIL: ${e.message.split('\n')[0]} (${elapsed()})`);
    return 1;
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

process.exit(await main());
