"""Bad input at scale: the fuzz corpus and its expected answers (pure), then a small run of it
against the session's broker, platform and holders."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from broker import config, topics
from broker.clients import KafkaAccess
from holders.client import INBOX_MESSAGES as INBOX
from holders.client import HolderClient
from renkei import fuzz_bytes, fuzz_records, fuzz_run
from renkei.fuzz_match import Answer, match
from renkei.fuzz_plan import Captured, corpus, expect
from renkei.fuzz_records import Vocabulary
from renkei.service_loop import producer_for
from renkei.town import Processes, Town
from renkei.window import Window
from schemas.codec import CODEC, MAX_BYTES
from schemas.messages import (
    BY_PERSONAL_NUMBER,
    BindingAnswer,
    BindingRequest,
    HolderLogAnswer,
    LinkageRequest,
    Ping,
    Pong,
    ProviderAnswer,
)

WORDS = Vocabulary(["ABCDEFGHJK1"], ["P-037", "P-074"], ["nenkin", "sakura-town"],
                   ["local_tax"])
NOW = datetime.now(UTC)


def _request(request_id: str = "r-1") -> bytes:
    return CODEC.encode(LinkageRequest(request_id, NOW, "ABCDEFGHJK1", "P-037", "sakura-town",
                                       "local_tax"))


def _answer(status: str = "FOUND", request_id: str = "r-2") -> bytes:
    return CODEC.encode(ProviderAnswer(request_id, b"ticket", "LINKCODE", status, b"sealed"))


CAPTURED = Captured([("nenkin", _request()), ("sakura-town", _answer()),
                     ("nenkin", CODEC.encode(Ping("p-1", NOW)))])


def test_the_codec_refusals_carry_its_reason_and_words() -> None:
    valid = _request()
    cases = {
        "MALFORMED": b"",
        "UNKNOWN_SCHEMA": valid[:2] + b"\xfe" * 8 + valid[10:],
        "OVERSIZED": valid + bytes(MAX_BYTES),
        "UNEXPECTED_MESSAGE": CODEC.encode(Pong("p", NOW, NOW)),
    }
    for reason, value in cases.items():
        bad = expect("nenkin", "bytes:x", value, {})
        named = {"MALFORMED": "", "UNEXPECTED_MESSAGE": "p"}.get(reason, "r-1")  # its first field
        assert (bad.refused, bad.decoded, bad.answers, bad.request_id) == (reason, None, 1, named)
        assert bad.detail
    assert expect("nenkin", "bytes:no-value", None, {}).refused == "MALFORMED"


def test_what_reads_is_answered_by_its_id_except_logs_and_late_answers() -> None:
    late = CAPTURED.answers()
    assert late == {("r-2", b"ticket", "LINKCODE"): "sakura-town"}
    assert expect("nenkin", "r", _request("x"), late).answers == 1
    assert expect("nenkin", "r", _request("x"), late).request_id == "x"
    log_answer = CODEC.encode(HolderLogAnswer("o-1", "nenkin", NOW, ()))
    assert expect("nenkin", "r", log_answer, late).answers == 0
    unfit_id = CODEC.encode(HolderLogAnswer("o-\x00", "nenkin", NOW, ()))
    assert expect("nenkin", "r", unfit_id, late).answers == 1, "refused MALFORMED at the door"
    assert expect("sakura-town", "r", _answer(), late).answers == 0, "a late answer: dropped"
    assert expect("nenkin", "r", _answer(), late).answers == 1, "another holder's: refused"
    assert expect("sakura-town", "r", _answer("TIMED_OUT"), late).answers == 1, "no answer status"
    assert expect("sakura-town", "r", _answer(request_id="r-3"), late).answers == 1


def test_each_mutation_damages_as_its_name_says() -> None:
    rng, value = random.Random(5), _request()
    assert fuzz_bytes.MUTATIONS["no-value"][0](rng, value, value) is None
    assert fuzz_bytes.empty(rng, value, value) == b""
    assert len(fuzz_bytes.oversized(rng, value, value)) > MAX_BYTES
    assert fuzz_bytes.verbatim(rng, value, value) == value
    for _ in range(50):
        assert len(fuzz_bytes.truncated(rng, value, value)) < len(value)
        flipped = fuzz_bytes.body_flip(rng, value, value)
        assert flipped[:10] == value[:10] and flipped != value
        assert fuzz_bytes.bad_magic(rng, value, value)[:2] != value[:2]


def test_the_corpus_is_reproducible_and_mixes_records_and_damaged_bytes() -> None:
    first = corpus(300, ["nenkin", "sakura-town"], CAPTURED, WORDS, seed=3)
    again = corpus(300, ["nenkin", "sakura-town"], CAPTURED, WORDS, seed=3)
    assert [(b.sender, b.origin) for b in first] == [(b.sender, b.origin) for b in again]
    assert len(first) == 300
    kinds = Counter(b.origin.split(":")[0] for b in first)
    assert kinds["record"] == 60 and kinds["bytes"] == 240
    assert {b.sender for b in first} == {"nenkin", "sakura-town"}
    assert {"MALFORMED", "UNKNOWN_SCHEMA"} <= {b.refused for b in first}
    schemas = {b.decoded for b in first}
    assert {"LinkageRequest", "ProviderAnswer", "BindingRequest", "Ping",
            "HolderLogAnswer"} <= schemas
    assert all((b.refused is None) == (b.decoded is not None) for b in first)


def test_schema_records_are_valid_by_their_schema() -> None:
    drawn = fuzz_records.draw(fuzz_records.outbox_records(WORDS), 50, seed=1)
    assert len(drawn) == 50
    for name, value in drawn:
        assert CODEC.decode_record(value)[0] == name


def test_matching_counts_missing_extra_and_unclear_answers() -> None:
    bad = [expect("nenkin", "bytes:empty", b"", {}),
           expect("nenkin", "bytes:empty", b"", {}),
           expect("nenkin", "record:LinkageRequest", _request("a"), {}),
           expect("nenkin", "record:LinkageRequest", _request("a"), {}),
           expect("nenkin", "record:Ping", CODEC.encode(Ping("p", NOW)), {})]
    words = bad[0].detail or ""
    answers = [Answer("nenkin", "", "Rejection", "MALFORMED", words),
               Answer("nenkin", "a", "Rejection", "INVALID_LINK_CODE", "no such code"),
               Answer("nenkin", "a", "Rejection", "DUPLICATE_REQUEST", ""),
               Answer("nenkin", "p", "Pong"),
               Answer("nenkin", "p", "Pong"),
               Answer("sakura-town", "", "Rejection", "MALFORMED", words)]
    found = match(bad, answers)
    assert (found.expected, found.answered, found.unanswered, found.extra,
            found.unclear) == (5, 4, 1, 2, 1)
    assert found.rejected_by_reason == Counter({"MALFORMED": 1, "INVALID_LINK_CODE": 1,
                                                "DUPLICATE_REQUEST": 1})
    (missing,) = found.unanswered_examples
    assert missing.startswith("nenkin: codec MALFORMED (not an Avro")


def test_a_late_answer_may_be_refused_once_as_expired_and_only_so() -> None:
    """A provider's intact answer sent again past its ticket's deadline (any run longer than the
    answer timeout) is refused INVALID_TICKET, expired: that answer is its due, not an extra."""
    late = CAPTURED.answers()
    bad = [expect("sakura-town", "bytes:replayed", _answer(), late) for _ in range(2)]
    expired = Answer("sakura-town", "r-2", "Rejection", "INVALID_TICKET",
                     "the ticket expired at 2026-12-05T04:00:00+00:00, the answer came at "
                     "2026-12-05T04:01:00+00:00")
    forged = Answer("sakura-town", "r-2", "Rejection", "INVALID_TICKET", "cannot be opened")
    found = match(bad, [expired, expired, expired, forged])
    assert (found.expected, found.answered, found.extra) == (2, 2, 2)
    assert match(bad, []).unanswered == 0


E2E_MESSAGES = 2_000


@pytest.mark.asyncio(loop_scope="session")
async def test_a_personal_number_the_authority_cannot_open_is_refused_to_its_holder(
        clients: dict[str, HolderClient]) -> None:
    """Found by the fuzzer: the numbering authority dropped such a look-up in silence."""
    request_id = str(uuid.uuid4())
    value = CODEC.encode(BindingRequest(request_id, datetime.now(UTC), BY_PERSONAL_NUMBER,
                                        b"not sealed to the authority"))
    producer = producer_for(KafkaAccess.of("nenkin"))
    async with Window(KafkaAccess.of(config.ADMIN), [topics.inbox("nenkin")]) as inbox:
        await producer.start()
        try:
            await (await producer.send(topics.outbox("nenkin"), value))
        finally:
            await producer.stop()
        answers: list[BindingAnswer] = []
        deadline = time.monotonic() + 30
        while not answers and time.monotonic() < deadline:
            answers += [m for r in await inbox.poll(0.5)
                        if isinstance(m := CODEC.decode(r.value, *INBOX), BindingAnswer)
                        and m.request_id == request_id]
    assert [(a.status, a.detail.split(":")[0]) for a in answers] == [
        ("REFUSED", "the personal number cannot be read")]


@pytest.mark.asyncio(loop_scope="session")
async def test_bad_input_at_scale_is_each_answered_and_nothing_stalls(
        clients: dict[str, HolderClient], town: Town, platform: Processes) -> None:
    started = time.monotonic()
    result = await fuzz_run.run(clients, town, platform, E2E_MESSAGES,
                                seed=uuid.uuid4().int % 10_000, lawful_every=50, warm_up=20)
    report = "\n".join(fuzz_run.summary(result))
    assert result.messages == E2E_MESSAGES, report
    # holder-log answers (about one in eight of the corpus) and intact late provider answers
    # are due no answer: the rest, at least four in five, must each be answered once
    assert result.answered == result.answers_due > E2E_MESSAGES * 0.8, report
    assert (result.unanswered, result.extra_answers, result.unclear_rejections) == (0, 0, 0), \
        report
    assert result.lawful_sent == E2E_MESSAGES // 50, report
    assert set(result.lawful_outcomes) <= {"FOUND", "NOT_FOUND"}, report
    assert sum(result.lawful_outcomes.values()) == result.lawful_sent, report
    assert result.lawful_outcomes["FOUND"] > result.lawful_sent / 2, report
    assert (result.died, result.tracebacks) == ([], {}), report
    assert (result.lag_end, result.stalled_partitions) == (0, {}), report
    assert time.monotonic() - started < 60, report
