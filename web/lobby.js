// The lobby: an optional display name (remembered in this browser) and a room name, both checked with the
// server's rules, then room.html?room=<room>&name=<name>. When the chat needs sign-in (config.js names an issuer),
// the name is the one the sign-in gives: the lobby offers "Sign in", shows who is signed in and "Sign out", and
// finishes a sign-in the issuer sends the browser back from (then goes on into the room it was for).
import { linkWithWs } from './address.js';
import { pageAuth } from './auth.js';
import { checkDisplayName, checkRoomName } from './names.js';
import { forgetRooms, recentRooms, saveName, savedName } from './storage.js';

const form = document.getElementById('room-form');
const nameInput = document.getElementById('display-name-input');
const nameError = document.getElementById('display-name-error');
const input = document.getElementById('room-name-input');
const error = document.getElementById('room-name-error');
const recent = document.getElementById('recent');
const recentList = document.getElementById('recent-list');

function showError(text) {
  error.textContent = text;
  error.hidden = false;
  input.setAttribute('aria-invalid', 'true');
}

function clearError() {
  error.hidden = true;
  error.textContent = '';
  input.removeAttribute('aria-invalid');
}

/** The room page's address: the room, and the name when there is one. */
function roomLink(room, name) {
  return linkWithWs('room.html', name ? { room, name } : { room });
}

/** The name typed, checked; shows why it is refused. `undefined` when refused. */
function checkedName() {
  const check = checkDisplayName(nameInput.value);
  if (!check.ok) {
    nameError.textContent = check.reason;
    nameError.hidden = false;
    nameInput.setAttribute('aria-invalid', 'true');
    nameInput.focus();
    return undefined;
  }
  nameError.hidden = true;
  nameInput.removeAttribute('aria-invalid');
  saveName(check.name);
  return check.name;
}

nameInput.value = savedName();

const auth = pageAuth();
const account = {
  section: document.getElementById('account'),
  who: document.getElementById('account-who'),
  signIn: document.getElementById('sign-in'),
  signOut: document.getElementById('sign-out'),
  error: document.getElementById('account-error'),
};
/** Where the issuer sends the browser back to: this lobby. */
const callback = new URL('index.html', window.location.href).href.split('?')[0];

function renderAccount() {
  const who = auth.who();
  account.who.textContent = who ? `Signed in as ${who.name}` : 'This chat needs you to sign in.';
  account.signIn.hidden = Boolean(who);
  account.signOut.hidden = !who;
}

function accountError(text) {
  account.error.textContent = text;
  account.error.hidden = false;
}

/** Off to the issuer's sign-in; back here, then to `returnTo`. */
async function signIn(returnTo) {
  try {
    window.location.assign(await auth.signInUrl(callback, returnTo));
  } catch (error) {
    accountError(`Cannot sign in: ${error.message}.`);
  }
}

if (auth) {
  document.getElementById('name-field').hidden = true;
  account.section.hidden = false;
  account.signIn.addEventListener('click', () => signIn(null));
  account.signOut.addEventListener('click', async () => {
    const away = await auth.signOut(callback);
    if (away) window.location.assign(away);
    else renderAccount();
  });
  renderAccount();
  auth.complete(window.location.href).then((returnTo) => {
    if (window.location.search.includes('state=')) window.history.replaceState(null, '', linkWithWs('index.html'));
    renderAccount();
    if (returnTo) window.location.assign(returnTo);
  }, (error) => {
    window.history.replaceState(null, '', linkWithWs('index.html'));
    accountError(`Sign-in failed: ${error.message}.`);
  });
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const person = auth ? null : checkedName();
  if (person === undefined) return;
  // NFC: a letter typed as base + combining accent ("e\u0301") becomes the one character the rule accepts ("é").
  const name = input.value.trim().normalize('NFC');
  const check = checkRoomName(name);
  if (!check.ok) {
    showError(check.reason);
    input.focus();
    return;
  }
  clearError();
  if (auth && !auth.who()) {
    signIn(roomLink(name, null));
    return;
  }
  window.location.assign(roomLink(name, person));
});

// Once the name is fixed, take the message away; do not nag while the person is still typing.
input.addEventListener('input', () => {
  if (!error.hidden && checkRoomName(input.value.trim().normalize('NFC')).ok) clearError();
});

function renderRecent() {
  const rooms = recentRooms();
  recentList.replaceChildren();
  for (const room of rooms) {
    const a = document.createElement('a');
    a.href = roomLink(room, auth ? null : checkDisplayName(nameInput.value).name ?? null);
    a.dataset.room = room;
    a.textContent = room;
    const li = document.createElement('li');
    li.append(a);
    recentList.append(li);
  }
  recent.hidden = rooms.length === 0;
}

// A recent room goes with the name as it is typed now, not as it was when the list was drawn.
recentList.addEventListener('click', (event) => {
  const a = event.target.closest('a');
  if (!a) return;
  event.preventDefault();
  const person = auth ? null : checkedName();
  if (person !== undefined) window.location.assign(roomLink(a.dataset.room, person));
});

document.getElementById('recent-clear').addEventListener('click', () => {
  forgetRooms();
  renderRecent();
  input.focus();
});

renderRecent();
// Coming back with the Back button restores the page from the cache: refresh the list.
window.addEventListener('pageshow', (event) => {
  if (event.persisted) renderRecent();
});
