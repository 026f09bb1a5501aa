// Pure helpers of the ranking widget: the seeded display shuffle and the bookkeeping of a list
// being reordered. No DOM here, so `node --test` can check them (widgets/test/order.test.js).
//
// Vocabulary used throughout:
//   candidate  - index of an item in the round as Python sent it (0-based); what Python receives.
//   label      - the number printed on a tile, 1-based, fixed for the whole round: the tile's
//                position in the shuffled display order. Number keys name tiles by label.
//   order      - the current list, top to bottom, as candidate indices. Best first: the submitted
//                ranking is order.slice(0, k).
//   picked     - length of the prefix of `order` the person has placed on purpose (number keys,
//                or a drag/arrow that landed in or next to that prefix). The next number key puts
//                its tile at position `picked`.
//   tie pairs  - the ties the person set, as [above, below] candidate pairs: `below` is as good
//                as `above`, the candidate directly above it. A pair lives only while the two
//                stay neighbours among the ranked; the answer sends it as the position of `below`
//                (labkit.ranking.validate_ties: p means ranking[p] is as good as ranking[p - 1]).

/**
 * The display order of a round: a permutation of 0..m-1 drawn from `seed`.
 *
 * People favour whatever is shown first, so every round is shown in a fresh order. The generator
 * is mulberry32 (32-bit state) and the shuffle Fisher-Yates; labkit.widgets.ranker.display_order
 * implements the same arithmetic in Python, so the kernel knows what was shown where.
 * All arithmetic stays in unsigned 32-bit integers (`>>> 0`) and `u * (i + 1) / 2^32` is exact in
 * a double for u < 2^32 and i + 1 < 2^21, which is what makes the two implementations agree.
 *
 * @param {number} m number of candidates, 1 <= m < 2^21
 * @param {number} seed integer in [0, 2^32)
 * @returns {number[]} display position -> candidate index
 */
export function displayOrder(m, seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1) >>> 0;
    t = (t ^ (t + Math.imul(t ^ (t >>> 7), t | 61))) >>> 0;
    return (t ^ (t >>> 14)) >>> 0;
  };
  const order = Array.from({ length: m }, (_, i) => i);
  for (let i = m - 1; i > 0; i--) {
    const j = Math.floor((next() * (i + 1)) / 4294967296);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/**
 * How many of m candidates the person ranks: k for a top-k round, m for a full ranking.
 * `k` null, undefined or 0 means a full ranking (the Python side's convention).
 */
export function rankedCount(k, m) {
  return k ? Math.min(k, m) : m;
}

/**
 * Move the item at position `from` to position `to` and keep `picked` meaningful.
 *
 * The picked prefix is the block of tiles placed on purpose. An item taken out of it shrinks it;
 * an item dropped inside it, or right after it (position == new prefix length), joins it.
 *
 * @returns {{order: number[], picked: number}} new arrays; the inputs are not modified
 */
export function moveItem(order, picked, from, to) {
  const next = order.slice();
  const [item] = next.splice(from, 1);
  next.splice(to, 0, item);
  let p = from < picked ? picked - 1 : picked;
  if (to <= p) p += 1;
  return { order: next, picked: p };
}

/**
 * Put the tile with candidate index `candidate` at position `picked` (the next best).
 * A tile already inside the picked prefix is not moved again (returns null).
 */
export function pickNext(order, picked, candidate) {
  const from = order.indexOf(candidate);
  if (from < 0 || from < picked) return null;
  return { order: moveItem(order, picked, from, picked).order, picked: picked + 1, from };
}

/**
 * Read a drop in a top-k list whose DOM held a cut line between the ranked and unranked items.
 *
 * `above` and `below` are the candidate indices on each side of the cut line as the drop left
 * them. The line always sits after `kRanked` items, so if the dragged item crossed the line, the
 * item on the line's other edge is pushed across in exchange; the dragged item stays on the side
 * where the person dropped it.
 *
 * @returns {number[]} the new order
 */
export function orderAfterCutDrop(above, below, moved, kRanked) {
  const order = above.concat(below);
  const at = order.indexOf(moved);
  const droppedAbove = above.includes(moved);
  if (droppedAbove && at >= kRanked) {
    order.splice(at, 1);
    order.splice(kRanked - 1, 0, moved);
  } else if (!droppedAbove && at < kRanked) {
    order.splice(at, 1);
    order.splice(kRanked, 0, moved);
  }
  return order;
}

/** "1st", "2nd", "3rd", "4th", ..., "11th", "12th", "13th", "21st", ... */
export function ordinal(n) {
  const tens = n % 100;
  if (tens >= 11 && tens <= 13) return `${n}th`;
  const suffix = { 1: "st", 2: "nd", 3: "rd" }[n % 10] ?? "th";
  return `${n}${suffix}`;
}

/**
 * The tie pairs that still hold in `order`: both candidates ranked (above the first `kRanked`
 * positions' end) and neighbours, `above` directly before `below`. A pair broken by a move is
 * dropped for good (it does not come back if the tiles meet again).
 *
 * @returns {number[][]} a new array of [above, below] pairs
 */
export function pruneTies(order, kRanked, pairs) {
  return pairs.filter(([above, below]) => {
    const p = order.indexOf(below);
    return p >= 1 && p < kRanked && order[p - 1] === above;
  });
}

/** Tied positions of `order` (ascending): p where order[p] is as good as order[p - 1]. */
export function tiePositions(order, kRanked, pairs) {
  return pruneTies(order, kRanked, pairs)
    .map(([, below]) => order.indexOf(below))
    .sort((a, b) => a - b);
}

/**
 * Tie, or untie, the candidate at `position` with the one directly above it.
 *
 * @returns {number[][] | null} the new pairs, or null when `position` has no ranked candidate
 *   above it to tie with (the first position, or one past the ranked ones)
 */
export function toggleTie(order, kRanked, pairs, position) {
  if (!Number.isInteger(position) || position < 1 || position >= Math.min(kRanked, order.length)) {
    return null;
  }
  const above = order[position - 1];
  const below = order[position];
  const current = pruneTies(order, kRanked, pairs);
  const kept = current.filter(([, b]) => b !== below); // after pruning, `below` names the pair
  return kept.length < current.length ? kept : kept.concat([[above, below]]);
}

/**
 * What each position's tile says about its rank: "1st", "2nd", ..., "=2nd" for every member of a
 * tied group that starts at the 2nd place, "not ranked" past the first `kRanked`.
 *
 * @param {number[]} ties tied positions, as tiePositions returns them
 * @returns {string[]} one text per position 0..m-1
 */
export function rankTexts(kRanked, m, ties) {
  const tied = new Set(ties);
  const texts = [];
  let start = 0;
  for (let p = 0; p < m; p++) {
    if (p >= kRanked) {
      texts.push("not ranked");
      continue;
    }
    if (!tied.has(p)) start = p; // a new group starts here
    const inGroup = tied.has(p) || tied.has(p + 1);
    texts.push(inGroup ? `=${ordinal(start + 1)}` : ordinal(p + 1));
  }
  return texts;
}

/**
 * The `submitted` value of a ranking: {round, ranking} plus `ties` when there are any.
 */
export function rankingSubmission(roundId, order, kRanked, pairs) {
  const value = { round: roundId, ranking: order.slice(0, kRanked) };
  const ties = tiePositions(order, kRanked, pairs);
  if (ties.length > 0) value.ties = ties;
  return value;
}

/**
 * The `submitted` value of "none of these is better than the current one": the incumbent alone.
 * Null when the round has no incumbent (the answer cannot be given then).
 */
export function noneBetterSubmission(roundId, incumbent) {
  if (incumbent === null || incumbent === undefined) return null;
  return { round: roundId, ranking: [incumbent], none_better: true };
}
