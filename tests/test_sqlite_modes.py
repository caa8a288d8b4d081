"""Every store made fresh by a path given is readable by its user only, whatever the umask; a
store opened leaves the locks of a connection open on it in the process as they are."""

from __future__ import annotations

import asyncio
import os
import resource
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from audit.sql import connect
from authority.store import AuthorityStore
from cards.jlis import CardHolders
from holders.store import HolderStore
from portal.inbox import Inbox
from registry.store import RegistryStore
from renkei.sqlite import connected
from tests import store_helpers


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    yield
    os.umask(before)


def _inbox(path: Path) -> None:
    asyncio.run(Inbox(path).close())


MADE: dict[str, Callable[[Path], object]] = {
    "registry": lambda p: RegistryStore.create(p).close(),
    "authority": lambda p: AuthorityStore(p).close(),
    "holder": lambda p: HolderStore(p).close(),
    "inbox": _inbox,
    "audit": lambda p: connect(p)[0].close(),
    "cards": lambda p: CardHolders(p).close(),
}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("store", sorted(MADE))
def test_a_store_made_fresh_is_readable_by_its_user_only(tmp_path: Path, store: str) -> None:
    path = tmp_path / f"{store}.db"
    MADE[store](path)
    assert _mode(path) == 0o600


@pytest.mark.parametrize("store", sorted(set(MADE) - {"registry"}))
def test_a_store_made_where_a_link_leads_is_readable_by_its_user_only(
        tmp_path: Path, store: str) -> None:
    """A store's path a symbolic link to no file yet (its store on another disk, say): the file
    was not made private (a link is there: O_EXCL refuses it), SQLite made it by the umask,
    readable by every user."""
    target = tmp_path / "elsewhere" / f"{store}.db"
    target.parent.mkdir()
    (tmp_path / f"{store}.db").symlink_to(target)
    MADE[store](tmp_path / f"{store}.db")
    assert _mode(target) == 0o600


def test_the_mode_an_operator_set_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    path.touch(0o640)
    with closing(RegistryStore.open(path)):
        assert _mode(path) == 0o640


def _read_apart(path: Path) -> str:
    """What a process of its own reads of the table `kept`, its connection closed after (the
    last one on the store, SQLite would checkpoint the write-ahead log and delete it)."""
    read = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); " \
           "print(db.execute('SELECT n FROM kept').fetchall()); db.close()"
    return subprocess.run([sys.executable, "-c", read, str(path)], capture_output=True,
                          text=True, check=True).stdout.strip()


def _commits_kept_around(path: Path, touch: Callable[[], object]) -> None:
    """What a connection open on the store at `path` commits after `touch()` is what processes
    of their own read there, each its connection closed after."""
    with closing(connected(path)) as db:
        db.execute("CREATE TABLE kept (n INTEGER)")
        touch()
        assert _read_apart(path) == "[]"
        db.execute("INSERT INTO kept VALUES (1)")
        assert _read_apart(path) == "[(1,)]"


@pytest.mark.parametrize("store", sorted(set(MADE) - {"registry"}))
def test_a_store_opened_again_leaves_the_connection_open_on_it_its_locks(
        tmp_path: Path, store: str) -> None:
    """Each opening opened and closed the store's file to make it private, and a close drops
    every POSIX lock the process holds on the file, those of a connection left open on it too:
    another process closing its connection took itself for the last one, deleted the
    write-ahead log, and what the open connection committed then was written to the deleted
    file, lost (the authority's change of number, its purge opening the store in a thread)."""
    path = tmp_path / f"{store}.db"
    _commits_kept_around(path, lambda: MADE[store](path))


def test_a_store_scanned_by_the_suite_leaves_the_connection_open_on_it_its_locks(
        tmp_path: Path) -> None:
    """The scan for personal data in plaintext read the files of the holders' stores the
    suite's libraries hold open in its process: their locks dropped, what a library committed
    after another process's look was lost (see above)."""
    path = tmp_path / "holder.db"
    _commits_kept_around(path, lambda: store_helpers.containing([tmp_path], b"canary"))


def test_a_store_copied_by_the_suite_leaves_the_connection_open_on_it_its_locks(
        tmp_path: Path) -> None:
    """A test's copy of the suite's state folder read the files of the holders' stores the
    suite's libraries hold open in its process: their locks dropped (see above)."""
    path = tmp_path / "state" / "holder.db"
    path.parent.mkdir()
    _commits_kept_around(path, lambda: store_helpers.copied(path.parent, tmp_path / "copy"))


def test_a_store_its_disk_has_no_room_for_is_said_naming_its_path(tmp_path: Path) -> None:
    """A holder's store opened where no byte more may be written (its disk full; here the file
    size limit, which SQLite meets as one) failed with SQLite's "disk I/O error", which names
    no file: `renkei holder run` and every command opening the store printed a traceback."""
    path = tmp_path / "holder.db"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # SIGXFSZ Python ignores: EFBIG
    try:
        with pytest.raises(OSError) as raised:
            HolderStore(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert raised.value.filename == str(path) and "cannot open a SQLite store (disk I/O error)" \
        in str(raised.value), raised.value
