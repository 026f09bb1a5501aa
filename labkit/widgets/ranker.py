"""The drag-to-rank widget: a person orders the candidates of a round, best first.

``RankingWidget`` is an anywidget whose front end (``static/ranker.js``, built from the
top-level ``widgets/src/``) shows the ``m`` candidates of one round as tiles, lets a person order
them by dragging (mouse or touch, SortableJS) or by keyboard, and sends back one value::

    submitted = {"round": <round id>, "ranking": [candidate indices, best first]}

with two optional keys: ``"ties": [positions]`` (p: ``ranking[p]`` is as good as
``ranking[p - 1]``, see :func:`labkit.ranking.validate_ties`), set with the "=" toggles between
adjacent ranked tiles; and ``"none_better": true``, the answer "none of these is better than the
current one", which a round with an ``incumbent`` offers as a button and whose ranking is
``[incumbent]`` alone, whatever ``k`` the round asks for.

Trust boundary. Every synced trait is owned by Python except ``submitted``. The browser can
change nothing else: :meth:`RankingWidget.set_state`, the entry point of every state update from
the front end, drops any other key and sends Python's value back so the page reverts. A
``submitted`` value is checked by a traitlets validator: its round must be the round on screen, not
yet answered and not busy, and its ranking must pass :func:`labkit.ranking.validate_ranking` for
that round's ``m`` with exactly the number of entries the round asks for (``k``, or ``m`` in a
full ranking), its ties :func:`labkit.ranking.validate_ties` for that ranking; a ``none_better``
answer needs a round with an incumbent and the ranking ``[incumbent]`` without ties. Any other
key is refused. A refused value never reaches ``on_submit`` callbacks; its reason is put in the
``error`` trait, which the page shows. The Undo button is an event (a custom message), not state;
an undo callback that fails has its reason put in ``error`` too.

Acknowledgement. The page is told "accepted" (``accepted_round``, and Undo enabled) only after
the submit callbacks have said the ranking is recorded: when one of them calls
:meth:`RankingWidget.acknowledge` (the session does, right after the round log's commit), or
when they have all returned. Meanwhile the widget is ``busy`` with a "saving…" status, so the
person cannot submit twice. A callback that raises :class:`NotTaken` means "not recorded": the
page keeps the ranking, shows why and may submit it again. Any other exception means "recorded,
then something failed": the round stays accepted and the failure is shown.

Display order. People favour the first tile, so each round is shown in a shuffled order drawn
from ``seed`` (:func:`display_order`, implemented identically in ``widgets/src/order.js``). The
number printed on a tile (its *label*, 1-based) is its position in that shuffled order; the
submitted ranking is always in candidate indices, the rows of the round as Python sent them.

Keyboard (the root element carries ``data-lm-suppress-shortcuts`` so JupyterLab leaves the keys
alone): number keys pick the next best by label, arrows move the focused tile, Space enlarges it,
"=" ties the focused tile (or else the last one picked) with the one ranked above it, Backspace
takes the last move or tie back, Enter submits. The tie toggles and the none-better button are
buttons too (Tab, then Enter or Space).

Accessibility contract (also relied on by browser tests): the list has ``role="list"`` and
``aria-label="Candidates"``; each tile ``role="listitem"`` and ``aria-label="Candidate N"`` with N
its label; the buttons are named "Submit ranking", "Undo" and, in a round with an incumbent, "None
is better than the current one"; drag handles are labelled "Drag handle for candidate N"; the tie
toggle on a ranked tile (all but the first) is a button named "Tie candidate N with the one above"
with ``aria-pressed``.
"""

from __future__ import annotations

import inspect
import pathlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anywidget
import traitlets

from labkit._checks import integer
from labkit.ranking import Ranking, Ties, validate_ranking, validate_ties

__all__ = ["NotTaken", "RankingWidget", "display_order"]

_STATIC = pathlib.Path(__file__).parent / "static"

#: What a tile can show: still or animated images (PNG, JPEG, GIF, WebP, SVG, ...) and videos.
_MIME_RE = re.compile(r"^(image|video)/[A-Za-z0-9][A-Za-z0-9.+-]*$")

_UINT32 = 0xFFFFFFFF

#: Keys of a submission as the front end writes it: always, and when the answer has them.
_SUBMISSION_KEYS = frozenset({"round", "ranking"})
_OPTIONAL_KEYS = frozenset({"ties", "none_better"})

#: What a submit callback may take besides (ranking, round_id), as keywords (see on_submit).
_ANSWER_KEYWORDS = ("ties", "none_better")

SubmitCallback = Callable[..., object]
UndoCallback = Callable[[int], object]


def _mulberry32(seed: int) -> Iterator[int]:
    """The 32-bit generator mulberry32, yielding uint32 values; twin of ``displayOrder`` in JS.

    Every step is reduced modulo 2^32 exactly where JavaScript's ``>>> 0`` / ``Math.imul`` reduce,
    so both sides produce the same stream for the same seed.
    """
    state = seed & _UINT32
    while True:
        state = (state + 0x6D2B79F5) & _UINT32
        t = ((state ^ (state >> 15)) * (state | 1)) & _UINT32
        t = (t ^ (t + (((t ^ (t >> 7)) * (t | 61)) & _UINT32))) & _UINT32
        yield (t ^ (t >> 14)) & _UINT32


def display_order(m: int, *, seed: int) -> tuple[int, ...]:
    """The order in which the widget shows the ``m`` candidates of a round with this ``seed``.

    Returns a permutation of ``0..m-1``: entry ``p`` is the candidate index shown at position
    ``p`` (whose tile carries the label ``p + 1``). Fisher–Yates driven by mulberry32, so the
    kernel can log what was shown where. ``seed`` must lie in ``[0, 2**32)``.
    """
    if integer(m) is None or m < 1:
        raise ValueError(f"a round must have at least one candidate; got m={m!r}")
    _check_seed(seed)
    draws = _mulberry32(int(seed))
    order = list(range(int(m)))
    for i in range(len(order) - 1, 0, -1):
        # floor(u * (i + 1) / 2^32): a uniform index in [0, i], computed exactly as in JS.
        j = (next(draws) * (i + 1)) >> 32
        order[i], order[j] = order[j], order[i]
    return tuple(order)


def _check_seed(seed: Any) -> None:
    if integer(seed) is None or not 0 <= int(seed) <= _UINT32:
        raise ValueError(
            f"the display seed must be an integer in [0, 2**32) (the front end shuffles with a "
            f"32-bit generator); got {seed!r}"
        )


def _as_bytes(item: Any, index: int) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    raise ValueError(
        f"item {index} must be the encoded bytes of an image or video (bytes, bytearray or "
        f"memoryview); got {type(item).__name__}"
    )


@dataclass
class _Handling:
    """A submission while its callbacks run: what acknowledge() needs to know."""

    round_id: int
    ranking: Ranking
    ties: Ties
    none_better: bool
    saving_status: str  # the status shown meanwhile
    acknowledged: bool = False


class NotTaken(Exception):
    """Raised by a submit callback that did *not* record the ranking (refused, or the log could
    not be written): the widget then lets the page submit the same round again.

    Any other exception from a callback leaves the round counted as submitted (the callback may
    have recorded it), so a ranking is never taken twice.
    """


class RankingWidget(anywidget.AnyWidget):
    """Shows one round of candidates and returns the person's ranking of them.

    ::

        w = RankingWidget(size=192, columns=4)
        w.on_submit(lambda ranking, round_id: print(round_id, ranking))
        w.show_round([png0, png1, png2, png3], round_id=0, k=2)   # PNG bytes
        w   # display it; when the person submits, on_submit gets e.g. ((2, 0), 0)

        # A callback that takes the keywords ties and none_better gets them too:
        w.on_submit(lambda ranking, round_id, *, ties, none_better: ...)

    Python-owned traits (synced to the page; writing them from the page has no effect):

    ============== =========================================================================
    items          list of encoded media, one per candidate, sent as binary buffers
    mimes          one MIME type per item (``image/*`` or ``video/*``)
    round_id       id of the round on screen (None before the first round)
    k              top-k round: how many to rank (None or 0: a full ranking)
    incumbent      candidate index marked "current" (line-search rounds), or None
    seed           seed of the display shuffle, in [0, 2**32)
    size, columns  tile size in px; columns per row (0: as many as fit)
    busy, status   a ranking is being saved or the next round computed (input ignored);
                   text shown meanwhile
    error          why the last submission or undo request was refused or failed ("" if none)
    accepted_round round id of the submission recorded (acknowledged by the callbacks), None
                   until one is for the round on screen
    can_undo       whether the Undo button is enabled
    ============== =========================================================================

    Browser-written: ``submitted`` only (validated, see the module docstring).
    Settable from Python: ``size``, ``columns``, ``busy``, ``status``, ``can_undo``, and
    ``submitted`` (to play the front end; same validation). The round traits are read-only;
    set them with :meth:`show_round`.
    """

    _esm = _STATIC / "ranker.js"
    _css = _STATIC / "ranker.css"

    items = traitlets.List(traitlets.Bytes(), read_only=True).tag(sync=True)
    mimes = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    round_id = traitlets.Int(None, allow_none=True, read_only=True).tag(sync=True)
    k = traitlets.Int(None, allow_none=True, read_only=True).tag(sync=True)
    incumbent = traitlets.Int(None, allow_none=True, read_only=True).tag(sync=True)
    seed = traitlets.Int(0, read_only=True).tag(sync=True)

    size = traitlets.Int(160, min=32, max=2048).tag(sync=True)
    columns = traitlets.Int(0, min=0, max=64).tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    can_undo = traitlets.Bool(False).tag(sync=True)

    error = traitlets.Unicode("", read_only=True).tag(sync=True)
    accepted_round = traitlets.Int(None, allow_none=True, read_only=True).tag(sync=True)

    submitted = traitlets.Dict().tag(sync=True)

    #: The one trait the front end may write.
    _BROWSER_WRITABLE = frozenset({"submitted"})

    def __init__(self, *, size: int = 160, columns: int = 0, **kwargs: Any) -> None:
        super().__init__(size=size, columns=columns, **kwargs)
        self._submit_callbacks: list[SubmitCallback] = []
        self._undo_callbacks: list[UndoCallback] = []
        self._last_ranking: Ranking | None = None
        self._last_ties: Ties = ()
        self._last_none_better = False
        self._last_round: int | None = None
        self._handling: _Handling | None = None  # the submission the callbacks are handling
        self.on_msg(self._on_frontend_msg)

    # ---- the round ----------------------------------------------------------------------------

    @property
    def m(self) -> int:
        """Number of candidates on screen (0 before the first round)."""
        return len(self.items)

    @property
    def shown_order(self) -> tuple[int, ...]:
        """Candidate index shown at each position of the round on screen (label = position + 1).

        What the page displays before the person moves anything; worth logging with the ranking
        to study position bias. Empty before the first round.
        """
        return display_order(self.m, seed=self.seed) if self.m else ()

    @property
    def last_ranking(self) -> Ranking | None:
        """The last acknowledged ranking (candidate indices, best first), or None before any."""
        return self._last_ranking

    @property
    def last_ties(self) -> Ties:
        """The ties of :attr:`last_ranking` (tied positions, ``()`` for none)."""
        return self._last_ties

    @property
    def last_none_better(self) -> bool:
        """Whether :attr:`last_ranking` was the answer "none is better than the current one"."""
        return self._last_none_better

    @property
    def last_round(self) -> int | None:
        """The round id that :attr:`last_ranking` answers, or None before any submission."""
        return self._last_round

    def show_round(
        self,
        items: Sequence[bytes | bytearray | memoryview],
        *,
        mime: str | Sequence[str] = "image/png",
        round_id: int,
        k: int | None = None,
        incumbent: int | None = None,
        seed: int | None = None,
    ) -> None:
        """Put a new round on screen; the person's ranking of it arrives through ``on_submit``.

        Args:
            items: the ``m`` candidates, each the encoded bytes of an image (PNG, JPEG, animated
                GIF/WebP, SVG, ...) or a video, in candidate-index order. They travel to the
                browser as binary buffers, never as base64 text.
            mime: one MIME type for all items, or one per item (``image/*`` or ``video/*``).
            round_id: the round's id, a non-negative integer; a submission is accepted only for
                the round on screen, so answers to an older round are refused. Showing the same
                id again (after an undo) reopens it.
            k: rank only the best ``k`` (a cut line separates them from the "not ranked" rest);
                None or 0 for a full ranking.
            incumbent: candidate index of the current iterate, badged "current"; or None. A
                round with one offers the answer "None is better than the current one".
            seed: seed of the display shuffle in ``[0, 2**32)``; None uses ``round_id``, so a
                run's display orders are reproducible.

        Clears ``error`` and ``busy`` (a new round is ready) and any earlier submission.
        Raises ValueError naming the bad argument; nothing changes then.
        """
        if not isinstance(items, Sequence) or isinstance(items, (bytes, bytearray, str)):
            raise ValueError(
                f"items must be a sequence of encoded images/videos (one bytes object per "
                f"candidate); got {type(items).__name__}"
            )
        blobs = [_as_bytes(item, i) for i, item in enumerate(items)]
        m = len(blobs)
        if m < 1:
            raise ValueError("a round must show at least one candidate; got no items")
        if isinstance(mime, str):
            mimes = [mime] * m
        else:
            mimes = list(mime)
            if len(mimes) != m:
                raise ValueError(f"got {len(mimes)} MIME types for {m} items; give one per item")
        for i, t in enumerate(mimes):
            if not isinstance(t, str) or not _MIME_RE.match(t):
                raise ValueError(
                    f"MIME type of item {i} must look like 'image/png' or 'video/mp4' "
                    f"(image/* or video/*); got {t!r}"
                )
        if integer(round_id) is None or round_id < 0:
            raise ValueError(f"round_id must be a non-negative integer; got {round_id!r}")
        if k is not None and (integer(k) is None):
            raise ValueError(f"k must be an integer or None; got {k!r}")
        if k is not None and not 0 <= k <= m:
            raise ValueError(
                f"k={k} must be between 1 and m={m} (or 0/None for a full ranking of all {m})"
            )
        if incumbent is not None and (integer(incumbent) is None or not 0 <= incumbent < m):
            raise ValueError(
                f"incumbent must be None or a candidate index in 0..{m - 1}; got {incumbent!r}"
            )
        shuffle_seed = int(round_id) if seed is None else seed
        _check_seed(shuffle_seed)

        # One update message, so the page never sees new items with an old round id.
        with self.hold_sync():
            self.set_trait("items", blobs)
            self.set_trait("mimes", mimes)
            self.set_trait("round_id", int(round_id))
            self.set_trait("k", None if k is None else int(k))
            self.set_trait("incumbent", None if incumbent is None else int(incumbent))
            self.set_trait("seed", int(shuffle_seed))
            self.set_trait("accepted_round", None)
            self.set_trait("error", "")
            # An empty dict is "nothing submitted"; resetting it also makes a re-shown round
            # accept a ranking equal to the one it got before (traitlets only notifies changes).
            self.submitted = {}
            self.status = ""
            self.busy = False

    def _k_expected(self) -> int:
        """How many entries a submission for the round on screen must have."""
        return self.k if self.k else self.m

    # ---- what the browser may write ------------------------------------------------------------

    def _refuse(self, message: str) -> traitlets.TraitError:
        message = _cut(message)  # it may echo what the page sent, of any length
        self.set_trait("error", message)
        return traitlets.TraitError(message)

    @traitlets.validate("submitted")
    def _validate_submitted(self, proposal: Any) -> dict[str, Any]:
        value = proposal["value"]
        if value == {}:
            return {}  # "nothing submitted yet": what show_round resets to
        if (
            not isinstance(value, Mapping)
            or not _SUBMISSION_KEYS <= set(value)
            or not set(value) <= _SUBMISSION_KEYS | _OPTIONAL_KEYS
        ):
            keys = sorted(map(str, value)) if isinstance(value, Mapping) else type(value).__name__
            raise self._refuse(
                f"a submission must be a dict with the keys 'round' and 'ranking', and optionally "
                f"'ties' and 'none_better'; got {keys}"
            )
        round_ = value["round"]
        if integer(round_) is None:
            raise self._refuse(f"the submission's round must be an integer; got {round_!r}")
        if self.round_id is None:
            raise self._refuse(f"no round is on screen; the ranking for round {round_} was refused")
        if round_ != self.round_id:
            raise self._refuse(
                f"stale submission: it answers round {round_}, but round {self.round_id} is on "
                f"screen; rank the round shown"
            )
        if self.busy:
            raise self._refuse(
                f"busy (saving the last ranking or preparing the next round); the ranking for "
                f"round {round_} was not taken"
            )
        if self.accepted_round == round_:
            raise self._refuse(f"round {round_} was already submitted; wait for the next round")
        none_better = value.get("none_better", False)
        if not isinstance(none_better, bool):
            raise self._refuse(
                f"the submission's none_better must be true or false; got {none_better!r}"
            )
        try:
            ranking = validate_ranking(value["ranking"], self.m)
        except ValueError as exc:
            raise self._refuse(f"invalid ranking for round {round_}: {exc}") from None
        try:
            ties = validate_ties(value.get("ties"), len(ranking))
        except ValueError as exc:
            raise self._refuse(f"invalid ties for round {round_}: {exc}") from None
        if none_better:
            # "None of these is better than the current one": the incumbent alone, whatever k.
            if self.incumbent is None:
                raise self._refuse(
                    f"round {round_} shows no current candidate, so 'none is better than the "
                    f"current one' cannot be answered; rank the candidates"
                )
            if ranking != (self.incumbent,):
                raise self._refuse(
                    f"'none is better than the current one' in round {round_} is the ranking "
                    f"[{self.incumbent}]; got {list(ranking)}"
                )
        else:
            expected = self._k_expected()
            if len(ranking) != expected:
                what = f"the best {expected}" if expected < self.m else f"all {expected} candidates"
                raise self._refuse(
                    f"round {round_} asks for {what}; the ranking {list(ranking)} names "
                    f"{len(ranking)}"
                )
        # The keys as sent, normalized: a value equal to what the page sent is not echoed back.
        out: dict[str, Any] = {"round": int(round_), "ranking": list(ranking)}
        if "ties" in value:
            out["ties"] = list(ties)
        if "none_better" in value:
            out["none_better"] = none_better
        return out

    @traitlets.observe("submitted")
    def _on_submitted(self, change: Mapping[str, Any]) -> None:
        value = change["new"]
        if not value:
            return
        ranking: Ranking = tuple(value["ranking"])
        ties: Ties = tuple(value.get("ties", ()))
        none_better = bool(value.get("none_better", False))
        round_id = int(value["round"])
        answer = {"ties": ties, "none_better": none_better}
        # 1. While the callbacks record the ranking the page says so and takes no input (busy also
        #    makes the validator refuse a second submission). Nothing says "accepted" yet.
        saving = f"saving the ranking of round {round_id}…"
        with self.hold_sync():
            self.set_trait("error", "")
            self.status = saving
            self.busy = True
        self._handling = _Handling(round_id, ranking, ties, none_better, saving)
        try:
            # 2. The callbacks record it; one of them may acknowledge() once its record is durable.
            for callback in list(self._submit_callbacks):
                extra = {key: answer[key] for key in _answer_keywords(callback)}
                callback(ranking, round_id, **extra)
        except Exception as exc:
            if isinstance(exc, NotTaken) and not self._handling.acknowledged:
                # 3a. Not recorded: the page may submit this round again (after fixing the
                #     cause), and Undo keeps pointing where it did, never at a round not taken.
                if self.round_id == round_id:
                    with self.hold_sync():
                        self.submitted = {}  # the very same ranking counts as a new submission
                        self._end_saving()
                self.set_trait("error", f"the ranking for round {round_id} was not taken: {exc}")
                raise
            # 3b. Recorded (or possibly recorded: never take a ranking twice), then a failure.
            self.acknowledge(round_id)
            message = (
                f"the ranking for round {round_id} was accepted, but handling it failed: "
                f"{type(exc).__name__}: {exc}"
            )
            self.set_trait("error", message)
            if isinstance(exc, traitlets.TraitError):
                # set_state reads a TraitError as "submission refused"; this is not one.
                raise RuntimeError(message) from exc
            raise
        else:
            # 3c. Every callback returned: the ranking is taken.
            self.acknowledge(round_id)
        finally:
            self._handling = None

    def acknowledge(self, round_id: int) -> None:
        """Tell the page that the ranking of ``round_id`` is recorded; call it from a submit
        callback as soon as the record is durable (e.g. right after the log's commit).

        The page then shows the ranking as accepted and enables Undo, while the callback goes on
        (telling the optimizer, preparing the next round). Callbacks need not call it: when they
        all return, or raise anything but :class:`NotTaken`, the widget acknowledges itself.
        Calling it twice is harmless; a :class:`NotTaken` raised after it no longer un-takes the
        ranking. Raises ValueError outside a submit callback or for another round than the one
        being submitted.
        """
        handling = self._handling
        if handling is None or handling.round_id != round_id:
            being = "none" if handling is None else f"round {handling.round_id}"
            raise ValueError(
                f"acknowledge({round_id!r}): only the submission being handled can be "
                f"acknowledged, from a submit callback (being handled: {being})"
            )
        if handling.acknowledged:
            return
        handling.acknowledged = True
        self._last_ranking = handling.ranking
        self._last_ties = handling.ties
        self._last_none_better = handling.none_better
        self._last_round = round_id
        if self.round_id != round_id:
            return  # a callback already put another round on screen: that says enough
        with self.hold_sync():
            self.set_trait("accepted_round", round_id)
            self.can_undo = True
            self._end_saving()

    def _end_saving(self) -> None:
        """Leave the "saving" state of the submission being handled, unless a callback has
        changed ``busy``/``status`` for reasons of its own since."""
        handling = self._handling
        if handling is not None and self.busy and self.status == handling.saving_status:
            self.status = ""
            self.busy = False

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """Apply a state update from the front end: ``submitted`` only, validated.

        Any other key is ignored and Python's value is sent back, so a page (or anything else
        speaking the widget protocol) cannot change the round, the error or the busy flag. A
        refused ``submitted`` is rolled back, its reason is put in ``error`` and Python's value is
        sent back, so the page can submit again.
        """
        accepted = {key: value for key, value in sync_data.items() if key in self._BROWSER_WRITABLE}
        refused = [
            key for key in sync_data if key not in self._BROWSER_WRITABLE and key in self.keys
        ]
        try:
            if accepted:
                super().set_state(accepted)
        except traitlets.TraitError as exc:
            # Rolled back by traitlets (including the error the validator set); say it again.
            self.set_trait("error", _cut(str(exc)))
            refused.extend(accepted)
        if refused:
            self.send_state(refused)

    # ---- undo: an event, not state -------------------------------------------------------------

    def _on_frontend_msg(self, _widget: object, content: Any, _buffers: object) -> None:
        if not isinstance(content, Mapping) or content.get("event") != "undo":
            self.set_trait("error", _cut(f"unknown message from the page: {content!r}"))
            return
        round_ = content.get("round")
        if self.round_id is None:
            self.set_trait("error", "no round is on screen; nothing was undone")
        elif self.busy:
            self.set_trait(
                "error", "busy (saving a ranking or preparing the next round); undo was not done"
            )
        elif isinstance(round_, bool) or round_ != self.round_id:
            self.set_trait(
                "error",
                _cut(
                    f"stale undo request (made while round {round_!r} was on screen, now round "
                    f"{self.round_id}); nothing was undone"
                ),
            )
        elif not self.can_undo:
            self.set_trait("error", "nothing to undo")
        elif not self._undo_callbacks:
            self.set_trait("error", "undo is not available here (nothing handles it)")
        else:
            self.set_trait("error", "")
            for callback in list(self._undo_callbacks):
                try:
                    callback(self.round_id)
                except Exception as exc:
                    # Shown on the page, and raised on, to the kernel's log.
                    self.set_trait("error", f"undo failed: {type(exc).__name__}: {exc}")
                    raise

    # ---- callbacks ------------------------------------------------------------------------------

    def on_submit(self, callback: SubmitCallback, *, remove: bool = False) -> None:
        """Call ``callback(ranking, round_id)`` once per accepted submission.

        ``ranking`` is a tuple of candidate indices, best first (length ``k``, or ``m`` in a full
        ranking), already validated for the round on screen; ``round_id`` the round it answers.
        A callback whose signature takes the keyword ``ties`` (a tuple of tied positions, ``()``
        for none) and/or ``none_better`` (True for "none is better than the current one", whose
        ranking is ``(incumbent,)``), or ``**kwargs``, is given them as keywords; a callback of
        two arguments is called with two, and can read :attr:`last_ties` and
        :attr:`last_none_better` once the answer is acknowledged.
        ``remove=True`` unregisters the callback. The page hears "accepted" only once the
        callbacks have recorded it: a callback calls :meth:`acknowledge` after its durable
        write, or returns; one that did not record the ranking raises :class:`NotTaken`. If a
        callback raises, the exception propagates and its message is shown in the widget.
        """
        _register(self._submit_callbacks, callback, remove=remove)

    def on_undo(self, callback: UndoCallback, *, remove: bool = False) -> None:
        """Call ``callback(round_id)`` when the person presses Undo.

        ``round_id`` is the round on screen when Undo was pressed; the request is to take back the
        last ranking submitted before it (the session rolls back and shows that round again).
        Requests while busy, from a page showing an older round, or while ``can_undo`` is False
        are refused with a message in ``error``. ``remove=True`` unregisters the callback.
        """
        _register(self._undo_callbacks, callback, remove=remove)


#: The most characters of an error shown on the page: messages may echo what the page sent.
_ERROR_CHARS = 300


def _cut(message: str) -> str:
    """``message`` cut to :data:`_ERROR_CHARS` characters (with an ellipsis when cut)."""
    return message if len(message) <= _ERROR_CHARS else message[: _ERROR_CHARS - 1] + "…"


def _answer_keywords(callback: Callable[..., object]) -> tuple[str, ...]:
    """Which of :data:`_ANSWER_KEYWORDS` a submit callback takes (all of them with ``**kwargs``).

    Read from its signature, so that two-argument callbacks written before ties existed keep
    working; a callable without a readable signature (some builtins) gets two arguments.
    """
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return ()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return _ANSWER_KEYWORDS
    named = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    return tuple(key for key in _ANSWER_KEYWORDS if key in named)


def _register(callbacks: list[Any], callback: Callable[..., object], *, remove: bool) -> None:
    if remove:
        if callback in callbacks:
            callbacks.remove(callback)
        return
    if not callable(callback):
        raise ValueError(f"callback must be callable; got {callback!r}")
    callbacks.append(callback)
