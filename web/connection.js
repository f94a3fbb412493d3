// The room page's connection: one WebSocket at a time, reconnected with capped exponential backoff and full
// jitter, kept alive by a ping, and given up on (a refusal) when it keeps closing before it ever opens.
//
// Browsers never see the HTTP status of a refused handshake: a refused connection closes with code 1006 without
// ever firing `open`. So several closes in a row that never reached `open` are reported as a refusal instead of
// retried forever.
//
// No DOM here: the page renders what `view` is told, and the Node unit tests (tests/browser/connection.test.mjs)
// drive it with a fake WebSocket and fake timers.

export const BASE_DELAY_MS = 500; // first retry waits up to this long
export const MAX_DELAY_MS = 10_000; // no retry waits longer than this
export const STABLE_MS = 5_000; // a connection open this long resets the backoff
export const REFUSED_AFTER = 3; // closes in a row without `open`, before this page was ever connected
export const GIVE_UP_AFTER = 10; // the same, once the page had been connected (a server restart, a flaky network)
export const BANNER_AFTER = 3; // retries before the reconnecting banner shows: a blip is not worth one

const OPEN = 1; // WebSocket.OPEN

const CLOSE_REASONS = {
  1000: 'closed by the server',
  1001: 'the server went away',
  1005: 'closed by the server',
  1006: 'connection lost',
  1009: 'message too big',
  1011: 'server error',
  1012: 'server restarting',
};

/** A close event in words: `connection lost, code 1006`, or the server's own reason. */
export function closeReason(event) {
  const why = CLOSE_REASONS[event.code] || 'closed';
  return event.reason ? `${why}: ${event.reason}` : `${why}, code ${event.code}`;
}

export class Connection {
  /**
   * @param {object} options
   * @param {string} options.room the room, for the words of a refusal
   * @param {number} options.pingMs how often an open connection pings
   * @param {object} options.view what the page shows: `state(next, text)` (connecting, connected, reconnecting,
   *   rejected), `banner(text, retryLabel)` and `hideBanner()`, `countdown(text)`
   * @param {(again: boolean) => void} options.opened a connection opened (`again`: not the page's first)
   * @param {(data: string) => void} options.received a frame arrived
   * @param {(reason: string) => void} options.lost an open connection closed
   * @param {() => string[] | null} [options.protocols] the subprotocols to offer on each connect (the
   *   sign-in's `['wschat', token]`, read afresh every time)
   * @param {Function} [options.WebSocket] the WebSocket class (tests pass a fake)
   * @param {object} [options.timers] `setTimeout`, `clearTimeout`, `setInterval`, `clearInterval`
   * @param {() => number} [options.now] the clock, epoch ms
   * @param {() => number} [options.random] uniform in [0, 1)
   */
  constructor(options) {
    this.room = options.room;
    this.pingMs = options.pingMs;
    this.view = options.view;
    this.opened = options.opened;
    this.received = options.received;
    this.lost = options.lost;
    this.protocols = options.protocols ?? (() => null);
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.timers = options.timers ?? globalThis;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.url = null; // known once the room and server address are
    this.socket = null; // the current WebSocket; null while waiting or after the page closed it
    this.state = 'connecting';
    this.everConnected = false;
    this.closesWithoutOpen = 0;
    this.retries = 0; // backoff exponent
    this.canRetry = false;
    this.reconnectTimer = 0;
    this.countdownTimer = 0;
    this.pingTimer = 0;
    this.reconnectAt = 0;
  }

  /** Opens the first connection to `url`. */
  start(url) {
    this.url = url;
    this.connect();
  }

  /** Sends `data` if the connection is open; whether it was sent. */
  send(data) {
    if (!this.socket || this.socket.readyState !== OPEN) return false;
    this.socket.send(data);
    return true;
  }

  /** Whether a frame sent now would go out. */
  get open() {
    return this.socket !== null && this.socket.readyState === OPEN;
  }

  /** Stops trying: `label` goes in the status pill, `text` in the banner, with a retry button if `retryLabel`. */
  refuse(label, text, retryLabel) {
    this.clearTimers();
    this.drop();
    this.canRetry = Boolean(retryLabel);
    this.setState('rejected', label);
    this.view.banner(text, retryLabel);
  }

  /** Connects now (the Retry button): after a refusal, with the counters reset. */
  retryNow() {
    if (this.state === 'rejected') {
      this.closesWithoutOpen = 0;
      this.retries = 0;
    }
    this.connect();
  }

  /** The network is back: waiting is pointless. */
  online() {
    if (this.state === 'reconnecting' || (this.state === 'rejected' && this.canRetry && this.everConnected)) {
      this.retryNow();
    }
  }

  /** The page is being left: close on purpose, without reconnecting. */
  leave() {
    this.clearTimers();
    this.drop(1000, 'page closed');
  }

  /** The page came back from the back/forward cache (`persisted`): connect again. */
  returned(persisted) {
    if (persisted && this.url && !this.socket && (this.state !== 'rejected' || this.canRetry)) this.retryNow();
  }

  connect() {
    this.clearTimers();
    this.view.hideBanner();
    this.setState('connecting', this.everConnected ? 'Reconnecting…' : 'Connecting…');
    let ws;
    try {
      const protocols = this.protocols();
      ws = protocols ? new this.WebSocket(this.url, protocols) : new this.WebSocket(this.url);
    } catch (error) {
      this.refuse('Rejected', `Cannot open a connection to ${this.url}: ${error.message}`, null);
      return;
    }
    this.socket = ws;
    let openedAt = 0;

    ws.addEventListener('open', () => {
      if (this.socket !== ws) return;
      openedAt = this.now();
      this.closesWithoutOpen = 0;
      const again = this.everConnected;
      this.everConnected = true;
      this.setState('connected', 'Connected');
      this.opened(again);
      this.pingTimer = this.timers.setInterval(() => {
        if (this.socket === ws && ws.readyState === OPEN) ws.send('{"action":"ping"}');
      }, this.pingMs);
    });

    ws.addEventListener('message', (event) => {
      if (this.socket === ws) this.received(event.data);
    });

    ws.addEventListener('close', (event) => {
      if (this.socket !== ws) return; // the page closed it on purpose
      this.socket = null;
      this.timers.clearInterval(this.pingTimer);
      this.pingTimer = 0;
      if (openedAt) {
        if (this.now() - openedAt >= STABLE_MS) this.retries = 0;
        this.lost(closeReason(event));
      } else {
        this.closesWithoutOpen += 1;
        if (!this.everConnected && this.closesWithoutOpen >= REFUSED_AFTER) {
          this.refuse('Rejected', `The server did not let this page into #${this.room}: ${this.closesWithoutOpen} attempts in a row `
            + 'were refused before connecting. It may not accept this room, or it may be down.', 'Retry');
          return;
        }
        if (this.everConnected && this.closesWithoutOpen >= GIVE_UP_AFTER) {
          this.refuse('Not connected', `Gave up reconnecting after ${this.closesWithoutOpen} failed attempts. The server is `
            + 'unreachable or refuses this room.', 'Retry');
          return;
        }
      }
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.retries);
    const delay = this.random() * ceiling; // full jitter
    this.retries = Math.min(this.retries + 1, 30);
    this.reconnectAt = this.now() + delay;
    this.setState('reconnecting', 'Reconnecting…');
    const tick = () => {
      this.view.countdown(` in ${Math.max(1, Math.ceil((this.reconnectAt - this.now()) / 1000))} s`);
    };
    tick();
    this.countdownTimer = this.timers.setInterval(tick, 250);
    this.reconnectTimer = this.timers.setTimeout(() => this.connect(), delay);
    if (this.retries >= BANNER_AFTER) {
      this.view.banner('Connection lost. Trying again by itself; what is said meanwhile will be shown once it is back.', 'Reconnect now');
    }
  }

  setState(next, text) {
    this.state = next;
    this.view.state(next, text);
  }

  clearTimers() {
    this.timers.clearTimeout(this.reconnectTimer);
    this.timers.clearInterval(this.countdownTimer);
    this.timers.clearInterval(this.pingTimer);
    this.pingTimer = 0;
    this.reconnectTimer = 0;
    this.countdownTimer = 0;
    this.view.countdown('');
  }

  /** Forgets the current socket first (so its close is not taken for a lost connection), then closes it. */
  drop(code, reason) {
    if (!this.socket) return;
    const s = this.socket;
    this.socket = null;
    if (code === undefined) s.close();
    else s.close(code, reason);
  }
}
