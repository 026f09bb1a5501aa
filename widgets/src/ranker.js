// Front end of labkit.widgets.RankingWidget (anywidget, `export default { render }`).
//
// The kernel owns every synced trait except `submitted`; this module reads them, re-renders
// from them, and writes back exactly one thing: `submitted = {round, ranking}` (plus `ties` when
// the person tied neighbours, or `none_better: true` for "None is better than the current one")
// with model.set + model.save_changes(). Undo is an event (model.send), not state. The ordering
// and the ties the person is building live only here, per view, until they are submitted.
//
// Synced traits read here (all written by Python):
//   items: DataView[] (binary buffers)   mimes: string[]        round_id: int | null
//   k: int | null (null/0 = full)        incumbent: int | null  seed: int (display shuffle)
//   size: int (px)   columns: int (0 = as many as fit)   busy: bool   status: string
//   error: string    accepted_round: int | null          can_undo: bool

import Sortable from "sortablejs/modular/sortable.core.esm.js";
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
} from "./order.js";

// How long to wait for a second digit when m >= 10 ("1" then "2" picks candidate 12).
const DIGIT_WAIT_MS = 800;

let uid = 0;

/** A Blob part from whatever the widget transport delivered for one item (never base64). */
function binaryPart(value) {
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return value;
  throw new TypeError(`labkit ranker: an item is ${typeof value}, expected binary data`);
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function mediaElement(url, mime, alt) {
  if (mime.startsWith("video/")) {
    const video = el("video", { src: url, "aria-label": alt });
    // Animations: play silently and forever, inline on phones.
    video.muted = true;
    video.loop = true;
    video.autoplay = true;
    video.playsInline = true;
    return video;
  }
  return el("img", { src: url, alt, draggable: "false" });
}

function render({ model, el: host }) {
  const id = `lk-ranker-${++uid}`;

  // ---- static skeleton ------------------------------------------------------------------------
  const title = el("span", { class: "lk-title" });
  const mode = el("span", { class: "lk-mode" });
  const help = el("p", {
    class: "lk-help",
    id: `${id}-help`,
    text:
      "Drag a tile by its handle to order the candidates, best first; an = between two tiles " +
      "makes them equally good. Keyboard: press the numbers in order of preference, arrows " +
      "move the focused tile, Space enlarges it, = ties it with the one before, Backspace " +
      "takes the last move back, Enter submits.",
  });
  const list = el("div", { class: "lk-list", role: "list", "aria-label": "Candidates" });
  const cut = el("div", { class: "lk-cut", "aria-hidden": "true" }, [
    el("span", { text: "▲ ranked" }),
    el("span", { text: "not ranked ▼" }),
  ]);
  const submitBtn = el("button", { type: "button", class: "lk-submit", text: "Submit ranking" });
  const noneBtn = el("button", {
    type: "button",
    class: "lk-none-better",
    text: "None is better than the current one",
    title: "Keep the current candidate: none of these is better",
  });
  const undoBtn = el("button", {
    type: "button",
    class: "lk-undo",
    text: "Undo",
    title: "Take back the ranking submitted last",
  });
  const progress = el("div", { class: "lk-progress", role: "progressbar", "aria-label": "Working" });
  const statusText = el("span", { class: "lk-status-text" });
  const statusBox = el("div", { class: "lk-status", role: "status", "aria-live": "polite" }, [
    progress,
    statusText,
  ]);
  const errorBox = el("div", { class: "lk-error", role: "alert" });
  const announcer = el("div", { class: "lk-sr-only", "aria-live": "polite" });
  const root = el(
    "div",
    {
      class: "lk-ranker",
      "data-lm-suppress-shortcuts": "true",
      role: "group",
      "aria-label": "Rank the candidates",
      "aria-describedby": `${id}-help`,
      tabindex: "0",
    },
    [
      el("div", { class: "lk-header" }, [title, mode]),
      help,
      list,
      el("div", { class: "lk-footer" }, [submitBtn, noneBtn, undoBtn, statusBox]),
      errorBox,
      announcer,
    ],
  );
  host.append(root);

  // ---- per-view state -------------------------------------------------------------------------
  let tiles = new Map(); // candidate -> {tile, rank, badge, tie, label, url, mime}
  let urls = [];
  let order = []; // candidate indices, top to bottom
  let labelOf = []; // candidate -> label shown (1-based)
  let picked = 0;
  let tiePairs = []; // [[above, below]] candidates the person tied (see order.js)
  let history = []; // [{candidate, from, pickedBefore, tiesBefore}] or [{tiesBefore}] (a tie)
  let roundKey = null;
  let pendingValue = null; // the `submitted` value sent and not yet answered by the kernel
  let digitBuffer = "";
  let digitTimer = null;
  let overlay = null;
  let refreshQueued = false;
  let dragging = false;

  const m = () => order.length;
  const kRanked = () => rankedCount(model.get("k"), m());
  const topK = () => kRanked() < m();
  const submittedHere = () => {
    const accepted = model.get("accepted_round");
    return accepted !== null && accepted !== undefined && accepted === model.get("round_id");
  };
  const locked = () =>
    Boolean(model.get("busy")) ||
    submittedHere() ||
    pendingValue !== null ||
    model.get("round_id") === null ||
    m() === 0;

  function announce(text) {
    announcer.textContent = text;
  }

  // ---- building a round -----------------------------------------------------------------------
  function buildRound() {
    for (const url of urls) URL.revokeObjectURL(url);
    urls = [];
    tiles = new Map();
    list.replaceChildren();
    closeOverlay();
    const items = model.get("items") ?? [];
    const mimes = model.get("mimes") ?? [];
    const shown = displayOrder(items.length, model.get("seed") ?? 0);
    labelOf = new Array(items.length);
    shown.forEach((candidate, position) => {
      labelOf[candidate] = position + 1;
    });
    items.forEach((data, candidate) => {
      const mime = mimes[candidate] ?? "image/png";
      const url = URL.createObjectURL(new Blob([binaryPart(data)], { type: mime }));
      urls.push(url);
      const label = labelOf[candidate];
      const rank = el("span", { class: "lk-rank", id: `${id}-rank-${candidate}` });
      const badge = el("span", { class: "lk-badge", text: "current" });
      const handle = el(
        "div",
        { class: "lk-handle", role: "img", "aria-label": `Drag handle for candidate ${label}` },
        [el("span", { class: "lk-grip", "aria-hidden": "true", text: "⠿" }),
          el("span", { class: "lk-label", "aria-hidden": "true", text: String(label) }),
          rank],
      );
      const media = el("div", { class: "lk-media", title: "Click to enlarge" }, [
        mediaElement(url, mime, `Candidate ${label}`),
        badge,
      ]);
      const tile = el(
        "div",
        {
          class: "lk-item",
          role: "listitem",
          "aria-label": `Candidate ${label}`,
          "aria-describedby": rank.id,
          tabindex: "0",
          "data-candidate": String(candidate),
          "data-label": String(label),
        },
        [handle, media],
      );
      // The "=" between this tile and the one before it (shown on ranked tiles but the first).
      const tie = el("button", {
        type: "button",
        class: "lk-tie",
        "aria-label": `Tie candidate ${label} with the one above`,
        "aria-pressed": "false",
        title: "Equally good as the one before",
        text: "=",
      });
      tile.prepend(tie);
      tie.addEventListener("click", () => {
        if (!locked()) tieAt(order.indexOf(candidate));
      });
      media.addEventListener("click", () => {
        if (!locked()) openOverlay(candidate);
      });
      tiles.set(candidate, { tile, rank, badge, tie, label, url, mime });
    });
    order = shown;
    picked = 0;
    tiePairs = [];
    history = [];
    pendingValue = null;
  }

  // ---- re-render from model state + local order ------------------------------------------------
  function refresh() {
    const key = [model.get("round_id"), model.get("seed"), model.get("items"), model.get("mimes")];
    if (roundKey === null || key.some((v, i) => v !== roundKey[i])) {
      roundKey = key;
      buildRound();
    }
    const kr = kRanked();
    const incumbent = model.get("incumbent");
    const focused = document.activeElement;
    // A tie lives while its two tiles stay ranked neighbours (a move may have parted them).
    tiePairs = pruneTies(order, kr, tiePairs);
    const ties = tiePositions(order, kr, tiePairs);
    const texts = rankTexts(kr, m(), ties);

    // Order the DOM as `order`, with the cut line after the k ranked tiles in top-k rounds.
    // Untouched while a drag is under way (SortableJS owns the DOM then) or already in order.
    const nodes = order.map((c) => tiles.get(c).tile);
    if (topK()) nodes.splice(kr, 0, cut);
    const inPlace =
      list.children.length === nodes.length && nodes.every((n, i) => list.children[i] === n);
    if (!dragging && !inPlace) {
      list.replaceChildren(...nodes);
      if (focused instanceof HTMLElement && list.contains(focused)) focused.focus();
    }

    const busy = Boolean(model.get("busy"));
    const isLocked = locked();
    order.forEach((candidate, position) => {
      const t = tiles.get(candidate);
      const ranked = position < kr;
      const tied = ties.includes(position);
      t.rank.textContent = texts[position];
      t.tie.hidden = !ranked || position === 0;
      t.tie.disabled = isLocked;
      t.tie.setAttribute("aria-pressed", String(tied));
      t.tile.classList.toggle("lk-tied", tied);
      t.tile.classList.toggle("lk-ranked", ranked);
      t.tile.classList.toggle("lk-unranked", !ranked);
      t.tile.classList.toggle("lk-picked", position < picked);
      t.tile.classList.toggle("lk-incumbent", candidate === incumbent);
      t.badge.hidden = candidate !== incumbent;
    });

    const size = Math.max(16, Number(model.get("size")) || 160);
    const columns = Number(model.get("columns")) || 0;
    root.style.setProperty("--lk-size", `${size}px`);
    list.style.gridTemplateColumns =
      columns > 0
        ? `repeat(${columns}, var(--lk-tile))`
        : "repeat(auto-fill, var(--lk-tile))";

    const roundId = model.get("round_id");
    title.textContent = roundId === null ? "No round yet" : `Round ${roundId}`;
    mode.textContent =
      m() === 0 ? "" : topK() ? `Pick the best ${kr} of ${m()}` : `Rank all ${m()}`;

    root.classList.toggle("lk-busy", busy);
    root.classList.toggle("lk-locked", isLocked);
    root.setAttribute("aria-busy", String(busy));
    list.setAttribute("aria-disabled", String(isLocked));
    submitBtn.disabled = isLocked;
    noneBtn.hidden = incumbent === null || incumbent === undefined || m() === 0;
    noneBtn.disabled = isLocked;
    undoBtn.disabled = busy || !model.get("can_undo") || roundId === null;
    sortable.option("disabled", isLocked);

    let status = "";
    if (busy) status = model.get("status") || "Working on the next round…";
    else if (pendingValue !== null) status = "Sending the ranking…";
    else if (submittedHere()) status = "Ranking submitted. Waiting for the next round…";
    else status = model.get("status") || "";
    statusText.textContent = status;
    progress.hidden = !(busy || pendingValue !== null || submittedHere());

    const error = model.get("error") || "";
    errorBox.textContent = error;
    errorBox.hidden = error === "";
  }

  function scheduleRefresh() {
    if (refreshQueued) return;
    refreshQueued = true;
    queueMicrotask(() => {
      refreshQueued = false;
      refresh();
    });
  }

  // ---- edits of the local order ---------------------------------------------------------------
  /** What the tile of `candidate` says about its rank ("2nd", "=2nd", "not ranked"). */
  function rankText(candidate) {
    const kr = kRanked();
    return rankTexts(kr, m(), tiePositions(order, kr, tiePairs))[order.indexOf(candidate)];
  }

  function describe(candidate) {
    const text = rankText(candidate);
    const where = text.startsWith("=") ? `tied ${text.slice(1)}` : text;
    return `Candidate ${labelOf[candidate]} is ${where}.`;
  }

  function applyMove(candidate, from, to) {
    const before = picked;
    const tiesBefore = tiePairs;
    ({ order, picked } = moveItem(order, picked, from, to));
    history.push({ candidate, from, pickedBefore: before, tiesBefore });
    refresh();
    announce(describe(candidate));
  }

  function pickLabel(label) {
    const candidate = labelOf.indexOf(label);
    if (candidate < 0) {
      announce(`There is no candidate ${label}.`);
      return;
    }
    const before = picked;
    const result = pickNext(order, picked, candidate);
    if (result === null) {
      announce(`Candidate ${label} is already placed ${ordinal(order.indexOf(candidate) + 1)}.`);
      return;
    }
    const tiesBefore = tiePairs;
    order = result.order;
    picked = result.picked;
    history.push({ candidate, from: result.from, pickedBefore: before, tiesBefore });
    refresh();
    announce(describe(candidate));
  }

  /** Tie (or untie) the tile at `position` with the one before it. */
  function tieAt(position) {
    const next = toggleTie(order, kRanked(), tiePairs, position);
    if (next === null) {
      announce("Only a ranked tile after the first can be tied with the one before it.");
      return;
    }
    history.push({ tiesBefore: tiePairs });
    const [above, below] = [order[position - 1], order[position]];
    const nowTied = next.some(([, b]) => b === below);
    tiePairs = next;
    refresh();
    const pair = `Candidate ${labelOf[below]} and candidate ${labelOf[above]}`;
    announce(nowTied ? `${pair} are equally good.` : `${pair} are no longer tied.`);
  }

  function takeBack() {
    const last = history.pop();
    if (!last) return;
    if (last.candidate === undefined) {
      tiePairs = last.tiesBefore; // a tie toggled
      refresh();
      announce("Took back the last tie.");
      return;
    }
    tiePairs = last.tiesBefore; // ties the move had parted come back with it
    const from = order.indexOf(last.candidate);
    const next = order.slice();
    next.splice(from, 1);
    next.splice(Math.min(last.from, next.length), 0, last.candidate);
    order = next;
    picked = last.pickedBefore;
    refresh();
    announce(`Took back: ${describe(last.candidate)}`);
  }

  function send(value) {
    pendingValue = value;
    model.set("submitted", pendingValue);
    model.save_changes();
    refresh();
  }

  function submit() {
    if (locked()) return;
    send(rankingSubmission(model.get("round_id"), order, kRanked(), tiePairs));
  }

  function submitNoneBetter() {
    if (locked()) return;
    const value = noneBetterSubmission(model.get("round_id"), model.get("incumbent"));
    if (value !== null) send(value);
  }

  function flushDigits() {
    clearTimeout(digitTimer);
    digitTimer = null;
    const label = Number.parseInt(digitBuffer, 10);
    digitBuffer = "";
    if (label >= 1) pickLabel(label);
  }

  function typeDigit(digit) {
    digitBuffer += digit;
    clearTimeout(digitTimer);
    // Pick at once when no further digit could name a candidate, else wait for one.
    if (Number.parseInt(digitBuffer, 10) * 10 > m()) flushDigits();
    else digitTimer = setTimeout(flushDigits, DIGIT_WAIT_MS);
  }

  // ---- large view -----------------------------------------------------------------------------
  function closeOverlay() {
    if (overlay === null) return;
    const { node, returnFocus } = overlay;
    overlay = null;
    node.remove();
    if (returnFocus?.isConnected) returnFocus.focus();
  }

  function openOverlay(candidate) {
    closeOverlay();
    const t = tiles.get(candidate);
    const closeBtn = el("button", { type: "button", class: "lk-close", text: "Close" });
    const caption = `Candidate ${t.label} · ${rankText(candidate)}`;
    const node = el(
      "div",
      {
        class: "lk-overlay",
        role: "dialog",
        "aria-modal": "true",
        "aria-label": `Candidate ${t.label}, large view`,
        "data-lm-suppress-shortcuts": "true",
      },
      [
        el("figure", { class: "lk-overlay-figure" }, [
          mediaElement(t.url, t.mime, `Candidate ${t.label}, large view`),
          el("figcaption", { text: caption }),
        ]),
        closeBtn,
      ],
    );
    node.addEventListener("click", (event) => {
      if (event.target === node || event.target === closeBtn) closeOverlay();
    });
    node.addEventListener("keydown", (event) => {
      event.stopPropagation();
      if (event.key === "Escape") {
        event.preventDefault();
        closeOverlay();
      } else if (event.key === "Tab") {
        event.preventDefault(); // one control: keep focus inside the dialog
        closeBtn.focus();
      }
    });
    // On document.body so no transformed or clipped notebook ancestor can confine it.
    document.body.append(node);
    overlay = { node, returnFocus: t.tile };
    closeBtn.focus();
  }

  // ---- input ----------------------------------------------------------------------------------
  function onKeydown(event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    const onButton = target instanceof HTMLButtonElement;
    const inTile = target instanceof HTMLElement ? target.closest(".lk-item") : null;
    const tile = onButton ? null : inTile; // Space and arrows on a tie toggle are the button's
    const key = event.key;
    const ours =
      /^[0-9]$/.test(key) ||
      key === "=" ||
      key === "Backspace" ||
      (key === "Enter" && !onButton) ||
      (key === " " && tile !== null) ||
      (key.startsWith("Arrow") && tile !== null);
    if (!ours) return;
    event.preventDefault();
    event.stopPropagation();
    if (locked()) return; // busy or already submitted: input is ignored
    if (/^[0-9]$/.test(key)) typeDigit(key);
    else if (key === "=") {
      // The focused tile with the one before it; with no tile focused, the last one picked.
      tieAt(inTile !== null ? order.indexOf(Number(inTile.dataset.candidate)) : picked - 1);
    }
    else if (key === "Backspace") takeBack();
    else if (key === "Enter") submit();
    else if (key === " ") openOverlay(Number(tile.dataset.candidate));
    else {
      const candidate = Number(tile.dataset.candidate);
      const from = order.indexOf(candidate);
      const step =
        key === "ArrowLeft" ? -1 : key === "ArrowRight" ? 1 : (key === "ArrowUp" ? -1 : 1) * rowLength();
      const to = Math.max(0, Math.min(m() - 1, from + step));
      if (to !== from) applyMove(candidate, from, to);
      tiles.get(candidate).tile.focus();
    }
  }

  /** Tiles per rendered row (Up/Down move by one row in a grid, by one in a single column). */
  function rowLength() {
    const nodes = order.map((c) => tiles.get(c).tile);
    const top = nodes[0]?.offsetTop;
    const n = nodes.filter((node) => node.offsetTop === top).length;
    return Math.max(1, Math.min(n, m()));
  }

  const sortable = Sortable.create(list, {
    draggable: ".lk-item",
    handle: ".lk-handle",
    // Pointer-event dragging for mouse and touch alike; native HTML5 drag and drop would fight
    // JupyterLab's own drop handling.
    forceFallback: true,
    fallbackOnBody: true,
    fallbackTolerance: 3,
    animation: 120,
    ghostClass: "lk-ghost",
    chosenClass: "lk-chosen",
    dragClass: "lk-drag",
    onStart() {
      dragging = true;
    },
    onEnd(event) {
      dragging = false;
      const moved = Number(event.item.dataset.candidate);
      const above = [];
      const below = [];
      let pastCut = false;
      for (const child of list.children) {
        if (child === cut) pastCut = true;
        else if (child.classList.contains("lk-item") && !child.classList.contains("sortable-fallback")) {
          (pastCut ? below : above).push(Number(child.dataset.candidate));
        }
      }
      const dropped = topK() ? orderAfterCutDrop(above, below, moved, kRanked()) : above;
      const from = order.indexOf(moved);
      const to = dropped.indexOf(moved);
      if (locked() || to < 0 || to === from) refresh();
      else applyMove(moved, from, to);
    },
  });

  root.addEventListener("keydown", onKeydown);
  submitBtn.addEventListener("click", submit);
  noneBtn.addEventListener("click", submitNoneBetter);
  undoBtn.addEventListener("click", () => {
    if (undoBtn.disabled) return;
    model.send({ event: "undo", round: model.get("round_id") });
  });

  // ---- model events ---------------------------------------------------------------------------
  const watched = [
    "items", "mimes", "round_id", "k", "incumbent", "seed", "size", "columns",
    "busy", "status", "error", "accepted_round", "can_undo",
  ];
  const onChange = () => scheduleRefresh();
  const onAnswer = () => {
    // The kernel answered (accepted, refused or moved on): allow the next submission.
    if (pendingValue !== null && model.get("submitted") !== pendingValue) pendingValue = null;
    scheduleRefresh();
  };
  const onRoundChange = () => {
    pendingValue = null;
    scheduleRefresh();
  };
  for (const name of watched) model.on(`change:${name}`, onChange);
  model.on("change:submitted", onAnswer);
  for (const name of ["error", "accepted_round", "round_id", "busy"]) {
    model.on(`change:${name}`, onRoundChange);
  }

  refresh();

  return () => {
    for (const name of watched) model.off(`change:${name}`, onChange);
    model.off("change:submitted", onAnswer);
    for (const name of ["error", "accepted_round", "round_id", "busy"]) {
      model.off(`change:${name}`, onRoundChange);
    }
    clearTimeout(digitTimer);
    closeOverlay();
    sortable.destroy();
    for (const url of urls) URL.revokeObjectURL(url);
    root.remove();
  };
}

export default { render };
