// The room page: one WebSocket to `<websocketUrl>?room=<name>&name=<name>`, a message log, a composer, and who
// is here. This file only wires the parts together:
//
// * connection.js: the socket, reconnection with backoff, the ping, refusals (no DOM; unit-tested in Node);
// * status.js: what the page shows of the connection;
// * sequence.js: messages in seq order, each once, gaps fetched with history (no DOM; unit-tested in Node);
// * kept.js: what this tab showed, kept across reloads;
// * log.js, presence.js, composer.js: the log, who is here, the input.
//
// For everyone: the banner's reason and errors are said once (an assertive region of their own; a repeated error
// is merged into its line and not said again), the status pill says each state once, a history answer being
// applied marks the log busy so it is not read out line by line, and after anything that hides or disables the
// focused control, focus moves to the composer, else Retry, else the link to the lobby. A hidden tab counts the
// messages it has not shown in its title.
//
// Wire format (the Django Channels tutorial's, plus fields; docs/protocol.md): we send {message: text}; the server
// broadcasts {"message", "user", "seq", "epoch", "ts"} to everyone in the room, the sender included, and answers a
// frame it refuses with {"error": "..."} to the sender only. On every (re)connect the page asks
// {"action": "history", "after": <last seq shown>, "epoch": …} and {"action": "presence"}.
//
// The room name and the display name are checked here with the server's rules before any attempt: a refused
// handshake is invisible to a browser (it only sees code 1006). When the chat needs sign-in (auth.js), the page
// first makes sure of a token (renewing it, or off to the lobby's sign-in and back), offers it as a subprotocol on
// every connect, renews it before it expires, and after the server's "token expired" reconnects with a fresh one
// and resumes from history; its own messages are the ones with its user id.
import { linkWithWs, params, socketUrl, websocketBase } from './address.js';
import { pageAuth } from './auth.js';
import { Composer } from './composer.js';
import { Connection } from './connection.js';
import { KeptMessages } from './kept.js';
import { MessageLog } from './log.js';
import { checkDisplayName, checkRoomName } from './names.js';
import { Presence } from './presence.js';
import { RoomSequence, isSequenced } from './sequence.js';
import { ConnectionStatus } from './status.js';
import { rememberRoom, savedName } from './storage.js';

// A ping well inside API Gateway's 10-minute idle timeout; `?ping=SECONDS` shortens it (tests).
const PING_MS = (Number(params().get('ping')) || 240) * 1000;

const $ = (id) => document.getElementById(id);
const room = params().get('room');
const auth = pageAuth();
const signedIn = auth && auth.who();
// Signed in: the sign-in's name. Else `?name=` (the lobby puts it there), or the name this browser used last,
// checked with the server's rule.
const nameCheck = auth ? { ok: true, name: signedIn ? signedIn.name : null } : checkDisplayName(params().get('name') ?? savedName());
const myName = nameCheck.ok ? nameCheck.name : null;
const myUid = signedIn ? signedIn.uid : null;
let token = null;

/** Says `text` once, at once, through the page's alert region. */
function announce(text) {
  const region = $('announce');
  // Emptied first, so the same words said again are a change the screen reader hears.
  region.textContent = '';
  setTimeout(() => { region.textContent = text; }, 50);
}

/** After what may have hidden or disabled the focused control: focus somewhere useful, never <body>. */
function rescueFocus() {
  setTimeout(() => {
    const active = document.activeElement;
    const lost = !active || active === document.body || active.disabled || active.closest('[hidden]') !== null;
    if (!lost) return;
    const input = $('chat-message-input');
    const retry = $('retry-button');
    const banner = $('connection-banner');
    if (!input.disabled) input.focus();
    else if (!banner.hidden && !retry.hidden) retry.focus();
    else if (!banner.hidden) $('banner-lobby').focus();
    else $('chat-log').focus();
  }, 0);
}

const baseTitle = () => (room ? `#${room} · wschat` : 'No room · wschat');
let unread = 0;
/** One more message the reader has not seen, while the tab is hidden. */
function countUnread() {
  if (document.visibilityState !== 'hidden') return;
  unread += 1;
  document.title = `(${unread}) ${baseTitle()}`;
}
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && unread > 0) {
    unread = 0;
    document.title = baseTitle();
  }
});

/** The banner's reason last said aloud (until the page is connected again). */
let bannerSaid = null;

let busyTimer = 0;
/** The log is busy while a history answer is applied (and at most a few seconds). */
function historyBusy(busy) {
  clearTimeout(busyTimer);
  log.busy(busy);
  if (busy) busyTimer = setTimeout(() => log.busy(false), 5_000);
}

/** An error line, said aloud only when it is not a repeat of the one above. */
function showError(text) {
  // The same error with other figures in it ("wait 1.2 s") is a repeat.
  if (log.error(text, text.replace(/\d[\d.,]*/g, '#'))) announce(text);
}

const log = new MessageLog($('chat-log'), $('new-messages'));
const kept = new KeptMessages(room);
const presence = new Presence({ $, myName, log, ask: () => connection.send('{"action":"presence"}') });
const status = new ConnectionStatus($);

const connection = new Connection({
  room,
  pingMs: PING_MS,
  view: {
    state(next, text) {
      status.state(next, text);
      composer.setDisabled(next === 'rejected');
      if (next === 'connected') {
        composer.hideError();
        bannerSaid = null;
      }
      rescueFocus();
    },
    banner(text, retryLabel) {
      status.banner(text, retryLabel);
      // Once per reason: a reconnecting banner shown again after each attempt is not news.
      if (text !== bannerSaid) announce(text);
      bannerSaid = text;
      rescueFocus();
    },
    hideBanner() {
      status.hideBanner();
      rescueFocus();
    },
    countdown: (text) => status.countdown(text),
  },
  opened(again) {
    rememberRoom(room);
    log.system(again
      ? 'Reconnected; fetching what was said meanwhile.'
      : `Connected to #${room}. Messages appear here as they are sent.`);
    historyBusy(true);
    sequence.resume();
    connection.send('{"action":"presence"}');
  },
  received,
  lost: (reason) => log.system(`Disconnected (${reason}).`),
  protocols: () => (token ? ['wschat', token] : null),
});

const composer = new Composer({
  $,
  myName,
  send: (frame) => connection.send(frame),
  connected: () => connection.state === 'connected',
  sent: (id, text) => log.pending(id, text),
  settled: (id) => log.settled(id),
  announce,
});

const sequence = new RoomSequence({
  epoch: kept.epoch,
  last: kept.last,
  shown: kept.frames,
  deliver(frame) {
    const own = composer.claim(frame) || (myUid !== null && frame.uid === myUid);
    kept.add(frame, own);
    log.chat(frame, own);
    if (!own) countUnread();
    kept.save(sequence.epoch, sequence.last);
  },
  requestHistory(after, epoch) {
    connection.send(JSON.stringify(after === null ? { action: 'history' } : { action: 'history', after, epoch }));
  },
  notice(kind) {
    if (kind === 'reset') {
      kept.clear();
      log.system('The server lost this room’s history; the conversation starts again from here.');
    } else if (kind === 'rewound') {
      kept.clear();
      log.system('The server lost the last messages shown above (it was restored from an older copy); what follows was said after them.');
    } else {
      log.system('Some earlier messages are no longer available.');
    }
    kept.save(sequence.epoch, sequence.last);
  },
});

/** One frame from the server, by what it is. */
function received(data) {
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    showError('The server sent something that is not JSON; it was ignored.');
    return;
  }
  if (frame !== null && typeof frame === 'object' && !Array.isArray(frame)) {
    if (isSequenced(frame)) {
      sequence.onChat(frame);
      return;
    }
    if (Array.isArray(frame.history) && typeof frame.epoch === 'string') {
      sequence.onHistory(frame);
      if (frame.complete !== undefined) historyBusy(false);
      return;
    }
    if (typeof frame.pong === 'number') {
      sequence.onHead(frame.epoch, frame.seq);
      return;
    }
    if (presence.onFrame(frame)) {
      if (frame.presence) sequence.onHead(frame.epoch, frame.seq);
      return;
    }
    if (typeof frame.error === 'string') {
      if (auth && frame.error === 'token expired') {
        log.system('Your sign-in expired; renewing it and reconnecting.');
        renewThen(() => connection.retryNow());
        if (typeof frame.undelivered === 'string') composer.giveBack(frame.undelivered, typeof frame.id === 'string' ? frame.id : null);
        return;
      }
      // The server does not know whether a message of ours was stored: the composer sends it again with its id.
      if (frame.uncertain === true && typeof frame.id === 'string' && composer.uncertain(frame.id)) return;
      showError(`Server error: ${frame.error}`);
      if (typeof frame.undelivered === 'string') {
        composer.giveBack(frame.undelivered, typeof frame.id === 'string' ? frame.id : null);
      } else if (Number.isSafeInteger(frame.retryAfterMs)) {
        // A request of this page's own was over its budget: the history it was waiting for is asked again.
        setTimeout(() => { if (!sequence.synced) sequence.resume(); }, frame.retryAfterMs);
      }
      return;
    }
    // What API Gateway itself sends when an integration failed: an error, never a chat line.
    if (typeof frame.message === 'string' && 'connectionId' in frame && 'requestId' in frame) {
      showError(`Server error: ${frame.message}. Your last message may not have been delivered.`);
      return;
    }
    if (typeof frame.message === 'string') {
      const own = composer.claim(frame);
      log.chat(frame, own); // a server without sequence numbers
      if (!own) countUnread();
      return;
    }
  }
  showError('The server sent a frame this page does not understand; it was ignored.');
}

$('retry-button').addEventListener('click', () => {
  connection.retryNow();
  rescueFocus();
});
window.addEventListener('online', () => connection.online());
// Leaving the page: close on purpose (no reconnect). Coming back from the back/forward cache: connect again.
window.addEventListener('pagehide', () => connection.leave());
window.addEventListener('pageshow', (event) => connection.returned(event.persisted));

/** Off to the lobby's sign-in, and back to this room. */
async function goSignIn() {
  try {
    window.location.assign(await auth.signInUrl(new URL('index.html', window.location.href).href.split('?')[0], window.location.href));
  } catch (error) {
    connection.refuse('Rejected', `This chat needs you to sign in, and the sign-in service cannot be reached: ${error.message}.`, 'Retry');
  }
}

let renewTimer = 0;
/** A token good for a while (renewed if it must be), then `next`; off to sign in when it cannot be had. */
function renewThen(next) {
  auth.fresh().then((fresh) => {
    if (!fresh) {
      goSignIn();
      return;
    }
    token = fresh;
    clearTimeout(renewTimer);
    const at = auth.renewAt();
    if (at !== null) renewTimer = setTimeout(() => renewThen(() => {}), Math.max(1_000, at - Date.now()));
    next();
  }, () => goSignIn());
}

function start() {
  const lobby = linkWithWs('index.html');
  $('back-to-lobby').href = lobby;
  $('banner-lobby').href = lobby;
  $('room-name').textContent = room ?? '';
  document.title = baseTitle();

  if (room === null) {
    document.querySelector('.hash').hidden = true;
    $('room-name').textContent = 'No room';
    $('banner-lobby').textContent = 'Choose a room';
    connection.refuse('Rejected', 'No room given: this page needs ?room=NAME in its address.', null);
    return;
  }
  const check = checkRoomName(room);
  if (!check.ok) {
    connection.refuse('Rejected', `This room name will not be accepted by the server. ${check.reason}`, null);
    return;
  }
  if (!nameCheck.ok) {
    connection.refuse('Rejected', `This name will not be accepted by the server. ${nameCheck.reason}`, null);
    return;
  }
  const base = websocketBase();
  if (!base.ok) {
    connection.refuse('Rejected', base.reason, null);
    return;
  }
  $('my-name').textContent = myName ? `as ${myName}` : 'anonymously';
  try {
    $('server-info').textContent = `Server: ${new URL(base.url).host} (from ${base.source})`;
  } catch {
    // websocketBase already parsed it; nothing to show otherwise.
  }
  if (kept.frames.length > 0) {
    historyBusy(true);
    const own = new Set(kept.own);
    for (const frame of kept.frames) log.chat(frame, own.has(frame.seq));
    log.system('Earlier messages of this tab, restored after a reload.');
  }
  composer.focus();
  const url = socketUrl(base.url, room, auth ? null : myName);
  if (auth) renewThen(() => connection.start(url));
  else connection.start(url);
}

start();
