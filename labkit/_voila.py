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
* **Cap.** While ``max_kernels`` visitors hold a kernel, the next one gets a short 503 page ("the
  app is full, try again shortly") instead of a kernel that would exhaust the memory. Visitors are
  counted as the manager's kernels less the preheated pool (:meth:`_Gate.visitors`); a pool
  refill still starting is not yet a kernel, so at worst ``max_kernels + pool_size`` visitors
  hold kernels for the seconds a refill takes.
* **Errors.** The page handler's errors are one fixed sentence each: no traceback, no path, nothing
  of the request echoed. Tracebacks of failing cells are off (``show_tracebacks``, set by
  ``labkit.app``).
* **Framing.** ``Content-Security-Policy: frame-ancestors 'self'`` (and ``X-Frame-Options``) on
  every Jupyter handler's response; ``Referrer-Policy: no-referrer`` keeps the tokened URL from
  leaking to a link's target.
* **Status.** ``GET {base_url}labkit/status`` (token required) answers JSON ``{"kernels": n,
  "visitors": v, "warm": w, "max_kernels": N}``: ``labkit app`` waits for it before printing the
  URL, and the tests and the load benchmark read kernel counts from it.

Culling of idle kernels is Jupyter's own (``MappingKernelManager.cull_idle_timeout``, set by
``labkit.app``); Voilà's kernel manager never culls its preheated pool.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    # Run as a file: its folder, labkit/, is sys.path[0], where labkit's own modules (app, cli,
    # session, widgets, ...) would shadow any top-level module of that name.
    del sys.path[0]

import html
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import tornado.web
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


class _Gate:
    """Admission of visitors: at most ``max_kernels`` of them hold a kernel at once.

    Tornado runs handlers on one thread, so the check and the count of admissions in flight
    happen without a lock.
    """

    def __init__(self, max_kernels: int) -> None:
        self.max_kernels = max_kernels
        self.admitting = 0  # admitted requests whose kernel may not be in the manager yet

    @staticmethod
    def visitors(kernel_manager: Any, notebook: str) -> tuple[int, int, int]:
        """(kernels, visitors, warm): the manager's kernels, those held by visitors, the pool."""
        kernels = len(kernel_manager.list_kernel_ids())
        warm = kernel_manager.get_pool_size(notebook)  # ready or starting
        return kernels, max(kernels - warm, 0), warm

    def full(self, kernel_manager: Any, notebook: str) -> bool:
        _, visitors, _ = self.visitors(kernel_manager, notebook)
        return visitors + self.admitting >= self.max_kernels

    @contextmanager
    def admitted(self) -> Iterator[None]:
        self.admitting += 1
        try:
            yield
        finally:
            self.admitting -= 1


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
        if self._gate.full(self.kernel_manager, self.notebook_path):
            self.log.warning("labkit: the app is full (%d visitors)", self._gate.max_kernels)
            raise tornado.web.HTTPError(503)
        # Admitted until the page's first bytes go out: by then its kernel is in the manager.
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
        kernels, visitors, warm = self._gate.visitors(self.kernel_manager, self._notebook)
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {
                    "kernels": kernels,
                    "visitors": visitors,
                    "warm": warm,
                    "max_kernels": self._gate.max_kernels,
                }
            )
        )


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
        return settings

    def init_handlers(self) -> list[Any]:
        if not self.notebook_path:
            raise ValueError("labkit's Voilà serves one notebook; none was given")
        gate = _Gate(self.max_kernels)
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
