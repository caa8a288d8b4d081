"""The declarative topic spec (broker/topics.toml) and the configs it implies."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

SPEC = Path(__file__).with_name("topics.toml")
HOLDER_OUTBOX = "renkei.holder.{holder}.out"
HOLDER_INBOX = "renkei.holder.{holder}.in"
AUDIT = "renkei.audit"
AUDIT_HEADS = "renkei.audit.heads"
PATTERNS = "renkei.patterns"
DIRECTORY = "renkei.directory"
REGISTRY_IN = "renkei.registry.in"
REGISTRY_OUT = "renkei.registry.out"
REGISTRY_PORTAL_IN = "renkei.registry.portal.in"
REGISTRY_PORTAL_OUT = "renkei.registry.portal.out"
AUTHORITY_IN = "renkei.authority.in"
AUTHORITY_PORTAL_IN = "renkei.authority.portal.in"
AUTHORITY_PORTAL_OUT = "renkei.authority.portal.out"
ALERTS = "renkei.alerts"
OVERSIGHT_OUT = "renkei.oversight.out"
OVERSIGHT_IN = "renkei.oversight.in"
PORTAL_OUT = "renkei.portal.out"
PORTAL_IN = "renkei.portal.in"
PORTAL_AUDIT = "renkei.portal.audit"
OUTBOX_PATTERN = re.compile(r"renkei\.holder\.(?P<holder>[a-z0-9][a-z0-9-]*)\.out")

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
             "y": 365 * 86_400_000 + 6 * 3_600_000}
SEGMENTS_PER_RETENTION = 10  # a record outlives its retention by at most a tenth of it
KAFKA_SEGMENT_MS = 7 * 86_400_000  # Kafka's default segment.ms: the longest a segment stays open


def duration_ms(text: str) -> int:
    """'7y', '3d', '12h' → milliseconds (a year is 365.25 days)."""
    found = re.fullmatch(r"(\d+)(ms|s|m|h|d|y)", text.strip())
    if not found:
        raise ValueError(f"bad duration {text!r}: write e.g. 7y, 3d, 12h")
    return int(found.group(1)) * _UNITS_MS[found.group(2)]


def segment_ms(retention_ms: int) -> int:
    """How long a segment takes records before it rolls: a tenth of the retention, at most 7d."""
    # Kafka deletes a segment once its newest record is past the retention: with its default
    # 7-day roll, a topic written steadily kept records up to 7 days past a 6-hour retention
    return min(retention_ms // SEGMENTS_PER_RETENTION, KAFKA_SEGMENT_MS)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    purpose: str
    partitions: int
    replication: int
    min_insync: int
    cleanup: str
    retention: str | None = None
    log_append_time: bool = False
    history_for: str | None = None  # a topic whose records are re-checked by this one's history

    def for_cluster(self, size: int) -> TopicSpec:
        """This spec on a cluster of `size` nodes: replication capped at the size."""
        replication = min(self.replication, size)
        min_insync = max(1, min(self.min_insync, replication - 1))
        return replace(self, replication=replication, min_insync=min_insync)

    def configs(self) -> dict[str, str]:
        configs = {
            "cleanup.policy": self.cleanup,
            "min.insync.replicas": str(self.min_insync),
        }
        if self.retention is not None:
            retention_ms = duration_ms(self.retention)
            configs["retention.ms"] = str(retention_ms)
            configs["segment.ms"] = str(segment_ms(retention_ms))
        if self.log_append_time:
            configs["message.timestamp.type"] = "LogAppendTime"
        if self.history_for is not None:
            configs["min.compaction.lag.ms"] = str(kept_ms(self.history_for))
        return configs


def _load() -> tuple[list[TopicSpec], list[TopicSpec]]:
    data = tomllib.loads(SPEC.read_text(encoding="utf-8"))
    return ([TopicSpec(**t) for t in data.get("topic", [])],
            [TopicSpec(**t) for t in data.get("holder_topic", [])])


def platform_topics() -> list[TopicSpec]:
    return _load()[0]


def holder_topics(holder: str) -> list[TopicSpec]:
    return [
        TopicSpec(**{**spec.__dict__, "name": spec.name.format(holder=holder)})
        for spec in _load()[1]
    ]


def longest_retention_ms() -> int:
    """The longest retention of any topic in the spec, holders' topics among them."""
    platform, holders = _load()
    specs = [*platform, *holders]
    return max(duration_ms(s.retention) for s in specs if s.retention is not None)


def outbox_kept_ms() -> int:
    """The longest a holder's outbox keeps a record: its retention, and the tenth of it a
    segment may hold the record past that (segment_ms)."""
    return kept_ms(HOLDER_OUTBOX)


def inbox_kept_ms() -> int:
    """The longest a holder's inbox keeps a record (an answer its server reads late), as
    outbox_kept_ms."""
    return kept_ms(HOLDER_INBOX)


def kept_ms(name: str) -> int:
    """The longest the topic `name` of the spec (a holder's as its template names it) keeps a
    record: its retention, and the tenth of it a segment may hold the record past that."""
    platform, holders = _load()
    spec, = (s for s in [*platform, *holders] if s.name == name)
    assert spec.retention is not None, f"{name} is kept for a time"
    retention_ms = duration_ms(spec.retention)
    return retention_ms + segment_ms(retention_ms)


def outbox(holder: str) -> str:
    return HOLDER_OUTBOX.format(holder=holder)


def inbox(holder: str) -> str:
    return HOLDER_INBOX.format(holder=holder)


def holder_of_outbox(topic: str) -> str | None:
    """The holder whose outbox `topic` is (only that holder's principal may write it)."""
    found = OUTBOX_PATTERN.fullmatch(topic)
    return found.group("holder") if found else None


def holder_of_source(source: str) -> str | None:
    """The holder whose outbox a record came from, by its source (topic:partition:offset,
    envelope.Incoming.source)."""
    return holder_of_outbox(source.rsplit(":", 2)[0])
