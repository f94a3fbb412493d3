// Nothing lost in silence: the room's head in every pong tells a page what never reached it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chatLines, openRoom, postMessage, waitForChatLine, waitForConnections, withPages, TEST_OPTIONS, useSuite, WAIT_MS,
} from './harness.mjs';

const suite = useSuite();

/** POST /_emulator/faults with `change`. */
async function faults(change) {
  const response = await fetch(`${suite.emulator.base}/_emulator/faults`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(change),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(response.status, 200, await response.text());
}

test('the_last_message_of_a_quiet_room_reaches_a_member_whose_posts_failed_within_a_heartbeat', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 2, async ([ann, bob]) => {
    const room = `quiet_${Date.now()}`;
    const inRoom = (c) => c.queryString?.room === room;
    await openRoom(ann, suite.emulator.base, room, '&ping=2');
    const [annConnection] = await waitForConnections(suite.emulator.base, inRoom, `of Ann in ${room}`);
    await openRoom(bob, suite.emulator.base, room, '&ping=2');
    const [bobConnection] = await waitForConnections(
      suite.emulator.base,
      (c) => inRoom(c) && c.connectionId !== annConnection.connectionId,
      `of Bob in ${room}`,
    );
    await postMessage(ann, 'hello');
    await waitForChatLine(bob, 'hello');

    // Every post to Bob is throttled (429 after every retry) while Ann speaks; then nobody says anything more.
    await faults({ throttleConnections: [bobConnection.connectionId] });
    await postMessage(ann, 'the meeting moved to 3pm');
    await waitForChatLine(ann, 'the meeting moved to 3pm');
    await bob.waitForTimeout(1_000);
    assert.deepEqual(await chatLines(bob), ['hello'], 'Bob missed it while throttled');

    await faults({ throttleConnections: [] });
    const back = Date.now();
    await waitForChatLine(bob, 'the meeting moved to 3pm');
    // Without the head in the pong it never comes (nobody speaks again). How soon is reported, not asserted.
    t.diagnostic(`Bob's page showed it ${Date.now() - back} ms after throttling stopped, pinging every 2 s`);
    assert.deepEqual(await chatLines(bob), ['hello', 'the meeting moved to 3pm']);
  });
});
