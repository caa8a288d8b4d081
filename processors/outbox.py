"""Everything holders write to their outboxes, handled a batch at a time: decode, dispatch.

A holder picks its own request ids; one too long to answer (every answer carries the id, some
twice) or holding control characters is refused here, before anything is made of its message.
"""

from __future__ import annotations

from datetime import datetime

from audit.events import MESSAGE
from broker import topics
from processors import applications, binding, linkage, oversight, rekey
from processors.context import Context
from processors.isolation import isolated
from processors.linkage import FromHolder
from processors.rejection import refused_id, reject
from renkei import holder_logs
from renkei.envelope import Incoming, Send, send
from renkei.request_names import REQUEST_ID_CHARS, unfit
from schemas.codec import CODEC, MAX_BYTES, SchemaError
from schemas.messages import (
    BindingRequest,
    HolderLogAnswer,
    LinkageRequest,
    Ping,
    Pong,
    ProviderAnswer,
    RekeyRequest,
)

OUTBOX_MESSAGES = (LinkageRequest, ProviderAnswer, BindingRequest, Ping, HolderLogAnswer,
                   RekeyRequest)
DECIDED = (LinkageRequest, ProviderAnswer, BindingRequest, RekeyRequest)  # what the decider keeps
DECIDED_ROOM = 4096  # bytes the platform adds to one of them to decide it (its source, times)
MOST_DECIDED_BYTES = MAX_BYTES - DECIDED_ROOM  # more is refused OVERSIZED at once: its decision
# event would be over the codec's limit (an INTERNAL_ERROR, a traceback, the batch handled again)


def handle(batch: list[Incoming], ctx: Context, now: datetime) -> list[Send]:
    """Handle a batch of outbox records; a bad one is rejected and disturbs nothing else.

    Should handling fail on something unforeseen, the batch is handled again a record at a time,
    and a record that still fails is answered with INTERNAL_ERROR: its sender always hears back
    and the partition keeps moving.
    """
    return isolated(batch, lambda items: _handle(items, ctx, now), _internal_error)


def _internal_error(incoming: Incoming, exc: Exception) -> list[Send]:
    holder = topics.holder_of_outbox(incoming.topic) or ""
    return reject(holder, _request_id(incoming.value), "INTERNAL_ERROR",
                  f"the platform could not handle this message ({type(exc).__name__})",
                  incoming.timestamp, incoming.source, MESSAGE)


def _request_id(value: bytes | None) -> str:
    try:
        return str(CODEC.decode_record(value or b"")[1].get("request_id", ""))
    except SchemaError:
        return ""


def _cut(request_id: str, why: str) -> str:
    """Why a request id is MALFORMED, saying that the rejection carries it cut if it does."""
    if len(request_id) <= REQUEST_ID_CHARS:
        return why
    return f"{why}: this rejection carries its first {REQUEST_ID_CHARS}"


def _said(message: object, ctx: Context, incoming: Incoming) -> linkage.Said | dict[str, None]:
    """What a message refused at the door said that its access-log event names: a linkage
    request's pattern, provider and data type (linkage.said); nothing of another's."""
    if isinstance(message, LinkageRequest):
        return linkage.said(message, ctx.patterns, incoming.timestamp)
    return {}


def _handle(batch: list[Incoming], ctx: Context, now: datetime) -> list[Send]:
    out: list[Send] = []
    requests: list[FromHolder] = []
    answers: list[FromHolder] = []
    for incoming in batch:
        holder = topics.holder_of_outbox(incoming.topic)
        if holder is None:
            continue
        try:
            message = CODEC.decode(incoming.value or b"", *OUTBOX_MESSAGES)
        except SchemaError as exc:
            out += reject(holder, refused_id(incoming.value or b"", exc), exc.reason, str(exc),
                          incoming.timestamp, incoming.source, MESSAGE)
            continue
        if (why := unfit(message.request_id, "request id")) is not None:
            out += reject(holder, message.request_id, "MALFORMED", _cut(message.request_id, why),
                          incoming.timestamp, incoming.source, MESSAGE,
                          **_said(message, ctx, incoming))
            continue
        if isinstance(message, DECIDED) and len(incoming.value or b"") > MOST_DECIDED_BYTES:
            out += reject(holder, message.request_id, "OVERSIZED",
                          f"{len(incoming.value or b''):,} bytes: at most {MOST_DECIDED_BYTES:,} "
                          "(what the platform adds to decide it must fit one message)",
                          incoming.timestamp, incoming.source, MESSAGE,
                          **_said(message, ctx, incoming))
            continue
        item = FromHolder(incoming, holder, message)
        if isinstance(message, LinkageRequest):
            requests.append(item)
        elif isinstance(message, ProviderAnswer):
            answers.append(item)
        elif isinstance(message, BindingRequest):
            out += binding.forward(item, ctx)
        elif isinstance(message, RekeyRequest):
            out += rekey.answer(item, ctx, now)
        elif isinstance(message, HolderLogAnswer):
            out += (applications.answered(item) if holder_logs.is_application(
                message.request_id) else oversight.answered(item))
        else:
            out.append(send(topics.inbox(holder), message.request_id,
                            Pong(message.request_id, message.sent_at, now)))
    return out + linkage.requests(requests, ctx) + linkage.answers(answers, ctx)
