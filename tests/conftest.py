"""Session fixtures: one real, secured Kafka broker, a town on it, and its processes."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import sqlite3
import time
import traceback
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from broker import process
from broker.cluster import Cluster
from holders.client import HolderClient
from holders.samples import SAMPLES
from holders.store import HolderStore
from registry import store as registry_store
from renkei import scenario
from renkei import town as town_setup
from renkei.state import state_folder
from tests import postgres as postgres_server
from tests.browser import chromium_installing
from tests.kafka_helpers import free_port_pair, renkei

RESIDENTS, SEED = 300, 11
ANSWER_TIMEOUT = 10.0
SILENT = "minami-clinic"  # a provider whose communication server never answers: timeouts
SERVICE_LOG_LINES = 60  # of each service's log, under a failed test's report
UNREAD = re.compile(r"exception was never retrieved|Task was destroyed but it is pending")
PROJECT = re.compile(rf"{re.escape(str(Path(__file__).resolve().parents[1]))}/(?!\.venv/)")
LEFT_RUNNING_GRACE = 2.0  # seconds a task of a test may take to end once it is over
STARTED = pytest.StashKey[float]()  # when a test began: the service logs since, if it fails


class Unread(logging.Handler):
    """What asyncio logs of a failure nobody read, or of a task destroyed while pending, where
    the task or the failure's traceback is the project's code; with the test it came during."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.test = "(before the first test)"
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        told = record.getMessage()
        if not UNREAD.search(told):
            return
        if record.exc_info and record.exc_info[1] is not None:
            told += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        if PROJECT.search(told):
            self.seen.append(f"during {self.test}: {told}")


UNREAD_LOG = Unread()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Chromium installed, if missing, while the broker starts, when browser tests will run."""
    if any(item.nodeid.startswith("tests/test_portal.py::") for item in session.items):
        chromium_installing()


def pytest_runtest_setup(item: pytest.Item) -> None:
    UNREAD_LOG.test = item.nodeid
    item.stash[STARTED] = time.time()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A failed test's report ends with the last lines each of the suite's services (platform,
    registry, authority, audit consumer) logged while it ran: what CI keeps of a run is its
    output, and the state folder goes with the machine."""
    report = yield
    folder = getattr(item, "funcargs", {}).get("state_dir")
    if report.failed and isinstance(folder, Path):
        since = item.stash.get(STARTED, 0.0)
        for log in sorted((folder / "logs").glob("*.log")):
            if log.stat().st_mtime >= since:
                lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
                report.sections.append((f"the last lines of {log.name}",
                                        "\n".join(lines[-SERVICE_LOG_LINES:])))
    return report


@pytest.fixture(scope="session", autouse=True)
def no_failure_left_unread() -> Iterator[None]:
    """The run fails if asyncio logged a failure of the project's left unread (see
    renkei.tasks.retrieved) or a task of its destroyed while pending (renkei.tasks.cancelled)."""
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(UNREAD_LOG)
    yield
    gc.collect()  # the futures and tasks still to be collected are logged now
    asyncio_log.removeHandler(UNREAD_LOG)
    assert not UNREAD_LOG.seen, "\n\n".join(UNREAD_LOG.seen)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def no_task_left_running() -> AsyncIterator[None]:
    """A test fails if a task of the project's code it started is still running a moment after
    it: the suite's event loop is one for the session, and such a task ran on into later tests
    (a platform's rebuild retrying on a consumer stopped, its warnings read by another test as
    that test's own). It is cancelled. A task of an object that ran tasks before the test (a
    session fixture's holder, waiting for the directory to move) is that object's own."""
    before = asyncio.all_tasks()
    owners = {_owner(t) for t in before} - {None}
    yield
    deadline = time.monotonic() + LEFT_RUNNING_GRACE
    while left := [t for t in asyncio.all_tasks() - before if not t.done()
                   and PROJECT.match(_code_file(t)) and _owner(t) not in owners]:
        if time.monotonic() > deadline:
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            pytest.fail("tasks left running by the test: " + ", ".join(
                sorted(_code_name(t) for t in left)), pytrace=False)
        await asyncio.sleep(0.05)


def _code_file(task: asyncio.Task[Any]) -> str:
    """The file of the code a task runs ('' if not a coroutine's)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return code.co_filename if code is not None else ""


def _owner(task: asyncio.Task[Any]) -> int | None:
    """The id of the object whose method a task runs (None if it runs a function)."""
    frame = getattr(task.get_coro(), "cr_frame", None)
    return id(frame.f_locals["self"]) if frame is not None and "self" in frame.f_locals else None


def _code_name(task: asyncio.Task[Any]) -> str:
    """The qualified name of the coroutine a task runs."""
    return str(getattr(task.get_coro(), "__qualname__", task.get_name()))


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
        client = HolderClient(sample.holder_id, HolderStore.of(sample.holder_id),
                              answer_queries=sample.holder_id != SILENT)
        await client.start()
        started[sample.holder_id] = client
    await scenario.bind_all(started)  # many at once: one after another, ~800 took ~12 s
    yield started
    for client in started.values():
        await client.stop()
        client.store.close()


@pytest.fixture
def secure_delete_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SQLite connection made from now on as one of a SQLite built without
    SQLITE_SECURE_DELETE, SQLite's own default (Debian's, this suite's and the image's, is built
    with it): what it deletes is left in the file unless the store turns secure_delete on."""
    connect = sqlite3.connect

    def connected(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = connect(*args, **kwargs)
        db.execute("PRAGMA secure_delete = OFF")
        return db

    monkeypatch.setattr(sqlite3, "connect", connected)


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of the suite's own (installed from Debian's packages if missing)."""
    with postgres_server.server() as url:
        yield url
