"""`labkit bench steer`: simulated people with a target in mind."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit.bench import steer


def test_plackett_luce_person_picks_first_with_softmax_probabilities() -> None:
    # Distances 0, 1, 2 at temperature 1: P(first) ∝ e^0, e^-1, e^-2.
    spec = steer.PersonSpec("t", "pixels", tau=1.0)
    person = steer.Person(spec, lambda X: X, scale=1.0, seed=0)
    d = np.array([0.0, 1.0, 2.0])
    n = 20000
    firsts = np.bincount([person.rank(d, 3)[0] for _ in range(n)], minlength=3) / n
    expected = np.exp(-d) / np.exp(-d).sum()
    # Binomial standard error at n = 20000 is < 0.0036: 5 of them is a bound met every time.
    assert np.abs(firsts - expected).max() < 0.018, (firsts, expected)
    # The second place follows the same law among the rest: P(2nd = 1 | 1st = 0) = e^-1/(e^-1+e^-2).
    seconds = [r[1] for r in (person.rank(d, 3) for _ in range(n)) if r[0] == 0]
    p = np.mean([s == 1 for s in seconds])
    assert abs(p - 1 / (1 + math.exp(-1))) < 0.02


def test_sharp_person_ranks_by_distance_and_careless_one_does_not_always() -> None:
    d = np.arange(8, dtype=np.float64)
    sharp = steer.Person(steer.PersonSpec("s", "pixels", tau=1e-6), lambda X: X, scale=1, seed=1)
    assert all(sharp.rank(d, 8) == tuple(range(8)) for _ in range(50))
    assert sharp.rank(d, 3) == (0, 1, 2)
    careless_spec = steer.PersonSpec("c", "pixels", tau=1e-6, swap=0.5, arbitrary=0.3)
    careless = steer.Person(careless_spec, lambda X: X, scale=1, seed=1)
    ranks = [careless.rank(d, 8) for _ in range(200)]
    assert all(sorted(r) == list(range(8)) for r in ranks)
    wrong = sum(r != tuple(range(8)) for r in ranks)
    assert 80 < wrong < 180  # swaps ~50 %, arbitrary firsts ~30 %: most, not all, rounds differ


def test_summary_counts_rounds_to_match_resampling() -> None:
    traces = [
        steer.RunTrace("quickstart", "pl", "resampling", "test", 0, [4.0, 3.0, 2.0, 2.0]),
        steer.RunTrace("quickstart", "pl", "fast", "test", 0, [3.0, 1.0, 1.0, 0.5]),
        steer.RunTrace("quickstart", "pl", "slow", "test", 0, [5.0, 5.0, 4.0, 3.0]),
        steer.RunTrace("quickstart", "pl", "CMA-ES", "test", 0, [5.0, 5.0, 2.0, 2.0]),
    ]
    by = {s.method: s for s in steer.summarize(traces)}
    assert by["fast"].match[1] == pytest.approx(2 / 4)  # 1.0 <= 2.0 first at round 2 of 4
    assert by["resampling"].match[1] == pytest.approx(3 / 4)
    assert math.isinf(by["slow"].match[1]) and by["slow"].never == 1
    assert by["CMA-ES"].match[1] == pytest.approx(3 / 4)
    table = steer.markdown_table(list(by.values()))
    assert "| quickstart | pl | slow | 1 | never" in table


def test_quickstart_run_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--tasks", "quickstart", "--targets", "3", "--rounds", "6", "--split", "train",
        "--methods", "default", "CMA-ES", "--no-progress", "--out", str(tmp_path),
    ]  # fmt: skip
    assert steer.main(argv) == 0
    out = capsys.readouterr().out
    assert "train targets" in out and "| quickstart | pl | default | 3 |" in out
    rows = (tmp_path / "runs.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 3 * 6  # resampling, default, CMA-ES × 3 targets × 6 rounds
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_train_and_test_targets_are_disjoint() -> None:
    a = steer._quickstart_problem("train", 0, 0)
    b = steer._quickstart_problem("test", 0, 0)
    x = torch.zeros(1, 2)
    assert float(a.distance(x)[0]) != float(b.distance(x)[0])


def test_digits_problem_perceives_the_target_and_the_best_seen_only_improves() -> None:
    digits = steer._Digits()
    train = digits.targets("train", 3)
    test = digits.targets("test", 3)
    problem = digits.problem("digits", "test", test[0], "pixels", 0)
    images, _ = digits.images["held_out"]
    # What the person perceives: the candidates' images and the held-out target, at 8×8.
    X = problem.x0.unsqueeze(0).repeat(2, 1, 1, 1)
    X[1] = -X[1]
    seen = torch.nn.functional.avg_pool2d(problem.task.images(X), 2).flatten(1)
    goal = torch.nn.functional.avg_pool2d(images[test[0]].unsqueeze(0), 2).flatten(1)
    assert torch.allclose(problem.distance(X), (seen - goal).norm(dim=1))
    spec = steer.PEOPLE["pl"]
    person = steer.Person(spec, problem.distance, scale=problem.scale, seed=0)
    curve = steer.run_one(problem, person, "default", 3, seed=0)
    assert len(curve) == 3 and curve == sorted(curve, reverse=True)
    assert len(train) == 3 and problem.scale > 0


def test_runs_csv_reads_back_and_a_split_run_joins(tmp_path: Path) -> None:
    common = ["--tasks", "quickstart", "--rounds", "4", "--methods", "default", "--no-progress"]
    assert steer.main([*common, "--targets", "2", "--out", str(tmp_path / "a")]) == 0
    assert (
        steer.main([*common, "--targets", "3", "--first", "2", "--out", str(tmp_path / "b")]) == 0
    )
    whole = steer.run_steer(
        tasks=["quickstart"], people=["pl"], methods=["default"], split="test", targets=3,
        rounds=4, progress=False,
    )  # fmt: skip
    parts = steer.read_csv(tmp_path / "a" / "runs.csv") + steer.read_csv(
        tmp_path / "b" / "runs.csv"
    )
    key = lambda t: (t.method, t.target)  # noqa: E731
    assert [(key(t), t.best) for t in sorted(parts, key=key)] == [
        (key(t), [float(f"{b:.6g}") for b in t.best]) for t in sorted(whole, key=key)
    ]
