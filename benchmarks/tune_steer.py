"""Tuning of labkit.make_optimizer's constants on the *train* split of `labkit bench steer`.

The protocol (docs/benchmarks.md, "Steering"): candidate settings of the default's model run on
targets drawn from the digits model's training split only; the setting kept is then reported
once on held-out targets (`labkit bench steer --split test`). Run:

    python benchmarks/tune_steer.py --tasks digits --targets 12 \
        --grid "prior=0.3,explore=0.1" "prior=0.3,explore=0.15" "prior=1,explore=0.15"

Each grid entry is a set of PreferenceThompson options; the table is the benchmark's own.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from labkit.bench import steer


def _options(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["digits"], choices=steer.TASKS)
    p.add_argument("--people", nargs="+", default=["pl"], choices=sorted(steer.PEOPLE))
    p.add_argument("--targets", type=int, default=12)
    p.add_argument("--rounds", type=int, default=steer.ROUNDS)
    p.add_argument("--baselines", nargs="*", default=["CMA-ES"])
    p.add_argument("--grid", nargs="+", required=True, help='e.g. "prior=0.3,explore=0.15"')
    args = p.parse_args(argv)
    names = []
    for entry in args.grid:
        options = _options(entry)
        name = f"PT {entry}"
        steer.METHODS[name] = lambda prob, seed, o=options: steer._thompson(prob, seed, **o)
        names.append(name)
    traces = steer.run_steer(
        tasks=args.tasks,
        people=args.people,
        methods=[*args.baselines, *names],
        split="train",  # tuning never sees the test split
        targets=args.targets,
        rounds=args.rounds,
        progress=False,
    )
    print(steer.markdown_table(steer.summarize(traces)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
