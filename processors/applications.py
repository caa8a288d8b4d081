"""The platform's relay for residents' applications from My Portal (paper §6(4)): a resident asks
the holders of one of their entries for ⑪ the content and ⑫ the purpose they keep.

Only the portal principal can write the application topic (the broker's ACLs), and the portal
sends an application only for an entry about the logged-in resident. The platform passes it to
each named active holder as a holder-log request under an id marked as a resident's (answering at
once in the stead of one it does not ask, and logging that refusal), and passes their answers
back to the portal: each holder seals its entries to the portal, without ⑦–⑩ (operators
and terminals are for the oversight body only), and the platform relays no plaintext entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from audit.events import APPLICATION
from broker import acls, topics
from processors.linkage import FromHolder
from processors.oversight import refused
from renkei.envelope import Send, send
from renkei.holder_logs import MARK, refusal
from schemas.messages import HolderEntry, HolderLogAnswer, HolderLogRequest


def relay(application: HolderLogRequest, directory: Mapping[str, HolderEntry],
          now: datetime, at: datetime) -> list[Send]:
    """The application to every named holder active as of `at`, its broker time, under the
    marked id; for each other one, the platform's refusal to the portal at once, logged."""
    marked = replace(application, request_id=MARK + application.request_id)
    out: list[Send] = []
    for holder in dict.fromkeys(application.holders):
        answer = refusal(application.request_id, holder, now, directory.get(holder), at)
        out += [send(topics.inbox(holder), marked.request_id, marked)] if answer is None else \
            refused(answer, application.legal_basis, topics.PORTAL_IN, APPLICATION, acls.PORTAL)
    return out


def answered(item: FromHolder) -> list[Send]:
    """A holder's answer, on to the portal: stamped with the holder, its sealed entries only."""
    answer = item.message
    assert isinstance(answer, HolderLogAnswer)
    request_id = answer.request_id.removeprefix(MARK)
    return [send(topics.PORTAL_IN, request_id, replace(
        answer, request_id=request_id, holder=item.holder, entries=()))]
