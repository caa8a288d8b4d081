"""CPU profiles of Renkei's processes, by the CPU clock: where their time goes on busy cores.

py-spy samples wall-clock time, so on two busy cores a process waiting for the CPU is counted in
whatever it did last. With `RENKEI_PROFILE` set to a folder, every `renkei` command runs under
cProfile timed by its main thread's CPU clock and leaves `<command>-<pid>.pstats` there when it
ends; `shares` sums a folder's profiles into what each part of the stack cost.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV = "RENKEI_PROFILE"
PARTS = (  # (part, what in a function's file or name shows it), first match wins
    ("SQLite", ("sqlite3", "holders/store.py", "audit/store")),
    ("crypto", ("cryptography", "renkei/sealing.py", "processors/ff1.py", "processors/tickets")),
    ("codec", ("schemas/", "fastavro")),
    ("aiokafka", ("aiokafka",)),
    ("confluent-kafka", ("confluent_kafka", "cimpl")),
    ("asyncio", ("asyncio", "selectors.py", "_contextvars", "select.epoll")),
)
OWN, OTHER = "Renkei", "other"  # the rest of this project's code; everything else
ROOT = f"{Path(__file__).resolve().parents[1]}/"


@contextlib.contextmanager
def profiled(command: str) -> Iterator[None]:
    """Run the block under cProfile if `RENKEI_PROFILE` names a folder; else just run it."""
    folder = os.environ.get(ENV)
    if not folder:
        yield
        return
    profile = cProfile.Profile(timer=time.thread_time)
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        path = Path(folder) / f"{command}-{os.getpid()}.pstats"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")  # a process killed while writing leaves no
        profile.dump_stats(partial)  # half a profile for the summary to choke on
        partial.replace(path)


@contextlib.contextmanager
def into(folder: Path | None) -> Iterator[None]:
    """Processes started in the block profile into `folder` (None: as before)."""
    was = os.environ.get(ENV)
    if folder is not None:
        os.environ[ENV] = str(folder)
    try:
        yield
    finally:
        if was is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = was


def part_of(file: str, name: str) -> str:
    where = f"{file}:{name}"
    found = next((part for part, marks in PARTS if any(m in where for m in marks)), None)
    if found is not None:
        return found
    return OWN if file.startswith(ROOT) and "site-packages" not in file else OTHER


def shares(paths: list[Path]) -> dict[str, Any]:
    """The CPU seconds of these profiles (under the profiler) and each part's share, in %."""
    stats = pstats.Stats(*(str(p) for p in paths))  # none: empty
    cost: Counter[str] = Counter()
    for (file, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        part = part_of(file, name)
        if part == OTHER and file == "~":  # a builtin (len, isinstance): its callers' part
            for (caller_file, _, caller), called in row[4].items():
                cost[part_of(caller_file, caller)] += called[2]
        else:
            cost[part] += row[2]  # time in the function itself
    total = sum(cost.values())
    return {"profiles": len(paths), "cpu_seconds": round(total, 2),
            "percent": {part: round(100 * seconds / total, 1)
                        for part, seconds in cost.most_common()} if total else {}}


def summary(folder: Path) -> dict[str, Any]:
    """Each command's profiles in `folder` summed (`platform-run`, ...), and each subfolder's
    (the holders of one benchmark point)."""
    by_command: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.pstats")):
        by_command.setdefault(path.stem.rsplit("-", 1)[0], []).append(path)
    found = {command: shares(paths) for command, paths in by_command.items()}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        found[sub.name] = shares(sorted(sub.glob("*.pstats")))
    return found


def lines(found: dict[str, Any]) -> list[str]:
    """The summary as text, a line per command or point."""
    return [f"  {name:30} {s['cpu_seconds']:8.1f} s CPU: " + ", ".join(
        f"{part} {share:.0f}%" for part, share in s["percent"].items() if share >= 1)
        for name, s in found.items()]
