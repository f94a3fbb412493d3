// The Django Channels tutorial's acceptance tests (part 4), plus what a real chat page must survive:
// hostile message text and a dropped connection. Runs headless Chromium against the local emulator.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chatLines, dropConnection, emulatorConnections, enterRoomViaLobby, openRoom, postMessage,
  waitConnected, waitForChatLine, waitForConnections, waitForLogText, withPages,
  TEST_OPTIONS, useSuite,
} from './harness.mjs';

// One emulator and one browser for the whole file, stopped after the last test.
const suite = useSuite();

test('when_chat_message_posted_then_seen_by_everyone_in_same_room', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 2, async ([first, second]) => {
    await enterRoomViaLobby(first, suite.emulator.base, 'room_1');
    await enterRoomViaLobby(second, suite.emulator.base, 'room_1');

    await postMessage(first, 'hello');
    await waitForChatLine(first, 'hello'); // the sender sees its own message, as in the tutorial
    await waitForChatLine(second, 'hello');

    assert.deepEqual(await chatLines(first), ['hello']);
    assert.deepEqual(await chatLines(second), ['hello']);
    assert.match(await first.locator('#chat-log').evaluate((log) => log.value), /hello\n/, 'the log reads like the tutorial textarea');
  });
});

test('when_chat_message_posted_then_not_seen_by_anyone_in_different_room', TEST_OPTIONS, async (t) => {
  // Not room_1 again: the emulator keeps room_1's history from the test above, and a new page shows it.
  await withPages(t, suite.browser, 2, async ([first, second]) => {
    await enterRoomViaLobby(first, suite.emulator.base, 'room_3');
    await enterRoomViaLobby(second, suite.emulator.base, 'room_2');

    await postMessage(first, 'hello');
    await waitForChatLine(first, 'hello');

    // Barrier: a message in room_2 that room_2 sees arrives after anything the emulator fanned out before it.
    await postMessage(second, 'world');
    await waitForChatLine(second, 'world');

    assert.deepEqual(await chatLines(second), ['world'], 'room_2 must not see room_3\'s message');
    assert.deepEqual(await chatLines(first), ['hello'], 'room_3 must not see room_2\'s message');
  });
});

test('message_text_is_shown_literally_and_never_run_as_html', TEST_OPTIONS, async (t) => {
  const hostile = [
    '<script>window.__pwned=1</script>',
    '<img src=x onerror="window.__pwned=1">',
    '<b>not bold</b> & "quotes" \'single\' \\ back\\slash &lt; 로비 😀',
  ];
  await withPages(t, suite.browser, 2, async ([sender, reader]) => {
    await openRoom(sender, suite.emulator.base, 'room_xss');
    await openRoom(reader, suite.emulator.base, 'room_xss');
    for (const text of hostile) {
      await postMessage(sender, text);
      await waitForChatLine(reader, text);
    }
    await waitForChatLine(sender, hostile.at(-1));
    for (const page of [sender, reader]) {
      assert.deepEqual(await chatLines(page), hostile, 'each message is one line with exactly the text sent');
      assert.equal(await page.locator('#chat-log img, #chat-log script, #chat-log b').count(), 0, 'no element was made from message text');
      assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no script ran');
    }
  });
});

test('after_the_emulator_drops_the_connection_the_page_reconnects_and_chat_works_again', TEST_OPTIONS, async (t) => {
  const room = 'room_reconnect';
  await withPages(t, suite.browser, 2, async ([dropped, other]) => {
    await openRoom(dropped, suite.emulator.base, room);
    const [before] = await waitForConnections(suite.emulator.base, (c) => c.queryString?.room === room, `in ${room}`);
    await openRoom(other, suite.emulator.base, room);

    const status = await dropConnection(suite.emulator.base, before.connectionId);
    assert.equal(status, 204, 'DeleteConnection answers 204');

    // The page says so (a note that stays in the log), then reconnects by itself.
    await waitForLogText(dropped, 'Disconnected');
    await waitForLogText(dropped, 'Reconnected');
    await waitConnected(dropped);
    const now = (await emulatorConnections(suite.emulator.base)).filter((c) => c.queryString?.room === room);
    assert.equal(now.length, 2, `two connections in ${room} again: ${JSON.stringify(now)}`);
    assert.ok(!now.some((c) => c.connectionId === before.connectionId), 'the dropped id is gone');

    await postMessage(dropped, 'back again');
    await waitForChatLine(other, 'back again');
    await waitForChatLine(dropped, 'back again');
    await postMessage(other, 'welcome back');
    await waitForChatLine(dropped, 'welcome back');
    assert.deepEqual(await chatLines(dropped), ['back again', 'welcome back']);
  });
});
