"""The decisions topic's records, sealed at rest. They are the platform's own state: ID codes,
and what an exchange waits with there, its query (link code B) and its answer (link code A),
kept for hours on every broker's disk, where the platform keeps no link code in the open (it
computes one per exchange). Sealed as they go to the topic and opened as they are read back,
each under the platform's decisions key, bound to its partition; a record written before them
(an Avro message or Batch, in the open) is read as it is."""

from __future__ import annotations

from dataclasses import replace

from cryptography.exceptions import InvalidTag

from processors.own_sealing import OwnSealer
from renkei.envelope import Send

SEALED = b"RKS\x01"  # what a sealed record begins with: no Avro message does (C3 01)


class UnsealableRecord(RuntimeError):
    """A sealed decision record this instance's keys do not open: its master keys are not those
    of the instance that sealed it (or the record was altered); it stops rather than decide
    without it."""


class DecisionSealer:
    def __init__(self, key: bytes) -> None:
        self._sealer = OwnSealer(key)

    def sealed(self, record: Send) -> Send:
        return replace(record, value=SEALED + self._sealer.seal(record.value, _partition(
            record.topic, record.partition)))

    def opened(self, value: bytes, topic: str, partition: int | None) -> bytes:
        """A decision record's value as it was before it was sealed (as it is, if it was not)."""
        if not value.startswith(SEALED):
            return value
        try:
            return self._sealer.open(value[len(SEALED):], _partition(topic, partition))
        except InvalidTag:
            raise UnsealableRecord(
                f"a record of {topic}-{partition} does not open under this instance's decisions "
                f"key: its master keys (`renkei keys init`) are not those of the platform that "
                f"wrote it") from None


def _partition(topic: str, partition: int | None) -> str:
    assert partition is not None  # a decision record's is always chosen (decider.partition_of)
    return f"{topic}-{partition}"
