// A room across three nodes of a cluster, and a node killed. The test runs its own cluster:
// a redis-server, three `switchboard serve` nodes sharing it, and Debian's haproxy in front
// (WebSocket health checks on /healthz), all on loopback inside the test's namespace.
//
// Page P is on node A and page Q on node B (each loaded from its node), page X comes through
// haproxy, which sends everything to node C while C is up (`balance first`). All three must
// play each other's video. Then node C is killed with SIGKILL: X's page must come back by
// itself through haproxy (on another node) and play with P and Q again within 10 s of the
// kill, and P and Q must never stop playing each other meanwhile.
//
// Needs redis-server and haproxy (scripts/install-test-deps). Prints one final line starting
// with "CLUSTER PASS" or "CLUSTER FAIL".

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, captureConsole, health, keepPeerConnections, makeLogger, saveEvidence, sleep, waitFor } from './lib.mjs';

const { log } = makeLogger('cluster');
const BIN = process.env.SWITCHBOARD_BIN;
const SECRET = 'browser-cluster-test-secret-0123';
const REDIS_PORT = 6395;
const NODES = {
  A: { http: '127.0.0.1:8111', rtc: '127.0.0.1:50111', relay: '127.0.0.1:7111' },
  B: { http: '127.0.0.1:8112', rtc: '127.0.0.1:50112', relay: '127.0.0.1:7112' },
  C: { http: '127.0.0.1:8113', rtc: '127.0.0.1:50113', relay: '127.0.0.1:7113' },
};
const LB = '127.0.0.1:8110';
const TIMEOUT_MS = 30_000;
const children = [];

function start(cmd, args, name) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RUST_LOG: 'warn' } });
  child.on('error', (e) => log(`${name} could not start: ${e.message}`));
  children.push(child);
  return child;
}

function startNode(node) {
  const n = NODES[node];
  return start(BIN, ['serve', '--http-addr', n.http, '--rtc-addr', n.rtc, '--no-turn',
    '--redis', `redis://127.0.0.1:${REDIS_PORT}`, '--cluster-secret', SECRET, '--relay-addr', n.relay], `node ${node}`);
}

function startHaproxy(dir) {
  // `balance first`: everything to C while its health check passes, then to A.
  const config = `
global
  maxconn 256
defaults
  mode http
  timeout connect 1s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
  retries 3
  option redispatch
frontend web
  bind ${LB}
  default_backend nodes
backend nodes
  balance first
  option httpchk GET /healthz
  http-check expect status 200
  default-server inter 300ms fall 2 rise 2 maxconn 100
  server c ${NODES.C.http} check
  server a ${NODES.A.http} check
  server b ${NODES.B.http} check
`;
  const path = join(dir, 'haproxy.cfg');
  writeFileSync(path, config);
  return start('haproxy', ['-f', path, '-db'], 'haproxy');
}

/** The videos named `name` on `page`: how many, and the first one's width, position and
 * participant id (a participant that joins again has a new one). */
function videosOf(page, name) {
  return page.$$eval(`video[data-participant="${name}"]`, (vs) => ({
    count: vs.length,
    width: vs[0]?.videoWidth ?? 0,
    time: vs[0]?.currentTime ?? 0,
    id: vs[0]?.closest('[data-participant-id]')?.dataset.participantId ?? null,
  })).catch(() => ({ count: 0, width: 0, time: 0, id: null }));
}

/** One video of `name` on `page`, playing now (its position moves within 400 ms), and not
 * of the participant `staleId`. */
async function playingNow(page, name, staleId = null) {
  const a = await videosOf(page, name);
  await sleep(400);
  const b = await videosOf(page, name);
  const ok = b.count === 1 && b.width > 0 && b.time > a.time && b.id !== staleId;
  return { ok, detail: { ...b, staleId } };
}

async function playing(page, name, what, timeoutMs) {
  return waitFor(what, async () => {
    const v = await videosOf(page, name);
    return { ok: v.count === 1 && v.width > 0 && v.time > 0.5, detail: v };
  }, timeoutMs, 200);
}

async function main() {
  if (!BIN) {
    console.log('CLUSTER FAIL: SWITCHBOARD_BIN is not set');
    return 1;
  }
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-cluster-'));
  const consoleLogs = new Map();
  const pages = new Map();
  let context;
  try {
    start('redis-server', ['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], 'redis-server');
    await sleep(300);
    const nodes = {};
    for (const node of Object.keys(NODES)) nodes[node] = startNode(node);
    for (const node of Object.keys(NODES)) {
      await waitFor(`node ${node} to answer`, async () => ({ ok: Boolean(await health(`http://${NODES[node].http}`)) }), 20_000);
    }
    startHaproxy(dir);
    await waitFor('haproxy to answer', async () => ({ ok: Boolean(await health(`http://${LB}`)) }), 20_000);

    context = await chromium.launchPersistentContext(join(dir, 'profile'), { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const bases = { P: `http://${NODES.A.http}`, Q: `http://${NODES.B.http}`, X: `http://${LB}` };
    for (const base of Object.values(bases)) await context.grantPermissions(['camera', 'microphone'], { origin: base });
    await context.addInitScript(keepPeerConnections);
    const started = Date.now();
    const elapsed = () => ((Date.now() - started) / 1000).toFixed(1);
    for (const [name, base] of Object.entries(bases)) {
      const page = await context.newPage();
      const lines = [];
      consoleLogs.set(name, lines);
      captureConsole(page, lines, elapsed);
      pages.set(name, page);
      await page.goto(`${base}/?room=cluster&name=${name}&autojoin=1&simulcast=0`);
    }
    for (const [name, page] of pages) {
      for (const other of pages.keys()) {
        if (other !== name) await playing(page, other, `${name} to play ${other} (pages on three nodes)`, TIMEOUT_MS);
      }
    }
    const staleX = (await videosOf(pages.get('P'), 'X')).id;
    const onC = await health(`http://${NODES.C.http}`);
    if (!onC || onC.participants < 1) throw new Error(`X is not on node C: ${JSON.stringify(onC)}`);
    log('P (node A), Q (node B) and X (node C, through haproxy) play each other; killing node C');

    // P and Q must keep playing each other: sample their positions through the failover.
    const before = { P: await videosOf(pages.get('P'), 'Q'), Q: await videosOf(pages.get('Q'), 'P') };
    const killedAt = Date.now();
    nodes.C.kill('SIGKILL');
    let longestStall = 0;
    const samples = [];
    const last = { P: { time: before.P.time, at: killedAt }, Q: { time: before.Q.time, at: killedAt } };
    const watchPQ = async () => {
      for (const [viewer, other] of [['P', 'Q'], ['Q', 'P']]) {
        // A stall: wall-clock time that passed between two samples without the video's
        // position moving as much (sampling itself may be seconds apart).
        const v = await videosOf(pages.get(viewer), other);
        const now = Date.now();
        samples.push(`${viewer}:${now - killedAt}ms@${v.time.toFixed(2)}`);
        const stall = (now - last[viewer].at) - (v.time - last[viewer].time) * 1000;
        longestStall = Math.max(longestStall, Math.round(stall));
        last[viewer] = { time: v.time, at: now };
      }
    };
    for (const [name, page] of [['P', pages.get('P')], ['Q', pages.get('Q')]]) {
      await waitFor(`${name} to play X (joined again) after the kill`, async () => {
        await watchPQ();
        return playingNow(page, 'X', staleX);
      }, 10_000 - (Date.now() - killedAt), 100);
    }
    for (const other of ['P', 'Q']) {
      await waitFor(`X to play ${other} again after the kill`, async () => {
        await watchPQ();
        return playingNow(pages.get('X'), other);
      }, Math.max(10_000 - (Date.now() - killedAt), 1), 100);
    }
    const back = Date.now() - killedAt;
    // Still playing now, not a frozen frame.
    const mark = new Map();
    for (const [name, page] of pages) mark.set(name, await videosOf(page, name === 'X' ? 'P' : 'X'));
    await sleep(1_500);
    await watchPQ();
    for (const [name, page] of pages) {
      const other = name === 'X' ? 'P' : 'X';
      const v = await videosOf(page, other);
      if (!(v.time > mark.get(name).time + 0.5)) throw new Error(`${name}: ${other}'s video is not playing after the failover`);
    }
    if (longestStall > 1_000) throw new Error(`P and Q stopped playing each other for ${longestStall} ms during the failover: ${samples.join(' ')}`);
    const survivors = await Promise.all(['A', 'B'].map((n) => health(`http://${NODES[n].http}`)));
    log(`survivors: ${JSON.stringify(survivors)}`);
    console.log(`CLUSTER PASS: three pages on three nodes played each other; node C killed, X was back through haproxy after ${back} ms; P and Q played each other throughout (longest stall ${longestStall} ms)`);
    return 0;
  } catch (e) {
    console.log(`CLUSTER FAIL: ${e.message}`);
    await saveEvidence(pages, consoleLogs).catch(() => {});
    return 1;
  } finally {
    if (context) await context.close().catch(() => {});
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

process.exit(await main());
