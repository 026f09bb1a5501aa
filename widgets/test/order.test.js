// node --test widgets/test/   (no dependencies; checks the pure helpers of the ranker)
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  displayOrder,
  moveItem,
  noneBetterSubmission,
  ordinal,
  orderAfterCutDrop,
  pickNext,
  pruneTies,
  rankedCount,
  rankingSubmission,
  rankTexts,
  tiePositions,
  toggleTie,
} from "../src/order.js";

test("displayOrder is a permutation, fixed by the seed", () => {
  for (const m of [1, 2, 5, 8, 13]) {
    for (const seed of [0, 1, 7, 2 ** 32 - 1]) {
      const order = displayOrder(m, seed);
      assert.deepEqual([...order].sort((a, b) => a - b), [...Array(m).keys()]);
      assert.deepEqual(displayOrder(m, seed), order);
    }
  }
});

test("displayOrder matches the Python twin (labkit.widgets.ranker.display_order)", () => {
  // Values printed by: python -c "from labkit.widgets.ranker import display_order as d;
  //   print(d(8, seed=0), d(8, seed=1), d(5, seed=123456789))"
  assert.deepEqual(displayOrder(8, 0), [4, 7, 3, 5, 6, 1, 0, 2]);
  assert.deepEqual(displayOrder(8, 1), [2, 1, 6, 7, 4, 3, 0, 5]);
  assert.deepEqual(displayOrder(5, 123456789), [4, 0, 2, 3, 1]);
});

test("displayOrder really shuffles: every candidate is shown first for some seed", () => {
  const firsts = new Set();
  for (let seed = 0; seed < 200; seed++) firsts.add(displayOrder(6, seed)[0]);
  assert.equal(firsts.size, 6);
});

test("rankedCount: null and 0 mean a full ranking", () => {
  assert.equal(rankedCount(null, 6), 6);
  assert.equal(rankedCount(0, 6), 6);
  assert.equal(rankedCount(undefined, 6), 6);
  assert.equal(rankedCount(2, 6), 2);
});

test("pickNext builds the ranking front to back and refuses a second pick", () => {
  let state = { order: [10, 11, 12, 13], picked: 0 };
  state = pickNext(state.order, state.picked, 12);
  assert.deepEqual(state.order, [12, 10, 11, 13]);
  assert.equal(state.picked, 1);
  state = pickNext(state.order, state.picked, 13);
  assert.deepEqual(state.order, [12, 13, 10, 11]);
  assert.equal(state.picked, 2);
  assert.equal(pickNext(state.order, state.picked, 12), null);
});

test("moveItem keeps the picked prefix consistent", () => {
  // Drop next to the picked block: joins it.
  assert.deepEqual(moveItem([0, 1, 2, 3], 1, 3, 1), { order: [0, 3, 1, 2], picked: 2 });
  // Drop further down: does not.
  assert.deepEqual(moveItem([0, 1, 2, 3], 1, 3, 2), { order: [0, 1, 3, 2], picked: 1 });
  // Taking a picked item out of the block shrinks it.
  assert.deepEqual(moveItem([0, 1, 2, 3], 2, 0, 3), { order: [1, 2, 3, 0], picked: 1 });
  // Reordering inside the block keeps its size.
  assert.deepEqual(moveItem([0, 1, 2, 3], 2, 1, 0), { order: [1, 0, 2, 3], picked: 2 });
});

test("orderAfterCutDrop keeps k above the line and the dragged item where it was dropped", () => {
  // k = 2; item 1 dragged from above the line to just below it.
  assert.deepEqual(orderAfterCutDrop([0], [1, 2, 3], 1, 2), [0, 2, 1, 3]);
  // item 3 dragged from below to just above the line: the last ranked item is pushed down.
  assert.deepEqual(orderAfterCutDrop([0, 1, 3], [2], 3, 2), [0, 3, 1, 2]);
  // A drop that does not cross the line changes nothing else.
  assert.deepEqual(orderAfterCutDrop([1, 0], [2, 3], 1, 2), [1, 0, 2, 3]);
});

test("ordinal", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111].map(ordinal),
    ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"],
  );
});

test("toggleTie ties a ranked tile with the one before it, and unties it", () => {
  const order = [5, 2, 7, 0];
  let pairs = toggleTie(order, 4, [], 2);
  assert.deepEqual(pairs, [[2, 7]]);
  assert.deepEqual(tiePositions(order, 4, pairs), [2]);
  pairs = toggleTie(order, 4, pairs, 1);
  assert.deepEqual(tiePositions(order, 4, pairs), [1, 2]); // ties chain: 5 = 2 = 7
  pairs = toggleTie(order, 4, pairs, 2);
  assert.deepEqual(pairs, [[5, 2]]);
  // Nothing above the first; nothing to tie past the ranked ones (top-2 here) or the end.
  for (const [k, position] of [[4, 0], [2, 2], [4, 4], [4, -1], [4, 1.5]]) {
    assert.equal(toggleTie(order, k, pairs, position), null, `k=${k} position=${position}`);
  }
});

test("a tie lives while its two tiles stay ranked neighbours", () => {
  const pairs = [[5, 2], [7, 0]];
  assert.deepEqual(pruneTies([5, 2, 7, 0], 4, pairs), pairs);
  // 2 moved away from 5: that tie is gone; 7 = 0 still holds.
  assert.deepEqual(pruneTies([5, 7, 0, 2], 4, pairs), [[7, 0]]);
  // 0 fell below the cut of a top-3 round: unranked candidates are never tied.
  assert.deepEqual(pruneTies([5, 2, 7, 0], 3, pairs), [[5, 2]]);
  // Swapped: 2 directly above 5 is not the tie "5 then 2".
  assert.deepEqual(pruneTies([2, 5, 7, 0], 4, pairs), [[7, 0]]);
  assert.deepEqual(tiePositions([7, 0, 5, 2], 4, pairs), [1, 3]); // ascending positions
});

test("rankTexts marks tied groups with the place they share", () => {
  assert.deepEqual(rankTexts(4, 6, []), ["1st", "2nd", "3rd", "4th", "not ranked", "not ranked"]);
  assert.deepEqual(rankTexts(4, 5, [3]), ["1st", "2nd", "=3rd", "=3rd", "not ranked"]);
  assert.deepEqual(rankTexts(4, 5, [2, 3]), ["1st", "=2nd", "=2nd", "=2nd", "not ranked"]);
  assert.deepEqual(rankTexts(3, 3, [1]), ["=1st", "=1st", "3rd"]);
  assert.deepEqual(rankTexts(3, 3, [1, 2]), ["=1st", "=1st", "=1st"]);
});

test("the ranking payload: round, the ranked prefix, and ties only when there are any", () => {
  const order = [4, 1, 0, 3, 2];
  assert.deepEqual(rankingSubmission(9, order, 5, []), { round: 9, ranking: [4, 1, 0, 3, 2] });
  assert.deepEqual(rankingSubmission(9, order, 3, [[1, 0], [0, 3]]), {
    round: 9,
    ranking: [4, 1, 0],
    ties: [2], // 0 = 3 is not sent: 3 is not ranked in a top-3 round
  });
  assert.deepEqual(rankingSubmission(9, order, 5, [[3, 2], [4, 1]]).ties, [1, 4]);
});

test("the none-better payload is the incumbent alone, and needs one", () => {
  assert.deepEqual(noneBetterSubmission(4, 0), { round: 4, ranking: [0], none_better: true });
  assert.deepEqual(noneBetterSubmission(4, 3).ranking, [3]);
  assert.equal(noneBetterSubmission(4, null), null);
  assert.equal(noneBetterSubmission(4, undefined), null);
});
