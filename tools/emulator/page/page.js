// The emulator's page: polls the emulator's own endpoints once a second and draws what they say. Plain DOM, every
// value set as text (a room name or an id is never markup).
'use strict';

const POLL_MS = 1000;
const WINDOW = 60; // seconds the chart shows
const EVENTS_SHOWN = 200;

const $ = (selector) => document.querySelector(selector);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

async function getJson(path) {
  const response = await fetch(path, { cache: 'no-store' });
  if (!response.ok) {
    const error = new Error(`${path}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// --- connections by room ---------------------------------------------------------------------------------------
function roomOf(connection) {
  return (connection.authorizer && connection.authorizer.room)
    || (connection.queryString && connection.queryString.room)
    || '(none)';
}

function drawRooms(connections) {
  const rooms = new Map();
  for (const connection of connections) {
    const room = roomOf(connection);
    if (!rooms.has(room)) rooms.set(room, []);
    rooms.get(room).push(connection.connectionId);
  }
  const body = $('#rooms tbody');
  body.replaceChildren();
  for (const [room, ids] of [...rooms.entries()].sort((a, b) => b[1].length - a[1].length)) {
    const row = el('tr');
    row.dataset.room = room;
    row.append(el('td', room), el('td', ids.length, 'num'), el('td', ids.join(' '), 'ids'));
    body.append(row);
  }
  $('#rooms-empty').hidden = connections.length > 0;
  return rooms.size;
}

// --- messages per second -----------------------------------------------------------------------------------------
const samples = []; // {in, out} per poll, newest last
let previous = null;

function sample(meter) {
  const now = { in: meter.apiGateway.messagesReceived, out: meter.apiGateway.messagesSent, at: Date.now() };
  if (previous) {
    const seconds = Math.max((now.at - previous.at) / 1000, 0.001);
    samples.push({ in: (now.in - previous.in) / seconds, out: (now.out - previous.out) / seconds });
    if (samples.length > WINDOW) samples.shift();
  }
  previous = now;
}

function drawChart() {
  const peak = Math.max(1, ...samples.map((s) => Math.max(s.in, s.out)));
  const points = (key) => samples
    // The newest sample at the right edge, one second apart.
    .map((s, i) => `${600 - ((samples.length - 1 - i) * 600) / (WINDOW - 1)},${(120 - (s[key] / peak) * 115).toFixed(1)}`)
    .join(' ');
  $('#chart-in').setAttribute('points', points('in'));
  $('#chart-out').setAttribute('points', points('out'));
  const last = samples[samples.length - 1] || { in: 0, out: 0 };
  $('#rate-in').value = last.in.toFixed(1);
  $('#rate-out').value = last.out.toFixed(1);
  $('#rate-peak').value = peak === 1 && samples.every((s) => s.in < 1 && s.out < 1) ? '0' : peak.toFixed(1);
}

// --- cost meter --------------------------------------------------------------------------------------------------
function drawMeter(meter) {
  const rows = [
    ['Messages from clients', meter.apiGateway.messagesReceived],
    ['Messages to clients', meter.apiGateway.messagesSent],
    ['Billed messages (32 KB units)', meter.apiGateway.billedMessages],
    ['Connections so far', meter.apiGateway.connections],
    ['Connection minutes', meter.apiGateway.connectionMinutes.toFixed(2)],
    ['Lambda requests', meter.lambda.requests],
    ['Lambda GB-seconds', meter.lambda.gbSeconds.toFixed(4)],
    ['Redis commands', meter.redis ? meter.redis.commands : 'not counted'],
    ['Closed by DeleteConnection', meter.refusals.closedByDeleteConnection],
    ...Object.entries(meter.refusals.byRoute).map(([route, n]) => [`Refused: ${route}`, n]),
    ['Cost so far, USD', meter.costUsd.total.toFixed(6)],
  ];
  const body = $('#meter tbody');
  body.replaceChildren(...rows.map(([name, value]) => {
    const row = el('tr');
    row.append(el('th', name), el('td', value, 'num'));
    row.firstChild.scope = 'row';
    return row;
  }));
}

// --- fault switches ----------------------------------------------------------------------------------------------
const form = $('#faults');
let editing = false;

function showFaults(faults) {
  if (editing) return;
  for (const input of form.querySelectorAll('input')) {
    const value = faults[input.name];
    input.value = Array.isArray(value) ? value.join(', ') : value;
  }
}

async function postFaults(change) {
  const status = $('#faults-status');
  try {
    const response = await fetch('/_emulator/faults', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(change),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.status);
    status.className = '';
    status.textContent = 'expired' in change
      ? `Expired ${answer.expired} connection(s).`
      : `Set ${Object.keys(change).join(', ')}.`;
    editing = false;
    showFaults(answer);
  } catch (error) {
    status.className = 'bad';
    status.textContent = `Not changed: ${error.message}`;
  }
}

form.addEventListener('focusin', () => { editing = true; });
form.addEventListener('focusout', () => { editing = false; });
form.addEventListener('submit', (event) => event.preventDefault());
form.addEventListener('change', (event) => {
  const input = event.target;
  const value = input.name === 'throttleConnections'
    ? input.value.split(',').map((id) => id.trim()).filter(Boolean)
    : Number(input.value);
  postFaults({ [input.name]: value });
});
$('#expire-all').addEventListener('click', () => postFaults({ expire: 'all' }));

// --- recent events -----------------------------------------------------------------------------------------------
let lastSeq = 0;

function describe(event) {
  switch (event.kind) {
    case 'handshake': return ['handshake', event.room === null ? '(no room)' : `room ${event.room}`];
    case 'invoke': return [`invoke ${event.function}`, event.connection || ''];
    case '@connections': return [`${event.method} @connections`, event.connection];
    default: return [event.kind, ''];
  }
}

function addEvents(events) {
  const body = $('#events tbody');
  for (const event of events) {
    lastSeq = Math.max(lastSeq, event.seq);
    const [what, which] = describe(event);
    const row = el('tr');
    row.dataset.kind = event.kind;
    row.dataset.status = event.status;
    const failed = typeof event.status !== 'number' ? event.status !== 'Allow' : event.status >= 400;
    if (failed) row.className = 'bad';
    row.append(
      el('td', new Date(event.at).toLocaleTimeString()),
      el('td', what),
      el('td', which, 'ids'),
      el('td', event.status),
      el('td', event.ms === undefined ? '' : event.ms.toFixed(1), 'num'),
    );
    body.prepend(row);
  }
  while (body.children.length > EVENTS_SHOWN) body.lastChild.remove();
}

// --- the functions' metrics --------------------------------------------------------------------------------------
function drawEmf(emf) {
  const functions = Object.keys(emf.totals).sort();
  $('#emf-note').textContent = `Embedded Metric Format, namespace ${emf.namespace}, dimension Function: `
    + `totals since start (${functions.map((f) => `${f} ×${emf.invocations[f]}`).join(', ') || 'no invocation yet'}).`;
  const head = $('#emf thead tr');
  head.replaceChildren(el('th', 'Metric'), el('th', 'Unit'), ...functions.map((f) => el('th', f, 'num')));
  const body = $('#emf tbody');
  body.replaceChildren();
  for (const metric of emf.metrics) {
    const values = functions.map((f) => emf.totals[f][metric.name]);
    if (values.every((v) => v === undefined)) continue;
    const row = el('tr');
    row.dataset.metric = metric.name;
    row.title = metric.description;
    row.append(el('th', metric.name), el('td', metric.unit));
    row.firstChild.scope = 'row';
    for (const value of values) {
      const shown = value === undefined ? '' : (Number.isInteger(value) ? value : value.toFixed(2));
      row.append(el('td', shown, 'num'));
    }
    body.append(row);
  }
}

function noEmf(error) {
  $('#emf-note').textContent = error.status === 404
    ? 'The functions run in Lambda mode: their metrics are lines in their own logs (cargo lambda watch).'
    : `Could not read the metrics: ${error.message}`;
}

// --- the loop ----------------------------------------------------------------------------------------------------
async function poll() {
  try {
    const [connections, meter, faults, events] = await Promise.all([
      getJson('/_emulator/connections'),
      getJson('/_emulator/metrics'),
      getJson('/_emulator/faults'),
      getJson(`/_emulator/events?after=${lastSeq}`),
    ]);
    const rooms = drawRooms(connections);
    sample(meter);
    drawChart();
    drawMeter(meter);
    showFaults(faults);
    addEvents(events.events);
    $('#summary').textContent = `${connections.length} connection(s) in ${rooms} room(s); `
      + `up ${Math.round(meter.seconds)} s.`;
  } catch (error) {
    $('#summary').textContent = `The emulator does not answer: ${error.message}`;
  }
  getJson('/_emulator/emf').then(drawEmf, noEmf);
}

poll();
setInterval(poll, POLL_MS);
