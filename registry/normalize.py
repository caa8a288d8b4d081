"""Normalisation for 4-attribute matching: two spellings of one fact get one key.

Used alike on the registry's records and on what a holder sends, so a match is exact equality of
keys, never a similarity score. Folded: NFKC (full-width ↔ half-width, half-width kana), spaces,
zero-width characters and variation selectors, old/variant kanji (髙→高, 﨑→崎, 邊/邉→辺, …),
address notation (丁目/番地/番/号/の vs hyphens, kanji numerals vs digits), and dates written in
the Japanese era.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from functools import lru_cache

from registry.residents import FourAttributes, Sex
from renkei.clock import JST

# The rules' version: raised with any change that gives some spelling another key, so a store
# keeping keys made by earlier rules makes them again (1: spaces between digits kept as hyphens,
# invisible characters dropped; a store noting none was keyed before. 2: the soft hyphen and
# bidirectional controls dropped too).
RULES = 2

# Old or variant form → the common form. 齋 is the old form of 斎 and 齊 of 斉: 斎藤 and 斉藤
# are different names, so they stay apart.
KANJI_VARIANTS = {
    "髙": "高", "﨑": "崎", "嵜": "崎", "碕": "崎", "邊": "辺", "邉": "辺", "齋": "斎",
    "齊": "斉", "澤": "沢", "濱": "浜", "濵": "浜", "廣": "広", "嶋": "島", "嶌": "島",
    "國": "国", "櫻": "桜", "實": "実", "德": "徳", "惠": "恵", "藏": "蔵", "眞": "真",
    "龍": "竜", "冨": "富", "槇": "槙", "峯": "峰", "條": "条", "關": "関", "瀨": "瀬",
    "圓": "円", "傳": "伝", "澁": "渋", "來": "来", "𠮷": "吉", "曾": "曽",
}
NEW_FORMS = str.maketrans(KANJI_VARIANTS)  # a translation table: old forms → common forms
_ADDRESS_FOLD = str.maketrans({**KANJI_VARIANTS, "ヶ": "ケ", "ヵ": "カ"})

_KANJI_DIGITS = dict(zip("〇一二三四五六七八九", range(10), strict=True))
_KANJI_UNITS = {"十": 10, "百": 100, "千": 1000}
# a run of kanji digits is a number of the address after a mark or before one (else a name's:
# 三田, 九段); each run matched once, its marks looked at (a pattern that looked for the mark
# after from each place in a run took time quadratic in its length: minutes for a holder's)
_KANJI_RUN = re.compile(r"[〇一二三四五六七八九十百千]+")
_MARKS_BEFORE = ("丁目", "番地", "番", "の", "-")
_MARK_AFTER = re.compile(r"丁目|番地|番(?!町)|号")
# Zero-width characters (space, non-joiner, joiner, word joiner, byte-order mark), the soft
# hyphen and bidirectional controls (marks, embeddings, overrides, isolates): nothing seen,
# dropped from a key and from a name or address as the registry stores and shows it (one spoofing
# how it reads shown as it is, not as it is keyed)
_UNSEEN = "\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff"
_UNSEEN_CHARACTERS = re.compile(f"[{_UNSEEN}]")
# ... and, from a key alone, variation selectors (葛 with U+E0100, an ideographic variation
# sequence, is 葛; stored, the name keeps the glyph its resident writes)
_INVISIBLE = re.compile(f"[{_UNSEEN}\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_SPACE_BETWEEN_DIGITS = re.compile(r"(?<=\d)\s+(?=\d)")
_DASH_BETWEEN_DIGITS = re.compile(r"(?<=\d)[‐‑‒–—―−ー](?=\d)")
_MARK_BEFORE_DIGIT = re.compile(r"(?<=\d)(?:丁目|番地の?|番(?!町)|号|の)(?=\d)")
_MARK_AT_END = re.compile(r"(?<=\d)(?:丁目|番地|番(?!町)|号)")

# The day Japan took the Gregorian calendar (明治6年1月1日): a date before it is of the lunar
# calendar, not this one, with an era's year or four digits.
GREGORIAN = date(1873, 1, 1)
# Each era: the year of its first year (元年), its first day and its last (Gregorian). The day an
# era changed is in both (明治45年7月30日 is 大正元年7月30日); 明治 is read from 明治6年:
# GREGORIAN.
_ERAS = {"明治": (1868, GREGORIAN, date(1912, 7, 30)),
         "大正": (1912, date(1912, 7, 30), date(1926, 12, 25)),
         "昭和": (1926, date(1926, 12, 25), date(1989, 1, 7)),
         "平成": (1989, date(1989, 1, 8), date(2019, 4, 30)),
         "令和": (2019, date(2019, 5, 1), date.max)}
_DATE = re.compile(r"(?:(?P<era>明治|大正|昭和|平成|令和)(?P<y>\d{1,2}|元)|(?P<year>[1-9]\d{3}|元))"
                   r"[年/.-](?P<m>\d{1,2})[月/.-](?P<d>\d{1,2})日?")
NOT_A_DATE = ("is not a date (1975-01-02, 1975/1/2, 1975年1月2日, 昭和50年1月2日, …; the year "
              "first, of four digits or of an era: 01/02/1975 could be 2 January or 1 February)")
OUTSIDE_ERA = ("is not a day of its era (元年 is its first year; 明治 is read from 明治6年, "
               "大正 to 大正15年12月25日, 昭和 to 昭和64年1月7日, 平成 to 平成31年4月30日)")
BEFORE_GREGORIAN = ("is before 1873-01-01, when Japan took the Gregorian calendar (a day of the "
                    "lunar calendar before it is not one of this one)")
TO_COME = "is after today (in Japan)"
NO_ERA = "has 元年 with no era: the first year of which? (平成元年1月8日, 令和元年5月1日, …)"
_SEXES = {"1": Sex.MALE, "男": Sex.MALE, "男性": Sex.MALE, "M": Sex.MALE, "MALE": Sex.MALE,
          "2": Sex.FEMALE, "女": Sex.FEMALE, "女性": Sex.FEMALE, "F": Sex.FEMALE,
          "FEMALE": Sex.FEMALE}


class BadDate(ValueError):
    """A date of birth that is none, and why (`reason`, never quoting it: personal data)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the date of birth {reason}")
        self.reason = reason


def unseen_dropped(text: str) -> str:
    """A name or address as stored and shown: nothing unseen (_UNSEEN), the rest as written."""
    return _UNSEEN_CHARACTERS.sub("", text)


def _visible(text: str) -> str:
    """NFKC, nothing invisible (_INVISIBLE)."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def _compact(text: str) -> str:
    """NFKC, nothing invisible, no whitespace."""
    return "".join(_visible(text).split())


def _parted(address: str) -> str:
    """NFKC, nothing invisible; a space between two digits a hyphen (1-2-3 405 is room 405, not
    1-2-3405), no other whitespace."""
    return "".join(_SPACE_BETWEEN_DIGITS.sub("-", _visible(address)).split())


CACHED_NAME_CHARS = 256  # names this long at most are kept once normalised (a holder's query
# may carry one of ~900,000 characters: 65,536 such would be ~100 GB)


def normalize_name(name: str) -> str:
    return _cached_name(name) if len(name) <= CACHED_NAME_CHARS else _name_key(name)


@lru_cache(maxsize=65536)
def _cached_name(name: str) -> str:
    return _name_key(name)


def _name_key(name: str) -> str:
    return _compact(name).translate(NEW_FORMS).upper()


def normalize_address(address: str) -> str:
    """One form for all ways of writing an address: `…1丁目2番地の3`, `…一丁目２-３` → `…1-2-3`."""
    text = _parted(address).translate(_ADDRESS_FOLD).upper()
    text = _KANJI_RUN.sub(_kanji_converted, text)
    text = _DASH_BETWEEN_DIGITS.sub("-", text)
    text = _MARK_BEFORE_DIGIT.sub("-", text)
    return _MARK_AT_END.sub("", text)


def _kanji_converted(run: re.Match[str]) -> str:
    """A run of kanji digits as a number if a mark is before or after it, else as it is."""
    text, start, end = run.string, run.start(), run.end()
    if text.endswith(_MARKS_BEFORE, 0, start) or _MARK_AFTER.match(text, end):
        return kanji_number(run.group())
    return run.group()


def kanji_number(text: str) -> str:
    """一〇一 → '101', 二十三 → '23', 百五 → '105'; digit by digit, never through `int()`, so a
    run of any length converts (Python refuses to convert more than 4,300 digits)."""
    if not any(c in _KANJI_UNITS for c in text):
        return "".join(str(_KANJI_DIGITS[c]) for c in text).lstrip("0") or "0"
    return str(_with_units(text))


def _with_units(text: str) -> int:
    """二十三 → 23; each character adds at most 9,000, so the number is never too long to write."""
    total, digit = 0, 0
    for c in text:
        if c in _KANJI_UNITS:
            total += (digit or 1) * _KANJI_UNITS[c]
            digit = 0
        else:
            digit = _KANJI_DIGITS[c]
    return total + digit


def parse_date(text: str) -> date:
    """A date of birth as written: 1975-01-02, 1975/1/2, 1975年1月2日, 昭和50年1月2日, 平成元年…;
    a year with no era has four digits, an era's years count from 1 (元年), and a day outside
    its era (平成0年, 平成32年, 昭和65年, 平成元年1月7日) is none, as is a day before GREGORIAN or
    after today in Japan. Errors never quote the text: it is personal data."""
    written = _written(text)
    if written > datetime.now(JST).date():
        raise BadDate(TO_COME)
    return written


def _written(text: str) -> date:
    """The day `text` writes, of its era's or of four digits from GREGORIAN (parse_date)."""
    found = _DATE.fullmatch(_compact(text))
    if found is None:
        raise BadDate(NOT_A_DATE)
    if found["year"] == "元":
        raise BadDate(NO_ERA)
    if found["era"] is None:
        written = _day(int(found["year"]), found["m"], found["d"])
        if written < GREGORIAN:
            raise BadDate(BEFORE_GREGORIAN)
        return written
    first_year, first, last = _ERAS[found["era"]]
    year = 1 if found["y"] == "元" else int(found["y"])
    written = _day(first_year - 1 + year, found["m"], found["d"])
    if year < 1 or not first <= written <= last:
        raise BadDate(OUTSIDE_ERA)
    return written


def _day(year: int, month: str, day: str) -> date:
    """That day; BadDate if there is none (a 30th of February)."""
    try:
        return date(year, int(month), int(day))
    except ValueError:
        raise BadDate(NOT_A_DATE) from None


def parse_sex(text: str) -> Sex:
    try:
        return _SEXES[_compact(text).upper()]
    except KeyError:
        raise ValueError("the sex is not one of 1/2, 男/女, M/F") from None


def four_key(attributes: FourAttributes) -> str:
    """The matching key: equal keys mean all four attributes match after normalisation."""
    return "|".join((normalize_name(attributes.name), normalize_address(attributes.address),
                     attributes.date_of_birth.isoformat(), attributes.sex.name))
