"""Session fixtures: one real, secured Kafka broker and one platform instance for the suite."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import process, provision
from broker.cluster import Cluster
from renkei.state import STATE_ENV
from tests.kafka_helpers import free_port_pair, renkei, spawn, stop


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state folder of the suite's own, for every process the tests start."""
    path = tmp_path_factory.mktemp("state")
    before = os.environ.get(STATE_ENV)
    os.environ[STATE_ENV] = str(path)
    yield path
    if before is None:
        os.environ.pop(STATE_ENV, None)
    else:
        os.environ[STATE_ENV] = before


@pytest.fixture(scope="session")
def broker(state_dir: Path) -> Iterator[Cluster]:
    port, controller = free_port_pair()
    cluster, _ = process.up(port, controller)
    provision.provision()
    yield cluster
    process.down()


@pytest.fixture(scope="session")
def holders(broker: Cluster) -> list[str]:
    """Two holders with their principals, topics and ACLs."""
    names = ["city-a", "city-b"]
    for name in names:
        renkei("broker", "add-holder", name)
    return names


@pytest.fixture(scope="session")
def platform(broker: Cluster, holders: list[str], state_dir: Path) -> Iterator[
        subprocess.Popen[bytes]]:
    """One platform instance (`renkei platform run`) for the session."""
    proc = spawn("platform", "run", "--loglevel", "info", log=state_dir / "platform.log")
    yield proc
    stop(proc)
