// The emulator's own page, /_emulator/: what the dashboard shows in the cloud, locally. Driven as a developer
// would: a room open in one tab, the page in another, a fault switched on with the page's own control, and the
// refused post seen among the recent events. And what a page elsewhere could forge against the emulator.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  launchBrowser, openRoom, postMessage, snap, useSuite, waitForChatLine, withPages, TEST_OPTIONS, WAIT_MS,
} from './harness.mjs';

const suite = useSuite();

async function faults() {
  const response = await fetch(`${suite.emulator.base}/_emulator/faults`, { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(response.status, 200);
  return response.json();
}

test('the_page_shows_rooms_traffic_costs_and_metrics_and_a_switch_flipped_there_refuses_the_next_post', TEST_OPTIONS, async (t) => {
  await withPages(t, suite.browser, 2, async ([ops, member]) => {
    await openRoom(member, suite.emulator.base, 'ops_page');
    await ops.goto(`${suite.emulator.base}/_emulator/`);

    // The room and its one connection, listed by the page.
    const row = ops.locator('#rooms tr[data-room="ops_page"]');
    await row.waitFor({ timeout: WAIT_MS });
    assert.equal((await row.locator('td').nth(1).textContent()).trim(), '1');

    await postMessage(member, 'counted');
    await waitForChatLine(member, 'counted');
    // The functions' metrics (in process) and the cost meter count it.
    await ops.locator('#emf tr[data-metric="ChatMessages"]').waitFor({ timeout: WAIT_MS });
    await ops.waitForFunction(() => {
      const cells = [...document.querySelectorAll('#meter tr')].find((r) => r.textContent.startsWith('Messages from clients'));
      return cells && Number(cells.querySelector('td').textContent) >= 1;
    }, null, { timeout: WAIT_MS });
    await ops.waitForFunction(() => document.querySelector('#chart-in').getAttribute('points').split(' ').length >= 2,
      null, { timeout: WAIT_MS });

    // Flip "410 Gone" to every post, from the page.
    await ops.fill('input[name="goneRate"]', '1');
    await ops.press('input[name="goneRate"]', 'Tab');
    await ops.locator('#faults-status', { hasText: 'Set goneRate' }).waitFor({ timeout: WAIT_MS });
    assert.equal((await faults()).goneRate, 1);

    await postMessage(member, 'into the void');
    const refused = ops.locator('#events tr[data-kind="@connections"][data-status="410"]');
    await refused.first().waitFor({ timeout: WAIT_MS });
    assert.match(await refused.first().textContent(), /POST @connections/);
    assert.equal(await refused.first().getAttribute('class'), 'bad');
    await snap(ops, 'emulator_page_with_a_refused_post');

    // Back off, from the page too.
    await ops.fill('input[name="goneRate"]', '0');
    await ops.press('input[name="goneRate"]', 'Tab');
    await ops.locator('#faults-status', { hasText: 'Set goneRate' }).waitFor({ timeout: WAIT_MS });
    assert.equal((await faults()).goneRate, 0);
  });
});

test('a_page_on_another_origin_cannot_switch_faults_and_a_rebound_name_gets_nothing', TEST_OPTIONS, async () => {
  const base = suite.emulator.base; // http://127.0.0.1:PORT
  const port = new URL(base).port;
  const before = await faults();

  // Another origin: the same emulator as http://localhost:PORT is a different origin from 127.0.0.1. (No
  // withPages: the browser rightly reports the refusals as console errors.)
  const context = await suite.browser.newContext();
  try {
    const elsewhere = await context.newPage();
    await elsewhere.goto(`http://localhost:${port}/`);
    const outcomes = await elsewhere.evaluate(async (target) => {
      const tries = [
        // What any page may send without asking: text/plain, no CORS.
        fetch(`${target}/_emulator/faults`, { method: 'POST', mode: 'no-cors', body: '{"goneRate": 1, "expire": "all"}' })
          .then((r) => `answered (${r.type})`, (e) => `failed: ${e.message}`),
        // JSON needs a preflight, which the emulator never allows.
        fetch(`${target}/_emulator/faults`, {
          method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"goneRate": 1}',
        }).then((r) => `answered ${r.status}`, (e) => `failed: ${e.message}`),
      ];
      return Promise.all(tries);
    }, base);
    assert.equal(outcomes[0], 'answered (opaque)', 'a no-cors answer is opaque to the page');
    assert.match(outcomes[1], /^failed/, 'the preflight is refused');
  } finally {
    await context.close();
  }
  assert.deepEqual(await faults(), before, 'nothing changed');

  // DNS rebinding: a name of the attacker's that resolves to 127.0.0.1.
  const rebinding = await launchBrowser(['--host-resolver-rules=MAP rebound.test 127.0.0.1']);
  try {
    const page = await rebinding.newPage();
    const response = await page.goto(`http://rebound.test:${port}/_emulator/`);
    assert.equal(response.status(), 421);
    const api = await page.goto(`http://rebound.test:${port}/_emulator/connections`);
    assert.equal(api.status(), 421);
    assert.doesNotMatch(await page.content(), /connectionId/);
  } finally {
    await rebinding.close();
  }
  assert.deepEqual(await faults(), before, 'nothing changed');
});
