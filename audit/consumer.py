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
store: the alerts it raises are those the stopped one would have. Its re-read of the last horizon
(millions of events in a busy log, minutes) runs beside the batches: they are appended as they
come, each kept unjudged with its reading's time (and the times the consumer caught up between
them), and once it has re-read, the detector is told them batch by batch as the consumer that never
stopped told its own, their alerts then delivered and stored.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.anchor import Anchor, consumer_commit
from audit.detector import QUIETED, Detector, Raised, Rules
from audit.events import AccessLogEvent, Logged, OperatorAction, logged_key
from audit.heads import Signer
from audit.store import AuditStore, Unjudged, beyond_retention
from broker import acls, topics
from broker.clients import KafkaAccess, started
from renkei.envelope import Send, send, unpacked
from renkei.service_loop import (
    STOP_SECONDS,
    close_producer,
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
    """The batch's events the store does not hold yet and logs, the first of each event id: none
    older than the last purge's cutoff (beyond_retention), which it does not log. The detector
    judges what the log keeps: a restarted one is told what was appended, and re-reads the log."""
    cutoff = store.last_cutoff()
    return [r for r, _ in new_leaves(store, leaves)
            if isinstance(r, AccessLogEvent) and not beyond_retention(r, cutoff)]


def resumed(store: AuditStore, rules: Rules, now: datetime) -> Detector:
    """A detector that goes on where the store's last one stopped, started at `now` (`reread`),
    the store asked of bindings."""
    detector = Detector(rules, store.bound_since)
    reread(detector, store, now)
    return detector


def reread(detector: Detector, log_: AuditStore, now: datetime, judged: int | None = None
           ) -> None:
    """The detector resumed from `log_` alone: the log's last horizon before serial `judged`
    (if given: those the last one judged; that horizon ends at the latest of them, not at one
    appended unjudged since) re-read with the alerts raised on it, and those whose quiet
    reaches further (off-hours, suspended requests); an event dated more than the skew past its
    reading (its writer's clock wrong) ends that horizon or starts it, and counts, at the time it
    was read, as it did then (one stored before that time was kept: at `now`, if past the skew
    from it). Resuming, the detector asks no binding (Detector.resume): read on a connection
    of its own, this may run on a thread of its own beside the writer's."""
    rules = detector.rules
    ahead = rules.last_at(now)
    latest = log_.latest_time(until=ahead, before=judged)
    if latest is not None:
        horizon = latest - rules.horizon
        detector.resume(log_.recent_events(horizon, until=ahead, before=judged), itertools.chain(
            log_.raised_since(horizon),
            *(log_.raised_since(latest - rules.memory, rule, until=horizon) for rule in QUIETED)),
            now)


def reread_apart(detector: Detector, url: str | Path, public_key: Ed25519PublicKey,
                 now: datetime, judged: int, halt: threading.Event) -> None:
    """`reread` through a reader of its own on the store at `url` (for a thread of its own),
    its reads refused (Stopped) once `halt` is set: the consumer stopping does not wait for a
    re-read of minutes."""
    with AuditStore(url, Signer(public_key)) as reader:
        reader.stopped_by(halt)
        reread(detector, reader, now, judged)


class BoundBefore:
    """The store's bindings as the detector asks of them (Detector's `bound`): while it is told
    what was appended as it resumed, those of the entries before the batch it is told of (or
    before the time it is told caught up), as the store held them when a consumer that never
    stopped was told it (bindings appended later, it sees in the batches as it is told them);
    else all."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self.before: int | None = None

    def __call__(self, holder: str, person: str) -> datetime | None:
        return self.store.bound_since(holder, person, self.before)


def tell(store: AuditStore, detector: Detector, bound: BoundBefore, told: Unjudged
         ) -> list[Alert]:
    """The alerts the detector raises told what a consumer that never stopped told its own when
    it came: a batch appended as it resumed (its events, in order, read when it was), or the
    consumer caught up as of then, the store asked of the bindings before it (`bound`)."""
    bound.before = told.since
    try:
        if told.caught_up:
            return detector.caught_up(told.read_at)
        batch = [event for event, _ in store.appended_since(told.since, before=told.until)]
        return detector.observe(batch, told.read_at)
    finally:
        bound.before = None


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
    rules = rules or Rules()
    live: list[Detector] = []  # the detector, once it was told all that was kept unjudged
    judging = asyncio.Lock()  # a batch appended, or told, at a time
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
        async with judging:
            events = new_events(store, leaves)
            ahead = rules.read_ahead(events, read)
            if not live:  # appended now, told once the detector has re-read its horizon
                store.append_many(leaves, read_ahead=ahead, unjudged=read)
                return []
            await alert(live[0].observe(events, read), leaves, ahead)
        return []

    async def detect(judged: int) -> None:
        """The detector resumed (the entries before serial `judged` re-read, on a thread of its
        own: the batches coming are appended beside it, a busy log's horizon is millions of
        events, minutes to re-read), then told, in order, each batch appended since and each
        time the consumer caught up since, as a consumer that never stopped told its own, a
        batch or time at a time beside the batches still coming: live once it was told all."""
        bound = BoundBefore(store)
        detector, halt = Detector(rules, bound), threading.Event()
        try:
            await asyncio.to_thread(reread_apart, detector, store.url, store.signer.public_key,
                                    datetime.now(UTC), judged, halt)
        finally:
            halt.set()
        while True:
            async with judging:
                if (told := store.first_unjudged()) is None:
                    live.append(detector)
                    return
                raised = tell(store, detector, bound, told)
                await deliver(alerts, [send(topics.ALERTS, a.requester, a) for a in raised])
                store.judged([Raised.of(a) for a in raised], told)
            await asyncio.sleep(0)

    async def caught_up(read: datetime) -> None:
        """Every event logged by `read` read: the decisions due by then taken (kept to be taken
        so while the detector resumes). `read` is of this process's wall clock (the audit
        topic's records are stamped by their writers: the broker's time is not at hand), the
        events' of the platform's broker time: a clock ahead of that takes the decisions as much
        early, a binding read that much less late."""
        async with judging:
            if not live:
                store.unjudged_caught_up(read)
                return
            await alert(live[0].caught_up(read))

    signing: asyncio.Task[None] | None = None
    detecting: asyncio.Task[None] | None = None
    reached = True  # the broker, by the stop of the consumer (serve): not waited for again
    try:
        if await unless_stopped(stop, started(alerts, access)):
            store.check_commit(*await consumer_commit(access))
            judged = store.unjudged_since()  # those before it the stopped one judged
            detecting = asyncio.create_task(detect(store.size() if judged is None else judged))
            signing = asyncio.create_task(anchor.every(head_seconds, store.head))
            reached = await beside(detecting, beside(signing, serve(  # LostEntries at a head
                access, [topics.AUDIT], acls.AUDIT_GROUP, handle, stop, ready,
                instance=member_id(instance), gather_ms=GATHER_MS, producer=alerts,
                note=store.commit_note, idle=caught_up)))
    finally:
        anchored = reached
        try:
            await cancelled(detecting)
            if signing is not None:  # the producer started, the store found whole
                await cancelled(signing)
                signed = store.head()  # LostEntries: none signed
                if reached:
                    anchored = await anchor.publish(signed, STOP_SECONDS)
                elif signed.head.size > anchor.size:  # a step of its stop did not end in time
                    # (serve said which): the broker not waited for again
                    log.warning("the head of size %d is not anchored at the stop (a step of the "
                                "stop did not end in time, said above): the next start's will be",
                                signed.head.size)
        finally:  # bounded: a broker away would hold stop() until it came back; one that did
            # not take the last head just now (or the consumer's stop) is not waited for again
            await close_producer(alerts, away=not anchored)


async def main(store: AuditStore, instance: str, head_seconds: float, rules: Rules,
               ready: asyncio.Event) -> None:
    """The `audit run` process: until SIGTERM or SIGINT; `ready` set once it consumes."""
    await run(store, KafkaAccess.of(acls.AUDIT), stop_on_signals(), head_seconds, instance,
              rules, ready)
