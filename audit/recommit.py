"""`renkei audit recommit`: the audit consumer group given a good commit again after the consumer
stopped at a forged commit note (ForgedNote). The offset committed is the one the store accounts
for, read from the topic and the store, not from the forged commit: the first record with an
event the store does not hold. The consumer starts there; the events it holds again it does not
append again, so none is lost and none doubled.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from audit.consumer import member_id, read_audit
from audit.events import logged_key
from audit.store import AuditStore, beyond_retention
from broker import acls, topics
from broker.clients import KafkaAccess, offsets, running, topic_batches
from renkei.service_loop import consumer_for

JOIN_SECONDS = 30.0
POLL_MS = 200


class NotAssigned(RuntimeError):
    """The audit topic stayed assigned to another member of the audit group: a consumer runs."""


async def accounted_offset(access: KafkaAccess, store: AuditStore,
                           topic: str = topics.AUDIT) -> int:
    """The offset of the first record on the audit topic (or `topic`) with an event or an
    operator action the store does not hold (one older than the last purge's cutoff aside: the
    store would not log it), or the topic's end: the consumer appended the events and
    actions of every record before it. A topic whose retention deleted every record lacks
    nothing: its end, its start too (not 0, before it, which would leave the consumer's
    auto.offset.reset to decide)."""
    cutoff = store.last_cutoff()
    end = (await offsets(access, topic))[1]
    async for records in topic_batches(access, topic):
        carried = [(int(record.offset), read_audit([record])) for record in records]
        held = store.held([logged for _, leaves in carried for logged, _ in leaves])
        for offset, leaves in carried:
            if any(logged_key(logged) not in held and not beyond_retention(logged, cutoff)
                   for logged, _ in leaves):
                return offset
        end = records[-1].offset + 1
    return end


async def commit_as_member(access: KafkaAccess, instance: str, offset: int, note: str) -> None:
    """Commit `offset` of the audit topic with `note` as the audit consumer's static member
    `instance`: it takes the place of a stopped one at once, where an offset change from outside
    the group waits until that one's session ends. NotAssigned if the topic stays another
    member's for JOIN_SECONDS."""
    member = consumer_for(access, [topics.AUDIT], acls.AUDIT_GROUP, instance=member_id(instance))
    async with running(member, access):
        try:
            async with asyncio.timeout(JOIN_SECONDS):
                while not member.assignment():
                    await member.getmany(timeout_ms=POLL_MS)
        except TimeoutError:
            raise NotAssigned(f"the audit topic stayed assigned to another member of "
                              f"{acls.AUDIT_GROUP} for {JOIN_SECONDS:.0f} s: an audit consumer "
                              "runs (stop it first)") from None
        await member.commit({TopicPartition(topics.AUDIT, 0): (offset, note)})


async def recommit(access: KafkaAccess, store: AuditStore, instance: str) -> int:
    """Commit the offset the store accounts for with a note of its tree the head key signs, as
    the consumer's static member `instance`; the offset committed."""
    offset = await accounted_offset(access, store)
    await commit_as_member(access, instance, offset, store.commit_note(offset))
    return offset
