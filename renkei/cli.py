"""The `renkei` command."""

from __future__ import annotations

import errno
import sys
from typing import Any

import click
from aiokafka.errors import KafkaConnectionError

from audit.cli import audit_cli
from audit.heads import NoKey
from audit.oversight_cli import oversight_cli
from audit.sql import NoStore
from authority.cli import authority_cli
from authority.serve import serve as authority_serve
from broker import cluster
from broker.cli import broker_cli
from broker.clients import BrokerAway, BrokerRefused
from broker.provision import NotAHolder
from cards.cli import card_cli
from holders.cli import holder_cli
from portal.cli import portal_cli
from processors.cli import directory_cli, patterns_cli, platform_cli
from processors.directory import NotAPrivateHolder, UnitMove
from processors.keys import KeysMissing
from processors.keys_cli import keys_cli
from processors.patterns import BadPatternFile
from registry.cli import registry_cli
from registry.serve import serve as registry_serve
from registry.store import NoRegistry, RegistryExists
from registry.tickets import NoLoginKey
from renkei import profiling
from renkei.bench import bench
from renkei.chaos_cli import chaos_cli
from renkei.compacted import NotFollowing
from renkei.demo import demo
from renkei.state import InUse, NotPrivate

# Said as they are: each message names what is missing or wrong and what to do.
SAID = (cluster.NoCluster, BrokerAway, BrokerRefused, NotFollowing, InUse, NotPrivate,
        RegistryExists, NoRegistry, NotAHolder, NotAPrivateHolder, UnitMove, KeysMissing, NoStore,
        NoKey, NoLoginKey, BadPatternFile)


class _Commands(click.Group):
    """The commands; a broker not set up, away or refusing the log-in, a view no longer followed,
    a state folder another run holds, a private folder another user's that others may read, a
    registry missing or not to be replaced, a holder id not registered, a consent to one not a
    private holder, a registered holder moved to another link-code unit unasked, no key store,
    an audit store that cannot be opened, a bad pattern file or a port in use is said in one
    line (no traceback), exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SAID as exc:
            raise click.ClickException(str(exc)) from exc
        except KafkaConnectionError as exc:  # a client of a command: it does not wait
            raise click.ClickException(str(BrokerAway(cluster.bootstrap()))) from exc
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise click.ClickException(f"port in use: {exc.strerror or exc}") from exc


@click.group(cls=_Commands)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Renkei: the information-linkage platform on Apache Kafka."""
    command = [word for word in sys.argv[1:3] if not word.startswith("-")]
    ctx.with_resource(profiling.profiled("-".join(command) or "renkei"))


main.add_command(broker_cli)
main.add_command(platform_cli)
main.add_command(demo)
main.add_command(audit_cli)
main.add_command(oversight_cli)
main.add_command(bench)
main.add_command(keys_cli)
main.add_command(registry_cli)
registry_cli.add_command(registry_serve)
authority_cli.add_command(authority_serve)
main.add_command(authority_cli)
main.add_command(holder_cli)
main.add_command(patterns_cli)
main.add_command(directory_cli)
main.add_command(card_cli)
main.add_command(portal_cli)
main.add_command(chaos_cli)
