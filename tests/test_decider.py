"""The decider: each request's effects happen once, whatever is replayed or duplicated."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from audit.consumer import read_audit
from audit.events import LINKAGE, AccessLogEvent, step_of
from audit.heads import Signer
from audit.store import AuditStore, Query
from broker import acls, config, topics
from broker.clients import KafkaAccess, read_topic
from broker.cluster import Cluster
from broker.provision import admin_client
from processors import decider
from processors.codes import UnitEpoch
from processors.context import Context
from processors.keys import MasterKeys
from processors.rejection import reject
from registry.resident_code import random_codes
from renkei.envelope import Send
from schemas.codec import CODEC, MAX_BYTES
from schemas.messages import (
    ANSWERED,
    NOT_FOUND,
    REFUSED,
    TIMED_OUT,
    BindingAnswer,
    HolderEntry,
    LinkageAnswer,
    Outcome,
    Pending,
    Refusal,
    RegistryAnswer,
    Rejection,
    RequestState,
    Suspension,
    Sweep,
)
from tests.kafka_helpers import producer

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RESIDENT = random_codes(1, seed=7)[0]
SOURCE = "renkei.holder.nenkin.out:0:7"
DIGEST_KEY = MasterKeys.generate().digest_key()
DIGEST = decider.message_digest(DIGEST_KEY, "nenkin", b"the request's bytes")


@pytest.fixture(scope="module")
def ctx() -> Context:
    keys = MasterKeys.generate()
    context = Context.of(keys)
    context.directory = {h: HolderEntry(h, h, "role", h, 0, b"k" * 32, False, True, NOW)
                         for h in ("nenkin", "town")}
    return context


def _pending(ctx: Context, source: str = SOURCE, request_id: str = "r-1",
             received: datetime = NOW, digest: int = DIGEST) -> Pending:
    person = ctx.codes.id_codes([RESIDENT])[0]
    assert isinstance(person, str)
    return Pending(request_id, source, "nenkin", "town", "P-037", "国民年金法", "local_tax", person,
                   received + ctx.answer_timeout, b"encoded query", digest)


def _decided(p: Pending, state: decider.State | None, ctx: Context) -> decider.Decision:
    """The decision on `p` read at NOW, its request known as `state`."""
    return decider.on_pending(p, state, NOW, decider.forgotten_at(p, ctx))


def _settled(status: str) -> decider.Settled:
    """What is kept of the request of _pending once answered or timed out."""
    return decider.Settled(status, decider.fingerprint(SOURCE), DIGEST)


def _topics(effects: list[Send]) -> list[str]:
    return [e.topic for e in effects]


def _owning(ctx: Context, history: list[decider.DecisionEvent],
            at: datetime = NOW) -> tuple[decider.Decider, int]:
    """A decider that has taken over r-1's partition, rebuilt from `history` (one record,
    appended `at`)."""
    decider_ = decider.Decider()
    partition = decider.partition_of("r-1")
    decider_.keep_only({partition})
    decider_.rebuild(partition, [decider.DecisionRecord(at, history)], ctx)
    return decider_, partition


def test_a_new_request_is_dispatched_once_and_its_approval_logged(ctx: Context) -> None:
    decision = _decided(_pending(ctx), None, ctx)
    assert decision.state is not None and decision.state.status == "PENDING"
    assert _topics(decision.effects) == [topics.inbox("town"), topics.AUDIT]
    again = _decided(_pending(ctx), decision.state, ctx)
    assert _topics(again.effects) == [topics.inbox("town"), topics.AUDIT], \
        "a replay of the same request repeats its (idempotent) effects"


def test_a_requests_approval_is_logged_under_what_its_copies_share(ctx: Context) -> None:
    """Its holder message's digest, the same for a copy sent again, whichever an owner keeps;
    an event from before digests (0) under its holder message's topic:partition:offset."""
    def approval(p: Pending) -> str:
        _, logged = _decided(p, None, ctx).effects
        return CODEC.decode(logged.value, AccessLogEvent).event_id

    assert approval(_pending(ctx, "renkei.holder.nenkin.out:0:8")) == approval(_pending(ctx))
    assert approval(_pending(ctx, digest=DIGEST + 1)) != approval(_pending(ctx))
    assert approval(_pending(ctx, digest=0)) == f"r-1:approved@{SOURCE}"


def test_a_reused_request_id_is_refused_as_duplicate(ctx: Context) -> None:
    state = _decided(_pending(ctx), None, ctx).state
    other = _decided(_pending(ctx, "renkei.holder.nenkin.out:2:99", digest=decider.
                              message_digest(DIGEST_KEY, "nenkin", b"other bytes")), state, ctx)
    assert other.state == state
    rejection = CODEC.decode(other.effects[0].value, Rejection)
    assert rejection.reason == "DUPLICATE_REQUEST" and other.effects[0].topic == \
        topics.inbox("nenkin")
    untold = _decided(_pending(ctx, digest=0), None, ctx).state
    assert _topics(_decided(_pending(ctx, "renkei.holder.nenkin.out:2:99", digest=0),
                            untold, ctx).effects) == \
        [topics.inbox("nenkin"), topics.AUDIT], "events before Pending v2 tell no digest: refused"


def test_a_copy_its_holder_sent_again_is_refused_to_it_alone_pending_or_settled(
        ctx: Context) -> None:
    """The same bytes from the same holder at another offset (kept and sent again at its
    restart): no second dispatch; refused to the holder, nothing in the audit log."""
    copy = _pending(ctx, "renkei.holder.nenkin.out:0:8")
    state = _decided(_pending(ctx), None, ctx).state
    answer = LinkageAnswer("r-1", "AAAAAAAAAAA", "town", "P-037", "local_tax", "FOUND", b"s")
    answered = decider.on_outcome(Outcome("r-1", "renkei.holder.town.out:1:5",
                                          CODEC.encode(answer)), state, NOW, ctx).state
    assert answered == _settled(ANSWERED)
    for kept in (state, answered):
        again = _decided(copy, kept, ctx)
        refused, = again.effects
        assert (again.state, refused.topic) == (kept, topics.inbox("nenkin"))
        assert CODEC.decode(refused.value, Rejection).reason == "DUPLICATE_REQUEST"
    for kept in (decider.Settled(TIMED_OUT, (1 << 64) - 1, d) for d in (-1 << 63, -1, 0, DIGEST)):
        assert decider.Settled.unpacked(kept.packed()) == kept, "a digest is an Avro long"
    assert decider.message_digest(DIGEST_KEY, "nenkin", b"x") != \
        decider.message_digest(DIGEST_KEY, "town", b"x"), \
        "the same bytes from another holder are not a copy"


def test_the_first_answer_is_relayed_and_later_ones_dropped(ctx: Context) -> None:
    state = _decided(_pending(ctx), None, ctx).state
    answer = LinkageAnswer("r-1", "AAAAAAAAAAA", "town", "P-037", "local_tax", "FOUND", b"s")
    first = decider.on_outcome(Outcome("r-1", "renkei.holder.town.out:1:5",
                                       CODEC.encode(answer)), state, NOW, ctx)
    assert first.state is not None and first.state.status == ANSWERED
    assert _topics(first.effects) == [topics.inbox("nenkin"), topics.AUDIT]
    replayed = decider.on_outcome(Outcome("r-1", "renkei.holder.town.out:1:5",
                                          CODEC.encode(answer)), first.state, NOW, ctx)
    assert replayed.effects == [] and replayed.state == first.state, \
        "the answer's effects went out before its offset was committed: a copy has none left"
    second = decider.on_outcome(Outcome("r-1", "renkei.holder.town.out:1:6",
                                        CODEC.encode(answer)), first.state, NOW, ctx)
    assert second.effects == [] and second.state == first.state
    late = decider.on_deadline(first.state, NOW + timedelta(minutes=1), ctx)
    assert late.effects == []


def test_no_answer_in_time_becomes_a_timeout_with_the_requesters_link_code(
        ctx: Context) -> None:
    state = _decided(_pending(ctx), None, ctx).state
    due = decider.on_deadline(state, NOW + timedelta(seconds=31), ctx)
    assert due.state is not None and due.state.status == TIMED_OUT
    timeout = CODEC.decode(due.effects[0].value, LinkageAnswer)
    assert timeout.status == TIMED_OUT
    assert timeout.link_code == ctx.codes.link_code(RESIDENT, UnitEpoch("nenkin", 0))


def test_a_requester_no_longer_active_is_not_sent_its_timeout_but_told_if_suspended(
        ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    """A requester marked inactive in the directory (or gone from it) after its request was
    approved is sent no timeout at the deadline, as it would be relayed no answer: the timeout is
    in the access log, and the decider's log and the event say why (suspended, or not in the
    directory). A suspended one was told nothing either, its request, linkage or binding, left
    sent for good, even once it was resumed: it is refused as at approval (SUSPENDED, since
    when), no data; one not in the directory (its inbox perhaps gone) is told nothing."""
    since = NOW + timedelta(seconds=1)
    inactive = replace(ctx.directory["nenkin"], active=False, inactive_since=since)
    for p, kind in ((_pending(ctx), "ANSWER"), (_binding(ctx), "BINDING")):
        state = _decided(p, None, ctx).state
        for directory, why in (({**ctx.directory, "nenkin": inactive}, "SUSPENDED"),
                               ({"town": ctx.directory["town"]}, "UNKNOWN_HOLDER")):
            caplog.clear()
            due = decider.on_deadline(state, NOW + timedelta(seconds=31),
                                      replace(ctx, directory=directory))
            with caplog.at_level("INFO", logger=decider.__name__):
                *told, logged = due.effects
            assert due.state == _settled(TIMED_OUT)
            event = CODEC.decode(logged.value, AccessLogEvent)
            assert (logged.topic, event.kind, event.outcome, event.reason) == (
                topics.AUDIT, kind, TIMED_OUT, why)
            _told_if_suspended(told, why, since, NOW + timedelta(seconds=31))
            assert caplog.messages == [
                "request r-1 timed out: its requester nenkin is no longer an active holder in the "
                f"directory ({why}): "
                + ("no one is told" if why == "UNKNOWN_HOLDER" else "it is refused so")]


def _suspended(ctx: Context, holder: str) -> Context:
    """`ctx` with `holder` suspended a second after NOW."""
    return replace(ctx, directory={**ctx.directory, holder: replace(
        ctx.directory[holder], active=False, inactive_since=NOW + timedelta(seconds=1))})


def test_a_requester_suspended_twice_is_told_the_suspension_its_request_ended_in(
        ctx: Context) -> None:
    """A requester suspended, resumed and suspended again, its request ended at a sweep made
    within the first suspension: it was refused with the dates of its last suspension, which
    had not begun then; it is told the one the sweep's time falls in."""
    first, back, again = (NOW + timedelta(seconds=s) for s in (1, 10, 20))
    twice = replace(ctx.directory["nenkin"], active=False, inactive_since=again,
                    suspensions=(Suspension(first, back),))
    state = _decided(_pending(ctx), None, ctx).state
    told, _ = decider.on_deadline(state, NOW + timedelta(seconds=5), replace(
        ctx, directory={**ctx.directory, "nenkin": twice})).effects
    assert CODEC.decode(told.value, Rejection).detail == (
        f"the requester was suspended since {first.isoformat()} until {back.isoformat()}: not "
        "an active holder in the directory then")


def test_a_request_to_a_provider_suspended_since_its_approval_ends_at_once_refused_so(
        ctx: Context) -> None:
    """A request whose provider was suspended once it was approved waited for its deadline,
    its requester then told TIMED_OUT, though the platform knew the provider suspended. It is
    passed for a sweep as soon as the directory has its provider inactive (once), and that sweep
    refuses it to its requester as approval would (SUSPENDED, the provider, since when), logs it
    TIMED_OUT (SUSPENDED) once, and refuses the provider's answer, if it comes, to it alone (one
    resumed since: the test after this one)."""
    since = NOW + timedelta(seconds=1)
    suspended = replace(ctx, directory={**ctx.directory, "town": replace(
        ctx.directory["town"], active=False, inactive_since=since)})
    swept = NOW + timedelta(seconds=2)
    decider_, partition = _owning(ctx, [_pending(ctx)])
    assert decider_.passed(swept, suspended) == {"r-1": topics.outbox("town")}
    assert decider_.passed(swept + timedelta(seconds=1), suspended) == {}, "passed once"
    made = decider_.handle(partition, Sweep(swept, ("r-1",)), swept, suspended)
    assert decider_.states[partition].get("r-1") == _settled(TIMED_OUT)
    assert made[0] == Send(topics.inbox("nenkin"), "r-1", CODEC.encode(Rejection(
        "r-1", "SUSPENDED", f"the provider 'town' is suspended since {since.isoformat()}: not "
        "an active holder in the directory", swept)))
    event = CODEC.decode(made[1].value, AccessLogEvent)
    assert (len(made), event.kind, event.outcome, event.reason, event.provider) == (
        2, "ANSWER", TIMED_OUT, "SUSPENDED", "town")
    answered = decider_.handle(partition, _answer(), swept, suspended)
    assert _topics(answered) == [topics.inbox("town"), topics.AUDIT], "refused to the provider"


def test_a_request_ended_early_its_provider_since_resumed_is_ended_once_by_every_owner(
        ctx: Context) -> None:
    """An owner ended a request early, its provider suspended (its requester refused SUSPENDED,
    logged TIMED_OUT); the provider was resumed, and the next owner, rebuilding the partition
    from its records, judged the sweep by the directory as it read it: the request pending, it
    timed it out again at its deadline, the requester told a second ending, the access log a
    second one. A request a sweep names is ended whatever the directory says when it is read:
    by every owner, live or rebuilding, once; one whose provider was resumed between its
    naming and the sweep read back is told a plain timeout."""
    suspended = _suspended(ctx, "town")
    swept, deadline = NOW + timedelta(seconds=2), _pending(ctx).deadline
    first, partition = _owning(ctx, [_pending(ctx)])
    assert first.passed(swept, suspended) == {"r-1": topics.outbox("town")}
    ended = first.handle(partition, Sweep(swept, ("r-1",)), swept, suspended)
    assert _topics(ended) == [topics.inbox("nenkin"), topics.AUDIT]
    successor, _ = _owning(ctx, [_pending(ctx), Sweep(swept, ("r-1",))])  # resumed since
    for owner in first, successor:
        assert owner.states[partition].get("r-1") == _settled(TIMED_OUT)
        assert _sweeps(owner, deadline, ctx) == [], "nothing due at the deadline"
        assert owner.handle(partition, Sweep(deadline, ("r-1",)), deadline, ctx) == []
    resumed, _ = _owning(ctx, [_pending(ctx)])
    assert resumed.passed(swept, suspended) == {"r-1": topics.outbox("town")}
    timeout, logged = resumed.handle(partition, Sweep(swept, ("r-1",)), swept, ctx)
    event = CODEC.decode(logged.value, AccessLogEvent)
    assert (CODEC.decode(timeout.value, LinkageAnswer).status, event.outcome, event.reason) == (
        TIMED_OUT, TIMED_OUT, None), "resumed in the instant between: a plain timeout"
    assert resumed.states[partition].get("r-1") == _settled(TIMED_OUT)
    assert _sweeps(resumed, deadline, ctx) == []


def test_a_suspended_provider_passes_the_requests_pending_to_it_as_its_partition_has_them(
        ctx: Context) -> None:
    """Decider.passed read every pending request of every partition at each sweep while any
    holder was suspended (O(pending) for one holder of thousands); it reads those of the
    suspended providers only, listed by provider beside the pending (as listing them afresh
    would): a rebuilt partition's (a partition given away and taken back, its new history's),
    not one ended by its answer (nor, its id used again once forgotten, the one to another
    provider under it)."""
    town, nenkin, swept = _suspended(ctx, "town"), _suspended(ctx, "nenkin"), NOW + timedelta(
        seconds=3)
    to_nenkin = replace(_pending(ctx), requester="town", provider="nenkin")
    owner, partition = _owning(ctx, [_pending(ctx)])
    assert owner.passed(swept, town) == {"r-1": topics.outbox("town")}, "rebuilt: found"
    owner.keep_only(set())
    assert owner.keep_only({partition}) == {partition}
    owner.rebuild(partition, [decider.DecisionRecord(NOW, [to_nenkin])], ctx)
    assert owner.passed(swept, town) == {}, "taken back: r-1 is to nenkin in its history"
    assert owner.passed(swept, nenkin) == {"r-1": topics.outbox("nenkin")}
    answered, _ = _owning(ctx, [_pending(ctx), _answer()])
    states, near = answered.states[partition], decider.near_forgetting(ctx)
    assert answered.passed(swept, town) == {}, "ended by its answer: not ended again"
    forget_at = ctx.stale_from(_pending(ctx).deadline - ctx.answer_timeout)
    answered.read(partition, forget_at + timedelta(seconds=decider.forgetting_lag(ctx)), ctx)
    answered.handle(partition, Sweep(forget_at, ()), NOW, ctx)
    assert states.get("r-1") is None, "forgotten"
    again = NOW + timedelta(seconds=2)
    answered.handle(partition, replace(to_nenkin, deadline=again + ctx.answer_timeout), again,
                    ctx)
    assert isinstance(states.get("r-1"), RequestState), "pending again"
    assert not answered.in_order(partition, "r-1", _answer("nenkin"), swept, near), "not named"
    assert answered.passed(swept, town) == {}, "its id's request to town is not pending"
    assert replace(states) == states, "listed as the pending are"
    assert answered.passed(swept, nenkin) == {"r-1": topics.outbox("nenkin")}


def test_an_answer_to_a_request_named_early_is_decided_after_the_sweep_on_its_way(
        ctx: Context) -> None:
    """An owner named a request early, its provider suspended, and the provider, resumed at
    once, answered before the sweep landed: the owner relayed the answer at once (its deadline
    not near), its record landing after the sweep, so the next owner, reading the sweep first,
    could end the request and keep it timed out, though its requester had the answer (and
    refuse to the provider a copy of the answer relayed). An event of a request named in a
    sweep on its way is decided in the topic's order, after the sweep, as one of a request past
    its deadline is."""
    suspended = _suspended(ctx, "town")
    swept, near = NOW + timedelta(seconds=2), decider.near_forgetting(ctx)
    owner, partition = _owning(ctx, [_pending(ctx)])
    assert not owner.in_order(partition, "r-1", _answer(), swept, near)
    assert owner.passed(swept, suspended) == {"r-1": topics.outbox("town")}
    assert owner.in_order(partition, "r-1", _answer(), swept, near), "the sweep first"
    owner.handle(partition, Sweep(swept, ("r-1",)), swept, suspended)
    assert owner.in_order(partition, "r-1", _answer(), swept, near), "settled: in order"
    owner.keep_only(set())
    assert owner.keep_only({partition}) == {partition}
    owner.rebuild(partition, [decider.DecisionRecord(NOW, [_pending(ctx)])], ctx)
    assert not owner.in_order(partition, "r-1", _answer(), swept, near), "named no more"


def test_a_requester_made_inactive_after_its_deadline_is_told_its_timeout_by_every_owner(
        ctx: Context) -> None:
    """An owner replaying a sweep after its requester was made inactive told it nothing, though
    the owner before had told it its timeout: the requester is judged as of the deadline."""
    state = _decided(_pending(ctx), None, ctx).state
    assert isinstance(state, RequestState)
    since = replace(ctx.directory["nenkin"], active=False,
                    inactive_since=state.deadline + timedelta(seconds=1))
    due = decider.on_deadline(state, NOW + timedelta(seconds=31),
                              replace(ctx, directory={**ctx.directory, "nenkin": since}))
    assert _topics(due.effects) == [topics.inbox("nenkin"), topics.AUDIT]


def test_an_answer_after_the_timeout_is_refused_to_its_provider_and_a_relayed_ones_copy_not(
        ctx: Context) -> None:
    """An answer whose ticket held when the broker took it, read after the sweep that timed its
    request out, was dropped unsaid: its provider logged FOUND, with the data, for data relayed
    to no one. It is refused to the provider (once: a copy read again is dropped), in the access
    log as an answer past its ticket's deadline is, and nothing else; an answer relayed, read
    again, is not."""
    late = NOW + timedelta(seconds=31)
    decider_, partition = _owning(ctx, [_pending(ctx)])
    assert _topics(decider_.handle(partition, Sweep(late, ("r-1",)), late, ctx)) == [
        topics.inbox("nenkin"), topics.AUDIT]
    refused, logged = decider_.handle(partition, _answer(), late, ctx)
    rejection = CODEC.decode(refused.value, Rejection)
    event = CODEC.decode(logged.value, AccessLogEvent)
    assert (logged.topic, event.kind, event.outcome, event.reason, event.requester,
            event.pattern_id, event.data_type) == (
        topics.AUDIT, "ANSWER", "REJECTED", "INVALID_TICKET", "town", "P-037", "local_tax")
    assert (refused.topic, rejection.request_id, rejection.reason) == (
        topics.inbox("town"), "r-1", "INVALID_TICKET")
    assert rejection.detail.startswith(decider.TIMED_OUT_FIRST)
    assert decider_.handle(partition, _answer(), late, ctx) == [], "a copy: dropped"
    assert decider_.states[partition].get("r-1") == _settled(TIMED_OUT)
    rebuilt, _ = _owning(ctx, [_pending(ctx), Sweep(late, ("r-1",)), _answer()])
    assert rebuilt.states[partition].get("r-1") == _settled(TIMED_OUT)
    assert rebuilt.handle(partition, _answer(), late, ctx, effects=False) == []
    answered, _ = _owning(ctx, [_pending(ctx), _answer()])
    assert answered.handle(partition, _answer(), late, ctx) == [], "relayed: not refused"
    assert answered.handle(partition, Sweep(late, ("r-1",)), late, ctx) == []
    assert answered.handle(partition, _answer(), late, ctx) == []


def test_a_copy_of_an_answer_relayed_sent_again_past_its_deadline_is_dropped_others_refused(
        ctx: Context) -> None:
    """A provider restarted before committing sent the answer relayed again, which the broker
    took past its ticket's deadline: linkage refused it, and the provider rewrote its entry
    FOUND as not provided, for data the requester had. It is dropped as any copy is, by every
    owner; one to a request timed out or not known (not held for a request to come) is refused
    to its provider as expired, under its own source, at its time (one to a request pending
    waits for it to be settled: the test after this one)."""
    pending = _pending(ctx)
    past = pending.deadline + timedelta(seconds=5)
    again = replace(_answer(), source="renkei.holder.town.out:1:9", deadline=pending.deadline,
                    answered_at=past)
    answered, partition = _owning(ctx, [pending, _answer()])
    assert answered.handle(partition, again, past, ctx) == [], "a copy: dropped"
    assert answered.states[partition].get("r-1") == _settled(ANSWERED)
    timed_out, _ = _owning(ctx, [pending, Sweep(pending.deadline, ("r-1",))])
    unknown, _ = _owning(ctx, [])
    for owner in (timed_out, unknown):
        before = owner.states[partition].get("r-1")
        refused, logged = owner.handle(partition, again, past + timedelta(seconds=1), ctx)
        rejection = CODEC.decode(refused.value, Rejection)
        event = CODEC.decode(logged.value, AccessLogEvent)
        assert (rejection.reason, rejection.deadline, rejection.rejected_at) == (
            "INVALID_TICKET", pending.deadline, past)
        assert rejection.detail.startswith(decider.expired(pending.deadline, past))
        assert (event.event_id, event.outcome, event.requester) == (
            f"r-1:rejected@{again.source}", "REJECTED", "town")
        assert owner.states[partition].get("r-1") == before and not owner.states[partition].held
    rebuilt, _ = _owning(ctx, [pending, _answer(), again])
    assert rebuilt.states[partition].get("r-1") == _settled(ANSWERED)


def test_a_late_copy_read_before_the_record_of_the_answer_relayed_is_dropped_by_every_owner(
        ctx: Context) -> None:
    """An owner relayed the answer at once; the provider's copy of it, sent again past its
    deadline, reached the decider's topic before that decision's record, and the owner crashed
    before committing: the next owner read the copy with the request pending past its deadline,
    refused it (INVALID_TICKET, in the access log), so the provider rewrote its entry FOUND as
    REJECTED for data the requester had, and then read the record settling the request
    ANSWERED. A late answer to its request pending is decided once the request is settled:
    dropped when the answer relayed settles it (its record, or the first answer read again
    from its outbox: relayed again, which the requester and the audit log drop as copies),
    whichever order the two are read in, live or in a rebuild; refused as expired, at its own
    time under its own source, when a sweep times the request out."""
    pending = _pending(ctx)
    past = pending.deadline + timedelta(seconds=5)
    first = replace(_answer(), deadline=pending.deadline, answered_at=NOW + timedelta(seconds=3))
    other = LinkageAnswer("r-1", "AAAAAAAAAAA", "town", "P-037", "local_tax", NOT_FOUND, b"")
    copies = (replace(first, source="renkei.holder.town.out:1:9", answered_at=past),
              replace(first, source="renkei.holder.town.out:1:9", answered_at=past,
                      answer=CODEC.encode(other)))  # a second answer, another: dropped alike
    after = past + timedelta(seconds=1)
    for copy in copies:
        for first_effects in (False, True):  # its record (made by the owner gone), or read again
            successor, partition = _owning(ctx, [pending])
            assert successor.handle(partition, copy, after, ctx) == [], "not refused: it waits"
            relayed = successor.handle(partition, first, after, ctx, effects=first_effects)
            assert _topics(relayed) == ([topics.inbox("nenkin"), topics.AUDIT] if first_effects
                                        else []), "the copy is dropped, nothing refused"
            assert successor.states[partition].get("r-1") == _settled(ANSWERED)
            assert successor.handle(partition, Sweep(after, ("r-1",)), after, ctx) == []
            assert _swept(successor, partition, after + timedelta(seconds=1), ctx) == []
        orders: list[list[decider.DecisionEvent]] = [[pending, copy, first],
                                                     [pending, first, copy]]
        for history in orders:
            rebuilt, partition = _owning(ctx, history)
            assert rebuilt.states[partition].get("r-1") == _settled(ANSWERED)
            assert rebuilt.handle(partition, Sweep(after, ("r-1",)), after, ctx) == []
            assert rebuilt.handle(partition, copy, after, ctx) == [], "dropped, read again"
        waiting, partition = _owning(ctx, [pending])
        assert waiting.handle(partition, copy, after, ctx) == []
        timeout, timed_out, refused, logged = _swept(waiting, partition, after, ctx)
        assert _topics([timeout, timed_out, logged]) == [topics.inbox("nenkin"), topics.AUDIT,
                                                         topics.AUDIT]
        assert CODEC.decode(timed_out.value, AccessLogEvent).outcome == TIMED_OUT
        rejection = CODEC.decode(refused.value, Rejection)
        event = CODEC.decode(logged.value, AccessLogEvent)
        assert (refused.topic, rejection.reason, rejection.rejected_at) == (
            topics.inbox("town"), "INVALID_TICKET", past)
        assert rejection.detail.startswith(decider.expired(pending.deadline, past))
        assert (event.event_id, event.outcome) == (f"r-1:rejected@{copy.source}", "REJECTED")
        assert waiting.states[partition].get("r-1") == _settled(TIMED_OUT)


def test_a_settled_request_is_forgotten_once_any_copy_of_it_would_be_stale(
        ctx: Context) -> None:
    decider_, partition = _owning(ctx, [])
    decider_.handle(partition, _pending(ctx), NOW, ctx)
    states = decider_.states[partition]
    forget_at = ctx.stale_from(_pending(ctx).deadline - ctx.answer_timeout)
    decider_.handle(partition, Sweep(forget_at, ()), forget_at, ctx)
    assert isinstance(states.get("r-1"), RequestState), "still pending: not forgotten"
    expiry, = _sweeps(decider_, NOW + timedelta(seconds=31), ctx)
    decider_.handle(partition, CODEC.decode(expiry.value, Sweep), NOW, ctx)
    assert states.get("r-1") == _settled(TIMED_OUT)
    decider_.handle(partition, Sweep(forget_at - timedelta(seconds=1), ()), NOW, ctx)
    assert states.get("r-1") is not None, "remembered while a copy could still be fresh"
    due = forget_at + timedelta(seconds=decider.forgetting_lag(ctx))  # a record then forgets it
    assert _sweeps(decider_, due - timedelta(seconds=1), ctx) == []
    sweep, = _sweeps(decider_, due, ctx)
    assert sweep.partition == partition and _sweeps(decider_, due, ctx) == [], "sent once"
    decider_.read(partition, due - timedelta(seconds=1), ctx)
    decider_.handle(partition, CODEC.decode(sweep.value, Sweep), NOW, ctx)
    assert states.get("r-1") is not None, "its record read before a record then forgets it"
    decider_.read(partition, due, ctx)
    decider_.handle(partition, CODEC.decode(sweep.value, Sweep), NOW, ctx)
    assert states.get("r-1") is None and states.forgetting == {}


def _refusal(ctx: Context, source: str = SOURCE, digest: int = DIGEST) -> Refusal:
    """_pending's request refused at approval, SUSPENDED, by a view that read its provider's
    suspension (linkage._refused)."""
    told, logged = reject("nenkin", "r-1", "SUSPENDED", "the provider 'town' is suspended", NOW,
                          source, LINKAGE, pattern_id="P-037", provider="town",
                          data_type="local_tax")
    return Refusal("r-1", source, "nenkin", NOW + ctx.answer_timeout, digest, told.value,
                   logged.value)


@pytest.mark.parametrize("first", ["approved", "rejected"])
def test_a_request_approved_and_refused_by_two_views_ends_once_live_and_rebuilt(
        ctx: Context, first: str) -> None:
    """A holder message judged twice (one instance's view had not read a suspension, the other's
    had): its Pending and its Refusal, in either order, end it once, the first in the partition's
    order; the second is dropped, and the same bytes its holder sent again (another offset) are
    refused to it alone, DUPLICATE_REQUEST, whichever view judged them (the fuzz's replayed
    message, refused by a view, was answered by none), live and by an owner rebuilding the
    partition; then a refused request's answer (its query sent by an owner killed before its
    record landed) is refused to its provider, and the refusal forgotten as a settled request
    is."""
    copy = "renkei.holder.nenkin.out:0:8"
    history: list[decider.DecisionEvent] = (
        [_pending(ctx), _refusal(ctx), _refusal(ctx, copy)] if first == "approved" else
        [_refusal(ctx), _pending(ctx), _refusal(ctx, copy), _pending(ctx, copy)])
    live, partition = _owning(ctx, [])
    live.read(partition, NOW, ctx)
    made = [e for message in history for e in live.handle(partition, message, NOW, ctx)]
    logged = [CODEC.decode(e.value, AccessLogEvent) for e in made if e.topic == topics.AUDIT]
    assert [(step_of(e), e.reason) for e in logged] == (
        [("approved", None)] if first == "approved" else [("rejected", "SUSPENDED")])
    told = [CODEC.decode(e.value, Rejection).reason for e in made
            if e.topic == topics.inbox("nenkin")]
    assert told == (["DUPLICATE_REQUEST"] if first == "approved" else
                    ["SUSPENDED", "DUPLICATE_REQUEST", "DUPLICATE_REQUEST"])
    rebuilt, _ = _owning(ctx, history)
    assert rebuilt.states == live.states
    if first == "approved":
        return
    states = live.states[partition]
    assert states.get("r-1") == decider.Settled("REJECTED", decider.fingerprint(SOURCE), DIGEST)
    refused, _ = live.handle(partition, _answer(), NOW, ctx)
    assert refused.topic == topics.inbox("town"), "an answer to a refused request: to no one"
    due = ctx.stale_from(NOW) + timedelta(seconds=decider.forgetting_lag(ctx))
    live.read(partition, due, ctx)
    live.handle(partition, Sweep(due, ()), due, ctx)
    assert states.get("r-1") is None and states.forgetting == {}


def test_a_copy_of_a_request_is_fresh_only_within_the_replay_window(ctx: Context) -> None:
    assert ctx.fresh(NOW - ctx.replay_window, NOW)
    assert not ctx.fresh(NOW - ctx.replay_window - timedelta(seconds=1), NOW)
    assert ctx.fresh(NOW + ctx.clock_skew, NOW)
    assert not ctx.fresh(NOW + ctx.clock_skew + timedelta(seconds=1), NOW), "from the future"
    last = ctx.stale_from(NOW)
    assert ctx.fresh(NOW + ctx.clock_skew, last) and not ctx.fresh(
        NOW + ctx.clock_skew, last + timedelta(milliseconds=1))


def test_deadlines_are_swept_by_partition(ctx: Context) -> None:
    decider_, _ = _owning(ctx, [_pending(ctx)])
    assert _sweeps(decider_, NOW, ctx) == []
    sweep, = _sweeps(decider_, NOW + timedelta(minutes=1), ctx)
    assert sweep.partition == decider.partition_of("r-1")
    assert CODEC.decode(sweep.value, Sweep).expire == ("r-1",)
    decider_.unsent([sweep])
    again, = _sweeps(decider_, NOW + timedelta(minutes=1), ctx)
    assert CODEC.decode(again.value, Sweep).expire == ("r-1",), "an unsent sweep is due again"


def test_a_request_past_its_deadline_waits_on_the_topic_its_answer_comes_from(
        ctx: Context) -> None:
    """A linkage's answer comes from its provider's outbox, a binding's from the registry's (by
    personal number too: the authority passes the look-up on): each request past its deadline is
    timed out once every answer taken there by then is read (unread.Unread), once."""
    linkage, binding = _pending(ctx), replace(_binding(ctx), request_id="b-1")
    decider_ = decider.Decider()
    for partition in decider_.keep_only(set(range(decider.PARTITIONS))):
        decider_.rebuild(partition, [], ctx)
    for p in linkage, binding:
        decider_.handle(decider.partition_of(p.request_id), p, NOW, ctx, effects=False)
    assert decider_.passed(NOW + ctx.answer_timeout - timedelta(seconds=1), ctx) == {}
    assert decider_.passed(NOW + ctx.answer_timeout, ctx) == {
        "r-1": topics.outbox("town"), "b-1": topics.REGISTRY_OUT}
    assert decider_.passed(NOW + timedelta(hours=1), ctx) == {}, "passed once"


def test_many_deadlines_due_at_once_are_swept_in_sweeps_the_codec_takes(ctx: Context) -> None:
    """Found at the start of a ×2 scale-out after a 10-minute run: both instances' sweepers built
    a Sweep of about 1 MB, which the codec refused, and the error stopped both."""
    ids = [request_id for request_id in (f"r-{i:06d}-{'x' * 92}" for i in range(90_000))
           if decider.partition_of(request_id) == 3][:10_000]
    assert sum(len(i) for i in ids) > MAX_BYTES
    pending, decider_ = _pending(ctx), decider.Decider()
    decider_.keep_only({3})
    decider_.rebuild(3, [decider.DecisionRecord(NOW, [
        replace(pending, request_id=request_id) for request_id in ids])], ctx)
    sweeps = _sweeps(decider_, pending.deadline, ctx)
    assert len(sweeps) > 1 and {s.partition for s in sweeps} == {3}
    assert all(len(s.value) <= decider.SWEEP_BYTES + 64 for s in sweeps)
    named = [i for s in sweeps for i in CODEC.decode(s.value, Sweep).expire]
    assert named == ids, "each due request named once, in order"


def test_an_answered_request_is_not_swept_at_its_deadline(ctx: Context) -> None:
    """Behind the 1 MB Sweep at a ×2 scale-out after a 10-minute run at 600/s: a new owner
    rebuilt each partition from 6.5 minutes of events and its first sweep named every request
    in them whose deadline had passed, answered or not (about 27,000 ids)."""
    answer = LinkageAnswer("r-1", "AAAAAAAAAAA", "town", "P-037", "local_tax", "FOUND", b"s")
    answered: list[decider.DecisionEvent] = [
        _pending(ctx), Outcome("r-1", "x:0:1", CODEC.encode(answer))]
    rebuilt, _ = _owning(ctx, answered)
    assert _sweeps(rebuilt, NOW + timedelta(minutes=1), ctx) == []
    live, partition = _owning(ctx, [])
    for message in answered:
        live.handle(partition, message, NOW, ctx)
    assert _sweeps(live, NOW + timedelta(minutes=1), ctx) == []
    waiting, _ = _owning(ctx, [_pending(ctx)])
    sweep, = _sweeps(waiting, NOW + timedelta(minutes=1), ctx)
    assert CODEC.decode(sweep.value, Sweep).expire == ("r-1",), "a pending one still is"


def test_a_partition_given_away_is_no_longer_swept_here(ctx: Context) -> None:
    decider_, _ = _owning(ctx, [_pending(ctx)])
    decider_.keep_only(set())
    assert _sweeps(decider_, NOW + timedelta(minutes=1), ctx) == [], "its new owner sweeps it"


def test_a_sweep_may_name_a_request_it_forgets(ctx: Context) -> None:
    """Found in a scale-out under load: a new owner's first sweep named every deadline of the
    history it rebuilt, some of them answered requests due to be forgotten in that same sweep;
    the decider forgot them before applying its decisions, failed on the sweep, and so lost the
    timeouts it carried (and the next owner failed rebuilding from it)."""
    answer = LinkageAnswer("r-1", "AAAAAAAAAAA", "town", "P-037", "local_tax", "FOUND", b"s")
    decider_, partition = _owning(ctx, [_pending(ctx),
                                        Outcome("r-1", "x:0:1", CODEC.encode(answer))])
    forget_at = ctx.stale_from(_pending(ctx).deadline - ctx.answer_timeout)
    decider_.read(partition, forget_at + timedelta(seconds=decider.forgetting_lag(ctx)), ctx)
    assert decider_.handle(partition, Sweep(forget_at, ("r-1",)), NOW, ctx) == []
    assert decider_.states[partition].get("r-1") is None, "forgotten"


def test_a_partition_taken_back_times_each_request_out_once(ctx: Context) -> None:
    """An instance that gave a partition away and took it back watched its deadlines twice."""
    decider_, partition = _owning(ctx, [_pending(ctx)])
    decider_.keep_only(set())
    assert decider_.keep_only({partition}) == {partition}
    decider_.rebuild(partition, [decider.DecisionRecord(NOW, [_pending(ctx)])], ctx)
    sweep, = _sweeps(decider_, NOW + timedelta(minutes=1), ctx)
    assert CODEC.decode(sweep.value, Sweep).expire == ("r-1",)
    twice = Sweep(NOW + timedelta(minutes=1), ("r-1", "r-1"))  # as such an instance wrote
    effects = decider_.handle(partition, twice, NOW, ctx)
    assert _topics(effects) == [topics.inbox("nenkin"), topics.AUDIT], "one timeout, logged once"


def test_a_taken_over_partition_rebuilds_the_same_state_from_its_history(
        ctx: Context) -> None:
    """The state is a function of the partition's events: replaying them gives it back."""
    live, taken = decider.Decider(), decider.Decider()
    partition = decider.partition_of("r-1")
    live.keep_only({partition})
    live.rebuild(partition, [], ctx)
    answer = LinkageAnswer("r-1", "AAAAAAAAAAA", "town", "P-037", "local_tax", "FOUND", b"s")
    history: list[decider.DecisionEvent] = [
        _pending(ctx), Outcome("r-1", "x:0:1", CODEC.encode(answer))]
    live.read(partition, NOW, ctx)  # one record, appended at NOW
    for message in history:
        live.handle(partition, message, NOW, ctx)
    assert taken.keep_only({partition}) == {partition}
    taken.rebuild(partition, [decider.DecisionRecord(NOW, history)], ctx)
    assert taken.states == live.states
    assert taken.states[partition].get("r-1") == _settled(ANSWERED)


@pytest.mark.parametrize("last", [0, 181])
def test_owners_rebuilt_at_different_records_decide_a_request_read_late_alike(
        ctx: Context, last: int) -> None:
    """An owner's stale limit was set by its rebuild alone: rebuilt from a last record appended
    at a request's receipt, it dispatched the request read 200 s after; rebuilt from one 181 s
    after, it refused it. The record read moves the limit on by its append time: both refuse."""
    owner, partition = _owning(ctx, [], at=NOW + timedelta(seconds=last))
    read = NOW + timedelta(seconds=200)
    owner.read(partition, read, ctx)
    made = owner.handle(partition, _pending(ctx), read, ctx)
    assert _topics(made) == [topics.inbox("nenkin"), topics.AUDIT], "refused to its requester"
    assert CODEC.decode(made[0].value, Rejection).reason == "STALE_REQUEST"


def test_a_request_refused_as_stale_is_not_taken_as_pending_by_a_rebuild(ctx: Context) -> None:
    """A rebuild applied its stale limit only after replaying its history: a request its owner
    refused as stale, read 200 s after its receipt, was taken as pending by the next owner and
    timed out, the requester told TIMED_OUT after STALE_REQUEST. Each record of the history is
    read as its owner read it."""
    owner, partition = _owning(ctx, [])
    owner.rebuild(partition, [decider.DecisionRecord(NOW + timedelta(seconds=181), []),
                              decider.DecisionRecord(NOW + timedelta(seconds=200),
                                                     [_pending(ctx)])], ctx)
    assert owner.states[partition].get("r-1") is None
    assert _swept(owner, partition, NOW + timedelta(minutes=5), ctx) == []


def test_a_sweep_just_before_a_rebuilds_history_forgets_no_more_than_its_first_record_says(
        ctx: Context) -> None:
    """A sweep forgot requests up to its own time less 150 s, the records read after it only up
    to their time less 180 s: a request received 155 s before the sweep, read 10 s after it, was
    refused as stale by the owner that read the sweep and taken as pending (then timed out) by
    one whose history began after it. A sweep forgets no more than its record's read says."""
    partition = decider.partition_of("r-1")
    other = next(i for i in (f"q-{n}" for n in range(500)) if decider.partition_of(i) == partition)
    swept, late = NOW + timedelta(seconds=150), NOW + timedelta(seconds=160)
    live, _ = _owning(ctx, [])
    late_one = _pending(ctx, received=NOW - timedelta(seconds=5))
    forgotten = _pending(ctx, request_id=other, received=NOW - timedelta(seconds=1),
                         source=f"{SOURCE}1")
    records: list[tuple[datetime, Pending | Sweep]] = [
        (NOW, forgotten), (NOW, Sweep(NOW + timedelta(seconds=31), (other,))),
        (swept, Sweep(swept, ()))]
    for at, message in records:
        live.read(partition, at, ctx)
        live.handle(partition, message, at, ctx)
    live.read(partition, late, ctx)
    made = live.handle(partition, late_one, late, ctx)
    rebuilt, _ = _owning(ctx, [])
    rebuilt.rebuild(partition, [decider.DecisionRecord(late, [late_one])], ctx)
    assert live.states[partition].get("r-1") == rebuilt.states[partition].get("r-1")
    assert _topics(made) == [topics.inbox("town"), topics.AUDIT], "dispatched by both"


def test_a_rebuild_keeps_the_state_and_makes_none_of_the_effects_again(ctx: Context) -> None:
    """A rebuild made each event's effects and threw them away: most of its time, and a timeout
    in the history of a requester since gone from the directory stopped the take-over."""
    timed_out: list[decider.DecisionEvent] = [
        _pending(ctx), Sweep(NOW + timedelta(seconds=31), ("r-1",))]
    gone = replace(ctx, directory={"town": ctx.directory["town"]})
    decider_, partition = _owning(gone, timed_out)
    assert decider_.states[partition].get("r-1") == _settled(TIMED_OUT)
    live, _ = _owning(ctx, [])
    live.read(partition, NOW, ctx)
    made = [e for m in timed_out for e in live.handle(partition, m, NOW, ctx)]
    assert _topics(made) == [topics.inbox("town"), topics.AUDIT, topics.inbox("nenkin"),
                             topics.AUDIT], "live, the same events make their effects"
    assert live.states == decider_.states


def test_a_timeout_that_cannot_be_made_costs_only_itself(ctx: Context) -> None:
    """A sweep's timeouts were made one after another and the first to fail lost the rest: they
    were settled, and no requester heard, nor did the audit log. A requester gone from the
    directory has nobody to tell but is still logged; any other failure (here a directory
    entry with a unit no link key can be made for) costs that one only."""
    odd = HolderEntry("odd", "odd", "role", "not a unit!", 0, b"k" * 32, False, True, NOW)
    ctx = replace(ctx, directory={**ctx.directory, "odd": odd})
    partition = decider.partition_of("r-1")
    gone_id, odd_id = [i for i in (f"r-{n}" for n in range(2, 500))
                       if decider.partition_of(i) == partition][:2]
    decider_, _ = _owning(ctx, [])
    for pending in (replace(_pending(ctx, request_id=gone_id), requester="gone"),
                    replace(_pending(ctx, request_id=odd_id), requester="odd"), _pending(ctx)):
        decider_.handle(partition, pending, NOW, ctx)
    sweep, = _sweeps(decider_, NOW + timedelta(minutes=1), ctx)
    assert set(CODEC.decode(sweep.value, Sweep).expire) == {gone_id, odd_id, "r-1"}
    made = decider_.handle(partition, Sweep(NOW + timedelta(minutes=1),
                                            (gone_id, odd_id, "r-1")), NOW, ctx)
    assert [(e.topic, e.key) for e in made] == [
        (topics.AUDIT, gone_id), (topics.inbox("nenkin"), "r-1"), (topics.AUDIT, "r-1")]
    assert all(decider_.states[partition].get(i) == _settled(TIMED_OUT)
               for i in (gone_id, odd_id, "r-1"))


def test_events_applied_again_in_order_leave_the_state_as_it_was(ctx: Context) -> None:
    """What an owner does with records decided at once that its state already has (read from
    its committed offset on): any tail of a request's story (pending, answered, swept and
    forgotten) applied again changes nothing, but that an answer to the request forgotten
    meanwhile is held, as one that came before its request (which it cannot be told from)."""
    partition = decider.partition_of("r-1")
    answer = LinkageAnswer("r-1", "AAAAAAAAAAA", "town", "P-037", "local_tax", "FOUND", b"s")
    story: list[decider.DecisionEvent] = [
        _pending(ctx), Outcome("r-1", "x:0:1", CODEC.encode(answer)),
        Sweep(NOW + timedelta(days=1), ())]
    for upto in range(1, len(story) + 1):
        for start in range(upto):
            decider_, _ = _owning(ctx, story[:upto])
            had = decider_.states[partition]
            before = decider.Partition(dict(had.pending), dict(had.settled),
                                       {s: list(ids) for s, ids in had.forgetting.items()},
                                       forgotten_through=had.forgotten_through)
            for message in story[start:upto]:
                decider_.handle(partition, message, NOW, ctx)
            after = decider_.states[partition]
            assert replace(after, held={}) == before, f"events {start}..{upto - 1} again"
            assert not after.held or (set(after.held) == {"r-1"} and before.get("r-1") is None)


def _answer(provider: str = "town") -> Outcome:
    answer = LinkageAnswer("r-1", "AAAAAAAAAAA", provider, "P-037", "local_tax", "FOUND", b"s")
    return Outcome("r-1", f"renkei.holder.{provider}.out:1:5", CODEC.encode(answer))


def _refused_answer(ctx: Context) -> Outcome:
    """_answer as read by a view that had read its provider's suspension: refused SUSPENDED,
    taken by the broker two seconds after NOW, under _pending's ticket."""
    return replace(_answer(), deadline=_pending(ctx).deadline,
                   answered_at=NOW + timedelta(seconds=2), refused="SUSPENDED")


def _sweeps(decider_: decider.Decider, at: datetime, ctx: Context) -> list[Send]:
    """The sweeps the decider makes at `at`, every answer to the requests past their deadlines
    read by then (unread.Unread)."""
    return decider_.sweeps(at, ctx, decider_.passed(at, ctx))


def _swept(decider_: decider.Decider, partition: int, at: datetime, ctx: Context) -> list[Send]:
    """The sweeps the decider asks for at `at`, handled: their effects."""
    return [made for sweep in _sweeps(decider_, at, ctx)
            for made in decider_.handle(partition, CODEC.decode(sweep.value, Sweep), at, ctx)]


def test_an_answer_refused_to_its_provider_suspended_is_made_once_by_the_decider(
        ctx: Context) -> None:
    """An answer its reader refused, its provider no active holder as of its broker time
    (Outcome.refused), was refused at once outside the decider, whatever its request's state: a
    copy of the answer relayed got a refusal and rejected@ beside answered@. The decider drops
    one to a request answered (a copy sent again at another offset too, as one relayed would
    be), and one judged already (its source); to a request pending (or held for it until it
    comes) or timed out, it is refused as linkage refused it, at its broker time, the request
    ended as one whose provider was suspended since its approval is, by its sweep."""
    refused = _refused_answer(ctx)
    answered_at = refused.answered_at
    resent = replace(refused, source="renkei.holder.town.out:1:9")
    sweep = NOW + timedelta(seconds=31)
    copies: list[tuple[list[decider.DecisionEvent], Outcome]] = [
        ([_pending(ctx), _answer()], resent), ([_pending(ctx), refused], _answer()),
        ([_pending(ctx), refused], refused)]
    for history, event in copies:
        decider_, partition = _owning(ctx, history)
        state = decider_.states[partition].get("r-1")
        assert decider_.handle(partition, event, sweep, ctx) == [], "dropped"
        assert decider_.states[partition].get("r-1") == state
    histories: list[list[decider.DecisionEvent]] = [
        [_pending(ctx)], [_pending(ctx), Sweep(sweep, ("r-1",))], []]
    for history in histories:
        decider_, partition = _owning(ctx, history)
        made = decider_.handle(partition, refused, sweep, ctx)
        if not history:
            assert made == [], "held"
            made = decider_.handle(partition, _pending(ctx), sweep, ctx)[2:]
        rejection, logged = CODEC.decode(made[0].value, Rejection), CODEC.decode(made[1].value,
                                                                                 AccessLogEvent)
        assert (made[0].topic, rejection.reason, rejection.rejected_at) == (
            topics.inbox("town"), "SUSPENDED", answered_at)
        assert (logged.event_id, logged.reason) == (f"r-1:rejected@{refused.source}", "SUSPENDED")
        assert decider_.handle(partition, resent, sweep, ctx)[0].topic == topics.inbox("town"), \
            "another answer refused: refused too"
        if len(history) != 2:  # pending: its relay from a view behind is a copy, dropped
            assert decider_.handle(partition, _answer(), sweep, ctx) == []
            town = replace(ctx.directory["town"], active=False, inactive_since=answered_at)
            ended = _swept(decider_, partition, sweep,
                           replace(ctx, directory={**ctx.directory, "town": town}))
            assert [(s.topic, s.topic == topics.AUDIT or CODEC.decode(s.value, Rejection).reason)
                    for s in ended] == [(topics.inbox("nenkin"), "SUSPENDED"),
                                        (topics.AUDIT, True)], "ended as before, once"
            assert decider_.states[partition].get("r-1") == _settled(TIMED_OUT)


def test_a_copy_of_an_answer_refused_is_dropped_whatever_its_request_became(
        ctx: Context) -> None:
    """An answer refused to its provider (its reader's view had read the provider's suspension,
    its request had timed out, or an owner relayed it to no one, its requester suspended), read
    again once its request had ended (after a kill, by a view behind or ahead), was refused to
    its provider again, and for another reason: refused SUSPENDED, then INVALID_TICKET, timed
    out first. The provider hears of one answer once: a copy of an answer refused (its source)
    is dropped whatever its request's state now, live and in a rebuild."""
    refused = _refused_answer(ctx)
    behind = replace(refused, refused=None)  # the same answer judged by a view behind
    late = NOW + timedelta(seconds=31)
    suspended = _suspended(ctx, "nenkin")
    owner, partition = _owning(ctx, [_pending(ctx)])
    recorded, = owner.handle(partition, behind, late, suspended)  # relayed to no one
    ended = CODEC.decode(recorded.value, Outcome)
    histories: list[list[decider.DecisionEvent]] = [
        [_pending(ctx), refused, Sweep(late, ("r-1",))],
        [_pending(ctx), Sweep(late, ("r-1",)), behind],
        [_pending(ctx), ended]]
    for history in histories:
        live, _ = _owning(ctx, history[:1])
        made = [s for event in history[1:] for s in live.handle(partition, event, late, ctx)]
        assert topics.inbox("town") in _topics(made), "the answer refused to its provider"
        rebuilt, _ = _owning(ctx, history)
        for decider_ in (live, rebuilt):
            state = decider_.states[partition].get("r-1")
            for copy in (refused, behind):
                assert decider_.handle(partition, copy, late, ctx) == [], "a copy: dropped"
            assert decider_.states[partition].get("r-1") == state


def test_every_answer_refused_to_a_request_pending_is_kept_and_a_copy_of_each_dropped(
        ctx: Context) -> None:
    """A request pending kept the first answer refused to its provider alone: a second one, its
    provider suspended too (the answer sent again at another offset after a restart), refused
    as well, then read again by a view that had not read the suspension, was relayed to the
    requester, the request answered (answered@ beside that answer's rejected@, its provider
    told it was not relayed). Every answer refused is kept with its request: a copy of each is
    dropped, live and in a rebuild, and the request ends once, at its sweep."""
    first = _refused_answer(ctx)
    second = replace(first, source="renkei.holder.town.out:1:9")
    late = NOW + timedelta(seconds=31)
    suspended = _suspended(ctx, "town")
    live, partition = _owning(ctx, [_pending(ctx)])
    for answer in (first, second):
        made = live.handle(partition, answer, NOW, ctx)
        assert (made[0].topic, CODEC.decode(made[0].value, Rejection).reason) == (
            topics.inbox("town"), "SUSPENDED")
    rebuilt, _ = _owning(ctx, [_pending(ctx), first, second])
    for decider_ in (live, rebuilt):
        for copy in (first, second):
            for judged in (copy, replace(copy, refused=None)):  # by a view behind: relayable
                assert decider_.handle(partition, judged, NOW, ctx) == [], "a copy: dropped"
        assert isinstance(decider_.states[partition].get("r-1"), RequestState), "pending"
        ended = _swept(decider_, partition, late, suspended)
        assert [(s.topic, s.topic == topics.AUDIT or CODEC.decode(s.value, Rejection).reason)
                for s in ended] == [(topics.inbox("nenkin"), "SUSPENDED"),
                                    (topics.AUDIT, True)], "ended once, at its sweep"
        assert decider_.handle(partition, replace(second, refused=None), late, ctx) == []


def test_an_answer_sent_again_after_one_refused_to_its_provider_is_refused_too(
        ctx: Context) -> None:
    """A request approved by a view behind while its provider was suspended had its answer
    refused to the provider, SUSPENDED, which logged it not provided; its query dispatched again
    (its Pending read again after a broker outage), the provider, resumed meanwhile, answered it
    again at another offset, active as of that answer's broker time, and that answer was relayed:
    the requester got the data its provider's log says was not provided (chaos crash --seconds
    120 --rate 20 --every 3 --suspend-every 6 --freeze-every 10 --seed 202: 9 requests FOUND,
    their provider's entry REJECTED: SUSPENDED). A request whose answer was refused to its
    provider no active holder ends unanswered, as its sweep ends it: a later answer to it is
    refused to its provider too, live and rebuilt, and the request times out once."""
    first = _refused_answer(ctx)
    again = replace(_answer(), source="renkei.holder.town.out:1:9",
                    deadline=_pending(ctx).deadline, answered_at=NOW + timedelta(seconds=20))
    late = NOW + timedelta(seconds=31)
    live, partition = _owning(ctx, [_pending(ctx)])
    live.handle(partition, first, NOW, ctx)
    rebuilt, _ = _owning(ctx, [_pending(ctx), first])
    for decider_ in (live, rebuilt):
        made = decider_.handle(partition, again, NOW + timedelta(seconds=20), ctx)
        assert [(s.topic, s.topic == topics.AUDIT or CODEC.decode(s.value, Rejection).reason)
                for s in made] == [(topics.inbox("town"), "INVALID_TICKET"),
                                   (topics.AUDIT, True)], "refused to its provider, not relayed"
        assert isinstance(decider_.states[partition].get("r-1"), RequestState), "pending"
        ended = _swept(decider_, partition, late, ctx)
        assert [(s.topic, s.topic == topics.AUDIT or CODEC.decode(s.value, LinkageAnswer).status)
                for s in ended] == [(topics.inbox("nenkin"), TIMED_OUT),
                                    (topics.AUDIT, True)], "timed out once, at its sweep"


def test_an_answer_recorded_before_its_request_settles_it_in_a_rebuild(ctx: Context) -> None:
    """An owner deciding at once writes a request's Pending after its query is acknowledged, so
    the provider's answer, written by another instance, can come first in the partition: a new
    owner rebuilding from it dropped the answer (no request known), took the request for pending,
    and timed it out at its deadline, a TIMED_OUT to the requester after its FOUND."""
    late = NOW + timedelta(minutes=1)
    decider_, partition = _owning(ctx, [_answer(), _pending(ctx)])
    assert _swept(decider_, partition, late, ctx) == [], "no timeout of an answered request"
    assert decider_.handle(partition, Sweep(late, ("r-1",)), late, ctx) == []
    assert decider_.states[partition].get("r-1") == _settled(ANSWERED)


def test_an_answer_recorded_before_its_request_is_relayed_when_the_request_comes(
        ctx: Context) -> None:
    """The owner deciding at once crashed after the query went out and before writing Pending:
    its successor rebuilds the answer alone, and the holder's message, read again, makes the
    Pending (and the query again, which the provider drops as a duplicate: no new answer). The
    answer held is relayed then, perhaps again: the requester and the audit log drop copies."""
    later = NOW + timedelta(seconds=12)
    for between in ([], [later]):  # the successor's sweeps may come before the request
        decider_, partition = _owning(ctx, [_answer()])
        for at in between:
            assert _swept(decider_, partition, at, ctx) == []
        made = decider_.handle(partition, _pending(ctx), later, ctx)
        assert _topics(made) == [topics.inbox("town"), topics.AUDIT, topics.inbox("nenkin"),
                                 topics.AUDIT], "dispatched, and the answer relayed"
        assert made[2].value == _answer().answer
        assert decider_.states[partition].get("r-1") == _settled(ANSWERED)
        assert _swept(decider_, partition, NOW + timedelta(minutes=1), ctx) == [], \
            "no timeout later"


def test_an_answer_read_live_before_a_request_decided_elsewhere_is_relayed(ctx: Context) -> None:
    """The old owner decided the request at once, its Pending written after the answer, and lost
    the partition before reading the answer: the new owner reads both on from the committed
    offset, the answer live and the Pending as decided elsewhere (its query sent, nothing to
    do): the answer is still to be relayed, and is, rather than settled unrelayed. So is one
    read as history: the owner that read it live may only have held it, committed past it and
    lost the partition before the request came."""
    decider_, partition = _owning(ctx, [])
    assert decider_.handle(partition, _answer(), NOW, ctx) == []
    made = decider_.handle(partition, _pending(ctx), NOW, ctx, effects=False)
    assert _topics(made) == [topics.inbox("nenkin"), topics.AUDIT], "relayed, not dispatched"
    assert made[0].value == _answer().answer
    rebuilt, _ = _owning(ctx, [_answer()])  # an owner that only held it lost the partition
    made = rebuilt.handle(partition, _pending(ctx), NOW, ctx, effects=False)
    assert _topics(made) == [topics.inbox("nenkin"), topics.AUDIT], \
        "an answer read as history is relayed too: the owner that read it may only have held it"
    assert _swept(rebuilt, partition, NOW + timedelta(minutes=1), ctx) == []


def test_an_answer_to_no_request_known_is_held_only_until_such_a_request_is_forgotten(
        ctx: Context) -> None:
    """An answer to a request never seen, or forgotten, is kept only until the request would be
    forgotten had it come at the first sweep after the answer: until any copy of it is stale.
    Then it was dropped unsaid, its provider's log saying FOUND for data relayed to no one: it
    is refused to the provider (INVALID_TICKET, its request never came), and so in the access
    log."""
    until = max(ctx.stale_from(NOW), NOW + ctx.answer_timeout)
    held, partition = _owning(ctx, [_answer(), Sweep(NOW, ()),
                                    Sweep(until - timedelta(seconds=1), ())])
    assert _topics(held.handle(partition, _pending(ctx), until, ctx)) == [
        topics.inbox("town"), topics.AUDIT, topics.inbox("nenkin"), topics.AUDIT], \
        "relayed while held"
    decider_, _ = _owning(ctx, [_answer()])
    sweep, = _sweeps(decider_, NOW, ctx)
    assert CODEC.decode(sweep.value, Sweep) == Sweep(NOW, ()), "a sweep times the answer held"
    assert decider_.handle(partition, Sweep(NOW, ()), NOW, ctx) == []
    assert _sweeps(decider_, until - timedelta(seconds=1), ctx) == []
    sweep, = _sweeps(decider_, until, ctx)
    refused, logged = decider_.handle(partition, CODEC.decode(sweep.value, Sweep), until, ctx)
    rejection = CODEC.decode(refused.value, Rejection)
    assert (refused.topic, logged.topic, rejection.request_id, rejection.reason) == (
        topics.inbox("town"), topics.AUDIT, "r-1", "INVALID_TICKET")
    assert replace(decider_.states[partition], forgotten_through=0) == decider.Partition(), \
        "nothing kept of it"
    made = decider_.handle(partition, _pending(ctx), until, ctx)
    assert _topics(made) == [topics.inbox("town"), topics.AUDIT], "dispatched only"


def test_an_answer_held_judged_by_two_views_is_refused_once_if_its_request_never_comes(
        ctx: Context) -> None:
    """An answer read before its request (held), judged by two instances, one whose view had
    read its provider's suspension and one whose view had not, was held twice, and, its request
    never come, refused to its provider twice, SUSPENDED and INVALID_TICKET. An answer is held
    once, as first judged: refused once, for that judgement's reason, live and in a rebuild."""
    refused = _refused_answer(ctx)
    behind = replace(refused, refused=None)
    until = max(ctx.stale_from(NOW), NOW + ctx.answer_timeout)
    for judgements, reason in (((refused, behind), "SUSPENDED"),
                               ((behind, refused), "INVALID_TICKET")):
        live, partition = _owning(ctx, [])
        for answer in judgements:
            assert live.handle(partition, answer, NOW, ctx) == [], "held"
        rebuilt, _ = _owning(ctx, list(judgements))
        for decider_ in (live, rebuilt):
            made = _swept(decider_, partition, NOW, ctx) + _swept(decider_, partition, until, ctx)
            assert [CODEC.decode(s.value, Rejection).reason for s in made
                    if s.topic == topics.inbox("town")] == [reason], "refused once"


def test_an_answer_to_a_holder_made_inactive_since_linkage_checked_it_is_not_relayed(
        ctx: Context) -> None:
    """Linkage checked that both parties were active holders (the provider alone now: the
    decider judges the requester, linkage._flaw) before the answer went to the decider, which
    relays it later (at once, or once its request comes if it was held): a requester marked
    inactive in the directory (or gone) in between was still answered. The relay asks the
    directory again: the answer is refused to its provider (SUSPENDED, or UNKNOWN_HOLDER for one
    not in the directory, its request's TIMED_OUT logged with the same), which logs it not
    provided, and the request is settled, never answered or timed out later, and logged
    TIMED_OUT under what its copies share, as its approval is (copies_name, _its_trail): a
    decision recorded in the decider's topic first and made as it is read back, the directory as
    it is then asked no more. A suspended requester was told nothing, its request left sent for
    good: it is refused as at approval (SUSPENDED, since when), no data, by that decision, once,
    whichever owner reads it; one not in the directory (its inbox perhaps gone) is told nothing.
    A provider made inactive in between answered while active: its requester is answered."""
    town, nenkin = ctx.directory["town"], ctx.directory["nenkin"]
    since = NOW - timedelta(seconds=1)
    for directory, relayed, reason in (
            ({"town": town, "nenkin": replace(nenkin, active=False, inactive_since=since)}, False,
             "SUSPENDED"),
            ({"town": town}, False, "UNKNOWN_HOLDER"),
            ({"town": replace(town, active=False), "nenkin": nenkin}, True, None)):
        gone = replace(ctx, directory=directory)
        live, partition = _owning(ctx, [_pending(ctx)])
        held, _ = _owning(ctx, [_answer()])
        made = (live.handle(partition, _answer(), NOW, gone),
                held.handle(partition, _pending(ctx), NOW, gone)[2:])  # after its dispatch
        for effects, decider_ in zip(made, (live, held), strict=True):
            if relayed:
                assert decider_.states[partition].get("r-1") == _settled(ANSWERED)
                told, logged = effects
                assert (told.topic, logged.topic) == (topics.inbox("nenkin"), topics.AUDIT)
                assert CODEC.decode(told.value, LinkageAnswer).status == "FOUND"
                continue
            recorded, = effects
            assert (recorded.topic, recorded.partition) == (decider.DECISIONS, partition)
            ended = CODEC.decode(recorded.value, Outcome)
            told, logged, *suspended, closed = decider_.handle(partition, ended, NOW + timedelta(
                seconds=1), ctx)  # nenkin active: that decision is made as it was recorded
            assert decider_.states[partition].get("r-1") == _settled(TIMED_OUT)
            assert decider_.handle(partition, ended, NOW, ctx) == [], "made once"
            _told_if_suspended(suspended, reason, since)
            assert _swept(decider_, partition, NOW + timedelta(minutes=1), ctx) == []
            rejection = CODEC.decode(told.value, Rejection)
            event = CODEC.decode(logged.value, AccessLogEvent)
            assert (told.topic, rejection.reason, logged.topic, event.reason) == (
                topics.inbox("town"), reason, topics.AUDIT, reason)
            assert rejection.detail == ("nenkin is no longer an active holder in the "
                                        "directory: the answer was relayed to no one")
            closing = CODEC.decode(closed.value, AccessLogEvent)
            assert (closed.topic, closing.event_id, closing.outcome, closing.reason) == (
                topics.AUDIT, f"r-1:answered@{decider.copies_name(SOURCE, DIGEST)}", TIMED_OUT,
                reason)


def _told_if_suspended(told: list[Send], reason: str | None, since: datetime,
                       at: datetime = NOW) -> None:
    """What r-1's requester nenkin is told as its answer is relayed to no one or its deadline
    passes: suspended since `since` (`reason`), refused as at approval, `at`, no data; not in
    the directory, nothing."""
    if reason == "UNKNOWN_HOLDER":
        assert told == []
        return
    refused, = told
    assert (refused.topic, refused.key) == (topics.inbox("nenkin"), "r-1")
    assert CODEC.decode(refused.value, Rejection) == Rejection(
        "r-1", "SUSPENDED", f"the requester is suspended since {since.isoformat()}: not an "
        "active holder in the directory", at)


@pytest.mark.parametrize("requester", ["still inactive", "made active again"])
async def test_a_request_whose_answer_is_relayed_to_no_one_ends_its_trail_timed_out_once(
        broker: Cluster, ctx: Context, tmp_path: Path, requester: str) -> None:
    """A request whose answer the relay refused to a requester made inactive since linkage
    checked it was settled with nothing logged under it after its approval (the refusal is
    under the answer's source), so an auditor replaying its trail, or the resident, saw it never
    end. Through the real broker into an audit store, as the audit consumer appends it: it ends
    TIMED_OUT, as one whose answer linkage refused does at its deadline, once, also when its
    owner crashed once it refused the answer (what it handled before committed) and another,
    rebuilt, reads on. The requester made active again meanwhile was relayed the answer by the
    next owner, which asked the directory anew, though the access log kept the first owner's
    TIMED_OUT: the refusal is a decision recorded in the topic, which the next owner makes
    again as it was made, and the requester is told nothing, as the access log says."""
    gone = replace(ctx, directory={"town": ctx.directory["town"]})
    back = gone if requester == "still inactive" else ctx
    live, partition = _owning(ctx, [])
    events: list[decider.DecisionEvent] = [_pending(ctx), _answer()]
    made: list[Send] = []
    handled = 0
    while not any(CODEC.name_of(m.value) == Rejection.__name__ for m in made):
        effects = live.handle(partition, events[handled], NOW, gone)
        events += [CODEC.decode(e.value, Outcome) for e in effects if e.topic == decider.DECISIONS]
        made += [e for e in effects if e.topic != decider.DECISIONS]
        handled += 1
    replaying, _ = _owning(ctx, events[:handled - 1])  # committed: what came before the refusal
    for event in events[handled - 1:]:
        made += replaying.handle(partition, event, NOW + timedelta(seconds=1), back)
    copies, answer_source = decider.copies_name(SOURCE, DIGEST), _answer().source
    assert topics.inbox("nenkin") not in _topics(made), "the requester is told nothing"
    assert await _its_trail(made, tmp_path) == [
        ("approved", copies, "APPROVED"), ("rejected", answer_source, "REJECTED"),
        ("answered", copies, TIMED_OUT)]


async def _its_trail(made: list[Send], tmp_path: Path) -> list[tuple[str, str, str]]:
    """The access-log events among `made`, through a topic of their own on the real broker into
    a fresh audit store: r-1's steps there, in order, each with what it names after its '@'
    (the holder message: its source, or the digest copies of it share) and its outcome."""
    own, admin = f"{topics.AUDIT}.own-{uuid.uuid4().hex[:8]}", admin_client()
    admin.create_topics([NewTopic(own, 1, 1)])[own].result(30)
    try:
        access = KafkaAccess.of(config.ADMIN)
        async with producer(access) as prod:
            for logged in made:
                if logged.topic == topics.AUDIT:
                    await prod.send_and_wait(own, logged.value)
        records = await read_topic(access, own)
    finally:
        admin.delete_topics([own])[own].result(30)
    with AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        store.append_many(read_audit(records))
        return [(step_of(e.event), e.event.event_id.split("@", 1)[1], e.event.outcome)
                for e in store.query(Query()).entries if e.event.request_id == "r-1"]


def test_an_answer_held_is_relayed_only_if_it_is_of_the_exchange_of_its_request(
        ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    """The checks an answer to a pending request passes apply to one held until its request:
    it must be readable and of the same provider, pattern and data type; another held under
    the same id may still be the right one, as it would be if the request had come first. One
    that cannot be read was dropped unsaid: it is refused to the provider whose outbox it came
    from (INTERNAL_ERROR: the platform made it), which logs it not provided; one of another
    exchange, dropped unsaid too, is refused to its provider (INVALID_TICKET)."""
    unreadable = replace(_answer(), source="renkei.holder.town.out:1:4", answer=b"not an answer")
    other = _answer(provider="nenkin")
    decider_, partition = _owning(ctx, [unreadable, other, _answer()])
    made = decider_.handle(partition, _pending(ctx), NOW, ctx)
    assert _topics(made) == [topics.inbox("town"), topics.AUDIT, topics.inbox("town"),
                             topics.AUDIT, topics.inbox("nenkin"), topics.AUDIT,
                             topics.inbox("nenkin"), topics.AUDIT]
    rejections = [CODEC.decode(made[i].value, Rejection) for i in (2, 4)]
    assert [(r.request_id, r.reason) for r in rejections] == [("r-1", "INTERNAL_ERROR"),
                                                               ("r-1", "INVALID_TICKET")]
    assert made[6].value == _answer().answer, "the answer of this exchange, not the other"
    assert "cannot be read" in caplog.text and "of another exchange" in caplog.text
    wrong, _ = _owning(ctx, [unreadable, other])
    made = wrong.handle(partition, _pending(ctx), NOW, ctx)
    assert _topics(made) == [topics.inbox("town"), topics.AUDIT, topics.inbox("town"),
                             topics.AUDIT, topics.inbox("nenkin"), topics.AUDIT], (
        "dispatched, the unreadable and the other refused, nothing relayed")
    assert isinstance(wrong.states[partition].get("r-1"), RequestState), "still pending"
    assert replace(wrong.states[partition], refused={}) == _owning(
        ctx, [_pending(ctx)])[0].states[partition], "the answers refused are kept, no more"
    assert _topics(wrong.handle(partition, _answer(), NOW, ctx)) == [
        topics.inbox("nenkin"), topics.AUDIT], "the right answer, when it comes, is relayed"


def test_a_binding_answered_again_otherwise_across_a_take_over_is_dropped(ctx: Context) -> None:
    """The registry's first answer to a look-up, decided before a crash, stands for the owner
    rebuilding the partition: an answer given again otherwise is dropped, a replay of the first
    relayed again (holders and the audit log drop the copies), and both forgotten in time."""
    first = RegistryAnswer("r-1", "town", NOT_FOUND, "", (), f"{topics.outbox('town')}:0:3", NOW)
    rebuilt, partition = _owning(ctx, [first])
    other = replace(first, status=REFUSED, detail="withdrawn")
    assert rebuilt.handle(partition, other, NOW, ctx) == []
    again = rebuilt.handle(partition, first, NOW, ctx)
    assert [CODEC.decode(s.value, BindingAnswer).status for s in again
            if s.topic == topics.inbox("town")] == [NOT_FOUND]
    later = NOW + timedelta(days=1)
    rebuilt.read(partition, later, ctx)
    rebuilt.handle(partition, Sweep(later, ()), later, ctx)
    assert (rebuilt.states[partition].bound, rebuilt.states[partition].forgetting) == ({}, {})
    assert rebuilt.handle(partition, other, later, ctx) == []  # may be forgotten: not the first


def test_a_registry_answering_again_after_a_restart_is_no_warning(
        ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    """A registry restarted answers its look-ups again, its candidates sealed anew: the first
    answer stands, the other dropped in an INFO line; one from another holder message under the
    request's id is still a WARNING."""
    first = RegistryAnswer("r-1", "town", NOT_FOUND, "", (), f"{topics.outbox('town')}:0:3", NOW)
    rebuilt, partition = _owning(ctx, [first])
    with caplog.at_level("INFO", logger=decider.__name__):
        assert rebuilt.handle(partition, replace(first, detail="sealed anew"), NOW, ctx) == []
        assert [r.levelname for r in caplog.records] == ["INFO"]
        assert "answered it again otherwise" in caplog.text
        caplog.clear()
        stranger = replace(first, source=f"{topics.outbox('town')}:0:4")
        assert rebuilt.handle(partition, stranger, NOW, ctx) == []
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "not of the request answered under its id" in caplog.text


def _binding(ctx: Context) -> Pending:
    """nenkin's binding request, its look-up for the registry."""
    return Pending("r-1", SOURCE, "nenkin", "registry", "", "", "", "", NOW + ctx.answer_timeout,
                   b"encoded look-up", DIGEST, "BINDING")


def test_a_binding_the_registry_never_answers_is_refused_timed_out_once(ctx: Context) -> None:
    """Its look-up sent to the registry, nothing logged yet; at its deadline the holder is
    answered TIMED_OUT, no candidates, and the binding logged so, once; an answer after it is
    dropped (the holder was told), as is one to a binding answered already, otherwise."""
    decider_, partition = _owning(ctx, [])
    assert _topics(decider_.handle(partition, _binding(ctx), NOW, ctx)) == [topics.REGISTRY_IN]
    later = NOW + ctx.answer_timeout
    made = _swept(decider_, partition, later, ctx)
    assert _topics(made) == [topics.inbox("nenkin"), topics.AUDIT]
    told, event = CODEC.decode(made[0].value, BindingAnswer), CODEC.decode(made[1].value,
                                                                           AccessLogEvent)
    assert (told.request_id, told.status, told.candidates) == ("r-1", TIMED_OUT, ())
    assert (event.kind, event.outcome, event.requester) == ("BINDING", TIMED_OUT, "nenkin")
    assert _swept(decider_, partition, later + timedelta(seconds=1), ctx) == []
    answer = RegistryAnswer("r-1", "nenkin", NOT_FOUND, "", (), SOURCE, NOW)
    assert decider_.handle(partition, answer, later, ctx) == []
    answered, _ = _owning(ctx, [_binding(ctx), answer])
    assert answered.handle(partition, replace(answer, status=REFUSED), later, ctx) == []
    assert _swept(answered, partition, later, ctx) == []


def test_a_bindings_answer_in_time_or_before_its_request_is_relayed_once(ctx: Context) -> None:
    """The registry's answer to a pending binding is relayed and settles it; one read before
    its request's event (written after the look-up was acknowledged) too, that event then
    sending no look-up again."""
    answer = RegistryAnswer("r-1", "nenkin", NOT_FOUND, "", (), SOURCE, NOW)
    for first, then in ((_binding(ctx), answer), (answer, _binding(ctx))):
        decider_, partition = _owning(ctx, [first])
        made = decider_.handle(partition, then, NOW, ctx)
        assert ([CODEC.decode(s.value, BindingAnswer).status for s in made
                 if s.topic == topics.inbox("nenkin")] == ([NOT_FOUND] if then is answer else []))
        assert decider_.states[partition].get("r-1") == decider.Settled(
            ANSWERED, decider.fingerprint(SOURCE), DIGEST)
        assert _swept(decider_, partition, NOW + ctx.answer_timeout, ctx) == []


def test_a_bindings_answer_to_a_holder_made_inactive_since_approval_is_not_relayed(
        ctx: Context) -> None:
    """The registry's answer to a binding was relayed to any requester still in the directory,
    one suspended since its binding was approved (the platform's view of the directory then
    behind) too: its candidates' link codes, logged answered. Judged as of the answer's broker
    time, as a linkage answer is, it is relayed to no one, a decision recorded in the decider's
    topic first and made as it is read back (the requester active again by then), once: the
    binding logged TIMED_OUT for why (SUSPENDED, or UNKNOWN_HOLDER for one not in the
    directory), a suspended requester refused as at approval (SUSPENDED, since when), no data,
    one not in the directory told nothing, the registry nothing; its request pending or come
    after it. The answer given again later is not relayed either, nor, once the first was
    relayed, to a requester suspended since."""
    since = NOW - timedelta(seconds=1)
    later = NOW + timedelta(seconds=1)
    answer = RegistryAnswer("r-1", "nenkin", NOT_FOUND, "", (), SOURCE, NOW, NOW)
    suspended = {**ctx.directory, "nenkin": replace(ctx.directory["nenkin"], active=False,
                                                    inactive_since=since)}
    for directory, reason in ((suspended, "SUSPENDED"),
                              ({"town": ctx.directory["town"]}, "UNKNOWN_HOLDER")):
        gone = replace(ctx, directory=directory)
        histories: list[tuple[list[decider.DecisionEvent], int]] = [([_binding(ctx)], DIGEST),
                                                                     ([], 0)]
        for history, digest in histories:
            decider_, partition = _owning(ctx, history)
            recorded, = decider_.handle(partition, answer, NOW, gone)
            assert (recorded.topic, recorded.partition) == (decider.DECISIONS, partition)
            ended = CODEC.decode(recorded.value, Outcome)
            *told, logged = decider_.handle(partition, ended, later, ctx)  # nenkin active
            assert decider_.states[partition].get("r-1") == decider.Settled(
                TIMED_OUT, decider.fingerprint(SOURCE), digest)
            assert decider_.handle(partition, ended, later, ctx) == [], "made once"
            event = CODEC.decode(logged.value, AccessLogEvent)
            assert (logged.topic, event.kind, event.outcome, event.reason, event.requester) == (
                topics.AUDIT, "BINDING", TIMED_OUT, reason, "nenkin")
            _told_if_suspended(told, reason, since)
            assert _swept(decider_, partition, NOW + ctx.answer_timeout, ctx) == []
            assert decider_.handle(partition, replace(answer, answered_at=later), later,
                                   ctx) == [], "given again: dropped, its request timed out"
        answered, partition = _owning(ctx, [_binding(ctx), answer])  # relayed, nenkin active
        assert answered.handle(partition, replace(answer, answered_at=later), later, gone) == []
        assert answered.states[partition].get("r-1") == _settled(ANSWERED)


def test_a_decision_held_for_a_request_before_a_rebuilds_history_is_made_as_recorded(
        ctx: Context) -> None:
    """An answer relayed to no one, its requester suspended since approval, is a decision
    recorded in the decider's topic after the answer's record (on_ended): an owner whose rebuilt
    history begins between the two knows no request and holds that decision, as it holds an
    answer before its request, and its request never comes. Forgotten, it was refused as an
    answer to no request: the binding's (which carries no answer) as unreadable, INTERNAL_ERROR
    to its requester and an ANSWER in the access log under the requester's message, the
    linkage's INVALID_TICKET to its provider, refused SUSPENDED already: a second, wrong ending.
    It is made as recorded, by whichever owner reads it (the owner holding it before may have
    made nothing): the same effects, copies the requester, provider and audit log drop."""
    since = NOW - timedelta(seconds=1)
    gone = replace(ctx, directory={**ctx.directory, "nenkin": replace(
        ctx.directory["nenkin"], active=False, inactive_since=since)})
    until = max(ctx.stale_from(NOW), NOW + ctx.answer_timeout)
    bound = RegistryAnswer("r-1", "nenkin", NOT_FOUND, "", (), SOURCE, NOW, NOW)
    for request, answer in ((_binding(ctx), bound), (_pending(ctx), _answer())):
        owner, partition = _owning(ctx, [request])
        recorded, = owner.handle(partition, answer, NOW, gone)
        ended = CODEC.decode(recorded.value, Outcome)
        made = owner.handle(partition, ended, NOW, ctx)  # the decision, as read back
        assert _topics(made)[-2:] == [topics.inbox("nenkin"), topics.AUDIT], "told, TIMED_OUT"
        successor, _ = _owning(ctx, [ended])  # its history begins after the answer's record
        assert _swept(successor, partition, NOW, ctx) == []
        assert _swept(successor, partition, until, ctx) == made, "made as recorded, once more"
        assert replace(successor.states[partition], forgotten_through=0) == decider.Partition()


def test_an_answer_to_a_request_before_a_rebuilds_history_is_held_but_never_refused(
        ctx: Context) -> None:
    """A request's Pending recorded just before the history a new owner rebuilds (read back from
    its last record), its answer, relayed by the last owner, recorded in it: the new owner knew no
    request and held the answer, and at a sweep once that request would have been forgotten
    refused it to its provider as one to no request (INVALID_TICKET), the provider's log then
    saying not provided of data its requester has, the access log a refusal of it. An answer whose
    ticket's request came before the history began (a clock skew's margin after) may have been
    decided by an owner that knew the request: held as one before its request is, relayed if the
    request comes, else forgotten unsaid; one whose request came after is refused as before."""
    since = NOW + timedelta(seconds=1)  # the history begins just after the Pending's record
    partition = decider.partition_of("r-1")
    for received, refused in ((NOW, []), (since + ctx.clock_skew, ["INVALID_TICKET"])):
        request = _pending(ctx, received=received)
        answered = received + timedelta(seconds=2)
        answer = replace(_answer(), deadline=request.deadline, answered_at=answered)
        owners = [decider.Decider(), decider.Decider()]
        for owner in owners:
            owner.rebuild(partition, [decider.DecisionRecord(answered, [answer])], ctx, since)
        later, comes = owners
        made = comes.handle(partition, request, answered, ctx)
        assert _topics(made) == [topics.inbox("town"), topics.AUDIT, topics.inbox("nenkin"),
                                 topics.AUDIT], "held: relayed as its request comes"
        told = [s for minutes in range(6) for s in _swept(
            later, partition, answered + timedelta(minutes=minutes), ctx)]
        assert [CODEC.decode(s.value, Rejection).reason for s in told
                if s.topic == topics.inbox("town")] == refused, f"received {received}"
        assert later.states[partition].held == {}, "forgotten"


def test_a_rebuild_reads_back_the_answer_recorded_before_its_history_to_a_request_in_it(
        ctx: Context) -> None:
    """An answer recorded just before the history a new owner rebuilds, its request's Pending
    just after (written once its query was acknowledged, the answer landing first): rebuilt
    pending, the request was timed out after its answer was relayed, a TIMED_OUT to its
    requester after its FOUND and a second answered@ event. The history is read back, from a
    clock skew before its request came, for the answers to it, held until its Pending; a
    request received a clock skew after the history began needs none, nor one refused stale;
    another request read back is not taken as pending."""
    since = NOW + timedelta(seconds=3)  # just after the answer, before the Pending
    request = _pending(ctx)
    stale = _pending(ctx, request_id="r-22", received=NOW - timedelta(hours=1))
    later = _pending(ctx, request_id="r-29", received=since + ctx.clock_skew)
    answer = replace(_answer(), deadline=request.deadline, answered_at=NOW + timedelta(seconds=2))
    history = [decider.DecisionRecord(NOW + timedelta(seconds=4), [request, stale, later])]
    back = decider.read_back(history, since, ctx)
    assert back == decider.ReadBack(frozenset({"r-1"}), NOW - ctx.clock_skew)
    other = _pending(ctx, "renkei.holder.nenkin.out:0:1", "r-15")  # r-1's partition
    earlier = [decider.DecisionRecord(NOW - timedelta(seconds=1), [other]),
               decider.DecisionRecord(NOW + timedelta(seconds=2),
                                      [answer, replace(answer, request_id="r-36")])]
    partition = decider.partition_of("r-1")
    owner = decider.Decider()
    owner.keep_only({partition})
    owner.rebuild(partition, decider.answers_to(earlier, back.requests) + history, ctx, since)
    assert set(owner.states[partition].pending) == {"r-29"}
    made = _swept(owner, partition, request.deadline + timedelta(seconds=1), ctx)
    assert [CODEC.decode(s.value, LinkageAnswer).request_id for s in made
            if s.topic == topics.inbox("nenkin")] == [], "r-1 answered: not timed out"


def test_a_copy_of_a_binding_answered_before_its_request_is_refused_to_its_holder_alone(
        ctx: Context) -> None:
    """The registry's answer read before its request's event (a take-over's history, the event
    written once the look-up was acknowledged) settles it knowing no digest; the event read after
    it tells it, so the holder's copy sent again at another offset is refused to it alone, nothing
    in the audit log, as when the request came first; another request under its id is logged."""
    answer = RegistryAnswer("r-1", "nenkin", NOT_FOUND, "", (), SOURCE, NOW)
    copy = replace(_binding(ctx), source="renkei.holder.nenkin.out:0:8")
    other = replace(copy, digest=decider.message_digest(DIGEST_KEY, "nenkin", b"other bytes"))
    histories: list[list[decider.DecisionEvent]] = [[_binding(ctx), answer],
                                                    [answer, _binding(ctx)]]
    for history in histories:
        decider_, partition = _owning(ctx, history)
        refused, = decider_.handle(partition, copy, NOW, ctx)
        assert (refused.topic, CODEC.decode(refused.value, Rejection).reason) == (
            topics.inbox("nenkin"), "DUPLICATE_REQUEST")
        assert _topics(decider_.handle(partition, other, NOW, ctx)) == [
            topics.inbox("nenkin"), topics.AUDIT]


def test_every_event_of_a_binding_names_no_provider(ctx: Context) -> None:
    """Answered, timed out or refused as a duplicate, a binding's access-log events name no
    provider: the registry or authority it asks is no holder (no holder-side log to ask for it),
    and an answer read before its request's event cannot tell which of them was asked."""
    def events(made: list[Send]) -> list[AccessLogEvent]:
        return [CODEC.decode(s.value, AccessLogEvent) for s in made if s.topic == topics.AUDIT]

    by_number = replace(_binding(ctx), provider=acls.AUTHORITY)
    decider_, partition = _owning(ctx, [])
    assert _topics(decider_.handle(partition, by_number, NOW, ctx)) == [topics.AUTHORITY_IN]
    other = replace(by_number, source="renkei.holder.nenkin.out:0:8",
                    digest=decider.message_digest(DIGEST_KEY, "nenkin", b"other bytes"))
    logged = events(decider_.handle(partition, other, NOW, ctx))
    logged += events(_swept(decider_, partition, NOW + ctx.answer_timeout, ctx))
    answered, _ = _owning(ctx, [by_number])
    logged += events(answered.handle(partition, RegistryAnswer(
        "r-1", "nenkin", NOT_FOUND, "", (), SOURCE, NOW), NOW, ctx))
    assert [(e.kind, e.outcome, e.provider) for e in logged] == [
        ("BINDING", "REJECTED", None), ("BINDING", TIMED_OUT, None), ("BINDING", NOT_FOUND, None)]
