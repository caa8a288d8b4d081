"""The numbering authority on Kafka: a holder's personal number resolved and passed on to the
registry, and one look-up that cannot be answered costs only itself."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from authority import lookups
from authority.service import NumberingAuthority
from authority.store import AuthorityStore
from broker import acls, topics
from registry.resident_code import random_codes
from renkei import sealing
from renkei.envelope import Send
from schemas.codec import CODEC
from schemas.messages import (
    REFUSED,
    HolderEntry,
    NumberLookup,
    PersonalNumber,
    RegistryAnswer,
    RegistryQuery,
)

HOLDER = "nenkin"


class Authority:
    """An authority that numbered three residents, with the registry in its directory."""

    def __init__(self, path: Path) -> None:
        self.store = AuthorityStore(path)
        self.service = NumberingAuthority(self.store)
        self.residents = random_codes(3, seed=7)
        self.service.assign_all(self.residents)
        self.key, self.registry = X25519PrivateKey.generate(), X25519PrivateKey.generate()
        entry = HolderEntry(acls.REGISTRY, acls.REGISTRY, "registry", acls.REGISTRY, 0,
                            sealing.public_bytes(self.registry), False, True, datetime.now(UTC))
        self.directory = {acls.REGISTRY: entry}

    def number(self, n: int) -> str:
        number = self.service.number_of(self.residents[n])
        assert number is not None
        return number

    def lookup(self, request_id: str, number: str, private: bool = False) -> SimpleNamespace:
        """A holder's look-up as the broker delivers it to the authority."""
        sealed = sealing.seal(sealing.public_bytes(self.key),
                              CODEC.encode(PersonalNumber(number)), request_id)
        return SimpleNamespace(value=CODEC.encode(NumberLookup(request_id, HOLDER, private,
                                                               sealed)))

    def handled(self, *records: SimpleNamespace) -> list[Send]:
        return lookups.handle(records, self.service, self.key, self.directory.get)


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[Authority]:
    made = Authority(tmp_path / "authority.db")
    yield made
    made.store.close()


def test_an_unforeseen_failure_refuses_that_lookup_only(
        authority: Authority, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A store locked past its busy timeout (another assign-all) raised out of handle and stopped
    the authority's service, at every restart while it lasted."""
    failing, fine = authority.number(0), authority.number(1)
    looked_up = authority.service.lookup

    def locked_for_one(number: str, holder: str, purpose: str) -> str | None:
        if number == failing:
            raise RuntimeError(f"database is locked while looking up {number}")
        return looked_up(number, holder, purpose)

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
