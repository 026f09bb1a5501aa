"""Apps are played the way the browser plays them: by writing the widget's ``submitted`` trait."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ipywidgets
import pytest
import torch

from labkit.widgets import RankingWidget


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Apps set torch's threads from $LABKIT_THREADS; restore the test process's afterwards."""
    monkeypatch.setenv("LABKIT_THREADS", "1")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def walk(widget: Any) -> Iterator[Any]:
    """Every widget of a page (an AppView or a widget), depth first."""
    widget = getattr(widget, "widget", widget)
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def ranker(page: Any) -> RankingWidget:
    found = [w for w in walk(page) if isinstance(w, RankingWidget)]
    assert len(found) == 1, f"an app page shows exactly one ranking widget; found {len(found)}"
    return found[0]


def submit(page: Any, ranking: list[int] | None = None) -> RankingWidget:
    """Rank the round on screen as the page would (default: candidates in index order)."""
    w = ranker(page)
    r = ranking if ranking is not None else list(range(w.k or w.m))
    w.set_state({"submitted": {"round": w.round_id, "ranking": r}})
    assert w.error == "", w.error
    return w


def texts(page: Any) -> str:
    return " ".join(w.value for w in walk(page) if isinstance(w, ipywidgets.HTML))
