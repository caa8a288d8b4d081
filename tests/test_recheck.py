"""Replay's re-check of approvals, pure: the pattern list and directory as known at each moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit.events import AccessLogEvent, event_id
from audit.replay import History, Recheck, history_of
from broker import topics
from processors import linkage
from processors.approval import PatternList
from processors.context import Context
from processors.keys import MasterKeys
from processors.linkage import FromHolder
from renkei.compacted import not_its_holders
from renkei.envelope import Incoming
from schemas.codec import CODEC
from schemas.messages import HolderEntry, LegalPattern, LinkageRequest, Refusal
from tests.kafka_helpers import directory_records

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def pattern(version: int, data_types: tuple[str, ...], valid_from: datetime) -> LegalPattern:
    return LegalPattern("P-1", version, "番号法 別表第二 1", "審査", "pension_service",
                        "municipality", data_types, valid_from, None)


def holder(holder_id: str, role: str, active: bool = True) -> HolderEntry:
    return HolderEntry(holder_id, holder_id, role, holder_id, 0, b"k", False, active, T0)


def event(at: datetime, outcome: str = "APPROVED", reason: str | None = None,
          data_type: str = "local_tax", requester: str = "nenkin") -> AccessLogEvent:
    step = "approved" if outcome == "APPROVED" else "rejected@out:0:1"
    return AccessLogEvent(event_id(f"r-{at.timestamp()}", step), f"r-{at.timestamp()}", at,
                          "LINKAGE", outcome, reason, "P-1", "番号法", requester, "town",
                          data_type, "ABC98765XYZ")


def recheck() -> Recheck:
    """P-1 v1 (local_tax) published at T0; v2 adds resident_record at T0 + 60 s; nenkin leaves
    the directory (a tombstone) at T0 + 120 s."""
    patterns = History([
        (T0, b"P-1#1", pattern(1, ("local_tax",), T0 - timedelta(days=1))),
        (T0 + 60 * SECOND, b"P-1#2", pattern(2, ("local_tax", "resident_record"),
                                            T0 - timedelta(days=1)))])
    directory = History([(T0, b"nenkin", holder("nenkin", "pension_service")),
                         (T0, b"town", holder("town", "municipality")),
                         (T0 + 120 * SECOND, b"nenkin", None)])
    return Recheck(patterns, directory, grace=5 * SECOND)


def test_approvals_and_rejections_that_agree() -> None:
    check = recheck()
    assert check.check(event(T0 + 10 * SECOND)) is None
    assert check.check(event(T0 + 10 * SECOND, "REJECTED", "DATA_TYPE_NOT_PERMITTED",
                             "resident_record")) is None
    assert check.check(event(T0 + 70 * SECOND, data_type="resident_record")) is None
    assert check.check(event(T0 + 130 * SECOND, "REJECTED", "NOT_PERMITTED")) is None


def test_a_version_published_later_does_not_excuse_an_earlier_rejection() -> None:
    """Judged by what was known then: v2 came a minute after this rejection, so it stands."""
    assert recheck().check(event(T0 + 30 * SECOND, "REJECTED", "DATA_TYPE_NOT_PERMITTED",
                                 "resident_record")) is None


def test_the_platforms_lag_behind_a_new_version_is_within_the_grace() -> None:
    """Rejected 2 s after v2 was published: the platform had not read it yet. 10 s: a finding."""
    check = recheck()
    late = event(T0 + 62 * SECOND, "REJECTED", "DATA_TYPE_NOT_PERMITTED", "resident_record")
    assert check.check(late) is None
    later = event(T0 + 70 * SECOND, "REJECTED", "DATA_TYPE_NOT_PERMITTED", "resident_record")
    found = check.check(later)
    assert found is not None and (found.logged, found.rechecked) == (
        "DATA_TYPE_NOT_PERMITTED", "APPROVED")


def test_disagreements_are_found() -> None:
    check = recheck()
    forged = check.check(event(T0 + 10 * SECOND, data_type="resident_record"))
    assert forged is not None and forged.rechecked == "DATA_TYPE_NOT_PERMITTED"
    gone = check.check(event(T0 + 130 * SECOND))  # approved after the requester left
    assert gone is not None and gone.rechecked == "NOT_PERMITTED"
    before = check.check(event(T0 - 60 * SECOND))  # before the directory was published
    assert before is not None and before.rechecked == "NOT_PERMITTED"
    unknown = check.check(event(T0 + 10 * SECOND, "REJECTED", "UNKNOWN_PATTERN"))
    assert unknown is not None and unknown.rechecked == "APPROVED"
    assert not check.applies(event(T0, "REJECTED", "STALE_REQUEST"))


def test_a_requester_not_in_the_directory_is_refused_first_by_both() -> None:
    """The platform refuses a holder not in the directory NOT_PERMITTED before it looks at the
    pattern; the re-check looked at the pattern first, found none for P-999 (UNKNOWN_PATTERN)
    and reported that correct rejection as a disagreement (the replay exited 1)."""
    keys = MasterKeys.generate()
    ctx = Context.of(keys)
    ctx.directory = {"town": holder("town", "municipality")}
    ctx.patterns = PatternList([pattern(1, ("local_tax",), T0 - timedelta(days=1))])
    request = LinkageRequest("r-1", T0 + 10 * SECOND, "ABC98765XYZ", "P-999", "town",
                             "local_tax")
    incoming = Incoming(topics.outbox("city-a"), 0, 1, T0 + 10 * SECOND, CODEC.encode(request))
    judged, = linkage.requests([FromHolder(incoming, "city-a", request)], ctx)  # the decider's
    logged = CODEC.decode(CODEC.decode(judged.value, Refusal).logged, AccessLogEvent)
    assert (logged.outcome, logged.reason) == ("REJECTED", "NOT_PERMITTED")
    check = recheck()
    assert check.applies(logged) and check.check(logged) is None


def test_a_rejection_for_a_suspended_provider_is_told_from_one_for_an_unknown_one() -> None:
    """A provider suspended and one not in the directory were both refused UNKNOWN_HOLDER; now
    SUSPENDED, which the re-check gives too. A rejection logged before (UNKNOWN_HOLDER for one
    suspended) still agrees; SUSPENDED for a provider not in the directory, or active, does
    not."""
    patterns = History([(T0, b"P-1#1", pattern(1, ("local_tax",), T0 - timedelta(days=1)))])
    directory = History([(T0, b"nenkin", holder("nenkin", "pension_service")),
                         (T0, b"town", holder("town", "municipality")),
                         (T0 + 60 * SECOND, b"town", holder("town", "municipality", False)),
                         (T0 + 120 * SECOND, b"town", None)])
    check = Recheck(patterns, directory, grace=5 * SECOND)
    suspended = event(T0 + 70 * SECOND, "REJECTED", "SUSPENDED")
    assert check.applies(suspended) and check.check(suspended) is None
    assert check.check(event(T0 + 70 * SECOND, "REJECTED", "UNKNOWN_HOLDER")) is None
    assert check.check(event(T0 + 130 * SECOND, "REJECTED", "UNKNOWN_HOLDER")) is None
    for at, rechecked in ((T0 + 10 * SECOND, "APPROVED"), (T0 + 130 * SECOND, "UNKNOWN_HOLDER")):
        found = check.check(event(at, "REJECTED", "SUSPENDED"))
        assert found is not None and found.rechecked == rechecked


def test_a_rejection_for_a_suspended_requester_is_told_from_an_unpermitted_request() -> None:
    """A suspended requester was refused NOT_PERMITTED, as one asking what the law does not
    permit it; now SUSPENDED, which the re-check gives too. NOT_PERMITTED logged before for a
    requester suspended then still agrees, as UNKNOWN_HOLDER does for a suspended provider, but
    neither for the other party's suspension, nor SUSPENDED for a requester active."""
    patterns = History([(T0, b"P-1#1", pattern(1, ("local_tax",), T0 - timedelta(days=1)))])
    directory = History([(T0, b"nenkin", holder("nenkin", "pension_service")),
                         (T0, b"town", holder("town", "municipality")),
                         (T0, b"kokuho", holder("kokuho", "pension_service")),
                         (T0 + 60 * SECOND, b"nenkin", holder("nenkin", "pension_service",
                                                               False)),
                         (T0 + 60 * SECOND, b"town", holder("town", "municipality", False))])
    check = Recheck(patterns, directory, grace=5 * SECOND)
    at = T0 + 70 * SECOND
    suspended = event(at, "REJECTED", "SUSPENDED")
    assert check.applies(suspended) and check.check(suspended) is None
    assert check.check(event(at, "REJECTED", "NOT_PERMITTED")) is None
    found = check.check(event(at, "REJECTED", "UNKNOWN_HOLDER"))
    assert found is not None and found.rechecked == "SUSPENDED"
    # kokuho is active, the provider it names (town) suspended
    assert check.check(event(at, "REJECTED", "UNKNOWN_HOLDER", requester="kokuho")) is None
    found = check.check(event(at, "REJECTED", "NOT_PERMITTED", requester="kokuho"))
    assert found is not None and found.rechecked == "SUSPENDED"
    found = check.check(event(T0 + 10 * SECOND, "REJECTED", "SUSPENDED"))
    assert found is not None and found.rechecked == "APPROVED"


def test_a_directory_entry_keyed_other_than_its_holder_is_left_out_of_the_replay(
        caplog: pytest.LogCaptureFixture) -> None:
    """nenkin's entry under the key kokuho (a copy written by hand, or by a faulty tool), which
    every view of the directory refuses: the replay took kokuho for a pension service, and a
    request the platform refused kokuho, not in its directory, for one it should have approved."""
    keyed = [(b"nenkin", holder("nenkin", "pension_service")),
             (b"town", holder("town", "municipality")),
             (b"kokuho", holder("nenkin", "pension_service"))]
    records = directory_records(*((key, CODEC.encode(entry)) for key, entry in keyed),
                                appended_ms=int(T0.timestamp() * 1000))
    directory = history_of(records, topics.DIRECTORY, HolderEntry, not_its_holders)
    check = Recheck(History([(T0, b"P-1#1", pattern(1, ("local_tax",), T0))]), directory)
    assert check.check(event(T0 + 10 * SECOND, "REJECTED", "NOT_PERMITTED",
                             requester="kokuho")) is None
    assert [r.getMessage() for r in caplog.records] == [
        "an entry on renkei.directory refused at offset 2: the entry of holder 'nenkin' is "
        "keyed 'kokuho', not by its holder's id"]
