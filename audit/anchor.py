"""The audit log's signed tree heads anchored outside its store, as Certificate Transparency's
monitors keep a log's: the audit consumer appends the heads it signs to renkei.audit.heads, a
topic its principal may append to and read but not delete from or reconfigure. `renkei audit
verify` checks the store against every head anchored there (AuditStore.verify): a store whose
newest entries were deleted with their heads is smaller than the largest, one rewritten (or cut
and grown again) has another root at an anchored size. What the consumer appended after its
last anchored head (at most HEAD_SECONDS of entries) is not anchored yet: the consumer notes
the tree's size and root with each commit of its offsets on the audit topic, which the broker
keeps too, and `verify` checks the store against its last commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from audit.heads import SignedHead
from audit.store import Committed, VerifyReport
from broker import acls, topics
from broker.clients import KafkaAccess, PastEnd, read_topic
from renkei.envelope import send
from renkei.service_loop import deliver
from schemas.codec import CODEC, SchemaError

log = logging.getLogger(__name__)
TIMEOUT_MS = 10_000
ASK_AGAIN = 0.5
HEAD_SECONDS = 10.0  # the consumer's head period unless `audit run --head-seconds` says
DELIVERY_SECONDS = 10.0  # the longest a head's delivery holds the signing, whatever the period
LEAST_HEAD_SECONDS = 1.0  # the least head period: the broker is given one to take each head
UNHELD_KEPT = 100_000  # heads the store did not hold kept for the next check (~50 MB) at most

# the store's report against the heads and the commit it is given (AuditStore.verify_outside,
# what `audit verify` checks last), done off the event loop (Records.against): the first check
# against a year of heads takes ~30 s
Verify = Callable[[Sequence[SignedHead], Committed | None], Awaitable[VerifyReport]]


class Anchor:
    """The heads topic (or `topic`) as the audit consumer appends to it: a head only if it signs
    more entries than the last one appended (a restarted consumer appends its first one again:
    harmless); a delivery holds it `delivery` seconds at most."""

    def __init__(self, producer: AIOKafkaProducer, topic: str = topics.AUDIT_HEADS,
                 delivery: float = DELIVERY_SECONDS) -> None:
        self._producer, self._topic, self._delivery = producer, topic, delivery
        self.size = 0

    async def every(self, period: float, head: Callable[[], SignedHead]) -> None:
        """Anchor `head()` every `period` seconds; one the broker has not taken within the
        delivery bound (the period, if shorter) is followed by the next head that much later,
        not a whole period: with an hour's period, entries are not left unanchored for two."""
        within = min(period, self._delivery)
        wait = period
        while True:
            await asyncio.sleep(wait)
            wait = period if await self.publish(head(), within) else within

    async def publish(self, signed: SignedHead, within: float) -> bool:
        """Append `signed` unless it signs no more than the last head appended; whether the
        entries it signs are anchored. A broker that has not taken it within `within` seconds
        is logged, and the next head anchors these entries too."""
        if signed.head.size <= self.size:
            return True
        try:
            await asyncio.wait_for(
                deliver(self._producer, [send(self._topic, None, signed)]), within)
        except (KafkaError, TimeoutError) as exc:
            log.warning("the head of size %d is not anchored (%s): the next one will be",
                        signed.head.size, type(exc).__name__)
            return False
        self.size = signed.head.size
        return True


async def anchored_heads(access: KafkaAccess) -> list[SignedHead]:
    """Every head on the heads topic now, in the order they were anchored (an unreadable record
    is logged and left out: it anchors nothing)."""
    return (await _heads_from(access, 0))[0]


async def group_commit(access: KafkaAccess, topic: str = topics.AUDIT,
                       group: str = acls.AUDIT_GROUP) -> tuple[int, str] | None:
    """The audit consumer group's (or `group`'s) committed offset on the audit topic (or
    `topic`) and the note committed with it; None if it committed none (it never read the topic):
    the consumer commits only what it appended to the store."""
    partition = TopicPartition(topic, 0)
    client = AIOKafkaAdminClient(**access.aiokafka(), request_timeout_ms=TIMEOUT_MS)
    await client.start()
    try:
        found = await _offsets(client, partition, group)
    finally:
        await client.close()
    commit = found.get(partition)
    if commit is None or commit.offset < 0:  # none committed: negative
        return None
    return commit.offset, commit.metadata


async def consumer_commit(access: KafkaAccess) -> tuple[int, str]:
    """The audit consumer's committed offset on the audit topic (0 if none) and its note."""
    return await group_commit(access) or (0, "")


async def _offsets(client: AIOKafkaAdminClient, partition: TopicPartition, group: str
                   ) -> dict[TopicPartition, OffsetAndMetadata]:
    """`group`'s commits on `partition`, asked again while the broker answers that it
    cannot yet (a new cluster makes its offsets topic at the first ask), up to TIMEOUT_MS."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        try:
            found: dict[TopicPartition, OffsetAndMetadata] = \
                await client.list_consumer_group_offsets(group, partitions=[partition])
            return found
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
        await asyncio.sleep(ASK_AGAIN)


async def noted_commit(access: KafkaAccess) -> Committed | None:
    """The audit consumer's last commit with the tree it noted (None if it noted none)."""
    return Committed.of(*await consumer_commit(access))


async def outside_the_store(access: KafkaAccess) -> tuple[list[SignedHead], Committed | None]:
    """What `verify` checks the store against: every anchored head, and the last commit."""
    return await anchored_heads(access), await noted_commit(access)


async def _heads_from(access: KafkaAccess, start: int) -> tuple[list[SignedHead], int]:
    """The heads anchored from offset `start` on, and the offset after the last one read."""
    heads, after = [], start
    for record in await read_topic(access, topics.AUDIT_HEADS, start):
        after = record.offset + 1
        try:
            heads.append(CODEC.decode(record.value or b"", SignedHead))
        except SchemaError as exc:
            log.warning("an unreadable record on %s at offset %d: %s", topics.AUDIT_HEADS,
                        record.offset, exc)
    return heads, after


def held_largest(checked: Sequence[SignedHead], report: VerifyReport) -> list[SignedHead]:
    """What the next check of the store must check again of the heads `checked` that it held:
    each copy anchored of the largest one (the tree's root at a size fixes every entry below
    it, so every smaller head held holds while it does); one with a bad signature before it
    signs nothing."""
    return list(dict.fromkeys(signed for signed in checked if signed.head == report.held))


def standing(report: VerifyReport) -> tuple[SignedHead, ...] | None:
    """The heads anchored that the store did not hold, after a check with findings (each
    copy once): the next check checks them again, so that it tells every finding while they
    stand without reading the heads it held again; none after one without; None when more
    than UNHELD_KEPT: the next check reads every head again."""
    if not report.findings:
        return ()
    unheld = tuple(dict.fromkeys(report.unheld))
    return unheld if len(unheld) <= UNHELD_KEPT else None


def stood_on_lost(start: Held, report: VerifyReport) -> bool:
    """Whether the largest head the check started from, held by the store before, is held no
    more: the smaller ones it stood for are to be read again, to tell which are."""
    unheld = set(report.unheld)
    return any(signed in unheld for signed in start.heads)


@dataclass(frozen=True)
class Held:
    """Where an AnchorCheck stands after a check: the heads topic's offset to read from next,
    the heads read before it, each copy anchored before it of the largest head the store held
    (none: the next check reads every head), and, while a finding stands, the heads anchored
    before it that the store did not hold (kept by this process alone)."""

    next: int = 0
    read: int = 0
    heads: tuple[SignedHead, ...] = ()
    unheld: tuple[SignedHead, ...] = ()


class Keeper(Protocol):
    """Where an AnchorCheck keeps where it stands, for the next process (the portal's inbox)."""

    async def anchor_held(self) -> Held | None: ...

    async def keep_anchor_held(self, held: Held) -> None: ...


class AnchorCheck:
    """A store checked against the anchored heads and the audit consumer's last commit again
    and again, as the oversight page does at each view (`audit verify`'s check, done once
    there): a check reads only the heads anchored since the last, and checks them with the
    largest one the last found held. The topic keeps years of heads (one every
    HEAD_SECONDS, millions): read whole at each view, a view would take minutes and gigabytes.
    While a finding stands, a check checks again the heads the last did not hold with those
    new (a view costs what one without does); one that finds the largest head held before held
    no more is done again against every head, so that it tells them all. With a `keeper`,
    where it stands outlives the process: a restarted portal goes on from there, once the store
    is found to hold the head kept and the topic to reach it (else, and after findings against
    heads, it reads every head again)."""

    def __init__(self, access: KafkaAccess, keeper: Keeper | None = None) -> None:
        self._access, self._keeper = access, keeper
        self._lock = asyncio.Lock()
        self._held: Held | None = None  # None: where the last process stood not read yet

    async def check(self, verify: Verify) -> VerifyReport:
        """`verify`'s report on the store against every head anchored now and the audit
        consumer's last commit (one check at a time: another view's waits for it, awaiting)."""
        async with self._lock:
            start = await self._resumed(verify) if self._held is None else self._held
            try:
                report, self._held = await self._checked(start, verify)
            except PastEnd as exc:  # not the topic read before (its brokers' data made anew)
                log.warning("%s, where the last check stood: every head is read again", exc)
                start = Held()
                report, self._held = await self._checked(start, verify)
            if report.findings and stood_on_lost(start, report):
                report, self._held = await self._checked(Held(), verify)
            if self._keeper is not None:
                await self._keeper.keep_anchor_held(Held() if self._held.unheld else self._held)
            return report

    async def _resumed(self, verify: Verify) -> Held:
        """Where the last process stood, if the store still holds the head it kept (signed by
        the log's key, the tree's root at its size: a check of that head alone); else the
        start, every head read again."""
        kept = None if self._keeper is None else await self._keeper.anchor_held()
        if kept is None or not kept.next:
            return Held()
        report = await verify(kept.heads, None) if kept.heads else None
        if report is None or report.findings or report.anchor != kept.heads[0].head:
            log.warning("the store does not hold the anchored head the last check kept: every "
                        "head is read again")
            return Held()
        return kept

    async def _checked(self, held: Held, verify: Verify) -> tuple[VerifyReport, Held]:
        """`verify`'s report on the heads anchored from `held` on, with the heads it keeps, and
        on the audit consumer's last commit; and where the next check starts (from the start
        again after findings it cannot check again alone)."""
        heads, after = await _heads_from(self._access, held.next)
        checked = [*held.heads, *held.unheld, *heads]
        report = await verify(checked, await noted_commit(self._access))
        report.anchored = held.read + len(heads)
        unheld = standing(report)
        if unheld is None:
            return report, Held()
        return report, Held(after, report.anchored, tuple(held_largest(checked, report)), unheld)
