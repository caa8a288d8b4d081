"""`renkei bench …`: the benchmarks, each printed as a table and written as JSON under results/."""

from __future__ import annotations

import click

from audit.bench import audit_bench
from processors.bench_codes import codes_bench


@click.group("bench")
def bench() -> None:
    """Benchmarks (results/ is git-ignored)."""


bench.add_command(codes_bench)
bench.add_command(audit_bench)
