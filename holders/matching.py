"""The binding decision (paper §4(2)): bind only when all four attributes match exactly after
normalisation; otherwise the case goes to investigation. Several candidates never match."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from registry.normalize import normalize_address, normalize_name
from registry.residents import FourAttributes


@dataclass(frozen=True, slots=True)
class Bind:
    link_code: str


@dataclass(frozen=True, slots=True)
class Investigate:
    reason: str


def differences(ours: FourAttributes, theirs: FourAttributes) -> list[str]:
    """Which of the four attributes differ after normalisation."""
    return [name for name, differ in (
        ("name", normalize_name(ours.name) != normalize_name(theirs.name)),
        ("address", normalize_address(ours.address) != normalize_address(theirs.address)),
        ("date of birth", ours.date_of_birth != theirs.date_of_birth),
        ("sex", ours.sex != theirs.sex),
    ) if differ]


def decide(ours: FourAttributes,
           candidates: Sequence[tuple[str, FourAttributes]]) -> Bind | Investigate:
    if not candidates:
        return Investigate("no resident in the registry has these four attributes")
    if len(candidates) > 1:
        return Investigate(f"{len(candidates)} residents match: never bind on a guess")
    link_code, theirs = candidates[0]
    differ = differences(ours, theirs)
    if differ:
        return Investigate(f"the registry's {', '.join(differ)} differ(s) from ours")
    return Bind(link_code)
