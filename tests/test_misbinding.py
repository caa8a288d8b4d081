"""Mis-binding: an adversarial registry and holder records with realistic errors give no wrong
binding through the platform's look-up and decision; the count itself catches a guessing matcher."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from click.testing import CliRunner

from holders.matching import Bind, Investigate
from registry.generate import Person
from registry.residents import ChangeKind, FourAttributes, Resident, Sex, change
from registry.store import RegistryStore
from renkei.cli import main
from renkei.misbinding import Case, Error, Outcome, adversarial_registry, run

RESIDENTS, RECORDS, SEED = 3000, 2000, 5


def test_no_wrong_binding_and_every_adversarial_kind_occurs() -> None:
    tally = run(RESIDENTS, RECORDS, SEED).tally
    assert tally.total[Outcome.WRONG] == 0, tally.wrong
    assert set(tally.by_case) == set(Case) and set(tally.by_error) == set(Error)
    for case in Case:
        if case is not Case.ORDINARY:
            assert tally.by_case[case][Outcome.INVESTIGATED] > 0, case
    assert tally.by_case[Case.IDENTICAL][Outcome.CORRECT] == 0, "never bind one of several"
    assert tally.by_case[Case.TWIN][Outcome.CORRECT] == 0, "a twin is one typo from the other"
    for error in (Error.NONE, Error.WIDTH, Error.VARIANT_KANJI):
        assert tally.by_error[error][Outcome.CORRECT] > 0.8 * sum(tally.by_error[error].values())
    for error in set(Error) - {Error.NONE, Error.WIDTH, Error.VARIANT_KANJI}:
        assert tally.by_error[error][Outcome.CORRECT] == 0, error


def _first_candidate(ours: FourAttributes,
                     found: Sequence[tuple[str, FourAttributes]]) -> Bind | Investigate:
    return Bind(found[0][0]) if found else Investigate("nobody")


def test_the_count_catches_a_matcher_that_guesses() -> None:
    """Binding the first of several candidates gives wrong bindings, and they are counted."""
    tally = run(RESIDENTS, RECORDS, SEED, decision=_first_candidate).tally
    assert tally.total[Outcome.WRONG] > 0
    assert {w["case"] for w in tally.wrong} == {Case.IDENTICAL}


def test_a_stale_record_never_finds_the_namesake_who_moved_in() -> None:
    """The mover's old four attributes are now the namesake's: the look-up finds nobody."""
    registry = adversarial_registry(RESIDENTS, SEED)
    store = RegistryStore(Path(":memory:"))
    store.load(registry.people)
    movers = {p.resident.name + str(p.resident.date_of_birth): p for p in registry.people
              if {e.kind for e in p.events} == {ChangeKind.MOVED}}
    checked = 0
    for person, case in zip(registry.people, registry.cases, strict=True):
        mover = movers.get(person.resident.name + str(person.resident.date_of_birth))
        if case is Case.MOVED_INTO and mover is not None and not person.events:
            stale = FourAttributes(mover.resident.name, mover.events[0].before[0],
                                   mover.resident.date_of_birth, mover.resident.sex)
            assert store.find(stale) == [], "it was the mover's before it was the namesake's"
            assert store.find(mover.resident.four_attributes) == [mover.resident]
            checked += 1
    store.close()
    assert checked >= 0.5 * RESIDENTS * 0.02


def test_live_changes_keep_the_former_attributes(tmp_path: Path) -> None:
    """A moves out of X, namesake B moves into X: a look-up by those four finds nobody."""
    store = RegistryStore.create(tmp_path / "registry.db")
    a, b = (Resident(code, "山田　花子", "ヤマダ　ハナコ", home, date(1980, 4, 1), Sex.FEMALE)
            for code, home in (("12345678906", "桜町1丁目2番3号"), ("23456789016", "桜町4-5-6")))
    store.load([Person(a, ()), Person(b, ())])
    at_x = a.four_attributes
    assert store.find(at_x) == [a]
    store.record(change(a, ChangeKind.MOVED, ("桜町7-8-9",), date(2025, 1, 1)))
    assert store.find(at_x) == []
    store.record(change(b, ChangeKind.MOVED, ("桜町一丁目2-3",), date(2025, 2, 1)))
    assert store.find(at_x) == [], "X with these name and birthday was A's before it was B's"
    moved_a = store.by_code(a.resident_code)
    assert moved_a is not None and store.find(moved_a.four_attributes) == [moved_a]
    store.close()


def test_a_twin_is_never_bound_by_four_attributes() -> None:
    """中村 淳 mistyped as his twin 中村 晃 reads exactly as 晃: neither twin is found."""
    twins = [Resident(code, "中村　" + given, "ナカムラ　" + kana, "福岡県世田谷区脚折8-17-12",
                      date(2010, 9, 6), Sex.MALE)
             for code, given, kana in (("12345678906", "淳", "ジュン"),
                                       ("23456789016", "晃", "アキラ"))]
    sister = Resident("34567890126", "中村　陽子", "ナカムラ　ヨウコ", twins[0].address,
                      date(2012, 1, 5), Sex.FEMALE)
    store = RegistryStore(Path(":memory:"))
    store.load([Person(r, ()) for r in (*twins, sister)])
    assert [store.find(t.four_attributes) for t in twins] == [[], []]
    assert store.find(sister.four_attributes) == [sister]
    store.close()


def test_the_command_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "misbinding.json"
    result = CliRunner().invoke(main, ["chaos", "misbinding", "--residents", "500", "--records",
                                       "300", "--seed", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["total"]["wrong"] == 0 and sum(figures["total"].values()) == 300
    assert "stale address" in result.output and "namesake moved into their old home" in \
        result.output

