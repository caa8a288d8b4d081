"""Mis-binding at scale: an adversarial registry, holder records with realistic errors, and the
platform's own look-up (`RegistryStore.find`) and binding decision (`holders.matching.decide`).

The registry is the simulator's with its awkward cases made common (namesakes in one town,
residents with identical four attributes, old kanji, moves, name and code changes), plus twins
(one address, one birthday, two given names), look-alike family names (斎藤/斉藤, 伊藤/伊東 …)
sharing given name and birthday in one town, and namesakes who moved into the home another had
left. Each holder record is one resident as a holder keyed them, with one realistic error or
none. A binding is correct when it names the resident the record was drawn from (by their code
now), wrong when it names anyone else; everything else went to investigation.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum
from pathlib import Path

from holders.matching import Bind, Investigate, decide
from registry.generate import GIVEN_NAMES, SPACE, Person, Rates, Simulator, holder_spelling
from registry.normalize import (
    KANJI_VARIANTS,
    NEW_FORMS,
    four_key,
    normalize_address,
    normalize_name,
)
from registry.resident_code import check_digit
from registry.residents import ChangeKind, FourAttributes, Resident
from registry.store import RegistryStore

Decide = Callable[[FourAttributes, Sequence[tuple[str, FourAttributes]]], Bind | Investigate]
RATES = Rates(old_kanji=0.5, kanji_numeral_address=0.1, namesakes_in_town=0.01,
              same_four_attributes=0.002, moved=0.1, name_changed=0.03, code_changed=0.01)
ADVERSARIAL_SHARE = 0.02  # of residents, for each of twins, look-alikes and moved-into homes
_PAIRS = (("斎藤", "斉藤"), ("伊藤", "伊東"), ("渡辺", "渡部"), ("太田", "大田"), ("萩原", "荻原"),
          ("小野", "大野"), ("菅原", "菅野"))
LOOK_ALIKES = {a: b for pair in _PAIRS for a, b in (pair, pair[::-1])}
OLD_FORMS = {new: old for old, new in KANJI_VARIANTS.items()}
_BLOCK = re.compile(r"\d+-\d+-\d+")
_FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９ー")


class Case(StrEnum):
    """What makes a resident awkward to bind (the first that applies, in this order)."""

    IDENTICAL = "identical four attributes"
    MOVED_INTO = "namesake moved into their old home"
    TWIN = "twin"
    LOOK_ALIKE = "look-alike family name"
    NAMESAKE = "namesake in town"
    OLD_KANJI = "old kanji in name"
    CODE_CHANGED = "resident code changed"
    NAME_CHANGED = "name changed"
    MOVED = "moved"
    ORDINARY = "ordinary"


class Error(StrEnum):
    """The one error (or none) in a holder's record."""

    NONE = "none"
    VARIANT_KANJI = "old/new kanji"
    WIDTH = "full/half width"
    STALE_ADDRESS = "stale address"
    OLD_NAME = "old name"
    TYPO_NAME = "typo in name"
    TYPO_ADDRESS = "typo in address"
    SWAPPED_DATE = "swapped birth date digits"
    MISSING = "missing field"


class Outcome(StrEnum):
    CORRECT = "correct"
    INVESTIGATED = "investigated"
    WRONG = "wrong"


@dataclass
class Tally:
    """Outcomes, in total and by case and by error."""

    total: Counter[str] = field(default_factory=Counter)
    by_case: dict[str, Counter[str]] = field(default_factory=dict)
    by_error: dict[str, Counter[str]] = field(default_factory=dict)
    wrong: list[dict[str, str]] = field(default_factory=list)

    def add(self, case: Case, error: Error, outcome: Outcome) -> None:
        """Count one record's outcome."""
        self.total[outcome] += 1
        self.by_case.setdefault(case, Counter())[outcome] += 1
        self.by_error.setdefault(error, Counter())[outcome] += 1


@dataclass(frozen=True)
class Registry:
    """The generated people (current entry and history) and each one's case."""

    people: list[Person]
    cases: list[Case]


def adversarial_registry(residents: int, seed: int) -> Registry:
    """The simulator's registry with its awkward cases made common, plus the adversarial ones."""
    rng = random.Random(f"{seed}/adversary")
    extra = max(1, round(ADVERSARIAL_SHARE * residents))
    base = list(Simulator(seed, RATES).people(max(1, residents - 3 * extra)))
    codes = {e.resident_code for p in base for e in p.events} | {
        p.resident.resident_code for p in base}
    new_code = _code_maker(rng, codes)
    added: list[tuple[Person, Case]] = []
    steady = [p.resident for p in base if not p.events]
    for resident in rng.sample(steady, min(extra, len(steady))):
        family, _ = resident.name.split(SPACE)
        given = rng.choice([g for g, _, _ in GIVEN_NAMES[resident.sex] if g not in resident.name])
        added.append((Person(replace(resident, resident_code=new_code(),
                                     name=family + SPACE + given), ()), Case.TWIN))
    alike = [r for r in steady if r.name.split(SPACE)[0].translate(NEW_FORMS) in LOOK_ALIKES]
    for resident in rng.sample(alike, min(extra, len(alike))):
        family, given = resident.name.split(SPACE)
        other = LOOK_ALIKES[family.translate(NEW_FORMS)]
        added.append((Person(replace(resident, resident_code=new_code(), name=other + SPACE + given,
                                     address=_other_block(resident.address, rng)), ()),
                      Case.LOOK_ALIKE))
    movers = [p for p in base if {e.kind for e in p.events} == {ChangeKind.MOVED}]
    for mover in rng.sample(movers, min(extra, len(movers))):
        old_home = next(e for e in mover.events if e.kind is ChangeKind.MOVED).before[0]
        namesake = replace(mover.resident, resident_code=new_code(), address=old_home)
        added.append((Person(namesake, ()), Case.MOVED_INTO))
    people = base + [p for p, _ in added]
    cases = _cases(people, {id(p): c for p, c in added})
    return Registry(people, cases)


def _code_maker(rng: random.Random, used: set[str]) -> Callable[[], str]:
    """A maker of valid resident codes never used before."""
    def make() -> str:
        while True:
            base = f"{rng.randrange(10 ** 10):010d}"
            check = check_digit(base)
            if check is not None and base + str(check) not in used:
                used.add(base + str(check))
                return base + str(check)
    return make


def _other_block(address: str, rng: random.Random) -> str:
    """Another home in the same town: other block numbers."""
    numbers = f"{rng.randint(1, 9)}-{rng.randint(1, 30)}-{rng.randint(1, 20)}"
    return _BLOCK.sub(numbers, normalize_address(address), count=1)


def _cases(people: list[Person], added: dict[int, Case]) -> list[Case]:
    """Each person's case; the partners of added residents share it."""
    keys = Counter(four_key(p.resident.four_attributes) for p in people)
    namesakes = Counter(_namesake_key(p.resident) for p in people)
    partners: dict[str, Case] = {}
    for person in people:
        case = added.get(id(person))
        if case is Case.TWIN:
            partners[_twin_key(person.resident)] = case
        elif case is Case.LOOK_ALIKE:
            partners[_look_alike_key(person.resident)] = case
        elif case is Case.MOVED_INTO:
            partners[_namesake_key(person.resident)] = case
    cases = []
    for person in people:
        r, kinds = person.resident, {e.kind for e in person.events}
        found = [case for case, applies in (
            (Case.IDENTICAL, keys[four_key(r.four_attributes)] > 1),
            (Case.MOVED_INTO, partners.get(_namesake_key(r)) is Case.MOVED_INTO),
            (Case.TWIN, partners.get(_twin_key(r)) is Case.TWIN),
            (Case.LOOK_ALIKE, partners.get(_look_alike_key(r)) is Case.LOOK_ALIKE),
            (Case.NAMESAKE, namesakes[_namesake_key(r)] > 1),
            (Case.OLD_KANJI, normalize_name(r.name) != r.name.replace(SPACE, "")),
            (Case.CODE_CHANGED, ChangeKind.CODE_CHANGED in kinds),
            (Case.NAME_CHANGED, ChangeKind.NAME_CHANGED in kinds),
            (Case.MOVED, ChangeKind.MOVED in kinds)) if applies]
        cases.append(added.get(id(person)) or (found[0] if found else Case.ORDINARY))
    return cases


def _namesake_key(r: Resident) -> str:
    return f"{normalize_name(r.name)}|{r.date_of_birth}|{r.sex}"


def _twin_key(r: Resident) -> str:
    return f"{normalize_name(r.name.split(SPACE)[0])}|{normalize_address(r.address)}|" \
           f"{r.date_of_birth}|{r.sex}"


def _look_alike_key(r: Resident) -> str:
    family, given = r.name.split(SPACE)
    family = family.translate(NEW_FORMS)
    pair = "/".join(sorted({family, LOOK_ALIKES.get(family, family)}))
    return f"{pair}|{given}|{r.date_of_birth}|{r.sex}"


def keyed(person: Person, error: Error, rng: random.Random) -> FourAttributes:
    """The person's four attributes as a holder keyed them, with `error`."""
    now = holder_spelling(person.resident.four_attributes, rng)
    name, address, born = now.name, now.address, now.date_of_birth
    if error is Error.VARIANT_KANJI:
        name = "".join(OLD_FORMS.get(c, c) for c in person.resident.name)
    elif error is Error.WIDTH:
        name = person.resident.name.replace(SPACE, " ")
        address = normalize_address(person.resident.address).translate(_FULL_WIDTH)
    elif error is Error.STALE_ADDRESS:
        address = next(e for e in person.events if e.kind is ChangeKind.MOVED).before[0]
    elif error is Error.OLD_NAME:
        name = next(e for e in person.events if e.kind is ChangeKind.NAME_CHANGED).before[0]
    elif error is Error.TYPO_NAME:
        name = _typo_name(person.resident, rng)
    elif error is Error.TYPO_ADDRESS:
        address = _typo_digit(normalize_address(person.resident.address), rng)
    elif error is Error.SWAPPED_DATE:
        born = _swapped(born)
    elif error is Error.MISSING:
        name, address = (name, "") if rng.random() < 0.5 else ("", address)
    return FourAttributes(name, address, born, now.sex)


def errors_for(person: Person) -> list[Error]:
    """The errors a holder's record of this person can have."""
    now = person.resident
    before = {e.kind: e.before[0] for e in reversed(person.events)}  # the first of each kind
    return [error for error, applies in (
        (Error.NONE, True),
        (Error.VARIANT_KANJI, any(c in OLD_FORMS for c in now.name)),
        (Error.WIDTH, True),
        (Error.STALE_ADDRESS, normalize_address(before.get(ChangeKind.MOVED, now.address))
         != normalize_address(now.address)),
        (Error.OLD_NAME, normalize_name(before.get(ChangeKind.NAME_CHANGED, now.name))
         != normalize_name(now.name)),
        (Error.TYPO_NAME, True),
        (Error.TYPO_ADDRESS, True),
        (Error.SWAPPED_DATE, _swapped(now.date_of_birth) != now.date_of_birth),
        (Error.MISSING, True)) if applies]


def _typo_name(resident: Resident, rng: random.Random) -> str:
    """One character of the name mistyped: a look-alike family name, or one wrong kanji."""
    family, given = resident.name.translate(NEW_FORMS).split(SPACE)
    if family in LOOK_ALIKES and rng.random() < 0.5:
        return LOOK_ALIKES[family] + SPACE + given
    pool = "".join(g for g, _, _ in GIVEN_NAMES[resident.sex])
    at = rng.randrange(len(given))
    wrong = rng.choice([c for c in pool if c != given[at]])
    return family + SPACE + given[:at] + wrong + given[at + 1:]


def _typo_digit(address: str, rng: random.Random) -> str:
    """One digit of the block number mistyped."""
    block = _BLOCK.search(address)
    assert block is not None, address
    at = rng.choice([i for i in range(block.start(), block.end()) if address[i].isdigit()])
    return address[:at] + rng.choice([d for d in "0123456789" if d != address[at]]) + \
        address[at + 1:]


def _swapped(born: date) -> date:
    """Month and day swapped, or else the day's digits, or else the year's last two."""
    for year, month, day in ((born.year, born.day, born.month),
                             (born.year, born.month, int(f"{born.day:02d}"[::-1])),
                             (born.year // 100 * 100 + int(f"{born.year % 100:02d}"[::-1]),
                              born.month, born.day)):
        try:
            swapped = date(year, month, day)
        except ValueError:
            continue
        if swapped != born:
            return swapped
    return born


@dataclass
class Result:
    """A run's figures."""

    residents: int
    records: int
    seed: int
    seconds: float
    tally: Tally

    def to_json(self) -> dict[str, object]:
        """The figures as JSON (outcomes by case and by error, the wrong bindings listed)."""
        return {"what": "holder records bound against an adversarial registry",
                "residents": self.residents, "records": self.records, "seed": self.seed,
                "seconds": round(self.seconds, 2), "total": _outcomes(self.tally.total),
                "by_case": {k: _outcomes(v) for k, v in sorted(self.tally.by_case.items())},
                "by_error": {k: _outcomes(v) for k, v in sorted(self.tally.by_error.items())},
                "wrong_bindings": self.tally.wrong}


def _outcomes(counter: Counter[str]) -> dict[str, int]:
    return {o.value: counter[o] for o in Outcome}


def run(residents: int, records: int, seed: int, decision: Decide = decide) -> Result:
    """Bind `records` holder records against an adversarial registry of `residents`; count."""
    started = time.monotonic()
    registry = adversarial_registry(residents, seed)
    store = RegistryStore(Path(":memory:"))
    try:
        store.load(registry.people)
        tally = Tally()
        rng = random.Random(f"{seed}/records")
        awkward = [i for i, c in enumerate(registry.cases) if c is not Case.ORDINARY]
        for n in range(records):
            i = rng.choice(awkward) if awkward and n % 2 == 0 else rng.randrange(
                len(registry.people))
            person, case = registry.people[i], registry.cases[i]
            error = rng.choice(errors_for(person))
            ours = keyed(person, error, rng)
            found = [(r.resident_code, r.four_attributes) for r in store.find(ours)]
            verdict = decision(ours, found)
            if isinstance(verdict, Investigate):
                tally.add(case, error, Outcome.INVESTIGATED)
            elif verdict.link_code == person.resident.resident_code:
                tally.add(case, error, Outcome.CORRECT)
            else:
                tally.add(case, error, Outcome.WRONG)
                tally.wrong.append({"case": case, "error": error, "record": repr(ours),
                                    "bound_to": verdict.link_code,
                                    "drawn_from": person.resident.resident_code})
    finally:
        store.close()
    return Result(len(registry.people), records, seed, time.monotonic() - started, tally)
