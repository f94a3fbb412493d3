// The pages for everyone: axe-core in every state at desktop and phone sizes, light and dark; keyboard-only paths;
// what assistive technology is told of each message; multi-line messages; the unread count; links; small screens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  CHAT, dropRoom, openRoom, postMessage, routed, snap, waitConnected, waitForChatLine, waitForLogText, WAIT_MS, withPages,
  TEST_OPTIONS, useSuite,
} from './harness.mjs';

const suite = useSuite();
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const SIZES = [
  { name: 'desktop', viewport: { width: 1280, height: 800 } },
  { name: 'phone', viewport: { width: 390, height: 844 } },
];
const SCHEMES = ['light', 'dark'];

/** axe-core's violations on `page` (every rule of every impact), as readable lines. */
async function violations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE);
  const found = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
  return found;
}

async function assertAccessible(page, state) {
  const found = await violations(page);
  await snap(page, `a11y-${state}`);
  assert.deepEqual(found, [], `axe found violations in ${state}`);
}

for (const size of SIZES) {
  for (const scheme of SCHEMES) {
    const label = `${size.name}_${scheme}`;
    test(`axe_finds_nothing_in_any_state_of_the_lobby_and_the_room_${label}`, TEST_OPTIONS, async (t) => {
      await withPages(t, suite.browser, 3, async ([ann, anon, other]) => {
        const base = suite.emulator.base;
        await ann.goto(`${base}/`);
        await ann.waitForSelector('#room-name-input');
        await assertAccessible(ann, `${label}-lobby`);
        // The check can fail: an image without a text alternative is found.
        await ann.evaluate(() => document.querySelector('main').append(Object.assign(document.createElement('img'), { src: 'data:,' })));
        assert.ok((await violations(ann)).some((v) => v.includes('image-alt')), 'axe reports a planted violation');

        const room = `a11y_${label}`;
        const anonSockets = await routed(anon);
        const otherSockets = await routed(other);
        await openRoom(ann, base, room, '&name=Ann');
        await openRoom(anon, base, room);
        await postMessage(anon, 'Hello from nobody in particular, see https://example.com/docs');
        await waitForChatLine(ann, 'Hello from nobody in particular, see https://example.com/docs');
        await postMessage(ann, 'Hi!');
        await postMessage(ann, 'A second line of mine');
        await waitForChatLine(anon, 'A second line of mine');
        await waitForChatLine(ann, 'A second line of mine');
        await assertAccessible(ann, `${label}-messages`);
        await assertAccessible(anon, `${label}-messages-anonymous`);

        await ann.click('#presence-button');
        await ann.waitForSelector('#presence-panel:not([hidden])');
        await assertAccessible(ann, `${label}-presence-open`);
        await ann.keyboard.press('Escape');

        // Errors (one merged), and the notice of a history that lost its beginning.
        await openRoom(other, base, room, '&name=Bo');
        await waitForChatLine(other, 'A second line of mine');
        otherSockets.send(JSON.stringify({ error: 'frame has no "message" field' }));
        otherSockets.send(JSON.stringify({ error: 'too many messages: wait 1.0 s', retryAfterMs: 1000 }));
        otherSockets.send(JSON.stringify({ error: 'too many messages: wait 0.5 s', retryAfterMs: 500 }));
        await waitForLogText(other, '(×2)');
        await assertAccessible(other, `${label}-errors`);

        // Reconnecting, with its banner: the server goes away for this page.
        anonSockets.refuse();
        await dropRoom(base, room, (query) => !query.name);
        await anon.waitForSelector('#connection-banner:not([hidden])', { timeout: 4 * WAIT_MS });
        await assertAccessible(anon, `${label}-reconnecting`);

        // Refused: a room name the server will not take.
        await other.goto(`${base}/room.html?room=${encodeURIComponent('not a room')}`);
        await other.waitForSelector('#connection-status[data-state="rejected"]');
        await assertAccessible(other, `${label}-refused`);
      }, { viewport: size.viewport, colorScheme: scheme });
    });
  }
}

test('every_message_names_its_sender_or_you_for_assistive_technology_grouped_or_not', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 2, async ([ann, bob]) => {
    const room = 'a11y_names';
    await openRoom(ann, suite.emulator.base, room, '&name=Ann');
    await openRoom(bob, suite.emulator.base, room, '&name=Bob');
    await postMessage(bob, 'Hi everyone');
    await postMessage(bob, 'Anyone tried the new build yet?');
    await waitForChatLine(ann, 'Anyone tried the new build yet?');
    await postMessage(ann, 'Not yet');
    await waitForChatLine(ann, 'Not yet');

    const grouped = ann.locator(`${CHAT}.grouped`).first();
    assert.equal(await grouped.locator('.text').textContent(), 'Anyone tried the new build yet?');
    assert.match(await grouped.ariaSnapshot(), /article "Bob: Anyone tried the new build yet\?"/);
    assert.match(await ann.locator(`${CHAT}.own`).ariaSnapshot(), /article "You: Not yet"/);
    // The log's text is still the tutorial's: the messages, one a line, without the names.
    assert.match(await ann.locator('#chat-log').evaluate((log) => log.value), /Hi everyone\nAnyone tried the new build yet\?\nNot yet\n/);
  });
});

test('a_three_line_message_arrives_as_three_lines_and_enter_alone_sends', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 2, async ([ann, bob]) => {
    const room = 'a11y_lines';
    const frames = [];
    ann.on('websocket', (ws) => ws.on('framesent', (frame) => frames.push(frame.payload)));
    await openRoom(ann, suite.emulator.base, room);
    await openRoom(bob, suite.emulator.base, room);
    await ann.focus('#chat-message-input');
    await ann.keyboard.type('line one');
    await ann.keyboard.press('Shift+Enter');
    await ann.keyboard.type('line two');
    await ann.keyboard.press('Shift+Enter');
    await ann.keyboard.type('line three');
    const tall = await ann.locator('#chat-message-input').evaluate((input) => input.getBoundingClientRect().height);
    await ann.keyboard.press('Enter');

    await waitForChatLine(bob, 'line one\nline two\nline three');
    await waitForChatLine(ann, 'line one\nline two\nline three');
    const sent = frames.map((f) => JSON.parse(f)).filter((f) => typeof f.message === 'string');
    assert.equal(sent.length, 1, 'one message, sent by Enter alone');
    assert.equal(sent[0].message, 'line one\nline two\nline three');
    assert.equal(await ann.inputValue('#chat-message-input'), '');
    const short = await ann.locator('#chat-message-input').evaluate((input) => input.getBoundingClientRect().height);
    assert.ok(tall > short, `the composer grew with three lines (${tall} px) and shrank after sending (${short} px)`);
  });
});

test('a_hidden_tab_counts_unread_messages_in_its_title_and_resets_when_shown', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 2, async ([ann, bob]) => {
    const room = 'a11y_unread';
    await openRoom(ann, suite.emulator.base, room);
    await openRoom(bob, suite.emulator.base, room);
    // Headless tabs are never hidden: the page is told it is, as a browser tells it when the tab is switched away.
    const visibility = (state) => ann.evaluate((s) => {
      Object.defineProperty(document, 'visibilityState', { value: s, configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
    }, state);
    await visibility('hidden');
    await postMessage(bob, 'one');
    await postMessage(bob, 'two');
    await waitForChatLine(ann, 'two');
    assert.equal(await ann.title(), `(2) #${room} · wschat`);
    await visibility('visible');
    assert.equal(await ann.title(), `#${room} · wschat`);
  });
});

test('links_open_safely_and_anything_else_stays_text', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await openRoom(page, suite.emulator.base, 'a11y_links');
    const text = 'docs at https://example.com/a_(b)?c=1&d=2. Not javascript:alert(1) nor <a href="https://evil.test">x</a> nor data:text/html,hi';
    await postMessage(page, text);
    await waitForChatLine(page, text);
    const links = await page.locator(`${CHAT} a`).evaluateAll((as) => as.map((a) => ({
      href: a.getAttribute('href'), text: a.textContent, rel: a.rel, target: a.target,
    })));
    assert.deepEqual(links, [
      { href: 'https://example.com/a_(b)?c=1&d=2', text: 'https://example.com/a_(b)?c=1&d=2', rel: 'noopener noreferrer nofollow ugc', target: '_blank' },
      { href: 'https://evil.test/', text: 'https://evil.test', rel: 'noopener noreferrer nofollow ugc', target: '_blank' },
    ], 'only http(s) URLs are links, made from the text; the markup around one stays text');
    assert.match(await page.locator(`${CHAT} .text`).textContent(), /<a href="https:\/\/evil\.test">x<\/a>/);
    assert.equal(await page.locator('#chat-log script, #chat-log [href^="javascript"], #chat-log [href^="data"]').count(), 0);
  });
});

test('day_dividers_name_today_and_yesterday_and_other_days_by_date', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await page.goto(`${suite.emulator.base}/index.html`);
    const labels = await page.evaluate(async () => {
      const { dayLabel } = await import('/log.js');
      const now = new Date(2026, 11, 5, 12, 0).getTime();
      return [
        dayLabel(new Date(2026, 11, 5, 0, 1).getTime(), now),
        dayLabel(new Date(2026, 11, 4, 23, 59).getTime(), now),
        dayLabel(new Date(2026, 10, 28, 9, 0).getTime(), now),
      ];
    });
    assert.equal(labels[0], 'Today');
    assert.equal(labels[1], 'Yesterday');
    assert.match(labels[2], /November.*2026|2026.*November/);
  });
});

test('keyboard_alone_goes_from_the_lobby_to_a_message_to_presence_and_back_and_focus_never_drops', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    const focused = () => page.evaluate(() => (document.activeElement === document.body ? 'body' : document.activeElement.id));
    const sockets = await routed(page);
    await page.goto(`${suite.emulator.base}/`);
    await page.waitForSelector('#room-name-input');
    assert.equal(await focused(), 'room-name-input', 'the room name has focus');
    await page.keyboard.type('a11y_keys');
    await page.keyboard.press('Enter');
    await waitConnected(page);
    assert.equal(await focused(), 'chat-message-input');
    await page.keyboard.type('typed, not clicked');
    await page.keyboard.press('Enter');
    await waitForChatLine(page, 'typed, not clicked');
    assert.equal(await focused(), 'chat-message-input');

    // Back through the page to the presence button, open it, close it with Escape.
    let steps = 0;
    while ((await focused()) !== 'presence-button' && steps < 12) {
      await page.keyboard.press('Shift+Tab');
      steps += 1;
    }
    assert.equal(await focused(), 'presence-button', 'presence is reachable by keyboard');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#presence-panel:not([hidden])');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#presence-panel', { state: 'hidden' });
    assert.equal(await focused(), 'presence-button', 'Escape returns focus to the button');

    // The server refuses from now on: the page gives up, focus goes to Retry, and Retry keeps it off <body>.
    sockets.refuse();
    await page.evaluate(() => {
      document.getElementById('chat-message-input').focus();
      // What the page says aloud, and its states, from now on.
      window.said = [];
      window.states = [];
      const region = document.getElementById('announce');
      new MutationObserver(() => { if (region.textContent) window.said.push(region.textContent); })
        .observe(region, { childList: true, characterData: true, subtree: true });
      new MutationObserver(() => window.states.push(document.body.dataset.state))
        .observe(document.body, { attributes: true, attributeFilter: ['data-state'] });
    });
    await dropRoom(suite.emulator.base, 'a11y_keys');
    await page.waitForSelector('#connection-banner:not([hidden])', { timeout: 4 * WAIT_MS });
    assert.notEqual(await focused(), 'body');
    // Another attempt after the banner showed: the banner comes back with the same reason, which is not said again.
    const attempts = await page.evaluate(() => window.states.filter((s) => s === 'connecting').length);
    await page.waitForFunction((n) => window.states.filter((s) => s === 'connecting').length > n
      && !document.getElementById('connection-banner').hidden, attempts, { timeout: 4 * WAIT_MS });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const banners = await page.evaluate(() => window.said.filter((text) => text.startsWith('Connection lost')));
    assert.equal(banners.length, 1, `the banner's reason is said once: ${JSON.stringify(banners)}`);
    await page.focus('#retry-button');
    await page.keyboard.press('Enter');
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.notEqual(await focused(), 'body', 'after Retry hid itself, focus went somewhere');
    assert.ok(await page.evaluate(() => document.activeElement.checkVisibility() && !document.activeElement.disabled),
      'on a control that is there and usable');
  });
});

test('nothing_scrolls_sideways_at_360_px_with_the_banner_and_the_room_name_and_name_stay_readable', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    (await routed(page)).refuse();
    await page.goto(`${suite.emulator.base}/room.html?room=ux_demo_room_with_a_long_name&name=Annabelle`);
    await page.waitForSelector('#connection-banner:not([hidden])', { timeout: 4 * WAIT_MS });
    const fit = await page.evaluate(() => {
      const h1 = document.querySelector('h1');
      const name = document.getElementById('my-name').getBoundingClientRect();
      return {
        sideways: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        clipped: h1.scrollWidth - h1.clientWidth,
        nameVisible: name.width > 0 && name.right <= window.innerWidth,
      };
    });
    assert.equal(fit.sideways, 0, 'no sideways scroll');
    assert.equal(fit.clipped, 0, 'the room name is not cut');
    assert.ok(fit.nameVisible, '"as Annabelle" is on screen');
  }, { viewport: { width: 360, height: 740 } });
});

test('at_400_percent_zoom_the_log_keeps_some_lines_and_the_composer_is_reachable', TEST_OPTIONS, async (t) => {
  // 1280×1024 at 400 % is a 320×256 CSS-pixel window.
  await withPages(t, suite.browser, 1, async ([page]) => {
    await openRoom(page, suite.emulator.base, 'a11y_zoom');
    await postMessage(page, 'still readable');
    await waitForChatLine(page, 'still readable');
    const log = await page.locator('#chat-log').evaluate((el) => el.getBoundingClientRect().height);
    assert.ok(log >= 100, `the log keeps a few lines (${log} px)`);
    await page.locator('#chat-message-input').scrollIntoViewIfNeeded();
    const reachable = await page.locator('#chat-message-input').evaluate((el) => {
      const box = el.getBoundingClientRect();
      return box.top >= 0 && box.bottom <= window.innerHeight;
    });
    assert.ok(reachable, 'the composer scrolls into view');
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth), 0);
  }, { viewport: { width: 320, height: 256 } });
});

test('controls_stand_out_3_to_1_from_their_background_in_light_and_dark', TEST_OPTIONS, async (t) => {
  for (const colorScheme of SCHEMES) {
    await withPages(t, suite.browser, 1, async ([page]) => {
      await openRoom(page, suite.emulator.base, `a11y_contrast_${colorScheme}`);
      const ratio = await page.evaluate(() => {
        const rgb = (css) => css.match(/[\d.]+/g).slice(0, 3).map(Number);
        const luminance = (css) => {
          const [r, g, b] = rgb(css).map((v) => {
            const c = v / 255;
            return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
          });
          return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const input = document.getElementById('chat-message-input');
        const border = getComputedStyle(input).borderTopColor;
        const around = getComputedStyle(document.querySelector('.composer')).backgroundColor;
        const behind = around === 'rgba(0, 0, 0, 0)' ? getComputedStyle(document.body).backgroundColor : around;
        const [a, b] = [luminance(border), luminance(behind)].sort((x, y) => y - x);
        return (a + 0.05) / (b + 0.05);
      });
      assert.ok(ratio >= 3, `the composer's border is ${ratio.toFixed(2)}:1 against the page (${colorScheme})`);
    }, { colorScheme });
  }
});

test('a_reconnect_marks_the_log_busy_while_history_is_applied_and_a_refusal_puts_focus_on_a_way_out', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 1, async ([page]) => {
    await openRoom(page, suite.emulator.base, 'a11y_busy');
    await page.evaluate(() => {
      window.busy = [];
      const log = document.getElementById('chat-log');
      new MutationObserver(() => window.busy.push(log.getAttribute('aria-busy')))
        .observe(log, { attributes: true, attributeFilter: ['aria-busy'] });
    });
    await dropRoom(suite.emulator.base, 'a11y_busy');
    await waitForLogText(page, 'Reconnected');
    await page.waitForFunction(() => window.busy.includes(null), null, { timeout: WAIT_MS });
    assert.deepEqual(await page.evaluate(() => window.busy.slice(0, 2)), ['true', null], 'busy, then not');

    await page.goto(`${suite.emulator.base}/room.html?room=${encodeURIComponent('not a room')}`);
    await page.waitForSelector('#connection-status[data-state="rejected"]');
    await page.waitForFunction(() => document.activeElement !== document.body, null, { timeout: WAIT_MS });
    assert.equal(await page.evaluate(() => document.activeElement.id), 'banner-lobby', 'the way out has focus');
  });
});
