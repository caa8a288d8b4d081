"""SIGTERM taken as Ctrl-C while an operator's transaction is open (terminated_as_interrupted)."""

from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor

from renkei.service_loop import terminated_as_interrupted


async def _handler_within() -> object:
    with terminated_as_interrupted():
        return signal.getsignal(signal.SIGTERM)


def test_entered_on_a_worker_thread_it_leaves_sigterm_as_it_is() -> None:
    """A town set up on a worker thread (the chaos runs', the suite's) publishes the pattern list
    through the fencing producer, which entered this: signal.signal raised ValueError there, as
    no thread but the main one may handle a signal."""
    before = signal.getsignal(signal.SIGTERM)
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, _handler_within()).result() == before
    assert signal.getsignal(signal.SIGTERM) == before


async def test_entered_on_the_main_thread_it_handles_sigterm_until_left() -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert await _handler_within() != before
    assert signal.getsignal(signal.SIGTERM) == before
