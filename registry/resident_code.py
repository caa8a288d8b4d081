"""The resident code (住民票コード): 10 digits and a check digit.

The real check-digit formula is not public; this is the simulator's own:
    check = (1·d1 + 2·d2 + … + 10·d10) mod 11, d1 the leftmost digit,
and a 10-digit base whose check would be 10 is never issued, so every code is 11 digits.
The weights are distinct and non-zero mod 11: any single wrong digit and any swap of two of the
first ten digits is detected. (The personal number uses other weights: see `authority`.)
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy imported by the two bulk functions alone: a command that only checks
    import numpy as np  # a code (cards, the registry, the authority) starts ~50 ms sooner
    from numpy.typing import NDArray

LENGTH = 11
WEIGHTS = tuple(range(1, LENGTH))  # for d1 … d10
NOT_RESIDENT = "not a resident code: 11 digits with a valid check digit"


def _issued() -> int:
    """How many codes there are: the 10-digit bases whose check is not 10."""
    sums = [1] + [0] * 10  # how many bases of the digits so far have each weighted sum mod 11
    for weight in WEIGHTS:
        sums = [sum(sums[(total - weight * digit) % 11] for digit in range(10))
                for total in range(11)]
    return sum(sums) - sums[10]


CODES = _issued()  # so no registry has more residents: each has a code of their own


def check_digit(base: str) -> int | None:
    """The check digit of a 10-digit base, or None if that base is never issued."""
    if len(base) != LENGTH - 1 or not (base.isascii() and base.isdigit()):
        raise ValueError("a resident-code base is 10 digits")
    check = sum(map(operator.mul, WEIGHTS, map(int, base))) % 11
    return None if check == 10 else check


def is_valid(code: str) -> bool:
    return (len(code) == LENGTH and code.isascii() and code.isdigit()
            and check_digit(code[:-1]) == int(code[-1]))


def valid_rows(digits: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Which rows of numerals (shape (n, 11)) are resident codes: 11 decimal digits, check right."""
    import numpy as np

    decimal = (digits < 10).all(axis=1)
    return decimal & ((digits[:, :-1] @ np.array(WEIGHTS)) % 11 == digits[:, -1])  # type: ignore[no-any-return]


def random_codes(count: int, seed: int) -> list[str]:
    """`count` distinct valid resident codes in random order, drawn at once with numpy."""
    import numpy as np

    rng = np.random.default_rng(seed)
    codes = np.empty(0, dtype=np.int64)
    while len(codes) < count:
        digits = rng.integers(0, 10, size=(count + count // 8 + 16, LENGTH - 1))
        checks = (digits @ np.array(WEIGHTS)) % 11
        drawn = digits @ 10 ** np.arange(LENGTH - 1, 0, -1) + checks
        codes = np.sort(np.concatenate([codes, drawn[checks < 10]]))
        codes = codes[np.concatenate([[True], codes[1:] != codes[:-1]])]
    return [f"{code:011d}" for code in rng.permutation(codes)[:count].tolist()]
