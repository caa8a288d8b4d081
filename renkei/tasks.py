"""Background tasks: waiting for one to get ready (its ready event, or the error it ended with),
and stopping one."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def set_or_failed(ready: asyncio.Event, task: asyncio.Task[Any]) -> None:
    """Wait until `ready` is set, or until `task` (which sets it) ends first: then raise what it
    ended with (if it ended without an error, just return)."""
    waiting = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait({waiting, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if not ready.is_set():
        task.result()


async def cancelled(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (if any) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
