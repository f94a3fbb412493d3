// The page when the server cannot deliver: Redis killed under a running chat (real redis-server, real emulator).
// The page shows the error, puts the text back in the composer, and sends it again once Redis is back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chatLines, openRoom, postMessage, useRedisSuite, waitForChatLine, waitForLogText, withPages, TEST_OPTIONS, WAIT_MS,
} from './harness.mjs';

const suite = useRedisSuite();

test('a_message_that_could_not_be_stored_is_shown_as_not_delivered_and_its_text_comes_back', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await openRoom(page, suite.emulator.base, 'faults_down');
    await postMessage(page, 'before');
    await waitForChatLine(page, 'before');

    await suite.redis.kill();
    await postMessage(page, 'words worth keeping');
    await waitForLogText(page, 'was not delivered');

    assert.equal(await page.inputValue('#chat-message-input'), 'words worth keeping', 'the text is back in the composer');
    await page.locator('#composer-error').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.match(await page.textContent('#composer-error'), /Not delivered/);
    assert.deepEqual(await chatLines(page), ['before'], 'the undelivered text is no chat line');

    // Redis comes back empty: sending again works (the message itself makes the page a member again), and the
    // page says the room's history was lost.
    await suite.redis.start();
    await page.click('#chat-message-submit');
    await waitForChatLine(page, 'words worth keeping');
    await waitForLogText(page, 'lost this room’s history');
    assert.deepEqual(await chatLines(page), ['before', 'words worth keeping']);
  });
});
