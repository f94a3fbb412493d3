// The room page: one WebSocket to `<websocketUrl>?room=<name>`, a message log, a composer, and
// reconnection with capped exponential backoff and full jitter.
//
// Wire format (the Django Channels tutorial's, plus fields; README "Protocol"): we send {message: text}; the
// server broadcasts {"message", "seq", "epoch", "ts"} to everyone in the room, the sender included, and answers
// a frame it refuses with {"error": "..."} to the sender only. On every (re)connect the page asks
// {"action": "history", "after": <last seq shown>, "epoch": …} and shows exactly what it missed; messages are
// shown in seq order, each once, whatever order they arrive in (sequence.js). {"action": "ping"} keeps the
// connection (and the membership behind it) alive. The log of each room survives a reload (sessionStorage).
//
// Browsers never see the HTTP status of a refused handshake: a refused connection closes with code 1006
// without ever firing `open`. So the room name is checked here with the server's rule before any attempt,
// and several closes in a row that never reached `open` are reported as a refusal instead of retried forever.
import {
  checkDisplayName, checkRoomName, linkWithWs, params, rememberRoom, savedName, socketUrl, websocketBase,
} from './shared.js';
import { RoomSequence, isSequenced } from './sequence.js';

const BASE_DELAY_MS = 500; // first retry waits up to this long
const MAX_DELAY_MS = 10_000; // no retry waits longer than this
const STABLE_MS = 5_000; // a connection open this long resets the backoff
const REFUSED_AFTER = 3; // closes in a row without `open`, before this page was ever connected
const GIVE_UP_AFTER = 10; // the same, once the page had been connected (a server restart, a flaky network)
const MAX_FRAME_BYTES = 32 * 1024; // API Gateway closes the socket (1009) on larger client frames
const MAX_LINES = 1000; // oldest lines are dropped beyond this
const KEPT_MESSAGES = 100; // messages of this room kept across reloads (sessionStorage)
// A ping well inside API Gateway's 10-minute idle timeout; `?ping=SECONDS` shortens it (tests).
const PING_MS = (Number(params().get('ping')) || 240) * 1000;

const $ = (id) => document.getElementById(id);
const log = $('chat-log');
const input = $('chat-message-input');
const sendButton = $('chat-message-submit');
const composerError = $('composer-error');
const statusEl = $('connection-status');
const statusText = $('status-text');
const countdown = $('status-countdown');
const banner = $('connection-banner');
const bannerText = $('banner-text');
const retryButton = $('retry-button');
const newMessages = $('new-messages');

// The tutorial's log was a <textarea>; scripts written for it read `.value`. Keep that working.
Object.defineProperty(log, 'value', { get: () => log.textContent, configurable: true });

const room = params().get('room');
// `?name=` (the lobby puts it there), else the name this browser used last; checked with the server's rule.
const nameCheck = checkDisplayName(params().get('name') ?? savedName());
const myName = nameCheck.ok ? nameCheck.name : null;
// Texts this tab sent whose echo has not come back yet: the echo that matches one is this tab's own message.
const pendingOwn = [];
let url = null; // the socket URL, once the room and server address are known

let socket = null; // the current WebSocket; null while waiting or after the page closed it
let everConnected = false;
let closesWithoutOpen = 0;
let retries = 0; // backoff exponent
let reconnectTimer = 0;
let countdownTimer = 0;
let reconnectAt = 0;
let state = 'connecting';
let canRetry = false;
let unseen = 0;
let pingTimer = 0;

// Times in the reader's own locale and time zone.
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

// ---------------------------------------------------------------------------------------------- the log

function atBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}

function scrollToBottom() {
  log.scrollTop = log.scrollHeight;
  unseen = 0;
  newMessages.hidden = true;
}

/** The last chat line's sender, for grouping: `{user, own, at}`, or null after anything else. */
let lastChat = null;
const GROUP_MS = 5 * 60_000; // consecutive messages of one person within this long share one name label

/**
 * Appends one line and returns it. `kind` is "chat", "system" or "error". `text` is a string, or nodes and strings
 * (a system line with a name set apart); strings go in as text nodes only, never markup; the sender's
 * name and the time are attributes drawn by CSS, so they can never be HTML and the log's textContent reads like
 * the tutorial's textarea (a newline text node follows each line).
 * `who` (chat lines): `{user: string | null, own: boolean}`.
 */
function appendLine(kind, text, at = Date.now(), seq = null, who = null) {
  const follow = atBottom();
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
    const same = lastChat && lastChat.user === who.user && lastChat.own === who.own && at - lastChat.at < GROUP_MS;
    if (same) line.classList.add('grouped');
    lastChat = { user: who.user, own: who.own, at };
  } else {
    lastChat = null;
  }
  if (kind === 'error') line.setAttribute('role', 'alert');
  log.append(line, '\n');
  while (log.childNodes.length > MAX_LINES * 2) {
    log.firstChild.remove();
  }
  if (follow) {
    scrollToBottom();
  } else if (kind !== 'system') {
    unseen += 1;
    newMessages.textContent = unseen === 1 ? '1 new message ↓' : `${unseen} new messages ↓`;
    newMessages.hidden = false;
  }
  return line;
}

let wasAtBottom = true;
log.addEventListener('scroll', () => {
  wasAtBottom = atBottom();
  if (wasAtBottom && !newMessages.hidden) {
    unseen = 0;
    newMessages.hidden = true;
  }
}, { passive: true });
newMessages.addEventListener('click', () => {
  scrollToBottom();
  log.focus({ preventScroll: true });
});
// A phone keyboard opening shrinks the log: keep the newest line in view if it was.
new ResizeObserver(() => {
  if (wasAtBottom) log.scrollTop = log.scrollHeight;
}).observe(log);

// ------------------------------------------------------------------------------ order, history, storage

const storageKey = `wschat.room.${room}`;

/** What this tab showed of the room before a reload: `{epoch, last, frames, own}` (own: seqs it sent). */
function loadKept() {
  try {
    const kept = JSON.parse(window.sessionStorage.getItem(storageKey) || 'null');
    if (kept && typeof kept.epoch === 'string' && Number.isSafeInteger(kept.last) && Array.isArray(kept.frames)) {
      const own = Array.isArray(kept.own) ? kept.own.filter(Number.isSafeInteger) : [];
      return { epoch: kept.epoch, last: kept.last, frames: kept.frames.filter(isSequenced), own };
    }
  } catch {
    // Storage disabled or garbled: start empty.
  }
  return { epoch: null, last: 0, frames: [], own: [] };
}

const kept = loadKept();

function saveKept() {
  try {
    kept.epoch = sequence.epoch;
    kept.last = sequence.last;
    kept.frames = kept.frames.slice(-KEPT_MESSAGES);
    const first = kept.frames.length ? kept.frames[0].seq : Infinity;
    kept.own = kept.own.filter((seq) => seq >= first);
    window.sessionStorage.setItem(storageKey, JSON.stringify(kept));
  } catch {
    // Full or disabled: a reload then shows the server's recent history instead.
  }
}

/** The sender of a chat frame as the page shows it. */
function senderOf(frame) {
  return typeof frame.user === 'string' && frame.user !== '' ? frame.user : null;
}

/** Whether a frame arriving now is the echo of a message this tab sent (and takes it off the pending list). */
function claimOwn(frame) {
  if (senderOf(frame) !== myName) return false;
  const i = pendingOwn.indexOf(frame.message);
  if (i < 0) return false;
  pendingOwn.splice(i, 1);
  return true;
}

function showChat(frame, own = false) {
  const at = Number.isFinite(frame.ts) ? frame.ts : Date.now();
  appendLine('chat', frame.message, at, frame.seq ?? null, { user: senderOf(frame), own });
}

const sequence = new RoomSequence({
  epoch: kept.epoch,
  last: kept.last,
  deliver(frame) {
    const own = claimOwn(frame);
    if (own) kept.own.push(frame.seq);
    showChat(frame, own);
    kept.frames.push(frame);
    saveKept();
  },
  requestHistory(after, epoch) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(after === null ? { action: 'history' } : { action: 'history', after, epoch }));
    }
  },
  notice(kind) {
    if (kind === 'reset') {
      kept.frames = [];
      kept.own = [];
      appendLine('system', 'The server lost this room’s history; the conversation starts again from here.');
    } else {
      appendLine('system', 'Some earlier messages are no longer available.');
    }
    saveKept();
  },
});

// ------------------------------------------------------------------------------------------- presence

// Who is here: asked on every (re)connect, then kept up to date by the joined/left frames that follow.
const presence = { count: 0, names: [] };
const presenceButton = $('presence-button');
const presencePanel = $('presence-panel');

function renderPresence() {
  presenceButton.hidden = false;
  $('presence-count').textContent = String(presence.count);
  presenceButton.title = presence.count === 1 ? '1 person here' : `${presence.count} people here`;
  const list = $('presence-list');
  list.replaceChildren(...presence.names.map((name) => {
    const li = document.createElement('li');
    li.textContent = name;
    if (name === myName) li.classList.add('me');
    return li;
  }));
  const anonymous = Math.max(0, presence.count - presence.names.length);
  $('presence-anonymous').hidden = anonymous === 0;
  $('presence-anonymous').textContent = anonymous === 1 ? 'and 1 anonymous person' : `and ${anonymous} anonymous people`;
}

function setPanel(open) {
  presencePanel.hidden = !open;
  presenceButton.setAttribute('aria-expanded', String(open));
}

presenceButton.addEventListener('click', () => setPanel(presencePanel.hidden));
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && !presencePanel.hidden) {
    setPanel(false);
    presenceButton.focus();
  }
});
document.addEventListener('click', (event) => {
  if (!presencePanel.hidden && !event.target.closest('.presence')) setPanel(false);
});

/** A join or leave line: the name as text in its own element, never markup. */
function presenceLine(name, verb) {
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = name ?? 'Someone (anonymous)';
  appendLine('system', [who, ` ${verb}`]).classList.add('presence-line');
}

/** Handles a presence frame; false when the frame is not one. */
function onPresence(frame) {
  if (frame.presence && typeof frame.presence === 'object' && Number.isSafeInteger(frame.presence.count)) {
    presence.count = frame.presence.count;
    presence.names = Array.isArray(frame.presence.members)
      ? frame.presence.members.filter((n) => typeof n === 'string')
      : [];
    renderPresence();
    return true;
  }
  const joined = 'joined' in frame && Number.isSafeInteger(frame.count);
  const left = 'left' in frame && Number.isSafeInteger(frame.count);
  if (!joined && !left) return false;
  const name = joined ? frame.joined : frame.left;
  const named = typeof name === 'string' && name !== '' ? name : null;
  presence.count = frame.count;
  if (named && joined) presence.names = [...presence.names, named].sort();
  if (named && left) {
    const i = presence.names.indexOf(named);
    if (i >= 0) presence.names = presence.names.toSpliced(i, 1);
  }
  renderPresence();
  presenceLine(named, joined ? 'joined' : 'left');
  return true;
}

function receive(data) {
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    appendLine('error', 'The server sent something that is not JSON; it was ignored.');
    return;
  }
  if (frame !== null && typeof frame === 'object' && !Array.isArray(frame)) {
    if (isSequenced(frame)) {
      sequence.onChat(frame);
      return;
    }
    if (Array.isArray(frame.history) && typeof frame.epoch === 'string') {
      sequence.onHistory(frame);
      return;
    }
    if (typeof frame.pong === 'number') return;
    if (onPresence(frame)) return;
    if (typeof frame.error === 'string') {
      appendLine('error', `Server error: ${frame.error}`);
      if (typeof frame.undelivered === 'string') giveBack(frame.undelivered);
      return;
    }
    // What API Gateway itself sends when an integration failed: an error, never a chat line.
    if (typeof frame.message === 'string' && 'connectionId' in frame && 'requestId' in frame) {
      appendLine('error', `Server error: ${frame.message}. Your last message may not have been delivered.`);
      return;
    }
    if (typeof frame.message === 'string') {
      showChat(frame, claimOwn(frame)); // a server without sequence numbers
      return;
    }
  }
  appendLine('error', 'The server sent a frame this page does not understand; it was ignored.');
}

// ------------------------------------------------------------------------------------ connection state

function setState(next, text) {
  state = next;
  document.body.dataset.state = next;
  statusEl.dataset.state = next;
  // Only touch the live region when the words change, so screen readers hear each change once.
  if (statusText.textContent !== text) statusText.textContent = text;
  const connected = next === 'connected';
  sendButton.setAttribute('aria-disabled', String(!connected));
  input.disabled = next === 'rejected';
  sendButton.disabled = next === 'rejected';
  if (connected) hideComposerError();
}

function showBanner(text, retryLabel) {
  bannerText.textContent = text;
  retryButton.hidden = !retryLabel;
  if (retryLabel) retryButton.textContent = retryLabel;
  banner.hidden = false;
}

function hideBanner() {
  banner.hidden = true;
}

function clearTimers() {
  clearTimeout(reconnectTimer);
  clearInterval(countdownTimer);
  clearInterval(pingTimer);
  pingTimer = 0;
  reconnectTimer = 0;
  countdownTimer = 0;
  countdown.textContent = '';
}

function closeReason(event) {
  const why = {
    1000: 'closed by the server',
    1001: 'the server went away',
    1005: 'closed by the server',
    1006: 'connection lost',
    1009: 'message too big',
    1011: 'server error',
    1012: 'server restarting',
  }[event.code] || 'closed';
  return event.reason ? `${why}: ${event.reason}` : `${why}, code ${event.code}`;
}

function connect() {
  clearTimers();
  hideBanner();
  setState('connecting', everConnected ? 'Reconnecting…' : 'Connecting…');
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (error) {
    refuse('Rejected', `Cannot open a connection to ${url}: ${error.message}`, null);
    return;
  }
  socket = ws;
  let openedAt = 0;

  ws.addEventListener('open', () => {
    if (socket !== ws) return;
    openedAt = Date.now();
    closesWithoutOpen = 0;
    const again = everConnected;
    everConnected = true;
    rememberRoom(room);
    setState('connected', 'Connected');
    appendLine('system', again
      ? 'Reconnected; fetching what was said meanwhile.'
      : `Connected to #${room}. Messages appear here as they are sent.`);
    sequence.resume();
    ws.send('{"action":"presence"}');
    pingTimer = setInterval(() => {
      if (socket === ws && ws.readyState === WebSocket.OPEN) ws.send('{"action":"ping"}');
    }, PING_MS);
  });

  ws.addEventListener('message', (event) => {
    if (socket === ws) receive(event.data);
  });

  ws.addEventListener('close', (event) => {
    if (socket !== ws) return; // the page closed it on purpose
    socket = null;
    clearInterval(pingTimer);
    pingTimer = 0;
    if (openedAt) {
      if (Date.now() - openedAt >= STABLE_MS) retries = 0;
      appendLine('system', `Disconnected (${closeReason(event)}).`);
    } else {
      closesWithoutOpen += 1;
      if (!everConnected && closesWithoutOpen >= REFUSED_AFTER) {
        refuse('Rejected', `The server did not let this page into #${room}: ${closesWithoutOpen} attempts in a row were refused `
          + 'before connecting. It may not accept this room, or it may be down.', 'Retry');
        return;
      }
      if (everConnected && closesWithoutOpen >= GIVE_UP_AFTER) {
        refuse('Not connected', `Gave up reconnecting after ${closesWithoutOpen} failed attempts. The server is unreachable or refuses this room.`, 'Retry');
        return;
      }
    }
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** retries);
  const delay = Math.random() * ceiling; // full jitter
  retries = Math.min(retries + 1, 30);
  reconnectAt = Date.now() + delay;
  setState('reconnecting', 'Reconnecting');
  const tick = () => {
    countdown.textContent = ` in ${Math.max(1, Math.ceil((reconnectAt - Date.now()) / 1000))} s`;
  };
  tick();
  countdownTimer = setInterval(tick, 250);
  reconnectTimer = setTimeout(connect, delay);
  // A blip reconnects in well under a second; only talk about it once it is more than a blip.
  if (retries >= 3) {
    showBanner('Connection lost. Trying again by itself; what is said meanwhile will be shown once it is back.', 'Reconnect now');
  }
}

/** Stops trying: `label` goes in the status pill, `text` in the banner, with a retry button if `retryLabel`. */
function refuse(label, text, retryLabel) {
  clearTimers();
  if (socket) {
    const s = socket;
    socket = null;
    s.close();
  }
  canRetry = Boolean(retryLabel);
  setState('rejected', label);
  showBanner(text, retryLabel);
}

function retryNow() {
  if (state === 'rejected') {
    closesWithoutOpen = 0;
    retries = 0;
  }
  connect();
}

retryButton.addEventListener('click', retryNow);

window.addEventListener('online', () => {
  if (state === 'reconnecting' || (state === 'rejected' && canRetry && everConnected)) retryNow();
});

// Leaving the page: close on purpose (no reconnect). Coming back from the back/forward cache: connect again.
window.addEventListener('pagehide', () => {
  clearTimers();
  if (socket) {
    const s = socket;
    socket = null;
    s.close(1000, 'page closed');
  }
});
window.addEventListener('pageshow', (event) => {
  if (event.persisted && url && !socket && (state !== 'rejected' || canRetry)) retryNow();
});

// ---------------------------------------------------------------------------------------- the composer

function showComposerError(text) {
  composerError.textContent = text;
  composerError.hidden = false;
}

/** A message the server could not deliver goes back into the composer (unless the reader typed something new). */
function giveBack(text) {
  const pending = pendingOwn.indexOf(text);
  if (pending >= 0) pendingOwn.splice(pending, 1);
  if (input.value === '' || input.value === text) {
    input.value = text;
    showComposerError('Not delivered; your message is back here. Send it again when you like.');
  } else {
    showComposerError(`Not delivered: “${text}”.`);
  }
}

function hideComposerError() {
  composerError.hidden = true;
  composerError.textContent = '';
}

$('chat-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = input.value;
  if (text.trim() === '') {
    input.focus();
    return;
  }
  const frame = JSON.stringify({ message: text });
  const bytes = new TextEncoder().encode(frame).length;
  if (bytes > MAX_FRAME_BYTES) {
    showComposerError(`This message is too long to send (${Math.ceil(bytes / 1024)} KB; the limit is 32 KB).`);
    return;
  }
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    showComposerError('Not connected right now. Your message is still here: send it again once the status says Connected.');
    return;
  }
  socket.send(frame);
  pendingOwn.push(text);
  if (pendingOwn.length > 100) pendingOwn.shift();
  hideComposerError();
  input.value = '';
  input.focus();
  scrollToBottom();
});

input.addEventListener('input', () => {
  if (!composerError.hidden && state === 'connected') hideComposerError();
});

// ----------------------------------------------------------------------------------------------- start

function start() {
  const lobby = linkWithWs('index.html');
  $('back-to-lobby').href = lobby;
  $('banner-lobby').href = lobby;
  $('room-name').textContent = room ?? '';
  document.title = room ? `#${room} · wschat` : 'No room · wschat';

  if (room === null) {
    document.querySelector('.hash').hidden = true;
    $('room-name').textContent = 'No room';
    $('banner-lobby').textContent = 'Choose a room';
    refuse('Rejected', 'No room given: this page needs ?room=NAME in its address.', null);
    return;
  }
  const check = checkRoomName(room);
  if (!check.ok) {
    refuse('Rejected', `This room name will not be accepted by the server. ${check.reason}`, null);
    return;
  }
  if (!nameCheck.ok) {
    refuse('Rejected', `This name will not be accepted by the server. ${nameCheck.reason}`, null);
    return;
  }
  const base = websocketBase();
  if (!base.ok) {
    refuse('Rejected', base.reason, null);
    return;
  }
  url = socketUrl(base.url, room, myName);
  $('my-name').textContent = myName ? `as ${myName}` : 'anonymously';
  try {
    $('server-info').textContent = `Server: ${new URL(base.url).host} (from ${base.source})`;
  } catch {
    // websocketBase already parsed it; nothing to show otherwise.
  }
  if (kept.frames.length > 0) {
    const own = new Set(kept.own);
    for (const frame of kept.frames) showChat(frame, own.has(frame.seq));
    appendLine('system', 'Earlier messages of this tab, restored after a reload.');
  }
  input.focus();
  connect();
}

start();
