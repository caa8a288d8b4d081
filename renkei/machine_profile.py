"""`renkei bench linkage --perf`: where the whole machine's CPU goes in a measured window.

`perf record -a` samples every core (the broker, the kernel, C extensions included) without
slowing the processes as a profiler inside them does; each sample is put down to the benchmark
process whose thread took it, and to a part by the library it was in. Python 3.11 has no perf
trampolines, so Python functions are not told apart: the interpreter is one part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

FREQUENCY = 499  # samples per second and core: a prime, not in step with timers
OTHER, IDLE = "other", "idle"

# a library (as perf names it) → the part it counts in; first match wins
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("interpreter", ("libpython", "python3")),  # shared, or linked into the executable (Debian)
    ("kernel", ("[kernel",)),
    ("crypto", ("_rust.abi3", "libcrypto", "libssl")),
    ("SQLite", ("libsqlite3", "_sqlite3")),
    ("codec", ("_write.cpython", "_read.cpython", "_schema.cpython", "_validation.cpython",
               "_logical_")),
    ("Kafka client C", ("default_records", "legacy_records", "memory_records", "cutil.")),
    ("JVM", ("[JIT]", "libjvm")),
    ("libc", ("libc.so", "libm.so")),
)


class PerfUnavailable(RuntimeError):
    """`perf` is missing, or may not sample the whole machine here."""


def check() -> None:
    """Fail early, with the reason, if `perf record -a` cannot run."""
    if shutil.which("perf") is None:
        raise PerfUnavailable("--perf needs Linux `perf` (linux-perf) on the PATH")
    probe = subprocess.run(["perf", "record", "-a", "-o", "/dev/null", "--", "true"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise PerfUnavailable(f"`perf record -a` refused: {probe.stderr.strip()[-300:]}")


def threads(pids: Mapping[str, int]) -> dict[int, str]:
    """Each thread of the named processes (a JVM's many included), by thread id."""
    found: dict[int, str] = {}
    for name, pid in pids.items():
        try:
            found.update((int(tid), name) for tid in os.listdir(f"/proc/{pid}/task"))
        except FileNotFoundError:
            continue
    return found


class Sampling:
    """Every core sampled for one window into `path`, then the samples by process and part."""

    def __init__(self, path: Path, seconds: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._perf = subprocess.Popen(
            ["perf", "record", "-a", "-F", str(FREQUENCY), "-o", str(path), "--",
             "sleep", f"{seconds:.0f}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def shares(self, pids: Mapping[str, int]) -> dict[str, dict[str, float]] | None:
        """Once the window is over: `shares` of the named processes (None if perf failed)."""
        if self._perf.wait() != 0:
            return None
        return shares(report(self.path), threads(pids))


def report(path: Path) -> str:
    """perf's samples by thread and library, as shares of all samples ('%;tid:comm;dso')."""
    return subprocess.run(
        ["perf", "report", "-i", str(path), "--no-children", "-g", "none",
         "--percentage", "absolute", "--sort", "pid,dso", "--stdio", "-t", ";"],
        capture_output=True, text=True, check=True).stdout


def part_of(library: str) -> str:
    return next((part for part, marks in PARTS if any(m in library for m in marks)), OTHER)


def shares(text: str, by_thread: Mapping[int, str]) -> dict[str, dict[str, float]]:
    """Per process: its share of all samples ("all") and of each part, in percent; an idle core
    counts as IDLE, threads of no benchmark process (perf itself, the system) as OTHER."""
    found: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(";")]
        if line.startswith("#") or len(fields) != 3 or not fields[0].endswith("%"):
            continue
        percent, library = float(fields[0][:-1]), fields[2]
        parts = found.setdefault(_process_of(fields[1], by_thread), {"all": 0.0})
        parts["all"] += percent
        part = part_of(library)
        parts[part] = parts.get(part, 0.0) + percent
    return {process: {part: round(share, 1) for part, share in parts.items()}
            for process, parts in sorted(found.items(), key=lambda p: -p[1]["all"])}


def _process_of(thread: str, by_thread: Mapping[int, str]) -> str:
    """The process of a 'tid:comm' of perf's (thread 0 is an idle core)."""
    tid = thread.split(":", 1)[0]
    if not tid.isdigit():
        return OTHER
    return IDLE if int(tid) == 0 else by_thread.get(int(tid), OTHER)


def line(found: Mapping[str, Mapping[str, float]]) -> str:
    """One line: the five largest processes' shares, each with its two largest parts."""
    out = []
    for process, parts in list(found.items())[:5]:
        top = sorted(((s, p) for p, s in parts.items() if p != "all"), reverse=True)[:2]
        out.append(f"{process} {parts['all']:.0f}% ("
                   + ", ".join(f"{p} {s:.0f}" for s, p in top) + ")")
    return "perf (% of all samples): " + "; ".join(out)
