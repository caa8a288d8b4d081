"""`renkei demo` whose broker went away (killed under it) and stayed away waited for it for ever,
saying nothing of its own (a review killed it after 240 s): it says in one line that the broker
went away, since when, and stops, AWAY_SECONDS after."""

from __future__ import annotations

import asyncio
import time

import pytest

from broker import presence
from holders.client import NotSentYet
from renkei import demo, scenario
from tests.kafka_helpers import free_port


async def test_a_demo_whose_broker_stays_away_says_so_and_stops(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "AWAY_SECONDS", 0.5)
    monkeypatch.setattr(presence, "WATCH_SECONDS", 0.05)
    bootstrap = f"127.0.0.1:{free_port()}"  # where no broker listens any more
    began = time.monotonic()
    with pytest.raises(presence.BrokerGone, match=(
            rf"the broker at {bootstrap} went away at \d\d:\d\d:\d\d UTC and was not back within "
            r"0.5 s: the demo stops \(`renkei broker status` says why\)")):
        await asyncio.wait_for(demo.while_the_broker_is_there(asyncio.Event().wait(), bootstrap),
                               10)
    assert time.monotonic() - began < 3


async def test_a_demo_whose_broker_is_there_runs_to_its_end() -> None:
    async def exercise() -> None:
        await asyncio.sleep(0.2)

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await asyncio.wait_for(demo.while_the_broker_is_there(exercise(), f"127.0.0.1:{port}"), 5)
    finally:
        server.close()


async def test_a_request_the_broker_did_not_take_in_time_is_waited_for_not_raised() -> None:
    async def kept() -> str:
        raise NotSentYet("r-kept")

    async def taken() -> str:
        return "r-taken"

    assert await scenario.sent(kept()) == "r-kept"  # its outcome waited for: sent once it can be
    assert await scenario.sent(taken()) == "r-taken"
