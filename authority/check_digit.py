"""The personal number's check digit (番号法施行令 8条; 総務省令85号 5条).

Over the first 11 digits from the left, weights 6,5,4,3,2,7,6,5,4,3,2; r = sum mod 11;
the check digit is 0 if r ≤ 1, else 11 − r. So 12345678901 gets 8: 123456789018.
"""

from __future__ import annotations

import operator
import unicodedata

from stdnum.jp import in_

WEIGHTS = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
LENGTH = 12


def check_digit(base: str) -> int:
    if len(base) != LENGTH - 1 or not (base.isascii() and base.isdigit()):
        raise ValueError("a personal-number base is 11 digits")
    remainder = sum(map(operator.mul, WEIGHTS, map(int, base))) % 11
    return 0 if remainder <= 1 else 11 - remainder


def with_check_digit(base: str) -> str:
    return base + str(check_digit(base))


def is_valid(number: str) -> bool:
    return (len(number) == LENGTH and number.isascii() and number.isdigit()
            and check_digit(number[:-1]) == int(number[-1]))


def keyed(text: str) -> str:
    """A number (or a resident code) as keyed or printed: full-width digits made ASCII (NFKC), the
    spaces or hyphens between its groups (the card prints 4-4-4: `1234 5678 9012`, a form
    `1234-5678-9012`) dropped, as stdnum's compact drops them."""
    return in_.compact("".join(unicodedata.normalize("NFKC", text).split()))
