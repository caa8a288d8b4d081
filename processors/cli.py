"""`renkei platform run`: one instance of the platform's stream processors."""

from __future__ import annotations

import click

from broker import acls, cluster
from broker.clients import KafkaAccess
from renkei.state import private_dir


@click.group("platform")
def platform_cli() -> None:
    """The platform's stream processors (a faust consumer group)."""


@platform_cli.command()
@click.option("--instance", default="1", show_default=True,
              help="instance name; run several for more throughput")
@click.option("--loglevel", default="warning", show_default=True)
def run(instance: str, loglevel: str) -> None:
    """Run one platform instance until stopped."""
    import faust

    from processors.platform import build_app

    access = KafkaAccess.of(acls.PLATFORM)
    app = build_app(access, private_dir("platform", instance),
                    replication=min(3, cluster.load().size))
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
