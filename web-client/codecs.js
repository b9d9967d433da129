// Which video codec the camera is published with (`codec=vp8|h264|vp9|av1` and
// `scalability=L1T3|L3T3|L3T3_KEY` in the page URL), as far as this browser can.
//
// VP9 and AV1 are sent as one scalable (SVC) encoding: the spatial layers travel in one RTP
// stream and the server drops, per subscriber, the layers it does not need (docs/protocol.md,
// "Codecs"); AV1's layers are marked in the Dependency Descriptor header extension.
// VP8 and H.264 are sent as simulcast q/h/f (simulcast.js). A codec the browser cannot send
// falls back to VP8.

export const CODECS = Object.freeze(['vp8', 'h264', 'vp9', 'av1']);
export const SCALABILITY_MODES = Object.freeze(['L1T3', 'L3T3', 'L3T3_KEY']);
/** Chromium's k-SVC: spatial layers depend on each other only at keyframes. */
export const DEFAULT_SVC_MODE = 'L3T3_KEY';
/** The codecs sent as one scalable encoding rather than as simulcast. */
const SCALABLE = Object.freeze(['vp9', 'av1']);

const MIME = Object.freeze({ vp8: 'video/vp8', h264: 'video/h264', vp9: 'video/vp9', av1: 'video/av1' });

/** `codec` and `scalability` from the URL, or null where absent or unknown. */
export function readCodecOptions(params) {
  const codec = (params.get('codec') || '').toLowerCase();
  const scalability = (params.get('scalability') || '').toUpperCase();
  return {
    codec: CODECS.includes(codec) ? codec : null,
    scalability: SCALABILITY_MODES.includes(scalability) ? scalability : null,
  };
}

/** Formats that travel with a codec rather than being one (retransmission, redundancy, FEC). */
const HELPER = /\/(rtx|red|ulpfec|flexfec-03)$/i;

/**
 * The codec list for the camera's (send-only) transceiver's `setCodecPreferences`: `codec`
 * alone (VP9 profile 0 before profile 2, which fewer decoders take) and its helper formats, or
 * null when the browser cannot send it. Alone, because the server answers in its own order
 * (VP8 first) and the browser sends the answer's first codec.
 * `capabilities`: `RTCRtpReceiver.getCapabilities('video')` (what setCodecPreferences accepts).
 */
export function preferredCodecs(codec, capabilities) {
  const codecs = (capabilities && capabilities.codecs) || [];
  const mime = MIME[codec];
  const wanted = codecs.filter((c) => c.mimeType.toLowerCase() === mime);
  if (!mime || wanted.length === 0) return null;
  const profile = (c) => (/profile-id=(\d+)/.exec(c.sdpFmtpLine || '') || [0, '0'])[1];
  wanted.sort((a, b) => Number(profile(a)) - Number(profile(b)));
  return [...wanted, ...codecs.filter((c) => HELPER.test(c.mimeType))];
}

/**
 * How to send the camera: `{codec, codecs, encodings}`. `codecs` is the preference list
 * (null: the browser's default order, VP8 first); `encodings` null means the default
 * (simulcast, or one encoding when simulcast is off).
 */
export function cameraCodecPlan({ codec, scalability }, { sendCaps, receiveCaps }) {
  if (!codec) return { codec: 'vp8', codecs: null, encodings: null };
  const canSend = sendCaps && preferredCodecs(codec, sendCaps);
  const codecs = canSend && preferredCodecs(codec, receiveCaps);
  if (!codecs) {
    console.warn(`codecs: this browser cannot send ${codec}; sending VP8`);
    return { codec: 'vp8', codecs: preferredCodecs('vp8', receiveCaps), encodings: null };
  }
  if (!SCALABLE.includes(codec)) return { codec, codecs, encodings: null };
  return { codec, codecs, encodings: [{ scalabilityMode: scalability || DEFAULT_SVC_MODE }] };
}
