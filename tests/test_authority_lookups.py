"""The numbering authority on Kafka: a holder's personal number resolved and passed on to the
registry; a private holder never learns from the answer whether a number is in use; one look-up
that cannot be answered costs only itself."""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from audit.heads import Signer
from authority import lookups
from authority.serve import RegistryChanges, serving
from authority.service import NumberingAuthority, draw_number
from authority.store import AuthorityStore
from broker import acls, topics
from registry import store as registry_store
from registry.service import RegistryService
from renkei import sealing
from renkei.envelope import Send
from schemas.codec import CODEC
from schemas.messages import (
    FOUND,
    NOT_FOUND,
    REFUSED,
    HolderEntry,
    NumberLookup,
    PersonalNumber,
    RegistryAnswer,
    RegistryQuery,
)
from tests.test_authority import change_code

HOLDER, SHOP = "nenkin", "acme-shop"  # a public holder, a private one


class Authority:
    """An authority that numbered a registry of 20, both in a directory with the platform."""

    def __init__(self, folder: Path) -> None:
        registry_store.build(folder / "registry.db", 20, 1)
        self.registry_store = registry_store.RegistryStore.open(folder / "registry.db")
        self.store = AuthorityStore(folder / "authority.db")
        self.service = NumberingAuthority(self.store)
        self.service.assign_registry(self.registry_store)
        self.residents = list(self.registry_store.resident_codes())
        self.key, registry, platform, holder = (X25519PrivateKey.generate() for _ in range(4))
        self.directory = {name: HolderEntry(name, name, name, name, 0, sealing.public_bytes(k),
                                            name == SHOP, True, datetime.now(UTC))
                          for name, k in ((acls.REGISTRY, registry), (acls.PLATFORM, platform),
                                          (HOLDER, holder), (SHOP, holder))}
        self.registry = RegistryService(self.registry_store, registry, self.directory.get)
        self.offsets = itertools.count()

    def number(self, n: int) -> str:
        number = self.service.number_of(self.residents[n])
        assert number is not None
        return number

    def lookup(self, request_id: str, number: str, holder: str = HOLDER,
               source: str = "") -> SimpleNamespace:
        """A holder's look-up as the broker delivers it to the authority, at an offset of its
        own, from the holder's message `source` ("" as from v1)."""
        sealed = sealing.seal(sealing.public_bytes(self.key),
                              CODEC.encode(PersonalNumber(number)), request_id)
        return SimpleNamespace(topic=topics.AUTHORITY_IN, partition=0, offset=next(self.offsets),
                               value=CODEC.encode(NumberLookup(request_id, holder, holder == SHOP,
                                                               sealed, source)))

    def handled(self, *records: SimpleNamespace) -> list[Send]:
        return self.handle(records)

    def handle(self, records: Sequence[Any]) -> list[Send]:
        """What the authority sends for these records (a test may serve it otherwise)."""
        return lookups.handle(records, self.service, self.key, self.directory.get)

    def answer(self, number: str, holder: str) -> RegistryAnswer:
        """The answer the platform relays to the holder: the authority's, or the registry's."""
        (out,) = self.handled(self.lookup("q", number, holder))
        if out.topic == topics.REGISTRY_IN:
            (out,) = self.registry.handle([SimpleNamespace(value=out.value)])
        assert out.topic == topics.REGISTRY_OUT
        return CODEC.decode(out.value, RegistryAnswer)


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[Authority]:
    made = Authority(tmp_path)
    yield made
    made.store.close()
    made.registry_store.close()


def test_a_private_holder_cannot_tell_whether_a_number_is_in_use(authority: Authority) -> None:
    """Without any resident's consent a private holder got 'no resident has that personal
    number' for a number never issued or retired, and the registry's own detail for a number in
    use: an oracle of which numbers are current. Now all three answers are one."""
    in_use = authority.number(0)
    retired = authority.number(1)
    authority.service.change_number(authority.residents[1], "lost card")
    never = next(n for n in (draw_number() for _ in range(100))
                 if not authority.store.was_issued(n))
    answers = {(a.status, a.detail, a.candidates)
               for a in (authority.answer(n, SHOP) for n in (in_use, retired, never))}
    assert len(answers) == 1 and next(iter(answers))[:1] == (NOT_FOUND,)
    authority.registry_store.give_consent(authority.residents[0], SHOP, date(2026, 4, 1))
    assert authority.answer(in_use, SHOP).candidates != ()  # with consent: found
    public = {authority.answer(n, HOLDER).detail for n in (retired, never)}
    assert public == {"no resident has that personal number"}  # a public holder: as it was


def test_an_unforeseen_failure_refuses_that_lookup_only(
        authority: Authority, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A store locked past its busy timeout (another assign-all) raised out of handle and stopped
    the authority's service, at every restart while it lasted."""
    failing, fine = authority.number(0), authority.number(1)
    looked_up = authority.service.lookup

    def locked_for_one(number: str, holder: str, purpose: str, look_up: str) -> str | None:
        if number == failing:
            raise RuntimeError(f"database is locked while looking up {number}")
        return looked_up(number, holder, purpose, look_up)

    monkeypatch.setattr(authority.service, "lookup", locked_for_one)
    with caplog.at_level(logging.ERROR):
        out = authority.handled(authority.lookup("q-1", failing), authority.lookup("q-2", fine))
    assert [(s.topic, s.key) for s in out] == [(topics.REGISTRY_OUT, "q-1"),
                                               (topics.REGISTRY_IN, "q-2")]
    refused = CODEC.decode(out[0].value, RegistryAnswer)
    assert (refused.status, refused.requester, refused.candidates) == (REFUSED, HOLDER, ())
    assert refused.detail == "the authority could not answer this query"
    query = CODEC.decode(out[1].value, RegistryQuery)
    assert (query.request_id, query.requester) == ("q-2", HOLDER)
    assert "q-1" in caplog.text and "RuntimeError" in caplog.text
    assert failing not in caplog.text


def test_a_lookup_read_again_is_logged_once(authority: Authority) -> None:
    """The authority logged a look-up each time it read it: read again after a crash before its
    offset was committed, one holder's look-up was logged twice, as two look-ups of the person's
    number. Now it is logged once, by its request id and the holder's message it came from (its
    own record's place for a look-up from v1), and answered each time it is read."""
    number = authority.number(0)
    outbox = topics.HOLDER_OUTBOX.format(holder=HOLDER)
    v1 = authority.lookup("q-1", number)
    forwarded_twice = [authority.lookup("q-2", number, source=f"{outbox}:0:7") for _ in range(2)]
    sent_again = authority.lookup("q-2", number, source=f"{outbox}:0:8")  # another look-up
    for _ in range(2):
        out = authority.handled(v1, *forwarded_twice, sent_again)
        assert [s.topic for s in out] == [topics.REGISTRY_IN] * 4
    assert [(e.number, e.holder, e.purpose) for e in authority.store.lookups()] == [
        (number, HOLDER, lookups.PURPOSE)] * 3


def test_a_serving_authority_follows_the_registrys_code_changes_before_its_lookups(
        authority: Authority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`renkei authority serve` followed no code change (only `assign-all` and `follow` did): the
    number of a resident whose code changed while it served led to the code given up, and
    binding by it found nobody until an operator ran `follow`."""
    number = authority.number(0)
    change_code(authority.registry_store, authority.residents[0])
    assert authority.answer(number, HOLDER).status == NOT_FOUND, "not followed: the old code"
    login_key = Signer.generate().public_key
    nowhere = serving(authority.service, authority.key,
                      RegistryChanges(authority.service, tmp_path / "none.db"), login_key)
    monkeypatch.setattr(authority, "handle", nowhere(authority.directory.get))
    assert authority.answer(number, HOLDER).status == NOT_FOUND, "no registry: nothing followed"
    changes = RegistryChanges(authority.service, tmp_path / "registry.db")
    monkeypatch.setattr(authority, "handle", serving(authority.service, authority.key,
                                                     changes, login_key)(authority.directory.get))
    assert authority.answer(number, HOLDER).status == FOUND
    changes.close()


def test_a_serving_authority_follows_the_registry_through_a_connection_that_writes_nothing(
        authority: Authority, tmp_path: Path) -> None:
    """`renkei authority serve` opened the registry read-write, though it only reads it (and
    compose mounts registry/ read-only to it): now nothing can be written through its
    connection, which follows each code change the registry records while it is open."""
    changes = RegistryChanges(authority.service, tmp_path / "registry.db")
    try:
        changes.follow()
        for n in range(3):
            number = authority.number(n)
            new = change_code(authority.registry_store, authority.residents[n])
            changes.follow()
            assert authority.service.number_of(new) == number
        assert changes._registry is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            change_code(changes._registry, authority.residents[3])
    finally:
        changes.close()


def test_a_serving_authority_follows_a_registry_put_in_place_of_the_one_it_opened(
        authority: Authority, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`renkei registry generate --replace` while `renkei authority serve` ran left its
    connection on the old registry, deleted: the code changes recorded in the new one were never
    followed until it was restarted. Now it reads the file put in its place, and says so once
    (and that it follows this registry, generated again, from its first change)."""
    path = tmp_path / "registry.db"
    changes = RegistryChanges(authority.service, path)
    try:
        changes.follow()
        authority.registry_store.close()
        registry_store.build(path, 20, 1, replace=True)  # the same residents, as a town again
        authority.registry_store = registry_store.RegistryStore.open(path)
        with caplog.at_level(logging.WARNING, "authority.serve"):
            for n in range(2):
                number = authority.number(n)
                new = change_code(authority.registry_store, authority.residents[n])
                changes.follow()
                assert authority.service.number_of(new) == number
        assert [r.getMessage() for r in caplog.records] == [
            f"the registry at {path} was replaced: its code changes are followed from the new one",
            f"the registry at {path} is not the one followed before: its code changes are "
            "followed from its first"]
    finally:
        changes.close()


def test_a_lookup_of_a_newer_schema_is_refused_unknown_schema_not_left_to_time_out(
        authority: Authority, caplog: pytest.LogCaptureFixture) -> None:
    """A look-up by personal number of a schema unknown here (a newer platform's) was logged and
    skipped: its holder was told only that its binding timed out. It is refused UNKNOWN_SCHEMA
    to the platform under its request id, requester and source, and nobody's number is looked
    up (nothing logged as looked up)."""
    record = authority.lookup("n-1", authority.number(0), source="renkei.holder.x.out:0:3")
    record.value = record.value[:2] + b"\xfe" * 8 + record.value[10:] + b"\x00"  # one field more
    (sent,) = authority.handled(record)
    answer = CODEC.decode(sent.value, RegistryAnswer)
    assert (sent.topic, answer.request_id, answer.requester, answer.status, answer.source) == (
        topics.REGISTRY_OUT, "n-1", HOLDER, REFUSED, "renkei.holder.x.out:0:3")
    assert answer.detail == "UNKNOWN_SCHEMA: unknown schema fingerprint fefefefefefefefe"
    assert "NumberLookup n-1 of" in caplog.text


def test_a_lookup_of_a_newer_schema_is_logged_once_and_answered_in_its_place(
        authority: Authority, caplog: pytest.LogCaptureFixture) -> None:
    """It was logged twice (once unreadable, once refused) and its refusal sent after the
    answers to the batch's every other look-up, whatever their order."""
    newer = authority.lookup("n-1", authority.number(0), source="renkei.holder.x.out:0:3")
    newer.value = newer.value[:2] + b"\xfe" * 8 + newer.value[10:] + b"\x00"
    records = (authority.lookup("n-0", authority.number(1)), newer,
               authority.lookup("n-2", authority.number(2)))
    with caplog.at_level(logging.ERROR):
        sent = authority.handled(*records)
    assert [(s.key, s.topic) for s in sent] == [
        ("n-0", topics.REGISTRY_IN), ("n-1", topics.REGISTRY_OUT), ("n-2", topics.REGISTRY_IN)]
    assert [r.getMessage() for r in caplog.records if "fefefefefefefefe" in r.getMessage()] == [
        f"NumberLookup n-1 of {HOLDER} refused UNKNOWN_SCHEMA: unknown schema fingerprint "
        "fefefefefefefefe (a newer platform's?)"]
