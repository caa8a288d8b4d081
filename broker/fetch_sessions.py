"""Incremental fetch sessions (KIP-227) for an aiokafka consumer of many partitions.

aiokafka 0.14 sends every fetch as a full one: the request names each assigned partition and
the broker answers for each of them, data or not, which the client then parses in Python. A
consumer of every holder's outbox pays that for thousands of idle partitions on every fetch.
In a fetch session the broker remembers the partitions and their fetch offsets, so a request
names only what changed since the last one and the answer carries only partitions with news.

While records keep coming, the broker is also asked to gather them for a few milliseconds, so
that one fetch (and one pass over the partitions, on both sides) carries many; once a fetch
comes back empty, the next one waits for the first record again and is answered at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import FetchSessionIdNotFound
from aiokafka.protocol.fetch import FetchRequest

log = logging.getLogger(__name__)
NO_SESSION = 0
INITIAL_EPOCH = 0  # "start a session with this full fetch (closing the one named, if any)"
MAX_EPOCH = 2**31 - 1


@dataclass(frozen=True)
class Gathering:
    """How long, and for how many bytes, the broker holds a fetch while records keep coming."""

    max_wait_ms: int
    min_bytes: int


@dataclass(frozen=True)
class Step:
    """What one fetch request says about the session: its id and epoch, what it names, forgets,
    and whether the broker should gather records for it."""

    session_id: int
    epoch: int
    named: frozenset[TopicPartition]
    forgotten: tuple[TopicPartition, ...] = ()
    gather: bool = False


@dataclass
class FetchSession:
    """The consumer's copy of what one broker remembers of its fetches."""

    session_id: int = NO_SESSION
    epoch: int = INITIAL_EPOCH
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # as the broker has them
    busy: bool = False  # the last answer carried news

    def next(self, wanted: dict[TopicPartition, int]) -> Step:
        """The next request for `wanted` (partition → fetch offset): in full, or what changed."""
        if self.epoch == INITIAL_EPOCH:
            step = Step(self.session_id, INITIAL_EPOCH, frozenset(wanted), gather=self.busy)
        else:
            changed = frozenset(tp for tp, at in wanted.items() if self.offsets.get(tp) != at)
            gone = tuple(tp for tp in self.offsets if tp not in wanted)
            step = Step(self.session_id, self.epoch, changed, gone, gather=self.busy)
        self.offsets = dict(wanted)
        return step

    def answered(self, session_id: int, error_code: int, news: bool = False) -> None:
        """The broker's answer to the last request: go on in the session, or start again."""
        self.busy = news
        if error_code:  # refused: a full fetch next, closing the session if the broker has it
            log.info("fetch session %d at epoch %d refused (error %d): starting again in full",
                     self.session_id, self.epoch, error_code)
            if error_code == FetchSessionIdNotFound.errno:
                self.session_id = NO_SESSION
            self.epoch = INITIAL_EPOCH
        elif session_id == NO_SESSION:  # the broker keeps none for us (any more)
            self.session_id, self.epoch = NO_SESSION, INITIAL_EPOCH
        elif self.epoch == INITIAL_EPOCH:
            self.session_id, self.epoch = session_id, 1
        else:
            self.epoch = 1 if self.epoch == MAX_EPOCH else self.epoch + 1

    def lost(self) -> None:
        """The last request got no answer (cancelled, failed): what the broker did is unknown."""
        self.epoch, self.busy = INITIAL_EPOCH, False


class SessionFetch(FetchRequest):  # type: ignore[misc]
    """aiokafka's full fetch request, sent as the part of it the broker's session lacks."""

    def __init__(self, full: FetchRequest, session: FetchSession,
                 gathering: Gathering | None = None) -> None:
        self.full, self.session, self.gathering = full, session, gathering
        self.step = session.next({TopicPartition(topic, partition): offset
                                  for topic, partitions in full.topics
                                  for partition, offset, _ in partitions})

    @property
    def topics(self) -> Any:
        """Every partition of the session: what aiokafka reads the answer against."""
        return self.full.topics

    def build(self, request_struct_class: Any) -> Any:
        struct = self.full.build(request_struct_class)
        if request_struct_class.API_VERSION < 7:  # a broker without sessions: always in full
            return struct
        struct.session_id, struct.session_epoch = self.step.session_id, self.step.epoch
        if self.step.gather and self.gathering is not None:
            struct.max_wait_time = self.gathering.max_wait_ms
            struct.min_bytes = self.gathering.min_bytes
        struct.topics = [(topic, named) for topic, partitions in struct.topics
                         if (named := [p for p in partitions
                                       if TopicPartition(topic, p[0]) in self.step.named])]
        forgotten: dict[str, list[int]] = defaultdict(list)
        for tp in self.step.forgotten:
            forgotten[tp.topic].append(tp.partition)
        struct.forgotten_topics_data = list(forgotten.items())
        return struct


class _AnswersToSessions:
    """The consumer's client, showing each session fetch's answer (or its loss) to its session."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
        if not isinstance(request, SessionFetch):
            return await self._client.send(node_id, request, **kwargs)
        try:
            response = await self._client.send(node_id, request, **kwargs)
        except BaseException:
            request.session.lost()
            raise
        request.session.answered(getattr(response, "session_id", NO_SESSION),
                                 getattr(response, "error_code", 0), bool(response.topics))
        return response


class SessionFetcher(Fetcher):  # type: ignore[misc]
    """aiokafka's fetcher, with one fetch session per broker."""

    _sessions: defaultdict[int, FetchSession]
    _gathering: Gathering | None

    @classmethod
    def adopt(cls, fetcher: Fetcher, gathering: Gathering | None) -> None:
        """Make a consumer's running fetcher fetch in sessions from its next request on."""
        fetcher.__class__ = cls
        fetcher._sessions = defaultdict(FetchSession)
        fetcher._gathering = gathering
        fetcher._client = _AnswersToSessions(fetcher._client)

    def _get_actions_per_node(self, assignment: Any) -> tuple[Any, ...]:
        fetches, *others = super()._get_actions_per_node(assignment)
        return ([(node, SessionFetch(request, self._sessions[node], self._gathering))
                 for node, request in fetches], *others)


class SessionConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """An aiokafka consumer whose fetches name, and get back, only partitions with news; with
    `gathering`, fetches made while records keep coming are held by the broker to fill up."""

    def __init__(self, *topics: str, gathering: Gathering | None = None, **config: Any) -> None:
        super().__init__(*topics, **config)
        self._gathering = gathering

    async def start(self) -> None:
        await super().start()
        SessionFetcher.adopt(self._fetcher, self._gathering)
