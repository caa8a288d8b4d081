"""The registry's answers to look-ups: consent and ambiguity for private holders, and one query
that cannot be answered costs only itself."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from audit.heads import Signer
from broker import acls, topics
from cards.jlis import CardHolders
from processors.codes import IdCodes
from registry.generate import Person
from registry.portal import CardLogins
from registry.resident_code import random_codes
from registry.residents import FourAttributes, Resident, Sex
from registry.serve import serving
from registry.service import RegistryService
from registry.store import RegistryStore
from renkei import sealing
from schemas.codec import CODEC
from schemas.messages import (
    BY_ATTRIBUTES,
    FOUND,
    NOT_FOUND,
    REFUSED,
    HolderEntry,
    RegistryAnswer,
    RegistryQuery,
    ResidentCode,
)

NAMESAKES = FourAttributes("山田　花子", "東京都港区芝公園1-2-3", date(1950, 1, 1), Sex.FEMALE)
ALONE = FourAttributes("佐藤　一郎", "大阪府大阪市北区梅田1-1-1", date(1960, 2, 3), Sex.MALE)
INSURER = "insurer-x"  # a private holder
CITY = "city-y"  # a public one


class Registry:
    """A registry of two residents with the same four attributes and one of their own."""

    def __init__(self, path: Path) -> None:
        self.a, self.b, self.alone = random_codes(3, seed=5)
        self.store = self.made(path)
        self.key, self.platform, self.holder = (X25519PrivateKey.generate() for _ in range(3))
        self.directory = {acls.PLATFORM: _entry(acls.PLATFORM, self.platform, private=False),
                          INSURER: _entry(INSURER, self.holder, private=True),
                          CITY: _entry(CITY, self.holder, private=False)}
        self.service = RegistryService(self.store, self.key, self.directory.get)

    def made(self, path: Path) -> RegistryStore:
        """A registry of these three residents at `path`."""
        store = RegistryStore.create(path)
        store.load([_person(self.a, NAMESAKES), _person(self.b, NAMESAKES),
                    _person(self.alone, ALONE)])
        return store

    def query(self, requester: str, attributes: FourAttributes) -> RegistryQuery:
        return RegistryQuery("r1", requester, requester == INSURER, BY_ATTRIBUTES, sealing.seal(
            sealing.public_bytes(self.key), CODEC.encode(attributes), "r1"))

    def ask(self, requester: str, attributes: FourAttributes) -> RegistryAnswer:
        return self.service.answer(self.query(requester, attributes))

    def handled(self, *queries: RegistryQuery) -> list[RegistryAnswer]:
        """The answers `handle` sends to a batch of queries as the broker delivers them."""
        sends = self.service.handle([SimpleNamespace(value=CODEC.encode(q)) for q in queries])
        return [CODEC.decode(s.value, RegistryAnswer) for s in sends]

    def handled_values(self, *values: bytes) -> list[RegistryAnswer]:
        """The answers `handle` sends to a batch of records of these values."""
        sends = self.service.handle([SimpleNamespace(value=v) for v in values])
        return [CODEC.decode(s.value, RegistryAnswer) for s in sends]

    def residents(self, answer: RegistryAnswer) -> list[str]:
        """The resident codes of the answer's candidates, as the platform opens them."""
        return sorted(CODEC.decode(sealing.open_sealed(
            self.platform, c.sealed_resident_code, answer.request_id), ResidentCode).resident_code
                      for c in answer.candidates)


def _person(code: str, four: FourAttributes) -> Person:
    return Person(Resident(code, four.name, "ヤマダ　ハナコ", four.address, four.date_of_birth,
                           four.sex), ())


def _entry(holder: str, key: X25519PrivateKey, private: bool) -> HolderEntry:
    return HolderEntry(holder, holder, "holder", holder, 0, sealing.public_bytes(key), private,
                       True, datetime.now(UTC))


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry.db")


def test_the_consent_of_one_namesake_never_makes_the_match_unique(registry: Registry) -> None:
    registry.store.give_consent(registry.a, INSURER, date(2026, 1, 1))
    answer = registry.ask(INSURER, NAMESAKES)
    assert (answer.status, answer.candidates) == (NOT_FOUND, ())
    registry.store.give_consent(registry.b, INSURER, date(2026, 1, 1))
    assert registry.ask(INSURER, NAMESAKES).candidates == ()


def test_a_public_holder_gets_every_namesake(registry: Registry) -> None:
    answer = registry.ask(CITY, NAMESAKES)
    assert answer.status == FOUND and registry.residents(answer) == sorted(
        [registry.a, registry.b])


def test_a_private_holder_gets_one_resident_only_with_consent(registry: Registry) -> None:
    assert registry.ask(INSURER, ALONE).status == NOT_FOUND
    registry.store.give_consent(registry.alone, INSURER, date(2026, 1, 1))
    answer = registry.ask(INSURER, ALONE)
    assert answer.status == FOUND and registry.residents(answer) == [registry.alone]


def test_a_serving_registry_answers_from_a_registry_put_in_place_of_the_one_it_opened(
        registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`renkei registry generate --replace` while `renkei registry serve` ran left its
    connection on the old registry, deleted: it answered from it, the consents and changes
    recorded in the new one unseen, until it was restarted. Now it answers from the file put in
    its place, and says so once."""
    path, built = tmp_path / "registry.db", tmp_path / "registry.db.partial"
    cards = CardHolders(tmp_path / "cards.db")
    logins = CardLogins(cards, registry.store, IdCodes(bytes(32)), Signer.generate())
    handle = serving(registry.store, logins, registry.key)(registry.directory.get)
    query = SimpleNamespace(topic=topics.REGISTRY_IN, value=CODEC.encode(
        registry.query(INSURER, ALONE)))
    new = registry.made(built)
    new.give_consent(registry.alone, INSURER, date(2026, 1, 1))
    new.close()
    built.replace(path)  # as `renkei registry generate --replace` puts its registry in place
    try:
        with caplog.at_level(logging.WARNING, "registry.serve"):
            for _ in range(2):
                (sent,) = handle([query])
                answer = CODEC.decode(sent.value, RegistryAnswer)
                assert answer.status == FOUND and registry.residents(answer) == [registry.alone]
        assert [r.getMessage() for r in caplog.records] == [
            f"the registry at {path} was replaced: answered from the new one"]
    finally:
        cards.close()
        registry.store.close()


def test_a_run_of_thousands_of_kanji_digits_is_answered(registry: Registry) -> None:
    """Over 4,300 digits: Python's int() refuses them, which stopped the registry."""
    long = FourAttributes(ALONE.name, "東京都港区" + "一" * 4400 + "番", ALONE.date_of_birth,
                          ALONE.sex)
    answers = registry.handled(registry.query(CITY, long), registry.query(CITY, ALONE))
    assert [a.status for a in answers] == [NOT_FOUND, FOUND]


def test_an_unforeseen_failure_refuses_that_query_only(
        registry: Registry, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    found = registry.store.find

    def fails_on_namesakes(attributes: FourAttributes) -> list[Resident]:
        if attributes == NAMESAKES:
            raise RuntimeError(f"cannot look up {attributes.name}")
        return found(attributes)

    monkeypatch.setattr(registry.store, "find", fails_on_namesakes)
    with caplog.at_level(logging.ERROR):
        answers = registry.handled(registry.query(CITY, NAMESAKES), registry.query(CITY, ALONE))
    assert [a.status for a in answers] == [REFUSED, FOUND] and answers[0].candidates == ()
    assert "RuntimeError" in caplog.text and NAMESAKES.name not in caplog.text


def test_the_registrys_sealed_candidates_have_one_length(registry: Registry) -> None:
    """Candidates whose addresses differ in length: their sealed four attributes and resident
    codes (the platform's) all have one length."""
    candidates = [c for attributes in (NAMESAKES, ALONE)
                  for c in registry.ask(CITY, attributes).candidates]
    assert len(candidates) == 3 and len(NAMESAKES.address) != len(ALONE.address)
    assert len({len(c.sealed_attributes) for c in candidates}
               | {len(c.sealed_resident_code) for c in candidates}) == 1


def test_a_query_of_a_newer_schema_is_refused_unknown_schema_not_left_to_time_out(
        registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    """A look-up of a schema unknown here (a newer platform's: one more field after this
    version's) was logged and skipped: its holder was told only that its binding timed out. It
    is refused UNKNOWN_SCHEMA to the platform under its request id, requester and source, which
    the platform relays to the holder as it relays every answer."""
    asked = replace(registry.query(CITY, ALONE), source="renkei.holder.city-y.out:0:7",
                    requested_at=datetime(2026, 12, 7, 8, 5, tzinfo=UTC))
    valid = CODEC.encode(asked)
    assert CODEC.name_of(valid) == "RegistryQuery"
    newer = valid[:2] + b"\xfe" * 8 + valid[10:] + b"\x06new"  # and a field this version lacks
    (answer,) = registry.handled_values(newer)
    assert (answer.request_id, answer.requester, answer.status, answer.candidates,
            answer.source, answer.requested_at) == (
        "r1", CITY, REFUSED, (), "renkei.holder.city-y.out:0:7", asked.requested_at)
    assert answer.detail == "UNKNOWN_SCHEMA: unknown schema fingerprint fefefefefefefefe"
    assert "RegistryQuery r1 of city-y refused UNKNOWN_SCHEMA" in caplog.text
    assert registry.handled_values(newer[:10] + b"\x01") == []  # names nobody: logged only


def test_a_query_of_a_newer_schema_is_logged_once_and_answered_in_its_place(
        registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    """It was logged twice (once unreadable, once refused) and its refusal sent after the
    answers to the batch's every other query, whatever their order."""
    first, last = (RegistryQuery(r, CITY, False, BY_ATTRIBUTES, sealing.seal(
        sealing.public_bytes(registry.key), CODEC.encode(ALONE), r)) for r in ("r0", "r2"))
    valid = CODEC.encode(replace(registry.query(CITY, ALONE), source="renkei.holder.city-y.out:0:7",
                                 requested_at=datetime(2026, 12, 7, 8, 5, tzinfo=UTC)))
    newer = valid[:2] + b"\xfe" * 8 + valid[10:] + b"\x06new"
    with caplog.at_level(logging.ERROR):
        answers = registry.handled_values(CODEC.encode(first), newer, CODEC.encode(last))
    assert [(a.request_id, a.status) for a in answers] == [
        ("r0", FOUND), ("r1", REFUSED), ("r2", FOUND)]
    assert [r.getMessage() for r in caplog.records if "fefefefefefefefe" in r.getMessage()] == [
        "RegistryQuery r1 of city-y refused UNKNOWN_SCHEMA: unknown schema fingerprint "
        "fefefefefefefefe (a newer platform's?)"]
