"""The platform's relay for the oversight body: its requests for holder-side access logs go to
each named holder's inbox (each logged on the audit stream), the holders' answers back to it
(their entries sealed to the oversight body by each holder).

Only the oversight principal can write its request topic (the broker's ACLs), so a request read
there is the oversight body's; an answer's holder is the outbox it came from, never its own claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from broker import acls, topics
from processors.access_log import OVERSIGHT, REJECTED, REQUESTED, logged
from processors.linkage import FromHolder
from renkei.envelope import Send, send
from schemas.messages import HolderEntry, HolderLogAnswer, HolderLogRequest

ACCESS_LOG = "access_log"


def relay(request: HolderLogRequest, directory: Mapping[str, HolderEntry],
          now: datetime) -> list[Send]:
    """The request to every named active holder, each told of itself alone among those asked,
    and one access-log event per holder asked."""
    out: list[Send] = []
    for holder in dict.fromkeys(request.holders):
        entry = directory.get(holder)
        known = entry is not None and entry.active
        out.append(logged(request.request_id, f"oversight@{holder}", now, OVERSIGHT,
                          REQUESTED if known else REJECTED, acls.OVERSIGHT,
                          reason=None if known else "UNKNOWN_HOLDER",
                          legal_basis=request.legal_basis, provider=holder,
                          data_type=ACCESS_LOG))
        if known:
            out.append(send(topics.inbox(holder), request.request_id,
                            replace(request, holders=(holder,))))
    return out


def answered(item: FromHolder) -> list[Send]:
    """A holder's answer, on to the oversight body, stamped with the holder that sent it: its
    sealed entries only (a v1 holder's plaintext ones are not relayed)."""
    answer = item.message
    assert isinstance(answer, HolderLogAnswer)
    return [send(topics.OVERSIGHT_IN, answer.request_id,
                 replace(answer, holder=item.holder, entries=()))]
