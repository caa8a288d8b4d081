"""The legal pattern list as a file of sample rows, published to its compacted topic."""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path

from schemas.messages import LegalPattern

SAMPLE = Path(__file__).with_name("legal_patterns.toml")
MOST_VERSION = 2**31 - 1  # an Avro int's (LegalPattern.version)
FIELDS = tuple(f.name for f in fields(LegalPattern))  # a [[pattern]] table's, and no others
OPTIONAL = ("valid_to", "annex_item")  # a table may leave out
# of the versions to publish and those on the list, the ones to write (to_publish, not_listed)
Chosen = Callable[[Sequence[LegalPattern], Sequence[LegalPattern]], list[LegalPattern]]

log = logging.getLogger(__name__)


class BadPatternFile(ValueError):
    """A file that is not a legal pattern list; the message names it and what is wrong."""


def load(path: Path = SAMPLE) -> list[LegalPattern]:
    """The pattern versions of a TOML file of [[pattern]] tables, else BadPatternFile."""
    try:
        rows = tomllib.loads(path.read_text(encoding="utf-8"))["pattern"]
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError("'pattern' must be [[pattern]] tables, one per pattern version")
        return _once_each([_pattern(row) for row in rows])
    except KeyError as exc:
        raise BadPatternFile(f"{path}: missing {exc.args[0]!r}"
                             + (" tables" if exc.args[0] == "pattern" else "")) from exc
    except OSError as exc:
        raise BadPatternFile(f"{path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
        raise BadPatternFile(f"{path}: {exc}") from exc


def _pattern(row: dict[str, object]) -> LegalPattern:
    named = f"pattern {row['pattern_id']}" if "pattern_id" in row else "a [[pattern]] table"
    if unknown := sorted(set(row) - set(FIELDS)):
        raise ValueError(f"{named}: no pattern has {', '.join(map(repr, unknown))} (its fields: "
                         f"{', '.join(FIELDS)}): a field misspelt, a valid_to among them, "
                         "would be published as a version without it")
    if missing := [f for f in FIELDS if f not in row and f not in OPTIONAL]:
        raise ValueError(f"{named}: missing {', '.join(map(repr, missing))}")
    valid_from = row["valid_from"]
    valid_to = row.get("valid_to")
    if not isinstance(valid_from, datetime) or not (valid_to is None
                                                   or isinstance(valid_to, datetime)):
        raise ValueError(f"{named}: validity must be TOML datetimes")
    if any(t is not None and t.utcoffset() is None for t in (valid_from, valid_to)):
        raise ValueError(f"{named}: validity must be datetimes with their offset (+09:00): "
                         "a local one is no instant the broker's time can be judged against")
    if valid_to is not None and valid_to <= valid_from:
        raise ValueError(f"{named}: valid_to {valid_to.isoformat()} is not after valid_from "
                         f"{valid_from.isoformat()}: in force at no time")
    data_types = row["data_types"]
    if not isinstance(data_types, list) or not data_types or not all(
            isinstance(t, str) and t.strip() for t in data_types):
        raise ValueError(f"{named}: data_types must be a list of one or more names")
    version = row["version"]
    if isinstance(version, bool) or not isinstance(version, int) or not (
            1 <= version <= MOST_VERSION):
        raise ValueError(f"{named}: version must be a whole number from 1 to {MOST_VERSION}, "
                         f"not {version!r}")
    return LegalPattern(
        pattern_id=_text(row, "pattern_id", named), version=version,
        legal_basis=_text(row, "legal_basis", named), purpose=_text(row, "purpose", named),
        requester_role=_text(row, "requester_role", named),
        provider_role=_text(row, "provider_role", named), data_types=tuple(data_types),
        valid_from=valid_from, valid_to=valid_to,
        annex_item=_text(row, "annex_item", named) if "annex_item" in row else None,
    )


def _text(row: dict[str, object], field: str, named: str) -> str:
    """The row's `field`, if it is text (a TOML string), not blank, else ValueError naming it."""
    value = row[field]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{named}: {field} must be text (a quoted TOML string), not {value!r}")
    return value


def _once_each(versions: list[LegalPattern]) -> list[LegalPattern]:
    """The versions, none of them twice: one compaction key (key) for two would keep only the
    last, whichever the file meant."""
    seen: set[str] = set()
    for version in versions:
        if key(version) in seen:
            raise ValueError(f"pattern {version.pattern_id} version {version.version} is in the "
                             "file twice")
        seen.add(key(version))
    return versions


def to_publish(versions: Sequence[LegalPattern], published: Sequence[LegalPattern]
               ) -> list[LegalPattern]:
    """The versions of a file not on the list (`published`) as they are; BadPatternFile if it
    leaves out a version on the list: one stays there, for the audit's re-check of what it
    approved, and in force until its valid_to, so a list left out of the file (all of it, an
    empty one) would withdraw nothing while the operator took it as withdrawn."""
    there = {key(p): p for p in published}
    if left := sorted(there.keys() - {key(p) for p in versions}):
        raise BadPatternFile(f"{named(there[k] for k in left)} on the legal pattern list, not in "
                             "the file: a version stays on it, in force until its valid_to; "
                             "withdraw it by giving it one, nothing published")
    return [p for p in versions if there.get(key(p)) != p]


def not_listed(versions: Sequence[LegalPattern], published: Sequence[LegalPattern]
               ) -> list[LegalPattern]:
    """The versions not on the list (`published`) at all (by pattern and version), as a town's
    set-up publishes its sample: one on it, changed by an operator since (withdrawn by a valid_to)
    or left out of the versions (a new one), stays as it is, which a warning says in one line;
    written over, a version withdrawn would be back in force."""
    there = {key(p): p for p in published}
    given = {key(p): p for p in versions}
    if differ := sorted(k for k, p in there.items() if given.get(k) != p):
        log.warning("the legal pattern list differs from the versions to publish at %s: the list "
                    "is kept as it is, only versions not on it published",
                    named(there[k] for k in differ))
    return [p for p in versions if key(p) not in there]


def named(versions: Iterable[LegalPattern]) -> str:
    """Pattern versions as the audit log and messages name them: "P-001 v1, P-002 v3"."""
    return ", ".join(f"{p.pattern_id} v{p.version}" for p in versions)


def key(pattern: LegalPattern) -> str:
    """The compaction key: one entry per version, so the history stays for audit replay."""
    return f"{pattern.pattern_id}#{pattern.version}"
