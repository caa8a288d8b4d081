"""The audit log's signed tree heads anchored outside its store, as Certificate Transparency's
monitors keep a log's: the audit consumer appends the heads it signs to renkei.audit.heads, a
topic its principal may append to and read but not delete from or reconfigure. `renkei audit
verify` checks the store against every head anchored there (AuditStore.verify): a store whose
newest entries were deleted with their heads is smaller than the largest, one rewritten (or cut
and grown again) has another root at an anchored size. What the consumer appended after its
last anchored head (at most HEAD_SECONDS of entries) is not anchored yet.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from audit.heads import SignedHead
from broker import topics
from broker.clients import KafkaAccess, read_topic
from renkei.envelope import send
from renkei.service_loop import deliver
from schemas.codec import CODEC, SchemaError

log = logging.getLogger(__name__)


class Anchor:
    """The heads topic as the audit consumer appends to it: a head only if it signs more entries
    than the last one appended (a restarted consumer appends its first one again: harmless)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self.size = 0

    async def publish(self, signed: SignedHead, within: float) -> None:
        """Append `signed` unless it signs no more than the last head appended; a broker that
        has not taken it within `within` seconds is logged, and the next head anchors these
        entries too."""
        if signed.head.size <= self.size:
            return
        try:
            await asyncio.wait_for(
                deliver(self._producer, [send(topics.AUDIT_HEADS, None, signed)]), within)
        except (KafkaError, TimeoutError) as exc:
            log.warning("the head of size %d is not anchored (%s): the next one will be",
                        signed.head.size, type(exc).__name__)
            return
        self.size = signed.head.size


async def anchored_heads(access: KafkaAccess) -> list[SignedHead]:
    """Every head on the heads topic now, in the order they were anchored (an unreadable record
    is logged and left out: it anchors nothing)."""
    heads = []
    for record in await read_topic(access, topics.AUDIT_HEADS):
        try:
            heads.append(CODEC.decode(record.value or b"", SignedHead))
        except SchemaError as exc:
            log.warning("an unreadable record on %s at offset %d: %s", topics.AUDIT_HEADS,
                        record.offset, exc)
    return heads
