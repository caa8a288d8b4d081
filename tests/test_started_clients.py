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

FAILING = SAMPLES[0].holder_id  # the first to start: sequential starts start no other
SLOW = SAMPLES[1].holder_id  # still starting when FAILING's fails: its start is cancelled


class _Store:
    opened: ClassVar[list[str]] = []
    closed: ClassVar[list[str]] = []

    def __init__(self, holder: str) -> None:
        self.holder = holder
        _Store.opened.append(holder)

    def close(self) -> None:
        _Store.closed.append(self.holder)


class _Library:
    """A stand-in for a holder's library: FAILING's start fails soon, SLOW's opens a connection
    and waits (let go of if it is cancelled), the others' start at once."""

    started: ClassVar[list[str]] = []
    stopped: ClassVar[list[str]] = []
    opened: ClassVar[list[str]] = []  # connections opened by a start (SLOW's)
    let_go: ClassVar[list[str]] = []

    def __init__(self, holder: str, store: _Store) -> None:
        self.holder, self.store = holder, store

    async def start(self) -> None:
        if self.holder == FAILING:
            await asyncio.sleep(0.05)
            raise BrokerAway("127.0.0.1:1")
        if self.holder == SLOW:
            _Library.opened.append(self.holder)
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                _Library.let_go.append(self.holder)
                raise
        await asyncio.sleep(0)
        _Library.started.append(self.holder)

    async def stop(self) -> None:
        _Library.stopped.append(self.holder)


async def test_a_library_that_fails_to_start_raises_its_error_the_rest_stopped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first library's start fails while another's is still under way: its error raised
    (as one alone), the one under way cancelled (what it opened let go of before the raise),
    those started meanwhile stopped, every store closed."""
    monkeypatch.setattr(scenario, "HolderClient", _Library)
    monkeypatch.setattr(HolderStore, "of", staticmethod(_Store))
    _Store.opened, _Store.closed, _Library.started, _Library.stopped = [], [], [], []
    _Library.opened, _Library.let_go = [], []
    entered: list[Any] = []
    async with asyncio.timeout(5):  # not waiting for SLOW's start to end of itself
        with pytest.raises(BrokerAway):  # not an ExceptionGroup: the CLI says it in one line
            async with scenario.started_clients() as clients:
                entered.append(clients)
    others = [s.holder_id for s in SAMPLES if s.holder_id not in (FAILING, SLOW)]
    assert entered == [] and sorted(_Library.started) == sorted(others)  # side by side
    assert _Library.opened == _Library.let_go == [SLOW]  # cancelled, and ended, before the raise
    assert sorted(_Library.stopped) == sorted(_Library.started)
    assert sorted(_Store.closed) == sorted(_Store.opened)
