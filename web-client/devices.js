// Cameras, microphones and speakers: which ones the user chose (remembered in localStorage),
// the getUserMedia constraints that open them, the device pickers, and a microphone level
// meter. The call switches devices with `replaceTrack` (call.js), without renegotiating.

const PREFS_KEY = 'switchboard.devices';

// Simulcast needs the full 1280x720 from the camera, or the top layer is never sent.
export const VIDEO_SIZE = { width: 1280, height: 720 };

/** Device kinds as `enumerateDevices` names them, by what the user calls them. */
export const DEVICE_KINDS = { camera: 'videoinput', microphone: 'audioinput', speaker: 'audiooutput' };

/**
 * The remembered choices: `{camera, microphone, speaker}` device ids (absent: the default),
 * and whether to join with the camera and microphone on (`cameraOn`, `micOn`, default true).
 * Anything malformed in storage is ignored: it may be from an older version, or edited.
 */
export function loadPrefs(storage = globalThis.localStorage) {
  let raw = null;
  try {
    raw = JSON.parse(storage.getItem(PREFS_KEY) || 'null');
  } catch {
    raw = null;
  }
  const prefs = { camera: null, microphone: null, speaker: null, cameraOn: true, micOn: true };
  if (!raw || typeof raw !== 'object') return prefs;
  for (const k of ['camera', 'microphone', 'speaker']) {
    if (typeof raw[k] === 'string' && raw[k].length <= 512) prefs[k] = raw[k];
  }
  for (const k of ['cameraOn', 'micOn']) if (typeof raw[k] === 'boolean') prefs[k] = raw[k];
  return prefs;
}

export function savePrefs(changes, storage = globalThis.localStorage) {
  const prefs = { ...loadPrefs(storage), ...changes };
  try {
    storage.setItem(PREFS_KEY, JSON.stringify(prefs));
  } catch {
    // private mode or full: the choice lasts this page only
  }
  return prefs;
}

/**
 * getUserMedia constraints for one kind ('audio' | 'video') on `deviceId` (null: default).
 * A remembered device is `ideal`: if it was unplugged, another opens instead of the join
 * failing. A device the user picks now is `exact` (`exact: true`): the browser may otherwise
 * prefer one that fits the other constraints as well.
 */
export function constraintsFor(kind, deviceId, { exact = false } = {}) {
  const base = kind === 'video' ? { ...VIDEO_SIZE } : {};
  if (deviceId) base.deviceId = exact ? { exact: deviceId } : { ideal: deviceId };
  return { [kind]: Object.keys(base).length ? base : true };
}

/** `{camera: [...], microphone: [...], speaker: [...]}` of `{deviceId, label}`. */
export async function listDevices() {
  const out = { camera: [], microphone: [], speaker: [] };
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return out;
  const all = await navigator.mediaDevices.enumerateDevices();
  for (const [name, kind] of Object.entries(DEVICE_KINDS)) {
    let n = 0;
    for (const d of all) {
      if (d.kind !== kind || !d.deviceId) continue;
      n += 1;
      out[name].push({ deviceId: d.deviceId, label: d.label || `${name[0].toUpperCase()}${name.slice(1)} ${n}` });
    }
  }
  return out;
}

/** Whether this browser can choose where audio plays (`setSinkId`). */
export function canChooseSpeaker() {
  return typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;
}

/**
 * Fills a <select> with `devices` (labels as text, never HTML), selecting `chosen` or, when it
 * is gone, the device `current` (the one in use).
 */
export function fillSelect(select, devices, chosen, current = null) {
  const keep = [chosen, current, select.value].find((id) => id && devices.some((d) => d.deviceId === id));
  select.replaceChildren(...devices.map((d) => {
    const o = document.createElement('option');
    o.value = d.deviceId;
    o.textContent = d.label;
    return o;
  }));
  if (keep) select.value = keep;
  select.disabled = devices.length === 0;
}

/** The device id a track was opened on, if the browser says. */
export function deviceOf(track) {
  if (!track || !track.getSettings) return null;
  return track.getSettings().deviceId || null;
}

/**
 * A microphone level meter: reads `track` through an AnalyserNode and shows its level
 * (0..1, RMS scaled) as the width of `bar` and the meter's `data-level`.
 */
export class LevelMeter {
  constructor(meter) {
    this.meter = meter;
    this.bar = meter.querySelector('.level-bar');
    this.ctx = null;
    this.timer = null;
    this.level = 0;
  }

  attach(track) {
    this.detach();
    if (!track || typeof AudioContext === 'undefined') return;
    this.ctx = new AudioContext();
    const source = this.ctx.createMediaStreamSource(new MediaStream([track]));
    const analyser = this.ctx.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    // A timer, not requestAnimationFrame: it must keep working in a background tab.
    this.timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const rms = Math.sqrt(sum / samples.length);
      this.show(track.enabled ? Math.min(1, rms * 4) : 0);
    }, 100);
    // An AudioContext made without a user gesture starts suspended in most browsers: the
    // meter then wakes at the first click or key on the page.
    const ctx = this.ctx;
    const wake = () => ctx.resume().catch(() => {});
    wake();
    for (const ev of ['pointerdown', 'keydown']) document.addEventListener(ev, wake, { once: true });
  }

  show(level) {
    this.level = level;
    this.meter.dataset.level = level.toFixed(2);
    this.meter.setAttribute('aria-valuenow', String(Math.round(level * 100)));
    if (this.bar) this.bar.style.width = `${Math.round(level * 100)}%`;
  }

  detach() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.ctx) this.ctx.close().catch(() => {});
    this.ctx = null;
    this.show(0);
  }
}
