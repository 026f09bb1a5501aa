"""Preference datasets out of the round log: pairs, rankings, raters, images, files, the CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
from scipy.stats import kendalltau  # noqa: E402

from labkit import cli  # noqa: E402
from labkit.dataset import to_dataset, write_dataset  # noqa: E402
from labkit.judges import TopKJudge  # noqa: E402
from labkit.optim.zo_ranksgd import ZORankSGD  # noqa: E402
from labkit.roundlog import RoundLog  # noqa: E402
from labkit.session import Session  # noqa: E402
from labkit.tasks.functions import FunctionTask  # noqa: E402

SPHERE = "FunctionTask('sphere', d=2, image_size=64)"


# -- a hand-made log: every kind of answer, with the pairs and rankings it must give --------------


def _hand_made(path: Path) -> tuple[RoundLog, str, str]:
    """Session a (prompt given, rater "ada", m=4): a full ranking, a top-2, a top-3 with a tie,
    "none is better" (incumbent 2), and round 4 answered, undone and answered again. Session b
    (a task repr, no rater): one round."""
    log = RoundLog(path)
    a = log.new_session(meta={"prompt": "a friendly three", "task": "DigitsTask(3)"})
    b = log.new_session(meta={"task": SPHERE})
    add: dict[str, Any] = {"m": 4, "rater": "ada", "seed": 11}
    log.append(a, round=0, ranking=[2, 0, 3, 1], **add)
    log.append(a, round=1, ranking=[1, 3], **add)
    log.append(a, round=2, ranking=[3, 0, 2], ties=[2], **add)
    log.append(a, round=3, ranking=[2], answer="none_better", **add)
    log.append(a, round=4, ranking=[0, 1, 2, 3], **add)
    log.mark_undone(a, 4)
    log.append(a, round=4, ranking=[3], kind="line_search", **add)
    log.append(b, round=0, ranking=[1, 0], m=2)
    return log, a, b


# (round, chosen, rejected) of session a, written out by hand from the rules.
PAIRS_A = {
    # full ranking 2 > 0 > 3 > 1: every ranked one beats every one below it
    (0, 2, 0), (0, 2, 3), (0, 2, 1), (0, 0, 3), (0, 0, 1), (0, 3, 1),
    # top-2 of 4: 1 > 3, both beat the unranked 0 and 2
    (1, 1, 3), (1, 1, 0), (1, 1, 2), (1, 3, 0), (1, 3, 2),
    # 3 > (0 = 2), unranked 1: the tied 0 and 2 give no pair
    (2, 3, 0), (2, 3, 2), (2, 3, 1), (2, 0, 1), (2, 2, 1),
    # none is better than the incumbent 2: it beats all three others
    (3, 2, 0), (3, 2, 1), (3, 2, 3),
    # the redo of round 4 (top-1: 3); the undone full ranking gives nothing
    (4, 3, 0), (4, 3, 1), (4, 3, 2),
}  # fmt: skip


def test_pairs_of_every_kind_of_answer_and_undone_rounds_left_out(tmp_path: Path) -> None:
    log, a, b = _hand_made(tmp_path / "log.sqlite")
    ds = to_dataset(log)
    assert log.to_dataset().to_list() == ds.to_list()  # the RoundLog method is the same call
    assert ds.column_names == [
        "session_id", "round", "rater", "prompt", "chosen_index", "rejected_index",
    ]  # fmt: skip
    rows = ds.to_list()
    got_a = [(r["round"], r["chosen_index"], r["rejected_index"]) for r in rows[:-1]]
    assert len(got_a) == len(PAIRS_A) and set(got_a) == PAIRS_A  # no pair twice, none missing
    assert {(r["session_id"], r["rater"], r["prompt"]) for r in rows[:-1]} == {
        (a, "ada", "a friendly three")  # the prompt given wins over the task's repr
    }
    assert rows[-1] == {
        "session_id": b, "round": 0, "rater": None, "prompt": SPHERE,
        "chosen_index": 1, "rejected_index": 0,
    }  # fmt: skip
    only_b = to_dataset(log, sessions=[b])
    assert only_b.to_list() == [rows[-1]]


def test_ranking_rows_keep_top_k_ties_and_the_unranked(tmp_path: Path) -> None:
    log, a, b = _hand_made(tmp_path / "log.sqlite")
    rows = to_dataset(log, shape="ranking", sessions=[a, b]).to_list()
    slim = [
        (
            r["round"],
            r["answer"],
            r["kind"],
            r["ranking"],
            r["ties"],
            r["unranked"],
            r["n_unranked"],
        )
        for r in rows
    ]
    assert slim == [
        (0, "ranking", "gradient", [2, 0, 3, 1], [], [], 0),
        (1, "ranking", "gradient", [1, 3], [], [0, 2], 2),
        (2, "ranking", "gradient", [3, 0, 2], [2], [1], 1),
        (3, "none_better", "gradient", [2], [], [0, 1, 3], 3),
        (4, "ranking", "line_search", [3], [], [0, 1, 2], 3),  # the redo, not the undone row
        (0, "ranking", "gradient", [1, 0], [], [], 0),
    ]
    assert [r["m"] for r in rows] == [4] * 5 + [2]
    assert [r["session_id"] for r in rows] == [a] * 5 + [b]


def test_rater_rows_group_the_ranking_rows_by_rater(tmp_path: Path) -> None:
    log, a, b = _hand_made(tmp_path / "log.sqlite")
    rows = to_dataset(log, shape="rater").to_list()
    assert [(r["rater"], r["sessions"], r["n_rounds"], r["n_pairs"]) for r in rows] == [
        ("ada", [a], 5, len(PAIRS_A)),
        (None, [b], 1, 1),
    ]
    ranking_rows = to_dataset(log, shape="ranking").to_list()
    for r in ranking_rows:
        del r["rater"]
    assert rows[0]["rounds"] + rows[1]["rounds"] == ranking_rows


def test_a_crowd_exports_what_its_raters_ranked(tmp_path: Path) -> None:
    """Not the consensus session (made from those rows) and not late answers, unless asked."""
    log = RoundLog(tmp_path / "log.sqlite")
    crowd = log.new_session(meta={"crowd_config": {"raters": 2}, "task": SPHERE})
    ada = log.new_session(meta={"name": "crowd-rater", "crowd": crowd, "rater": "ada"})
    bo = log.new_session(meta={"name": "crowd-rater", "crowd": crowd, "rater": "bo"})
    log.append(ada, round=0, ranking=[0, 1], m=2, rater="ada")
    log.append(bo, round=0, ranking=[0, 1], m=2, rater="bo")
    log.append(crowd, round=0, ranking=[0, 1], m=2, rater="consensus", meta={"crowd": {}})
    log.append(bo, round=1, ranking=[1, 0], m=2, rater="bo", meta={"late": True})

    def raters(**kw: Any) -> list[tuple[str, int]]:
        return [(r["rater"], r["round"]) for r in to_dataset(log, shape="ranking", **kw)]

    assert raters() == [("ada", 0), ("bo", 0)]
    assert raters(include_consensus=True) == [("consensus", 0), ("ada", 0), ("bo", 0)]
    assert raters(include_late=True) == [("ada", 0), ("bo", 0), ("bo", 1)]
    assert log.to_dataset(shape="ranking", include_late=True)["rater"] == ["ada", "bo", "bo"]
    log.close()
    # The command line the same way: people's rows only, unless a flag asks for more.
    db, out = str(tmp_path / "log.sqlite"), str(tmp_path / "r.jsonl")
    assert cli.main(["export", db, "--out", out, "--shape", "ranking"]) == 0
    assert [json.loads(line)["rater"] for line in open(out)] == ["ada", "bo"]
    assert cli.main(["export", db, "--out", out, "--shape", "ranking", "--include-consensus"]) == 0
    assert [json.loads(line)["rater"] for line in open(out)] == ["consensus", "ada", "bo"]


def test_wrong_arguments_are_refused_by_name(tmp_path: Path) -> None:
    log, a, _ = _hand_made(tmp_path / "log.sqlite")
    with pytest.raises(ValueError, match="shape must be one of"):
        to_dataset(log, shape="pairs")
    with pytest.raises(ValueError, match=r"write sessions=\["):
        to_dataset(log, sessions=a)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="given twice"):
        to_dataset(log, sessions=[a, a])
    with pytest.raises(ValueError, match="no session 'nope'"):
        to_dataset(log, sessions=["nope"])
    with pytest.raises(ValueError, match="needs render="):
        to_dataset(log, images="stored")
    with pytest.raises(ValueError, match="render is used only with images"):
        to_dataset(log, render=FunctionTask("sphere").render)
    with pytest.raises(ValueError, match="images must be None or one of"):
        to_dataset(log, images="png", render=FunctionTask("sphere").render)
    with pytest.raises(ValueError, match=r"round 0 of session \w+ has no stored candidates"):
        to_dataset(log, sessions=[a], images="stored", render=FunctionTask("sphere").render)
    empty = to_dataset(RoundLog(tmp_path / "empty.sqlite"), shape="ranking")
    assert len(empty) == 0 and "ranking" in empty.column_names  # the columns stay
    with pytest.raises(ValueError, match="no rows"):
        write_dataset(empty, tmp_path / "empty.parquet")
    with pytest.raises(ValueError, match="cannot tell the format"):
        write_dataset(to_dataset(log), tmp_path / "prefs.csv")


# -- a judged session: files, and a Bradley–Terry model fitted on the pairs -----------------------


def _opt(seed: int = 7, line_search: int = 0) -> ZORankSGD:
    return ZORankSGD(
        torch.tensor([1.5, -1.0]), lr=0.2, mu=0.3, m=6, k=3, seed=seed, line_search=line_search
    )


def _judged(path: Path, rounds: int, *, line_search: int = 0) -> tuple[Session, FunctionTask]:
    task = FunctionTask("sphere", image_size=64)
    s = Session(
        _opt(line_search=line_search),
        task=task,
        judge=TopKJudge(task.score, k=3),
        log=path,
        store_candidates=True,
    )
    s.run(rounds, progress=False)
    return s, task


def _features(x: np.ndarray) -> np.ndarray:
    """Quadratic features of 2-D points: a linear score on them can be −|x|²."""
    return np.stack([x[:, 0], x[:, 1], x[:, 0] ** 2, x[:, 1] ** 2, x[:, 0] * x[:, 1]], axis=1)


def _bradley_terry(diff: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """w maximizing Σ log σ(w·(φ(chosen) − φ(rejected))) − ridge/2 |w|², by Newton steps."""
    w = np.zeros(diff.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-diff @ w))  # P(chosen beats rejected)
        grad = diff.T @ (1.0 - p) - ridge * w
        hess = (diff * (p * (1.0 - p))[:, None]).T @ diff + ridge * np.eye(len(w))
        w += np.linalg.solve(hess, grad)
    return w


def test_a_judged_session_written_and_read_back_gives_the_judges_order(tmp_path: Path) -> None:
    s, _ = _judged(tmp_path / "log.sqlite", 15)
    s.undo()  # its pairs must not be in the files
    ds = to_dataset(s.log)
    assert len(ds) == 14 * 12  # 14 live rounds, top-3 of 6: 3·2/2 + 3·3 pairs each

    parquet = write_dataset(ds, tmp_path / "prefs.parquet")
    jsonl = write_dataset(ds, tmp_path / "prefs.jsonl")
    cache = str(tmp_path / "cache")
    from_parquet = datasets.Dataset.from_parquet(str(parquet), cache_dir=cache)
    from_json = datasets.load_dataset("json", data_files=str(jsonl), split="train", cache_dir=cache)
    assert from_parquet.to_list() == ds.to_list() == from_json.to_list()

    # Fit a Bradley–Terry model, linear in quadratic features of the candidate points (taken
    # from the log by (round, index)), on the pairs read back; it must order all the candidate
    # points as the judge's values do (sphere: lower is better).
    X = {
        r.round: r.candidates.numpy()
        for r in s.log.rounds(s.session_id)
        if r.candidates is not None
    }
    rows = from_parquet.to_list()
    chosen = np.stack([X[r["round"]][r["chosen_index"]] for r in rows])
    rejected = np.stack([X[r["round"]][r["rejected_index"]] for r in rows])
    w = _bradley_terry(_features(chosen) - _features(rejected))
    points = np.concatenate(list(X.values()))
    tau = kendalltau(_features(points) @ w, -(points**2).sum(axis=1)).statistic
    assert tau > 0.9, tau


# -- images -------------------------------------------------------------------------------------


def _undecoded(ds: Any) -> Any:
    return ds.cast(
        datasets.Features(
            {
                name: datasets.Image(decode=False) if isinstance(f, datasets.Image) else f
                for name, f in ds.features.items()
            }
        )
    )


def test_stored_and_replayed_candidates_render_the_same_pngs(tmp_path: Path) -> None:
    s, task = _judged(tmp_path / "log.sqlite", 2, line_search=2)  # rounds with an incumbent
    while s.candidates() is not None and s.optimizer.incumbent_index is None:
        s.run(1, progress=False)
    s.submit(none_better=True)
    s.run(1, progress=False)
    s.undo()
    sid = s.session_id
    stored = _undecoded(to_dataset(s.log, images="stored", render=task.render))
    replayed = _undecoded(
        to_dataset(s.log, images="replay", render=task.render, replay=_opt(line_search=2))
    )
    assert stored.to_list() == replayed.to_list()
    # ... and they are the images of the very candidates the rounds showed.
    live = s.log.rounds(sid)
    assert live[-1].answer == "none_better"
    pngs = {r.round: task.render(r.candidates) for r in live if r.candidates is not None}
    for row in stored.to_list():
        assert row["chosen"]["bytes"] == pngs[row["round"]][row["chosen_index"]]
        assert row["rejected"]["bytes"] == pngs[row["round"]][row["rejected_index"]]
    ranking = _undecoded(to_dataset(s.log, shape="ranking", images="stored", render=task.render))
    last = ranking.to_list()[-1]
    assert last["answer"] == "none_better"
    own = pngs[last["round"]]
    assert [im["bytes"] for im in last["ranked_images"]] == [own[i] for i in last["ranking"]]
    assert len(last["unranked_images"]) == last["n_unranked"] == last["m"] - 1

    # JSON Lines: base64 of the same bytes.
    path = write_dataset(ranking, tmp_path / "ranking.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert base64.b64decode(first["ranked_images"][0]) == pngs[0][first["ranking"][0]]


def test_replay_refuses_an_optimizer_that_is_not_the_sessions(tmp_path: Path) -> None:
    s, task = _judged(tmp_path / "log.sqlite", 2)
    with pytest.raises(ValueError, match="seed=7"):
        to_dataset(s.log, images="replay", render=task.render, replay=_opt(seed=8))
    with pytest.raises(ValueError, match="needs replay="):
        to_dataset(s.log, images="replay", render=task.render)
    with pytest.raises(ValueError, match="render gave 1 items for the 6 candidates"):
        to_dataset(s.log, images="stored", render=lambda X: task.render(X)[:1])
    with pytest.raises(ValueError, match="encoded images"):
        to_dataset(s.log, images="stored", render=lambda X: [b"GIF"] * len(X))


# -- the command line ---------------------------------------------------------------------------


def test_cli_export_writes_each_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, _, b = _hand_made(tmp_path / "log.sqlite")
    log.close()
    db = str(tmp_path / "log.sqlite")
    assert cli.main(["export", db, "--out", str(tmp_path / "p.parquet")]) == 0
    assert f"wrote {len(PAIRS_A) + 1} pairwise rows" in capsys.readouterr().out
    cache = str(tmp_path / "cache")
    pairs = datasets.Dataset.from_parquet(str(tmp_path / "p.parquet"), cache_dir=cache)
    assert len(pairs) == len(PAIRS_A) + 1

    out = tmp_path / "r.jsonl"
    assert cli.main(["export", db, "--out", str(out), "--shape", "ranking", "--session", b]) == 0
    assert [json.loads(line)["ranking"] for line in out.read_text().splitlines()] == [[1, 0]]

    out = tmp_path / "raters"
    assert cli.main(["export", db, "--out", str(out), "--shape", "rater", "--format", "hf"]) == 0
    assert datasets.load_from_disk(str(out))["rater"] == ["ada", None]


def test_cli_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def error(*argv: str) -> str:
        with pytest.raises(SystemExit) as exc:
            cli.main(["export", *argv])
        assert exc.value.code == 2
        return capsys.readouterr().err

    missing = tmp_path / "missing.sqlite"
    assert "no round log at" in error(str(missing), "--out", str(tmp_path / "p.parquet"))
    assert not missing.exists()  # not created just to say it is empty
    _hand_made(tmp_path / "log.sqlite")[0].close()
    db = str(tmp_path / "log.sqlite")
    assert "no session nope in" in error(
        db, "--out", str(tmp_path / "p.jsonl"), "--session", "nope"
    )
    assert "cannot tell the format" in error(db, "--out", str(tmp_path / "p"))
    empty = RoundLog(tmp_path / "empty.sqlite")
    empty.new_session()
    err = error(str(empty.path), "--out", str(tmp_path / "p.jsonl"))
    assert "nothing to export" in err and "no live rounds" in err
    (tmp_path / "notes.txt").write_text("not a log")
    assert "is not a labkit round log" in error(str(tmp_path / "notes.txt"), "--out", "x.jsonl")
    assert not (tmp_path / "p.jsonl").exists()
