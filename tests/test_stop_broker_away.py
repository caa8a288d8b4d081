"""A service told to stop (SIGINT) after the broker has gone away stops within seconds, rc 0,
without a traceback, its Kafka clients closed, saying in one line that the broker could not be
reached; and commits nothing it could not (effects before offsets). A broker of these tests' own,
in a state folder of their own, is taken down and brought back: the suite's broker is not."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import acls, process
from broker.ports import free_port_pair
from holders.client import HolderClient
from renkei import groups
from renkei import town as town_setup
from renkei.service_loop import AWAY_AT_STOP
from renkei.state import state_folder
from tests.kafka_helpers import spawn

HOLDER = "sakura-town"
GROUPS = {"platform run": acls.PLATFORM_APP, "audit run": acls.AUDIT_GROUP,
          f"holder run {HOLDER}": HolderClient.inbox_group(HOLDER)}
STOPS_WITHIN = 10.0  # seconds from SIGINT to its end


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A broker and a small town of their own (their ports: to bring the broker back up)."""
    with state_folder(tmp_path_factory.mktemp("away")):
        ports = free_port_pair()
        process.up(*ports, tethered=True)
        try:
            town_setup.build(20, 5)
            yield ports
        finally:
            process.down()


def _started(args: str, log: Path, ports: tuple[int, int]) -> subprocess.Popen[bytes]:
    """The broker up, and the service `args` running in its group."""
    process.up(*ports, tethered=True)
    proc = spawn(*args.split(), log=log)
    if not groups.wait_members(groups.admin(), GROUPS[args], 1, within=60):
        proc.kill()
        proc.wait()
        pytest.fail(f"{args} did not join its group: {log.read_text()[-3000:]}")
    return proc


def _interrupted(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGINT, as Ctrl-C; the exit code and how long it took (killed after STOPS_WITHIN)."""
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(STOPS_WITHIN), time.monotonic() - began
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -1, time.monotonic() - began


@pytest.mark.parametrize("args", list(GROUPS))
def test_a_service_interrupted_after_the_broker_went_away_stops_cleanly(
        args: str, own_broker: tuple[int, int], tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    proc = _started(args, log, own_broker)
    process.down()
    time.sleep(2)  # its clients have found the broker gone (fetches retrying)
    code, took = _interrupted(proc)
    said = log.read_text()
    print(f"\n{args}: rc {code} after {took:.1f} s")
    assert code == 0, said[-4000:]
    assert "Traceback" not in said and "Unclosed" not in said, said[-4000:]
    assert said.count(AWAY_AT_STOP) == 1, said[-4000:]
