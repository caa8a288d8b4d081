"""The audit topic read from its start to its current end, without a consumer group."""

from __future__ import annotations

from audit.events import AccessLogEvent, OperatorAction
from broker import topics
from broker.clients import KafkaAccess, read_topic
from renkei.envelope import unpacked
from schemas.codec import CODEC


async def read_events(access: KafkaAccess,
                      request_ids: set[str] | None = None) -> list[AccessLogEvent]:
    """Every access-log event on the topic now (alone or in batches; optionally only of some
    requests), in order; the operator actions beside them left out."""
    read = [CODEC.decode(value, AccessLogEvent, OperatorAction)
            for r in await read_topic(access, topics.AUDIT) for value in unpacked(r.value or b"")]
    return [e for e in read if isinstance(e, AccessLogEvent)
            and (request_ids is None or e.request_id in request_ids)]
