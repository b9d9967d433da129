// Unit tests of the client's pure parts (no browser): `node --test web-client/tests/unit.mjs`.

import test from 'node:test';
import assert from 'node:assert/strict';
import { cameraEncodings, withActiveLayers } from '../simulcast.js';
import { devicePixels, sizeChanged } from '../sizes.js';
import { fitTileWidth, parseTileSize } from '../tiles.js';
import { formatBps, formatLayer, statsRows } from '../stats.js';

test('camera encodings: q/h/f lowest first, every one scaled', () => {
  const e = cameraEncodings(true);
  assert.deepEqual(e.map((x) => [x.rid, x.scaleResolutionDownBy, x.maxBitrate]), [['q', 4, 150_000], ['h', 2, 500_000], ['f', 1, 2_000_000]]);
  assert.deepEqual(cameraEncodings(false), [{ scaleResolutionDownBy: 1 }]);
  e[0].active = false;
  assert.equal(cameraEncodings(true)[0].active, true, 'a fresh copy each time');
});

test('dynacast: only the listed rids stay active; empty list turns all off', () => {
  const enc = cameraEncodings(true);
  let r = withActiveLayers(enc, ['q', 'h']);
  assert.deepEqual(r.encodings.map((e) => e.active), [true, true, false]);
  assert.equal(r.changed, true);
  r = withActiveLayers(r.encodings, ['h', 'q']);
  assert.equal(r.changed, false);
  r = withActiveLayers(r.encodings, []);
  assert.deepEqual(r.encodings.map((e) => e.active), [false, false, false]);
  r = withActiveLayers([{ active: true }], []);
  assert.deepEqual(r, { encodings: [{ active: true }], changed: false }, 'no rid: not simulcast, untouched');
});

test('video sizes: device pixels, zero when not shown, meaningful changes only', () => {
  assert.deepEqual(devicePixels({ width: 320, height: 180 }, 2, true), { width: 640, height: 360 });
  assert.deepEqual(devicePixels({ width: 320, height: 180 }, 1, false), { width: 0, height: 0 });
  assert.deepEqual(devicePixels({ width: 0, height: 180 }, 1, true), { width: 0, height: 0 });
  assert.equal(sizeChanged(null, { width: 0, height: 0 }), true);
  assert.equal(sizeChanged({ width: 640, height: 360 }, { width: 650, height: 366 }), false);
  assert.equal(sizeChanged({ width: 640, height: 360 }, { width: 320, height: 180 }), true);
  assert.equal(sizeChanged({ width: 640, height: 360 }, { width: 0, height: 0 }), true);
  assert.equal(sizeChanged({ width: 0, height: 0 }, { width: 0, height: 0 }), false);
  assert.equal(sizeChanged({ width: 0, height: 0 }, { width: 4, height: 2 }), true);
});

test('tile sizes: parse WxH; the layout fits the box', () => {
  assert.deepEqual(parseTileSize('320x180'), { width: 320, height: 180 });
  assert.equal(parseTileSize('0x180'), null);
  assert.equal(parseTileSize('big'), null);
  assert.equal(parseTileSize(null), null);
  const w = fitTileWidth(['tile', 'tile'], 1256, 560, 12);
  assert.ok(w > 600 && w <= 622, `two tiles side by side: ${w}`);
  const s = fitTileWidth(['screen', 'tile', 'tile'], 1256, 560, 12);
  assert.ok(s > 250 && s < w, `a screen share takes room: ${s}`);
});

test('stats formatting', () => {
  assert.equal(formatBps(2_400_000), '2.40 Mbit/s');
  assert.equal(formatBps(510_000), '510 kbit/s');
  assert.equal(formatBps(undefined), '–');
  assert.equal(formatLayer(null), 'none');
  assert.equal(formatLayer('h'), 'h (½)');
  assert.equal(formatLayer('f', 1), 'f (full), temporal layers 0-1');
  const rows = Object.fromEntries(statsRows({ current_layer: 'q', target_layer: 'f', bitrate_bps: 150_000, paused: false, reason: 'r' }, 1e6, { videoWidth: 320, videoHeight: 180 }));
  assert.equal(rows.Layer, 'q (¼)');
  assert.equal(rows.Decoded, '320×180');
  assert.equal(rows.Estimate, '1.00 Mbit/s');
});

test('chat: payloads are trimmed and capped, only chat payloads are read as chat', async () => {
  const { chatPayload, chatText, MAX_CHAT_CHARS } = await import('../chat.js');
  assert.equal(chatPayload('   '), null);
  assert.deepEqual(chatPayload('  hi  '), { kind: 'chat', text: 'hi' });
  assert.equal(Array.from(chatPayload('é'.repeat(MAX_CHAT_CHARS + 5)).text).length, MAX_CHAT_CHARS);
  assert.equal(chatText({ payload: { kind: 'chat', text: '<b>x</b>' } }), '<b>x</b>');
  assert.equal(chatText({ payload: { kind: 'reaction', text: 'x' } }), null);
  assert.equal(chatText({ payload: 'plain string' }), null);
  assert.equal(chatText({ payload: { kind: 'chat', text: 5 } }), null);
  assert.equal(chatText({}), null);
});

test('hands and reactions: only the fixed reactions, malformed payloads ignored', async () => {
  const { REACTIONS, handPayload, parseSignal, reactionPayload } = await import('../reactions.js');
  assert.deepEqual(handPayload(1), { kind: 'hand', raised: true });
  assert.deepEqual(reactionPayload('👍'), { kind: 'reaction', emoji: '👍' });
  assert.equal(reactionPayload('<img src=x>'), null);
  assert.deepEqual(parseSignal({ payload: { kind: 'hand', raised: false } }), { hand: false });
  assert.deepEqual(parseSignal({ payload: { kind: 'reaction', emoji: REACTIONS[1] } }), { reaction: REACTIONS[1] });
  for (const payload of [{ kind: 'hand', raised: 'yes' }, { kind: 'reaction', emoji: '<b>hi</b>' }, { kind: 'reaction', emoji: '👍'.repeat(2) }, 'hand', null, { kind: 'chat', text: 'x' }]) {
    assert.equal(parseSignal({ payload }), null, JSON.stringify(payload));
  }
});

test('quality: paused video is poor, a limited layer fair, loss and RTT count, hidden is not a fault', async () => {
  const { assessLocal, assessRemote, describe, lossBetween } = await import('../quality.js');
  assert.equal(assessRemote({}).level, 'unknown');
  const fine = { current_layer: 'f', target_layer: 'f', paused: false, reason: 'the best layer' };
  assert.equal(assessRemote({ server: fine, loss: 0, rtt: 0.02 }).level, 'good');
  const paused = assessRemote({ server: fine, paused: 'bandwidth' });
  assert.equal(paused.level, 'poor');
  assert.match(describe(paused), /paused/);
  assert.equal(assessRemote({ server: { ...fine, paused: true, reason: 'paused: the lowest layer does not fit the bandwidth estimate' } }).level, 'poor');
  assert.equal(assessRemote({ server: { ...fine, paused: true, reason: 'hidden by the subscriber' } }).level, 'good');
  assert.equal(assessRemote({ server: fine, paused: 'hidden' }).level, 'good');
  const limited = assessRemote({ server: { current_layer: 'q', target_layer: 'q', paused: false, reason: 'limited by the bandwidth estimate' } });
  assert.equal(limited.level, 'fair');
  assert.match(describe(limited), /bandwidth/);
  assert.equal(assessRemote({ server: { ...fine, current_layer: 'q' } }).level, 'fair', 'below the target while switching');
  assert.equal(assessRemote({ server: fine, loss: 0.05 }).level, 'fair');
  assert.equal(assessRemote({ server: fine, loss: 0.2 }).level, 'poor');
  assert.equal(assessRemote({ server: fine, rtt: 0.6 }).level, 'poor');
  assert.equal(lossBetween({ lost: 10, received: 100 }, { lost: 15, received: 195 }), 0.05);
  assert.equal(lossBetween({ lost: 1, received: 10 }, { lost: 1, received: 10 }), null);
  assert.equal(assessLocal({ connected: false }).level, 'poor');
  assert.equal(assessLocal({ loss: 0, rtt: 0.01 }).level, 'good');
  assert.equal(assessLocal({ loss: 0, rtt: 0.01, limitation: 'bandwidth' }).level, 'fair');
});

test('devices: remembered choices survive bad storage; constraints pick the device', async () => {
  const { constraintsFor, loadPrefs, savePrefs } = await import('../devices.js');
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  assert.deepEqual(loadPrefs(storage), { camera: null, microphone: null, speaker: null, cameraOn: true, micOn: true });
  savePrefs({ camera: 'cam-2', micOn: false }, storage);
  assert.deepEqual(loadPrefs(storage), { camera: 'cam-2', microphone: null, speaker: null, cameraOn: true, micOn: false });
  store.set('switchboard.devices', '{not json');
  assert.equal(loadPrefs(storage).camera, null);
  store.set('switchboard.devices', JSON.stringify({ camera: 5, micOn: 'no', speaker: 'x'.repeat(600) }));
  assert.deepEqual(loadPrefs(storage), { camera: null, microphone: null, speaker: null, cameraOn: true, micOn: true });
  assert.deepEqual(constraintsFor('video', null), { video: { width: 1280, height: 720 } });
  assert.deepEqual(constraintsFor('audio', null), { audio: true });
  assert.deepEqual(constraintsFor('audio', 'mic-1'), { audio: { deviceId: { ideal: 'mic-1' } } });
  assert.deepEqual(constraintsFor('video', 'cam-1', { exact: true }).video.deviceId, { exact: 'cam-1' });
});

test('codecs: the asked codec first, VP9 and AV1 as one scalable encoding, VP8 when the browser cannot', async () => {
  const { cameraCodecPlan, preferredCodecs, readCodecOptions } = await import('../codecs.js');
  const caps = {
    codecs: [
      { mimeType: 'video/VP8' },
      { mimeType: 'video/rtx' },
      { mimeType: 'video/VP9', sdpFmtpLine: 'profile-id=2' },
      { mimeType: 'video/VP9', sdpFmtpLine: 'profile-id=0' },
      { mimeType: 'video/H264', sdpFmtpLine: 'packetization-mode=1' },
      { mimeType: 'video/AV1', sdpFmtpLine: 'level-idx=5;profile=0;tier=0' },
    ],
  };
  const both = { sendCaps: caps, receiveCaps: caps };
  assert.deepEqual(
    preferredCodecs('vp9', caps).map((c) => `${c.mimeType} ${c.sdpFmtpLine || ''}`.trim()),
    ['video/VP9 profile-id=0', 'video/VP9 profile-id=2', 'video/rtx'],
  );
  let plan = cameraCodecPlan({ codec: 'vp9', scalability: null }, both);
  assert.deepEqual([plan.codec, plan.encodings], ['vp9', [{ scalabilityMode: 'L3T3_KEY' }]]);
  plan = cameraCodecPlan({ codec: 'vp9', scalability: 'L3T3' }, both);
  assert.deepEqual(plan.encodings, [{ scalabilityMode: 'L3T3' }]);
  plan = cameraCodecPlan({ codec: 'av1', scalability: 'L3T3' }, both);
  assert.deepEqual([plan.codec, plan.encodings, plan.codecs[0].mimeType], ['av1', [{ scalabilityMode: 'L3T3' }], 'video/AV1']);
  plan = cameraCodecPlan({ codec: 'h264', scalability: null }, both);
  assert.deepEqual([plan.codec, plan.encodings, plan.codecs[0].mimeType], ['h264', null, 'video/H264']);
  const noVp9 = { codecs: caps.codecs.filter((c) => c.mimeType !== 'video/VP9') };
  plan = cameraCodecPlan({ codec: 'vp9', scalability: 'L3T3' }, { sendCaps: noVp9, receiveCaps: caps });
  assert.deepEqual([plan.codec, plan.encodings, plan.codecs[0].mimeType], ['vp8', null, 'video/VP8'], 'fallback');
  plan = cameraCodecPlan({ codec: null, scalability: null }, both);
  assert.deepEqual(plan, { codec: 'vp8', codecs: null, encodings: null }, 'nothing asked: the default');
  const params = new URLSearchParams('codec=VP9&scalability=l3t3_key');
  assert.deepEqual(readCodecOptions(params), { codec: 'vp9', scalability: 'L3T3_KEY' });
  assert.deepEqual(readCodecOptions(new URLSearchParams('codec=av2&scalability=L9T9')), { codec: null, scalability: null });
});
