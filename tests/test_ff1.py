"""FF1: the nine NIST SP 800-38G samples, and batches against a plain transcription of the spec."""

from __future__ import annotations

import random

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from processors.ff1 import FF1, NIST_SYMBOLS, ONE_BLOCK_ROWS, ROW_BY_ROW, Alphabet

KEY_128 = "2B7E151628AED2A6ABF7158809CF4F3C"
KEY_192 = KEY_128 + "EF4359D8D580AA4F"
KEY_256 = KEY_192 + "7F036D6F04FC6A94"
TWEAK_10 = "39383736353433323130"
TWEAK_36 = "3737373770717273373737"
DIGITS, BASE36 = "0123456789", "0123456789abcdefghi"

# (sample, key, radix, tweak, plaintext, ciphertext): NIST's FF1samples.pdf, samples 1 to 9
NIST_SAMPLES = [
    (1, KEY_128, 10, "", DIGITS, "2433477484"),
    (2, KEY_128, 10, TWEAK_10, DIGITS, "6124200773"),
    (3, KEY_128, 36, TWEAK_36, BASE36, "a9tv40mll9kdu509eum"),
    (4, KEY_192, 10, "", DIGITS, "2830668132"),
    (5, KEY_192, 10, TWEAK_10, DIGITS, "2496655549"),
    (6, KEY_192, 36, TWEAK_36, BASE36, "xbj3kv35jrawxv32ysr"),
    (7, KEY_256, 10, "", DIGITS, "6657667009"),
    (8, KEY_256, 10, TWEAK_10, DIGITS, "1001623463"),
    (9, KEY_256, 36, TWEAK_36, BASE36, "xs8a0azh2avyalyzuwd"),
]


@pytest.mark.parametrize(("sample", "key", "radix", "tweak", "plain", "cipher"), NIST_SAMPLES,
                         ids=[f"sample-{s[0]}" for s in NIST_SAMPLES])
def test_nist_samples(sample: int, key: str, radix: int, tweak: str, plain: str,
                      cipher: str) -> None:
    ff1 = FF1(bytes.fromhex(key), radix)
    assert ff1.encrypt(plain, bytes.fromhex(tweak)) == cipher
    assert ff1.decrypt(cipher, bytes.fromhex(tweak)) == plain


@pytest.mark.parametrize(("sample", "key", "radix", "tweak", "plain", "cipher"), NIST_SAMPLES,
                         ids=[f"sample-{s[0]}" for s in NIST_SAMPLES])
def test_nist_samples_inside_a_batch(sample: int, key: str, radix: int, tweak: str, plain: str,
                                     cipher: str) -> None:
    """The sample row comes out right whatever else shares its AES calls."""
    ff1 = FF1(bytes.fromhex(key), radix)
    rng = random.Random(sample)
    others = ["".join(rng.choice(NIST_SYMBOLS[:radix]) for _ in plain) for _ in range(99)]
    batch = [*others[:50], plain, *others[50:]]
    encrypted = ff1.encrypt_batch(batch, bytes.fromhex(tweak))
    assert encrypted[50] == cipher
    assert ff1.decrypt_batch(encrypted, bytes.fromhex(tweak)) == batch


def reference_ff1(key: bytes, radix: int, tweak: bytes, x: list[int], decrypt: bool) -> list[int]:
    """SP 800-38G algorithms 7 and 8 written out for one string, Python ints, AES per block."""
    n, t = len(x), len(tweak)
    u, v = n // 2, n - n // 2
    b = -(-(radix ** v - 1).bit_length() // 8)
    d = 4 * -(-b // 4) + 4
    aes = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    p = bytes([1, 2, 1]) + radix.to_bytes(3, "big") + bytes([10, u % 256]) + n.to_bytes(
        4, "big") + t.to_bytes(4, "big")

    def num(digits: list[int]) -> int:
        value = 0
        for digit in digits:
            value = value * radix + digit
        return value

    def digits_of(value: int, count: int) -> list[int]:
        return [value // radix ** k % radix for k in reversed(range(count))]

    def y(i: int, half: list[int]) -> int:
        q = tweak + bytes((-t - b - 1) % 16) + bytes([i]) + num(half).to_bytes(b, "big")
        r = bytes(16)
        for k in range(0, len(p + q), 16):
            r = aes.update(bytes(a ^ c for a, c in zip(r, (p + q)[k:k + 16], strict=True)))
        s = r + b"".join(aes.update(bytes(a ^ c for a, c in zip(r, j.to_bytes(16, "big"),
                                                                 strict=True)))
                         for j in range(1, -(-d // 16)))
        return int.from_bytes(s[:d], "big")

    a, bb = x[:u], x[u:]
    for i in reversed(range(10)) if decrypt else range(10):
        m = u if i % 2 == 0 else v
        if decrypt:
            a, bb = digits_of((num(bb) - y(i, a)) % radix ** m, m), a
        else:
            a, bb = bb, digits_of((num(a) + y(i, bb)) % radix ** m, m)
    return a + bb


@pytest.mark.parametrize(("radix", "length", "tweak_bytes"), [
    (10, 6, 0), (10, 23, 5), (36, 11, 0), (36, 11, 7), (36, 19, 11), (36, 60, 3), (62, 40, 0),
    (2, 24, 0), (256, 33, 20), (1000, 7, 2),
])
def test_batch_matches_the_spec_transcription(radix: int, length: int, tweak_bytes: int) -> None:
    """uint64 rounds (b ≤ 4), Python-int rounds, several varying MAC blocks, S longer than R."""
    rng = random.Random(radix * 1000 + length)
    key = rng.randbytes(rng.choice([16, 24, 32]))
    tweak = rng.randbytes(tweak_bytes)
    x = np.array([[rng.randrange(radix) for _ in range(length)]
                  for _ in range(ONE_BLOCK_ROWS + 8)])
    ff1 = FF1(key, radix)
    encrypted = ff1.encrypt_numerals(x, tweak)
    for row, out in zip(x.tolist(), encrypted.tolist(), strict=True):
        assert out == reference_ff1(key, radix, tweak, row, decrypt=False)
    assert (ff1.decrypt_numerals(encrypted, tweak) == x).all()
    assert reference_ff1(key, radix, tweak, encrypted[0].tolist(), decrypt=True) == x[0].tolist()
    # a few rows go row by row, in Python integers (up to ONE_BLOCK_ROWS when a round is one
    # AES block, as for link codes): the same results as all of them in numpy
    assert len(x[:ONE_BLOCK_ROWS]) < len(x)
    for few in (ROW_BY_ROW, ONE_BLOCK_ROWS):
        for k in range(0, len(x), few):
            rows = slice(k, k + few)
            assert (ff1.encrypt_numerals(x[rows], tweak) == encrypted[rows]).all()
            assert (ff1.decrypt_numerals(encrypted[rows], tweak) == x[rows]).all()



def test_alphabets_are_symbols_for_numerals() -> None:
    upper = FF1(bytes(16), 36, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    lower = FF1(bytes(16), 36)
    assert upper.encrypt("0123456789ABCDEFGHI") == lower.encrypt(BASE36).upper()
    assert Alphabet("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ").numerals(
        ["A1", "a1", "A", "Ａ1"], 2)[1].tolist() == [True, False, False, False]


def test_refuses_what_ff1_does_not_define() -> None:
    ff1 = FF1(bytes(16), 10)
    with pytest.raises(ValueError, match="radix"):
        ff1.encrypt("12345")  # 10 ** 5 < 1,000,000: below FF1's minimum domain
    with pytest.raises(ValueError, match="symbols"):
        ff1.encrypt("12345678x0")
    with pytest.raises(ValueError, match="symbols"):
        ff1.encrypt_batch(["1234567890", "123456789"])
    with pytest.raises(ValueError):
        FF1(bytes(16), 36, "0123456789")
    with pytest.raises(TypeError, match="numeral API"):
        FF1(bytes(16), 62).encrypt("0" * 10)
    with pytest.raises(ValueError):
        FF1(bytes(15), 10)  # not an AES key
