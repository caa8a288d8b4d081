"""aiokafka 0.14's AIOKafkaClient.bootstrap opens a connection to a bootstrap server to ask it
for the cluster's metadata, and closes it when that request fails with a KafkaError or times
out, not when the bootstrap is cancelled (a service told to stop while its clients start) or
fails otherwise: the connection, held by the abandoned call only, stays open until the collector
finds it ("Unclosed AIOKafkaConnection", said in whatever runs then). Stopping the client does
not close it: the client never kept it. Installed, a connection a bootstrap opened and did not
keep is closed when the bootstrap ends by any exception.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

import aiokafka.client
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import AIOKafkaConnection

_bootstrap = AIOKafkaClient.bootstrap
_create_conn = aiokafka.client.create_conn
# the task bootstrapping in this context and the connections it opened (its metadata
# synchroniser, a task it makes, inherits the context, and opens connections of its own)
_opening: ContextVar[tuple[asyncio.Task[Any] | None, list[AIOKafkaConnection]]] = ContextVar(
    "bootstrap_opening")


async def _noted(*args: Any, **kwargs: Any) -> AIOKafkaConnection:
    """aiokafka's create_conn, the connection noted if a bootstrap in this task opened it."""
    connection: AIOKafkaConnection = await _create_conn(*args, **kwargs)
    task, opened = _opening.get((None, []))
    if task is not None and task is asyncio.current_task():
        opened.append(connection)
    return connection


async def _closing(self: AIOKafkaClient) -> None:
    """aiokafka's bootstrap, the connections it opened and did not keep closed if it raises."""
    opened: list[AIOKafkaConnection] = []
    token = _opening.set((asyncio.current_task(), opened))
    try:
        await _bootstrap(self)
    except BaseException:
        for connection in opened:
            if connection not in self._conns.values():
                connection.close()
        raise
    finally:
        _opening.reset(token)


def install() -> None:
    """Every client of this process closes a bootstrap's connection it does not keep, however
    the bootstrap ends; again is harmless."""
    AIOKafkaClient.bootstrap = _closing
    aiokafka.client.create_conn = _noted
