"""The platform's access-log events (paper §6, items ②–⑥ and the outcome), one per step, and My
Portal's, relayed."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from audit.events import AccessLogEvent, event_id, of_portal
from broker import topics
from renkei.envelope import Send, send
from schemas.codec import CODEC

log = logging.getLogger(__name__)

PORTAL_DRIFT = timedelta(minutes=5)  # how far a portal event's time may lie from its record's
# append time: the portal writes an event as it acts, and its clock may be a little off


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


def from_portal(carried: Iterable[tuple[bytes, datetime]]) -> list[Send]:
    """My Portal's events (its topic, which it alone writes), each with the time the broker
    received its record, on to the audit topic, which it may not write: those of its own
    (of_portal) only, so that none takes the id of a platform event (the audit store keeps the
    first event of an id), at the portal's time if it is within PORTAL_DRIFT of the broker's
    (`received`); the others dropped and logged."""
    out = []
    for value, received in carried:
        try:
            event = CODEC.decode(value, AccessLogEvent)
        except ValueError as exc:  # SchemaError, or an event that breaks its own rules
            log.warning("an unreadable event from My Portal dropped: %s", exc)
            continue
        if of_portal(event):
            out.append(send(topics.AUDIT, event.request_id, received_at(event, received)))
        else:
            log.warning("an event from My Portal dropped: %s (%s) is not a step of the portal's",
                        event.event_id, event.kind)
    return out


def received_at(event: AccessLogEvent, received: datetime) -> AccessLogEvent:
    """A portal's event as it came, or re-stamped at the time the broker received it if the
    portal dated it further than PORTAL_DRIFT from that (its clock wrong, or the portal taken
    over: a date at an end of datetime's range would put it out of every time order), logged."""
    if abs(event.occurred_at - received) <= PORTAL_DRIFT:
        return event
    log.warning("an event from My Portal re-stamped: %s is dated %s, more than %s from %s, when "
                "its record reached the broker", event.event_id, event.occurred_at.isoformat(),
                PORTAL_DRIFT, received.isoformat())
    return replace(event, occurred_at=received)
