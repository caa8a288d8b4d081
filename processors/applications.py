"""The platform's relay for residents' applications from My Portal (paper §6(4)): a resident asks
the holders of one of their entries for ⑪ the content and ⑫ the purpose they keep.

Only the portal principal can write the application topic (the broker's ACLs), and the portal
sends an application only for an entry about the logged-in resident. The platform passes it to
each named holder as a holder-log request under an id marked as a resident's, and passes their
answers back to the portal: each holder seals its entries to the portal, without ⑦–⑩ (operators
and terminals are for the oversight body only), and the platform relays no plaintext entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from broker import topics
from processors.linkage import FromHolder
from renkei.envelope import Send, send
from renkei.holder_logs import MARK
from schemas.messages import HolderEntry, HolderLogAnswer, HolderLogRequest


def relay(application: HolderLogRequest, directory: Mapping[str, HolderEntry]) -> list[Send]:
    """The application to every named active holder, under the marked id."""
    marked = replace(application, request_id=MARK + application.request_id)
    return [send(topics.inbox(holder), marked.request_id, marked)
            for holder in dict.fromkeys(application.holders)
            if (entry := directory.get(holder)) is not None and entry.active]


def answered(item: FromHolder) -> list[Send]:
    """A holder's answer, on to the portal: stamped with the holder, its sealed entries only."""
    answer = item.message
    assert isinstance(answer, HolderLogAnswer)
    request_id = answer.request_id.removeprefix(MARK)
    return [send(topics.PORTAL_IN, request_id, replace(
        answer, request_id=request_id, holder=item.holder, entries=()))]
