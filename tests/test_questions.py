"""A service's side of My Portal's questions, without Kafka: a question past its deadline is not
acted on, the answer is sealed to the question's own reply key alone, and a failure says nothing
of the question."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import acls, topics
from renkei import questions, sealing
from renkei.questions import NotFound, TooLate
from schemas.codec import CODEC
from schemas.messages import (
    FOUND,
    NOT_FOUND,
    REFUSED,
    TIMED_OUT,
    ChangeOfNumber,
    PersonalNumber,
    PortalAnswer,
    PortalQuery,
)

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
CODE = "12345678903"
SERVICE, PORTAL = X25519PrivateKey.generate(), X25519PrivateKey.generate()  # PORTAL: long-term
REPLY = X25519PrivateKey.generate()  # the portal's key for question q-1 alone
LOW_ORDER = (bytes(32), (1).to_bytes(32, "little"),
             bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"))
"""X25519 public keys of points of order 2, 4 and 8: the key exchange with each fails."""


@dataclass
class Service:
    """An answer that records what it was asked, and answers with `reply` or raises it; asked
    after the deadline, it has done nothing before."""

    reply: object
    asked: list[ChangeOfNumber] = field(default_factory=list)

    def __call__(self, request_id: str, question: bytes, late: bool) -> object:
        if late:
            raise TooLate()
        self.asked.append(CODEC.decode(question, ChangeOfNumber))
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def _sealed_question() -> bytes:
    return sealing.seal(sealing.public_bytes(SERVICE), CODEC.encode(ChangeOfNumber(
        CODE, "lost card")), "q-1")


def _answered(service: Service, deadline: datetime = NOW + timedelta(seconds=10),
              question: bytes | None = None) -> PortalAnswer:
    """The service's answer to `question` (as the portal writes it; by default one with the
    reply key REPLY)."""
    record = SimpleNamespace(topic=topics.AUTHORITY_PORTAL_IN, value=question or CODEC.encode(
        PortalQuery("q-1", deadline, _sealed_question(), sealing.public_bytes(REPLY))))
    (sent,) = questions.answered([record], acls.AUTHORITY, SERVICE,
                                 topics.AUTHORITY_PORTAL_OUT, service, NOW)
    assert (sent.topic, sent.key) == (topics.AUTHORITY_PORTAL_OUT, "q-1")
    return CODEC.decode(sent.value, PortalAnswer)


def test_the_answer_is_sealed_to_the_questions_reply_key_alone() -> None:
    service = Service(PersonalNumber("123456789018"))
    answer = _answered(service)
    assert answer.status == FOUND and service.asked == [ChangeOfNumber(CODE, "lost card")]
    assert b"123456789018" not in answer.sealed_answer
    opened = sealing.open_sealed(REPLY, answer.sealed_answer, "q-1")
    assert CODEC.decode(opened, PersonalNumber) == PersonalNumber("123456789018")
    for other in (PORTAL, SERVICE):
        with pytest.raises(sealing.CannotOpen):
            sealing.open_sealed(other, answer.sealed_answer, "q-1")


def test_a_question_without_a_reply_key_is_refused_not_acted_on() -> None:
    """An old portal's question (PortalQuery v1), or one whose reply key is no X25519 key, or a
    low-order point no answer can be sealed to: not answered to the portal's long-term key, nor
    acted on (no number given it cannot tell), but declined, saying why."""
    service = Service(PersonalNumber("123456789018"))
    old = CODEC.encode_record("PortalQuery", {
        "request_id": "q-1", "deadline": NOW + timedelta(seconds=10),
        "sealed_query": _sealed_question()}, version=1)
    unsealable = [CODEC.encode(PortalQuery("q-1", NOW + timedelta(seconds=10), _sealed_question(),
                                           key))
                  for key in (*LOW_ORDER, sealing.public_bytes(REPLY)[:16])]
    for question in (old, *unsealable):
        answer = _answered(service, question=question)
        assert (answer.status, answer.sealed_answer) == (REFUSED, b"")
        assert answer.detail == questions.DECLINED + questions.NO_REPLY_KEY
    assert service.asked == []


def test_a_question_past_its_deadline_is_not_acted_on() -> None:
    service = Service(PersonalNumber("123456789018"))
    answer = _answered(service, deadline=NOW - timedelta(milliseconds=1))
    assert (answer.status, answer.sealed_answer, service.asked) == (TIMED_OUT, b"", [])


def test_nobody_found_is_said_and_a_failure_says_nothing_of_the_question(
        caplog: pytest.LogCaptureFixture) -> None:
    assert _answered(Service(NotFound("no resident holds that card"))).detail == \
        "no resident holds that card"
    assert _answered(Service(NotFound("x"))).status == NOT_FOUND
    failed = _answered(Service(RuntimeError(f"resident {CODE} broke it")))
    assert failed.status == REFUSED and "RuntimeError" in failed.detail
    assert CODE not in failed.detail and CODE not in caplog.text and "q-1" in caplog.text


def test_a_question_whose_id_no_answer_could_carry_is_logged_not_answered(
        caplog: pytest.LogCaptureFixture) -> None:
    service = Service(PersonalNumber("123456789018"))
    record = SimpleNamespace(topic=topics.AUTHORITY_PORTAL_IN, value=CODEC.encode(PortalQuery(
        "q" * 600_000, NOW + timedelta(seconds=10), b"")))
    assert questions.answered([record], acls.AUTHORITY, SERVICE,
                              topics.AUTHORITY_PORTAL_OUT, service, NOW) == []
    assert service.asked == [] and "request id of 600000 characters" in caplog.text


def test_a_question_of_a_newer_schema_is_refused_unknown_schema_not_left_to_time_out(
        caplog: pytest.LogCaptureFixture) -> None:
    """A newer portal's question (a schema unknown here) was logged and skipped: its resident was
    told only that it timed out. It is refused UNKNOWN_SCHEMA under its request id (its first
    field), as the platform refuses a holder's message; one naming no request id, logged only."""
    service = Service(PersonalNumber("123456789018"))
    valid = CODEC.encode(PortalQuery("q-1", NOW + timedelta(seconds=10), _sealed_question(),
                                     sealing.public_bytes(REPLY)))
    newer = valid[:2] + b"\xfe" * 8 + valid[10:]  # another schema's fingerprint
    answer = _answered(service, question=newer)
    assert (answer.request_id, answer.status, answer.sealed_answer) == ("q-1", REFUSED, b"")
    assert answer.detail == "UNKNOWN_SCHEMA: unknown schema fingerprint fefefefefefefefe"
    assert service.asked == [] and "q-1 refused UNKNOWN_SCHEMA" in caplog.text
    nameless = SimpleNamespace(topic=topics.AUTHORITY_PORTAL_IN, value=newer[:10] + b"\x01")
    assert questions.answered([nameless], acls.AUTHORITY, SERVICE, topics.AUTHORITY_PORTAL_OUT,
                              service, NOW) == []
    assert "naming no request id" in caplog.text


def test_a_question_whose_id_holds_control_characters_is_logged_not_answered(
        caplog: pytest.LogCaptureFixture) -> None:
    """A request id of an allowed length with a control character (a line break, an escape) was
    answered, and written as it was into the service's log (a forged line after it) and the
    answer's key, where the platform refuses such an id in a holder's request (request_names.unfit).
    It is logged, without the id, and not answered; so is a newer portal's question under it."""
    service = Service(PersonalNumber("123456789018"))
    forged = "q-1\n2026-12-04 09:00:00,000 ERROR forged"
    assert len(forged) <= questions.REQUEST_ID_CHARS
    valid = CODEC.encode(PortalQuery(forged, NOW + timedelta(seconds=10), _sealed_question(),
                                     sealing.public_bytes(REPLY)))
    newer = valid[:2] + b"\xfe" * 8 + valid[10:]
    for value in (valid, newer):
        record = SimpleNamespace(topic=topics.AUTHORITY_PORTAL_IN, value=value)
        assert questions.answered([record], acls.AUTHORITY, SERVICE,
                                  topics.AUTHORITY_PORTAL_OUT, service, NOW) == []
    assert service.asked == [] and "forged" not in caplog.text
    assert caplog.text.count("control characters") == 2, caplog.text
