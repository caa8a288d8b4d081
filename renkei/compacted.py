"""A live view of a compacted topic (the pattern list, the holder directory): the latest value
per key, loaded from the beginning, then kept up to date while the process runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer

from broker import topics
from broker.clients import KafkaAccess, started, stopped
from renkei.broker_time import appended_at
from renkei.tasks import set_or_ended
from schemas.codec import CODEC, NewerVersion, UnknownSchema
from schemas.messages import HolderEntry

V = TypeVar("V")
log = logging.getLogger(__name__)
Amend = Callable[[V, V | None, datetime | None], V]
"""A value as a view keeps it: as read, the key's value before it, its record's broker append
time (None: stamped by its writer)."""
Unkeyed = Callable[[bytes, V], str | None]
"""Why a value read is not of the key its record has (None: it is)."""


class NotFollowing(RuntimeError):
    """A view no longer kept up to date: why it stopped following its topic."""


class CompactedView(Generic[V]):
    """Read a compacted topic without a consumer group: every process sees every entry."""

    def __init__(self, access: KafkaAccess, topic: str, decode: Callable[[bytes], V],
                 amend: Amend[V] | None = None, unkeyed: Unkeyed[V] | None = None) -> None:
        self.topic = topic
        self._access = access
        self._decode = decode
        self._amend = amend
        self._unkeyed = unkeyed
        self._entries: dict[bytes, V] = {}
        self._loaded = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._asking: AIOKafkaConsumer | None = None  # of the ends, on a connection of its own
        self._read: dict[Any, int] = {}  # each partition's next offset, its records before applied
        self._polled = asyncio.Event()
        self.version = 0

    @property
    def entries(self) -> dict[bytes, V]:
        return self._entries

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name=f"view:{self.topic}")

    async def loaded(self) -> None:
        """Wait until everything written before the view started has been read (while the
        broker is away, until it is back); raises NotFollowing if the view stopped first
        (stopped, or failed), or has failed since."""
        assert self._task is not None, "start the view first"
        await set_or_ended(self._loaded, self._task)
        self.check()
        if not self._loaded.is_set():
            raise self._stopped()

    def check(self) -> None:
        """Raise NotFollowing if the view has stopped following its topic: a service that
        acts on what it holds (the legal pattern list) must not go on with a stale copy."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            error = self._task.exception()
            raise NotFollowing(f"stopped following {self.topic}: {error}") from error

    async def read_to_end(self, *others: CompactedView[Any]) -> None:
        """Wait until the view has applied every record its topic had when this was called (its
        end offsets asked of the broker now): every record written before anything its caller
        has read, a request sent once `renkei holder resume` had returned read after the
        resumption, for one; a record of a transaction still open among them (a suspension, dated
        by its append time, is committed once its operator action is logged) once the
        transaction has ended, its records applied or, aborted, passed over. The views `others`
        too, their ends asked in the same request (one round trip for them all). KafkaError if
        the broker does not say its ends; NotFollowing if a view stops following its topic first
        (stopped, or failed)."""
        views = (self, *others)
        assigned = {view: view._assigned() for view in views}
        ends = await (await self._asker()).end_offsets(
            [tp for partitions in assigned.values() for tp in partitions])
        for view, partitions in assigned.items():
            await view._reached({tp: ends[tp] for tp in partitions})

    def _assigned(self) -> list[Any]:
        """The partitions the view follows, once started."""
        assert self._task is not None and self._consumer is not None, "start the view first"
        return list(self._consumer.assignment())

    async def _reached(self, ends: dict[Any, int]) -> None:
        """Wait until the view has applied every record before `ends` (read_to_end)."""
        assert self._task is not None
        while not self._applied(ends):
            self.check()
            if self._task.done():
                raise self._stopped()
            self._polled.clear()
            await set_or_ended(self._polled, self._task)

    def _stopped(self) -> NotFollowing:
        """What a caller waiting on the view is told once it has been stopped (`stop`)."""
        return NotFollowing(f"stopped following {self.topic}: the view was stopped")

    def _applied(self, ends: dict[Any, int]) -> bool:
        """Whether the view has applied every record before each partition's end offset."""
        return all(self._read.get(tp, 0) >= end for tp, end in ends.items())

    async def _asker(self) -> AIOKafkaConsumer:
        """The client asking the broker for the topic's ends, started on first use: not the
        view's consumer, whose connection the broker holds by its fetch waiting for records (half
        a second while there are none), a request on it answered after. It asks for the ends of
        every record appended, not of those committed (read_committed: up to the first of a
        transaction still open), which the view's consumer passes once that transaction ends."""
        if self._asking is None:
            asking = AIOKafkaConsumer(**self._access.aiokafka(), group_id=None,
                                      enable_auto_commit=False)
            await started(asking, self._access)
            self._asking = asking
        return self._asking

    async def changed(self) -> None:
        """Wait for the next change after this call."""
        self._changed.clear()
        await self._changed.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # an error it ended with was logged (and raised by `loaded` and `check`)
            await asyncio.wait({self._task})
        if self._asking is not None:
            await self._asking.stop()

    async def _follow(self) -> None:
        consumer = self._consumer = AIOKafkaConsumer(
            self.topic, **self._access.reading(), group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False)
        try:
            await started(consumer, self._access)
            partitions = consumer.assignment()
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(list(partitions))
            if not any(ends.values()):
                self._loaded.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        self._apply(record)
                if batch:
                    self.version += 1
                    self._changed.set()
                self._read = {tp: await consumer.position(tp) for tp in partitions}
                self._polled.set()
                if not self._loaded.is_set() and self._applied(ends):
                    self._loaded.set()
        except Exception as exc:  # the view is no longer kept up to date: say so now
            log.error("stopped following %s: %s", self.topic, exc)
            raise
        finally:
            await stopped(consumer)

    def _apply(self, record: Any) -> None:
        _applied(self._entries, record, self.topic, self._decode, self._amend, self._unkeyed)


def _applied(entries: dict[bytes, V], record: Any, topic: str, decode: Callable[[bytes], V],
             amend: Amend[V] | None, unkeyed: Unkeyed[V] | None) -> None:
    """A record of `topic` applied to its latest values per key, `entries`, as a view keeps
    them; NewerVersion for one of a schema a newer version of Renkei wrote: skipped, its key's
    entry before it would be kept as its latest (a holder suspended by it taken as active, a
    pattern amended by it in force as it was), so the view stops (NotFollowing) and its process
    with it, rather than act on what it no longer is. One whose value is not of its key
    (`unkeyed`) is refused, logged: under a key of its own, compaction never replaces it with
    its holder's next entry (a suspension), which it would stand beside."""
    key, value = record.key, record.value
    if key is None:
        log.warning("an entry without a key on %s: ignored", topic)
    elif value is None:
        entries.pop(key, None)
    else:
        try:
            entry = decode(value)
        except UnknownSchema as exc:
            raise NewerVersion(topic, "process", exc) from None
        except ValueError as exc:
            log.warning("an unreadable entry on %s: %s", topic, exc)
            return
        if unkeyed is not None and (why := unkeyed(key, entry)) is not None:
            log.warning("an entry on %s refused at offset %s: %s", topic, record.offset, why)
            return
        entries[key] = (entry if amend is None else
                        amend(entry, entries.get(key), appended_at(record)))


def holder_directory(access: KafkaAccess) -> CompactedView[HolderEntry]:
    """A view of the holder directory, each inactive entry dated as every reader dates it."""
    return CompactedView(access, topics.DIRECTORY, _holder_entry, dated, not_its_holders)


def holder_entries(records: Iterable[Any]) -> list[HolderEntry]:
    """The holder directory's entries of these records of its topic (read from its start), as a
    view of it keeps them (holder_directory)."""
    entries: dict[bytes, HolderEntry] = {}
    for record in records:
        _applied(entries, record, topics.DIRECTORY, _holder_entry, dated, not_its_holders)
    return list(entries.values())


def not_its_holders(key: bytes, entry: HolderEntry) -> str | None:
    """Why a directory entry is not of its record's key, its holder's id (None: it is)."""
    if key == entry.holder_id.encode():
        return None
    return (f"the entry of holder {entry.holder_id!r} is keyed "
            f"{key.decode(errors='backslashreplace')!r}, not by its holder's id")


def _holder_entry(value: bytes) -> HolderEntry:
    return CODEC.decode(value, HolderEntry)


def dated(entry: HolderEntry, before: HolderEntry | None, appended: datetime | None
          ) -> HolderEntry:
    """An entry published inactive naming no time (a suspension: one record) as inactive since
    the time of the holder's inactive entry before it, if one was (published inactive again),
    else since its own record's broker append time; one published active naming the suspension
    it ends and not when (a resumption: one record) as resumed at its record's broker append
    time: the same for every reader, whenever it reads it. On a directory topic the broker does
    not stamp (not brought to spec yet) a suspension stays inactive since a time not known,
    inactive whenever, and a resumption active whenever (suspensions.active_at)."""
    if entry.active:
        resumed = entry.inactive_since is not None and entry.resumed_at is None
        return replace(entry, resumed_at=appended) if resumed else entry
    if entry.inactive_since is not None:
        return entry
    kept = before.inactive_since if before is not None and not before.active else None
    return replace(entry, inactive_since=kept or appended)

