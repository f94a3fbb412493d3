// The message log: one line per chat message, system notice or error, appended as text (never markup), grouped
// by sender, capped at MAX_LINES, and kept at the bottom while the reader is there ("N new messages ↓" when not).
//
// The sender's name and the time are attributes drawn by CSS, so they can never be HTML, cannot be made to look
// like the log's own lines, and stay out of the log's text, which still reads like the tutorial's <textarea>.

const MAX_LINES = 1000; // oldest lines are dropped beyond this
const GROUP_MS = 5 * 60_000; // consecutive messages of one person within this long share one name label

// Times in the reader's own locale and time zone.
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** The sender of a chat frame as the page shows it: its name, or null for an anonymous one. */
export function senderOf(frame) {
  return typeof frame.user === 'string' && frame.user !== '' ? frame.user : null;
}

export class MessageLog {
  /**
   * @param {HTMLElement} log the log element (the tutorial's #chat-log)
   * @param {HTMLElement} newMessages the "new messages" button shown while the reader is scrolled up
   */
  constructor(log, newMessages) {
    this.log = log;
    this.newMessages = newMessages;
    this.unseen = 0;
    this.wasAtBottom = true;
    /** The last chat line's sender, for grouping: `{user, own, at}`, or null after anything else. */
    this.lastChat = null;
    // The tutorial's log was a <textarea>; scripts written for it read `.value`. Keep that working.
    Object.defineProperty(log, 'value', { get: () => log.textContent, configurable: true });
    log.addEventListener('scroll', () => {
      this.wasAtBottom = this.atBottom();
      if (this.wasAtBottom && !newMessages.hidden) {
        this.unseen = 0;
        newMessages.hidden = true;
      }
    }, { passive: true });
    newMessages.addEventListener('click', () => {
      this.scrollToBottom();
      log.focus({ preventScroll: true });
    });
    // A phone keyboard opening shrinks the log: keep the newest line in view if it was.
    new ResizeObserver(() => {
      if (this.wasAtBottom) log.scrollTop = log.scrollHeight;
    }).observe(log);
  }

  atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
  }

  scrollToBottom() {
    this.log.scrollTop = this.log.scrollHeight;
    this.unseen = 0;
    this.newMessages.hidden = true;
  }

  /**
   * Appends one line and returns it. `kind` is "chat", "system" or "error". `text` is a string, or nodes and
   * strings (a system line with a name set apart); strings go in as text nodes only, never markup. A newline text
   * node follows each line, so the log's textContent reads like the tutorial's textarea.
   * `who` (chat lines): `{user: string | null, uid: string | null, own: boolean}`: lines group by sender, and a
   * signed-in sender is its user id (someone else with the same name is someone else).
   */
  append(kind, text, at = Date.now(), seq = null, who = null) {
    const follow = this.atBottom();
    const line = document.createElement('p');
    line.className = `line ${kind}`;
    // Strings become text nodes: content is never parsed as markup.
    line.append(...(Array.isArray(text) ? text : [text]));
    line.dataset.time = timeFormat.format(new Date(at));
    line.title = fullTimeFormat.format(new Date(at));
    if (seq !== null) line.dataset.seq = String(seq);
    if (kind === 'chat' && who) {
      line.dataset.user = who.user ?? 'Anonymous';
      if (who.user === null) line.classList.add('anonymous');
      if (who.own) line.classList.add('own');
      if (who.uid) line.dataset.uid = who.uid;
      const last = this.lastChat;
      if (last && last.user === who.user && last.uid === (who.uid ?? null) && last.own === who.own && at - last.at < GROUP_MS) {
        line.classList.add('grouped');
      }
      this.lastChat = { user: who.user, uid: who.uid ?? null, own: who.own, at };
    } else {
      this.lastChat = null;
    }
    if (kind === 'error') line.setAttribute('role', 'alert');
    this.log.append(line, '\n');
    while (this.log.childNodes.length > MAX_LINES * 2) {
      this.log.firstChild.remove();
    }
    if (follow) {
      this.scrollToBottom();
    } else if (kind !== 'system') {
      this.unseen += 1;
      this.newMessages.textContent = this.unseen === 1 ? '1 new message ↓' : `${this.unseen} new messages ↓`;
      this.newMessages.hidden = false;
    }
    return line;
  }

  /** A chat frame as a line; `own`: this tab sent it. */
  chat(frame, own = false) {
    const at = Number.isFinite(frame.ts) ? frame.ts : Date.now();
    const uid = typeof frame.uid === 'string' && frame.uid !== '' ? frame.uid : null;
    return this.append('chat', frame.message, at, frame.seq ?? null, { user: senderOf(frame), uid, own });
  }

  /** A notice of the page's own. */
  system(text) {
    return this.append('system', text);
  }

  /** Something went wrong; read out at once (role=alert). */
  error(text) {
    return this.append('error', text);
  }
}
