"""IC cards without a broker: PIN and lock on the card, chain, validity and CRL at the server."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from cards import ca, issue, jlis
from cards.card import PIN_TRIES, BadPin, Card, CardLocked
from cards.jlis import CardHolders
from cards.login import Refused, Verifier, challenge, message
from renkei.state import state_folder
from tests.kafka_helpers import renkei

ORIGIN = "http://127.0.0.1:8080"


@pytest.fixture()
def cards_dir(state_dir: Path, tmp_path: Path) -> Path:
    issue.init()
    return tmp_path


def _login(card: Card, pin: str, authority: str = ca.OFFICERS,
           verifier: Verifier | None = None) -> str:
    nonce = challenge()
    signature = card.sign(message(ORIGIN, nonce), pin)
    cert = card.certificate.public_bytes(Encoding.PEM)
    return (verifier or Verifier()).verify(authority, cert, ORIGIN, nonce, signature).serial


def test_the_right_pin_signs_and_the_server_accepts(cards_dir: Path) -> None:
    card = issue.officer_card("sakura-town-staff-1", "sakura-town", "counter", "1234", cards_dir)
    nonce = challenge()
    signature = card.sign(message(ORIGIN, nonce), "1234")
    verified = Verifier().verify(ca.OFFICERS, card.certificate.public_bytes(
        Encoding.PEM), ORIGIN, nonce, signature)
    assert (verified.common_name, verified.organization, verified.role) == (
        "sakura-town-staff-1", "sakura-town", "counter")
    assert verified.serial == card.face.serial


def test_three_wrong_pins_lock_the_card_even_for_the_right_pin(cards_dir: Path) -> None:
    card = issue.officer_card("officer-1", "oversight", "oversight", "2468", cards_dir)
    with pytest.raises(BadPin) as first:
        card.sign(b"x", "0000")
    assert first.value.tries_left == PIN_TRIES - 1
    card.sign(b"x", "2468")  # the right PIN resets the count
    assert Card(card.path).tries_left == PIN_TRIES
    for _ in range(PIN_TRIES - 1):
        with pytest.raises(BadPin):
            card.sign(b"x", "1111")
    with pytest.raises(CardLocked):
        card.sign(b"x", "1111")
    reread = Card(card.path)  # the lock is in the card file, not in a server's memory
    assert reread.locked
    with pytest.raises(CardLocked):
        reread.sign(b"x", "2468")


def test_the_key_is_sealed_under_the_pin(cards_dir: Path) -> None:
    card = issue.officer_card("officer-2", "oversight", "oversight", "1357", cards_dir)
    text = card.path.read_text()
    assert "PRIVATE KEY" not in text
    # any 4 digits turn up by chance in the hex and base64 fields (a CI run once found "1357" in
    # the sealed key): the PIN must be in none of the others
    encoded = {"serial", "certificate", "salt", "nonce", "sealed"}
    assert not [value for name, value in _leaves(json.loads(text))
                if name not in encoded and "1357" in str(value)]
    assert card.path.stat().st_mode & 0o077 == 0


def _leaves(tree: object, name: str = "") -> Iterator[tuple[str, object]]:
    """Each (field name, value) of a JSON document, nested objects walked."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, key)
    elif isinstance(tree, list):
        for value in tree:
            yield from _leaves(value, name)
    else:
        yield name, tree


def test_a_revoked_certificate_is_refused(cards_dir: Path) -> None:
    card = issue.officer_card("officer-3", "oversight", "oversight", "1111", cards_dir)
    assert _login(card, "1111") == card.face.serial
    assert issue.revoke(card.face.serial) == ca.OFFICERS
    with pytest.raises(Refused, match="revoked"):
        _login(card, "1111")


def test_a_signature_for_another_site_or_challenge_is_refused(cards_dir: Path) -> None:
    card = issue.officer_card("officer-4", "oversight", "oversight", "1111", cards_dir)
    nonce = challenge()
    signature = card.sign(message("http://evil.example", nonce), "1111")
    cert = card.certificate.public_bytes(Encoding.PEM)
    with pytest.raises(Refused, match="bad-signature"):
        Verifier().verify(ca.OFFICERS, cert, ORIGIN, nonce, signature)
    with pytest.raises(Refused, match="bad-signature"):
        Verifier().verify(ca.OFFICERS, cert, ORIGIN, challenge(),
                          card.sign(message(ORIGIN, nonce), "1111"))


def test_a_card_of_the_other_ca_or_expired_is_refused(cards_dir: Path) -> None:
    card = issue.officer_card("officer-5", "oversight", "oversight", "1111", cards_dir)
    with pytest.raises(Refused, match="unknown-issuer"):
        _login(card, "1111", authority=ca.JPKI)
    later = datetime.now(UTC) + timedelta(days=365 * ca.CARD_YEARS + 1)
    with pytest.raises(Refused, match="expired"):
        _login(card, "1111", verifier=Verifier(clock=lambda: later))


def test_a_stale_crl_fails_closed(cards_dir: Path) -> None:
    card = issue.officer_card("officer-6", "oversight", "oversight", "1111", cards_dir)
    tomorrow = datetime.now(UTC) + timedelta(days=ca.CRL_DAYS, hours=1)
    with pytest.raises(Refused, match="stale-crl"):
        _login(card, "1111", verifier=Verifier(clock=lambda: tomorrow))


def test_card_list_marks_a_revoked_card(cards_dir: Path) -> None:
    kept = issue.officer_card("officer-7", "oversight", "oversight", "1111", cards_dir)
    gone = issue.officer_card("officer-8", "oversight", "oversight", "1111", cards_dir)
    issue.revoke(gone.face.serial)
    listed = renkei("card", "list", "--dir", str(cards_dir)).stdout.splitlines()
    assert [line for line in listed if "REVOKED" in line] == [
        line for line in listed if line.startswith(gone.face.serial)], listed
    assert any(line.startswith(kept.face.serial) for line in listed), listed


def test_a_ca_made_with_its_certificate_beside_its_key_gets_a_trust_folder(
        tmp_path: Path) -> None:
    """My Portal mounts cards/trust/ alone, not the CAs' keys: `card init` (which compose.yaml's
    provision runs) puts there what verifiers read of a CA made before it had that folder."""
    with state_folder(tmp_path / "state") as state:
        issue.init()
        card = issue.officer_card("officer-9", "oversight", "oversight", "2222", tmp_path)
        for name in ca.AUTHORITIES:  # as a state folder from before keeps them
            for pem in ("ca.pem", "crl.pem"):
                (ca.trusted(name) / pem).rename(ca.folder(name) / pem)
        issue.init()
        for name in ca.AUTHORITIES:
            assert (ca.trusted(name) / "ca.pem").read_bytes() == (
                ca.folder(name) / "ca.pem").read_bytes()
        assert sorted(p.name for p in (state / "cards" / "trust").rglob("*")) == [
            "ca.pem", "ca.pem", "crl.pem", "crl.pem", "jpki", "officers"]
        assert _login(card, "2222") == card.face.serial


def _card_table_kept_in_registry(state: Path) -> Path:
    """A state folder from before: J-LIS's card table in registry/, one card recorded in it."""
    before = state / "registry" / "cards.db"
    before.parent.mkdir()
    old = CardHolders(before)
    old.record("c0ffee", "RESIDENT-1")
    old.close()
    return before


def test_the_card_table_kept_in_the_registry_folder_is_moved_apart_from_it(
        tmp_path: Path) -> None:
    """compose.yaml gives the authority registry/, for the registry alone: `card init` (which
    provision runs) moves J-LIS's card table a state folder from before kept there to
    cards/holders/, its cards still recorded."""
    with state_folder(tmp_path / "state") as state:
        before = _card_table_kept_in_registry(state)
        renkei("card", "init")
        assert not before.exists() and list(before.parent.iterdir()) == []
        assert jlis.default_path() == state / "cards" / "holders" / "cards.db"
        moved = CardHolders()
        assert moved.issued_to("c0ffee") == "RESIDENT-1"
        moved.close()


def test_two_processes_moving_the_card_table_at_once_keep_its_cards(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (`card init`, `registry serve`, `card issue`) moves the table from
    registry/ after this one found it there and before this one opens it: this one leaves the
    table as moved, and does not put an empty one of its own over it."""
    with state_folder(tmp_path / "state") as state:
        before = _card_table_kept_in_registry(state)
        connect = sqlite3.connect

        def other_process_first(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            monkeypatch.setattr(sqlite3, "connect", connect)
            subprocess.run([sys.executable, "-c", "from cards import jlis; jlis.default_path()"],
                           check=True)
            opened: sqlite3.Connection = connect(*args, **kwargs)
            return opened

        monkeypatch.setattr(sqlite3, "connect", other_process_first)
        assert jlis.default_path() == state / "cards" / "holders" / "cards.db"
        monkeypatch.setattr(sqlite3, "connect", connect)
        assert not before.exists()
        moved = CardHolders()
        assert moved.issued_to("c0ffee") == "RESIDENT-1"
        moved.close()
