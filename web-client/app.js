// Entry point: the pre-join screen (prejoin.js) with the join form, the call view and the
// wiring between the signaling connection (signaling.js), the peer connection (call.js), the
// tile grid (tiles.js), chat (chat.js), hands and reactions (reactions.js), devices
// (devices.js, call-devices.js) and connection quality (quality.js).
//
// Keyboard: Ctrl+D (Cmd+D) mutes or unmutes the microphone, Ctrl+E (Cmd+E) the camera, as in
// Google Meet.
//
// `/?room=R&name=N&autojoin=1` joins at once with camera and microphone, skipping the pre-join
// screen. More flags, mostly for
// tests and debugging:
//   `simulcast=0`               send the camera as one encoding instead of q/h/f
//   `publish=audio|video|none`  publish only that (default: camera and microphone)
//   `tile=WxH`                  show remote camera tiles at a fixed CSS size (e.g. 320x180)
//   `codec=vp8|h264|vp9|av1`    publish the camera with that codec if the browser can (else VP8);
//                               VP9 and AV1 go as one scalable encoding
//   `scalability=L1T3|L3T3|L3T3_KEY`  VP9's or AV1's scalability mode (default L3T3_KEY)

import { Signaling, signalingUrl } from './signaling.js';
import { Call } from './call.js';
import { readCodecOptions } from './codecs.js';
import { TileGrid, parseTileSize } from './tiles.js';
import { SizeReporter } from './sizes.js';
import { StatsStore } from './stats.js';
import { ChatPanel } from './chat.js';
import { Prejoin } from './prejoin.js';
import { canChooseSpeaker, constraintsFor, listDevices, loadPrefs } from './devices.js';
import { CallDevices } from './call-devices.js';
import { REACTIONS, REACTION_MS, handPayload, parseSignal, reactionPayload } from './reactions.js';
import { QUALITY_INTERVAL_MS, QualityMonitor } from './quality.js';

const $ = (id) => document.getElementById(id);

const ROOM_RE = /^[A-Za-z0-9._-]{1,64}$/;
// Cc: control characters, as the server rejects them.
const CONTROL_RE = /\p{Cc}/u;

/** Returns an error message, or null when the room name is acceptable to the server. */
export function roomProblem(room) {
  if (!room) return 'Enter a room name.';
  if (!ROOM_RE.test(room)) return 'Room names use letters, digits, "-", "_" and "." (up to 64).';
  return null;
}

export function nameProblem(name) {
  if (!name || !name.trim()) return 'Enter your name.';
  if (Array.from(name).length > 64) return 'Names are at most 64 characters.';
  if (CONTROL_RE.test(name)) return 'Names cannot contain control characters.';
  return null;
}

// --- status and messages -------------------------------------------------------------------

function setStatus(which, text, level) {
  const item = $(which === 'signaling' ? 'status-signaling' : 'status-media');
  item.dataset.state = level;
  item.querySelector('.value').textContent = text;
}

const SIGNALING_STATUS = {
  connecting: ['connecting', 'pending'],
  open: ['connected', 'ok'],
  closed: ['disconnected', 'bad'],
};

const MEDIA_LEVEL = {
  new: 'pending', connecting: 'pending', checking: 'pending', connected: 'ok', completed: 'ok',
  disconnected: 'warn', failed: 'bad', closed: 'idle',
};

function showMediaState({ connectionState, iceConnectionState, signalingState }) {
  const item = $('status-media');
  setStatus('media', connectionState, MEDIA_LEVEL[connectionState] || 'pending');
  item.title = `Peer connection: ${connectionState}, ICE: ${iceConnectionState}, signaling: ${signalingState}`;
}

/** Shows a message to the user for a while. */
function toast(text, level = 'error') {
  const box = document.createElement('div');
  box.className = `toast ${level}`;
  const msg = document.createElement('span');
  msg.textContent = text;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'toast-close';
  close.setAttribute('aria-label', 'Dismiss');
  close.textContent = '×';
  close.addEventListener('click', () => box.remove());
  box.append(msg, close);
  $('toasts').append(box);
  setTimeout(() => box.remove(), level === 'error' ? 10000 : 5000);
  (level === 'error' ? console.error : console.info)('switchboard:', text);
}

function describeServerError(msg) {
  return msg.message ? `${msg.message} (${msg.code})` : `Server error: ${msg.code}`;
}

// --- media ---------------------------------------------------------------------------------

/** Reads the URL flags described at the top. */
export function readOptions(params) {
  const publish = (params.get('publish') || 'all').toLowerCase();
  return {
    simulcast: params.get('simulcast') !== '0',
    audio: publish === 'all' || publish === 'audio',
    video: publish === 'all' || publish === 'video',
    fixedTile: parseTileSize(params.get('tile')),
    // `relay=udp|tcp`: only TURN relay candidates over that transport (testing TURN paths).
    relay: ['udp', 'tcp'].includes(params.get('relay')) ? params.get('relay') : null,
    ...readCodecOptions(params),
  };
}

const options = readOptions(new URLSearchParams(location.search));

/**
 * Camera and microphone (as far as `options` wants them); falls back to either alone, or to
 * nothing (watch only).
 */
async function getLocalMedia({ audio, video }) {
  if (!audio && !video) return null;
  const prefs = loadPrefs();
  const videoConstraints = constraintsFor('video', prefs.camera).video;
  const audioConstraints = constraintsFor('audio', prefs.microphone).audio;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    toast('This page cannot use the camera here (it needs https or localhost). Joining to watch only.');
    return null;
  }
  if (!audio || !video) {
    try {
      return await navigator.mediaDevices.getUserMedia(audio ? { audio: audioConstraints } : { video: videoConstraints });
    } catch (e) {
      toast(`Could not use your ${audio ? 'microphone' : 'camera'} (${e.message || e.name}). Joining to watch only.`);
      return null;
    }
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ video: videoConstraints, audio: audioConstraints });
  } catch (both) {
    for (const [constraints, missing] of [[{ audio: audioConstraints }, 'camera'], [{ video: videoConstraints }, 'microphone']]) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        toast(`Could not use your ${missing} (${both.message || both.name}).`, 'warn');
        return stream;
      } catch {
        // try the next
      }
    }
    toast(`Could not use your camera or microphone (${both.message || both.name}). Joining to watch only.`);
    return null;
  }
}

// --- the session ---------------------------------------------------------------------------

let session = null;

const stats = new StatsStore();
const grid = new TileGrid($('grid'), {
  onAudioBlocked: () => { $('audio-button').hidden = false; },
  // Pinning tells the server to serve that video first (`pin`, docs/protocol.md), and
  // puts it on the stage of the speaker view.
  onPin: (participantId) => {
    const s = session;
    if (s && s.signaling && s.signaling.state === 'open') s.signaling.notify({ type: 'pin', participant_id: participantId });
    if (participantId) setView('speaker');
  },
  stats,
  fixedTile: options.fixedTile,
});

const chat = new ChatPanel({
  panel: $('chat-panel'),
  toggle: $('chat-button'),
  // Sent with an id so that a refusal (`rate_limited`, `forbidden`, ...) comes back as an
  // `error` message and is shown.
  send: (payload) => sendData(payload),
});

/** Sends app data (`data`) to the room, or to the participant ids in `to`. */
function sendData(payload, to = undefined) {
  const s = session;
  if (!s || !s.signaling || s.signaling.state !== 'open') {
    toast('Not connected: the message was not sent.');
    return false;
  }
  try {
    s.signaling.send({ type: 'data', payload, ...(to ? { to } : {}) }, { withId: true });
    return true;
  } catch (e) {
    toast(`The message was not sent (${e.message || e}).`);
    return false;
  }
}

const prejoin = new Prejoin({ toast });

function showView(which) {
  $('join-view').hidden = which !== 'join';
  $('call-view').hidden = which !== 'call';
  $('room-label').hidden = which !== 'call';
  $('invite-button').hidden = which !== 'call';
  document.body.dataset.view = which;
  if (which === 'call') grid.layout();
}

function setJoinError(text) {
  const p = $('join-error');
  p.textContent = text || '';
  p.hidden = !text;
}

/**
 * Joins `room` as `name`. `prepared` is what the pre-join screen opened (`{stream, audio,
 * video}`: the stream and whether to start with the microphone and camera on); without it
 * (autojoin, rejoin) the devices are opened here as the URL flags say.
 */
async function join(room, name, prepared = null) {
  if (session) return;
  const problem = roomProblem(room) || nameProblem(name);
  if (problem) {
    setJoinError(problem);
    return;
  }
  setJoinError('');
  // Joining without the pre-join screen's devices (autojoin, rejoin): its preview closes.
  if (!prepared) prejoin.stop();
  const button = $('join-button');
  button.disabled = true;
  button.textContent = 'Joining…';
  const s = {
    room, name, stream: null, signaling: null, call: null, participants: new Map(), gone: new Set(), left: false,
    startMuted: { audio: prepared ? !prepared.audio : false, video: prepared ? !prepared.video : false },
    hand: false, quality: new QualityMonitor({ grid, stats }),
  };
  session = s;
  try {
    s.stream = prepared ? prepared.stream : await getLocalMedia(options);
    s.signaling = new Signaling(signalingUrl());
    s.signaling.addEventListener('state', (ev) => {
      if (session === s) setStatus('signaling', ...SIGNALING_STATUS[ev.detail]);
      else setStatus('signaling', 'idle', 'idle');
    });
    await s.signaling.connect();
    // An access token from the page URL (?token=...), for servers with an API secret.
    const token = new URLSearchParams(location.search).get('token') || undefined;
    const joined = await s.signaling.request({ type: 'join', room, name, token });
    // Nothing awaits from here until every listener is in place, so no message is missed.
    startCall(s, joined);
  } catch (e) {
    console.error('switchboard: join failed', e);
    setJoinError(e.name === 'ServerError' ? `The server refused: ${e.message} (${e.code})` : e.message);
    teardown(s);
  } finally {
    button.disabled = false;
    button.textContent = 'Join';
  }
}

function startCall(s, joined) {
  s.participantId = joined.participant_id;
  s.resumeToken = joined.resume_token;
  $('room-label').textContent = joined.room || s.room;
  history.replaceState(null, '', `?room=${encodeURIComponent(s.room)}`);
  showView('call');
  grid.setLocal(s.name, s.stream);
  s.sizes = new SizeReporter({
    send: (size) => {
      stats.debug.sizes[size.track_id] = { width: size.width, height: size.height };
      s.signaling.notify({ type: 'video_size', ...size });
    },
  });
  grid.setSizeReporter(s.sizes);

  for (const p of joined.participants || []) addParticipant(s, p);

  s.signaling.addEventListener('message', (ev) => onServerMessage(s, ev.detail));
  s.signaling.addEventListener('close', (ev) => {
    if (session !== s || ev.detail.clean) {
      if (session === s) teardown(s);
      return;
    }
    if (SESSION_ENDED_CODES.has(ev.detail.code)) {
      // The server ended the session on purpose: say why, and go back to the join form.
      toast(`The server ended the call (${ev.detail.code}${ev.detail.reason ? `: ${ev.detail.reason}` : ''}).`);
      teardown(s);
      return;
    }
    // 4000 (media timed out), 4003 (idle) and 1012 (the server is draining): the session is
    // gone, but the user still wants the call: join again (behind a load balancer, on another
    // server). Anything else is a dropped connection: resume.
    reconnect(s, { resume: !REJOIN_CODES.has(ev.detail.code) });
  });

  s.call = new Call({
    signaling: s.signaling,
    iceServers: joined.ice_servers || [],
    simulcast: options.simulcast,
    relay: options.relay,
    codec: options.codec,
    scalability: options.scalability,
  });
  stats.debug.cameraLayers = () => (s.call ? s.call.cameraLayers() : {});
  stats.debug.unsupported = () => [...s.signaling.unsupported];
  s.call.addEventListener('state', (ev) => showMediaState(ev.detail));
  s.call.addEventListener('error', (ev) => toast(ev.detail.message || String(ev.detail)));
  s.call.addEventListener('trackadded', (ev) => {
    const { participantId, trackId, kind, track } = ev.detail;
    // A server offer still carrying a participant that has since left: its removal follows.
    if (s.gone.has(participantId)) return;
    const p = s.participants.get(participantId);
    const name = p ? p.name : 'Guest';
    const info = p && p.tracks.get(trackId);
    grid.upsert(participantId, name);
    if (isScreenTrack(s, ev.detail, info)) {
      grid.addScreen(participantId, trackId, name, track);
      if (info) grid.setScreenMuted(trackId, info.muted);
      return;
    }
    grid.setTrack(participantId, kind, track, trackId);
    if (info) grid.setMuted(participantId, kind, info.muted);
  });
  s.call.addEventListener('trackremoved', (ev) => {
    const { participantId, kind, trackId } = ev.detail;
    if (grid.isScreen(trackId)) {
      grid.removeScreen(trackId);
      return;
    }
    grid.setTrack(participantId, kind, null);
    // A tile made for tracks of a participant we were never told about goes with its tracks.
    if (!s.participants.has(participantId) && !grid.hasTracks(participantId)) grid.remove(participantId);
  });
  s.call.addEventListener('screenended', () => updateControls(s));
  s.call.publish(s.stream);
  // Joined from the pre-join screen with the microphone or camera toggled off: it is open
  // but not sent (the server is told with `mute`).
  for (const kind of ['audio', 'video']) if (s.startMuted[kind]) s.call.setMuted(kind, true);
  updateControls(s);
  grid.setView(currentView);
  s.qualityTimer = setInterval(() => s.quality.sample(s.call), QUALITY_INTERVAL_MS);

  s.keepalive = setInterval(() => {
    if (s.signaling.state === 'open') s.signaling.request({ type: 'ping' }).catch(() => {});
  }, 20000);
}

/** Close codes by which the server ends a session on purpose (docs/protocol.md). */
const SESSION_ENDED_CODES = new Set([1003, 1008, 1009, 4001, 4002]);
/** Close codes after which the session is gone but joining again should recover the call. */
const REJOIN_CODES = new Set([4000, 4003, 1012]);
/** Backoff between reconnection attempts, in ms; the last one repeats. */
const RECONNECT_BACKOFF_MS = [250, 500, 1000, 2000, 4000];
/** The server keeps a dropped session this long (its default --resume-grace). */
const RESUME_WINDOW_MS = 30_000;

/**
 * The signaling connection dropped (not closed by either side on purpose): reconnect with
 * backoff and resume the session, media untouched. If the session is gone (the server
 * restarted, or the grace period passed), join the room again from scratch.
 */
async function reconnect(s, { resume = true } = {}) {
  // Failed attempts close the socket again; one loop handles them all.
  if (s.reconnecting) return;
  s.reconnecting = true;
  try {
    await reconnectLoop(s, resume);
  } finally {
    s.reconnecting = false;
  }
}

async function reconnectLoop(s, resume) {
  const started = Date.now();
  setStatus('signaling', 'reconnecting', 'pending');
  for (let attempt = 0; resume && session === s; attempt++) {
    await sleep(RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)]);
    if (session !== s) return;
    try {
      await s.signaling.connect();
    } catch {
      continue; // the server is not reachable (yet): keep trying
    }
    if (Date.now() - started > RESUME_WINDOW_MS) break;
    try {
      const resumed = await s.signaling.request({
        type: 'resume',
        participant_id: s.participantId,
        resume_token: s.resumeToken,
      });
      reconcileParticipants(s, resumed.participants || []);
      console.info(`switchboard: session resumed after ${attempt + 1} attempt(s)`);
      toast('Reconnected.');
      return;
    } catch (e) {
      // The session is gone, or this server is draining: join again (elsewhere, behind a
      // load balancer).
      if (e.name === 'ServerError' && (e.code === 'unknown_session' || e.code === 'server_draining')) break;
      // The connection dropped again mid-request: try again.
    }
  }
  if (session !== s) return;
  console.info('switchboard: the session is gone; joining again');
  toast('Joining the room again.');
  const { room, name } = s;
  s.left = true; // do not send `leave` for a session that no longer exists
  s.rejoining = true;
  teardown(s);
  rejoin(room, name);
}

/** Join again until it works (the server may still be restarting). */
async function rejoin(room, name) {
  rejoinInProgress = true;
  try {
    for (let attempt = 0; ; attempt++) {
      await join(room, name);
      if (session || attempt >= 40) return; // joined (by us or by hand), or ~3 minutes passed
      await sleep(RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)] + 1000);
    }
  } finally {
    rejoinInProgress = false;
    if (!session) prejoin.start();
  }
}

/** While `rejoin` retries, the join form shows between attempts without a preview. */
let rejoinInProgress = false;

/** After a resume: events while disconnected were not delivered; `participants` is the truth. */
function reconcileParticipants(s, participants) {
  const present = new Set(participants.map((p) => p.participant_id));
  for (const id of [...s.participants.keys()]) {
    if (!present.has(id)) {
      s.participants.delete(id);
      s.gone.add(id);
      grid.remove(id);
    }
  }
  for (const p of participants) if (!s.participants.has(p.participant_id)) addParticipant(s, p);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Whether a received video track is a screen share: the server says so (`source`, when it
 * sends one); or else it is not the participant's first published video track (the camera
 * comes first: `joined` and `track_published` give the order); or, for a track we were not
 * told about, its tile already shows another video.
 */
function isScreenTrack(s, { participantId, trackId, kind, source }, info) {
  if (kind !== 'video') return false;
  const known = source || (info && info.source);
  if (known) return known === 'screen';
  const p = s.participants.get(participantId);
  if (info && p) {
    for (const [id, t] of p.tracks) if (t.kind === 'video') return id !== trackId;
  }
  return grid.hasOtherVideo(participantId, trackId);
}

function trackInfo(t) {
  return { kind: t.kind, muted: Boolean(t.muted), source: typeof t.source === 'string' ? t.source : null };
}

function addParticipant(s, p) {
  const tracks = new Map((p.tracks || []).map((t) => [t.track_id, trackInfo(t)]));
  s.participants.set(p.participant_id, { name: p.name, tracks });
  s.gone.delete(p.participant_id);
  grid.upsert(p.participant_id, p.name);
  for (const t of tracks.values()) grid.setMuted(p.participant_id, t.kind, t.muted);
}

function onServerMessage(s, msg) {
  switch (msg.type) {
    case 'participant_joined':
      addParticipant(s, msg.participant);
      // A raised hand is state, not an event: tell the newcomer.
      if (s.hand && msg.participant && msg.participant.participant_id) sendData(handPayload(true), [msg.participant.participant_id]);
      break;
    case 'participant_left':
      s.participants.delete(msg.participant_id);
      s.gone.add(msg.participant_id);
      grid.remove(msg.participant_id);
      break;
    case 'track_published': {
      const p = s.participants.get(msg.participant_id);
      if (p) p.tracks.set(msg.track.track_id, trackInfo(msg.track));
      grid.setMuted(msg.participant_id, msg.track.kind, Boolean(msg.track.muted));
      break;
    }
    case 'track_unpublished': {
      const p = s.participants.get(msg.participant_id);
      if (p) p.tracks.delete(msg.track_id);
      break;
    }
    case 'track_muted': {
      const p = s.participants.get(msg.participant_id);
      const t = p && p.tracks.get(msg.track_id);
      if (t) t.muted = Boolean(msg.muted);
      if (grid.setScreenMuted(msg.track_id, Boolean(msg.muted))) break;
      const kind = t ? t.kind : kindOfReceived(s, msg.track_id);
      if (kind) grid.setMuted(msg.participant_id, kind, Boolean(msg.muted));
      break;
    }
    case 'video_paused':
      console.info(`switchboard: video ${msg.track_id} ${msg.paused ? `paused (${msg.reason})` : 'resumed'}`);
      stats.debug.paused[msg.track_id] = { paused: Boolean(msg.paused), reason: msg.reason };
      grid.setPaused(msg.track_id, Boolean(msg.paused), msg.reason);
      s.quality.show(s.call);
      break;
    case 'codec_unsupported': {
      const p = s.participants.get(msg.participant_id);
      const who = p && p.name ? p.name : 'someone';
      console.warn(`switchboard: this browser cannot receive ${msg.codec}, the codec of track ${msg.track_id}`);
      toast(`This browser cannot play ${who}'s ${msg.codec} video.`, 'warn');
      break;
    }
    case 'active_speakers': {
      const ordered = (Array.isArray(msg.speakers) ? msg.speakers : []).map((sp) => sp && sp.participant_id).filter((id) => typeof id === 'string');
      grid.setSpeaking(new Set(ordered), s.participantId, ordered);
      break;
    }
    case 'data':
      if (chat.receive(msg)) break;
      if (!onSignal(s, msg)) console.debug('switchboard: data that is not for this client', msg.payload);
      break;
    case 'stats':
      stats.update(msg);
      grid.refreshStats();
      s.quality.show(s.call);
      break;
    case 'error':
      // An older server does not know a newer message: nothing the user can act on.
      if (msg.code === 'unknown_type') console.info('switchboard: server did not know a message', msg);
      else toast(describeServerError(msg));
      break;
    case 'offer':
    case 'answer':
    case 'pong':
    case 'publisher_layers':
      break; // call.js / signaling.js
    default:
      console.debug('switchboard: unhandled message', msg.type);
  }
}

function kindOfReceived(s, trackId) {
  if (!s.call) return null;
  for (const r of s.call.receiving.values()) if (r.trackId === trackId) return r.kind;
  return null;
}

function leave() {
  const s = session;
  if (!s) return;
  s.left = true;
  if (s.signaling) s.signaling.leave();
  teardown(s);
}

function teardown(s) {
  if (session === s) session = null;
  clearInterval(s.keepalive);
  clearInterval(s.qualityTimer);
  if (s.call) s.call.close();
  grid.clear();
  chat.clear();
  if (s.sizes) s.sizes.close();
  grid.setSizeReporter(null);
  stats.clear();
  if (s.signaling && s.signaling.state !== 'closed' && !s.left) s.signaling.close();
  if (s.stream) for (const t of s.stream.getTracks()) t.stop();
  $('audio-button').hidden = true;
  setStatus('media', 'idle', 'idle');
  setStatus('signaling', 'idle', 'idle');
  $('room').value = s.room;
  $('name').value = s.name;
  setPanel(null);
  showView('join');
  // Back on the join form (left, or the server ended the call): preview again, unless a
  // rejoin is under way (it opens its own devices).
  if (!s.rejoining && !rejoinInProgress) prejoin.start();
}

// --- controls ------------------------------------------------------------------------------

function updateControls(s) {
  const canOpen = Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  for (const [id, kind, onLabel, offLabel, key] of [
    ['mic-button', 'audio', 'Mute', 'Unmute', 'Ctrl+D'],
    ['cam-button', 'video', 'Stop video', 'Start video', 'Ctrl+E'],
  ]) {
    const button = $(id);
    const has = Boolean(s.call && s.call.local.has(kind));
    const muted = !has || s.call.isMuted(kind);
    // Without a device of this kind yet, the button opens one (and publishes it), if it can.
    button.disabled = !has && !(canOpen && s.call && publishAllowed(kind));
    button.setAttribute('aria-pressed', String(muted && has));
    button.classList.toggle('off', muted);
    button.querySelector('.control-label').textContent = muted ? offLabel : onLabel;
    button.title = `${button.disabled ? `No ${kind === 'audio' ? 'microphone' : 'camera'}` : muted ? offLabel : onLabel} (${key})`;
    grid.setLocalMuted(kind, muted);
  }
  const hand = $('hand-button');
  hand.setAttribute('aria-pressed', String(s.hand));
  hand.classList.toggle('sharing', s.hand);
  hand.querySelector('.control-label').textContent = s.hand ? 'Lower hand' : 'Raise hand';
  hand.setAttribute('aria-label', s.hand ? 'Lower hand' : 'Raise hand');
  hand.title = s.hand ? 'Lower hand' : 'Raise hand';
  const screen = $('screen-button');
  const sharing = Boolean(s.call && s.call.isSharingScreen());
  screen.hidden = !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  screen.disabled = !s.call;
  screen.setAttribute('aria-pressed', String(sharing));
  screen.classList.toggle('sharing', sharing);
  screen.querySelector('.control-label').textContent = sharing ? 'Stop sharing' : 'Share screen';
  screen.title = sharing ? 'Stop sharing your screen' : 'Share your screen';
}

/** Starts or stops sharing the screen (a second video track, `track_source` "screen"). */
async function toggleScreen() {
  const s = session;
  if (!s || !s.call) return;
  if (s.call.isSharingScreen()) {
    s.call.stopScreen();
    updateControls(s);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
  } catch (e) {
    if (e.name !== 'NotAllowedError' && e.name !== 'AbortError') toast(`Could not share the screen (${e.message || e.name}).`);
    return;
  }
  if (session !== s || !s.call || s.call.closed) {
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  try {
    s.call.publishScreen(stream);
  } catch (e) {
    for (const t of stream.getTracks()) t.stop();
    toast(`Could not share the screen (${e.message || e.name}).`);
  }
  updateControls(s);
}

/** Whether the URL's `publish=` flag lets us send `kind` (watch-only test pages do not). */
function publishAllowed(kind) {
  return kind === 'audio' ? options.audio : options.video;
}

async function toggle(kind) {
  const s = session;
  if (!s || !s.call) return;
  if (!s.call.local.has(kind)) {
    // Joined without this device (toggled off before joining, or none then): open it now and
    // publish it (this renegotiates once).
    await devices.add(s, kind);
    return;
  }
  s.call.setMuted(kind, !s.call.isMuted(kind));
  updateControls(s);
}

// Cameras, microphones and speakers during the call (call-devices.js).
const devices = new CallDevices({ current: () => session, grid, toast, changed: (s) => updateControls(s) });
// Debugging and tests: switch devices without the picker.
window.switchboardDevices = { switchTo: (name, deviceId) => devices.switchTo(name, deviceId), list: listDevices };

// --- side panels, views, hands and reactions -----------------------------------------------

/** Opens one side panel ('chat' | 'settings') or none; on a phone they cover the tiles. */
function setPanel(which) {
  if (which !== 'chat' && chat.open) chat.setOpen(false);
  const settingsOpen = which === 'settings';
  $('settings-panel').hidden = !settingsOpen;
  $('settings-button').setAttribute('aria-expanded', String(settingsOpen));
  if (settingsOpen) devices.refresh();
  setTimeout(() => grid.layout(), 0);
}

let currentView = 'grid';

function setView(view) {
  currentView = view;
  grid.setView(view);
  const speaker = view === 'speaker';
  const button = $('view-button');
  button.setAttribute('aria-pressed', String(speaker));
  const label = speaker ? 'Grid view' : 'Speaker view';
  button.setAttribute('aria-label', label);
  button.querySelector('.control-label').textContent = label;
  button.title = speaker ? 'Switch to the grid' : 'Switch to the speaker view';
}

function toggleHand() {
  const s = session;
  if (!s) return;
  const raised = !s.hand;
  if (!sendData(handPayload(raised))) return;
  s.hand = raised;
  if (grid.localTile) grid.localTile.setHand(raised);
  updateControls(s);
}

function react(emoji) {
  const s = session;
  const payload = reactionPayload(emoji);
  if (!s || !payload || !sendData(payload)) return;
  if (grid.localTile) grid.localTile.showReaction(emoji, REACTION_MS);
  setReactionMenu(false);
}

function setReactionMenu(open) {
  $('reaction-menu').hidden = !open;
  $('react-button').setAttribute('aria-expanded', String(open));
}

/** A hand or reaction from another participant (reactions.js); returns whether it was one. */
function onSignal(s, msg) {
  const signal = parseSignal(msg);
  const tile = signal && grid.tileOf(msg.participant_id, s.participantId);
  if (!signal) return false;
  if (!tile) return true; // from someone whose tile is gone: nothing to show
  if ('hand' in signal) {
    tile.setHand(signal.hand);
    if (signal.hand) toast(`${msg.name || 'Someone'} raised a hand.`, 'info');
  } else {
    tile.showReaction(signal.reaction, REACTION_MS);
  }
  return true;
}

async function copyInvite() {
  const s = session;
  const room = s ? s.room : $('room').value.trim();
  const url = new URL(location.pathname, location.origin);
  url.searchParams.set('room', room);
  const link = url.toString();
  let copied = false;
  try {
    await navigator.clipboard.writeText(link);
    copied = true;
  } catch {
    // No clipboard API (plain http on another host) or no permission: the old way.
    const area = document.createElement('textarea');
    area.value = link;
    document.body.append(area);
    area.select();
    try { copied = document.execCommand('copy'); } catch { copied = false; }
    area.remove();
  }
  window.switchboardInvite = link;
  toast(copied ? `Invite link copied: ${link}` : `Share this link: ${link}`, 'info');
}

// --- start ---------------------------------------------------------------------------------

function onShortcut(ev) {
  if (!(ev.ctrlKey || ev.metaKey) || ev.altKey || ev.shiftKey) return;
  const key = ev.key.toLowerCase();
  if (key !== 'd' && key !== 'e') return;
  // Ctrl+D would bookmark the page, Ctrl+E focus the address bar: in a call they mute.
  ev.preventDefault();
  const kind = key === 'd' ? 'audio' : 'video';
  if (session) toggle(kind);
  else if (!$('join-view').hidden) prejoin.toggle(kind);
}

function init() {
  const params = new URLSearchParams(location.search);
  $('room').value = params.get('room') || '';
  $('name').value = params.get('name') || localStorage.getItem('switchboard.name') || '';
  $('join-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('name').value;
    const room = $('room').value.trim();
    try { localStorage.setItem('switchboard.name', name); } catch { /* private mode */ }
    if (roomProblem(room) || nameProblem(name)) {
      setJoinError(roomProblem(room) || nameProblem(name));
      return;
    }
    join(room, name, prejoin.take());
  });
  $('hand-button').addEventListener('click', toggleHand);
  $('react-button').addEventListener('click', () => setReactionMenu($('reaction-menu').hidden));
  // The reaction menu closes as menus do: Escape, or a click anywhere else.
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') setReactionMenu(false); });
  document.addEventListener('click', (ev) => { if (!ev.target.closest('.reaction-wrap')) setReactionMenu(false); });
  $('reaction-menu').replaceChildren(...REACTIONS.map((emoji) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'reaction-choice';
    b.textContent = emoji;
    b.setAttribute('aria-label', `React ${emoji}`);
    b.addEventListener('click', () => react(emoji));
    return b;
  }));
  $('view-button').addEventListener('click', () => setView(currentView === 'speaker' ? 'grid' : 'speaker'));
  $('settings-button').addEventListener('click', () => setPanel($('settings-panel').hidden ? 'settings' : null));
  $('settings-panel').querySelector('.settings-close').addEventListener('click', () => setPanel(null));
  $('chat-button').addEventListener('click', () => { if (chat.open) setPanel('chat'); });
  for (const select of document.querySelectorAll('#settings-panel select')) {
    select.addEventListener('change', () => devices.switchTo(select.dataset.device, select.value));
  }
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener('devicechange', () => { if (!$('settings-panel').hidden) devices.refresh(); });
  }
  $('invite-button').addEventListener('click', copyInvite);
  document.addEventListener('keydown', onShortcut);
  const speaker = loadPrefs().speaker;
  if (speaker && canChooseSpeaker()) grid.setSinkId(speaker);
  $('mic-button').addEventListener('click', () => toggle('audio'));
  $('cam-button').addEventListener('click', () => toggle('video'));
  $('screen-button').addEventListener('click', toggleScreen);
  $('leave-button').addEventListener('click', leave);
  $('audio-button').addEventListener('click', async () => {
    await grid.resumeAudio();
    $('audio-button').hidden = true;
  });
  window.addEventListener('pagehide', () => session && session.signaling && session.signaling.leave());
  showView('join');
  if (params.get('autojoin') === '1' && params.get('room') && params.get('name')) {
    join(params.get('room'), params.get('name'));
  } else {
    ($('room').value ? $('name') : $('room')).focus();
    prejoin.start();
  }
}

init();
