"""`renkei audit run`: the audit consumer. It appends the audit topic to the tamper-evident store,
exactly one leaf per event id and per operator action id, in the topic's order, signs heads and
anchors them outside the store (audit.anchor), and runs the live detector on what is new.

Per batch: decode (an unreadable record is logged and skipped), pick the events the store does not
hold yet, deliver the detector's alerts for them (told when they were read: one dated far ahead of
that, its writer's clock set wrong, counts as of then), append the batch, those alerts and the time
of that reading in one transaction, and only then let the service loop commit the offsets. A crash
anywhere replays the batch: the store keeps the first entry per event id, so nothing is doubled; an
alert may come twice, under the same alert id, never not at all. Caught up (no record left to read),
the consumer tells the detector the time, every couple of seconds: the decisions on unbound persons
due by then are taken, their alerts delivered and stored as a batch's are, in a quiet log too, where
no later event would move the events' time on. A restarted consumer's detector resumes from the
store: the alerts it raises are those the stopped one would have.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from audit.anchor import Anchor, consumer_commit
from audit.detector import QUIETED, Detector, Raised, Rules
from audit.events import AccessLogEvent, Logged, OperatorAction, logged_key
from audit.store import AuditStore
from broker import acls, topics
from broker.clients import KafkaAccess, started
from renkei.envelope import Send, send, unpacked
from renkei.service_loop import (
    STOP_SECONDS,
    deliver,
    producer_for,
    serve,
    stop_on_signals,
    unless_stopped,
)
from renkei.tasks import beside, cancelled
from schemas.codec import CODEC, NewerVersion, UnknownSchema
from schemas.messages import Alert

log = logging.getLogger(__name__)
GATHER_MS = 250  # each batch is one transaction of the store: fewer, fuller ones cost less


def member_id(instance: str) -> str:
    """The audit group's static member id of the consumer run as `instance` (`audit run
    --instance`): `audit recommit` commits as it."""
    return f"{acls.AUDIT_GROUP}-{instance}"


def read_audit(records: Sequence[Any]) -> list[tuple[Logged, bytes]]:
    """Each readable access-log event (alone or in a batch) and operator action as (it, its
    bytes), in the topic's order: the leaves they make; an unreadable record is logged and
    skipped, but one of a schema a newer version of Renkei wrote (NewerVersion): its reader
    stops, the event left in the topic for the reader upgraded, not lost to the store."""
    leaves: list[tuple[Logged, bytes]] = []
    for record in records:
        for value in unpacked(record.value or b""):
            try:
                message = CODEC.decode(value, AccessLogEvent, OperatorAction)
            except UnknownSchema as exc:
                raise NewerVersion(record.topic, "audit reader", exc) from None
            except ValueError as exc:  # SchemaError, or an event that breaks its own rules
                log.error("skipped an unreadable audit event at %s:%s:%s: %s", record.topic,
                          record.partition, record.offset, exc)
                continue
            leaves.append((message, value))
    return leaves


def new_leaves(store: AuditStore, leaves: Sequence[tuple[Logged, bytes]]
               ) -> list[tuple[Logged, bytes]]:
    """The batch's events and operator actions the store does not hold yet, the first of each
    id, in order, each with its bytes."""
    held = store.held([record for record, _ in leaves])
    fresh: dict[tuple[str, str], tuple[Logged, bytes]] = {}
    for record, leaf in leaves:
        if (key := logged_key(record)) not in held:
            fresh.setdefault(key, (record, leaf))
    return list(fresh.values())


def new_events(store: AuditStore, leaves: Sequence[tuple[Logged, bytes]]
               ) -> list[AccessLogEvent]:
    """The batch's events the store does not hold yet, the first of each event id."""
    return [r for r, _ in new_leaves(store, leaves) if isinstance(r, AccessLogEvent)]


def resumed(store: AuditStore, rules: Rules, now: datetime) -> Detector:
    """A detector that goes on where the store's last one stopped, started at `now`: the log's
    last horizon re-read with the alerts raised on it, and those whose quiet reaches further
    (off-hours, suspended requests); an event dated more than the skew past its reading
    (its writer's clock wrong) ends that horizon or starts it, and counts, at the time it was
    read, as it did then (one stored before that time was kept: at `now`, if past the skew
    from it)."""
    detector = Detector(rules, store.bound_since)
    ahead = rules.last_at(now)
    latest = store.latest_time(until=ahead)
    if latest is not None:
        horizon = latest - rules.horizon
        detector.resume(store.recent_events(horizon, until=ahead), itertools.chain(
            store.raised_since(horizon),
            *(store.raised_since(latest - rules.memory, rule, until=horizon) for rule in QUIETED)),
            now)
    return detector


async def run(store: AuditStore, access: KafkaAccess, stop: asyncio.Event, head_seconds: float,
              instance: str = "1", rules: Rules | None = None,
              ready: asyncio.Event | None = None) -> None:
    """Consume until `stop` is set; sign a head every `head_seconds` if entries came, and anchor
    it on the heads topic (and the last one at the stop); note the tree's size and root with
    each commit of offsets, which the broker keeps out of the store's reach too. LostEntries,
    and no going on, if the store lost entries of the last commit (at the start) or any this
    consumer knew (at each append, head and note): appended after the gap, new entries would
    hide it; at a head, the consumer stops at once, though no batch comes. ForgedNote, and no
    start, if the head key did not sign the last commit's note."""
    detector = resumed(store, rules or Rules(), datetime.now(UTC))
    alerts = producer_for(access)
    anchor = Anchor(alerts)

    async def alert(raised: Sequence[Alert], leaves: Sequence[tuple[Logged, bytes]] = (),
                    read_ahead: Mapping[str, datetime] | None = None) -> None:
        """The alerts delivered, then stored with the leaves they were raised on (if any), and
        when the events counted as of their reading were read."""
        await deliver(alerts, [send(topics.ALERTS, a.requester, a) for a in raised])
        if leaves or raised:
            store.append_many(leaves, [Raised.of(a) for a in raised], read_ahead)

    async def handle(records: list[Any]) -> Sequence[Send]:
        leaves, read = read_audit(records), datetime.now(UTC)
        events = new_events(store, leaves)
        await alert(detector.observe(events, read), leaves,
                    detector.rules.read_ahead(events, read))
        return []

    async def caught_up(read: datetime) -> None:
        """Every event logged by `read` read: the decisions due by then taken. `read` is of this
        process's wall clock (the audit topic's records are stamped by their writers: the
        broker's time is not at hand), the events' of the platform's broker time: a clock ahead
        of that takes the decisions as much early, a binding read that much less late."""
        await alert(detector.caught_up(read))

    signing: asyncio.Task[None] | None = None
    try:
        if await unless_stopped(stop, started(alerts, access)):
            store.check_commit(*await consumer_commit(access))
            signing = asyncio.create_task(anchor.every(head_seconds, store.head))
            await beside(signing, serve(  # LostEntries at a head, no batch coming: it stops
                access, [topics.AUDIT], acls.AUDIT_GROUP, handle, stop, ready,
                instance=member_id(instance), gather_ms=GATHER_MS, producer=alerts,
                note=store.commit_note, idle=caught_up))
    finally:
        try:
            if signing is not None:  # the producer started, the store found whole
                await cancelled(signing)
                await anchor.publish(store.head(), STOP_SECONDS)  # LostEntries: none signed
        finally:
            await alerts.stop()


async def main(store: AuditStore, instance: str, head_seconds: float, rules: Rules,
               ready: asyncio.Event) -> None:
    """The `audit run` process: until SIGTERM or SIGINT; `ready` set once it consumes."""
    await run(store, KafkaAccess.of(acls.AUDIT), stop_on_signals(), head_seconds, instance,
              rules, ready)
