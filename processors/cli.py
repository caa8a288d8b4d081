"""`renkei platform run`, `renkei patterns …`, `renkei directory …`: the platform's side."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from broker import acls, config, topics
from broker.clients import KafkaAccess
from processors import directory, patterns
from renkei import logs
from renkei.listed import echo_listed
from renkei.options import LOGLEVEL, OPERATOR_OPTION, POSITIVE, REASON_OPTION, SaidDefault


@click.group("platform", short_help="The platform's stream processors (one consumer group).")
def platform_cli() -> None:
    """The platform's stream processors (one consumer group; run more instances to scale)."""


@platform_cli.command()
# a container's host name is its id: the replicas of compose's `--scale platform=N`, run by
# one command line, were each logged as "platform 1" when that was the default (the name looked
# up at each parse, not bound once)
@click.option("--instance", cls=SaidDefault, default=lambda: socket.gethostname(),
              show_default="this host's name, a container's own",
              help="instance name (for its log); run several for more throughput")
@click.option("--answer-timeout", type=POSITIVE, default=30.0, show_default=True,
              help="seconds a provider has to answer before the requester gets a timeout")
@click.option("--member", default=None,
              help="a static group member id, unique among running instances: restarted with "
                   "it, an instance takes its partitions back at once, without a rebalance")
@LOGLEVEL
def run(instance: str, answer_timeout: float, member: str | None, loglevel: str) -> None:
    """Run one platform instance until stopped (SIGTERM/SIGINT)."""
    from processors.platform import Platform
    from renkei import event_loop
    from renkei.service_loop import said_when_up, stop_on_signals

    logs.for_service(loglevel.upper(), f"platform {instance}")
    access = KafkaAccess.of(acls.PLATFORM)

    async def main(ready: asyncio.Event) -> None:
        platform = Platform(access, timedelta(seconds=answer_timeout), member)
        await platform.run(stop_on_signals(), ready)

    event_loop.run(said_when_up(main, f"platform {instance} up on the broker at "
                                      f"{access.bootstrap}: the holders' linkage requests, each "
                                      f"answered or timed out within {answer_timeout:g} s"))


@click.group("patterns")
def patterns_cli() -> None:
    """The legal pattern list."""


@patterns_cli.command("publish",
                      short_help="Publish the legal pattern list (FILE, else the sample).")
@click.argument("file", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("--new-only", is_flag=True,
              help="only the versions not on the list at all, those on it kept as they are (a "
                   "set-up run again: compose's provision)")
@REASON_OPTION
@OPERATOR_OPTION
def publish_patterns(file: Path | None, new_only: bool, reason: str | None,
                     operator: str) -> None:
    """Publish the pattern list in FILE, if given, else the sample modelled on the law's
    annexed table (processors/legal_patterns.toml); the versions it changes are logged as the
    operator's PUBLISH. The file is the whole list: one leaving out a version on it is refused
    (a version is withdrawn by its valid_to), unless --new-only."""
    versions = patterns.load(file or patterns.SAMPLE)
    chosen = patterns.not_listed if new_only else patterns.to_publish
    published = len(asyncio.run(directory.publish_patterns(versions, operator, reason, chosen)))
    already = f"{len(versions) - published} already published"
    click.echo(f"published {published} pattern versions to the legal pattern list ({already})"
               if published else f"{already}: the legal pattern list is unchanged")


@patterns_cli.command("list", short_help="The legal pattern list: in force now, or --all.")
@click.option("--all", "every", is_flag=True,
              help="every version on the list, withdrawn and not yet in force among them")
def list_patterns(every: bool) -> None:
    """The pattern versions in force now (of each pattern, the one approval judges by), or
    --all versions: id, version, requester → provider, data types, validity, and when it was
    published as it stands (its record's broker time)."""
    from broker.clients import read_topic
    from processors import pattern_list

    listed = pattern_list.published(asyncio.run(read_topic(KafkaAccess.of(config.ADMIN),
                                                           topics.PATTERNS)))
    shown = listed if every else pattern_list.in_force(listed, datetime.now(UTC))
    echo_listed((pattern_list.line(at, p) for at, p in shown),
                "no pattern versions on the list" if every else "no pattern version in force")


@click.group("directory")
def directory_cli() -> None:
    """The holder directory."""


@directory_cli.command("publish-services", short_help="Publish the services' public sealing keys.")
def publish_services() -> None:
    """Publish the public sealing keys of the platform, registry, authority, oversight body and
    portal."""
    entries = directory.service_entries()
    asyncio.run(directory.publish(entries))
    click.echo(f"published {', '.join(e.holder_id for e in entries)}")
