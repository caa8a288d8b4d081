"""FF1 format-preserving encryption (NIST SP 800-38G), one AES-ECB call per Feistel round per batch
(a batch of a few rows goes row by row in Python integers: numpy's cost per call would dominate).

A batch is an array of numeral rows, all of one length. Each round builds the last CBC-MAC block
of every row and encrypts them all with one `update()`; the constant part of the MAC input (P, the
tweak, the padding) is folded into a precomputed chaining value, so for a short string (b ≤ 4,
e.g. radix 36 × 11 symbols) a round costs one AES block per row. The numbers NUM(A), NUM(B) and y
are numpy uint64 when y fits (d = 8 bytes), else numpy arrays of Python ints: same code either way.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numpy.typing import NDArray

Numerals = NDArray[np.int64]
"""A batch of numeral strings: shape (batch, length), numerals in [0, radix)."""

NIST_SYMBOLS = string.digits + string.ascii_lowercase
ROUNDS = 10
MIN_DOMAIN = 1_000_000  # SP 800-38G Rev. 1: radix ** minlen ≥ 1,000,000
CHUNK_ROWS = 8192  # rows per pass over the rounds: a larger batch goes in chunks, cache-sized
ROW_BY_ROW = 4  # up to this many rows, plain integers beat numpy's fixed cost per operation
ONE_BLOCK_ROWS = 16  # the same when a round is one AES block in integers (_Shape.masks): ~6 µs
# a row, against numpy's ~7.5 at 16 rows, ~5.3 at 24


class Alphabet:
    """Symbols ↔ numerals: the i-th symbol is numeral i."""

    def __init__(self, symbols: str) -> None:
        if len(symbols) < 2 or len(set(symbols)) != len(symbols) or not (
                symbols.isascii() and symbols.isprintable()):
            raise ValueError("an alphabet is at least two distinct printable ASCII symbols")
        self.symbols = symbols
        self._to_numeral = np.full(256, -1, dtype=np.int64)
        self._to_numeral[list(symbols.encode())] = np.arange(len(symbols))
        self._to_symbol = np.frombuffer(symbols.encode(), dtype=np.uint8)

    @property
    def radix(self) -> int:
        return len(self.symbols)

    def numerals(self, texts: Sequence[str], length: int) -> tuple[Numerals, NDArray[np.bool_]]:
        """The numerals of each text (zeros where invalid) and whether it was `length` symbols."""
        shaped = [t if len(t) == length and t.isascii() else "\0" * length for t in texts]
        raw = np.frombuffer("".join(shaped).encode("ascii"), dtype=np.uint8)
        numerals = self._to_numeral[raw.reshape(len(texts), length)]
        return np.maximum(numerals, 0), np.asarray((numerals >= 0).all(axis=1))

    def texts(self, numerals: Numerals) -> list[str]:
        length = numerals.shape[1]
        joined = self._to_symbol[numerals].tobytes().decode("ascii")
        return [joined[i:i + length] for i in range(0, len(joined), length)]


@dataclass(frozen=True)
class _Shape:
    """What FF1 precomputes per (length, tweak): the split, byte counts, constant MAC state."""

    u: int
    v: int
    b: int
    d: int
    tail: NDArray[np.uint8]  # the varying last blocks of Q, with round and numeral bytes zeroed
    chain: NDArray[np.uint8]  # the CBC-MAC state after P and the constant blocks of Q
    places_u: NDArray[Any]  # radix ** (u-1) … radix ** 0, in the number type
    places_v: NDArray[Any]
    q_places: NDArray[Any]  # 256 ** (b-1) … 256 ** 0: the numeral bytes at the end of Q
    s_places: NDArray[Any]  # 256 ** (d-1) … 256 ** 0: the bytes of S
    counters: NDArray[np.uint8]  # [1]^16 … [⌈d/16⌉-1]^16, to extend R to d bytes
    # when Q varies in its last block alone and S is R's first d bytes (b ≤ 15, d ≤ 16: radix
    # 36 × 11 symbols too), round i's block to encrypt is masks[i] ^ NUM: that block of Q, with
    # i in it, XOR the chaining value, as an integer (empty for other shapes)
    masks: tuple[int, ...]

    @property
    def tail_bytes(self) -> bytes:
        return self.tail.tobytes()

    @property
    def chain_bytes(self) -> bytes:
        return self.chain.tobytes()


def _number(numerals: list[int], radix: int) -> int:
    """NUM_radix: the numerals as one number, most significant first."""
    value = 0
    for numeral in numerals:
        value = value * radix + numeral
    return value


def _numerals(value: int, count: int, radix: int) -> list[int]:
    """STR_radix: `count` numerals of the number, most significant first."""
    out = [0] * count
    for k in range(count - 1, -1, -1):
        value, out[k] = divmod(value, radix)
    return out


def _xor(x: bytes, y: bytes) -> bytes:
    return (int.from_bytes(x, "big") ^ int.from_bytes(y, "big")).to_bytes(16, "big")


def _places(base: int, count: int, dtype: Any) -> NDArray[Any]:
    return np.array([base ** k for k in reversed(range(count))], dtype=dtype)


class FF1:
    """FF1 over `radix` with one AES key. `symbols` name the numerals for the text API (default
    0-9a-z, as NIST's samples); without them (radix > 36) there is only the numeral API.

    Not thread-safe (it keeps one AES-ECB context): use one instance per thread.
    """

    def __init__(self, key: bytes, radix: int, symbols: str | None = None) -> None:
        if symbols is None and radix <= len(NIST_SYMBOLS):
            symbols = NIST_SYMBOLS[:radix]
        self.alphabet = None if symbols is None else Alphabet(symbols)
        if not 2 <= radix <= 2 ** 16 or (symbols is not None and len(symbols) != radix):
            raise ValueError(f"radix {radix} with symbols {symbols!r}")
        self.radix = radix
        self._ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        self._shapes: dict[tuple[int, bytes], _Shape] = {}

    def __repr__(self) -> str:
        return f"FF1(radix={self.radix})"

    def encrypt(self, text: str, tweak: bytes = b"") -> str:
        return self.encrypt_batch([text], tweak)[0]

    def decrypt(self, text: str, tweak: bytes = b"") -> str:
        return self.decrypt_batch([text], tweak)[0]

    def encrypt_batch(self, texts: Sequence[str], tweak: bytes = b"") -> list[str]:
        alphabet = self._alphabet()
        return alphabet.texts(self.encrypt_numerals(self._numerals(alphabet, texts), tweak))

    def decrypt_batch(self, texts: Sequence[str], tweak: bytes = b"") -> list[str]:
        alphabet = self._alphabet()
        return alphabet.texts(self.decrypt_numerals(self._numerals(alphabet, texts), tweak))

    def encrypt_numerals(self, x: Numerals, tweak: bytes = b"") -> Numerals:
        return self._feistel(x, tweak, decrypt=False)

    def decrypt_numerals(self, x: Numerals, tweak: bytes = b"") -> Numerals:
        return self._feistel(x, tweak, decrypt=True)

    def _alphabet(self) -> Alphabet:
        if self.alphabet is None:
            raise TypeError(f"radix {self.radix} has no symbols: use the numeral API")
        return self.alphabet

    @staticmethod
    def _numerals(alphabet: Alphabet, texts: Sequence[str]) -> Numerals:
        length = len(texts[0]) if texts else 0
        numerals, valid = alphabet.numerals(texts, length)
        if not valid.all():
            raise ValueError(f"every text must be {length} symbols of {alphabet.symbols!r}")
        return numerals

    def _feistel(self, x: Numerals, tweak: bytes, decrypt: bool) -> Numerals:
        """Algorithms 7 and 8 of SP 800-38G, on every row of `x` at once."""
        shape = self._shape(x.shape[1], tweak)
        if len(x) <= (ONE_BLOCK_ROWS if shape.masks else ROW_BY_ROW):
            return np.array([self._feistel_row(row, shape, decrypt) for row in x.tolist()],
                            dtype=np.int64).reshape(x.shape)
        if len(x) > CHUNK_ROWS:
            return np.concatenate([self._feistel(x[i:i + CHUNK_ROWS], tweak, decrypt)
                                   for i in range(0, len(x), CHUNK_ROWS)])
        dtype = shape.places_u.dtype
        a = x[:, :shape.u].astype(dtype) @ shape.places_u
        b = x[:, shape.u:].astype(dtype) @ shape.places_v
        for i in reversed(range(ROUNDS)) if decrypt else range(ROUNDS):
            modulus = self.radix ** (shape.v if i % 2 else shape.u)
            if decrypt:
                y = self._prf(shape, i, a) % modulus
                a, b = (b + (modulus - y)) % modulus, a
            else:
                y = self._prf(shape, i, b) % modulus
                a, b = b, (a + y) % modulus
        return np.concatenate([self._digits(a, shape.places_u),
                               self._digits(b, shape.places_v)], axis=1)

    def _feistel_row(self, row: list[int], shape: _Shape, decrypt: bool) -> list[int]:
        """The same rounds on one row, in Python integers (one AES call per round)."""
        a, b = _number(row[:shape.u], self.radix), _number(row[shape.u:], self.radix)
        for i in reversed(range(ROUNDS)) if decrypt else range(ROUNDS):
            modulus = self.radix ** (shape.v if i % 2 else shape.u)
            if decrypt:
                a, b = (b - self._prf_row(shape, i, a)) % modulus, a
            else:
                a, b = b, (a + self._prf_row(shape, i, b)) % modulus
        return _numerals(a, shape.u, self.radix) + _numerals(b, shape.v, self.radix)

    def _prf_row(self, shape: _Shape, i: int, num: int) -> int:
        """`_prf` for one number: one AES block in integers, if a round is one (shape.masks)."""
        if shape.masks:
            return int.from_bytes(self._ecb.update((shape.masks[i] ^ num).to_bytes(16, "big"))
                                  [:shape.d], "big")
        tail = shape.tail_bytes[:-shape.b - 1] + bytes([i]) + num.to_bytes(shape.b, "big")
        r = shape.chain_bytes
        for block in range(0, len(tail), 16):
            r = self._ecb.update(_xor(tail[block:block + 16], r))
        s = r + b"".join(self._ecb.update(_xor(r, bytes(c))) for c in shape.counters)
        return int.from_bytes(s[:shape.d], "big")

    def _digits(self, nums: NDArray[Any], places: NDArray[Any]) -> Numerals:
        """STR_radix of each number, as many numerals as `places`."""
        return ((nums[:, None] // places) % self.radix).astype(np.int64)  # type: ignore[no-any-return]

    def _prf(self, shape: _Shape, i: int, nums: NDArray[Any]) -> NDArray[Any]:
        """y = NUM(S) for round i: S is PRF(P || Q), extended to d bytes, Q ending in NUM(nums)."""
        count = len(nums)
        tail = np.tile(shape.tail, (count, 1))
        tail[:, -shape.b - 1] = i
        tail[:, -shape.b:] = (nums[:, None] // shape.q_places) % 256
        r = np.broadcast_to(shape.chain, (count, 16))
        for block in range(0, tail.shape[1], 16):
            r = self._aes(tail[:, block:block + 16] ^ r)
        if len(shape.counters):
            more = self._aes((r[:, None, :] ^ shape.counters).reshape(-1, 16))
            r = np.concatenate([r, more.reshape(count, -1)], axis=1)
        return r[:, :shape.d].astype(shape.s_places.dtype) @ shape.s_places  # type: ignore[no-any-return]

    def _aes(self, blocks: NDArray[np.uint8]) -> NDArray[np.uint8]:
        out = self._ecb.update(np.ascontiguousarray(blocks).tobytes())
        return np.frombuffer(out, dtype=np.uint8).reshape(-1, 16)

    def _shape(self, n: int, tweak: bytes) -> _Shape:
        found = self._shapes.get((n, tweak))
        if found is None:
            found = self._shapes[(n, tweak)] = self._new_shape(n, tweak)
        return found

    def _new_shape(self, n: int, tweak: bytes) -> _Shape:
        if n < 2 or self.radix ** n < MIN_DOMAIN:
            raise ValueError(f"FF1 needs radix ** length ≥ {MIN_DOMAIN:,} (length {n})")
        u, v, t = n // 2, n - n // 2, len(tweak)
        b = -(-(self.radix ** v - 1).bit_length() // 8)
        d = 4 * -(-b // 4) + 4
        p = bytes([1, 2, 1]) + self.radix.to_bytes(3, "big") + bytes([10, u % 256])
        p += n.to_bytes(4, "big") + t.to_bytes(4, "big")
        q = tweak + bytes((-t - b - 1) % 16 + 1 + b)
        varying = 16 * -(-(b + 1) // 16)
        chain = np.zeros(16, dtype=np.uint8)
        constant = np.frombuffer(p + q[:-varying], dtype=np.uint8).reshape(-1, 16)
        for block in constant:
            chain = self._aes(chain ^ block)[0]
        dtype = np.uint64 if d == 8 else object  # y < 2 ** 64 exactly when d = 8
        counters = [list(j.to_bytes(16, "big")) for j in range(1, -(-d // 16))]
        mask = int.from_bytes(q[-varying:], "big") ^ int.from_bytes(chain.tobytes(), "big")
        masks = () if varying > 16 or counters else tuple(
            mask ^ i << 8 * b for i in range(ROUNDS))
        return _Shape(u, v, b, d, np.frombuffer(q[-varying:], dtype=np.uint8), chain,
                      _places(self.radix, u, dtype), _places(self.radix, v, dtype),
                      _places(256, b, dtype), _places(256, d, dtype),
                      np.array(counters, dtype=np.uint8).reshape(-1, 16), masks)
