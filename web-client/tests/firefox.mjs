// The web client in Firefox, against a running server: Debian's firefox-esr driven over
// WebDriver BiDi by puppeteer-core (Playwright drives only its own patched Firefox), in a call
// with a Chromium page (Playwright).
//
// 1. Basic call: Fox (Firefox) and Crow (Chromium) autojoin one room with camera and
//    microphone; each decodes the other's video (getStats framesDecoded growing: in Firefox a
//    MediaStream <video>'s currentTime advances even without frames).
//    Fox raises a hand before Crow joins: Crow, arriving later, sees it.
// 2. Chat both ways, as text: Fox's `<img src=x onerror=...>` shows as text on Crow.
// 3. Device switch in Firefox: Fox reopens its camera and microphone through the client's
//    device switch (`replaceTrack`): new tracks on the same senders, no new offer, and Crow
//    keeps decoding Fox's video. (Firefox's fake media offers one camera; switching to it
//    again still replaces the track, which is what the call must survive.)
//
// Firefox needs prefs for fake media, permissions and loopback ICE (see
// /work/shared/FIELD-NOTES.md, "Firefox in tests"): without the permission prefs it gathers no
// ICE candidates in a namespace with only `lo`. One Firefox process per participant: a
// background tab is hidden and its video rightly paused.
//
// Env: as e2e.mjs; FIREFOX_PATH (default /usr/bin/firefox-esr); FX_ROOM (default fx).
// Prints one final line starting with "FIREFOX PASS" or "FIREFOX FAIL".

import puppeteer from 'puppeteer-core';
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BASE, CHROMIUM, CHROMIUM_ARGS, FIREFOX, FIREFOX_PREFS, expectDecoding, keepPeerConnections, keepWebSockets, makeLogger, RESULTS, rtpSummary, saveConsoleLogs, waitFor,
} from './lib.mjs';

const ROOM = process.env.FX_ROOM || 'fx';
const XSS = '<img src=x onerror="window.__chatXss=1">';
const CONNECT_TIMEOUT_MS = 40_000;
const STEP_TIMEOUT_MS = 15_000;
const logDecoding = (what, name, { first, now }) => log(`${what}: ${name}'s video decoded (${first} -> ${now} frames)`);
const DECODING = { connectMs: CONNECT_TIMEOUT_MS, stepMs: STEP_TIMEOUT_MS, more: 15 };
const TOTAL_TIMEOUT_MS = 150_000;

const { elapsed, log } = makeLogger('firefox');

function sentTracks(page) {
  return page.evaluate(() => {
    const out = {};
    for (const pc of window.__e2ePeerConnections || []) {
      for (const s of pc.getSenders()) if (s.track && s.track.readyState === 'live') out[s.track.kind] = s.track.id;
    }
    return out;
  });
}

function chatShown(page) {
  return page.evaluate(() => [...document.querySelectorAll('.chat-message:not(.own)')].map((i) => ({
    name: i.querySelector('.chat-name').textContent,
    text: i.querySelector('.chat-text').textContent,
  })));
}

async function sendChat(page, text) {
  await page.evaluate((t) => {
    if (document.getElementById('chat-panel').hidden) document.getElementById('chat-button').click();
    document.getElementById('chat-input').value = t;
    document.querySelector('.chat-send').click();
  }, text);
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-firefox-'));
  const logs = new Map([['Fox', []], ['Crow', []]]);
  let firefox;
  let chrome;
  let fox;
  let crow;
  const watchdog = setTimeout(() => {
    console.log(`FIREFOX FAIL: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000}s`);
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  try {
    log(`server ${BASE}, room ${ROOM}, ${FIREFOX}`);
    firefox = await puppeteer.launch({
      browser: 'firefox',
      executablePath: FIREFOX,
      headless: true,
      userDataDir: join(dir, 'firefox-profile'),
      extraPrefsFirefox: FIREFOX_PREFS,
      args: ['--width=1280', '--height=720'],
    });
    fox = (await firefox.pages())[0] || await firefox.newPage();
    await fox.setViewport({ width: 1280, height: 720 });
    await fox.evaluateOnNewDocument(keepPeerConnections);
    await fox.evaluateOnNewDocument(keepWebSockets);
    fox.on('console', (m) => logs.get('Fox').push(`[${elapsed()}] ${m.type()}: ${m.text()}`));
    fox.on('pageerror', (e) => logs.get('Fox').push(`[${elapsed()}] pageerror: ${e.message}`));
    log(`Firefox ${await firefox.version()} up`);

    chrome = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const context = await chrome.newContext({ viewport: { width: 1280, height: 720 } });
    await context.grantPermissions(['camera', 'microphone'], { origin: BASE });
    await context.addInitScript(keepPeerConnections);
    crow = await context.newPage();
    crow.on('console', (m) => logs.get('Crow').push(`[${elapsed()}] ${m.type()}: ${m.text()}`));

    await fox.goto(`${BASE}/?room=${ROOM}&name=Fox&autojoin=1`);
    // Fox raises a hand before Crow arrives: a raised hand is state, so Crow must see it too.
    await waitFor('Fox to join', async () => ({ ok: await fox.evaluate(() => document.body.dataset.view === 'call' && !document.getElementById('hand-button').disabled), detail: null }), CONNECT_TIMEOUT_MS);
    await fox.evaluate(() => document.getElementById('hand-button').click());
    await waitFor('Fox\'s own tile to show the hand', async () => ({ ok: await fox.evaluate(() => !document.querySelector('figure.tile.local .hand').hidden), detail: null }), STEP_TIMEOUT_MS);
    await crow.goto(`${BASE}/?room=${ROOM}&name=Crow&autojoin=1`);

    // 1. Basic call.
    logDecoding('Firefox receives Chromium', 'Crow', await expectDecoding(fox, 'Crow', 'Firefox receives Chromium', DECODING));
    logDecoding('Chromium receives Firefox', 'Fox', await expectDecoding(crow, 'Fox', 'Chromium receives Firefox', DECODING));

    const foxTile = crow.locator('figure.tile', { has: crow.locator('video[data-participant="Fox"]') });
    await waitFor('Crow to show the hand Fox raised before Crow joined', async () => ({ ok: await foxTile.locator('.hand').isVisible(), detail: null }), STEP_TIMEOUT_MS);
    log('Fox\'s hand, raised before Crow joined, shows on Crow');

    // 2. Chat both ways.
    await sendChat(fox, XSS);
    await waitFor('Crow to show Fox\'s message as text', async () => {
      const shown = await chatShown(crow);
      return { ok: shown.length === 1 && shown[0].name === 'Fox' && shown[0].text === XSS, detail: shown };
    }, STEP_TIMEOUT_MS);
    const parsed = await crow.evaluate(() => ({ images: document.querySelectorAll('.chat-list img').length, ran: window.__chatXss === 1 }));
    if (parsed.images || parsed.ran) throw new Error(`Crow parsed Fox's message as HTML: ${JSON.stringify(parsed)}`);
    await sendChat(crow, 'hello from Chromium');
    await waitFor('Fox to show Crow\'s message', async () => {
      const shown = await chatShown(fox);
      return { ok: shown.length === 1 && shown[0].name === 'Crow' && shown[0].text === 'hello from Chromium', detail: shown };
    }, STEP_TIMEOUT_MS);
    log('chat both ways, as text');

    // 3. Device switch in Firefox.
    const before = await sentTracks(fox);
    const offers = await fox.evaluate(() => window.__e2eSent.filter((m) => m.type === 'offer').length);
    const devices = await fox.evaluate(() => window.switchboardDevices.list());
    if (!devices.camera.length || !devices.microphone.length) throw new Error(`Firefox lists no fake devices: ${JSON.stringify(devices)}`);
    for (const [name, list] of [['camera', devices.camera], ['microphone', devices.microphone]]) {
      const ok = await fox.evaluate((n, id) => window.switchboardDevices.switchTo(n, id), name, list[list.length - 1].deviceId);
      if (!ok) throw new Error(`Firefox could not switch its ${name}`);
    }
    const after = await waitFor('Fox to send new tracks', async () => {
      const now = await sentTracks(fox);
      return { ok: now.video && now.audio && now.video !== before.video && now.audio !== before.audio, detail: { before, now } };
    }, STEP_TIMEOUT_MS);
    const offersAfter = await fox.evaluate(() => window.__e2eSent.filter((m) => m.type === 'offer').length);
    if (offersAfter !== offers) throw new Error(`switching devices in Firefox renegotiated (${offers} -> ${offersAfter} offers)`);
    log(`Firefox switched camera and microphone without renegotiating: ${JSON.stringify(after)} (devices ${JSON.stringify(devices)})`);
    logDecoding('after Firefox\'s device switch', 'Fox', await expectDecoding(crow, 'Fox', 'after Firefox\'s device switch', DECODING));

    clearTimeout(watchdog);
    saveConsoleLogs(logs);
    console.log(`FIREFOX PASS: Firefox and Chromium in one call, chat both ways, device switch in Firefox (${elapsed()})`);
    return 0;
  } catch (e) {
    clearTimeout(watchdog);
    console.log(`[firefox ${elapsed()}] failure: ${e.stack || e.message}`);
    for (const [name, page] of [['Fox', fox], ['Crow', crow]]) {
      if (!page) continue;
      const summary = await rtpSummary(page);
      console.log(`----- RTP of page ${name} -----\n${summary}`);
      mkdirSync(RESULTS, { recursive: true });
      await page.screenshot({ path: join(RESULTS, `firefox-failure-${name}.png`) }).catch(() => {});
    }
    for (const [name, lines] of logs) {
      console.log(`----- console of page ${name} -----`);
      for (const l of lines) console.log(l);
    }
    saveConsoleLogs(logs);
    console.log(`FIREFOX FAIL: ${e.message.split('\n')[0]} (${elapsed()})`);
    return 1;
  } finally {
    if (firefox) await firefox.close().catch(() => {});
    if (chrome) await chrome.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

process.exit(await main());
