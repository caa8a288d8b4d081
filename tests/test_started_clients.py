"""The demo holders' libraries, started side by side (scenario.started_clients): a start that
fails raises its own error, as one alone did, and every library started is stopped and every
store opened closed (the libraries themselves: test_demo, the chaos runs, the benchmark)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from broker.clients import BrokerAway
from holders.samples import SAMPLES
from holders.store import HolderStore
from renkei import scenario

FAILING = SAMPLES[2].holder_id


class _Store:
    opened: ClassVar[list[str]] = []
    closed: ClassVar[list[str]] = []

    def __init__(self, holder: str) -> None:
        self.holder = holder
        _Store.opened.append(holder)

    def close(self) -> None:
        _Store.closed.append(self.holder)


class _Library:
    """A stand-in for a holder's library: its start takes a while; FAILING's fails."""

    started: ClassVar[list[str]] = []
    stopped: ClassVar[list[str]] = []

    def __init__(self, holder: str, store: _Store) -> None:
        self.holder, self.store = holder, store

    async def start(self) -> None:
        await asyncio.sleep(0.05 if self.holder == FAILING else 0.01)
        if self.holder == FAILING:
            raise BrokerAway("127.0.0.1:1")
        _Library.started.append(self.holder)

    async def stop(self) -> None:
        _Library.stopped.append(self.holder)


async def test_a_library_that_fails_to_start_raises_its_error_the_rest_stopped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenario, "HolderClient", _Library)
    monkeypatch.setattr(HolderStore, "of", staticmethod(_Store))
    _Store.opened, _Store.closed, _Library.started, _Library.stopped = [], [], [], []
    entered: list[Any] = []
    with pytest.raises(BrokerAway):  # not an ExceptionGroup: the CLI says it in one line
        async with scenario.started_clients() as clients:
            entered.append(clients)
    assert entered == [] and _Library.started  # side by side: others started meanwhile
    assert sorted(_Library.stopped) == sorted(_Library.started)
    assert sorted(_Store.closed) == sorted(_Store.opened)
