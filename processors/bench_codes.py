"""`renkei bench codes`: link-code conversions per second on one core, beside the AES limit.

The limit: one conversion A → ID → B is three FF1 operations (decrypt A under unit A; decrypt the
ID code to check it hides a valid resident code; encrypt under unit B), ten AES calls each: 30 AES
calls. Unbatched, a conversion cannot beat (single-block AES calls per second) / 30. Batching puts
a whole batch's blocks into one AES call per Feistel round, so the bound that matters then is
(bulk ECB blocks per second) / 30. Keys here are fresh and in memory only: no key store is touched.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from processors.codes import ALPHABET, CODE_LENGTH, CodeService, InvalidCode, UnitEpoch
from processors.ff1 import ROUNDS
from processors.keys import MasterKeys
from registry import store as registry_store
from registry.resident_code import random_codes
from renkei.options import POSITIVE, residents_option, result_option
from renkei.state import write_json

FF1_PER_CONVERSION = 3
AES_PER_CONVERSION = FF1_PER_CONVERSION * ROUNDS
BULK_BLOCKS = 4096
SOURCE, TARGET = UnitEpoch("city-a", 0), UnitEpoch("medical", 0)
# A forged code is accepted only if it decrypts to 11 decimal digits (each 10/36) whose check
# digit is right (1 in 11 of 11-digit strings).
EXPECTED_FALSE_ACCEPT = (10 / 36) ** 11 / 11


def pin_to_one_core() -> int | None:
    """Run on one core (the first this process may use); None where affinity is unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def rate(work: Callable[[], object], items: int, seconds: float) -> float:
    """Items per second, running `work` (which handles `items`) for about `seconds`."""
    work()
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        work()
        calls += 1
    return calls * items / elapsed


def aes_rates(seconds: float) -> dict[str, float]:
    """Single-block AES calls per second, and bulk ECB blocks per second, on this core."""
    ecb = Cipher(algorithms.AES(os.urandom(32)), modes.ECB()).encryptor()
    block, bulk = bytes(16), bytes(16 * BULK_BLOCKS)
    return {"single_block_calls_per_s": rate(lambda: ecb.update(block), 1, seconds),
            "bulk_blocks_per_s": rate(lambda: ecb.update(bulk), BULK_BLOCKS, seconds)}


def conversion_rates(codes: CodeService, batch_sizes: Sequence[int],
                     seconds: float) -> dict[int, float]:
    """Link-code conversions A → ID → B per second through the batch API, per batch size."""
    residents = random_codes(max(batch_sizes), seed=1)
    links = [c for c in codes.link_codes(residents, SOURCE) if isinstance(c, str)]

    def converting(batch: list[str]) -> Callable[[], object]:
        return lambda: codes.convert_batch(batch, SOURCE, TARGET)

    return {size: rate(converting(links[:size]), size, seconds) for size in batch_sizes}


def false_accepts(codes: CodeService, trials: int) -> dict[str, Any]:
    """Forged codes, and real link codes of one unit presented under another: how many pass."""
    numerals = np.random.default_rng().integers(0, ALPHABET.radix, size=(trials, CODE_LENGTH))
    forged = ALPHABET.texts(numerals)
    residents = random_codes(trials, seed=2)
    misplaced = [c for c in codes.link_codes(residents, SOURCE) if isinstance(c, str)]
    out: dict[str, Any] = {"trials": trials, "expected_rate": EXPECTED_FALSE_ACCEPT}
    for name, presented in (("forged", forged), ("other_unit", misplaced)):
        accepted = sum(not isinstance(r, InvalidCode)
                       for r in codes.convert_batch(presented, TARGET, SOURCE))
        out[name] = {"accepted": accepted, "rate": accepted / trials,
                     "upper_95": poisson_upper_95(accepted) / trials}
    return out


def poisson_upper_95(observed: int) -> float:
    """The one-sided 95 % upper bound on a Poisson mean, having seen `observed` events."""
    low, high = 0.0, observed + 10.0 * math.sqrt(observed + 1) + 10
    for _ in range(100):
        mean = (low + high) / 2
        below = sum(math.exp(-mean) * mean ** k / math.factorial(k) for k in range(observed + 1))
        low, high = (mean, high) if below > 0.05 else (low, mean)
    return high


def registry_rate(residents: int, seed: int = 1) -> dict[str, float]:
    """Residents generated and stored per second."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        registry_store.build(Path(folder) / "registry.db", residents, seed)
        seconds = time.perf_counter() - started
    return {"residents": residents, "seconds": seconds, "residents_per_s": residents / seconds}


def run(batch_sizes: Sequence[int], seconds: float, trials: int,
        residents: int) -> dict[str, Any]:
    core = pin_to_one_core()
    codes = CodeService(MasterKeys.generate())
    aes = aes_rates(seconds)
    return {
        "core": core,
        "aes": aes,
        "aes_calls_per_conversion": AES_PER_CONVERSION,
        "limit_unbatched_per_s": aes["single_block_calls_per_s"] / AES_PER_CONVERSION,
        "limit_bulk_per_s": aes["bulk_blocks_per_s"] / AES_PER_CONVERSION,
        "conversions_per_s": conversion_rates(codes, batch_sizes, seconds),
        "false_accepts": false_accepts(codes, trials),
        "registry": registry_rate(residents),
    }


@click.command("codes", short_help="Link-code conversions A → ID → B per second on one core.")
@click.option("--batch", "batch_sizes", type=click.IntRange(min=1), multiple=True,
              default=(1, 100, 1000), show_default=True, help="batch sizes (repeatable)")
@click.option("--seconds", type=POSITIVE, default=2.0, show_default=True, help="per measurement")
@click.option("--trials", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="forged and misplaced codes each, for the false-accept rate")
@residents_option(1, 100_000, help="registry size to generate")
@result_option(Path("results/bench-codes.json"))
def codes_bench(batch_sizes: tuple[int, ...], seconds: float, trials: int, residents: int,
                out: Path) -> None:
    """Link-code conversions A → ID → B per second on one core, beside the AES limit."""
    result = run(batch_sizes, seconds, trials, residents)
    aes = result["aes"]
    click.echo(f"one core (cpu {result['core']}); a conversion A → ID → B is {FF1_PER_CONVERSION} "
               "FF1 operations (decrypt A; decrypt the ID code to check it hides a valid "
               f"resident code; encrypt B) = {AES_PER_CONVERSION} AES calls, not 20")
    for what, per_second, limit in (
            ("AES single-block calls/s", aes["single_block_calls_per_s"], "unbatched"),
            ("AES bulk ECB blocks/s", aes["bulk_blocks_per_s"], "batched")):
        click.echo(f"  {what:<25}{per_second:>13,.0f}   ÷ {AES_PER_CONVERSION} = limit {limit:<9}"
                   f"{per_second / AES_PER_CONVERSION:>11,.0f} conversions/s")
    for size, per_second in result["conversions_per_s"].items():
        click.echo(f"  batch {size:>5,}: {per_second:>11,.0f} conversions/s   "
                   f"{per_second / result['limit_unbatched_per_s']:>5.2f} × unbatched limit   "
                   f"{per_second / result['limit_bulk_per_s']:>5.1%} of batched limit")
    fa = result["false_accepts"]
    for name in ("forged", "other_unit"):
        click.echo(f"  false accepts ({name.replace('_', ' ')}): {fa[name]['accepted']} of "
                   f"{fa['trials']:,}, rate ≤ {fa[name]['upper_95']:.1e} (95 %), "
                   f"expected {fa['expected_rate']:.1e}")
    registry = result["registry"]
    click.echo(f"  registry: {registry['residents']:,} residents in {registry['seconds']:.1f}s"
               f" = {registry['residents_per_s']:,.0f} residents/s")
    write_json(out, result)
    click.echo(f"written to {out}")
