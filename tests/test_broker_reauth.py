"""connections.max.reauth.ms on a broker of its own (a short one): aiokafka does not
re-authenticate, so the broker closes each connection once its log-in is that old and aiokafka
logs in again with the password it has. A holder's reader goes on across it (every record once);
after `renkei holder renew` its old password is refused there, its open connection cut off."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.conn import AIOKafkaConnection

from broker import config, process, provision, topics
from broker.clients import KafkaAccess, stopped
from broker.ports import free_port_pair
from renkei.service_loop import producer_for
from renkei.state import STATE_ENV

HOLDER = "reauth-town"
REAUTH = 3.0  # seconds: the broker's connections.max.reauth.ms in this test
SLACK = 1.5  # seconds past it for the first request after it and a reconnect


class Reader:
    """The holder reading its inbox, and when each record came."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer, self.got, self.last = consumer, list[int](), 0.0

    async def read_until(self, end: float) -> None:
        while time.monotonic() < end:
            for records in (await self.consumer.getmany(timeout_ms=100)).values():
                self.got.extend(int(r.value or b"-1") for r in records)
                self.last = time.monotonic()


async def _sent_while(producer: Any, seq: range, every: float) -> None:
    for n in seq:
        await producer.send_and_wait(topics.inbox(HOLDER), str(n).encode(), key=b"k")
        await asyncio.sleep(every)


async def _run(connects: list[str]) -> tuple[Reader, float, int]:
    """Records through two log-in lifetimes, the password renewed, then as long again: the
    reader, when it was renewed, and the first record sent after the reader's cut-off."""
    admin, holder = KafkaAccess.of(config.ADMIN), KafkaAccess.of(HOLDER)
    writer = producer_for(admin)
    reader = Reader(AIOKafkaConsumer(topics.inbox(HOLDER), **holder.reading(), group_id=None,
                                     auto_offset_reset="earliest", enable_auto_commit=False))
    await writer.start()
    await reader.consumer.start()
    try:
        start = time.monotonic()
        await asyncio.gather(_sent_while(writer, range(0, 50), 2.5 * REAUTH / 50),
                             reader.read_until(start + 2.5 * REAUTH + SLACK))
        assert reader.got == list(range(50)), "records lost or read twice across log-in expiries"
        # 3 without expiries (bootstrap, metadata, fetch); 5 seen with two
        assert connects.count(HOLDER) >= 4, f"the reader connected {connects.count(HOLDER)} times"
        await asyncio.to_thread(provision.renew_password, provision.admin_client(), HOLDER)
        renewed = time.monotonic()
        await asyncio.gather(_sent_while(writer, range(50, 100), (REAUTH + 2 * SLACK) / 50),
                             reader.read_until(renewed + REAUTH + 2 * SLACK))
        return reader, renewed, 100
    finally:
        await writer.stop()
        # its fetches refused, aiokafka's stop() may raise the CancelledError of the one it
        # cancelled while it waited to retry: stopped() takes that for the stop it is
        await asyncio.wait_for(stopped(reader.consumer), 10)


def test_a_renewed_holders_open_connection_is_cut_off_within_the_reauth_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder's connection opened before its password was renewed stayed logged in: a
    consumer holding the leaked password read its inbox on until the connection dropped. With
    connections.max.reauth.ms, a reader with the current password reads every record once
    across its log-ins' expiries, and one with a renewed password reads nothing sent later than
    that long after the renewal."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    monkeypatch.setattr(config, "REAUTH_MS", int(REAUTH * 1000), raising=False)
    connects: list[str] = []
    connect = AIOKafkaConnection.connect

    async def counted(self: AIOKafkaConnection) -> Any:
        connects.append(self._sasl_plain_username)
        return await connect(self)

    monkeypatch.setattr(AIOKafkaConnection, "connect", counted)
    process.up(*free_port_pair(), tethered=True)
    try:
        provision.add_holder(provision.admin_client(), HOLDER, provision.Report())
        assert provision.reauth_ms(provision.admin_client()) == REAUTH * 1000
        reader, renewed, sent = asyncio.run(_run(connects))
    finally:
        process.down()
    assert reader.last - renewed <= REAUTH + SLACK, (
        f"the renewed holder read {reader.last - renewed:.1f} s after its renewal")
    assert len(reader.got) < sent and reader.got == list(range(len(reader.got)))
