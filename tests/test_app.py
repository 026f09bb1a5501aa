"""`labkit app`: the Voilà command line it builds, its checks, and its server behind the token.

The server tests start ``labkit app quickstart`` for real (no browser: plain HTTP requests from
this process) and read the tokened link it prints, as a person would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import app
from labkit._voila import TOKEN_ENV
from labkit.app import TOKEN_ENV as TOKEN_ENV_OF_APP
from tests.browser.conftest import free_port, running_app, server_env


def _value(cmd: list[str], option: str) -> str:
    (found,) = [c.split("=", 1)[1] for c in cmd if c.startswith(option + "=")]
    return found


def test_every_app_has_its_notebook_under_apps() -> None:
    for a in app.APPS.values():
        assert a.notebook == f"apps/{a.name}.ipynb"
        assert (app.notebooks_dir() / a.notebook).is_file(), a.notebook
    assert app.DEFAULT_APP == next(iter(app.APPS))
    assert [a.name for a in app.APPS.values() if a.needs_pipeline] == ["pipeline"]


def test_voila_command_serves_on_loopback_with_preheated_capped_culled_kernels() -> None:
    cmd = app.voila_command(app.APPS["quickstart"], port=9999, max_kernels=3, cull_after=120)
    assert cmd[1].endswith("labkit/_voila.py") and cmd[2].endswith("apps/quickstart.ipynb")
    assert _value(cmd, "--Voila.ip") == "127.0.0.1" and _value(cmd, "--port") == "9999"
    assert _value(cmd, "--Voila.port_retries") == "0" and "--no-browser" in cmd
    assert _value(cmd, "--preheat_kernel") == "True" and _value(cmd, "--pool_size") == "1"
    assert _value(cmd, "--LabkitVoila.max_kernels") == "3"
    assert _value(cmd, "--VoilaConfiguration.show_tracebacks") == "False"
    assert _value(cmd, "--MappingKernelManager.cull_idle_timeout") == "120"
    assert _value(cmd, "--MappingKernelManager.cull_interval") == "30"
    assert _value(cmd, "--MappingKernelManager.cull_connected") == "True"
    assert not any("token" in c for c in cmd), "the token never goes on a command line"
    assert json.loads(_value(cmd, "--VoilaConfiguration.extension_denylist")) == [
        "jupyterlab-plotly",
        "jupyterlab_pygments",
    ]
    assert float(_value(cmd, "--VoilaKernelManager.fill_delay")) > 3  # after a page's load


def test_the_link_has_the_token_and_the_prefix() -> None:
    assert app.app_url(ip="127.0.0.1", port=8866, base_url="/", token="ab") == (
        "http://127.0.0.1:8866/?token=ab"
    )
    assert app.app_url(ip="0.0.0.0", port=80, base_url="/lk/", token="ab") == (
        "http://127.0.0.1:80/lk/?token=ab"
    )
    out = "[LabkitVoila] http://127.0.0.1:1/ (labkit app prints ...)\nhttp://h:2/x/?token=0f\n"
    assert app.printed_link(out) == "http://h:2/x/?token=0f"
    assert app.printed_link("labkit app digits: starting ...\n") is None


@pytest.mark.parametrize(
    ("text", "expected"), [("/", "/"), ("lk", "/lk/"), ("/a/b", "/a/b/"), ("//a//", "/a/")]
)
def test_base_url_is_normalized(text: str, expected: str) -> None:
    assert app._base_url(text) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pipeline"], "needs --pipeline PATH"),
        (["pipeline", "--pipeline", "/nonexistent"], "has no model_index.json"),
        (["quickstart", "--pipeline", "/tmp"], "--pipeline is for the pipeline app"),
        (["quickstart", "--max-kernels", "0"], "--max-kernels must be >= 1"),
        (["quickstart", "--cull-after", "0"], "--cull-after must be >= 1"),
        (["quickstart", "--threads", "0"], "--threads must be >= 1"),
        (["quickstart", "--ip", "1.2.3.4", "--public"], "not allowed with argument"),
        (["quickstart", "--base-url", "http://x/"], "expected a path like /labkit/"),
    ],
)
def test_bad_options_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as err:
        app.main_app([*argv, "--no-browser"])
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_the_voila_server_refuses_to_start_without_a_token() -> None:
    assert TOKEN_ENV == TOKEN_ENV_OF_APP
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    proc = subprocess.run(
        [sys.executable, str(Path(app.__file__).with_name("_voila.py")), "x.ipynb"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and TOKEN_ENV in proc.stderr


def _get(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


@pytest.fixture
def capped_app(tmp_path: Path) -> Iterator[str]:
    """``labkit app quickstart`` with no warm kernel, one visitor at most, culled after 3 s."""
    port = free_port()
    argv = [sys.executable, "-m", "labkit", "app", "quickstart", f"--port={port}"]
    argv += ["--no-browser", f"--db={tmp_path / 'rounds.sqlite'}", "--pool-size=0"]
    argv += ["--max-kernels=1", "--cull-after=3"]
    env = server_env(tmp_path, db=tmp_path / "ignored.sqlite")
    log = tmp_path / "server.log"
    with running_app(argv, port=port, env=env, cwd=tmp_path, log_path=log) as server:
        yield server.link


@pytest.mark.slow
def test_token_cap_headers_and_culling(capped_app: str) -> None:
    link = capped_app
    bare, _, token = link.partition("?token=")
    assert bare == link[: link.index("?")] and len(token) >= 32
    # 1. No token: a short 403 page, and no kernel started.
    status, headers, body = _get(bare)
    assert status == 403 and "token" in body and len(body) < 400 and "/root" not in body
    assert headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    status, _, _ = _get(bare + "?token=" + "0" * len(token))
    assert status == 403
    time.sleep(0.5)
    assert app.server_status(link) == {
        "kernels": 0,
        "visitors": 0,
        "warm": 0,
        "pending": 0,
        "max_kernels": 1,
    }
    # 2. The link: the page, with its kernel, framed by nobody else.
    status, headers, body = _get(link)
    assert status == 200 and "kernelId" in body
    assert headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert app.server_status(link)["visitors"] == 1
    # 3. A second visitor while the first holds the only kernel: the app is full.
    status, headers, body = _get(bare, headers={"Authorization": f"token {token}"})
    assert status == 503 and "The app is full, try again shortly." in body
    assert len(body) < 400 and headers["Retry-After"]
    # 4. Nobody connected to the first page's kernel: it is culled within seconds.
    deadline = time.monotonic() + 60
    while app.server_status(link)["kernels"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert app.server_status(link)["kernels"] == 0
    status, _, _ = _get(link)
    assert status == 200, "room again once the kernel was culled"


def test_the_round_log_is_given_db_else_labkit_db_and_a_url_passes_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the kernels get as LABKIT_DB, and what labkit app prints for it."""
    url = "postgresql://ada:s3cret@db.example:5432/labkit"
    db, shown = app._log_target(url)
    assert db == url and "s3cret" not in shown and "db.example:5432/labkit" in shown
    monkeypatch.setenv("LABKIT_DB", str(tmp_path / "sub" / "env.sqlite"))
    db, shown = app._log_target(None)  # no --db: $LABKIT_DB
    assert db == shown == str((tmp_path / "sub" / "env.sqlite").resolve())
    assert (tmp_path / "sub").is_dir()  # its folder is made, the file is not
    monkeypatch.setenv("LABKIT_DB", url)
    assert app._log_target(None)[0] == url  # a URL in the environment stays a URL
    assert app._log_target(str(tmp_path / "given.sqlite"))[0].endswith("given.sqlite")
    with pytest.raises(ValueError, match=r"a file or a postgresql:// URL; got 'mysql://ada@h/x'"):
        app._log_target("mysql://ada:pw@h/x")
