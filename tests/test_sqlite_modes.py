"""Every store made fresh by a path given is readable by its user only, whatever the umask."""

from __future__ import annotations

import asyncio
import os
import stat
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


def test_the_mode_an_operator_set_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    path.touch(0o640)
    with closing(RegistryStore.open(path)):
        assert _mode(path) == 0o640
