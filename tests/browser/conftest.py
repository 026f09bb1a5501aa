"""Fixtures of the browser tests: free ports, real servers on 127.0.0.1, Debian's chromium.

Every server is started by a test in a process group of its own (``start_new_session``), with a
fresh HOME, Jupyter runtime/config dirs and JupyterLab settings/workspaces dirs under the test's
temporary folder, so nothing from an earlier run (an open tab, a saved layout) can match a
selector. At teardown, even after a failure, the server gets SIGTERM (it shuts its kernels down),
then SIGKILL for the whole group and for every process that descended from it (kernels run in
process groups of their own), each by its id. Starting and stopping is
:mod:`labkit.bench._server`'s, the same the latency, load and crowd benchmarks use.

``labkit app`` is started through :func:`running_app`, which waits for the tokened link the command
prints on a line of its own once its server answers (:func:`labkit.app.printed_link`) and hands it
to the test as ``server.link``: a test never builds the app's URL itself.

Chromium is Debian's ``/usr/bin/chromium`` (never ``playwright install``); the tests skip with a
reason when it or Playwright is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from labkit.bench._server import (
    ServerError,
    ServerProcess,
    free_port,  # noqa: F401 - re-exported to the tests
)
from labkit.bench._server import running_server as _running
from tests.conftest import CHROMIUM, CHROMIUM_FLAGS  # noqa: F401 - re-exported to the tests

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
ARTIFACTS = REPO / "test-artifacts"

# A 2-core CI machine starting a kernel that imports torch, matplotlib and plotly: be generous.
SERVER_START_S = 90.0
KERNEL_RUN_S = 180.0


#: A server started for a test (:class:`labkit.bench._server.ServerProcess`, which the benchmarks
#: use too): ``url``, ``link`` (``labkit app``'s tokened link), ``log_tail()``, ``proc``.
Server = ServerProcess


def server_env(root: Path, *, db: Path) -> dict[str, str]:
    """An environment with fresh Jupyter dirs under ``root``, SMOKE on and the log at ``db``."""
    env = dict(os.environ)
    dirs = {
        "HOME": root / "home",
        "JUPYTER_RUNTIME_DIR": root / "runtime",
        "JUPYTER_CONFIG_DIR": root / "config",
        "JUPYTERLAB_SETTINGS_DIR": root / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": root / "lab-workspaces",
        "IPYTHONDIR": root / "ipython",
        "MPLCONFIGDIR": root / "mpl",
        # No user-level kernelspecs or extensions from earlier set-ups on this machine.
        "JUPYTER_DATA_DIR": root / "data",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["LABKIT_SMOKE"] = "1"
    env["LABKIT_DB"] = str(db)
    # One compute thread per kernel: a visitor's kernel, Voilà's preheated refill and chromium
    # share two cores here, and spinning OpenMP threads of two kernels starve each other.
    env["OMP_NUM_THREADS"] = "1"
    # The kernel imports the labkit of this working tree, whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("JUPYTER_TOKEN", None)
    return env


@contextlib.contextmanager
def running_server(
    argv: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    wait: Callable[[Server], object] | None = None,
) -> Iterator[Server]:
    """Start a server, ``wait`` until it is up (default: it listens), yield it, and stop it
    whatever happened; a server that exits or does not come up fails the test with its log."""
    up = wait or (lambda server: server.wait_listening(SERVER_START_S))

    def wait_or_fail(server: Server) -> None:
        try:
            up(server)
        except ServerError as exc:
            pytest.fail(str(exc))

    with _running(argv, port=port, log=log_path, wait=wait_or_fail, env=env, cwd=cwd) as server:
        yield server


def running_app(
    argv: Sequence[str], *, port: int, env: Mapping[str, str], cwd: Path, log_path: Path
) -> contextlib.AbstractContextManager[Server]:
    """Start ``labkit app ... --port=port``, wait for the link it prints (``server.link``),
    yield the server, and stop it whatever happened."""

    def printed(server: Server) -> object:
        return server.wait_for_link(SERVER_START_S)

    return running_server(argv, port=port, env=env, cwd=cwd, log_path=log_path, wait=printed)


def jupyter_bin(name: str) -> str:
    """The console script ``name`` next to this Python (so the test's environment is used)."""
    candidate = Path(sys.executable).with_name(name)
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"needs the {name!r} command")
    return found


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/browser/`` at the repository root (gitignored): screenshots go here."""
    path = ARTIFACTS / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- driving the ranking widget in a page ------------------------------------------------------
# The widget's accessibility contract (labkit/widgets/ranker.py): the list is role=list named
# "Candidates", each tile role=listitem named "Candidate N" (N its display label, 1-based), drag
# handles "Drag handle for candidate N", the button "Submit ranking". The front end
# (widgets/src/ranker.js) also puts the candidate index on each tile as data-candidate (and the
# label as data-label): that is how a test maps what it sees to the rows the kernel logs.


def candidates(page: Any) -> Any:
    """The widget's candidate list.

    An app may show several sessions (a lesson's automated run below the person's): the helpers
    here always act on the first ranking widget of the page, the person's.
    """
    return page.get_by_role("list", name="Candidates").first


def dom_order(page: Any) -> list[int]:
    """Candidate indices of the tiles, top to bottom, as the DOM holds them now."""
    return [
        int(c)
        for c in candidates(page)
        .get_by_role("listitem")
        .evaluate_all("nodes => nodes.map(n => n.dataset.candidate)")
    ]


def label_map(page: Any) -> dict[int, int]:
    """Display label -> candidate index, read from each tile's aria-label and data-candidate."""
    pairs = (
        candidates(page)
        .get_by_role("listitem")
        .evaluate_all(
            "nodes => nodes.map(n => [n.getAttribute('aria-label'), Number(n.dataset.candidate)])"
        )
    )
    out: dict[int, int] = {}
    for aria, candidate in pairs:
        assert aria.startswith("Candidate "), aria
        out[int(aria.removeprefix("Candidate "))] = int(candidate)
    return out


def wait_for_widget(
    page: Any, server: Server, shot: Path, *, start: Callable[[], None] | None = None
) -> None:
    """Run ``start`` (what makes the notebook run, if the page needs telling) and wait until the
    page shows the widget's round 0; on any failure save ``shot`` and fail with the server's
    log (the kernel's traceback is usually there)."""
    try:
        if start is not None:
            start()
        candidates(page).wait_for(state="visible", timeout=KERNEL_RUN_S * 1000)
        wait_for_round(page, 0, timeout_s=KERNEL_RUN_S)
    except Exception:
        page.screenshot(path=str(shot))
        raise AssertionError(
            f"the widget did not render; server log:\n{server.log_tail()}"
        ) from None


def shown_round(page: Any) -> int:
    """The round id in the widget's title ("Round N")."""
    title = page.locator(".lk-ranker .lk-title").first.inner_text()
    assert title.startswith("Round "), title
    return int(title.removeprefix("Round "))


def wait_for_round(page: Any, round_id: int, *, timeout_s: float) -> None:
    """Wait until the widget shows round ``round_id`` with its tiles and an enabled Submit."""
    page.locator(".lk-ranker .lk-title", has_text=f"Round {round_id}").first.wait_for(
        state="visible", timeout=timeout_s * 1000
    )
    submit = page.get_by_role("button", name="Submit ranking").first
    deadline = time.monotonic() + timeout_s
    while not submit.is_enabled():
        if time.monotonic() > deadline:
            raise AssertionError(f"Submit stayed disabled in round {round_id}")
        time.sleep(0.05)


def drag_tile_to_top(page: Any, label: int) -> list[int]:
    """Drag tile ``label`` by its handle, with the mouse, onto the first tile; the new DOM order.

    Real pointer events (down, several moves, up), as a person makes them; SortableJS runs in
    fallback mode, so this is the path a mouse takes in JupyterLab and Voilà alike.
    """
    the_list = candidates(page)
    the_list.scroll_into_view_if_needed()
    dragged = label_map(page)[label]
    first = the_list.get_by_role("listitem").first
    handle = page.get_by_label(f"Drag handle for candidate {label}", exact=True).first
    handle.scroll_into_view_if_needed()
    h = handle.bounding_box()
    t = first.bounding_box()
    assert h is not None and t is not None
    page.mouse.move(h["x"] + h["width"] / 2, h["y"] + h["height"] / 2)
    page.mouse.down()
    page.mouse.move(h["x"] + h["width"] / 2 + 6, h["y"] + h["height"] / 2 + 6, steps=4)
    page.mouse.move(t["x"] + 12, t["y"] + 20, steps=20)
    page.mouse.move(t["x"] + 8, t["y"] + 20, steps=4)
    # SortableJS (fallback mode) checks the drop target on a 50 ms timer, not at pointer up:
    # hold the pointer over the target until the dragged tile has moved there, as a hand does.
    deadline = time.monotonic() + 5.0
    while dom_order(page)[0] != dragged and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    page.mouse.up()
    return dom_order(page)


def wait_logged(db: Path, name: str, count: int, *, timeout_s: float) -> list[Any]:
    """The live rounds of the session called ``name`` in the log at ``db``, once ``count`` exist.

    Read with :class:`labkit.roundlog.RoundLog`, from this process, as any reader of the log would.
    """
    from labkit.roundlog import RoundLog

    deadline = time.monotonic() + timeout_s
    rounds: list[Any] = []
    while time.monotonic() < deadline:
        if db.exists():
            with RoundLog(db) as log:
                ids = [s for s in log.sessions() if log.session_meta(s).get("name") == name]
                assert len(ids) <= 1, f"several sessions called {name!r} in {db}"
                rounds = log.rounds(ids[0], with_candidates=False) if ids else []
        if len(rounds) >= count:
            return rounds
        time.sleep(0.2)
    raise AssertionError(f"{count} rounds of {name!r} expected in {db}; found {len(rounds)}")


def rank_by_drag_and_check(page: Any, db: Path, shot: Path, *, timeout_s: float) -> None:
    """One round by mouse: drag the last tile to the top, submit, check the kernel's log."""
    r = shown_round(page)
    before = len(wait_logged(db, "app-quickstart", r, timeout_s=timeout_s))
    shown = dom_order(page)
    labels = label_map(page)
    last_label = len(shown)
    dragged = labels[last_label]
    order = drag_tile_to_top(page, last_label)
    # The drag moved the last tile to the top and kept the others' order.
    assert order == [dragged] + [c for c in shown if c != dragged], (shown, order)
    page.screenshot(path=str(shot))
    page.get_by_role("button", name="Submit ranking").first.click()
    wait_for_round(page, r + 1, timeout_s=timeout_s)
    rounds = wait_logged(db, "app-quickstart", before + 1, timeout_s=timeout_s)
    assert len(rounds) == before + 1
    assert rounds[-1].round == r
    assert list(rounds[-1].ranking) == order, "the log must hold the ranking the page showed"
    assert rounds[-1].rater == "visitor" and rounds[-1].m == len(shown)


def rank_by_keyboard_and_check(page: Any, db: Path, shot: Path, *, timeout_s: float) -> None:
    """One round by keyboard only: labels 3 then 1, Enter; check the kernel's log."""
    r = shown_round(page)
    before = len(wait_logged(db, "app-quickstart", r, timeout_s=timeout_s))
    shown = dom_order(page)
    labels = label_map(page)
    expected = [labels[3], labels[1]] + [c for c in shown if c not in (labels[3], labels[1])]
    root = page.locator(".lk-ranker").first
    root.scroll_into_view_if_needed()
    root.focus()  # as Tab would: the widget's root is focusable (tabindex=0)
    page.keyboard.press("3")
    page.keyboard.press("1")
    assert dom_order(page) == expected
    page.screenshot(path=str(shot))
    page.keyboard.press("Enter")
    wait_for_round(page, r + 1, timeout_s=timeout_s)
    rounds = wait_logged(db, "app-quickstart", before + 1, timeout_s=timeout_s)
    assert len(rounds) == before + 1
    assert rounds[-1].round == r
    logged = list(rounds[-1].ranking)
    # A full round logs the whole order; a top-k round (the map's line-search rounds ask for
    # the best 1) its first k.
    assert logged == expected[: len(logged)] and len(logged) in (1, len(expected)), logged
