// What the page shows of its connection (web/connection.js): the status pill (a polite live region that speaks
// each change once), the countdown to the next attempt, and the banner with its Retry button.

export class ConnectionStatus {
  /** @param {(id: string) => HTMLElement} $ the page's elements by id */
  constructor($) {
    this.pill = $('connection-status');
    this.text = $('status-text');
    this.countdownEl = $('status-countdown');
    this.bannerEl = $('connection-banner');
    this.bannerText = $('banner-text');
    this.retryButton = $('retry-button');
    this.sendButton = $('chat-message-submit');
  }

  /** The connection's state: connecting, connected, reconnecting or rejected. */
  state(next, text) {
    document.body.dataset.state = next;
    this.pill.dataset.state = next;
    // Only touch the live region when the words change, so screen readers hear each change once.
    if (this.text.textContent !== text) this.text.textContent = text;
    this.sendButton.setAttribute('aria-disabled', String(next !== 'connected'));
    this.sendButton.disabled = next === 'rejected';
  }

  countdown(text) {
    this.countdownEl.textContent = text;
  }

  banner(text, retryLabel) {
    this.bannerText.textContent = text;
    this.retryButton.hidden = !retryLabel;
    if (retryLabel) this.retryButton.textContent = retryLabel;
    this.bannerEl.hidden = false;
  }

  hideBanner() {
    this.bannerEl.hidden = true;
  }
}
