// Tells the server at what size each remote video is shown (`video_size`, docs/protocol.md),
// so that it sends no simulcast layer much larger than that.
//
// The size is the element's CSS size times devicePixelRatio, in whole device pixels; it is
// 0x0 while the element is off-screen or clipped away (IntersectionObserver), has no size
// (hidden), or while the page is hidden. Changes are debounced and only meaningful ones sent.

/** Relative change below which a new size is not worth a message. */
const MIN_RELATIVE_CHANGE = 0.1;

/** Whether going from `prev` to `next` ({width, height}) is worth telling the server. */
export function sizeChanged(prev, next) {
  if (!prev) return true;
  const wasZero = prev.width === 0 || prev.height === 0;
  const isZero = next.width === 0 || next.height === 0;
  if (wasZero || isZero) return wasZero !== isZero;
  const rel = (a, b) => Math.abs(a - b) / Math.max(a, 1);
  return rel(prev.width, next.width) >= MIN_RELATIVE_CHANGE || rel(prev.height, next.height) >= MIN_RELATIVE_CHANGE;
}

/** Device-pixel size of a rectangle, or 0x0 when it is not shown. */
export function devicePixels(rect, dpr, shown) {
  if (!shown || !rect || rect.width <= 0 || rect.height <= 0) return { width: 0, height: 0 };
  const ratio = dpr > 0 ? dpr : 1;
  return { width: Math.round(rect.width * ratio), height: Math.round(rect.height * ratio) };
}

export class SizeReporter {
  /**
   * `send({track_id, width, height})` delivers one report (returns nothing); `debounceMs` is
   * how long sizes must stay put before they are sent.
   */
  constructor({ send, debounceMs = 300 }) {
    this.send = send;
    this.debounceMs = debounceMs;
    this.watched = new Map(); // element -> {trackId, intersecting}
    this.sent = new Map(); // track id -> {width, height} last sent
    this.timer = null;
    this.closed = false;
    this.schedule = this.schedule.bind(this);
    this.resizeObserver = typeof ResizeObserver === 'function' ? new ResizeObserver(this.schedule) : null;
    this.intersectionObserver = typeof IntersectionObserver === 'function'
      ? new IntersectionObserver((entries) => {
        for (const e of entries) {
          const w = this.watched.get(e.target);
          if (w) w.intersecting = e.isIntersecting;
        }
        this.schedule();
      })
      : null;
    document.addEventListener('visibilitychange', this.schedule);
    window.addEventListener('resize', this.schedule); // also fires when devicePixelRatio changes (zoom)
  }

  /** Starts reporting the size of `element`, which shows remote video track `trackId`. */
  observe(element, trackId) {
    const current = this.watched.get(element);
    if (current && current.trackId === trackId) return;
    if (current) this.unobserve(element);
    this.watched.set(element, { trackId, intersecting: true });
    if (this.resizeObserver) this.resizeObserver.observe(element);
    if (this.intersectionObserver) this.intersectionObserver.observe(element);
    this.schedule();
  }

  /** Stops reporting for `element` (its track went away: the server forgets it too). */
  unobserve(element) {
    const w = this.watched.get(element);
    if (!w) return;
    this.watched.delete(element);
    if (this.resizeObserver) this.resizeObserver.unobserve(element);
    if (this.intersectionObserver) this.intersectionObserver.unobserve(element);
    this.sent.delete(w.trackId);
  }

  schedule() {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), this.debounceMs);
  }

  /** Sends every size that changed meaningfully since it was last sent. */
  flush() {
    if (this.closed) return;
    const pageShown = document.visibilityState !== 'hidden';
    for (const [element, w] of this.watched) {
      const shown = pageShown && w.intersecting && element.isConnected;
      const size = devicePixels(element.getBoundingClientRect(), window.devicePixelRatio, shown);
      if (!sizeChanged(this.sent.get(w.trackId), size)) continue;
      this.sent.set(w.trackId, size);
      this.send({ track_id: w.trackId, ...size });
    }
  }

  /** Last size sent per track id, for tests and debugging. */
  snapshot() {
    return Object.fromEntries(this.sent);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.resizeObserver) this.resizeObserver.disconnect();
    if (this.intersectionObserver) this.intersectionObserver.disconnect();
    document.removeEventListener('visibilitychange', this.schedule);
    window.removeEventListener('resize', this.schedule);
    this.watched.clear();
    this.sent.clear();
  }
}
