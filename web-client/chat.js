// The chat panel, on the server's app data (`data` messages, docs/protocol.md): a chat message
// is a `data` whose payload is `{"kind": "chat", "text": "..."}`. The sender's name and id come
// from the server's stamp, never from the payload. Everything a participant wrote is shown with
// `textContent`, never parsed as HTML. Other payload kinds are left to other features.

/** Longest message the panel sends, in characters (the server allows 16 KiB of JSON). */
export const MAX_CHAT_CHARS = 2000;

/** The chat payload for `text`, or null when there is nothing to send. */
export function chatPayload(text) {
  const trimmed = String(text || '').trim();
  if (!trimmed) return null;
  return { kind: 'chat', text: Array.from(trimmed).slice(0, MAX_CHAT_CHARS).join('') };
}

/** The text of a received `data` message if it is a chat message, else null. */
export function chatText(msg) {
  const p = msg && msg.payload;
  if (!p || typeof p !== 'object' || p.kind !== 'chat' || typeof p.text !== 'string') return null;
  return p.text;
}

function timeLabel(date) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export class ChatPanel {
  /**
   * `panel`: the <aside> holding `.chat-list` and the form; `toggle`: the control button
   * with a `.unread` badge; `send(payload)`: sends a `data` message, returns whether it went.
   */
  constructor({ panel, toggle, send }) {
    this.panel = panel;
    this.toggleButton = toggle;
    this.list = panel.querySelector('.chat-list');
    this.form = panel.querySelector('form');
    this.input = this.form.querySelector('input');
    this.badge = toggle.querySelector('.unread');
    this.send = send;
    this.unread = 0;
    this.input.maxLength = MAX_CHAT_CHARS;
    toggle.addEventListener('click', () => this.setOpen(this.panel.hidden));
    panel.querySelector('.chat-close').addEventListener('click', () => this.setOpen(false));
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const payload = chatPayload(this.input.value);
      if (!payload || !this.send(payload)) return;
      this.add({ name: 'You', text: payload.text, own: true });
      this.input.value = '';
    });
    this.render();
  }

  get open() {
    return !this.panel.hidden;
  }

  setOpen(open) {
    this.panel.hidden = !open;
    this.toggleButton.setAttribute('aria-expanded', String(open));
    if (open) {
      this.unread = 0;
      this.input.focus();
      this.list.scrollTop = this.list.scrollHeight;
    }
    this.render();
  }

  /** A `data` message from the server; returns whether it was chat. */
  receive(msg) {
    const text = chatText(msg);
    if (text === null) return false;
    this.add({ name: msg.name || 'Guest', text, private: Array.isArray(msg.to) });
    if (!this.open) this.unread += 1;
    this.render();
    return true;
  }

  add({ name, text, own = false, private: direct = false }) {
    const item = document.createElement('li');
    item.className = `chat-message${own ? ' own' : ''}`;
    const head = document.createElement('div');
    head.className = 'chat-head';
    const who = document.createElement('span');
    who.className = 'chat-name';
    who.textContent = direct ? `${name} (to you)` : name;
    const when = document.createElement('time');
    const now = new Date();
    when.dateTime = now.toISOString();
    when.textContent = timeLabel(now);
    head.append(who, when);
    const body = document.createElement('p');
    body.className = 'chat-text';
    body.textContent = text; // text only: never HTML
    item.append(head, body);
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.append(item);
    if (own || atBottom) this.list.scrollTop = this.list.scrollHeight;
  }

  render() {
    this.badge.hidden = this.unread === 0;
    this.badge.textContent = this.unread > 99 ? '99+' : String(this.unread);
    const label = this.unread ? `Chat (${this.unread} unread)` : 'Chat';
    this.toggleButton.setAttribute('aria-label', label);
    this.toggleButton.title = label;
  }

  /** Empties the panel (leaving the call). */
  clear() {
    this.list.replaceChildren();
    this.unread = 0;
    this.input.value = '';
    this.setOpen(false);
  }
}
