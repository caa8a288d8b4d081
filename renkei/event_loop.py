"""The event loop of every long-running process (the platform, the systems around it, a holder,
the benchmark's load and its baseline): uvloop's, which spends less CPU a record than asyncio's
own, and the same for Renkei and the baseline, so that their ratio stays fair."""

from __future__ import annotations

import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")

YOUNG_OBJECTS = 50_000  # container objects made, net of those freed, between young collections


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on a uvloop loop: the same Runner, so Ctrl-C cancels `main` and ends in
    KeyboardInterrupt as there; the cyclic garbage collector run rarely (collected_rarely)."""
    collected_rarely()
    return uvloop.run(main)


def collected_rarely() -> None:
    """The cyclic garbage collector's young generation collected after YOUNG_OBJECTS, not CPython's
    700, and what start-up made (modules, schemas, keys) frozen out of its full collections: a
    service frees nearly all it makes by reference counting, and under load the default spent
    2.3–2.8% of the platform's, the audit consumer's and a holder's CPU on collections, this
    0.2–0.6% (measured by the CPU clock in a flat-out benchmark)."""
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, 20, 10)
