"""The platform's code service, its keys, and re-keying: pure, no Kafka."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from processors import keys
from processors.codes import ALPHABET, CodeService, InvalidCode, UnitEpoch
from processors.keys_cli import keys_cli
from processors.rekey import rekey
from registry.resident_code import random_codes
from renkei.state import STATE_ENV

MILLION = 1_000_000
CODE = re.compile(r"[0-9A-Z]{11}")
CITY, MEDICAL, TAX = UnitEpoch("city-a", 0), UnitEpoch("medical", 0), UnitEpoch("tax-office", 3)
# fixed masters: every run draws the same codes, so the counts below are reproducible
MASTERS = keys.MasterKeys(bytes(range(32)), bytes(range(32, 64)))


@pytest.fixture(scope="module")
def codes() -> CodeService:
    return CodeService(MASTERS)


@pytest.fixture(scope="module")
def million(codes: CodeService) -> dict[str, list[str]]:
    """A million residents, and their link codes in two units (batch API)."""
    residents = random_codes(MILLION, seed=11)
    return {"residents": residents,
            "city": _valid(codes.link_codes(residents, CITY)),
            "medical": _valid(codes.link_codes(residents, MEDICAL))}


def _valid(results: list[str | InvalidCode]) -> list[str]:
    assert not any(isinstance(r, InvalidCode) for r in results)
    return [r for r in results if isinstance(r, str)]


def test_round_trip_of_a_million_resident_codes(codes: CodeService,
                                                million: dict[str, list[str]]) -> None:
    """No two residents share an ID code or a link code of one unit; every code comes back."""
    ids = _valid(codes.id_codes(million["residents"]))
    assert len(set(ids)) == MILLION
    for unit in ("city", "medical"):
        assert len(set(million[unit])) == MILLION
        assert all(CODE.fullmatch(c) for c in million[unit][:10_000])
    assert codes.resident_codes(million["city"], CITY) == million["residents"]


def test_one_persons_link_codes_differ_across_units(million: dict[str, list[str]]) -> None:
    same = sum(a == b for a, b in zip(million["city"], million["medical"], strict=True))
    assert same == 0


def test_conversion_between_units_reaches_the_same_person(
        codes: CodeService, million: dict[str, list[str]]) -> None:
    part = slice(0, 100_000)
    assert codes.convert_batch(million["city"][part], CITY, MEDICAL) == million["medical"][part]
    assert codes.convert_batch(million["medical"][part], MEDICAL, CITY) == million["city"][part]


def test_link_codes_presented_under_another_unit_are_refused(
        codes: CodeService, million: dict[str, list[str]]) -> None:
    """A million city link codes presented as medical ones: false accepts are counted. Chance
    alone would pass (10/36)^11 / 11 ≈ 7e-8 of them, 0.07 in a million."""
    results = codes.convert_batch(million["city"], MEDICAL, CITY)
    false_accepts = sum(not isinstance(r, InvalidCode) for r in results)
    assert false_accepts <= 2
    assert str(results[0]) == "not a link code of unit 'medical' at epoch 0"


def test_forged_link_codes_are_refused(codes: CodeService) -> None:
    forged = ALPHABET.texts(np.random.default_rng(5).integers(0, 36, size=(MILLION, 11)))
    results = codes.resident_codes(forged, CITY)
    assert sum(not isinstance(r, InvalidCode) for r in results) <= 2


def test_a_bad_item_does_not_fail_its_batch(codes: CodeService) -> None:
    residents = random_codes(3, seed=3)
    good = _valid(codes.link_codes(residents, CITY))
    presented = [good[0], "", "abcdefghijk", "ＡＢＣＤＥＦＧＨＩＪＫ", good[1], good[2][:10] + "Z",
                 "12345678901", good[2]]
    results = codes.resident_codes(presented, CITY)
    assert [r if isinstance(r, str) else type(r) for r in results] == [
        residents[0], InvalidCode, InvalidCode, InvalidCode, residents[1],
        InvalidCode, InvalidCode, residents[2]]
    assert str(results[1]) == "malformed: a code is 11 characters of 0-9A-Z"


def test_resident_codes_must_be_valid(codes: CodeService) -> None:
    good = random_codes(1, seed=4)[0]
    wrong_check = good[:10] + str((int(good[10]) + 1) % 10)
    results = codes.link_codes([good, wrong_check, "1234567890", "1234567890A"], CITY)
    assert isinstance(results[0], str)
    assert all(isinstance(r, InvalidCode) for r in results[1:])
    with pytest.raises(InvalidCode, match="not a resident code"):
        codes.id_code(wrong_check)


def test_units_per_item_equal_one_unit_per_batch(codes: CodeService) -> None:
    residents = random_codes(300, seed=6)
    units = [(CITY, MEDICAL, TAX)[i % 3] for i in range(300)]
    mixed = codes.link_codes(residents, units)
    for unit in (CITY, MEDICAL, TAX):
        alone = codes.link_codes([r for r, u in zip(residents, units, strict=True) if u == unit],
                                 unit)
        assert [c for c, u in zip(mixed, units, strict=True) if u == unit] == alone
    back = _valid(codes.convert_batch(_valid(mixed), units, list(reversed(units))))
    assert codes.resident_codes(back, list(reversed(units))) == residents


def test_the_two_halves_of_a_conversion(codes: CodeService) -> None:
    """Link code → validated ID code, then ID code → another unit's link code (as linkage does)."""
    residents = random_codes(500, seed=9)
    links = _valid(codes.link_codes(residents, CITY))
    ids = codes.id_codes_of([*links, "0" * 11, "bad"], CITY)
    assert ids[:-2] == codes.id_codes(residents)
    assert [str(e) for e in ids[-2:]] == ["not a link code of unit 'city-a' at epoch 0",
                                          "malformed: a code is 11 characters of 0-9A-Z"]
    assert codes.link_codes_of(_valid(ids[:-2]), MEDICAL) == codes.link_codes(residents, MEDICAL)
    with pytest.raises(InvalidCode):
        codes.link_codes_of(["short"], MEDICAL)


def test_scalar_calls_are_batches_of_one(codes: CodeService) -> None:
    resident = random_codes(1, seed=7)[0]
    link = codes.link_code(resident, CITY)
    assert codes.convert(link, CITY, TAX) == codes.link_code(resident, TAX)
    assert codes.resident_code(link, CITY) == resident
    assert CODE.fullmatch(codes.id_code(resident))
    with pytest.raises(InvalidCode):
        codes.resident_code(link, TAX)


def test_rekeying_keeps_bindings_and_refuses_the_old_epoch(codes: CodeService) -> None:
    residents = random_codes(10_000, seed=8)
    old = _valid(codes.link_codes(residents, UnitEpoch("city-a", 4)))
    new = rekey(codes, [*old, "NOTACODE000"], "city-a", 4, 5)
    assert isinstance(new[-1], InvalidCode)
    assert codes.resident_codes(_valid(new[:-1]), UnitEpoch("city-a", 5)) == residents
    assert sum(a == b for a, b in zip(old, new, strict=False)) == 0
    refused = codes.resident_codes(old, UnitEpoch("city-a", 5))
    assert all(isinstance(r, InvalidCode) for r in refused)
    with pytest.raises(ValueError):
        rekey(codes, old, "city-a", 5, 5)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    return tmp_path


def test_keys_init_writes_a_private_store_once(state: Path) -> None:
    with pytest.raises(keys.KeysMissing):
        keys.load()
    first = CliRunner().invoke(keys_cli, ["init"])
    assert first.exit_code == 0 and "created" in first.output
    path = keys.store_path()
    assert path.is_relative_to(state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    content = path.read_bytes()
    second = CliRunner().invoke(keys_cli, ["init"])
    assert second.exit_code == 0 and "already exists" in second.output
    assert path.read_bytes() == content
    secrets = json.loads(content)
    assert all(secret not in first.output + second.output for secret in secrets.values())


def test_keys_are_per_unit_and_epoch_and_never_shown(state: Path) -> None:
    keys.init()
    masters = keys.load()
    derived = {masters.id_key(), masters.link_key("city-a", 0), masters.link_key("city-a", 1),
               masters.link_key("medical", 0)}
    assert len(derived) == 4 and all(len(k) == 32 for k in derived)
    assert masters.link_key("city-a", 0) == keys.load().link_key("city-a", 0)
    shown = repr(masters) + repr(CodeService(masters).__dict__)
    for secret in (masters.id_master, masters.link_master, *derived):
        assert secret.hex() not in shown and repr(secret) not in shown
    assert masters.ticket_key() not in derived and len(masters.ticket_key()) == 32
    assert masters.sealing_key().public_key().public_bytes_raw() == (
        keys.load().sealing_key().public_key().public_bytes_raw())
    with pytest.raises(ValueError):
        masters.link_key("city/a", 0)
    with pytest.raises(ValueError):
        masters.link_key("city-a", -1)
