"""A broker killed under load: on a 3-node cluster (KRaft quorum of 3, replication 3, min ISR 2,
idempotent producers with acks=all), a town's holders send lawful requests at a steady rate, one
in ten a binding (the registry and the authority run beside the platform), while one broker is
SIGKILLed and, a while later, started again. Every request the requesters recorded is checked as
in every chaos run (`chaos_check`: answered once, logged once on each side, audited once per
step; each binding answered once, audited once, looked up once by personal number), and the time
to recover is measured.

`run_broker_chaos` does it in a state folder of its own (`<state>/cluster3`, free ports) and
returns a `BrokerChaos`; `renkei chaos broker` writes it to results/chaos-broker.json.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker import cluster as cluster_store
from broker import process, provision
from broker.ports import free_port_block
from holders.client import HolderClient, NotSentYet
from renkei import exchanges, scenario, town
from renkei.chaos_check import Checked, checked, with_checked
from renkei.state import held, state_folder

NODES = 3
DECISIONS = "renkei-platform-decisions"
FALLBACK_NODE = 2
LOST, SEND_FAILED = "LOST", "SEND_FAILED"


@dataclass
class BrokerChaos:
    """What a broker kill under load did. Times are seconds; `None` where it did not happen.

    jobs: requests the load made (binding_jobs of them bindings); send_failed: jobs whose
    sending raised (not NotSentYet: a request the broker did not take in time is kept, sent later
    and followed like any other); a request so recorded is in `checked` like every other, and
    fails the run unless answered;
    checked: every linkage and binding request the holders recorded during the run
    (`chaos_check.Checked`), judged with the audit consumer still running.
    recover_first_answer_seconds: from the kill until the first request sent after it was
    answered; recover_isr_seconds: from the kill until the restarted broker was back in the ISR
    of every partition it replicates (restart_seconds: from its start until the cluster was whole
    again, i.e. all brokers registered and a quorum leader).
    """

    nodes: int
    seconds: float
    rate: float
    residents: int
    killed_node: int
    killed_why: str
    killed_was_quorum_leader: bool
    partitions_led_by_killed: int
    kill_at_seconds: float
    down_seconds: float
    jobs: int
    binding_jobs: int
    send_failed: int
    checked: Checked
    recover_first_answer_seconds: float | None
    recover_isr_seconds: float | None
    restart_seconds: float | None
    cluster_start_seconds: float | None
    services_ready_seconds: float
    bound_seconds: float
    latency_p50_seconds: float | None
    latency_max_seconds: float | None
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        return self.checked.exactly_once

    def to_json(self) -> dict[str, Any]:
        return {"what": "a broker of a 3-node cluster SIGKILLed under load, then restarted",
                **with_checked(self)}


@dataclass
class _Sent:
    request_id: str | None
    sent_at: float
    answered_at: float | None = None
    status: str | None = None


def up_three(tethered: bool = False) -> tuple[cluster_store.Cluster, float | None]:
    """The state folder's 3-node cluster, running (formatted on free ports the first time);
    the seconds it took to start, None if it was running already. `tethered` as for
    `process.up`."""
    try:
        first = cluster_store.load().nodes[0]
        ports = first.client_port, first.controller_port
    except cluster_store.NoCluster:
        port = free_port_block(2 * NODES)
        ports = port, port + 1
    began = time.monotonic()
    cl, started = process.up(*ports, nodes=NODES, tethered=tethered)
    return cl, (time.monotonic() - began) if started else None


def _admin() -> Any:
    return provision.admin_client()


def leaders(topic: str) -> dict[int, int]:
    """Partition → leader node of a topic now."""
    meta = _admin().list_topics(topic=topic, timeout=10)
    return {p.id: p.leader for p in meta.topics[topic].partitions.values()}


def in_every_isr(node_id: int) -> bool:
    """Is the node in the ISR of every partition it replicates?"""
    meta = _admin().list_topics(timeout=10)
    return all(node_id in p.isrs for t in meta.topics.values()
               for p in t.partitions.values() if node_id in p.replicas)


def _victim() -> tuple[int, str, int]:
    """The node to kill: the leader of the decisions topic's partition 0."""
    try:
        led = leaders(DECISIONS)
    except Exception:  # no metadata: kill the fallback
        return FALLBACK_NODE, f"fallback (no leader found for {DECISIONS})", 0
    node = led.get(0, -1)
    if node < 1:
        return FALLBACK_NODE, f"fallback (no leader found for {DECISIONS})", 0
    return node, f"leader of {DECISIONS} partition 0", sum(1 for n in led.values() if n == node)


def _sending(clients: dict[str, HolderClient], job: tuple[exchanges.Exchange, str],
             binding: scenario.BindingJob | None) -> tuple[HolderClient, Coroutine[Any, Any, str]]:
    """The holder's library a job is sent by, and its sending: the binding, if it is one, else
    the linkage request `job`."""
    if binding is None:
        exchange, own = job
        client = clients[exchange.requester]
        return client, scenario.ask(client, exchange, own)
    holder, own, by_number = binding
    client = clients[holder]
    return client, client.bind(own, *exchanges.staff(holder), by_number=by_number)


async def _send_steadily(clients: dict[str, HolderClient],
                         jobs: list[tuple[exchanges.Exchange, str]],
                         bindings: list[scenario.BindingJob], rate: float, seconds: float,
                         bound: float) -> list[_Sent]:
    """Requests at `rate` per second for `seconds`, one in ten a binding, each waited for up to
    `bound` seconds."""
    sent: list[_Sent] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(client: HolderClient, sending: Coroutine[Any, Any, str]) -> None:
        entry = _Sent(None, time.monotonic())
        sent.append(entry)
        try:
            request_id = await sending
        except NotSentYet as kept:  # not taken within its wait: kept, and sent once it can be
            request_id = kept.request_id
        except Exception:  # the broker did not take it: the holder knows, nothing is lost
            entry.status = SEND_FAILED
            return
        entry.request_id = request_id
        try:
            outcome = await client.outcome(request_id, bound)
        except TimeoutError:
            entry.status = LOST
            return
        entry.answered_at, entry.status = time.monotonic(), outcome.status

    started = time.monotonic()
    for k in range(int(rate * seconds)):
        if (wait := started + k / rate - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        task = asyncio.create_task(one(*_sending(clients, jobs[k % len(jobs)],
                                                 scenario.binding_of(k, bindings))))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return sent


@dataclass
class _Kill:
    node: int
    why: str
    led: int
    was_quorum_leader: bool = False
    killed_at: float = 0.0
    restart_seconds: float | None = None
    isr_at: float | None = None


async def _kill_and_restart(kill: _Kill, after: float, down_for: float,
                            isr_within: float) -> None:
    await asyncio.sleep(after)
    cl = cluster_store.load()
    kill.was_quorum_leader = process.quorum(cl).leader == kill.node
    kill.killed_at = time.monotonic()
    await asyncio.to_thread(process.stop_node, kill.node, True)
    await asyncio.sleep(down_for)
    began = time.monotonic()
    await asyncio.to_thread(process.start_node, kill.node, 180.0)
    kill.restart_seconds = time.monotonic() - began
    deadline = time.monotonic() + isr_within
    while time.monotonic() < deadline:
        try:
            whole = await asyncio.to_thread(in_every_isr, kill.node)
        except Exception:  # metadata momentarily unavailable: ask again
            whole = False
        if whole:
            kill.isr_at = time.monotonic()
            return
        await asyncio.sleep(0.25)


def _percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else None


def kill_times(seconds: float, kill_at: float | None,
               down_for: float | None) -> tuple[float, float]:
    """When in the load the broker is killed and how long it is down (each by default a quarter
    of the load); ValueError if it would be killed, or started again, after the load ends."""
    kill_at = seconds / 4 if kill_at is None else kill_at
    down_for = seconds / 4 if down_for is None else down_for
    if kill_at + down_for > seconds or kill_at >= seconds:
        raise ValueError(f"a kill at {kill_at:g}s down for {down_for:g}s does not end within the "
                         f"load's {seconds:g}s (--seconds): the broker would be back after it")
    return kill_at, down_for


async def run_broker_chaos(state: Path, seconds: float = 60.0, rate: float = 20.0,
                           residents: int = 300, seed: int = 2026,
                           kill_at: float | None = None, down_for: float | None = None,
                           bound: float = 90.0, platform_instances: int = 2,
                           keep: bool = False) -> BrokerChaos:
    """Kill a broker of a 3-node cluster under load and bring it back; see `BrokerChaos`.

    The cluster lives in `state` (RENKEI_STATE for the run and its processes). One started
    here is stopped at the end unless `keep`; one found running is left running. The kill comes
    at `kill_at` seconds into the load (default a quarter), the restart `down_for` later
    (default a quarter of the run)."""
    kill_at, down_for = kill_times(seconds, kill_at, down_for)
    with held(state, "chaos run"), state_folder(state):
        _, cluster_seconds = await asyncio.to_thread(up_three, not keep)
        try:
            return await _run(seconds, rate, residents, seed, kill_at, down_for, bound,
                              platform_instances, cluster_seconds)
        finally:
            if cluster_seconds is not None and not keep:
                await asyncio.to_thread(process.down)


async def _run(seconds: float, rate: float, residents: int, seed: int, kill_at: float,
               down_for: float, bound: float, platform_instances: int,
               cluster_seconds: float | None) -> BrokerChaos:
    phases: dict[str, float] = {}
    began = time.monotonic()

    def phase(name: str) -> None:
        nonlocal began
        phases[name] = round(time.monotonic() - began, 3)
        began = time.monotonic()

    built = await asyncio.to_thread(town.build, residents, seed, replace=True)  # its own folder
    phase("town")
    services = town.services(platform_instances=platform_instances)
    procs = await asyncio.to_thread(services.__enter__)
    phase("services")
    try:
        async with scenario.started_clients() as clients:
            await scenario.bind_all(clients)
            phase("binding")
            jobs = scenario.lawful_jobs(clients, built, seed)
            bindings = scenario.binding_jobs(clients, sorted(clients), seed)
            kill = _Kill(*await asyncio.to_thread(_victim))
            since = datetime.now(UTC)
            killer = asyncio.create_task(_kill_and_restart(kill, kill_at, down_for,
                                                           isr_within=bound + 120))
            sent = await _send_steadily(clients, jobs, bindings, rate, seconds, bound)
            phase("load")
            await killer
            phase("until back in every ISR")
            verdict = await checked(sorted(clients), since, bound, scenario.BY_NUMBER)
            phase("check")
    finally:
        await asyncio.to_thread(services.__exit__, None, None, None)
    phase("stopping")
    result = _measure(sent, kill, verdict, seconds, rate, residents, kill_at, down_for, bound,
                      cluster_seconds, procs.ready_after)
    result.phase_seconds = phases
    return result


def _measure(sent: list[_Sent], kill: _Kill, verdict: Checked, seconds: float, rate: float,
             residents: int, kill_at: float, down_for: float, bound: float,
             cluster_seconds: float | None, ready_after: float) -> BrokerChaos:
    after_kill = sorted((s for s in sent if s.sent_at >= kill.killed_at and s.request_id),
                        key=lambda s: s.sent_at)
    first = after_kill[0] if after_kill else None
    latencies = [s.answered_at - s.sent_at for s in sent if s.answered_at is not None]
    return BrokerChaos(
        nodes=NODES, seconds=seconds, rate=rate, residents=residents,
        killed_node=kill.node, killed_why=kill.why,
        killed_was_quorum_leader=kill.was_quorum_leader, partitions_led_by_killed=kill.led,
        kill_at_seconds=kill_at, down_seconds=down_for,
        jobs=len(sent), binding_jobs=len(sent) // scenario.BINDING_EVERY,
        send_failed=sum(1 for s in sent if s.status == SEND_FAILED),
        checked=verdict,
        recover_first_answer_seconds=(
            None if first is None or first.answered_at is None
            else round(first.answered_at - kill.killed_at, 3)),
        recover_isr_seconds=None if kill.isr_at is None else round(
            kill.isr_at - kill.killed_at, 3),
        restart_seconds=None if kill.restart_seconds is None else round(
            kill.restart_seconds, 3),
        cluster_start_seconds=None if cluster_seconds is None else round(cluster_seconds, 3),
        services_ready_seconds=round(ready_after, 3),
        bound_seconds=bound,
        latency_p50_seconds=_round(_percentile(latencies, 0.5)),
        latency_max_seconds=_round(max(latencies, default=None)),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
