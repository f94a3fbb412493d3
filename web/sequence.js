// Order and gap repair for one room's messages: chat frames carry `seq` (1, 2, 3, … per room, no holes) and
// `epoch` (the room's current history; a new epoch means the old history was lost and `seq` restarted at 1).
// API Gateway may deliver two messages out of order (their Lambda invocations run concurrently), drop some while
// the page is reconnecting, or repeat one that a history answer also carries. This module turns whatever arrives
// into the exact sequence, in order, each message once:
//
// * a frame with the next seq is shown at once, followed by any held frames it unblocks;
// * a frame after a gap is held for `holdMs`; if the gap has not filled by then, `requestHistory(after)` asks
//   the server for what is missing (`{"action": "history", "after": …, "epoch": …}`);
// * a frame already shown (or held) is dropped;
// * a history answer fills gaps the same way; when it says `complete: false` the messages before its first one
//   are gone, and `notice("lost")` lets the page say so instead of pretending nothing was missed;
// * a new epoch starts the sequence again at its seq 1. The server carries the messages it kept into a new epoch
//   (after a Redis restart or failover) with their seqs and `ts`: those this page already shows are skipped, and
//   when all of them are, nothing is said. The first message of the new epoch that takes the seq of another one
//   shown here means the server lost what was shown from there on: `notice("rewound", {from})` once, then it is
//   shown. A new epoch with nothing shown in it before is a lost history: `notice("reset")`;
// * within one epoch, a frame with the seq of a message shown but another text or `ts` is the same kind of
//   rewind (the server could not tell it restarted from an older snapshot): `notice("rewound")`, then it is shown;
// * the room's head (`epoch` and `seq` of its newest message, in every pong and presence answer) ahead of what was
//   shown means a message never reached this page (a post to it failed, and the room went quiet): after `holdMs`,
//   if no live frame caught up, it is fetched like a gap;
// * an answer that says `more` is followed by a request for the next page.
//
// No DOM here: the room page and the Node unit tests (tests/browser/sequence.test.mjs) drive it alike.

/** @typedef {{message: string, seq: number, epoch: string, ts?: number, user?: string}} ChatFrame */

/** How many shown messages the sequence remembers, to tell a message it shows from another with the same seq. */
export const REMEMBERED = 1000;

/** What tells one message from another with the same seq: its time, sender and text. */
function fingerprint(frame) {
  return `${frame.ts ?? ''}\u0000${frame.user ?? ''}\u0000${frame.message}`;
}

/** Whether `frame` is a chat frame with a sequence number. */
export function isSequenced(frame) {
  return typeof frame.message === 'string' && Number.isSafeInteger(frame.seq) && frame.seq > 0
    && typeof frame.epoch === 'string';
}

export class RoomSequence {
  /**
   * @param {object} options
   * @param {string|null} [options.epoch] the epoch of the messages already shown (from a previous visit)
   * @param {number} [options.last] the highest seq already shown, every earlier one shown too
   * @param {ChatFrame[]} [options.shown] the messages of `epoch` already shown (from a previous visit)
   * @param {number} [options.holdMs] how long a frame after a gap waits for the gap to fill by itself
   * @param {(frame: ChatFrame) => void} options.deliver shows one message, in order
   * @param {(after: number|null, epoch: string|null) => void} options.requestHistory asks the server
   * @param {(kind: 'lost'|'reset'|'rewound', detail: object) => void} [options.notice] tells the reader about lost
   *   history
   * @param {(fn: () => void, ms: number) => unknown} [options.setTimer]
   * @param {(timer: unknown) => void} [options.clearTimer]
   */
  constructor({ epoch = null, last = 0, shown = [], holdMs = 400, deliver, requestHistory, notice = () => {},
    setTimer = (fn, ms) => setTimeout(fn, ms), clearTimer = (t) => clearTimeout(t) }) {
    this.epoch = epoch;
    this.last = last;
    this.holdMs = holdMs;
    this.deliver = deliver;
    this.requestHistory = requestHistory;
    this.notice = notice;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    /** @type {Map<number, ChatFrame>} */
    this.held = new Map();
    this.timer = null;
    this.headTimer = null;
    /** @type {Map<number, {print: string, ts: number}>} the last REMEMBERED messages shown, by seq */
    this.prints = new Map();
    for (const frame of shown) if (isSequenced(frame) && frame.epoch === epoch) this.remember(frame);
    // While frames of a new epoch may be messages carried over from the old one: `upTo`, the last seq shown of the
    // old epoch, how many carried frames matched what is shown, and the time of the oldest message remembered.
    this.carrying = null;
    // The head last acted on, so a pong repeating it asks once.
    this.askedHead = null;
    // Until the first history answer of a connection arrives, chat frames are held: the answer says where the
    // sequence stands (a page that has shown nothing yet starts at the oldest retained message).
    this.synced = false;
    // The oldest seq of the history answer being received (an answer may span several frames).
    this.answerOldest = Infinity;
  }

  /** A connection opened: ask for what was missed since `last` (or the recent history on a first visit). */
  resume() {
    this.synced = false;
    // An answer cut short by the lost connection must not count towards the new one.
    this.answerOldest = Infinity;
    this.requestHistory(this.epoch === null ? null : this.last, this.epoch);
  }

  /** A chat frame arrived live. */
  onChat(frame) {
    if (!this.adoptEpoch(frame.epoch)) return;
    this.hold(frame);
    if (this.synced) this.drain();
  }

  /**
   * A history answer arrived: `{"history": [...], "epoch": …, "complete"?: bool, "more"?: true}`; only the last
   * frame of an answer carries `complete`, and `more` when the server holds more than one answer carries: the next
   * page is asked for at once, after the last message shown.
   * @param {{history: ChatFrame[], epoch: string, complete?: boolean, more?: boolean}} frame
   */
  onHistory(frame) {
    if (this.epoch !== null && frame.epoch !== this.epoch) {
      this.restart(frame.epoch);
    } else if (this.epoch === null) {
      this.epoch = frame.epoch;
    }
    for (const chat of frame.history) {
      if (isSequenced(chat) && chat.epoch === this.epoch) {
        this.answerOldest = Math.min(this.answerOldest, chat.seq);
        this.hold(chat);
      }
    }
    if (typeof frame.complete !== 'boolean') return; // more frames of this answer follow
    const oldest = this.answerOldest;
    this.answerOldest = Infinity;
    if (Number.isFinite(oldest) && oldest > this.last + 1) {
      // The server sent everything it still has after `last`: what lies before its oldest message is gone. That
      // is a loss only for a page that had shown messages before it (a first visit starts wherever history does).
      if (this.last > 0) this.notice('lost', { from: this.last + 1, to: oldest - 1 });
      this.last = oldest - 1;
    }
    if (frame.more === true) {
      // Live frames stay held until the last page is in.
      this.drain();
      this.requestHistory(this.last, this.epoch);
      return;
    }
    this.synced = true;
    this.drain();
  }

  /**
   * The room's head arrived (a pong or a presence answer): the epoch and seq of its newest message. When this page
   * is behind it, or on another epoch, what it missed is asked for, after `holdMs` for a live frame in flight to
   * arrive first.
   * @param {unknown} epoch
   * @param {unknown} seq
   */
  onHead(epoch, seq) {
    if (typeof epoch !== 'string' || !Number.isSafeInteger(seq) || seq < 1) return;
    if (!this.synced || this.epoch === null || !this.behind(epoch, seq)) return;
    const head = `${epoch}:${seq}`;
    if (head === this.askedHead) return;
    this.askedHead = head;
    this.clearTimer(this.headTimer);
    this.headTimer = this.setTimer(() => {
      this.headTimer = null;
      if (this.synced && this.behind(epoch, seq)) this.requestHistory(this.last, this.epoch);
    }, this.holdMs);
  }

  /** Forgets everything held (the page is leaving). */
  stop() {
    this.clearTimer(this.timer);
    this.timer = null;
    this.clearTimer(this.headTimer);
    this.headTimer = null;
    this.held.clear();
  }

  // ------------------------------------------------------------------------------------------------ inside

  /** Returns false for a frame of an epoch older than the one in use (a late straggler). */
  adoptEpoch(epoch) {
    if (this.epoch === null) {
      this.epoch = epoch;
      return true;
    }
    if (epoch === this.epoch) return true;
    // A live frame of another epoch: the room's history was lost or carried over. Start over at its seq 1.
    this.restart(epoch);
    return true;
  }

  /**
   * Whether a room whose head is `seq` of `epoch` may hold messages this page has not shown: it is ahead, on
   * another epoch, or behind (it lost messages shown here, and has yet to notice it restarted).
   */
  behind(epoch, seq) {
    return epoch !== this.epoch || seq !== this.last;
  }

  /** A new epoch: its messages that this page shows already will be skipped, the others shown. */
  restart(epoch) {
    const from = this.epoch;
    // `oldest`: the time of the oldest message remembered, taken once for the whole new epoch.
    this.carrying = this.prints.size > 0
      ? { upTo: this.last, matched: 0, oldest: Math.min(...[...this.prints.values()].map((p) => p.ts)) }
      : null;
    if (this.carrying === null) this.notice('reset', { from, to: epoch });
    this.askedHead = null;
    this.epoch = epoch;
    this.last = 0;
    this.answerOldest = Infinity;
    this.held.clear();
    this.clearTimer(this.timer);
    this.timer = null;
  }

  hold(frame) {
    if (frame.seq <= this.last) {
      const shown = this.prints.get(frame.seq);
      if (this.carrying !== null || shown === undefined || shown.print === fingerprint(frame)) return; // shown
      // A stale copy of a message the server no longer has (a rewind only ever numbers newer messages alike).
      if (!(Number(frame.ts) > shown.ts)) return;
      // A newer message with the seq of one shown: the server lost what was shown from there on.
      this.rewound(frame.seq);
    }
    if (this.held.has(frame.seq)) return; // already waiting
    this.held.set(frame.seq, frame);
  }

  /** The server numbered a new message `seq` although this page shows another as `seq`. */
  rewound(seq) {
    this.notice('rewound', { from: seq });
    this.last = seq - 1;
    for (const shown of [...this.prints.keys()]) if (shown >= seq) this.prints.delete(shown);
  }

  /** Whether `frame` of a new epoch is a message carried over that this page shows already. */
  carried(frame) {
    const shown = this.prints.get(frame.seq);
    if (shown !== undefined) return shown.print === fingerprint(frame);
    // Older than anything remembered: history this page never showed, from before what it shows.
    return frame.seq <= this.carrying.upTo && Number.isFinite(frame.ts) && frame.ts < this.carrying.oldest;
  }

  remember(frame) {
    this.prints.set(frame.seq, { print: fingerprint(frame), ts: Number(frame.ts) });
    if (this.prints.size > REMEMBERED) this.prints.delete(this.prints.keys().next().value);
  }

  drain() {
    while (this.held.has(this.last + 1)) {
      const next = this.held.get(this.last + 1);
      this.held.delete(this.last + 1);
      this.last += 1;
      if (this.carrying !== null) {
        if (next.seq <= this.carrying.upTo && this.carried(next)) {
          this.carrying.matched += 1;
          continue;
        }
        const { upTo, matched } = this.carrying;
        this.carrying = null;
        if (next.seq <= upTo && matched > 0) {
          // The server kept less than this page shows: what it showed from here on is gone from the server.
          this.notice('rewound', { from: next.seq });
          for (const shown of [...this.prints.keys()]) if (shown >= next.seq) this.prints.delete(shown);
        } else if (matched === 0) {
          this.notice('reset', { to: this.epoch });
          this.prints.clear();
        }
        // Else everything shown was carried over: nothing to say.
      }
      this.remember(next);
      this.deliver(next);
    }
    if (this.held.size === 0) {
      this.clearTimer(this.timer);
      this.timer = null;
    } else if (this.timer === null) {
      this.timer = this.setTimer(() => {
        this.timer = null;
        // While pages of an answer are still coming, they fill the gap themselves.
        if (this.held.size > 0 && this.synced) this.requestHistory(this.last, this.epoch);
      }, this.holdMs);
    }
  }
}
