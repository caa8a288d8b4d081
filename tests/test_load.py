"""The benchmark's load, without Kafka: when the open loop sends and from when it times, the
holders' common start, and a holder told to stop while it loads."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from renkei import bench_point, common_start
from renkei import load as holder_load
from renkei.bare import Sizes
from renkei.bench_plan import Plan
from renkei.exchanges import LAWFUL, Exchange
from renkei.load import TICK, Loading, Records, Side, closed_loop, open_loop, run


class Instant:
    """A holder whose round trips take no time; it notes when each was sent."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def round_trip(self, exchange: Exchange, own_number: str,
                         within: float) -> tuple[str, str]:
        self.sent.append(time.monotonic())
        return f"request-{len(self.sent)}", "FOUND"


async def test_the_open_loop_sends_what_is_due_a_tick_at_a_time() -> None:
    holder, rate, seconds = Instant(), 1000.0, 0.3
    start = time.monotonic() + 0.01
    records = await open_loop(holder, itertools.repeat((LAWFUL[0], "own-1")), rate, start,
                              seconds, max_outstanding=10_000, drain=1.0)
    due = [start + k / rate for k in range(300)]
    assert sorted(records.started) == due  # each timed from when it was due, not when sent
    assert len(holder.sent) == 300 and all(s >= d for s, d in zip(holder.sent, due, strict=True))
    wakes = 1 + sum(b - a > 0.001 for a, b in itertools.pairwise(holder.sent))
    assert wakes <= seconds / TICK + 2  # not one wake per request (300 of them at 1 ms apart)


async def test_a_holder_says_it_is_ready_then_loads_from_the_start_announced(
        tmp_path: Path) -> None:
    """Its load begins when the benchmark says, once every holder is ready: not at a time set
    when the holders were spawned, which had passed before slow holders were ready."""
    holder, out, start_file = Instant(), tmp_path / "holder.npz", tmp_path / "point.start"
    rate, seconds = 100.0, 0.2

    async def load(side: Side, jobs: Iterator[tuple[Exchange, str]],
                   start: float) -> Records:
        return await open_loop(side, jobs, rate, start, seconds, max_outstanding=100, drain=1)

    async def benchmark() -> tuple[bool, float]:
        for _ in range(500):  # until the holder says it is ready (at most 5 s)
            if ready := common_start.ready_marker(out).exists():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # other holders are still starting
        common_start.announce(start_file, at := time.time() + common_start.LEAD)
        return ready, at

    announcing = asyncio.ensure_future(benchmark())
    await run(lambda: holder, [(LAWFUL[0], "own-1")], load, start_file, out, linger=0.1)
    (ready, at), sent = announcing.result(), np.load(out)["sent"]
    assert ready and len(sent) == rate * seconds
    assert at - 0.01 < sent.min() and sent.max() < at + seconds


class Unanswered:
    """A holder whose round trips never come back; it counts those still waiting."""

    def __init__(self) -> None:
        self.waiting = 0
        self.stopped = False

    async def start(self) -> None: ...

    async def stop(self) -> None:
        self.stopped = True

    async def round_trip(self, exchange: Exchange, own_number: str,
                         within: float) -> tuple[str, str]:
        self.waiting += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.waiting -= 1
        raise AssertionError("never answered")


@pytest.mark.parametrize("flat_out", [False, True])
async def test_a_holder_told_to_stop_while_it_loads_stops_at_once_and_writes_nothing(
        tmp_path: Path, flat_out: bool) -> None:
    holder, out = Unanswered(), tmp_path / "holder.npz"

    async def load(side: Side, jobs: Iterator[tuple[Exchange, str]],
                   start: float) -> Records:
        if flat_out:
            return await closed_loop(side, jobs, 8, start, seconds=60, drain=15)
        return await open_loop(side, jobs, 100.0, start, 60, max_outstanding=1000, drain=15)

    asyncio.get_running_loop().call_later(0.5, os.kill, os.getpid(), signal.SIGTERM)
    began = time.monotonic()
    start_file = tmp_path / "point.start"
    common_start.announce(start_file, time.time())
    await run(lambda: holder, [(LAWFUL[0], "own-1")], load, start_file, out, linger=60)
    assert time.monotonic() - began < 5
    assert holder.stopped and holder.waiting == 0 and not out.exists()


@pytest.mark.parametrize(("rate", "requesters"), [(2000.0, 5), (0.9, 3), (3.1, 3), (25.0, 7),
                                                  (1e-323, 5), (0.5, 1)])
def test_the_offered_rate_is_split_exactly_among_the_requesters(rate: float,
                                                                requesters: int) -> None:
    """The shares sum to the rate (rate / n each did not: 0.9 over 3 summed to 0.8999…)."""
    names = [f"holder-{i}" for i in range(requesters)]
    shares = bench_point.rate_shares(rate, names)
    assert list(shares) == names and math.fsum(shares.values()) == rate
    assert all(0 <= share <= rate / requesters * 1.001 + 1e-323 for share in shares.values())


def test_a_holder_whose_share_is_zero_sends_nothing(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Given `--rate 0` (a share of a tiny rate), not run flat out as one given no rate was."""
    knobs = bench_point.Knobs(warmup=1.0, drain=1.0, settle=1.0)
    args = bench_point._holder_args("nenkin", bench_point.Load("renkei", 1, 1e-323, 1.0, 32),
                                    0.0, knobs, tmp_path / "start", tmp_path / "out.npz")
    assert "--flat-out" not in args and args[args.index("--rate") + 1] == "0.0"
    Plan({"nenkin": [(0, "own-1")]}, Sizes(1, 1, 1, 1)).save(plan := tmp_path / "plan.json")
    loads: list[Loading] = []

    async def run_noted(_side: object, _jobs: object, loading: Loading, *_: object,
                        **__: object) -> None:
        loads.append(loading)

    monkeypatch.setattr(holder_load, "run", run_noted)
    result = CliRunner().invoke(holder_load.holder_command, [*args[2:], "--plan", str(plan)])
    assert result.exit_code == 0, result.output
    holder = Instant()

    async def loaded() -> Records:
        return await loads[0](holder, itertools.repeat((LAWFUL[0], "own-1")), time.monotonic())

    records = asyncio.run(loaded())
    assert holder.sent == [] and len(records.started) == 0
