"""The server a benchmark or a browser test runs: a free port, up, and stopped with its tree."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

from labkit.bench._server import ServerError, ServerProcess, free_port, running_server

# A server that also starts a child of its own, as Voilà starts kernels.
_SERVER = """
import http.server, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
address = ("127.0.0.1", int(sys.argv[1]))
http.server.HTTPServer(address, http.server.BaseHTTPRequestHandler).serve_forever()
"""


def test_a_server_is_up_once_it_listens_and_stopped_with_everything_below_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    argv = [sys.executable, "-c", _SERVER, str(port)]
    log = tmp_path / "server.log"
    with running_server(argv, port=port, log=log, wait=lambda s: s.wait_listening(60)) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        below = psutil.Process(server.pid).children(recursive=True)
        assert below
    assert not psutil.pid_exists(server.pid) or server.proc.poll() is not None
    for proc in below:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


def test_a_server_that_exits_early_fails_with_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('no port for me'); raise SystemExit(3)"]
    server = ServerProcess(argv, port=free_port(), log=tmp_path / "server.log")
    try:
        with pytest.raises(ServerError, match="exited with 3 before listening") as caught:
            server.wait_listening(60)
        assert "no port for me" in str(caught.value)
        with pytest.raises(ServerError, match="exited with 3 before printing its link"):
            server.wait_for_link(60)
    finally:
        server.stop()
