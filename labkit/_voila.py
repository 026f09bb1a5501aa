"""The Voilà server behind ``labkit app``: Voilà 0.5 with a token, a cap and short errors.

``labkit.app`` runs this file as a script, ``python .../labkit/_voila.py NOTEBOOK [Voilà
options]``, so the server never imports labkit (nor torch: a lighter, faster server), with the
token in the environment variable ``LABKIT_APP_TOKEN`` (never on a command line, where ``ps``
would show it); it is taken out of the environment before any kernel starts. Nothing here imports
labkit. What this changes in Voilà's
single-notebook server, and why:

* **Token.** Every request needs the token, in the URL (``?token=...``) or in the cookie the first
  tokened page sets (the websocket of the page's kernel rides on that cookie). A request without
  either gets a short 403 page: no login form, so no kernel is started and there is nothing to
  guess at. Tokens are scrubbed from the request log.
* **Cap.** While ``max_kernels`` visitors hold a kernel (or are getting one), the next one gets a
  short 503 page ("the app is full, try again shortly") instead of a kernel that would exhaust
  the memory (:class:`_Gate`). The preheated pool (``--pool_size``) comes on top. A warm kernel
  handed to a visitor counts as active from then on, so the culler cannot take it in the seconds
  before the page connects, however long it waited in the pool.
* **Errors.** The page handler's errors are one fixed sentence each: no traceback, no path, nothing
  of the request echoed. Tracebacks of failing cells are off (``show_tracebacks``, set by
  ``labkit.app``).
* **Framing.** ``Content-Security-Policy: frame-ancestors 'self'`` (and ``X-Frame-Options``) on
  every Jupyter handler's response; ``Referrer-Policy: no-referrer`` keeps the tokened URL from
  leaking to a link's target.
* **Status.** ``GET {base_url}labkit/status`` (token required) answers JSON ``{"kernels": n,
  "visitors": v, "warm": w, "pending": p, "max_kernels": N}``: ``labkit app`` waits for it
  before printing the URL, and the tests and the load benchmark read kernel counts from it.

Culling of idle kernels is Jupyter's own (``MappingKernelManager.cull_idle_timeout``, set by
``labkit.app``); Voilà's kernel manager never culls its preheated pool.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    # Run as a file: its folder, labkit/, is sys.path[0], where labkit's own modules (app, cli,
    # session, widgets, ...) would shadow any top-level module of that name.
    del sys.path[0]

import contextlib
import contextvars
import html
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import tornado.web
from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from jupyter_server.log import log_request
from jupyter_server.utils import url_path_join
from traitlets import Integer
from voila.app import Voila
from voila.tornado.handler import TornadoVoilaHandler

__all__ = ["LabkitVoila", "main"]

#: The environment variable that carries the token from ``labkit app`` to this server.
TOKEN_ENV = "LABKIT_APP_TOKEN"

#: What a visitor reads on an error page, by HTTP status; anything else gets ``_OTHER``.
_MESSAGES = {
    403: "This app needs its full link, with the token: ask whoever started it for the link.",
    404: "There is nothing here.",
    503: "The app is full, try again shortly.",
}
_OTHER = "Something went wrong on the server; reload the page to try again."

#: Headers on every response of a Jupyter handler (pages, API, websockets).
_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "no-referrer",
}


#: The admission of the page request running in this asyncio task (None outside one): the
#: kernel manager's hooks settle it when they learn the visitor's kernel.
_ADMISSION: contextvars.ContextVar[_Admission | None] = contextvars.ContextVar(
    "labkit_admission", default=None
)


class _Admission:
    """One admitted page request, pending until its kernel is known."""

    settled = False


class _Gate:
    """Admission of visitors: at most ``max_kernels`` of them hold a kernel at once.

    A visitor's kernel is one the page handler had started (``start_kernel``) or handed out from
    the preheated pool (``get_rendered_notebook``): :meth:`watch` wraps those two methods of the
    kernel manager *instance*, which only the page handler calls (the pool starts its kernels
    through the class's own ``start_kernel``). A request counts as pending from its admission until
    its kernel is known, so a burst of requests cannot all pass the check at once. Tornado runs
    handlers on one thread: no lock.
    """

    def __init__(self, max_kernels: int) -> None:
        self.max_kernels = max_kernels
        self.pending = 0
        self._kernel_ids: set[str] = set()
        self._km: Any = None

    def watch(self, kernel_manager: Any) -> None:
        """Learn the visitors' kernels of ``kernel_manager`` (Voilà's preheating manager)."""
        self._km = kernel_manager
        start_kernel = kernel_manager.start_kernel
        get_rendered_notebook = kernel_manager.get_rendered_notebook

        async def started(*args: Any, **kwargs: Any) -> str:
            kernel_id = await ensure_async(start_kernel(*args, **kwargs))
            self._settle(kernel_id)
            return str(kernel_id)

        async def handed_out(*args: Any, **kwargs: Any) -> Any:
            task, rendered, kernel_id = await get_rendered_notebook(*args, **kwargs)
            # A warm kernel may have sat idle in the pool longer than the cull timeout: it is
            # the visitor's from now, so the culler must not take it before the page connects.
            kernel_manager.get_kernel(kernel_id).last_activity = datetime.now(timezone.utc)
            self._settle(kernel_id)
            return task, rendered, kernel_id

        kernel_manager.start_kernel = started
        kernel_manager.get_rendered_notebook = handed_out

    def _settle(self, kernel_id: str) -> None:
        self._kernel_ids.add(kernel_id)
        admission = _ADMISSION.get()
        if admission is not None and not admission.settled:
            admission.settled = True
            self.pending -= 1

    def counts(self, notebook: str) -> dict[str, int]:
        """The manager's kernels, the visitors' among them, the warm pool, pending requests."""
        live = set(self._km.list_kernel_ids())
        self._kernel_ids &= live  # culled or shut down: no longer a visitor's
        return {
            "kernels": len(live),
            "visitors": len(self._kernel_ids),
            "warm": self._km.get_pool_size(notebook),  # ready or starting
            "pending": self.pending,
            "max_kernels": self.max_kernels,
        }

    def full(self, notebook: str) -> bool:
        c = self.counts(notebook)
        return c["visitors"] + c["pending"] >= self.max_kernels

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Count the request running in this task as pending until its kernel is known."""
        admission = _Admission()
        token = _ADMISSION.set(admission)
        self.pending += 1
        try:
            yield
        finally:
            if not admission.settled:
                admission.settled = True
                self.pending -= 1
            _ADMISSION.reset(token)


def _error_page(handler: tornado.web.RequestHandler, status_code: int) -> None:
    text = _MESSAGES.get(status_code, _OTHER)
    handler.set_header("Content-Type", "text/html; charset=utf-8")
    if status_code == 503:
        handler.set_header("Retry-After", "30")
    handler.finish(
        "<!doctype html><meta charset='utf-8'><title>labkit</title>"
        f"<p style='font:16px sans-serif;margin:2em'>{html.escape(text)}</p>\n"
    )


class AppPageHandler(TornadoVoilaHandler):
    """Voilà's page handler behind the token and the gate, with short error pages."""

    def initialize(self, **kwargs: Any) -> None:
        self._gate: _Gate = kwargs.pop("gate")
        super().initialize(**kwargs)

    def get_login_url(self) -> str:
        # Called by @authenticated for a request without token or cookie: refuse it here instead
        # of redirecting to a login form.
        raise tornado.web.HTTPError(403)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        _error_page(self, status_code)

    @tornado.web.authenticated
    async def get(self, path: str | None = None) -> None:
        if path:  # not the app itself (a file next to it): Voilà redirects, starting nothing
            await super().get(path=path)
            return
        if self._gate.full(self.notebook_path):
            self.log.warning("labkit: the app is full (%d visitors)", self._gate.max_kernels)
            raise tornado.web.HTTPError(503)
        with self._gate.admitted():
            pages = self.get_generator(path=path)
            first = await anext(pages, None)
        if first is None:
            return
        self.write(first)
        self.flush()
        async for chunk in pages:
            self.write(chunk)
            self.flush()


class StatusHandler(APIHandler):
    """``GET labkit/status``: kernel counts, as JSON, for whoever holds the token."""

    def initialize(self, *, gate: _Gate, notebook: str) -> None:
        self._gate = gate
        self._notebook = notebook

    @tornado.web.authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self._gate.counts(self._notebook)))


class LabkitVoila(Voila):
    """Voilà serving one notebook, with labkit's token, cap, headers and error pages."""

    name = "labkit-voila"
    max_kernels = Integer(8, config=True, help="visitors that may hold a kernel at once")

    @property
    def display_url(self) -> str:
        # Voilà logs this at start; the one link to open, with the token, is labkit app's.
        return f"{self.connection_url} (labkit app prints the link with its token)"

    def init_settings(self) -> dict[str, Any]:
        settings = super().init_settings()
        # Read by every Jupyter handler's set_default_headers (Voilà.tornado_settings, applied
        # after this, may replace them).
        settings["headers"] = dict(_HEADERS)
        # jupyter_server's request log, which scrubs ?token=... from the logged URLs.
        settings["log_function"] = log_request
        self._gate = _Gate(self.max_kernels)
        self._gate.watch(self.kernel_manager)
        return settings

    def init_handlers(self) -> list[Any]:
        if not self.notebook_path:
            raise ValueError("labkit's Voilà serves one notebook; none was given")
        gate = self._gate
        login = {spec[0] for spec in self.identity_provider.get_handlers()}
        handlers = []
        for spec in super().init_handlers():
            if spec[0] in login:
                continue  # no login form: the token comes in the link
            if spec[1] is TornadoVoilaHandler:
                spec = (spec[0], AppPageHandler, {**spec[2], "gate": gate})
            handlers.append(spec)
        notebook = os.path.relpath(self.notebook_path, self.root_dir)
        status = url_path_join(self.server_url or self.base_url, "/labkit/status")
        # Before Voilà's catch-all page route, which would otherwise take this path.
        handlers.insert(0, (status, StatusHandler, {"gate": gate, "notebook": notebook}))
        return handlers


def main(argv: list[str] | None = None) -> None:
    """Serve a notebook; the token is taken from ``$LABKIT_APP_TOKEN`` (required)."""
    token = os.environ.pop(TOKEN_ENV, "")
    if not token:
        sys.exit(f"labkit._voila: set {TOKEN_ENV} to the token the app requires")
    os.environ.pop("JUPYTER_TOKEN", None)
    args = list(sys.argv[1:] if argv is None else argv)
    LabkitVoila.launch_instance([*args, f"--Voila.token={token}"])


if __name__ == "__main__":
    main()
