"""Step ② of linkage: approve a request against the legal pattern list in force, every time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from audit.events import SUSPENDED
from renkei.suspensions import active_at, suspension_at
from schemas.messages import HolderEntry, LegalPattern, LinkageRequest


@dataclass(frozen=True, slots=True)
class Approved:
    pattern: LegalPattern


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    detail: str


UNLISTED = Refused("NOT_PERMITTED", "the requester is not in the holder directory")
# Rejection reasons for a holder named that is no active one: inactive in the directory (Rejection
# v3), or not in it (holder_logs' SUSPENDED and NOT_LISTED)
UNKNOWN_HOLDER = "UNKNOWN_HOLDER"


def not_active_reason(entry: HolderEntry | None) -> str:
    """Why a holder (its directory entry, None if it has none) that is no active holder is
    refused: SUSPENDED, or UNKNOWN_HOLDER if the directory has no such holder."""
    return UNKNOWN_HOLDER if entry is None else SUSPENDED


def suspended(who: str, entry: HolderEntry, at: datetime | None = None) -> str:
    """`who` (the requester, the provider 'x') told suspended as of `at` (suspension_at), since
    when if the directory dates it (until when, if it has been resumed since)."""
    since, until = suspension_at(entry, at)
    said = f" since {since.isoformat()}" if since else ""
    if until is not None:
        return (f"{who} was suspended{said} until {until.isoformat()}: not an active "
                f"holder in the directory then")
    return f"{who} is suspended{said}: not an active holder in the directory"


def not_active(requester: HolderEntry | None, at: datetime) -> Refused | None:
    """Why a requester is refused as not an active holder as of `at`, its message's broker time
    (None: it is one, active_at): one whose entry is inactive then SUSPENDED, told since when if
    the directory dates it, a suspension not a request the law does not permit it; one not in
    the directory NOT_PERMITTED."""
    if requester is None:
        return UNLISTED
    return None if active_at(requester, at) else Refused(
        SUSPENDED, suspended("the requester", requester, at))


def provider_not_active(provider: str, entry: HolderEntry | None, at: datetime) -> Refused:
    """Why a request to `provider` (its directory entry, None if it has none), no active holder
    as of `at`, is refused: SUSPENDED, told since when if the directory dates it, or
    UNKNOWN_HOLDER; at approval, or once its provider is suspended since
    (decider.on_deadline)."""
    if entry is None:
        return Refused(UNKNOWN_HOLDER, f"no active holder {provider!r}")
    return Refused(SUSPENDED, suspended(f"the provider {provider!r}", entry, at))


class PatternList:
    """Every version of every legal pattern; at most one version of a pattern is in force."""

    def __init__(self, versions: Iterable[LegalPattern]) -> None:
        self._versions: dict[str, list[LegalPattern]] = {}
        for pattern in sorted(versions, key=lambda p: p.version):
            self._versions.setdefault(pattern.pattern_id, []).append(pattern)

    def __contains__(self, pattern_id: object) -> bool:
        return pattern_id in self._versions

    def in_force(self, pattern_id: str, at: datetime) -> LegalPattern | None:
        """The version of `pattern_id` in force at `at` (the newest, if amendments overlap)."""
        for pattern in reversed(self._versions.get(pattern_id, [])):
            if pattern.valid_from <= at and (pattern.valid_to is None or at < pattern.valid_to):
                return pattern
        return None

    def versions(self) -> list[LegalPattern]:
        return [p for versions in self._versions.values() for p in versions]


def approve(request: LinkageRequest, requester: HolderEntry | None,
            directory: Mapping[str, HolderEntry], patterns: PatternList,
            at: datetime) -> Approved | Refused:
    """Approve `request` from `requester` if a pattern in force at `at` allows exactly it, its
    requester and provider active holders as of `at` (active_at): its broker time, as of which
    every reading of it judges alike.

    A requester not in the directory (None) is refused first, whatever it asks (by linkage, once
    its request is well formed and fresh, and by the audit replay re-checking it)."""
    if requester is None:
        return UNLISTED
    if request.pattern_id not in patterns:
        return Refused("UNKNOWN_PATTERN", f"no legal pattern {request.pattern_id!r}")
    pattern = patterns.in_force(request.pattern_id, at)
    if pattern is None:
        return Refused("PATTERN_NOT_IN_FORCE",
                       f"pattern {request.pattern_id} is not in force at {at.isoformat()}")
    if (refused := not_active(requester, at)) is not None:
        return refused
    if requester.role != pattern.requester_role:
        return Refused("NOT_PERMITTED", f"pattern {pattern.pattern_id} is for requesters of role "
                                        f"{pattern.requester_role}, not {requester.role}")
    provider = directory.get(request.provider)
    if provider is None or not active_at(provider, at):
        return provider_not_active(request.provider, provider, at)
    if provider.role != pattern.provider_role:
        return Refused("WRONG_PROVIDER", f"pattern {pattern.pattern_id} names providers of role "
                                         f"{pattern.provider_role}, not {provider.role}")
    if request.data_type not in pattern.data_types:
        return Refused("DATA_TYPE_NOT_PERMITTED",
                       f"pattern {pattern.pattern_id} does not cover {request.data_type!r}")
    return Approved(pattern)
