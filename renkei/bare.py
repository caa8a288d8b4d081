"""The baseline's bare messages: a small header (kind, request id, sender, the next hop's target
and size), then padding to the size the real message has on that hop.

A request goes requester outbox → relay → provider inbox, an answer provider outbox → relay →
requester inbox: four hops, like LinkageRequest → ProviderQuery and ProviderAnswer → LinkageAnswer.
The relay reads only the target and size and forwards the bytes resized; no schema, no crypto.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

QUERY, ANSWER = b"Q", b"A"
MAGIC = b"\x00B"  # never the start of an Avro single-object message (C3 01)
_HEAD = struct.Struct(">2scI16sBB")  # magic, kind, next hop's size, request id, len(sender, to)


@dataclass(frozen=True, slots=True)
class Sizes:
    """Encoded bytes of a real exchange's four messages, hop by hop."""

    request: int  # LinkageRequest, requester → platform
    query: int  # ProviderQuery, platform → provider
    answer: int  # ProviderAnswer, provider → platform
    reply: int  # LinkageAnswer, platform → requester


@dataclass(frozen=True, slots=True)
class BareMessage:
    kind: bytes
    request_id: bytes
    sender: str
    target: str


def encode(message: BareMessage, size: int, next_size: int) -> bytes:
    """The message padded to `size` bytes; the relay forwards it at `next_size` bytes."""
    sender, target = message.sender.encode(), message.target.encode()
    head = _HEAD.pack(MAGIC, message.kind, next_size, message.request_id, len(sender), len(target))
    data = head + sender + target
    return data + bytes(max(0, size - len(data)))


def is_bare(value: bytes | None) -> bool:
    return value is not None and value.startswith(MAGIC)


def decode(value: bytes) -> BareMessage:
    _, kind, _, request_id, sender_len, target_len = _HEAD.unpack_from(value)
    sender_at = _HEAD.size
    target_at = sender_at + sender_len
    return BareMessage(kind, request_id, value[sender_at:target_at].decode(),
                       value[target_at:target_at + target_len].decode())


def relayed(value: bytes) -> tuple[str, bytes]:
    """Where the relay sends the message, and the bytes it sends (resized for the next hop)."""
    _, _, next_size, _, sender_len, target_len = _HEAD.unpack_from(value)
    target_at = _HEAD.size + sender_len
    target = value[target_at:target_at + target_len].decode()
    if next_size <= len(value):
        return target, value[:max(next_size, target_at + target_len)]
    return target, value + bytes(next_size - len(value))
