"""`labkit ...` entry points.

Each subcommand imports its module only when it runs, so `labkit --help` stays instant and a
missing optional dependency only affects the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# bench name -> (module, help). Each module has `main(argv) -> int` with its own argument parser,
# so `labkit bench NAME --help` shows that module's options without importing it for `labkit -h`.
_BENCHES = {
    "functions": ("labkit.bench.functions", "rounds-to-target on standard test functions"),
    "speed": ("labkit.bench.speed", "ask+tell wall time and memory against numpy and the floor"),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit",
        description="Steer a model by ranking what it produces (ZO-RankSGD).",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    bench = sub.add_parser("bench", help="run a benchmark; results go to docs/benchmarks.md")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, (module, help_text) in _BENCHES.items():
        p = bench_sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(_module=module, _prog=f"labkit bench {name}")
    return parser


def _version() -> str:
    from labkit import __version__

    return f"labkit {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(args._module)
    return int(module.main(list(args.args), prog=args._prog) or 0)


if __name__ == "__main__":
    sys.exit(main())
