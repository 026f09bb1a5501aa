"""Widgets: the Python side of labkit's anywidgets; front ends are built into ``static/``.

The front-end sources live in the top-level ``widgets/`` folder and are built with
``scripts/build_widgets.sh`` into ``labkit/widgets/static/``, which is committed so that
installing labkit needs no Node.
"""

from __future__ import annotations

from labkit.widgets.ranker import NotTaken, RankingWidget, display_order

__all__ = ["NotTaken", "RankingWidget", "display_order"]
