"""Background tasks: waiting for one to get ready (its ready event, or the error it ended with),
awaiting another while one runs beside it (its error ends that), and stopping one; blocking
calls done on a thread of their own, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


async def set_or_ended(ready: asyncio.Event, *tasks: asyncio.Task[Any]) -> None:
    """Wait until `ready` is set, or until one of `tasks` (which set it) ends first."""
    waiting = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait({waiting, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()


async def set_or_failed(ready: asyncio.Event, task: asyncio.Task[Any]) -> None:
    """Wait until `ready` is set, or until `task` (which sets it) ends first: then raise what it
    ended with (if it ended without an error, just return)."""
    await set_or_ended(ready, task)
    if not ready.is_set():
        task.result()


async def side_by_side(*starts: Coroutine[Any, Any, T]) -> list[T]:
    """What each of `starts` returned, run side by side; the first to fail cancels the rest,
    each ended before its error is raised as one alone raises it (not an ExceptionGroup, which
    the CLI would not say in one line)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(start) for start in starts]
    except BaseExceptionGroup as failed:
        for other in failed.exceptions[1:]:  # told, not lost behind the first
            log.error("another start failed too: %s", other, exc_info=other)
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def retrieved(future: asyncio.Future[Any]) -> None:
    """Take `future`'s failure, if any, as told: asyncio then logs none as never retrieved."""
    if not future.cancelled():
        future.exception()


async def cancelled(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (if any) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def ended(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (if any) and wait until it has ended, what it failed with not raised: a
    background task's failure is told as it fails (logged, or raised by whoever watches it), and
    the stop that ends it goes on to its next step."""
    if task is not None:
        task.cancel()
        await asyncio.wait({task})
        retrieved(task)


async def beside(task: asyncio.Task[Any], main: Awaitable[T]) -> T:
    """`main` awaited while `task` runs beside it; should `task` fail first, `main` is
    cancelled (its own clean-up done) and `task`'s error raised."""
    running = asyncio.ensure_future(main)
    try:
        await asyncio.wait({running, task}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await cancelled(running)
        raise
    if not running.done() and not task.cancelled() and task.exception() is not None:
        await cancelled(running)
        task.result()
    return await running


class OneThread:
    """Blocking calls (a database connection's) done on a thread of their own, one at a time in
    the order asked: the event loop's pages and readers go on meanwhile, and the connection is
    never used by two threads at once."""

    def __init__(self, name: str) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, work: Callable[[], T]) -> T:
        """`work` done on the thread, after every call asked before it."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, work)

    async def close(self, last: Callable[[], object]) -> None:
        """`last` done (closing the connection), after every call asked before it; then the
        thread ends."""
        await self.run(last)
        self._worker.shutdown()
