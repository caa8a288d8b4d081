"""The platform's code service: resident code ↔ ID code ↔ link code, by FF1 over 0-9A-Z.

ID code = FF1(ID key, resident code); link code = FF1(key of the unit at its epoch, ID code); both
are 11 characters of 0-9A-Z. The resident code is the person's first (the registry gives that one:
a change of resident code changes no ID or link code). A link code is accepted only if it
decrypts, through its ID code, to a resident code (11 digits, check digit right); anything else is
an `InvalidCode`. Link codes are computed per use and never stored. There is no way in from a
personal number: that goes through the numbering authority's logged look-up, which gives a
resident code.

Every batch call answers per item (a code or an `InvalidCode`): one bad code never fails a batch.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from processors.ff1 import FF1, Alphabet, Numerals
from processors.keys import MasterKeys
from registry.resident_code import NOT_RESIDENT, valid_rows

CODE_SYMBOLS = string.digits + string.ascii_uppercase
CODE_LENGTH = 11
ALPHABET = Alphabet(CODE_SYMBOLS)
MALFORMED = f"malformed: a code is {CODE_LENGTH} characters of 0-9A-Z"


class InvalidCode(ValueError):
    """A code that is malformed, or does not decrypt to a valid resident code."""


@dataclass(frozen=True)
class UnitEpoch:
    """A link-code unit (a holder, or a sector shared by many holders) at one key epoch."""

    unit: str
    epoch: int

    def __str__(self) -> str:
        return f"unit {self.unit!r} at epoch {self.epoch}"


Result = str | InvalidCode
Units = UnitEpoch | Sequence[UnitEpoch]
"""One unit for the whole batch, or one per item."""


class IdCodes:
    """Resident code → ID code, under the ID key alone: what My Portal needs to find a
    resident's entries, and nothing that makes or opens a link code."""

    def __init__(self, id_key: bytes) -> None:
        self._id = FF1(id_key, ALPHABET.radix, CODE_SYMBOLS)

    def id_codes(self, resident_codes: Sequence[str]) -> list[Result]:
        x, ok = _resident_numerals(resident_codes)
        return _results(self._id.encrypt_numerals(x), ok, lambda i: NOT_RESIDENT)

    def id_code(self, resident_code: str) -> str:
        return _one(self.id_codes([resident_code]))


class CodeService(IdCodes):
    """The platform's conversions, batch-first; the scalar calls are batches of one."""

    def __init__(self, keys: MasterKeys) -> None:
        super().__init__(keys.id_key())
        self._keys = keys
        self._units: dict[UnitEpoch, FF1] = {}

    def link_codes(self, resident_codes: Sequence[str], units: Units) -> list[Result]:
        """Binding: each resident's link code for a unit (resident code → ID code → link code)."""
        x, ok = _resident_numerals(resident_codes)
        out = self._by_unit(self._id.encrypt_numerals(x), units, decrypt=False)
        return _results(out, ok, lambda i: NOT_RESIDENT)

    def resident_codes(self, link_codes: Sequence[str], units: Units) -> list[Result]:
        """Link code → ID code → the person's first resident code, validated."""
        _, residents, ok, why = self._open(link_codes, units)
        return _results(residents, ok, why)

    def convert_batch(self, link_codes: Sequence[str], sources: Units,
                      targets: Units) -> list[Result]:
        """Linkage: link code of a source unit → ID code → link code of a target unit."""
        ids, _, ok, why = self._open(link_codes, sources)
        return _results(self._by_unit(ids, targets, decrypt=False), ok, why)

    def id_codes_of(self, link_codes: Sequence[str], units: Units) -> list[Result]:
        """Link code → its validated ID code (step ③ of linkage, first half)."""
        ids, _, ok, why = self._open(link_codes, units)
        return _results(ids, ok, why)

    def link_codes_of(self, id_codes: Sequence[str], units: Units) -> list[str]:
        """ID codes (already validated) → link codes of the units (step ③, second half)."""
        x, formed = ALPHABET.numerals(id_codes, CODE_LENGTH)
        if not formed.all():
            raise InvalidCode(MALFORMED)
        return ALPHABET.texts(self._by_unit(x, units, decrypt=False))

    def link_code(self, resident_code: str, unit: UnitEpoch) -> str:
        return _one(self.link_codes([resident_code], unit))

    def resident_code(self, link_code: str, unit: UnitEpoch) -> str:
        return _one(self.resident_codes([link_code], unit))

    def convert(self, link_code: str, source: UnitEpoch, target: UnitEpoch) -> str:
        return _one(self.convert_batch([link_code], source, target))

    def _open(self, link_codes: Sequence[str], units: Units) -> tuple[
            Numerals, Numerals, NDArray[np.bool_], Callable[[int], str]]:
        """ID codes and resident codes behind link codes; which are valid; why the others not."""
        x, formed = ALPHABET.numerals(link_codes, CODE_LENGTH)
        ids = self._by_unit(x, units, decrypt=True)
        residents = self._id.decrypt_numerals(ids)
        well_formed = formed.tolist()

        def why(i: int) -> str:
            unit = units if isinstance(units, UnitEpoch) else units[i]
            return f"not a link code of {unit}" if well_formed[i] else MALFORMED

        return ids, residents, formed & valid_rows(residents), why

    def _by_unit(self, x: Numerals, units: Units, decrypt: bool) -> Numerals:
        """Encrypt or decrypt each row under its unit's key, one FF1 batch per unit."""
        groups: dict[UnitEpoch, slice | NDArray[np.intp]]
        if isinstance(units, UnitEpoch):
            groups = {units: slice(None)}
        elif len(units) != len(x):
            raise ValueError(f"{len(units)} units for {len(x)} codes")
        else:
            rows: dict[UnitEpoch, list[int]] = {}
            for i, unit in enumerate(units):
                rows.setdefault(unit, []).append(i)
            groups = {unit: np.array(idx) for unit, idx in rows.items()}
        out = np.empty_like(x)
        for unit, where in groups.items():
            ff1 = self._cipher(unit)
            out[where] = (ff1.decrypt_numerals if decrypt else ff1.encrypt_numerals)(x[where])
        return out

    def _cipher(self, unit: UnitEpoch) -> FF1:
        found = self._units.get(unit)
        if found is None:
            key = self._keys.link_key(unit.unit, unit.epoch)
            found = self._units[unit] = FF1(key, ALPHABET.radix, CODE_SYMBOLS)
        return found



def _resident_numerals(resident_codes: Sequence[str]) -> tuple[Numerals, NDArray[np.bool_]]:
    x, formed = ALPHABET.numerals(resident_codes, CODE_LENGTH)
    return x, formed & valid_rows(x)


def _results(out: Numerals, ok: NDArray[np.bool_], why: Callable[[int], str]) -> list[Result]:
    """Each row's code, or its error: the items refused for one reason share one InvalidCode."""
    errors: dict[str, InvalidCode] = {}

    def error(i: int) -> InvalidCode:
        reason = why(i)
        if reason not in errors:
            errors[reason] = InvalidCode(reason)
        return errors[reason]

    return [text if good else error(i)
            for i, (text, good) in enumerate(zip(ALPHABET.texts(out), ok.tolist(), strict=True))]


def _one(results: list[Result]) -> str:
    (result,) = results
    if isinstance(result, InvalidCode):
        raise result
    return result
