"""`renkei broker …`: fetch, start, stop, inspect and provision the Kafka broker."""

from __future__ import annotations

import time
from pathlib import Path

import click

from broker import cluster as cluster_store
from broker import config, credentials, jars, process, provision
from renkei.options import SaidDefault
from renkei.state import kept_aside, state_dir, write_private


@click.group("broker")
def broker_cli() -> None:
    """The Kafka broker (KRaft, SASL/SCRAM, ACLs) on 127.0.0.1."""


@broker_cli.command(short_help="Fetch the pinned Kafka jars from Maven Central (once).")
def fetch() -> None:
    """Fetch the pinned Kafka jars from Maven Central (once; cached after), and archive their
    classes for this machine's JVM (once: a broker then starts on about half the CPU)."""
    started = time.monotonic()
    libs, fetched_now = jars.fetch()
    verb = "fetched" if fetched_now else "already cached"
    click.echo(f"Kafka {jars.kafka_version()} {verb} in {libs} "
               f"({time.monotonic() - started:.1f}s)")
    started = time.monotonic()
    try:
        archive = process.archive_classes()
    except (process.BrokerError, OSError) as exc:
        click.echo(f"warning: Kafka's classes not archived for the JVM ({exc}): brokers start "
                   "without it, on more CPU", err=True)
        return
    if archive is not None:
        click.echo(f"Kafka's classes archived for the JVM in {archive} "
                   f"({time.monotonic() - started:.1f}s)")


@broker_cli.command(short_help="Start the broker (formatted the first time) and wait for it.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, cls=SaidDefault,
              show_default=str(cluster_store.DEFAULT_CLIENT_PORT),
              help="client (SASL/SCRAM) port, kept for the cluster's restarts (so not 0, any "
                   "free one)")
@click.option("--controller-port", type=click.IntRange(1, 65535), default=None, cls=SaidDefault,
              show_default=str(cluster_store.DEFAULT_CONTROLLER_PORT),
              help="KRaft controller port")
@click.option("--nodes", type=click.Choice([1, 3]), default=1, show_default=True,
              help="combined broker+controller nodes")
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
    _provisioned_again()


def _provisioned_again() -> None:
    """A broker provisioned before brought to this code's spec (an upgrade's new grants and
    topic configs), as `broker provision` would: `up` leaves it as the code needs it."""
    began = time.monotonic()
    report = provision.provisioned_again()
    if report is not None:
        click.echo(f"provisioned again to this version's spec in {time.monotonic() - began:.1f}s")
        for line in report.lines():
            click.echo(f"  {line}")


@broker_cli.command()
def down() -> None:
    """Stop the broker cleanly; its data stays for the next `up`. None running (none ever set
    up in this state folder, or stopped already) is no error: there is nothing to stop."""
    try:
        stopped = process.down()
    except cluster_store.NoCluster:
        stopped = []
    click.echo(f"stopped node(s) {stopped}" if stopped else "broker was not running")


@broker_cli.command()
def status() -> None:
    """Is the broker running, where, and as which process."""
    try:
        cl, states = process.status()
    except cluster_store.NoCluster as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"cluster {cl.cluster_id}, Kafka {jars.kafka_version()}")
    leader = process.quorum(cl).leader
    for state in states:
        where = f"client {state.node.client_address}, controller {state.node.controller_address}"
        what = f"running (pid {state.pid})" if state.running else "stopped"
        role = " [metadata quorum leader]" if state.node.node_id == leader else ""
        click.echo(f"  node {state.node.node_id}: {what}; {where}{role}")
        if not state.running:
            click.echo(f"    {_stopped_why(cl, state.node)}")
    if leader is None and any(s.running for s in states):
        click.echo("  the metadata quorum has no leader (an election is under way, or too few "
                   "nodes run)")
    if not all(s.running for s in states):
        raise SystemExit(3)


UNSAID = "its log does not say (killed, perhaps: `renkei broker logs` shows its end)"


def _stopped_why(cl: cluster_store.Cluster, node: cluster_store.Node) -> str:
    """Why a stopped node stopped, where its log says (process.why_stopped)."""
    why = process.stopped_why(cl, node)
    return f"why: {why or UNSAID}"


@broker_cli.command()
@click.option("-n", "--lines", type=click.IntRange(min=0), default=40, show_default=True,
              help="last lines printed")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines")
@click.option("--node", type=int, default=1, show_default=True,
              help="the cluster's node whose log it is")
def logs(lines: int, follow: bool, node: int) -> None:
    """The broker's server log."""
    cl = cluster_store.load()
    try:
        chosen = process.node_of(cl, node)
    except process.BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in process.tail_log(cl, chosen, lines):
        click.echo(line)
    if follow:
        for line in process.follow_log(cl, chosen):
            click.echo(line)


@broker_cli.command(short_help="Stop one node of the cluster (chaos): cleanly or --hard.")
@click.argument("node", type=int)
@click.option("--hard", is_flag=True, help="SIGKILL, as a crash would (else a clean stop)")
def kill(node: int, hard: bool) -> None:
    """Stop one node of the cluster (chaos): cleanly, or with --hard, without warning."""
    try:
        stopped = process.stop_node(node, hard)
    except (cluster_store.NoCluster, process.BrokerError) as exc:
        raise click.ClickException(str(exc)) from exc
    how = "killed (SIGKILL)" if hard else "stopped cleanly"
    click.echo(f"node {node} {how}" if stopped else f"node {node} was not running")


@broker_cli.command()
@click.argument("node", type=int)
def start(node: int) -> None:
    """Start one stopped node again; wait until the cluster is whole."""
    began = time.monotonic()
    try:
        started = process.start_node(node)
    except (cluster_store.NoCluster, process.BrokerError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"node {node} started; cluster whole in {time.monotonic() - began:.1f}s"
               if started else f"node {node} was running already")


ENV_HEADER = "# written by `renkei broker secrets`: never commit this file\n"


@broker_cli.command(short_help="Write a compose.yaml deployment's secrets to an env file.")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path(".env"), show_default=True, help="in the current folder by default")
@click.option("--force", is_flag=True,
              help="replace an env file this command did not write (kept beside it as "
                   "<name>.<time>.bak)")
def secrets(env_file: Path, force: bool) -> None:
    """The secrets of a compose.yaml deployment, written to an env file (mode 600, git-ignored;
    never commit it): a cluster id, the admin's and the controllers' passwords (kept in the
    state folder's secrets/, which the Renkei containers mount as /state), the state folder.
    One it wrote before is written again, its cluster id kept; another is not replaced unless
    --force, and then kept beside it (mode 600). The passwords are never printed."""
    existing, aside = _env_values(env_file, force)
    admin = credentials.issue(config.ADMIN)
    controller = credentials.issue(config.CONTROLLER)
    values = {
        "CLUSTER_ID": existing.get("CLUSTER_ID") or cluster_store.new_cluster_id(),
        "ADMIN_PASSWORD": admin.password,
        "CONTROLLER_PASSWORD": controller.password,
        "RENKEI_STATE_DIR": str(state_dir().resolve()),
    }
    write_private(env_file, ENV_HEADER
                  + "".join(f"{key}={value}\n" for key, value in values.items()))
    state = values["RENKEI_STATE_DIR"]
    click.echo(f"{'rewrote' if existing else 'wrote'} {env_file.resolve()} (mode 600; never "
               f"commit it): CLUSTER_ID={values['CLUSTER_ID']}, ADMIN_PASSWORD, "
               f"CONTROLLER_PASSWORD, RENKEI_STATE_DIR={state} (passwords kept in "
               f"{state}/secrets)")
    if aside:
        click.echo(f"the file it replaced, not written by `renkei broker secrets`, is kept as "
                   f"{aside.resolve()} (mode 600; never commit it)")


def _env_values(env_file: Path, force: bool) -> tuple[dict[str, str], Path | None]:
    """The values of `env_file` ({} where there is none), and where it is one `secrets` did not
    write, the copy of it kept aside (--force); a ClickException for such a one unless
    `force`."""
    if not env_file.exists():
        return {}, None
    text = env_file.read_text(encoding="utf-8", errors="replace")
    aside = None
    if text and not text.startswith(ENV_HEADER):
        if not force:
            raise click.ClickException(f"{env_file.resolve()} was not written by `renkei broker "
                                       "secrets`: left as it is (--force replaces it, keeping it "
                                       "beside it)")
        aside = kept_aside(env_file)
    pairs = (line.partition("=") for line in text.splitlines())
    return {key.strip(): value.strip() for key, sep, value in pairs
            if sep and not key.startswith("#")}, aside


@broker_cli.command("provision",
                    short_help="Apply the topic spec, principals and ACLs (idempotent).")
@click.option("--brokers", type=click.IntRange(min=1), default=None,
              help="first wait until this many brokers are up (a deployment's size)")
def provision_cmd(brokers: int | None) -> None:
    """Apply the topic spec, service principals and ACLs (idempotent)."""
    report = provision.provision(brokers)
    for line in report.lines():
        click.echo(line)


@broker_cli.command("add-holder",
                    short_help="Create a holder's principal, credentials, topics and ACLs.")
@click.argument("holder")
def add_holder(holder: str) -> None:
    """Create a holder's principal, credentials, inbox/outbox topics and ACLs."""
    report = provision.Report()
    try:
        creds = provision.add_holder(provision.reached_admin(), holder, report)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"holder {holder}: principal User:{creds.username}, credentials in the state "
               "folder (secrets/)")
    for line in report.lines():
        click.echo(f"  {line}")
