"""Flat out, a closed loop carries what its depth allows (round trips/s = requests in flight /
mean latency), not what the system can: each system's capacity is searched for by doubling the
requests each holder keeps in flight until throughput stops rising or answers time out. A 15-s
point on two shared cores varies by ±15% (stop 53: one run's 64 deep carried 1,592/s after 32 deep
1,716/s, the same stage's next search 2,359/s at 64 deep), so one depth without a gain does not end
the search: two in a row do."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Point = dict[str, Any]
DEPTHS = (32, 64, 128, 256, 512)  # requests in flight a holder, tried in turn
GAIN = 0.05  # a deeper loop that carries less than this much more than the best: no gain
PATIENCE = 2  # depths in a row without a gain that end the search
SEARCH_SECONDS = 15.0  # measured seconds of each depth tried (at most the points' own)


def timed_out(point: Point) -> bool:
    """Over 1% of its requests never answered: its p99 is never."""
    return point["latency_ms"]["p99"] is None


def search(measure: Callable[[int], Point],
           depths: Sequence[int] = DEPTHS) -> tuple[Point, list[Point]]:
    """Measure each depth in turn until one timed out or PATIENCE in a row each carried less
    than GAIN more than the best before it; the best point that did not time out (the first if
    all did), and every point measured, in order."""
    tried: list[Point] = []
    without_gain = 0
    for depth in depths:
        found = measure(depth)
        best = max((p["throughput"] for p in tried), default=None)
        tried.append(found)
        gained = best is None or found["throughput"] >= (1 + GAIN) * best
        without_gain = 0 if gained else without_gain + 1
        if timed_out(found) or without_gain == PATIENCE:
            break
    held = [p for p in tried if not timed_out(p)] or tried[:1]
    return max(held, key=lambda p: p["throughput"]), tried


def depths(tried: Sequence[Point]) -> list[dict[str, Any]]:
    """What each depth tried carried, for the result file."""
    return [{"in_flight_per_holder": p["in_flight_per_holder"], "throughput": p["throughput"],
             "p99_ms": p["latency_ms"]["p99"], "failed_share": p["failed_share"]}
            for p in tried]


def text(tried: Sequence[dict[str, Any]]) -> str:
    """`32→1,483, 64→1,790 rt/s`: each depth tried (in flight a holder) and what it carried,
    one that timed out marked."""
    return ", ".join(f"{p['in_flight_per_holder']}→{p['throughput']:,.0f}"
                     + (" (timed out)" if p["p99_ms"] is None else "") for p in tried) + " rt/s"
