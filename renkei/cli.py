"""The `renkei` command."""

from __future__ import annotations

import errno
import importlib
import signal
import sys
from functools import cache
from typing import Any

import click

from renkei import logs, profiling
from renkei.state import state_tightened

# Each command's group or command ("module:name"), imported only when it is named (or listed by
# --help): a process started for one command does not import every other's libraries.
COMMANDS = {
    "audit": "audit.cli:audit_cli", "authority": "authority.cli:authority_cli",
    "bench": "renkei.bench:bench", "broker": "broker.cli:broker_cli", "card": "cards.cli:card_cli",
    "chaos": "renkei.chaos_cli:chaos_cli", "demo": "renkei.demo:demo",
    "directory": "processors.cli:directory_cli", "holder": "holders.cli:holder_cli",
    "keys": "processors.keys_cli:keys_cli", "oversight": "audit.oversight_cli:oversight_cli",
    "patterns": "processors.cli:patterns_cli", "platform": "processors.cli:platform_cli",
    "portal": "portal.cli:portal_cli", "registry": "registry.cli:registry_cli",
}
# The exit code of a command Ctrl-C ended (128+SIGINT), which a script tells from a failure's 1
INTERRUPTED = 128 + signal.SIGINT
# A group's long-running command (`serve` of the registry and the authority, which import their
# groups; the CAs' `card crl`, which imports the service loop), added to its group here
SERVE = {"registry": "registry.serve:serve", "authority": "authority.serve:serve",
         "card": "cards.crl:crl"}


def _imported(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


class Named(click.Group):
    """A group whose commands, each named by its "module:name" in `named`, are imported only
    when one is named (or listed by --help)."""

    def __init__(self, *args: Any, named: dict[str, str], **attrs: Any) -> None:
        super().__init__(*args, **attrs)
        self.named = named

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.named)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.imported(cmd_name) if cmd_name in self.named else None

    def imported(self, name: str) -> click.Command:
        command: click.Command = _imported(self.named[name])
        return command


@cache
def _command(name: str) -> click.Command:
    command: click.Command = _imported(COMMANDS[name])
    if name in SERVE:
        assert isinstance(command, click.Group)
        command.add_command(_imported(SERVE[name]))
    return command


def _said(exc: Exception) -> str | None:
    """The one line said for an error of the kinds below, None for any other (their modules
    imported only once a command has failed)."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    from audit.heads import NoKey
    from audit.sql import NoStore
    from audit.store import ForgedNote, LostEntries
    from broker import cluster, jars, process
    from broker.clients import BrokerAway, BrokerRefused, NotProvisioned
    from broker.credentials import UnknownPrincipal
    from broker.membership import Fenced
    from broker.presence import BrokerGone
    from broker.provision import NotAHolder, ProvisioningFailed
    from holders.client import EpochsNotFollowed, RenewalNotTaken
    from processors.directory import (
        ActionFenced,
        NotAPrivateHolder,
        NotSuspendable,
        ReservedRole,
        UnitMove,
        UnitTaken,
    )
    from processors.keys import KeysMissing
    from processors.patterns import BadPatternFile
    from registry.store import NoRegistry, RegistryExists
    from registry.tickets import NoLoginKey
    from renkei.compacted import NotFollowing
    from renkei.sealing import BadSealingKey
    from renkei.state import InUse, NotPrivate
    from schemas.codec import NewerVersion

    said = (cluster.NoCluster, BrokerAway, BrokerRefused, NotFollowing, InUse, NotPrivate,
            RegistryExists, NoRegistry, NotAHolder, NotAPrivateHolder, UnitMove, KeysMissing,
            NoStore, NoKey, NoLoginKey, BadPatternFile, LostEntries, ForgedNote,
            UnknownPrincipal, NotProvisioned, BadSealingKey, UnitTaken, ReservedRole,
            ProvisioningFailed, jars.FetchFailed, process.BrokerError, NotSuspendable,
            ActionFenced, NewerVersion, Fenced, BrokerGone, RenewalNotTaken,
            EpochsNotFollowed)
    if isinstance(exc, said):
        return str(exc)
    if isinstance(exc, KafkaConnectionError):  # a client of a command: it does not wait
        return str(BrokerAway(cluster.bootstrap()))
    if isinstance(exc, KafkaTimeoutError):  # the broker gone while the command waited for it
        return (f"the broker at {cluster.bootstrap()} did not answer in time ({exc}): is it "
                "running? (`renkei broker status` says why not)")
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"port in use: {exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.filename is not None:  # a file or folder not made
        return f"{exc.strerror or exc}: {exc.filename}"
    return None


class _Commands(Named):
    """The commands; Kafka's jars not fetched (no Maven, or Maven failing), a broker that
    cannot be started or stopped, a broker not set up, away, refusing the log-in or never
    provisioned, a provisioning the broker refused or did not enforce in time, a principal without
    credentials, a view no longer followed, a state folder another run holds, a private folder
    another user's that others may read, a registry missing or not to be
    replaced, a holder id not registered, a consent to one not a private holder, a registered
    holder moved to another link-code unit unasked, a holder put into a unit others are in
    unasked or under the services' role, a holder to suspend or resume not in the directory or
    already so, no key store, an audit store that cannot be opened or
    that lost entries the audit consumer appended, an audit consumer's commit note the head key
    did not sign, a bad pattern file, a sealing key damaged or not the directory's (a holder's
    server unable to take its keys renewed among them), a holder's server no longer following
    its unit's key epochs, a service
    meeting a message a newer version of Renkei wrote on a topic of its own, an instance whose
    static group member id another one took, a port in use or a file
    or folder that cannot be made or read (named) is said in one line (no traceback), exit
    code 1. A command Ctrl-C interrupts (at a prompt too) ends with click's "Aborted!",
    exit code 130 (a server that stops on SIGINT stops as it does), as does one on the holder
    directory SIGTERM stops (service_loop.terminated_as_interrupted)."""

    def imported(self, name: str) -> click.Command:
        return _command(name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            click.echo(err=True)  # closes the terminal's ^C echo, as click does
            raise _interrupted() from exc
        except click.Abort as exc:  # a prompt's: interrupted, or its stdin ended (exit code 1)
            if isinstance(exc.__context__, KeyboardInterrupt):
                raise _interrupted() from exc
            raise
        except (click.ClickException, click.exceptions.Exit):
            raise
        except Exception as exc:
            if (said := _said(exc)) is None:
                raise
            raise click.ClickException(said) from exc


def _interrupted() -> click.exceptions.Exit:
    """Ctrl-C's end: click's "Aborted!", exit code INTERRUPTED (not click's 1)."""
    click.echo("Aborted!", err=True)
    return click.exceptions.Exit(INTERRUPTED)


@click.group(cls=_Commands, named=COMMANDS)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Renkei: the information-linkage platform on Apache Kafka."""
    logs.for_commands()
    state_tightened()  # one made readable by others before: its logs name holders and requests
    words = [word for word in sys.argv[1:3] if not word.startswith("-")]
    _import(ctx, words)
    ctx.with_resource(profiling.profiled("-".join(words) or "renkei"))


def _import(ctx: click.Context, words: list[str]) -> None:
    """Import the command `words` name, a group's (`bench holder`) too, before its profile
    starts: it profiles the command's run, not its imports."""
    command: click.Command | None = ctx.command
    for word in words:
        if not isinstance(command, click.Group):
            return
        command = command.get_command(ctx, word)
