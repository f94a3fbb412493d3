// The server's rules for names, checked before anything is sent: a room name (`$connect`'s `?room=`) and a display
// name (`?name=`). Plain ES module, no DOM.

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
