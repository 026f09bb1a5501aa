"""`labkit ...` entry points.

Each subcommand imports its module only when it runs, so `labkit --help` stays instant and a
missing optional dependency only affects the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# bench name -> (module, help). Each module has `main(argv) -> int` with its own argument parser,
# so `labkit bench NAME --help` shows that module's options without importing it for `labkit -h`.
_BENCHES = {
    "functions": ("labkit.bench.functions", "rounds-to-target on standard test functions"),
    "speed": ("labkit.bench.speed", "ask+tell wall time and memory against numpy and the floor"),
    "latency": ("labkit.bench.latency", "labkit app in chromium: start-up, next round"),
    "control": ("labkit.bench.control", "policies from rankings of rollouts (MuJoCo, classic)"),
    "diffusion": ("labkit.bench.diffusion", "rounds to steer digits latents to a judge's target"),
    "steer": ("labkit.bench.steer", "simulated people with a target in mind: rounds they need"),
    "load": ("labkit.bench.load", "many visitors ranking in one labkit app at once, in chromium"),
    "crowd": ("labkit.bench.crowd", "30 simulated raters in one crowd session: memory, renders"),
}


def option_keywords(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The parsed options ``names`` of ``args``, as keyword arguments of the function they are for.

    A command's options take their function's keywords as their dests, so they are handed on by
    name, as they stand.
    """
    return {name: getattr(args, name) for name in names}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit",
        description="Steer a model by ranking what it produces (ZO-RankSGD).",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name, help_text in (
        ("app", "serve a notebook app with Voilà on 127.0.0.1 (default: the digits app)"),
        ("lab", "open JupyterLab on the lessons"),
        (
            "train-digits",
            "retrain the embedded digits diffusion model (seeded, ~20 min on 2 cores)",
        ),
        ("export", "write a round log's rankings as a preference dataset (Parquet, JSONL, HF)"),
    ):
        sub.add_parser(name, help=help_text, add_help=False)

    bench = sub.add_parser("bench", help="run a benchmark; results go to docs/benchmarks.md")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, (_module, help_text) in _BENCHES.items():
        bench_sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _version() -> str:
    from labkit import __version__

    return f"labkit {__version__}"


def _dispatch(argv: list[str]) -> tuple[str, str, list[str], str] | None:
    """(module, entry, its argv, prog) for a subcommand, or None to let argparse answer.

    Subcommands parse their own options, so everything after the name goes to them untouched
    (argparse.REMAINDER would swallow a leading ``--option`` into the top-level parser).
    """
    if argv and argv[0] in ("app", "lab"):
        return "labkit.app", f"main_{argv[0]}", argv[1:], f"labkit {argv[0]}"
    if argv and argv[0] == "export":
        return "labkit.cli", "_export", argv[1:], "labkit export"
    if argv and argv[0] == "train-digits":
        return "labkit.cli", "_train_digits", argv[1:], "labkit train-digits"
    if len(argv) >= 2 and argv[0] == "bench" and argv[1] in _BENCHES:
        return _BENCHES[argv[1]][0], "main", argv[2:], f"labkit bench {argv[1]}"
    return None


def _train_digits(argv: list[str], *, prog: str) -> int:
    from labkit.models.digits import main as digits_main

    return int(digits_main(["train", *argv]) or 0)


def _export(argv: list[str], *, prog: str) -> int:
    """`labkit export DB --out PATH`: the live rounds of a round log as a preference dataset."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Write the live (not undone) rounds of a round log as a preference dataset: pairs "
            "(chosen/rejected), one ranking per round, or rounds grouped by rater. No images: "
            "rendering needs the task, so use labkit.dataset.to_dataset(..., render=task.render)."
        ),
    )
    parser.add_argument("db", metavar="DB", help="the round log: a file, or a postgresql:// URL")
    parser.add_argument(
        "--out", required=True, metavar="PATH", help="the file (or folder) to write"
    )
    parser.add_argument("--shape", choices=("pairwise", "ranking", "rater"), default="pairwise")
    parser.add_argument(
        "--format",
        choices=("parquet", "jsonl", "hf"),
        default=None,
        help="default: from the suffix of --out (.parquet or .jsonl); hf is a save_to_disk folder",
    )
    parser.add_argument(
        "--session",
        dest="sessions",
        action="extend",
        nargs="+",
        metavar="ID",
        help="only these sessions (default: all)",
    )
    parser.add_argument(
        "--include-consensus",
        action="store_true",
        help="also a crowd's consensus rows (default: only what people ranked)",
    )
    parser.add_argument(
        "--include-late",
        action="store_true",
        help="also crowd rankings that arrived after their round closed (default: left out)",
    )
    args = parser.parse_args(argv)
    if args.format is None and Path(args.out).suffix not in (".parquet", ".jsonl"):
        parser.error(f"cannot tell the format from --out {args.out!r}: give --format")

    from labkit._log_target import is_database_url, redact_url

    db: str = args.db
    shown = redact_url(db) if is_database_url(db) else db  # never print a password
    if not is_database_url(db) and not Path(db).expanduser().is_file():
        # RoundLog would create an empty log there: say what is missing instead.
        parser.error(f"no round log at {db!r}")
    try:
        import datasets
    except ImportError:
        parser.error(
            "exporting needs the Hugging Face `datasets` package: pip install 'labkit[export]'"
        )
    datasets.disable_progress_bars()  # the command prints one line when it is done
    from labkit.dataset import to_dataset, write_dataset
    from labkit.roundlog import RoundLog

    try:
        log = RoundLog(db)
    except ValueError as err:  # not a labkit round log, a newer schema...
        parser.error(str(err))
    with log:
        known = log.sessions()
        unknown = [sid for sid in args.sessions or () if sid not in known]
        if unknown:
            parser.error(f"no session {', '.join(unknown)} in {shown!r} (it has {len(known)})")
        dataset = to_dataset(
            log, **option_keywords(args, "sessions", "shape", "include_consensus", "include_late")
        )
    if len(dataset) == 0:
        which = "the sessions asked for have" if args.sessions else "it has"
        parser.error(f"nothing to export from {shown!r}: {which} no live rounds")
    out = write_dataset(dataset, args.out, format=args.format)
    print(f"wrote {len(dataset)} {args.shape} rows to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    target = _dispatch(args_list)
    if target is None:
        parser = _build_parser()
        parser.parse_args(args_list)  # prints help, the version, or a usage error
        parser.print_help()
        return 0
    module, entry, rest, prog = target
    return int(getattr(importlib.import_module(module), entry)(rest, prog=prog) or 0)


if __name__ == "__main__":
    sys.exit(main())
