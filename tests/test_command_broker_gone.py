"""A one-off command whose broker went away while it ran (`renkei keys rekey`, the demo's
re-keying: a review killed the broker under it) ended in a traceback: aiokafka's
KafkaTimeoutError, then, from the stop of its client, the CancelledError of a fetch aiokafka
cancelled, which replaced it. It says in one line that the broker did not answer, and ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka.errors import KafkaTimeoutError

from broker import cluster as cluster_store
from broker.clients import stopped
from renkei import cli
from renkei.state import state_folder


class _CutShort:
    """A client whose stop ends as aiokafka's consumer's does with its broker gone: with the
    CancelledError of a fetch it cancelled (not its caller's)."""

    def __init__(self) -> None:
        self.stops = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stops += 1
        raise asyncio.CancelledError


async def test_a_stop_cut_short_by_the_broker_gone_leaves_the_error_that_ended_the_task() -> None:
    client = _CutShort()

    async def command() -> None:
        try:
            raise KafkaTimeoutError("Failed to get offsets by times in 40000 ms")
        finally:
            await stopped(client)

    with pytest.raises(KafkaTimeoutError):
        await asyncio.wait_for(command(), 5)
    assert client.stops == 1


async def test_a_task_cancelled_while_it_stops_a_client_is_cancelled() -> None:
    class Slow(_CutShort):
        async def stop(self) -> None:
            await asyncio.sleep(10)

    task = asyncio.create_task(stopped(Slow()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_command_whose_broker_did_not_answer_in_time_says_so_in_one_line(
        tmp_path: Path) -> None:
    with state_folder(tmp_path):
        cluster_store.save(cluster_store.plan(29492, 29493))
        said = cli._said(KafkaTimeoutError("Failed to get offsets by times in 40000 ms"))
    assert said == ("the broker at 127.0.0.1:29492 did not answer in time (KafkaTimeoutError: "
                    "Failed to get offsets by times in 40000 ms): is it running? (`renkei broker "
                    "status` says why not)")
