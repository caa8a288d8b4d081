"""A town's processes log into logs/<name>.log of the state folder: each run of the demo or the
benchmark starts a fresh one, the run before kept as <name>.log.1 (one generation), so that
the logs do not grow across runs without bound; a process started again within the run (a crash
test's restart) goes on in its run's log, its earlier lines kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from renkei import town
from renkei.state import STATE_ENV


def _said(line: str) -> list[str]:
    """A process that says `line` and ends (a renkei command's start would take a second)."""
    return [sys.executable, "-c", f"print({line!r})"]


def _run(procs: town.Processes, name: str, line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(town, "renkei_command", lambda *args: _said(line))
        procs.start(name, "ignored")
    assert procs.running.pop(name).wait(30) == 0


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_each_run_starts_a_fresh_log_keeping_the_one_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    logs = tmp_path / "logs"
    _run(town.Processes(), "audit", "first run", monkeypatch)
    first = town.Processes()
    _run(first, "audit", "second run", monkeypatch)
    _run(first, "audit", "second run, started again", monkeypatch)
    assert _lines(logs / "audit.log") == ["second run", "second run, started again"]
    assert _lines(logs / "audit.log.1") == ["first run"]
    _run(town.Processes(), "audit", "third run", monkeypatch)
    assert _lines(logs / "audit.log") == ["third run"]
    assert _lines(logs / "audit.log.1") == ["second run", "second run, started again"]
    assert sorted(p.name for p in logs.iterdir()) == ["audit.log", "audit.log.1"]


def test_the_demos_own_log_starts_fresh_each_run_keeping_the_one_before(tmp_path: Path) -> None:
    """logs/demo.log (the demo's holders') was appended to, run after run."""
    for run in ("first", "second"):
        subprocess.run(
            [sys.executable, "-c", "import logging; from renkei import demo; demo._log_to_file(); "
                                   f"logging.getLogger('holders.server').warning('{run} run')"],
            env={**os.environ, STATE_ENV: str(tmp_path)}, check=True, timeout=60)
    logs = tmp_path / "logs"
    assert [line.split(" WARNING ")[1] for line in _lines(logs / "demo.log")] == ["second run"]
    assert [line.split(" WARNING ")[1] for line in _lines(logs / "demo.log.1")] == ["first run"]
