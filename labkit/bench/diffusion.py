"""``labkit bench diffusion``: rounds to reach a judge's target when steering diffusion latents.

The model is the embedded 16×16 digits model (:mod:`labkit.models.digits`), sampled
**unconditionally** (its "null" class, see :class:`labkit.tasks.diffusion.DigitsTask`) with
deterministic DDIM: the optimized vector is the initial latent z ∈ R^256. Why unconditional: with
its label and guidance the model already draws the requested digit with classifier p ≥ 0.9 from
more than 90 % of latents, so there is nothing to steer; unconditionally it draws any digit, and a
person who has one digit — or one picture — in mind must steer it there. That is the paper's
setting. Every run starts from a latent whose image has **p(target digit) < 0.5** (the first seed
that does, so the start is not already done).

Problems (every judge ranks the rendered images; higher scores are better):

* ``digit``: the classifier's probability of the run's target digit, exact ranking; target
  p(x) ≥ ``P_TARGET``. The target digit cycles through ``DIGITS`` with the seed.
* ``digit-noisy``: the same with Thurstone noise σ = ``NOISE_SIGMA`` added to the probabilities
  before ranking (a person who confuses images whose "8-ness" differs by ~0.1).
* ``picture``: a person with a picture in mind: the score is −MSE in pixel space to a target
  image (an unconditional sample from another latent, so it is reachable), exact ranking; target
  MSE ≤ ``MSE_TARGET`` (random pairs of samples are ≥ 0.025 apart for 99 % of pairs).
* ``digit-against``: the model is **conditioned on another digit** (seed i's target is
  ``DIGITS[i % 10]``, its condition ``DIGITS[(i + 1) % 10]``, with the default guidance) and the
  judge wants the target: p(target) ≥ ``P_TARGET``, exact ranking. A person whose idea of the
  digit differs from what the model was told. This is where steering the conditioning as well
  (``DigitsTask(optimize="latents+class")``) can help, and the ``+class`` methods measure it.

Methods (m = 8 candidates per round for all; ``_build``):

* ``ZO-RankSGD``: Algorithm 1, full rankings, lr and μ below;
* ``ZO-RankSGD+LS``: line-search rounds (n = 6 steps, so those rounds show 8 images too);
* ``CMA-ES``: pycma told ranks, population 8, σ₀ below (diagonal covariance at d = 256);
* ``prior resampling``: the incumbent plus 7 fresh N(0, I) latents a round — what a user without
  an optimizer does (re-roll the seed, keep the best);
* ``ZO-RankSGD-small`` and ``CMA-ES-small`` (only with ``--methods``): smaller steps, the best
  found for runs *without* renormalization, so that setting is not judged by steps tuned for the
  other;
* ``ZO-RankSGD+class`` and ``ZO-RankSGD+LS+class``: the same two ZO-RankSGD methods on the
  latent *and* an offset of the class embedding (a 384-entry vector; the offset starts at 0), run
  on ``digit-against`` only (the other problems are unconditional: there is no class to steer).

Each is run with the task's ``renormalize=True`` (candidates put on the prior's shell ‖z‖ = 16
before sampling) and ``False``, to measure whether staying in the region the model was trained on
helps. Progress is the judge's score of the method's *iterate* x after each round (what the person
would keep: the incumbent for line-search and prior resampling, the mean for CMA-ES), rendered the
same way the candidates are. A run stops at its target or after the round budget.

Also measured: wall time of one round of 8 candidates (one batched ``generate`` call), at the
model's default DDIM steps and guidance, with 1 and 2 torch threads.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from labkit.bench._common import bench_parser, limited_threads, parse_args, positive_int
from labkit.bench._harness import Trace, group_by, progress_bar, write_traces
from labkit.bench._methods import Method, build, registry
from labkit.judges import ScoreJudge
from labkit.optim.base import RankOptimizer
from labkit.tasks.diffusion import DigitProbability, DigitsTask, ImageSimilarity

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "PROBLEMS",
    "RunTrace",
    "main",
    "round_time",
    "run_diffusion",
    "summarize",
]

#: What ``--help`` says the benchmark does.
_DESCRIPTION = (
    "Rounds to steer the embedded digits model's latents to a judge's target (classifier "
    "p >= 0.9, or a picture in mind) with ZO-RankSGD, line-search rounds, CMA-ES told "
    "ranks and prior resampling, with and without renormalized latents; and the time of "
    "one round of 8 images."
)

#: The ``digit`` problems are solved at classifier probability p(x) >= P_TARGET.
P_TARGET = 0.9
#: The ``picture`` problem is solved at pixel MSE(x, target) <= MSE_TARGET.
MSE_TARGET = 0.01
#: Thurstone noise of ``digit-noisy``, in units of probability.
NOISE_SIGMA = 0.1
#: Start latents have p(target digit) below this.
START_BELOW = 0.5
#: Target digit of seed i is DIGITS[i % 10]: each digit once in ten seeds, hard ones first.
DIGITS = (8, 3, 5, 2, 9, 0, 4, 6, 7, 1)
#: Candidates per round, every method.
M = 8
#: Steps of a line-search round: rows are incumbent, previous winner and LS_STEPS steps = 8.
LS_STEPS = M - 2

PROBLEMS = ("digit", "digit-noisy", "picture", "digit-against")
#: The problems whose model is conditioned on a class (the others sample unconditionally).
CONDITIONED = ("digit-against",)


@dataclass(frozen=True)
class DigitsMethod(Method):
    """A method of the comparison and its fixed hyperparameters, used as they are (``_build``)."""

    m: int | None = M
    #: What a candidate is: the latent, or the latent and a class-embedding offset.
    optimize: str = "latents"


#: Hyperparameters were picked once on a small grid (see docs/benchmarks.md) and are fixed for
#: every problem, seed and renormalize setting. Units: the latent has 256 entries ~ N(0, 1).
METHODS: dict[str, DigitsMethod] = registry(
    DigitsMethod("ZO-RankSGD", "zorank", lr=2.0, mu=0.5),
    DigitsMethod("ZO-RankSGD+LS", "zorank", line_search=LS_STEPS, lr=8.0, mu=1.0),
    DigitsMethod("CMA-ES", "cmaes", sigma=1.0),
    DigitsMethod("prior resampling", "prior", sigma=1.0),
    # Smaller steps, for the runs without renormalization (not run by default; --methods).
    DigitsMethod("ZO-RankSGD-small", "zorank", lr=0.5, mu=0.25),
    DigitsMethod("CMA-ES-small", "cmaes", sigma=0.5),
    # The latent and the class embedding (digit-against only).
    DigitsMethod("ZO-RankSGD+class", "zorank", lr=2.0, mu=0.5, optimize="latents+class"),
    DigitsMethod(
        "ZO-RankSGD+LS+class",
        "zorank",
        line_search=LS_STEPS,
        lr=8.0,
        mu=1.0,
        optimize="latents+class",
    ),
)
#: What runs unless --methods says otherwise (a method runs on the problems it applies to).
DEFAULT_METHODS = (
    "ZO-RankSGD",
    "ZO-RankSGD+LS",
    "CMA-ES",
    "prior resampling",
    "ZO-RankSGD+class",
    "ZO-RankSGD+LS+class",
)


def applies(problem: str, method: DigitsMethod) -> bool:
    """Whether ``method`` runs on ``problem``: steering the class needs a conditioned model."""
    return method.optimize == "latents" or problem in CONDITIONED


def _condition(problem: str, seed: int) -> int | None:
    """The class the model is conditioned on in ``problem`` for seed ``seed`` (None: none)."""
    return DIGITS[(seed + 1) % len(DIGITS)] if problem in CONDITIONED else None


def _build(method: DigitsMethod, x0: torch.Tensor, seed: int) -> RankOptimizer:
    if method.kind == "zorank":
        return build(method, x0, seed=seed, lr=method.lr, mu=method.mu)
    return build(method, x0, seed=seed, sigma=method.sigma)


@dataclass
class RunTrace(Trace):
    """One run: its setting and the judge's score of the iterate after each round.

    ``scores[0]`` is the start's score; ``scores[r]`` the iterate's after round r. ``solved_at`` is
    the first round whose score met the target (``None``: not within the budget).
    """

    #: One CSV row per run and round (round 0: the start).
    CSV_FIELDS = (
        "problem",
        "method",
        "renormalize",
        "seed",
        "digit",
        "start_seed",
        "round",
        "score",
    )

    problem: str
    method: str
    renormalize: bool
    seed: int
    digit: int
    start_seed: int
    target: float
    scores: list[float] = field(default_factory=list)

    @property
    def solved_at(self) -> int | None:
        for r, s in enumerate(self.scores):
            if s >= self.target:
                return r
        return None

    def csv_rows(self) -> Iterator[dict[str, Any]]:
        setting = {
            "problem": self.problem,
            "method": self.method,
            "renormalize": self.renormalize,
            "seed": self.seed,
            "digit": self.digit,
            "start_seed": self.start_seed,
        }
        for r, s in enumerate(self.scores):
            yield {**setting, "round": r, "score": s}


@dataclass
class _Shared:
    """The model and classifier, loaded once and shared by every task of a benchmark."""

    model: Any
    classifier: Any


def _start(
    shared: _Shared, digit: int, first_seed: int, condition: int | None = None
) -> tuple[int, torch.Tensor]:
    """The first latent seed >= ``first_seed`` whose image has p(digit) < 0.5.

    The image is sampled unconditionally, or conditioned on ``condition`` when one is given.
    """
    probe = DigitsTask(digit, condition=condition, model=shared.model, classifier=shared.classifier)
    for s in range(first_seed, first_seed + 1000):
        z = probe.x0(s)
        if float(probe.score(z.unsqueeze(0))[0]) < START_BELOW:
            return s, z
    raise RuntimeError(f"no start latent with p({digit}) < {START_BELOW} in 1000 seeds")


def run_one(
    shared: _Shared,
    *,
    problem: str,
    method: DigitsMethod,
    renormalize: bool,
    seed: int,
    rounds: int,
) -> RunTrace:
    """One run of ``method`` on ``problem`` from seed ``seed``'s start, at most ``rounds``."""
    if not applies(problem, method):
        raise ValueError(
            f"{method.label} steers the class: it needs a conditioned problem, not {problem!r}"
        )
    digit = DIGITS[seed % len(DIGITS)]
    condition = _condition(problem, seed)
    start_seed, z0 = _start(shared, digit, 1000 * seed, condition)
    if problem == "picture":
        # The picture in mind: an unconditional sample from an unrelated latent.
        ref = DigitsTask(digit, condition=None, model=shared.model, classifier=shared.classifier)
        target_img = ref.images(ref.x0(10**6 + seed).unsqueeze(0))[0]
        scorer: Callable[[torch.Tensor], torch.Tensor] = ImageSimilarity(target_img)
        target = -MSE_TARGET
    else:
        scorer = DigitProbability(digit, classifier=shared.classifier)
        target = P_TARGET
    task = DigitsTask(
        digit,
        condition=condition,
        renormalize=renormalize,
        model=shared.model,
        classifier=shared.classifier,
        scorer=scorer,
        optimize=method.optimize,  # type: ignore[arg-type]
    )
    # Every method starts from the same latent; a class offset starts at 0 (the class as given).
    x0 = z0
    if method.optimize == "latents+class":
        x0 = torch.cat([z0.reshape(-1), torch.zeros(task.class_dim, device=z0.device)])
    noise = NOISE_SIGMA if problem == "digit-noisy" else 0.0
    judge: ScoreJudge = task.judge(noise=noise, seed=seed)
    opt = _build(method, x0, seed)
    trace = RunTrace(problem, method.label, renormalize, seed, digit, start_seed, target)
    t0 = time.perf_counter()
    trace.scores.append(float(task.score(opt.x.unsqueeze(0))[0]))
    for _ in range(rounds):
        if trace.scores[-1] >= target:
            break
        opt.tell(judge(opt.ask()))
        trace.scores.append(float(task.score(opt.x.unsqueeze(0))[0]))
    trace.seconds = time.perf_counter() - t0
    return trace


def run_diffusion(
    *,
    problems: Sequence[str],
    methods: Sequence[str],
    renormalize: Sequence[bool],
    seeds: int,
    rounds: int,
    progress: bool = True,
    shared: _Shared | None = None,
) -> list[RunTrace]:
    """All runs of the grid problems × methods × renormalize × seeds."""
    if shared is None:
        from labkit.models.digits import DigitClassifier, load_digits_model

        shared = _Shared(load_digits_model(), DigitClassifier())
    grid = [
        (p, METHODS[name], r, s)
        for p in problems
        for name in methods
        if applies(p, METHODS[name])
        for r in renormalize
        for s in range(seeds)
    ]
    traces = []
    for p, meth, r, s in progress_bar(grid, "runs", enabled=progress):
        traces.append(run_one(shared, problem=p, method=meth, renormalize=r, seed=s, rounds=rounds))
    return traces


# -- summaries ------------------------------------------------------------------------------------
@dataclass
class Summary:
    problem: str
    method: str
    renormalize: bool
    runs: int
    solved: int
    median_rounds: float  # inf when fewer than half the runs were solved
    median_final: float


def summarize(traces: Sequence[RunTrace]) -> list[Summary]:
    """Per (problem, method, renormalize): solved runs, median rounds to target, final score.

    A run not solved within its budget counts as ∞ rounds, so the median is finite exactly when
    at least half the runs were solved.
    """
    out = []
    for key, ts in group_by(traces, lambda t: (t.problem, t.method, t.renormalize)).items():
        rounds = [float(t.solved_at) if t.solved_at is not None else math.inf for t in ts]
        solved = sum(t.solved_at is not None for t in ts)
        final = statistics.median(t.scores[-1] for t in ts)
        out.append(Summary(*key, len(ts), solved, statistics.median(rounds), final))
    return out


def _fmt_rounds(x: float) -> str:
    return "—" if math.isinf(x) else f"{x:g}"


def markdown_table(summaries: Sequence[Summary], rounds: int) -> str:
    """One table: rows method × renormalize, columns per problem (solved, median rounds)."""
    problems = list(dict.fromkeys(s.problem for s in summaries))
    rows = list(dict.fromkeys((s.method, s.renormalize) for s in summaries))
    by = {(s.problem, s.method, s.renormalize): s for s in summaries}
    head = "| method | renormalize | " + " | ".join(
        f"{p}: solved / median rounds (final)" for p in problems
    )
    lines = [head + " |", "|---|---|" + "---|" * len(problems)]
    for meth, r in rows:
        cells = []
        for p in problems:
            s = by.get((p, meth, r))
            if s is None:
                cells.append("")
                continue
            fin = f"{s.median_final:.2f}" if p != "picture" else f"{-s.median_final:.4f}"
            cells.append(f"{s.solved}/{s.runs} · {_fmt_rounds(s.median_rounds)} ({fin})")
        lines.append(f"| {meth} | {'yes' if r else 'no'} | " + " | ".join(cells) + " |")
    note = (
        f"\nmedian rounds of {M} candidates to the target (— : fewer than half the runs reached it "
        f"within {rounds} rounds); in brackets the median final p (digit problems) or MSE "
        f"(picture)."
    )
    return "\n".join(lines) + "\n" + note


# -- time of one round ----------------------------------------------------------------------------
def round_time(
    threads: int,
    *,
    repeats: int = 7,
    shared: _Shared | None = None,
    conditional: bool = True,
) -> tuple[float, float]:
    """Median and best wall time (s) of one round of 8 candidates: one batched ``generate`` call.

    Both are reported because on a shared machine the median measures the neighbours' load as
    much as the model; the best is what an unloaded machine would see.

    The model's defaults (DDIM steps and guidance ≠ 1: 16 UNet rows a step), conditioned on a digit,
    renormalized, through :meth:`DigitsTask.images` with a fresh batch each repeat (no cache hit),
    after one warm-up call; ``threads`` torch threads. ``conditional=False`` times an
    unconditional round instead (what the digits app and the problems above run: the null class,
    8 UNet rows a step).
    """
    if shared is None:
        from labkit.models.digits import DigitClassifier, load_digits_model

        shared = _Shared(load_digits_model(), DigitClassifier())
    kw: dict[str, Any] = {} if conditional else {"condition": None}
    task = DigitsTask(3, model=shared.model, classifier=shared.classifier, **kw)
    g = torch.Generator().manual_seed(0)
    with limited_threads(threads):
        task.images(torch.randn(M, 1, 16, 16, generator=g))
        times = []
        for _ in range(repeats):
            X = torch.randn(M, 1, 16, 16, generator=g)
            t0 = time.perf_counter()
            task.images(X)
            times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


# -- command line ---------------------------------------------------------------------------------
def _parser(prog: str) -> argparse.ArgumentParser:
    quick = "digit and picture problems, renormalized only, 2 seeds, 15 rounds (about a minute)"
    seeds = "runs per cell (default 6)"
    p = bench_parser(prog, _DESCRIPTION, quick=quick, seeds=seeds, loop=True, out=True)
    p.add_argument("--problems", nargs="+", choices=PROBLEMS, default=None)
    rounds = "round budget per run (default 30)"
    p.add_argument("--rounds", type=positive_int, default=None, help=rounds)
    methods = f"methods (default {' '.join(DEFAULT_METHODS)})"
    p.add_argument("--methods", nargs="+", choices=sorted(METHODS), help=methods)
    renormalize = "the task's renormalize option (default both; yes with --quick)"
    p.add_argument("--renormalize", choices=("both", "yes", "no"), help=renormalize)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "labkit bench diffusion") -> int:
    """Entry point of ``labkit bench diffusion ARGS...``; returns the exit status."""
    args = parse_args(_parser(prog), argv)
    quick = bool(args.quick)
    seeds = args.seeds or (2 if quick else 6)
    rounds = args.rounds or (15 if quick else 30)
    problems = args.problems or (["digit", "picture"] if quick else list(PROBLEMS))
    methods = args.methods or list(DEFAULT_METHODS)
    renorm_opt = args.renormalize or ("yes" if quick else "both")
    renormalize = {"both": [True, False], "yes": [True], "no": [False]}[renorm_opt]

    from labkit.models import digits as dm

    t0 = time.perf_counter()
    shared = _Shared(dm.load_digits_model(), dm.DigitClassifier())
    repeats = 3 if quick else 7
    timing = {n: round_time(n, shared=shared, repeats=repeats) for n in (1, 2)}
    timing_unc = {
        n: round_time(n, shared=shared, repeats=repeats, conditional=False) for n in (1, 2)
    }
    with limited_threads(args.threads):
        traces = run_diffusion(
            problems=problems,
            methods=methods,
            renormalize=renormalize,
            seeds=seeds,
            rounds=rounds,
            progress=args.progress,
            shared=shared,
        )
    elapsed = time.perf_counter() - t0
    print(
        f"# labkit bench diffusion: {seeds} seeds, budget {rounds} rounds of {M}, "
        f"problems {problems} ({elapsed:.1f} s)"
    )
    print()

    def times(t: dict[int, tuple[float, float]]) -> str:
        return ", ".join(
            f"median {med:.3f} s (best {best:.3f} s) with {n} thread{'s' if n > 1 else ''}"
            for n, (med, best) in t.items()
        )

    print(
        f"one round of 8 candidates ({dm.DEFAULT_STEPS} DDIM steps, one batched call): "
        f"conditioned, guidance {dm.DEFAULT_GUIDANCE}: {times(timing)}; "
        f"unconditional (the digits app): {times(timing_unc)}"
    )
    print()
    print(markdown_table(summarize(traces), rounds))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_traces(RunTrace, traces, args.out / "runs.csv")
        print(f"wrote {args.out / 'runs.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
