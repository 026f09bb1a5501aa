// The rater page of a crowd (labkit/_crowd_server.py): the ranking widget's own front end
// (ranker.js, unchanged) driven by a small object that implements the anywidget model
// interface (get / set / on / off / save_changes / send) over HTTP instead of a kernel.
//
//   server state  ── GET api/round?since=V (long poll) ──► model.update(...) ──► ranker re-renders
//   ranker submit ── model.set("submitted") + save_changes() ──► POST api/submit ──► accepted
//
// The widget's contract is kept: the server owns every trait but `submitted`; the page is told
// "accepted" (accepted_round) only once the server answered that the ranking was logged; a
// refused ranking clears `submitted` and shows why, so it can be sent again.

import ranker from "./ranker.js";

/** A model with the anywidget interface the ranker uses; `update` is the server's side. */
function makeModel(onSave) {
  const state = {
    items: [], mimes: [], round_id: null, k: null, incumbent: null, seed: 0, size: 128,
    columns: 4, busy: true, status: "Waiting for the round…", error: "", accepted_round: null,
    can_undo: false, submitted: {},
  };
  const handlers = new Map();
  const dirty = new Set();
  const emit = (name) => {
    for (const cb of [...(handlers.get(`change:${name}`) ?? [])]) cb();
  };
  return {
    get: (name) => state[name],
    set(name, value) {
      if (state[name] === value) return;
      state[name] = value;
      dirty.add(name);
      emit(name);
    },
    on(event, cb) {
      if (!handlers.has(event)) handlers.set(event, new Set());
      handlers.get(event).add(cb);
    },
    off(event, cb) {
      handlers.get(event)?.delete(cb);
    },
    save_changes() {
      const names = [...dirty];
      dirty.clear();
      if (names.includes("submitted")) onSave(state.submitted);
    },
    send() {
      // The only message the ranker sends is Undo, and a crowd has none (can_undo is false).
      this.update({ error: "There is no undo in a crowd: each round is the crowd's." });
    },
    update(values) {
      const changed = Object.keys(values).filter((name) => state[name] !== values[name]);
      for (const name of changed) state[name] = values[name];
      for (const name of changed) emit(name);
    },
  };
}

const $ = (id) => document.getElementById(id);
const note = (text) => { $("note").textContent = text; };

async function postJSON(url, body) {
  const reply = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = {};
  try { data = await reply.json(); } catch { /* not JSON: the status says enough */ }
  return { status: reply.status, data };
}

async function submit(value) {
  let reply;
  try {
    reply = await postJSON("api/submit", value);
  } catch (err) {
    model.update({ submitted: {}, error: `The ranking was not sent (${err.message}); try again.` });
    return;
  }
  const { status, data } = reply;
  if (status === 200) {
    model.update({ accepted_round: value.round, submitted: {}, error: "" });
    note(data.late
      ? `Round ${value.round} had closed before your ranking arrived: it was logged, not counted.`
      : `Your ranking of round ${value.round} is in. Waiting for the others…`);
  } else if (status === 409) {
    model.update({ accepted_round: value.round, submitted: {}, error: data.error ?? "Already ranked." });
  } else {
    model.update({ submitted: {}, error: data.error ?? `The server refused the ranking (${status}).` });
  }
}

const model = makeModel(submit);
let version = "";
let shownRound = null;

function showCount(s) {
  let text = `${s.ranked} of ${s.raters} have ranked round ${s.round}`;
  if (s.closes_at !== null) {
    text += ` · closes in ${Math.max(0, Math.round(s.closes_at - s.server_time))} s at the latest`;
  }
  $("count").textContent = text;
}

async function show(s) {
  $("title").textContent = s.title;
  $("instructions").textContent = s.instructions;
  if (!$("name").value) $("name").value = s.rater;
  showCount(s);
  if (s.round === shownRound) {
    if (s.you_ranked && model.get("accepted_round") !== s.round) model.update({ accepted_round: s.round });
    return;
  }
  const items = await Promise.all(
    Array.from({ length: s.m }, async (_, i) => {
      const reply = await fetch(`api/item/${s.round}/${i}`, { credentials: "same-origin" });
      if (!reply.ok) throw new Error(`candidate ${i} of round ${s.round}: ${reply.status}`);
      return new DataView(await reply.arrayBuffer());
    }),
  );
  shownRound = s.round;
  model.update({
    items,
    mimes: items.map(() => s.mime),
    k: s.k,
    incumbent: s.incumbent,
    seed: s.seed,
    size: s.tile_px,
    round_id: s.round,
    busy: false,
    status: "",
    error: "",
    accepted_round: s.you_ranked ? s.round : null,
    submitted: {},
  });
  note(s.you_ranked ? `You have ranked round ${s.round}. Waiting for the others…` : "");
}

async function follow() {
  for (;;) {
    try {
      const reply = await fetch(`api/round?since=${version}`, { credentials: "same-origin" });
      if (reply.status === 403) {
        $("count").textContent = "This page needs its full link, with the token.";
        return;
      }
      if (!reply.ok) throw new Error(`the server answered ${reply.status}`);
      const s = await reply.json();
      version = String(s.version);
      await show(s);
    } catch (err) {
      $("count").textContent = `Reconnecting… (${err.message})`;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

$("who").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { status, data } = await postJSON("api/rater", { name: $("name").value.trim() });
  // The round on screen stays as it is: the next state the server sends is the new name's.
  $("who-note").textContent = status === 200 ? `You rank as ${data.rater}.` : data.error;
});

ranker.render({ model, el: $("ranker") });
follow();
