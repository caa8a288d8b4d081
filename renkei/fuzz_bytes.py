"""Byte-level mutations of real messages: what a broken or hostile holder system may write.

Each mutation takes a random source, the message to damage and another one (for splices and
swapped fingerprints) and gives the bytes to send; None is a record with no value at all.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from schemas.codec import CODEC, HEADER, MAGIC, MAX_BYTES

Mutation = Callable[[random.Random, bytes, bytes], bytes | None]
_FINGERPRINTS = sorted(CODEC.by_fingerprint)


def bit_flips(rng: random.Random, value: bytes, other: bytes) -> bytes:
    data = bytearray(value)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def body_flip(rng: random.Random, value: bytes, other: bytes) -> bytes:
    """One bit flipped after the header: the schema is known, the body is damaged."""
    if len(value) <= HEADER:
        return bit_flips(rng, value, other)
    data = bytearray(value)
    data[rng.randrange(HEADER, len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def truncated(rng: random.Random, value: bytes, other: bytes) -> bytes:
    return value[:rng.randrange(len(value))]


def trailing(rng: random.Random, value: bytes, other: bytes) -> bytes:
    return value + rng.randbytes(rng.randint(1, 32))


def bad_magic(rng: random.Random, value: bytes, other: bytes) -> bytes:
    return bytes([rng.choice([0x00, 0xC3, 0x4F]), rng.choice([0x00, 0x02, 0xFF])]) + value[2:]


def unknown_fingerprint(rng: random.Random, value: bytes, other: bytes) -> bytes:
    return MAGIC + rng.randbytes(HEADER - len(MAGIC)) + value[HEADER:]


def swapped_fingerprint(rng: random.Random, value: bytes, other: bytes) -> bytes:
    """Another known schema's fingerprint on this body."""
    return MAGIC + rng.choice(_FINGERPRINTS) + value[HEADER:]


def spliced(rng: random.Random, value: bytes, other: bytes) -> bytes:
    return value[:rng.randint(0, len(value))] + other[rng.randint(0, len(other)):]


def oversized(rng: random.Random, value: bytes, other: bytes) -> bytes:
    return value + bytes(MAX_BYTES + rng.randint(1, 50_000) - len(value))


def empty(rng: random.Random, value: bytes, other: bytes) -> bytes:
    return b""


def no_value(rng: random.Random, value: bytes, other: bytes) -> None:
    return None


def random_bytes(rng: random.Random, value: bytes, other: bytes) -> bytes:
    return rng.randbytes(rng.randint(1, 300))


def verbatim(rng: random.Random, value: bytes, other: bytes) -> bytes:
    """The message again, unchanged: a replay."""
    return value


MUTATIONS: dict[str, tuple[Mutation, float]] = {  # name: (mutation, weight); an oversized
    # message is rare, as each is close to a megabyte on the broker
    "bit-flips": (bit_flips, 20), "body-flip": (body_flip, 30), "truncated": (truncated, 10),
    "trailing-bytes": (trailing, 5), "bad-magic": (bad_magic, 5),
    "unknown-fingerprint": (unknown_fingerprint, 5),
    "swapped-fingerprint": (swapped_fingerprint, 5), "spliced": (spliced, 5),
    "oversized": (oversized, 0.1), "empty": (empty, 2), "no-value": (no_value, 2),
    "random-bytes": (random_bytes, 5), "replayed": (verbatim, 5),
}


def mutate(rng: random.Random, value: bytes,
           others: Sequence[bytes]) -> tuple[str, bytes | None]:
    """A mutation drawn by weight, applied to `value` (`others` for splices)."""
    names = list(MUTATIONS)
    name = rng.choices(names, weights=[MUTATIONS[n][1] for n in names])[0]
    return name, MUTATIONS[name][0](rng, value, rng.choice(others))
