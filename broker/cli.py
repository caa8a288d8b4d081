"""`renkei broker …`: fetch, start, stop, inspect and provision the Kafka broker."""

from __future__ import annotations

import time

import click

from broker import cluster as cluster_store
from broker import jars, process, provision


@click.group("broker")
def broker_cli() -> None:
    """The Kafka broker (KRaft, SASL/SCRAM, ACLs) on 127.0.0.1."""


@broker_cli.command()
def fetch() -> None:
    """Fetch the pinned Kafka jars from Maven Central (once; cached after)."""
    started = time.monotonic()
    libs, fetched_now = jars.fetch()
    verb = "fetched" if fetched_now else "already cached"
    click.echo(f"Kafka {jars.kafka_version()} {verb} in {libs} "
               f"({time.monotonic() - started:.1f}s)")


@broker_cli.command()
@click.option("--port", type=int, default=None,
              help=f"client (SASL/SCRAM) port [default {cluster_store.DEFAULT_CLIENT_PORT}]")
@click.option("--controller-port", type=int, default=None,
              help=f"KRaft controller port [default {cluster_store.DEFAULT_CONTROLLER_PORT}]")
@click.option("--nodes", type=int, default=1, show_default=True,
              help="combined broker+controller nodes (1 or 3)")
def up(port: int | None, controller_port: int | None, nodes: int) -> None:
    """Format (first time) and start the broker; wait until it accepts clients."""
    started = time.monotonic()
    try:
        cl, started_now = process.up(port, controller_port, nodes)
    except (process.BrokerError, jars.FetchFailed) as exc:
        raise click.ClickException(str(exc)) from exc
    if started_now:
        click.echo(f"broker up on {cl.bootstrap} (cluster {cl.cluster_id}, "
                   f"{cl.size} node(s)) in {time.monotonic() - started:.1f}s")
    else:
        click.echo(f"broker already running on {cl.bootstrap}")


@broker_cli.command()
def down() -> None:
    """Stop the broker cleanly; its data stays for the next `up`."""
    try:
        stopped = process.down()
    except cluster_store.NoCluster as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"stopped node(s) {stopped}" if stopped else "broker was not running")


@broker_cli.command()
def status() -> None:
    """Is the broker running, where, and as which process."""
    try:
        cl, states = process.status()
    except cluster_store.NoCluster as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"cluster {cl.cluster_id}, Kafka {jars.kafka_version()}")
    for state in states:
        where = f"client {state.node.client_address}, controller {state.node.controller_address}"
        what = f"running (pid {state.pid})" if state.running else "stopped"
        click.echo(f"  node {state.node.node_id}: {what}; {where}")
    if not all(s.running for s in states):
        raise SystemExit(3)


@broker_cli.command()
@click.option("-n", "--lines", type=int, default=40, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines")
@click.option("--node", type=int, default=1, show_default=True)
def logs(lines: int, follow: bool, node: int) -> None:
    """The broker's server log."""
    cl = cluster_store.load()
    chosen = next(n for n in cl.nodes if n.node_id == node)
    for line in process.tail_log(cl, chosen, lines):
        click.echo(line)
    if follow:
        for line in process.follow_log(cl, chosen):
            click.echo(line)


@broker_cli.command("provision")
def provision_cmd() -> None:
    """Apply the topic spec, service principals and ACLs (idempotent)."""
    report = provision.provision()
    for line in report.lines():
        click.echo(line)


@broker_cli.command("add-holder")
@click.argument("holder")
def add_holder(holder: str) -> None:
    """Create a holder's principal, credentials, inbox/outbox topics and ACLs."""
    report = provision.Report()
    try:
        creds = provision.add_holder(provision.admin_client(), holder, report)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"holder {holder}: principal User:{creds.username}, credentials in the state "
               "folder (secrets/)")
    for line in report.lines():
        click.echo(f"  {line}")
