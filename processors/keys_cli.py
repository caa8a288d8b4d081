"""`renkei keys …`: the platform's key store."""

from __future__ import annotations

import asyncio

import click

from audit import heads
from processors import directory, keys
from registry import tickets
from renkei.options import OPERATOR_OPTION, REASON_OPTION, reason_said


def unit_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A link-code unit option or argument: a name the platform can use, else a usage error."""
    try:
        return None if value is None else keys.check_unit(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group("keys")
def keys_cli() -> None:
    """The platform's ID-code and link-code keys (never printed)."""


@keys_cli.command(short_help="Generate the master secrets into the state folder, once.")
def init() -> None:
    """Generate the master secrets into the state folder, once; never overwrite them. The audit
    log's head key a state folder from before kept beside the store (audit/) is moved apart
    from it: compose.yaml's provision runs this before My Portal, which mounts audit/, starts."""
    created = [*keys.init(), *tickets.init()]
    for path in created:
        click.echo(f"created {path} (mode {path.stat().st_mode & 0o777:04o})")
    if keys.store_path() not in created:
        click.echo(f"key store already exists at {keys.store_path()}; left unchanged")
    head_key = heads.private_key_path()
    if head_key.exists():
        click.echo(f"the audit log's head key is at {head_key}; beside its store, its public "
                   f"half alone ({heads.key_path()})")


@keys_cli.command(short_help="Move a link-code unit to its next key epoch (old codes refused).")
@click.argument("unit", callback=unit_name)
@REASON_OPTION
@OPERATOR_OPTION
def rekey(unit: str, reason: str | None, operator: str) -> None:
    """Move a link-code unit to its next key epoch: its old codes are refused from then on; the
    unit's holders re-key their bindings by themselves within seconds; the audit log says who
    did it (and why, if told)."""
    try:
        entries = asyncio.run(directory.rekey_unit(unit, operator, reason))
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"link-code unit {unit!r} is at key epoch {entries[0].key_epoch}; its holders "
               "re-key their bindings by themselves: "
               + ", ".join(sorted(e.holder_id for e in entries)) + reason_said(reason))
