// web/connection.js without a browser: backoff with jitter, the ping, refusals, giving up, leaving and coming back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE_DELAY_MS, Connection, GIVE_UP_AFTER, MAX_DELAY_MS, REFUSED_AFTER, STABLE_MS, closeReason,
} from '../../web/connection.js';

/** A WebSocket the test opens and closes by hand. */
class FakeSocket {
  static made = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    this.listeners = {};
    FakeSocket.made.push(this);
  }

  addEventListener(type, fn) {
    (this.listeners[type] ??= []).push(fn);
  }

  emit(type, event = {}) {
    for (const fn of this.listeners[type] ?? []) fn(event);
  }

  send(data) {
    this.sent.push(data);
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  /** The server accepts the handshake. */
  accept() {
    this.readyState = 1;
    this.emit('open');
  }

  /** The connection ends (a refused handshake is a 1006 that never opened). */
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.emit('close', { code, reason });
  }
}

/** A page around a Connection: fake sockets, a fake clock and timers, and a record of what it was told. */
function page({ random = () => 0.5 } = {}) {
  FakeSocket.made = [];
  let now = 1_000_000;
  let nextId = 1;
  const timers = new Map(); // id → {at, fn, every}
  const told = { states: [], banners: [], countdown: '', opened: [], frames: [], lost: [] };
  const connection = new Connection({
    room: 'lobby',
    pingMs: 240_000,
    WebSocket: FakeSocket,
    now: () => now,
    random,
    timers: {
      setTimeout: (fn, ms) => { timers.set(nextId, { at: now + ms, fn }); return nextId++; },
      setInterval: (fn, ms) => { timers.set(nextId, { at: now + ms, fn, every: ms }); return nextId++; },
      clearTimeout: (id) => timers.delete(id),
      clearInterval: (id) => timers.delete(id),
    },
    view: {
      state: (next, text) => told.states.push([next, text]),
      banner: (text, retryLabel) => told.banners.push({ text, retryLabel }),
      hideBanner: () => told.banners.push(null),
      countdown: (text) => { told.countdown = text; },
    },
    opened: (again) => told.opened.push(again),
    received: (data) => told.frames.push(data),
    lost: (reason) => told.lost.push(reason),
  });
  /** Moves the clock by `ms`, firing the timers that come due, in order. */
  const advance = (ms) => {
    const until = now + ms;
    for (;;) {
      const due = [...timers.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      const [id, t] = due;
      now = t.at;
      if (t.every) t.at += t.every; else timers.delete(id);
      t.fn();
    }
    now = until;
  };
  const socket = () => FakeSocket.made.at(-1);
  const state = () => told.states.at(-1)[0];
  return { connection, told, advance, socket, state, sockets: FakeSocket.made };
}

test('an open connection is reported once and pings every pingMs until it closes', () => {
  const { connection, told, advance, socket, state } = page();
  connection.start('ws://chat/?room=lobby');

  assert.equal(state(), 'connecting');
  socket().accept();
  assert.equal(state(), 'connected');
  assert.deepEqual(told.opened, [false]);
  advance(240_000 * 2);
  assert.deepEqual(socket().sent, ['{"action":"ping"}', '{"action":"ping"}']);

  socket().drop(1001);
  advance(240_000);
  assert.equal(socket().sent.length, 0, 'the new socket is not open: nothing is pinged');
  assert.deepEqual(told.lost, ['the server went away, code 1001']);
});

test('a lost connection is retried after a jittered delay that doubles up to the cap', () => {
  const { connection, told, advance, socket, state, sockets } = page({ random: () => 0.999 });
  connection.start('ws://chat/');
  socket().accept();

  const delays = [];
  for (let attempt = 0; attempt < 7; attempt += 1) {
    socket().drop();
    assert.equal(state(), 'reconnecting');
    const before = sockets.length;
    let waited = 0;
    while (sockets.length === before && waited < 60_000) {
      advance(10);
      waited += 10;
    }
    delays.push(waited);
    if (attempt === 0) socket().accept(); // open briefly once, so later closes are "lost", not refusals
  }

  const ceilings = delays.map((_, i) => Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** i));
  delays.forEach((d, i) => assert.ok(d <= ceilings[i] + 10 && d >= ceilings[i] * 0.99 - 10, `${i}: ${d} vs ${ceilings[i]}`));
  assert.ok(Math.abs(delays.at(-1) - MAX_DELAY_MS) <= 20, `capped: ${delays.at(-1)}`);
  assert.ok(told.banners.some((b) => b && b.retryLabel === 'Reconnect now'), 'the banner shows after a few retries');
});

test('a connection that stayed open long enough resets the backoff', () => {
  const { connection, advance, socket, sockets } = page({ random: () => 0.999 });
  connection.start('ws://chat/');
  socket().accept();
  for (let i = 0; i < 4; i += 1) {
    socket().drop();
    advance(MAX_DELAY_MS);
  }
  socket().accept();
  advance(STABLE_MS);
  socket().drop();
  const before = sockets.length;

  advance(BASE_DELAY_MS);

  assert.equal(sockets.length, before + 1, 'the first delay again, not the fifth');
});

test('closes that never opened are a refusal with Retry, and Retry starts over', () => {
  const { connection, told, advance, socket, state, sockets } = page();
  connection.start('ws://chat/');

  for (let i = 0; i < REFUSED_AFTER; i += 1) {
    socket().drop();
    advance(MAX_DELAY_MS);
  }

  assert.equal(state(), 'rejected');
  assert.deepEqual(told.states.at(-1), ['rejected', 'Rejected']);
  const refusal = told.banners.at(-1);
  assert.equal(refusal.retryLabel, 'Retry');
  assert.match(refusal.text, /did not let this page into #lobby: 3 attempts/);
  assert.equal(sockets.length, REFUSED_AFTER, 'no attempt after the refusal');

  connection.retryNow();
  socket().accept();
  assert.equal(state(), 'connected');
});

test('after having been connected, the page gives up only after many failed attempts', () => {
  const { connection, told, advance, socket, state } = page();
  connection.start('ws://chat/');
  socket().accept();
  socket().drop();
  advance(MAX_DELAY_MS);

  for (let i = 0; i < GIVE_UP_AFTER - 1; i += 1) {
    socket().drop();
    assert.equal(state(), 'reconnecting', `attempt ${i + 1}`);
    advance(MAX_DELAY_MS);
  }
  socket().drop();

  assert.deepEqual(told.states.at(-1), ['rejected', 'Not connected']);
  assert.match(told.banners.at(-1).text, /Gave up reconnecting after 10 failed attempts/);
  connection.online();
  assert.equal(state(), 'connecting', 'the network coming back tries again');
});

test('leaving the page closes on purpose without reconnecting, and coming back connects again', () => {
  const { connection, advance, socket, state, sockets } = page();
  connection.start('ws://chat/');
  const first = socket();
  first.accept();

  connection.leave();
  first.drop(1000);
  advance(MAX_DELAY_MS * 2);

  assert.deepEqual(first.closedWith, { code: 1000, reason: 'page closed' });
  assert.equal(sockets.length, 1, 'no reconnect');
  connection.returned(false);
  assert.equal(sockets.length, 1, 'a page not restored from the cache does nothing');
  connection.returned(true);
  assert.equal(sockets.length, 2);
  assert.equal(state(), 'connecting');
});

test('frames reach the page only from the current socket, and send needs an open one', () => {
  const { connection, told, socket } = page();
  connection.start('ws://chat/');
  assert.equal(connection.send('early'), false);
  const first = socket();
  first.accept();

  first.emit('message', { data: 'one' });
  assert.equal(connection.send('hello'), true);
  first.drop();
  first.emit('message', { data: 'stale' });

  assert.deepEqual(told.frames, ['one']);
  assert.deepEqual(first.sent, ['hello']);
});

test('a close is told in words, with the server\'s reason when it gave one', () => {
  assert.equal(closeReason({ code: 1006, reason: '' }), 'connection lost, code 1006');
  assert.equal(closeReason({ code: 1009, reason: 'Message too big' }), 'message too big: Message too big');
  assert.equal(closeReason({ code: 4000, reason: '' }), 'closed, code 4000');
});

test('while reconnecting the status words stay the same, so a screen reader hears the state once', () => {
  const { connection, told, advance, socket } = page({ random: () => 0.5 });
  connection.start('ws://chat/');
  socket().accept();
  told.states.length = 0;
  for (let attempt = 0; attempt < 4; attempt += 1) {
    socket().drop();
    advance(30_000);
  }

  const words = new Set(told.states.map(([, text]) => text));
  assert.ok(told.states.length >= 8, `between attempts and waits: ${told.states.length} states`);
  assert.deepEqual([...words], ['Reconnecting…'], 'connecting again and waiting say the same words');
});
