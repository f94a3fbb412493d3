// What this browser remembers between visits (localStorage): the display name and the recent rooms. Every read
// and write survives storage being disabled or full: these are conveniences, never errors.
import { checkRoomName } from './names.js';

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
