"""Round trips from the holders' records: how many completed in the measured window, how long
they took, and how the rest ended."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schemas.messages import FOUND

PERCENTILES = {"p50": 50.0, "p99": 99.0, "p99.9": 99.9}
STEP_SECONDS = 10.0  # each step of a point's throughput series


def load(paths: Sequence[Path]) -> dict[str, np.ndarray[Any, Any]]:
    """The records of all holders of a run, concatenated."""
    parts = [np.load(path) for path in paths]
    return {"sent": np.concatenate([p["sent"] for p in parts]),
            "latency": np.concatenate([p["latency"] for p in parts]),
            "status": np.concatenate([p["status"] for p in parts]),
            "request_id": np.concatenate([p["request_id"] for p in parts])}


def summarize(records: dict[str, np.ndarray[Any, Any]], start: float,
              end: float) -> dict[str, Any]:
    """Round trips completed (answer decrypted at the requester) in [start, end) per second;
    latency percentiles and outcomes of the requests due in the window. The percentiles are
    over every request due, one not answered (any outcome but FOUND: not sent, no answer, or a
    refusal) counting as never answered: a percentile that lands among those is None. The mean
    is of the answered ones. The throughput series says whether the rate held over the window:
    round trips completed per second in each STEP_SECONDS from its start (the last step cut
    at its end), each at its step's start in seconds into the window (t, as memory's)."""
    sent, latency, status = records["sent"], records["latency"], records["status"]
    found = status == FOUND
    done_at = (sent + np.nan_to_num(latency, nan=np.inf))[found]
    steps = math.ceil(round((end - start) / STEP_SECONDS, 6))  # not one more for a float's ulp
    edges = np.minimum(start + STEP_SECONDS * np.arange(steps + 1), end)
    by_step = np.histogram(done_at[(done_at >= start) & (done_at < end)], bins=edges)[0]
    completed = int(by_step.sum())
    due = (sent >= start) & (sent < end)
    answered = latency[due & found] * 1000
    every = np.where(found[due], latency[due] * 1000, np.inf)
    outcomes = Counter(str(s) for s in status[due])
    return {
        "throughput": completed / (end - start),
        "throughput_series": {"step_seconds": STEP_SECONDS,
                              "t": (edges[:-1] - start).round(2).tolist(),
                              "rt_s": (by_step / np.diff(edges)).round(1).tolist()},
        "due": int(np.count_nonzero(due)),
        "completed": completed,
        "outcomes": dict(outcomes.most_common()),
        "failed_share": 1 - outcomes[FOUND] / max(1, sum(outcomes.values())),
        "latency_ms": {name: _finite(every, q) for name, q in PERCENTILES.items()}
                      | {"max": _finite(every, 100.0),
                         "mean": float(answered.mean()) if answered.size else None},
    }


def _finite(values: np.ndarray[Any, Any], q: float) -> float | None:
    """The q-th percentile of `values` (linear between neighbours, as numpy's); None where it
    lands among the infinite ones (never), or where there are none."""
    if not values.size:
        return None
    ordered = np.sort(values)
    position = (ordered.size - 1) * q / 100
    low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
    if not np.isfinite(high):
        return None
    return float(low + (high - low) * (position - math.floor(position)))
