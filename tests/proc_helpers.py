"""What a process has open, from Linux's /proc."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
from pathlib import Path


def interruptible() -> None:
    """A child's SIGINT as a terminal's Ctrl-C gives it (Python's KeyboardInterrupt), though
    whatever ran pytest ignores it (a background job's, `nohup … &`), which a child inherits:
    Popen's preexec_fn."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def open_files(pid: int | str = "self") -> set[str]:
    """What the process (this one by default) has open now (a descriptor it closes while they are
    listed is left)."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found.add(os.readlink(fd))
    return found


READ = {"x86_64": 0, "aarch64": 63}[platform.machine()]  # read(2)'s syscall number


def reading_stdin(pid: int) -> bool:
    """Whether the process is blocked in a read of its stdin now (a signal then interrupts it,
    not one sent just before the read begins, which it would miss)."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        return Path(f"/proc/{pid}/syscall").read_text().split()[:2] == [str(READ), "0x0"]
    return False  # gone
