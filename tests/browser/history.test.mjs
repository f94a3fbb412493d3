// History and resume in the page: a reload and a new tab show the room's recent history, a dropped connection
// resumes with no gap and no duplicate, and messages that arrive out of order are shown in seq order. The
// emulator adds up to 40 ms of random latency to every post, so concurrent deliveries really do arrive out of
// order, as they can on AWS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chatLines, chatSeqs, dropConnection, openRoom, postMessage, waitConnected, waitForChatCount,
  waitForChatLine, waitForConnections, waitForLogText, withPages, TEST_OPTIONS, useSuite,
} from './harness.mjs';

const suite = useSuite(['--management-jitter-ms', '40']);

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('a_new_tab_and_a_reload_show_the_recent_history_once_and_recover_what_was_missed', TEST_OPTIONS, async (t) => {
  const room = 'history_reload';
  await withPages(t, suite.browser, 1, async ([writer]) => {
    await openRoom(writer, suite.emulator.base, room);
    for (const text of ['one', 'two', 'three']) {
      await postMessage(writer, text);
      await waitForChatLine(writer, text);
    }
    // A reader in another browser context (no sessionStorage of its own): the server's history fills its log.
    await withPages(t, suite.browser, 1, async ([reader]) => {
      await openRoom(reader, suite.emulator.base, room);
      await waitForChatCount(reader, 3);
      assert.deepEqual(await chatLines(reader), ['one', 'two', 'three']);

      await reader.reload();
      await waitConnected(reader);
      await postMessage(writer, 'four');
      await waitForChatLine(reader, 'four');
      assert.deepEqual(await chatLines(reader), ['one', 'two', 'three', 'four'], 'a reload shows each message once');
      assert.deepEqual(await chatSeqs(reader), [1, 2, 3, 4]);

      // Away from the page (same tab, so its sessionStorage stays) while two more are said, then back.
      const url = reader.url();
      await reader.goto('about:blank');
      for (const text of ['five', 'six']) {
        await postMessage(writer, text);
        await waitForChatLine(writer, text);
      }
      const asked = [];
      reader.on('websocket', (ws) => ws.on('framesent', (frame) => asked.push(JSON.parse(frame.payload))));
      await reader.goto(url);
      await waitForChatLine(reader, 'six');
      assert.equal(asked[0]?.action, 'history');
      assert.equal(asked[0]?.after, 4, `it asked only for what followed seq 4: ${JSON.stringify(asked[0])}`);
      assert.deepEqual(await chatLines(reader), ['one', 'two', 'three', 'four', 'five', 'six'],
        'what was said while away is recovered, after what was kept');
      assert.deepEqual(await chatSeqs(reader), range(1, 6));
    });
  });
});

test('a_dropped_connection_resumes_with_no_gap_and_no_duplicate', TEST_OPTIONS, async (t) => {
  const room = 'history_resume';
  await withPages(t, suite.browser, 2, async ([dropped, talker]) => {
    await openRoom(dropped, suite.emulator.base, room);
    const [conn] = await waitForConnections(suite.emulator.base, (c) => c.queryString?.room === room, `in ${room}`);
    await openRoom(talker, suite.emulator.base, room);
    await postMessage(talker, 'm1');
    await waitForChatLine(dropped, 'm1');

    assert.equal(await dropConnection(suite.emulator.base, conn.connectionId), 204);
    await waitForLogText(dropped, 'Disconnected');
    // Said while the page is away (its first retry waits up to half a second).
    for (const n of range(2, 6)) await postMessage(talker, `m${n}`);
    await waitForChatLine(talker, 'm6');
    await waitForLogText(dropped, 'Reconnected');
    for (const n of range(7, 8)) await postMessage(talker, `m${n}`);

    await waitForChatLine(dropped, 'm8');
    await waitForChatCount(dropped, 8);
    assert.deepEqual(await chatLines(dropped), range(1, 8).map((n) => `m${n}`), 'every message once, in order');
    assert.deepEqual(await chatSeqs(dropped), range(1, 8));
  });
});

test('messages_delivered_out_of_order_are_shown_in_seq_order', TEST_OPTIONS, async (t) => {
  const room = 'history_order';
  await withPages(t, suite.browser, 2, async ([sender, reader]) => {
    const arrived = [];
    reader.on('websocket', (ws) => ws.on('framereceived', (frame) => {
      try {
        const parsed = JSON.parse(frame.payload);
        if (Number.isInteger(parsed.seq)) arrived.push(parsed.seq);
      } catch {
        // not JSON: the page reports it; nothing to record
      }
    }));
    await openRoom(reader, suite.emulator.base, room);
    await openRoom(sender, suite.emulator.base, room);
    // Fifteen messages as fast as the page can send them: the emulator runs them concurrently, each post
    // delayed by 0-40 ms, so they reach the reader in a shuffled order.
    await sender.evaluate(() => {
      const input = document.getElementById('chat-message-input');
      const form = document.getElementById('chat-form');
      for (let i = 1; i <= 15; i += 1) {
        input.value = `fast ${i}`;
        form.requestSubmit();
      }
    });

    await waitForChatCount(reader, 15);
    const seqs = await chatSeqs(reader);
    assert.deepEqual(seqs, range(1, 15), 'shown in seq order, each once');
    assert.equal(new Set(await chatLines(reader)).size, 15, 'every message shown');
    const inversions = arrived.filter((seq, i) => i > 0 && seq < arrived[i - 1]).length;
    assert.ok(inversions > 0, `the frames did arrive out of order (arrival order ${arrived.join(',')})`);
  });
});
