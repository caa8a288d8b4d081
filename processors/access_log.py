"""The platform's access-log events (paper §6, items ②–⑥ and the outcome), one per step."""

from __future__ import annotations

from datetime import datetime

from audit.events import AccessLogEvent, event_id
from broker import topics
from renkei.envelope import Send, send

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
