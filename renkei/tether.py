"""A service started by a run (the demo, a benchmark, a chaos run, the tests) stops when that run
has gone, however it went (SIGKILL, say): it is not left running on its own."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)
PARENT_ENV = "RENKEI_PARENT"
CHECK_SECONDS = 1.0
# how long a run gives its services to stop before it kills them (town.Processes), and so how
# long a service whose run has gone may wait for the broker to take its last effects
GRACE_SECONDS = 30.0


def tethered() -> dict[str, str]:
    """The environment for a process this one starts, tied to this one."""
    return {**os.environ, PARENT_ENV: str(os.getpid())}


def when_parent_gone(stop: Callable[[], None]) -> None:
    """Call `stop` once the process that started this one (with `tethered`) has gone, and end
    this one GRACE_SECONDS later if it is still there (as that process would have killed it);
    nothing if none did. The tie is not passed on to the processes this one starts."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return
    loop = asyncio.get_running_loop()

    def check() -> None:
        if os.getppid() != int(parent):
            log.warning("the process that started this one (%s) has gone: stopping", parent)
            stop()
            loop.call_later(GRACE_SECONDS, _end)
        else:  # told to stop meanwhile or not, the run may still go before it ends this one
            loop.call_later(CHECK_SECONDS, check)

    check()


def _end() -> None:
    log.error("not stopped %.0fs after the process that started this one had gone: ending now "
              "(what was not handled is handled again by the next one)", GRACE_SECONDS)
    logging.shutdown()
    os._exit(1)
