"""The platform's relay for the oversight body: its requests for holder-side access logs go to
each named active holder's inbox (each logged on the audit stream), the holders' answers back to
it (their entries sealed to the oversight body by each holder); for a holder it does not ask
(suspended, or not in the directory) the platform answers at once in its stead, logging that
refusal, as it does for a resident's application (`refused`).

Only the oversight principal can write its request topic (the broker's ACLs), so a request read
there is the oversight body's; an answer's holder is the outbox it came from, never its own claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from audit.events import OVERSIGHT, REJECTED, REQUESTED
from broker import acls, topics
from processors.access_log import logged
from processors.linkage import FromHolder
from renkei.envelope import Send, send
from renkei.holder_logs import refusal
from schemas.messages import HolderEntry, HolderLogAnswer, HolderLogRequest

ACCESS_LOG = "access_log"


def relay(request: HolderLogRequest, directory: Mapping[str, HolderEntry],
          now: datetime, at: datetime) -> list[Send]:
    """The request to every named holder active as of `at`, its broker time, each told of itself
    alone among those asked, and one access-log event per holder asked; for each other one, the
    platform's refusal to the oversight body at once, logged."""
    out: list[Send] = []
    for holder in dict.fromkeys(request.holders):
        answer = refusal(request.request_id, holder, now, directory.get(holder), at)
        if answer is not None:
            out += refused(answer, request.legal_basis, topics.OVERSIGHT_IN, OVERSIGHT,
                           acls.OVERSIGHT)
            continue
        out += [logged(request.request_id, f"oversight@{holder}", now, OVERSIGHT, REQUESTED,
                       acls.OVERSIGHT, legal_basis=request.legal_basis, provider=holder,
                       data_type=ACCESS_LOG),
                send(topics.inbox(holder), request.request_id, replace(request, holders=(holder,)))]
    return out


def refused(answer: HolderLogAnswer, legal_basis: str, to: str, kind: str,
            requester: str) -> list[Send]:
    """The platform's refusal to ask a holder for its logs (holder_logs.refusal), on to the
    asker's topic `to` at once, and its access-log event (`kind`, of the `requester`), whose
    reason is the refusal's: SUSPENDED or NOT_LISTED."""
    return [send(to, answer.request_id, answer),
            logged(answer.request_id, f"{kind.lower()}@{answer.holder}", answer.answered_at, kind,
                   REJECTED, requester, reason=answer.refused, legal_basis=legal_basis,
                   provider=answer.holder, data_type=ACCESS_LOG)]


def answered(item: FromHolder) -> list[Send]:
    """A holder's answer, on to the oversight body, stamped with the holder that sent it: its
    sealed entries only (a v1 holder's plaintext ones are not relayed)."""
    answer = item.message
    assert isinstance(answer, HolderLogAnswer)
    return [send(topics.OVERSIGHT_IN, answer.request_id,
                 replace(answer, holder=item.holder, entries=()))]
