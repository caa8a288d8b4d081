"""The linkage benchmark's verdicts — when latency breaks, the knee, memory flatness, the bars —
and its summary table."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from renkei import bench_capacity, machine_profile

Point = dict[str, Any]
BAR_RATE, BAR_P99_MS, BAR_SECONDS = 2000.0, 250.0, 60.0
BAR_RATIO = 0.5
BAR_MEMORY_BAND, BAR_MEMORY_MINUTES = 0.10, 10.0
KEEPS_UP = 0.9  # of the offered rate
NEVER = "never"  # a latency percentile that lands among the requests never answered


def broken(point: Point) -> str | None:
    """Why latency or throughput broke at this point; None while it holds. Its p99 is over
    every request due, one never answered counting as never: over 1% never answered, it broke."""
    p99 = point["latency_ms"]["p99"]
    if p99 is None:
        return f"p99 {NEVER}: {point['failed_share']:.1%} without an answer"
    if p99 > BAR_P99_MS:
        return f"p99 {_ms(p99)} > {BAR_P99_MS:.0f} ms"
    if point["offered_rate"] and point["throughput"] < KEEPS_UP * point["offered_rate"]:
        return f"{point['throughput']:,.0f} rt/s < {KEEPS_UP:.0%} of offered"
    return None


def knee(points: Sequence[Point]) -> float | None:
    """The highest offered rate before the first point where latency broke."""
    held = None
    for point in points:
        if broken(point):
            break
        held = point["offered_rate"]
    return held


def flatness(point: Point, warmup_share: float = 0.1) -> dict[str, Any]:
    """Each instance's memory after the first `warmup_share` of the run: its spread around the
    median, and its growth over that window (the least-squares line's rise across it, relative
    to where that line starts), so that a steady leak shows even inside the spread."""
    out: dict[str, Any] = {}
    for worker, values in point["rss_mb"].items():
        seen = [(t, v) for t, v in zip(point["rss_mb"]["t"], values, strict=True)
                if v is not None] if worker != "t" else []
        seen = seen[int(len(seen) * warmup_share):]
        if not seen:
            continue
        mbs = [v for _, v in seen]
        middle = statistics.median(mbs)
        out[worker] = {"median_mb": middle, "min_mb": min(mbs), "max_mb": max(mbs),
                       "spread": max(abs(min(mbs) / middle - 1), abs(max(mbs) / middle - 1)),
                       "growth": _growth(seen)}
    return out


def rate_held(point: Point, minute: float = 60.0) -> dict[str, float]:
    """Whether a long point's throughput held: its first and last minutes' round trips a
    second, and its growth over the window as memory's is told (_growth: negative, it fell)."""
    series = point["throughput_series"]
    rates = series["rt_s"]
    per_minute = max(1, round(minute / series["step_seconds"]))
    return {"first_minute": statistics.fmean(rates[:per_minute]),
            "last_minute": statistics.fmean(rates[-per_minute:]),
            "growth": _growth(list(zip(series["t"], rates, strict=True)))}


def _growth(samples: Sequence[tuple[float, float]]) -> float:
    """How much the least-squares line through (time, value) rises from the first sample's
    time to the last's, relative to its level at the first (0 with fewer than two times)."""
    times = [t for t, _ in samples]
    if len(set(times)) < 2:
        return 0.0
    slope, level = statistics.linear_regression(times, [v for _, v in samples])
    start = level + slope * times[0]
    return slope * (times[-1] - times[0]) / start


def bars(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's bars; the ratio compares what each does flat out, since at an offered rate
    both can carry, it says nothing. Flat out, a closed loop carries what its depth allows:
    each is taken at the depth where it carried most (bench_capacity), told with the ratio."""
    main, capacity = result["main"]["renkei"], result["capacity"]
    why = broken(main)  # its p99 over every request due: with over 1% never answered, "never"
    found = [{
        "bar": f"≥ {BAR_RATE:,.0f} lawful round trips/s sustained {BAR_SECONDS:.0f} s, "
               f"p99 ≤ {BAR_P99_MS:.0f} ms",
        "measured": f"{main['throughput']:,.0f} rt/s over {main['seconds']:.0f} s, p99 "
                    f"{_ms(main['latency_ms']['p99'])}" + (f" [broke: {why}]" if why else ""),
        "met": bool(main["throughput"] >= BAR_RATE and main["seconds"] >= BAR_SECONDS
                    and why is None),
    }, {
        "bar": f"Renkei ≥ {BAR_RATIO} × the bare-Kafka baseline of the same run (both flat out)",
        "measured": f"{capacity['ratio']:.2f} × ({_flat_out(capacity)})",
        "met": capacity["ratio"] >= BAR_RATIO,
    }]
    memory = result["memory"]
    if memory is not None:
        found.append(_memory_bar(memory))
    return found


def _memory_bar(memory: dict[str, Any]) -> dict[str, Any]:
    """Flat: every instance within the band around its median, and its growth over the window
    within the band too (a steady leak can stay inside the spread); says which failed."""
    flat = memory["flatness"].values()
    spread = max((w["spread"] for w in flat), default=1.0)
    growth = max((w["growth"] for w in flat), key=abs, default=1.0)
    minutes = memory["point"]["seconds"] / 60
    failed = [what for what, over in (("spread", spread > BAR_MEMORY_BAND),
                                      ("growth", abs(growth) > BAR_MEMORY_BAND),
                                      ("too short", minutes < BAR_MEMORY_MINUTES)) if over]
    return {
        "bar": f"processor memory flat (±{BAR_MEMORY_BAND:.0%}) over "
               f"{BAR_MEMORY_MINUTES:.0f} minutes",
        "measured": f"±{spread:.1%} around the median, growth {growth:+.1%} over "
                    f"{minutes:.1f} minutes" + (f" [failed: {', '.join(failed)}]"
                                                if failed else ""),
        "met": not failed,
    }


def _ms(value: float | None) -> str:
    """A latency; None: it lands among the requests never answered."""
    return NEVER if value is None else f"{value:,.0f} ms"


def _rate(point: Point) -> str:
    rate = point["offered_rate"]
    return "flat out" if rate is None else f"{rate:,.0f}/s"


def _flat_out(capacity: dict[str, Any]) -> str:
    """What each carried flat out, at how deep a closed loop (in flight a holder) and how far
    apart in time the two were measured (when known)."""
    depths = [capacity[mode].get("in_flight_per_holder") for mode in ("renkei", "baseline")]
    starts = [capacity[mode].get("window_start") for mode in ("renkei", "baseline")]
    apart = None if None in starts else abs(
        datetime.fromisoformat(starts[1]) - datetime.fromisoformat(starts[0]))
    return (f"{capacity['renkei']['throughput']:,.0f} vs "
            f"{capacity['baseline']['throughput']:,.0f} rt/s"
            + ("" if None in depths else f", {depths[0]} vs {depths[1]} in flight a holder")
            + ("" if apart is None else f", {apart.total_seconds() / 60:.0f} min apart"))


def cpu_per_round_trip(point: Point) -> float | None:
    """CPU milliseconds of all the measured processes (broker included) per round trip."""
    by_process = cpu_by_process(point)
    return sum(by_process.values()) / 1000 if by_process else None


def cpu_by_process(point: Point) -> dict[str, float]:
    """CPU microseconds per round trip of each process (the holders as one), the costliest
    first; empty when none completed."""
    done = point["completed"]
    if not done:
        return {}
    cost = _holders_as_one(point["cpu_seconds"])
    return {name: 1e6 * cost[name] / done for name in sorted(cost, key=cost.__getitem__,
                                                             reverse=True)}


def _holders_as_one(by_process: dict[str, float]) -> dict[str, float]:
    """The holders' figures summed as "holders"; the other processes' as they are."""
    summed: dict[str, float] = {}
    for name, value in by_process.items():
        key = "holders" if name.startswith("holder-") else name
        summed[key] = summed.get(key, 0.0) + value
    return summed


def cost_text(capacity: dict[str, Any]) -> str:
    """Where each one's CPU a round trip went flat out: what bar 2's ratio comes from."""
    return "; ".join(f"{mode} {_sum_text(cpu_by_process(capacity[mode]))}"
                     for mode in ("renkei", "baseline"))


def _sum_text(parts: dict[str, float]) -> str:
    """`total = a + b + …`, or "—" when there is nothing to add."""
    if not parts:
        return "—"
    return f"{sum(parts.values()):,.0f} = " + " + ".join(
        f"{name} {value:,.0f}" for name, value in parts.items())


def _cpu(point: Point) -> str:
    cpu = _holders_as_one(point["cpu_percent"])
    holders = cpu.pop("holders", 0)
    rest = [f"{k} {v:.0f}%" for k, v in cpu.items() if v >= 1]
    per = cpu_per_round_trip(point)
    return ", ".join([*rest, f"holders {holders:.0f}%"]) + (
        "" if per is None else f": {per:.2f} ms per round trip")


def _runs(point: Point) -> str:
    """How often each process was put on a CPU (a wake-up's switch is not free, in a VM least)."""
    runs = _holders_as_one(point.get("cpu_runs_per_second") or {})
    if not runs:
        return ""
    return f"\n{'':8}on a CPU /s: " + ", ".join(
        f"{name} {value:,.0f}" for name, value in sorted(runs.items(), key=lambda kv: -kv[1]))


def _machine(point: Point) -> str:
    """The whole machine in the window: busy (the processes measured, and others), idle, stolen
    by the host. A point that left CPU idle or had it stolen was held back by more than its own
    cost."""
    machine = point.get("machine_cpu_percent")
    if not machine:
        return ""
    ours = sum(point["cpu_percent"].values())
    return (f"\n{'':8}machine: busy {machine['busy']:.0f}% (these processes {ours:.0f}%, others "
            f"{max(machine['busy'] - ours, 0):.0f}%), idle {machine['idle']:.0f}%, stolen "
            f"{machine['stolen']:.0f}%")


def _hops(point: Point) -> str:
    found = point["hops_ms"]
    if not found or not found["requests"]:
        return ""
    return f"\n{'':8}hops p50/p99 ms: " + ", ".join(
        f"{hop.replace('_', ' ')} {v['p50']:,.0f}/{v['p99']:,.0f}"
        for hop, v in found.items() if hop != "requests")


def line(point: Point) -> str:
    """One point in a line: throughput, latency, failures, lag, CPU."""
    latency = point["latency_ms"]
    why = broken(point)
    return (f"{point['throughput']:>8,.0f} rt/s  p50 {_ms(latency['p50']):>9}  "
            f"p99 {_ms(latency['p99']):>9}  p99.9 {_ms(latency['p99.9']):>9}  "
            f"no answer {point['failed_share']:>5.1%}  lag ≤ {point['lag']['max'] or 0:,}"
            + (f"  [broke: {why}]" if why else "")
            + f"\n{'':8}CPU: {_cpu(point)}" + _runs(point) + _machine(point) + _hops(point)
            + (f"\n{'':8}{machine_profile.line(point['perf'])}" if point.get("perf") else ""))


def curve_text(points: Sequence[Point]) -> str:
    """The curve's steps and its knee (none asked for: none measured)."""
    if not points:
        return "none measured"
    steps = ", ".join(f"{p['offered_rate']:,.0f}→{p['throughput']:,.0f}" for p in points)
    return f"(offered→rt/s) {steps}; {knee_text(points)}"


def knee_text(points: Sequence[Point]) -> str:
    held = knee(points)
    if held is None:
        return "knee below the first step"
    if not any(broken(p) for p in points):
        return f"held to the last step ({held:,.0f}/s): knee not reached"
    return f"knee {held:,.0f}/s"


def summary(result: dict[str, Any]) -> None:
    main, curve = result["main"], result["curve"]
    machine = result["machine"]
    idle = result["town"]["idle_holders"]
    click.echo(f"\n== Linkage benchmark: {result['town']['holders']} holders"
               f"{f' (+ {idle} idle)' if idle else ''}, town of "
               f"{result['town']['residents']:,}, {machine['cpus']} cores, Python "
               f"{machine['python']}, Java {machine['java']}, load average "
               f"{machine['loadavg_start'][0]:.1f} → {machine['loadavg_end'][0]:.1f}")
    click.echo(f"  message sizes (bytes): {result['message_sizes']}")
    click.echo(f"  latency percentiles are over every request due; \"{NEVER}\": the "
               "percentile lands among the requests never answered")
    for name in ("renkei", "baseline"):
        point = main[name]
        click.echo(f"  {name:8} ×{point['instances']} at {_rate(point):>9}: {line(point)}")
    click.echo(f"  Renkei / baseline: {main['ratio']:.2f} at {_rate(main['renkei'])}, "
               f"{result['capacity']['ratio']:.2f} flat out ({_flat_out(result['capacity'])})")
    for name, tried in result["capacity"]["depths"].items():
        click.echo(f"  flat out {name:8} (in flight a holder→rt/s): "
                   f"{bench_capacity.text(tried)}; taken: "
                   f"{result['capacity'][name]['in_flight_per_holder']}")
    click.echo(f"  CPU a round trip flat out, µs: {cost_text(result['capacity'])}")
    for name in ("renkei", "baseline"):
        click.echo(f"  curve {name:8} {curve_text(curve[name])}")
    click.echo("  scale-out, flat out: " + "; ".join(
        f"×{p['instances']} {p['throughput']:,.0f} rt/s ({p['in_flight_per_holder']} in flight "
        f"a holder, p99 {_ms(p['latency_ms']['p99'])}; tried {bench_capacity.text(p['depths'])})"
        for p in result["scaleout"]))
    if result["memory"] is not None:
        for worker, flat in result["memory"]["flatness"].items():
            click.echo(f"  memory {worker}: median {flat['median_mb']:.0f} MB, "
                       f"{flat['min_mb']:.0f}–{flat['max_mb']:.0f} MB (±{flat['spread']:.1%}), "
                       f"growth over the window {flat['growth']:+.1%}")
        held = result["memory"]["throughput"]
        click.echo(f"  memory run's throughput: first minute {held['first_minute']:,.0f} rt/s, "
                   f"last {held['last_minute']:,.0f} rt/s, growth over the window "
                   f"{held['growth']:+.1%}")
    click.echo("  bars:")
    for bar in result["bars"]:
        click.echo(f"    [{'met' if bar['met'] else 'NOT MET':7}] {bar['bar']}: {bar['measured']}")
