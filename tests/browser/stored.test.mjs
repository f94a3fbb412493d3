// What the store keeps, under open pages (real redis-server, real emulator): Redis restored from an older
// snapshot (every page shows the messages sent after the restore, after a notice that the server lost the last
// ones it showed), and Redis stalled while a message is sent (the page sends it again with its id until the echo
// comes: one copy everywhere).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chatLines, openRoom, postMessage, useRedisSuite, waitForChatLine, waitForLogText, withPages, TEST_OPTIONS, WAIT_MS,
} from './harness.mjs';

const suite = useRedisSuite();

/** Ann says each of `texts` in turn; every page shows each before the next is said. */
async function say(ann, pages, texts) {
  for (const text of texts) {
    await postMessage(ann, text);
    for (const page of pages) await waitForChatLine(page, text);
  }
}

test('messages_sent_after_redis_went_back_to_an_older_snapshot_reach_every_open_page_after_a_notice', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 2, async (pages) => {
    const [ann, bob] = pages;
    const room = `rewind_${Date.now()}`;
    for (const page of pages) await openRoom(page, suite.emulator.base, room);
    await say(ann, pages, ['m1', 'm2', 'm3']);
    await suite.redis.save();
    await say(ann, pages, ['m4', 'm5']);

    // Restored from the snapshot taken at m3: the server no longer has m4 and m5.
    await suite.redis.kill();
    await suite.redis.start();
    await say(ann, pages, ['m6', 'm7']);

    for (const page of pages) {
      await waitForLogText(page, 'The server lost the last messages shown above');
      assert.deepEqual(await chatLines(page), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7'], 'each message once, none dropped');
    }
    // The notice comes after what was lost and before what followed.
    const log = await bob.textContent('#chat-log');
    assert.ok(log.indexOf('m5') < log.indexOf('The server lost') && log.indexOf('The server lost') < log.indexOf('m6'), log);
  });
});

test('a_message_sent_while_redis_stalls_for_8_s_is_sent_again_with_its_id_and_shown_once_everywhere', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 3, async (pages) => {
    const [ann, bob, cy] = pages;
    const room = `stall_${Date.now()}`;
    for (const page of [ann, bob]) await openRoom(page, suite.emulator.base, room);
    await say(ann, [ann, bob], ['before']);

    suite.redis.pause();
    try {
      await postMessage(ann, 'said into a stall');
      // The server gives up after two attempts (about 5 s) without knowing whether it stored the message.
      await ann.waitForFunction(
        () => document.getElementById('composer-error').textContent.includes('Sending'),
        null,
        { timeout: 3 * WAIT_MS },
      );
      await ann.waitForTimeout(8_000 - 5_500);
    } finally {
      suite.redis.resume();
    }

    for (const page of [ann, bob]) {
      await page.waitForFunction(
        (text) => [...document.querySelectorAll('#chat-log .line.chat:not(.pending) > .text')].some((line) => line.textContent === text),
        'said into a stall',
        { timeout: 3 * WAIT_MS },
      );
    }
    await ann.waitForTimeout(2_000); // any second copy would be here by now
    for (const page of [ann, bob]) {
      assert.deepEqual(await chatLines(page), ['before', 'said into a stall'], 'exactly once');
      assert.ok(!(await page.textContent('#chat-log')).includes('not delivered'), 'no stale "not delivered" line');
    }
    assert.equal(await ann.isVisible('#composer-error'), false, 'no "Sending…" left');
    assert.equal(await ann.inputValue('#chat-message-input'), '', 'the text did not come back');

    // The room's history holds it once.
    await openRoom(cy, suite.emulator.base, room);
    await waitForChatLine(cy, 'said into a stall');
    assert.deepEqual(await chatLines(cy), ['before', 'said into a stall']);
  });
});
