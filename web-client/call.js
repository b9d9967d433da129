// One RTCPeerConnection per participant, carrying everything it publishes and receives
// (docs/protocol.md). Negotiation follows the "perfect negotiation" pattern with the client as
// the polite peer: the server wins glare, so a server offer that arrives while our own offer is
// outstanding rolls ours back; the browser then fires `negotiationneeded` again and we re-offer.
//
// Every step that touches the peer connection's descriptions runs through one promise chain
// (`enqueue`), in the order the events happened, so a server offer can never interleave with
// our own setLocalDescription half-way.
//
// Received tracks are mapped to participants by the server offer's `tracks` map (mid ->
// participant_id/track_id/kind), falling back to the msid (`streams[0].id` is the participant
// id). Which receivers are live is recomputed after every completed negotiation, so tracks the
// server stops are reported as removed whatever way the browser signals it.

import { SenderLayers, cameraEncodings } from './simulcast.js';
import { cameraCodecPlan } from './codecs.js';

/** How the camera is sent: simulcast q/h/f (simulcast.js), one encoding, or the codec
 * plan's own encodings (one scalable VP9 encoding, codecs.js). */
function videoSendInit(stream, { simulcast = true, encodings = null } = {}) {
  return {
    direction: 'sendonly',
    streams: [stream],
    sendEncodings: encodings || cameraEncodings(simulcast),
  };
}

/** The browser's codec capabilities, or null where the API is missing. */
function capabilities(api) {
  return typeof api?.getCapabilities === 'function' ? api.getCapabilities('video') : null;
}

function audioSendInit(stream) {
  return { direction: 'sendonly', streams: [stream] };
}

/** A screen share: one encoding, full size. */
function screenSendInit(stream) {
  return { direction: 'sendonly', streams: [stream], sendEncodings: [{ scaleResolutionDownBy: 1 }] };
}

/** Consecutive rejected offers after which we stop re-offering on our own. */
const MAX_FAILED_OFFERS = 3;

/**
 * Events (`CustomEvent`, payload in `detail`):
 * - `trackadded`: `{mid, participantId, trackId, kind, source, track}` (`source` is the server's
 *   `source` for the track when it sends one, else null)
 * - `trackremoved`: `{mid, participantId, trackId, kind}`
 * - `screenended`: our screen share stopped (the browser's "stop sharing", or `stopScreen()`)
 * - `state`: `{connectionState, iceConnectionState, signalingState}`
 * - `error`: an Error to show to the user
 */
/** The TURN servers, keeping only URLs over `transport` ('udp' or 'tcp'). */
function relayServers(iceServers, transport) {
  return iceServers
    .map((server) => ({
      ...server,
      urls: [].concat(server.urls).filter((u) => u.startsWith('turn:') && u.includes(`transport=${transport}`)),
    }))
    .filter((server) => server.urls.length > 0);
}

export class Call extends EventTarget {
  constructor({ signaling, iceServers = [], simulcast = true, relay = null, codec = null, scalability = null }) {
    super();
    this.signaling = signaling;
    this.codecOptions = { codec, scalability };
    this.pc = new RTCPeerConnection({
      iceServers: relay ? relayServers(iceServers, relay) : iceServers,
      iceTransportPolicy: relay ? 'relay' : 'all',
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    });
    this.queue = Promise.resolve();
    this.closed = false;
    this.offerId = null; // request id of our outstanding offer
    this.failedOffers = 0;
    this.simulcast = simulcast;
    // 'audio' | 'video' (camera) | 'screen' -> {track, transceiver, muted, announced, source,
    // sourceAnnounced, layers}
    this.local = new Map();
    this.placeholders = new Set(); // our recvonly transceivers when we publish nothing
    this.midMap = new Map(); // mid -> {participant_id, track_id, kind} from server offers
    this.streamByMid = new Map(); // mid -> msid stream id, from ontrack (fallback mapping)
    this.receiving = new Map(); // mid -> {participantId, trackId, kind, track} currently live

    const pc = this.pc;
    pc.addEventListener('negotiationneeded', () => this.enqueue(() => this.makeOffer()));
    pc.addEventListener('icecandidate', (ev) => this.sendCandidate(ev.candidate));
    pc.addEventListener('track', (ev) => {
      const mid = ev.transceiver.mid;
      if (mid != null && ev.streams[0]) this.streamByMid.set(mid, ev.streams[0].id);
    });
    for (const ev of ['connectionstatechange', 'iceconnectionstatechange', 'signalingstatechange']) {
      pc.addEventListener(ev, () => this.emitState());
    }
    pc.addEventListener('iceconnectionstatechange', () => this.watchIce());

    this.onMessage = (ev) => this.handleMessage(ev.detail);
    signaling.addEventListener('message', this.onMessage);
  }

  /**
   * ICE restart when the media path breaks (a network change): at once on `failed`, and after
   * a moment of `disconnected` (which often recovers by itself). `restartIce()` makes the next
   * offer carry new ICE credentials; negotiation then runs as usual.
   */
  watchIce() {
    const state = this.pc.iceConnectionState;
    clearTimeout(this.iceRestartTimer);
    if (this.closed) return;
    if (state === 'failed') {
      console.info('switchboard: ICE failed, restarting ICE');
      this.pc.restartIce();
    } else if (state === 'disconnected') {
      this.iceRestartTimer = setTimeout(() => {
        if (!this.closed && this.pc.iceConnectionState === 'disconnected') {
          console.info('switchboard: ICE still disconnected, restarting ICE');
          this.pc.restartIce();
        }
      }, 2500);
    }
  }

  /** The camera's codec and encodings (codecs.js); `this.cameraCodec` says what was chosen. */
  cameraPlan() {
    const plan = cameraCodecPlan(this.codecOptions, {
      sendCaps: capabilities(globalThis.RTCRtpSender),
      receiveCaps: capabilities(globalThis.RTCRtpReceiver),
    });
    this.cameraCodec = plan.codec;
    return plan;
  }

  /** Adds the local camera/microphone tracks. Negotiation starts by itself. */
  publish(stream) {
    const tracks = stream ? stream.getTracks() : [];
    for (const track of tracks) {
      const video = track.kind === 'video';
      const plan = video ? this.cameraPlan() : null;
      const simulcast = this.simulcast && !plan?.encodings;
      const transceiver = this.pc.addTransceiver(track, video ? videoSendInit(stream, { simulcast, encodings: plan.encodings }) : audioSendInit(stream));
      if (plan?.codecs && typeof transceiver.setCodecPreferences === 'function') {
        transceiver.setCodecPreferences(plan.codecs);
      }
      const layers = video ? new SenderLayers(transceiver.sender, { simulcast }) : null;
      this.local.set(track.kind, { track, transceiver, muted: false, announced: false, source: video ? 'camera' : null, layers });
    }
    // With nothing to publish the first offer still needs an m-line (docs/protocol.md, "A
    // client with nothing to publish"): receive-only audio and video. Adding them fires
    // `negotiationneeded`.
    if (tracks.length === 0) {
      for (const kind of ['audio', 'video']) {
        this.placeholders.add(this.pc.addTransceiver(kind, { direction: 'recvonly' }));
      }
    }
  }

  /**
   * Publishes a screen share (a `getDisplayMedia` stream) as a second video track; tells the
   * server it is a screen (`track_source`) once its mid is known. Ends by itself when the
   * browser's "stop sharing" ends the track.
   */
  publishScreen(stream) {
    const track = stream.getVideoTracks()[0];
    if (!track) throw new Error('the screen share has no video');
    if (this.local.has('screen')) this.stopScreen();
    if ('contentHint' in track) track.contentHint = 'detail';
    const transceiver = this.pc.addTransceiver(track, screenSendInit(stream));
    const entry = { track, transceiver, muted: false, announced: false, source: 'screen', sourceAnnounced: false, layers: null };
    entry.onEnded = () => this.stopScreen();
    track.addEventListener('ended', entry.onEnded);
    this.local.set('screen', entry);
    return track;
  }

  /** Stops our screen share: the track stops and its transceiver goes inactive (renegotiated). */
  stopScreen() {
    const entry = this.local.get('screen');
    if (!entry) return;
    this.local.delete('screen');
    entry.track.removeEventListener('ended', entry.onEnded);
    entry.track.stop();
    if (!this.closed) {
      try {
        // sendonly -> inactive; `negotiationneeded` follows and the server unpublishes it.
        this.pc.removeTrack(entry.transceiver.sender);
      } catch (e) {
        console.warn('call: could not remove the screen track', e);
      }
    }
    this.emit('screenended', {});
  }

  isSharingScreen() {
    return this.local.has('screen');
  }

  /** `{rid: active}` of the camera's simulcast encodings (for tests and the stats panel). */
  cameraLayers() {
    const l = this.local.get('video');
    return l && l.layers ? l.layers.activeLayers() : {};
  }

  /** Mutes or unmutes what we send of `kind` ('audio' | 'video'). */
  setMuted(kind, muted) {
    const l = this.local.get(kind);
    if (!l) return false;
    l.track.enabled = !muted;
    l.muted = muted;
    this.announceMute(l);
    return true;
  }

  /**
   * Sends `track` instead of the current one of `kind` ('audio' | 'video': another camera or
   * microphone). `replaceTrack` keeps the transceiver, its mid and simulcast encodings: no
   * renegotiation, and the server sees the same track. The new track inherits the mute
   * state; the old one is stopped. Returns the old track, or null when nothing of `kind` is
   * published (then the caller has to publish).
   */
  async replaceTrack(kind, track) {
    const l = this.local.get(kind);
    if (!l || this.closed) return null;
    track.enabled = !l.muted;
    if (kind === 'video' && 'contentHint' in track && l.track.contentHint) track.contentHint = l.track.contentHint;
    await l.transceiver.sender.replaceTrack(track);
    const old = l.track;
    l.track = track;
    old.stop();
    return old;
  }

  isMuted(kind) {
    const l = this.local.get(kind);
    return l ? l.muted : true;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    const screen = this.local.get('screen');
    if (screen) {
      screen.track.removeEventListener('ended', screen.onEnded);
      screen.track.stop();
    }
    this.signaling.removeEventListener('message', this.onMessage);
    for (const [mid, r] of this.receiving) this.emit('trackremoved', { mid, ...withoutTrack(r) });
    this.receiving.clear();
    this.pc.close();
    this.emitState();
  }

  /** Exposed for tests and debugging. */
  getStats() {
    return this.pc.getStats();
  }

  // --- negotiation -------------------------------------------------------------------------

  handleMessage(msg) {
    switch (msg.type) {
      case 'offer':
        this.enqueue(() => this.onServerOffer(msg));
        break;
      case 'answer':
        this.enqueue(() => this.onServerAnswer(msg));
        break;
      case 'error':
        if (msg.id != null && msg.id === this.offerId) this.enqueue(() => this.onOfferRejected());
        break;
      case 'publisher_layers':
        this.onPublisherLayers(msg);
        break;
      default:
        break;
    }
  }

  enqueue(step) {
    this.queue = this.queue
      .then(() => (this.closed ? undefined : step()))
      .catch((e) => {
        if (this.closed) return;
        console.error('call: negotiation step failed', e);
        this.emit('error', e);
      });
    return this.queue;
  }

  async makeOffer() {
    const pc = this.pc;
    if (pc.signalingState !== 'stable') return; // fires again once stable
    if (this.failedOffers >= MAX_FAILED_OFFERS) return;
    await pc.setLocalDescription();
    if (this.closed || pc.signalingState !== 'have-local-offer') return;
    this.offerId = this.signaling.send({ type: 'offer', sdp: pc.localDescription.sdp }, { withId: true });
    console.info(`call: sent offer #${this.offerId}`);
  }

  async onServerOffer(msg) {
    const pc = this.pc;
    for (const [mid, info] of Object.entries(msg.tracks || {})) this.midMap.set(mid, info);
    console.info(`call: server offer (state ${pc.signalingState}), tracks ${JSON.stringify(msg.tracks || {})}`);
    if (pc.signalingState === 'have-local-offer') {
      // Glare: the server wins and ignores our offer. Roll ours back (setRemoteDescription
      // would do it implicitly; explicit is kinder to older browsers).
      console.info(`call: glare, rolling back our offer #${this.offerId}`);
      this.offerId = null;
      await pc.setLocalDescription({ type: 'rollback' });
    }
    await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    await pc.setLocalDescription();
    this.signaling.send({ type: 'answer', sdp: pc.localDescription.sdp }, { withId: true });
    this.afterNegotiation();
  }

  async onServerAnswer(msg) {
    const pc = this.pc;
    if (msg.id !== this.offerId || pc.signalingState !== 'have-local-offer') {
      console.warn('call: ignoring an answer to no outstanding offer', msg.id, this.offerId, pc.signalingState);
      return;
    }
    console.info(`call: answer to offer #${this.offerId}`);
    this.offerId = null;
    await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    this.failedOffers = 0;
    this.afterNegotiation();
  }

  async onOfferRejected() {
    // The server refused our offer (the error itself is shown by the app). Go back to stable
    // so the server can still renegotiate with us.
    this.offerId = null;
    this.failedOffers += 1;
    if (this.pc.signalingState === 'have-local-offer') {
      await this.pc.setLocalDescription({ type: 'rollback' });
    }
  }

  afterNegotiation() {
    this.syncReceivers();
    for (const l of this.local.values()) {
      this.announceMute(l);
      this.announceSource(l);
      if (l.layers) l.layers.afterNegotiation();
    }
  }

  /** Dynacast: switch our simulcast encodings on transceiver `mid` on or off. */
  onPublisherLayers(msg) {
    for (const l of this.local.values()) {
      if (l.transceiver.mid !== msg.mid) continue;
      if (!l.layers) {
        console.debug('call: publisher_layers for a track without simulcast, mid', msg.mid);
        return;
      }
      console.info(`call: publisher_layers mid ${msg.mid}: ${JSON.stringify(msg.active)}`);
      l.layers.setActive(msg.active);
      return;
    }
    console.debug('call: publisher_layers for a mid we do not send on', msg.mid);
  }

  /** Diffs the live receivers against what we reported, emitting added/removed tracks. */
  syncReceivers() {
    const live = new Map();
    for (const t of this.pc.getTransceivers()) {
      if (t.mid == null || t.stopped || this.placeholders.has(t)) continue;
      const dir = t.currentDirection;
      if (dir !== 'recvonly' && dir !== 'sendrecv') continue;
      const info = this.midMap.get(t.mid);
      const participantId = info ? info.participant_id : this.streamByMid.get(t.mid);
      if (!participantId) {
        console.warn('call: cannot tell whose track mid', t.mid, 'is');
        continue;
      }
      live.set(t.mid, {
        participantId,
        trackId: info ? info.track_id : t.receiver.track.id,
        kind: (info && info.kind) || t.receiver.track.kind,
        source: (info && info.source) || null,
        track: t.receiver.track,
      });
    }
    for (const [mid, old] of this.receiving) {
      const now = live.get(mid);
      if (!now || now.trackId !== old.trackId || now.participantId !== old.participantId) {
        this.receiving.delete(mid);
        console.info(`call: mid ${mid} stopped carrying ${old.kind} ${old.trackId} of ${old.participantId}`);
        this.emit('trackremoved', { mid, ...withoutTrack(old) });
      }
    }
    for (const [mid, now] of live) {
      if (this.receiving.has(mid)) continue;
      this.receiving.set(mid, now);
      console.info(`call: mid ${mid} carries ${now.kind} ${now.trackId} of ${now.participantId}`);
      this.emit('trackadded', { mid, ...now });
    }
  }

  // --- media control -----------------------------------------------------------------------

  announceMute(l) {
    const mid = l.transceiver.mid;
    // Before the first negotiation there is no mid yet: announced after it.
    if (mid == null || l.announced === l.muted || this.closed) return;
    l.announced = l.muted;
    // `mute` has no success reply in the protocol; an `error` carrying this id is shown by the app.
    try {
      this.signaling.send({ type: 'mute', mid, muted: l.muted }, { withId: true });
    } catch (e) {
      this.emit('error', e);
    }
  }

  /** Tells the server what a non-camera video track shows, once its mid is known. */
  announceSource(l) {
    const mid = l.transceiver.mid;
    if (l.source !== 'screen' || l.sourceAnnounced || mid == null || this.closed) return;
    l.sourceAnnounced = true;
    // Best effort: a server without `track_source` answers `unknown_type`, which is fine.
    this.signaling.notify({ type: 'track_source', mid, source: l.source });
  }

  sendCandidate(candidate) {
    if (this.closed) return;
    const msg = candidate
      ? { type: 'candidate', candidate: candidate.candidate, sdp_mid: candidate.sdpMid, sdp_m_line_index: candidate.sdpMLineIndex }
      : { type: 'candidate', candidate: null };
    try {
      this.signaling.send(msg);
    } catch (e) {
      console.warn('call: could not send a candidate', e);
    }
  }

  emitState() {
    const { connectionState, iceConnectionState, signalingState } = this.pc;
    const key = `${connectionState}/${iceConnectionState}`;
    if (key !== this.lastStateKey) console.info(`call: connection ${connectionState}, ICE ${iceConnectionState}`);
    this.lastStateKey = key;
    this.emit('state', { connectionState, iceConnectionState, signalingState });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function withoutTrack({ participantId, trackId, kind }) {
  return { participantId, trackId, kind };
}
