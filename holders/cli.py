"""`renkei holder …`: register a holder, run its communication server."""

from __future__ import annotations

import asyncio

import click

from broker import provision
from processors import directory


@click.group("holder")
def holder_cli() -> None:
    """Holders: registration and the communication server."""


@holder_cli.command()
@click.argument("holder")
@click.option("--name", required=True, help="the holder's name, e.g. 桜町役場")
@click.option("--role", required=True, help="its role in the legal pattern list")
@click.option("--unit", default=None, help="a shared link-code unit (default: its own)")
@click.option("--private", is_flag=True, help="a private holder: binding needs consent")
def register(holder: str, name: str, role: str, unit: str | None, private: bool) -> None:
    """Register a holder: principal, topics, ACLs, sealing key and directory entry."""
    try:
        provision.add_holder(provision.reached_admin(), holder, provision.Report())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    epoch = directory.unit_epoch(asyncio.run(directory.current()), unit or holder)
    entry = directory.holder_entry(holder, name, role, unit, private, epoch)
    asyncio.run(directory.publish([entry]))
    click.echo(f"registered {holder} ({name}): role {role}, link-code unit {entry.link_unit} "
               f"at key epoch {epoch}" + (", private (consent needed)" if private else ""))


@holder_cli.command()
@click.argument("holder")
@click.option("--port", type=int, default=0, show_default=True,
              help="loopback port of its HTTP API (0: any free port)")
def run(holder: str, port: int) -> None:
    """Run a holder's communication server until stopped; its URL and bearer token go to
    server.json in the holder's private state folder."""
    from holders.server import main

    main(holder, port)
