"""`renkei keys …`: the platform's key store."""

from __future__ import annotations

import click

from processors import keys


@click.group("keys")
def keys_cli() -> None:
    """The platform's ID-code and link-code keys (never printed)."""


@keys_cli.command()
def init() -> None:
    """Generate the master secrets into the state folder, once; never overwrite them."""
    path, created = keys.init()
    if created:
        click.echo(f"key store created at {path} (mode 0600)")
    else:
        click.echo(f"key store already exists at {path}; left unchanged")
