"""The main job (`make demo` runs `renkei demo`), in a state folder and on a broker of its own: a
town binds, exchanges lawfully and not, and three requests are told step by step."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from broker import process
from registry.store import RegistryStore
from renkei import exchanges
from renkei.demo import demo, still_running
from renkei.state import STATE_ENV
from renkei.town import Processes
from tests.kafka_helpers import free_port_pair, renkei, said_in_one_line
from tests.loop_helpers import Deadline
from tests.proc_helpers import interruptible

SECTIONS = ("== Renkei: the information-linkage platform", "== Binding (紐付け)",
            "== Linkage (情報連携)", "== Three exchanges step by step", "== Re-keying (鍵の更新)",
            "== Figures")
STEPS = "①②③④"
RESIDENTS = "60"  # a small town (the seed fixed, its rows the same each run): a demo is ~5 s less


def _exchange_rows(out: str) -> dict[tuple[str, ...], str]:
    """Each exchange's outcomes in the linkage table, by (requester, provider, pattern, data
    type)."""
    rows = {}
    for line in out.splitlines():
        found = re.match(r"\s+(lawful  |UNLAWFUL) (\S+)\s+→ (\S+)\s+(\S+)\s+(\S+)\s+(.*)$", line)
        if found:
            rows[found.group(2, 3, 4, 5)] = found.group(6)
    return rows


def _key(exchange: exchanges.Exchange) -> tuple[str, ...]:
    return exchange.requester, exchange.provider, exchange.pattern, exchange.data_type


def _steps_told(out: str) -> list[str]:
    """For each request told step by step, the steps its lines carry, in the order printed."""
    told = out.split("== Three exchanges step by step")[1].split("\n== ")[0]
    return ["".join(line.strip()[0] for line in block.splitlines()[1:] if line.strip())
            for block in told.split("\n  request …")[1:]]


def test_the_demo_binds_a_town_exchanges_and_tells_each_step_in_the_papers_order(
        tmp_path: Path) -> None:
    env = {STATE_ENV: str(tmp_path / "state")}
    port, controller = free_port_pair()
    renkei("broker", "up", "--port", str(port), "--controller-port", str(controller), env=env,
           timeout=120)
    try:
        run = renkei("demo", "--residents", RESIDENTS, env=env, timeout=300)
        _leaves_what_it_found(env)
    finally:  # the demo stops only a broker it started itself
        renkei("broker", "down", env=env, check=False)
    out = run.stdout
    assert "Traceback" not in out + run.stderr, run.stderr
    assert run.stderr == "", run.stderr  # its holders' log lines in its log, not in the summary
    holders_log = (tmp_path / "state" / "logs" / "demo.log").read_text(encoding="utf-8")
    assert "sakura-hospital: bindings re-keyed to epoch 1:" in holders_log, holders_log
    at = [out.find(s) for s in SECTIONS]
    assert at == sorted(at), out
    assert -1 not in at, out
    rows = _exchange_rows(out)
    for exchange in exchanges.LAWFUL:  # approved, and most people found at their provider
        row = rows[_key(exchange)]
        assert row.startswith("FOUND") and "REJECTED" not in row, row
    for exchange in exchanges.UNLAWFUL:  # every one refused by the platform, none answered
        row = rows[_key(exchange)]
        assert row == f"REJECTED {exchange.limit}", row
    steps = _steps_told(out)
    assert len(steps) == 3, out
    for told in steps:  # ① request, ② approval, ③ the provider's answer, ④ logged and received
        assert told == "".join(sorted(told, key=STEPS.index)), out
    assert "①②③④④" in steps, out
    events = re.search(r"access-log events on renkei\.audit: (\d+)", out)
    assert events and int(events.group(1)) > 0, out
    assert re.search(r"lawful answered: p50 \d+ ms, p99 \d+ ms", out), out


def _leaves_what_it_found(env: dict[str, str]) -> None:
    """After a demo on a broker it found running: the broker still runs; a second demo replaces
    the first's registry, and so does one after a demo stopped by Ctrl-C while it built its
    registry; a registry the demo did not make is refused in one line, untouched."""
    assert renkei("broker", "status", env=env, check=False).returncode == 0
    _interrupted_while_building_its_registry(env)
    again = renkei("demo", "--residents", RESIDENTS, env=env, timeout=300, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    renkei("registry", "generate", "--residents", "30", "--seed", "5", "--replace", env=env)
    refused = renkei("demo", "--residents", RESIDENTS, env=env, check=False)
    assert refused.returncode == 1
    said_in_one_line(refused.stderr, "a registry not made by a demo town")
    registry = RegistryStore.open(Path(env[STATE_ENV]) / "registry" / "registry.db")
    generated = registry.meta("generated")
    registry.close()
    assert isinstance(generated, dict) and generated["residents"] == 30, generated


def _interrupted_while_building_its_registry(env: dict[str, str]) -> None:
    """A demo sent SIGINT (Ctrl-C) as soon as it begins its new registry (a file made anew in
    the registry's folder), residents still to come: it stops."""
    folder = Path(env[STATE_ENV]) / "registry"
    first = _files(folder)
    demo_run = subprocess.Popen(
        [str(Path(sys.executable).with_name("renkei")), "demo", "--residents", "1000"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible)
    deadline = Deadline(60, "the demo's new registry begun")
    while _files(folder) == first and demo_run.poll() is None:
        deadline.check(first)
        time.sleep(0.005)
    demo_run.send_signal(signal.SIGINT)
    _, said = demo_run.communicate(timeout=60)
    assert demo_run.returncode == 130 and "Aborted!" in said, said


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """The stores in `folder` (not SQLite's -wal and -shm files, made at any opening), each by
    its inode and change time (a file made anew differs)."""
    files = {}
    for path in folder.iterdir():
        if path.name.endswith(("-wal", "-shm")):
            continue
        with suppress(FileNotFoundError):
            made = path.stat()
            files[path.name] = made.st_ino, made.st_ctime_ns
    return files


def _not_started(*args: object, **kwargs: object) -> None:
    raise process.BrokerError("no broker started in this test")


@pytest.mark.parametrize("args", [["--residents", "2"], ["--instances", "0"]])
def test_a_demo_it_cannot_run_is_a_usage_error_before_any_broker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    monkeypatch.setattr(process, "up", _not_started)
    refused = CliRunner().invoke(demo, args)
    assert refused.exit_code == 2, refused.output
    assert f"Invalid value for '{args[0]}'" in refused.output


def test_the_demos_error_on_stderr_is_a_log_line_as_in_its_log(tmp_path: Path) -> None:
    """The demo's holders' error said on stderr as well as in logs/demo.log was the message
    alone, where its log, and every service's, has renkei.logs.FORMAT's time and level; and
    aiokafka's own errors (a broker gone mid-demo: 'Unable connect to node …') were said on
    stderr too: there Renkei's lines alone, the library's in logs/demo.log."""
    run = subprocess.run(
        [sys.executable, "-c", "import logging; from renkei import demo; demo._log_to_file(); "
                               "logging.getLogger('aiokafka.conn').error('Unable connect'); "
                               "logging.getLogger('holders.server').error('a holder failed')"],
        env={**os.environ, STATE_ENV: str(tmp_path / "state")}, capture_output=True, text=True,
        check=True, timeout=60)
    at = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR "
    line = f"{at}a holder failed\n"
    assert re.fullmatch(line, run.stderr), run.stderr
    logged = (tmp_path / "state" / "logs" / "demo.log").read_text(encoding="utf-8")
    assert re.fullmatch(f"{at}Unable connect\n{line}", logged), logged


def test_a_service_that_stopped_while_the_demo_ran_is_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit consumer stopped mid-demo (its store's disk full) and the demo ended with its
    figures and exit code 0, saying nothing of it: the demo's end names it and its log."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    procs = Processes()
    procs.start("audit", "audit", "run", "--db", "ftp://nowhere/audit")  # ends at once: 1
    try:
        procs.running["audit"].wait(30)
        with pytest.raises(click.ClickException) as raised:
            still_running(procs)
    finally:
        procs.stop_all()
    log = tmp_path / "state" / "logs" / "audit.log"
    assert raised.value.message == (f"stopped while the demo ran: audit (exit code 1; its log "
                                    f"{log} says why)")
