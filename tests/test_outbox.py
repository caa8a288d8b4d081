"""A holder's outbox, without Kafka: no message a holder writes, however its request id is chosen,
stops the platform; the sender always hears back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audit.events import AccessLogEvent
from broker import topics
from processors import linkage, outbox
from processors.approval import PatternList
from processors.context import Context
from processors.isolation import isolated
from processors.keys import MasterKeys
from processors.platform import decoded, relayed
from renkei.envelope import Incoming, Send
from renkei.request_names import REQUEST_ID_CHARS
from schemas.codec import CODEC, MAX_BYTES
from schemas.messages import (
    BY_ATTRIBUTES,
    FOUND,
    BindingRequest,
    HolderEntry,
    HolderLogAnswer,
    HolderLogRequest,
    LegalPattern,
    LinkageRequest,
    Ping,
    Pong,
    ProviderAnswer,
    Refusal,
    RegistryAnswer,
    Rejection,
    RekeyRequest,
    Suspension,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOLDER = "nenkin"
HUGE = "X" * 470_000  # its message fits the codec; every answer to it, as it was, did not


@pytest.fixture(scope="module")
def ctx() -> Context:
    keys = MasterKeys.generate()
    context = Context.of(keys)
    context.directory = {h: HolderEntry(h, h, "role", h, 0, b"k" * 32, False, True, NOW)
                         for h in (HOLDER, "town")}
    return context


def _incoming(message: object) -> Incoming:
    value = CODEC.encode(message)
    assert len(value) <= MAX_BYTES
    return Incoming(topics.outbox(HOLDER), 0, 5, NOW, value)


@pytest.mark.parametrize("message", [
    LinkageRequest(HUGE, NOW, "ABC98765XYZ", "P-037", "town", "local_tax"),
    ProviderAnswer(HUGE, b"ticket", "ABC98765XYZ", FOUND, b"sealed"),
    BindingRequest(HUGE, NOW, BY_ATTRIBUTES, b"sealed query"),
    RekeyRequest(HUGE, NOW, 0, ("ABC98765XYZ",)),
    HolderLogAnswer(HUGE, HOLDER, NOW, ()),
    Ping(HUGE, NOW),
], ids=lambda message: type(message).__name__)
def test_a_request_id_too_long_to_answer_is_refused_under_a_cut_id(message: object,
                                                                    ctx: Context) -> None:
    out = outbox.handle([_incoming(message)], ctx, NOW)
    assert [s.topic for s in out] == [topics.inbox(HOLDER), topics.AUDIT]
    rejection = CODEC.decode(out[0].value, Rejection)
    assert rejection.reason == "MALFORMED" and str(len(HUGE)) in rejection.detail
    assert rejection.request_id == HUGE[:REQUEST_ID_CHARS]


@pytest.mark.parametrize("message", [
    LinkageRequest("r-\x00", NOW, "ABC98765XYZ", "P-037", "town", "local_tax"),
    ProviderAnswer("r-\n", b"ticket", "ABC98765XYZ", FOUND, b"sealed"),
    BindingRequest("r-\x1b", NOW, BY_ATTRIBUTES, b"sealed query"),
    RekeyRequest("r-\x85", NOW, 0, ("ABC98765XYZ",)),
    HolderLogAnswer("r-\x7f", HOLDER, NOW, ()),
    Ping("r-\t", NOW),
], ids=lambda message: type(message).__name__)
def test_a_request_id_with_control_characters_is_refused_malformed(message: Any,
                                                                   ctx: Context) -> None:
    """A binding's or a re-keying's id with a control character went on, its events under it
    (the audit store keeps an id's column text escaped and cut: such ids collide sooner), as
    every message's but a linkage request's: each is refused MALFORMED at the door."""
    out = outbox.handle([_incoming(message)], ctx, NOW)
    assert [s.topic for s in out] == [topics.inbox(HOLDER), topics.AUDIT]
    rejection = CODEC.decode(out[0].value, Rejection)
    assert (rejection.reason, rejection.request_id) == ("MALFORMED", message.request_id)
    assert rejection.detail == "the request id holds control characters"


NEAR = MAX_BYTES - 200  # bytes of a field taking its message just under the codec's limit


@pytest.mark.parametrize("message", [
    LinkageRequest("r-1", NOW, "ABC98765XYZ", "P-037", "town", "X" * NEAR),
    ProviderAnswer("r-1", b"ticket", "ABC98765XYZ", FOUND, bytes(NEAR)),
    BindingRequest("r-1", NOW, BY_ATTRIBUTES, bytes(NEAR)),
], ids=lambda message: type(message).__name__)
def test_a_message_the_platform_could_not_decide_within_the_limit_is_refused_oversized(
        message: object, ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    """Just under the codec's limit, it fits; its decision event (with its source and times)
    did not: an INTERNAL_ERROR with tracebacks, its batch handled again one by one (what the
    chaos fuzz found once its records were drawn near the limit)."""
    out = outbox.handle([_incoming(message)], ctx, NOW)
    assert [s.topic for s in out] == [topics.inbox(HOLDER), topics.AUDIT]
    rejection = CODEC.decode(out[0].value, Rejection)
    assert (rejection.reason, rejection.request_id) == ("OVERSIZED", "r-1")
    assert f"at most {outbox.MOST_DECIDED_BYTES:,}" in rejection.detail
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]


def test_a_request_id_of_backslashes_too_long_in_the_audit_store_is_refused_malformed(
        ctx: Context) -> None:
    """An id of 128 backslashes was fit, but the audit store keys an event by its id with each
    backslash escaped as two, cut at 256 characters: every event of the request, its approval
    and its answer, shared one key, the answer's dropped. An id longer than REQUEST_ID_CHARS so
    escaped is MALFORMED; one within it is not."""
    out = outbox.handle([_incoming(Ping("\\" * 65, NOW)),
                         _incoming(Ping("\\" * 64, NOW))], ctx, NOW)
    rejection, pong = CODEC.decode(out[0].value, Rejection), CODEC.decode(out[2].value, Pong)
    assert (rejection.reason, rejection.request_id) == ("MALFORMED", "\\" * 65)
    assert "130 characters" in rejection.detail and pong.request_id == "\\" * 64


@dataclass(frozen=True)
class Record:
    value: bytes
    topic: str


@pytest.mark.parametrize(("topic", "message"), [
    (topics.OVERSIGHT_OUT, HolderLogRequest(HUGE, NOW, (HOLDER,), ("r-1",), "番号法19条14号")),
    (topics.PORTAL_OUT, HolderLogRequest(HUGE, NOW, (HOLDER,), ("r-1",), "番号法19条14号")),
    (topics.REGISTRY_OUT, RegistryAnswer(HUGE, HOLDER, FOUND, "", ())),
], ids=["oversight", "portal", "registry"])
def test_the_platforms_other_inputs_drop_a_request_id_too_long_to_answer(
        topic: str, message: Any) -> None:
    kept = replace(message, request_id="o" * REQUEST_ID_CHARS)
    records = [Record(CODEC.encode(message), topic), Record(CODEC.encode(kept), topic)]
    assert decoded(records, type(message)) == [kept]


def test_a_registry_answer_too_large_to_decide_is_dropped() -> None:
    """One just under the codec's limit, stamped with its times for the decider, went over it
    outside any isolation: the platform stopped, and again at every start."""
    big = RegistryAnswer("r-1", HOLDER, FOUND, "x" * (MAX_BYTES - 100), ())
    kept = RegistryAnswer("r-2", HOLDER, FOUND, "", ())
    records = [Record(CODEC.encode(big), topics.REGISTRY_OUT),
               Record(CODEC.encode(kept), topics.REGISTRY_OUT)]
    assert decoded(records, RegistryAnswer, outbox.MOST_DECIDED_BYTES) == [kept]


def test_an_item_whose_fallback_fails_too_is_dropped_and_the_others_go_on() -> None:
    def handle(items: list[int]) -> list[Send]:
        if 2 in items:
            raise ValueError("unforeseen")
        return [Send("done", None, bytes([i])) for i in items]

    def failed(item: int, exc: Exception) -> list[Send]:
        raise ValueError("its answer cannot be made either")

    assert [s.value for s in isolated([1, 2, 3], handle, failed)] == [b"\x01", b"\x03"]


def test_a_holder_named_for_its_logs_is_judged_as_of_the_requests_broker_time(
        ctx: Context) -> None:
    """A holder named in a request for its logs was judged by the directory as it stands when
    the request is read: read again after a take-over, suspended meanwhile, refused to the asker
    though it had been asked. As of the request's broker time: asked if it was active then,
    refused if it was suspended then, since that suspension began, resumed since or not."""
    asked, ms = HolderLogRequest("a-1", NOW, (HOLDER,), ("r-1",), "番号法19条14号"), \
        timedelta(milliseconds=1)
    later = replace(ctx.directory[HOLDER], active=False, inactive_since=NOW + ms)
    earlier = replace(ctx.directory[HOLDER], inactive_since=NOW + 2 * ms,
                      resumed_at=NOW + 3 * ms, suspensions=(Suspension(NOW - ms, NOW + ms),))
    for entry, told in ((later, None), (earlier, NOW - ms)):
        out = relayed([(asked, NOW)], [(asked, NOW)], {HOLDER: entry}, NOW + 4 * ms)
        refusals = [s.message for s in out if isinstance(s.message, HolderLogAnswer)]
        if told is None:
            assert [s.topic for s in out] == [topics.AUDIT, topics.inbox(HOLDER),
                                              topics.inbox(HOLDER)]
        else:
            assert [(r.refused, r.inactive_since) for r in refusals] == [("SUSPENDED", told)] * 2


def test_a_request_or_application_that_cannot_be_relayed_costs_only_itself(ctx: Context) -> None:
    """An application whose marked copy is over the codec's limit: dropped, the rest relayed."""
    asked = HolderLogRequest("a-1", NOW, (HOLDER,), ("r-1",), "番号法19条14号")
    bare = replace(asked, request_id="a-2", request_ids=("",))
    room = MAX_BYTES - len(CODEC.encode(bare)) - 2  # the id's length takes 2 bytes more then
    full = replace(bare, request_ids=("r" * room,))
    assert len(CODEC.encode(full)) == MAX_BYTES
    out = relayed([(asked, NOW)], [(full, NOW), (asked, NOW)], ctx.directory, NOW)
    assert [(s.topic, s.key) for s in out] == [
        (topics.AUDIT, "a-1"), (topics.inbox(HOLDER), "a-1"),
        (topics.inbox(HOLDER), "resident:a-1")]


BASIS = "番号法 別表第二 31"
ASKED = LinkageRequest("r-1", NOW, "ABC98765XYZ", "P-037", "town", "local_tax")


def _handled_listed(incoming: Incoming, ctx: Context) -> list[Send]:
    """`incoming` handled while the patterns list only P-037 (for requesters of another role)."""
    listed = LegalPattern("P-037", 1, BASIS, "年金給付", "pension", "role", ("local_tax",),
                          NOW - timedelta(days=1), None)
    before, ctx.patterns = ctx.patterns, PatternList([listed])
    try:
        return outbox.handle([incoming], ctx, NOW)
    finally:
        ctx.patterns = before


@pytest.mark.parametrize(("message", "reason"), [
    (replace(ASKED, request_id="r-\x00"), "MALFORMED"),
    (replace(ASKED, link_code="X" * NEAR), "OVERSIZED"),
    (ASKED, "NOT_PERMITTED"),
], ids=["malformed id", "oversized", "not permitted"])
def test_a_refused_requests_access_log_event_names_what_it_asked(
        message: LinkageRequest, reason: str, ctx: Context) -> None:
    """Refused at the door (its id, its size) its event named nothing the request said, refused
    at approval no legal basis: an auditor or the resident could not tell what was attempted.
    Each names its legal pattern and that pattern's basis, provider and data type now, and
    never its link code."""
    out = _handled_listed(_incoming(message), ctx)
    logged = out[-1].value if out[-1].topic == topics.AUDIT else CODEC.decode(
        out[-1].value, Refusal).logged
    event = CODEC.decode(logged, AccessLogEvent)
    assert (event.outcome, event.reason) == ("REJECTED", reason)
    assert (event.pattern_id, event.legal_basis, event.provider, event.data_type) == (
        "P-037", BASIS, "town", "local_tax")
    assert message.link_code[:11].encode() not in logged


def _refused_event(value: bytes, ctx: Context) -> AccessLogEvent:
    out = _handled_listed(Incoming(topics.outbox(HOLDER), 0, 5, NOW, value), ctx)
    assert [s.topic for s in out] == [topics.inbox(HOLDER), topics.AUDIT]
    assert b"ABC98765XYZ" not in out[1].value  # its link code: never in the log
    return CODEC.decode(out[1].value, AccessLogEvent)


NAMED = ("P-037", BASIS, "town", "local_tax")
NOTHING = (None, None, None, None)


@pytest.mark.parametrize(("value", "said"), [
    (CODEC.encode(ASKED) + b"\x00", ("LINKAGE", "MALFORMED", "r-1", NAMED)),
    (CODEC.encode(Pong("r-3", NOW, NOW)), ("MESSAGE", "UNEXPECTED_MESSAGE", "r-3", NOTHING)),
    (CODEC.encode(ASKED)[:2] + bytes(8) + CODEC.encode(ASKED)[10:],
     ("MESSAGE", "UNKNOWN_SCHEMA", "r-1", NOTHING)),
], ids=["linkage request unread to its end", "unexpected", "unknown schema"])
def test_a_message_the_codec_refuses_is_logged_with_what_its_bytes_say(
        value: bytes, said: tuple[str, str, str, tuple[str | None, ...]], ctx: Context) -> None:
    """A message the codec refused was logged as a MESSAGE under no request id (but one of an
    unknown schema), naming nothing: an auditor could not tell whose request it was nor what it
    asked. Its event names its kind, its request id and a linkage request's pattern, basis,
    provider and data type, as far as its bytes tell them; never its link code."""
    event = _refused_event(value, ctx)
    assert (event.kind, event.reason, event.request_id, (
        event.pattern_id, event.legal_basis, event.provider, event.data_type)) == said


def test_a_linkage_request_the_platform_could_not_handle_is_logged_with_what_it_asked(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """An INTERNAL_ERROR was logged as a MESSAGE naming nothing the request said."""
    def unforeseen(*_: object) -> list[Send]:
        raise RuntimeError("unforeseen")

    monkeypatch.setattr(linkage, "requests", unforeseen)
    event = _refused_event(CODEC.encode(ASKED), ctx)
    assert (event.kind, event.reason, event.request_id, (
        event.pattern_id, event.legal_basis, event.provider, event.data_type)) == (
        "LINKAGE", "INTERNAL_ERROR", "r-1", NAMED)


def test_a_request_whose_patterns_cannot_be_read_is_still_answered(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure in the legal pattern list's look-up failed the request, then the INTERNAL_ERROR
    naming what it asked (the same look-up): its sender never heard back. It is answered,
    naming what it can."""
    def unreadable(*_: object) -> None:
        raise RuntimeError("unforeseen")

    monkeypatch.setattr(PatternList, "in_force", unreadable)
    event = _refused_event(CODEC.encode(ASKED), ctx)
    assert (event.reason, event.request_id, event.pattern_id) == ("INTERNAL_ERROR", "r-1", None)
