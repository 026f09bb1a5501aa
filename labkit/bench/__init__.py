"""Benchmarks behind ``labkit bench NAME``; their figures go to ``docs/benchmarks.md``.

One module per benchmark, each with ``main(argv, prog) -> int`` and its own argument parser
(``labkit bench NAME --help``), e.g.

* :mod:`labkit.bench.functions` — rounds-to-target on standard test functions, all optimizers;
* :mod:`labkit.bench.speed` — wall time and memory of one ZO-RankSGD round against a plain NumPy
  implementation (:mod:`labkit.bench._numpy_ref`) and the cost of drawing the random numbers.
"""

from __future__ import annotations
