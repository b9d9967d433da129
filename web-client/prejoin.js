// The pre-join screen: a preview of the camera, a microphone level meter, the camera and
// microphone pickers and on/off toggles, next to the room and name fields of the join form.
// What it opened is handed to the call on join (`take()`), so the browser does not open the
// devices twice. The autojoin URL skips it (app.js never starts it).

import {
  LevelMeter, constraintsFor, deviceOf, fillSelect, listDevices, loadPrefs, savePrefs,
} from './devices.js';

const $ = (id) => document.getElementById(id);

export class Prejoin {
  constructor({ toast }) {
    this.toast = toast;
    this.video = $('preview-video');
    this.meter = new LevelMeter($('mic-level'));
    this.selects = { camera: $('prejoin-camera'), microphone: $('prejoin-microphone') };
    this.tracks = { audio: null, video: null };
    const prefs = loadPrefs();
    this.on = { audio: prefs.micOn, video: prefs.cameraOn };
    this.active = false;
    $('preview-mic').addEventListener('click', () => this.toggle('audio'));
    $('preview-cam').addEventListener('click', () => this.toggle('video'));
    for (const [name, select] of Object.entries(this.selects)) {
      select.addEventListener('change', () => {
        savePrefs({ [name]: select.value });
        this.open(name === 'camera' ? 'video' : 'audio', { exact: true });
      });
    }
    this.onDeviceChange = () => { if (this.active) this.refreshDevices(); };
    if (navigator.mediaDevices) navigator.mediaDevices.addEventListener?.('devicechange', this.onDeviceChange);
    this.render();
  }

  /** Opens the preview (camera and microphone as remembered). */
  async start() {
    if (this.active) return;
    this.active = true;
    await Promise.all([this.open('video'), this.open('audio')]);
    await this.refreshDevices();
  }

  /** (Re)opens the device of `kind` the picker names; leaves it closed while toggled off. */
  async open(kind, { exact = false } = {}) {
    if (!this.active) return;
    this.close(kind);
    if (!this.on[kind] || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.render();
      return;
    }
    const prefs = loadPrefs();
    const deviceId = kind === 'video' ? prefs.camera : prefs.microphone;
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraintsFor(kind, deviceId, { exact }));
      const track = stream.getTracks()[0];
      if (!this.active || !this.on[kind]) {
        track.stop();
        return;
      }
      this.close(kind);
      this.tracks[kind] = track;
      if (kind === 'audio') this.meter.attach(track);
      else this.video.srcObject = new MediaStream([track]);
      // Labels are empty until a device was opened once: fill the pickers again.
      await this.refreshDevices();
    } catch (e) {
      this.toast(`Could not use your ${kind === 'video' ? 'camera' : 'microphone'} (${e.message || e.name}).`, 'warn');
    }
    this.render();
  }

  close(kind) {
    const t = this.tracks[kind];
    if (t) t.stop();
    this.tracks[kind] = null;
    if (kind === 'audio') this.meter.detach();
    else this.video.srcObject = null;
  }

  toggle(kind) {
    this.on[kind] = !this.on[kind];
    savePrefs(kind === 'audio' ? { micOn: this.on.audio } : { cameraOn: this.on.video });
    if (this.on[kind]) this.open(kind);
    else {
      this.close(kind);
      this.render();
    }
  }

  async refreshDevices() {
    const devices = await listDevices().catch(() => ({ camera: [], microphone: [] }));
    const prefs = loadPrefs();
    fillSelect(this.selects.camera, devices.camera, prefs.camera, deviceOf(this.tracks.video));
    fillSelect(this.selects.microphone, devices.microphone, prefs.microphone, deviceOf(this.tracks.audio));
  }

  render() {
    for (const [kind, id, what] of [['audio', 'preview-mic', 'microphone'], ['video', 'preview-cam', 'camera']]) {
      const button = $(id);
      const on = this.on[kind];
      button.classList.toggle('off', !on);
      button.setAttribute('aria-pressed', String(!on));
      const label = `Turn ${what} ${on ? 'off' : 'on'}`;
      button.setAttribute('aria-label', label);
      button.title = label;
    }
    $('preview-off').hidden = Boolean(this.tracks.video);
    $('preview-off').textContent = this.on.video ? 'No camera' : 'Camera is off';
  }

  /**
   * Hands the open devices to the call: `{stream, audio, video}` where `audio`/`video` say
   * whether to start them on. A device toggled off is not open; the call publishes what it
   * gets.
   */
  take() {
    const tracks = [this.tracks.audio, this.tracks.video].filter(Boolean);
    this.tracks = { audio: null, video: null };
    this.meter.detach();
    this.video.srcObject = null;
    this.active = false;
    return { stream: tracks.length ? new MediaStream(tracks) : null, audio: this.on.audio, video: this.on.video };
  }

  stop() {
    this.close('audio');
    this.close('video');
    this.active = false;
  }
}
