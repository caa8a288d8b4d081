"""`renkei chaos …`: failures on purpose, measured (results/ is git-ignored)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from renkei import logs
from renkei.broker_chaos import BrokerChaos, kill_times, run_broker_chaos
from renkei.crash_cli import crash, report
from renkei.fuzz_cli import fuzz
from renkei.misbinding_cli import misbinding
from renkei.options import (
    NON_NEGATIVE,
    FiniteRange,
    SaidDefault,
    residents_option,
    result_option,
)
from renkei.state import state_dir, write_json

BROKER_RESULT = Path("results") / "chaos-broker.json"


@click.group("chaos", short_help="Chaos runs under load: nothing may be lost or doubled.")
def chaos_cli() -> None:
    """Chaos runs: kill parts of the system under load; nothing may be lost or doubled."""


@chaos_cli.command("broker", short_help="A broker of three SIGKILLed under load, then restarted.")
@click.option("--seconds", type=FiniteRange(min=5), default=60.0, show_default=True,
              help="how long to send requests")
@click.option("--rate", type=FiniteRange(min=0.5), default=20.0, show_default=True,
              help="lawful requests per second (one in ten a binding)")
@residents_option(50, 300, help="residents of the run's town")
@click.option("--kill-at", type=NON_NEGATIVE, default=None, cls=SaidDefault,
              show_default="a quarter of --seconds",
              help="seconds into the load to SIGKILL the broker; it and its restart (--down "
                   "later) come within --seconds")
@click.option("--down", "down_for", type=NON_NEGATIVE, default=None, cls=SaidDefault,
              show_default="a quarter of --seconds",
              help="seconds before it is started again")
@click.option("--keep", is_flag=True, help="leave the 3-node cluster running afterwards")
@result_option(BROKER_RESULT)
def broker_chaos(seconds: float, rate: float, residents: int, kill_at: float | None,
                 down_for: float | None, keep: bool, out: Path) -> None:
    """A broker of a 3-node cluster (in <state>/cluster3) SIGKILLed under load, linkage
    requests and one binding in ten, restarted."""
    try:
        kill_times(seconds, kill_at, down_for)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    with logs.quieted("aiokafka"):  # its retries are the point here
        result = asyncio.run(run_broker_chaos(state_dir() / "cluster3", seconds, rate, residents,
                                              kill_at=kill_at, down_for=down_for, keep=keep))
    write_json(out, result.to_json())
    for line in summary(result):
        click.echo(line)
    click.echo(f"written to {out}")
    if not result.exactly_once:
        raise SystemExit(1)


def summary(r: BrokerChaos) -> list[str]:
    """The figures, one per line."""
    def s(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}s"

    return [
        f"cluster: {r.nodes} nodes, started in {s(r.cluster_start_seconds)}; services ready "
        f"in {s(r.services_ready_seconds)}",
        f"killed node {r.killed_node} ({r.killed_why}; led {r.partitions_led_by_killed} "
        f"partitions of it; quorum leader: {'yes' if r.killed_was_quorum_leader else 'no'}) "
        f"at {r.kill_at_seconds:.0f}s, started again {r.down_seconds:.0f}s later",
        f"jobs: {r.jobs} at {r.rate:g}/s for {r.seconds:g}s ({r.binding_jobs} of them "
        f"bindings); send failed {r.send_failed} "
        "(judged below if recorded)",
        *r.checked.lines(),
        f"recovery: first request sent after the kill answered {s(r.recover_first_answer_seconds)}"
        f" after it; restarted broker back in every ISR {s(r.recover_isr_seconds)} after the "
        f"kill (its restart took {s(r.restart_seconds)})",
        f"latency: p50 {s(r.latency_p50_seconds)}, max {s(r.latency_max_seconds)}",
        "phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in r.phase_seconds.items()),
        "exactly once: " + ("yes" if r.exactly_once else "NO"),
    ]


chaos_cli.add_command(fuzz)
chaos_cli.add_command(misbinding)
chaos_cli.add_command(crash)
chaos_cli.add_command(report)
