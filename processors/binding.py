"""Binding (紐付け): a holder asks for its link code of a person; the registry answers.

By four attributes the query goes to the resident registry; by personal number to the numbering
authority, which resolves it and passes it on to the registry. Either way the platform only
forwards sealed bytes, then turns each candidate's resident code (sealed to the platform) into
the holder's link code (resident code → ID code → link code). It never sees the attributes.
"""

from __future__ import annotations

from datetime import datetime

from broker import topics
from processors.access_log import BINDING, logged
from processors.codes import InvalidCode
from processors.context import Context
from processors.linkage import FromHolder
from processors.rejection import reject
from renkei.envelope import Send, send
from renkei.sealing import CannotOpen, open_sealed
from schemas.codec import CODEC, SchemaError
from schemas.messages import (
    BY_PERSONAL_NUMBER,
    FOUND,
    BindingAnswer,
    BindingCandidate,
    BindingRequest,
    NumberLookup,
    RegistryAnswer,
    RegistryQuery,
    ResidentCode,
)


def forward(item: FromHolder, ctx: Context) -> list[Send]:
    """Send a binding request on to the registry (or the authority, for a personal number)."""
    request = item.message
    assert isinstance(request, BindingRequest)
    at = item.incoming.timestamp
    entry = ctx.directory.get(item.holder)
    if entry is None or not entry.active:
        return reject(item.holder, request.request_id, "NOT_PERMITTED",
                      "the requester is not an active holder in the directory", at,
                      item.incoming.source, BINDING)
    if not ctx.fresh(request.sent_at, at):
        return reject(item.holder, request.request_id, "STALE_REQUEST",
                      "sent outside the replay window", at, item.incoming.source, BINDING)
    if request.by == BY_PERSONAL_NUMBER:
        return [send(topics.AUTHORITY_IN, request.request_id, NumberLookup(
            request.request_id, item.holder, entry.private, request.sealed_query))]
    return [send(topics.REGISTRY_IN, request.request_id, RegistryQuery(
        request.request_id, item.holder, entry.private, request.by, request.sealed_query))]


def answered(answers: list[RegistryAnswer], now: datetime, ctx: Context) -> list[Send]:
    """The registry's candidates, as link codes of the requester, with their sealed attributes."""
    out: list[Send] = []
    for answer in answers:
        if answer.requester not in ctx.directory:
            continue  # the holder left the directory meanwhile: nobody to answer
        residents = [_resident_code(c.sealed_resident_code, answer.request_id, ctx)
                     for c in answer.candidates]
        ids = ctx.codes.id_codes(residents)
        usable = [(c, i) for c, i in zip(answer.candidates, ids, strict=True)
                  if not isinstance(i, InvalidCode)]
        unit = ctx.unit(answer.requester)
        links = ctx.codes.link_codes_of([i for _, i in usable], [unit] * len(usable))
        candidates = tuple(BindingCandidate(link, c.sealed_attributes)
                           for (c, _), link in zip(usable, links, strict=True))
        status = answer.status if candidates or answer.status != FOUND else "NOT_FOUND"
        out.append(send(topics.inbox(answer.requester), answer.request_id,
                        BindingAnswer(answer.request_id, status, answer.detail, candidates,
                                      unit.epoch)))
        out += [logged(answer.request_id, f"binding:{n}", now, BINDING, status,
                       answer.requester, person=str(person))
                for n, (_, person) in enumerate(usable)] or [
                logged(answer.request_id, "binding", now, BINDING, status, answer.requester,
                       reason=answer.detail or None)]
    return out


def _resident_code(sealed: bytes, request_id: str, ctx: Context) -> str:
    """The candidate's resident code, sealed to the platform by the registry ('' if unreadable)."""
    try:
        return CODEC.decode(open_sealed(ctx.sealing_key, sealed, request_id),
                            ResidentCode).resident_code
    except (CannotOpen, SchemaError):
        return ""
