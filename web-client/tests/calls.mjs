// Browser test of what people expect of a call (issue 13), in Chromium against a running
// server: pre-join, speaker view, pin, hands and reactions, quality badges, device switching,
// the invite link, the phone layout, and the README's screenshots.
//
// Three pages in room `calls`, one Chromium with three fake cameras (`device-count=2`) and a
// continuous tone as every fake microphone (Chromium's default beeps too briefly to count as
// speech, see lib.mjs):
// - Ann joins through the pre-join screen (no autojoin): her camera preview must play and the
//   level meter move; she turns the microphone off there (the meter drops), joins, and her
//   name is remembered; in the call nothing of her microphone is sent until she turns it on.
// - Bob autojoins with camera and microphone, and mutes at once.
// - Cat autojoins to watch (`publish=none`) and switches to the speaker view.
// Then:
// 1. Speaker view follows the speaker: Cat's stage shows whoever alone has an unmuted
//    microphone: Bob, then Ann (who turns hers on in the call), then Bob again after Ann
//    mutes with Ctrl+D.
// 2. Pin: Cat pins Ann (her tile's pin button). The stage goes back to Ann though Bob speaks,
//    Cat sends `pin`, and the server's `stats` to Cat say Ann is pinned and target a higher
//    layer for Ann (large, on the stage) than for Bob (in the strip). Unpinning sends
//    `pin` with null.
// 3. Ann raises her hand and sends a reaction: both show on Ann's tile on Cat's page.
// 4. Quality: Cat's badge for Bob is measured (not "unknown"); a `video_paused` (bandwidth)
//    from the server (injected) turns it "poor", saying the video is paused; resuming
//    clears that. Ann's own badge is measured too.
// 5. Devices: Ann picks another camera and microphone in the Devices panel: the senders carry
//    the new tracks without a new offer, and Cat keeps decoding Ann's video; and another
//    speaker: her <audio> elements play on it (setSinkId).
// 6. Ann copies the invite link (clipboard).
// 7. Screenshots of Cat's page: the grid, and the speaker view with the chat open
//    (E2E_UPDATE_SCREENSHOTS=1 writes them to docs/screenshots/ for the README).
// 8. Cat's page at 390x844 (a phone): nothing wider than the screen, every control on
//    screen and usable (the chat opens over the tiles and closes).
//
// Env: as e2e.mjs (SWITCHBOARD_URL, CHROMIUM_PATH); CALLS_ROOM (default calls).
// Prints one final line starting with "CALLS PASS" or "CALLS FAIL"; exits non-zero on failure.

import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BASE, captureConsole, CHROMIUM, CHROMIUM_ARGS, expectDecoding, keepPeerConnections, keepWebSockets, makeLogger, RESULTS, saveEvidence, setMic, sleep, toneWav, waitFor,
} from './lib.mjs';

const ROOM = process.env.CALLS_ROOM || 'calls';
const CONNECT_TIMEOUT_MS = 30_000;
const STEP_TIMEOUT_MS = 15_000;
const DECODING = { connectMs: CONNECT_TIMEOUT_MS, stepMs: STEP_TIMEOUT_MS, more: 10 };
const LAYER_TIMEOUT_MS = 30_000;
const TOTAL_TIMEOUT_MS = 180_000;
const SCREENSHOT_DIR = process.env.E2E_UPDATE_SCREENSHOTS === '1'
  ? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'screenshots')
  : RESULTS;

const { elapsed, log } = makeLogger('calls');
const inject = (page, msg) => page.evaluate((m) => window.__e2eInject(m), msg);
const RANK = { q: 1, h: 2, f: 3 };


/** Whose tile is on the stage of `page`'s speaker view (its participant name, or null). */
function stageOf(page) {
  return page.evaluate(() => {
    const t = document.querySelector('#grid.speaker-view figure.tile.stage');
    if (!t) return null;
    if (t.classList.contains('local')) return 'self';
    return t.querySelector('video')?.getAttribute('data-participant') ?? null;
  });
}

async function expectStage(page, name, why) {
  await waitFor(`the stage to show ${name} (${why})`, async () => {
    const now = await stageOf(page);
    return { ok: now === name, detail: now };
  }, STEP_TIMEOUT_MS);
  log(`stage shows ${name} (${why})`);
}

/** Cat's latest server view of `name`'s video: {target, current, pinned}. */
function serverView(page, name) {
  return page.evaluate((n) => {
    const v = document.querySelector(`video[data-participant="${n}"]`);
    const id = v && v.dataset.trackId;
    const latest = window.switchboardStats && window.switchboardStats.latest;
    const sub = latest && (latest.subscriptions || []).find((s) => s.track_id === id);
    return sub ? { target: sub.target_layer, current: sub.current_layer, pinned: sub.pinned, reason: sub.reason, at: latest.received_at } : null;
  }, name);
}

/** The track ids Ann's page sends, by kind. */
function sentTracks(page) {
  return page.evaluate(() => {
    const out = {};
    for (const pc of window.__e2ePeerConnections || []) {
      for (const s of pc.getSenders()) if (s.track && s.track.readyState === 'live') out[s.track.kind] = { id: s.track.id, label: s.track.label };
    }
    return out;
  });
}

const offersSent = (page) => page.evaluate(() => window.__e2eSent.filter((m) => m.type === 'offer').length);


async function main() {
  const pages = new Map();
  const consoleLogs = new Map();
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-calls-'));
  const wav = join(dir, 'tone.wav');
  writeFileSync(wav, toneWav(3));
  let browser;
  const watchdog = setTimeout(() => {
    console.log(`CALLS FAIL: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000}s`);
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  try {
    log(`server ${BASE}, room ${ROOM}`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        ...CHROMIUM_ARGS.filter((a) => a !== '--use-fake-device-for-media-stream'),
        // Chromium's second fake camera is a depth camera (16-bit grey), which the encoder
        // does not take; the third sends MJPEG, as a USB webcam would.
        '--use-fake-device-for-media-stream=device-count=3',
        `--use-file-for-fake-audio-capture=${wav}`,
      ],
    });
    // One context per participant: each has its own localStorage (remembered devices, name).
    const open = async (name, viewport = { width: 1280, height: 720 }) => {
      const context = await browser.newContext({ viewport });
      await context.grantPermissions(['camera', 'microphone', 'clipboard-read', 'clipboard-write'], { origin: BASE });
      await context.addInitScript(keepPeerConnections);
      await context.addInitScript(keepWebSockets);
      const page = await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, elapsed);
      pages.set(name, page);
      return page;
    };
    const ann = await open('Ann');
    const bob = await open('Bob');
    const cat = await open('Cat');

    // Pre-join: the preview plays and the meter moves before joining.
    await ann.goto(`${BASE}/?room=${ROOM}`);
    await waitFor('the pre-join preview to play', async () => {
      const v = await ann.$eval('#preview-video', (e) => ({ w: e.videoWidth, t: e.currentTime, visible: e.getBoundingClientRect().width > 0 }));
      return { ok: v.w > 0 && v.t > 0.5 && v.visible, detail: v };
    }, STEP_TIMEOUT_MS);
    await waitFor('the pre-join level meter to move', async () => {
      const level = Number(await ann.getAttribute('#mic-level', 'data-level'));
      return { ok: level > 0.05, detail: level };
    }, STEP_TIMEOUT_MS);
    const cameras = await ann.$$eval('#prejoin-camera option', (os) => os.map((o) => o.textContent));
    if (cameras.length < 3) throw new Error(`the pre-join camera picker lists ${JSON.stringify(cameras)}, expected three fake cameras`);
    log(`pre-join: preview plays, meter moves, cameras ${JSON.stringify(cameras)}`);
    // She joins with her microphone off: the meter drops, and nothing is sent until she
    // turns it on in the call.
    await ann.getByRole('button', { name: 'Turn microphone off' }).click();
    await waitFor('the meter to drop with the microphone off', async () => {
      const level = Number(await ann.getAttribute('#mic-level', 'data-level'));
      return { ok: level === 0, detail: level };
    }, STEP_TIMEOUT_MS);
    await ann.fill('#name', 'Ann');
    await ann.click('#join-button');
    await waitFor('Ann to be in the call with her microphone off', async () => {
      const label = await ann.locator('#mic-button .control-label').textContent();
      const sent = await sentTracks(ann);
      return { ok: label === 'Unmute' && Boolean(sent.video) && !sent.audio, detail: { label, sent } };
    }, CONNECT_TIMEOUT_MS);
    await bob.goto(`${BASE}/?room=${ROOM}&name=Bob&autojoin=1`);
    await setMic(bob, true, CONNECT_TIMEOUT_MS);
    await cat.goto(`${BASE}/?room=${ROOM}&name=Cat&autojoin=1&publish=none`);
    if ((await ann.evaluate(() => localStorage.getItem('switchboard.name'))) !== 'Ann') throw new Error('the name was not remembered');
    for (const [page, from] of [[cat, 'Ann'], [cat, 'Bob'], [ann, 'Bob'], [bob, 'Ann']]) await expectDecoding(page, from, 'call', DECODING);
    log('everyone sees everyone');

    // 1. Speaker view follows the speaker. Nobody speaks yet: the stage shows the first
    //    tile, Ann's; Bob unmutes (the only sound); then Bob mutes and Ann turns her
    //    microphone on (it opens and is published now); then Ann mutes with Ctrl+D and Bob
    //    unmutes.
    await cat.getByRole('button', { name: 'Speaker view' }).click();
    await setMic(bob, false, CONNECT_TIMEOUT_MS);
    await expectStage(cat, 'Bob', 'Bob speaks, Ann has no microphone');
    await setMic(bob, true, CONNECT_TIMEOUT_MS);
    await ann.locator('#mic-button').click();
    await waitFor('Ann to send her microphone', async () => {
      const sent = await sentTracks(ann);
      return { ok: Boolean(sent.audio), detail: sent };
    }, STEP_TIMEOUT_MS);
    await expectStage(cat, 'Ann', 'Ann speaks, Bob muted');
    await ann.locator('body').press('Control+d');
    await waitFor('Ctrl+D to mute Ann', async () => ({ ok: (await ann.getAttribute('#mic-button', 'aria-pressed')) === 'true', detail: null }), STEP_TIMEOUT_MS);
    await setMic(bob, false, CONNECT_TIMEOUT_MS);
    await expectStage(cat, 'Bob', 'Ann muted with Ctrl+D, Bob unmuted');

    // 2. Pin: Ann back on the stage, and served first by the server.
    const annTile = cat.locator('figure.tile', { has: cat.locator('video[data-participant="Ann"]') });
    await annTile.getByRole('button', { name: 'Pin Ann' }).click();
    await expectStage(cat, 'Ann', 'pinned, though Bob speaks');
    const annId = await annTile.getAttribute('data-participant-id');
    const pinSent = await cat.evaluate(() => window.__e2eSent.filter((m) => m.type === 'pin').map((m) => m.participant_id));
    if (pinSent.at(-1) !== annId) throw new Error(`Cat sent pins ${JSON.stringify(pinSent)}, expected Ann's id ${annId} last`);
    const layers = await waitFor('the server to pin Ann and send her a higher layer than Bob', async () => {
      const a = await serverView(cat, 'Ann');
      const b = await serverView(cat, 'Bob');
      const ok = Boolean(a && b && a.pinned === true && b.pinned === false && (RANK[a.target] || 0) > (RANK[b.target] || 0));
      return { ok, detail: { Ann: a, Bob: b } };
    }, LAYER_TIMEOUT_MS);
    log(`server: ${JSON.stringify(layers)}`);
    await annTile.getByRole('button', { name: 'Unpin Ann' }).click();
    await waitFor('Cat to send an unpin', async () => {
      const last = await cat.evaluate(() => window.__e2eSent.filter((m) => m.type === 'pin').at(-1));
      return { ok: last && last.participant_id === null, detail: last };
    }, STEP_TIMEOUT_MS);
    await waitFor('the server to unpin Ann', async () => {
      const a = await serverView(cat, 'Ann');
      return { ok: a && a.pinned === false, detail: a };
    }, STEP_TIMEOUT_MS);
    log('unpinned');

    // 3. Hand and reaction on Ann's tile at Cat.
    await ann.getByRole('button', { name: 'Raise hand' }).click();
    await waitFor('Cat to show Ann\'s raised hand', async () => ({ ok: await annTile.locator('.hand').isVisible(), detail: null }), STEP_TIMEOUT_MS);
    await ann.getByRole('button', { name: 'Send a reaction' }).click();
    await ann.getByRole('button', { name: 'React 🎉' }).click();
    await waitFor('Cat to show Ann\'s reaction', async () => {
      const shown = await annTile.locator('.reaction').allTextContents();
      return { ok: shown.includes('🎉'), detail: shown };
    }, STEP_TIMEOUT_MS);
    await ann.getByRole('button', { name: 'Lower hand' }).click();
    await waitFor('Cat to show Ann\'s hand lowered', async () => ({ ok: !(await annTile.locator('.hand').isVisible()), detail: null }), STEP_TIMEOUT_MS);
    log('hand raised, reaction shown, hand lowered');

    // 4. Quality badges.
    const bobTile = cat.locator('figure.tile', { has: cat.locator('video[data-participant="Bob"]') });
    const badge = (tile) => tile.locator('.quality').evaluate((b) => ({ level: b.dataset.level, label: b.getAttribute('aria-label') }));
    const measured = await waitFor('Cat\'s badge for Bob to be measured', async () => {
      const q = await badge(bobTile);
      return { ok: q.level === 'good' || q.level === 'fair', detail: q };
    }, STEP_TIMEOUT_MS);
    const bobVideo = await cat.$eval('video[data-participant="Bob"]', (v) => v.dataset.trackId);
    const bobId = await bobTile.getAttribute('data-participant-id');
    await inject(cat, { type: 'video_paused', participant_id: bobId, track_id: bobVideo, paused: true, reason: 'bandwidth' });
    const degraded = await waitFor('Cat\'s badge for Bob to turn poor', async () => {
      const q = await badge(bobTile);
      return { ok: q.level === 'poor' && /paused/.test(q.label), detail: q };
    }, STEP_TIMEOUT_MS);
    await inject(cat, { type: 'video_paused', participant_id: bobId, track_id: bobVideo, paused: false });
    await waitFor('Cat\'s badge for Bob to recover', async () => {
      const q = await badge(bobTile);
      return { ok: q.level !== 'poor', detail: q };
    }, STEP_TIMEOUT_MS);
    const own = await waitFor('Ann\'s own badge to be measured', async () => {
      const q = await badge(ann.locator('figure.tile.local'));
      return { ok: q.level !== 'unknown', detail: q };
    }, STEP_TIMEOUT_MS);
    log(`quality: Bob ${JSON.stringify(measured)} -> ${JSON.stringify(degraded)}; Ann herself ${JSON.stringify(own)}`);

    // 5. Devices: another camera and microphone, without renegotiating.
    const before = await sentTracks(ann);
    const offers = await offersSent(ann);
    await ann.getByRole('button', { name: 'Devices' }).click();
    const camSelect = ann.locator('#settings-camera');
    await waitFor('the camera picker to list two cameras', async () => {
      const n = await camSelect.locator('option').count();
      return { ok: n >= 2, detail: n };
    }, STEP_TIMEOUT_MS);
    const [other, otherLabel] = await camSelect.evaluate((s) => {
      const o = [...s.options].find((x) => x.textContent === 'fake_device_2');
      return o ? [o.value, o.textContent] : [null, [...s.options].map((x) => x.textContent).join(', ')];
    });
    if (!other) throw new Error(`no fake_device_2 among the cameras: ${otherLabel}`);
    await camSelect.selectOption(other);
    const micSelect = ann.locator('#settings-microphone');
    const otherMic = await micSelect.evaluate((s) => ([...s.options].find((o) => o.value !== s.value) || s.options[0]).value);
    await micSelect.selectOption(otherMic);
    const after = await waitFor('Ann to send the new camera and microphone', async () => {
      const now = await sentTracks(ann);
      const ok = now.video && now.audio && now.video.id !== before.video.id && now.video.label === otherLabel && now.audio.id !== before.audio.id;
      return { ok, detail: { before, now, otherLabel } };
    }, STEP_TIMEOUT_MS);
    await expectDecoding(cat, 'Ann', 'after the camera switch', DECODING);
    const stored = await ann.evaluate(() => JSON.parse(localStorage.getItem('switchboard.devices')));
    if (stored.camera !== other) throw new Error(`the camera choice was not remembered: ${JSON.stringify(stored)}`);
    if ((await offersSent(ann)) !== offers) throw new Error('switching devices renegotiated');
    log(`devices switched without renegotiating: ${JSON.stringify(after.now)}`);
    // The speaker: every remote <audio> plays on the chosen output (setSinkId).
    const speakers = await ann.locator('#settings-speaker option').evaluateAll((os) => os.map((o) => [o.value, o.textContent]));
    if (!speakers.length) throw new Error('the speaker picker lists no outputs');
    const [sink, sinkLabel] = speakers.at(-1);
    await ann.locator('#settings-speaker').selectOption(sink);
    await waitFor(`Ann's sound to play on ${sinkLabel}`, async () => {
      const sinks = await ann.$$eval('figure.tile audio', (as) => as.map((a) => a.sinkId));
      return { ok: sinks.length === 2 && sinks.every((id) => id === sink), detail: sinks };
    }, STEP_TIMEOUT_MS);
    log(`speaker: ${sinkLabel} (of ${speakers.length})`);
    await ann.getByRole('button', { name: 'Close settings' }).click();

    // 6. Invite link.
    await ann.getByRole('button', { name: 'Copy invite link' }).click();
    const link = await waitFor('the invite link on the clipboard', async () => {
      const text = await ann.evaluate(() => navigator.clipboard.readText()).catch((e) => `(${e.message})`);
      return { ok: text === `${BASE}/?room=${ROOM}`, detail: text };
    }, STEP_TIMEOUT_MS);
    log(`invite link ${link}`);

    // 7. Screenshots: the grid, and the speaker view with chat.
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await ann.locator('#chat-button').click();
    await ann.locator('#chat-input').fill('Slides are in the doc, page 3');
    await ann.locator('.chat-send').click();
    await cat.getByRole('button', { name: 'Grid view' }).click();
    await sleep(1500); // tiles settle at their new size
    await cat.screenshot({ path: join(SCREENSHOT_DIR, 'grid.png') });
    await cat.getByRole('button', { name: 'Speaker view' }).click();
    await cat.locator('#chat-button').click();
    await waitFor('Cat to show Ann\'s chat message', async () => ({ ok: (await cat.locator('.chat-message').count()) === 1, detail: null }), STEP_TIMEOUT_MS);
    await sleep(1500);
    await cat.screenshot({ path: join(SCREENSHOT_DIR, 'speaker-chat.png') });
    log(`screenshots in ${SCREENSHOT_DIR}`);

    // 8. A phone.
    await cat.getByRole('button', { name: 'Close chat' }).click();
    await cat.setViewportSize({ width: 390, height: 844 });
    await sleep(500);
    const phone = await cat.evaluate(() => {
      const off = [];
      for (const b of document.querySelectorAll('.controls button, .topbar button')) {
        const r = b.getBoundingClientRect();
        if (b.hidden || r.width === 0) continue;
        if (r.left < 0 || r.right > 390 || r.top < 0 || r.bottom > 844 || r.width < 32 || r.height < 32) off.push(`${b.id || b.className} ${JSON.stringify(r)}`);
        if (!b.getAttribute('aria-label') && !b.textContent.trim()) off.push(`${b.id}: no accessible name`);
      }
      const tiles = [...document.querySelectorAll('figure.tile')].map((t) => t.getBoundingClientRect()).filter((r) => r.width > 0);
      return {
        scrollWidth: document.documentElement.scrollWidth,
        off,
        tiles: tiles.map((r) => `${Math.round(r.width)}x${Math.round(r.height)}`),
        stage: document.querySelector('figure.tile.stage')?.getBoundingClientRect().width ?? 0,
      };
    });
    if (phone.scrollWidth > 390 || phone.off.length || phone.tiles.length < 3 || phone.stage < 300) {
      throw new Error(`the phone layout is not usable: ${JSON.stringify(phone)}`);
    }
    await cat.locator('#chat-button').click();
    const panel = await cat.locator('#chat-panel').boundingBox();
    if (!panel || panel.width < 380 || !(await cat.locator('#chat-input').isVisible())) throw new Error(`the chat on a phone: ${JSON.stringify(panel)}`);
    await cat.getByRole('button', { name: 'Close chat' }).click();
    await cat.screenshot({ path: join(RESULTS, 'calls-phone.png') });
    log(`phone: ${JSON.stringify(phone)}`);

    clearTimeout(watchdog);
    console.log(`CALLS PASS: pre-join, speaker view, pin (server layers), hand and reaction, quality badges, device switch, invite link, phone layout (${elapsed()})`);
    return 0;
  } catch (e) {
    clearTimeout(watchdog);
    console.log(`[calls ${elapsed()}] failure: ${e.stack || e.message}`);
    await saveEvidence(pages, consoleLogs);
    console.log(`CALLS FAIL: ${e.message.split('\n')[0]} (${elapsed()})`);
    return 1;
  } finally {
    if (browser) await browser.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

process.exit(await main());
