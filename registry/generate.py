"""A synthetic resident registry, deterministic from a seed, with the awkward cases real ones have.

Names, kana and addresses are drawn from Faker's ja_JP word lists through one `random.Random`
(drawing from the lists directly is what makes a million residents quick). Awkward cases: old
kanji in family names (髙橋, 山﨑, 渡邊 …), full-width digits and kanji numerals in addresses,
half-width kana, namesakes (same name, date of birth and sex) in one town, residents whose four
attributes are identical, and change events: moves, name changes, changed resident codes.
"""

from __future__ import annotations

import itertools
import random
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date

from faker.providers.address.ja_JP import Provider as AddressWords
from faker.providers.person.ja_JP import Provider as PersonWords

from registry.normalize import NEW_FORMS, normalize_address
from registry.resident_code import check_digit
from registry.residents import ChangeEvent, ChangeKind, FourAttributes, Resident, Sex, apply, change

FAMILY_NAMES: list[tuple[str, str, str]] = list(PersonWords.last_name_pairs)
FAMILY_WEIGHTS = list(itertools.accumulate(PersonWords.last_name_pairs.values()))
GIVEN_NAMES = {Sex.MALE: PersonWords.first_name_male_pairs,
               Sex.FEMALE: PersonWords.first_name_female_pairs}
OLD_FORMS = {"高橋": ("髙橋",), "渡辺": ("渡邊", "渡邉"), "斎藤": ("齋藤",), "斉藤": ("齊藤",),
             "山崎": ("山﨑", "山嵜"), "中島": ("中嶋",), "吉田": ("𠮷田",)}
FIRST_BIRTH = date(1925, 1, 1).toordinal()
LAST_BIRTH = date(2024, 12, 31).toordinal()
FIRST_CHANGE = date(2016, 1, 1).toordinal()
LAST_CHANGE = date(2025, 12, 31).toordinal()
SPACE = "　"  # between family and given name, as the registry writes it

_FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")
_HALF_WIDTH_KANA = {unicodedata.normalize("NFKC", chr(c)): chr(c) for c in range(0xFF66, 0xFFA0)}
_KANJI_DIGITS = "〇一二三四五六七八九"


@dataclass(frozen=True)
class Rates:
    """How often each awkward case occurs, as a share of residents. The rare ones (namesakes and
    after) are exact counts, at least one each, so even a small registry has them."""

    old_kanji: float = 0.2  # of residents whose family name has an old form
    full_width_address: float = 0.3
    kanji_numeral_address: float = 0.05
    half_width_kana: float = 0.02
    building: float = 0.35
    namesakes_in_town: float = 0.0002  # same name, birth date and sex in one town, other address
    same_four_attributes: float = 0.00005  # all four attributes identical (one care home, say)
    moved: float = 0.05
    name_changed: float = 0.005
    code_changed: float = 0.0002


@dataclass
class Tally:
    """How many residents each awkward case hit, counted as they are drawn."""

    residents: int = 0
    old_kanji: int = 0
    full_width_address: int = 0
    kanji_numeral_address: int = 0
    half_width_kana: int = 0
    namesakes_in_town: int = 0
    same_four_attributes: int = 0
    moved: int = 0
    name_changed: int = 0
    code_changed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Person:
    """A resident as the registry holds them now, and the changes that led there."""

    resident: Resident
    events: tuple[ChangeEvent, ...]


class Simulator:
    """Draws residents from one seeded `random.Random`: the same seed, the same registry."""

    def __init__(self, seed: int, rates: Rates | None = None) -> None:
        self.rates = rates or Rates()
        self.tally = Tally()
        self._rng = random.Random(seed)
        self._codes: set[str] = set()

    def people(self, n: int) -> Iterator[Person]:
        rng, rates = self._rng, self.rates
        rare = [_count(rate, n) for rate in (rates.namesakes_in_town, rates.same_four_attributes)]
        picked = rng.sample(range(1, n), min(sum(rare), n - 1)) if n > 1 else []
        namesakes, twins = set(picked[:rare[0]]), set(picked[rare[0]:])
        steady = {j for i in picked for j in (i - 1, i)}  # no changes, so the cases stay true
        movable = [i for i in range(n) if i not in steady]
        changes = {kind: set(rng.sample(movable, min(_count(rate, n), len(movable))))
                   for kind, rate in ((ChangeKind.MOVED, rates.moved),
                                      (ChangeKind.NAME_CHANGED, rates.name_changed),
                                      (ChangeKind.CODE_CHANGED, rates.code_changed))}
        previous: tuple[Resident, str, str] | None = None
        for i in range(n):
            if previous is not None and (i in twins or i in namesakes):
                resident, given_kana, town = previous
                address = resident.address if i in twins else self._address(town)
                resident = Resident(self._new_code(), resident.name, resident.kana, address,
                                    resident.date_of_birth, resident.sex)
                self.tally.same_four_attributes += i in twins
                self.tally.namesakes_in_town += i in namesakes
            else:
                resident, given_kana, town = self._resident()
            kinds = [kind for kind, chosen in changes.items() if i in chosen]
            person, town = self._history(resident, given_kana, town, kinds)
            previous = person.resident, given_kana, town
            self.tally.residents += 1
            yield person

    def _resident(self) -> tuple[Resident, str, str]:
        """A new resident; also their given name's reading and their town (for clones, moves)."""
        rng = self._rng
        sex = Sex.MALE if rng.random() < 0.5 else Sex.FEMALE
        family, family_kana, _ = rng.choices(FAMILY_NAMES, cum_weights=FAMILY_WEIGHTS)[0]
        given, given_kana, _ = rng.choice(GIVEN_NAMES[sex])
        if family in OLD_FORMS and rng.random() < self.rates.old_kanji:
            family = rng.choice(OLD_FORMS[family])
            self.tally.old_kanji += 1
        kana = family_kana + SPACE + given_kana
        if rng.random() < self.rates.half_width_kana:
            kana = half_width_kana(kana)
            self.tally.half_width_kana += 1
        town = self._town()
        resident = Resident(self._new_code(), family + SPACE + given, kana, self._address(town),
                            date.fromordinal(rng.randrange(FIRST_BIRTH, LAST_BIRTH + 1)), sex)
        return resident, given_kana, town

    def _town(self) -> str:
        rng = self._rng
        return (rng.choice(AddressWords.prefectures) + rng.choice(AddressWords.cities)
                + rng.choice(AddressWords.towns))

    def _address(self, town: str) -> str:
        rng = self._rng
        numbers = [rng.randint(1, 9), rng.randint(1, 30), rng.randint(1, 20)]
        building = ""
        if rng.random() < self.rates.building:
            building = SPACE + rng.choice(AddressWords.building_names) + str(rng.randint(101, 999))
        style = rng.random()
        if style < self.rates.kanji_numeral_address:
            self.tally.kanji_numeral_address += 1
            return town + "{}丁目{}番{}号".format(*map(kanji_numeral, numbers)) + building
        address = town + "{}丁目{}番{}号".format(*numbers) + building
        if style < self.rates.kanji_numeral_address + self.rates.full_width_address:
            self.tally.full_width_address += 1
            return address.translate(_FULL_WIDTH)
        return address

    def _new_code(self) -> str:
        while True:
            base = f"{self._rng.randrange(10 ** 10):010d}"
            check = check_digit(base)
            if check is not None and base + str(check) not in self._codes:
                self._codes.add(base + str(check))
                return base + str(check)

    def _history(self, resident: Resident, given_kana: str, town: str,
                 kinds: list[ChangeKind]) -> tuple[Person, str]:
        """Draw the changes in `kinds`, in date order, and apply them; the resident's town after."""
        if not kinds:
            return Person(resident, ()), town
        rng = self._rng
        first = max(FIRST_CHANGE, resident.date_of_birth.toordinal())
        days = sorted(rng.randint(first, LAST_CHANGE) for _ in kinds)
        events = []
        for kind, day in zip(rng.sample(kinds, len(kinds)), days, strict=True):
            after: tuple[str, ...]
            if kind is ChangeKind.MOVED:
                town = self._town() if rng.random() < 0.5 else town
                after = (self._address(town),)
                self.tally.moved += 1
            elif kind is ChangeKind.NAME_CHANGED:
                family, family_kana, _ = rng.choices(FAMILY_NAMES, cum_weights=FAMILY_WEIGHTS)[0]
                given = resident.name.split(SPACE)[1]
                after = (family + SPACE + given, family_kana + SPACE + given_kana)
                self.tally.name_changed += 1
            else:
                after = (self._new_code(),)
                self.tally.code_changed += 1
            event = change(resident, kind, after, date.fromordinal(day))
            resident = apply(resident, event)
            events.append(event)
        return Person(resident, tuple(events)), town


def _count(rate: float, n: int) -> int:
    return max(1, round(rate * n)) if rate > 0 and n > 0 else 0


def kanji_numeral(number: int) -> str:
    """23 → 二十三, 10 → 十, 7 → 七 (for numbers below 100)."""
    tens, ones = divmod(number, 10)
    return ((_KANJI_DIGITS[tens] if tens > 1 else "") + ("十" if tens else "")
            + (_KANJI_DIGITS[ones] if ones else "")) or _KANJI_DIGITS[0]


def half_width_kana(text: str) -> str:
    """Katakana as legacy systems keyed it: ﾀｶﾊｼ ﾀﾛｳ."""
    decomposed = unicodedata.normalize("NFD", text).replace(SPACE, " ")
    return "".join(_HALF_WIDTH_KANA.get(c, c) for c in decomposed)


def holder_spelling(attributes: FourAttributes, rng: random.Random) -> FourAttributes:
    """The same four attributes as a holder may have keyed them: new kanji, other spacing,
    hyphenated block numbers, maybe full-width. They normalise to the registry's key."""
    name = attributes.name.translate(NEW_FORMS)
    name = name.replace(SPACE, rng.choice([" ", "", SPACE]))
    address = normalize_address(attributes.address)
    if rng.random() < 0.5:
        address = address.translate(_FULL_WIDTH)
    return FourAttributes(name, address, attributes.date_of_birth, attributes.sex)
