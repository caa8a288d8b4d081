"""Residents as the registry holds them, their four attributes, and the changes they go through."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import date
from enum import IntEnum, StrEnum
from typing import Any


class Sex(IntEnum):
    """As the registry codes it (1 male, 2 female); the names are the Avro enum's symbols."""

    MALE = 1
    FEMALE = 2


@dataclass(frozen=True, slots=True)
class FourAttributes:
    """The four attributes (4情報) that bind a holder's record to a resident."""

    name: str
    address: str
    date_of_birth: date
    sex: Sex


@dataclass(frozen=True, slots=True)
class Resident:
    """One resident's current entry. `name` and `kana` put a full-width space between family and
    given name, as the registry writes them."""

    resident_code: str
    name: str
    kana: str
    address: str
    date_of_birth: date
    sex: Sex

    @property
    def four_attributes(self) -> FourAttributes:
        return FourAttributes(self.name, self.address, self.date_of_birth, self.sex)


class ChangeKind(StrEnum):
    MOVED = "moved"  # after: (address,)
    NAME_CHANGED = "name-changed"  # after: (name, kana)
    CODE_CHANGED = "code-changed"  # after: (resident code,)


_FIELDS = {ChangeKind.MOVED: ("address",), ChangeKind.NAME_CHANGED: ("name", "kana"),
           ChangeKind.CODE_CHANGED: ("resident_code",)}


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One change to a resident: `resident_code` is the code they had when it happened."""

    kind: ChangeKind
    resident_code: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    on: date
    seq: int = 0  # the registry's sequence number, once recorded


def fingerprint(event: ChangeEvent) -> str:
    """What tells a recorded change from any other at its sequence number (SHA-256 of all it
    says): a registry put back from an older copy numbers its new changes as the ones it lost."""
    said = [event.kind.value, event.resident_code, event.before, event.after,
            event.on.isoformat(), event.seq]
    return hashlib.sha256(json.dumps(said, ensure_ascii=False).encode()).hexdigest()


def change(resident: Resident, kind: ChangeKind, after: tuple[str, ...], on: date) -> ChangeEvent:
    """The event that changes `resident` as `kind` says, to `after`."""
    fields = _FIELDS[kind]
    if len(after) != len(fields):
        raise ValueError(f"a {kind} change sets {', '.join(fields)}")
    before = tuple(getattr(resident, name) for name in fields)
    return ChangeEvent(kind, resident.resident_code, before, after, on)


def apply(resident: Resident, event: ChangeEvent) -> Resident:
    """The resident after the event; the event must be about them as they are now."""
    fields = _FIELDS[event.kind]
    if event.resident_code != resident.resident_code or event.before != tuple(
            getattr(resident, name) for name in fields):
        raise ValueError(f"a {event.kind} event that does not fit this resident")
    changes: dict[str, Any] = dict(zip(fields, event.after, strict=True))
    return dataclasses.replace(resident, **changes)
