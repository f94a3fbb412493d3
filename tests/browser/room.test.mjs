// The room page (room.html): refusals, server error frames, the composer, scrolling, small screens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import {
  chatLines, REPO, openRoom, postMessage, snap, waitConnected, waitForChatLine,
  waitForLogText, WAIT_MS, withPages, routed,
  TEST_OPTIONS, useSuite,
} from './harness.mjs';

// One emulator and one browser for the whole file, stopped after the last test.
const suite = useSuite();

/** A TCP port on 127.0.0.1 that nobody listens on (bound, then released). */
async function closedPort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Counts the WebSockets a page opens and the frames it sends. */
function watchSockets(page) {
  const seen = { opened: [], sent: [] };
  page.on('websocket', (ws) => {
    seen.opened.push(ws.url());
    ws.on('framesent', (frame) => seen.sent.push(frame.payload));
  });
  return seen;
}

test('room_page_refuses_an_invalid_room_name_without_connecting', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    const seen = watchSockets(page);
    await page.goto(`${suite.emulator.base}/room.html?room=${encodeURIComponent('no spaces allowed')}`);
    await page.waitForSelector('#connection-status[data-state="rejected"]', { timeout: WAIT_MS });
    assert.match(await page.textContent('#banner-text'), /letters, digits and underscores/);
    assert.equal(await page.isVisible('#retry-button'), false, 'retrying cannot help');
    assert.equal(await page.isDisabled('#chat-message-input'), true);
    assert.equal(await page.textContent('#room-name'), 'no spaces allowed', 'the heading still names the room');
    assert.deepEqual(seen.opened, [], 'no connection attempt');
    assert.equal(await page.textContent('#status-text'), 'Rejected');

    await page.goto(`${suite.emulator.base}/room.html`);
    await page.waitForSelector('#connection-status[data-state="rejected"]', { timeout: WAIT_MS });
    assert.match(await page.textContent('#banner-text'), /No room given/);
    assert.equal(await page.innerText('h1'), 'No room');
    assert.deepEqual(seen.opened, [], 'no connection attempt');
  });
});

test('room_page_reports_a_server_that_never_accepts_and_retries_on_request', TEST_OPTIONS, async (t) => {
  const port = await closedPort();
  await withPages(t, suite.browser, 1, async ([page]) => {
    const seen = watchSockets(page);
    const ws = `ws://127.0.0.1:${port}/prod`;
    await page.goto(`${suite.emulator.base}/room.html?room=room_1&ws=${encodeURIComponent(ws)}`);
    // Three attempts, backoff ≤ 0.5 s then ≤ 1 s: well inside the bound.
    await page.waitForSelector('#connection-status[data-state="rejected"]', { timeout: WAIT_MS });
    assert.match(await page.textContent('#banner-text'), /3 attempts in a row were refused/);
    assert.equal(await page.textContent('#status-text'), 'Rejected');
    assert.equal(seen.opened.length, 3, 'gave up after 3 attempts instead of retrying forever');
    assert.equal(seen.opened[0], `${ws}?room=room_1`, 'the ws parameter wins over config.js');

    await page.click('#retry-button');
    await page.waitForFunction(() => document.body.dataset.state !== 'rejected', null, { timeout: WAIT_MS });
    await page.waitForSelector('#connection-status[data-state="rejected"]', { timeout: WAIT_MS });
    assert.equal(seen.opened.length, 6, 'Retry made three fresh attempts');
  });
});

test('room_page_derives_the_socket_url_from_the_page_when_config_js_says_null', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    // Serve the repository's own web/config.js (websocketUrl: null) instead of the emulator's generated one.
    await page.route('**/config.js', (route) => route.fulfill({
      contentType: 'text/javascript',
      body: readFileSync(join(REPO, 'web', 'config.js'), 'utf8'),
    }));
    const seen = watchSockets(page);
    await openRoom(page, suite.emulator.base, 'room_derived');
    assert.deepEqual(seen.opened, [`ws://127.0.0.1:${suite.emulator.port}/?room=room_derived`]);
    assert.match(await page.textContent('#server-info'), /from this page’s address/);
    await postMessage(page, 'via /');
    await waitForChatLine(page, 'via /');
  });
});

test('server_error_frames_are_shown_apart_from_chat_lines_once_each_and_said_once', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    // Sit between the page and the real emulator to inject frames the page itself never provokes.
    const toPage = await routed(page);
    await openRoom(page, suite.emulator.base, 'room_errors');
    await postMessage(page, 'a normal line');
    await waitForChatLine(page, 'a normal line');
    // Everything the assertive region says, in order.
    await page.evaluate(() => {
      window.said = [];
      const region = document.getElementById('announce');
      new MutationObserver(() => { if (region.textContent) window.said.push(region.textContent); })
        .observe(region, { childList: true, characterData: true, subtree: true });
    });

    toPage.send(JSON.stringify({ error: 'frame has no "message" field' }));
    toPage.send('this is not JSON <b>');
    // What API Gateway itself pushes when an integration fails: it has a "message", but it is no chat line.
    toPage.send(JSON.stringify({ message: 'Internal server error', connectionId: 'abc=', requestId: 'r-1' }));
    await waitForLogText(page, 'frame has no "message" field');
    await waitForLogText(page, 'not JSON');
    await waitForLogText(page, 'Internal server error');

    // A flood of one refusal, each with its own figures: one line that counts them, said once.
    for (const wait of ['1.2', '0.9', '0.4']) {
      toPage.send(JSON.stringify({
        error: `too many messages: this one was not delivered; wait ${wait} s before sending again`, retryAfterMs: 400,
      }));
    }
    await waitForLogText(page, '(×3)');
    await page.waitForFunction(() => window.said.length >= 4, null, { timeout: WAIT_MS });
    await new Promise((resolve) => setTimeout(resolve, 200));

    const errors = page.locator('#chat-log .line.error');
    assert.equal(await errors.count(), 4);
    assert.equal(await page.locator('#chat-log [role="alert"]').count(), 0, 'no alert inside the log: said by the page once');
    assert.match(await errors.nth(3).textContent(), /wait 0\.4 s before sending again \(×3\)$/);
    const said = await page.evaluate(() => window.said);
    assert.equal(said.length, 4, `each error said once: ${JSON.stringify(said)}`);
    assert.match(said[3], /wait 1\.2 s/);
    assert.match(await errors.nth(2).textContent(), /^Server error: Internal server error\. Your last message may not have been delivered\.$/);
    assert.match(await errors.first().textContent(), /^Server error: frame has no "message" field$/);
    assert.deepEqual(await chatLines(page), ['a normal line'], 'errors are not chat lines');
    const [chatColor, errorColor] = await page.evaluate(() => [
      getComputedStyle(document.querySelector('#chat-log .line.chat')).backgroundColor,
      getComputedStyle(document.querySelector('#chat-log .line.error')).backgroundColor,
    ]);
    assert.notEqual(chatColor, errorColor, 'errors look different');
    assert.ok(await page.locator('#chat-log .line.system').count() >= 1, 'system notes are their own kind of line');
  });
});

test('composer_sends_exact_json_ignores_blank_input_and_clears_after_send', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    const seen = watchSockets(page);
    await openRoom(page, suite.emulator.base, 'room_composer');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'chat-message-input', 'the message input has focus');

    await postMessage(page, '   ');
    await page.click('#chat-message-submit');
    assert.equal(await page.inputValue('#chat-message-input'), '   ', 'blank input is left alone');

    await postMessage(page, 'hi "there"');
    await waitForChatLine(page, 'hi "there"');
    assert.equal(await page.inputValue('#chat-message-input'), '', 'input cleared after send');
    await page.fill('#chat-message-input', 'by click');
    await page.click('#chat-message-submit');
    await waitForChatLine(page, 'by click');

    // Near the server's limit (config.js's maxMessageBytes, 8,192 bytes by default) the size shows before sending;
    // over it the message is refused here, instead of by the server.
    await page.fill('#chat-message-input', 'x'.repeat(7000));
    await page.locator('#composer-count').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await page.textContent('#composer-count'), '1,192 bytes left');
    await postMessage(page, 'é'.repeat(4097));
    await page.locator('#composer-error').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.match(await page.textContent('#composer-error'), /too long .*8,194 bytes; the limit is 8,192/);
    assert.ok(await page.locator('#composer-count.over').isVisible(), 'the count says it is over');
    assert.equal(await page.inputValue('#chat-message-input'), 'é'.repeat(4097), 'the text is kept');

    assert.deepEqual(seen.sent[0], JSON.stringify({ action: 'history' }), 'on connect the page asks for history');
    const composed = seen.sent.map((frame) => JSON.parse(frame)).filter((frame) => !('action' in frame));
    assert.deepEqual(composed.map((frame) => Object.keys(frame)), [['message', 'id'], ['message', 'id']],
      'exactly two chat frames: the blank and the over-long input sent nothing');
    assert.deepEqual(composed.map((frame) => frame.message), ['hi "there"', 'by click'], 'the text exactly');
    assert.ok(composed.every((frame) => /^[0-9a-f]{24}$/.test(frame.id)), 'each with an id of its own');
    assert.notEqual(composed[0].id, composed[1].id);
    assert.equal(await page.getAttribute('#connection-status', 'data-state'), 'connected');
  });
});

test('log_follows_new_messages_unless_the_reader_scrolled_up', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 2, async ([reader, writer]) => {
    await openRoom(reader, suite.emulator.base, 'room_scroll');
    await openRoom(writer, suite.emulator.base, 'room_scroll');
    // A short window, so a dozen lines overflow the log.
    for (let i = 1; i <= 14; i += 1) await postMessage(writer, `message number ${i}`);
    await waitForChatLine(reader, 'message number 14');
    assert.ok(await reader.evaluate(() => {
      const log = document.getElementById('chat-log');
      return log.scrollHeight > log.clientHeight;
    }), 'the log overflows');
    const atBottom = () => reader.evaluate(() => {
      const log = document.getElementById('chat-log');
      return log.scrollHeight - log.scrollTop - log.clientHeight < 2;
    });
    assert.equal(await atBottom(), true, 'followed the newest message');
    assert.equal(await reader.isVisible('#new-messages'), false);

    await reader.evaluate(() => { document.getElementById('chat-log').scrollTop = 0; });
    await postMessage(writer, 'while you were reading');
    await waitForChatLine(reader, 'while you were reading');
    await reader.locator('#new-messages').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await reader.evaluate(() => document.getElementById('chat-log').scrollTop), 0, 'did not yank the reader down');
    assert.match(await reader.textContent('#new-messages'), /1 new message/);

    await reader.click('#new-messages');
    assert.equal(await atBottom(), true, 'the button jumps to the newest message');
    assert.equal(await reader.isVisible('#new-messages'), false);
  }, { viewport: { width: 1280, height: 480 } });
});

for (const [label, viewport] of [['phone_360x740', { width: 360, height: 740 }], ['desktop_1280x800', { width: 1280, height: 800 }]]) {
  test(`pages_fit_a_${label}_screen`, TEST_OPTIONS, async (t) => {
    await withPages(t, suite.browser, 2, async ([page, other]) => {
      await page.goto(`${suite.emulator.base}/`);
      await page.fill('#room-name-input', 'no good!');
      await page.press('#room-name-input', 'Enter');
      await page.locator('#room-name-error').waitFor({ state: 'visible', timeout: WAIT_MS });
      await snap(page, `${t.name}-lobby`);

      await openRoom(page, suite.emulator.base, `layout_${label}`);
      await openRoom(other, suite.emulator.base, `layout_${label}`);
      const long = 'a_very_long_word_without_any_spaces_'.repeat(4);
      for (const text of ['Hi! Anyone here?', 'Yes, hello 👋', long, 'Rendering <b>tags</b> as text']) {
        await postMessage(other, text);
        await waitForChatLine(page, text);
      }
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `no sideways scrolling (${overflow}px too wide)`);
      const box = await page.locator('#chat-message-submit').boundingBox();
      assert.ok(box && box.x + box.width <= viewport.width && box.y + box.height <= viewport.height, 'Send button on screen');
    }, { viewport });
  });
}

test('a_room_with_a_few_messages', TEST_OPTIONS, async (t) => {
  // Produces the README screenshot (test-artifacts/browser/a_room_with_a_few_messages-1.png, copied to tests/browser/screenshot-room.png for the README).
  await withPages(t, suite.browser, 2, async ([alice, bob]) => {
    await openRoom(alice, suite.emulator.base, 'lobby', '&name=Alice');
    await openRoom(bob, suite.emulator.base, 'lobby', '&name=Bob');
    const script = [
      [bob, 'Hi all! Is the local emulator up?'],
      [alice, 'Yes: make run, then open http://127.0.0.1:3000/'],
      [bob, 'Does <b>this</b> stay plain text?'],
      [alice, 'It does: every message goes in with textContent.'],
      [bob, 'Ünïcödé room names work too, e.g. #café_2'],
    ];
    for (const [who, text] of script) {
      await postMessage(who, text);
      await waitForChatLine(alice, text);
    }
    await alice.fill('#chat-message-input', 'Let me drop my connection to test reconnection…');
    await waitConnected(alice);
  }, { viewport: { width: 900, height: 600 } });
});

test('a_message_sent_shows_at_once_as_sending_until_its_echo_replaces_it', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    // The server's answers reach the page 800 ms late.
    await page.routeWebSocket(/\/local\?room=/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((message) => server.send(message));
      server.onMessage((message) => setTimeout(() => ws.send(message), 800));
    });
    await openRoom(page, suite.emulator.base, 'room_sending');
    await postMessage(page, 'on its way');

    const pending = page.locator('#chat-log .line.pending');
    await pending.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await pending.locator('.text').textContent(), 'on its way');
    assert.match(await pending.textContent(), /sending…/);
    assert.doesNotMatch(await page.locator('#chat-log').evaluate((log) => log.value), /on its way/,
      'not part of the log until it is delivered');
    await waitForChatLine(page, 'on its way');
    assert.equal(await pending.count(), 0, 'the echo took its place');
    assert.deepEqual(await chatLines(page), ['on its way'], 'shown once');
  });
});
