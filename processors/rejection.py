"""A refused message: a clear Rejection to its sender and an access-log event, nothing else."""

from __future__ import annotations

import logging
from datetime import datetime
from itertools import accumulate

from audit.events import REJECTED, escaped
from broker import topics
from processors.access_log import logged
from renkei.envelope import Send, send
from renkei.request_names import REQUEST_ID_CHARS, unfit
from schemas.codec import CODEC, SchemaError, UnknownSchema, first_string
from schemas.messages import Rejection

log = logging.getLogger(__name__)
def refused_id(value: bytes, exc: SchemaError) -> str:
    """The request id a holder's message the codec refuses is refused under, its first field's
    (codec.first_string), so its sender can settle the request it made, which nothing else ever
    answers: one of a schema a newer version of Renkei wrote (UnknownSchema), or of a schema
    known here whose first field is its request id (a body that does not read, a message not
    expected); none for the others, or for one whose first field is no fit request id."""
    if not isinstance(exc, UnknownSchema) and not _first_is_request_id(value):
        return ""
    request_id = first_string(value)
    return request_id if unfit(request_id, "request id") is None else ""


def _first_is_request_id(value: bytes) -> bool:
    """Whether `value` names a schema known here whose first field is a request id (each
    version of a schema has its first field where the first had it)."""
    name = CODEC.name_of(value)
    return name is not None and CODEC.latest(name).definition["fields"][0]["name"] == "request_id"


def reject(holder: str, request_id: str, reason: str, detail: str, at: datetime, source: str,
           kind: str, *, pattern_id: str | None = None, legal_basis: str | None = None,
           provider: str | None = None, data_type: str | None = None,
           person: str | None = None, deadline: datetime | None = None) -> list[Send]:
    """The rejection, under the request id cut to REQUEST_ID_CHARS (an answer's naming the
    `deadline` of the query it answers), and its access-log event, under the id as `named`."""
    logged_id = named(request_id)
    log.info("rejected %s %s from %s: %s", kind.lower(), logged_id or "(unreadable)", holder,
             reason)
    return [
        refusal(holder, request_id[:REQUEST_ID_CHARS], reason, detail, at, deadline),
        logged(logged_id, f"rejected@{source}", at, kind, REJECTED, holder, reason=reason,
               pattern_id=pattern_id, legal_basis=legal_basis, provider=provider,
               data_type=data_type, person=person),
    ]


def named(request_id: str) -> str:
    """A refused request's id as its access-log event names it: escaped (events.escaped), cut
    so that the audit store's column text of it (which escapes its backslashes once more) has
    REQUEST_ID_CHARS at most, and the event's id, its step after it naming the refused message,
    stays whole and its own in the store (COLUMN_CHARS), whatever the id; one the door takes
    (unfit: none, a holder's UUID among them) is as it is, as its request's other events name it."""
    if unfit(request_id, "request id") is None:
        return request_id
    kept = escaped(request_id[:REQUEST_ID_CHARS])
    column = accumulate(2 if char == "\\" else 1 for char in kept)
    return kept[:sum(1 for chars in column if chars <= REQUEST_ID_CHARS)]


def refusal(holder: str, request_id: str, reason: str, detail: str, at: datetime,
            deadline: datetime | None = None) -> Send:
    """The Rejection to its sender, with no access-log event (a copy of a request logged once)."""
    return send(topics.inbox(holder), request_id or None,
                Rejection(request_id, reason, detail, at, deadline))
