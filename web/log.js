// The message log: one line per chat message, system notice or error, appended as text (never markup), grouped
// by sender, capped at MAX_LINES, and kept at the bottom while the reader is there ("N new messages ↓" when not).
//
// The sender's name and the time are attributes drawn by CSS, so they can never be HTML and cannot be made to look
// like the log's own lines. Assistive technology gets the sender from the line itself: every chat line is an
// article named by a visually hidden "Bob:" (or "You:") and its text, grouped or not. The log's `value` still
// reads like the tutorial's <textarea>: the messages' text, one per line, without those names, day dividers or
// messages still being sent.
//
// http(s) URLs in a message become links made with createElement (never markup from the message), opening in a
// new tab with rel="noopener noreferrer nofollow ugc"; anything else stays text. A line whose day differs from the
// last one's is preceded by a day divider. Errors are shown once: the same error again updates its line ("×3").

const MAX_LINES = 1000; // oldest lines are dropped beyond this
const GROUP_MS = 5 * 60_000; // consecutive messages of one person within this long share one name label

// Times in the reader's own locale and time zone.
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });
const relativeDay = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** A URL in a message: http(s) up to whitespace; trailing punctuation and an unmatched ")" are left out. */
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"]+/gi;
/** What a link to somewhere else must not pass on or be credited with. */
export const LINK_REL = 'noopener noreferrer nofollow ugc';

/** A local calendar day as a number, to compare two times by day. */
function dayNumber(at) {
  const date = new Date(at);
  return Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) / 86_400_000;
}

/** "Today", "Yesterday", or the date in the reader's locale. */
export function dayLabel(at, now = Date.now()) {
  const days = dayNumber(at) - dayNumber(now);
  if (days === 0 || days === -1) {
    const word = relativeDay.format(days, 'day');
    return word.charAt(0).toLocaleUpperCase() + word.slice(1);
  }
  return dayFormat.format(new Date(at));
}

/**
 * A message's text as nodes: text, with each http(s) URL as a link made by createElement. Nothing in the text is
 * ever parsed as markup; a URL that does not parse, or any other scheme, stays text.
 * @param {string} text
 * @param {Document} [doc]
 */
export function linkified(text, doc = document) {
  const nodes = [];
  let from = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    let url = match[0];
    // Punctuation that ends a sentence is not part of the URL, nor a ")" the URL did not open.
    while (/[.,;:!?'\]]$/.test(url) || (url.endsWith(')') && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length)) {
      url = url.slice(0, -1);
    }
    let parsed;
    try {
      parsed = new URL(url);
    } catch {
      continue;
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') continue;
    if (match.index > from) nodes.push(text.slice(from, match.index));
    const link = doc.createElement('a');
    link.href = parsed.href;
    link.textContent = url;
    link.rel = LINK_REL;
    link.target = '_blank';
    nodes.push(link);
    from = match.index + url.length;
  }
  if (from < text.length) nodes.push(text.slice(from));
  return nodes;
}

/** Lines that are not messages of the log's text: day dividers and messages still being sent. */
const NOT_TEXT = '.day, .pending';

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
    /** The day of the last dated line (dayNumber), for the dividers. */
    this.lastDay = null;
    /** Lines made so far, for their ids. */
    this.made = 0;
    /** The last error line and what it said: the same error again updates it. */
    this.lastError = null;
    // The tutorial's log was a <textarea>; scripts written for it read `.value`: the messages' text, a line each.
    Object.defineProperty(log, 'value', {
      get: () => [...log.children]
        .filter((line) => line.classList.contains('line') && !line.matches(NOT_TEXT))
        .map((line) => `${(line.querySelector(':scope > .text') ?? line).textContent}\n`)
        .join(''),
      configurable: true,
    });
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
    const day = dayNumber(at);
    if (kind === 'chat' && day !== this.lastDay) {
      // A new day (or the first chat line): a divider, and no grouping across it.
      this.divider(at);
      this.lastChat = null;
    }
    if (kind === 'chat') this.lastDay = day;
    const line = document.createElement('p');
    line.className = `line ${kind}`;
    if (kind === 'chat' && who) {
      const id = `line-${++this.made}`;
      const name = who.own ? 'You' : (who.user ?? 'Anonymous');
      const sender = document.createElement('span');
      sender.className = 'visually-hidden sender';
      sender.id = `${id}-who`;
      sender.textContent = `${name}: `;
      const body = document.createElement('span');
      body.className = 'text';
      body.id = `${id}-text`;
      body.append(...linkified(String(text)));
      line.append(sender, body);
      line.setAttribute('role', 'article');
      line.setAttribute('aria-labelledby', `${sender.id} ${body.id}`);
    } else {
      // Strings become text nodes: content is never parsed as markup.
      line.append(...(Array.isArray(text) ? text : [text]));
    }
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
    this.lastError = null;
    this.place(line);
    if (follow) {
      this.scrollToBottom();
    } else if (kind !== 'system') {
      this.unseen += 1;
      this.newMessages.textContent = this.unseen === 1 ? '1 new message ↓' : `${this.unseen} new messages ↓`;
      this.newMessages.hidden = false;
    }
    return line;
  }

  /** Puts `line` at the end, before the messages still being sent, and keeps the log within MAX_LINES. */
  place(line) {
    const firstPending = this.log.querySelector(':scope > .pending');
    if (firstPending) this.log.insertBefore(line, firstPending);
    else this.log.append(line);
    line.after('\n');
    while (this.log.childNodes.length > MAX_LINES * 2) {
      this.log.firstChild.remove();
    }
  }

  /** A day divider for the day of `at`. */
  divider(at) {
    const line = document.createElement('p');
    line.className = 'line day';
    const label = document.createElement('span');
    label.textContent = dayLabel(at);
    line.append(label);
    this.place(line);
  }

  /** Marks the log busy while a history answer is applied, so its lines are not read out one by one. */
  busy(busy) {
    if (busy) this.log.setAttribute('aria-busy', 'true');
    else this.log.removeAttribute('aria-busy');
  }

  /**
   * A message of this tab's being sent: shown at once, at the end, until its echo (or its return) takes it away.
   * Not part of the log's text.
   */
  pending(id, text) {
    const line = document.createElement('p');
    line.className = 'line chat own pending';
    line.dataset.pending = id;
    const sender = document.createElement('span');
    sender.className = 'visually-hidden sender';
    sender.textContent = 'You, sending: ';
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    const state = document.createElement('span');
    state.className = 'sending';
    state.textContent = 'sending…';
    line.append(sender, body, state);
    this.log.append(line);
    this.scrollToBottom();
    return line;
  }

  /** The message `id` is no longer being sent (its echo came, or it came back). */
  settled(id) {
    for (const line of this.log.querySelectorAll(':scope > .pending')) {
      if (line.dataset.pending === id) line.remove();
    }
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

  /**
   * Something went wrong. The same error as the last line (by `key`, default its text) updates that line and
   * counts it instead of adding another. Returns whether it is new (what the page announces).
   */
  error(text, key = text) {
    const last = this.lastError;
    if (last && last.key === key && last.line.isConnected) {
      last.count += 1;
      last.line.firstChild.textContent = text;
      last.line.querySelector('.times').textContent = ` (×${last.count})`;
      return false;
    }
    const line = this.append('error', [text]);
    const times = document.createElement('span');
    times.className = 'times';
    line.append(times);
    this.lastError = { key, line, count: 1 };
    return true;
  }
}
