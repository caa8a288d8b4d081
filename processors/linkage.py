"""Linkage (paper §5(4)): steps ①–③ on a request, step ④ on the provider's answer.

Requests are approved and rewritten link code A → ID code → link code B (a batch at a time, so
the code conversions run as few FF1 batches as possible), then handed to the decider; answers are
checked against their ticket, which carries both link codes, and rewritten B → A.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from audit.events import ANSWER, LINKAGE
from processors import decider
from processors.approval import Approved, PatternList, Refused, approve
from processors.codes import InvalidCode, Result
from processors.context import Context
from processors.rejection import reject
from processors.tickets import InvalidTicket
from renkei.envelope import Incoming, Send
from renkei.request_names import unfit
from schemas.codec import CODEC
from schemas.messages import (
    FOUND,
    NOT_FOUND,
    REFUSED,
    LinkageAnswer,
    LinkageRequest,
    Outcome,
    Pending,
    ProviderAnswer,
    ProviderQuery,
    Refusal,
    Ticket,
)

PROVIDER_STATUSES = frozenset({FOUND, NOT_FOUND, REFUSED})


@dataclass(frozen=True, slots=True)
class FromHolder:
    """A decoded message and who sent it (the holder whose outbox it came from)."""

    incoming: Incoming
    holder: str
    message: object

    def digest(self, key: bytes) -> int:
        """Its message's digest (decider.message_digest): the same for a copy sent again."""
        return decider.message_digest(key, self.holder, self.incoming.value or b"")

    def deadline(self, ctx: Context) -> datetime:
        """Its request's deadline, approved (its Pending's, and its Refusal's if refused): an
        answer timeout after its broker time."""
        return self.incoming.timestamp + ctx.answer_timeout

    def judged(self, request_id: str, ending: list[Send], ctx: Context) -> Send:
        """Its request's `ending` by the platform's views (the directory, the pattern list, the
        codes), which another instance reading it again may judge otherwise, its view behind or
        ahead: a refusal (rejection.reject: the Rejection and its access-log event), or a
        re-keying's answer (its RekeyAnswer and event, of the unit's epoch in the directory). To
        the decider, as a Refusal, which makes it only if it is the first judgement of the
        request (decider.on_refusal), so the request ends once."""
        told, logged = ending
        return decider.to_decider(request_id, Refusal(
            request_id, self.incoming.source, self.holder, self.deadline(ctx),
            self.digest(ctx.digest_key), told.value, logged.value))

    def refused(self, request_id: str, reason: str, detail: str, kind: str, ctx: Context
                ) -> Send:
        """Its request refused by the platform's views (rejection.reject, of its broker time and
        source), to the decider as its judgement (judged)."""
        return self.judged(request_id, reject(self.holder, request_id, reason, detail,
                                              self.incoming.timestamp, self.incoming.source,
                                              kind), ctx)


def requests(batch: list[FromHolder], ctx: Context) -> list[Send]:
    """Approve and rewrite linkage requests; the approved go to the decider (which refuses a
    request it may have forgotten, read again however late), and so do those the platform's views
    refuse (FromHolder.judged: its holder not in the directory among them, a view that had not
    read its registration), the first judgement of a request ending it; a MALFORMED or stale
    one, alike by every view, is refused at once."""
    out: list[Send] = []
    ids = _requesters_codes(batch, ctx)
    approved: list[tuple[FromHolder, Approved, str]] = []
    for k, item in enumerate(batch):
        request, at, id_code = _req(item), item.incoming.timestamp, ids.get(k)
        person = None if id_code is None or isinstance(id_code, InvalidCode) else id_code
        if (why := _malformed(request)) is not None:
            out += _reject(item, "MALFORMED", why, ctx, person)
            continue
        if not ctx.fresh(request.sent_at, at):
            out += _reject(item, "STALE_REQUEST", f"sent at {request.sent_at.isoformat()}, "
                           f"received {at.isoformat()}: outside the replay window", ctx, person)
            continue
        verdict = approve(request, ctx.directory.get(item.holder), ctx.directory, ctx.patterns,
                          at)
        if isinstance(verdict, Approved):
            if person is not None:
                approved.append((item, verdict, person))
                continue
            verdict = Refused("INVALID_LINK_CODE", str(id_code))
        out.append(item.judged(request.request_id, _reject(
            item, verdict.reason, verdict.detail, ctx, person), ctx))
    targets = ctx.codes.link_codes_of([person for _, _, person in approved],
                                      [ctx.unit(_req(item).provider) for item, _, _ in approved])
    previous = _previous_codes(approved, ctx)
    for k, ((item, verdict, person), link_b) in enumerate(zip(approved, targets, strict=True)):
        out.append(_pending(item, verdict, person, link_b, previous.get(k), ctx))
    return out


def _requesters_codes(batch: list[FromHolder], ctx: Context) -> dict[int, Result]:
    """The ID code behind each request's link code (by its place; none of a holder not in the
    directory: it has no unit), of its unit's key epoch, or else of the epoch before if its unit
    was re-keyed a clock skew at most before the request's broker time (the operator's clock
    dated it): a request its holder made before it knew the new epoch, its code in flight or
    waiting for its record's re-keying (the library waits a few seconds), not refused
    INVALID_LINK_CODE; a code of the epoch before is refused from then on."""
    known = [k for k, item in enumerate(batch) if item.holder in ctx.directory]
    ids = dict(zip(known, ctx.codes.id_codes_of([_req(batch[k]).link_code for k in known],
                                                [ctx.unit(batch[k].holder) for k in known]),
                   strict=True))
    in_flight = [(k, unit) for k in known if isinstance(ids[k], InvalidCode) and (
        unit := ctx.previous_unit(batch[k].holder, batch[k].incoming.timestamp,
                                  ctx.clock_skew))]
    if not in_flight:  # as nearly always: no second pass through the cipher (13 us a batch)
        return ids
    before = ctx.codes.id_codes_of([_req(batch[k]).link_code for k, _ in in_flight],
                                   [unit for _, unit in in_flight])
    ids.update((k, code) for (k, _), code in zip(in_flight, before, strict=True)
               if not isinstance(code, InvalidCode))
    return ids


def _previous_codes(approved: list[tuple[FromHolder, Approved, str]],
                    ctx: Context) -> dict[int, str]:
    """The person's link code at the provider's previous key epoch, for each approved request
    (by its place) to a provider re-keyed within the grace: a provider whose bindings have not
    all moved to the new epoch yet finds the person by it, instead of answering NOT_FOUND."""
    moving = [(k, unit) for k, (item, _, _) in enumerate(approved)
              if (unit := ctx.previous_unit(_req(item).provider, item.incoming.timestamp))]
    if not moving:
        return {}
    codes = ctx.codes.link_codes_of([approved[k][2] for k, _ in moving],
                                    [unit for _, unit in moving])
    return {k: code for (k, _), code in zip(moving, codes, strict=True)}


def _pending(item: FromHolder, verdict: Approved, person: str, link_b: str,
             previous_b: str | None, ctx: Context) -> Send:
    request = _req(item)
    deadline = item.deadline(ctx)
    ticket = ctx.tickets.seal(Ticket(request.request_id, item.holder, request.provider,
                                     request.pattern_id, request.data_type, person,
                                     request.link_code, link_b, deadline))
    query = ProviderQuery(request.request_id, ticket, link_b, item.holder, request.pattern_id,
                          request.data_type, deadline, previous_b)
    pending = Pending(request.request_id, item.incoming.source, item.holder, request.provider,
                      request.pattern_id, verdict.pattern.legal_basis, request.data_type, person,
                      deadline, CODEC.encode(query), item.digest(ctx.digest_key))
    return decider.to_decider(request.request_id, pending)


def answers(batch: list[FromHolder], ctx: Context) -> list[Send]:
    """Check providers' answers against their tickets and rewrite them for the requester.

    The ticket (sealed: the provider cannot read it) carries both link codes of the exchange,
    so step ④'s B → A needs no code conversion: the answer must be about link code B, and goes
    back with link code A. It holds only until its deadline (by the broker's append time of the
    answer): the decider forgets a request id only well after it, so an old ticket kept by its
    provider cannot answer a later request that reuses the id. An answer past it that would
    have been relayed in time goes to the decider all the same, which drops it if it is a copy
    of the answer relayed (its provider restarted and sent it again) and refuses it otherwise
    (decider.on_late); any other is refused here, as expired. One whose only flaw is its
    provider, no active holder in the directory as of the answer's broker time by this view of
    it, goes to the decider too, marked refused (Outcome.refused; past its deadline, as one
    relayed would: refused as expired), so a second instance judging it again, its view behind
    or ahead, ends nothing twice: the decider makes the first judgement of it alone
    (decider.on_outcome)."""
    out: list[Send] = []
    for item in batch:
        answer = _ans(item)
        try:
            ticket = ctx.tickets.open(answer.ticket, answer.request_id)
        except InvalidTicket as exc:
            out += _refuse_answer(item, "INVALID_TICKET", str(exc))
            continue
        if ticket.provider != item.holder:
            out += _refuse_answer(item, "INVALID_TICKET", "the ticket is for another provider",
                                  ticket)  # naming a query its sender was not asked: it ends none
            continue
        at = item.incoming.timestamp
        if (flaw := _flaw(answer, ticket)) is not None:
            if at > ticket.deadline:  # refused as expired, whatever its flaw
                flaw = "INVALID_TICKET", decider.expired(ticket.deadline, at)
            out += _refuse_answer(item, *flaw, ticket)
            continue
        relayed = LinkageAnswer(answer.request_id, ticket.link_a, item.holder, ticket.pattern_id,
                                ticket.data_type, answer.status, answer.sealed_payload)
        gone = None if at > ticket.deadline else ctx.inactive_reason(item.holder, at)
        out.append(decider.to_decider(answer.request_id, Outcome(
            answer.request_id, item.incoming.source, CODEC.encode(relayed), ticket.deadline,
            answered_at=at, refused=gone)))
    return out


def _flaw(answer: ProviderAnswer, ticket: Ticket) -> tuple[str, str] | None:
    """Why an answer under its provider's ticket is refused here, its deadline aside: the reason
    and words of its refusal (None: it goes to the decider). Its provider no longer
    an active holder in the directory as of the answer's broker time is judged by the decider
    (Outcome.refused), as its requester is (decider._relayed), which relays to no one an answer
    to one inactive then and settles its request at once, its requester told as it is refused
    at approval if suspended, not at the deadline."""
    if answer.status not in PROVIDER_STATUSES:
        return "MALFORMED", f"status {answer.status} is not an answer"
    if answer.link_code != ticket.link_b:
        return "INVALID_LINK_CODE", "the answer's link code is not the queried person's"
    return None


def _req(item: FromHolder) -> LinkageRequest:
    assert isinstance(item.message, LinkageRequest)
    return item.message


def _ans(item: FromHolder) -> ProviderAnswer:
    assert isinstance(item.message, ProviderAnswer)
    return item.message


def _malformed(request: LinkageRequest) -> str | None:
    """Why the request's names are MALFORMED (None: they are not); its id was judged at the door
    (outbox)."""
    names = (("pattern id", request.pattern_id), ("provider", request.provider),
             ("data type", request.data_type))
    return next((why for name, value in names if (why := unfit(value, name)) is not None), None)


def _reject(item: FromHolder, reason: str, detail: str, ctx: Context,
            person: str | None = None) -> list[Send]:
    """The rejection; its access-log event names what the request said (said)."""
    request = _req(item)
    return reject(item.holder, request.request_id, reason, detail, item.incoming.timestamp,
                  item.incoming.source, LINKAGE, person=person,
                  **said(request, ctx.patterns, item.incoming.timestamp))


class Said(TypedDict):
    """What a refused linkage request said, as its access-log event names it."""

    pattern_id: str | None
    legal_basis: str | None
    provider: str | None
    data_type: str | None


def said(request: LinkageRequest, patterns: PatternList, at: datetime) -> Said:
    """What a linkage request said, for the access-log event of its refusal, so that an auditor
    or its resident can tell what was attempted: its legal pattern (with the legal basis of the
    version in force at `at`, its broker time, if one is), provider and data type, each left out
    if MALFORMED (unfit: no text the audit store or a page could not take whole). No personal
    data: its link code is not named."""
    pattern_id = _fit(request.pattern_id)
    pattern = None if pattern_id is None else patterns.in_force(pattern_id, at)
    return Said(pattern_id=pattern_id, legal_basis=None if pattern is None else pattern.legal_basis,
                provider=_fit(request.provider), data_type=_fit(request.data_type))


def _fit(value: str) -> str | None:
    return value if unfit(value, "") is None else None


def _refuse_answer(item: FromHolder, reason: str, detail: str,
                   ticket: Ticket | None = None) -> list[Send]:
    """The refusal of a provider's answer, naming its `ticket`'s deadline; one whose ticket
    was not opened names none, and is told from a request's refusal by its reason,
    INVALID_TICKET, which no request's has (holders.client._of_answer)."""
    answer = _ans(item)
    return reject(item.holder, answer.request_id, reason, detail, item.incoming.timestamp,
                  item.incoming.source, ANSWER,
                  pattern_id=ticket.pattern_id if ticket else None,
                  data_type=ticket.data_type if ticket else None,
                  deadline=ticket.deadline if ticket else None)

