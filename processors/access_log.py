"""The platform's access-log events (paper §6, items ②–⑥ and the outcome), one per step, and My
Portal's, relayed."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from audit.events import AccessLogEvent, event_id, of_portal
from broker import topics
from renkei.envelope import Send, send
from schemas.codec import CODEC

log = logging.getLogger(__name__)

# kinds of step
BINDING, LINKAGE, ANSWER, MESSAGE, REKEY = "BINDING", "LINKAGE", "ANSWER", "MESSAGE", "REKEY"
APPROVED, REJECTED = "APPROVED", "REJECTED"


def logged(request_id: str, step: str, at: datetime, kind: str, outcome: str, requester: str,
           *, reason: str | None = None, pattern_id: str | None = None,
           legal_basis: str | None = None, provider: str | None = None,
           data_type: str | None = None, person: str | None = None) -> Send:
    """An access-log event for the audit topic; its id (request id + step) makes it idempotent."""
    event = AccessLogEvent(
        event_id=event_id(request_id, step), request_id=request_id, occurred_at=at, kind=kind,
        outcome=outcome, reason=reason, pattern_id=pattern_id, legal_basis=legal_basis,
        requester=requester, provider=provider, data_type=data_type, person=person,
    )
    return send(topics.AUDIT, request_id, event)


def from_portal(values: Iterable[bytes]) -> list[Send]:
    """My Portal's events (its topic, which it alone writes), on to the audit topic, which it may
    not write: those of its own (of_portal) only, so that none takes the id of a platform event
    (the audit store keeps the first event of an id); the others dropped and logged."""
    out = []
    for value in values:
        try:
            event = CODEC.decode(value, AccessLogEvent)
        except ValueError as exc:  # SchemaError, or an event that breaks its own rules
            log.warning("an unreadable event from My Portal dropped: %s", exc)
            continue
        if of_portal(event):
            out.append(send(topics.AUDIT, event.request_id, event))
        else:
            log.warning("an event from My Portal dropped: %s (%s) is not a step of the portal's",
                        event.event_id, event.kind)
    return out
