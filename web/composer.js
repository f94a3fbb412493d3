// The composer: the input and Send (Enter sends). A message goes out only when it fits in one frame and the
// connection is open; otherwise it stays in the input with the reason beside it. The texts this tab sent wait for
// their echo, which is how the page knows its own messages; a message the server could not deliver comes back
// into the input.
import { senderOf } from './log.js';

const MAX_FRAME_BYTES = 32 * 1024; // API Gateway closes the socket (1009) on larger client frames
const MAX_PENDING = 100; // sent texts remembered while their echo is awaited
const SHOW_COUNT_FROM = 0.8; // the byte count shows once a message reaches this share of the limit

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
   * @param {() => void} options.sent called after a message went out
   */
  constructor({ $, myName, send, connected, sent }) {
    this.myName = myName;
    this.input = $('chat-message-input');
    this.error = $('composer-error');
    this.count = $('composer-count');
    this.limit = messageLimit();
    this.pending = []; // texts sent whose echo has not come back yet
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
      const frame = JSON.stringify({ message: text });
      const bytes = bytesOf(frame);
      if (bytes > MAX_FRAME_BYTES) {
        this.showError(`This message is too long to send (${Math.ceil(bytes / 1024)} KB; the limit is 32 KB).`);
        return;
      }
      if (!send(frame)) {
        this.showError('Not connected right now. Your message is still here: send it again once the status says Connected.');
        return;
      }
      this.pending.push(text);
      if (this.pending.length > MAX_PENDING) this.pending.shift();
      this.hideError();
      this.input.value = '';
      this.showCount();
      this.input.focus();
      sent();
    });
    this.input.addEventListener('input', () => {
      this.showCount();
      if (!this.error.hidden && connected()) this.hideError();
    });
  }

  /** The message's size against the limit, once it comes near it: `7,000 / 8,192 bytes`. */
  showCount() {
    const length = bytesOf(this.input.value);
    this.count.hidden = length < this.limit * SHOW_COUNT_FROM;
    this.count.classList.toggle('over', length > this.limit);
    this.count.textContent = `${length.toLocaleString()} / ${this.limit.toLocaleString()} bytes`;
  }

  /** Whether a chat frame arriving now is the echo of a message this tab sent (it is then no longer awaited). */
  claim(frame) {
    if (senderOf(frame) !== this.myName) return false;
    const i = this.pending.indexOf(frame.message);
    if (i < 0) return false;
    this.pending.splice(i, 1);
    return true;
  }

  /** A message the server could not deliver goes back into the input (unless the reader typed something new). */
  giveBack(text) {
    const pending = this.pending.indexOf(text);
    if (pending >= 0) this.pending.splice(pending, 1);
    if (this.input.value === '' || this.input.value === text) {
      this.input.value = text;
      this.showCount();
      this.showError('Not delivered; your message is back here. Send it again when you like.');
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
    this.error.textContent = text;
    this.error.hidden = false;
  }

  hideError() {
    this.error.hidden = true;
    this.error.textContent = '';
  }
}
