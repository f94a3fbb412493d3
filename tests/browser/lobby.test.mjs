// The lobby (index.html): room name rule, navigation, recently used rooms, the ws parameter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openRoom, waitConnected, WAIT_MS, withPages, TEST_OPTIONS, useSuite } from './harness.mjs';

// One emulator and one browser for the whole file, stopped after the last test.
const suite = useSuite();

test('lobby_navigates_to_the_room_on_enter', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await page.goto(`${suite.emulator.base}/`);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'room-name-input', 'the room name input has focus');
    await page.fill('#room-name-input', 'room_1');
    await page.press('#room-name-input', 'Enter');
    await page.waitForURL(`${suite.emulator.base}/room.html?room=room_1`, { timeout: WAIT_MS });
    await waitConnected(page);
    assert.equal(await page.textContent('#room-name'), 'room_1');
    assert.match(await page.title(), /room_1/);
  });
});

test('lobby_navigates_to_a_unicode_room_on_click_with_the_name_encoded', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await page.goto(`${suite.emulator.base}/`);
    // Typed with a combining accent (e + U+0301): the lobby normalizes to NFC, which the server's rule accepts.
    await page.fill('#room-name-input', ' 로비_Ünï_cafe\u0301 ');
    await page.click('#room-name-submit');
    const room = '로비_Ünï_caf\u00e9';
    await page.waitForURL(`${suite.emulator.base}/room.html?room=${encodeURIComponent(room)}`, { timeout: WAIT_MS });
    await waitConnected(page);
    assert.equal(await page.textContent('#room-name'), room);
  });
});

test('lobby_refuses_an_invalid_room_name_with_a_visible_message_and_stays', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await page.goto(`${suite.emulator.base}/`);
    const start = page.url();
    let navigations = 0;
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations += 1;
    });
    const cases = [
      ['not a room', /letters, digits and underscores/],
      ['a-b', /“-”/],
      ['😀', /letters, digits and underscores/],
      ['x'.repeat(101), /at most 100 characters/],
      ['', /Type a room name/],
    ];
    for (const [name, reason] of cases) {
      await page.fill('#room-name-input', name);
      await page.press('#room-name-input', 'Enter');
      const error = page.locator('#room-name-error');
      await error.waitFor({ state: 'visible', timeout: WAIT_MS });
      assert.match(await error.textContent(), reason, `message for ${JSON.stringify(name)}`);
      assert.equal(await page.getAttribute('#room-name-input', 'aria-invalid'), 'true');
    }
    // 100 characters of a two-UTF-16-unit letter is still 100 characters: accepted by the rule (checked, not followed).
    const ok = await page.evaluate(async () => (await import('./names.js')).checkRoomName('𝐀'.repeat(100)).ok);
    assert.equal(ok, true, 'length counts characters, not UTF-16 units');

    assert.equal(page.url(), start, 'still on the lobby');
    assert.equal(navigations, 0, 'no navigation happened');

    // Fixing the name removes the message.
    await page.fill('#room-name-input', 'fixed_name');
    await page.locator('#room-name-error').waitFor({ state: 'hidden', timeout: WAIT_MS });
  });
});

test('lobby_lists_recent_rooms_newest_first_and_they_are_clickable', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await page.goto(`${suite.emulator.base}/`);
    assert.equal(await page.isVisible('#recent'), false, 'no list before any room was used');
    for (const room of ['room_a', 'room_b', 'room_a', 'room_c']) {
      await openRoom(page, suite.emulator.base, room);
    }
    await page.goto(`${suite.emulator.base}/`);
    await page.locator('#recent').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.deepEqual(await page.locator('#recent-list a').allTextContents(), ['room_c', 'room_a', 'room_b']);
    await page.click('#recent-list a >> text=room_b');
    await page.waitForURL(`${suite.emulator.base}/room.html?room=room_b`, { timeout: WAIT_MS });
    await waitConnected(page);
  });
});

test('lobby_keeps_the_ws_parameter_when_it_navigates', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    const ws = `ws://127.0.0.1:${suite.emulator.port}/local`;
    await page.goto(`${suite.emulator.base}/?ws=${encodeURIComponent(ws)}`);
    await page.fill('#room-name-input', 'room_1');
    await page.press('#room-name-input', 'Enter');
    await page.waitForURL(`${suite.emulator.base}/room.html?room=room_1&ws=${encodeURIComponent(ws)}`, { timeout: WAIT_MS });
    await waitConnected(page);
    assert.match(await page.textContent('#server-info'), /from the ws parameter/);
    assert.equal(await page.getAttribute('#back-to-lobby', 'href'), `index.html?ws=${encodeURIComponent(ws)}`);
  });
});
