"""`renkei bench …`: the benchmarks, each printed as a table and written as JSON under results/."""

from __future__ import annotations

import click

from renkei.cli import Named

# Each benchmark's command ("module:name"), imported only when it is named: a holder or relay
# that `bench linkage` starts imports neither the other benchmarks nor the linkage's own driver
BENCHMARKS = {
    "audit": "audit.bench:audit_bench", "codes": "processors.bench_codes:codes_bench",
    "holder": "renkei.load:holder_command", "linkage": "renkei.bench_linkage:linkage_bench",
    "relay": "renkei.relay:relay_command",
}


@click.group("bench", cls=Named, named=BENCHMARKS)
def bench() -> None:
    """Benchmarks (results/ is git-ignored)."""
