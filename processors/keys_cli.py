"""`renkei keys …`: the platform's key store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import click
from confluent_kafka import KafkaException

from audit import heads
from holders.client import HolderClient
from processors import directory, keys
from registry import tickets
from renkei import groups
from renkei.options import OPERATOR_OPTION, REASON_OPTION, reason_said

# what a holder of a unit just re-keyed does about it, its server running now or not (None: the
# broker could not say)
RUNNING = {True: "running now; it re-keys its bindings within seconds",
           False: "not running now; it re-keys its bindings when it starts",
           None: "not known whether running now (the broker could not say); if not, it re-keys "
                 "its bindings when it starts"}


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
    unit's holders re-key their bindings by themselves, within seconds those whose communication
    server is running, the others when it starts (each said); the audit log says who did it
    (and why, if told)."""
    try:
        entries = asyncio.run(directory.rekey_unit(unit, operator, reason))
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"link-code unit {unit!r} is at key epoch {entries[0].key_epoch}; its holders "
               "re-key their bindings by themselves" + reason_said(reason))
    for line in rekeying_holders(sorted(e.holder_id for e in entries)):
        click.echo(f"  {line}")


def rekeying_holders(holders: Sequence[str]) -> list[str]:
    """What each of these holders, of a unit just re-keyed, does about it, one line each: one
    whose communication server is running now (its inbox's consumer group has members, as the
    broker says) re-keys its bindings within seconds, one not running when it starts; not
    known if the broker cannot say (the re-keying is done all the same)."""
    inboxes = {holder: HolderClient.inbox_group(holder) for holder in holders}
    try:
        running = groups.with_members(groups.admin(), list(inboxes.values()))
    except KafkaException:
        running = {}
    return [f"{holder}: {RUNNING[running.get(inbox)]}" for holder, inbox in inboxes.items()]
