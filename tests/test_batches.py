"""Batches: the platform sends a poll's access-log events and decision records as one record
per topic, partition and mark, and their readers take each message as if it had come alone."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from audit.consumer import read_audit
from audit.events import AccessLogEvent
from broker import topics
from processors.access_log import logged
from processors.decider import DECISIONS
from renkei.envelope import BATCH_BYTES, Send, batched, readable, unpacked
from schemas.codec import CODEC, MAGIC, MAX_BYTES, NewerVersion
from schemas.messages import Batch

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BATCHED = (topics.AUDIT, DECISIONS)
MARK = (("renkei-decided", b"12345678"),)


@dataclass(frozen=True)
class Record:
    value: bytes
    topic: str = topics.AUDIT
    partition: int = 0
    offset: int = 0


def _event(n: int, reason: str | None = None) -> Send:
    return logged(f"req-{n}", "approved", AT, "LINKAGE", "APPROVED", "nenkin", reason=reason,
                  pattern_id="P-037", provider="sakura-town", data_type="local_tax")


def _decision(n: int, partition: int) -> Send:
    return Send(DECISIONS, f"req-{n}", f"decision {n}".encode(), partition, MARK)


def test_a_polls_messages_go_as_one_record_per_topic_partition_and_mark() -> None:
    query = Send(topics.inbox("sakura-town"), "req-1", b"query")
    unmarked = Send(DECISIONS, "req-9", b"for the owner", 1)
    sends = [_event(1), _decision(1, 1), query, _event(2), _decision(2, 2), _decision(3, 1),
             unmarked, _event(3)]
    out = batched(sends, BATCHED)
    assert out[0] == query
    audit, first, second, alone = out[1:]
    assert (audit.topic, audit.partition, audit.headers) == (topics.AUDIT, None, ())
    assert unpacked(audit.value) == [sends[i].value for i in (0, 3, 7)]
    assert (first.topic, first.partition, first.headers) == (DECISIONS, 1, MARK)
    assert unpacked(first.value) == [b"decision 1", b"decision 3"]
    assert second == sends[4], "alone in its partition: as it was"
    assert alone == unmarked, "another mark: not in the same batch"


def test_a_lone_message_goes_as_it_is_and_reads_as_itself() -> None:
    sends = [_event(1), Send(topics.inbox("nenkin"), "req-1", b"answer")]
    assert set(batched(sends, BATCHED)) == set(sends)
    assert unpacked(sends[0].value) == [sends[0].value]
    assert unpacked(b"not even a message") == [b"not even a message"]


def test_many_messages_go_in_batches_that_each_fit_one_record() -> None:
    sends = [_event(n, reason="x" * 2000) for n in range(300)]
    out = batched(sends, BATCHED)
    assert len(out) > 1
    assert all(sum(map(len, unpacked(o.value))) <= BATCH_BYTES for o in out)
    assert [v for o in out for v in unpacked(o.value)] == [s.value for s in sends]


def test_a_message_near_the_codecs_limit_goes_as_it_is_among_others() -> None:
    """Alone in its run (over BATCH_BYTES), it was wrapped in a Batch of one, whose bytes took
    it over the codec's limit: any holder's request that size, read in one poll with another of
    its decision partition (a backlog at a restart), stopped the platform at every start."""
    huge = Send(DECISIONS, "req-big", bytes(MAX_BYTES - 4), 3, MARK)
    sends = [_decision(1, 3), huge, _decision(2, 3)]
    out = batched(sends, BATCHED)
    assert out[1] == huge
    assert [v for o in out for v in unpacked(o.value)] == [s.value for s in sends]


def test_the_audit_consumer_reads_each_event_of_a_batch_and_skips_only_the_unreadable_one(
        caplog: pytest.LogCaptureFixture) -> None:
    good = [_event(n).value for n in range(3)]
    batch = CODEC.encode(Batch((good[0], good[2][:-3], good[1])))  # a corrupt one between
    with caplog.at_level(logging.ERROR):
        items = read_audit([Record(batch), Record(good[2], offset=1)])
    assert [value for _, value in items] == good
    assert [event for event, _ in items] == [
        CODEC.decode(value, AccessLogEvent) for value in good]
    assert "skipped an unreadable audit event at renkei.audit:0:0" in caplog.text


def test_the_audit_consumer_stops_at_an_event_a_newer_version_wrote() -> None:
    """An audit consumer older than the platform skipped an access-log event of a schema it did
    not know as unreadable, and committed past it: lost to the store for good. It stops, the
    event left for it upgraded."""
    newer = MAGIC + bytes(8) + b"\x02"  # a schema no version here knows
    for value in (newer, CODEC.encode(Batch((_event(0).value, newer)))):
        with pytest.raises(NewerVersion, match="this audit reader cannot read"):
            read_audit([Record(_event(1).value), Record(value, offset=1)])


def test_a_service_reads_each_message_it_expects_and_logs_and_skips_any_other(
        caplog: pytest.LogCaptureFixture) -> None:
    records = [Record(_event(0).value), Record(b"\xc3\x01garbage"),
               Record(CODEC.encode(Batch(()))), Record(_event(1).value)]
    with caplog.at_level(logging.ERROR):
        read = list(readable(records, AccessLogEvent, "audit event"))
    assert [event.request_id for event in read] == ["req-0", "req-1"]
    assert caplog.text.count("an unreadable audit event") == 2
