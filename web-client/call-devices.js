// Cameras, microphones and speakers during the call: the Devices panel's pickers, switching
// with `replaceTrack` (no renegotiation: the others keep receiving the same track), opening
// a device the participant joined without (published then, which renegotiates once), and
// the speaker through `setSinkId`. Every choice is remembered (devices.js).

import {
  canChooseSpeaker, constraintsFor, deviceOf, fillSelect, listDevices, loadPrefs, savePrefs,
} from './devices.js';

const $ = (id) => document.getElementById(id);
const WHAT = { video: 'camera', audio: 'microphone' };

export class CallDevices {
  /**
   * `current()`: the session (`{call, stream, name}`) or null; `grid`: the TileGrid (our
   * tile, the speaker); `toast(text)`; `changed(session)`: after a device was added.
   */
  constructor({ current, grid, toast, changed }) {
    this.current = current;
    this.grid = grid;
    this.toast = toast;
    this.changed = changed;
  }

  /** Opens the remembered device of `kind` ('audio' | 'video') and publishes it. */
  async add(s, kind) {
    const prefs = loadPrefs();
    let track;
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraintsFor(kind, kind === 'video' ? prefs.camera : prefs.microphone));
      track = stream.getTracks()[0];
    } catch (e) {
      this.toast(`Could not use your ${WHAT[kind]} (${e.message || e.name}).`);
      return;
    }
    if (this.current() !== s || !s.call || s.call.closed || s.call.local.has(kind)) {
      track.stop();
      return;
    }
    if (!s.stream) s.stream = new MediaStream();
    s.stream.addTrack(track);
    s.call.publish(new MediaStream([track]));
    this.grid.setLocal(s.name, s.stream);
    this.changed(s);
  }

  /**
   * Switches to another camera ('camera'), microphone ('microphone') or speaker ('speaker')
   * and remembers it; returns whether the call now uses it.
   */
  async switchTo(name, deviceId) {
    savePrefs({ [name]: deviceId });
    const s = this.current();
    if (!s || !s.call) return false;
    if (name === 'speaker') {
      await this.grid.setSinkId(deviceId);
      return true;
    }
    const kind = name === 'camera' ? 'video' : 'audio';
    if (!s.call.local.has(kind)) {
      await this.add(s, kind);
      return s.call.local.has(kind);
    }
    let track;
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraintsFor(kind, deviceId, { exact: true }));
      track = stream.getTracks()[0];
    } catch (e) {
      this.toast(`Could not switch to that ${name} (${e.message || e.name}).`);
      return false;
    }
    if (this.current() !== s || !s.call || s.call.closed) {
      track.stop();
      return false;
    }
    const old = await s.call.replaceTrack(kind, track);
    if (s.stream) {
      if (old) s.stream.removeTrack(old);
      s.stream.addTrack(track);
    }
    this.grid.setLocal(s.name, s.stream);
    console.info(`switchboard: now sending ${name} ${track.label || deviceId}`);
    return true;
  }

  /** Fills the Devices panel's pickers, the devices in use selected. */
  async refresh() {
    const devices = await listDevices().catch(() => ({ camera: [], microphone: [], speaker: [] }));
    const prefs = loadPrefs();
    const s = this.current();
    const inUse = (kind) => (s && s.call && s.call.local.get(kind) ? deviceOf(s.call.local.get(kind).track) : null);
    fillSelect($('settings-camera'), devices.camera, prefs.camera, inUse('video'));
    fillSelect($('settings-microphone'), devices.microphone, prefs.microphone, inUse('audio'));
    const speakers = canChooseSpeaker() ? devices.speaker : [];
    fillSelect($('settings-speaker'), speakers, prefs.speaker);
    $('settings-speaker-note').hidden = speakers.length > 0;
  }
}
