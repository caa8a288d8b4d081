"""Step ②: every request approved or refused against the pattern list in force at its time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from processors.approval import Approved, PatternList, Refused, approve
from processors.directory import MOST_SUSPENSIONS, SUSPENSIONS_KEPT, switched
from processors.patterns import load
from schemas.messages import HolderEntry, LinkageRequest, Suspension

NOW = datetime(2026, 11, 23, tzinfo=UTC)
BEFORE_AMENDMENT = datetime(2023, 6, 1, tzinfo=UTC)
SUSPENDED_AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)  # broker times, as the directory dates
RESUMED_AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
AGAIN_AT = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # suspended again
BACK_AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # and resumed again
MS = timedelta(milliseconds=1)


def _holder(holder_id: str, role: str, active: bool = True) -> HolderEntry:
    return HolderEntry(holder_id, holder_id, role, holder_id, 0, b"k" * 32, False, active, NOW)


DIRECTORY = {h.holder_id: h for h in (
    _holder("town", "municipality"), _holder("nenkin", "pension_service"),
    _holder("kodomo", "child_allowance_office"), _holder("hospital", "medical_institution"),
    _holder("closed", "municipality", active=False))}
PATTERNS = PatternList(load())


def _ask(requester: str, pattern: str, provider: str, data_type: str, at: datetime = NOW,
         directory: Mapping[str, HolderEntry] = DIRECTORY) -> Approved | Refused:
    request = LinkageRequest("r", at, "ABC98765XYZ", pattern, provider, data_type)
    return approve(request, directory.get(requester), directory, PATTERNS, at)


def _outcome(holder: str, entry: HolderEntry, at: datetime) -> str:
    """nenkin's request to town under P-037 at `at`, `holder` (one of the two) of `entry` in the
    directory: APPROVED, or the reason it is refused."""
    verdict = _ask("nenkin", "P-037", "town", "local_tax", at, {**DIRECTORY, holder: entry})
    return "APPROVED" if isinstance(verdict, Approved) else verdict.reason


def test_a_lawful_request_is_approved_with_its_pattern_version() -> None:
    verdict = _ask("nenkin", "P-037", "town", "local_tax")
    assert isinstance(verdict, Approved)
    assert verdict.pattern.version == 2 and "国民年金法" in verdict.pattern.legal_basis


@pytest.mark.parametrize(("requester", "pattern", "provider", "data_type", "reason"), [
    ("nenkin", "P-999", "town", "local_tax", "UNKNOWN_PATTERN"),
    ("kodomo", "P-075", "town", "local_tax", "PATTERN_NOT_IN_FORCE"),
    ("hospital", "P-037", "town", "local_tax", "NOT_PERMITTED"),
    ("closed", "P-027", "nenkin", "pension_benefit", "SUSPENDED"),
    ("nenkin", "P-037", "hospital", "local_tax", "WRONG_PROVIDER"),
    ("nenkin", "P-037", "nobody", "local_tax", "UNKNOWN_HOLDER"),
    ("nenkin", "P-037", "closed", "local_tax", "SUSPENDED"),
    ("nenkin", "P-037", "town", "resident_record", "DATA_TYPE_NOT_PERMITTED"),
])
def test_each_unlawful_request_is_refused_with_its_reason(
        requester: str, pattern: str, provider: str, data_type: str, reason: str) -> None:
    verdict = _ask(requester, pattern, provider, data_type)
    assert isinstance(verdict, Refused) and verdict.reason == reason, verdict


def test_a_suspended_requester_is_told_so_not_that_the_law_does_not_permit_it() -> None:
    """A suspended requester was refused NOT_PERMITTED, as a holder asking for a pattern not
    for its role: SUSPENDED, since when (a role mismatch stays NOT_PERMITTED, above)."""
    since = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    closed = replace(DIRECTORY["closed"], inactive_since=since)
    request = LinkageRequest("r", NOW, "ABC98765XYZ", "P-027", "nenkin", "pension_benefit")
    assert approve(request, closed, DIRECTORY, PATTERNS, NOW) == Refused(
        "SUSPENDED", "the requester is suspended since 2026-11-20T09:30:00+00:00: not an active "
        "holder in the directory")


def test_the_version_in_force_at_the_request_time_decides() -> None:
    """resident_record left P-037 with the 2024 amendment: allowed before, refused after."""
    assert isinstance(_ask("nenkin", "P-037", "town", "resident_record", BEFORE_AMENDMENT),
                      Approved)
    assert isinstance(_ask("nenkin", "P-037", "town", "resident_record", NOW), Refused)
    assert isinstance(_ask("kodomo", "P-075", "town", "local_tax",
                           datetime(2022, 6, 1, tzinfo=UTC)), Approved)


@pytest.mark.parametrize("holder", ["nenkin", "town"])  # the requester, the provider
def test_a_request_is_judged_by_the_directory_as_of_its_broker_time(holder: str) -> None:
    """Approval judged the directory as it stands: a request approved and answered, read again
    (its owner killed before committing it) after its provider or requester was suspended, was
    refused SUSPENDED by the next owner, and one refused while its holder was suspended, read
    again after the resumption, approved: two endings of one request in the access log. Judged
    as of the request's broker time, every reading decides alike: approved before the
    suspension and from the resumption on, refused SUSPENDED from the one to the other; a
    holder made inactive at a time not known refused whenever."""
    suspended = replace(DIRECTORY[holder], active=False, inactive_since=SUSPENDED_AT)
    resumed = replace(DIRECTORY[holder], inactive_since=SUSPENDED_AT, resumed_at=RESUMED_AT)
    undated = replace(DIRECTORY[holder], active=False)

    times = (SUSPENDED_AT - MS, SUSPENDED_AT, RESUMED_AT - MS, RESUMED_AT)
    assert [_outcome(holder, suspended, at) for at in times] == ["APPROVED"] + ["SUSPENDED"] * 3
    assert [_outcome(holder, resumed, at) for at in times] == [
        "APPROVED", "SUSPENDED", "SUSPENDED", "APPROVED"]
    assert [_outcome(holder, undated, at) for at in times] == ["SUSPENDED"] * 4


@pytest.mark.parametrize("holder", ["nenkin", "town"])  # the requester, the provider
def test_a_request_within_an_earlier_suspension_is_refused_whenever_it_is_judged(
        holder: str) -> None:
    """The directory kept a holder's last suspension alone: suspended, resumed and suspended
    again, a request sent within the first suspension, read again by a partition's next owner,
    was approved, one its first owner had refused SUSPENDED (rejected and approved in the access
    log). Judged as of its broker time, a request within any suspension the entry keeps is
    refused, one between two approved, suspended again or resumed again."""
    earlier = (Suspension(SUSPENDED_AT, RESUMED_AT),)
    again = replace(DIRECTORY[holder], active=False, inactive_since=AGAIN_AT,
                    suspensions=earlier)
    back = replace(again, active=True, resumed_at=BACK_AT)

    times = (SUSPENDED_AT - MS, SUSPENDED_AT, RESUMED_AT - MS, RESUMED_AT, AGAIN_AT - MS,
             AGAIN_AT, BACK_AT - MS, BACK_AT)
    assert [_outcome(holder, again, at) for at in times] == [
        "APPROVED", "SUSPENDED", "SUSPENDED", "APPROVED", "APPROVED", "SUSPENDED", "SUSPENDED",
        "SUSPENDED"]
    assert [_outcome(holder, back, at) for at in times] == [
        "APPROVED", "SUSPENDED", "SUSPENDED", "APPROVED", "APPROVED", "SUSPENDED", "SUSPENDED",
        "APPROVED"]


def test_a_requester_refused_within_an_earlier_suspension_is_told_that_one() -> None:
    """A requester refused for a request within a suspension before its last is told when that
    one began and ended, not the last one's times."""
    nenkin = replace(DIRECTORY["nenkin"], active=False, inactive_since=AGAIN_AT,
                     suspensions=(Suspension(SUSPENDED_AT, RESUMED_AT),))
    at = RESUMED_AT - MS
    request = LinkageRequest("r", at, "ABC98765XYZ", "P-037", "town", "local_tax")
    assert approve(request, nenkin, DIRECTORY, PATTERNS, at) == Refused(
        "SUSPENDED", "the requester was suspended since 2026-11-22T09:30:00+00:00 until "
        "2026-11-22T10:00:00+00:00: not an active holder in the directory then")


def test_a_suspension_is_kept_while_a_message_from_within_it_can_still_be_read() -> None:
    """Suspended again, a holder's entry adds the suspension its last resumption ended to the
    earlier ones and keeps those ended within SUSPENSIONS_KEPT (a message in an outbox is
    deleted by then), the latest MOST_SUSPENSIONS at most: it does not grow for ever."""
    now = RESUMED_AT + SUSPENSIONS_KEPT  # the first suspension no longer kept
    gone = Suspension(SUSPENDED_AT - 2 * SUSPENSIONS_KEPT, RESUMED_AT - SUSPENSIONS_KEPT)
    first = Suspension(SUSPENDED_AT, RESUMED_AT)
    resumed = replace(DIRECTORY["town"], inactive_since=AGAIN_AT, resumed_at=BACK_AT,
                      suspensions=(gone, first))
    again = switched(resumed, False, now - MS)
    assert (again.active, again.inactive_since, again.resumed_at, again.suspensions) == (
        False, None, None, (first, Suspension(AGAIN_AT, BACK_AT)))
    assert switched(again, True, now).suspensions == (Suspension(AGAIN_AT, BACK_AT),)
    many = tuple(Suspension(BACK_AT + k * MS, BACK_AT + (k + 1) * MS)
                 for k in range(MOST_SUSPENSIONS + 1))
    assert switched(replace(resumed, suspensions=many), False, now).suspensions == (
        *many[2:], Suspension(AGAIN_AT, BACK_AT))
