"""The `renkei` command."""

from __future__ import annotations

import click

from broker.cli import broker_cli


@click.group()
def main() -> None:
    """Renkei: the information-linkage platform on Apache Kafka."""


main.add_command(broker_cli)
