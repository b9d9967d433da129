// The server's `stats` messages (docs/protocol.md): kept for the tiles' info panels and exposed
// as `window.switchboardStats` for tests and debugging ({latest, history, sizes, layers}).

const HISTORY = 10;

export class StatsStore {
  constructor() {
    this.latest = null;
    this.history = [];
    this.byTrack = new Map(); // track id -> latest subscription entry
    this.debug = { latest: null, history: this.history, sizes: {}, layers: {}, paused: {} };
    window.switchboardStats = this.debug;
  }

  /** Records one `stats` message. */
  update(msg) {
    this.latest = { ...msg, received_at: Date.now() };
    this.history.push(this.latest);
    if (this.history.length > HISTORY) this.history.shift();
    this.byTrack.clear();
    for (const sub of Array.isArray(msg.subscriptions) ? msg.subscriptions : []) {
      if (sub && typeof sub.track_id === 'string') this.byTrack.set(sub.track_id, sub);
    }
    this.debug.latest = this.latest;
  }

  /** The latest entry for the track we receive as `trackId`, or null. */
  forTrack(trackId) {
    return this.byTrack.get(trackId) || null;
  }

  estimate() {
    return this.latest && typeof this.latest.estimate_bps === 'number' ? this.latest.estimate_bps : null;
  }

  clear() {
    this.latest = null;
    this.history.length = 0;
    this.byTrack.clear();
    this.debug.latest = null;
  }
}

export function formatBps(bps) {
  if (typeof bps !== 'number' || !Number.isFinite(bps)) return '–';
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  if (bps >= 1e3) return `${Math.round(bps / 1e3)} kbit/s`;
  return `${Math.round(bps)} bit/s`;
}

const LAYER_NAMES = { q: 'q (¼)', h: 'h (½)', f: 'f (full)' };

/** A layer's name, with the frame rate when only some of its temporal layers come
 * (`temporal`: the highest temporal layer, 0-based; null or absent: all of them). */
export function formatLayer(layer, temporal = null) {
  if (layer === null) return 'none';
  if (layer === undefined) return '–';
  const name = LAYER_NAMES[layer] || String(layer);
  return typeof temporal === 'number' ? `${name}, temporal layers 0-${temporal}` : name;
}

/**
 * Rows (label, value) for a tile's info panel: the server's view of the subscription and the
 * size the browser decodes.
 */
export function statsRows(entry, estimateBps, video) {
  const decoded = video && video.videoWidth ? `${video.videoWidth}×${video.videoHeight}` : '–';
  if (!entry) {
    return [
      ['Decoded', decoded],
      ['Server', 'no stats yet'],
    ];
  }
  return [
    ['Layer', formatLayer(entry.current_layer, entry.current_temporal)],
    ['Target', formatLayer(entry.target_layer, entry.target_temporal)],
    ['Estimate', formatBps(estimateBps)],
    ['Bitrate', formatBps(entry.bitrate_bps)],
    ['Decoded', decoded],
    ['Paused', entry.paused ? 'yes' : 'no'],
    ['Reason', entry.reason || '–'],
  ];
}
