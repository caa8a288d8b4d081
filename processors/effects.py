"""What a handler asks the shell to do: messages to send. Handlers stay pure; agents send."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.codec import CODEC


@dataclass(frozen=True, slots=True)
class Send:
    topic: str
    key: str | None
    value: bytes


def send(topic: str, key: str | None, message: object) -> Send:
    return Send(topic, key, CODEC.encode(message))
