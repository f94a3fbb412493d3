// What this tab showed of a room, kept across reloads in sessionStorage: the last KEPT_MESSAGES chat frames, the
// epoch and last seq they belong to (so the page resumes exactly after them), and which of them this tab sent.
// Storage disabled, full or garbled is never an error: the page then starts empty, and the server's recent
// history fills it instead.
import { isSequenced } from './sequence.js';

export const KEPT_MESSAGES = 100; // messages of each room kept across reloads

export class KeptMessages {
  /**
   * @param {string} room
   * @param {() => Storage} [storage] sessionStorage, read lazily (reading it throws when it is disabled)
   */
  constructor(room, storage = () => window.sessionStorage) {
    this.key = `wschat.room.${room}`;
    this.storage = storage;
    this.epoch = null;
    this.last = 0;
    this.frames = [];
    this.own = []; // seqs this tab sent
    try {
      const kept = JSON.parse(storage().getItem(this.key) || 'null');
      if (kept && typeof kept.epoch === 'string' && Number.isSafeInteger(kept.last) && Array.isArray(kept.frames)) {
        this.epoch = kept.epoch;
        this.last = kept.last;
        this.frames = kept.frames.filter(isSequenced);
        this.own = Array.isArray(kept.own) ? kept.own.filter(Number.isSafeInteger) : [];
      }
    } catch {
      // Storage disabled or garbled: start empty.
    }
  }

  /** Adds a frame shown now (`own`: this tab sent it). */
  add(frame, own) {
    if (own) this.own.push(frame.seq);
    this.frames.push(frame);
  }

  /** Forgets the frames (the server's history was reset). */
  clear() {
    this.frames = [];
    this.own = [];
  }

  /** Saves the newest KEPT_MESSAGES frames, shown up to seq `last` of `epoch`. */
  save(epoch, last) {
    this.epoch = epoch;
    this.last = last;
    this.frames = this.frames.slice(-KEPT_MESSAGES);
    const first = this.frames.length ? this.frames[0].seq : Infinity;
    this.own = this.own.filter((seq) => seq >= first);
    try {
      this.storage().setItem(this.key, JSON.stringify({
        epoch: this.epoch, last: this.last, frames: this.frames, own: this.own,
      }));
    } catch {
      // Full or disabled: a reload then shows the server's recent history instead.
    }
  }
}
