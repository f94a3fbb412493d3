// Shared set-up for the browser tests: start the emulator, launch headless Chromium, open pages,
// wait for conditions (always bounded), keep screenshots in <repo>/test-artifacts/browser/.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { after, before } from 'node:test';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ARTIFACTS = join(REPO, 'test-artifacts', 'browser');

/** Upper bound for any single wait in a test; the emulator answers in milliseconds. WSCHAT_TEST_WAIT_MS raises it on slow machines. */
export const WAIT_MS = Number(process.env.WSCHAT_TEST_WAIT_MS) || 5_000;

/** Options for every test: a hung test fails instead of stalling the run. */
export const TEST_OPTIONS = { timeout: 12 * WAIT_MS };

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
  '--disable-quic',
];

const running = new Set();
// Last resort against orphans if the test process dies between start and stop.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    for (const child of running) child.kill('SIGKILL');
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 })[signal]);
  });
}

/**
 * Starts the emulator on a free port and resolves once it printed its "listening" line.
 * @returns {Promise<{base: string, port: number, stop: () => Promise<void>, output: () => string}>}
 */
export async function startEmulator(args = [], env = {}) {
  const bin = process.env.WSCHAT_EMULATOR_BIN || join(REPO, 'target', 'debug', 'wschat-emulator');
  if (!existsSync(bin)) {
    throw new Error(
      `wschat emulator binary not found at ${bin}.\n`
      + 'Build it first (cargo build -p wschat-emulator, or the Makefile target that runs these tests), '
      + 'or point WSCHAT_EMULATOR_BIN at it.',
    );
  }
  const extra = (process.env.WSCHAT_EMULATOR_ARGS || '').split(/\s+/).filter(Boolean);
  const child = spawn(bin, ['--port', '0', ...args, ...extra], {
    cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
  });
  running.add(child);
  let output = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    output = (output + chunk).slice(-20_000);
  });
  const exited = new Promise((resolveExit) => child.once('exit', (code, signal) => {
    running.delete(child);
    resolveExit({ code, signal });
  }));

  const lines = createInterface({ input: child.stdout });
  const port = await new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error(`emulator printed no "listening" line within 15 s.\n${output}`)), 15_000);
    lines.on('line', (line) => {
      output = (output + line + '\n').slice(-20_000);
      const match = /^wschat emulator listening on http:\/\/127\.0\.0\.1:(\d+)\s*$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolvePort(Number(match[1]));
      }
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`emulator exited before listening (code ${code}, signal ${signal}).\n${output}`));
    });
  }).catch(async (error) => {
    child.kill('SIGKILL');
    await exited;
    throw error;
  });

  return {
    port,
    base: `http://127.0.0.1:${port}`,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort() {
  const { createServer } = await import('node:net');
  const server = createServer();
  await new Promise((resolvePort) => server.listen(0, '127.0.0.1', resolvePort));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

/**
 * A redis-server of the test's own on a free port, that the test can kill and start again (empty) on the same
 * port. Needs redis-server on the PATH (tools/scripts/with-redis.sh installs it for `make test`).
 * `save()` snapshots its data: a `kill()` and `start()` after it bring that snapshot back (a restore from an
 * older copy), instead of an empty server.
 * `pause()` and `resume()` stop and continue the process (SIGSTOP, SIGCONT), as a stalled node.
 * @returns {Promise<{url: string, kill: () => Promise<void>, start: () => Promise<void>, save: () => Promise<void>,
 *   pause: () => void, resume: () => void}>}
 */
export async function startRedis() {
  const { connect } = await import('node:net');
  const port = await freePort();
  let child = null;
  const dbfilename = `redis-${port}-${Date.now()}.rdb`;
  const listening = () => new Promise((ok) => {
    const socket = connect(port, '127.0.0.1', () => { socket.end(); ok(true); });
    socket.on('error', () => ok(false));
  });
  const redis = {
    url: `redis://127.0.0.1:${port}`,
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--dir', ARTIFACTS, '--dbfilename', dbfilename], { stdio: 'ignore' });
      running.add(child);
      const deadline = Date.now() + 10_000;
      while (!(await listening())) {
        if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${port} within 10 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async save() {
      const saved = spawn('redis-cli', ['-p', String(port), 'SAVE'], { stdio: 'ignore' });
      const status = await new Promise((done) => saved.once('exit', done));
      if (status !== 0) throw new Error(`redis-cli SAVE exited with ${status}`);
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async kill() {
      if (!child) return;
      child.kill('SIGCONT');
      const dead = new Promise((done) => child.once('exit', done));
      child.kill('SIGKILL');
      await dead;
      running.delete(child);
      child = null;
    },
  };
  mkdirSync(ARTIFACTS, { recursive: true });
  await redis.start();
  return redis;
}

/**
 * Launches Debian's Chromium headless, with `extraArgs` after the usual ones (e.g. `--host-resolver-rules=…`).
 * Playwright gives each launch a fresh temporary profile directory.
 */
export async function launchBrowser(extraArgs = []) {
  const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    throw new Error(`Chromium not found at ${executablePath} (apt-get install -y chromium, or set CHROMIUM_BIN).`);
  }
  return chromium.launch({ executablePath, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs], timeout: 30_000 });
}

/** A file-name-safe version of a test name. */
function slug(name) {
  return name.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 120);
}

/** Saves a screenshot of `page` as test-artifacts/browser/<name>.png. Never fails the test. */
export async function snap(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${slug(name)}.png`);
  try {
    await page.screenshot({ path, timeout: WAIT_MS });
  } catch (error) {
    console.error(`could not save screenshot ${path}: ${error.message}`);
  }
  return path;
}

/**
 * Runs `fn` with `count` pages in a fresh browser context (own storage), screenshots every page
 * afterwards (pass or fail) and closes the context.
 * @param {import('node:test').TestContext} t
 * @param {import('playwright-core').Browser} browser
 * @param {number} count
 * @param {(pages: import('playwright-core').Page[], context: import('playwright-core').BrowserContext) => Promise<void>} fn
 * @param {object} [contextOptions] e.g. { viewport: { width: 360, height: 740 } }
 */
// One emulator (started with `emulatorArgs`) and one browser for a test file: started before its first test,
// stopped after its last (also when a test fails). Read `suite.emulator` and `suite.browser` inside the tests.
// The emulator keeps each room's history for the whole file, so every test uses rooms of its own.
export function useSuite(emulatorArgs = []) {
  const suite = { emulator: undefined, browser: undefined };
  before(async () => {
    suite.emulator = await startEmulator(emulatorArgs);
    suite.browser = await launchBrowser();
  });
  after(async () => {
    await suite.browser?.close();
    await suite.emulator?.stop();
  });
  return suite;
}

// The same with a redis-server of the file's own, which the emulator keeps its rooms in and the tests may stop,
// snapshot and restart (`suite.redis`).
export function useRedisSuite() {
  const suite = { redis: undefined, emulator: undefined, browser: undefined };
  before(async () => {
    suite.redis = await startRedis();
    suite.emulator = await startEmulator([], { REDIS_URL: suite.redis.url });
    suite.browser = await launchBrowser();
  });
  after(async () => {
    await suite.browser?.close();
    await suite.emulator?.stop();
    await suite.redis?.kill();
  });
  return suite;
}

export async function withPages(t, browser, count, fn, contextOptions = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...contextOptions });
  context.setDefaultTimeout(WAIT_MS);
  const pages = [];
  const problems = [];
  try {
    for (let i = 0; i < count; i += 1) {
      const page = await context.newPage();
      page.on('pageerror', (error) => problems.push(`page ${i}: uncaught ${error.message}`));
      page.on('console', (message) => {
        if (message.type() === 'error' && !/WebSocket connection to .* failed/.test(message.text())) {
          problems.push(`page ${i}: console error: ${message.text()}`);
        }
      });
      pages.push(page);
    }
    await fn(pages, context);
    if (problems.length) throw new Error(`the page reported errors:\n${problems.join('\n')}`);
  } finally {
    for (const [i, page] of pages.entries()) {
      await snap(page, count === 1 ? t.name : `${t.name}-${i + 1}`);
    }
    await context.close();
  }
}

/** Waits until the room page says it is connected. */
export async function waitConnected(page) {
  await page.waitForSelector('#connection-status[data-state="connected"]', { timeout: WAIT_MS });
}

/** Opens room.html for `room` directly and waits for the connection. */
export async function openRoom(page, base, room, query = '') {
  await page.goto(`${base}/room.html?room=${encodeURIComponent(room)}${query}`);
  await waitConnected(page);
}

/** Goes to the lobby, types the room name, presses Enter, waits for the room page to connect (the tutorial's _enter_chat_room). */
export async function enterRoomViaLobby(page, base, room) {
  await page.goto(`${base}/`);
  await page.fill('#room-name-input', room);
  await page.press('#room-name-input', 'Enter');
  await page.waitForURL((url) => url.pathname.endsWith('/room.html') && url.searchParams.get('room') === room, { timeout: WAIT_MS });
  await waitConnected(page);
}

/** Types a message and presses Enter (the tutorial's _post_message). */
export async function postMessage(page, text) {
  await page.fill('#chat-message-input', text);
  await page.press('#chat-message-input', 'Enter');
}

/** The delivered chat lines of the log (not system notes, errors or messages still being sent): a line's shown
 * text, without the sender the line carries for screen readers. */
export const CHAT = '#chat-log .line.chat:not(.pending)';

/** The text of each delivered chat line, in order. */
export async function chatLines(page) {
  return page.locator(`${CHAT} > .text`).allTextContents();
}

/** The seq of each chat line in the log, in order (`data-seq`). */
export async function chatSeqs(page) {
  return page.locator(CHAT).evaluateAll((lines) => lines.map((l) => Number(l.dataset.seq)));
}

/** Waits until the log holds exactly `count` chat lines. */
export async function waitForChatCount(page, count) {
  await page.waitForFunction(
    ([wanted, chat]) => document.querySelectorAll(chat).length >= wanted,
    [count, CHAT],
    { timeout: WAIT_MS },
  );
}

/** Waits until a chat line with exactly `text` is in the log. */
export async function waitForChatLine(page, text) {
  await page.waitForFunction(
    ([wanted, chat]) => [...document.querySelectorAll(`${chat} > .text`)].some((line) => line.textContent === wanted),
    [text, CHAT],
    { timeout: WAIT_MS },
  );
}

/** Waits until the log's text contains `text` (chat lines, system notes and errors alike). */
export async function waitForLogText(page, text) {
  await page.waitForFunction(
    (wanted) => document.getElementById('chat-log').textContent.includes(wanted),
    text,
    { timeout: WAIT_MS },
  );
}

/** GET /_emulator/connections. */
export async function emulatorConnections(base) {
  const response = await fetch(`${base}/_emulator/connections`, { signal: AbortSignal.timeout(WAIT_MS) });
  if (!response.ok) throw new Error(`GET /_emulator/connections answered ${response.status}`);
  return response.json();
}

/** Waits until the emulator lists connections matching `predicate`, and returns them. */
export async function waitForConnections(base, predicate, what) {
  const deadline = Date.now() + WAIT_MS;
  let last = [];
  while (Date.now() < deadline) {
    last = (await emulatorConnections(base)).filter(predicate);
    if (last.length) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no emulator connection ${what} within ${WAIT_MS} ms; last list: ${JSON.stringify(last)}`);
}

/** DELETE /local/@connections/<id>, the Management API's DeleteConnection. Returns the HTTP status. */
export async function dropConnection(base, connectionId) {
  const response = await fetch(`${base}/local/@connections/${encodeURIComponent(connectionId)}`, {
    method: 'DELETE',
    headers: { Authorization: 'AWS4-HMAC-SHA256 test' },
    signal: AbortSignal.timeout(WAIT_MS),
  });
  return response.status;
}

/**
 * Routes `page`'s WebSockets through the test, before the page loads (routes take effect for pages loaded after
 * them): passed to the emulator until `refuse()`, after which every new one is closed at once, like a server that
 * went away. `send(frame)` pushes a frame to the page's current socket.
 */
export async function routed(page) {
  const control = { refusing: false, toPage: null };
  await page.routeWebSocket(/\/local\?room=/, (ws) => {
    if (control.refusing) {
      ws.close({ code: 1011, reason: 'refused' });
      return;
    }
    const server = ws.connectToServer();
    control.toPage = ws;
    ws.onMessage((message) => server.send(message));
    server.onMessage((message) => ws.send(message));
  });
  return {
    refuse: () => { control.refusing = true; },
    send: (frame) => control.toPage.send(frame),
  };
}

/** Closes every emulator connection of `room` whose query string matches `pick`: the page reconnects. */
export async function dropRoom(base, room, pick = () => true) {
  const connections = await emulatorConnections(base);
  for (const c of connections.filter((c) => c.queryString.room === room && pick(c.queryString))) {
    await dropConnection(base, c.connectionId);
  }
}
