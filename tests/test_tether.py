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

SERVICE_RUN = """
import sys, time
from renkei.town import Processes
relay = Processes().start("relay-tether", "bench", "relay", "--instance", "tether",
                          "--holder", sys.argv[1])
print(relay.pid, flush=True)
time.sleep(600)
"""
WEB_RUN = """
import sys, time
from renkei.town import Processes
command = sys.argv[1].split()
server = Processes().start(f"{command[0]}-tether", *command)
print(server.pid, flush=True)
time.sleep(600)
"""
BROKER_RUN = """
import sys, time
from pathlib import Path
from broker import process
from broker.ports import free_port_pair
from renkei.state import state_folder
with state_folder(Path(sys.argv[1])):
    process.up(*free_port_pair(), tethered=True)
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


def _killed_run(script: str, argument: str, ready: Callable[[], bool]) -> int:
    """Start a run of `script`, which prints the pid of what it started; once `ready`, kill the
    run (SIGKILL); the pid."""
    run = subprocess.Popen([sys.executable, "-c", script, argument], stdout=subprocess.PIPE,
                           text=True)
    assert run.stdout is not None
    try:
        started = int(run.stdout.readline())
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
    service = _killed_run(SERVICE_RUN, holders[0], lambda: groups.wait_members(
        groups.admin(), relay.GROUP, 1, within=60))
    assert _ended(service, within=30), "the service outlived the run that started it"
    log = (state_dir / "logs" / "relay-tether.log").read_text()
    assert "has gone: stopping" in log and "Traceback" not in log, log


def test_a_service_whose_run_has_gone_ends_if_its_stop_hangs() -> None:
    started = time.monotonic()
    ended = subprocess.run([sys.executable, "-c", HANGING], capture_output=True, text=True,
                           timeout=30)
    assert ended.returncode == 1 and time.monotonic() - started < 20, ended
    assert "has gone: stopping" in ended.stderr and "ending now" in ended.stderr, ended.stderr


def test_a_broker_whose_run_is_killed_shuts_down(tmp_path: Path) -> None:
    node = _killed_run(BROKER_RUN, str(tmp_path), lambda: True)  # it printed once ready
    assert _ended(node, within=60), "the broker outlived the run that started it"
    log = next(tmp_path.glob("**/logs/server.log")).read_text()
    assert "Terminating process due to signal SIGTERM" in log, log[-2000:]  # told, not killed


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
    server = _killed_run(WEB_RUN, command.format(port=port), lambda: _listening(port, 60))
    assert _ended(server, within=30), "the server outlived the run that started it"
    log = (state_dir / "logs" / f"{command.split()[0]}-tether.log").read_text()
    assert "has gone: stopping" in log and "Traceback" not in log, log
