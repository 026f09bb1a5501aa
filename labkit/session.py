"""A ranking session: task + optimizer + judge, every round written to the log before it counts.

```
 task.render(X) ──► widget (person ranks) ──► ranking ──► log.append(round)   ← first, durably
      ▲                                                      │
      └──────────────── X = opt.ask() ◄── opt.tell(ranking) ◄┘──► progress plot
```

The round log (:class:`labkit.roundlog.RoundLog`) is the truth. :meth:`Session.resume` replays it
into a freshly made optimizer and gets the same iterate bit for bit, so a kernel that dies, a
browser tab that closes or a process killed mid-round loses nothing that was acknowledged.

One round, in this order: (1) the ranking is appended to the log, which checks it and returns
the row once it is committed; (2) the page is told "accepted" (only now); (3) the optimizer is
told the logged ranking; (4) the next round and the plot are shown. The append alone decides
whether a ranking was taken: if it raises, nothing was written and the page keeps the ranking
and says why; once it has returned, the round is taken, whatever fails after it. Nothing is
decided by reading the log back.

A session with a machine ``judge`` is ranked by :meth:`Session.run`; its :meth:`Session.show` is
the live plot alone, so that no visitor ranks in the judge's name.

Undo marks the last round undone in the log (nothing is deleted) and rolls the optimizer back;
the same candidates then come again, since the optimizer's randomness is rolled back too.

An answer is a ranking with optional ties (``submit(ranking, ties=...)``), or, in a round that
shows the current iterate (``optimizer.incumbent_index`` is not None), "none of these is better
than the current one" (``submit(none_better=True)``): the optimizer is told the ranking
``(incumbent_index,)`` and the log records the answer as ``"none_better"``. The widget offers
both; the log keeps both, and a replay tells the optimizer the ranking with its ties.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from labkit._checks import check_flag, integer
from labkit.optim.base import RankOptimizer
from labkit.ranking import Ranking, Ties, answer_ranking
from labkit.roundlog import Round, RoundLog, is_database_url
from labkit.tasks.base import Task

__all__ = ["Session", "default_log_path"]

Judge = Callable[[torch.Tensor], Sequence[int]]

# Undo restores from in-memory snapshots of the optimizer's state; older rounds are undone by
# replaying the log (slower, same result).
_SNAPSHOTS = 8


def default_log_path() -> Path | str:
    """Where sessions log by default: ``$LABKIT_DB`` or ``<user data dir>/labkit/rounds.sqlite``.

    A ``$LABKIT_DB`` that is a ``postgresql://`` URL comes back as that string (a URL is no path).
    """
    env = os.environ.get("LABKIT_DB")
    if env:
        return env if is_database_url(env) else Path(env)
    from platformdirs import user_data_path

    return user_data_path("labkit") / "rounds.sqlite"


def _fingerprint(opt: RankOptimizer) -> str:
    """A hash of an optimizer's full state: resume refuses an optimizer made differently."""
    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, dict):
            for key in sorted(obj, key=str):
                h.update(str(key).encode())
                feed(obj[key])
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                feed(item)
        else:
            h.update(repr(obj).encode())

    feed(opt._fingerprint_state())
    return h.hexdigest()


#: Keys of a session's metadata that the session writes itself (resume reads them).
_RESERVED_META = frozenset({"name", "optimizer", "config", "seed", "fingerprint", "task"})


def _config_meta(opt: RankOptimizer) -> dict[str, Any]:
    config = opt.state_dict().get("config", {})
    return {"optimizer": type(opt).__name__, "config": config, "seed": opt.seed}


class Session:
    """Rounds of ranking, logged, for a person through the widget or for a machine judge.

    Args:
        optimizer: a fresh optimizer (no round told yet) for a new session; for
            :meth:`resume`, one made exactly as the logged one was.
        task: turns candidates into what is judged (``render``) and, optionally, scores
            (``score``) for the plot. Needed by :meth:`show`.
        judge: a machine judge for :meth:`run` (candidates → ranking). A judged session is
            not ranked by people: its :meth:`show` has no ranking widget.
        log: a :class:`RoundLog`, a path to one, or a ``postgresql://`` URL (see
            :class:`~labkit.roundlog.RoundLog`); default :func:`default_log_path`.
        rater: who ranks (a person's id, ``"judge"``…), written on every row.
        name: a free-form name stored with the session (the app uses it).
        store_candidates: also store each round's candidate tensor in the log (large; the
            optimizer's seed is stored anyway and suffices to replay).
        meta: free-form JSON stored with the session.

    Attributes:
        session_id: the id of this session's rows in the log.
        log: the :class:`RoundLog`.
        history: the rankings of the live rounds so far, in order.
    """

    def __init__(
        self,
        optimizer: RankOptimizer,
        *,
        task: Task | None = None,
        judge: Judge | None = None,
        log: RoundLog | str | os.PathLike[str] | None = None,
        rater: str | None = None,
        name: str = "session",
        store_candidates: bool = False,
        meta: dict[str, Any] | None = None,
        _session_id: str | None = None,
    ) -> None:
        if not isinstance(optimizer, RankOptimizer):
            raise ValueError(f"optimizer must be a labkit RankOptimizer; got {optimizer!r}")
        # Checked here, not at the first submit: a session must not start and then refuse
        # every ranking a person gives it.
        if judge is not None and not callable(judge):
            raise ValueError(f"judge must be callable (candidates -> ranking); got {judge!r}")
        if rater is not None and not isinstance(rater, str):
            raise ValueError(f"rater must be a string (who ranks) or None; got {rater!r}")
        if not isinstance(name, str):
            raise ValueError(f"name must be a string; got {name!r}")
        if meta is not None:
            if not isinstance(meta, dict):
                raise ValueError(f"meta must be a dict of JSON values; got {meta!r}")
            reserved = sorted(set(meta) & _RESERVED_META)
            if reserved:
                raise ValueError(
                    f"meta keys {reserved} are the session's own (used to resume it); rename them"
                )
        self.optimizer = optimizer
        self.task = task
        self.judge = judge
        self.rater = rater
        self.store_candidates = store_candidates
        if isinstance(log, RoundLog):
            self.log = log
        else:
            target = log if log is not None else default_log_path()
            if is_database_url(target):
                self.log = RoundLog(target)
            else:
                path = Path(target).expanduser()
                path.parent.mkdir(parents=True, exist_ok=True)
                self.log = RoundLog(path)
        self._lock = threading.RLock()  # widget callbacks may arrive from another thread
        self._snapshots: list[dict[str, Any]] = []
        self._initial_state = optimizer.state_dict()  # undo past the snapshots replays from here
        self._shown = 0  # rounds shown in the widget, seeds the display shuffle
        self.history: list[Ranking] = []
        self._times: list[float] = []
        self._prev_move: torch.Tensor | None = None
        self._listeners: list[Callable[[Session, Round | None], None]] = []
        self._widget: Any = None
        self._plot: Any = None
        if _session_id is None:
            if optimizer.rounds or optimizer.pending:
                raise ValueError(
                    "a new session needs a fresh optimizer (no round asked or told yet), so the "
                    "log can replay it from the start; use Session.resume to continue a session"
                )
            session_meta = {
                "name": name,
                **_config_meta(optimizer),
                "fingerprint": _fingerprint(optimizer),
                "task": repr(task) if task is not None else None,
                **(meta or {}),
            }
            self.session_id = self.log.new_session(meta=session_meta)
        else:
            self.session_id = _session_id

    # -- resume -------------------------------------------------------------------------------
    @classmethod
    def resume(
        cls,
        optimizer: RankOptimizer,
        *,
        log: RoundLog | str | os.PathLike[str],
        session_id: str,
        **kwargs: Any,
    ) -> Session:
        """Continue a logged session: replay its live rounds into ``optimizer``.

        ``optimizer`` must be made exactly as the session's was (same class, x0, options and
        seed): its fingerprint is checked against the log before anything is replayed, and each
        replayed round's seed against the logged one. The result is bit-identical to the
        optimizer of the uninterrupted session on the same device.
        """
        if not isinstance(optimizer, RankOptimizer):
            raise ValueError(f"optimizer must be a labkit RankOptimizer; got {optimizer!r}")
        if isinstance(log, RoundLog):
            store = log
        elif is_database_url(log):
            store = RoundLog(log)  # (an empty database gets the log's tables, and no session)
        else:
            path = Path(log).expanduser()
            if not path.is_file():  # never create an empty log just to say it has no session
                raise ValueError(f"no round log at {str(path)!r} to resume session {session_id}")
            store = RoundLog(path)
        meta = store.session_meta(session_id)
        if optimizer.rounds or optimizer.pending:
            raise ValueError("resume needs a freshly made optimizer (no round asked or told yet)")
        fp = _fingerprint(optimizer)
        if meta.get("fingerprint") != fp:
            now = _config_meta(optimizer)
            if meta.get("optimizer") != now["optimizer"]:
                why = f"it was a {meta.get('optimizer')}, this is a {now['optimizer']}"
            elif meta.get("seed") is not None and meta.get("seed") != now["seed"]:
                # The usual cause: seed=None draws a new seed from the OS each time.
                why = (
                    f"it was made with seed={meta['seed']}, this one has seed={now['seed']}; "
                    f"make it with seed={meta['seed']}"
                )
            elif meta.get("config") != now["config"]:
                why = f"its options were {meta.get('config')}, these are {now['config']}"
            else:
                why = "a different x0 or option"
            raise ValueError(
                f"this optimizer is not the one session {session_id} started with ({why}): "
                f"make it with the same arguments, and the logged rankings replay into it"
            )
        session = cls(optimizer, log=store, _session_id=session_id, **kwargs)
        for rnd in store.rounds(session_id, with_candidates=False):
            session._replay_one(rnd)
        return session

    def _replay_one(self, rnd: Round) -> None:
        opt = self.optimizer
        X = opt.ask()
        seed = opt.round_seed
        if X.shape[0] != rnd.m or (rnd.seed is not None and seed != rnd.seed):
            raise ValueError(
                f"round {rnd.round} of the log does not match the optimizer: logged m={rnd.m}, "
                f"seed={rnd.seed}; the optimizer asks m={X.shape[0]}, seed={seed}"
            )
        if rnd.answer == "none_better" and (opt.incumbent_index,) != rnd.ranking:
            raise ValueError(
                f"round {rnd.round} of the log answered 'none is better than the current one' "
                f"(candidate {rnd.ranking[0]}), but in the optimizer's round the current one is "
                f"{opt.incumbent_index}"
            )
        self._push_snapshot()
        opt.tell(rnd.ranking, ties=rnd.ties)
        self.history.append(rnd.ranking)
        self._times.append(rnd.time_epoch)

    # -- rounds -------------------------------------------------------------------------------
    @property
    def round(self) -> int:
        """Number of the current (not yet ranked) round; rounds count from 0."""
        return len(self.history)

    def candidates(self) -> torch.Tensor:
        """The current round's ``m × *shape`` candidates (asking the optimizer if needed)."""
        with self._lock:
            return self.optimizer.ask()

    def submit(
        self,
        ranking: Sequence[int] | torch.Tensor | None = None,
        *,
        ties: Sequence[int] | torch.Tensor | None = None,
        none_better: bool = False,
        rater: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Round:
        """Answer the current round: log it durably, then tell the optimizer, then update views.

        The answer is ``ranking`` (row indices, best first) with optional ``ties`` (positions p
        where ``ranking[p]`` is as good as ``ranking[p − 1]``), or ``none_better=True``: "none of
        these is better than the current one", possible only in a round that shows the current
        iterate; its ranking is ``(optimizer.incumbent_index,)`` (``ranking`` may be omitted, or
        must be exactly that) and it is logged with ``answer="none_better"``.

        Returns the row the log wrote. The answer is checked once, by the log's append against
        the round's ``m``: a malformed one is a ``ValueError`` and nothing is logged or told. An
        exception from the append means the ranking was *not taken*; once the append has
        returned it is taken, whatever fails after (telling the optimizer, the views).
        """
        with self._lock:
            rnd = self._record(ranking, ties=ties, none_better=none_better, rater=rater, meta=meta)
            agreement = self._tell(rnd)
        self._after_round(rnd, agreement)
        return rnd

    def _record(
        self,
        ranking: Sequence[int] | torch.Tensor | None,
        *,
        ties: Sequence[int] | torch.Tensor | None = None,
        none_better: bool = False,
        rater: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Round:
        """Step 1 of a round: append the current round's answer to the log; return the row.

        Returns only after the commit; raises (and nothing is written) otherwise.
        """
        opt = self.optimizer
        X = opt.ask()
        if meta is not None and not isinstance(meta, dict):
            raise ValueError(f"meta must be a dict of JSON values; got {meta!r}")
        ranking, answer = answer_ranking(
            ranking,
            none_better=check_flag("none_better", none_better),
            incumbent=opt.incumbent_index,
            m=X.shape[0],
            round=self.round,
        )
        # The round's own facts win over a caller's meta of the same name.
        round_meta = {
            **(meta or {}),
            "kind": opt.round_kind,
            "incumbent_index": opt.incumbent_index,
        }
        return self.log.append(
            self.session_id,
            round=self.round,
            ranking=ranking,
            ties=ties,
            answer=answer,
            m=X.shape[0],
            rater=rater if rater is not None else self.rater,
            seed=opt.round_seed,
            kind=round_meta["kind"],
            candidates=X if self.store_candidates else None,
            meta=round_meta,
        )

    def _tell(self, rnd: Round) -> float | None:
        """Step 2: tell the optimizer the logged round; return how its move agrees with the
        previous one (see :meth:`_agreement`)."""
        opt = self.optimizer
        before = opt.x.detach().clone()
        self._push_snapshot()
        opt.tell(rnd.ranking, ties=rnd.ties)  # the log checked them against this round's m
        self.history.append(rnd.ranking)
        self._times.append(rnd.time_epoch)
        return self._agreement(opt.x - before)

    def undo(self) -> Round:
        """Undo the last live round: mark it undone in the log and roll the optimizer back.

        The next ``candidates()`` are the undone round's candidates again. Raises ValueError
        when there is nothing to undo.
        """
        with self._lock:
            if not self.history:
                raise ValueError("nothing to undo: this session has no live round")
            last = self.round - 1
            # Only this session's own last round: if another writer moved the log on, refuse
            # rather than mark someone else's round (the log and this optimizer would part).
            self.log.mark_undone(self.session_id, last, last=True)
            self.history.pop()
            self._times.pop()
            self._prev_move = None
            if self._snapshots:
                self.optimizer.load_state_dict(self._snapshots.pop())
            else:  # older than the snapshots: replay the log from the start
                self._rebuild_from_log()
            undone = self.log.rounds(self.session_id, include_undone=True, with_candidates=False)
            rnd = next(r for r in reversed(undone) if r.round == last and r.undone)
        self._after_undo()
        return rnd

    def _rebuild_from_log(self) -> None:
        """Reset the optimizer to the session's start and replay the live rounds of the log."""
        self.optimizer.load_state_dict(self._initial_state)
        self.history.clear()
        self._times.clear()
        self._snapshots.clear()
        for rnd in self.log.rounds(self.session_id, with_candidates=False):
            self._replay_one(rnd)

    def run(
        self,
        rounds: int,
        *,
        judge: Judge | None = None,
        progress: bool = True,
        rater: str = "judge",
    ) -> list[Round]:
        """Run ``rounds`` automated rounds with a machine judge (tqdm bar); logged like any."""
        judge = judge if judge is not None else self.judge
        if judge is None:
            raise ValueError("run() needs a judge: pass judge=... here or to Session(...)")
        n_rounds = integer(rounds)
        if n_rounds is None or n_rounds < 0:
            raise ValueError(f"rounds must be an int >= 0; got {rounds!r}")
        rounds = n_rounds
        from tqdm.auto import tqdm

        out = []
        for _ in tqdm(range(rounds), desc="rounds", disable=not progress, leave=False):
            X = self.candidates()
            out.append(self.submit(judge(X), rater=rater))
        return out

    # -- internals ----------------------------------------------------------------------------
    def _push_snapshot(self) -> None:
        self._snapshots.append(self.optimizer.state_dict())
        del self._snapshots[:-_SNAPSHOTS]

    def _agreement(self, move: torch.Tensor) -> float | None:
        """Cosine between this round's move of x and the previous round's (None: no move)."""
        move = move.reshape(-1).to(torch.float64)
        norm = float(move.norm())
        if norm == 0.0 or not math.isfinite(norm):
            return None
        prev, self._prev_move = self._prev_move, move
        if prev is None:
            return None
        return float(torch.dot(prev, move) / (prev.norm() * norm))

    def on_round(self, callback: Callable[[Session, Round | None], None]) -> None:
        """Call ``callback(session, round)`` after each round (``round=None`` after an undo)."""
        self._listeners.append(callback)

    def _after_round(self, rnd: Round, agreement: float | None) -> None:
        # The person's next round first: the plot's messages would otherwise queue ahead of it
        # on the page (labkit bench latency measured ~20 ms of the wait going to them).
        if self._widget is not None:
            self._present()
        if self._plot is not None:
            self._plot.update(
                rnd.round,
                time=rnd.time_epoch,
                score=self._incumbent_score(),
                step=self.optimizer.last_step,
                agreement=agreement,
                thumbnail=self._incumbent_thumbnail(),
            )
        for cb in self._listeners:
            cb(self, rnd)

    def _after_undo(self) -> None:
        if self._plot is not None:
            self._plot.truncate(len(self.history))
        for cb in self._listeners:
            cb(self, None)
        if self._widget is not None:
            self._present()

    def _incumbent_score(self) -> float | None:
        if self.task is None:
            return None
        try:
            s = self.task.score(self.optimizer.x.unsqueeze(0))
        except NotImplementedError:
            return None
        return float(s.reshape(-1)[0])

    def _incumbent_thumbnail(self) -> bytes | None:
        if self.task is None or not getattr(self.task, "mime", "").startswith("image/"):
            return None
        return self.task.render(self.optimizer.x.unsqueeze(0))[0]

    # -- the notebook view --------------------------------------------------------------------
    def show(self, *, plot: bool = True, rank: bool | None = None, **widget_options: Any) -> Any:
        """This session's view: the ranking widget and the live plot, as one ipywidgets box.

        Returns the box; in a notebook, make it the cell's last expression (or ``display`` it).

        Args:
            plot: include the live progress plot.
            rank: include the ranking widget, through which a person ranks the rounds. By
                default a person ranks unless the session has a machine ``judge``: a judged
                session's rounds come from :meth:`run`, and its view is the plot only, so that
                no visitor ranks in the judge's name (``rank=True`` there is a ValueError).
                ``rank=False`` makes a plot-only view of any session.
            widget_options: go to :class:`labkit.widgets.RankingWidget` (size, columns…).
        """
        if rank is not None and not isinstance(rank, bool):
            raise ValueError(f"rank must be True, False or None (the default); got {rank!r}")
        if rank is None:
            rank = self.judge is None
        elif rank and self.judge is not None:
            raise ValueError(
                "this session is ranked by its machine judge (run()); a person ranks in a session "
                "of their own, made without judge=..., so their rankings carry their rater id"
            )
        if not rank and not plot:
            raise ValueError("show(rank=False, plot=False) would show nothing")
        if not rank and widget_options:
            raise ValueError(
                f"widget options {sorted(widget_options)} are for the ranking widget, and this "
                f"view has none (rank=False or a judged session)"
            )
        if rank and self.task is None:
            raise ValueError("show() needs a task to render the candidates: Session(task=...)")
        import ipywidgets

        from labkit.widgets.progress import ProgressPlot

        children = []
        if rank:
            from labkit.widgets import RankingWidget

            if self._widget is None:
                self._widget = RankingWidget(**widget_options)
                self._widget.on_submit(self._on_widget_submit)
                self._widget.on_undo(self._on_widget_undo)
            self._present()
            children.append(self._widget)
        if plot:
            if self._plot is None:
                maximize = bool(getattr(self.task, "maximize", True))
                self._plot = ProgressPlot(maximize=maximize)
            children.append(self._plot.widget)
        return ipywidgets.VBox(children)

    def _present(self) -> None:
        """Show the current round in the widget (busy while it is rendered)."""
        assert self._widget is not None and self.task is not None
        w = self._widget
        w.status = f"preparing round {self.round}…"
        w.busy = True
        try:
            X = self.candidates()
            items = self.task.render(X)
            k = self.optimizer.k
            kind = self.optimizer.round_kind
            w.show_round(
                items,
                mime=getattr(self.task, "mime", "image/png"),
                round_id=self.round,
                # A line-search round only needs the winner: the person picks one.
                k=1 if kind == "line_search" else k,
                incumbent=self.optimizer.incumbent_index,
                seed=self._display_seed(),
            )
            w.can_undo = bool(self.history)
        except BaseException:
            w.status = ""  # the round on screen stays; the caller shows why
            raise
        finally:
            w.busy = False

    def _display_seed(self) -> int:
        """Seed of the widget's display shuffle: new for every round shown, reproducible."""
        self._shown += 1
        digest = hashlib.sha256(f"{self.session_id}/{self.round}/{self._shown}".encode()).digest()
        return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

    def _on_widget_submit(
        self, ranking: Ranking, round_id: int, *, ties: Ties = (), none_better: bool = False
    ) -> None:
        """The widget's submit callback: the round's path for a person's answer.

        ``ranking``, its ``ties`` and ``none_better`` were validated by the widget for the round
        on screen (the trust boundary), and are checked again by the log against the round.
        What the append does decides "taken": if it raises, nothing was committed and the page
        keeps the ranking (:class:`~labkit.widgets.NotTaken`); once it returns, the page is told
        at once, before the optimizer hears of it and the next round is rendered, and anything
        that fails after that leaves the round taken.
        """
        from labkit.widgets.ranker import NotTaken

        assert self._widget is not None
        with self._lock:
            if round_id != self.round:
                raise NotTaken(self._stale(round_id, "the ranking was not recorded"))
            try:
                rnd = self._record(ranking, ties=ties, none_better=none_better)
            except Exception as exc:
                raise NotTaken(f"{type(exc).__name__}: {exc}") from exc
            self._widget.acknowledge(round_id)
            agreement = self._tell(rnd)
        self._after_round(rnd, agreement)

    def _on_widget_undo(self, round_id: int) -> None:
        """The widget's undo callback: take back the last ranking the page knows as taken.

        That is the ranking of the round on screen when the page shows it as accepted (the next
        round could not be shown), else the one before it. A page that is behind the session (an
        earlier undo could not show its round) is refused, so one press never undoes two rounds.
        """
        assert self._widget is not None
        page_last = round_id if self._widget.accepted_round == round_id else round_id - 1
        with self._lock:
            if page_last != self.round - 1:
                raise ValueError(self._stale(round_id, "nothing was undone"))
            self.undo()

    def _stale(self, round_id: int, outcome: str) -> str:
        """Why a request from a page showing ``round_id`` is refused, after showing the session's
        own round again so that the page catches up."""
        why = (
            f"the page shows round {round_id}, but the session is at round {self.round} "
            f"(showing a round failed earlier); {outcome}"
        )
        try:
            self._present()
        except Exception as exc:
            return f"{why}; showing round {self.round} failed again: {type(exc).__name__}: {exc}"
        return f"{why}; round {self.round} is on screen now"
