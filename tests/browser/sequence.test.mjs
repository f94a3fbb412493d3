// web/sequence.js without a browser: ordering, duplicates, gap repair, history answers, lost history.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RoomSequence } from '../../web/sequence.js';

/** A sequence with fake timers, recording what it shows, asks and says. */
function harness(options = {}) {
  const shown = [];
  const asked = [];
  const notices = [];
  const timers = [];
  const sequence = new RoomSequence({
    holdMs: 100,
    deliver: (frame) => shown.push(frame.seq),
    requestHistory: (after, epoch) => asked.push({ after, epoch }),
    notice: (kind, detail) => notices.push({ kind, detail }),
    setTimer: (fn) => { timers.push(fn); return timers.length; },
    clearTimer: (id) => { if (id) timers[id - 1] = null; },
    ...options,
  });
  const fire = () => {
    for (let i = 0; i < timers.length; i += 1) {
      const fn = timers[i];
      timers[i] = null;
      if (fn) fn();
    }
  };
  return { sequence, shown, asked, notices, fire };
}

const chat = (seq, epoch = 'e1') => ({ message: `m${seq}`, seq, epoch, ts: 1 });
const history = (seqs, complete, epoch = 'e1') => ({ history: seqs.map((s) => chat(s, epoch)), epoch, complete });

test('a_first_visit_asks_for_recent_history_and_shows_it_before_live_messages', () => {
  const { sequence, shown, asked } = harness();
  sequence.resume();
  sequence.onChat(chat(4)); // arrives before the history answer: held
  sequence.onHistory(history([1, 2, 3], true));
  assert.deepEqual(asked, [{ after: null, epoch: null }]);
  assert.deepEqual(shown, [1, 2, 3, 4]);
});

test('out_of_order_messages_are_shown_in_seq_order_each_once', () => {
  const { sequence, shown, asked, fire } = harness({ epoch: 'e1', last: 0 });
  sequence.resume();
  sequence.onHistory(history([], true));
  for (const seq of [2, 1, 1, 4, 3, 2, 5]) sequence.onChat(chat(seq));
  fire();
  assert.deepEqual(shown, [1, 2, 3, 4, 5]);
  assert.equal(asked.length, 1, 'the reorder filled itself: no gap request');
});

test('a_gap_that_does_not_fill_is_fetched_with_history_after_the_last_shown_seq', () => {
  const { sequence, shown, asked, fire } = harness({ epoch: 'e1', last: 3 });
  sequence.resume();
  sequence.onHistory(history([], true));
  sequence.onChat(chat(6));
  assert.deepEqual(shown, []);
  fire();
  assert.deepEqual(asked.at(-1), { after: 3, epoch: 'e1' });
  sequence.onHistory(history([4, 5, 6], true));
  assert.deepEqual(shown, [4, 5, 6]);
});

test('a_resume_shows_exactly_what_was_missed_and_ignores_what_was_shown', () => {
  const { sequence, shown, asked, notices } = harness({ epoch: 'e1', last: 5 });
  sequence.resume();
  sequence.onHistory({ history: [chat(6), chat(7)], epoch: 'e1' }); // more frames follow
  sequence.onChat(chat(7));
  sequence.onHistory({ history: [chat(8)], epoch: 'e1', complete: true });
  assert.deepEqual(asked, [{ after: 5, epoch: 'e1' }]);
  assert.deepEqual(shown, [6, 7, 8]);
  assert.deepEqual(notices, []);
});

test('history_past_the_retention_limit_says_messages_were_lost_then_goes_on', () => {
  const { sequence, shown, notices } = harness({ epoch: 'e1', last: 2 });
  sequence.resume();
  sequence.onHistory(history([10, 11], false));
  assert.deepEqual(shown, [10, 11]);
  assert.deepEqual(notices, [{ kind: 'lost', detail: { from: 3, to: 9 } }]);
});

test('a_new_epoch_resets_the_sequence_and_says_so', () => {
  const { sequence, shown, notices } = harness({ epoch: 'old', last: 40 });
  sequence.resume();
  sequence.onHistory(history([1, 2], false, 'new'));
  sequence.onChat(chat(3, 'new'));
  assert.deepEqual(shown, [1, 2, 3]);
  assert.equal(notices[0].kind, 'reset');
  assert.equal(sequence.epoch, 'new');
});

test('an answer that says more is followed by the next page, and live frames wait for the last page', () => {
  const { sequence, shown, asked, fire } = harness();
  const chat = (seq) => ({ message: `m${seq}`, seq, epoch: 'e' });
  sequence.resume();
  assert.deepEqual(asked, [{ after: null, epoch: null }]);

  sequence.onHistory({ history: [chat(1), chat(2)], epoch: 'e', complete: true, more: true });
  sequence.onChat(chat(6));
  fire();

  assert.deepEqual(shown, [1, 2]);
  assert.deepEqual(asked.slice(1), [{ after: 2, epoch: 'e' }], 'the next page, and no gap request meanwhile');
  sequence.onHistory({ history: [chat(3), chat(4), chat(5)], epoch: 'e', complete: true });
  assert.deepEqual(shown, [1, 2, 3, 4, 5, 6]);
  assert.equal(asked.length, 2);
});

test('a_head_ahead_of_the_last_shown_message_fetches_what_was_missed_after_a_moment', () => {
  const { sequence, shown, asked, fire } = harness({ epoch: 'e1', last: 3 });
  sequence.resume();
  sequence.onHistory(history([], true));
  sequence.onHead('e1', 4); // the last message of a quiet room never reached this page
  assert.equal(asked.length, 1, 'not at once: a live frame may be on its way');
  fire();
  assert.deepEqual(asked.at(-1), { after: 3, epoch: 'e1' });
  sequence.onHistory(history([4], true));
  assert.deepEqual(shown, [4]);
});

test('a_head_that_a_live_frame_catches_up_with_or_one_already_shown_asks_nothing', () => {
  const { sequence, asked, fire } = harness({ epoch: 'e1', last: 3 });
  sequence.resume();
  sequence.onHistory(history([], true));
  sequence.onHead('e1', 3);
  sequence.onHead('e1', 4);
  sequence.onChat(chat(4)); // the frame was only slower than the pong
  fire();
  sequence.onHead('e1', 'x');
  sequence.onHead(7, 4);
  fire();
  assert.equal(asked.length, 1, 'only the resume asked');
});

test('a_head_of_another_epoch_asks_and_the_answer_resets', () => {
  const { sequence, shown, asked, notices, fire } = harness({ epoch: 'e1', last: 3 });
  sequence.resume();
  sequence.onHistory(history([], true));
  sequence.onHead('e2', 1);
  fire();
  assert.deepEqual(asked.at(-1), { after: 3, epoch: 'e1' });
  sequence.onHistory(history([1], false, 'e2'));
  assert.deepEqual(notices.map((n) => n.kind), ['reset']);
  assert.deepEqual(shown, [1]);
});

/** A message as the server numbers it: `text` at time `ts`. */
const said = (seq, text, ts, epoch = 'e1') => ({ message: text, seq, epoch, ts });

/** A page that showed m1–m5 of e1 (ts 1–5). */
function afterFive() {
  const h = harness({ epoch: 'e1', last: 0 });
  h.sequence.resume();
  h.sequence.onHistory({ history: [1, 2, 3, 4, 5].map((n) => said(n, `m${n}`, n)), epoch: 'e1', complete: true });
  assert.deepEqual(h.shown, [1, 2, 3, 4, 5]);
  return h;
}

test('a_restart_that_kept_everything_carries_the_messages_into_a_new_epoch_without_a_word', () => {
  const { sequence, shown, asked, notices, fire } = afterFive();
  sequence.onChat(said(6, 'm6', 6, 'e2')); // the first message after the restart, in the new epoch
  fire();
  assert.deepEqual(asked.at(-1), { after: 0, epoch: 'e2' }, 'what came before it in the new epoch');
  sequence.onHistory({ history: [1, 2, 3, 4, 5, 6].map((n) => said(n, `m${n}`, n, 'e2')), epoch: 'e2', complete: true });
  assert.deepEqual(shown, [1, 2, 3, 4, 5, 6], 'm1–m5 are not shown twice');
  assert.deepEqual(notices, []);
});

test('a_restore_from_an_older_snapshot_says_what_was_lost_and_shows_what_followed', () => {
  const { sequence, shown, notices, fire } = afterFive();
  // Restored at m3: m6 and m7 are numbered 4 and 5 of a new epoch that carries m1–m3.
  sequence.onChat(said(4, 'm6', 60, 'e2'));
  fire();
  sequence.onHistory({ history: [said(1, 'm1', 1, 'e2'), said(2, 'm2', 2, 'e2'), said(3, 'm3', 3, 'e2'), said(4, 'm6', 60, 'e2')], epoch: 'e2', complete: true });
  sequence.onChat(said(5, 'm7', 70, 'e2'));
  assert.deepEqual(shown, [1, 2, 3, 4, 5, 4, 5], 'm6 and m7 shown after what the page had');
  assert.deepEqual(notices, [{ kind: 'rewound', detail: { from: 4 } }]);
});

test('a_rewind_the_server_did_not_notice_is_told_by_a_seq_shown_with_another_message', () => {
  const { sequence, shown, notices } = afterFive();
  sequence.onChat(said(4, 'm6', 60)); // the same epoch, seq 4 again, another message
  sequence.onChat(said(4, 'm6', 60)); // and its repeat is a duplicate
  sequence.onChat(said(5, 'm7', 70));
  sequence.onChat(said(5, 'm5', 5)); // a late copy of what the server no longer has: not shown twice
  assert.deepEqual(shown, [1, 2, 3, 4, 5, 4, 5]);
  assert.deepEqual(notices, [{ kind: 'rewound', detail: { from: 4 } }]);
});

test('a_head_behind_the_last_shown_message_asks_once', () => {
  const { sequence, asked, fire } = afterFive();
  sequence.onHead('e1', 3); // restored at m3, nothing said since
  fire();
  sequence.onHead('e1', 3);
  fire();
  assert.deepEqual(asked.slice(1), [{ after: 5, epoch: 'e1' }]);
});

test('a_new_epoch_that_carries_nothing_shown_is_a_lost_history', () => {
  const { sequence, shown, notices, fire } = afterFive();
  sequence.onChat(said(1, 'fresh', 100, 'e2'));
  fire();
  sequence.onHistory({ history: [said(1, 'fresh', 100, 'e2')], epoch: 'e2', complete: true });
  assert.deepEqual(shown, [1, 2, 3, 4, 5, 1]);
  assert.deepEqual(notices.map((n) => n.kind), ['reset']);
});
