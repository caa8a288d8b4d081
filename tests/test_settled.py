"""`settled`: what the service loop awaits before it commits (instead of asyncio.gather)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from renkei.service_loop import settled


async def test_it_waits_for_every_future_and_raises_the_first_failure() -> None:
    loop = asyncio.get_running_loop()
    done, late, failed, after = (loop.create_future() for _ in range(4))
    done.set_result(1)
    waiting = asyncio.ensure_future(settled([done, late, failed, after]))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # `late` has not settled
    failed.set_exception(RuntimeError("not written"))
    late.set_result(2)
    with pytest.raises(RuntimeError, match="not written"):
        await waiting
    assert not after.done()


async def test_the_failures_after_the_one_raised_are_not_logged_as_never_retrieved(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    failed, later = loop.create_future(), loop.create_future()
    failed.set_exception(RuntimeError("not written"))
    with pytest.raises(RuntimeError, match="not written"):
        await settled([failed, later])
    later.set_exception(RuntimeError("nor this, for the same cause"))
    await asyncio.sleep(0)  # its done callbacks run
    del failed, later  # (the failure raised holds the frame of settled, and so both)
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_all_settled_returns_at_once() -> None:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(3)]
    for future in futures:
        future.set_result(None)
    await asyncio.wait_for(settled(futures), timeout=0.1)
