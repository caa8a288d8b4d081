"""The legal pattern list as a file of sample rows, published to its compacted topic."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path

from schemas.messages import LegalPattern

SAMPLE = Path(__file__).with_name("legal_patterns.toml")


class BadPatternFile(ValueError):
    """A file that is not a legal pattern list; the message names it and what is wrong."""


def load(path: Path = SAMPLE) -> list[LegalPattern]:
    """The pattern versions of a TOML file of [[pattern]] tables, else BadPatternFile."""
    try:
        rows = tomllib.loads(path.read_text(encoding="utf-8"))["pattern"]
        return [_pattern(row) for row in rows]
    except KeyError as exc:
        raise BadPatternFile(f"{path}: missing {exc.args[0]!r}"
                             + (" tables" if exc.args[0] == "pattern" else "")) from exc
    except OSError as exc:
        raise BadPatternFile(f"{path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
        raise BadPatternFile(f"{path}: {exc}") from exc


def _pattern(row: dict[str, object]) -> LegalPattern:
    valid_from = row["valid_from"]
    valid_to = row.get("valid_to")
    if not isinstance(valid_from, datetime) or not (valid_to is None
                                                   or isinstance(valid_to, datetime)):
        raise ValueError(f"pattern {row.get('pattern_id')}: validity must be TOML datetimes")
    data_types = row["data_types"]
    if not isinstance(data_types, list):
        raise ValueError(f"pattern {row.get('pattern_id')}: data_types must be a list")
    return LegalPattern(
        pattern_id=str(row["pattern_id"]), version=int(str(row["version"])),
        legal_basis=str(row["legal_basis"]), purpose=str(row["purpose"]),
        requester_role=str(row["requester_role"]), provider_role=str(row["provider_role"]),
        data_types=tuple(str(t) for t in data_types), valid_from=valid_from,
        valid_to=valid_to, annex_item=str(row["annex_item"]) if "annex_item" in row else None,
    )


def key(pattern: LegalPattern) -> str:
    """The compaction key: one entry per version, so the history stays for audit replay."""
    return f"{pattern.pattern_id}#{pattern.version}"
