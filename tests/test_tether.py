"""A service started by a run (here a stand-in for the demo or a benchmark) stops once that run
has been killed, instead of running on by itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from renkei import groups, relay

RUN = """
import sys, time
from renkei.town import Processes
relay = Processes().start("relay-tether", "bench", "relay", "--instance", "tether",
                          "--holder", sys.argv[1])
print(relay.pid, flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Whether `pid` is there and not a zombie (an orphan's end is reaped by whoever adopts it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_service_whose_run_is_killed_stops(holders: list[str], state_dir: Path) -> None:
    run = subprocess.Popen([sys.executable, "-c", RUN, holders[0]], stdout=subprocess.PIPE,
                           text=True)
    assert run.stdout is not None
    service = int(run.stdout.readline())
    try:
        assert groups.wait_members(groups.admin(), relay.GROUP, 1, within=60)
        run.kill()
        run.wait()
        deadline = time.monotonic() + 30
        while _running(service) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(service), "the service outlived the run that started it"
    finally:
        if _running(service):
            os.kill(service, 9)
        run.kill()
        run.wait()
        run.stdout.close()
    log = (state_dir / "logs" / "relay-tether.log").read_text()
    assert "has gone: stopping" in log and "Traceback" not in log, log
