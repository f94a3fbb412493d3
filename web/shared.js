// Helpers shared by the lobby (index.html) and the room page (room.html).
// Plain ES module, no build step. Nothing here touches the DOM except `linkWithWs`' callers.

/** Longest room name, in characters (code points), like the server's MAX_ROOM_NAME_CHARS. */
export const MAX_ROOM_NAME_CHARS = 100;

/**
 * The server's `$connect` rule (shared/src/wire.rs, RoomName::parse): 1–100 Unicode word characters.
 * Rust's `char::is_alphanumeric` is `Alphabetic || Numeric(Nd|Nl|No)`, which is exactly
 * `[\p{Alphabetic}\p{N}]`; plus the underscore. The `u` flag makes `{1,100}` count code points,
 * not UTF-16 units, so "😀"-style surrogate pairs are counted (and refused) as one character.
 */
const ROOM_NAME = /^[\p{Alphabetic}\p{N}_]+$/u;

/**
 * Checks a room name against the server's rule.
 * @param {string} name
 * @returns {{ok: true} | {ok: false, reason: string}}
 */
export function checkRoomName(name) {
  if (name.length === 0) {
    return { ok: false, reason: 'Type a room name.' };
  }
  const chars = [...name];
  const bad = [...new Set(chars.filter((c) => !ROOM_NAME.test(c)).map((c) => (/\s/u.test(c) ? 'spaces' : `“${c}”`)))];
  if (bad.length > 0) {
    const shown = bad.length > 3 ? `${bad.slice(0, 3).join(', ')}, …` : bad.join(', ');
    return { ok: false, reason: `Room names can only use letters, digits and underscores (not ${shown}).` };
  }
  if (chars.length > MAX_ROOM_NAME_CHARS) {
    return { ok: false, reason: `Room names can be at most ${MAX_ROOM_NAME_CHARS} characters long (this one has ${chars.length}).` };
  }
  return { ok: true };
}

/** The page's query parameters. */
export function params() {
  return new URLSearchParams(window.location.search);
}

/**
 * A same-directory link such as `room.html?room=x`, keeping the `ws` parameter the page was opened with
 * (so a lobby opened with `?ws=wss://…` keeps talking to that server).
 * @param {string} page e.g. "room.html" or "index.html"
 * @param {Record<string, string>} [query]
 */
export function linkWithWs(page, query = {}) {
  const parts = Object.entries(query).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  const ws = params().get('ws');
  if (ws) parts.push(`ws=${encodeURIComponent(ws)}`);
  return parts.length ? `${page}?${parts.join('&')}` : page;
}

/**
 * Where to open the WebSocket: `?ws=` wins, then `window.WSCHAT_CONFIG.websocketUrl` (config.js),
 * then `ws(s)://<this host>/`.
 * @returns {{ok: true, url: string, source: string} | {ok: false, reason: string}}
 */
export function websocketBase() {
  const fromQuery = params().get('ws');
  const fromConfig = window.WSCHAT_CONFIG && window.WSCHAT_CONFIG.websocketUrl;
  let raw;
  let source;
  if (fromQuery) {
    raw = fromQuery;
    source = 'the ws parameter';
  } else if (fromConfig) {
    raw = String(fromConfig);
    source = 'config.js';
  } else {
    if (!window.location.host) {
      return { ok: false, reason: 'No server configured: open this page from a web server, or add ?ws=wss://… to the address.' };
    }
    raw = `${window.location.protocol === 'https:' ? 'wss:' : 'ws:'}//${window.location.host}/`;
    source = 'this page’s address';
  }
  let parsed;
  try {
    parsed = new URL(raw);
  } catch {
    return { ok: false, reason: `The server address from ${source} is not a URL: ${raw}` };
  }
  const scheme = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }[parsed.protocol];
  if (!scheme) {
    return { ok: false, reason: `The server address from ${source} must start with ws:// or wss:// (got ${parsed.protocol}).` };
  }
  // Keep the text as given (the stage path and any query); only swap an http(s) scheme for ws(s).
  const url = scheme === parsed.protocol ? raw : scheme + raw.slice(parsed.protocol.length);
  return { ok: true, url, source };
}

/**
 * `<base>?room=<room>`, or `<base>&room=<room>` when the base already has a query; `&name=<name>` when given.
 * @param {string} base
 * @param {string} room
 * @param {string | null} [name]
 */
export function socketUrl(base, room, name = null) {
  const hash = base.indexOf('#');
  const clean = hash >= 0 ? base.slice(0, hash) : base;
  let sep = '?';
  if (clean.includes('?')) sep = clean.endsWith('?') || clean.endsWith('&') ? '' : '&';
  const named = name ? `&name=${encodeURIComponent(name)}` : '';
  return `${clean}${sep}room=${encodeURIComponent(room)}${named}`;
}

/** Longest display name, in characters (code points), like the server's MAX_DISPLAY_NAME_CHARS. */
export const MAX_DISPLAY_NAME_CHARS = 32;

/** Control and format characters (line breaks, zero-width and bidi characters): the server refuses them. */
const INVISIBLE = /[\p{Cc}\p{Cf}]/u;

/**
 * The server's rule for `?name=` (shared/src/wire.rs, DisplayName::parse): NFC, trimmed, 1–32 characters, no
 * control or format characters. An empty name means anonymous, which is fine.
 * @param {string} raw
 * @returns {{ok: true, name: string | null} | {ok: false, reason: string}}
 */
export function checkDisplayName(raw) {
  const name = raw.normalize('NFC').trim();
  if (name.length === 0) return { ok: true, name: null };
  if (INVISIBLE.test(name)) {
    return { ok: false, reason: 'Names cannot contain line breaks or invisible characters.' };
  }
  const chars = [...name].length;
  if (chars > MAX_DISPLAY_NAME_CHARS) {
    return { ok: false, reason: `Names can be at most ${MAX_DISPLAY_NAME_CHARS} characters long (this one has ${chars}).` };
  }
  return { ok: true, name };
}

const NAME_KEY = 'wschat.name';

/** The display name this browser used last ('' when none, or storage is unavailable). */
export function savedName() {
  try {
    return window.localStorage.getItem(NAME_KEY) || '';
  } catch {
    return '';
  }
}

/** Remembers the display name (an empty one forgets it). */
export function saveName(name) {
  try {
    if (name) window.localStorage.setItem(NAME_KEY, name);
    else window.localStorage.removeItem(NAME_KEY);
  } catch {
    // Storage disabled: the name is asked again next time.
  }
}

const RECENT_KEY = 'wschat.recentRooms';
const RECENT_MAX = 8;

/** Recently used rooms, newest first (an empty list when storage is unavailable). */
export function recentRooms() {
  try {
    const list = JSON.parse(window.localStorage.getItem(RECENT_KEY) || '[]');
    return Array.isArray(list) ? list.filter((r) => typeof r === 'string' && checkRoomName(r).ok).slice(0, RECENT_MAX) : [];
  } catch {
    return [];
  }
}

/** Moves `room` to the front of the recent list. */
export function rememberRoom(room) {
  try {
    const list = [room, ...recentRooms().filter((r) => r !== room)].slice(0, RECENT_MAX);
    window.localStorage.setItem(RECENT_KEY, JSON.stringify(list));
  } catch {
    // Storage disabled or full: the list is a convenience, never an error.
  }
}

/** Empties the recent list. */
export function forgetRooms() {
  try {
    window.localStorage.removeItem(RECENT_KEY);
  } catch {
    // Ignored, as above.
  }
}
