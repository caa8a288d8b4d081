"""`renkei demo`: the main job: a town on the platform, its holders bind and exchange; a summary."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import Counter
from collections.abc import Awaitable

import click

from audit.events import ANSWER, AccessLogEvent
from audit.topic import read_events
from broker import config, presence, process
from broker.clients import KafkaAccess
from holders.client import HolderClient
from holders.samples import SAMPLES
from renkei import logs, scenario, town
from renkei.exchanges import LAWFUL, UNLAWFUL, Exchange
from renkei.options import residents_option, seed_option
from renkei.scenario import Run
from renkei.state import state_dir
from renkei.tasks import beside, cancelled

AWAY_SECONDS = 60.0  # the broker away this long on end, the demo says so and stops


def _log_to_file() -> None:
    """The demo's own holders log as their servers would, into logs/demo.log beside the
    processes' logs (begun afresh each run as theirs are, the run before's kept as demo.log.1),
    not between the summary's lines; an error of Renkei's own is said on stderr as well, not the
    libraries' (a broker gone: aiokafka's, the demo's own line says it), which its log keeps."""
    log = town.log_path("demo")
    logs.begun(log)
    to_file = logging.FileHandler(log, encoding="utf-8")
    to_stderr = logging.StreamHandler()
    to_stderr.setLevel(logging.ERROR)
    to_stderr.addFilter(logs.own_line)
    logging.basicConfig(level=logging.WARNING, format=logs.FORMAT, handlers=[to_file, to_stderr])


def _title(text: str) -> None:
    click.echo(f"\n== {text}")


def _binding_table(clients: dict[str, HolderClient], seconds: float) -> None:
    total = Counter[str]()
    for sample in SAMPLES:
        counts = clients[sample.holder_id].store.counts()
        total.update({"BOUND": counts.get("BOUND", 0),
                      "INVESTIGATING": counts.get("INVESTIGATING", 0)})
        by = "personal number" if sample.knows_numbers else "4 attributes"
        click.echo(f"  {sample.holder_id:16} {sample.name:22} by {by:15} "
                   f"bound {counts.get('BOUND', 0):4}  to investigation "
                   f"{counts.get('INVESTIGATING', 0):3}")
    reasons = Counter(reason.split(":")[0].split(" differ")[0]
                      for client in clients.values()
                      for _, reason in client.store.investigations())
    click.echo(f"  {total['BOUND']} records bound, {total['INVESTIGATING']} sent to "
               f"investigation in {seconds:.1f}s; why: "
               + "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common(4)))


def _exchange_table(run: Run) -> None:
    by_exchange: dict[Exchange, Counter[str]] = {}
    for exchange, outcome, _ in run.done:
        by_exchange.setdefault(exchange, Counter())[outcome.status] += 1
    for exchange in LAWFUL + UNLAWFUL:
        counts = by_exchange.get(exchange, Counter())
        lawful = "lawful  " if exchange in LAWFUL else "UNLAWFUL"
        click.echo(f"  {lawful} {exchange.requester:15} → {exchange.provider:15} "
                   f"{exchange.pattern:5} {exchange.data_type:21} "
                   + ", ".join(f"{status} {n}" for status, n in counts.most_common()))
    rejected = [(e, o) for e, o, _ in run.done if o.status == "REJECTED"]
    click.echo("  rejections, with the platform's reason:")
    for reason, n in Counter((o.detail or "").split(":")[0] for _, o in rejected).items():
        example = next(o.detail for _, o in rejected if (o.detail or "").startswith(reason))
        click.echo(f"    {reason:24} ×{n}  e.g. “{example}”")
    for _, why in run.refused_locally:
        click.echo(f"    refused at the holder itself: {why}")


def _step_by_step(run: Run, clients: dict[str, HolderClient],
                  events: dict[str, list[AccessLogEvent]]) -> None:
    shown: set[Exchange] = set()
    for exchange, outcome, seconds in run.done:
        if outcome.status not in ("FOUND", "REJECTED") or exchange in shown or len(shown) == 3:
            continue
        shown.add(exchange)
        requester, request_id = clients[exchange.requester], outcome.request_id
        click.echo(f"\n  request …{request_id[-8:]} {exchange.requester} → {exchange.provider} "
                   f"({exchange.pattern}, {exchange.data_type}), {seconds * 1000:.0f} ms")
        click.echo(f"   ① {exchange.requester}: own number {outcome.own_number}, link code "
                   f"{requester.store.link_code(outcome.own_number)}, staff {outcome.operator} "
                   f"on {outcome.terminal}, purpose “{outcome.purpose}”")
        logged = events.get(request_id, [])
        _platform_log("②", [e for e in logged if e.kind != ANSWER])
        provider_log = clients[exchange.provider].store.access_log(request_id)
        for entry in provider_log:
            click.echo(f"   ③ {exchange.provider}: answered {entry.outcome} as {entry.operator} "
                       f"on {entry.terminal}, sealed to {exchange.requester}")
        _platform_log("④", [e for e in logged if e.kind == ANSWER])
        click.echo(f"   ④ {exchange.requester} received: {outcome.status} "
                   + (str(outcome.result) if outcome.result else outcome.detail or ""))


def _platform_log(label: str, logged: list[AccessLogEvent]) -> None:
    """The platform's access-log events of one step of a request (② approval, ④ answer)."""
    for event in logged:
        click.echo(f"   {label} platform log: {event.kind} {event.outcome}"
                   + (f" ({event.reason})" if event.reason else "")
                   + (f" under {event.pattern_id}: {event.legal_basis}"
                      if event.legal_basis else "")
                   + f"; person = ID code {event.person}")


def _figures(run: Run) -> None:
    lawful = [s for e, o, s in run.done if e in LAWFUL and o.status == "FOUND"]
    ms = sorted(s * 1000 for s in lawful)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    click.echo(f"  {len(run.done)} requests in {run.seconds:.1f}s = "
               f"{len(run.done) / run.seconds:.0f} round trips/s (64 in flight); "
               f"lawful answered: p50 {statistics.median(ms):.0f} ms, p99 {p99:.0f} ms")


async def _rekeying(clients: dict[str, HolderClient], built: town.Town, unit: str) -> None:
    bound = {holder: len(client.store.bindings()) for holder, client in clients.items()}
    epoch, members, seconds = await scenario.rekey_unit(clients, unit)
    click.echo(f"  the operator moved unit {unit!r} to key epoch {epoch} (`renkei keys rekey "
               f"{unit}`); its holders re-keyed by themselves, {seconds:.1f}s from the command: "
               + ", ".join(f"{m} {bound[m]} link codes" for m in members))
    for exchange in LAWFUL:
        if {exchange.requester, exchange.provider} & set(members):
            own = scenario.people(clients[exchange.requester], built, exchange)[0]
            outcome = await scenario.round_trip(clients[exchange.requester], exchange, own, 30)
            click.echo(f"  then {exchange.requester} → {exchange.provider} "
                       f"({exchange.pattern}, {exchange.data_type}): {outcome.status}")


async def _exercise(built: town.Town) -> None:
    async with scenario.started_clients() as clients:
        _title("Binding (紐付け): four attributes or personal number, exact match only")
        _binding_table(clients, await scenario.bind_all(clients))
        _title("Linkage (情報連携): lawful exchanges and a few unlawful ones")
        run = await scenario.run(clients, built)
        _exchange_table(run)
        _title("Three exchanges step by step (paper §5(4) ①–④)")
        events: dict[str, list[AccessLogEvent]] = {}
        for event in await read_events(KafkaAccess.of(config.ADMIN)):
            events.setdefault(event.request_id, []).append(event)
        _step_by_step(run, clients, events)
        _title("Re-keying (鍵の更新): a link-code unit moves to a new key epoch")
        await _rekeying(clients, built, "medical")
        _title("Figures (a first measurement; `renkei bench linkage` is the benchmark)")
        _figures(run)
        click.echo(f"  access-log events on renkei.audit: {sum(map(len, events.values()))}")


async def while_the_broker_is_there(exercise: Awaitable[object], bootstrap: str) -> None:
    """The demo's `exercise`, stopped with BrokerGone should the broker at `bootstrap` be away
    AWAY_SECONDS on end (each of its steps would otherwise wait for it for ever)."""
    watch = asyncio.create_task(presence.away_for(bootstrap, AWAY_SECONDS, "the demo"))
    try:
        await beside(watch, exercise)
    finally:
        await cancelled(watch)


def still_running(procs: town.Processes) -> None:
    """Every process the demo started still running at its end; one that stopped (its store's
    disk full, say) is said, with its exit code and its log (the demo's figures were read from
    the topics, and said nothing of it)."""
    if ended := procs.ended():
        raise click.ClickException("stopped while the demo ran: " + ", ".join(
            f"{name} (exit code {code}; its log {town.log_path(name)} says why)"
            for name, code in sorted(ended.items())))


def _main(residents: int, seed: int, instances: int, replace: bool) -> None:
    started = time.perf_counter()
    _log_to_file()
    built = town.build(residents, seed, replace=replace)
    click.echo(f"  a town of {residents:,} residents (seed {seed}); holders: "
               + ", ".join(f"{h} {len(r)}" for h, r in built.held.items()))
    with town.services(platform_instances=instances) as procs:
        click.echo(f"  processes: {', '.join(procs.running)} (ready in "
                   f"{procs.ready_after:.1f}s; logs in {state_dir() / 'logs'})")
        try:
            asyncio.run(while_the_broker_is_there(
                _exercise(built), KafkaAccess.of(config.ADMIN).bootstrap))
        except presence.BrokerGone as exc:
            raise click.ClickException(str(exc)) from None
        still_running(procs)
    click.echo(f"  whole demo {time.perf_counter() - started:.0f}s")


@click.command(short_help="A town on the platform: it binds, exchanges lawfully and not.")
@residents_option(50, 1000,
                  help="the town's size (fewer leave a holder with nobody to ask about)")
@seed_option(2026, "the town's residents and its holders' records")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="platform instances")
@click.option("--keep", is_flag=True, help="leave the broker running afterwards")
@click.option("--replace", is_flag=True,
              help="replace a registry in the state folder that no demo made")
def demo(residents: int, seed: int, instances: int, keep: bool, replace: bool) -> None:
    """The platform with demo holders: a town binds, exchanges lawfully and not, a summary.
    A broker found running is left running; only one the demo started is stopped."""
    town.check_registry(replace)
    _title("Renkei: the information-linkage platform on a secured Kafka broker")
    try:
        cluster, started = process.up(None, None, tethered=not keep)
    except process.BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"  Kafka on {cluster.bootstrap} (KRaft, SASL/SCRAM, ACLs); state in "
               f"{state_dir()}" + ("" if started else " (found running: left running after)"))
    try:
        _main(residents, seed, instances, replace)
    finally:
        if started and not keep:
            process.down()
