"""Bad input at scale: the fuzz corpus sent from holders' own principals into their outboxes on
the real broker, interleaved with lawful requests; then every bad message must have got exactly
the answer it is due, every lawful request its outcome, no platform process may have died or
logged a traceback, and the platform's consumer group must have drained (no stalled partition).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from broker import acls, config, topics
from broker.clients import KafkaAccess, stopped
from holders.client import INBOX_MESSAGES, HolderClient
from processors import patterns
from renkei import exchanges, fuzz_plan, groups, scenario
from renkei.crashes import Watch
from renkei.fuzz_match import Answer, match
from renkei.fuzz_plan import Bad, Captured
from renkei.fuzz_records import Vocabulary
from renkei.service_loop import producer_for
from renkei.town import Processes, Town
from renkei.window import Window
from schemas.codec import CODEC, SchemaError
from schemas.messages import BindingAnswer, LinkageAnswer, Pong, Rejection, RekeyAnswer

CHUNK = 250  # bad messages handed to the producers at once
IN_FLIGHT = 5_000  # answers due but not yet read, above which sending waits
LAWFUL_WITHIN = 180.0  # seconds a lawful request may take
QUIET = 60.0  # seconds without a new answer after which the rest count as unanswered
DRAIN = 120.0  # seconds the platform's group may take to catch up at the end
ANSWERS = (Rejection, Pong, LinkageAnswer, BindingAnswer, RekeyAnswer)
LAWFUL_ANSWERS = frozenset({"FOUND", "NOT_FOUND"})  # the provider answered (it may not hold it)


@dataclass
class FuzzResult:
    """What the fuzz run did. `rate` is bad messages per second from the first sent until the
    last answer read; `send_rate` how fast the producers took them."""

    messages: int
    seed: int
    senders: list[str]
    sent_by_origin: dict[str, int]
    sent_by_schema: dict[str, int]
    refused_by_codec: int
    answers_due: int
    answered: int
    unanswered: int
    extra_answers: int
    unclear_rejections: int
    answers_by_kind: dict[str, int]
    rejected_by_reason: dict[str, int]
    lawful_sent: int
    lawful_outcomes: dict[str, int]
    lawful_unanswered: int
    died: list[str]
    tracebacks: dict[str, int]
    lag_end: int
    stalled_partitions: dict[str, int]
    captured: int
    corpus_seconds: float
    send_seconds: float
    elapsed_seconds: float
    send_rate: float
    rate: float
    unanswered_examples: list[str] = field(default_factory=list)
    extra_examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unanswered or self.extra_answers or self.unclear_rejections
                    or self.lawful_unanswered or self.died or self.tracebacks or self.lag_end
                    or self.stalled_partitions)

    def to_json(self) -> dict[str, Any]:
        return {"what": "fuzzed outbox messages from holders' principals, interleaved with "
                        "lawful requests", "ok": self.ok, **asdict(self)}


def vocabulary(clients: dict[str, HolderClient]) -> Vocabulary:
    """Real link codes, patterns, holders and data types, for records that get further."""
    known = patterns.load()
    codes = sorted({code for c in clients.values() for code in c.store.bindings().values()})
    return Vocabulary(codes[:2000], sorted({p.pattern_id for p in known}), sorted(clients),
                      sorted({t for p in known for t in p.data_types}))


async def capture(clients: dict[str, HolderClient], built: Town, seed: int, bind: bool,
                  warm_up: int) -> tuple[Captured, list[tuple[exchanges.Exchange, str]]]:
    """Real outbox traffic (binding, if `bind`, and `warm_up` lawful round trips): what the
    byte mutations start from; and the lawful jobs left for the run."""
    senders = sorted(clients)
    async with Window(KafkaAccess.of(config.ADMIN), [topics.outbox(h) for h in senders]) as w:
        if bind:
            await scenario.bind_all(clients)
        jobs = scenario.lawful_jobs(clients, built, seed)
        await asyncio.gather(*(scenario.round_trip(clients[e.requester], e, own, LAWFUL_WITHIN)
                               for e, own in jobs[:warm_up]))
        records = await w.rest()
    captured = Captured([(topics.holder_of_outbox(r.topic) or "", r.value) for r in records
                         if r.value is not None])
    return captured, jobs[warm_up:] or jobs


class _Inboxes:
    """Answers read from the holders' inboxes as they come."""

    def __init__(self, window: Window, holders: Sequence[str]) -> None:
        self.window = window
        self.holder = {topics.inbox(h): h for h in holders}
        self.answers: list[Answer] = []
        self.last_at = time.monotonic()

    async def read(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.take(await self.window.poll(0.2))

    def take(self, records: list[Any]) -> None:
        for record in records:
            try:
                message = CODEC.decode(record.value or b"", *INBOX_MESSAGES)
            except SchemaError:  # the platform wrote something unreadable: an extra answer
                self.answers.append(Answer(self.holder[record.topic], "?", "unreadable"))
                continue
            if isinstance(message, ANSWERS):
                self.answers.append(Answer(
                    self.holder[record.topic], message.request_id, type(message).__name__,
                    *((message.reason, message.detail) if isinstance(message, Rejection)
                      else ())))
                self.last_at = time.monotonic()


async def _send(producers: dict[str, AIOKafkaProducer], chunk: Sequence[Bad],
                first: int) -> None:
    futures = [await producers[b.sender].send(topics.outbox(b.sender), b.value,
                                              key=f"fuzz-{first + n}".encode())
               for n, b in enumerate(chunk)]
    await asyncio.gather(*futures)


@dataclass
class _Lawful:
    outcomes: Counter[str] = field(default_factory=Counter)
    ids: set[str] = field(default_factory=set)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, clients: dict[str, HolderClient], exchange: exchanges.Exchange,
              own: str) -> None:
        async def one() -> None:
            client = clients[exchange.requester]
            request_id = await scenario.ask(client, exchange, own)
            self.ids.add(request_id)
            try:
                self.outcomes[(await client.outcome(request_id, LAWFUL_WITHIN)).status] += 1
            except TimeoutError:
                self.outcomes["NO OUTCOME"] += 1

        self.tasks.append(asyncio.create_task(one()))


async def send_all(clients: dict[str, HolderClient], bad: Sequence[Bad],
                   jobs: Sequence[tuple[exchanges.Exchange, str]], lawful_every: int,
                   inboxes: _Inboxes, lawful: _Lawful) -> float:
    """The corpus, a lawful request every `lawful_every` bad messages; the seconds sending took.
    Sending waits while too many answers are due but unread."""
    producers = {h: producer_for(KafkaAccess.of(h)) for h in sorted({b.sender for b in bad})}
    for producer in producers.values():
        await producer.start()
    started, due = time.monotonic(), 0
    try:
        for first in range(0, len(bad), CHUNK):
            chunk = bad[first:first + CHUNK]
            while True:  # back-pressure: wait for the platform to catch up
                if due - len(inboxes.answers) <= IN_FLIGHT:
                    break
                await asyncio.sleep(0.05)
            for n in range(first, first + len(chunk)):
                if n % lawful_every == 0 and jobs:
                    lawful.start(clients, *jobs[(n // lawful_every) % len(jobs)])
            await _send(producers, chunk, first)
            due += sum(b.answers for b in chunk)
    finally:
        for producer in producers.values():
            await stopped(producer)
    return time.monotonic() - started


async def _wait_answers(inboxes: _Inboxes, due: int, lawful: _Lawful) -> None:
    """Until every due answer (and every lawful outcome) came, or none came for `QUIET` s."""
    while time.monotonic() - inboxes.last_at < QUIET:
        mine = sum(1 for a in inboxes.answers if a.request_id not in lawful.ids)
        if mine >= due and all(t.done() for t in lawful.tasks):
            break
        await asyncio.sleep(0.5)
    await asyncio.gather(*lawful.tasks)
    await asyncio.sleep(2.0)  # a second answer to anything would come now


async def run(clients: dict[str, HolderClient], built: Town, procs: Processes, messages: int,
              seed: int, lawful_every: int = 100, bind: bool = False,
              warm_up: int = 40) -> FuzzResult:
    """Fuzz the platform through these holders' outboxes; see `FuzzResult`."""
    watch = Watch.of(procs)
    captured, jobs = await capture(clients, built, seed, bind, warm_up)
    began = time.monotonic()
    bad = await asyncio.to_thread(fuzz_plan.corpus, messages, sorted(clients), captured,
                                  vocabulary(clients), seed)
    corpus_seconds = time.monotonic() - began
    lawful = _Lawful()
    admin = KafkaAccess.of(config.ADMIN)
    async with Window(admin, [topics.inbox(h) for h in sorted(clients)]) as window:
        inboxes, stop = _Inboxes(window, sorted(clients)), asyncio.Event()
        reader = asyncio.create_task(inboxes.read(stop))
        started = time.monotonic()
        send_seconds = await send_all(clients, bad, jobs, lawful_every,
                                      inboxes, lawful)
        await _wait_answers(inboxes, sum(b.answers for b in bad), lawful)
        stop.set()
        await reader
        inboxes.take(await window.rest())
        last = max(inboxes.last_at, started)
    lag, stalled = await asyncio.to_thread(_drained, sorted(clients))
    return _result(bad, inboxes.answers, lawful, watch, seed, sorted(clients), captured,
                   lag, stalled, corpus_seconds, send_seconds, last - started)


def _drained(senders: list[str]) -> tuple[int, dict[str, int]]:
    """The platform group's lag once drained (or `DRAIN` s passed), and outbox partitions
    still behind."""
    client = groups.admin()
    lag = groups.wait_drained(client, acls.PLATFORM_APP, DRAIN)
    behind = groups.partition_lag(client, acls.PLATFORM_APP, [topics.outbox(h) for h in senders])
    return lag, {p: n for p, n in behind.items() if n}


def _result(bad: Sequence[Bad], answers: list[Answer], lawful: _Lawful, watch: Watch, seed: int,
            senders: list[str], captured: Captured, lag: int, stalled: dict[str, int],
            corpus_seconds: float, send_seconds: float, elapsed: float) -> FuzzResult:
    found = match(bad, [a for a in answers if a.request_id not in lawful.ids])
    outcomes = lawful.outcomes
    return FuzzResult(
        messages=len(bad), seed=seed, senders=senders,
        sent_by_origin=dict(Counter(b.origin for b in bad).most_common()),
        sent_by_schema=dict(Counter(b.decoded or f"refused:{b.refused}"
                                    for b in bad).most_common()),
        refused_by_codec=sum(1 for b in bad if b.refused),
        answers_due=found.expected, answered=found.answered, unanswered=found.unanswered,
        extra_answers=found.extra, unclear_rejections=found.unclear,
        answers_by_kind=dict(found.by_kind.most_common()),
        rejected_by_reason=dict(found.rejected_by_reason.most_common(12)),
        lawful_sent=len(lawful.tasks), lawful_outcomes=dict(outcomes.most_common()),
        lawful_unanswered=sum(n for status, n in outcomes.items()
                              if status not in LAWFUL_ANSWERS),
        died=watch.died(), tracebacks=watch.tracebacks(), lag_end=lag,
        stalled_partitions=stalled, captured=len(captured.messages),
        corpus_seconds=round(corpus_seconds, 1), send_seconds=round(send_seconds, 1),
        elapsed_seconds=round(elapsed, 1),
        send_rate=round(len(bad) / send_seconds, 1) if send_seconds else 0.0,
        rate=round(len(bad) / elapsed, 1) if elapsed else 0.0,
        unanswered_examples=found.unanswered_examples, extra_examples=found.extra_examples)


def summary(r: FuzzResult) -> list[str]:
    """The figures, one per line."""
    return [
        f"bad messages: {r.messages:,} from {len(r.senders)} holders (seed {r.seed}); by origin "
        + ", ".join(f"{k} {v}" for k, v in r.sent_by_origin.items()),
        f"  refused by the codec {r.refused_by_codec:,}; read as "
        + ", ".join(f"{k} {v}" for k, v in r.sent_by_schema.items() if ":" not in k),
        f"answers: due {r.answers_due:,}, came {r.answered:,}, missing {r.unanswered}, extra "
        f"{r.extra_answers}, rejections without a reason {r.unclear_rejections}; by kind "
        + ", ".join(f"{k} {v}" for k, v in r.answers_by_kind.items()),
        "  rejected by reason: " + ", ".join(f"{k} {v}" for k, v in r.rejected_by_reason.items()),
        f"lawful: {r.lawful_sent} sent, outcomes "
        + ", ".join(f"{k} {v}" for k, v in r.lawful_outcomes.items())
        + f"; not answered by their provider {r.lawful_unanswered}",
        f"platform: died {r.died or 'none'}, tracebacks {r.tracebacks or 'none'}, lag at end "
        f"{r.lag_end}, stalled partitions {r.stalled_partitions or 'none'}",
        f"time: corpus {r.corpus_seconds}s, sending {r.send_seconds}s ({r.send_rate:,.0f}/s), "
        f"all answered in {r.elapsed_seconds}s = {r.rate:,.0f} bad messages/s",
        *(f"  missing: {e}" for e in r.unanswered_examples),
        *(f"  extra: {e}" for e in r.extra_examples),
        "OK" if r.ok else "FAILED",
    ]
