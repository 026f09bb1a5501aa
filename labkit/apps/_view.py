"""The page every app shows: what a person ranks with, and nothing else.

```
 ┌ title ─────────────────────────────────────────────────────────────┐
 │ one line of instructions                                           │
 │ [controls ...]                                                     │
 │ ┌ ranking widget (the round) ─────────┐  ┌ your current pick ─────┐ │
 │ │  tiles, Submit ranking, Undo        │  │  the incumbent, large  │ │
 │ └─────────────────────────────────────┘  │  round N · changed K×   │ │
 │                                          │  ▫ ▫ ▫ ▫ (past picks)   │ │
 │                                          └────────────────────────┘ │
 └────────────────────────────────────────────────────────────────────┘
```

The incumbent — the optimizer's current iterate ``x`` — is what the person's rankings have made so
far, so it is shown large. The progress view says what a person can read without knowing the
maths: how many rounds they ranked, how often the kept candidate changed, and the last few kept
candidates as thumbnails (the lesson's score/step/agreement/pace panels are for people who study
the optimizer, not for the person ranking).

Order of work after a round (latency): the session shows the next round in the ranking widget
first (``Session._after_round``), and only then calls this view's listener, so the incumbent and
the thumbnails never delay the person's next round. The incumbent is rendered again only when
``x`` changed; a line-search round's winner was rendered as a candidate already, and tasks that
cache their renders (``DigitsTask``) answer it without running the model.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets
import torch

from labkit.roundlog import Round
from labkit.session import Session

__all__ = ["AppView", "IncumbentView", "limit_threads"]

#: Renders a session's incumbent for the "current pick" panel: (encoded bytes, mime).
IncumbentView = Callable[[Session], tuple[bytes, str]]

#: Past picks kept in the thumbnail strip.
_STRIP = 6
#: The most characters of an error message a visitor is shown (no paths, no tracebacks).
_ERROR_CHARS = 160


def limit_threads() -> int:
    """Set torch's compute threads to ``$LABKIT_THREADS`` (default 1) and return the number.

    ``labkit app`` runs one kernel per visitor (plus Voilà's preheated spare) on a machine that
    may have two cores: one thread per kernel keeps a second visitor, or the pool's refill, from
    starving the first visitor's rounds (OpenMP threads that wait on a descheduled sibling are
    slower than one thread alone).
    """
    text = os.environ.get("LABKIT_THREADS", "1")
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"LABKIT_THREADS must be a positive integer; got {text!r}") from None
    if n < 1:
        raise ValueError(f"LABKIT_THREADS must be a positive integer; got {text!r}")
    torch.set_num_threads(n)
    return n


def short_error(exc: BaseException) -> str:
    """What a visitor is told about a failure: one line, no traceback, cut to a sane length."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


def _image_format(mime: str) -> str:
    if not mime.startswith("image/"):
        raise ValueError(f"the current pick must be an image (image/*); the task gives {mime!r}")
    return mime.split("/", 1)[1].split("+", 1)[0]  # image/svg+xml -> svg


def task_incumbent(session: Session) -> tuple[bytes, str]:
    """The default :data:`IncumbentView`: the task's own rendering of ``x``."""
    task = session.task
    assert task is not None  # AppView.show_session checks it
    return task.render(session.optimizer.x.unsqueeze(0))[0], task.mime


@dataclass
class _Pick:
    round: int  # the round after which this was the incumbent
    changed: bool  # whether that round moved x
    thumb: bytes | None  # the incumbent's rendering when it changed (None: unchanged)


class AppView:
    """One app page: title, instructions, controls, the ranking widget, the current pick, progress.

    Args:
        title: the page's heading (plain text).
        instructions: one line telling the person what to do (plain text).
        controls: widgets shown above the round (pickers, a "new start" button, ...).
        tile_px: size of a candidate's tile in the ranking widget.
        columns: tiles per row (0: as many as fit).
        incumbent_px: width of the current pick.
        strip: show the last few picks as thumbnails under it (off where the pick is itself a
            history, like the quickstart's path map).

    ``view.widget`` is the page (an ``ipywidgets.VBox``); the view displays as it, so the view
    itself can be a cell's last expression. :meth:`show_session` puts a session on it; calling it
    again (a new start) replaces the old one, and ``view.session`` is the one on screen.
    """

    def __init__(
        self,
        *,
        title: str,
        instructions: str,
        controls: Sequence[ipywidgets.Widget] = (),
        tile_px: int = 128,
        columns: int = 4,
        incumbent_px: int = 256,
        strip: bool = True,
    ) -> None:
        for name, value in (("title", title), ("instructions", instructions)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string; got {value!r}")
        self.tile_px = tile_px
        self.columns = columns
        self.incumbent_px = incumbent_px
        self.session: Session | None = None
        self._incumbent_view: IncumbentView = task_incumbent
        self._picks: list[_Pick] = []
        self._last_x: torch.Tensor | None = None

        header = ipywidgets.HTML(
            f"<h2 style='margin:0.2em 0'>{html.escape(title)}</h2>"
            f"<div class='labkit-app-instructions'>{html.escape(instructions)}</div>"
        )
        self.controls = ipywidgets.HBox(list(controls))
        self.round_area = ipywidgets.Box()
        self.incumbent = ipywidgets.Image(format="png", width=incumbent_px)
        self.progress = ipywidgets.HTML()
        # A fixed set of thumbnails whose values change: no widget is created per round.
        self._thumbs = [
            ipywidgets.Image(
                format="png",
                width=incumbent_px // 4,
                layout=ipywidgets.Layout(display="none", margin="2px"),
            )
            for _ in range(_STRIP)
        ]
        self.strip = ipywidgets.HBox(
            self._thumbs if strip else [], layout=ipywidgets.Layout(flex_flow="row wrap")
        )
        self.message = ipywidgets.HTML()
        side = ipywidgets.VBox(
            [
                ipywidgets.HTML("<b>Your current pick</b>"),
                self.incumbent,
                self.progress,
                self.strip,
            ],
            layout=ipywidgets.Layout(margin="0 0 0 16px", min_width=f"{incumbent_px}px"),
        )
        body = ipywidgets.HBox(
            [self.round_area, side], layout=ipywidgets.Layout(align_items="flex-start")
        )
        self.widget = ipywidgets.VBox([header, self.controls, self.message, body])
        self.widget.add_class("labkit-app")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- sessions -------------------------------------------------------------------------------
    def show_session(self, session: Session, *, incumbent: IncumbentView | None = None) -> None:
        """Put ``session``'s rounds on the page (its ranking widget, no lesson plot).

        ``incumbent`` renders the current pick (default: the task's rendering of ``x``).
        """
        if not isinstance(session, Session):
            raise ValueError(f"session must be a labkit Session; got {session!r}")
        if session.task is None:
            raise ValueError("an app's session needs a task to render its candidates")
        self.session = session
        self._incumbent_view = incumbent if incumbent is not None else task_incumbent
        self._picks = []
        self._last_x = None
        session.on_round(self._on_round)
        self.round_area.children = [
            session.show(plot=False, size=self.tile_px, columns=self.columns)
        ]
        # Rounds already in the log (a resumed session) count as ranked; the strip starts now.
        self._refresh_incumbent(force=True)
        self._refresh_progress()

    def start(
        self, new_session: Callable[[], Session], *, incumbent: IncumbentView | None = None
    ) -> Session | None:
        """Start a session made by ``new_session()`` on the page (a first start, "New start").

        What fails while making or showing it is told to the visitor in one short line (no
        traceback, no path) and the page keeps what it showed; returns the session, or None.
        """
        try:
            session = new_session()
            self.say("")
            self.show_session(session, incumbent=incumbent)
        except Exception as exc:
            self.fail(exc)
            return None
        return session

    def say(self, text: str) -> None:
        """Show a short message above the round ('' clears it)."""
        self.message.value = (
            f"<div class='labkit-app-message' style='color:#a00'>{html.escape(text)}</div>"
            if text
            else ""
        )

    def fail(self, exc: BaseException) -> None:
        """Tell the visitor that something failed, in one short line."""
        self.say(short_error(exc))

    # -- after each round -----------------------------------------------------------------------
    def _on_round(self, session: Session, rnd: Round | None) -> None:
        if session is not self.session:
            return  # an older session of this page (before a new start)
        try:
            if rnd is None:  # undo
                del self._picks[len(session.history) :]
                self._refresh_incumbent(force=True)
            else:
                changed = self._refresh_incumbent(force=False)
                thumb = self.incumbent.value if changed else None
                self._picks.append(_Pick(rnd.round, changed, thumb))
            self._refresh_progress()
        except Exception as exc:  # the round was taken; only this view failed
            self.fail(exc)

    def _refresh_incumbent(self, *, force: bool) -> bool:
        """Render x again if it moved (or ``force``); return whether it moved."""
        assert self.session is not None
        x = self.session.optimizer.x
        moved = self._last_x is None or not torch.equal(x, self._last_x)
        if moved or force:
            data, mime = self._incumbent_view(self.session)
            self.incumbent.format = _image_format(mime)
            self.incumbent.value = data
            self._last_x = x.detach().clone()
        return moved

    def _refresh_progress(self) -> None:
        assert self.session is not None
        ranked = self.session.round
        changes = sum(p.changed for p in self._picks)
        rounds = "1 round" if ranked == 1 else f"{ranked} rounds"
        self.progress.value = (
            f"<div class='labkit-app-progress'>{rounds} ranked · your pick changed {changes}×</div>"
        )
        thumbs = [p.thumb for p in self._picks if p.thumb is not None][-_STRIP:]
        with self.strip.hold_sync():
            for i, image in enumerate(self._thumbs):
                if i < len(thumbs):
                    image.format = self.incumbent.format
                    image.value = thumbs[i]
                    image.layout.display = ""
                else:
                    image.layout.display = "none"
