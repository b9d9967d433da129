// RED for audio (RFC 2198, `audio/red` over Opus), with real Chromium on both ends.
//
// A Chromium publisher sends a continuous tone as RED (Chromium offers `red/48000/2` and sends
// it when the answer lists it before Opus, as the server's does). Two watch-only pages receive
// it: `Red` negotiates RED as Chromium does by default; `Plain` takes RED out of its codec
// preferences (setCodecPreferences on every audio transceiver), so the server must send it the
// primary block alone, as plain Opus. Both must decode audio (totalSamplesReceived grows, with
// little concealment on a clean link), and both must show the publisher speaking (the audio
// level rides the RTP header, RED or not). Chromium's stats name the codec `audio/opus` for
// RED too (the codec decoded), so what tells the two apart is the payload: `Red` receives the
// redundant copy of the previous frame in each packet, about twice the bytes per packet of
// `Plain` (which gets the primary block alone), and the publisher sends as many as `Red`.
//
// With RED_LOSS (a fraction, e.g. 0.08) the watchers' downlink then loses that share of UDP
// datagrams at random (iptables' `statistic` match in the watchers' namespace, on arrival:
// this kernel has no netem) for
// RED_MEASURE_MS (default 30000), and the test reports each watcher's
// concealedSamples / totalSamplesReceived over that window: the benefit of RED (QUALITY.md,
// "RED"). It fails if the RED watcher conceals more than the plain one.
//
// The watchers' browser runs in a namespace of its own (chromium-in-netns.sh), behind the veth
// pair the loss is applied to; the publisher in the test's. The test runs its own server
// (SWITCHBOARD_BIN) on the pair's address. Prints one final line starting with "RED PASS" or
// "RED FAIL". Env: SWITCHBOARD_BIN, CHROMIUM_PATH, RED_LOSS (default 0), RED_MEASURE_MS.

import { chromium } from 'playwright-core';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CHROMIUM, CHROMIUM_ARGS, captureConsole, gotoAcrossNetworkChange, health, keepPeerConnections, makeLogger, saveEvidence, sleep, toneWav, waitFor,
} from './lib.mjs';

const { elapsed, log } = makeLogger('red');
const BIN = process.env.SWITCHBOARD_BIN;
const HERE = dirname(fileURLToPath(import.meta.url));
const LINK = 'sbshape0';
const HTTP = '10.77.0.1:8097';
const BASE = `http://${HTTP}`;
const ROOM = 'red';
const LOSS = Number(process.env.RED_LOSS || 0);
const MEASURE_MS = Number(process.env.RED_MEASURE_MS || (LOSS > 0 ? 30_000 : 10_000));
const SETTLE_MS = 5_000;
// On a clean link a watcher conceals almost nothing once playing; Chromium's jitter buffer
// still stretches a little now and then.
const MAX_CLEAN_CONCEALED = 0.03;
const TOTAL_TIMEOUT_MS = 150_000 + MEASURE_MS;
// Dropped on the watchers' side of the link, as they arrive: a DROP in the sender's OUTPUT chain
// fails its sendmmsg with EPERM, and the server's batched send tries the datagram again.
const LOSS_RULE = ['INPUT', '-i', 'sbshape1', '-p', 'udp', '-m', 'statistic', '--mode', 'random', '--probability', String(LOSS), '-j', 'DROP'];

/** An init script for the page that must not negotiate RED: RED leaves every audio transceiver's codec preferences. */
function withoutRed() {
  if (!new URLSearchParams(location.search).has('nored')) return;
  const noRed = (transceiver) => {
    if (transceiver.receiver.track.kind !== 'audio') return;
    const codecs = RTCRtpReceiver.getCapabilities('audio').codecs
      .filter((c) => c.mimeType.toLowerCase() !== 'audio/red');
    transceiver.setCodecPreferences(codecs);
  };
  const proto = window.RTCPeerConnection.prototype;
  const addTransceiver = proto.addTransceiver;
  proto.addTransceiver = function (...args) {
    const transceiver = addTransceiver.apply(this, args);
    noRed(transceiver);
    return transceiver;
  };
  const setRemoteDescription = proto.setRemoteDescription;
  proto.setRemoteDescription = async function (...args) {
    const result = await setRemoteDescription.apply(this, args);
    this.getTransceivers().forEach(noRed);
    return result;
  };
}

/** The page's received audio: codec, samples and concealment, summed over its audio streams. */
function audioIn(page) {
  return page.evaluate(async () => {
    const out = { codecs: [], samples: 0, concealed: 0, lost: 0, packets: 0, bytes: 0 };
    for (const pc of window.__e2ePeerConnections || []) {
      if (pc.connectionState === 'closed') continue;
      const stats = await pc.getStats();
      stats.forEach((r) => {
        if (r.type === 'outbound-rtp' && r.kind === 'audio') {
          out.sent = stats.get(r.codecId)?.mimeType;
          out.sentBytesPerPacket = r.bytesSent / r.packetsSent;
        }
        if (r.type !== 'inbound-rtp' || r.kind !== 'audio' || !r.packetsReceived) return;
        out.codecs.push(stats.get(r.codecId)?.mimeType || '?');
        out.samples += r.totalSamplesReceived || 0;
        out.concealed += r.concealedSamples || 0;
        out.lost += r.packetsLost || 0;
        out.packets += r.packetsReceived || 0;
        out.bytes += r.bytesReceived || 0;
      });
    }
    return out;
  });
}

function concealment(before, after) {
  const samples = after.samples - before.samples;
  return {
    samples,
    concealed: after.concealed - before.concealed,
    ratio: samples > 0 ? (after.concealed - before.concealed) / samples : 1,
    lost: after.lost - before.lost,
    packets: after.packets - before.packets,
    bytesPerPacket: (after.bytes - before.bytes) / Math.max(after.packets - before.packets, 1),
  };
}

/** The audio m-lines and formats of the page's local and remote descriptions, as evidence. */
function audioSdp(page) {
  return page.evaluate(() => (window.__e2ePeerConnections || []).map((pc) => {
    const audio = (sdp) => (sdp || '').split('\r\n')
      .filter((l) => l.startsWith('m=audio') || /^a=(rtpmap|fmtp):(63|111|\d+ red)/.test(l) || l.includes(' red/'));
    return { local: audio(pc.localDescription?.sdp), remote: audio(pc.remoteDescription?.sdp) };
  }));
}

const percent = (x) => `${(x * 100).toFixed(2)}%`;

async function main() {
  if (!BIN) {
    console.log('RED FAIL: SWITCHBOARD_BIN is not set');
    return 1;
  }
  const watchdog = setTimeout(() => {
    console.log(`RED FAIL: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000}s`);
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  const dirs = [];
  const contexts = [];
  const pages = new Map();
  const consoleLogs = new Map();
  let server;
  let lossRuleAdded = false;
  let watcherNetns = null;
  try {
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-red-'));
    dirs.push(dir);
    const wav = join(dir, 'tone.wav');
    writeFileSync(wav, toneWav(3));
    const args = [
      ...CHROMIUM_ARGS,
      `--unsafely-treat-insecure-origin-as-secure=${BASE}`,
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      `--use-file-for-fake-audio-capture=${wav}`,
    ];
    const launch = async (name, executablePath) => {
      const profile = mkdtempSync(join(tmpdir(), `switchboard-red-${name}-`));
      dirs.push(profile);
      const context = await chromium.launchPersistentContext(profile, {
        executablePath, headless: true, args, viewport: { width: 1280, height: 720 },
      });
      contexts.push(context);
      await context.addInitScript(keepPeerConnections);
      await context.addInitScript(withoutRed);
      return context;
    };
    const open = async (context, name, query) => {
      const page = pages.size === 0 && context.pages()[0] ? context.pages()[0] : await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, elapsed);
      pages.set(name, page);
      // The watchers' namespace link comes up after their Chromium started (lib.mjs).
      await gotoAcrossNetworkChange(page, `${BASE}/?room=${ROOM}&name=${name}&autojoin=1${query}`, log);
      return page;
    };

    // The watchers' browser first: it brings the veth pair the server listens on.
    const watchers = await launch('watchers', join(HERE, 'chromium-in-netns.sh'));
    await waitFor(`${LINK} to appear`, async () => {
      try {
        execFileSync('ip', ['addr', 'show', LINK], { stdio: 'ignore' });
        return { ok: true };
      } catch {
        return { ok: false };
      }
    }, 10_000);
    server = spawn(BIN, ['serve', '--http-addr', HTTP, '--rtc-addr', '10.77.0.1:50097', '--no-turn'], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, RUST_LOG: 'warn' },
    });
    await waitFor('the server to answer', async () => ({ ok: Boolean(await health(BASE)) }), 20_000);

    const publisher = await launch('pub', CHROMIUM);
    await publisher.grantPermissions(['microphone'], { origin: BASE });
    await open(publisher, 'Pub', '&publish=audio');
    const red = await open(watchers, 'Red', '&publish=none');
    const plain = await open(watchers, 'Plain', '&publish=none&nored=1');

    const watching = [['Red', red], ['Plain', plain]];
    for (const [name, page] of watching) {
      await waitFor(`${name} to decode Pub's audio`, async () => {
        const a = await audioIn(page);
        return { ok: a.samples > 48_000 && a.codecs.length === 1, detail: a };
      }, 30_000);
      await waitFor(`${name} to show Pub speaking`, async () => {
        const ringed = await page.$$eval('figure.tile.speaking video', (vs) => vs.map((v) => v.getAttribute('data-participant')));
        return { ok: ringed.includes('Pub'), detail: ringed };
      }, 15_000);
      log(`${name} decodes Pub's audio and shows Pub speaking`);
    }
    await sleep(SETTLE_MS);

    if (LOSS > 0) {
      // The watchers' browser is the process started with their profile directory.
      const pid = execFileSync('pgrep', ['-o', '-f', 'switchboard-red-watchers-'], { encoding: 'utf8' }).trim();
      watcherNetns = `--net=/proc/${pid}/ns/net`;
      execFileSync('nsenter', [watcherNetns, 'iptables', '-I', ...LOSS_RULE], { stdio: ['ignore', 'ignore', 'inherit'] });
      lossRuleAdded = true;
      log(`the watchers' downlink now drops ${percent(LOSS)} of UDP datagrams`);
    }
    const before = await Promise.all(watching.map(([, page]) => audioIn(page)));
    await sleep(MEASURE_MS);
    const after = await Promise.all(watching.map(([, page]) => audioIn(page)));
    const [redFigures, plainFigures] = watching.map((_, i) => concealment(before[i], after[i]));
    const sent = await audioIn(pages.get('Pub'));
    const line = (name, f) => `${name} concealed ${percent(f.ratio)} (${f.concealed}/${f.samples} samples, ${f.lost} of ${f.lost + f.packets} packets lost, ${f.bytesPerPacket.toFixed(0)} B/packet)`;
    log(`Pub sends ${sent.sentBytesPerPacket.toFixed(0)} B/packet`);
    log(line('Red', redFigures));
    log(line('Plain', plainFigures));

    const problems = [];
    for (const [name, f] of [['Red', redFigures], ['Plain', plainFigures]]) {
      if (f.samples < (MEASURE_MS / 1000) * 48_000 * 0.9) problems.push(`${name} received only ${f.samples} samples in ${MEASURE_MS} ms`);
      if (LOSS === 0 && f.ratio > MAX_CLEAN_CONCEALED) problems.push(`${name} concealed ${percent(f.ratio)} on a clean link`);
    }
    // RED's redundant block repeats the previous Opus frame: nearly twice the primary alone.
    if (redFigures.bytesPerPacket < 1.6 * plainFigures.bytesPerPacket) {
      problems.push(`Red gets ${redFigures.bytesPerPacket.toFixed(0)} B/packet, Plain ${plainFigures.bytesPerPacket.toFixed(0)}: no redundancy reached Red`);
    }
    if (redFigures.bytesPerPacket > sent.sentBytesPerPacket * 1.1 || redFigures.bytesPerPacket < sent.sentBytesPerPacket * 0.8) {
      problems.push(`Red gets ${redFigures.bytesPerPacket.toFixed(0)} B/packet, Pub sends ${sent.sentBytesPerPacket.toFixed(0)}`);
    }
    if (LOSS > 0 && redFigures.ratio >= plainFigures.ratio) {
      problems.push(`RED did not help: ${percent(redFigures.ratio)} concealed with it, ${percent(plainFigures.ratio)} without`);
    }
    if (problems.length) throw new Error(problems.join('; '));
    clearTimeout(watchdog);
    console.log(`RED PASS: loss ${percent(LOSS)} over ${MEASURE_MS / 1000}s; ${line('RED watcher', redFigures)}; ${line('plain-Opus watcher', plainFigures)} (${elapsed()})`);
    return 0;
  } catch (e) {
    console.log(`[red ${elapsed()}] failure: ${e.stack || e.message}`);
    for (const [name, page] of pages) {
      console.log(`${name} SDP audio: ${JSON.stringify(await audioSdp(page).catch((err) => err.message))}`);
      console.log(`${name} audio stats: ${JSON.stringify(await audioIn(page).catch((err) => err.message))}`);
    }
    await saveEvidence(pages, consoleLogs).catch(() => {});
    for (const [name, lines] of consoleLogs) {
      console.log(`----- last console lines of ${name} -----\n${lines.slice(-25).join('\n')}`);
    }
    console.log(`RED FAIL: ${e.message.split('\n')[0]} (${elapsed()})`);
    return 1;
  } finally {
    if (lossRuleAdded) {
      try {
        execFileSync('nsenter', [watcherNetns, 'iptables', '-D', ...LOSS_RULE], { stdio: 'ignore' });
      } catch {
        // The namespace, and the rule with it, goes when the browser does.
      }
    }
    for (const c of contexts) await c.close().catch(() => {});
    if (server && server.exitCode === null) server.kill('SIGTERM');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

process.exit(await main());
