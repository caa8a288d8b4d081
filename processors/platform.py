"""The platform's faust app: thin agents around the pure handlers."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust

from broker import acls, topics
from broker.clients import KafkaAccess
from processors import outbox
from processors.effects import Send

log = logging.getLogger(__name__)
HOLDER_WATCH_SECONDS = 3.0


def build_app(access: KafkaAccess, datadir: Path, replication: int = 1) -> Any:
    """The platform app: every holder's outbox, consumed by one consumer group."""
    app = faust.App(
        acls.PLATFORM_APP,
        broker=access.faust_broker(),
        broker_credentials=access.faust_credentials(),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=8,
        topic_replication_factor=replication,
        topic_disable_leader=True,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
    )
    # a new holder's outbox joins the subscription within seconds, not faust's default 45 s
    app.topics._resubscribe_sleep_lock_seconds = HOLDER_WATCH_SECONDS  # type: ignore[attr-defined]
    outboxes = app.topic(*holder_outboxes(access), key_type=bytes, value_type=bytes,
                         value_serializer="raw", key_serializer="raw")

    async def deliver(effects: list[Send]) -> None:
        for effect in effects:
            await app.producer.send(
                effect.topic,
                effect.key.encode() if effect.key is not None else None,
                effect.value,
                None,
                None,
                None,
            )

    @app.agent(outboxes, name="outbox")
    async def on_outbox(stream: Any) -> None:
        async for event in stream.events():
            holder = topics.holder_of_outbox(event.message.topic)
            if holder is None:
                continue
            await deliver(outbox.handle(holder, event.value, datetime.now(UTC)))

    @app.timer(HOLDER_WATCH_SECONDS)
    async def watch_holders() -> None:
        """Subscribe to the outbox of every holder added since start (faust has no patterns)."""
        found = await asyncio.to_thread(holder_outboxes, access)
        if set(found) - set(outboxes.topics):
            log.info("new holder outboxes: %s", sorted(set(found) - set(outboxes.topics)))
            app.topics.discard(outboxes)
            outboxes.topics = found
            app.topics.add(outboxes)

    return app


def holder_outboxes(access: KafkaAccess) -> list[str]:
    """The outbox topics of all holders the broker knows (the platform may read them all)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**access.confluent(), "log_level": 0})
    names = admin.list_topics(timeout=10).topics
    return sorted(t for t in names if topics.holder_of_outbox(t) is not None)
