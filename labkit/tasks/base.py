"""The Task contract: what a candidate vector means to whoever judges it.

A task maps the ``m × *shape`` candidates of a round to what a person judges (``render``) and,
where a machine judge exists, to scores (``score``). A task never owns the optimizer.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Task"]


@runtime_checkable
class Task(Protocol):
    """What the session needs of a task.

    Attributes:
        maximize: whether a higher ``score`` is better.
        mime: the media type of what ``render`` returns (``"image/png"``, ``"image/gif"``,
            ``"video/mp4"``, ``"image/svg+xml"``); the widget shows it accordingly.
    """

    maximize: bool
    mime: str

    def render(self, X: torch.Tensor) -> list[bytes]:
        """One encoded item (bytes of ``mime``) per row of the ``m × *shape`` candidates."""
        ...

    def score(self, X: torch.Tensor) -> torch.Tensor:
        """Scores of the ``m × *shape`` candidates, an ``(m,)`` tensor (see ``maximize``)."""
        ...
