"""The decisions topic's records sealed at rest (processors.decision_sealing), without Kafka."""

from __future__ import annotations

import pytest

from processors import decider
from processors.context import Context
from processors.decision_sealing import SEALED, DecisionSealer, UnsealableRecord
from processors.keys import MasterKeys
from processors.platform import sealed
from renkei.envelope import Send
from schemas.codec import CODEC
from schemas.messages import Sweep
from tests.test_decider import NOW

KEYS = MasterKeys.generate()
WAITING = b"ID code ABC98765XYZ, link code 369PQRST246"  # what a record holds


def test_a_decision_record_is_sealed_for_its_partition_and_opens_there_alone() -> None:
    sealer = DecisionSealer(KEYS.decisions_key())
    record = sealer.sealed(Send(decider.DECISIONS, "r-1", WAITING, 3))
    assert record.value.startswith(SEALED) and b"ABC98765XYZ" not in record.value
    assert b"369PQRST246" not in record.value
    assert sealer.opened(record.value, decider.DECISIONS, 3) == WAITING
    with pytest.raises(UnsealableRecord, match=f"a record of {decider.DECISIONS}-4"):
        sealer.opened(record.value, decider.DECISIONS, 4)  # copied to another partition
    with pytest.raises(UnsealableRecord, match="master keys"):
        DecisionSealer(MasterKeys.generate().decisions_key()).opened(record.value,
                                                                     decider.DECISIONS, 3)
    for cut in (0, 5, 12):  # altered to fewer bytes than a nonce (and a tag)
        with pytest.raises(UnsealableRecord, match=f"a record of {decider.DECISIONS}-3"):
            sealer.opened(record.value[:len(SEALED) + cut], decider.DECISIONS, 3)


def test_a_record_written_in_the_open_before_is_read_as_it_is() -> None:
    """Records sealed at rest came with this version: those an instance of the one before wrote
    (the topic keeps them for hours) are Avro messages or Batches, read as they were."""
    plain = Send(decider.DECISIONS, None, CODEC.encode(Sweep(NOW, ("r-1",))), 2)
    assert DecisionSealer(KEYS.decisions_key()).opened(plain.value, decider.DECISIONS, 2) == (
        plain.value)


def test_the_platform_seals_what_goes_to_the_decisions_topic_and_nothing_else() -> None:
    ctx = Context.of(KEYS)
    decision = Send(decider.DECISIONS, "r-1", WAITING, 1, message="its event")
    query = Send("renkei.holder.town.in", "r-1", WAITING)
    to_topic, to_holder = sealed([decision, query], ctx)
    assert to_holder is query
    assert (to_topic.topic, to_topic.key, to_topic.partition, to_topic.message) == (
        decision.topic, "r-1", 1, "its event")
    assert ctx.decisions.opened(to_topic.value, decider.DECISIONS, 1) == WAITING
