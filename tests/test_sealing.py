"""Sealing answers in sessions: what one seal gave, the session gives, for a minute at most."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from renkei import holder_logs, sealing
from schemas.messages import HolderLogAnswer, HolderLogEntry


def _pair() -> tuple[X25519PrivateKey, bytes]:
    key = X25519PrivateKey.generate()
    return key, sealing.public_bytes(key)


def test_only_the_requester_opens_an_answer_and_only_under_its_request_id() -> None:
    key, public = _pair()
    sealed = sealing.SessionSealer().seal(public, b"taxable_income=1", "r-1")
    assert b"taxable_income" not in sealed
    assert sealing.SessionOpener(key).open(sealed, "r-1") == b"taxable_income=1"
    with pytest.raises(sealing.CannotOpen):
        sealing.SessionOpener(key).open(sealed, "r-2")
    with pytest.raises(sealing.CannotOpen):
        sealing.SessionOpener(_pair()[0]).open(sealed, "r-1")


def test_an_altered_or_cut_answer_cannot_be_opened() -> None:
    key, public = _pair()
    sealed = sealing.SessionSealer().seal(public, b"data", "r-1")
    opener = sealing.SessionOpener(key)
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]),  # the answer
                bytes([sealed[0] ^ 1]) + sealed[1:],  # the wrapped session key
                sealed[:sealing.WRAPPED + 5], b""):
        with pytest.raises(sealing.CannotOpen):
            opener.open(bad, "r-1")
    assert opener.open(sealed, "r-1") == b"data", "positive control"


def test_a_session_is_per_requester_and_replaced_after_its_messages() -> None:
    key, public = _pair()
    other = _pair()[1]
    sealer = sealing.SessionSealer(messages=3)
    sealed = [sealer.seal(public, b"%d" % i, f"r-{i}") for i in range(4)]
    wrapped = [s[:sealing.WRAPPED] for s in sealed]
    assert wrapped[0] == wrapped[1] == wrapped[2] != wrapped[3]
    assert sealer.seal(other, b"x", "r-9")[:sealing.WRAPPED] not in wrapped
    assert len({s[sealing.WRAPPED:sealing.WRAPPED + sealing.NONCE] for s in sealed}) == 4
    opener = sealing.SessionOpener(key, remembered=1)  # forgets, unwraps again: same answers
    assert [opener.open(s, f"r-{i}") for i, s in enumerate(sealed)] == [b"0", b"1", b"2", b"3"]


def test_a_session_is_replaced_after_its_time() -> None:
    public = _pair()[1]
    sealer = sealing.SessionSealer(seconds=0.0)
    assert sealer.seal(public, b"a", "r-1")[:sealing.WRAPPED] != sealer.seal(
        public, b"a", "r-1")[:sealing.WRAPPED]


def test_holder_log_entries_open_only_for_the_asker_and_a_resident_sees_no_operator() -> None:
    key, public = _pair()
    entry = HolderLogEntry("r-1", "2026-12-03T09:00:00+09:00", "PROVIDER", "staff-1", "term-1",
                           "nenkin", "P-037", "local_tax", '{"taxable_income": "1"}', None, "FOUND")
    for asked, known, seen in (("o-1", "o-1", entry),
                               ("resident:a-1", "a-1", replace(entry, operator="", terminal=""))):
        sealed = holder_logs.seal(public, asked, [entry])
        assert b"taxable_income" not in sealed
        answer = HolderLogAnswer(known, "sakura-town", datetime.now(UTC), (), sealed)
        assert holder_logs.opened(key, answer) == (seen,)
        for other_key, unreadable in ((key, replace(answer, request_id="o-2")),
                                      (key, replace(answer, sealed_entries=None)),
                                      (_pair()[0], answer)):
            with pytest.raises(sealing.CannotOpen):
                holder_logs.opened(other_key, unreadable)
