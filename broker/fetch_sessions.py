"""Incremental fetch sessions (KIP-227) for an aiokafka consumer of many partitions.

aiokafka 0.14 sends every fetch as a full one: the request names each assigned partition and
the broker answers for each of them, data or not, which the client then parses in Python. A
consumer of every holder's outbox pays that for thousands of idle partitions on every fetch.
In a fetch session the broker remembers the partitions and their fetch offsets, so a request
names only what changed since the last one and the answer carries only partitions with news.

While records keep coming, the broker is also asked to gather them for a few milliseconds, so
that one fetch (and one pass over the partitions, on both sides) carries many; once a fetch
comes back empty, the next one waits for the first record again and is answered at once.

What to fetch is decided without aiokafka's own pass over every partition while they are all
in the usual state (a lean pass, or none while no broker can be fetched from), and aiokafka
reads each answer against the partitions in it rather than every partition of the session.

The broker, too, goes through every partition of a session (and authorizes every topic in it)
on each fetch, and each time a record arrives on any of them while it holds the fetch. With
`quiet`, partitions without records for a while leave the busy session for one of their own, on
a connection of its own, which the broker holds until one of them has records: thousands of idle
partitions then cost the broker a fetch every few seconds, not one per busy fetch. A watch given
up (each rebalance cancels it) closes that connection, so no watch after it waits behind it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.conn import CloseReason
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import FetchSessionIdNotFound
from aiokafka.protocol.fetch import FetchRequest

from broker.membership import GroupMember

log = logging.getLogger(__name__)
NO_SESSION = 0
INITIAL_EPOCH = 0  # "start a session with this full fetch (closing the one named, if any)"
MAX_EPOCH = 2**31 - 1
BUSY_CONNECTION, QUIET_CONNECTION = 0, 2  # aiokafka's own (its group 0), one for quiet partitions


@dataclass(frozen=True)
class Gathering:
    """How long, and for how many bytes, the broker holds a fetch while records keep coming."""

    max_wait_ms: int
    min_bytes: int


@dataclass(frozen=True)
class Quiet:
    """After how long without records a partition is quiet; how long the broker may hold the
    quiet partitions' fetch (it answers as soon as one has records); and how long the busy
    partitions' fetches may then wait (a partition with records again rejoins them when theirs
    returns)."""

    after_seconds: float
    watch_wait_ms: int
    busy_wait_ms: int


class Hearing:
    """When each partition last brought records (first assigned counts as bringing some),
    oldest first, so that the busy ones are found without a pass over all of them; and when
    quiet partitions are next to be looked for (`due`): no later than any partition heard of
    turns quiet, lest one leave the busy ones with nothing to watch it."""

    def __init__(self, quiet: Quiet) -> None:
        self.quiet = quiet
        self.grace = 2 * quiet.watch_wait_ms / 1000  # gone quiet, still busy too: for a watch
        self.last: dict[TopicPartition, float] = {}  # in the order last heard
        self.due = 0.0
        self._met: object = None

    def heard(self, partitions: Iterable[TopicPartition], now: float) -> None:
        for tp in partitions:
            self.last.pop(tp, None)
            self.last[tp] = now
            self.due = min(self.due, now + self.quiet.after_seconds)

    def forget(self, tp: TopicPartition) -> None:
        """A partition no longer assigned."""
        del self.last[tp]

    def meet(self, assignment: Any, now: float) -> None:
        """Partitions of a new assignment not heard of yet count as heard now."""
        if assignment is not self._met:
            self._met = assignment
            self.heard([tp for tp in assignment.tps if tp not in self.last], now)

    def busy(self, now: float) -> Iterator[TopicPartition]:
        """Partitions heard within `after_seconds` (and `grace` more), the latest first."""
        for tp, at in reversed(self.last.items()):
            if now >= at + self.quiet.after_seconds + self.grace:
                return
            yield tp

    def quiet_ones(self, now: float) -> list[TopicPartition]:
        """The quiet partitions, all to be watched: due again when the next one turns quiet (if
        nothing is heard of it), or when their watch returns."""
        quiet: list[TopicPartition] = []
        for tp, at in self.last.items():
            if now < at + self.quiet.after_seconds:
                self.due = at + self.quiet.after_seconds
                return quiet
            quiet.append(tp)
        self.due = math.inf
        return quiet


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
            changed = frozenset(tp for tp, _ in wanted.items() - self.offsets.items())
            gone = tuple(self.offsets.keys() - wanted.keys())
            step = Step(self.session_id, self.epoch, changed, gone, gather=self.busy)
        self.offsets = wanted
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


@dataclass(frozen=True)
class FetchSettings:
    """A consumer's fetch settings (as aiokafka's fetcher has them), for a request of any size."""

    max_wait_ms: int
    min_bytes: int
    max_bytes: int
    isolation_level: int
    partition_bytes: int
    rack_id: str = ""

    @classmethod
    def of(cls, fetcher: Fetcher) -> FetchSettings:
        return cls(fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes, fetcher._fetch_max_bytes,
                   fetcher._isolation_level, fetcher._max_partition_fetch_bytes,
                   fetcher._client_rack or "")


class SessionFetch(FetchRequest):  # type: ignore[misc]
    """A fetch of `wanted` (partition → fetch offset), sent as the part the broker's session
    lacks."""

    def __init__(self, settings: FetchSettings, wanted: dict[TopicPartition, int],
                 session: FetchSession, gathering: Gathering | None = None,
                 connection: int = BUSY_CONNECTION) -> None:
        super().__init__(settings.max_wait_ms, settings.min_bytes, settings.max_bytes,
                         settings.isolation_level, [], rack_id=settings.rack_id)
        self.settings, self.wanted, self.session, self.gathering, self.connection = (
            settings, wanted, session, gathering, connection)
        self.step = session.next(wanted)
        self.answered: list[tuple[str, list[tuple[int, int, int]]]] | None = None
        self.records: list[TopicPartition] = []

    @property
    def topics(self) -> Any:
        """What aiokafka reads the answer against: the partitions in the answer (the broker's
        session answers for those with news only), at the offsets fetched."""
        return self._topics if self.answered is None else self.answered

    def answer(self, response: Any) -> None:
        """The broker's answer: shown to the session, and kept as what aiokafka reads it by
        (the partitions in it are those with news); `records` are those it brought records of."""
        self.session.answered(getattr(response, "session_id", NO_SESSION),
                              getattr(response, "error_code", 0), bool(response.topics))
        self.answered, self.records = [], []
        for topic, partitions in response.topics:
            fetched = []
            for p in partitions:
                tp = TopicPartition(topic, p[0])
                fetched.append((p[0], self.wanted[tp], 0))
                if p[-1]:
                    self.records.append(tp)
            self.answered.append((topic, fetched))

    def build(self, request_struct_class: Any) -> Any:
        in_full = request_struct_class.API_VERSION < 7  # a broker without sessions
        by_topic: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for tp in self.wanted if in_full else self.step.named:
            by_topic[tp.topic].append((tp.partition, self.wanted[tp],
                                       self.settings.partition_bytes))
        self._topics = list(by_topic.items())
        struct = super().build(request_struct_class)
        if in_full:
            return struct
        struct.session_id, struct.session_epoch = self.step.session_id, self.step.epoch
        if self.step.gather and self.gathering is not None:
            struct.max_wait_time = self.gathering.max_wait_ms
            struct.min_bytes = self.gathering.min_bytes
        forgotten: dict[str, list[int]] = defaultdict(list)
        for tp in self.step.forgotten:
            forgotten[tp.topic].append(tp.partition)
        struct.forgotten_topics_data = list(forgotten.items())
        return struct


def offsets_of(request: FetchRequest) -> dict[TopicPartition, int]:
    """The partitions an aiokafka fetch request names, at their fetch offsets."""
    return {TopicPartition(topic, partition): offset
            for topic, partitions in request.topics for partition, offset, _ in partitions}


class _AnswersToSessions:
    """The consumer's client, sending each session fetch on its connection and showing its
    answer (or its loss) to its session, and what brought records to `hearing`; a quiet
    partitions' watch lost closes its connection (_hang_up)."""

    def __init__(self, client: Any, hearing: Hearing | None) -> None:
        self._client = client
        self._hearing = hearing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
        if not isinstance(request, SessionFetch):
            return await self._client.send(node_id, request, **kwargs)
        try:
            response = await self._client.send(node_id, request, group=request.connection)
        except BaseException:
            request.session.lost()
            if request.connection == QUIET_CONNECTION:
                self._hang_up(node_id)
            raise
        request.answer(response)
        if self._hearing is not None:
            self._hearing.heard(request.records, time.monotonic())
        return response

    def _hang_up(self, node_id: int) -> None:
        """Close the quiet partitions' connection to a broker, whose watch was given up (as each
        rebalance cancels it): the broker would hold it to the end of its wait, and each fetch
        sent after it on that connection behind it (a storm of rebalances, as holders register:
        a quiet partition's records read a wait later for each, 16 s seen)."""
        conn = self._client._conns.get((node_id, QUIET_CONNECTION))
        if conn is not None:
            conn.close(reason=CloseReason.IDLE_DROP)


class SessionFetcher(Fetcher):  # type: ignore[misc]
    """aiokafka's fetcher, with one fetch session per broker (two with quiet partitions)."""

    _sessions: defaultdict[int, FetchSession]
    _quiet_sessions: defaultdict[int, FetchSession]
    _watches: dict[int, asyncio.Task[bool]]  # quiet partitions' fetches in flight, by broker
    _gathering: Gathering | None
    _hearing: Hearing | None
    _settings: FetchSettings

    @classmethod
    def adopt(cls, fetcher: Fetcher, gathering: Gathering | None,
              quiet: Quiet | None = None) -> None:
        """Make a consumer's running fetcher fetch in sessions from its next request on."""
        fetcher.__class__ = cls
        fetcher._sessions = defaultdict(FetchSession)
        fetcher._quiet_sessions = defaultdict(FetchSession)
        fetcher._watches = {}
        fetcher._gathering = gathering
        fetcher._settings = FetchSettings.of(fetcher)
        fetcher._hearing = None if quiet is None else Hearing(quiet)
        fetcher._client = _AnswersToSessions(fetcher._client, fetcher._hearing)

    def _get_actions_per_node(self, assignment: Any) -> tuple[Any, ...]:
        usual = self._usual_actions(assignment)
        if usual is None:
            fetches, *others = super()._get_actions_per_node(assignment)
            usual = ({node: offsets_of(request) for node, request in fetches}, {}, *others)
        wanted, quiet, *others = usual
        for node, offsets in quiet.items():
            self._watch(assignment, node, offsets)
        settings = self._settings
        if self._watches and self._hearing is not None:
            settings = replace(settings, max_wait_ms=min(settings.max_wait_ms,
                                                         self._hearing.quiet.busy_wait_ms))
        return ([(node, SessionFetch(settings, offsets, self._sessions[node], self._gathering))
                 for node, offsets in wanted.items()], *others)

    def _watch(self, assignment: Any, node: int, offsets: dict[TopicPartition, int]) -> None:
        """Fetch a broker's quiet partitions on their own connection, beside the busy fetch."""
        hearing = self._hearing
        assert hearing is not None
        settings = replace(self._settings, max_wait_ms=hearing.quiet.watch_wait_ms)
        request = SessionFetch(settings, offsets, self._quiet_sessions[node],
                               connection=QUIET_CONNECTION)
        task = asyncio.create_task(self._proc_fetch_request(assignment, node, request))
        self._watches[node] = task
        self._pending_tasks.add(task)  # aiokafka's routine wakes on its answer, or cancels it

        def done(_: asyncio.Task[bool]) -> None:
            if self._watches.get(node) is task:
                del self._watches[node]
            hearing.due = 0.0  # watch them again

        task.add_done_callback(done)

    def _usual_actions(self, assignment: Any) -> tuple[Any, ...] | None:
        """What aiokafka's own pass would decide (each node's partitions to fetch, at which
        offsets), in one lean pass, while every partition is in the usual state: positioned,
        not paused, its leader known; and, second, the quiet partitions to watch now. None
        otherwise.

        aiokafka makes its pass through every assigned partition each time the fetcher wakes;
        with thousands of them that was most of the platform's work. Here, while no node can be
        fetched from (its fetch in flight, or records from it not yet consumed), there is no
        pass at all; otherwise one, with none of aiokafka's per-partition calls and logging,
        and, with quiet partitions, through the busy ones only."""
        if self._preferred_read_replica:
            return None
        leader_of = self._client.cluster.leader_for_partition
        backoffs: defaultdict[int, list[float]] = defaultdict(list)
        for tp, records in self._records.items():
            if backoff := records.calculate_backoff():
                backoffs[leader_of(tp)].append(backoff)
        timeout = min(map(max, backoffs.values())) if backoffs else self._fetcher_timeout
        closed = self._in_flight | backoffs.keys()
        now, hearing = time.monotonic(), self._hearing
        nodes = {broker.nodeId for broker in self._client.cluster.brokers()}
        watch = (hearing is not None and now >= hearing.due
                 and not self._watches.keys() >= nodes)
        if closed >= nodes and not watch:
            return {}, {}, {}, timeout, False, []
        if hearing is not None:
            hearing.meet(assignment, now)
        wanted: defaultdict[int, dict[TopicPartition, int]] = defaultdict(dict)
        for tp in assignment.tps if hearing is None else hearing.busy(now):
            node = leader_of(tp)
            if node in closed or tp in self._records:
                continue
            state = assignment.state_value(tp)
            if state is None:  # no longer assigned
                continue
            if not _usual(node, state):
                return None
            wanted[node][tp] = state.position
        quiet = self._quiet(assignment, now) if watch else {}
        return wanted, quiet, {}, timeout, False, []

    def _quiet(self, assignment: Any, now: float) -> dict[int, dict[TopicPartition, int]]:
        """Each broker's quiet partitions, for the brokers without a watch in flight. Those
        not in the usual state (as all are in a new assignment, its positions not yet read) or
        with records not yet consumed are heard of: the busy pass takes them (handing the
        unusual ones to aiokafka), and they are due to be watched again when they turn quiet."""
        assert self._hearing is not None
        leader_of = self._client.cluster.leader_for_partition
        quiet: defaultdict[int, dict[TopicPartition, int]] = defaultdict(dict)
        busy = []
        for tp in self._hearing.quiet_ones(now):
            state = assignment.state_value(tp)
            if state is None:
                self._hearing.forget(tp)
                continue
            node = leader_of(tp)
            if node in self._watches:
                continue
            if _usual(node, state) and tp not in self._records:
                quiet[node][tp] = state.position
            else:
                busy.append(tp)
        self._hearing.heard(busy, now)
        return quiet


def _usual(node: int | None, state: Any) -> bool:
    """A partition in the usual state: its leader known, not paused, positioned."""
    return node is not None and node != -1 and not state.paused and state.has_valid_position


class SessionConsumer(GroupMember):
    """An aiokafka consumer whose fetches name, and get back, only partitions with news; with
    `gathering`, fetches made while records keep coming are held by the broker to fill up; with
    `quiet`, partitions without records for a while are fetched apart from the busy ones; a
    group member (heard_within, Fenced, generation, member)."""

    def __init__(self, *topics: str, gathering: Gathering | None = None,
                 quiet: Quiet | None = None, **config: Any) -> None:
        super().__init__(*topics, **config)
        self._gathering = gathering
        self._quiet = quiet

    async def start(self) -> None:
        await super().start()
        SessionFetcher.adopt(self._fetcher, self._gathering, self._quiet)

    def look_for_new_topics(self) -> None:
        """Ask for the cluster's topics now (a subscription by pattern picks new ones up)."""
        self._client.force_metadata_update()
