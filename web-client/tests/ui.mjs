// The client's side of simulcast, tested without relying on the server's: the test plays the
// server for the new messages (an init script injects them into the page's WebSocket).
//
// Pub (camera, simulcast) and Sub (`publish=none`) join one room. Then:
// 1. Sub shows Pub's video and has reported its size (`video_size`); 0x0 while the tile is
//    hidden, its size again once shown.
// 2. `stats` injected into Sub: the tile's "i" button opens a panel with layer, target,
//    estimate, bitrate, reason and the decoded size.
// 3. `video_paused` (bandwidth) injected into Sub: the "Paused (low bandwidth)" overlay shows,
//    and goes on `paused: false`.
// 4. `publisher_layers` injected into Pub: its camera encodings' `active` flags follow
//    (["q"], then [] = all off, then all three).
// 5. Pub shares its screen (fake capture): Pub sends `track_source` for the new mid, Sub shows a
//    separate "Pub's screen" tile; "Stop sharing" removes it; a second share ended by the
//    browser (the track's `ended`) removes it too. Pub's camera stays on Sub throughout.
//
// Env: as e2e.mjs; UI_ROOM (default ui); E2E_SCREENSHOTS=1 keeps screenshots of a passing run.
// Prints one final line starting with "UI PASS" or "UI FAIL".

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BASE, CHROMIUM, CHROMIUM_ARGS, captureConsole, keepPeerConnections, keepWebSockets, makeLogger,
  saveEvidence, screenshots, waitFor,
} from './lib.mjs';
import { statsRows } from '../stats.js';

const ROOM = process.env.UI_ROOM || 'ui';
const KEEP_SCREENSHOTS = process.env.E2E_SCREENSHOTS === '1';
const CONNECT_TIMEOUT_MS = 30_000;
const STEP_TIMEOUT_MS = 10_000;
const TOTAL_TIMEOUT_MS = 120_000;

// Headless Chromium shares a fake screen without asking.
const ARGS = [...CHROMIUM_ARGS, '--auto-select-desktop-capture-source=Entire screen'];

const { elapsed, log } = makeLogger('ui');

const inject = (page, msg) => page.evaluate((m) => window.__e2eInject(m), msg);

/** Pub's camera: its mid and, per rid, `active` as the sender's parameters say. */
function cameraSender(page) {
  return page.evaluate(() => {
    for (const pc of window.__e2ePeerConnections || []) {
      for (const t of pc.getTransceivers()) {
        if (t.sender.track && t.sender.track.kind === 'video' && t.sender.getParameters().encodings.length > 1) {
          const active = Object.fromEntries(t.sender.getParameters().encodings.map((e) => [e.rid, e.active]));
          return { mid: t.mid, active };
        }
      }
    }
    return null;
  });
}

function videoOf(page, selector) {
  return page.evaluate((sel) => {
    const v = document.querySelector(sel);
    return v ? { width: v.videoWidth, height: v.videoHeight, trackId: v.dataset.trackId || null } : null;
  }, selector);
}

async function main() {
  const pages = new Map();
  const consoleLogs = new Map();
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchboard-ui-'));
  let context;
  const watchdog = setTimeout(() => {
    console.log(`UI FAIL: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000}s`);
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);

  try {
    log(`server ${BASE}, chromium ${CHROMIUM}, room ${ROOM}`);
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1280, height: 720 },
    });
    await context.grantPermissions(['camera', 'microphone'], { origin: BASE });
    await context.addInitScript(keepPeerConnections);
    await context.addInitScript(keepWebSockets);
    for (const name of ['Pub', 'Sub']) {
      const page = pages.size === 0 && context.pages()[0] ? context.pages()[0] : await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, elapsed);
      pages.set(name, page);
    }
    const pub = pages.get('Pub');
    const sub = pages.get('Sub');
    await pub.goto(`${BASE}/?room=${ROOM}&name=Pub&autojoin=1`);
    await sub.goto(`${BASE}/?room=${ROOM}&name=Sub&autojoin=1&publish=none`);

    // 1. Sub sees Pub and reports the size it shows it at.
    const cam = await waitFor('Sub to show Pub\'s video', async () => {
      const v = await videoOf(sub, 'video[data-participant="Pub"]');
      return { ok: Boolean(v && v.width > 0 && v.trackId), detail: v };
    }, CONNECT_TIMEOUT_MS);
    const reported = await waitFor('Sub to report the size of Pub\'s video', async () => {
      const sent = await sub.evaluate(() => window.__e2eSent.filter((m) => m.type === 'video_size'));
      const last = sent.filter((m) => m.track_id === cam.trackId).pop();
      return { ok: Boolean(last && last.width > 0 && last.height > 0), detail: sent };
    }, STEP_TIMEOUT_MS);
    log(`Sub shows Pub ${cam.width}x${cam.height} (track ${cam.trackId}); sent video_size ${JSON.stringify(reported.pop())}`);

    // 1b. A hidden tile reports 0x0 (the server may then stop forwarding), and its size again
    // when shown.
    const lastSize = () => sub.evaluate((id) => window.__e2eSent.filter((m) => m.type === 'video_size' && m.track_id === id).pop(), cam.trackId);
    // (A server that answered `unknown_type` to `video_size` is not sent more: skip then.)
    const sizesUnknown = await sub.evaluate(() => window.switchboardStats.unsupported().includes('video_size'));
    if (sizesUnknown) log('the server does not know video_size: hidden-tile reports not checked');
    for (const [display, zero] of sizesUnknown ? [] : [['none', true], ['', false]]) {
      await sub.evaluate((d) => { document.querySelector('video[data-participant="Pub"]').closest('figure').style.display = d; }, display);
      const last = await waitFor(`video_size ${zero ? '0x0 for the hidden tile' : 'non-zero once shown again'}`, async () => {
        const m = await lastSize();
        return { ok: Boolean(m) && (m.width === 0) === zero && (m.height === 0) === zero, detail: m };
      }, STEP_TIMEOUT_MS);
      log(`tile display '${display}': sent video_size ${last.width}x${last.height}`);
    }
    await waitFor('Sub to show Pub\'s video again', async () => {
      const v = await videoOf(sub, 'video[data-participant="Pub"]');
      return { ok: Boolean(v && v.width > 0), detail: v };
    }, STEP_TIMEOUT_MS);

    // 2. Stats panel.
    const pubTile = sub.locator('figure.tile', { has: sub.locator('video[data-participant="Pub"]') });
    const info = pubTile.getByRole('button', { name: 'Video stats for Pub' });
    if (await pubTile.locator('.stats-panel').isVisible()) throw new Error('the stats panel is open before anyone asked');
    await inject(sub, {
      type: 'stats', estimate_bps: 2_400_000,
      subscriptions: [{ participant_id: 'x', track_id: cam.trackId, kind: 'video', current_layer: 'h', target_layer: 'f', paused: false, reason: 'upgrading: estimate held above the next layer', bitrate_bps: 510_000 }],
    });
    await info.click();
    // A server with simulcast sends its own `stats` every 2 s: the panel must show the latest
    // message, injected or not.
    const panel = await waitFor('the stats panel to show the latest stats message', async () => {
      const text = await pubTile.locator('.stats-panel').innerText().catch(() => '');
      const { latest, video } = await sub.evaluate(() => {
        const v = document.querySelector('video[data-participant="Pub"]');
        return { latest: window.switchboardStats.latest, video: { videoWidth: v.videoWidth, videoHeight: v.videoHeight } };
      });
      const entry = latest && latest.subscriptions.find((x) => x.track_id === cam.trackId);
      const want = statsRows(entry, latest && latest.estimate_bps, video).map(([k, v]) => `${k}\n${v}`).join('\n');
      return { ok: Boolean(entry) && text.trim() === want, detail: { text, want } };
    }, STEP_TIMEOUT_MS);
    if ((await info.getAttribute('aria-expanded')) !== 'true') throw new Error('the info button does not say it is expanded');
    log(`stats panel: ${panel.text.replace(/\s+/g, ' ')}`);

    // 3. Paused overlay.
    const overlay = pubTile.getByText('Paused (low bandwidth)');
    await inject(sub, { type: 'video_paused', participant_id: 'x', track_id: cam.trackId, paused: true, reason: 'bandwidth' });
    await waitFor('the paused overlay', async () => ({ ok: await overlay.isVisible(), detail: null }), STEP_TIMEOUT_MS);
    if (KEEP_SCREENSHOTS) await screenshots(new Map([['Sub', sub]]), 'ui-paused-stats');
    await inject(sub, { type: 'video_paused', participant_id: 'x', track_id: cam.trackId, paused: false, reason: 'bandwidth' });
    await waitFor('the paused overlay to go', async () => ({ ok: !(await overlay.isVisible()), detail: null }), STEP_TIMEOUT_MS);
    await info.click();
    log('paused overlay shown and removed; stats panel closed');

    // 4. Dynacast.
    // (A server that declines simulcast leaves one encoding, sent at full size: skip then.)
    const camera = await cameraSender(pub);
    if (!camera) {
      const single = await pub.evaluate(() => window.__e2ePeerConnections.flatMap((pc) => pc.getSenders())
        .filter((x) => x.track && x.track.kind === 'video').map((x) => x.getParameters().encodings));
      log(`the server declined simulcast: dynacast not checked; camera encodings ${JSON.stringify(single)}`);
    }
    for (const active of camera ? [['q'], [], ['q', 'h', 'f']] : []) {
      await inject(pub, { type: 'publisher_layers', mid: camera.mid, active });
      const want = { q: active.includes('q'), h: active.includes('h'), f: active.includes('f') };
      await waitFor(`Pub's encodings to be active ${JSON.stringify(want)}`, async () => {
        const now = await cameraSender(pub);
        return { ok: JSON.stringify(now.active) === JSON.stringify(want), detail: now.active };
      }, STEP_TIMEOUT_MS);
      log(`publisher_layers ${JSON.stringify(active)} -> active ${JSON.stringify(want)}`);
    }

    // 5. Screen share, stopped with the button, then by the browser.
    for (const how of ['button', 'browser']) {
      await pub.getByRole('button', { name: 'Share screen' }).click();
      const screen = await waitFor('Sub to show Pub\'s screen in its own tile', async () => {
        const v = await videoOf(sub, 'video[data-screen-of="Pub"]');
        return { ok: Boolean(v && v.width > 0), detail: v };
      }, CONNECT_TIMEOUT_MS);
      const label = await sub.locator('figure.tile.screen figcaption').innerText();
      if (!label.includes('Pub’s screen')) throw new Error(`the screen tile is labelled ${JSON.stringify(label)}`);
      // Pub announced the screen's mid, unless the server already said it does not know
      // `track_source` (then the client rightly stops sending it).
      const { source, screenMid, unknown } = await pub.evaluate(() => {
        let mid = null;
        for (const pc of window.__e2ePeerConnections) {
          for (const t of pc.getTransceivers()) if (t.sender.track && t.sender.track.label.startsWith('screen')) mid = t.mid;
        }
        return {
          source: window.__e2eSent.filter((m) => m.type === 'track_source'),
          screenMid: mid,
          unknown: window.switchboardStats.unsupported(),
        };
      });
      const announced = source.some((m) => m.mid === screenMid && m.source === 'screen');
      if (!announced && !(unknown.includes('track_source') && source.length > 0)) {
        throw new Error(`Pub did not send track_source for the screen's mid ${screenMid}: ${JSON.stringify(source)}`);
      }
      const still = await videoOf(sub, 'video[data-participant="Pub"]');
      if (!still || still.trackId !== cam.trackId) throw new Error(`Pub's camera tile changed while sharing: ${JSON.stringify(still)}`);
      log(`Sub shows Pub's screen ${screen.width}x${screen.height} labelled "${label.trim()}"; ` +
        (announced ? `Pub sent track_source for mid ${screenMid}` : `Pub did not resend track_source (the server answered unknown_type before)`));
      if (KEEP_SCREENSHOTS) await screenshots(pages, `ui-screen-${how}`);

      if (how === 'button') {
        await pub.getByRole('button', { name: 'Stop sharing' }).click();
      } else {
        await pub.evaluate(() => {
          for (const pc of window.__e2ePeerConnections) {
            for (const s of pc.getSenders()) {
              if (s.track && s.track.label.startsWith('screen')) s.track.dispatchEvent(new Event('ended'));
            }
          }
        });
      }
      await waitFor(`Sub to drop Pub's screen tile (stopped by the ${how})`, async () => {
        const n = await sub.locator('video[data-screen-of="Pub"]').count();
        return { ok: n === 0, detail: n };
      }, STEP_TIMEOUT_MS);
      await waitFor('Pub\'s button to read "Share screen" again', async () => ({
        ok: await pub.getByRole('button', { name: 'Share screen' }).isVisible(), detail: null,
      }), STEP_TIMEOUT_MS);
      log(`screen share stopped by the ${how}; Sub dropped its tile`);
    }
    const after = await videoOf(sub, 'video[data-participant="Pub"]');
    if (!after || after.width === 0) throw new Error(`Pub's camera is gone from Sub after the screen shares: ${JSON.stringify(after)}`);

    clearTimeout(watchdog);
    console.log(`UI PASS: video_size, stats panel, paused overlay, dynacast and screen share work (${elapsed()})`);
    return 0;
  } catch (e) {
    clearTimeout(watchdog);
    console.log(`[ui ${elapsed()}] failure: ${e.stack || e.message}`);
    await saveEvidence(pages, consoleLogs);
    console.log(`UI FAIL: ${e.message.split('\n')[0]} (${elapsed()})`);
    return 1;
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

process.exit(await main());
