"""One point of the linkage benchmark: the holder processes load the platform (or the bare
relays) at an offered rate or flat out, while the CPU of every process, the memory of the
processor instances and the consumer lag are sampled; the holders' records give the round trips."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from broker import process
from renkei import common_start, groups, hops, latency, machine_profile, procstat, profiling
from renkei.bench_plan import Plan
from renkei.state import folder_made, state_dir
from renkei.town import Processes
from renkei.windows import CLOCK_SKEW, REPLAY_WINDOW

RENKEI, BASELINE = "renkei", "baseline"
STARTING = 120.0  # seconds the holders have to start (the broker busy with the last point)
BACKLOG_SECONDS = 2.0  # a holder sheds requests due while this much of its load is outstanding
MB = 1024 * 1024


@dataclass(frozen=True)
class Load:
    mode: str  # RENKEI or BASELINE
    instances: int  # platform instances, or relays
    rate: float | None  # offered round trips per second; None: flat out (closed loop)
    seconds: float
    in_flight: int  # flat out: requests each holder keeps outstanding


STATE_FILLS = (REPLAY_WINDOW + CLOCK_SKEW).total_seconds() + 30.0
"""Seconds of load before the memory window: the decider remembers each request until any copy
of it would be stale (2.5 min), so at a new rate its state grows that long, then holds."""


@dataclass(frozen=True)
class Knobs:
    warmup: float  # seconds of load before the measured window
    drain: float  # seconds holders wait for outstanding outcomes after their last send
    settle: float  # seconds to wait for the group to catch up after a point
    perf: str | None = None  # with --perf: the folder each window's `perf` samples go to
    memory_warmup: float = STATE_FILLS  # seconds of load before the memory run's window


@dataclass
class Stage:
    """What the holders talk to: the platform's processes or the relays, and their group."""

    procs: Processes
    workers: list[str]  # the processor instances (platform-N or relay-N)
    group: str


def _holder_args(holder: str, load: Load, share: float, knobs: Knobs, start_file: Path,
                 out: Path) -> list[str]:
    args = ["bench", "holder", holder, "--seconds", str(knobs.warmup + load.seconds),
            "--start-file", str(start_file), "--out", str(out), "--drain", str(knobs.drain)]
    if load.rate is None:
        args += ["--flat-out", "--in-flight", str(load.in_flight)]
    else:
        args += ["--rate", str(share),
                 "--max-outstanding", str(max(32, math.ceil(share * BACKLOG_SECONDS)))]
    return args + (["--baseline"] if load.mode == BASELINE else [])


def rate_shares(rate: float, requesters: list[str]) -> dict[str, float]:
    """Each requester's near-equal share of the offered rate, the shares summing to it exactly."""
    # steps between marks at rate·i/n: neighbours, so each difference (and their sum) is exact
    marks = [rate * i / len(requesters) for i in range(len(requesters))] + [rate]
    return {holder: marks[i + 1] - marks[i] for i, holder in enumerate(requesters)}


def _pids(stage: Stage, holders: Processes) -> dict[str, int]:
    pids = {name: proc.pid for name, proc in {**stage.procs.running, **holders.running}.items()}
    for node in process.status()[1]:
        if node.pid is not None:
            pids[f"broker-{node.node.node_id}" if node.node.node_id > 1 else "broker"] = node.pid
    return pids


def _reset_peak(pid: int) -> None:
    """Start the process's peak memory (VmHWM) afresh: proc(5), clear_refs 5."""
    with contextlib.suppress(OSError):  # not permitted: then it is the peak since start
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _sleep_until(wall: float) -> None:
    if (wait := wall - time.time()) > 0:
        time.sleep(wait)


class Sampler:
    """Lag of the stage's group and memory of its instances, once a second in the window."""

    def __init__(self, admin: AdminClient, stage: Stage) -> None:
        self.admin, self.stage = admin, stage
        self.t: list[float] = []
        self.lag: list[int | None] = []
        self.lag_by_topic: dict[str, int] = {}
        self.rss: dict[str, list[float | None]] = {w: [] for w in stage.workers}

    def sample(self, at: float) -> None:
        self.t.append(round(at, 2))
        try:
            by_topic = groups.lag(self.admin, self.stage.group)
        except KafkaException:
            self.lag.append(None)
        else:
            self.lag.append(sum(by_topic.values()))
            for topic, behind in by_topic.items():
                self.lag_by_topic[topic] = max(self.lag_by_topic.get(topic, 0), behind)
        for worker, samples in self.rss.items():
            found = procstat.rss(self.stage.procs.running[worker].pid)
            samples.append(None if found is None else round(found / MB, 1))

    def result(self) -> dict[str, Any]:
        seen = [n for n in self.lag if n is not None]
        return {"lag": {"group": self.stage.group, "max": max(seen, default=None),
                        "mean": sum(seen) / len(seen) if seen else None,
                        "max_by_topic": self.lag_by_topic, "t": self.t, "total": self.lag},
                "rss_mb": {"t": self.t, **self.rss}}


def _wait_for_files(holders: Processes, outs: dict[str, Path], within: float,
                    what: str) -> None:
    """Until each holder has written its file in `outs` (its `what`): an error if one of them
    fails, or is not done `within` seconds."""
    deadline = time.monotonic() + within
    while not all(path.exists() for path in outs.values()):
        for name, proc in holders.running.items():
            if proc.poll() not in (None, 0):
                raise click.ClickException(
                    f"{name} failed (exit {proc.returncode}): see {state_dir() / 'logs'}")
        if time.monotonic() > deadline:
            missing = [h for h, path in outs.items() if not path.exists()]
            raise click.ClickException(f"no {what} from {', '.join(missing)} in time")
        time.sleep(0.2)


def _spawn(load: Load, plan: Plan, knobs: Knobs, start_file: Path,
           stem: str) -> tuple[Processes, dict[str, Path]]:
    """A process per holder, each with its share of the offered rate; their result files."""
    folder = start_file.parent
    requesters = [h for h in plan.holders if plan.jobs.get(h)]
    shares = rate_shares(load.rate or 0.0, requesters)
    holders, outs = Processes(), {}
    for holder in plan.holders:
        outs[holder] = folder / f"{stem}-{holder}.npz"
        outs[holder].unlink(missing_ok=True)
        common_start.ready_marker(outs[holder]).unlink(missing_ok=True)
        holders.start(f"holder-{holder}", *_holder_args(
            holder, load, shares.get(holder, 0.0), knobs, start_file,
            outs[holder]))
    return holders, outs


@dataclass
class Window:
    """What the processes cost in the measured window."""

    cpu: dict[str, float]
    waited: dict[str, float]
    runs: dict[str, int]  # times each process was put on a CPU
    machine: dict[str, float]  # the whole machine's CPU seconds: busy, idle, stolen
    seconds: float
    peaks: dict[str, int | None]
    sampler: Sampler
    perf: dict[str, dict[str, float]] | None

    @classmethod
    def measure(cls, stage: Stage, pids: dict[str, int], admin: AdminClient,
                window: tuple[float, float], label: str, perf: Path | None = None) -> Window:
        _sleep_until(window[0])
        for worker in stage.workers:
            _reset_peak(stage.procs.running[worker].pid)
        before, started = procstat.snapshot(pids), time.time()
        machine_before = procstat.machine_seconds()
        sampler = Sampler(admin, stage)
        seconds = math.ceil(window[1] - window[0])
        sampling = None if perf is None else machine_profile.Sampling(perf, seconds)
        with click.progressbar(length=seconds, label=f"  {label:28}") as bar:
            for second in range(seconds):
                sampler.sample(time.time() - window[0])
                _sleep_until(window[0] + second + 1)
                bar.update(1)
        after, took = procstat.snapshot(pids), time.time() - started
        machine = {k: v - machine_before[k] for k, v in procstat.machine_seconds().items()}
        kept = [name for name in before if name in after]
        return cls({n: round(after[n][0] - before[n][0], 2) for n in kept},
                   {n: round(after[n][1] - before[n][1], 2) for n in kept},
                   {n: after[n][2] - before[n][2] for n in kept}, machine, took,
                   {w: procstat.peak_rss(stage.procs.running[w].pid) for w in stage.workers},
                   sampler, None if sampling is None else sampling.shares(pids))

    def result(self) -> dict[str, Any]:
        return {
            "cpu_seconds": self.cpu,
            "cpu_percent": {n: round(100 * s / self.seconds, 1) for n, s in self.cpu.items()},
            "run_queue_seconds": self.waited,
            "cpu_runs_per_second": {n: round(r / self.seconds) for n, r in self.runs.items()},
            "machine_cpu_percent": {k: round(100 * s / self.seconds, 1)
                                    for k, s in self.machine.items()},
            "peak_rss_mb": {w: None if p is None else round(p / MB, 1)
                            for w, p in self.peaks.items()},
            **self.sampler.result(),
            "perf": self.perf,
        }


def run_point(load: Load, stage: Stage, plan: Plan, knobs: Knobs, admin: AdminClient,
              label: str) -> dict[str, Any]:
    """Run one point; its figures, as written to the result file."""
    loadavg_before, spawned = os.getloadavg(), time.time()
    stem = label.replace(" ", "_").replace("/", "")
    start_file = state_dir() / "linkage-runs" / f"{stem}.start"
    folder_made(start_file.parent)
    start_file.unlink(missing_ok=True)
    profiles = os.environ.get(profiling.ENV)  # the holders of each point profile apart
    with profiling.into(Path(profiles) / stem if profiles else None):
        holders, outs = _spawn(load, plan, knobs, start_file, stem)
    try:
        _wait_for_files(holders, {h: common_start.ready_marker(out) for h, out in outs.items()},
                        STARTING, "word of being ready")
        ready = time.time()
        start_at = ready + common_start.LEAD
        common_start.announce(start_file, start_at)
        window = (start_at + knobs.warmup, start_at + knobs.warmup + load.seconds)
        measured = Window.measure(stage, _pids(stage, holders), admin, window, label,
                                  None if knobs.perf is None else Path(knobs.perf) / f"{stem}.data")
        _wait_for_files(holders, outs, knobs.drain + 30, "results")
    finally:
        holders.stop_all()
    records = latency.load(list(outs.values()))
    return {
        "mode": load.mode, "instances": load.instances, "offered_rate": load.rate,
        "in_flight_per_holder": load.in_flight if load.rate is None else None,
        "seconds": load.seconds,
        "window_start": datetime.fromtimestamp(window[0], UTC).isoformat(timespec="seconds"),
        "holders": len(plan.holders),
        "requesters": sum(1 for h in plan.holders if plan.jobs.get(h)),
        **latency.summarize(records, *window),
        "hops_ms": None if load.mode == BASELINE else hops.breakdown(
            asyncio.run(hops.stamps(plan.holders, window[0] - 1)), records, *window),
        "holders_ready_s": round(ready - spawned, 2),
        **measured.result(),
        "lag_left_after": groups.wait_drained(admin, stage.group, knobs.settle),
        "loadavg": {"before": loadavg_before, "after": os.getloadavg()},
    }
