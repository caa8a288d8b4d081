"""Crashes: processes of a town that died, and tracebacks their logs gained, since a mark."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from renkei.town import Processes, log_path

TRACEBACK = b"Traceback (most recent call last)"


@dataclass
class Watch:
    """The town's processes as they run now (one killed and started again is its new run), and
    their logs from a mark on."""

    procs: Processes
    marks: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, procs: Processes) -> Watch:
        """Watch the processes running now, their logs from their current ends."""
        return cls(procs, {name: _size(log_path(name)) for name in procs.running})

    def died(self) -> list[str]:
        """Processes that are not running (a process killed on purpose is started again)."""
        return sorted(name for name, proc in self.procs.running.items()
                      if proc.poll() is not None)

    def tracebacks(self) -> dict[str, int]:
        """Tracebacks each process logged since the mark (those with none left out)."""
        found = {}
        for name, mark in self.marks.items():
            path = log_path(name)
            with path.open("rb") as log:
                log.seek(mark)
                count = log.read().count(TRACEBACK)
            if count:
                found[name] = count
        return found


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
