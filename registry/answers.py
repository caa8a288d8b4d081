"""Answers to a binding look-up on renkei.registry.out, the registry's or the numbering authority's
(which answers for the registry when a personal number leads to nobody)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from broker import topics
from renkei.envelope import Send, readable, send
from schemas.codec import CODEC, SchemaError, UnknownSchema
from schemas.messages import (
    REFUSED,
    NumberLookup,
    RegistryAnswer,
    RegistryCandidate,
    RegistryQuery,
)

log = logging.getLogger(__name__)
Asked = TypeVar("Asked", RegistryQuery, NumberLookup)
NO_CONSENTING_NUMBER = "no consenting resident has that personal number"
"""A private holder's NOT_FOUND by personal number, from the authority (nobody has the number) and
the registry (its resident did not consent) alike: it never tells which numbers are in use."""


def answer_of(asked: RegistryQuery | NumberLookup, status: str, detail: str,
              candidates: tuple[RegistryCandidate, ...] = ()) -> RegistryAnswer:
    """The answer to a look-up, naming its requester, the holder message it came from and when
    the broker received that message."""
    return RegistryAnswer(asked.request_id, asked.requester, status, detail, candidates,
                          asked.source, asked.requested_at)


def sent(answer: RegistryAnswer) -> Send:
    """An answer for the platform to relay to the requesting holder."""
    return send(topics.REGISTRY_OUT, answer.request_id, answer)


def answer_to(asked: RegistryQuery | NumberLookup, status: str, detail: str) -> Send:
    """An answer without candidates, for the platform to relay to the requesting holder."""
    return sent(answer_of(asked, status, detail))


def refused_if_failing(service: str, asked: RegistryQuery | NumberLookup,
                       answer: Callable[[], Send]) -> Send:
    """What `answer` sends, or should it fail on anything unforeseen a refusal of this look-up
    alone: one look-up never stops the service (logged by request id and error type only, its
    message may hold personal data)."""
    try:
        return answer()
    except Exception as exc:
        log.error("%s look-up %s refused: it failed with %s", service, asked.request_id,
                  type(exc).__name__)
        return answer_to(asked, REFUSED, f"the {service} could not answer this query")


def answered(records: Iterable[Any], schema: type[Asked], what: str,
             answer: Callable[[Asked, Any], Send]) -> list[Send]:
    """What is sent for each look-up (of `schema`) among `records`, in the order they came:
    `answer`'s (given the look-up and its record) for one read; for one of a schema unknown here
    its refusal (unknown_refused), logged once as refused; one that is neither logged once as
    an unreadable `what` and skipped (it names nobody to answer). (One of a schema unknown here
    was logged twice, unreadable then refused, and its refusal sent after the batch's answers.)"""
    sends = []
    for record in records:
        value = record.value or b""
        if (unknown := CODEC.unknown(value)) is not None:
            sends += unknown_refused(value, unknown, schema.__name__)
        else:
            sends += (answer(asked, record) for asked in readable([record], schema, what))
    return sends


def unknown_refused(value: bytes, unknown: UnknownSchema, name: str) -> list[Send]:
    """A look-up (of schema `name`) whose schema is `unknown` here (a newer platform's) refused
    UNKNOWN_SCHEMA to the platform, under its leading fields (request id, requester, the holder
    message it came from: codec.leading), for it to relay to the holder as the platform refuses a
    holder's message (processors.rejection), where it was skipped and the holder told only that
    its binding timed out; none if its leading fields cannot be read (it names nobody to
    answer: logged)."""
    try:
        asked = CODEC.leading(value, name, "requested_at")
    except SchemaError as exc:
        log.error("a %s of a schema unknown here names nobody to answer: %s", name, exc)
        return []
    log.error("%s %s of %s refused %s: %s (a newer platform's?)", name, asked["request_id"],
              asked["requester"], unknown.reason, unknown)
    return [sent(RegistryAnswer(
        asked["request_id"], asked["requester"], REFUSED, f"{unknown.reason}: {unknown}", (),
        asked["source"], asked["requested_at"]))]
