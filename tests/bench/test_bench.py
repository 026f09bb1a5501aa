"""Smoke and correctness tests of the two benchmarks (``labkit bench functions`` / ``speed``)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit.bench import functions, speed
from labkit.bench._numpy_ref import NumpyRankSGD, ranking_edges
from labkit.optim.zo_ranksgd import ZORankSGD
from labkit.ranking import edge_count


# -- the numpy reference against ZORankSGD --------------------------------------------------------
@pytest.mark.parametrize(
    ("m", "ranking"),
    [
        (2, [1, 0]),
        (2, [0]),
        (5, [3]),
        (5, [4, 0, 2]),
        (8, [7, 6, 5, 4, 3, 2, 1, 0]),
        (8, [2, 5]),
        (8, [1, 3, 5, 7, 0, 2, 4]),
    ],
)
@pytest.mark.parametrize("regenerate", [False, True])
def test_numpy_reference_computes_the_same_step_from_the_same_directions(
    m: int, ranking: list[int], regenerate: bool
) -> None:
    """The edge-by-edge numpy estimator and ZORankSGD's closed form give the same step.

    With x = 0 and μ = 1 the candidates ZORankSGD returns are its directions ξ_i exactly, so the
    numpy reference is handed the very same ξ; the steps must agree to float32 rounding.
    """
    d, lr = 300, 0.7
    opt = ZORankSGD(torch.zeros(d), lr=lr, mu=1.0, m=m, seed=11, regenerate=regenerate)
    X = opt.ask()
    ref = NumpyRankSGD(np.zeros(d), lr=lr, mu=1.0, m=m)
    ref.ask(directions=X.numpy())
    g = ref.estimate(ranking)
    opt.tell(ranking)
    ref.tell(ranking)
    np.testing.assert_allclose(opt.x.numpy(), ref.x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref.x, -lr * g, rtol=1e-6, atol=1e-7)
    # Not a vacuous agreement: the step is of the size the estimator predicts (‖g‖ > 0).
    assert float(np.linalg.norm(ref.x)) > 0.01


def test_numpy_reference_keeps_descending_like_zoranksgd_over_rounds() -> None:
    """Several rounds, directions recovered as (X − x)/μ: iterates stay within float32 noise."""
    d, m, lr, mu = 50, 6, 0.05, 1e-2
    x0 = torch.linspace(-1, 1, d)
    opt = ZORankSGD(x0, lr=lr, mu=mu, m=m, seed=3, regenerate=False)
    ref = NumpyRankSGD(x0.numpy(), lr=lr, mu=mu, m=m)
    for _ in range(5):
        x_before = opt.x.clone().numpy()
        X = opt.ask()
        ref.ask(directions=(X.numpy().astype(np.float64) - x_before) / mu)
        ranking = torch.argsort((X * X).sum(1)).tolist()
        opt.tell(ranking)
        ref.tell(ranking)
    np.testing.assert_allclose(opt.x.numpy(), ref.x, atol=2e-4)
    assert float((opt.x * opt.x).sum()) < float((x0 * x0).sum())


@pytest.mark.parametrize(("m", "k"), [(2, 1), (2, 2), (5, 1), (5, 3), (8, 8), (16, 4)])
def test_ranking_edges_count_and_direction(m: int, k: int) -> None:
    ranking = list(range(m - 1, m - 1 - k, -1))
    edges = ranking_edges(ranking, m)
    assert len(edges) == len(set(edges)) == edge_count(m, k)
    assert (ranking[0], ranking[-1]) in edges or k == 1
    assert all(w in ranking for w, _ in edges)  # only a ranked candidate ever wins


def test_numpy_reference_refuses_bad_input() -> None:
    ref = NumpyRankSGD(np.zeros(4), lr=0.1, mu=0.1, m=3)
    with pytest.raises(ValueError, match="pending round"):
        ref.estimate([0])
    with pytest.raises(ValueError, match=r"shape \(m, d\)"):
        ref.ask(directions=np.zeros((3, 5)))
    ref.ask()
    with pytest.raises(ValueError, match="twice"):
        ref.tell([1, 1])


# -- speed: the memory accounting and a tiny run --------------------------------------------------
def test_peak_without_excludes_x_even_when_a_scratch_buffer_reused_its_address() -> None:
    """Synthetic allocator events: a scratch buffer at X's future address must still count."""
    mk = speed._MARKER_BYTES
    A, B, M = 0x1000, 0x2000, 0x3000
    x_bytes = 100
    events = [
        # round 1: a scratch buffer of X's size at address A, freed; then X at A; marker; temp
        (A, x_bytes, 100),
        (A, -x_bytes, 0),
        (A, x_bytes, 100),  # X
        (M, mk, 100 + mk),
        (M, -mk, 100),
        (B, 30, 130),  # a temporary while X is live: 30 bytes beyond X
        (B, -30, 100),
        (A, -x_bytes, 0),  # the caller frees X
    ]
    # The first allocation at A (a scratch buffer, 100 bytes) is the optimizer's and is the peak.
    assert speed._peak_without(events, [A], x_bytes) == 100
    # Without the early scratch buffer the peak is the 30-byte temporary.
    assert speed._peak_without(events[2:], [A], x_bytes) == 30


def test_speed_main_tiny_run_writes_sane_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "speed.json"
    d, m = 3000, 4
    code = speed.main(
        ["--dims", str(d), "--ms", str(m), "--repeats", "1", "--json", str(out), "--no-progress"],
        prog="labkit bench speed",
    )
    assert code == 0
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert (row["d"], row["m"], row["auto_mode"]) == (d, m, "stored")
    for key in ("floor", "stored", "regenerate", "numpy", "auto"):
        # Seconds, not milliseconds (the bound only catches a unit slip, not a slow machine).
        assert 0 < row[f"{key}_s"] < 60, key
        assert 0 <= row[f"{key}_cpu_s"] < 60, key
    assert row["auto_s"] == row["stored_s"]
    floats = 4 * d
    # Stored mode keeps x and Ξ (m·d) at least; nothing should need more than a few d on top.
    assert (m + 1) * floats <= row["stored_mem_bytes"] <= (m + 4) * floats
    # The numpy reference keeps x, Ξ and g next to the returned X.
    assert (m + 2) * floats <= row["numpy_mem_bytes"] <= (m + 5) * floats
    assert result["machine"]["torch"] == torch.__version__
    printed = capsys.readouterr().out
    assert "| d | m | floor ms" in printed


def _cpu_peak(d: int, m: int, regenerate: bool) -> int:
    ranking = speed._full_ranking(m)
    return speed._torch_cpu_peak(
        lambda: speed._make_zorank(d, m, regenerate, torch.device("cpu")), ranking
    )


def test_speed_memory_of_the_two_modes_at_d_1e7() -> None:
    """At d = 10⁷ regeneration holds x, g and about a tile: <= 3·d floats (the issue's target)."""
    d, m = 10_000_000, 2
    regenerated = _cpu_peak(d, m, True)
    assert 2 * d * 4 <= regenerated <= 3 * d * 4  # x and g at least
    assert _cpu_peak(d, m, False) >= (m + 2) * d * 4 > regenerated  # x, Ξ and g


def test_speed_regenerate_memory_just_above_one_tile() -> None:
    """ZORankSGD's docstring promises x + g + one tile <= 3·d floats in regenerate mode."""
    d = 4_500_000
    assert _cpu_peak(d, 3, True) <= 3 * d * 4


def test_speed_refuses_cuda_when_there_is_none() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="cuda"):
        speed.run_speed(dims=[10], ms=[2], repeats=1, device="cuda", progress=False)


# -- functions: a tiny run ------------------------------------------------------------------------
def test_functions_main_tiny_run_writes_files_and_ranksgd_beats_prior(tmp_path: Path) -> None:
    code = functions.main(
        [
            "--dims",
            "10",
            "--seeds",
            "3",
            "--rounds",
            "60",
            "--problems",
            "sphere",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
        prog="labkit bench functions",
    )
    assert code == 0
    png = tmp_path / "bench_functions_sphere.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ZO-RankSGD m=8" in (tmp_path / "summary.md").read_text()
    with (tmp_path / "runs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * len(functions.METHODS)
    for r in rows:
        assert int(r["queries_used"]) <= 8 * 60  # nobody overspends the budget
        assert math.isclose(
            float(r["final_ratio"]), float(r["final"]) / float(r["f0"]), rel_tol=1e-4
        )

    def median_final(method: str) -> float:
        return statistics.median(float(r["final_ratio"]) for r in rows if r["method"] == method)

    assert median_final("ZO-RankSGD m=8") < 0.5 * median_final("prior resampling m=8")


def test_run_one_counts_queries_per_round_including_line_search_rounds() -> None:
    ls = next(mt for mt in functions.METHODS.values() if mt.line_search)
    trace = functions.run_one(ls, "sphere", 10, 0, budget=8 + 6 + 8 + 6 + 5)
    # gradient round (m = 8 rows), line-search round (n + 2 = 6 rows), ...; 5 left: no round.
    assert trace.queries == [0, 8, 14, 22, 28]
    assert trace.values[1] == trace.values[0]  # a gradient round does not move x
    noisy = functions.run_one(functions.METHODS["ZO-RankSGD m=8"], "sphere-noisy", 10, 0, budget=80)
    assert noisy.queries[-1] == 80 and noisy.final < noisy.f0


def test_functions_refuses_d_below_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert functions.main(["--dims", "1"], prog="labkit bench functions") == 2
    assert "d must be >= 2" in capsys.readouterr().err
    # `labkit bench functions -- ARGS` hands the separator through; it is dropped.
    assert functions.main(["--", "--dims", "1"], prog="labkit bench functions") == 2
    with pytest.raises(SystemExit):
        functions.main(["--dims", "ten"], prog="labkit bench functions")
