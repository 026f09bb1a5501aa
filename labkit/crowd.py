"""Crowd sessions: several raters rank the same rounds, one optimizer is told their consensus.

```
            ┌─ rater A ranks round r ─► log (A's session, round r) ─┐
 round r ───┼─ rater B ranks round r ─► log (B's session, round r) ─┼─► R votes, or T seconds
            └─ ...                                                  ┘     │
                                                                          ▼
 next round ◄── opt.tell(consensus) ◄── log (consensus session, round r) ◄── consensus(votes)
```

One crowd is one optimizer, one task and any number of raters. Every rater sees the current
round and ranks it once. The round closes when ``raters`` (R) rankings have arrived, or
``round_seconds`` (T) after its *first* ranking, as logged (a round nobody has ranked yet never
closes: the consensus of no vote is nothing). Closing computes the consensus of the votes
(:func:`labkit.consensus.consensus`, each vote weighted by its rater's
:class:`~labkit.consensus.RaterWeights` weight), appends it to the log, and only then tells the
optimizer. Each rater's agreement with the consensus (Kendall's τ-b,
:func:`labkit.consensus.kendall_tau`) is logged with it and updates their weight for later rounds:
a contrary or random rater's weight falls (see :class:`~labkit.consensus.RaterWeights`).

**The round log is the coordination point** (only :class:`~labkit.roundlog.RoundLog`'s public API,
no table of its own):

* the *consensus session* is an ordinary session (made by :class:`~labkit.session.Session`, its
  meta has ``crowd_config``: R, T, the method, the app's settings). Its round r row is the
  consensus: ``rater="consensus"``, the round's ``seed``, ``m`` and kind, and ``meta["crowd"]``
  with the ``method``, the ``votes`` used (``[rater, session_id, seq]``, in ``seq`` order), their
  ``weights``, each vote's ``taus`` and ``closed_by`` (``"raters"`` or ``"time"``). So
  :meth:`Session.resume <labkit.session.Session.resume>` of it replays the crowd's optimizer bit
  for bit, and :func:`recompute` rebuilds each consensus from the raw rows.
* each rater has a *rater session* (meta ``{"crowd": <consensus session id>, "rater": name}``)
  whose round r row is their raw answer to crowd round r. The log's one live row per (session,
  round) is what makes "a rater ranks a round at most once" hold, across processes:
  a second answer is refused with :class:`AlreadyRanked`. An answer to a round that had already
  closed is logged with ``meta={"late": true}`` and not counted.
* several processes (``labkit app --crowd`` on two ports, one PostgreSQL or SQLite log) run the
  same crowd with the same code: each :meth:`CrowdSession.poll` reads the votes other processes
  logged and the consensus rows they wrote; a process closes a round by appending its consensus
  row, and the log's unique live row decides when two try at once: the loser reads the winner's
  row and tells its optimizer that one. A vote committed by one process after another had read
  the votes it closes with is not in that consensus' ``votes``: the list, not the row's ``late``
  flag, is what counted (the flag is written when the process that took the vote knew).

The weights every process uses come from the τ values in the consensus rows, in round order, so
every process (and a replay) holds the same weights.

```
crowd = CrowdSession(make_optimizer(task, x0, seed=0), task=task, log="runs.labkit", raters=5)
shown = crowd.current()             # CrowdRound: round, m, k, incumbent, items (rendered once)
crowd.submit("ada", [2, 0, 1, 3], round=shown.round)   # a Vote; the 5th vote closes the round
crowd.poll()                        # other processes' votes and rows; closes at T
other = CrowdSession.join(make_optimizer(task, x0, seed=0), task=task, log=crowd.log,
                          session_id=crowd.session_id)   # a second process, same crowd
```
"""

from __future__ import annotations

import logging
import math
import re
import reprlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from labkit._checks import integer
from labkit.consensus import RaterWeights, consensus, kendall_tau
from labkit.optim.base import RankOptimizer
from labkit.ranking import Ranking, Ties, answer_ranking, validate_ties
from labkit.roundlog import Round, RoundLog
from labkit.session import Session
from labkit.tasks.base import Task

__all__ = [
    "AlreadyRanked",
    "CrowdRound",
    "CrowdSession",
    "RaterStats",
    "Vote",
    "check_rater",
    "recompute",
]

_log = logging.getLogger(__name__)

#: The rater id of a consensus row.
CONSENSUS_RATER = "consensus"

#: Input quoted in an error message, cut short (a rater may send anything).
_quote = reprlib.Repr()
_quote.maxstring = _quote.maxother = 60

#: A rater id: what a person types as their name, or a random id; it is written on their rows.
_RATER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.@-]{0,39}$")


def check_rater(rater: Any) -> str:
    """A rater id: 1 to 40 letters, digits, spaces or ``_ . @ -``, starting with a letter or
    digit, and not ``"consensus"``. Raises ValueError naming the rule otherwise."""
    if not isinstance(rater, str) or not _RATER_RE.match(rater):
        raise ValueError(
            f"a rater name is 1 to 40 letters, digits, spaces or _ . @ -, starting with a letter "
            f"or digit; got {_quote.repr(rater)}"
        )
    if rater == CONSENSUS_RATER:
        raise ValueError(f"the rater name {CONSENSUS_RATER!r} is the crowd's own; pick another")
    return rater


class AlreadyRanked(ValueError):
    """A rater answered a round they had answered already (one answer per rater and round)."""


@dataclass(frozen=True)
class CrowdRound:
    """The round every rater is shown, rendered once for all of them.

    ``items``: the ``m`` candidates as encoded media (``mime``), in row order. ``k``: how many a
    rater ranks (``None``: all). ``incumbent``: the row that is the current iterate, or None.
    """

    round: int
    m: int
    k: int | None
    incumbent: int | None
    kind: str
    mime: str
    items: tuple[bytes, ...]


@dataclass(frozen=True)
class Vote:
    """A rater's logged answer to a crowd round (``row`` is their rater session's row).

    ``late``: the round had closed when it arrived (logged, never counted).
    """

    rater: str
    row: Round
    late: bool

    @property
    def round(self) -> int:
        return self.row.round

    @property
    def seq(self) -> int:
        return self.row.seq


@dataclass
class RaterStats:
    """What the operator sees of a rater: rounds counted, late answers, τ and weight."""

    rater: str
    counted: int = 0
    late: int = 0
    last_tau: float | None = None
    taus: list[float] = field(default_factory=list)
    weight: float = 1.0

    @property
    def mean_tau(self) -> float | None:
        return sum(self.taus) / len(self.taus) if self.taus else None


def _check_positive(name: str, value: Any, *, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number > 0; got {value!r}")
    if not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return value


def _round_k(opt: RankOptimizer) -> int | None:
    """How many a rater ranks in the pending round: the winner alone in a line-search round (as
    the apps ask, :meth:`labkit.session.Session._present`), else the optimizer's ``k``."""
    m = int(opt.ask().shape[0])
    if opt.round_kind == "line_search":
        return 1
    k = opt.k
    return None if k is None or k >= m else int(k)


class CrowdSession:
    """One shared session ranked by a crowd: votes in, one consensus per round to the optimizer.

    Args:
        optimizer: a fresh optimizer (see :class:`~labkit.session.Session`).
        task: renders the candidates (once per round, for every rater).
        log: a :class:`~labkit.roundlog.RoundLog`, a path, or a ``postgresql://`` URL.
        raters: R, the round closes when R raters have ranked it.
        round_seconds: T, or None: the round also closes T seconds after its first ranking.
        method: the consensus method (:func:`labkit.consensus.consensus`).
        name: the consensus session's name in the log.
        clock: the wall clock, seconds since the epoch (``time.time``); T is measured with it
            against the logged time of the round's first ranking. Tests inject one.
        meta: free-form JSON stored in the consensus session's ``crowd_config`` (an app's
            settings, so another process can build the same optimizer to join).

    All methods are thread-safe; only :meth:`current` runs the model, outside the state lock.
    """

    def __init__(
        self,
        optimizer: RankOptimizer,
        *,
        task: Task,
        log: RoundLog | str | Any,
        raters: int = 5,
        round_seconds: float | None = 60.0,
        method: str = "plackett-luce",
        name: str = "crowd",
        clock: Callable[[], float] = time.time,
        meta: Mapping[str, Any] | None = None,
        _session_id: str | None = None,
    ) -> None:
        r = integer(raters)
        if r is None or r < 1:
            raise ValueError(
                f"raters (R, rankings that close a round) must be an int >= 1; got {raters!r}"
            )
        self.raters: int = r
        self.round_seconds: float | None = _check_positive(
            "round_seconds (T)", round_seconds, allow_none=True
        )
        if method not in ("plackett-luce", "borda"):
            raise ValueError(f"method must be 'plackett-luce' or 'borda'; got {method!r}")
        self.method = method
        if not callable(clock):
            raise ValueError(f"clock must be a callable returning seconds; got {clock!r}")
        self.clock = clock
        self.task = task
        self.optimizer = optimizer
        self.log = log if isinstance(log, RoundLog) else RoundLog(log)
        if _session_id is None:
            config = {
                "raters": self.raters,
                "round_seconds": self.round_seconds,
                "method": method,
                **dict(meta or {}),
            }
            # An ordinary session (its meta is Session's: resume checks the same fingerprint).
            self.session_id = Session(
                optimizer,
                task=task,
                log=self.log,
                rater=CONSENSUS_RATER,
                name=name,
                meta={"crowd_config": config},
            ).session_id
        else:
            self.session_id = _session_id
        self.weights = RaterWeights()
        self.renders = 0  # calls of task.render: one per round shown
        self._lock = threading.RLock()
        self._render_lock = threading.Lock()
        self._rows: list[Round] = []  # the consensus rows, in round order
        self._rater_sessions: dict[str, str] = {}  # rater session id -> rater
        self._own: dict[str, str] = {}  # rater -> the session this process writes to
        self._seen_sessions: set[str] = set()
        self._votes: dict[str, list[Round]] = {}  # rater session id -> its rows
        self._stats: dict[str, RaterStats] = {}
        self._shown: CrowdRound | None = None
        self.version = 0  # bumped on every change a page would show

    # -- joining an existing crowd ----------------------------------------------------------------
    @classmethod
    def join(
        cls,
        optimizer: RankOptimizer,
        *,
        task: Task,
        log: RoundLog | str | Any,
        session_id: str,
        clock: Callable[[], float] = time.time,
    ) -> CrowdSession:
        """Continue the crowd ``session_id`` of ``log`` (another process's, or after a restart).

        ``optimizer`` must be made exactly as the crowd's was: the consensus rows are replayed
        into it by :meth:`Session.resume <labkit.session.Session.resume>`, which checks that.
        R, T and the method are the crowd's; the weights are rebuilt from the logged τ.
        """
        store = log if isinstance(log, RoundLog) else RoundLog(log)
        meta = store.session_meta(session_id)
        config = meta.get("crowd_config")
        if not isinstance(config, dict):
            raise ValueError(
                f"session {session_id!r} of {store!r} is not a crowd's consensus session"
            )
        # The rows resume replays are the ones the optimizer knows; another process may append
        # more meanwhile, so only those are taken here and the rest are adopted (and checked)
        # one by one, as any later row is.
        replayed = Session.resume(optimizer, log=store, session_id=session_id).round
        crowd = cls(
            optimizer,
            task=task,
            log=store,
            raters=config["raters"],
            round_seconds=config["round_seconds"],
            method=config["method"],
            clock=clock,
            _session_id=session_id,
        )
        with crowd._lock:
            for row in store.rounds(session_id, with_candidates=False)[:replayed]:
                crowd._rows.append(row)
                crowd._learn(row)
            crowd._sync_consensus()
            crowd._read_votes()
        return crowd

    # -- the round --------------------------------------------------------------------------------
    @property
    def round(self) -> int:
        """The number of the open round (= consensus rows so far)."""
        return len(self._rows)

    @property
    def consensus_rows(self) -> list[Round]:
        """The consensus rows so far, in round order."""
        with self._lock:
            return list(self._rows)

    def current(self) -> CrowdRound:
        """The open round, rendered (once: every later call returns the same bytes)."""
        with self._render_lock:
            with self._lock:
                shown = self._shown
                if shown is not None and shown.round == self.round:
                    return shown
                rnd = self.round
                X = self.optimizer.ask()
                m = int(X.shape[0])
                k = _round_k(self.optimizer)
                incumbent = self.optimizer.incumbent_index
                kind = self.optimizer.round_kind
            items = tuple(bytes(b) for b in self.task.render(X))  # the model, outside the lock
            with self._lock:
                self.renders += 1
                shown = CrowdRound(rnd, m, k, incumbent, kind, self.task.mime, items)
                if self.round == rnd:
                    self._shown = shown
                    self.version += 1
                return shown

    def votes(self, round: int | None = None) -> list[Vote]:
        """The counted votes of ``round`` (default: the open one) known here, in ``seq`` order.

        A closed round's are the ones its consensus row lists; the open round's, every rater's
        first answer to it that is not late (one per rater, the lowest ``seq``).
        """
        with self._lock:
            rnd = self.round if round is None else round
            if rnd < self.round:
                used = {int(s) for _, _, s in self._rows[rnd].meta["crowd"]["votes"]}
                return [v for v in self._all_votes(rnd) if v.seq in used]
            return self._open_votes(rnd)

    def closes_at(self) -> float | None:
        """When the open round closes by time (``clock`` seconds), or None (no T, no vote yet)."""
        with self._lock:
            votes = self._open_votes(self.round)
            if self.round_seconds is None or not votes:
                return None
            return votes[0].row.time_epoch + float(self.round_seconds)

    # -- answers ------------------------------------------------------------------------------
    def submit(
        self,
        rater: str,
        ranking: Sequence[int] | torch.Tensor | None = None,
        *,
        round: int,
        ties: Sequence[int] | None = None,
        none_better: bool = False,
    ) -> Vote:
        """Log ``rater``'s answer to crowd round ``round``; close the round if it is due.

        ``round`` is the round the rater was shown. The open round's answer counts; an answer to
        a closed round is logged with ``meta={"late": true}`` and never counted (``vote.late``);
        a round not open yet is a ValueError. ``none_better=True`` answers "none of these is
        better than the current one" (its ranking is the round's incumbent). Raises
        :class:`AlreadyRanked` when the rater answered that round already, ValueError for a bad
        ranking; nothing is logged then. Returns once the row is committed: if closing the round
        then fails, the error goes to the ``labkit.crowd`` logger and the next :meth:`poll`
        retries the close.
        """
        name = check_rater(rater)
        rnd = integer(round)
        if rnd is None or rnd < 0:
            raise ValueError(f"round must be an int >= 0; got {round!r}")
        with self._lock:
            self._sync_consensus()  # a round another process closed is late here too
            if rnd > self.round:
                raise ValueError(f"round {rnd} is not open yet; the crowd is at round {self.round}")
            late = rnd < self.round
            if late:
                row = self._rows[rnd]
                m, seed, kind, incumbent = (
                    row.m,
                    row.seed,
                    row.kind,
                    row.meta.get("incumbent_index"),
                )
            else:
                X = self.optimizer.ask()
                m, seed = int(X.shape[0]), self.optimizer.round_seed
                kind = self.optimizer.round_kind
                incumbent = self.optimizer.incumbent_index
            ranking, answer = answer_ranking(
                ranking, none_better=none_better, incumbent=incumbent, m=m, round=rnd
            )
            sid = self._rater_session(name)
            if any(r.round == rnd for r in self._votes.get(sid, [])):
                raise AlreadyRanked(
                    f"{name!r} has ranked round {rnd} already; a rater ranks a round once"
                )
            try:
                row = self.log.append(
                    sid,
                    round=rnd,
                    ranking=ranking,
                    ties=ties,
                    answer=answer,
                    m=m,
                    rater=name,
                    seed=seed,
                    kind=kind,
                    meta={"late": True} if late else {},
                )
            except ValueError:
                self._read_rater_rows(sid)
                if any(r.round == rnd for r in self._votes.get(sid, [])):
                    raise AlreadyRanked(
                        f"{name!r} has ranked round {rnd} already; a rater ranks a round once"
                    ) from None
                raise
            self._votes.setdefault(sid, []).append(row)
            stats = self._stat(name)
            if late:
                stats.late += 1
            self.version += 1
            # The vote is committed: the rater must be told so whatever closing does. A close
            # that fails (a locked log, a row that does not fit) is retried by the next poll().
            try:
                self._close_if_due()
            except Exception:
                _log.exception(
                    "crowd %s: closing round %d after %r's vote failed; the vote is logged, the "
                    "next poll retries the close",
                    self.session_id,
                    self.round,
                    name,
                )
            return Vote(name, row, late)

    def poll(self) -> bool:
        """Read what other processes logged (votes, consensus rows); close the round if due.

        Returns whether anything changed. A server calls it a few times a second; it is what
        closes a round at T when no ranking arrives.
        """
        with self._lock:
            before = self.version
            self._sync_consensus()
            self._read_votes()
            self._close_if_due()
            return self.version != before

    # -- the operator's view ----------------------------------------------------------------------
    def rater_stats(self) -> list[RaterStats]:
        """Per rater: rounds counted, late answers, τ with each consensus, current weight."""
        with self._lock:
            for name, s in self._stats.items():
                s.weight = self.weights.weight(name)
            return sorted(self._stats.values(), key=lambda s: s.rater)

    def status(self) -> dict[str, Any]:
        """The crowd at a glance, as JSON: the round, who has ranked it, and every rater."""
        with self._lock:
            votes = self._open_votes(self.round)
            return {
                "session_id": self.session_id,
                "round": self.round,
                "ranked": len(votes),
                "ranked_by": [v.rater for v in votes],
                "raters": self.raters,
                "round_seconds": self.round_seconds,
                "closes_at": self.closes_at(),
                "method": self.method,
                "renders": self.renders,
                "rater_stats": [
                    {
                        "rater": s.rater,
                        "counted": s.counted,
                        "late": s.late,
                        "last_tau": s.last_tau,
                        "mean_tau": s.mean_tau,
                        "weight": s.weight,
                    }
                    for s in self.rater_stats()
                ],
            }

    def has_ranked(self, rater: str, round: int) -> bool:
        """Whether ``rater`` has answered ``round`` (in any process, as far as read here)."""
        with self._lock:
            return any(
                r.round == round
                for sid, who in self._rater_sessions.items()
                if who == rater
                for r in self._votes.get(sid, [])
            )

    # -- internals --------------------------------------------------------------------------------
    def _stat(self, rater: str) -> RaterStats:
        if rater not in self._stats:
            self._stats[rater] = RaterStats(rater, weight=self.weights.weight(rater))
        return self._stats[rater]

    def _rater_session(self, rater: str) -> str:
        """The session this process logs ``rater``'s answers in (made on their first answer)."""
        sid = self._own.get(rater)
        if sid is not None:
            return sid
        self._read_votes()
        known = [s for s, who in self._rater_sessions.items() if who == rater]
        if known:
            sid = min(
                known, key=lambda s: (self._votes[s][0].seq if self._votes.get(s) else 1 << 62, s)
            )
        else:
            sid = self.log.new_session(
                meta={"name": "crowd-rater", "crowd": self.session_id, "rater": rater}
            )
            self._rater_sessions[sid] = rater
            self._seen_sessions.add(sid)
            self._votes[sid] = []
        self._own[rater] = sid
        self._stat(rater)
        return sid

    def _read_votes(self) -> None:
        """Learn new rater sessions of this crowd and read every rater session's rows."""
        for sid in self.log.sessions():
            if sid in self._seen_sessions:
                continue
            self._seen_sessions.add(sid)
            meta = self.log.session_meta(sid)
            if meta.get("crowd") == self.session_id and isinstance(meta.get("rater"), str):
                self._rater_sessions[sid] = meta["rater"]
                self._stat(meta["rater"])
        for sid in self._rater_sessions:
            self._read_rater_rows(sid)

    def _read_rater_rows(self, sid: str) -> None:
        rows = self.log.rounds(sid, with_candidates=False)
        if len(rows) != len(self._votes.get(sid, [])):
            self._votes[sid] = rows
            self.version += 1

    def _all_votes(self, rnd: int) -> list[Vote]:
        out = [
            Vote(self._rater_sessions[sid], row, bool(row.meta.get("late", False)))
            for sid, rows in self._votes.items()
            for row in rows
            if row.round == rnd
        ]
        return sorted(out, key=lambda v: v.seq)

    def _open_votes(self, rnd: int) -> list[Vote]:
        """One vote per rater (their first), none late: what closing the round would use."""
        out: dict[str, Vote] = {}
        for v in self._all_votes(rnd):
            if not v.late and v.rater not in out:
                out[v.rater] = v
        return list(out.values())

    def _sync_consensus(self) -> None:
        """Tell the optimizer any consensus row another process appended."""
        if self.log.next_round(self.session_id) <= self.round:
            return
        for row in self.log.rounds(self.session_id, with_candidates=False)[self.round :]:
            self._adopt(row)

    def _close_if_due(self) -> None:
        votes = self._open_votes(self.round)
        if not votes:
            return
        if len(votes) >= self.raters:
            self._close(votes, "raters")
        elif self.round_seconds is not None and self.clock() >= votes[0].row.time_epoch + float(
            self.round_seconds
        ):
            self._close(votes, "time")

    def _close(self, votes: list[Vote], why: str) -> None:
        """Compute the consensus of ``votes``, append it, then tell the optimizer (step by step)."""
        opt = self.optimizer
        X = opt.ask()
        m = int(X.shape[0])
        rnd = self.round
        # 1. The consensus of the votes, each weighted by its rater's weight before this round.
        weights = self.weights.weights([v.rater for v in votes])
        k = _round_k(opt)
        c = consensus(
            [v.row.ranking for v in votes],
            m=m,
            ties=[v.row.ties for v in votes],
            weights=weights if any(w > 0 for w in weights) else None,
            method=self.method,  # type: ignore[arg-type]
            k=k,
        )
        # 2. Each vote's agreement with it (τ-b), logged: it moves the rater's weight.
        taus = [
            kendall_tau(v.row.ranking, c.ranking, m=m, ties_a=v.row.ties, ties_b=c.ties)
            for v in votes
        ]
        kind = opt.round_kind
        meta = {
            "kind": kind,
            "incumbent_index": opt.incumbent_index,
            "crowd": {
                "method": c.method,
                "votes": [[v.rater, v.row.session_id, v.seq] for v in votes],
                "weights": weights,
                "weighted": any(w > 0 for w in weights),
                "taus": taus,
                "k": k,
                "scores": list(c.scores),
                "closed_by": why,
            },
        }
        # 3. The row, durably; the log's one live row per round decides between processes.
        try:
            row = self.log.append(
                self.session_id,
                round=rnd,
                ranking=c.ranking,
                ties=c.ties,
                m=m,
                rater=CONSENSUS_RATER,
                seed=opt.round_seed,
                kind=kind,
                meta=meta,
            )
        except ValueError:
            # Another process closed the round first: tell the optimizer its row instead.
            self._sync_consensus()
            if self.round > rnd:
                return
            raise
        # 4. Only now the optimizer.
        self._adopt(row)

    def _adopt(self, row: Round) -> None:
        """Tell the optimizer a logged consensus row of the open round; update the weights."""
        opt = self.optimizer
        X = opt.ask()
        if row.round != self.round or row.m != X.shape[0] or row.seed != opt.round_seed:
            raise ValueError(
                f"consensus row {row.round} (m={row.m}, seed={row.seed}) does not fit the open "
                f"round {self.round} (m={X.shape[0]}, seed={opt.round_seed})"
            )
        opt.tell(row.ranking, ties=row.ties)
        self._rows.append(row)
        self._learn(row)
        self._shown = None
        self.version += 1

    def _learn(self, row: Round) -> None:
        """The weights and the operator's numbers after a consensus row: its votes' τ, in order."""
        crowd = row.meta["crowd"]
        for (rater, _sid, _seq), tau in zip(crowd["votes"], crowd["taus"], strict=True):
            self.weights.update(rater, tau)
            s = self._stat(rater)
            s.counted += 1
            s.last_tau = tau
            s.taus.append(tau)


def recompute(log: RoundLog, session_id: str) -> list[tuple[Ranking, Ties]]:
    """Every consensus of the crowd ``session_id``, recomputed from the raw rows in the log.

    Each round's consensus is computed again from the rater rows its ``votes`` name (read from
    their sessions, matched by ``seq``), with weights rebuilt by replaying the logged τ into a
    fresh :class:`~labkit.consensus.RaterWeights`. Raises ValueError if a recomputed weight
    differs from the logged one. Returns ``[(ranking, ties)]`` per round, to compare with the
    logged consensus rows.
    """
    weights = RaterWeights()
    rows_by_seq: dict[int, Round] = {}
    sessions: set[str] = set()
    out: list[tuple[Ranking, Ties]] = []
    for row in log.rounds(session_id, with_candidates=False):
        crowd = row.meta["crowd"]
        for _rater, sid, _seq in crowd["votes"]:
            if sid not in sessions:
                sessions.add(sid)
                rows_by_seq.update({r.seq: r for r in log.rounds(sid, with_candidates=False)})
        raw = [rows_by_seq[int(seq)] for _, _, seq in crowd["votes"]]
        w = weights.weights([r.rater or "" for r in raw])
        if w != crowd["weights"]:
            raise ValueError(
                f"round {row.round}: weights replayed from the logged τ are {w}, the log has "
                f"{crowd['weights']}"
            )
        c = consensus(
            [r.ranking for r in raw],
            m=row.m,
            ties=[r.ties for r in raw],
            weights=w if crowd["weighted"] else None,
            method=crowd["method"],
            k=crowd["k"],
        )
        out.append((c.ranking, validate_ties(c.ties, len(c.ranking))))
        for (rater, _sid, _seq), tau in zip(crowd["votes"], crowd["taus"], strict=True):
            weights.update(rater, tau)
    return out
