// Sign-in in the browser, against the emulator's development OpenID provider (--oidc-provider): the lobby's
// "Sign in" goes through the provider's page and comes back signed in; two signed-in people chat under the names
// their sign-ins give (not what the address says); signing out goes back to "Sign in"; a room page opened without
// a sign-in goes to sign in and comes back to its room.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chatLines, postMessage, TEST_OPTIONS, useSuite, waitConnected, waitForChatLine, WAIT_MS, withPages,
} from './harness.mjs';

const suite = useSuite(['--oidc-provider']);

/** From the lobby: Sign in, as `name` on the provider's page, and back to the lobby. */
async function signIn(page, name) {
  await page.goto(`${suite.emulator.base}/`);
  await page.click('#sign-in');
  await page.waitForURL((url) => url.pathname === '/oidc/authorize', { timeout: WAIT_MS });
  await page.fill('#name', name);
  await page.click('#sign-in');
  await page.waitForFunction(() => document.getElementById('account-who')?.textContent.startsWith('Signed in as'), null, { timeout: WAIT_MS });
}

/** Into `room` from the lobby, signed in. */
async function enter(page, room) {
  await page.fill('#room-name-input', room);
  await page.press('#room-name-input', 'Enter');
  await page.waitForURL((url) => url.pathname.endsWith('/room.html'), { timeout: WAIT_MS });
  await waitConnected(page);
}

test('two_people_sign_in_chat_under_their_sign_in_names_and_sign_out', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([ann]) => {
    await withPages(t, suite.browser, 1, async ([bob]) => {
      await signIn(ann, 'Ann');
      assert.equal(await ann.textContent('#account-who'), 'Signed in as Ann');
      assert.equal(await ann.isVisible('#display-name-input'), false, 'the name comes from the sign-in');
      await signIn(bob, 'Bob');
      await enter(ann, 'signed_room');
      await enter(bob, 'signed_room');
      assert.equal(await ann.textContent('#my-name'), 'as Ann');

      await postMessage(ann, 'hello from Ann');
      await waitForChatLine(bob, 'hello from Ann');
      await postMessage(bob, 'hi Ann');
      await waitForChatLine(ann, 'hi Ann');

      const fromAnn = bob.locator('#chat-log .line.chat', { hasText: 'hello from Ann' });
      assert.equal(await fromAnn.getAttribute('data-user'), 'Ann');
      assert.equal(await fromAnn.getAttribute('data-uid'), 'dev:Ann');
      const own = ann.locator('#chat-log .line.chat.own', { hasText: 'hello from Ann' });
      assert.equal(await own.count(), 1, 'Ann sees her own line as hers');
      assert.deepEqual(await chatLines(ann), ['hello from Ann', 'hi Ann']);

      await ann.goto(`${suite.emulator.base}/`);
      await ann.click('#sign-out');
      await ann.waitForFunction(() => document.getElementById('account-who')?.textContent.includes('needs you to sign in'), null, { timeout: WAIT_MS });
      assert.equal(await ann.isVisible('#sign-in'), true);
    });
  });
});

test('a_room_page_without_a_sign_in_goes_to_sign_in_and_comes_back_to_its_room', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await page.goto(`${suite.emulator.base}/room.html?room=come_back&name=Mallory`);
    await page.waitForURL((url) => url.pathname === '/oidc/authorize', { timeout: WAIT_MS });
    await page.fill('#name', 'Carol');
    await page.click('#sign-in');
    await page.waitForURL((url) => url.pathname.endsWith('/room.html') && url.searchParams.get('room') === 'come_back', { timeout: WAIT_MS });
    await waitConnected(page);
    assert.equal(await page.textContent('#my-name'), 'as Carol', '?name= is not who you are');
    await postMessage(page, 'back in the room');
    await waitForChatLine(page, 'back in the room');
  });
});

test('a_page_whose_token_expired_renews_it_reconnects_and_goes_on', TEST_OPTIONS, async (t) => {
  // Tokens of 4 s and no leeway: the page renews them every 2 s, and its connection, opened with the first
  // token, is ended by the server at its first ping after 4 s (?ping=1).
  const { startEmulator } = await import('./harness.mjs');
  const emulator = await startEmulator(['--oidc-provider', '--oidc-token-ttl-secs', '4'], { AUTH_LEEWAY_SECS: '0' });
  t.after(() => emulator.stop());
  await withPages(t, suite.browser, 1, async ([page]) => {
    await page.goto(`${emulator.base}/room.html?room=short_lived&ping=1`);
    await page.waitForURL((url) => url.pathname === '/oidc/authorize', { timeout: WAIT_MS });
    await page.fill('#name', 'Dora');
    await page.click('#sign-in');
    await page.waitForURL((url) => url.pathname.endsWith('/room.html'), { timeout: WAIT_MS });
    await waitConnected(page);
    await postMessage(page, 'before it expired');
    await waitForChatLine(page, 'before it expired');

    await page.waitForFunction(
      () => document.getElementById('chat-log').textContent.includes('Your sign-in expired; renewing it and reconnecting.'),
      null,
      { timeout: 3 * WAIT_MS },
    );
    await waitConnected(page);
    await postMessage(page, 'after it was renewed');
    await waitForChatLine(page, 'after it was renewed');
    assert.deepEqual(await chatLines(page), ['before it expired', 'after it was renewed']);
  });
});
