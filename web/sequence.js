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
// * a new epoch resets the sequence (`notice("reset")`);
// * the room's head (`epoch` and `seq` of its newest message, in every pong and presence answer) ahead of what was
//   shown means a message never reached this page (a post to it failed, and the room went quiet): after `holdMs`,
//   if no live frame caught up, it is fetched like a gap;
// * an answer that says `more` is followed by a request for the next page.
//
// No DOM here: the room page and the Node unit tests (tests/browser/sequence.test.mjs) drive it alike.

/** @typedef {{message: string, seq: number, epoch: string, ts?: number}} ChatFrame */

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
   * @param {number} [options.holdMs] how long a frame after a gap waits for the gap to fill by itself
   * @param {(frame: ChatFrame) => void} options.deliver shows one message, in order
   * @param {(after: number|null, epoch: string|null) => void} options.requestHistory asks the server
   * @param {(kind: 'lost'|'reset', detail: object) => void} [options.notice] tells the reader about lost history
   * @param {(fn: () => void, ms: number) => unknown} [options.setTimer]
   * @param {(timer: unknown) => void} [options.clearTimer]
   */
  constructor({ epoch = null, last = 0, holdMs = 400, deliver, requestHistory, notice = () => {},
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
      this.notice('reset', { from: this.epoch, to: frame.epoch });
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
    if (!this.synced || this.epoch === null || this.behind(epoch, seq) === false) return;
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
    // A live frame of another epoch: the room's history was lost and restarted. Start over at its seq 1.
    this.notice('reset', { from: this.epoch, to: epoch });
    this.restart(epoch);
    return true;
  }

  /** Whether a room whose head is `seq` of `epoch` has messages this page has not shown. */
  behind(epoch, seq) {
    return epoch !== this.epoch || seq > this.last;
  }

  restart(epoch) {
    this.epoch = epoch;
    this.last = 0;
    this.answerOldest = Infinity;
    this.held.clear();
    this.clearTimer(this.timer);
    this.timer = null;
  }

  hold(frame) {
    if (frame.seq <= this.last || this.held.has(frame.seq)) return; // shown already, or already waiting
    this.held.set(frame.seq, frame);
  }

  drain() {
    while (this.held.has(this.last + 1)) {
      const next = this.held.get(this.last + 1);
      this.held.delete(this.last + 1);
      this.last += 1;
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
