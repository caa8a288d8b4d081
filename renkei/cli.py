"""The `renkei` command."""

from __future__ import annotations

import click

from broker.cli import broker_cli
from processors.cli import platform_cli
from renkei.demo import demo


@click.group()
def main() -> None:
    """Renkei: the information-linkage platform on Apache Kafka."""


main.add_command(broker_cli)
main.add_command(platform_cli)
main.add_command(demo)
