"""Everything holders write to their outboxes, handled a batch at a time: decode, dispatch.

A holder picks its own request ids; one too long to answer (every answer carries the id, some
twice) or holding control characters is refused here, before anything is made of its message.
"""

from __future__ import annotations

from datetime import datetime

from audit.events import ANSWER, BINDING, LINKAGE, MESSAGE, REKEY
from broker import topics
from processors import applications, binding, linkage, oversight, rekey
from processors.context import Context
from processors.isolation import isolated
from processors.linkage import FromHolder
from processors.rejection import refused_id, reject
from renkei import holder_logs
from renkei.envelope import Incoming, Send, send
from renkei.request_names import REQUEST_ID_CHARS, unfit
from schemas.codec import CODEC, MAX_BYTES, SchemaError, from_record
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
KINDS = {LinkageRequest.__name__: LINKAGE, ProviderAnswer.__name__: ANSWER,
         BindingRequest.__name__: BINDING, RekeyRequest.__name__: REKEY}  # _refuse
DECIDED_ROOM = 4096  # bytes the platform adds to one of them to decide it (its source, times)
MOST_DECIDED_BYTES = MAX_BYTES - DECIDED_ROOM  # more is refused OVERSIZED at once: its decision
# event would be over the codec's limit (an INTERNAL_ERROR, a traceback, the batch handled again)


def handle(batch: list[Incoming], ctx: Context, now: datetime) -> list[Send]:
    """Handle a batch of outbox records; a bad one is rejected and disturbs nothing else.

    Should handling fail on something unforeseen, the batch is handled again a record at a time,
    and a record that still fails is answered with INTERNAL_ERROR: its sender always hears back
    and the partition keeps moving.
    """
    return isolated(batch, lambda items: _handle(items, ctx, now),
                    lambda incoming, exc: _internal_error(incoming, exc, ctx))


def _internal_error(incoming: Incoming, exc: Exception, ctx: Context) -> list[Send]:
    """INTERNAL_ERROR, naming what the message said (_refuse); naming nothing if that fails
    too (what failed the message may be what names it: the legal pattern list's look-up), so
    that its sender still hears back."""
    holder = topics.holder_of_outbox(incoming.topic) or ""
    request_id, detail = (_request_id(incoming.value),
                          f"the platform could not handle this message ({type(exc).__name__})")
    try:
        return _refuse(incoming, ctx, holder, request_id, "INTERNAL_ERROR", detail)
    except Exception:  # the first failure is logged by `isolated`
        return reject(holder, request_id, "INTERNAL_ERROR", detail, incoming.timestamp,
                      incoming.source, MESSAGE)


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


def _refuse(incoming: Incoming, ctx: Context, holder: str, request_id: str, reason: str,
            detail: str) -> list[Send]:
    """A message refused at the door, its access-log event naming what its bytes say: the kind
    of request its schema is (KINDS: MESSAGE for another's, or one of a schema not known here),
    a linkage request's pattern, provider and data type (_said)."""
    value = incoming.value or b""
    name = CODEC.name_of(value)
    return reject(holder, request_id, reason, detail, incoming.timestamp, incoming.source,
                  KINDS.get(name or "", MESSAGE), **_said(value, name, ctx, incoming.timestamp))


def _said(value: bytes, name: str | None, ctx: Context, at: datetime
          ) -> linkage.Said | dict[str, None]:
    """What a message refused at the door (of schema `name`) said that its access-log event
    names: a linkage request's pattern, provider and data type (linkage.said), read from its
    leading fields (CODEC.leading) so that one whose body reads no further, or that could not be
    handled, names them too; nothing of another's, or of one whose fields do not read."""
    if name != LinkageRequest.__name__:
        return {}
    try:
        fields = CODEC.leading(value, name, "data_type")
    except SchemaError:
        return {}
    return linkage.said(from_record(LinkageRequest, fields), ctx.patterns, at)


def _handle(batch: list[Incoming], ctx: Context, now: datetime) -> list[Send]:
    out: list[Send] = []
    requests: list[FromHolder] = []
    answers: list[FromHolder] = []
    for incoming in batch:
        holder = topics.holder_of_outbox(incoming.topic)
        if holder is None:
            continue
        value = incoming.value or b""
        try:
            message = CODEC.decode(value, *OUTBOX_MESSAGES)
        except SchemaError as exc:
            out += _refuse(incoming, ctx, holder, refused_id(value, exc),
                           exc.reason, str(exc))
            continue
        if (why := unfit(message.request_id, "request id")) is not None:
            out += _refuse(incoming, ctx, holder, message.request_id, "MALFORMED",
                           _cut(message.request_id, why))
            continue
        if isinstance(message, DECIDED) and len(value) > MOST_DECIDED_BYTES:
            out += _refuse(incoming, ctx, holder, message.request_id, "OVERSIZED",
                           f"{len(value):,} bytes: at most "
                           f"{MOST_DECIDED_BYTES:,} (what the platform adds to decide it must "
                           "fit one message)")
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
