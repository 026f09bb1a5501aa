// node --test widgets/test/   (no dependencies; checks the pure helpers of the ranker)
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  displayOrder,
  moveItem,
  ordinal,
  orderAfterCutDrop,
  pickNext,
  rankedCount,
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
