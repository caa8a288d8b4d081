"""Under uvloop (every Renkei process runs on it), a write to a broker connection whose transport
has closed raises RuntimeError where asyncio's raises OSError or nothing; aiokafka caught only
OSError, so the RuntimeError left its retries and ended what awaited it (a holder's inbox loop,
in a chaos run where the broker was killed). With broker.closed_transport (installed by
broker.clients), aiokafka takes it for the broken connection it is."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.client import AIOKafkaClient, ConnectionGroup
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from broker import config
from broker.clients import KafkaAccess
from broker.cluster import Cluster
from renkei import event_loop

pytestmark = pytest.mark.timeout(120)


async def _request_on_a_closed_transport(access: KafkaAccess) -> None:
    client = AIOKafkaClient(**access.aiokafka())
    await client.bootstrap()
    try:
        node_id = next(iter(client.cluster.brokers())).nodeId
        assert await client.ready(node_id)
        connection = client._conns[(node_id, ConnectionGroup.DEFAULT)]
        # The broker gone with part of an answer sent: the connection's transport is closed
        # (uvloop closes it as it tells the reader, on the next turn of the loop) and its reader
        # holds what came, not at its end: aiokafka takes the connection for a live one until
        # its read task has run.
        connection._reader.feed_data(b"\0")
        connection._writer.transport.close()
        await asyncio.sleep(0)
        assert connection.connected()
        with pytest.raises(KafkaConnectionError):
            await client.send(node_id, MetadataRequest([]))
        assert not connection.connected()
        assert (await client.fetch_all_metadata()).brokers()  # connected again
    finally:
        await client.close()


def test_a_request_on_a_closed_transport_is_a_broken_connection(broker: Cluster) -> None:
    event_loop.run(_request_on_a_closed_transport(KafkaAccess.of(config.ADMIN)))
