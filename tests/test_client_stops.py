"""aiokafka 0.14's consumer stop raises the CancelledError of the fetch it cancelled when that
fetch had failed and waited its 100 ms before trying again (the broker gone, or closing the
connection at connections.max.reauth.ms). A client the project stops goes through
broker.clients.stopped, which takes that for the stop it is; a window on topics stopped so
raised CancelledError out of its `async with`, as if the task running it had been cancelled,
and its client (closed by stop() after the fetcher) was left open."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiokafka.client import AIOKafkaClient

from broker import config, process, provision, topics
from broker.clients import KafkaAccess
from broker.ports import free_port_pair
from renkei.state import STATE_ENV
from renkei.window import Window

HOLDER = "stops-town"
FAILED_FETCH = "Failed fetch messages"  # aiokafka's line, said just before its 100-ms pause


class _Told(logging.Handler):
    """Sets `said` when aiokafka's fetcher says a fetch failed."""

    def __init__(self, said: asyncio.Event) -> None:
        super().__init__()
        self.said = said

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(FAILED_FETCH):
            self.said.set()


async def _window_stopped_as_its_fetch_failed() -> AIOKafkaClient:
    """A window open while its broker is killed, stopped as soon as its fetch failed: its
    consumer's client."""
    failed = asyncio.Event()
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    told = _Told(failed)
    fetcher.addHandler(told)
    try:
        async with Window(KafkaAccess.of(config.ADMIN), [topics.inbox(HOLDER)]) as window:
            await asyncio.to_thread(process.stop_node, 1, True)
            await asyncio.wait_for(failed.wait(), 10)
    finally:
        fetcher.removeHandler(told)
    client: AIOKafkaClient = window._consumer._client
    return client


def test_a_window_stopped_in_the_pause_after_a_failed_fetch_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    process.up(*free_port_pair(), tethered=True)
    try:
        provision.add_holder(provision.admin_client(), HOLDER, provision.Report())
        try:
            client = asyncio.run(_window_stopped_as_its_fetch_failed())
        except asyncio.CancelledError:
            pytest.fail("the window's stop raised CancelledError (its fetch's, in aiokafka's "
                        "pause after the fetch failed)")
        assert client._sync_task is None, "the consumer's client was left running its metadata task"
        assert not [conn for conn in client._conns.values() if conn.connected()]
    finally:
        process.down()
