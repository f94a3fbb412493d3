// The composer: a textarea that grows with its text, and Send. Enter sends, Shift+Enter starts a new line (and
// Enter while an input method is composing is the method's). A message goes out only when it fits in one frame
// and the connection is open; otherwise it stays in the input with the reason beside it. Near the limit a hint
// says how many bytes are left. A message sent shows at once in the log as "sending…" until its echo. Each message goes out with a
// random `id`, and waits for its echo, which carries the id: that is how the page knows its own messages. A
// message the server certainly did not deliver comes back into the input; one whose outcome the server does not
// know (`uncertain`) is sent again with the same id, which cannot make a second copy, after 1, 2, 4 and 8 s,
// "sending…" meanwhile, and comes back into the input if no echo ever comes.
import { senderOf } from './log.js';

const MAX_FRAME_BYTES = 32 * 1024; // API Gateway closes the socket (1009) on larger client frames
const MAX_PENDING = 100; // sent texts remembered while their echo is awaited
const SHOW_COUNT_FROM = 0.8; // the bytes-left hint shows once a message reaches this share of the limit
const MAX_ROWS_SHARE = 0.4; // the textarea grows up to this share of the window's height, then scrolls
const RESEND_AFTER_MS = [1_000, 2_000, 4_000, 8_000]; // a message of unknown outcome is sent again after these

/** A random id for one message (the server takes 1–64 of A-Z a-z 0-9 . _ : -). */
function newId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The longest message the server takes, in UTF-8 bytes (config.js's `maxMessageBytes`, else the default). */
export function messageLimit() {
  const configured = window.WSCHAT_CONFIG && window.WSCHAT_CONFIG.maxMessageBytes;
  return Number.isSafeInteger(configured) && configured > 0 ? configured : 8192;
}

const bytesOf = (text) => new TextEncoder().encode(text).length;

export class Composer {
  /**
   * @param {object} options
   * @param {(id: string) => HTMLElement} options.$ the page's elements by id
   * @param {string | null} options.myName this tab's name: an echo from another name is never this tab's
   * @param {(frame: string) => boolean} options.send sends a frame; false when the connection is not open
   * @param {() => boolean} options.connected whether the page is connected now
   * @param {(id: string, text: string) => void} options.sent called after message `id` went out
   * @param {(id: string) => void} [options.settled] called when message `id` is no longer awaited
   * @param {(text: string) => void} [options.announce] says an error aloud, once
   * @param {(fn: () => void, ms: number) => unknown} [options.setTimer]
   * @param {(timer: unknown) => void} [options.clearTimer]
   */
  constructor({ $, myName, send, connected, sent, settled = () => {}, announce = () => {},
    setTimer = (fn, ms) => setTimeout(fn, ms), clearTimer = (t) => clearTimeout(t) }) {
    this.myName = myName;
    this.send = send;
    this.onSettled = settled;
    this.announce = announce;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    this.input = $('chat-message-input');
    this.error = $('composer-error');
    this.count = $('composer-count');
    this.limit = messageLimit();
    /** @type {Map<string, {text: string, resends: number, timer: unknown}>} messages sent, by id, awaiting their echo */
    this.pending = new Map();
    $('chat-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const text = this.input.value;
      if (text.trim() === '') {
        this.input.focus();
        return;
      }
      const length = bytesOf(text);
      if (length > this.limit) {
        this.showError(`This message is too long to send (${length.toLocaleString()} bytes; the limit is `
          + `${this.limit.toLocaleString()}).`);
        return;
      }
      const id = newId();
      const frame = JSON.stringify({ message: text, id });
      const bytes = bytesOf(frame);
      if (bytes > MAX_FRAME_BYTES) {
        this.showError(`This message is too long to send (${Math.ceil(bytes / 1024)} KB; the limit is 32 KB).`);
        return;
      }
      if (!send(frame)) {
        this.showError('Not connected right now. Your message is still here: send it again once the status says Connected.');
        return;
      }
      this.pending.set(id, { text, resends: 0, timer: null });
      if (this.pending.size > MAX_PENDING) this.settle(this.pending.keys().next().value);
      this.hideError();
      this.input.value = '';
      this.showCount();
      this.grow();
      this.input.focus();
      sent(id, text);
    });
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && !event.altKey && !event.ctrlKey
        && !event.metaKey && event.keyCode !== 229) {
        event.preventDefault();
        this.input.form.requestSubmit();
      }
    });
    this.input.addEventListener('input', () => {
      this.showCount();
      this.grow();
      if (!this.error.hidden && connected()) this.hideError();
    });
  }

  /** The textarea as tall as its text, up to a share of the window. */
  grow() {
    this.input.style.height = 'auto';
    const most = Math.max(48, window.innerHeight * MAX_ROWS_SHARE);
    this.input.style.height = `${Math.min(this.input.scrollHeight + 2, most)}px`;
  }

  /** How many bytes are left, once the message comes near the limit: `1,192 bytes left`. */
  showCount() {
    const length = bytesOf(this.input.value);
    this.count.hidden = length < this.limit * SHOW_COUNT_FROM;
    this.count.classList.toggle('over', length > this.limit);
    const left = this.limit - length;
    this.count.textContent = left >= 0
      ? `${left.toLocaleString()} ${left === 1 ? 'byte' : 'bytes'} left`
      : `${(-left).toLocaleString()} ${left === -1 ? 'byte' : 'bytes'} over the limit of ${this.limit.toLocaleString()}`;
  }

  /** Whether a chat frame arriving now is the echo of a message this tab sent (it is then no longer awaited). */
  claim(frame) {
    if (typeof frame.id === 'string') {
      if (!this.pending.has(frame.id)) return false;
      this.settle(frame.id);
      if (this.error.dataset.sending === frame.id) this.hideError();
      return true;
    }
    // An echo without an id (a server that does not echo ids): by its text.
    return senderOf(frame) === this.myName && this.settleText(frame.message);
  }

  /**
   * The server does not know whether message `id` was stored: it is sent again with the same id after a while,
   * and given back when it never is confirmed. False when it is not a message this tab awaits.
   */
  uncertain(id) {
    const message = this.pending.get(id);
    if (message === undefined) return false;
    this.clearTimer(message.timer);
    if (message.resends >= RESEND_AFTER_MS.length) {
      this.giveBack(message.text, id, 'Could not confirm that your message was delivered; it is back here. Send it again when you like.');
      return true;
    }
    this.showError(`Sending “${message.text}”… (the server was slow to answer; trying again)`);
    this.error.dataset.sending = id;
    message.timer = this.setTimer(() => {
      message.timer = null;
      message.resends += 1;
      // Not connected: the next try waits its turn (a reconnect resumes history, which may show the echo).
      if (!this.send(JSON.stringify({ message: message.text, id }))) this.uncertain(id);
    }, RESEND_AFTER_MS[message.resends]);
    return true;
  }

  /** The first awaited message whose text is `text` is no longer awaited; false when there is none. */
  settleText(text) {
    for (const [id, message] of this.pending) {
      if (message.text === text) {
        this.settle(id);
        return true;
      }
    }
    return false;
  }

  /** Message `id` is no longer awaited. */
  settle(id) {
    const message = this.pending.get(id);
    if (message !== undefined) this.clearTimer(message.timer);
    this.pending.delete(id);
    this.onSettled(id);
  }

  /**
   * A message the server could not deliver goes back into the input (unless the reader typed something new).
   * @param {string} text
   * @param {string|null} [id] the message's id, when the server named it
   * @param {string} [why]
   */
  giveBack(text, id = null, why = 'Not delivered; your message is back here. Send it again when you like.') {
    if (id !== null) this.settle(id);
    else this.settleText(text);
    delete this.error.dataset.sending;
    if (this.input.value === '' || this.input.value === text) {
      this.input.value = text;
      this.showCount();
      this.grow();
      this.showError(why);
    } else {
      this.showError(`Not delivered: “${text}”.`);
    }
  }

  /** Enables or disables the input (a refused page cannot send). */
  setDisabled(disabled) {
    this.input.disabled = disabled;
  }

  focus() {
    this.input.focus();
  }

  showError(text) {
    if (this.error.hidden || this.error.textContent !== text) this.announce(text);
    this.error.textContent = text;
    this.error.hidden = false;
  }

  hideError() {
    this.error.hidden = true;
    this.error.textContent = '';
    delete this.error.dataset.sending;
  }
}
