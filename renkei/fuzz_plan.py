"""The fuzz corpus: which holder sends which bad message, and what it must get back.

A message the codec refuses must come back as exactly one Rejection with the codec's reason. Any
other gets exactly one answer on its sender's inbox (a Rejection with the refusing check's
reason, or a Pong, a binding answer, a linkage answer for one that is lawful by accident),
except two kinds that are answered to nobody: a holder-log answer (relayed, stamped with its
sender, to the oversight body, which takes only answers to requests of its own) and a provider's
answer whose ticket is intact, sent by that provider (a late answer: the decider drops it; once
its ticket has expired, as it will in a run longer than the answer timeout, it may instead be
refused INVALID_TICKET, expired, once).
A message whose request id is too long to answer is refused whatever it is, under the id cut to
its first REQUEST_ID_CHARS characters.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from processors.linkage import PROVIDER_STATUSES
from processors.outbox import OUTBOX_MESSAGES
from processors.rejection import refused_id
from renkei import fuzz_bytes, fuzz_records
from renkei.fuzz_records import Vocabulary
from renkei.request_names import REQUEST_ID_CHARS, unfit
from schemas.codec import CODEC, SchemaError
from schemas.messages import HolderLogAnswer, ProviderAnswer

RECORDS = 1 / 5  # share of the corpus drawn from the schemas; the rest are damaged bytes
Intact = tuple[str, bytes, str]  # a provider's answer: request id, ticket, link code


@dataclass(frozen=True, slots=True)
class Bad:
    sender: str
    origin: str  # record:<schema> or bytes:<mutation>
    value: bytes | None
    refused: str | None  # the codec's reason, if the codec refuses it
    decoded: str | None  # its schema, if it reads
    answers: int  # how many answers its sender must get: 0 or 1
    request_id: str = ""  # the id its answer carries (for one the codec refuses, refused_id's)
    detail: str | None = None  # the codec's words, if it refuses it (the Rejection's detail)
    late: bool = False  # a provider's intact answer: maybe refused once, its ticket expired


@dataclass(frozen=True)
class Captured:
    """Real messages taken from holders' outboxes: what mutations start from."""

    messages: Sequence[tuple[str, bytes]]  # (sender, value)

    def answers(self) -> dict[Intact, str]:
        """The real providers' answers among them: their ticket, and who sent them."""
        found = {}
        for sender, value in self.messages:
            try:
                answer = CODEC.decode(value, ProviderAnswer)
            except SchemaError:
                continue
            found[(answer.request_id, answer.ticket, answer.link_code)] = sender
        return found


def expect(sender: str, origin: str, value: bytes | None, late: dict[Intact, str]) -> Bad:
    """What `sender` must get back for `value`."""
    try:
        message = CODEC.decode(value or b"", *OUTBOX_MESSAGES)
    except SchemaError as exc:
        return Bad(sender, origin, value, exc.reason, None, 1, refused_id(value or b"", exc),
                   str(exc))
    answers = 1
    if unfit(message.request_id, "request id") is not None:
        return Bad(sender, origin, value, None, type(message).__name__, answers,
                   message.request_id[:REQUEST_ID_CHARS])
    if isinstance(message, HolderLogAnswer):
        answers = 0
    elif isinstance(message, ProviderAnswer):
        intact = (message.request_id, message.ticket, message.link_code)
        answers = 0 if late.get(intact) == sender and message.status in PROVIDER_STATUSES else 1
    return Bad(sender, origin, value, None, type(message).__name__, answers,
               message.request_id, late=isinstance(message, ProviderAnswer) and not answers)


def corpus(count: int, senders: Sequence[str], captured: Captured, words: Vocabulary,
           seed: int) -> list[Bad]:
    """`count` bad messages, a share drawn from the schemas, the rest mutations of real ones
    (mostly sent by the holder they were taken from, so a damaged answer keeps its provider)."""
    rng = random.Random(seed)
    late = captured.answers()
    drawn = fuzz_records.draw(fuzz_records.outbox_records(words), round(count * RECORDS), seed)
    out = [expect(rng.choice(senders), f"record:{name}", value, late) for name, value in drawn]
    bases = list(captured.messages) + [(rng.choice(senders), v) for _, v in drawn[:1000]]
    values = [v for _, v in bases]
    while len(out) < count:
        sender, base = rng.choice(bases)
        if rng.random() < 0.2:
            sender = rng.choice(senders)
        name, value = fuzz_bytes.mutate(rng, base, values)
        out.append(expect(sender, f"bytes:{name}", value, late))
    rng.shuffle(out)
    return out
