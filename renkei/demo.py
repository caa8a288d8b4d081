"""`renkei demo`: the main job — the platform on a local broker, a holder, one message through."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import click

from broker import process, provision, topics
from holders.ping import ping
from renkei.state import state_dir

DEMO_HOLDER = "demo-city"


@click.command()
@click.option("--keep", is_flag=True, help="leave the broker running afterwards")
def demo(keep: bool) -> None:
    """Bring up the broker, provision it, send a message through the platform's faust agent."""
    started = time.monotonic()
    try:
        cluster, _ = process.up(None, None)
    except process.BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"1. broker: Kafka on {cluster.bootstrap} (SASL/SCRAM, ACLs)")
    report = provision.provision()
    admin = provision.admin_client()
    provision.add_holder(admin, DEMO_HOLDER, report)
    click.echo(f"2. provisioned: {len(report.created)} topic(s) created, "
               f"{report.acls} ACL entries ensured, holder {DEMO_HOLDER!r} registered")
    log = Path(state_dir()) / "platform-demo.log"
    platform = subprocess.Popen(
        [str(Path(sys.executable).with_name("renkei")), "platform", "run"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    click.echo(f"3. platform: faust worker started (pid {platform.pid}, log {log})")
    try:
        result = asyncio.run(ping(DEMO_HOLDER, within=90))
    except TimeoutError as exc:
        raise click.ClickException("the platform did not answer within 90 s") from exc
    finally:
        platform.terminate()
        platform.wait(30)
    click.echo(f"4. {DEMO_HOLDER} sent Ping {result.ping.request_id} "
               f"to {topics.outbox(DEMO_HOLDER)}; "
               f"the platform's agent answered Pong to {topics.inbox(DEMO_HOLDER)} "
               f"after {result.seconds * 1000:.0f} ms (including the worker's start)")
    if not keep:
        process.down()
    click.echo(f"done in {time.monotonic() - started:.1f}s"
               + ("; broker left running" if keep else "; broker stopped"))
