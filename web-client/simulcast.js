// How the camera is encoded, and dynacast: turning simulcast layers on and off as the server
// asks (`publisher_layers`, docs/protocol.md).
//
// Three encodings, lowest first, with rids `q`/`h`/`f`. `scaleResolutionDownBy` is set on every
// encoding on purpose: without it Chromium picks its own layer order and sizes
// (/work/shared/FIELD-NOTES.md, "Simulcast traps").

export const CAMERA_LAYERS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 2_000_000 }),
]);

/** `sendEncodings` for the camera: three simulcast layers, or one full-size encoding. */
export function cameraEncodings(simulcast = true) {
  if (!simulcast) return [{ scaleResolutionDownBy: 1 }];
  return CAMERA_LAYERS.map((layer) => ({ ...layer, active: true }));
}

/**
 * Applies `active` flags to a copy of `encodings` so that exactly the rids in `wanted` are
 * active (an empty list: nobody wants the video, all inactive). Encodings without a rid (no
 * simulcast) are left alone. Returns `{encodings, changed}`.
 */
export function withActiveLayers(encodings, wanted) {
  const want = new Set(wanted);
  let changed = false;
  const out = encodings.map((e) => {
    if (!e.rid) return e;
    const active = want.has(e.rid);
    if (e.active === active) return e;
    changed = true;
    return { ...e, active };
  });
  return { encodings: out, changed };
}

/**
 * Owns the `RTCRtpSender` parameters of one simulcast sender. Every change goes through one
 * promise chain, because `getParameters()`/`setParameters()` is a transaction that a second
 * concurrent call would invalidate; the latest wish wins.
 */
export class SenderLayers {
  constructor(sender, { simulcast }) {
    this.sender = sender;
    this.simulcast = simulcast;
    this.wanted = null; // null: never told; else array of rids
    this.chain = Promise.resolve();
    this.fallbackDone = false;
  }

  /** Dynacast: only the rids in `active` are wanted by anyone. */
  setActive(active) {
    this.wanted = Array.isArray(active) ? active.filter((r) => typeof r === 'string') : [];
    return this.run(() => this.applyActive());
  }

  /**
   * After a negotiation: if the server declined simulcast, the browser keeps only the first
   * (quarter-size, 150 kbps) encoding. Send that one at full size instead.
   */
  afterNegotiation() {
    if (!this.simulcast || this.fallbackDone) return this.chain;
    return this.run(async () => {
      const params = this.params();
      if (!params || params.encodings.length !== 1 || this.fallbackDone) return;
      const [e] = params.encodings;
      if ((e.scaleResolutionDownBy || 1) === 1) return;
      this.fallbackDone = true;
      console.warn('simulcast: the server declined simulcast; sending one full-size encoding');
      params.encodings = [{ ...e, scaleResolutionDownBy: 1, maxBitrate: CAMERA_LAYERS[CAMERA_LAYERS.length - 1].maxBitrate, active: true }];
      await this.sender.setParameters(params);
    });
  }

  /** Current `active` flag per rid, for tests and the UI. */
  activeLayers() {
    const params = this.params();
    if (!params) return {};
    return Object.fromEntries(params.encodings.filter((e) => e.rid).map((e) => [e.rid, e.active !== false]));
  }

  params() {
    if (typeof this.sender.getParameters !== 'function') return null;
    const params = this.sender.getParameters();
    if (!params || !Array.isArray(params.encodings) || params.encodings.length === 0) return null;
    return params;
  }

  async applyActive() {
    if (this.wanted == null || typeof this.sender.setParameters !== 'function') return;
    for (let attempt = 0; attempt < 2; attempt++) {
      const params = this.params();
      if (!params || !params.encodings.some((e) => e.rid)) return; // not simulcast: nothing to switch
      const { encodings, changed } = withActiveLayers(params.encodings, this.wanted);
      if (!changed) return;
      params.encodings = encodings;
      try {
        await this.sender.setParameters(params);
        console.info(`simulcast: active layers now ${JSON.stringify(this.wanted)}`);
        return;
      } catch (e) {
        // A renegotiation between get and set invalidates the transaction: read again once.
        if (e.name !== 'InvalidModificationError' && e.name !== 'InvalidStateError') throw e;
        if (attempt === 1) throw e;
      }
    }
  }

  run(step) {
    this.chain = this.chain.then(step).catch((e) => console.warn('simulcast: setParameters failed', e));
    return this.chain;
  }
}
