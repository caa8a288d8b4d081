"""The platform's faust app: thin agents around the pure handlers.

- `outbox`: every holder's outbox (requests, answers, binding, ping), a batch at a time;
- `registry`: the registry's answers to binding look-ups;
- `decide`: the decider, keyed by request id, with its table of request states;
- timers: deadlines and forgetting (`Sweep`s), and new holders' outboxes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import faust

from broker import acls, topics
from broker.clients import KafkaAccess
from processors import binding, decider, keys, outbox
from processors.approval import PatternList
from processors.codes import CodeService
from processors.context import Context
from processors.isolation import isolated
from processors.tickets import TicketSealer
from renkei.compacted import CompactedView
from renkei.envelope import Incoming, Send
from schemas.codec import CODEC, SchemaError
from schemas.messages import (
    HolderEntry,
    LegalPattern,
    Outcome,
    Pending,
    RegistryAnswer,
    RequestState,
    Sweep,
)

log = logging.getLogger(__name__)
HOLDER_WATCH_SECONDS = 3.0
SWEEP_SECONDS = 1.0
BATCH, BATCH_WITHIN = 500, 0.005


class States:
    """The decider's faust table (changelogged), holding each RequestState as Avro bytes."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, request_id: str) -> RequestState | None:
        data = self.table.get(request_id)
        return None if data is None else CODEC.decode(data, RequestState)

    def put(self, state: RequestState) -> None:
        self.table[state.request_id] = CODEC.encode(state)

    def forget(self, request_id: str) -> None:
        if request_id in self.table:
            del self.table[request_id]

    def all(self) -> list[RequestState]:
        return [CODEC.decode(data, RequestState) for data in self.table.values()]


class Views:
    """The compacted topics the platform follows, and the context rebuilt when they change."""

    def __init__(self, access: KafkaAccess, ctx: Context) -> None:
        self.ctx = ctx
        self.directory = CompactedView(access, topics.DIRECTORY,
                                       lambda b: CODEC.decode(b, HolderEntry))
        self.patterns = CompactedView(access, topics.PATTERNS,
                                      lambda b: CODEC.decode(b, LegalPattern))
        self._seen = (-1, -1)

    async def start(self) -> None:
        await self.directory.start()
        await self.patterns.start()
        await self.directory.loaded()
        await self.patterns.loaded()

    def refresh(self) -> Context:
        """The context, with amendments to the directory and pattern list applied live."""
        seen = (self.directory.version, self.patterns.version)
        if seen != self._seen:
            self._seen = seen
            self.ctx.directory = {e.holder_id: e for e in self.directory.entries.values()}
            self.ctx.patterns = PatternList(self.patterns.entries.values())
        return self.ctx


def build_app(access: KafkaAccess, datadir: Path, instance: str = "1", replication: int = 1,
              answer_timeout: timedelta | None = None) -> Any:
    """The platform app: one consumer group over every holder's outbox and its own topics."""
    master = keys.load()
    ctx = Context(CodeService(master), TicketSealer(master.ticket_key()), master.sealing_key())
    if answer_timeout is not None:
        ctx.answer_timeout = answer_timeout
    views = Views(access, ctx)
    timers = decider.Timers()
    app = faust.App(
        acls.PLATFORM_APP,
        broker=access.faust_broker(),
        broker_credentials=access.faust_credentials(),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=decider.PARTITIONS,
        topic_replication_factor=replication,
        topic_disable_leader=True,
        table_standby_replicas=0,
        producer_acks=-1,
        producer_linger=0.002,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
    )
    # a new holder's outbox joins the subscription within seconds, not faust's default 45 s
    app.topics._resubscribe_sleep_lock_seconds = HOLDER_WATCH_SECONDS  # type: ignore[attr-defined]
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                           "value_serializer": "raw"}
    outboxes = app.topic(*holder_outboxes(access), **raw)
    registry_answers = app.topic(topics.REGISTRY_OUT, **raw)
    decisions = app.topic(decider.DECISIONS, internal=True, partitions=decider.PARTITIONS,
                          retention=timedelta(hours=6), **raw)
    requests = app.Table("requests", partitions=decider.PARTITIONS, key_type=str,
                         value_type=bytes)
    states = States(requests)

    async def deliver(effects: Iterable[Send]) -> None:
        for effect in effects:
            await app.producer.send(effect.topic,
                                    effect.key.encode() if effect.key is not None else None,
                                    effect.value, effect.partition, None, None)

    @app.task
    async def follow_views() -> None:
        await views.start()

    @app.agent(outboxes, name="outbox")
    async def on_outbox(stream: Any) -> None:
        await views.directory.loaded()
        await views.patterns.loaded()
        async for events in stream.take_events(BATCH, BATCH_WITHIN):
            batch = [_incoming(e) for e in events]
            await deliver(outbox.handle(batch, views.refresh(), datetime.now(UTC)))

    @app.agent(registry_answers, name="registry-answers")
    async def on_registry(stream: Any) -> None:
        await views.directory.loaded()
        async for events in stream.take_events(BATCH, BATCH_WITHIN):
            answers = []
            for event in events:
                try:
                    answers.append(CODEC.decode(event.value or b"", RegistryAnswer))
                except SchemaError as exc:
                    log.warning("an unreadable registry answer: %s", exc)
            answer = partial(binding.answered, now=datetime.now(UTC), ctx=views.refresh())
            await deliver(isolated(answers, answer, lambda item, exc: []))

    @app.agent(decisions, name="decide")
    async def decide(stream: Any) -> None:
        await views.directory.loaded()
        async for event in stream.events():
            try:
                await decide_one(event)
            except Exception:  # a bug must not stop the decider: log it, keep the partition
                log.exception("decision %s failed", _incoming(event).source)

    async def decide_one(event: Any) -> None:
        now = datetime.now(UTC)
        try:
            message = CODEC.decode(event.value or b"", Pending, Outcome, Sweep)
        except SchemaError as exc:
            log.error("an unreadable decision at %s: %s", _incoming(event).source, exc)
            return
        ctx = views.refresh()
        if isinstance(message, Sweep):
            for request_id in message.expire:
                before = states.get(request_id)
                await apply(before, decider.on_deadline(before, now, ctx))
            for request_id in message.forget:
                before = states.get(request_id)
                await apply(before, decider.on_forget(before, now))
        elif isinstance(message, Pending):
            before = states.get(message.request_id)
            await apply(before, decider.on_pending(message, before, now, ctx))
        else:
            before = states.get(message.request_id)
            await apply(before, decider.on_outcome(message, before, now))

    async def apply(before: RequestState | None, decision: decider.Decision) -> None:
        if decision.state is None:
            if before is not None:
                states.forget(before.request_id)
        elif decision.state != before:
            states.put(decision.state)
            timers.watch(decision.state)
        await deliver(decision.effects)

    @requests.on_recover
    async def rewatch() -> None:
        for state in states.all():
            timers.watch(state)

    @app.timer(SWEEP_SECONDS)
    async def sweep() -> None:
        now = datetime.now(UTC)
        for partition, (expire, forget) in timers.due(now).items():
            await deliver([decider.to_partition(
                partition, Sweep(now, tuple(expire), tuple(forget)))])

    @app.timer(HOLDER_WATCH_SECONDS)
    async def watch_holders() -> None:
        """Subscribe to the outbox of every holder added since start (faust has no patterns).

        The agent reads through an iterator clone of the outbox topic registered with the
        conductor: that clone is the channel to widen, then the conductor resubscribes.
        """
        found = await asyncio.to_thread(holder_outboxes, access)
        before = list(outboxes.topics)
        if not set(found) - set(before):
            return
        log.info("new holder outboxes: %s", sorted(set(found) - set(before)))
        for channel in [c for c in app.topics if list(c.topics) == before]:
            app.topics.discard(channel)
            channel.topics = found
            app.topics.add(channel)
        outboxes.topics = found

    return app


def _incoming(event: Any) -> Incoming:
    message = event.message
    return Incoming(message.topic, message.partition, message.offset,
                    datetime.fromtimestamp(message.timestamp, UTC), event.value)


def holder_outboxes(access: KafkaAccess) -> list[str]:
    """The outbox topics of all holders the broker knows (the platform may read them all)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**access.confluent(), "log_level": 0})
    names = admin.list_topics(timeout=10).topics
    return sorted(t for t in names if topics.holder_of_outbox(t) is not None)
