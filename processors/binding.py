"""Binding (紐付け): a holder asks for its link code of a person; the registry answers.

By four attributes the query goes to the resident registry; by personal number to the numbering
authority, which resolves it and passes it on to the registry. Either way the platform only
forwards sealed bytes, then turns each candidate's resident code (sealed to the platform: the
person's first, so a code change changes no link code) into the holder's link code (resident
code → ID code → link code). It never sees the attributes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from audit.events import BINDING
from broker import acls, topics
from processors import decider
from processors.access_log import logged
from processors.approval import not_active
from processors.codes import InvalidCode
from processors.context import Context
from processors.rejection import reject
from renkei.envelope import Send, send
from renkei.request_names import REQUEST_ID_CHARS
from renkei.sealing import CannotOpen, open_sealed
from schemas.codec import CODEC, SchemaError
from schemas.messages import (
    BY_PERSONAL_NUMBER,
    FOUND,
    NOT_FOUND,
    REFUSED,
    TIMED_OUT,
    BindingAnswer,
    BindingCandidate,
    BindingRequest,
    NumberLookup,
    Pending,
    RegistryAnswer,
    RegistryQuery,
    ResidentCode,
)

if TYPE_CHECKING:  # linkage imports the decider, which relays registry answers from here
    from processors.linkage import FromHolder

log = logging.getLogger(__name__)
UNCONVERTED = "a candidate's resident code cannot be read or is not valid: none is offered"
BINDING_DIGEST = b"renkei binding"  # blake2b's personalisation of binding events' digests (_said)
SOURCE = re.compile(r"(?P<topic>[^:@]+):[0-9]+:[0-9]+")  # topic:partition:offset of a message


def forward(item: FromHolder, ctx: Context) -> list[Send]:
    """A binding request's look-up, for the registry (or the authority, for a personal number),
    to the decider, which sends it and answers the holder once: with the registry's first answer,
    or a timeout if none comes by its deadline (an answer timeout on); its refusal, its holder
    suspended as of its broker time or not in the directory, to the decider too
    (FromHolder.judged), so a copy judged again by a view that had not read the suspension, or
    had read the holder's registration, is not forwarded as well; a stale one is
    refused at once, before the directory is read, as every view refuses it."""
    request = item.message
    assert isinstance(request, BindingRequest)
    at = item.incoming.timestamp
    if not ctx.fresh(request.sent_at, at):  # by every view alike: refused at once
        return reject(item.holder, request.request_id, "STALE_REQUEST",
                      "sent outside the replay window", at, item.incoming.source, BINDING)
    entry = ctx.directory.get(item.holder)
    if (refused := not_active(entry, at)) is not None:
        return [item.refused(request.request_id, refused.reason, refused.detail, BINDING, ctx)]
    assert entry is not None  # not_active: an active holder's entry
    source, deadline = item.incoming.source, item.deadline(ctx)
    if request.by == BY_PERSONAL_NUMBER:
        provider, query = acls.AUTHORITY, CODEC.encode(NumberLookup(
            request.request_id, item.holder, entry.private, request.sealed_query, source, at))
    else:
        provider, query = acls.REGISTRY, CODEC.encode(RegistryQuery(
            request.request_id, item.holder, entry.private, request.by, request.sealed_query,
            source, at))
    return [decider.to_decider(request.request_id, Pending(
        request.request_id, source, item.holder, provider, "", "", "", "", deadline, query,
        item.digest(ctx.digest_key), BINDING))]


def to_decide(answers: list[tuple[RegistryAnswer, datetime]],
              now: datetime) -> list[RegistryAnswer]:
    """The registry's answers (each with its broker time) the decider is to relay, the first of
    each look-up alone (decider.on_registry_answer): those of a source of their requester's
    (_of_requester), so no answer to another holder goes first; each stamped with the time it is
    logged at (_logged_at), so a look-up that carried none is forgotten in time too, and with its
    broker time, as of which its requester is judged active (decider.on_registry_answer)."""
    found = []
    for answer, at in answers:
        if _of_requester(answer):
            found.append(replace(answer, requested_at=_logged_at(answer, now), answered_at=at))
        else:
            log.warning("binding %s: the registry's answer names a source, %r, not a message of "
                        "%s's outbox: dropped", answer.request_id[:REQUEST_ID_CHARS],
                        answer.source[:REQUEST_ID_CHARS], answer.requester)
    return found


def answered(answer: RegistryAnswer, now: datetime, ctx: Context) -> list[Send]:
    """The registry's candidates, as link codes of the requester, with their sealed attributes:
    to a requester active in the directory (the decider relays none to another)."""
    relayed, people = _relayed(answer, ctx)
    at = _logged_at(answer, now)
    logged = [_logged(answer, relayed.status, at, ctx, person=person) for person in people] or [
        _logged(answer, relayed.status, at, ctx, reason=relayed.detail or None)]
    return [send(topics.inbox(answer.requester), answer.request_id, relayed), *logged]


def ended(answer: RegistryAnswer, now: datetime, reason: str, ctx: Context) -> Send:
    """The binding's TIMED_OUT in the access log, its answer relayed to no one for `reason`
    (its requester no longer active in the directory: SUSPENDED or UNKNOWN_HOLDER), logged as
    its answer would have been."""
    return _logged(answer, TIMED_OUT, _logged_at(answer, now), ctx, reason=reason)


def _logged_at(answer: RegistryAnswer, now: datetime) -> datetime:
    """When a binding is logged: at the broker's time of its request, as its look-up carried it,
    so an answer given again (the registry restarted) or read again (the platform restarted) is
    logged at the same time as the first, the same bytes under the same id; at `now` (the
    platform's reading of the broker's time) for a look-up that carried none (before v3), or a
    time after it (which no answer of a request the broker stamped can carry)."""
    return now if answer.requested_at is None or answer.requested_at > now else answer.requested_at


def _logged(answer: RegistryAnswer, status: str, at: datetime, ctx: Context, *,
            person: str | None = None, reason: str | None = None) -> Send:
    """A binding's access-log event, its step naming what it logs (status, and person or reason)
    by a keyed digest, so each answer of its look-up that logs another is kept under an id of its
    own, the audit store dropping the same event of a replay, or of an answer given again."""
    said = _said(ctx.digest_key, answer.requester, status, person or "", reason or "")
    return logged(answer.request_id, _step(f"binding:{said}", answer), at, BINDING, status,
                  answer.requester, reason=reason, person=person)


def _said(key: bytes, requester: str, status: str, person: str, reason: str) -> str:
    """16 hex digits standing for what a binding event of `requester` logs, keyed by the
    platform's digest key (MasterKeys.digest_key), so a registry cannot search offline for two
    answers of one name, the second's event dropped (the audit store keeps the first); a domain
    of its own (BINDING_DIGEST), apart from holder messages' digests (decider.message_digest)."""
    return hashlib.blake2b("\0".join((requester, status, person, reason)).encode(), key=key,
                           digest_size=8, person=BINDING_DIGEST).hexdigest()


def _of_requester(answer: RegistryAnswer) -> bool:
    """Whether the answer's source, written by the registry and part of its events' ids, is what
    the platform sent it: none (a look-up from v1) or a message of the requester's outbox, so a
    registry cannot shape an id to take another event's (the audit store keeps the first)."""
    found = SOURCE.fullmatch(answer.source)
    return not answer.source or (
        found is not None and found["topic"] == topics.outbox(answer.requester))


def _step(step: str, answer: RegistryAnswer) -> str:
    """The step of a binding's access-log event, naming the holder message its look-up came from
    (if the look-up named it): a request reusing an id is logged as its own, not as a replay."""
    return f"{step}@{answer.source}" if answer.source else step


def _relayed(answer: RegistryAnswer, ctx: Context) -> tuple[BindingAnswer, list[str]]:
    """The holder's answer and its candidates' ID codes; no candidate at all if any cannot be
    converted, so the holder investigates rather than binds on a part of the candidates."""
    unit = ctx.unit(answer.requester)
    residents = [_resident_code(c.sealed_resident_code, answer.request_id, ctx)
                 for c in answer.candidates]
    ids = [i for i in ctx.codes.id_codes(residents) if not isinstance(i, InvalidCode)]
    if len(ids) < len(answer.candidates):
        log.warning("binding %s: %d of the registry's %d candidates cannot be converted; none "
                    "is offered", answer.request_id, len(answer.candidates) - len(ids),
                    len(answer.candidates))
        return BindingAnswer(answer.request_id, REFUSED, UNCONVERTED, (), unit.epoch,
                             unit.unit), []
    links = ctx.codes.link_codes_of(ids, [unit] * len(ids))
    candidates = tuple(BindingCandidate(link, c.sealed_attributes)
                       for c, link in zip(answer.candidates, links, strict=True))
    status = answer.status if candidates or answer.status != FOUND else NOT_FOUND
    return BindingAnswer(answer.request_id, status, answer.detail, candidates, unit.epoch,
                         unit.unit), ids


def _resident_code(sealed: bytes, request_id: str, ctx: Context) -> str:
    """The candidate's resident code, sealed to the platform by the registry ('' if unreadable)."""
    try:
        return CODEC.decode(open_sealed(ctx.sealing_key, sealed, request_id),
                            ResidentCode).resident_code
    except (CannotOpen, SchemaError):
        return ""
