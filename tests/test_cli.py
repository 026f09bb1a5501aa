"""The `labkit` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labkit import cli


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for command in ("app", "lab", "bench"):
        assert command in out


def test_console_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "labkit", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "ZO-RankSGD" in proc.stdout


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        cli.main(["frobnicate"])
    assert err.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_app_list_names_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["app", "--list"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "(default)" in out and "quickstart" in out


def test_app_refuses_an_unknown_app_and_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["app", "nope"])
    assert "no app 'nope'" in capsys.readouterr().err
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(SystemExit):
            cli.main(["app", "quickstart", "--port", str(port), "--no-browser"])
    assert "in use" in capsys.readouterr().err


def test_import_labkit_and_the_app_command_load_no_torch() -> None:
    # `labkit app` starts a server that never needs torch; its import would cost seconds of every
    # start. The public names are still there, imported on first use.
    code = (
        "import sys, labkit, labkit.cli, labkit.app\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert labkit.ZORankSGD.__name__ == 'ZORankSGD' and 'torch' in sys.modules\n"
        "from labkit import Session, RoundLog\n"
        "assert set(labkit.__all__) <= set(dir(labkit))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
