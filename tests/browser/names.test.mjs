// Names: two named people and an anonymous one through the lobby, each seeing who said what, their
// own messages set apart, consecutive messages grouped; nobody elsewhere hearing it; a bad name refused; the
// tutorial's log text unchanged by all of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chatLines, postMessage, waitConnected, waitForChatLine, withPages, WAIT_MS, TEST_OPTIONS, useSuite,
} from './harness.mjs';

const suite = useSuite();

/** Through the lobby: types the name (empty: anonymous) and the room, presses Enter, waits until connected. */
async function enterAs(page, name, room) {
  await page.goto(`${suite.emulator.base}/`);
  await page.fill('#display-name-input', name);
  await page.fill('#room-name-input', room);
  await page.press('#room-name-input', 'Enter');
  await page.waitForURL((url) => url.pathname.endsWith('/room.html') && url.searchParams.get('room') === room, { timeout: WAIT_MS });
  await waitConnected(page);
}

/** Every chat line as {text, user, own, grouped}. */
async function lines(page) {
  return page.locator('#chat-log .line.chat:not(.pending)').evaluateAll((els) => els.map((el) => ({
    text: el.querySelector(':scope > .text').textContent,
    user: el.dataset.user,
    own: el.classList.contains('own'),
    grouped: el.classList.contains('grouped'),
  })));
}

test('two_named_people_see_each_other_s_names_and_their_own_messages_apart', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 4, async ([ann, bob, nobody, carol]) => {
    await enterAs(ann, 'Ann', 'names_room');
    await enterAs(bob, ' Bob <b>B</b> ', 'names_room');
    await enterAs(nobody, '', 'names_room');
    await enterAs(carol, 'Carol', 'names_elsewhere');

    await postMessage(ann, 'hello from Ann');
    await waitForChatLine(bob, 'hello from Ann');
    await postMessage(bob, 'hi Ann');
    await waitForChatLine(ann, 'hi Ann');
    await postMessage(bob, 'twice in a row');
    await waitForChatLine(ann, 'twice in a row');
    await postMessage(nobody, 'who am I');
    await waitForChatLine(ann, 'who am I');
    await waitForChatLine(bob, 'who am I');
    await waitForChatLine(nobody, 'who am I');

    assert.deepEqual(await lines(ann), [
      { text: 'hello from Ann', user: 'Ann', own: true, grouped: false },
      { text: 'hi Ann', user: 'Bob <b>B</b>', own: false, grouped: false },
      { text: 'twice in a row', user: 'Bob <b>B</b>', own: false, grouped: true },
      { text: 'who am I', user: 'Anonymous', own: false, grouped: false },
    ]);
    const seenByBob = await lines(bob);
    assert.deepEqual(seenByBob.map((l) => [l.text, l.own]), [
      ['hello from Ann', false], ['hi Ann', true], ['twice in a row', true], ['who am I', false],
    ]);
    assert.equal((await lines(nobody)).at(-1).own, true, 'an anonymous sender knows its own message too');
    assert.equal(await ann.locator('#chat-log b').count(), 0, 'a name is text, never markup');
    assert.match(await ann.locator('#my-name').textContent(), /as Ann/);
    assert.match(await bob.locator('#my-name').textContent(), /as Bob <b>B<\/b>/, 'trimmed, shown as typed');
    // A chat line's text is the message alone: names and times are drawn by CSS.
    assert.deepEqual(await chatLines(ann), ['hello from Ann', 'hi Ann', 'twice in a row', 'who am I']);
    assert.deepEqual(await chatLines(carol), [], 'another room hears nothing');

    // A reload keeps names and which messages were one's own.
    await ann.reload();
    await waitConnected(ann);
    await waitForChatLine(ann, 'who am I');
    const restored = await lines(ann);
    assert.deepEqual(restored.map((l) => [l.text, l.user, l.own]), [
      ['hello from Ann', 'Ann', true], ['hi Ann', 'Bob <b>B</b>', false], ['twice in a row', 'Bob <b>B</b>', false],
      ['who am I', 'Anonymous', false],
    ]);
  });
});

test('the_lobby_refuses_a_bad_name_and_remembers_a_good_one', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await page.goto(`${suite.emulator.base}/`);
    for (const bad of ['x'.repeat(33), 'zero\u200Bwidth']) {
      await page.fill('#display-name-input', bad);
      await page.fill('#room-name-input', 'names_lobby');
      await page.press('#room-name-input', 'Enter');
      await page.waitForSelector('#display-name-error:not([hidden])');
      assert.equal(await page.getAttribute('#display-name-input', 'aria-invalid'), 'true', bad);
      assert.ok(new URL(page.url()).pathname.endsWith('/'), 'still in the lobby');
    }
    await page.fill('#display-name-input', 'Zoe\u0308');
    await page.press('#room-name-input', 'Enter');
    await page.waitForURL((url) => url.pathname.endsWith('/room.html'), { timeout: WAIT_MS });
    assert.equal(new URL(page.url()).searchParams.get('name'), 'Zoë', 'NFC before it is sent');
    await waitConnected(page);
    await page.goto(`${suite.emulator.base}/`);
    assert.equal(await page.inputValue('#display-name-input'), 'Zoë', 'remembered in this browser');
  });
});

test('a_room_page_opened_with_a_bad_name_says_so_instead_of_connecting', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await page.goto(`${suite.emulator.base}/room.html?room=names_bad&name=${encodeURIComponent('a\nb')}`);
    await page.waitForSelector('#connection-status[data-state="rejected"]', { timeout: WAIT_MS });
    assert.match(await page.locator('#banner-text').textContent(), /name will not be accepted/);
  });
});

/** The header's member count, once shown. */
async function countShown(page) {
  await page.waitForSelector('#presence-button:not([hidden])', { timeout: WAIT_MS });
  return page.locator('#presence-count').textContent();
}

async function waitForCount(page, count) {
  await page.waitForFunction((n) => document.getElementById('presence-count')?.textContent === String(n), count, { timeout: WAIT_MS });
}

test('presence_shows_who_is_here_and_join_and_leave_lines', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 3, async ([ann, bob, carol]) => {
    await enterAs(ann, 'Ann', 'presence_room');
    await enterAs(carol, 'Carol', 'presence_elsewhere');
    assert.equal(await countShown(ann), '1');

    await enterAs(bob, 'Bob', 'presence_room');
    await waitForCount(ann, 2);
    await ann.waitForSelector('#chat-log .line.system.presence-line >> text=Bob joined', { timeout: WAIT_MS });
    assert.equal(await countShown(bob), '2', 'a newcomer asks and gets the count');

    // The list, from the keyboard: focus the count, Enter opens it, Escape closes it.
    await ann.focus('#presence-button');
    await ann.keyboard.press('Enter');
    await ann.waitForSelector('#presence-panel:not([hidden])');
    assert.deepEqual(await ann.locator('#presence-list li').allTextContents(), ['Ann', 'Bob']);
    assert.equal(await ann.getAttribute('#presence-button', 'aria-expanded'), 'true');
    await ann.keyboard.press('Escape');
    await ann.waitForSelector('#presence-panel', { state: 'hidden' });

    await bob.close();
    await waitForCount(ann, 1);
    await ann.waitForSelector('#chat-log .line.system.presence-line >> text=Bob left', { timeout: WAIT_MS });
    assert.equal(await carol.locator('#chat-log .presence-line').count(), 0, 'another room hears of nobody');
    assert.equal(await countShown(carol), '1');
    assert.deepEqual(await chatLines(ann), [], 'join and leave lines are not chat lines');
  });
});
