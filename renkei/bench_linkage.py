"""`renkei bench linkage`: lawful round trips per second through the platform, latency, CPU,
memory and lag, beside a bare-Kafka baseline of the same hops measured in the same run; a load
curve to the knee, scale-out over platform instances, and a long run for memory. A flat-out load
that is not measured comes first: on a just-started broker the JIT compiles its hot paths then,
not during the first measured point.

It runs on a broker of its own, in the state folder's `bench/`, emptied first (RENKEI_STATE is
set to it for itself and every process it starts), on free ports; `--use-running` uses the
state folder's running broker instead (and rebuilds its town, as `renkei demo` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from confluent_kafka.admin import AdminClient

from broker import acls, process, provision, topics
from broker.cluster import NoCluster
from broker.ports import free_port_pair
from holders.client import HolderClient
from renkei import (
    bench_capacity,
    bench_plan,
    bench_planning,
    bench_report,
    groups,
    machine_profile,
    profiling,
    relay,
    scenario,
    town,
)
from renkei.bare_holder import BareHolder
from renkei.bench_plan import Plan
from renkei.bench_point import BASELINE, RENKEI, Knobs, Load, Stage, run_point
from renkei.options import NON_NEGATIVE, POSITIVE, SaidDefault, residents_option, seed_option
from renkei.state import held, state_dir, state_folder, write_json

JOIN_SECONDS = 120.0


@dataclass(frozen=True)
class Settings:
    seconds: float
    rate: float | None  # None: flat out
    curve: tuple[float, ...]
    scale: tuple[int, ...]
    memory_minutes: float
    residents: int
    seed: int
    idle_holders: int
    prime: float  # seconds of flat-out load, not measured, before the first point
    # requests each holder keeps in flight that the capacity points try (each system the same,
    # SEARCH_SECONDS each when more than one); the first for every other flat-out point
    depths: tuple[int, ...]
    knobs: Knobs


QUICK_RATE = 20.0
QUICK: dict[str, Any] = {"seconds": 1.0, "rate": QUICK_RATE, "curve": (QUICK_RATE,),
                         "scale": (1, 2), "memory_minutes": 2 / 60, "residents": 60,
                         "prime": 2.0, "depths": bench_capacity.DEPTHS[:1]}
QUICK_KNOBS: dict[str, Any] = {"warmup": 0.5, "drain": 5.0, "settle": 10.0,
                               "memory_warmup": 0.5}


@contextlib.contextmanager
def bench_broker(use_running: bool) -> Iterator[None]:
    """A fresh broker and state of the benchmark's own on free ports, the broker stopped
    afterwards; or the state folder's running one."""
    if use_running:
        try:
            running = any(node.running for node in process.status()[1])
        except NoCluster:
            running = False
        if not running:
            raise click.ClickException(f"no broker is running in {state_dir()}: start one with "
                                       "`renkei broker up`, or leave out --use-running")
        yield
        return
    bench = state_dir() / "bench"
    with held(bench, "benchmark"), state_folder(bench):
        with contextlib.suppress(NoCluster):
            process.down()  # a broker left running by an interrupted run
        shutil.rmtree(bench)  # each run from nothing: stores grown by earlier runs (the
        bench.mkdir()  # audit log, the holders' logs) would slow it down
        process.up(*free_port_pair(), tethered=True)
        try:
            yield
        finally:
            process.down()


def register_idle(admin: AdminClient, count: int) -> None:
    """Holders that only exist: outboxes the platform subscribes to, never written."""
    provision.add_holders(admin, [f"idle-{n:04d}" for n in range(count)], provision.Report())


@contextlib.contextmanager
def platform(instances: int, admin: AdminClient) -> Iterator[Stage]:
    """The platform with `instances` processor instances in one group, and its services."""
    with town.services(platform_instances=instances) as procs:
        if not groups.wait_members(admin, acls.PLATFORM_APP, instances, JOIN_SECONDS):
            raise click.ClickException(f"{instances} platform instances did not form a group")
        yield Stage(procs, town.platform_names(instances), acls.PLATFORM_APP)


def grow(stage: Stage, instances: int, admin: AdminClient) -> None:
    """More platform instances, joining the running ones' consumer group."""
    for n in range(len(stage.workers) + 1, instances + 1):
        stage.procs.start_platform(n)
        stage.workers.append(town.platform_name(n))
    if not groups.wait_members(admin, acls.PLATFORM_APP, instances, JOIN_SECONDS):
        raise click.ClickException(f"{instances} platform instances did not form a group")


def skip_past(admin: AdminClient, holders: list[str], outbox_group: str,
              inbox_group: Callable[[str], str]) -> None:
    """Commit the group reading the holders' outboxes, and each holder's inbox group, at the
    current end of those topics (the groups must have no members)."""
    groups.skip_to_end(admin, outbox_group, [topics.outbox(h) for h in holders])
    for holder in holders:
        groups.skip_to_end(admin, inbox_group(holder), [topics.inbox(holder)])


@contextlib.contextmanager
def relays(instances: int, holders: list[str], admin: AdminClient) -> Iterator[Stage]:
    """Bare relays instead of the platform (whose processes are stopped), starting after
    everything already in the topics; afterwards the platform and the holders' inbox loops are
    moved past the bare messages, so that a later run on this broker (`--use-running`) does not
    read them as hundreds of thousands of malformed requests and answers."""
    skip_past(admin, holders, relay.GROUP, BareHolder.group_of)
    procs = town.Processes()
    try:
        for n in range(1, instances + 1):
            procs.start(f"relay-{n}", "bench", "relay", "--instance", str(n),
                        *[arg for h in holders for arg in ("--holder", h)])
        if not groups.wait_members(admin, relay.GROUP, instances, JOIN_SECONDS):
            raise click.ClickException(f"{instances} relays did not form a group")
        yield Stage(procs, [f"relay-{n}" for n in range(1, instances + 1)], relay.GROUP)
    finally:
        procs.stop_all()
    skip_past(admin, holders, acls.PLATFORM_APP, HolderClient.inbox_group)


async def prepare(built: town.Town, seed: int) -> Plan:
    """Bind the town (as the demo does), choose the jobs, and measure a real exchange."""
    async with scenario.started_clients() as clients:
        seconds = await scenario.bind_all(clients)
        click.echo(f"  bound the town's records in {seconds:.1f}s")
        jobs = bench_planning.jobs(built, clients, seed)
        plan = Plan(jobs, await bench_planning.measure_sizes(clients, jobs))
    plan.save(bench_plan.default_path())
    return plan


def _label(load: Load) -> str:
    rate = f"flat out {load.in_flight} deep" if load.rate is None else f"{load.rate:g}/s"
    unit = "relay" if load.mode == BASELINE else "platform"
    return f"{load.mode} {load.instances} {unit} {rate} {load.seconds:g}s"


def measure(settings: Settings) -> dict[str, Any]:
    """Every point of the benchmark: Renkei's and the baseline's points of the two ratios close
    together in time, then the rest, starting the platform as few times as that allows; the
    result as written to JSON."""
    admin = groups.admin()
    built = town.build(settings.residents, settings.seed)
    if settings.idle_holders:
        began = time.perf_counter()
        register_idle(admin, settings.idle_holders)
        click.echo(f"  registered {settings.idle_holders} idle holders in "
                   f"{time.perf_counter() - began:.0f}s")
    runs: dict[Load, dict[str, Any]] = {}
    plan: Plan | None = None

    def run(load: Load, stage: Stage, label: str, knobs: Knobs = settings.knobs
            ) -> dict[str, Any]:
        assert plan is not None
        found = run_point(load, stage, plan, knobs, admin, label)
        click.echo(f"{'':8}{bench_report.line(found)}")
        return found

    def point(mode: str, instances: int, rate: float | None, seconds: float, stage: Stage,
              in_flight: int = settings.depths[0], fresh: bool = False) -> dict[str, Any]:
        """The point of that load, measured now if `fresh` or not yet measured (measured again,
        it is named apart from the first, so that their profiles are not taken for one's)."""
        load = Load(mode, instances, rate, seconds, in_flight)
        if fresh or load not in runs:
            runs[load] = run(load, stage, ("again " if load in runs else "") + _label(load))
        return runs[load]

    def capacity(mode: str, stage: Stage, instances: int = 1,
                 fresh: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Flat out at the depth where it carries most (bench_capacity), the depths tried."""
        seconds = settings.seconds if len(settings.depths) == 1 else min(
            settings.seconds, bench_capacity.SEARCH_SECONDS)
        return bench_capacity.search(
            lambda depth: point(mode, instances, None, seconds, stage, depth, fresh),
            settings.depths)

    def curve(mode: str, stage: Stage) -> list[dict[str, Any]]:
        points = []
        for rate in settings.curve:
            points.append(point(mode, 1, rate, settings.seconds, stage))
            if bench_report.broken(points[-1]):
                break
        return points

    loadavg_start, started_at = os.getloadavg(), datetime.now(UTC)
    with platform(1, admin) as stage:
        plan = asyncio.run(prepare(built, settings.seed))
        click.echo(f"  {len(plan.holders)} holders; message sizes {asdict(plan.sizes)}")
        priming = run(Load(RENKEI, 1, None, settings.prime, settings.depths[0]), stage,
                      "priming (not measured)") if settings.prime > 0 else None
        renkei = point(RENKEI, 1, settings.rate, settings.seconds, stage)
        renkei_most, renkei_depths = capacity(RENKEI, stage)
    # the baseline's points of the two ratios next, minutes after Renkei's, not after the curve,
    # the memory run and the scale-out: this machine's speed drifts over half an hour
    with relays(1, plan.holders, admin) as stage:
        baseline = point(BASELINE, 1, settings.rate, settings.seconds, stage)
        baseline_most, baseline_depths = capacity(BASELINE, stage)
        baseline_curve = curve(BASELINE, stage)
    # the platform started again first rebuilds its decision state from the load above, which
    # holds the requests meanwhile: primed again, so that no measured point pays for it
    with platform(1, admin) as stage:
        primed_again = run(Load(RENKEI, 1, None, settings.prime, settings.depths[0]), stage,
                           "priming again (not measured)") if settings.prime > 0 else None
        renkei_curve = curve(RENKEI, stage)
        knee = bench_report.knee(renkei_curve)
        memory = None
        if settings.memory_minutes > 0:
            load = Load(RENKEI, 1, knee or min(settings.curve, default=settings.rate),
                        settings.memory_minutes * 60, settings.depths[0])
            warmup = settings.knobs.memory_warmup  # the platform's state filled at this rate
            memory = run(load, stage, f"memory: {_label(load)} after {warmup:g}s of it",
                         replace(settings.knobs, warmup=warmup))
        scaleout = []  # one after another, each flat out and measured now (×1 too)
        for instances in settings.scale:
            grow(stage, instances, admin)
            most, tried = capacity(RENKEI, stage, instances, fresh=True)
            scaleout.append({**most, "depths": bench_capacity.depths(tried)})
    result: dict[str, Any] = {
        "benchmark": "renkei bench linkage",
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": loadavg_start,
                    "loadavg_end": os.getloadavg(), **runtimes()},
        "settings": asdict(settings),
        "town": {"residents": settings.residents, "seed": settings.seed,
                 "holders": len(plan.holders), "holder_ids": plan.holders,
                 "idle_holders": settings.idle_holders,
                 "jobs": {h: len(j) for h, j in plan.jobs.items()}},
        "message_sizes": asdict(plan.sizes),
        "priming": priming,
        "priming_again": primed_again,
        "main": {"renkei": renkei, "baseline": baseline,
                 "ratio": renkei["throughput"] / max(baseline["throughput"], 1e-9)},
        "capacity": {"renkei": renkei_most, "baseline": baseline_most,
                     "ratio": renkei_most["throughput"] / max(baseline_most["throughput"], 1e-9),
                     "depths": {"renkei": bench_capacity.depths(renkei_depths),
                                "baseline": bench_capacity.depths(baseline_depths)}},
        "curve": {"renkei": renkei_curve, "baseline": baseline_curve,
                  "knee": {"renkei": knee, "baseline": bench_report.knee(baseline_curve)}},
        "scaleout": scaleout,
        "memory": None if memory is None else {
            "point": memory, "warmup_seconds": settings.knobs.memory_warmup,
            "flatness": bench_report.flatness(memory),
            "throughput": bench_report.rate_held(memory)},
    }
    result["bars"] = bench_report.bars(result)
    return result


def runtimes() -> dict[str, Any]:
    """What the figures were measured on: this Python, and the JVM of the broker's first node."""
    node = next(n for n in process.status()[1] if n.pid is not None)
    java_bin = os.readlink(f"/proc/{node.pid}/exe")
    return {"python": sys.version.split()[0], "python_executable": sys.executable,
            "java": process.java_release(java_bin), "java_executable": java_bin}


def write(result: dict[str, Any], folder: Path) -> list[Path]:
    """The JSON result and the plots; the paths written."""
    from renkei import plots  # matplotlib: only for the pictures, not every `renkei` start

    paths = [folder / "bench-linkage.json", folder / "linkage-curve.png",
             folder / "linkage-scaleout.png"]
    write_json(paths[0], result)
    plots.curve(result["curve"]["renkei"], result["curve"]["baseline"],
                [result[run][mode] for run in ("main", "capacity")
                 for mode in ("renkei", "baseline")], paths[1])
    plots.scaleout(result["scaleout"], paths[2])
    if result["memory"] is not None:
        paths.append(folder / "linkage-memory.png")
        plots.memory(result["memory"]["point"], bench_report.BAR_MEMORY_BAND, paths[-1])
    return paths


def _numbers(kind: click.ParamType[Any]) -> Callable[[click.Context, click.Parameter, str],
                                                      tuple[Any, ...]]:
    def parse(ctx: click.Context, param: click.Parameter, text: str) -> tuple[Any, ...]:
        try:
            return tuple(sorted(kind.convert(part.strip(), param, ctx)
                                for part in text.split(",") if part.strip()))
        except click.BadParameter as exc:
            raise click.BadParameter(f"a comma-separated list of numbers: {exc.message}") from exc
    return parse


@click.command("linkage", short_help="Round trips/s, latency, CPU and lag against bare Kafka.")
@click.option("--seconds", type=POSITIVE, default=60.0, show_default=True,
              help="measured seconds per point")
@click.option("--rate", type=POSITIVE, default=bench_report.BAR_RATE, show_default=True,
              help="offered round trips/s of the main run")
@click.option("--flat-out", is_flag=True, help="main run closed-loop instead")
@click.option("--curve", default="25,50,100,200,400,800,1200,1600,2000,2400,3200,4800,6400,9600",
              show_default=True, callback=_numbers(POSITIVE),
              help="offered rates of the load curve, stepped up until latency breaks (each "
                   "system's own: the baseline's goes on to its knee)")
@click.option("--scale", default="1,2,4", show_default=True,
              callback=_numbers(click.IntRange(min=1)),
              help="platform instances for the scale-out, each measured flat out in turn")
@click.option("--memory-minutes", type=NON_NEGATIVE, default=10.0, show_default=True,
              help="length of the memory run at the knee (0: none)")
@residents_option(10, 1000, help="residents of the benchmark's town")
@seed_option(2026, "the town and the requests sent")
@click.option("--idle-holders", type=click.IntRange(min=0), default=0, show_default=True,
              help="more holders that send nothing (their outboxes still in the platform's "
                   "subscription)")
@click.option("--in-flight", type=click.IntRange(min=1), default=None, cls=SaidDefault,
              show_default=f"the capacity points try {', '.join(map(str, bench_capacity.DEPTHS))} "
                           f"in turn, {bench_capacity.SEARCH_SECONDS:g} s each, until throughput "
                           f"stops rising; every other flat-out point {bench_capacity.DEPTHS[0]}",
              help="flat out: requests each holder keeps outstanding")
@click.option("--prime-seconds", "prime", type=NON_NEGATIVE, default=30.0,
              show_default=True,
              help="seconds of flat-out load before the first point, not measured: the broker "
                   "compiles its hot paths (JIT) then, not in the first point (0: none)")
@click.option("--warmup", type=NON_NEGATIVE, default=5.0, show_default=True,
              help="seconds of load before each measured window")
@click.option("--drain", type=NON_NEGATIVE, default=15.0, show_default=True,
              help="seconds holders wait for outstanding outcomes after the window")
@click.option("--use-running", is_flag=True,
              help="use the state folder's running broker (and rebuild its town)")
@click.option("--quick", is_flag=True, help="a small version, a few seconds a point (smoke test)")
@click.option("--profile", is_flag=True,
              help="every process under cProfile by its CPU clock (slower): profiles and their "
                   "summary in the results folder")
@click.option("--perf", is_flag=True,
              help="sample the whole machine with Linux `perf` in each measured window: each "
                   "process's share of the CPU by part (interpreter, kernel, crypto, SQLite…)")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True,
              help="the folder the results, plots and profiles are written to")
def linkage_bench(seconds: float, rate: float, flat_out: bool, curve: tuple[float, ...],
                  scale: tuple[int, ...], memory_minutes: float, residents: int, seed: int,
                  idle_holders: int, prime: float, in_flight: int | None, warmup: float,
                  drain: float,
                  use_running: bool, quick: bool, profile: bool, perf: bool,
                  results: Path) -> None:
    """Lawful round trips/s, latency, CPU, memory and lag, against a bare-Kafka baseline."""
    if perf:
        try:
            machine_profile.check()
        except machine_profile.PerfUnavailable as exc:
            raise click.UsageError(str(exc)) from exc
    settings = Settings(seconds, None if flat_out else rate, curve, scale, memory_minutes,
                        residents, seed, idle_holders, prime,
                        bench_capacity.DEPTHS if in_flight is None else (in_flight,),
                        Knobs(warmup, drain, settle=120.0,
                              perf=str((results / "perf").resolve()) if perf else None))
    if quick:  # a small version of what was not given explicitly
        ctx = click.get_current_context()
        given = {name for name in ctx.params
                 if ctx.get_parameter_source(name) != ParameterSource.DEFAULT}
        given |= {"rate"} if flat_out else set()
        given |= set() if in_flight is None else {"depths"}
        settings = replace(settings, **{k: v for k, v in QUICK.items() if k not in given},
                           knobs=replace(settings.knobs, **{
                               k: v for k, v in QUICK_KNOBS.items() if k not in given}))
    started = time.perf_counter()
    profiles = (results / "profile").resolve() if profile else None
    if profiles is not None:
        shutil.rmtree(profiles, ignore_errors=True)
    with bench_broker(use_running), profiling.into(profiles):
        click.echo(f"== Renkei linkage benchmark (state {state_dir()})")
        result = measure(settings)
    result["wall_seconds"] = round(time.perf_counter() - started)
    result["profile"] = None if profiles is None else profiling.summary(profiles)
    bench_report.summary(result)
    if result["profile"] is not None:
        click.echo(f"  profiles (under cProfile, by CPU clock) in {profiles}:")
        click.echo("\n".join(profiling.lines(result["profile"])))
    for path in write(result, results):
        click.echo(f"  written: {path}")
