"""A provider's answer, without Kafka: taken only under its own exchange's ticket, and only until
the ticket's deadline, so an old ticket cannot answer a later request that reuses its id; and a
request read again late, on the real broker, whose time it stamps."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from audit.events import AccessLogEvent, step_of
from audit.heads import Signer
from audit.store import AuditStore, Query
from broker import config, provision, topics
from broker.clients import KafkaAccess, read_topic
from broker.cluster import Cluster
from holders.client import REKEY_CODES
from processors import binding, decider, linkage, outbox, rekey
from processors.approval import PatternList
from processors.codes import UnitEpoch
from processors.context import Context
from processors.keys import MasterKeys
from processors.linkage import FromHolder
from processors.patterns import load
from registry.resident_code import random_codes
from renkei.compacted import dated
from renkei.envelope import Incoming, Send
from schemas.codec import CODEC, MAX_BYTES
from schemas.messages import (
    BY_ATTRIBUTES,
    FOUND,
    PENDING,
    TIMED_OUT,
    BindingRequest,
    HolderEntry,
    LinkageAnswer,
    LinkageRequest,
    Outcome,
    Pending,
    ProviderAnswer,
    ProviderQuery,
    Refusal,
    Rejection,
    RekeyAnswer,
    RekeyRequest,
    RequestState,
    Sweep,
)
from tests.kafka_helpers import producer

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ROLES = {"kodomo": "child_allowance_office", "town": "municipality", "nenkin": "pension_service"}
FIRST, SECOND = random_codes(2, seed=3)
STAMPED = "renkei-test.stamped-outbox"  # an outbox's configs, a name the platform does not read


@pytest.fixture(scope="module")
def ctx() -> Context:
    keys = MasterKeys.generate()
    context = Context.of(keys)
    context.directory = {h: HolderEntry(h, h, role, h, 0, b"k" * 32, False, True, T0)
                         for h, role in ROLES.items()}
    context.patterns = PatternList(load())
    return context


def _link(ctx: Context, resident: str, holder: str) -> str:
    return ctx.codes.link_code(resident, UnitEpoch(holder, 0))


def _from(holder: str, message: object, at: datetime, offset: int) -> FromHolder:
    return FromHolder(Incoming(topics.outbox(holder), 0, offset, at, CODEC.encode(message)),
                      holder, message)


def _asked(ctx: Context, requester: str, resident: str, pattern: str, provider: str,
           data_type: str, at: datetime) -> Pending:
    """The decision event of a lawful request with id X made at `at`."""
    request = LinkageRequest("X", at, _link(ctx, resident, requester), pattern, provider,
                             data_type)
    made, = linkage.requests([_from(requester, request, at, 1)], ctx)
    return CODEC.decode(made.value, Pending)


def _answer(pending: Pending, by: str, at: datetime, offset: int, ctx: Context,
            status: str = FOUND) -> list[Send]:
    query = CODEC.decode(pending.query, ProviderQuery)
    answer = ProviderAnswer(query.request_id, query.ticket, query.link_code, status, b"sealed")
    return linkage.answers([_from(by, answer, at, offset)], ctx)


def test_an_answer_after_its_tickets_deadline_is_refused(ctx: Context) -> None:
    """Past its ticket's deadline, an answer is refused as expired: by linkage if it would not be
    relayed in time either, else by the decider, here to its request pending past its deadline,
    once a sweep times it out (to one timed out, not known or perhaps forgotten:
    tests/test_decider.py)."""
    pending = _asked(ctx, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    in_time, = _answer(pending, "town", pending.deadline, 2, ctx)
    assert CODEC.decode(in_time.value, Outcome).request_id == "X"
    past = pending.deadline + timedelta(milliseconds=1)
    late, = _answer(pending, "town", past, 3, ctx)
    decider_, partition = _owning_x(ctx)
    decider_.handle(partition, pending, T0, ctx)
    assert decider_.handle(partition, CODEC.decode(late.value, Outcome), past, ctx) == []
    assert decider_.states[partition].pending["X"].status == PENDING, "timed out by a sweep"
    *_, refused_late, logged_late = decider_.handle(partition, Sweep(past, ("X",)), past, ctx)
    for refused, logged in ((refused_late, logged_late),
                            _answer(pending, "town", past, 4, ctx, status=TIMED_OUT)):
        rejection = CODEC.decode(refused.value, Rejection)
        assert refused.topic == topics.inbox("town") and logged.topic == topics.AUDIT
        assert rejection.reason == "INVALID_TICKET" and "expired" in rejection.detail
        assert rejection.deadline == pending.deadline, "names the query its answer answers"


def test_an_answer_of_no_providers_status_is_refused_naming_the_query_it_answers(
        ctx: Context) -> None:
    """Its refusal named no query though its ticket was read, so its provider ended its latest
    entry of the id, perhaps of a later query's data relayed: it names its ticket's deadline."""
    pending = _asked(ctx, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    refused, logged = _answer(pending, "town", T0 + timedelta(seconds=1), 2, ctx, TIMED_OUT)
    rejection = CODEC.decode(refused.value, Rejection)
    assert refused.topic == topics.inbox("town") and logged.topic == topics.AUDIT
    assert (rejection.reason, rejection.deadline) == ("MALFORMED", pending.deadline)


def test_an_answer_under_another_providers_ticket_is_refused_naming_that_query(
        ctx: Context) -> None:
    """Its refusal named no query, so its sender ended its own latest answered entry of the id,
    of a query it was asked: it names the ticket's, of which the sender has no entry."""
    pending = _asked(ctx, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    refused, logged = _answer(pending, "nenkin", T0 + timedelta(seconds=1), 2, ctx)
    rejection = CODEC.decode(refused.value, Rejection)
    assert refused.topic == topics.inbox("nenkin") and logged.topic == topics.AUDIT
    assert (rejection.reason, rejection.deadline) == ("INVALID_TICKET", pending.deadline)


def test_an_answer_from_a_holder_made_inactive_since_its_request_is_refused(
        ctx: Context) -> None:
    """A provider marked inactive in the directory after the request was approved still had its
    answer relayed: only one gone from the directory was refused. The refusal tells one
    suspended (SUSPENDED) from one not in the directory (UNKNOWN_HOLDER); it is the decider's,
    as linkage judged it (Outcome.refused), at the answer's broker time, whatever the
    decider's own view of the directory says."""
    pending = _asked(ctx, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    answered = T0 + timedelta(seconds=1)
    inactive = replace(ctx, directory={**ctx.directory,
                                       "town": replace(ctx.directory["town"], active=False)})
    unlisted = replace(ctx, directory={h: e for h, e in ctx.directory.items() if h != "town"})
    for gone, reason in ((inactive, "SUSPENDED"), (unlisted, "UNKNOWN_HOLDER")):
        sent, = _answer(pending, "town", answered, 2, gone)
        decider_, partition = _owning_x(ctx)
        decider_.handle(partition, pending, T0, ctx)
        refused, logged = decider_.handle(partition, CODEC.decode(sent.value, Outcome),
                                          answered + timedelta(seconds=5), ctx)
        rejection = CODEC.decode(refused.value, Rejection)
        assert refused.topic == topics.inbox("town") and logged.topic == topics.AUDIT
        assert (rejection.reason, rejection.detail) == (reason, "town is no longer an active "
                                                        "holder in the directory: the answer "
                                                        "was relayed to no one")
        event = CODEC.decode(logged.value, AccessLogEvent)
        assert (event.reason, event.occurred_at) == (reason, answered)
        assert event.event_id == f"X:rejected@{topics.outbox('town')}:0:2", "as linkage's"
    relayed, = _answer(pending, "town", T0 + timedelta(seconds=1), 2, ctx)
    assert CODEC.decode(relayed.value, Outcome).request_id == "X"


def test_an_answer_to_a_holder_made_inactive_since_its_request_settles_it_at_once(
        ctx: Context) -> None:
    """An answer to a requester marked inactive in the directory (or gone from it) after its
    request was approved was refused here, as one from an inactive provider is, the request left
    pending: its requester heard only at the deadline, a suspended one refused so then. It goes
    to the decider, which settles it at once, as one to a requester made inactive since
    (decider._relayed), judged as of the answer's broker time: refused to its provider for why
    (SUSPENDED, or UNKNOWN_HOLDER), a suspended requester refused as at approval, the request
    logged TIMED_OUT so."""
    pending = _asked(ctx, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    answered = T0 + timedelta(seconds=1)
    suspended = replace(ctx, directory={**ctx.directory, "kodomo": replace(
        ctx.directory["kodomo"], active=False, inactive_since=T0)})
    unlisted = replace(ctx, directory={h: e for h, e in ctx.directory.items() if h != "kodomo"})
    for gone, reason in ((suspended, "SUSPENDED"), (unlisted, "UNKNOWN_HOLDER")):
        relayed, = _answer(pending, "town", answered, 2, gone)
        decider_, partition = _owning_x(ctx)
        decider_.handle(partition, pending, T0, ctx)
        recorded, = decider_.handle(partition, CODEC.decode(relayed.value, Outcome), answered,
                                    gone)
        made = decider_.handle(partition, CODEC.decode(recorded.value, Outcome), answered, gone)
        told = [(s.topic, CODEC.decode(s.value, Rejection).reason) for s in made
                if s.topic != topics.AUDIT]
        logged = [(e.kind, e.outcome, e.reason) for e in (
            CODEC.decode(s.value, AccessLogEvent) for s in made if s.topic == topics.AUDIT)]
        assert told == [(topics.inbox("town"), reason), *(
            [(topics.inbox("kodomo"), "SUSPENDED")] if reason == "SUSPENDED" else [])]
        assert logged == [("ANSWER", "REJECTED", reason), ("ANSWER", TIMED_OUT, reason)]
        assert decider_.states[partition].get("X") == decider.Settled(
            TIMED_OUT, decider.fingerprint(pending.source), pending.digest)


def test_an_answer_read_again_after_its_requester_was_made_inactive_is_judged_at_its_time(
        ctx: Context) -> None:
    """An answer relayed, its requester then made inactive, was refused (UNKNOWN_HOLDER) when
    read again from its outbox after a crash, though its requester had it: each holder is
    judged as of the answer's broker time, the same at every reading."""
    pending = _asked(ctx, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    answered = T0 + timedelta(seconds=1)
    for gone in ("kodomo", "town"):
        since = replace(ctx.directory[gone], active=False,
                        inactive_since=answered + timedelta(milliseconds=1))
        later = replace(ctx, directory={**ctx.directory, gone: since})
        relayed, = _answer(pending, "town", answered, 2, later)
        assert CODEC.decode(relayed.value, Outcome).answered_at == answered


def test_an_inactive_entry_published_again_keeps_the_time_it_was_made_inactive(
        ctx: Context) -> None:
    """Dated by its own record's time, an inactive entry published again with no time would
    move the suspension later for a reader that had the one before: it keeps that one's time;
    after an active entry, or on a topic not stamped by the broker, its own (or none)."""
    now = datetime.now(UTC)
    active = ctx.directory["town"]
    inactive = replace(active, active=False)
    first = dated(inactive, active, now)
    assert first.inactive_since == now
    assert dated(inactive, first, now + timedelta(hours=1)).inactive_since == now
    assert dated(inactive, None, None).inactive_since is None
    assert dated(active, first, now) == active


def _town_suspended(ctx: Context, since: datetime) -> Context:
    """`ctx` with a view of the directory that has read town's suspension since `since`."""
    town = ctx.directory["town"]
    return replace(ctx, directory={**ctx.directory, "town": dated(
        replace(town, active=False), town, since)})


def _owning_x(ctx: Context) -> tuple[decider.Decider, int]:
    """A decider owning the partition of request "X", with nothing in it yet."""
    decider_ = decider.Decider()
    partition = decider.partition_of("X")
    decider_.keep_only({partition})
    decider_.rebuild(partition, [], ctx)
    return decider_, partition


def _fed(decider_: decider.Decider, partition: int, judgements: tuple[list[Send], ...],
         now: datetime, ctx: Context, events: list[decider.DecisionEvent]) -> list[Send]:
    """Each judgement's sends in turn, those to the decider handled by it at `now` (their events
    added to `events`): all that was made."""
    made: list[Send] = []
    for send in itertools.chain(*judgements):
        if send.topic != decider.DECISIONS:
            made.append(send)
            continue
        events.append(decider.decision_event(send.value))
        made += decider_.handle(partition, events[-1], now, ctx)
    return made


def test_a_resumed_entry_is_inactive_from_its_suspension_to_its_resumption(
        ctx: Context) -> None:
    """A resumed entry was active at every time: a request refused while its holder was
    suspended, read again after the resumption, was approved (two endings of one request). A
    resumption is published naming its suspension's time, and every reader dates it resumed at
    its record's broker append time (kept when published again, a re-keying or registration):
    inactive from the one to the other, as of the time of what is judged; active now."""
    suspended_at, resumed_at = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    active = ctx.directory["town"]
    suspended = dated(replace(active, active=False), active, suspended_at)
    resumed = dated(replace(suspended, active=True), suspended, resumed_at)
    assert (resumed.inactive_since, resumed.resumed_at) == (suspended_at, resumed_at)
    assert dated(replace(resumed, key_epoch=1), resumed, T0 + timedelta(hours=3)) == replace(
        resumed, key_epoch=1)
    judged = replace(ctx, directory={**ctx.directory, "town": resumed})
    ms = timedelta(milliseconds=1)
    assert [judged.active("town", at) for at in (
        suspended_at - ms, suspended_at, resumed_at - ms, resumed_at, None)] == [
        True, False, False, True, True]
    assert judged.inactive_reason("town", suspended_at) == "SUSPENDED"


def test_a_request_judged_again_by_a_view_that_read_a_suspension_ends_once(
        ctx: Context) -> None:
    """One outbox record judged by two platform instances, the first by a view of the directory
    that had not read its provider's suspension (dated before the record) and approving it, the
    second, reading it again after the first was killed before committing it, by one that had
    and refusing it SUSPENDED: the refusal went to the requester and the access log at once, a
    second ending beside the approval. It goes to the decider too: the first of the two in the
    decision partition's order ends the request, the other is a copy, dropped, live and in a
    rebuild alike."""
    item = _from("kodomo", LinkageRequest("X", T0, _link(ctx, FIRST, "kodomo"), "P-074", "town",
                                          "local_tax"), T0, 1)
    unread = _town_suspended(ctx, T0 - timedelta(seconds=1))
    approved, refused = linkage.requests([item], ctx), linkage.requests([item], unread)
    for judgements, ending in (((approved, refused), "approved"),
                               ((refused, approved), "rejected")):
        decider_, partition = _owning_x(ctx)
        events: list[decider.DecisionEvent] = []
        made = _fed(decider_, partition, judgements, T0, ctx, events)
        assert [step_of(event) for event, _ in _logged(made)] == [ending], "one ending"
        told = [s for s in made if s.topic == topics.inbox("kodomo")]
        assert [CODEC.decode(s.value, Rejection).reason for s in told] == (
            ["SUSPENDED"] if ending == "rejected" else [])
        assert [s.topic for s in made if s.topic == topics.inbox("town")] == (
            [topics.inbox("town")] if ending == "approved" else []), "queried once, or never"
        rebuilt, _ = _owning_x(ctx)
        rebuilt.rebuild(partition, [decider.DecisionRecord(T0, events)], ctx)
        assert rebuilt.states[partition].get("X") == decider_.states[partition].get("X")


def test_an_answer_judged_again_by_a_view_that_read_its_providers_suspension_ends_once(
        ctx: Context) -> None:
    """One answer judged by two platform instances, the first by a view of the directory that
    had not read its provider's suspension (dated before the answer) and relaying it, the
    second, reading it again (the first killed before committing it, or its provider's holder
    library sending it again) by one that had: refused SUSPENDED straight to the provider and
    the access log, a second ending beside the answer relayed. The refusal goes to the decider:
    the first judgement of the answer in the decision partition's order is made, the other is a
    copy, dropped, live and in a rebuild alike; refused first, the request ends as one whose
    provider was suspended since its approval does (its sweep, on_deadline)."""
    pending = _asked(ctx, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    answered = T0 + timedelta(seconds=1)
    unread = _town_suspended(ctx, answered - timedelta(milliseconds=1))
    relayed, refused = _answer(pending, "town", answered, 2, ctx), _answer(
        pending, "town", answered, 2, unread)
    for judgements, ending in (((relayed, refused), "answered"),
                               ((refused, relayed), "rejected")):
        decider_, partition = _owning_x(ctx)
        decider_.handle(partition, pending, T0, ctx)
        events: list[decider.DecisionEvent] = [pending]
        made = _fed(decider_, partition, judgements, answered, unread, events)
        assert [step_of(event) for event, _ in _logged(made)] == [ending], "one ending"
        assert _refusals(made) == ([(topics.inbox("town"), "SUSPENDED")]
                                   if ending == "rejected" else [])
        assert [s.topic for s in made if s.topic == topics.inbox("kodomo")] == (
            [topics.inbox("kodomo")] if ending == "answered" else []), "relayed once, or never"
        state = decider_.states[partition].get("X")
        assert isinstance(state, RequestState if ending == "rejected" else decider.Settled)
        rebuilt, _ = _owning_x(ctx)
        rebuilt.rebuild(partition, [decider.DecisionRecord(T0, events)], ctx)
        assert rebuilt.states[partition].get("X") == state


def test_a_binding_judged_again_by_a_view_that_read_its_holders_suspension_ends_once(
        ctx: Context) -> None:
    """A binding request judged by a view that had not read its holder's suspension (dated
    before it) was forwarded, and judged again by one that had (its first reader killed before
    committing it) refused SUSPENDED at once: a look-up and a refusal of one request. The
    refusal goes to the decider: the first judgement in the partition's order alone is made."""
    item = _from("town", BindingRequest("X", T0, BY_ATTRIBUTES, b"sealed"), T0, 1)
    unread = _town_suspended(ctx, T0 - timedelta(seconds=1))
    forwarded, refused = binding.forward(item, ctx), binding.forward(item, unread)
    for judgements, ending in (((forwarded, refused), topics.REGISTRY_IN),
                               ((refused, forwarded), topics.inbox("town"))):
        decider_, partition = _owning_x(ctx)
        made = _fed(decider_, partition, judgements, T0, ctx, [])
        assert [s.topic for s in made if s.topic != topics.AUDIT] == [ending], "one ending"
        assert [(step_of(e), e.reason) for e, _ in _logged(made)] == (
            [] if ending == topics.REGISTRY_IN else [("rejected", "SUSPENDED")])


def test_a_stale_binding_is_refused_stale_by_every_view(ctx: Context) -> None:
    """A stale binding request from a holder suspended before it, judged by a view that had not
    read the suspension, was refused STALE_REQUEST at once, and judged again (its first reader
    killed before committing it) by one that had, refused SUSPENDED through the decider, which
    had no judgement of it to drop that one as a copy of: two refusals of one request, their
    reasons two. Its staleness, alike by every view, is judged first."""
    item = _from("town", BindingRequest(
        "X", T0 - ctx.replay_window - timedelta(seconds=1), BY_ATTRIBUTES, b"sealed"), T0, 1)
    suspended = _town_suspended(ctx, T0 - timedelta(seconds=1))
    for judgements in itertools.permutations((binding.forward(item, ctx),
                                              binding.forward(item, suspended))):
        made = _fed(*_owning_x(ctx), judgements, T0, ctx, [])
        assert {reason for _, reason in _refusals(made)} == {"STALE_REQUEST"}
        assert {(step_of(e), e.reason) for e, _ in _logged(made)} == {
            ("rejected", "STALE_REQUEST")}


def test_a_stale_or_malformed_linkage_is_refused_so_by_every_view(ctx: Context) -> None:
    """A stale or MALFORMED linkage request from a holder not in a view of the directory (its
    registration not read yet) was refused NOT_PERMITTED by that view, and STALE_REQUEST or
    MALFORMED by one that had read it: two refusals of one request, their reasons two. Alike by
    every view, each is judged first, at once."""
    link = _link(ctx, FIRST, "kodomo")
    unlisted = replace(ctx, directory={h: e for h, e in ctx.directory.items() if h != "kodomo"})
    for request, reason in (
            (LinkageRequest("X", T0 - ctx.replay_window - timedelta(seconds=1), link, "P-074",
                            "town", "local_tax"), "STALE_REQUEST"),
            (LinkageRequest("X", T0, link, "P-074", "town", "local\ttax"), "MALFORMED")):
        item = _from("kodomo", request, T0, 1)
        for judgements in itertools.permutations((linkage.requests([item], ctx),
                                                  linkage.requests([item], unlisted))):
            made = _fed(*_owning_x(ctx), judgements, T0, ctx, [])
            assert {why for _, why in _refusals(made)} == {reason}
            assert {(step_of(e), e.reason) for e, _ in _logged(made)} == {("rejected", reason)}


def test_a_rekeying_judged_again_by_a_view_that_differs_ends_once(ctx: Context) -> None:
    """A re-keying request judged by a view of the directory that had not read its holder's
    suspension (dated before it) or its unit's new key epoch, and judged again (its first reader
    killed before committing it) by one that had, was answered at one epoch and refused SUSPENDED
    or answered at the other, each straight to its holder and the access log: two endings of one
    request. The first judgement in the decision partition's order alone is made, live and in a
    rebuild alike."""
    item = _from("town", RekeyRequest("X", T0, 0, (_link(ctx, FIRST, "town"),)), T0, 1)
    town = ctx.directory["town"]
    views = {"behind": ctx, "suspended": _town_suspended(ctx, T0 - timedelta(seconds=1)),
             "moved": replace(ctx, directory={**ctx.directory, "town": replace(town, key_epoch=1)})}
    judged = {view: rekey.answer(item, judging, T0) for view, judging in views.items()}
    alone = {view: _ending(ctx, judgement) for view, judgement in judged.items()}
    assert {view: _told(made, "town") for view, made in alone.items()} == {
        "behind": ["epoch 0"], "suspended": ["SUSPENDED"], "moved": ["epoch 1"]}
    for first, then in itertools.permutations(judged, 2):
        assert _ending(ctx, judged[first], judged[then]) == alone[first], (first, then)


@pytest.mark.parametrize("kind", ["linkage", "binding", "re-keying"])
def test_a_request_judged_again_by_a_view_that_has_its_holder_listed_ends_once(
        ctx: Context, kind: str) -> None:
    """A linkage, binding or re-keying request judged by a view of the directory that had not
    read its holder's registration (its outbox made then) was refused NOT_PERMITTED straight to
    its holder and the access log, and judged again (its first reader killed before committing
    it) by one that had, approved, forwarded or answered: two endings of one request. The first
    judgement in the decision partition's order alone is made, live and in a rebuild alike."""
    judges: dict[str, Callable[[FromHolder, Context], list[Send]]] = {
        "linkage": lambda item, view: linkage.requests([item], view),
        "binding": binding.forward, "re-keying": lambda item, view: rekey.answer(item, view, T0)}
    judge = judges[kind]
    holder, request, ending = {
        "linkage": ("kodomo", LinkageRequest("X", T0, _link(ctx, FIRST, "kodomo"), "P-074",
                                             "town", "local_tax"), topics.inbox("town")),
        "binding": ("town", BindingRequest("X", T0, BY_ATTRIBUTES, b"sealed"),
                    topics.REGISTRY_IN),
        "re-keying": ("town", RekeyRequest("X", T0, 0, (_link(ctx, FIRST, "town"),)),
                      topics.inbox("town"))}[kind]
    item = _from(holder, request, T0, 1)
    unlisted = replace(ctx, directory={h: e for h, e in ctx.directory.items() if h != holder})
    judged = {"listed": judge(item, ctx), "unlisted": judge(item, unlisted)}
    alone = {view: _ending(ctx, judgement) for view, judgement in judged.items()}
    assert _told(alone["unlisted"], holder) == ["NOT_PERMITTED"]
    assert [s.topic for s in alone["listed"] if s.topic != topics.AUDIT] == [ending]
    for first, then in itertools.permutations(judged, 2):
        assert _ending(ctx, judged[first], judged[then]) == alone[first], first


def _ending(ctx: Context, *judgements: list[Send]) -> list[Send]:
    """What `judgements` of request "X", fed in turn to a decider owning its partition, made;
    a decider rebuilt from their decision events holds the same state of it."""
    decider_, partition = _owning_x(ctx)
    events: list[decider.DecisionEvent] = []
    made = _fed(decider_, partition, judgements, T0, ctx, events)
    rebuilt, _ = _owning_x(ctx)
    rebuilt.rebuild(partition, [decider.DecisionRecord(T0, events)], ctx)
    assert rebuilt.states[partition].get("X") == decider_.states[partition].get("X")
    return made


def test_a_rekeying_of_more_codes_than_one_answer_carries_is_refused_at_once(
        ctx: Context) -> None:
    """Its answer, over the codec's limit, failed as INTERNAL_ERROR with two tracebacks, and
    the whole poll was handled again a record at a time; the holder library sends 10,000."""
    assert REKEY_CODES <= rekey.MOST_CODES
    codes = tuple(_link(ctx, FIRST, "town") for _ in range(rekey.MOST_CODES + 1))
    made = rekey.answer(_from("town", RekeyRequest("X", T0, 0, codes), T0, 1), ctx, T0)
    told = [CODEC.decode(s.value, Rejection) for s in made if s.topic == topics.inbox("town")]
    assert [(r.reason, r.detail) for r in told] == [(
        "MALFORMED", "20,001 link codes: at most 20,000 a request (its answer must fit one "
                     "message): send them in parts")]
    assert all(len(s.value) < MAX_BYTES for s in made)


def test_a_binding_or_a_rekeying_is_judged_by_the_directory_as_of_its_broker_time(
        ctx: Context) -> None:
    """A holder's binding or re-keying request was judged by the directory as it stands: read
    again after its holder was suspended since (or resumed since, its refusal read again), it was
    decided otherwise than the first time. Each is judged as of its broker time."""
    since, resumed = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    town = ctx.directory["town"]
    ms = timedelta(milliseconds=1)

    def refused(entry: HolderEntry, at: datetime) -> list[bool]:
        judged = replace(ctx, directory={**ctx.directory, "town": entry})
        binds = BindingRequest("b", at, BY_ATTRIBUTES, b"sealed")
        rekeys = RekeyRequest("k", at, 0, ())
        sent = [binding.forward(_from("town", binds, at, 1), judged)[0],
                rekey.answer(_from("town", rekeys, at, 2), judged, at)[0]]
        return [_kind_told(s) == Rejection.__name__ for s in sent]

    suspended = replace(town, active=False, inactive_since=since)
    back = replace(town, inactive_since=since, resumed_at=resumed)
    times = (since - ms, since, resumed - ms, resumed)
    assert [refused(suspended, at) for at in times] == [[False] * 2] + [[True] * 2] * 3
    assert [refused(back, at) for at in times] == [
        [False] * 2, [True] * 2, [True] * 2, [False] * 2]


def test_an_old_ticket_cannot_answer_a_later_request_that_reuses_its_id(ctx: Context) -> None:
    first = _asked(ctx, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    decider_, partition = _owning_x(ctx)
    decider_.handle(partition, first, T0, ctx)
    forget_at = decider_.states[partition].pending["X"].forget_at
    assert forget_at - first.deadline == timedelta(seconds=120), \
        "the id is forgotten two minutes after its ticket expired"
    for at in (first.deadline, forget_at):  # timed out (town kept its ticket), then forgotten
        decider_.read(partition, at + timedelta(seconds=decider.forgetting_lag(ctx)), ctx)
        decider_.handle(partition, Sweep(at, ("X",)), at, ctx)
    assert decider_.states[partition].get("X") is None

    second = _asked(ctx, "town", SECOND, "P-027", "nenkin", "pension_benefit", forget_at)
    assert decider_.handle(partition, second, forget_at, ctx)[0].topic == topics.inbox("nenkin")
    forged, = _answer(first, "town", forget_at + timedelta(seconds=1), 3, ctx)
    forged_outcome = CODEC.decode(forged.value, Outcome)
    refused = decider_.handle(partition, forged_outcome, forget_at, ctx)
    assert CODEC.decode(refused[0].value, Rejection).reason == "INVALID_TICKET"
    real, = _answer(second, "nenkin", forget_at + timedelta(seconds=2), 4, ctx)
    relayed = decider_.handle(partition, CODEC.decode(real.value, Outcome), forget_at, ctx)
    answer = CODEC.decode(relayed[0].value, LinkageAnswer)
    assert relayed[0].topic == topics.inbox("town")
    assert (answer.provider, answer.link_code) == ("nenkin", _link(ctx, SECOND, "town"))
    refused = decider_.handle(partition, forged_outcome, forget_at, ctx)
    assert CODEC.decode(refused[0].value, Rejection).reason == "INVALID_TICKET", \
        "the request answered under its id is not the old ticket's: refused, not dropped"


async def test_a_request_is_judged_by_the_brokers_times_alone_whatever_the_platforms_clock(
        broker: Cluster, ctx: Context) -> None:
    """The platform refused a holder's fresh request as stale while its clock was ahead of the
    broker's by more than the replay window (it compared the broker's append time with its own
    clock). On the real broker, which stamps an outbox's records: a request read by a platform
    3 minutes ahead is approved and dispatched once; a copy of it read by one 10 minutes behind,
    once the decider forgot it, is refused as stale, not decided again."""
    outbox_spec, = [s for s in topics.holder_topics("kodomo") if s.name == topics.outbox("kodomo")]
    admin = provision.admin_client()  # kept: its futures fail if it is collected first
    admin.create_topics([NewTopic(STAMPED, 1, 1, config=outbox_spec.for_cluster(1).configs())]
                        )[STAMPED].result(30)
    access = KafkaAccess.of(config.ADMIN)
    sent = datetime.now(UTC).replace(microsecond=0)
    request = LinkageRequest("X", sent, _link(ctx, FIRST, "kodomo"), "P-074", "town", "local_tax")
    async with producer(access) as prod:  # the holder's own clock an hour behind: not taken
        await prod.send_and_wait(STAMPED, CODEC.encode(request), partition=0,
                                 timestamp_ms=int((sent - timedelta(hours=1)).timestamp() * 1000))
    record, = await read_topic(access, STAMPED)
    received = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    assert abs(received - sent) < timedelta(minutes=1), "stamped by the broker"
    stamped = Incoming(topics.outbox("kodomo"), 0, record.offset, received, record.value)
    decider_, partition = _owning_x(ctx)
    ahead = received + ctx.replay_window + timedelta(minutes=1)
    approved = outbox.handle([stamped], ctx, ahead)
    assert [s.topic for s in approved] == [decider.DECISIONS], "not refused as stale"
    pending = CODEC.decode(approved[0].value, Pending)
    dispatched = decider_.handle(partition, pending, ahead, ctx)
    assert [s.topic for s in dispatched] == [topics.inbox("town"), topics.AUDIT]
    real, = _answer(pending, "town", received + timedelta(seconds=1), 2, ctx)
    decider_.handle(partition, CODEC.decode(real.value, Outcome), ahead, ctx)
    forgotten = ctx.stale_from(received) + timedelta(seconds=1)  # its second passed
    decider_.read(partition, forgotten + timedelta(seconds=decider.forgetting_lag(ctx)), ctx)
    decider_.handle(partition, Sweep(forgotten, ()), forgotten, ctx)
    assert decider_.states[partition].get("X") is None, "forgotten"
    behind = forgotten - timedelta(minutes=10)
    copy, = outbox.handle([stamped], ctx, behind)
    refused = decider_.handle(partition, CODEC.decode(copy.value, Pending), behind, ctx)
    assert [s.topic for s in refused] == [topics.inbox("kodomo"), topics.AUDIT]
    assert CODEC.decode(refused[0].value, Rejection).reason == "STALE_REQUEST"


def test_a_request_id_is_forgotten_only_after_its_ticket_expired_however_long_it_holds(
        ctx: Context) -> None:
    timed = replace(ctx, answer_timeout=timedelta(minutes=5))  # beyond the replay window
    pending = _asked(timed, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    state = decider.on_pending(pending, None, T0, decider.forgotten_at(pending, timed)).state
    assert isinstance(state, RequestState)
    assert state.forget_at == pending.deadline == T0 + timed.answer_timeout


def test_an_answer_of_another_exchange_under_a_pending_id_is_refused_to_its_provider(
        ctx: Context) -> None:
    """Even under a ticket still valid: what the decider relays is the pending exchange's. One of
    another exchange was dropped unsaid, and its provider's own log said FOUND for data relayed
    to no one: it is refused to its provider (INVALID_TICKET), as an unreadable one is
    (INTERNAL_ERROR), the request still pending."""
    pending = _asked(ctx, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    state = decider.on_pending(pending, None, T0, decider.forgotten_at(pending, ctx)).state
    assert isinstance(state, RequestState)
    made, = _answer(pending, "town", T0, 2, ctx)
    outcome = CODEC.decode(made.value, Outcome)
    relayed = CODEC.decode(outcome.answer, LinkageAnswer)
    for other in (replace(relayed, provider="nenkin"), replace(relayed, pattern_id="P-027"),
                  replace(relayed, data_type="pension_benefit")):
        refused = decider.on_outcome(replace(outcome, answer=CODEC.encode(other)), state, T0,
                                     ctx)
        assert refused.state == state
        assert _refusals(refused.effects) == [(topics.inbox(other.provider), "INVALID_TICKET")]
        assert CODEC.decode(refused.effects[0].value, Rejection).deadline == pending.deadline
        (event, _), = _logged(refused.effects)
        assert (event.outcome, event.reason, event.requester, event.pattern_id,
                event.data_type) == ("REJECTED", "INVALID_TICKET", other.provider,
                                     other.pattern_id, other.data_type)
    unreadable = decider.on_outcome(replace(outcome, answer=b"\x00"), state, T0, ctx)
    assert unreadable.state == state
    assert _refusals(unreadable.effects) == [(topics.inbox("town"), "INTERNAL_ERROR")]
    kept = decider.on_outcome(outcome, state, T0, ctx)
    assert isinstance(kept.state, decider.Settled)
    assert [s.topic for s in kept.effects] == [topics.inbox("kodomo"), topics.AUDIT]


def _refusals(sends: list[Send]) -> list[tuple[str, str]]:
    """The Rejections among `sends`: to whom, and why."""
    return [(s.topic, CODEC.decode(s.value, Rejection).reason) for s in sends
            if CODEC.name_of(s.value) == Rejection.__name__]


def _kind_told(sent: Send) -> str | None:
    """The kind of message `sent` tells its holder: a Refusal's, the decider making it first."""
    if CODEC.name_of(sent.value) == Refusal.__name__:
        return CODEC.name_of(CODEC.decode(sent.value, Refusal).rejection)
    return CODEC.name_of(sent.value)


def _told(sends: list[Send], holder: str) -> list[str]:
    """What `sends` told `holder`: the epoch of each re-keying's answer, the reason of each
    refusal."""
    told = [CODEC.decode(s.value, RekeyAnswer, Rejection) for s in sends
            if s.topic == topics.inbox(holder)]
    return [f"epoch {t.epoch}" if isinstance(t, RekeyAnswer) else t.reason for t in told]


def _logged(sends: list[Send]) -> list[tuple[AccessLogEvent, bytes]]:
    return [(CODEC.decode(s.value, AccessLogEvent), s.value) for s in sends
            if s.topic == topics.AUDIT]


LATER = T0 + timedelta(minutes=10)  # when request "X" asked at T0 is forgotten


def _answered_forgotten_and_answered(ctx: Context, first: Pending,
                                     second: Pending) -> tuple[list[Send], list[Send]]:
    """Request "X" asked (first) at T0 and answered, forgotten, and asked again (second) at LATER
    and answered: what each request made."""
    decider_, partition = _owning_x(ctx)
    made = decider_.handle(partition, first, T0, ctx)
    real, = _answer(first, first.provider, T0 + timedelta(seconds=1), 2, ctx)
    made += decider_.handle(partition, CODEC.decode(real.value, Outcome), T0, ctx)
    decider_.read(partition, LATER, ctx)
    decider_.handle(partition, Sweep(LATER, ("X",)), LATER, ctx)
    assert decider_.states[partition].get("X") is None, "forgotten"
    again = decider_.handle(partition, second, LATER, ctx)
    real, = _answer(second, second.provider, LATER + timedelta(seconds=1), 4, ctx)
    again += decider_.handle(partition, CODEC.decode(real.value, Outcome), LATER, ctx)
    return made, again


def test_a_request_that_reuses_a_forgotten_id_is_audited_as_its_own(
        ctx: Context, tmp_path: Path) -> None:
    """The approval and answer were logged under request id + "approved"/"answered" alone: a
    request using an id the decider had forgotten was served, but the audit store dropped its
    events as replays of the first request's, so a holder could hide lookups by reusing ids.
    Each step now names the holder message of its request (by its digest: copies_name)."""
    first = _asked(ctx, "kodomo", FIRST, "P-074", "town", "local_tax", T0)
    second = _asked(ctx, "town", SECOND, "P-027", "nenkin", "pension_benefit", LATER)
    made, again = _answered_forgotten_and_answered(ctx, first, second)
    with AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        assert None not in store.append_many(_logged(made) + _logged(again))
        assert [step_of(e.event) for e in store.query(Query(holder="nenkin")).entries] == [
            "approved", "answered"], "the second request's lookup is in the log"
        replayed = decider.Decider()
        partition = decider.partition_of("X")
        replayed.keep_only({partition})
        replayed.rebuild(partition, [decider.DecisionRecord(LATER, [second])], ctx)
        repeated = replayed.handle(partition, second, LATER, ctx)  # a crash replays its event
        timed_out = replayed.handle(partition, Sweep(second.deadline, ("X",)), LATER, ctx)
        assert store.append_many(_logged(repeated)) == [None], "the same approval again"
        assert [step_of(e) for e, _ in _logged(timed_out)] == ["answered"]
        assert {e.event_id for e, _ in _logged(timed_out)} == {
            e.event_id for e, _ in _logged(again) if step_of(e) == "answered"}, \
            "a rebuilt request's answer has the id of the live one's"


def _sent_at(link_code: str, sent_at: datetime, received: datetime, offset: int) -> FromHolder:
    """kodomo's lawful request "X" about `link_code` sent at `sent_at`, received then."""
    request = LinkageRequest("X", sent_at, link_code, "P-074", "town", "local_tax")
    return FromHolder(Incoming(topics.outbox("kodomo"), 0, offset, received,
                               CODEC.encode(request)), "kodomo", request)


def _unkeyed(item: FromHolder) -> int:
    """The digest of a holder message anyone could compute (the key none: blake2b's own)."""
    return decider.message_digest(b"", item.holder, item.incoming.value or b"")


def test_two_requests_crafted_to_share_a_digest_are_each_audited(
        ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder message's digest, which names its approval and answer, was unkeyed: a holder
    could search offline (~2^32 blake2b for 64 bits) for two requests of one digest, send the
    first as "X" and, once "X" was forgotten, the second, whose approval and answer had the
    first's ids and were dropped by the audit store: a real look-up hidden. The digest is keyed
    by a platform secret now. Shown on digests of 3 bytes, where the search takes ~2^12."""
    monkeypatch.setattr(decider, "DIGEST_BYTES", 3)
    one, other = (_link(ctx, resident, "kodomo") for resident in (FIRST, SECOND))
    firsts = {_unkeyed(item): item for item in (
        _sent_at(one, T0 - timedelta(milliseconds=ms), T0, 1) for ms in range(1 << 13))}
    seconds = (_sent_at(other, LATER - timedelta(milliseconds=ms), LATER, 3)
               for ms in range(120_000))
    second = next(item for item in seconds if _unkeyed(item) in firsts)
    first = firsts[_unkeyed(second)]
    assert first.incoming.value != second.incoming.value, "two requests, one unkeyed digest"
    (first_pending,), (second_pending,) = (
        [CODEC.decode(s.value, Pending) for s in linkage.requests([item], ctx)]
        for item in (first, second))
    made, again = _answered_forgotten_and_answered(ctx, first_pending, second_pending)
    with AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        assert None not in store.append_many(_logged(made) + _logged(again)), \
            "the second request's approval and answer are not dropped as the first's"
        assert sorted(step_of(e.event) for e in store.query(Query(
            person=second_pending.person)).entries) == ["answered", "approved"]


def test_a_holder_messages_digest_is_keyed_and_shared_by_its_copies(ctx: Context) -> None:
    """Under the platform's digest key: not blake2b's own, nor under another key; the same for
    the same bytes from the same holder at another offset (a copy sent again)."""
    item = _sent_at(_link(ctx, FIRST, "kodomo"), T0, T0, 1)
    copy = replace(item, incoming=replace(item.incoming, offset=5))
    digests = {CODEC.decode(made.value, Pending).digest
               for made in linkage.requests([item, copy], ctx)}
    value = item.incoming.value or b""
    assert digests == {decider.message_digest(ctx.digest_key, "kodomo", value)}
    assert digests.isdisjoint({_unkeyed(item), decider.message_digest(
        MasterKeys.generate().digest_key(), "kodomo", value)})


@pytest.mark.parametrize("field, value", [
    ("pattern_id", "P-074\x00"), ("provider", "town\n"), ("data_type", "local_tax" * 2000)])
def test_a_request_with_an_absurd_name_is_malformed_and_its_event_leaves_it_out(
        ctx: Context, field: str, value: str) -> None:
    names: dict[str, str] = {"request_id": "r-1", "pattern_id": "P-074", "provider": "town",
                             "data_type": "local_tax", field: value}
    request = LinkageRequest(names["request_id"], T0, _link(ctx, FIRST, "kodomo"),
                             names["pattern_id"], names["provider"], names["data_type"])
    refused, logged = linkage.requests([_from("kodomo", request, T0, 1)], ctx)
    rejection, event = CODEC.decode(refused.value, Rejection), CODEC.decode(logged.value,
                                                                            AccessLogEvent)
    assert refused.topic == topics.inbox("kodomo") and rejection.reason == "MALFORMED"
    assert rejection.request_id == request.request_id and field.replace("_", " ") in \
        rejection.detail
    assert value not in (event.pattern_id, event.provider, event.data_type)
    assert (event.outcome, event.reason) == ("REJECTED", "MALFORMED")
