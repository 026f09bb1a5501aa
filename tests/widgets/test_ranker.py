"""Tests of labkit.widgets.ranker: the drag-to-rank widget.

Most tests play the front end the way the page does, through the widget protocol: a state update
(``_handle_msg`` with ``method: update``) for ``submitted`` and a custom message for Undo, and
record what the kernel sends back. The browser tests at the end load the built ES module in
Debian's chromium with a fake anywidget model bridged to a real ``RankingWidget``, so the real
JavaScript (keyboard, drag, shuffle) is checked against the real Python validation.
"""

from __future__ import annotations

import base64
import io
import json
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import traitlets
from ipywidgets.widgets.widget import _remove_buffers
from PIL import Image

from labkit.widgets import NotTaken, RankingWidget, display_order
from labkit.widgets import ranker as ranker_module
from tests.conftest import open_page

STATIC = pathlib.Path(ranker_module.__file__).parent / "static"
REPO = pathlib.Path(__file__).resolve().parents[2]
COLOURS = ["red", "green", "blue", "orange", "purple", "teal", "olive", "navy"]


def _png(colour: str, size: int = 8) -> bytes:
    """A tiny solid-colour PNG."""
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def _gif(colours: list[str]) -> bytes:
    """A tiny animated GIF, one frame per colour."""
    frames = [Image.new("RGB", (8, 8), c) for c in colours]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


class Recorder:
    """Records what the kernel sends to the page (patches the widget's ``_send``)."""

    def __init__(self, w: RankingWidget) -> None:
        self.messages: list[tuple[dict[str, Any], list[Any]]] = []

        def _send(msg: dict[str, Any], buffers: list[Any] | None = None) -> None:
            self.messages.append((msg, list(buffers or [])))

        w._send = _send

    def updates(self) -> list[dict[str, Any]]:
        """States of the ``update`` messages (not echoes), oldest first."""
        return [msg["state"] for msg, _ in self.messages if msg["method"] == "update"]

    def clear(self) -> None:
        self.messages.clear()


def page_update(w: RankingWidget, state: dict[str, Any]) -> None:
    """Deliver a state update from the page, exactly as the widget protocol does."""
    w._handle_msg({"content": {"data": {"method": "update", "state": state}}, "buffers": []})


def page_undo(w: RankingWidget, round_id: Any) -> None:
    """Deliver the Undo button's custom message."""
    msg = {
        "content": {"data": {"method": "custom", "content": {"event": "undo", "round": round_id}}}
    }
    w._handle_msg({**msg, "buffers": []})


def submit(w: RankingWidget, round_id: Any, ranking: Any) -> None:
    page_update(w, {"submitted": {"round": round_id, "ranking": ranking}})


def submit_answer(w: RankingWidget, answer: dict[str, Any]) -> None:
    page_update(w, {"submitted": answer})


@pytest.fixture
def widget() -> Iterator[tuple[RankingWidget, list[tuple[tuple[int, ...], int]]]]:
    """A widget showing round 7: four PNGs, full ranking, with a recording on_submit."""
    w = RankingWidget()
    got: list[tuple[tuple[int, ...], int]] = []
    w.on_submit(lambda ranking, round_id: got.append((ranking, round_id)))
    w.show_round([_png(c) for c in COLOURS[:4]], round_id=7)
    yield w, got
    w.close()


# ---- static files and transport -----------------------------------------------------------------


def test_esm_and_css_are_the_committed_static_files() -> None:
    js, css = STATIC / "ranker.js", STATIC / "ranker.css"
    assert pathlib.Path(str(RankingWidget.__dict__["_esm"]._path)) == js.resolve()
    assert pathlib.Path(str(RankingWidget.__dict__["_css"]._path)) == css.resolve()
    w = RankingWidget()
    source = js.read_text(encoding="utf-8")
    assert w._esm == source  # the trait anywidget syncs is the file's content
    assert w._css == css.read_text(encoding="utf-8")
    assert "export{" in source and "as default}" in source
    assert "data-lm-suppress-shortcuts" in source
    for name in ("Candidates", "Submit ranking", "Undo", "Drag handle for candidate"):
        assert name in source
    # Offline: no import from a CDN or any URL at run time.
    assert "import(" not in source
    assert 'from"http' not in source and "from'http" not in source and "https://" not in source
    assert len(source) < 100_000, "keep the bundle small"
    w.close()


def test_items_travel_as_binary_buffers_not_base64(
    widget: tuple[RankingWidget, list[Any]],
) -> None:
    w, _ = widget
    assert isinstance(RankingWidget.class_traits()["items"], traitlets.List)
    assert isinstance(RankingWidget.class_traits()["items"]._trait, traitlets.Bytes)
    state = w.get_state()
    assert all(isinstance(item, bytes) for item in state["items"])
    plain, paths, buffers = _remove_buffers(state)
    assert paths == [["items", i] for i in range(4)]
    assert [bytes(b) for b in buffers] == [_png(c) for c in COLOURS[:4]]
    json.dumps(plain)  # the rest is plain JSON ...
    assert "iVBOR" not in json.dumps(plain)  # ... with no base64 PNG hiding in it

    # And on the wire: show_round sends one update whose items are message buffers.
    rec = Recorder(w)
    gif = _gif(["red", "blue"])
    w.show_round([gif, _png("red")], mime=["image/gif", "image/png"], round_id=8)
    updates = [(m, b) for m, b in rec.messages if m["method"] == "update"]
    assert len(updates) == 1
    msg, buffers = updates[0]
    assert msg["buffer_paths"] == [["items", 0], ["items", 1]]
    assert [bytes(b) for b in buffers] == [gif, _png("red")]
    assert msg["state"]["round_id"] == 8 and msg["state"]["mimes"] == ["image/gif", "image/png"]


def test_show_round_sets_the_round(widget: tuple[RankingWidget, list[Any]]) -> None:
    w, _ = widget
    assert w.m == 4 and w.round_id == 7 and w.k is None and w.incumbent is None
    assert w.mimes == ["image/png"] * 4
    assert w.seed == 7, "the display seed defaults to the round id"
    assert w.shown_order == display_order(4, seed=7)
    assert RankingWidget().shown_order == ()
    video = b"\x00\x00\x00\x18ftypmp42"
    w.show_round(
        [_png("red"), video, b"<svg xmlns='http://www.w3.org/2000/svg'/>"],
        mime=["image/png", "video/mp4", "image/svg+xml"],
        round_id=9,
        k=2,
        incumbent=1,
        seed=12345,
    )
    assert (w.m, w.round_id, w.k, w.incumbent, w.seed) == (3, 9, 2, 1, 12345)
    assert w.items[1] == video
    w.show_round([bytearray(b"ab"), memoryview(b"cd")], round_id=10)
    assert w.items == [b"ab", b"cd"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"items": []}, "at least one candidate"),
        ({"items": b"abc"}, "sequence of encoded"),
        ({"items": ["not bytes"]}, "item 0 must be the encoded bytes"),
        ({"mime": ["image/png"]}, "1 MIME types for 2 items"),
        ({"mime": "text/html"}, "got 'text/html'"),
        ({"mime": ["image/png", "image/png; x"]}, "item 1"),
        ({"round_id": -1}, "round_id must be a non-negative integer; got -1"),
        ({"round_id": True}, "round_id"),
        ({"round_id": 1.0}, "round_id"),
        ({"k": 3}, "k=3 must be between 1 and m=2"),
        ({"k": 1.5}, "k must be an integer"),
        ({"incumbent": 2}, "incumbent must be None or a candidate index in 0..1; got 2"),
        ({"seed": 2**32}, "display seed must be an integer in"),
        ({"seed": -1}, "display seed"),
    ],
)
def test_show_round_refuses_bad_arguments_and_changes_nothing(
    widget: tuple[RankingWidget, list[Any]], kwargs: dict[str, Any], match: str
) -> None:
    w, _ = widget
    before = w.get_state()
    args: dict[str, Any] = {"items": [b"a", b"b"], "round_id": 8, **kwargs}
    items = args.pop("items")
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("[", r"\[")):
        w.show_round(items, **args)
    assert w.get_state() == before


def test_round_traits_are_read_only_from_python(widget: tuple[RankingWidget, list[Any]]) -> None:
    w, _ = widget
    for name, value in [("round_id", 3), ("items", [b"x"]), ("error", ""), ("k", 1)]:
        with pytest.raises(traitlets.TraitError, match="read-only"):
            setattr(w, name, value)


# ---- submissions from the page ------------------------------------------------------------------


def test_valid_submission_reaches_callbacks_once(widget: tuple[RankingWidget, list[Any]]) -> None:
    w, got = widget
    assert w.last_ranking is None
    submit(w, 7, [2, 0, 3, 1])
    assert got == [((2, 0, 3, 1), 7)]
    assert isinstance(got[0][0], tuple)
    assert w.last_ranking == (2, 0, 3, 1) and w.last_round == 7
    assert w.accepted_round == 7 and w.error == "" and w.can_undo
    # The same round cannot be answered twice (a double click, a second view of the widget).
    submit(w, 7, [0, 1, 2, 3])
    assert got == [((2, 0, 3, 1), 7)]
    assert "round 7 was already submitted" in w.error
    assert w.last_ranking == (2, 0, 3, 1)


def test_next_round_accepts_again_even_an_identical_ranking(
    widget: tuple[RankingWidget, list[Any]],
) -> None:
    w, got = widget
    submit(w, 7, [0, 1, 2, 3])
    w.show_round([_png(c) for c in COLOURS[:4]], round_id=7)  # the same round shown again
    assert w.accepted_round is None and w.submitted == {}
    submit(w, 7, [0, 1, 2, 3])
    assert got == [((0, 1, 2, 3), 7), ((0, 1, 2, 3), 7)]


def test_stale_submission_is_refused_and_the_page_reverted(
    widget: tuple[RankingWidget, list[Any]],
) -> None:
    w, got = widget
    rec = Recorder(w)
    submit(w, 6, [0, 1, 2, 3])
    assert got == []
    assert w.error.startswith("stale submission: it answers round 6, but round 7 is on screen")
    assert w.submitted == {}
    # The kernel tells the page: the refusal reason, and `submitted` back to Python's value.
    sent = {k: v for state in rec.updates() for k, v in state.items()}
    assert sent["submitted"] == {} and sent["error"] == w.error


@pytest.mark.parametrize(
    ("submitted", "match"),
    [
        ({"round": 7, "ranking": [0, 1, 1, 2]}, "candidate 1 appears twice"),
        ({"round": 7, "ranking": [0, 1, 2, 4]}, "names candidate 4, but a round of 4"),
        ({"round": 7, "ranking": [0, 1, 2, -1]}, "names candidate -1"),
        ({"round": 7, "ranking": [0, 1, 2.0, 3]}, "position 2 must be an integer"),
        ({"round": 7, "ranking": [0, "1", 2, 3]}, "got '1' of type str"),
        ({"round": 7, "ranking": [True, 0, 2, 3]}, "position 0 must be an integer"),
        ({"round": 7, "ranking": []}, "at least one candidate"),
        ({"round": 7, "ranking": "0123"}, "must be a sequence"),
        ({"round": 7, "ranking": [0, 1, 2, 3, 4]}, "at most 4"),
        ({"round": 7, "ranking": [2, 0]}, "asks for all 4 candidates"),
        ({"round": "7", "ranking": [0, 1, 2, 3]}, "round must be an integer; got '7'"),
        ({"round": 7.0, "ranking": [0, 1, 2, 3]}, "round must be an integer"),
        ({"ranking": [0, 1, 2, 3]}, "with the keys 'round' and 'ranking', and optionally 'ties'"),
        ({"round": 7, "ranking": [0, 1, 2, 3], "x": 1}, "optionally 'ties' and 'none_better'"),
        ({"round": 7, "ranking": [0, 1, 2, 3], "tie": [1]}, "got ['ranking', 'round', 'tie']"),
        ({"round": 7, "ranking": [0, 1, 2, 3], "ties": [4]}, "invalid ties for round 7: tie pos"),
        ({"round": 7, "ranking": [0, 1, 2, 3], "ties": [2, 1]}, "ascending"),
        ({"round": 7, "ranking": [0, 1, 2, 3], "ties": [1, 1]}, "appears twice"),
        ({"round": 7, "ranking": [0, 1, 2, 3], "ties": [1.0]}, "of type float"),
        ({"round": 7, "ranking": [0, 1, 2, 3], "ties": "1"}, "ties must be a sequence"),
        ({"round": 7, "ranking": [0, 1, 2, 3], "none_better": 1}, "true or false; got 1"),
        ({"round": 7, "ranking": [0], "none_better": True}, "round 7 shows no current candidate"),
        ([0, 1, 2, 3], "expected a dict"),
        ("0,1,2,3", "expected a dict"),
        (None, "expected a dict"),
    ],
)
def test_malformed_submission_is_refused_with_a_clear_message(
    widget: tuple[RankingWidget, list[Any]], submitted: Any, match: str
) -> None:
    w, got = widget
    rec = Recorder(w)
    page_update(w, {"submitted": submitted})
    assert got == []
    assert match in w.error
    assert w.submitted == {} and w.accepted_round is None and w.last_ranking is None
    assert {"submitted": {}} in rec.updates(), "the page must be told to drop its value"
    # The person can fix it and submit again; a valid submission clears the error.
    submit(w, 7, [3, 2, 1, 0])
    assert got == [((3, 2, 1, 0), 7)] and w.error == ""


def test_direct_assignment_is_validated_too(widget: tuple[RankingWidget, list[Any]]) -> None:
    w, got = widget
    with pytest.raises(traitlets.TraitError, match="appears twice"):
        w.submitted = {"round": 7, "ranking": [1, 1, 2, 3]}
    assert "appears twice" in w.error and got == []
    w.submitted = {"round": 7, "ranking": [1, 0, 2, 3]}
    assert got == [((1, 0, 2, 3), 7)]


def test_top_k_round_asks_for_exactly_k() -> None:
    w = RankingWidget()
    got: list[Any] = []
    w.on_submit(lambda r, i: got.append((r, i)))
    w.show_round([_png(c) for c in COLOURS[:6]], round_id=0, k=2)
    submit(w, 0, [5, 0, 1])
    assert "round 0 asks for the best 2; the ranking [5, 0, 1] names 3" in w.error
    submit(w, 0, [5])
    assert "names 1" in w.error
    submit(w, 0, [5, 0])
    assert got == [((5, 0), 0)]
    # k=0 is a full ranking, like None.
    w.show_round([_png(c) for c in COLOURS[:3]], round_id=1, k=0)
    submit(w, 1, [2, 1])
    assert "asks for all 3" in w.error
    w.close()


def test_ties_reach_callbacks_that_take_them_and_two_argument_ones_still_work(
    widget: tuple[RankingWidget, list[Any]],
) -> None:
    w, got = widget  # got: a two-argument callback
    answers: list[Any] = []
    w.on_submit(lambda ranking, round_id, *, ties, none_better: answers.append((ties, none_better)))
    only_ties: list[Any] = []
    w.on_submit(lambda ranking, round_id, ties=(): only_ties.append(ties))
    anything: list[Any] = []
    w.on_submit(lambda *args, **kwargs: anything.append((args, kwargs)))
    submit_answer(w, {"round": 7, "ranking": [2, 0, 3, 1], "ties": [1, 3]})
    assert got == [((2, 0, 3, 1), 7)]
    assert answers == [((1, 3), False)] and only_ties == [(1, 3)]
    assert anything == [(((2, 0, 3, 1), 7), {"ties": (1, 3), "none_better": False})]
    assert w.last_ranking == (2, 0, 3, 1) and w.last_ties == (1, 3) and not w.last_none_better
    assert w.submitted == {"round": 7, "ranking": [2, 0, 3, 1], "ties": [1, 3]}
    # An answer without the key is an answer without ties.
    w.show_round([_png(c) for c in COLOURS[:4]], round_id=8)
    submit(w, 8, [0, 1, 2, 3])
    assert answers[-1] == ((), False) and w.last_ties == ()


@pytest.mark.parametrize("k", [None, 2, 1])
def test_none_better_is_the_incumbent_alone_whatever_k(k: int | None) -> None:
    w = RankingWidget()
    answers: list[Any] = []
    w.on_submit(lambda r, i, *, ties, none_better: answers.append((r, i, ties, none_better)))
    w.show_round([_png(c) for c in COLOURS[:4]], round_id=2, k=k, incumbent=3)
    for bad, match in [
        ({"ranking": [0], "none_better": True}, r"is the ranking \[3\]; got \[0\]"),
        ({"ranking": [3, 0], "none_better": True}, r"is the ranking \[3\]; got \[3, 0\]"),
        ({"ranking": [3], "none_better": True, "ties": [1]}, "one candidate has no two to tie"),
    ]:
        submit_answer(w, {"round": 2, **bad})
        assert re.search(match, w.error), w.error
    assert answers == []
    submit_answer(w, {"round": 2, "ranking": [3], "none_better": True})
    assert answers == [((3,), 2, (), True)] and w.error == "" and w.accepted_round == 2
    assert w.last_ranking == (3,) and w.last_none_better
    # none_better: false is an ordinary ranking, held to the round's k.
    w.show_round([_png(c) for c in COLOURS[:4]], round_id=3, k=k, incumbent=3)
    submit_answer(w, {"round": 3, "ranking": [3], "none_better": False})
    if k == 1:
        assert answers[-1] == ((3,), 3, (), False) and not w.last_none_better
    else:
        assert "round 3 asks for" in w.error
    w.close()


def test_nothing_is_accepted_before_the_first_round() -> None:
    w = RankingWidget()
    got: list[Any] = []
    w.on_submit(lambda r, i: got.append(r))
    submit(w, 0, [0])
    assert got == [] and "no round is on screen" in w.error
    w.close()


def test_busy_widget_ignores_submissions(widget: tuple[RankingWidget, list[Any]]) -> None:
    w, got = widget
    w.busy = True
    w.status = "Computing round 8…"
    submit(w, 7, [0, 1, 2, 3])
    assert got == [] and w.error.startswith("busy (saving the last ranking or preparing")
    w.busy = False
    submit(w, 7, [0, 1, 2, 3])
    assert got == [((0, 1, 2, 3), 7)]
    # show_round ends the busy state: a new round is ready.
    w.busy = True
    w.show_round([_png("red")], round_id=8)
    assert not w.busy and w.status == "" and w.error == ""


def test_the_page_can_change_nothing_but_the_ranking(
    widget: tuple[RankingWidget, list[Any]],
) -> None:
    w, got = widget
    rec = Recorder(w)
    before = w.get_state()
    forged = {
        "round_id": 99,
        "busy": True,
        "error": "",
        "items": [b"evil"],
        "k": 1,
        "seed": 3,
        "accepted_round": 7,
        "can_undo": True,
        "size": 999,
        "_esm": "export default {}",
    }
    page_update(w, forged)
    after = w.get_state()
    assert after == before
    # Python's values are sent back so the page reverts.
    sent = {k: v for state in rec.updates() for k, v in state.items()}
    assert set(forged) <= set(sent)
    assert sent["round_id"] == 7 and sent["busy"] is False and sent["size"] == 160
    # A forged key next to a valid ranking does not stop the ranking.
    page_update(w, {"round_id": 99, "submitted": {"round": 7, "ranking": [0, 2, 1, 3]}})
    assert got == [((0, 2, 1, 3), 7)] and w.round_id == 7


def test_a_failing_callback_leaves_the_round_submitted(
    widget: tuple[RankingWidget, list[Any]],
) -> None:
    """A callback that fails in general may have recorded the ranking: never take it twice."""
    w, _ = widget

    def broken(ranking: tuple[int, ...], round_id: int) -> None:
        raise OSError("disk full")

    w.on_submit(broken)
    with pytest.raises(OSError, match="disk full"):
        w.submitted = {"round": 7, "ranking": [0, 1, 2, 3]}
    assert "was accepted, but handling it failed: OSError: disk full" in w.error
    assert w.accepted_round == 7


def test_a_ranking_not_taken_can_be_submitted_again(
    widget: tuple[RankingWidget, list[Any]],
) -> None:
    w, got = widget
    assert not w.can_undo

    def refuse(ranking: tuple[int, ...], round_id: int) -> None:
        raise NotTaken("the log is locked")

    w.on_submit(refuse)
    with pytest.raises(NotTaken):
        w.submitted = {"round": 7, "ranking": [0, 1, 2, 3]}
    assert "the ranking for round 7 was not taken: the log is locked" in w.error
    # Not taken: nothing to undo, and the same ranking can be submitted again once it works.
    assert w.accepted_round is None and not w.can_undo
    w.on_submit(refuse, remove=True)
    page_update(w, {"submitted": {"round": 7, "ranking": [0, 1, 2, 3]}})
    assert got[-1] == ((0, 1, 2, 3), 7) and w.accepted_round == 7 and w.error == ""


def test_on_submit_remove_and_callable_check(widget: tuple[RankingWidget, list[Any]]) -> None:
    w, got = widget
    other: list[Any] = []

    def record(ranking: tuple[int, ...], round_id: int) -> None:
        other.append(ranking)

    w.on_submit(record)
    w.on_submit(record, remove=True)
    submit(w, 7, [0, 1, 2, 3])
    assert other == [] and len(got) == 1
    with pytest.raises(ValueError, match="callback must be callable"):
        w.on_submit(42)  # type: ignore[arg-type]


def test_session_loop_through_callbacks(widget: tuple[RankingWidget, list[Any]]) -> None:
    """A callback that shows the next round (what the session does) works inside the update."""
    w, _ = widget
    log: list[Any] = []

    def next_round(ranking: tuple[int, ...], round_id: int) -> None:
        log.append((round_id, ranking))
        w.busy = True
        w.show_round([_png(c) for c in COLOURS[:4]], round_id=round_id + 1, incumbent=0)

    w.on_submit(next_round)
    submit(w, 7, [1, 0, 2, 3])
    submit(w, 8, [3, 0, 2, 1])
    assert log == [(7, (1, 0, 2, 3)), (8, (3, 0, 2, 1))]
    assert w.round_id == 9 and not w.busy and w.accepted_round is None and w.incumbent == 0


def test_the_page_hears_accepted_only_after_the_callbacks_recorded_it(
    widget: tuple[RankingWidget, list[Any]],
) -> None:
    """While the callbacks run the page sees "saving" (busy), never "accepted"; it sees accepted
    in the message that follows the acknowledgement."""
    w, _ = widget
    rec = Recorder(w)
    seen_in_callback: list[Any] = []

    def record(ranking: tuple[int, ...], round_id: int) -> None:
        seen_in_callback.append((w.accepted_round, w.can_undo, w.busy, w.status))
        seen_in_callback.append([dict(state) for state in rec.updates()])

    w.on_submit(record)
    submit(w, 7, [2, 0, 3, 1])
    (before, sent_before) = seen_in_callback
    assert before == (None, False, True, "saving the ranking of round 7…")
    assert all("accepted_round" not in state and not state.get("can_undo") for state in sent_before)
    assert any(state.get("busy") is True for state in sent_before)
    after = rec.updates()[len(sent_before) :]
    assert {"accepted_round": 7, "can_undo": True, "busy": False, "status": ""} in after
    assert w.accepted_round == 7 and not w.busy and w.status == ""


def test_a_callback_acknowledges_after_its_commit_and_works_on(
    widget: tuple[RankingWidget, list[Any]],
) -> None:
    w, _ = widget
    rec = Recorder(w)
    states: list[Any] = []

    def commit_then_work(ranking: tuple[int, ...], round_id: int) -> None:
        w.acknowledge(round_id)
        states.append((w.accepted_round, w.can_undo, w.busy, len(rec.updates())))
        w.acknowledge(round_id)  # harmless twice
        raise NotTaken("too late: the page was told")

    w.on_submit(commit_then_work)
    with pytest.raises(NotTaken):
        w.submitted = {"round": 7, "ranking": [2, 0, 3, 1]}
    assert states == [(7, True, False, states[0][3])]
    assert "round 7 was accepted, but handling it failed: NotTaken" in w.error
    assert w.accepted_round == 7 and w.last_ranking == (2, 0, 3, 1)
    with pytest.raises(ValueError, match="only the submission being handled"):
        w.acknowledge(7)  # outside a callback
    w.show_round([_png("red")], round_id=8)

    def wrong_round(ranking: tuple[int, ...], round_id: int) -> None:
        w.acknowledge(round_id + 1)

    w.on_submit(commit_then_work, remove=True)
    w.on_submit(wrong_round)
    with pytest.raises(ValueError, match=r"being handled: round 8"):
        w.submitted = {"round": 8, "ranking": [0]}


def test_a_callback_keeping_the_widget_busy_is_left_busy(
    widget: tuple[RankingWidget, list[Any]],
) -> None:
    """A callback that sets busy and a status of its own (work goes on elsewhere) keeps them."""
    w, _ = widget

    def start_work(ranking: tuple[int, ...], round_id: int) -> None:
        w.status = "computing round 8 on the cluster…"
        w.busy = True

    w.on_submit(start_work)
    submit(w, 7, [0, 1, 2, 3])
    assert w.accepted_round == 7 and w.busy and w.status == "computing round 8 on the cluster…"


# ---- undo ---------------------------------------------------------------------------------------


def test_undo_event(widget: tuple[RankingWidget, list[Any]]) -> None:
    w, _ = widget
    undone: list[int] = []
    page_undo(w, 7)
    assert w.error == "nothing to undo"
    submit(w, 7, [0, 1, 2, 3])
    w.show_round([_png("red"), _png("blue")], round_id=8)
    page_undo(w, 8)
    assert "nothing handles it" in w.error
    w.on_undo(undone.append)
    page_undo(w, 7)
    assert undone == [] and "stale undo request" in w.error
    w.busy = True
    page_undo(w, 8)
    assert undone == [] and "busy" in w.error
    w.busy = False
    page_undo(w, 8)
    assert undone == [8] and w.error == ""
    w._handle_msg(
        {"content": {"data": {"method": "custom", "content": {"event": "rm -rf"}}}, "buffers": []}
    )
    assert undone == [8] and "unknown message" in w.error

    def broken(round_id: int) -> None:
        raise RuntimeError("renderer crashed")

    w.on_undo(undone.append, remove=True)
    w.on_undo(broken)
    page_undo(w, 8)  # the comm's handler logs what the callback raised ...
    assert w.error == "undo failed: RuntimeError: renderer crashed"  # ... and the page shows it
    with pytest.raises(RuntimeError, match="renderer crashed"):
        w._on_frontend_msg(w, {"event": "undo", "round": 8}, [])
    w.on_undo(broken, remove=True)
    fresh = RankingWidget()
    fresh.on_undo(undone.append)
    fresh.can_undo = True  # e.g. a resumed session with rounds behind it
    page_undo(fresh, None)
    assert undone == [8] and "no round is on screen" in fresh.error
    fresh.close()


# ---- the display shuffle ------------------------------------------------------------------------


def test_display_order_is_a_seeded_permutation() -> None:
    for m in (1, 2, 5, 8, 13):
        for seed in (0, 1, 99, 2**32 - 1):
            order = display_order(m, seed=seed)
            assert sorted(order) == list(range(m))
            assert display_order(m, seed=seed) == order
    # Every candidate is shown first for some seed: the order is really shuffled.
    assert {display_order(6, seed=s)[0] for s in range(200)} == set(range(6))
    with pytest.raises(ValueError, match="at least one candidate"):
        display_order(0, seed=0)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_display_order_matches_the_javascript_twin() -> None:
    script = (
        "import('./widgets/src/order.js').then(o => { const out = [];"
        " for (const m of [1, 2, 3, 7, 8, 12, 30])"
        " for (const s of [0, 1, 2, 41, 4294967295, 2654435769])"
        " out.push(o.displayOrder(m, s)); console.log(JSON.stringify(out)); })"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    expected = [
        list(display_order(m, seed=s))
        for m in (1, 2, 3, 7, 8, 12, 30)
        for s in (0, 1, 2, 41, 4294967295, 2654435769)
    ]
    assert json.loads(out) == expected


# ---- the real front end in a headless browser ----------------------------------------------------


# A stand-in for anywidget's model: get/set/save_changes/on/off/send, plus `apply`, which plays
# the kernel's update messages (binary buffers become DataViews, as in ipywidgets).
HARNESS = """
async ([src, css]) => {
  const style = document.createElement("style");
  style.textContent = css;
  document.head.append(style);
  const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
  const mod = await import(url);
  const listeners = {};
  const fire = (k) => (listeners["change:" + k] || []).slice().forEach((f) => f());
  const model = {
    state: {}, dirty: {}, saved: [], sent: [],
    get(k) { return this.state[k]; },
    set(k, v) { this.state[k] = v; this.dirty[k] = v; fire(k); },
    save_changes() { this.saved.push(this.dirty); this.dirty = {}; },
    on(e, f) { (listeners[e] ||= []).push(f); },
    off(e, f) { listeners[e] = (listeners[e] || []).filter((g) => g !== f); },
    send(content) { this.sent.push(content); },
    apply(state, paths, buffers) {
      paths.forEach((path, i) => {
        const bytes = Uint8Array.from(atob(buffers[i]), (c) => c.charCodeAt(0));
        let obj = state;
        for (const key of path.slice(0, -1)) obj = obj[key];
        obj[path[path.length - 1]] = new DataView(bytes.buffer);
      });
      Object.assign(this.state, state);
      Object.keys(state).forEach(fire);
    },
  };
  window.model = model;
  const host = document.createElement("div");
  document.body.append(host);
  window.cleanup = mod.default.render({ model, el: host });
}
"""


class Bridge:
    """Connects the page's fake model to a real RankingWidget, both ways."""

    def __init__(self, page: Any, w: RankingWidget) -> None:
        self.page, self.w = page, w
        self.rec = Recorder(w)
        self.sent_to_python: list[dict[str, Any]] = []
        src = (STATIC / "ranker.js").read_text(encoding="utf-8")
        css = (STATIC / "ranker.css").read_text(encoding="utf-8")
        page.evaluate(HARNESS, [src, css])
        self._push(w.get_state())

    def _push(self, state: dict[str, Any]) -> None:
        plain, paths, buffers = _remove_buffers(state)
        b64 = [base64.b64encode(bytes(b)).decode() for b in buffers]
        self.page.evaluate("([s, p, b]) => window.model.apply(s, p, b)", [plain, paths, b64])

    def pump(self) -> None:
        """Page writes and events -> Python; then Python's updates -> page."""
        saved, sent = self.page.evaluate(
            "() => { const m = window.model; const out = [m.saved, m.sent];"
            " m.saved = []; m.sent = []; return out; }"
        )
        for state in saved:
            self.sent_to_python.append(state)
            page_update(self.w, state)
        for content in sent:
            self.w._handle_msg(
                {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
            )
        self.flush()

    def flush(self) -> None:
        for msg, buffers in self.rec.messages:
            if msg["method"] != "update":
                continue
            state = json.loads(json.dumps(msg["state"]))
            paths = msg.get("buffer_paths", [])
            b64 = [base64.b64encode(bytes(b)).decode() for b in buffers]
            self.page.evaluate("([s, p, b]) => window.model.apply(s, p, b)", [state, paths, b64])
        self.rec.clear()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with open_page(browser, width=1000, height=800) as (pg, errors):
        pg.set_content("<!doctype html><html><head></head><body></body></html>")
        yield pg
    assert errors == [], f"JavaScript errors: {errors}"


def _tile(page: Any, label: int) -> Any:
    return page.get_by_role("listitem", name=f"Candidate {label}", exact=True)


def _make(page: Any, m: int, *, k: int | None = None, seed: int = 5) -> tuple[Bridge, list[Any]]:
    w = RankingWidget(size=96)
    got: list[Any] = []
    w.on_submit(lambda ranking, round_id: got.append((ranking, round_id)))
    w.show_round([_png(c) for c in COLOURS[:m]], round_id=3, k=k, seed=seed, incumbent=1)
    return Bridge(page, w), got


@pytest.mark.browser
def test_browser_accessibility_contract_and_shuffle(page: Any) -> None:
    bridge, _ = _make(page, 5)
    shown = bridge.w.shown_order
    assert shown == display_order(5, seed=5)
    root = page.locator(".lk-ranker")
    assert root.get_attribute("data-lm-suppress-shortcuts") is not None
    the_list = page.get_by_role("list", name="Candidates")
    assert the_list.count() == 1
    items = the_list.get_by_role("listitem")
    assert items.count() == 5
    # Shown in the seeded order; the label printed on a tile is its display position, 1-based.
    assert [int(x) for x in items.evaluate_all("ns => ns.map(n => n.dataset.candidate)")] == list(
        shown
    )
    for label in range(1, 6):
        assert _tile(page, label).count() == 1
        assert page.get_by_label(f"Drag handle for candidate {label}").count() == 1
    assert page.get_by_role("button", name="Submit ranking").is_enabled()
    assert page.get_by_role("button", name="Undo").is_disabled()  # nothing submitted yet
    # The incumbent (candidate 1) carries a visible "current" badge.
    incumbent_label = shown.index(1) + 1
    assert _tile(page, incumbent_label).locator(".lk-badge").is_visible()
    assert _tile(page, incumbent_label).locator(".lk-badge").inner_text() == "current"
    assert page.locator(".lk-badge:visible").count() == 1
    assert bridge.w.error == ""


@pytest.mark.browser
def test_browser_keyboard_ranking(page: Any) -> None:
    bridge, got = _make(page, 4)
    o = display_order(4, seed=5)
    page.locator(".lk-ranker").focus()
    # Pick labels 3 then 1; the rest stays in display order. Backspace takes a pick back.
    for key in ["3", "4", "Backspace", "1", "Enter"]:
        page.keyboard.press(key)
    bridge.pump()
    assert bridge.sent_to_python == [
        {"submitted": {"round": 3, "ranking": [o[2], o[0], o[1], o[3]]}}
    ]
    assert got == [((o[2], o[0], o[1], o[3]), 3)]
    # Accepted: the page locks until the next round and further keys do nothing.
    assert page.get_by_role("button", name="Submit ranking").is_disabled()
    assert "Ranking submitted" in page.locator(".lk-status").inner_text()
    page.keyboard.press("Enter")
    bridge.pump()
    assert len(got) == 1
    # Arrows move the focused tile. Next round, two columns: label 1 one step right, then down
    # a row (two steps).
    bridge.w.columns = 2
    bridge.w.show_round([_png(c) for c in COLOURS[:4]], round_id=4, seed=9)
    bridge.flush()
    o = display_order(4, seed=9)
    assert "Round 4" in page.locator(".lk-title").inner_text()
    _tile(page, 1).focus()
    page.keyboard.press("ArrowRight")
    assert _tile(page, 1).evaluate("n => n === document.activeElement")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    bridge.pump()
    assert got[-1] == ((o[1], o[2], o[3], o[0]), 4)


@pytest.mark.browser
def test_browser_drag_in_top_k_round(page: Any) -> None:
    bridge, got = _make(page, 5, k=2)
    o = display_order(5, seed=5)
    ranks = page.locator(".lk-item .lk-rank")
    assert ranks.all_inner_texts() == ["1st", "2nd", "not ranked", "not ranked", "not ranked"]
    assert page.locator(".lk-cut").is_visible()
    # Drag tile 5 by its handle onto tile 1: it becomes the best; tile 1 second.
    handle = page.get_by_label("Drag handle for candidate 5").bounding_box()
    target = _tile(page, 1).bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(handle["x"] + 10, handle["y"] + 10, steps=4)
    page.mouse.move(target["x"] + 10, target["y"] + 20, steps=15)
    page.mouse.move(target["x"] + 8, target["y"] + 20, steps=3)
    # SortableJS (fallback mode) checks the drop target on a 50 ms timer, not at pointer up:
    # hold the pointer there until the tile has moved, as a hand does.
    page.wait_for_function(
        "c => document.querySelector('.lk-list .lk-item').dataset.candidate === String(c)",
        arg=o[4],
        timeout=5_000,
    )
    page.mouse.up()
    order = [
        int(x)
        for x in page.locator(".lk-item").evaluate_all("ns => ns.map(n => n.dataset.candidate)")
    ]
    assert order[:2] == [o[4], o[0]], order
    assert page.locator(".lk-list > *").nth(2).get_attribute("class") == "lk-cut"
    page.get_by_role("button", name="Submit ranking").click()
    bridge.pump()
    assert got == [((o[4], o[0]), 3)]


@pytest.mark.browser
def test_browser_busy_ignores_input_and_errors_are_shown(page: Any) -> None:
    bridge, got = _make(page, 3)
    bridge.w.busy = True
    bridge.w.status = "Computing round 4…"
    bridge.flush()
    assert page.get_by_role("progressbar").is_visible()
    assert "Computing round 4…" in page.locator(".lk-status").inner_text()
    assert page.get_by_role("button", name="Submit ranking").is_disabled()
    page.locator(".lk-ranker").focus()
    for key in ["2", "Enter"]:
        page.keyboard.press(key)
    bridge.pump()
    assert bridge.sent_to_python == [] and got == []
    # Back to work; a stale submission (the page answering round 2) shows the kernel's error.
    bridge.w.busy = False
    bridge.flush()
    page.evaluate(
        "() => { window.model.set('submitted', {round: 2, ranking: [0, 1, 2]});"
        " window.model.save_changes(); }"
    )
    bridge.pump()
    alert = page.get_by_role("alert")
    assert "stale submission" in alert.inner_text()
    # The page was reverted and can submit the round on screen.
    page.get_by_role("button", name="Submit ranking").click()
    bridge.pump()
    assert len(got) == 1 and got[0][1] == 3 and not alert.is_visible()


@pytest.mark.browser
def test_browser_large_view_and_undo(page: Any) -> None:
    bridge, got = _make(page, 3)
    undone: list[int] = []
    bridge.w.on_undo(undone.append)
    _tile(page, 2).locator(".lk-media").click()
    dialog = page.get_by_role("dialog", name="Candidate 2, large view")
    assert dialog.is_visible()
    page.keyboard.press("Escape")
    assert dialog.count() == 0
    # Submit, move on to round 4, then Undo: the kernel hears it with the round on screen.
    page.get_by_role("button", name="Submit ranking").click()
    bridge.pump()
    bridge.w.show_round([_png("red"), _png("blue")], round_id=4)
    bridge.flush()
    page.get_by_role("button", name="Undo").click()
    bridge.pump()
    assert len(got) == 1 and undone == [4]


@pytest.mark.browser
def test_browser_ties_and_none_better(page: Any) -> None:
    bridge, got = _make(page, 4)  # a full ranking of 4, candidate 1 the incumbent
    answers: list[Any] = []
    bridge.w.on_submit(lambda r, i, *, ties, none_better: answers.append((r, ties, none_better)))
    o = display_order(4, seed=5)
    ranks = page.locator(".lk-item .lk-rank")
    # An "=" on every tile but the first; the one on the 3rd ties it with the 2nd.
    assert page.locator(".lk-tie:visible").count() == 3
    toggle = page.get_by_role("button", name="Tie candidate 3 with the one above")
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    assert ranks.all_inner_texts() == ["1st", "=2nd", "=2nd", "4th"]
    # Keyboard: "=" on the focused 4th tile chains the tie; Backspace takes it back; Enter on the
    # focused toggle unties the 3rd, Space ties it again.
    _tile(page, 4).focus()
    page.keyboard.press("=")
    assert ranks.all_inner_texts() == ["1st", "=2nd", "=2nd", "=2nd"]
    page.keyboard.press("Backspace")
    toggle.focus()
    page.keyboard.press("Enter")
    assert toggle.get_attribute("aria-pressed") == "false"
    page.keyboard.press(" ")
    assert toggle.get_attribute("aria-pressed") == "true"
    assert page.get_by_role("dialog").count() == 0  # Space on the toggle is not "enlarge"
    page.get_by_role("button", name="Submit ranking").click()
    bridge.pump()
    assert bridge.sent_to_python[-1] == {"submitted": {"round": 3, "ranking": list(o), "ties": [2]}}
    assert got == [(tuple(o), 3)] and answers == [(tuple(o), (2,), False)]
    # A round with an incumbent offers "None is better than the current one".
    none_better = page.get_by_role("button", name="None is better than the current one")
    bridge.w.show_round([_png(c) for c in COLOURS[:3]], round_id=4, k=1, incumbent=2)
    bridge.flush()
    none_better.click()
    bridge.pump()
    assert answers[-1] == ((2,), (), True) and bridge.w.last_none_better
    assert none_better.is_disabled()  # answered: the page waits for the next round
    bridge.w.show_round([_png(c) for c in COLOURS[:3]], round_id=5)  # no incumbent
    bridge.flush()
    assert none_better.is_hidden()
    assert bridge.w.error == ""


def test_errors_echoing_what_the_page_sent_are_cut_to_a_sane_length() -> None:
    w = RankingWidget()
    w.show_round([b"\x89PNG\r\n\x1a\n"] * 3, round_id=0)
    huge = list(range(100_000))
    w.set_state({"submitted": {"round": 0, "ranking": huge}})
    assert w.error and len(w.error) <= 300 and w.error.endswith("…")
    w.set_state({"submitted": {"round": 0, "ranking": [0, 1, 2], "ties": [1, "y" * 100_000]}})
    assert w.error.startswith("invalid ties for round 0") and len(w.error) <= 300
    w.set_state({"submitted": {"round": 0, "ranking": [0, 1, 2], "z" * 100_000: 1}})
    assert w.error.startswith("a submission must be a dict") and len(w.error) <= 300
    w._on_frontend_msg(w, {"event": "x" * 100_000}, [])
    assert w.error.startswith("unknown message from the page") and len(w.error) <= 300
    w._on_frontend_msg(w, {"event": "undo", "round": "y" * 100_000}, [])
    assert w.error.startswith("stale undo request") and len(w.error) <= 300
    assert w.accepted_round is None  # nothing was taken
