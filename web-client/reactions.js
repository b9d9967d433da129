// Raised hands and reactions, on the server's app data (`data` messages, docs/protocol.md),
// beside chat (chat.js): `{"kind": "hand", "raised": true|false}` and
// `{"kind": "reaction", "emoji": "👍"}`. Who sent it comes from the server's stamp. A reaction
// is one of `REACTIONS`: anything else is dropped, so a participant cannot put arbitrary text
// (or markup) on everyone's tiles this way.

export const REACTIONS = ['👍', '👏', '😂', '❤️', '🎉', '😮'];

/** How long a reaction floats over the sender's tile. */
export const REACTION_MS = 4000;

export function handPayload(raised) {
  return { kind: 'hand', raised: Boolean(raised) };
}

export function reactionPayload(emoji) {
  return REACTIONS.includes(emoji) ? { kind: 'reaction', emoji } : null;
}

/**
 * What a received `data` message means here: `{hand: bool}`, `{reaction: emoji}`, or null
 * when it is neither (or malformed).
 */
export function parseSignal(msg) {
  const p = msg && msg.payload;
  if (!p || typeof p !== 'object') return null;
  if (p.kind === 'hand' && typeof p.raised === 'boolean') return { hand: p.raised };
  if (p.kind === 'reaction' && typeof p.emoji === 'string' && REACTIONS.includes(p.emoji)) return { reaction: p.emoji };
  return null;
}
