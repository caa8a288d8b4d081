"""A one-off command whose broker went away while it ran (`renkei keys rekey`, the demo's
re-keying: a review killed the broker under it) ended in a traceback: aiokafka's
KafkaTimeoutError, then, from the stop of its client, the CancelledError of a fetch aiokafka
cancelled, which replaced it. It says in one line that the broker did not answer, and ends."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaTimeoutError

from audit.cli import open_store
from broker import cluster as cluster_store
from broker import config, process, topics
from broker.clients import KafkaAccess, stopped
from renkei import cli
from renkei.state import STATE_ENV, state_folder
from tests.kafka_helpers import free_port_pair, renkei
from tests.test_audit_store import event, item


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


def test_a_command_whose_broker_went_away_says_its_own_line_alone(tmp_path: Path) -> None:
    """aiokafka's own ERROR lines ("Unable connect to node …", "Failed fetch messages …") came
    on stderr before the command's one line: a person at a terminal reads the command's line
    alone (a service's log keeps them). `oversight holder-logs` waiting for an answer no holder
    gives (no platform relays it) on a broker of its own, which is then stopped."""
    state = tmp_path / "state"
    env = {STATE_ENV: str(state)}
    with state_folder(state):
        cluster, _ = process.up(*free_port_pair(), tethered=True)
        try:
            renkei("broker", "provision", env=env)
            renkei("keys", "init", env=env)
            renkei("holder", "register", "quiet-town", "--name", "静町", "--role", "municipality",
                   env=env)
            with open_store(None, create=True) as store:
                store.append(*item(replace(event(1), requester="quiet-town")))
            asking = subprocess.Popen(
                [str(Path(sys.executable).with_name("renkei")), "oversight", "holder-logs",
                 "--holder", "quiet-town", "--request", "req-0001", "--basis", "law", "--within",
                 "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, **env})
            asyncio.run(_asked(cluster.bootstrap))
        finally:
            process.down()
        _, said = asking.communicate(timeout=60)
    assert asking.returncode == 1
    assert said == (f"Error: the broker at {cluster.bootstrap} cannot be reached: what quiet-town "
                    "answered may not have come (ask again once it is back; `renkei broker "
                    "status` says why)\n")


async def _asked(bootstrap: str) -> None:
    """Once the oversight body's request is on its topic (the command awaits its answers)."""
    access = replace(KafkaAccess.of(config.ADMIN), bootstrap=bootstrap)
    asked = AIOKafkaConsumer(topics.OVERSIGHT_OUT, **access.aiokafka(),
                             auto_offset_reset="earliest", enable_auto_commit=False)
    await asked.start()
    try:
        await asyncio.wait_for(asked.getone(), 30)
    finally:
        await asked.stop()
