"""What a process has open, from Linux's /proc."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def open_files(pid: int | str = "self") -> set[str]:
    """What the process (this one by default) has open now (a descriptor it closes while they are
    listed is left)."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found.add(os.readlink(fd))
    return found
