// The lobby: pick a room name, check it with the server's rule, go to room.html?room=<name>.
import { checkRoomName, linkWithWs, recentRooms, forgetRooms } from './shared.js';

const form = document.getElementById('room-form');
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

form.addEventListener('submit', (event) => {
  event.preventDefault();
  // NFC: a letter typed as base + combining accent ("e\u0301") becomes the one character the rule accepts ("é").
  const name = input.value.trim().normalize('NFC');
  const check = checkRoomName(name);
  if (!check.ok) {
    showError(check.reason);
    input.focus();
    return;
  }
  clearError();
  window.location.assign(linkWithWs('room.html', { room: name }));
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
    a.href = linkWithWs('room.html', { room });
    a.textContent = room;
    const li = document.createElement('li');
    li.append(a);
    recentList.append(li);
  }
  recent.hidden = rooms.length === 0;
}

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
