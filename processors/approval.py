"""Step ② of linkage: approve a request against the legal pattern list in force, every time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from schemas.messages import HolderEntry, LegalPattern, LinkageRequest


@dataclass(frozen=True, slots=True)
class Approved:
    pattern: LegalPattern


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    detail: str


UNLISTED = Refused("NOT_PERMITTED", "the requester is not in the holder directory")


def not_active(requester: HolderEntry | None) -> str | None:
    """Why a requester is refused as not an active holder (None: it is one): one whose entry
    is inactive is told it is suspended, and since when if the directory dates it."""
    if requester is None:
        return "the requester is not an active holder in the directory"
    if requester.active:
        return None
    since = f" since {requester.inactive_since.isoformat()}" if requester.inactive_since else ""
    return f"the requester is suspended{since}: not an active holder in the directory"


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
    """Approve `request` from `requester` if a pattern in force at `at` allows exactly it.

    A requester not in the directory (None) is refused first, whatever it asks (linkage refuses
    it so before it reads the request, and the audit replay re-checks by this function)."""
    if requester is None:
        return UNLISTED
    if request.pattern_id not in patterns:
        return Refused("UNKNOWN_PATTERN", f"no legal pattern {request.pattern_id!r}")
    pattern = patterns.in_force(request.pattern_id, at)
    if pattern is None:
        return Refused("PATTERN_NOT_IN_FORCE",
                       f"pattern {request.pattern_id} is not in force at {at.isoformat()}")
    if (why := not_active(requester)) is not None:
        return Refused("NOT_PERMITTED", why)
    if requester.role != pattern.requester_role:
        return Refused("NOT_PERMITTED", f"pattern {pattern.pattern_id} is for requesters of role "
                                        f"{pattern.requester_role}, not {requester.role}")
    provider = directory.get(request.provider)
    if provider is None or not provider.active:
        return Refused("UNKNOWN_HOLDER", f"no active holder {request.provider!r}")
    if provider.role != pattern.provider_role:
        return Refused("WRONG_PROVIDER", f"pattern {pattern.pattern_id} names providers of role "
                                         f"{pattern.provider_role}, not {provider.role}")
    if request.data_type not in pattern.data_types:
        return Refused("DATA_TYPE_NOT_PERMITTED",
                       f"pattern {pattern.pattern_id} does not cover {request.data_type!r}")
    return Approved(pattern)
