"""What the platform's handlers take and give: an incoming record, and messages to send (alone or
in batches)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from schemas.codec import CODEC, SchemaError
from schemas.messages import Batch, HolderEntry

log = logging.getLogger(__name__)
T = TypeVar("T")
Directory = Callable[[str], HolderEntry | None]
"""A holder's entry in the holder directory by its id (None: no such holder)."""
BATCH_BYTES = 256 * 1024  # the messages one Batch carries at most: well under codec.MAX_BYTES


@dataclass(frozen=True, slots=True)
class Incoming:
    """A record as the broker delivered it; `timestamp` is the broker's append time."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    value: bytes | None

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Send:
    topic: str
    key: str | None
    value: bytes
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    message: object = field(default=None, compare=False)  # what `value` encodes, if known here
    timestamp_ms: int | None = None  # its record's time on a topic the producer stamps (None: now)


def send(topic: str, key: str | None, message: object, partition: int | None = None) -> Send:
    return Send(topic, key, CODEC.encode(message), partition, message=message)


def runs(items: Sequence[T], cost: Callable[[T], int], limit: int) -> Iterator[tuple[T, ...]]:
    """The items in order, in runs costing at most `limit` each (an item costing more is a run
    of its own; no items: one empty run), to split what one message would carry."""
    run: list[T] = []
    size = 0
    for item in items:
        costs = cost(item)
        if run and size + costs > limit:
            yield tuple(run)
            run, size = [], 0
        run.append(item)
        size += costs
    yield tuple(run)


def batched(sends: list[Send], topics: Collection[str]) -> list[Send]:
    """The sends, those to `topics` together: one Batch record per topic, partition and headers
    (and BATCH_BYTES of messages) instead of one record each — fewer for the producer, the
    broker and the consumer to handle. A message alone (in its group, or over BATCH_BYTES
    itself) goes as it is: one near the codec's limit would not fit it with a Batch's bytes."""
    groups: dict[tuple[str, int | None, tuple[tuple[str, bytes], ...]], list[Send]] = {}
    out: list[Send] = []
    for item in sends:
        if item.topic in topics:
            groups.setdefault((item.topic, item.partition, item.headers), []).append(item)
        else:
            out.append(item)
    for (topic, partition, headers), group in groups.items():
        for run in runs(group, lambda item: len(item.value), BATCH_BYTES):
            out += run if len(run) == 1 else [Send(topic, None, CODEC.encode(
                Batch(tuple(item.value for item in run))), partition, headers)]
    return out


def unpacked(value: bytes) -> list[bytes]:
    """The messages one record carries: each of a Batch's, else the record itself (to be
    decoded, and refused if it is no message expected there, as any other)."""
    if CODEC.name_of(value) != Batch.__name__:
        return [value]
    try:
        return list(CODEC.decode(value, Batch).messages)
    except SchemaError:
        return [value]


def readable(records: Iterable[Any], schema: type[T], what: str) -> Iterator[T]:
    """The `schema` messages of the records' values; one that is not is logged (as an
    unreadable `what`) and skipped: it names nobody to answer."""
    for record in records:
        try:
            yield CODEC.decode(record.value or b"", schema)
        except SchemaError as exc:
            log.error("an unreadable %s: %s", what, exc)
