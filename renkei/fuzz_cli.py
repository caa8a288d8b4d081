"""`renkei chaos fuzz`: bad input at scale, on a town of its own on the local broker."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import click

from broker import process
from renkei import fuzz_run, scenario, town
from renkei.fuzz_run import FuzzResult
from renkei.options import residents_option, result_option, seed_option
from renkei.state import state_dir

FUZZ_RESULT = Path("results") / "chaos-fuzz.json"


async def _exercise(built: town.Town, procs: town.Processes, messages: int, seed: int,
                    lawful_every: int) -> FuzzResult:
    async with scenario.started_clients() as clients:
        return await fuzz_run.run(clients, built, procs, messages, seed, lawful_every,
                                  bind=True)


@click.command("fuzz", short_help="Fuzz every topic a holder can write, lawful traffic between.")
@click.option("--messages", type=click.IntRange(min=100), default=100_000, show_default=True,
              help="bad messages to send")
@seed_option(2026, "the town, the lawful requests and the bad messages")
@residents_option(50, 300, help="residents of the run's town")
@click.option("--lawful-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="a lawful request every this many bad messages")
@click.option("--keep", is_flag=True, help="leave a broker started here running afterwards")
@result_option(FUZZ_RESULT)
def fuzz(messages: int, seed: int, residents: int, lawful_every: int, keep: bool,
         out: Path) -> None:
    """Fuzz every topic a holder can write (schema-drawn records and damaged bytes), with
    lawful traffic in between: each bad message must get its answer, nothing may crash."""
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("holders.client").setLevel(logging.ERROR)  # answers to strangers' ids
    try:
        cluster, started = process.up(None, None, tethered=not keep)
    except process.BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Kafka on {cluster.bootstrap}; state in {state_dir()}")
    try:
        built = town.build(residents, seed)
        with town.services() as procs:
            result = asyncio.run(_exercise(built, procs, messages, seed, lawful_every))
    finally:
        if started and not keep:
            process.down()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    for line in fuzz_run.summary(result):
        click.echo(line)
    click.echo(f"written to {out}")
    if not result.ok:
        raise SystemExit(1)
