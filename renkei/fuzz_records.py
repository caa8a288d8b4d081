"""Fuzz records: hypothesis strategies derived from the outbox schemas.

Every record is valid by its schema and wrong in meaning: random link codes and other units'
link codes, unknown, expired or foreign legal patterns, unknown providers, data types no pattern
covers, empty or huge strings, stale and future times, statuses that are no answer. Some are
lawful by accident (a holder's own link code under a pattern it may use), as real input can be.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar, cast

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning

from processors.codes import CODE_LENGTH, CODE_SYMBOLS
from processors.outbox import OUTBOX_MESSAGES
from schemas.codec import CODEC, MAX_BYTES, OversizedMessage

BATCH = 10  # records per hypothesis example: one by one is slow, many overrun its buffer
HUGE = 1 / 500  # share of strings that are huge
HUGE_CHARS = (10_000, 250_000)  # a record of several stays under the codec's limit
NEAR_LIMIT = (MAX_BYTES - 400, MAX_BYTES - 20)  # a huge bytes field: its record about the codec's
# limit, just under it (what the platform makes of it may not be) or just over
Strategy = st.SearchStrategy[Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Vocabulary:
    """Real values to mix in, so that some fields pass and the next check is reached."""

    link_codes: Sequence[str]
    patterns: Sequence[str]
    holders: Sequence[str]
    data_types: Sequence[str]


def _huge_or(small: Strategy, huge: Callable[[int], Any] = lambda size: "X" * size,
             sizes: tuple[int, int] = HUGE_CHARS) -> Strategy:
    """`small`, or now and then (HUGE) a value of one of `sizes` made by `huge`."""
    def pick(dice: int, size: int, value: Any) -> Any:
        return huge(size) if dice == 0 else value

    return st.builds(pick, st.integers(0, round(1 / HUGE) - 1), st.integers(*sizes), small)


def _names(known: Sequence[str], *wrong: str) -> Strategy:
    """A known value, a near miss, empty, or anything."""
    return _huge_or(st.one_of(st.sampled_from([*known, *wrong]), st.text(max_size=24)))


def _times() -> Strategy:
    """Fresh, a little stale, very stale, or in the future (relative to when it is drawn)."""
    def at(seconds: int) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=seconds)

    return st.one_of(st.integers(-30, 30).map(at), st.integers(-10**6, -121).map(at),
                     st.integers(121, 10**7).map(at),
                     st.datetimes(datetime(1970, 1, 2), datetime(2200, 1, 1),
                                  timezones=st.just(UTC)))


def _fields(words: Vocabulary) -> dict[str, Strategy]:
    """Strategies by field name: where a schema's field means something, wrong meanings."""
    code = st.text(alphabet=CODE_SYMBOLS, min_size=CODE_LENGTH, max_size=CODE_LENGTH)
    return {
        "request_id": _huge_or(st.one_of(st.uuids().map(str), st.just(""),
                                         st.text(max_size=8), st.text(min_size=200,
                                                                      max_size=400))),
        "link_code": _huge_or(st.one_of(st.sampled_from(list(words.link_codes)), code,
                                        st.text(max_size=CODE_LENGTH + 2))),
        "pattern_id": _names(words.patterns, "P-999", "p-037", ""),
        "provider": _names(words.holders, "nobody", "platform", "registry", ""),
        "holder": _names(words.holders, "oversight", ""),
        "data_type": _names(words.data_types, "my_number", ""),
    }


def _of_type(avro: Any, name: str, fields: dict[str, Strategy]) -> Strategy:
    """A strategy for values of an Avro type; a field of known meaning gets its own."""
    if name in fields:
        return fields[name]
    if isinstance(avro, list):  # a union
        return st.one_of(*(_of_type(branch, "", fields) for branch in avro))
    kind = avro.get("type") if isinstance(avro, dict) else avro
    if isinstance(avro, dict) and avro.get("logicalType") == "timestamp-millis":
        return _times()
    simple: dict[str, Callable[[], Strategy]] = {
        "null": st.none, "boolean": st.booleans,
        "int": lambda: st.integers(-2**31, 2**31 - 1),
        "long": lambda: st.integers(-2**63, 2**63 - 1),
        "string": lambda: _huge_or(st.text(max_size=40)),
        "bytes": lambda: _huge_or(st.binary(max_size=128), bytes, NEAR_LIMIT),
    }
    if isinstance(kind, str) and kind in simple:
        return simple[kind]()
    if kind == "enum":
        return st.sampled_from(avro["symbols"])
    if kind == "array":
        return st.lists(_of_type(avro["items"], "", fields), max_size=3)
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: _of_type(f["type"], f["name"], fields)
                                      for f in avro["fields"]})
    if isinstance(kind, dict):  # a named type declared inline
        return _of_type(kind, name, fields)
    raise ValueError(f"no strategy for Avro type {avro!r}")


def record(schema: str, words: Vocabulary) -> st.SearchStrategy[bytes]:
    """Encoded records of one schema (its newest version)."""
    definition = CODEC.latest(schema).definition
    encoded = _of_type(definition, "", _fields(words)).map(partial(_encoded, schema))
    return cast("st.SearchStrategy[bytes]", encoded.filter(lambda value: value is not None))


def _encoded(schema: str, fields: dict[str, Any]) -> bytes | None:
    """The record encoded; None if its huge fields take it over the codec's limit (the
    oversized mutation sends such bytes)."""
    try:
        return CODEC.encode_record(schema, fields)
    except OversizedMessage:
        return None


def outbox_records(words: Vocabulary) -> st.SearchStrategy[tuple[str, bytes]]:
    """(schema name, encoded record) for every kind of message a holder may write."""
    def named(name: str) -> st.SearchStrategy[tuple[str, bytes]]:
        return record(name, words).map(lambda value: (name, value))

    return st.one_of(*(named(cls.__name__) for cls in OUTBOX_MESSAGES))


def draw(strategy: st.SearchStrategy[T], count: int, seed: int) -> list[T]:
    """`count` values of `strategy`, reproducible from `seed` (hypothesis, generation only)."""
    found: list[T] = []
    rounds = 0
    while len(found) < count:
        @seeded(seed + rounds)
        @settings(max_examples=max(1, math.ceil((count - len(found)) / BATCH)), database=None,
                  phases=[Phase.generate], deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(strategy, min_size=BATCH, max_size=BATCH))
        def collect(batch: list[T]) -> None:
            found.extend(batch)

        with warnings.catch_warnings():  # other threads (a Kafka client's) may use `random`
            warnings.simplefilter("ignore", HypothesisDeprecationWarning)
            collect()
        rounds += 1
    return found[:count]
