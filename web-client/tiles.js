// The call grid: one tile per participant (plus our own preview), laid out to fill the space.
// A remote tile holds a <video data-participant="NAME"> (muted: its sound plays through the
// tile's <audio>, so video autoplay never depends on the audio autoplay policy), an <audio>,
// an avatar shown while there is no picture, and a caption with the name and mute badges.

const MIC_OFF_SVG = `<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M19 11a7 7 0 0 1-1.2 3.9l-1.5-1.5A5 5 0 0 0 17 11h2zM12 2a3 3 0 0 1 3 3v6l-.03.4L9 5.4V5a3 3 0 0 1 3-3zM3.3 2.3 21.7 20.7l-1.4 1.4-4.2-4.2A7 7 0 0 1 13 19v3h-2v-3a7 7 0 0 1-6-7h2a5 5 0 0 0 7.6 4.3l-1.5-1.5A3 3 0 0 1 9 11v-.8L1.9 3.7z"/></svg>`;
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

class Tile {
  constructor({ name, local = false }) {
    this.local = local;
    this.video = el('video', { autoplay: true, playsinline: true, muted: true });
    this.video.muted = true; // the attribute alone does not mute a srcObject in every browser
    this.audio = local ? null : el('audio', { autoplay: true });
    this.avatar = el('div', { class: 'avatar', 'aria-hidden': 'true' });
    this.nameEl = el('span', { class: 'name' });
    this.micBadge = el('span', { class: 'badge mic-off', title: 'Microphone muted', html: MIC_OFF_SVG });
    this.camBadge = el('span', { class: 'badge cam-off', title: 'Camera off', html: CAM_OFF_SVG });
    this.root = el('figure', { class: local ? 'tile local' : 'tile' }, [
      this.video,
      el('div', { class: 'placeholder' }, [this.avatar]),
      el('figcaption', {}, [this.nameEl, this.micBadge, this.camBadge]),
    ]);
    if (this.audio) this.root.append(this.audio);
    this.tracks = { audio: null, video: null };
    this.muted = { audio: false, video: false };
    this.video.addEventListener('resize', () => this.refresh());
    this.video.addEventListener('playing', () => this.refresh());
    this.video.addEventListener('emptied', () => this.refresh());
    this.setName(name);
    this.refresh();
  }

  setName(name) {
    this.name = name;
    this.nameEl.textContent = this.local ? `${name} (you)` : name;
    this.avatar.textContent = initials(name);
    this.avatar.style.setProperty('--hue', hue(name));
    if (!this.local) this.video.setAttribute('data-participant', name);
    else this.video.setAttribute('data-local', '');
    this.root.setAttribute('aria-label', this.local ? `You (${name})` : name);
  }

  setStream(stream) {
    this.video.srcObject = stream;
    this.tracks.video = stream && stream.getVideoTracks()[0] || null;
    this.tracks.audio = stream && stream.getAudioTracks()[0] || null;
    this.refresh();
  }

  /** Sets (or clears, with `null`) the received track of one kind. */
  setTrack(kind, track, onAudioBlocked) {
    if (this.tracks[kind] === track) return;
    this.tracks[kind] = track;
    const media = kind === 'video' ? this.video : this.audio;
    media.srcObject = track ? new MediaStream([track]) : null;
    if (track) {
      media.play().catch((e) => {
        if (e.name === 'NotAllowedError' && kind === 'audio' && onAudioBlocked) onAudioBlocked();
        else if (e.name !== 'AbortError') console.warn('tile: play failed', e);
      });
    }
    this.refresh();
  }

  setMuted(kind, muted) {
    this.muted[kind] = muted;
    this.refresh();
  }

  refresh() {
    const picture = this.tracks.video && !this.muted.video && this.video.videoWidth > 0;
    this.root.classList.toggle('has-video', Boolean(picture));
    this.micBadge.hidden = !this.muted.audio;
    this.camBadge.hidden = !this.muted.video;
  }

  /** Retries audio playback after a user gesture. */
  resumeAudio() {
    if (this.audio && this.audio.srcObject) return this.audio.play().catch(() => {});
    return Promise.resolve();
  }
}

export class TileGrid {
  constructor(container, { onAudioBlocked } = {}) {
    this.container = container;
    this.onAudioBlocked = onAudioBlocked;
    this.tiles = new Map(); // participant id -> Tile
    this.localTile = null;
    this.observe();
  }

  setLocal(name, stream) {
    if (!this.localTile) {
      this.localTile = new Tile({ name, local: true });
      this.container.prepend(this.localTile.root);
    }
    this.localTile.setName(name);
    this.localTile.setStream(stream);
    this.layout();
  }

  setLocalMuted(kind, muted) {
    if (this.localTile) this.localTile.setMuted(kind, muted);
  }

  /** Adds a participant's tile, or renames it if it exists. */
  upsert(participantId, name) {
    let tile = this.tiles.get(participantId);
    if (tile) {
      if (tile.name !== name) tile.setName(name);
      return tile;
    }
    tile = new Tile({ name });
    tile.root.dataset.participantId = participantId;
    this.tiles.set(participantId, tile);
    this.container.append(tile.root);
    this.layout();
    return tile;
  }

  remove(participantId) {
    const tile = this.tiles.get(participantId);
    if (!tile) return;
    tile.setTrack('video', null);
    tile.setTrack('audio', null);
    tile.root.remove();
    this.tiles.delete(participantId);
    this.layout();
  }

  setTrack(participantId, kind, track) {
    const tile = this.tiles.get(participantId);
    if (tile) tile.setTrack(kind, track, this.onAudioBlocked);
  }

  hasTracks(participantId) {
    const tile = this.tiles.get(participantId);
    return Boolean(tile && (tile.tracks.audio || tile.tracks.video));
  }

  setMuted(participantId, kind, muted) {
    const tile = this.tiles.get(participantId);
    if (tile) tile.setMuted(kind, muted);
  }

  resumeAudio() {
    return Promise.all([...this.tiles.values()].map((t) => t.resumeAudio()));
  }

  clear() {
    for (const id of [...this.tiles.keys()]) this.remove(id);
    if (this.localTile) {
      this.localTile.setStream(null);
      this.localTile.root.remove();
      this.localTile = null;
    }
    this.layout();
  }

  /**
   * Sizes tiles (16:9) as large as the container allows: tries every column count and keeps
   * the one that gives the biggest tile. Tiles flow in a centred, wrapping flex box.
   */
  layout() {
    const n = this.tiles.size + (this.localTile ? 1 : 0);
    this.container.dataset.count = n;
    const css = getComputedStyle(this.container);
    const px = (v) => parseFloat(v) || 0;
    const W = this.container.clientWidth - px(css.paddingLeft) - px(css.paddingRight);
    const H = this.container.clientHeight - px(css.paddingTop) - px(css.paddingBottom);
    if (!n || W <= 0 || H <= 0) return;
    const gap = px(css.columnGap);
    let best = 0;
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const cellW = (W - gap * (cols - 1)) / cols;
      const cellH = (H - gap * (rows - 1)) / rows;
      const w = Math.min(cellW, (cellH * 16) / 9);
      if (w > best) best = w;
    }
    this.container.style.setProperty('--tile-w', `${Math.floor(best)}px`);
  }

  /** Keeps the layout right as the window changes size. */
  observe() {
    if (this.resizeObserver || typeof ResizeObserver === 'undefined') return;
    this.resizeObserver = new ResizeObserver(() => this.layout());
    this.resizeObserver.observe(this.container);
  }
}
