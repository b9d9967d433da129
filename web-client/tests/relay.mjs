// Calls forced through Switchboard's embedded TURN server. Two Chromium pages join with
// `?relay=udp` (then `?relay=tcp`): their RTCPeerConnection uses iceTransportPolicy 'relay'
// with only the TURN URLs of that transport, from the credentials the server handed out in
// `joined`. Each page must decode the other's video, and the selected candidate pair must be a
// relay candidate over that transport. The server runs with --turn-allow-loopback-peers,
// since here the SFU itself sits on 127.0.0.1.
//
// Prints one final line starting with "RELAY PASS" or "RELAY FAIL"; exits non-zero on failure.

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BASE, CHROMIUM, CHROMIUM_ARGS, captureConsole, keepPeerConnections, makeLogger, saveEvidence, waitFor,
} from './lib.mjs';

const TIMEOUT_MS = 30_000;
const { log } = makeLogger('relay');

/** Decoded frames and the selected candidate pair of the page's live peer connection. */
function mediaPath(page) {
  return page.evaluate(async () => {
    const pc = (window.__e2ePeerConnections || []).find((p) => p.connectionState !== 'closed');
    if (!pc) return { error: 'no peer connection' };
    const stats = await pc.getStats();
    let framesDecoded = 0;
    let pair = null;
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') framesDecoded += r.framesDecoded || 0;
      if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
    });
    const local = pair && stats.get(pair.localCandidateId);
    return {
      framesDecoded,
      candidateType: local && local.candidateType,
      relayProtocol: local && local.relayProtocol,
    };
  });
}

async function callThrough(context, transport, consoleLogs) {
  const room = `relay-${transport}`;
  const pages = new Map();
  for (const name of ['R1', 'R2']) {
    const page = await context.newPage();
    const lines = [];
    consoleLogs.set(`${name}-${transport}`, lines);
    captureConsole(page, lines, () => '');
    pages.set(name, page);
    await page.goto(`${BASE}/?room=${room}&name=${name}&autojoin=1&relay=${transport}&simulcast=0`);
  }
  for (const [name, page] of pages) {
    const first = await waitFor(`${name} to decode video over a ${transport.toUpperCase()} relay`, async () => {
      const path = await mediaPath(page);
      return { ok: path.framesDecoded > 10 && path.candidateType === 'relay', detail: path };
    }, TIMEOUT_MS);
    // Decoding goes on. Within a few seconds rather than one: in the first seconds of a call
    // the server may briefly pause a video while the subscriber's estimate settles.
    const later = await waitFor(`${name} to keep decoding over a ${transport.toUpperCase()} relay`, async () => {
      const path = await mediaPath(page);
      return { ok: path.framesDecoded > first.framesDecoded + 10, detail: path };
    }, 5_000);
    if (later.relayProtocol !== transport) throw new Error(`${name}: relay over ${later.relayProtocol}, wanted ${transport}`);
    log(`${name}: ${later.framesDecoded} frames decoded through a ${later.relayProtocol} relay candidate`);
  }
  for (const page of pages.values()) await page.close();
  return pages;
}

async function main() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchboard-relay-'));
  const consoleLogs = new Map();
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    await context.grantPermissions(['camera', 'microphone'], { origin: BASE });
    await context.addInitScript(keepPeerConnections);
    for (const transport of ['udp', 'tcp']) await callThrough(context, transport, consoleLogs);
    console.log('RELAY PASS: calls decoded through TURN over UDP and over TCP');
    return 0;
  } catch (e) {
    console.log(`RELAY FAIL: ${e.message}`);
    if (context) await saveEvidence(new Map(context.pages().map((p, i) => [`page${i}`, p])), consoleLogs).catch(() => {});
    return 1;
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

process.exit(await main());
