"""What the last `renkei audit verify` run here found of a store, kept for `audit query`.

A query finds entries by their columns (person, holder, pattern, outcome, time): an entry whose
column was edited under its signed bytes is not on the page of the value its bytes tell, and
nothing on the page shows it is missing. `verify` alone finds it, decoding every leaf (a query
reading each leaf for one person's would be a verify of the whole store). A query says whether
the store was verified whole, and holds the tree verified, or that entries may be missing.

Kept in the state folder of whoever verifies (the oversight body's), not in the store: an intruder
who edits the store's columns would edit a verdict kept there too. By the store's URL's hash (no
password kept), with the tree's size and root then: another store at the URL, or this one cut
short or rewritten since, has another root (or none) at that size, and is not taken as verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from audit.store import AuditStore, MissingNode
from renkei.state import private_dir, read_json, state_path, write_json

FILE = "verified.json"


@dataclass(frozen=True)
class Verified:
    """A verify of a store: when, the tree's size and root it checked, what it found (None:
    nothing)."""

    at: datetime
    size: int
    root: bytes
    verdict: str | None

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(timespec="milliseconds"), "tree_size": self.size,
                "root": self.root.hex(), "verdict": self.verdict}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verified:
        return cls(datetime.fromisoformat(data["at"]), int(data["tree_size"]),
                   bytes.fromhex(data["root"]), data["verdict"])


def _key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _kept(path: Path) -> dict[str, Any]:
    """The verifies kept, by store; none if the file is missing or damaged (unknown: said so)."""
    try:
        kept = read_json(path)
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}


def _root(store: AuditStore, size: int) -> bytes | None:
    """The store's root at `size`; None if it has none (cut short, a subtree hash missing)."""
    try:
        return store.root(size)
    except (MissingNode, ValueError):
        return None


def keep(url: str, store: AuditStore, size: int, verdict: str | None, at: datetime) -> None:
    """Keep what a verify of the store at `url` of `size` leaves found (`verdict`, None:
    nothing), in place of the one before."""
    root = _root(store, size)
    kept = _kept(state_path("audit", FILE))
    kept[_key(url)] = Verified(at, size, root or b"", verdict).to_json()
    write_json(private_dir("audit") / FILE, kept, private=True)


def last(url: str, store: AuditStore) -> Verified | None:
    """The last verify kept of the store at `url`, if it holds the tree that one checked (None:
    none kept, or the store has another root at its size: not the store, or not as verified)."""
    data = _kept(state_path("audit", FILE)).get(_key(url))
    try:
        verified = None if data is None else Verified.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None
    if verified is None or _root(store, verified.size) != verified.root:
        return None
    return verified
