"""`renkei bench holder`: one holder under load, as a real holder is — it answers providers'
queries while it sends lawful linkage requests, on a fixed clock whatever comes back (open loop)
or with a fixed number in flight (closed loop) — and records each request's send time (for the
open loop, the time it was due), latency and outcome in a compact numpy file."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Protocol

import click

from renkei import common_start, event_loop
from renkei.bare_holder import BareHolder
from renkei.bench_plan import Plan
from renkei.bench_plan import default_path as default_plan
from renkei.exchanges import LAWFUL, Exchange
from renkei.options import NON_NEGATIVE, POSITIVE, SaidDefault
from renkei.service_loop import stop_on_signals, unless_stopped

SHED = "SHED"  # not sent: too many of this holder's requests were outstanding
UNANSWERED = "UNANSWERED"  # no outcome before the holder stopped waiting
ERROR = "ERROR"  # the request could not be sent
TICK = 0.01  # seconds the open loop sleeps at least: what falls due meanwhile goes out together


class Side(Protocol):
    """What the load needs of a holder: start, stop, and one round trip."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def round_trip(self, exchange: Exchange, own_number: str,
                         within: float) -> tuple[str, str]:
        """Send one request and wait for its outcome: (request id, status)."""
        ...


class Records:
    """Each request's start (monotonic), latency (NaN when none), outcome and id ("" when it
    was not sent)."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self.latency: list[float] = []
        self.status: list[str] = []
        self.request_id: list[str] = []

    def add(self, started: float, latency: float, status: str, request_id: str = "") -> None:
        self.started.append(started)
        self.latency.append(latency)
        self.status.append(status)
        self.request_id.append(request_id)

    def save(self, path: Path) -> None:
        """With wall-clock send times."""
        import numpy as np  # only once the load is done: not in a holder's start (~0.1 s)

        to_wall = time.time() - time.monotonic()
        np.savez(path, sent=np.array(self.started) + to_wall, latency=np.array(self.latency),
                 status=np.array(self.status, dtype="U12"),
                 request_id=np.array(self.request_id, dtype="U36"))


# a load: the holder, its jobs (cycled) and when to start (monotonic); what each request did
Loading = Callable[[Side, Iterator[tuple[Exchange, str]], float], Awaitable[Records]]


async def _timed(side: Side, job: tuple[Exchange, str], started: float, records: Records,
                 within: float) -> None:
    try:
        request_id, status = await side.round_trip(*job, within)
    except TimeoutError:
        records.add(started, math.nan, UNANSWERED)
    except asyncio.CancelledError:
        records.add(started, math.nan, UNANSWERED)
        raise
    except Exception:  # the broker refused the send: counted, the load goes on
        records.add(started, math.nan, ERROR)
    else:
        records.add(started, time.monotonic() - started, status, request_id)


async def _finish(tasks: set[asyncio.Task[None]], within: float) -> None:
    """Wait for the tasks at most `within` seconds; cancel those still waiting (all of them if
    the wait itself is cancelled: the holder was told to stop)."""
    if not tasks:
        return
    try:
        _, late = await asyncio.wait(tasks, timeout=max(0.0, within))
    except asyncio.CancelledError:
        await _cancel(tasks)
        raise
    await _cancel(late)


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    tasks = set(tasks)  # a copy: each leaves the set it came from as it ends
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def open_loop(side: Side, jobs: Iterator[tuple[Exchange, str]], rate: float, start: float,
                    seconds: float, max_outstanding: int, drain: float) -> Records:
    """Request k is due at start + k / rate, sent then whatever came back (late: at once).
    The loop wakes at most once a TICK and sends every request due by then, each timed from
    when it was due."""
    records, pending = Records(), set[asyncio.Task[None]]()
    within = seconds + drain
    try:
        for k in range(int(rate * seconds)):
            due = start + k / rate
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(max(wait, TICK))
            job = next(jobs)
            if len(pending) >= max_outstanding:
                records.add(due, math.nan, SHED)
                continue
            task = asyncio.create_task(_timed(side, job, due, records, within))
            pending.add(task)
            task.add_done_callback(pending.discard)
    except asyncio.CancelledError:  # told to stop: what is outstanding is given up
        await _cancel(pending)
        raise
    await _finish(pending, start + seconds + drain - time.monotonic())
    return records


async def closed_loop(side: Side, jobs: Iterator[tuple[Exchange, str]], in_flight: int,
                      start: float, seconds: float, drain: float) -> Records:
    """`in_flight` requests outstanding at all times: each answer sends the next."""
    records, end = Records(), start + seconds

    async def worker() -> None:
        while (now := time.monotonic()) < end:
            await _timed(side, next(jobs), now, records, seconds + drain)

    if (wait := start - time.monotonic()) > 0:
        await asyncio.sleep(wait)
    workers = {asyncio.create_task(worker()) for _ in range(in_flight)}
    await _finish(workers, end + drain - time.monotonic())
    return records


async def run(make_side: Callable[[], Side], jobs: list[tuple[Exchange, str]], load: Loading,
              start_file: Path, out: Path, linger: float) -> None:
    """Start the holder, say it is ready, load it from the start the benchmark then announces
    in `start_file`, write `out`, then keep answering queries until told to stop (SIGTERM) or
    `linger` seconds have passed. Told to stop before it has written `out` (the benchmark
    interrupted), it stops at once and writes nothing."""
    stop = stop_on_signals()
    side = make_side()  # its Kafka clients need the running loop
    await side.start()
    try:
        common_start.say_ready(out)
        loading = asyncio.ensure_future(_from_the_start(side, jobs, load, start_file))
        if not await unless_stopped(stop, loading):
            return  # told to stop: nothing to write
        loading.result().save(out)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), linger)
    finally:
        await side.stop()


async def _from_the_start(side: Side, jobs: list[tuple[Exchange, str]], load: Loading,
                          start_file: Path) -> Records:
    """The holder's load, from the common start (none for a holder that only answers)."""
    start_at = await common_start.wait_for(start_file)
    if not jobs:
        return Records()
    return await load(side, itertools.cycle(jobs), time.monotonic() + start_at - time.time())


def side_of(holder: str, plan: Plan, baseline: bool) -> Callable[[], Side]:
    """How to make the holder: bare, or on Renkei (the holder library, imported only then)."""
    if baseline:
        return partial(BareHolder, holder, plan.sizes)
    from renkei.renkei_holder import RenkeiHolder  # ~0.2 s of imports a bare holder is spared

    return partial(RenkeiHolder, holder)


@click.command("holder", hidden=True)
@click.argument("holder")
@click.option("--rate", type=NON_NEGATIVE, default=0.0,
              help="requests per second (open loop; 0: none sent)")
@click.option("--flat-out", is_flag=True, help="closed loop: --in-flight always outstanding")
@click.option("--in-flight", type=click.IntRange(min=1), default=32, show_default=True,
              help="flat out: requests kept outstanding")
@click.option("--seconds", type=POSITIVE, required=True, help="how long to send")
@click.option("--start-file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="where the benchmark announces the common start")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="the JSON file the holder's result is written to")
@click.option("--baseline", is_flag=True, help="bare messages through the relay instead")
@click.option("--max-outstanding", type=click.IntRange(min=1), default=1000, show_default=True,
              help="open loop: requests due while this many are outstanding are shed")
@click.option("--drain", type=NON_NEGATIVE, default=15.0, show_default=True,
              help="seconds to wait for outstanding outcomes after the last send")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, cls=SaidDefault, show_default="the state folder's linkage-plan.json",
              help="the plan")
def holder_command(holder: str, rate: float, flat_out: bool, in_flight: int, seconds: float,
                   start_file: Path, out: Path, baseline: bool, max_outstanding: int,
                   drain: float, plan_path: Path | None) -> None:
    """One holder under load (internal: started by `renkei bench linkage`)."""
    plan = Plan.load(plan_path or default_plan())
    jobs = [(LAWFUL[i], own) for i, own in plan.jobs.get(holder, [])]
    make_side = side_of(holder, plan, baseline)

    async def load(side: Side, cycle: Iterator[tuple[Exchange, str]], start: float) -> Records:
        if flat_out:
            return await closed_loop(side, cycle, in_flight, start, seconds, drain)
        return await open_loop(side, cycle, rate, start, seconds, max_outstanding, drain)

    event_loop.run(run(make_side, jobs, load, start_file, out, linger=drain + 30))
