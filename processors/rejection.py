"""A refused message: a clear Rejection to its sender and an access-log event, nothing else."""

from __future__ import annotations

import logging
from datetime import datetime

from broker import topics
from processors.access_log import REJECTED, logged
from renkei.envelope import Send, send
from schemas.messages import Rejection

log = logging.getLogger(__name__)


def reject(holder: str, request_id: str, reason: str, detail: str, at: datetime, source: str,
           kind: str, *, pattern_id: str | None = None, legal_basis: str | None = None,
           provider: str | None = None, data_type: str | None = None,
           person: str | None = None) -> list[Send]:
    log.info("rejected %s %s from %s: %s", kind.lower(), request_id or "(unreadable)", holder,
             reason)
    return [
        send(topics.inbox(holder), request_id or None, Rejection(request_id, reason, detail, at)),
        logged(request_id, f"rejected@{source}", at, kind, REJECTED, holder, reason=reason,
               pattern_id=pattern_id, legal_basis=legal_basis, provider=provider,
               data_type=data_type, person=person),
    ]
