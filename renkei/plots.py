"""The linkage benchmark's pictures: throughput and latency against offered rate, scale-out, and
a processor instance's memory over a long run (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

Point = dict[str, Any]
P99_BAR_MS = 250.0


def curve(renkei: Sequence[Point], baseline: Sequence[Point], main: Sequence[Point],
          path: Path) -> None:
    """Round trips per second and p50/p99 latency against the offered rate, both systems: the
    load curve (lines), the main run at an offered rate (stars) and flat out (dashed lines)."""
    fig, (rate_ax, latency_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    flat_out = {id(p): p for p in main if not p["offered_rate"]}.values()
    main = [p for p in main if p["offered_rate"]]
    rates = [p["offered_rate"] for p in [*renkei, *baseline, *main]]
    span = [min(rates), max(rates)] if rates else []
    rate_ax.plot(span, span, color="lightgray", linestyle=":", label="offered")
    for name, points, colour in (("Renkei", renkei, "tab:red"),
                                 ("bare Kafka baseline", baseline, "tab:blue")):
        offered = [p["offered_rate"] for p in points]
        rate_ax.plot(offered, [p["throughput"] for p in points], "o-", color=colour, label=name)
        for key, style in (("p50", "o-"), ("p99", "s--")):
            latency_ax.plot(offered, [p["latency_ms"][key] for p in points], style,
                            color=colour, label=f"{name} {key}")
        for point in main:
            if point["mode"] in name.lower():
                rate_ax.plot(point["offered_rate"], point["throughput"], "*", markersize=12,
                             color=colour, label=f"{name} main run")
                latency_ax.plot([point["offered_rate"]] * 2,
                                [point["latency_ms"]["p50"], point["latency_ms"]["p99"]], "*",
                                markersize=12, color=colour)
        for point in flat_out:
            if point["mode"] in name.lower():
                rate_ax.axhline(point["throughput"], color=colour, linestyle="--", alpha=0.6,
                                label=f"{name} flat out")
    latency_ax.axhline(P99_BAR_MS, color="gray", linewidth=0.8, label="p99 bar (250 ms)")
    rates_axis = "log" if rates else "linear"  # log: 25/s to the baseline's knee (none: flat out)
    rate_ax.set(xlabel="offered round trips/s", ylabel="completed round trips/s",
                xscale=rates_axis, yscale=rates_axis, title="Throughput")
    latency_ax.set(xlabel="offered round trips/s", ylabel="latency (ms)", xscale=rates_axis,
                   yscale="log", title="Latency (request sent → decrypted answer)")
    latency_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    latency_ax.yaxis.set_minor_formatter(FuncFormatter(  # 20, 50, 200, 500 … too
        lambda value, _: f"{value:g}" if f"{value:g}"[0] in "25" else ""))
    for ax in (rate_ax, latency_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def scaleout(points: Sequence[Point], path: Path) -> None:
    """Round trips per second with 1, 2, 4 … platform instances in one consumer group."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    labels = [str(p["instances"]) for p in points]
    bars = ax.bar(labels, [p["throughput"] for p in points], color="tab:red")
    ax.bar_label(bars, fmt="%.0f")
    ax.set(xlabel="platform instances (one consumer group)", ylabel="completed round trips/s",
           title="Scale-out")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def memory(point: Point, band: float, path: Path) -> None:
    """Resident memory of each processor instance over the long run, with the ±band around
    its median; below it, the run's throughput over the same seconds (whether it held)."""
    fig, (ax, rate) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True,
                                   gridspec_kw={"height_ratios": (2, 1)})
    samples = point["rss_mb"]
    for worker, values in samples.items():
        if worker == "t":
            continue
        ax.plot(samples["t"], values, label=worker)
        seen = sorted(v for v in values if v is not None)
        if seen:
            middle = seen[len(seen) // 2]
            ax.axhspan(middle * (1 - band), middle * (1 + band), alpha=0.1,
                       label=f"±{band:.0%} of median")
    ax.set(ylabel="resident memory (MB)",
           title="Processor memory, " + (f"{point['offered_rate']:g} rt/s offered"
                                         if point["offered_rate"] else "flat out"))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    series = point["throughput_series"]
    rates = series["rt_s"]  # each drawn across its step, the last to the window's end
    rate.step([*series["t"], point["seconds"]], [*rates, rates[-1]], where="post")
    rate.set(xlabel="seconds into the run",
             ylabel=f"rt/s (each {series['step_seconds']:g} s)")
    rate.set_ylim(bottom=0)
    rate.grid(alpha=0.3)
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
