"""Answers perhaps unread: a request past its deadline is timed out only once the platform has
read every answer the broker took by then, from wherever they come.

An owner of a decision partition relays an answer at once, before the answer's record lands in
the decider's topic and before its offset in the provider's outbox is committed; crashed between,
the answer is read again by whichever member reads that outbox next. The next owner of the
partition, the request's deadline passed meanwhile, timed the request out before that: its
requester heard the answer, then TIMED_OUT, and the answer read again was refused to its provider,
which logged it not provided, though the broker took it in time. So a request past its deadline
waits until the platform's consumer group has committed, on every partition of the topic its
answer comes from (decider.answered_from), the end offset measured once the deadline passed:
every answer the broker took by the deadline was handled by then, its decision event delivered to
the decider's topic before that commit (Outflow.commit), so it lands before the sweep made after
it, and every owner replaying the partition reads the answer first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from broker.clients import committed_offsets

log = logging.getLogger(__name__)


@dataclass
class Waiting:
    """Requests past their deadlines whose answers come from `topic`, and the end offsets of its
    partitions measured after those deadlines (None: not measured yet), and their first offsets
    measured then: where a group that has committed none there, or one gone since, reads from."""

    topic: str
    request_ids: list[str] = field(default_factory=list)
    ends: dict[TopicPartition, int] | None = None
    firsts: dict[TopicPartition, int] = field(default_factory=dict)


class Unread:
    """The requests past their deadlines waiting for their answers' topics to be read, as the
    platform's consumer group (`consumer`'s) committed them."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self._waiting: list[Waiting] = []

    async def read(self, passed: Mapping[str, str]) -> list[str]:
        """The requests, of those `passed` their deadlines now (each with its answer's topic) and
        those waiting before, whose answers taken by their deadlines are all read: to time out.
        The others wait, as they do if the broker cannot tell (said, and asked again next time)."""
        by_topic: dict[str, Waiting] = {}
        for request_id, topic in passed.items():
            by_topic.setdefault(topic, Waiting(topic)).request_ids.append(request_id)
        self._waiting += by_topic.values()
        if not self._waiting:
            return []
        try:
            await self._measure([w for w in self._waiting if w.ends is None])
            committed = await committed_offsets(
                self.consumer, {tp for w in self._waiting for tp in w.ends or {}})
        except KafkaError as exc:
            log.warning("whether the answers to %d requests past their deadlines are read could "
                        "not be told (%s): they are timed out once it is", self.waiting, exc)
            return []
        done = [w for w in self._waiting if all(
            max(committed[tp] or 0, w.firsts[tp]) >= end for tp, end in (w.ends or {}).items())]
        self._waiting = [w for w in self._waiting if w not in done]
        return [request_id for w in done for request_id in w.request_ids]

    @property
    def waiting(self) -> int:
        """How many requests wait."""
        return sum(len(w.request_ids) for w in self._waiting)

    async def _measure(self, unmeasured: list[Waiting]) -> None:
        """The end and first offsets of the waiting's topics, now, after their deadlines: asked
        once, not at every sweep. A topic the consumer does not know (gone, or never made) has
        no partition, nothing unread. The group has read every answer before a partition's end
        once it has committed the end, or, having committed nothing there or an offset gone,
        once the first offset is the end (the consumer reads from it, auto_offset_reset
        earliest)."""
        parts = {w.topic: [TopicPartition(w.topic, p) for p in sorted(
            self.consumer.partitions_for_topic(w.topic) or ())] for w in unmeasured}
        wanted = [tp for tps in parts.values() for tp in tps]
        ends = await self.consumer.end_offsets(wanted) if wanted else {}
        firsts = await self.consumer.beginning_offsets(wanted) if wanted else {}
        for w in unmeasured:
            w.ends = {tp: ends[tp] for tp in parts[w.topic]}
            w.firsts = {tp: firsts[tp] for tp in parts[w.topic]}

