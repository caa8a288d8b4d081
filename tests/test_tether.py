"""A service, a web server or a broker, started by a run (here a stand-in for the demo, a
benchmark or the suite itself) stops once that run has been killed, instead of running on by
itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.ports import free_port
from renkei import groups, relay
from renkei.town import Town

PROCESS_RUN = """
import sys, time
from renkei.town import Processes
started = Processes().start(sys.argv[1], *sys.argv[2].split())
print(started.pid, flush=True)
time.sleep(600)
"""
BROKER_RUN = """
import sys, threading, time
from pathlib import Path
from broker import process
from broker.ports import free_port_pair
from renkei.state import state_folder
def in_a_worker(step):  # as under asyncio.to_thread: the thread ends, the run goes on
    worker = threading.Thread(target=step)
    worker.start()
    worker.join()
    time.sleep(3)
def up():
    process.up(*free_port_pair(), tethered=True)
def crash_and_restart():
    process.stop_node(1, hard=True)
    process.start_node(1)
with state_folder(Path(sys.argv[1])):
    if sys.argv[2] == "main thread":
        up()
    elif sys.argv[2] == "worker thread":
        in_a_worker(up)
    else:
        up()
        in_a_worker(crash_and_restart)
    print(process.status()[1][0].pid, flush=True)
    time.sleep(600)
"""


HANGING = """
import asyncio, os
from renkei import tether
tether.GRACE_SECONDS = 0.5
os.environ[tether.PARENT_ENV] = str(os.getpid())  # not its parent: a run that has gone

async def main():
    stop = asyncio.Event()
    tether.when_parent_gone(stop.set)
    await stop.wait()
    await asyncio.sleep(60)  # a stop that hangs: its last effects wait for a broker away
asyncio.run(main())
"""


def _running(pid: int) -> bool:
    """Whether `pid` is there and not a zombie (an orphan's end is reaped by whoever adopts it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _killed_run(script: str, ready: Callable[[], bool], *arguments: str) -> int:
    """Start a run of `script`, which prints the pid of what it started; once `ready`, kill the
    run (SIGKILL); the pid."""
    run = subprocess.Popen([sys.executable, "-c", script, *arguments], stdout=subprocess.PIPE,
                           text=True)
    assert run.stdout is not None
    try:
        printed = run.stdout.readline().strip()
        assert printed.isdigit(), f"what the run started is not running (it printed {printed!r})"
        started = int(printed)
        assert ready()
    finally:
        run.kill()
        run.wait()
        run.stdout.close()
    return started


def _ended(pid: int, within: float) -> bool:
    """Whether `pid` ends within `within` seconds (if not, it is killed)."""
    deadline = time.monotonic() + within
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not _running(pid):
        return True
    os.kill(pid, signal.SIGKILL)
    return False


def test_a_service_whose_run_is_killed_stops(holders: list[str], state_dir: Path) -> None:
    service = _killed_run(PROCESS_RUN, lambda: groups.wait_members(
        groups.admin(), relay.GROUP, 1, within=60),
        "relay-tether", f"bench relay --instance tether --holder {holders[0]}")
    assert _ended(service, within=30), "the service outlived the run that started it"
    log = (state_dir / "logs" / "relay-tether.log").read_text()
    assert "has gone: stopping" in log and "Traceback" not in log, log


def test_a_service_whose_run_has_gone_ends_if_its_stop_hangs() -> None:
    started = time.monotonic()
    ended = subprocess.run([sys.executable, "-c", HANGING], capture_output=True, text=True,
                           timeout=30)
    assert ended.returncode == 1 and time.monotonic() - started < 20, ended
    assert "has gone: stopping" in ended.stderr and "ending now" in ended.stderr, ended.stderr


_SIGTERM = "Terminating process due to signal SIGTERM"


def _server_log(state: Path) -> str:
    return next(state.glob("**/logs/server.log")).read_text()


@pytest.mark.parametrize("started", ["main thread", "worker thread", "restarted"])
def test_a_broker_whose_run_is_killed_shuts_down(started: str, tmp_path: Path) -> None:
    """Started from the run's main thread, or from a worker thread (as the chaos runs start
    their nodes, and restart them after a crash) that must not take it along when it ends."""
    node = _killed_run(BROKER_RUN, lambda: _SIGTERM not in _server_log(tmp_path),
                       str(tmp_path), started)
    assert _ended(node, within=60), "the broker outlived the run that started it"
    assert _SIGTERM in _server_log(tmp_path), _server_log(tmp_path)[-2000:]  # told, not killed


def _listening(port: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("command", ["portal --port {port} --reader http://127.0.0.1:9",
                                     "card reader --port {port} --trust http://127.0.0.1:9"],
                         ids=["portal", "card reader"])
def test_a_web_server_whose_run_is_killed_stops(command: str, town: Town,
                                                state_dir: Path) -> None:
    port = free_port()
    server = _killed_run(PROCESS_RUN, lambda: _listening(port, 60),
                         f"{command.split()[0]}-tether", command.format(port=port))
    assert _ended(server, within=30), "the server outlived the run that started it"
    log = (state_dir / "logs" / f"{command.split()[0]}-tether.log").read_text()
    assert "has gone: stopping" in log and "Traceback" not in log, log
