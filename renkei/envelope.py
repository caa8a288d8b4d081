"""What the platform's handlers take and give: an incoming record, and messages to send."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from schemas.codec import CODEC


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


def send(topic: str, key: str | None, message: object, partition: int | None = None) -> Send:
    return Send(topic, key, CODEC.encode(message), partition, message=message)
