// Connection quality per tile and for oneself, from the browser's getStats and the server's
// `stats` (docs/protocol.md): packet loss, round-trip time, whether the received layer is
// below what the tile would show and why, and paused video. The verdicts are pure functions;
// `QualityMonitor` samples getStats and puts them on the tiles' badges (tiles.js).

/** Loss (share of packets, over the last sample) from which quality is fair / poor. */
export const LOSS_FAIR = 0.03;
export const LOSS_POOR = 0.1;
/** Round-trip time (s) from which quality is fair / poor. */
export const RTT_FAIR = 0.25;
export const RTT_POOR = 0.5;

const RANK = { unknown: 0, good: 1, fair: 2, poor: 3 };

function worse(a, b) {
  return RANK[b] > RANK[a] ? b : a;
}

function pct(x) {
  return `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`;
}

/** Loss between two cumulative samples `{lost, received}`; null when nothing new arrived. */
export function lossBetween(prev, now) {
  if (!now) return null;
  const lost = Math.max(0, (now.lost || 0) - (prev ? prev.lost || 0 : 0));
  const received = Math.max(0, (now.received || 0) - (prev ? prev.received || 0 : 0));
  return lost + received > 0 ? lost / (lost + received) : null;
}

function network(level, reasons, { loss, rtt }) {
  let l = level;
  if (typeof loss === 'number') {
    if (loss >= LOSS_POOR) l = worse(l, 'poor');
    else if (loss >= LOSS_FAIR) l = worse(l, 'fair');
    if (loss >= LOSS_FAIR) reasons.push(`${pct(loss)} packets lost`);
  }
  if (typeof rtt === 'number') {
    if (rtt >= RTT_POOR) l = worse(l, 'poor');
    else if (rtt >= RTT_FAIR) l = worse(l, 'fair');
    if (rtt >= RTT_FAIR) reasons.push(`round trip ${Math.round(rtt * 1000)} ms`);
  }
  return l;
}

const LAYER_RANK = { q: 0, h: 1, f: 2 };

/**
 * A remote tile: `server` is its video's `stats` subscription entry (or null), `paused` the
 * reason of a `video_paused` in force (or null), `loss`/`rtt` what the browser measured.
 * Returns `{level: 'good'|'fair'|'poor'|'unknown', reasons: [text]}`.
 */
export function assessRemote({ server = null, paused = null, loss = null, rtt = null } = {}) {
  const reasons = [];
  let level = server || typeof loss === 'number' || typeof rtt === 'number' ? 'good' : 'unknown';
  const pausedReason = paused || (server && server.paused && server.reason) || null;
  if (pausedReason && pausedReason !== 'hidden' && !/^hidden/.test(pausedReason)) {
    level = 'poor';
    reasons.push(pausedReason === 'bandwidth' ? 'video paused: not enough bandwidth' : `video paused: ${pausedReason}`);
  } else if (server && !server.paused) {
    const limited = /bandwidth/.test(server.reason || '');
    const below = server.current_layer in LAYER_RANK && server.target_layer in LAYER_RANK
      && LAYER_RANK[server.current_layer] < LAYER_RANK[server.target_layer];
    if (limited) {
      level = worse(level, 'fair');
      reasons.push(`lower quality than this tile could show: ${server.reason}`);
    } else if (below) {
      level = worse(level, 'fair');
      reasons.push('switching to a better layer');
    }
  }
  level = network(level, reasons, { loss, rtt });
  return { level, reasons };
}

/**
 * Ourselves: what the server reports back about what we send (`loss` from RTCP receiver
 * reports, `rtt`), and why the browser limits our video (`limitation`: 'bandwidth', 'cpu').
 */
export function assessLocal({ loss = null, rtt = null, limitation = null, connected = true } = {}) {
  const reasons = [];
  if (!connected) return { level: 'poor', reasons: ['media not connected'] };
  let level = typeof loss === 'number' || typeof rtt === 'number' || limitation ? 'good' : 'unknown';
  if (limitation === 'bandwidth' || limitation === 'cpu') {
    level = worse(level, 'fair');
    reasons.push(limitation === 'cpu' ? 'your video is reduced: CPU' : 'your video is reduced: upload bandwidth');
  }
  level = network(level, reasons, { loss, rtt });
  return { level, reasons };
}

const LEVEL_TEXT = { good: 'good', fair: 'fair', poor: 'poor', unknown: 'not measured yet' };

/** The badge's label: "Connection: fair (3.2% packets lost)". */
export function describe({ level, reasons }) {
  const text = `Connection: ${LEVEL_TEXT[level] || level}`;
  return reasons.length ? `${text} (${reasons.join('; ')})` : text;
}

/** How often the call's getStats is sampled. */
export const QUALITY_INTERVAL_MS = 2000;

/**
 * Samples a call's getStats (loss per received track since the last sample, the round-trip
 * time, what the server reports back about what we send) and shows the verdicts on `grid`'s
 * tiles, with the server's view from `stats` (a StatsStore) and each tile's `video_paused`.
 */
export class QualityMonitor {
  constructor({ grid, stats }) {
    this.grid = grid;
    this.stats = stats;
    this.prevInbound = new Map(); // track id -> {lost, received} at the last sample
    this.loss = new Map(); // track id -> loss over the last sample
    this.rtt = null;
    this.local = null;
  }

  async sample(call) {
    if (!call || call.closed) return;
    let report;
    try {
      report = await call.getStats();
    } catch {
      return;
    }
    let rtt = null;
    const sent = { loss: null, rtt: null, limitation: null };
    report.forEach((r) => {
      if (r.type === 'candidate-pair' && r.nominated && typeof r.currentRoundTripTime === 'number') rtt = r.currentRoundTripTime;
      if (r.type === 'inbound-rtp' && r.mid != null) {
        const info = call.receiving.get(r.mid);
        if (!info) return;
        const now = { lost: r.packetsLost || 0, received: r.packetsReceived || 0 };
        this.loss.set(info.trackId, lossBetween(this.prevInbound.get(info.trackId), now));
        this.prevInbound.set(info.trackId, now);
      }
      if (r.type === 'remote-inbound-rtp') {
        if (typeof r.fractionLost === 'number') sent.loss = Math.max(sent.loss || 0, r.fractionLost);
        if (typeof r.roundTripTime === 'number') sent.rtt = Math.max(sent.rtt || 0, r.roundTripTime);
      }
      if (r.type === 'outbound-rtp' && r.kind === 'video' && r.qualityLimitationReason && r.qualityLimitationReason !== 'none') {
        sent.limitation = r.qualityLimitationReason;
      }
    });
    this.rtt = rtt;
    if (sent.rtt === null) sent.rtt = rtt;
    this.local = sent;
    this.show(call);
  }

  /** Puts the latest verdicts on every badge (after a sample, `stats` or `video_paused`). */
  show(call) {
    for (const tile of this.grid.allRemote()) {
      const ids = [tile.trackIds.video, tile.trackIds.audio].filter(Boolean);
      if (!ids.length) continue;
      const losses = ids.map((id) => this.loss.get(id)).filter((x) => typeof x === 'number');
      const a = assessRemote({
        server: tile.trackIds.video ? this.stats.forTrack(tile.trackIds.video) : null,
        paused: tile.pausedReason || null,
        loss: losses.length ? Math.max(...losses) : null,
        rtt: this.rtt,
      });
      tile.setQuality(a, describe(a));
    }
    if (this.grid.localTile && this.local) {
      const a = assessLocal({ ...this.local, connected: Boolean(call) && call.pc.connectionState === 'connected' });
      this.grid.localTile.setQuality(a, describe(a));
    }
  }
}
