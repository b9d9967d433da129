// The call grid: one tile per participant (plus our own preview), and one more per remote
// screen share, laid out to fill the space. A participant's tile holds a
// <video data-participant="NAME"> (muted: its sound plays through the tile's <audio>, so video
// autoplay never depends on the audio autoplay policy), an <audio>, an avatar shown while there
// is no picture, and a caption with the name and mute badges. A screen-share tile holds a
// <video data-screen-of="NAME">, is twice as wide and comes first.
//
// A tile whose participant speaks (`active_speakers`) has the class `speaking`: a ring.
// Tiles also show a raised hand, reactions floating up (reactions.js) and a connection
// quality badge (quality.js); remote ones a pin button.
//
// Two views: the grid (every tile as large as fits) and the speaker view, where one tile (the
// "stage": the pinned participant, else a screen share, else whoever spoke last) is large and
// the others sit in a strip below it. Pinning a tile also tells the server (`pin`), through
// the `onPin` callback, so that it serves that video first.
//
// Remote tiles also carry an info button that opens the server's view of that video (`stats`),
// and a "paused" overlay for `video_paused`. Every remote video is reported to `sizes`
// (sizes.js) while it has a track.

import { statsRows } from './stats.js';

const MIC_OFF_SVG = `<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M19 11a7 7 0 0 1-1.2 3.9l-1.5-1.5A5 5 0 0 0 17 11h2zM12 2a3 3 0 0 1 3 3v6l-.03.4L9 5.4V5a3 3 0 0 1 3-3zM3.3 2.3 21.7 20.7l-1.4 1.4-4.2-4.2A7 7 0 0 1 13 19v3h-2v-3a7 7 0 0 1-6-7h2a5 5 0 0 0 7.6 4.3l-1.5-1.5A3 3 0 0 1 9 11v-.8L1.9 3.7z"/></svg>`;
const SCREEN_SVG = `<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M3 4h18a1 1 0 0 1 1 1v11a1 1 0 0 1-1 1h-7v2h3v2H7v-2h3v-2H3a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1zm1 2v9h16V6H4z"/></svg>`;
const PAUSE_SVG = `<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M7 5h4v14H7zm6 0h4v14h-4z"/></svg>`;
const PIN_SVG = `<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M16 3v2h-1v5l3 3v2h-5v6l-1 1-1-1v-6H6v-2l3-3V5H8V3h8z"/></svg>`;
const CAM_OFF_SVG = `<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M3.3 2.3 21.7 20.7l-1.4 1.4-3-3H4a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1h.2L1.9 3.7zM21 6.5v11l-.3-.3L17 13.5V16l-9-9h8a1 1 0 0 1 1 1v2.5z"/></svg>`;

function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/u).filter(Boolean);
  const letters = parts.slice(0, 2).map((p) => Array.from(p)[0] || '');
  return (letters.join('') || '?').toUpperCase();
}

/** A stable hue per name, for the avatar. */
function hue(name) {
  let h = 0;
  for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'html') e.innerHTML = v; // only our own constant SVG
    else if (v === true) e.setAttribute(k, '');
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

let panelIds = 0;

class Tile {
  /** `screen`: a remote screen share (no audio, no avatar initials, labelled as a screen). */
  constructor({ name, local = false, screen = false }) {
    this.local = local;
    this.screen = screen;
    this.video = el('video', { autoplay: true, playsinline: true, muted: true });
    this.video.muted = true; // the attribute alone does not mute a srcObject in every browser
    this.audio = local || screen ? null : el('audio', { autoplay: true });
    this.avatar = el('div', { class: 'avatar', 'aria-hidden': 'true' });
    this.nameEl = el('span', { class: 'name' });
    this.micBadge = el('span', { class: 'badge mic-off', title: 'Microphone muted', html: MIC_OFF_SVG });
    this.camBadge = el('span', { class: 'badge cam-off', title: screen ? 'Screen share paused' : 'Camera off', html: CAM_OFF_SVG });
    this.handBadge = el('span', { class: 'hand', role: 'img', 'aria-label': 'Hand raised', title: 'Hand raised', text: '✋', hidden: true });
    this.qualityBadge = el('span', { class: 'quality', role: 'img', 'data-level': 'unknown' }, [
      el('i'), el('i'), el('i'),
    ]);
    const caption = el('figcaption', {}, [
      ...(screen ? [el('span', { class: 'badge screen-icon', html: SCREEN_SVG })] : []),
      this.qualityBadge, this.nameEl, this.micBadge, this.camBadge, this.handBadge,
    ]);
    this.reactionsEl = el('div', { class: 'reactions', 'aria-live': 'polite' });
    this.root = el('figure', { class: `tile${local ? ' local' : ''}${screen ? ' screen' : ''}` }, [
      this.video,
      el('div', { class: 'placeholder' }, [this.avatar]),
      caption,
      this.reactionsEl,
    ]);
    this.setQuality({ level: 'unknown', reasons: [] });
    if (this.audio) this.root.append(this.audio);
    if (!local) this.addOverlays();
    this.tracks = { audio: null, video: null };
    this.trackIds = { audio: null, video: null };
    this.muted = { audio: false, video: false };
    this.video.addEventListener('resize', () => this.refresh());
    this.video.addEventListener('playing', () => this.refresh());
    this.video.addEventListener('emptied', () => this.refresh());
    this.setName(name);
    this.refresh();
  }

  /** The "paused (low bandwidth)" overlay, the info button and its stats panel. */
  addOverlays() {
    this.pausedEl = el('div', { class: 'paused-overlay', role: 'status', hidden: true }, [
      el('span', { class: 'paused-icon', html: PAUSE_SVG }),
      el('span', { text: 'Paused (low bandwidth)' }),
    ]);
    const panelId = `stats-panel-${++panelIds}`;
    this.statsPanel = el('dl', { class: 'stats-panel', id: panelId, hidden: true });
    this.infoButton = el('button', {
      type: 'button', class: 'info-toggle', 'aria-expanded': 'false', 'aria-controls': panelId, text: 'i',
    });
    this.infoButton.addEventListener('click', () => this.toggleStats());
    this.pinButton = el('button', { type: 'button', class: 'pin-toggle', 'aria-pressed': 'false', html: PIN_SVG });
    this.root.append(this.pausedEl, this.infoButton, this.pinButton, this.statsPanel);
  }

  setPinned(pinned) {
    this.root.classList.toggle('pinned', pinned);
    if (!this.pinButton) return;
    this.pinButton.setAttribute('aria-pressed', String(pinned));
    const label = `${pinned ? 'Unpin' : 'Pin'} ${this.label}`;
    this.pinButton.setAttribute('aria-label', label);
    this.pinButton.title = label;
  }

  setHand(raised) {
    this.handBadge.hidden = !raised;
    this.root.classList.toggle('hand-raised', raised);
  }

  /** Floats `emoji` (one of reactions.js's fixed set) over the tile for `ms`. */
  showReaction(emoji, ms) {
    const r = el('span', { class: 'reaction', role: 'img', 'aria-label': `reacted ${emoji}`, text: emoji });
    this.reactionsEl.append(r);
    setTimeout(() => r.remove(), ms);
  }

  /** `{level, reasons}` from quality.js, with its spoken label. */
  setQuality(q, label) {
    this.quality = q;
    this.qualityBadge.dataset.level = q.level;
    const text = label || `Connection: ${q.level}`;
    this.qualityBadge.setAttribute('aria-label', text);
    this.qualityBadge.title = text;
  }

  setName(name) {
    this.name = name;
    const label = this.local ? `${name} (you)` : this.screen ? `${name}’s screen` : name;
    this.label = label;
    this.nameEl.textContent = label;
    this.avatar.textContent = initials(name);
    this.avatar.style.setProperty('--hue', hue(name));
    if (this.local) this.video.setAttribute('data-local', '');
    else this.video.setAttribute(this.screen ? 'data-screen-of' : 'data-participant', name);
    this.root.setAttribute('aria-label', this.local ? `You (${name})` : label);
    if (this.infoButton) {
      this.infoButton.setAttribute('aria-label', `Video stats for ${label}`);
      this.infoButton.title = `Video stats for ${label}`;
    }
    if (this.pinButton) this.setPinned(this.root.classList.contains('pinned'));
  }

  setStream(stream) {
    this.video.srcObject = stream;
    this.tracks.video = stream && stream.getVideoTracks()[0] || null;
    this.tracks.audio = stream && stream.getAudioTracks()[0] || null;
    this.refresh();
  }

  /** Sets (or clears, with `null`) the received track of one kind, with its server track id. */
  setTrack(kind, track, trackId, onAudioBlocked) {
    if (this.tracks[kind] === track) return;
    this.tracks[kind] = track;
    this.trackIds[kind] = track ? trackId || null : null;
    const media = kind === 'video' ? this.video : this.audio;
    if (!media) return;
    media.srcObject = track ? new MediaStream([track]) : null;
    if (kind === 'video') {
      if (this.trackIds.video) media.dataset.trackId = this.trackIds.video;
      else delete media.dataset.trackId;
    }
    if (track) {
      media.play().catch((e) => {
        if (e.name === 'NotAllowedError' && kind === 'audio' && onAudioBlocked) onAudioBlocked();
        else if (e.name !== 'AbortError') console.warn('tile: play failed', e);
      });
    }
    if (kind === 'video' && !track) this.setPaused(false);
    this.refresh();
  }

  setSpeaking(speaking) {
    this.root.classList.toggle('speaking', speaking);
    if (speaking) this.root.dataset.speaking = '';
    else delete this.root.dataset.speaking;
  }

  setMuted(kind, muted) {
    this.muted[kind] = muted;
    this.refresh();
  }

  setPaused(paused, reason = null) {
    this.pausedReason = paused ? reason || 'bandwidth' : null;
    if (this.pausedEl) this.pausedEl.hidden = !paused;
    this.root.classList.toggle('paused', Boolean(paused));
  }

  toggleStats(open = this.statsPanel.hidden) {
    this.statsPanel.hidden = !open;
    this.infoButton.setAttribute('aria-expanded', String(open));
    this.infoButton.classList.toggle('active', open);
    if (open && this.renderStats) this.renderStats();
  }

  /** Fills the stats panel (if open) from a `stats` subscription entry. */
  showStats(entry, estimateBps) {
    if (!this.statsPanel || this.statsPanel.hidden) return;
    const rows = statsRows(entry, estimateBps, this.video);
    this.statsPanel.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
  }

  refresh() {
    const picture = this.tracks.video && !this.muted.video && this.video.videoWidth > 0;
    this.root.classList.toggle('has-video', Boolean(picture));
    this.root.classList.toggle('video-track', Boolean(this.tracks.video));
    this.micBadge.hidden = !this.muted.audio || this.screen;
    this.camBadge.hidden = !this.muted.video;
    if (this.renderStats) this.renderStats();
  }

  /** Retries audio playback after a user gesture. */
  resumeAudio() {
    if (this.audio && this.audio.srcObject) return this.audio.play().catch(() => {});
    return Promise.resolve();
  }
}

/** Parses `WxH` (e.g. `320x180`) into CSS pixels, or null. */
export function parseTileSize(text) {
  const m = /^(\d{1,5})x(\d{1,5})$/.exec(String(text || '').trim());
  if (!m) return null;
  const width = Number(m[1]);
  const height = Number(m[2]);
  return width > 0 && height > 0 ? { width, height } : null;
}

/**
 * Height of `items` ('tile' | 'screen', in order) flowing in rows of width `W` like the grid's
 * wrapping flex box, for a tile width `w`: a tile is w x 9w/16, a screen 2w+gap wide (at most
 * W) and as high as its width asks.
 */
function flowHeight(items, w, W, gap) {
  let total = 0;
  let rowW = 0;
  let rowH = 0;
  for (const item of items) {
    const iw = item === 'screen' ? Math.min(2 * w + gap, W) : w;
    const ih = (iw * 9) / 16;
    if (rowW > 0 && rowW + gap + iw > W) {
      total += rowH + gap;
      rowW = 0;
      rowH = 0;
    }
    rowW += (rowW > 0 ? gap : 0) + iw;
    rowH = Math.max(rowH, ih);
  }
  return total + rowH;
}

/** The largest tile width (CSS px) for which `items` fit a W x H box. */
export function fitTileWidth(items, W, H, gap) {
  let lo = 0;
  let hi = W;
  for (let i = 0; i < 24; i++) {
    const mid = (lo + hi) / 2;
    if (flowHeight(items, mid, W, gap) <= H) lo = mid;
    else hi = mid;
  }
  return lo;
}

export class TileGrid {
  /**
   * `sizes`: an object with `observe(videoElement, trackId)` / `unobserve(videoElement)`
   * (sizes.js), told about every remote video. `stats`: a StatsStore (stats.js) for the info
   * panels. `fixedTile`: `{width, height}` in CSS pixels for every remote camera tile (tests).
   */
  constructor(container, { onAudioBlocked, onPin = null, sizes = null, stats = null, fixedTile = null } = {}) {
    this.container = container;
    this.onPin = onPin;
    this.view = 'grid';
    this.pinned = null; // participant id
    this.lastSpeaker = null; // remote participant id who spoke last
    this.sinkId = null; // the chosen speaker (setSinkId)
    this.onAudioBlocked = onAudioBlocked;
    this.sizes = sizes;
    this.stats = stats;
    this.tiles = new Map(); // participant id -> Tile (camera, audio)
    this.screens = new Map(); // track id -> {participantId, tile}
    this.localTile = null;
    if (fixedTile) {
      container.classList.add('fixed-tiles');
      container.style.setProperty('--fixed-w', `${fixedTile.width}px`);
      container.style.setProperty('--fixed-h', `${fixedTile.height}px`);
    }
    this.observe();
  }

  setSizeReporter(sizes) {
    this.sizes = sizes;
  }

  setLocal(name, stream) {
    if (!this.localTile) {
      this.localTile = new Tile({ name, local: true });
      this.container.prepend(this.localTile.root);
    }
    this.localTile.setName(name);
    this.localTile.setStream(stream);
    this.updateStage();
  }

  setLocalMuted(kind, muted) {
    if (this.localTile) this.localTile.setMuted(kind, muted);
  }

  /** Adds a participant's tile, or renames it (and its screen tiles) if it exists. */
  upsert(participantId, name) {
    let tile = this.tiles.get(participantId);
    if (tile) {
      if (tile.name !== name) {
        tile.setName(name);
        for (const s of this.screens.values()) if (s.participantId === participantId) s.tile.setName(name);
      }
      return tile;
    }
    tile = new Tile({ name });
    tile.root.dataset.participantId = participantId;
    this.wireStats(tile);
    this.wirePin(tile, participantId);
    this.applySink(tile);
    this.tiles.set(participantId, tile);
    this.container.append(tile.root);
    this.updateStage();
    return tile;
  }

  /** Removes a participant's tile and its screen shares. */
  remove(participantId) {
    for (const [trackId, s] of [...this.screens]) if (s.participantId === participantId) this.removeScreen(trackId);
    const tile = this.tiles.get(participantId);
    if (!tile) return;
    this.setTileTrack(tile, 'video', null, null);
    this.setTileTrack(tile, 'audio', null, null);
    tile.root.remove();
    this.tiles.delete(participantId);
    if (this.lastSpeaker === participantId) this.lastSpeaker = null;
    // A pin of someone who left: the server's pin matches nothing now; drop ours too.
    if (this.pinned === participantId) this.setPinned(null, { notify: true });
    this.updateStage();
  }

  setTrack(participantId, kind, track, trackId = null) {
    const tile = this.tiles.get(participantId);
    if (tile) this.setTileTrack(tile, kind, track, trackId);
  }

  /** Shows a remote screen share in a tile of its own. */
  addScreen(participantId, trackId, name, track) {
    let s = this.screens.get(trackId);
    if (!s) {
      const tile = new Tile({ name, screen: true });
      tile.root.dataset.participantId = participantId;
      this.wireStats(tile);
      this.wirePin(tile, participantId);
      tile.setPinned(this.pinned === participantId);
      s = { participantId, tile };
      this.screens.set(trackId, s);
      this.container.append(tile.root);
    }
    this.setTileTrack(s.tile, 'video', track, trackId);
    this.updateStage();
  }

  removeScreen(trackId) {
    const s = this.screens.get(trackId);
    if (!s) return;
    this.setTileTrack(s.tile, 'video', null, null);
    s.tile.root.remove();
    this.screens.delete(trackId);
    this.updateStage();
  }

  isScreen(trackId) {
    return this.screens.has(trackId);
  }

  /** Whether the participant's own tile already shows a video track other than `trackId`. */
  hasOtherVideo(participantId, trackId) {
    const tile = this.tiles.get(participantId);
    return Boolean(tile && tile.tracks.video && tile.trackIds.video !== trackId);
  }

  hasTracks(participantId) {
    const tile = this.tiles.get(participantId);
    return Boolean(tile && (tile.tracks.audio || tile.tracks.video));
  }

  setMuted(participantId, kind, muted) {
    const tile = this.tiles.get(participantId);
    if (tile) tile.setMuted(kind, muted);
  }

  /**
   * `active_speakers`: rings the tiles of the participants in `ids` (a Set of participant
   * ids; `localId` is ours, shown on our own tile) and no others.
   */
  setSpeaking(ids, localId, ordered = [...ids]) {
    for (const [id, tile] of this.tiles) tile.setSpeaking(ids.has(id));
    if (this.localTile) this.localTile.setSpeaking(ids.has(localId));
    // The speaker view shows the loudest other participant, and keeps showing whoever spoke
    // last through silences (a stage that empties at every pause would flicker).
    const loudest = ordered.find((id) => id !== localId && this.tiles.has(id));
    if (loudest && loudest !== this.lastSpeaker) {
      this.lastSpeaker = loudest;
      this.updateStage();
    }
  }

  /** 'grid' or 'speaker'. */
  setView(view) {
    this.view = view === 'speaker' ? 'speaker' : 'grid';
    this.container.classList.toggle('speaker-view', this.view === 'speaker');
    this.container.dataset.view = this.view;
    this.updateStage();
  }

  /**
   * Pins `participantId` (null: unpins): in the speaker view it stays on the stage. With
   * `notify`, `onPin` tells the server.
   */
  setPinned(participantId, { notify = true } = {}) {
    this.pinned = participantId && this.tiles.has(participantId) ? participantId : null;
    for (const [id, tile] of this.tiles) tile.setPinned(id === this.pinned);
    for (const s of this.screens.values()) s.tile.setPinned(s.participantId === this.pinned);
    if (notify && this.onPin) this.onPin(this.pinned);
    this.updateStage();
  }

  /** The tile on the speaker view's stage, or null in the grid view. */
  stageTile() {
    if (this.view !== 'speaker') return null;
    const screenOf = (id) => [...this.screens.values()].find((s) => s.participantId === id);
    if (this.pinned) {
      const s = screenOf(this.pinned);
      const t = s ? s.tile : this.tiles.get(this.pinned);
      if (t) return t;
    }
    const firstScreen = this.screens.values().next().value;
    if (firstScreen) return firstScreen.tile;
    if (this.lastSpeaker && this.tiles.has(this.lastSpeaker)) return this.tiles.get(this.lastSpeaker);
    return this.tiles.values().next().value || this.localTile;
  }

  updateStage() {
    const stage = this.stageTile();
    for (const t of [...this.allRemote(), ...(this.localTile ? [this.localTile] : [])]) {
      t.root.classList.toggle('stage', t === stage);
    }
    this.layout();
  }

  /** The tile of participant `id` (ours when it is `localId`). */
  tileOf(id, localId) {
    if (id && id === localId) return this.localTile;
    return this.tiles.get(id) || null;
  }

  /** Plays every remote participant's sound on `sinkId` (a speaker from devices.js). */
  async setSinkId(sinkId) {
    this.sinkId = sinkId;
    await Promise.all([...this.tiles.values()].map((t) => this.applySink(t)));
  }

  applySink(tile) {
    if (!this.sinkId || !tile.audio || typeof tile.audio.setSinkId !== 'function') return Promise.resolve();
    return tile.audio.setSinkId(this.sinkId).catch((e) => console.warn('tile: setSinkId failed', e));
  }

  /** Mutes the tile showing `trackId` if it is a screen share; returns whether it was one. */
  setScreenMuted(trackId, muted) {
    const s = this.screens.get(trackId);
    if (s) s.tile.setMuted('video', muted);
    return Boolean(s);
  }

  /** `video_paused`: shows or hides the "paused" overlay of the tile showing `trackId`. */
  setPaused(trackId, paused, reason) {
    const tile = this.tileForTrack(trackId);
    // `hidden` pauses are ours (we reported size 0): nothing to explain to the user.
    if (tile) tile.setPaused(paused && reason !== 'hidden', reason);
    return Boolean(tile);
  }

  tileForTrack(trackId) {
    if (!trackId) return null;
    const s = this.screens.get(trackId);
    if (s) return s.tile;
    for (const t of this.tiles.values()) if (t.trackIds.video === trackId || t.trackIds.audio === trackId) return t;
    return null;
  }

  /** Refreshes the open stats panels (after a `stats` message). */
  refreshStats() {
    for (const t of this.allRemote()) if (t.renderStats) t.renderStats();
  }

  resumeAudio() {
    return Promise.all([...this.tiles.values()].map((t) => t.resumeAudio()));
  }

  clear() {
    for (const id of [...this.tiles.keys()]) this.remove(id);
    for (const id of [...this.screens.keys()]) this.removeScreen(id);
    if (this.localTile) {
      this.localTile.setStream(null);
      this.localTile.root.remove();
      this.localTile = null;
    }
    this.pinned = null;
    this.lastSpeaker = null;
    this.layout();
  }

  *allRemote() {
    yield* this.tiles.values();
    for (const s of this.screens.values()) yield s.tile;
  }

  setTileTrack(tile, kind, track, trackId) {
    tile.setTrack(kind, track, trackId, this.onAudioBlocked);
    if (kind !== 'video' || !this.sizes) return;
    if (track && tile.trackIds.video) this.sizes.observe(tile.video, tile.trackIds.video);
    else this.sizes.unobserve(tile.video);
  }

  wirePin(tile, participantId) {
    tile.pinButton.addEventListener('click', () => {
      this.setPinned(this.pinned === participantId ? null : participantId);
    });
  }

  wireStats(tile) {
    tile.renderStats = () => {
      if (!this.stats) return;
      tile.showStats(this.stats.forTrack(tile.trackIds.video), this.stats.estimate());
    };
  }

  /**
   * Sizes tiles (16:9) as large as the container allows, screen shares (twice as wide, first)
   * included: see `fitTileWidth`.
   */
  layout() {
    const items = [
      ...Array(this.screens.size).fill('screen'),
      ...Array(this.tiles.size + (this.localTile ? 1 : 0)).fill('tile'),
    ];
    this.container.dataset.count = items.length;
    // The speaker view is laid out by CSS alone: the stage fills what the strip leaves.
    if (this.view === 'speaker') return;
    const css = getComputedStyle(this.container);
    const px = (v) => parseFloat(v) || 0;
    const W = this.container.clientWidth - px(css.paddingLeft) - px(css.paddingRight);
    const H = this.container.clientHeight - px(css.paddingTop) - px(css.paddingBottom);
    if (!items.length || W <= 0 || H <= 0) return;
    const w = fitTileWidth(items, W, H, px(css.columnGap));
    this.container.style.setProperty('--tile-w', `${Math.floor(w)}px`);
  }

  /** Keeps the layout right as the window changes size. */
  observe() {
    if (this.resizeObserver || typeof ResizeObserver === 'undefined') return;
    this.resizeObserver = new ResizeObserver(() => this.layout());
    this.resizeObserver.observe(this.container);
  }
}
