"""The chaos runs' verdicts, fed made-up data (no broker): every request a requester recorded is
judged, once per audit step, with both holders' logs; every job the load offered is accounted
for; a process that died by itself or a traceback fails the run."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from audit.events import ANSWER, AccessLogEvent
from audit.heads import Signer
from audit.store import AuditStore
from audit.store import default_path as audit_path
from holders.server import Address
from holders.store import HolderStore, default_path
from processors import decider
from processors.rejection import reject
from renkei import chaos_check, chaos_cli, crash_cli, exchanges
from renkei import crash_chaos as crash_run
from renkei.broker_chaos import BrokerChaos
from renkei.chaos_check import (
    Asked,
    Binding,
    Checked,
    Logged,
    asked_since,
    bindings_since,
    check,
    checked,
    holder_stores,
)
from renkei.crash_chaos import ASKS_AGAIN, NOT_ACCEPTED, CrashChaos, Load
from renkei.misbinding import Result, Tally
from renkei.state import state_folder
from schemas.codec import CODEC

RIGHT = [("approved", "APPROVED"), ("answered", "FOUND")]


def logged(audit: dict[str, list[tuple[str, str]]], requester: dict[str, int] | None = None,
           provider: dict[str, int] | None = None) -> Logged:
    """Each request in `audit` logged once by both holders unless said otherwise."""
    return Logged(Counter(requester if requester is not None else dict.fromkeys(audit, 1)),
                  Counter(provider if provider is not None else dict.fromkeys(audit, 1)),
                  audit)


def test_a_request_answered_logged_and_audited_once_passes() -> None:
    verdict = check([Asked("r1", "FOUND"), Asked("r2", "NOT_FOUND")], logged(
        {"r1": RIGHT, "r2": [("approved", "APPROVED"), ("answered", "NOT_FOUND")]}))
    assert verdict.exactly_once and not verdict.failing_request_ids
    assert verdict.audit_steps_per_request == {"approved+answered": 2}
    assert verdict.answered == {"FOUND": 1, "NOT_FOUND": 1}


def test_an_approval_and_a_rejection_are_not_an_answer() -> None:
    verdict = check([Asked("r1", "FOUND")], logged(
        {"r1": [("approved", "APPROVED"), ("rejected@platform", "REJECTED")]}))
    assert verdict.failing_request_ids == {"audit_not_as_answered": ["r1"]}
    assert not verdict.exactly_once


def test_a_step_audited_twice_or_missing_fails() -> None:
    verdict = check([Asked("r1", "FOUND"), Asked("r2", "FOUND")], logged(
        {"r1": [*RIGHT, ("approved", "APPROVED")], "r2": RIGHT[:1]}))
    assert verdict.failing_request_ids == {"audit_not_as_answered": ["r1", "r2"]}
    assert verdict.audit_steps_per_request == {"approved": 1, "approved+answered+approved": 1}


def test_the_audited_outcome_must_be_the_one_the_requester_got() -> None:
    verdict = check([Asked("r1", "NOT_FOUND")], logged({"r1": RIGHT}))
    assert verdict.failing_request_ids == {"audit_not_as_answered": ["r1"]}


def test_a_lawful_request_rejected_fails() -> None:
    verdict = check([Asked("r1", "REJECTED")], logged(
        {"r1": [("rejected@platform", "REJECTED")]}, provider={}))
    assert verdict.failing_request_ids == {"rejected": ["r1"]} and verdict.rejected == 1


def test_a_provider_answer_its_provider_did_not_log_fails() -> None:
    verdict = check([Asked("r1", "FOUND"), Asked("r2", "FOUND")],
                    logged({"r1": RIGHT, "r2": RIGHT}, provider={"r2": 2}))
    assert verdict.failing_request_ids == {"provider_log_not_once": ["r1", "r2"]}


def test_a_timeout_needs_no_provider_log_but_one_answered_step() -> None:
    timed_out = [("approved", "APPROVED"), ("answered", "TIMED_OUT")]
    verdict = check([Asked("r1", "TIMED_OUT")], logged({"r1": timed_out}, provider={}))
    assert verdict.exactly_once


def late_refusal(offset: int) -> tuple[str, str]:
    """A late answer's refusal, as the platform audits it (processors.decider._refused_answer),
    of the copy at `offset` of its provider's outbox."""
    late = reject("p", "r", "INVALID_TICKET", f"{decider.TIMED_OUT_FIRST}: relayed to no one",
                  datetime.now(UTC), f"renkei.outbox.p:0:{offset}", ANSWER)[1].value
    return chaos_check.audited_step(CODEC.decode(late, AccessLogEvent))


def test_a_timeout_may_have_its_late_answer_refused_once_but_not_twice_nor_answered() -> None:
    """The refusal before or after the timeout; the same one twice, an answer after it or a
    request's refusal under its id fails."""
    refused = late_refusal(7)
    assert refused == ("rejected@renkei.outbox.p:0:7", "INVALID_TICKET")
    approved, timed_out = ("approved", "APPROVED"), ("answered", "TIMED_OUT")
    audit = {"late": [approved, timed_out, refused], "early": [approved, refused, timed_out],
             "twice": [approved, timed_out, refused, refused],
             "answered": [approved, timed_out, refused, ("answered", "FOUND")],
             "copy": [approved, timed_out, ("rejected", "DUPLICATE_REQUEST")]}
    verdict = check([Asked(r, "TIMED_OUT") for r in audit], logged(audit))
    assert verdict.failing_request_ids == {"audit_not_as_answered": ["twice", "answered", "copy"]}


def test_a_late_answer_sent_again_after_a_crash_is_refused_once_a_copy() -> None:
    """A provider killed after it sent its late answer sends it again as it starts: each copy is
    refused under its own source (two audit events), and the request stands; a refusal of one
    copy twice, or its requester answered twice, does not."""
    approved, timed_out = ("approved@d", "APPROVED"), ("answered@d", "TIMED_OUT")
    audit = {"copies": [approved, timed_out, late_refusal(7), late_refusal(9)],
             "doubled": [approved, timed_out, late_refusal(7), late_refusal(9), late_refusal(9)],
             "answered twice": [approved, timed_out, late_refusal(7), ("answered@e", "TIMED_OUT")]}
    verdict = check([Asked(r, "TIMED_OUT") for r in audit], logged(audit, provider={}))
    assert verdict.failing_request_ids == {"audit_not_as_answered": ["doubled", "answered twice"]}
    assert verdict.audit_steps_per_request == {
        "approved+answered+rejected+rejected": 1, "approved+answered+rejected+rejected+rejected": 1,
        "approved+answered+rejected+answered": 1}
    again = check([Asked("r1", "TIMED_OUT")], logged({"r1": audit["copies"]}, {"r1": 2}, {}))
    assert again.failing_request_ids == {"requester_log_not_once": ["r1"]}


def test_an_answer_in_time_sent_again_past_the_deadline_has_its_copy_refused_once() -> None:
    """A provider killed after it sent its answer in time sends it again as it starts, the copy
    past the ticket's deadline: the platform refuses the copy (its own source) and the request
    stands FOUND; the same refusal twice, a second answer or a request's refusal still fails."""
    audit = {"copy": [*RIGHT, late_refusal(9)],
             "copies": [*RIGHT, late_refusal(9), late_refusal(11)],
             "twice": [*RIGHT, late_refusal(9), late_refusal(9)],
             "answered twice": [*RIGHT, late_refusal(9), ("answered@e", "FOUND")],
             "refused": [*RIGHT, ("rejected", "DUPLICATE_REQUEST")]}
    verdict = check([Asked(r, "FOUND") for r in audit], logged(audit))
    assert verdict.failing_request_ids == {
        "audit_not_as_answered": ["twice", "answered twice", "refused"]}


def test_an_unanswered_request_is_lost_and_not_logged_by_its_requester() -> None:
    verdict = check([Asked("r1", "SENT"), Asked("r2", "FOUND")],
                    logged({"r2": RIGHT}, requester={"r2": 2}))
    assert verdict.failing_request_ids == {"lost": ["r1"], "requester_log_not_once": ["r2"]}
    assert verdict.lost == 1


def test_no_request_at_all_is_no_proof() -> None:
    assert not check([], Logged()).exactly_once


def binding_event(person: str) -> tuple[str, str]:
    return (f"binding:{person}", "FOUND")


def test_a_binding_answered_audited_and_looked_up_once_passes() -> None:
    """By personal number its look-up is logged once by the authority; by the four attributes
    the authority never saw it; a binding with two candidates is audited once for each."""
    bindings = [Binding("b1", "BOUND", by_number=True),
                Binding("b2", "INVESTIGATING", by_number=False)]
    audit = {"r1": RIGHT, "b1": [binding_event("p1")],
             "b2": [binding_event("p1"), binding_event("p2")]}
    verdict = check([Asked("r1", "FOUND")], replace(logged(audit), lookups=Counter({"b1": 1})),
                    bindings)
    assert verdict.exactly_once and not verdict.failing_request_ids
    assert (verdict.requests, verdict.bindings, verdict.bindings_by_number) == (1, 2, 1)
    assert verdict.bindings_answered == {"BOUND": 1, "INVESTIGATING": 1}
    assert "bindings the holders recorded: 2 (1 by personal number); answered BOUND 1, " \
           "INVESTIGATING 1; lost 0" in "\n".join(verdict.lines())


def test_a_binding_lost_refused_audited_twice_or_looked_up_other_than_once_fails() -> None:
    bindings = [Binding("lost", "SENT", True), Binding("refused", "REJECTED", False),
                Binding("twice", "BOUND", False), Binding("none", "BOUND", False),
                Binding("linkage", "BOUND", False), Binding("unlogged", "BOUND", True),
                Binding("relogged", "INVESTIGATING", True), Binding("seen", "BOUND", False)]
    once = [binding_event("p1")]
    audit = {"twice": [*once, *once], "none": [], "linkage": RIGHT, "unlogged": once,
             "relogged": once, "seen": once}
    verdict = check([], Logged(audit=audit, lookups=Counter({"relogged": 2, "seen": 1})),
                    bindings)
    assert verdict.failing_request_ids == {
        "bindings_lost": ["lost"], "bindings_refused": ["refused"],
        "binding_audit_not_once": ["twice", "none", "linkage"],
        "lookup_not_once": ["unlogged", "relogged", "seen"]}
    assert (verdict.bindings_lost, verdict.bindings_refused, verdict.binding_audit_not_once,
            verdict.lookup_not_once) == (1, 1, 3, 3)
    assert not verdict.exactly_once


def test_a_binding_timed_out_its_look_up_late_after_a_kill_is_audited_by_its_timeout() -> None:
    """The registry killed with a look-up, back too late: the platform answers the binding
    TIMED_OUT (its holder investigates), audited so, and drops the registry's late answer; a
    binding BOUND on a timeout, or with a binding event too, or timed out twice, fails."""
    timed_out, again = ("answered@s", "TIMED_OUT"), ("answered@t", "TIMED_OUT")
    bindings = [Binding("slow", "INVESTIGATING", True), Binding("bound", "BOUND", False),
                Binding("both", "INVESTIGATING", False), Binding("twice", "INVESTIGATING", False)]
    audit = {"slow": [timed_out], "bound": [timed_out],
             "both": [timed_out, binding_event("p1")], "twice": [timed_out, again]}
    verdict = check([], Logged(audit=audit, lookups=Counter({"slow": 1})), bindings)
    assert verdict.failing_request_ids == {"binding_audit_not_once": ["bound", "both", "twice"]}


OUTBOX_B = "renkei.holder.b.out"  # the provider's outbox in the suspension tests (requester a)
REFUSED_SUSPENDED = ("rejected@renkei.holder.a.out:0:3", "SUSPENDED")


def suspended(request_id: str, status: str, reason: str | None = None) -> Asked:
    """A request of requester a to provider b, one of them suspended while it was on its way."""
    return Asked(request_id, status, reason, suspended=True, provider="b")


def test_a_request_of_a_holder_suspended_may_end_refused_suspended_but_once() -> None:
    """Refused SUSPENDED at approval (that refusal its one audit step), or after it (ended early,
    or its answer relayed to no one: TIMED_OUT in the access log, the answer refused to its
    provider SUSPENDED once a copy), passes; so does a plain timeout with such a refusal. The same
    refusal of a request no suspension touched, another reason, a second refusal of the answer, a
    request's own refusal after its approval, or an ending audited as an answer fails."""
    approved, timed_out = ("approved@d", "APPROVED"), ("answered@d", "TIMED_OUT")
    answer_refused = (f"rejected@{OUTBOX_B}:0:9", "SUSPENDED")
    audit = {"at approval": [REFUSED_SUSPENDED], "ended early": [approved, timed_out],
             "to no one": [approved, timed_out, answer_refused],
             "copies": [approved, timed_out, answer_refused, (f"rejected@{OUTBOX_B}:0:11",
                                                             "SUSPENDED")],
             "timed out": [approved, timed_out, answer_refused],
             "not suspended": [REFUSED_SUSPENDED], "other reason": [REFUSED_SUSPENDED],
             "twice": [approved, timed_out, answer_refused, answer_refused],
             "request refused": [approved, timed_out, REFUSED_SUSPENDED],
             "approved and refused": [approved, REFUSED_SUSPENDED],
             "answered": [approved, ("answered@d", "FOUND")]}
    asked = [suspended("at approval", "REJECTED", "SUSPENDED"),
             suspended("ended early", "REJECTED", "SUSPENDED"),
             suspended("to no one", "REJECTED", "SUSPENDED"),
             suspended("copies", "REJECTED", "SUSPENDED"), suspended("timed out", "TIMED_OUT"),
             Asked("not suspended", "REJECTED", "SUSPENDED", provider="b"),
             suspended("other reason", "REJECTED", "UNKNOWN_HOLDER"),
             suspended("twice", "REJECTED", "SUSPENDED"),
             suspended("request refused", "REJECTED", "SUSPENDED"),
             suspended("approved and refused", "REJECTED", "SUSPENDED"),
             suspended("answered", "REJECTED", "SUSPENDED")]
    verdict = check(asked, logged(audit, provider={}))
    assert verdict.failing_request_ids == {
        "rejected": ["not suspended", "other reason"],
        "audit_not_as_answered": ["twice", "request refused", "approved and refused",
                                  "answered"]}
    assert verdict.suspended_endings == {"REJECTED SUSPENDED": 7, "REJECTED SUSPENDED at "
                                         "approval": 1, "TIMED_OUT": 1,
                                         "REJECTED UNKNOWN_HOLDER": 1}
    again = check([asked[0]], logged({"at approval": [REFUSED_SUSPENDED]}, {"at approval": 2}))
    assert again.failing_request_ids == {"requester_log_not_once": ["at approval"]}
    lost = check([suspended("lost", "SENT")], logged({}))
    assert lost.failing_request_ids == {"lost": ["lost"]}
    passing = check(asked[:5], logged(audit, provider={}))
    assert passing.exactly_once
    assert ("requests and bindings of a holder suspended meanwhile: {'REJECTED SUSPENDED': 3, "
            "'REJECTED SUSPENDED at approval': 1, 'TIMED_OUT': 1}") in passing.lines()
    assert len(check([Asked("r1", "FOUND")], logged({"r1": RIGHT})).lines()) == 3, "none: as before"


def test_a_binding_of_a_holder_suspended_may_end_refused_suspended_but_once() -> None:
    """Refused at approval, never looked up; after it, its look-up's answer relayed to no one
    (its event TIMED_OUT) or its timeout, looked up once by personal number. Refused with a
    look-up logged at approval, or its refusal audited twice, or no suspension touching it,
    fails."""
    ended = ("binding:0123456789abcdef@renkei.holder.a.out:0:5", "TIMED_OUT")
    bindings = [Binding("at approval", "REJECTED", True, "SUSPENDED", suspended=True),
                Binding("to no one", "REJECTED", True, "SUSPENDED", suspended=True),
                Binding("timed out", "REJECTED", False, "SUSPENDED", suspended=True),
                Binding("looked up", "REJECTED", True, "SUSPENDED", suspended=True),
                Binding("twice", "REJECTED", False, "SUSPENDED", suspended=True),
                Binding("not suspended", "REJECTED", False, "SUSPENDED")]
    audit = {"at approval": [REFUSED_SUSPENDED], "to no one": [ended],
             "timed out": [("answered@d", "TIMED_OUT")], "looked up": [REFUSED_SUSPENDED],
             "twice": [REFUSED_SUSPENDED, REFUSED_SUSPENDED], "not suspended": [REFUSED_SUSPENDED]}
    verdict = check([], Logged(audit=audit, lookups=Counter({"to no one": 1, "looked up": 1})),
                    bindings)
    assert verdict.failing_request_ids == {"bindings_refused": ["not suspended"],
                                           "binding_audit_not_once": ["twice"],
                                           "lookup_not_once": ["looked up"]}
    assert verdict.suspended_endings == {"REJECTED SUSPENDED": 3,
                                         "REJECTED SUSPENDED at approval": 2}


def test_a_request_is_judged_by_the_suspensions_of_its_requester_and_provider_meanwhile(
        tmp_path: Path) -> None:
    """A request sent before a holder was resumed and answered after its suspension began (or
    not yet) was on its way while it was suspended; one answered before, sent after, or of other
    holders was not; the reason of a refusal is what its detail begins with."""
    with state_folder(tmp_path):
        since = datetime.now(UTC)
        store = HolderStore.of("sakura-town")
        opened = {r: store.open_request(r, "LINKAGE", "own-0", "staff", "t1", provider=provider)
                  for r, provider in (("before", "nenkin"), ("during", "nenkin"),
                                      ("pending", "nenkin"), ("other", "acme-kenpo"))}
        store.open_request("binding", "BINDING", "own-1", "staff", "t1")
        store.resolve(opened["before"], "FOUND")
        time.sleep(0.01)
        began = datetime.now(UTC)
        time.sleep(0.01)  # the store's times are to the millisecond
        store.resolve(opened["during"], "REJECTED", "SUSPENDED: the provider 'nenkin' is "
                      "suspended")
        store.resolve(opened["other"], "FOUND")
        time.sleep(0.01)
        suspension = chaos_check.Suspension("nenkin", began, datetime.now(UTC))
        time.sleep(0.01)
        store.open_request("after", "LINKAGE", "own-0", "staff", "t1", provider="nenkin")
        store.close()
        with holder_stores(["sakura-town"]) as stores:
            found = asked_since(stores, since, [suspension])
            bindings = bindings_since(stores, since, (), [replace(suspension,
                                                                  holder="sakura-town")])
    assert {a.request_id: (a.status, a.reason, a.suspended) for a in found} == {
        "before": ("FOUND", None, False), "during": ("REJECTED", "SUSPENDED", True),
        "pending": ("SENT", None, True), "other": ("FOUND", None, False),
        "after": ("SENT", None, False)}
    assert bindings == [Binding("binding", "SENT", False, None, True)]


def test_an_answer_its_requester_got_that_its_provider_logged_not_provided_fails(
        tmp_path: Path) -> None:
    """The provider's log counted its entries of a request only: an answer relayed to its
    requester (FOUND) whose provider's entry says it was refused, not provided (REJECTED:
    SUSPENDED, its first answer refused while it was suspended), passed (chaos crash --seed
    202: 12 such). A FOUND or NOT_FOUND is logged once by its provider, and as provided."""
    with state_folder(tmp_path):
        AuditStore(audit_path(), Signer.load_or_create()).close()
        since = datetime.now(UTC)
        requester, provider = HolderStore.of("sakura-town"), HolderStore.of("nenkin")
        for request_id in ("provided", "not provided"):
            opened = requester.open_request(request_id, "LINKAGE", "own-0", "staff", "t1",
                                            provider="nenkin")
            requester.resolve(opened, "FOUND")
            requester.log(request_id, "REQUESTER", "staff", "t1", "FOUND", counterpart="nenkin")
            provider.log(request_id, "PROVIDER", "SYSTEM", "t9", "FOUND",
                         counterpart="sakura-town")
        assert provider.not_provided("not provided", "REJECTED: SUSPENDED")
        requester.close()
        provider.close()
        with holder_stores(["sakura-town", "nenkin"]) as stores:
            asked = asked_since(stores, since)
            found = chaos_check.logged_of(stores.values(), {a.request_id for a in asked}, since)
    audit = {"provided": RIGHT, "not provided": RIGHT}
    verdict = check(asked, replace(found, audit=audit))
    assert verdict.failing_request_ids == {"provider_log_not_once": ["not provided"]}


def test_every_linkage_request_recorded_since_the_run_began_is_judged(tmp_path: Path) -> None:
    """A request a server recorded, then was killed before answering, is in its store: judged,
    though the load never heard of it."""
    with state_folder(tmp_path):
        store = HolderStore.of("nenkin")
        store.open_request("before", "LINKAGE", "own-0", "staff", "t1")
        since = datetime.now(UTC) + timedelta(milliseconds=5)
        time.sleep(0.01)
        store.open_request("orphan", "LINKAGE", "own-1", "staff", "t1")
        store.open_request("binding", "BINDING", "own-1", "staff", "t1")
        store.close()
        with holder_stores(["nenkin"]) as stores:
            assert asked_since(stores, since) == [Asked("orphan", "SENT")]
            assert bindings_since(stores, since, {"nenkin"}) == [Binding("binding", "SENT", True)]
            assert bindings_since(stores, since, ()) == [Binding("binding", "SENT", False)]


async def test_each_holders_store_is_opened_once_per_look(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A look at the stores reads what each holder asked and logged from one opening of its
    store: the requests, then the log of them (it opened each twice)."""
    opened: Counter[str] = Counter()

    def counted(holder: str) -> Path:
        opened[holder] += 1
        return default_path(holder)

    with state_folder(tmp_path):
        AuditStore(audit_path(), Signer.load_or_create()).close()
        since = datetime.now(UTC) - timedelta(seconds=1)
        for holder in ("nenkin", "sakura-town"):
            store = HolderStore.of(holder)
            store.open_request(f"r-{holder}", "LINKAGE", "own-0", "staff", "t1")
            store.close()
        monkeypatch.setattr(chaos_check, "holder_path", counted)
        monkeypatch.setattr(chaos_check, "LATE", 0)
        verdict = await checked(["nenkin", "sakura-town"], since, within=0)
    assert verdict.requests == 2 and verdict.lost == 2
    assert opened == {"nenkin": 2, "sakura-town": 2}, "two looks: each store opened once a look"


def crash_chaos(checked: Checked, **changed: object) -> CrashChaos:
    fields: dict[str, object] = {
        "seconds": 1.0, "rate": 1.0, "platform_instances": 1, "every_seconds": 1.0,
        "kills": [], "kills_by_kind": {}, "jobs": 1, "binding_jobs": 0, "accepted": 1,
        "never_accepted": {}, "refused_at_door": 0, "checked": checked, "died": [],
        "tracebacks": {}, "latency_p50_seconds": None, "latency_max_seconds": None,
        "bound_seconds": 1.0}
    return CrashChaos(**(fields | changed))  # type: ignore[arg-type]


def test_a_crash_run_passes_only_with_every_job_accepted_and_no_crash_of_its_own() -> None:
    passing = check([Asked("r1", "FOUND")], logged({"r1": RIGHT}))
    assert crash_chaos(passing).exactly_once
    assert crash_chaos(passing).to_json()["exactly_once"] is True
    assert not crash_chaos(passing, jobs=2, never_accepted={NOT_ACCEPTED: 1}).exactly_once
    assert not crash_chaos(passing, died=["platform-1"]).exactly_once
    assert not crash_chaos(passing, tracebacks={"audit": 1}).exactly_once
    failing = check([Asked("r1", "SENT")], logged({}))
    assert not crash_chaos(failing).exactly_once


def test_a_crash_run_fails_unless_each_accepted_job_made_one_request() -> None:
    """A job asked again after its server was killed, made a second request: each answered,
    logged and audited once, but the holder asked twice for one job."""
    twice = check([Asked("r1", "FOUND"), Asked("r2", "FOUND")], logged({"r1": RIGHT, "r2": RIGHT}))
    run = crash_chaos(twice, jobs=1, accepted=1)
    assert twice.exactly_once and not run.exactly_once
    assert run.to_json()["recorded_beyond_accepted"] == 1
    assert "requests recorded beyond those accepted 1" in "\n".join(crash_cli.summary(run))
    assert crash_chaos(twice, jobs=2, accepted=2).exactly_once
    with_binding = check([Asked("r1", "FOUND")], logged({"r1": RIGHT, "b1": [("binding:p", "")]}),
                         [Binding("b1", "BOUND", False)])
    assert crash_chaos(with_binding, jobs=2, binding_jobs=1, accepted=2).exactly_once
    assert crash_chaos(with_binding, jobs=1, accepted=1).recorded_beyond_accepted == 1


def test_a_crash_run_with_suspensions_says_them_and_the_endings_of_their_requests() -> None:
    """With --suspend-every, the summary counts the suspensions by holder and the endings of the
    requests of a holder suspended meanwhile; without, neither line."""
    passing = check([suspended("r1", "REJECTED", "SUSPENDED")],
                    logged({"r1": [REFUSED_SUSPENDED]}, provider={}))
    made = [(10.0, "nenkin", 3.2), (20.0, "acme-kenpo", 3.1), (30.0, "nenkin", 3.0)]
    run = crash_chaos(passing, suspend_every_seconds=10.0, suspensions=made)
    said = crash_cli.summary(run)
    assert "suspensions: 3, one every 10s (nenkin 2, acme-kenpo 1)" in said
    assert ("requests and bindings of a holder suspended meanwhile: {'REJECTED SUSPENDED at "
            "approval': 1}") in said
    assert run.exactly_once and run.to_json()["suspensions"] == made
    unsuspended = crash_cli.summary(crash_chaos(check([Asked("r1", "FOUND")],
                                                      logged({"r1": RIGHT}))))
    assert not [line for line in unsuspended if "suspen" in line]


def test_a_crash_run_with_freezes_says_them() -> None:
    """With --freeze-every, the summary counts the platform instances frozen, by instance, and
    says how long each was; without, no such line."""
    passing = check([Asked("r1", "FOUND")], logged({"r1": RIGHT}))
    made = [(15.0, "platform-2", 11.07), (41.1, "platform-1", 17.5), (73.6, "platform-2", 8.2)]
    run = crash_chaos(passing, freeze_every_seconds=15.0, freezes=made)
    assert ("freezes: 3, one every 15s (platform-2 2, platform-1 1), frozen 11.07, 17.5, 8.2 s"
            in crash_cli.summary(run))
    assert run.exactly_once and run.to_json()["freezes"] == made
    assert not [line for line in crash_cli.summary(crash_chaos(passing)) if "freez" in line]


async def test_the_load_accounts_for_every_job_and_retries_only_what_says_to() -> None:
    """An error answer fails the job at once; a connection cut, a key in use (409 with
    Retry-After, as during a re-keying) and a store busy (503 with Retry-After, as during an
    import) are asked again, under the job's one Idempotency-Key, the latter two up to ASKS_AGAIN
    times and not past the job's give-up time; a job never accepted is counted."""
    attempts: Counter[str] = Counter()
    keys: dict[str, list[str | None]] = {}

    async def post(request: web.Request) -> web.Response:
        holder = request.match_info["holder"]
        attempts[holder] += 1
        keys.setdefault(holder, []).append(request.headers.get("Idempotency-Key"))
        if holder == "broken":
            return web.Response(status=500, text="boom")
        if holder == "unbound":
            return web.Response(status=422, text="not bound")
        if holder == "stuck" or (holder == "rekeying" and attempts[holder] <= 2):
            return web.json_response({"error": "idempotency_key_in_use", "detail": "ask again"},
                                     status=409, headers={"Retry-After": "0"})
        if holder == "jammed" or (holder == "importing" and attempts[holder] <= 2):
            after = "1" if holder == "jammed" else "0"
            return web.json_response({"error": "service_unavailable", "detail": "try again"},
                                     status=503, headers={"Retry-After": after})
        if attempts[holder] == 1:  # recorded, then killed before it answered
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        return web.json_response({"request_id": f"{holder}-{attempts[holder]}"}, status=202)

    async def get(request: web.Request) -> web.Response:
        return web.json_response({"status": "FOUND"})

    app = web.Application()
    app.add_routes([web.post("/{holder}/requests", post),
                    web.get("/{holder}/requests/{rid}", get)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    names = ("ok", "broken", "unbound", "rekeying", "stuck", "importing", "jammed")
    servers = {h: Address(f"http://127.0.0.1:{port}/{h}", "t") for h in names}
    servers["gone"] = Address("http://127.0.0.1:1/gone", "t")
    exchange = exchanges.LAWFUL[0]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            load = Load(http, servers)
            give_up = time.monotonic() + 2
            await asyncio.gather(*(load.one(replace(exchange, requester=h), "own", give_up)
                                   for h in (*names, "gone")))
            ended = time.monotonic()
    finally:
        await runner.cleanup()
    assert sorted((s.request_id, s.status) for s in load.sent) == [
        ("importing-3", "FOUND"), ("ok-2", "FOUND"), ("rekeying-3", "FOUND")]
    assert load.never_accepted == {"HTTP 500 Internal Server Error": 1,
                                   "HTTP 422 Unprocessable Entity": 1, NOT_ACCEPTED: 1,
                                   f"HTTP 409 idempotency_key_in_use {ASKS_AGAIN + 1} times": 1,
                                   "HTTP 503 service_unavailable until the job gave up": 1}
    assert (attempts["broken"], attempts["unbound"]) == (1, 1)
    assert attempts["stuck"] == ASKS_AGAIN + 1
    assert ended - give_up < 1, "a store busy for good is asked again only until the job gives up"
    for holder in ("ok", "rekeying", "stuck", "importing", "jammed"):
        assert len(set(keys[holder])) == 1, f"{holder}: one key, on every try"
    each_job = {key for tried in keys.values() for key in tried}
    assert None not in each_job and len(each_job) == 7, "a key of its own for each job"
    assert load.refused >= 2  # the cut connection, and the server that was never there



def broker_chaos(checked: Checked, send_failed: int) -> BrokerChaos:
    return BrokerChaos(
        nodes=3, seconds=1.0, rate=1.0, residents=50, killed_node=1, killed_why="",
        killed_was_quorum_leader=False, partitions_led_by_killed=0, kill_at_seconds=0.0,
        down_seconds=0.0, jobs=3, binding_jobs=0, send_failed=send_failed, checked=checked,
        recover_first_answer_seconds=None, recover_isr_seconds=None, restart_seconds=None,
        cluster_start_seconds=None, services_ready_seconds=0.0, bound_seconds=1.0,
        latency_p50_seconds=None, latency_max_seconds=None)


def test_a_broker_run_fails_on_a_send_failed_request_only_if_it_got_no_answer() -> None:
    """Its verdict is the shared one, over the stores: a request whose send failed but that was
    recorded is judged like any other; the audit is read from the store, not the topic."""
    answered_later = check([Asked("r1", "FOUND"), Asked("kept", "FOUND")],
                           logged({"r1": RIGHT, "kept": RIGHT}))
    assert broker_chaos(answered_later, send_failed=1).exactly_once
    never_answered = check([Asked("r1", "FOUND"), Asked("kept", "SENT")], logged({"r1": RIGHT}))
    run = broker_chaos(never_answered, send_failed=1)
    assert not run.exactly_once
    assert run.to_json()["failing_request_ids"] == {"lost": ["kept"]}
    assert "exactly once: NO" in chaos_cli.summary(run)


def test_the_report_says_every_chaos_result_found_or_given(tmp_path: Path) -> None:
    """A run written elsewhere with --out (crash-2.json) is reported beside each part's own,
    not a file of other figures (a benchmark's); given files alone, only those."""
    misbinding = Result(1, 1, 1, 0.0, Tally()).to_json()
    runs = {"chaos-crash.json": {"what": "kills", "jobs": 10},
            "crash-2.json": {"what": "kills", "jobs": 20}, "bench.json": {"points": 3},
            "misbinding-2.json": misbinding}
    for name, result in runs.items():
        (tmp_path / name).write_text(json.dumps(result), encoding="utf-8")
    folder = ["report", "--results", str(tmp_path)]
    said = CliRunner().invoke(chaos_cli.chaos_cli, folder)
    assert said.exit_code == 0, said.output
    assert "  jobs: 20" in said.output and "broker: not run" in said.output
    reported = json.loads((tmp_path / "chaos-report.json").read_text(encoding="utf-8"))
    assert reported == {"crash": runs["chaos-crash.json"],
                        str(tmp_path / "crash-2.json"): runs["crash-2.json"],
                        str(tmp_path / "misbinding-2.json"): misbinding}
    given = CliRunner().invoke(chaos_cli.chaos_cli, [*folder, str(tmp_path / "crash-2.json")])
    assert given.exit_code == 0, given.output
    assert "jobs: 10" not in given.output and "not run" not in given.output


def test_a_report_of_no_chaos_run_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    """Not a report of {} written into a results folder made for it: one line, exit 1."""
    results = tmp_path / "results"
    said = CliRunner().invoke(chaos_cli.chaos_cli, ["report", "--results", str(results)])
    assert said.exit_code == 1, said.output
    assert said.output == (f"Error: no chaos run to report in {results}: run `renkei chaos "
                           "crash|broker|fuzz|misbinding` first\n")
    assert not results.exists()


async def test_a_server_that_does_not_start_cancels_the_others_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash chaos run's servers started side by side (crash_chaos.started_servers): one
    that does not start in time raises its own error (not an ExceptionGroup), the others' waits
    cancelled and ended before it is raised, not left polling for their addresses."""
    holders = ["ichi", "ni", "san"]
    waiting: list[str] = []
    given_up: list[str] = []

    async def start_server(procs: object, holder: str) -> Address:
        if holder == holders[0]:
            await asyncio.sleep(0.01)
            raise TimeoutError(f"{holder}'s communication server did not start")
        waiting.append(holder)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            given_up.append(holder)
            raise
        raise AssertionError("not cancelled")

    monkeypatch.setattr(crash_run, "start_server", start_server)
    async with asyncio.timeout(5):
        with pytest.raises(TimeoutError, match="ichi's communication server did not start"):
            await crash_run.started_servers(None, holders)  # type: ignore[arg-type]
    assert sorted(given_up) == waiting == holders[1:]
