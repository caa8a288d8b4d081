"""Sealing answers in sessions: what one seal gave, the session gives, for a minute at most;
and whatever is sealed, its sealed length does not tell how long it is."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from holders.samples import SAMPLES
from registry.generate import Simulator, holder_spelling
from registry.residents import FourAttributes, Sex
from renkei import holder_logs, sealing
from renkei.signers import signed_by
from renkei.windows import CLOCK_SKEW, SIGNING_GRACE
from schemas.codec import CODEC
from schemas.messages import (
    HolderEntry,
    HolderLogAnswer,
    HolderLogEntry,
    Payload,
    PersonalNumber,
    ResidentCode,
)


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
        assert holder_logs.opened(key, answer, ("r-1",)) == (seen,)
        assert holder_logs.opened(key, answer, ("r-2",)) == ()  # another exchange's: not shown
        for other_key, unreadable in ((key, replace(answer, request_id="o-2")),
                                      (key, replace(answer, sealed_entries=None)),
                                      (_pair()[0], answer)):
            with pytest.raises(sealing.CannotOpen):
                holder_logs.opened(other_key, unreadable, ("r-1",))


# the longest four attributes an ordinary query carries: a foreign resident's name in katakana
# (30 characters) and a Kyoto street address with building, room and care-of (80 characters)
LONGEST = FourAttributes("ヴォルコンスカヤ　アレクサンドラ・エカテリーナ・アナスタシア",
                         "京都府京都市中京区烏丸通御池上る二条殿町５４６番地の１２"
                         "　烏丸御池パークホームズ・ザ・レジデンスタワー"
                         "　イーストウイング南館　１２０３号室　烏丸商事株式会社寮内",
                         date(1925, 1, 1), Sex.FEMALE)
RESIDENTS = [p.resident for p in Simulator(7).people(2000)]


def _lengths(plaintexts: list[bytes], sealed: Callable[[bytes, str], bytes]) -> set[int]:
    """The sealed lengths of plaintexts that differ in length (checked: else the test is moot)."""
    assert len({len(p) for p in plaintexts}) >= 10
    return {len(sealed(p, f"r-{i}")) for i, p in enumerate(plaintexts)}


def test_sealed_answers_have_one_length_whatever_their_data_and_amounts() -> None:
    """Every data type of the demo for 2,000 residents, and incomes of 1 to 12 digits: the
    length of a sealed answer tells none of them apart."""
    rng = random.Random(3)
    payloads = [Payload(data_type, make(r, rng)) for r in RESIDENTS for sample in SAMPLES
                for data_type, make in sample.data.items()]
    payloads += [Payload("local_tax", {"fiscal_year": "2025", "taxable_income": "9" * digits,
                                       "municipal_tax": "9" * digits})
                 for digits in range(1, 13)]
    public = _pair()[1]
    sealer = sealing.SessionSealer()
    assert len(_lengths([CODEC.encode(p) for p in payloads],
                        partial(sealer.seal, public))) == 1


def test_sealed_queries_and_candidates_have_one_length_whoever_they_are_about() -> None:
    """Four attributes as the registry and as holders spell them (the longest realistic ones
    too), resident codes and personal numbers: one sealed length for all."""
    rng = random.Random(3)
    attributes = [r.four_attributes for r in RESIDENTS] + [LONGEST] + [
        holder_spelling(r.four_attributes, rng) for r in RESIDENTS]
    plaintexts = [CODEC.encode(a) for a in attributes] + [
        CODEC.encode(ResidentCode(r.resident_code)) for r in RESIDENTS[:100]] + [
        CODEC.encode(PersonalNumber(f"{n:012d}")) for n in range(100)]
    public = _pair()[1]
    assert len(_lengths(plaintexts, partial(sealing.seal, public))) == 1


def test_sealed_holder_logs_have_few_lengths_at_most_an_eighth_over() -> None:
    """Logs of one request differ in length (their content) but not sealed; big ones are
    padded to few sizes (Padmé), never more than 12% over, so a log of the 500 requests the
    oversight body may ask for stays well within a message."""
    entry = HolderLogEntry("r-1", "2026-12-03T09:00:00+09:00", "PROVIDER", "staff-1", "term-1",
                           "nenkin", "P-037", "local_tax", "", "国民年金保険料の免除審査", "FOUND")
    public = _pair()[1]
    logs = [[replace(entry, content=json.dumps({"taxable_income": "9" * d}))]
            for d in range(1, 13)]
    assert len({len(holder_logs.seal(public, "o-1", log)) for log in logs}) == 1
    sizes = {sealing.padded_size(n) for n in range(1, 1 << 20)}
    assert len(sizes) < 300
    assert all(n <= sealing.padded_size(n) <= max(sealing.SMALLEST, n * 1.12)
               for n in range(1, 1 << 20, 97))


def test_a_tampered_pad_cannot_be_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes that open under their tag but whose padding is wrong (no 0x80, bytes after it, not
    the size its content is padded to) are refused as any other unopenable bytes."""
    key, public = _pair()
    good = sealing.padded(b"data")
    for bad in (b"data" + bytes(len(good) - 4), b"data\x81" + good[5:], good[:-1] + b"\x01",
                b"data\x80" + bytes(len(good)), good[:-1], b""):
        monkeypatch.setattr(sealing, "padded", lambda plaintext, bad=bad: bad)
        with pytest.raises(sealing.CannotOpen):
            sealing.open_sealed(key, sealing.seal(public, b"data", "r-1"), "r-1")
        with pytest.raises(sealing.CannotOpen):
            sealing.SessionOpener(key).open(
                sealing.SessionSealer().seal(public, b"data", "r-1"), "r-1")
    monkeypatch.undo()
    assert sealing.open_sealed(key, sealing.seal(public, b"data", "r-1"), "r-1") == b"data"


def test_bytes_sealed_unpadded_before_the_upgrade_still_open() -> None:
    """Sealed by the rule before padding (still on a topic, or kept unsent in a holder's store):
    their HPKE info and associated data are the bare request id, and they open as they were."""
    key, public = _pair()
    old = sealing.SUITE.encrypt(b"data", X25519PublicKey.from_public_bytes(public),
                                info=b"r-1")
    assert sealing.open_sealed(key, old, "r-1") == b"data"
    session = AESGCM.generate_key(bit_length=128)
    nonce = bytes(sealing.NONCE)
    old_answer = (sealing.SUITE.encrypt(session, X25519PublicKey.from_public_bytes(public),
                                        info=sealing.SESSION_INFO)
                  + nonce + AESGCM(session).encrypt(nonce, b"data", b"r-1"))
    opener = sealing.SessionOpener(key)
    assert opener.open(old_answer, "r-1") == b"data"
    with pytest.raises(sealing.CannotOpen):
        sealing.open_sealed(key, old, "r-2")
    with pytest.raises(sealing.CannotOpen):
        opener.open(old_answer, "r-2")


def _provider(holder: str = "city-b") -> tuple[sealing.SessionSealer, sealing.SignedBy]:
    """A provider's sealer of signed sessions, and the signer its directory entry names."""
    key = Ed25519PrivateKey.generate()
    return (sealing.SessionSealer(signer=sealing.Signer(holder, key)),
            sealing.SignedBy(holder, sealing.public_bytes(key)))


def test_a_session_signed_by_its_provider_opens_and_one_forged_by_the_relay_does_not() -> None:
    """Whoever has only the requester's public key (the platform relaying answers) can seal an
    answer to it, but not sign its session as the provider: the requester refuses it."""
    key, public = _pair()
    sealer, provider = _provider()
    opener = sealing.SessionOpener(key, holder="city-a")
    genuine = sealer.seal(public, b"taxable_income=1", "r-1", "city-a")
    forger, forged_signer = _provider()  # its own key, the provider's name
    forged = [sealing.SessionSealer().seal(public, b"taxable_income=9", "r-1"),
              forger.seal(public, b"taxable_income=9", "r-1", "city-a"),
              # the genuine header, its time altered
              genuine[:sealing.WRAPPED] + bytes(sealing.ISSUED) + genuine[sealing.WRAPPED
                                                                          + sealing.ISSUED:]]
    for bad in forged:
        with pytest.raises(sealing.CannotOpen):
            opener.open(bad, "r-1", provider)
    with pytest.raises(sealing.CannotOpen):  # the provider's session, said to be another's
        opener.open(genuine, "r-1", replace(provider, holder="city-c"))
    with pytest.raises(sealing.CannotOpen):  # nor one it made for another requester
        sealing.SessionOpener(key, holder="city-d").open(genuine, "r-1", provider)
    assert opener.open(genuine, "r-1", provider) == b"taxable_income=1", "positive control"
    assert opener.open(forged[1], "r-1", forged_signer) == b"taxable_income=9", (
        "positive control: the forger's session opens as its own")


def test_a_signed_session_is_signed_once_and_adds_nothing_per_answer() -> None:
    key, public = _pair()
    sealer, provider = _provider()
    sealed = [sealer.seal(public, b"%d" % i, f"r-{i}", "city-a") for i in range(3)]
    assert len({s[:sealing.SIGNED] for s in sealed}) == 1
    assert {len(s) for s in sealed} == {len(sealing.SessionSealer().seal(public, b"0", "r-0"))
                                        + sealing.ISSUED + sealing.SIGNATURE}
    opener = sealing.SessionOpener(key, holder="city-a")
    assert [opener.open(s, f"r-{i}", provider) for i, s in enumerate(sealed)] == [
        b"0", b"1", b"2"]


def test_a_renewed_sealing_key_is_kept_until_answers_to_it_stop_coming(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sealing key renewed is kept until the time given, then no more; renewed twice, both
    old ones are kept."""
    monkeypatch.setenv("RENKEI_STATE", str(tmp_path / "state"))
    first = sealing.key_of("h")
    until = datetime(2100, 1, 1, tzinfo=UTC)
    sealing.renew_keys("h", until)
    second = sealing.key_of("h")
    sealing.renew_keys("h", until)
    kept = [sealing.public_bytes(k) for k in sealing.previous_keys("h")]
    assert kept == [sealing.public_bytes(second), sealing.public_bytes(first)]
    assert sealing.previous_keys("h", until) == []
    assert sealing.public_bytes(sealing.key_of("h")) not in kept


@pytest.mark.parametrize("entry", [{"private": "zz", "until": "2100-01-01T00:00:00+00:00"},
                                   {"private": "00" * 32, "until": "nope"}, {"until": "x"}])
def test_a_damaged_file_of_renewed_keys_is_said_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: dict[str, str]) -> None:
    """A kept key's entry that cannot be read raised ValueError from its parse, a traceback at
    `holder run` and `holder renew`; it is BadSealingKey naming the file, as a key file's is."""
    monkeypatch.setenv("RENKEI_STATE", str(tmp_path / "state"))
    sealing.key_of("h")
    sealing.previous_file("h").write_text(json.dumps({"keys": [entry]}), encoding="utf-8")
    with pytest.raises(sealing.BadSealingKey, match="renewed sealing keys of h"):
        sealing.previous_keys("h")



def test_a_session_signed_before_its_providers_renewal_opens_within_the_grace_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After `renkei holder renew`, a session its provider signed with its key before and dated
    by the renewal (a clock skew beside) is read within SIGNING_GRACE of it (it was UNREADABLE:
    the directory kept no key before); one dated later, whoever holds the key before (leaked),
    or read past the grace, is refused."""
    key, public = _pair()
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    renewed_at = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    entry = HolderEntry("city-b", "B", "municipality", "city-b", 0, b"k" * 32, False, True,
                        renewed_at, sealing.public_bytes(new),
                        previous_signing_key=sealing.public_bytes(old),
                        signing_renewed_at=renewed_at)

    def signed_at(at: datetime) -> bytes:
        monkeypatch.setattr(time, "time", at.timestamp)
        return sealing.SessionSealer(signer=sealing.Signer("city-b", old)).seal(
            public, b"taxable_income=1", "r-1", "city-a")

    before, after = signed_at(renewed_at - timedelta(seconds=5)), signed_at(
        renewed_at + CLOCK_SKEW + timedelta(seconds=1))
    within = signed_by("city-b", entry.signing_key or b"", entry, renewed_at + SIGNING_GRACE)
    past = signed_by("city-b", entry.signing_key or b"", entry,
                     renewed_at + SIGNING_GRACE + timedelta(seconds=1))
    opener = sealing.SessionOpener(key, holder="city-a")
    assert opener.open(before, "r-1", within) == b"taxable_income=1"
    for sealed, by in ((after, within), (before, past)):
        with pytest.raises(sealing.CannotOpen):
            opener.open(sealed, "r-1", by)
    plain = replace(entry, previous_signing_key=None, signing_renewed_at=None)
    with pytest.raises(sealing.CannotOpen):  # an entry of before v8: the new key alone
        opener.open(before, "r-1", signed_by("city-b", entry.signing_key or b"", plain,
                                             renewed_at))


def test_a_signed_session_dated_later_than_its_reading_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed session's time of making is signed but was not checked: one dated an hour after
    its requester read it opened. Dated later than the reader's time and the clock skew it
    allows, it is refused; within the skew, or read an hour later, it opens."""
    key, public = _pair()
    sealer, provider = _provider()
    read_at = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    monkeypatch.setattr(time, "time", (read_at + timedelta(hours=1)).timestamp)
    ahead = sealer.seal(public, b"taxable_income=1", "r-1", "city-a")
    opener = sealing.SessionOpener(key, holder="city-a")
    with pytest.raises(sealing.CannotOpen, match="from the future"):
        opener.open(ahead, "r-1", provider, read_at + CLOCK_SKEW)
    assert opener.open(ahead, "r-1", provider, read_at + timedelta(hours=1)) == (
        b"taxable_income=1")
    monkeypatch.setattr(time, "time", (read_at + CLOCK_SKEW).timestamp)
    sealer, provider = _provider()
    skewed = sealer.seal(public, b"taxable_income=2", "r-2", "city-a")
    assert opener.open(skewed, "r-2", provider, read_at + CLOCK_SKEW) == b"taxable_income=2"
