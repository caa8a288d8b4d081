"""Kafka's placement of keyed records — murmur2 of the key, as the Java client and aiokafka's
default partitioner do — with the hash computed in C (aiokafka's is pure Python, ~6 µs a key)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from murmurhash2 import murmurhash2

SEED = 0x9747B28C  # Kafka's murmur2 seed


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 of `key`, as a signed 32-bit int (what `Utils.murmur2` returns)."""
    unsigned = murmurhash2(key, SEED)
    return unsigned - (1 << 32) if unsigned >= 1 << 31 else unsigned


def by_key(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """An aiokafka `partitioner`: a keyed record where Kafka's default partitioner puts it; an
    unkeyed one on any available partition."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]
