"""The event loop of every long-running process (the platform, the systems around it, a holder,
the benchmark's load and its baseline): uvloop's, which spends less CPU a record than asyncio's
own, and the same for Renkei and the baseline, so that their ratio stays fair."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on a uvloop loop: the same Runner, so Ctrl-C cancels `main` and ends in
    KeyboardInterrupt as there."""
    return uvloop.run(main)
