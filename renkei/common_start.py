"""The common start of a benchmark point: each holder, once started, says it is ready; when all
are, the benchmark sets the start a moment ahead. (A start fixed when the holders were spawned
had passed, inside the whole test suite, before slow holders were ready.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from renkei.state import read_json, write_json

POLL = 0.02  # seconds between a waiting holder's looks at the start file
LEAD = 0.5  # seconds from the last holder ready to the start: time for all to see it


def ready_marker(out: Path) -> Path:
    """The file that the holder writing `out` creates once it is ready."""
    return out.with_name(out.name + ".ready")


def say_ready(out: Path) -> None:
    ready_marker(out).touch()


def announce(start_file: Path, at: float) -> None:
    """Set the start (Unix time) for every holder waiting on `start_file`."""
    write_json(start_file, round(at, 3))


async def wait_for(start_file: Path) -> float:
    """The start (Unix time), once announced (by another process: looked for every POLL)."""
    while True:
        if (at := _announced(start_file)) is not None:
            return at
        await asyncio.sleep(POLL)


def _announced(start_file: Path) -> float | None:
    return float(read_json(start_file)) if start_file.exists() else None
