"""`renkei bench …`: the benchmarks, each printed as a table and written as JSON under results/."""

from __future__ import annotations

import click

from audit.bench import audit_bench
from processors.bench_codes import codes_bench
from renkei.bench_linkage import linkage_bench
from renkei.load import holder_command
from renkei.relay import relay_command


@click.group("bench")
def bench() -> None:
    """Benchmarks (results/ is git-ignored)."""


bench.add_command(codes_bench)
bench.add_command(audit_bench)
bench.add_command(linkage_bench)
bench.add_command(holder_command)
bench.add_command(relay_command)
