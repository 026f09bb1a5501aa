"""Preference datasets out of the round log: what people ranked, in the shapes models train on.

```
ds = to_dataset(log)                                   # pairwise rows, every session
ds = to_dataset(log, shape="ranking")                  # one Plackett–Luce row per round
ds = to_dataset(log, images="stored", render=task.render)               # with the PNGs
ds = to_dataset(log, sessions=[sid], images="replay", render=task.render,
                replay=make_opt())                     # candidates regenerated from the seed
write_dataset(ds, "prefs.parquet")                     # or .jsonl, or format="hf"
```

Only the *live* rounds are exported: a round marked undone is left out, as a replay leaves it
out, because the person took that answer back. Of a crowd (:mod:`labkit.crowd`) what people
ranked is exported, each rater's own rows: the consensus sessions (computed from those rows) and
the late answers (never counted) are left out unless asked for. Sessions come oldest first, each
session's rounds in append order (``seq``).

**Pairs** come from each round's ranking graph (:func:`labkit.ranking.graph_edges`): a ranked
candidate beats every candidate of a later tied group and every unranked one; candidates tied
together (the round's ``ties``) give no pair. A "none is better than the current one" answer is
the ranking of the incumbent alone, so the incumbent beats every other candidate of the round.

**Images** are the candidates rendered by ``render`` (e.g. ``task.render``: an ``m × *shape``
tensor to ``m`` encoded images), stored as :class:`datasets.Image` features. The candidates come
from the log (``images="stored"``: the session was made with ``store_candidates=True``) or are
regenerated (``images="replay"``): an optimizer made exactly as the session's was (same class,
x0, options and seed) is checked and replayed by :meth:`labkit.session.Session.resume`, then
rewound and replayed once more to keep each round's candidates. The replay is deterministic, so
both give the same candidates, and the same images.

Columns
-------
``shape="pairwise"``, one row per edge of a round's ranking graph (TRL's preference format,
``prompt`` / ``chosen`` / ``rejected``, plus where each pair came from):

=================== ======== ===========================================================
column              type     what
=================== ======== ===========================================================
``session_id``      string   the session of the round
``round``           int64    the round number in its session
``rater``           string   who ranked (``None`` when not recorded)
``prompt``          string   the session's condition, see below (``None``: none known)
``chosen_index``    int64    row of the preferred candidate in the round's candidates
``rejected_index``  int64    row of the other one
``chosen``          Image    the preferred candidate's image (only with ``images``)
``rejected``        Image    the other one's image (only with ``images``)
=================== ======== ===========================================================

``shape="ranking"``, one row per round (a Plackett–Luce observation, top-k when partial):

=================== ============ =======================================================
column              type         what
=================== ============ =======================================================
``session_id``      string       as above
``round``           int64        as above
``rater``           string       as above
``prompt``          string       as above
``answer``          string       ``"ranking"`` or ``"none_better"``
``kind``            string       the round's kind (``"gradient"``, ``"line_search"``...)
``m``               int64        how many candidates the round showed
``ranking``         list[int64]  the ranked candidates' rows, best first (length k)
``ties``            list[int64]  positions p: ``ranking[p]`` as good as ``ranking[p − 1]``
``unranked``        list[int64]  the other m − k rows, ascending: worse than every ranked one
``n_unranked``      int64        m − k
``ranked_images``   list[Image]  images of ``ranking``, in its order (only with ``images``)
``unranked_images`` list[Image]  images of ``unranked``, in its order (only with ``images``)
=================== ============ =======================================================

``shape="rater"``, one row per rater, for crowds (rater models, agreement between people):
``rater``; ``sessions`` (list of the session ids they ranked in, first seen first);
``n_rounds``; ``n_pairs`` (the pairs their rounds give); and ``rounds``, their ranking rows
(every ranking column above but ``rater``) in export order. The pairwise and ranking rows carry
``rater`` too, so ``ds.filter(lambda row: row["rater"] == "ada")`` selects one person's rows.

**The prompt** of a session is its metadata's ``"prompt"`` when it is a string (give it with
``Session(..., meta={"prompt": "a friendly three"})``), else its ``"task"``: the ``repr`` of the
task the session was made with, which names the condition (``DigitsTask(3, condition=3, ...)``,
``PipelineTask(..., prompt='a red fox', ...)``, ``FunctionTask('sphere', d=2, ...)``), else
``None`` (a session made without a task). Use ``ds.map`` to put something else there.

**Files** (:func:`write_dataset`): Parquet keeps the ``Image`` features (``Dataset.from_parquet``
reads them back as images); JSON Lines has no bytes, so each image is the base64 text of its
PNG bytes (``base64.b64decode(row["chosen"])``); ``"hf"`` is ``Dataset.save_to_disk``
(``datasets.load_from_disk``).

Needs the Hugging Face ``datasets`` package: ``pip install 'labkit[export]'``.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from labkit.optim.base import RankOptimizer
from labkit.ranking import graph_edges
from labkit.roundlog import Round, RoundLog

if TYPE_CHECKING:
    from datasets import Dataset, Features

__all__ = ["FORMATS", "IMAGE_SOURCES", "SHAPES", "to_dataset", "write_dataset"]

#: The row shapes of :func:`to_dataset`.
SHAPES = ("pairwise", "ranking", "rater")

#: Where :func:`to_dataset` takes the candidates it renders from.
IMAGE_SOURCES = ("stored", "replay")

#: The file formats of :func:`write_dataset`.
FORMATS = ("parquet", "jsonl", "hf")

#: Maps a round's ``m × *shape`` candidates to ``m`` encoded images (``task.render``).
Renderer = Callable[[torch.Tensor], Sequence[bytes]]

# What an image's bytes start with, for the formats a datasets.Image (PIL) decodes.
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")

_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl"}


def _datasets() -> Any:
    """The ``datasets`` module, imported on first use: ``import labkit`` never needs it."""
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            "exporting preference datasets needs the Hugging Face `datasets` package: "
            "pip install 'labkit[export]'"
        ) from err
    return datasets


# -- what the rows are made of ------------------------------------------------------------------


def _prompt(meta: Mapping[str, Any]) -> str | None:
    """The session's condition: its ``"prompt"`` meta, else its task's repr, else None."""
    for key in ("prompt", "task"):
        value = meta.get(key)
        if isinstance(value, str):
            return value
    return None


def _selected(log: RoundLog, sessions: Sequence[str] | None) -> list[str]:
    if sessions is None:
        return log.sessions()
    if isinstance(sessions, str) or not isinstance(sessions, Sequence):
        raise ValueError(
            f"sessions must be a list of session ids (or None: all); got {sessions!r}"
            + (f"; write sessions=[{sessions!r}]" if isinstance(sessions, str) else "")
        )
    seen: set[str] = set()
    for sid in sessions:
        if sid in seen:
            raise ValueError(f"session {sid!r} is given twice in sessions")
        seen.add(sid)
    return list(sessions)


def _replayed_candidates(
    log: RoundLog, session_id: str, rounds: Sequence[Round], optimizer: RankOptimizer
) -> list[torch.Tensor]:
    """Each live round's candidates regenerated by ``optimizer`` (CPU copies, ``m × *shape``).

    ``optimizer`` must be made exactly as the session's was; it is left at the session's end.
    """
    from labkit.session import Session

    start = optimizer.state_dict()
    # 1. Session.resume checks the optimizer against the session (how it was made), and replays
    #    every live round into it, checking each round's seed, m and incumbent against the log.
    Session.resume(optimizer, log=log, session_id=session_id)
    # 2. Rewind and replay the same rounds once more, keeping what each ask() drew: the replay
    #    is deterministic, so these are the candidates the round showed.
    optimizer.load_state_dict(start)
    out: list[torch.Tensor] = []
    for rnd in rounds:
        out.append(optimizer.ask().detach().to("cpu").clone())
        optimizer.tell(rnd.ranking, ties=rnd.ties)
    return out


def _stored_candidates(session_id: str, rounds: Sequence[Round]) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for rnd in rounds:
        if rnd.candidates is None:
            raise ValueError(
                f"round {rnd.round} of session {session_id} has no stored candidates (the session "
                f"was made without store_candidates=True); regenerate them with images='replay' "
                f"and an optimizer made as the session's was"
            )
        out.append(rnd.candidates)
    return out


def _render(render: Renderer, X: torch.Tensor, rnd: Round) -> list[bytes]:
    items = list(render(X))
    where = f"round {rnd.round} of session {rnd.session_id}"
    if len(items) != rnd.m:
        raise ValueError(f"render gave {len(items)} items for the {rnd.m} candidates of {where}")
    for i, item in enumerate(items):
        if not isinstance(item, bytes) or not item.startswith(_IMAGE_SIGNATURES):
            head = item[:8] if isinstance(item, bytes) else type(item).__name__
            raise ValueError(
                f"render must return encoded images (PNG, JPEG or GIF bytes); candidate "
                f"{i} of {where} starts {head!r}"
            )
    return items


def _replay_for(
    replay: RankOptimizer | Mapping[str, RankOptimizer] | None, session_id: str, n_sessions: int
) -> RankOptimizer:
    if isinstance(replay, RankOptimizer):
        if n_sessions != 1:
            raise ValueError(
                f"one replay optimizer regenerates one session, and {n_sessions} are exported; "
                f"pass sessions=[id], or replay={{session_id: optimizer, ...}}"
            )
        return replay
    if isinstance(replay, Mapping):
        if session_id not in replay:
            raise ValueError(f"replay has no optimizer for session {session_id}")
        opt = replay[session_id]
        if isinstance(opt, RankOptimizer):
            return opt
        raise ValueError(f"replay[{session_id!r}] must be a labkit RankOptimizer; got {opt!r}")
    raise ValueError(
        "images='replay' needs replay=: an optimizer made exactly as the session's was (or a "
        "dict of them by session id)"
    )


def _image(data: bytes) -> dict[str, Any]:
    return {"bytes": data, "path": None}


# -- rows ---------------------------------------------------------------------------------------


def _pair_rows(rnd: Round, prompt: str | None, images: list[bytes] | None) -> list[dict[str, Any]]:
    rows = []
    for winner, loser in graph_edges(rnd.m, rnd.ranking, rnd.ties):
        row: dict[str, Any] = {
            "session_id": rnd.session_id,
            "round": rnd.round,
            "rater": rnd.rater,
            "prompt": prompt,
            "chosen_index": winner,
            "rejected_index": loser,
        }
        if images is not None:
            row["chosen"] = _image(images[winner])
            row["rejected"] = _image(images[loser])
        rows.append(row)
    return rows


def _ranking_row(rnd: Round, prompt: str | None, images: list[bytes] | None) -> dict[str, Any]:
    ranked = set(rnd.ranking)
    unranked = [j for j in range(rnd.m) if j not in ranked]
    row: dict[str, Any] = {
        "session_id": rnd.session_id,
        "round": rnd.round,
        "rater": rnd.rater,
        "prompt": prompt,
        "answer": rnd.answer,
        "kind": rnd.kind,
        "m": rnd.m,
        "ranking": list(rnd.ranking),
        "ties": list(rnd.ties),
        "unranked": unranked,
        "n_unranked": len(unranked),
    }
    if images is not None:
        row["ranked_images"] = [_image(images[i]) for i in rnd.ranking]
        row["unranked_images"] = [_image(images[j]) for j in unranked]
    return row


def _rater_rows(
    answers: Sequence[tuple[Round, str | None, list[bytes] | None]],
) -> list[dict[str, Any]]:
    groups: dict[str | None, dict[str, Any]] = {}  # first seen first
    for rnd, prompt, images in answers:
        group = groups.setdefault(
            rnd.rater,
            {"rater": rnd.rater, "sessions": [], "n_rounds": 0, "n_pairs": 0, "rounds": []},
        )
        if rnd.session_id not in group["sessions"]:
            group["sessions"].append(rnd.session_id)
        group["n_rounds"] += 1
        group["n_pairs"] += len(graph_edges(rnd.m, rnd.ranking, rnd.ties))
        row = _ranking_row(rnd, prompt, images)
        del row["rater"]
        group["rounds"].append(row)
    return list(groups.values())


def _features(shape: str, with_images: bool) -> Features:
    ds = _datasets()
    Value, Image, List = ds.Value, ds.Image, ds.List
    where = {
        "session_id": Value("string"),
        "round": Value("int64"),
        "rater": Value("string"),
        "prompt": Value("string"),
    }
    if shape == "pairwise":
        pair = {**where, "chosen_index": Value("int64"), "rejected_index": Value("int64")}
        if with_images:
            pair |= {"chosen": Image(), "rejected": Image()}
        return ds.Features(pair)
    ranking = {
        **where,
        "answer": Value("string"),
        "kind": Value("string"),
        "m": Value("int64"),
        "ranking": List(Value("int64")),
        "ties": List(Value("int64")),
        "unranked": List(Value("int64")),
        "n_unranked": Value("int64"),
    }
    if with_images:
        ranking |= {"ranked_images": List(Image()), "unranked_images": List(Image())}
    if shape == "ranking":
        return ds.Features(ranking)
    del ranking["rater"]
    return ds.Features(
        {
            "rater": Value("string"),
            "sessions": List(Value("string")),
            "n_rounds": Value("int64"),
            "n_pairs": Value("int64"),
            "rounds": List(ranking),
        }
    )


# -- the exports --------------------------------------------------------------------------------


def to_dataset(
    log: RoundLog,
    *,
    sessions: Sequence[str] | None = None,
    shape: str = "pairwise",
    images: str | None = None,
    render: Renderer | None = None,
    replay: RankOptimizer | Mapping[str, RankOptimizer] | None = None,
    include_consensus: bool = False,
    include_late: bool = False,
) -> Dataset:
    """The live rounds of ``log`` as a Hugging Face :class:`datasets.Dataset`.

    Args:
        log: the round log.
        sessions: the session ids to export, in this order; ``None``: every session, oldest
            first. An unknown id is a ValueError.
        shape: ``"pairwise"`` (one row per preferred pair), ``"ranking"`` (one row per round)
            or ``"rater"`` (one row per rater); the columns are in the module docstring.
        images: ``None`` (no image columns), ``"stored"`` (render the candidates stored in the
            log) or ``"replay"`` (render candidates regenerated by ``replay``).
        render: turns a round's ``m × *shape`` CPU candidates into ``m`` encoded images, e.g.
            ``task.render`` of the session's task; needed with ``images``, refused without.
        replay: with ``images="replay"``, an optimizer made exactly as the session's was (same
            class, x0, options and seed), or a dict of them by session id. Each is checked and
            replayed through :meth:`labkit.session.Session.resume`, and left at its session's
            last round.
        include_consensus: also export a crowd's consensus sessions (:mod:`labkit.crowd`,
            meta ``crowd_config``, rater ``"consensus"``). Left out by default: each is computed
            from the raters' own rows, which are exported, so it would count their
            preferences twice.
        include_late: also export a crowd rater's late answers (row meta ``{"late": true}``:
            the round had closed, the answer was never counted). Left out by default.

    Undone rounds are not exported. Raises ValueError naming the problem: an unknown shape or
    image source, an unknown session, a round without stored candidates for ``"stored"``, an
    optimizer that is not the session's for ``"replay"``, ``render`` giving anything but ``m``
    images; ImportError when ``datasets`` is missing.
    """
    ds = _datasets()
    if not isinstance(log, RoundLog):
        raise ValueError(f"log must be a labkit RoundLog; got {type(log).__name__}")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}; got {shape!r}")
    if images is not None and images not in IMAGE_SOURCES:
        raise ValueError(f"images must be None or one of {IMAGE_SOURCES}; got {images!r}")
    if images is not None and not callable(render):
        raise ValueError(f"images={images!r} needs render=: candidates -> images (task.render)")
    if images is None and render is not None:
        raise ValueError("render is used only with images='stored' or images='replay'")
    if images != "replay" and replay is not None:
        raise ValueError("replay optimizers are used only with images='replay'")
    ids = _selected(log, sessions)

    # 1. Each live round with its session's prompt and, when asked for, its rendered images.
    answers: list[tuple[Round, str | None, list[bytes] | None]] = []
    for sid in ids:
        meta = log.session_meta(sid)  # an unknown session is a ValueError here
        if not include_consensus and isinstance(meta.get("crowd_config"), dict):
            continue  # a crowd's consensus: its raters' rows are the people's answers
        prompt = _prompt(meta)
        rounds = log.rounds(sid, with_candidates=images == "stored")

        def kept(rnd: Round) -> bool:
            return include_late or not rnd.meta.get("late", False)

        if images is None:
            answers.extend((rnd, prompt, None) for rnd in rounds if kept(rnd))
            continue
        assert render is not None
        if images == "stored":
            candidates = _stored_candidates(sid, rounds)
        else:
            opt = _replay_for(replay, sid, len(ids))
            candidates = _replayed_candidates(log, sid, rounds, opt)
        answers.extend(
            (rnd, prompt, _render(render, X, rnd))
            for rnd, X in zip(rounds, candidates, strict=True)
            if kept(rnd)
        )

    # 2. The rows of the shape asked for.
    if shape == "pairwise":
        rows = [row for a in answers for row in _pair_rows(*a)]
    elif shape == "ranking":
        rows = [_ranking_row(*a) for a in answers]
    else:
        rows = _rater_rows(answers)
    features = _features(shape, images is not None)
    if not rows:  # from_list cannot type an empty list; the columns stay the same
        return ds.Dataset.from_dict({name: [] for name in features}, features=features)
    return ds.Dataset.from_list(rows, features=features)


def _jsonable(value: Any, feature: Any) -> Any:
    """A stored (undecoded) value of ``feature`` as JSON: images as base64 of their bytes."""
    ds = _datasets()
    if value is None:
        return None
    if isinstance(feature, ds.Image):
        return base64.b64encode(value["bytes"]).decode("ascii")
    if isinstance(feature, ds.List):
        return [_jsonable(v, feature.feature) for v in value]
    if isinstance(feature, dict):
        return {name: _jsonable(value[name], f) for name, f in feature.items()}
    return value


def write_dataset(
    dataset: Dataset, path: str | os.PathLike[str], *, format: str | None = None
) -> Path:
    """Write ``dataset`` (from :func:`to_dataset`) to ``path``; return the path.

    ``format``: ``"parquet"`` (images stay ``Image`` features), ``"jsonl"`` (one JSON object a
    line; each image is the base64 text of its bytes) or ``"hf"`` (``Dataset.save_to_disk``, a
    folder). ``None`` takes it from the suffix, ``.parquet`` or ``.jsonl``. An existing file is
    replaced. An empty dataset is refused (``datasets`` cannot read an empty Parquet file back).
    """
    ds = _datasets()
    out = Path(path).expanduser()
    if format is None:
        if out.suffix not in _SUFFIXES:
            raise ValueError(
                f"cannot tell the format from {str(out)!r}: name it .parquet or .jsonl, or give "
                f"format= one of {FORMATS}"
            )
        format = _SUFFIXES[out.suffix]
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; got {format!r}")
    if not isinstance(dataset, ds.Dataset):
        raise ValueError(f"dataset must be a datasets.Dataset; got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"nothing to write to {str(out)!r}: the dataset has no rows")
    if format == "parquet":
        dataset.to_parquet(str(out))
    elif format == "hf":
        dataset.save_to_disk(str(out))
    else:
        # Through Arrow, so images stay the stored bytes (nothing is decoded and re-encoded).
        with out.open("w", encoding="utf-8") as f:
            for batch in dataset.with_format("arrow").iter(batch_size=256):
                for row in batch.to_pylist():
                    f.write(json.dumps(_jsonable(row, dataset.features)) + "\n")
    return out
