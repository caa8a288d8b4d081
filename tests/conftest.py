"""Session fixtures: one real, secured Kafka broker, a town on it, and its processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from broker import process
from broker.cluster import Cluster
from holders.client import HolderClient
from holders.samples import SAMPLES
from holders.store import HolderStore, default_path
from registry import store as registry_store
from renkei import town as town_setup
from renkei.scenario import staff as staff_of
from renkei.state import state_folder
from tests import postgres as postgres_server
from tests.kafka_helpers import free_port_pair, renkei

RESIDENTS, SEED = 300, 11
ANSWER_TIMEOUT = 10.0
SILENT = "minami-clinic"  # a provider whose communication server never answers: timeouts


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state folder of the suite's own, for every process the tests start."""
    with state_folder(tmp_path_factory.mktemp("state")) as path:
        yield path


@pytest.fixture(scope="session")
def broker(state_dir: Path) -> Iterator[Cluster]:
    port, controller = free_port_pair()
    cluster, _ = process.up(port, controller, tethered=True)
    yield cluster
    process.down()


@pytest.fixture(scope="session")
def town(broker: Cluster) -> town_setup.Town:
    """The registry, authority, demo holders, directory and pattern list."""
    return town_setup.build(RESIDENTS, SEED)


@pytest.fixture(scope="session")
def first_codes(town: town_setup.Town) -> dict[str, str]:
    """Each resident's code now → their first, which their ID and link codes are made from."""
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    try:
        return {code: registry.first_code(code) or code for code in registry.resident_codes()}
    finally:
        registry.close()


@pytest.fixture(scope="session")
def holders(town: town_setup.Town) -> list[str]:
    """Two bare holders (principal, topics, ACLs; not in the directory)."""
    names = ["city-a", "city-b"]
    for name in names:
        renkei("broker", "add-holder", name)
    return names


@pytest.fixture(scope="session")
def platform(town: town_setup.Town) -> Iterator[town_setup.Processes]:
    """The platform, registry and authority processes, ready."""
    with town_setup.services(answer_timeout=ANSWER_TIMEOUT, loglevel="info") as procs:
        yield procs


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def clients(platform: town_setup.Processes) -> AsyncIterator[dict[str, HolderClient]]:
    """Every demo holder's library, started, with all its records bound (or investigated)."""
    started = {}
    for sample in SAMPLES:
        client = HolderClient(sample.holder_id, HolderStore(default_path(sample.holder_id)),
                              answer_queries=sample.holder_id != SILENT)
        await client.start()
        started[sample.holder_id] = client
    pending = []
    for sample in SAMPLES:
        client = started[sample.holder_id]
        staff, terminal = staff_of(sample.holder_id)
        for own in client.store.own_numbers():
            pending.append((client, await client.bind(own, staff, terminal,
                                                      by_number=sample.knows_numbers)))
    await asyncio.gather(*(client.outcome(rid, 120) for client, rid in pending))
    yield started
    for client in started.values():
        await client.stop()
        client.store.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of the suite's own (installed from Debian's packages if missing)."""
    with postgres_server.server() as url:
        yield url
