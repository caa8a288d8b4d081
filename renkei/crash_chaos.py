"""Processes killed under load: a town's holder systems send lawful requests through their
communication servers at a steady rate while, every few seconds, one process is SIGKILLed and
started again — a platform instance (several share the consumer group), a holder's
communication server, the audit consumer, or the broker itself. Afterwards every request the
servers accepted is counted: answered once, logged once by its requester, audited once per step.

`run_crash_chaos` does it in a state folder of its own (a one-node broker on free ports) and
returns a `CrashChaos`; `renkei chaos crash` writes it to results/chaos-crash.json.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from audit.heads import Signer
from audit.store import AuditStore, Query
from audit.store import default_path as audit_path
from broker import process
from broker.cluster import NoCluster
from broker.ports import free_port_pair
from holders.client import REJECTED
from holders.server import Address, address_file, recorded
from holders.store import REQUESTER, SENT, HolderStore
from holders.store import default_path as holder_path
from renkei import scenario, town
from renkei.crashes import Watch
from renkei.state import held, state_folder

UNANSWERED = SENT  # a request's status until its one outcome arrives
STEPS = 2  # audit events of a lawful request: approved, then answered
BROKER = "broker"


@dataclass
class CrashChaos:
    """What the kills did. sent: requests the requesters' servers accepted (202, an id);
    refused_at_door: attempts refused while a server or the broker was down (the holder's system
    tries again: not lost); answered: outcomes by status; lost: accepted, no outcome within
    `bound_seconds`; requester_log_not_once: requests the requester's access log holds other
    than once; provider_log_more_than_once: requests its provider logged twice or more (a
    query answered again after a crash); duplicates_dropped: answers that reached a requester
    a second time and were dropped; audit_entries_per_request: {entries in the audit store:
    requests}; audit_missing and audit_doubled: requests with fewer or more than 2; kills:
    [seconds into the load, victim, seconds until it was back]."""

    seconds: float
    rate: float
    platform_instances: int
    every_seconds: float
    kills: list[tuple[float, str, float]]
    kills_by_kind: dict[str, int]
    sent: int
    refused_at_door: int
    answered: dict[str, int]
    lost: int
    requester_log_not_once: int
    provider_log_more_than_once: int
    duplicates_dropped: int
    audit_entries_per_request: dict[str, int]
    audit_missing: int
    audit_doubled: int
    tracebacks: dict[str, int]
    latency_p50_seconds: float | None
    latency_max_seconds: float | None
    bound_seconds: float
    lost_request_ids: list[str] = field(default_factory=list)

    @property
    def exactly_once(self) -> bool:
        return (self.sent > 0 and self.lost == 0 and self.requester_log_not_once == 0
                and self.provider_log_more_than_once == 0 and self.audit_missing == 0
                and self.audit_doubled == 0)

    def to_json(self) -> dict[str, Any]:
        return {"what": "processes SIGKILLed under load, then started again",
                "exactly_once": self.exactly_once, **asdict(self)}


async def start_server(procs: town.Processes, holder: str, within: float = 60.0) -> Address:
    """Start `holder`'s communication server (`holder-<id>`); its address once it listens."""
    address_file(holder).unlink(missing_ok=True)
    procs.start(f"holder-{holder}", "holder", "run", holder)
    deadline = time.monotonic() + within
    while (address := recorded(holder)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{holder}'s communication server did not start")
        await asyncio.sleep(0.1)
    return address


@dataclass
class _Sent:
    exchange: scenario.Exchange
    request_id: str
    sent_at: float
    status: str = UNANSWERED
    answered_at: float | None = None


class Load:
    """The holders' systems: a request to its requester's server, retried at the door while the
    server (or the broker behind it) is down, then its outcome asked for until it comes."""

    def __init__(self, http: aiohttp.ClientSession, servers: dict[str, Address]) -> None:
        self.http, self.servers = http, servers
        self.sent: list[_Sent] = []
        self.refused = 0

    async def one(self, exchange: scenario.Exchange, own: str, give_up: float) -> None:
        staff, terminal = scenario.staff(exchange.requester)
        body = {"own_number": own, "pattern_id": exchange.pattern, "provider": exchange.provider,
                "data_type": exchange.data_type, "purpose": exchange.purpose,
                "operator": staff, "terminal": terminal}
        began = time.monotonic()
        while time.monotonic() < give_up:
            answer = await self._ask("post", exchange.requester, "/requests", body)
            if answer is not None:
                sent = _Sent(exchange, answer["request_id"], began)
                self.sent.append(sent)
                return await self._outcome(sent, give_up)
            self.refused += 1
            await asyncio.sleep(0.25)

    async def _outcome(self, sent: _Sent, give_up: float) -> None:
        path = f"/requests/{sent.request_id}?wait=5"
        while time.monotonic() < give_up:
            found = await self._ask("get", sent.exchange.requester, path)
            if found is not None and found.get("status", UNANSWERED) != UNANSWERED:
                sent.status, sent.answered_at = found["status"], time.monotonic()
                return
            if found is None:
                await asyncio.sleep(0.25)

    async def _ask(self, method: str, holder: str, path: str,
                   body: dict[str, str] | None = None) -> dict[str, Any] | None:
        """The server's JSON answer; None while it (or the broker behind it) is down."""
        try:
            server = self.servers[holder]
            async with self.http.request(method, server.url + path, json=body,
                                         headers=server.headers) as response:
                if response.status in (200, 202):
                    return dict(await response.json())
        except (aiohttp.ClientError, TimeoutError):
            pass
        return None


class Killer:
    """One victim every `every` seconds, round the schedule; each started again at once."""

    def __init__(self, procs: town.Processes, servers: dict[str, Address], schedule: list[str],
                 answer_timeout: float) -> None:
        self.procs, self.servers, self.answer_timeout = procs, servers, answer_timeout
        self.schedule = itertools.cycle(schedule)
        self.kills: list[tuple[float, str, float]] = []

    async def run(self, every: float, until: float, began: float) -> None:
        while time.monotonic() + every < until:
            await asyncio.sleep(every)
            victim = next(self.schedule)
            killed = time.monotonic()
            await self.kill_and_restart(victim)
            self.kills.append((round(killed - began, 2), victim,
                               round(time.monotonic() - killed, 2)))

    async def kill_and_restart(self, victim: str) -> None:
        if victim == BROKER:
            await asyncio.to_thread(process.stop_node, 1, True)
            await asyncio.to_thread(process.start_node, 1)
            return
        self.procs.kill(victim)
        if victim.startswith("holder-"):
            holder = victim.removeprefix("holder-")
            self.servers[holder] = await start_server(self.procs, holder)
        elif victim.startswith("platform-"):
            self.procs.start_platform(int(victim.removeprefix("platform-")),
                                      self.answer_timeout, "info")
        else:
            self.procs.start(victim, victim, "run")


def schedule(instances: int, holders: list[str], seed: int) -> list[str]:
    """The kill order: platform instances in turn, between them a holder's server, the audit
    consumer or the broker; one of each kind first (the broker, slowest back, last of them), so
    that a short run, or one on a slow machine, still kills every kind."""
    servers = [f"holder-{h}" for h in holders]
    random.Random(seed).shuffle(servers)
    others = [*servers[:1], "audit", BROKER, *servers[1:]]
    platforms = [f"platform-{n}" for n in range(1, instances + 1)]
    return [victim for pair in zip(itertools.cycle(platforms), others, strict=False)
            for victim in pair]


def audit_entries(request_ids: set[str], since: datetime) -> Counter[str]:
    """Entries per request in the audit store (what auditors and residents read)."""
    with AuditStore(audit_path(), Signer.load_or_create()) as store:
        counts: Counter[str] = Counter()
        after = None
        while True:
            page = store.query(Query(since=since), limit=1000, after=after)
            counts.update(e.event.request_id for e in page.entries
                          if e.event.request_id in request_ids)
            if page.next_cursor is None:
                return counts
            after = page.next_cursor


async def audited(request_ids: set[str], since: datetime, within: float) -> Counter[str]:
    """Audit store entries per request, once the consumer has caught up (or `within` passed)."""
    deadline = time.monotonic() + within
    while True:
        counts = await asyncio.to_thread(audit_entries, request_ids, since)
        if all(counts[r] >= STEPS for r in request_ids) or time.monotonic() > deadline:
            await asyncio.sleep(2)  # anything doubled arrives late: look once more
            return await asyncio.to_thread(audit_entries, request_ids, since)
        await asyncio.sleep(1)


@dataclass
class HolderSide:
    """What the holders' own stores say: access-log entries per request on each side, and
    answers that reached a requester again after its request had its outcome (dropped)."""

    requester: Counter[str] = field(default_factory=Counter)
    provider: Counter[str] = field(default_factory=Counter)
    duplicates_dropped: int = 0


def holder_side(holders: list[str], sent: list[_Sent]) -> HolderSide:
    """One pass over each holder's store."""
    found, ids = HolderSide(), {s.request_id for s in sent}
    for holder in holders:
        store = HolderStore(holder_path(holder))
        try:
            for entry in store.access_log():
                if entry.request_id in ids:
                    side = found.requester if entry.side == REQUESTER else found.provider
                    side[entry.request_id] += 1
            found.duplicates_dropped += store.counts()["duplicates dropped"]
        finally:
            store.close()
    return found


async def run_crash_chaos(state: Path, seconds: float = 60.0, rate: float = 20.0,
                          residents: int = 300, instances: int = 3, every: float = 4.0,
                          seed: int = 2026, bound: float = 120.0,
                          answer_timeout: float = 30.0) -> CrashChaos:
    """See the module's docstring; the broker is started in `state` (and stopped after) unless
    one runs there already."""
    with held(state, "chaos run"), state_folder(state):
        try:
            running = any(n.running for n in process.status()[1])
        except NoCluster:
            running = False
        if not running:
            await asyncio.to_thread(_up)
        try:
            return await _run(seconds, rate, residents, instances, every, seed, bound,
                              answer_timeout)
        finally:
            if not running:
                await asyncio.to_thread(process.down)


def _up() -> None:
    """The state folder's broker, for this run only: on free ports the first time, on its own
    ports after."""
    try:
        process.up(*free_port_pair(), tethered=True)
    except process.BrokerError:
        process.up(None, None, tethered=True)


async def _run(seconds: float, rate: float, residents: int, instances: int, every: float,
               seed: int, bound: float, answer_timeout: float) -> CrashChaos:
    built = await asyncio.to_thread(town.build, residents, seed, replace=True)  # its own folder
    services = town.services(instances, answer_timeout, loglevel="info")
    procs = await asyncio.to_thread(services.__enter__)  # it pings with asyncio.run
    try:
        async with scenario.started_clients() as clients:
            await scenario.bind_all(clients)
            jobs = scenario.lawful_jobs(clients, built, seed)
        holders = sorted({h for e in scenario.LAWFUL for h in (e.requester, e.provider)})
        servers = {h: await start_server(procs, h) for h in holders}
        watch = Watch.of(procs)
        since = datetime.now(UTC)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            load = Load(http, servers)
            killer = Killer(procs, servers, schedule(instances, holders, seed), answer_timeout)
            began = time.monotonic()
            give_up = began + seconds + bound
            killing = asyncio.create_task(killer.run(every, began + seconds, began))
            tasks = []
            for k in range(int(rate * seconds)):
                if (wait := began + k / rate - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                tasks.append(asyncio.create_task(load.one(*jobs[k % len(jobs)], give_up)))
            await asyncio.gather(killing, *tasks)
        answered = [s for s in load.sent if s.status != UNANSWERED]
        lawful = {s.request_id for s in answered if s.status != REJECTED}
        entries = await audited(lawful, since, bound)
        holders_say = await asyncio.to_thread(holder_side, holders, load.sent)
        tracebacks = watch.tracebacks()
    finally:
        await asyncio.to_thread(services.__exit__, None, None, None)
    latencies = sorted(s.answered_at - s.sent_at for s in answered if s.answered_at)
    histogram = Counter(entries[r] for r in lawful)
    return CrashChaos(
        seconds=seconds, rate=rate, platform_instances=instances, every_seconds=every,
        kills=killer.kills, kills_by_kind=dict(Counter(_kind(v) for _, v, _ in killer.kills)),
        sent=len(load.sent), refused_at_door=load.refused,
        answered=dict(Counter(s.status for s in answered).most_common()),
        lost=len(load.sent) - len(answered),
        requester_log_not_once=sum(1 for s in load.sent
                                   if holders_say.requester[s.request_id] != 1),
        provider_log_more_than_once=sum(1 for s in load.sent
                                        if holders_say.provider[s.request_id] > 1),
        duplicates_dropped=holders_say.duplicates_dropped,
        audit_entries_per_request={str(k): v for k, v in sorted(histogram.items())},
        audit_missing=sum(1 for r in lawful if entries[r] < STEPS),
        audit_doubled=sum(1 for r in lawful if entries[r] > STEPS),
        tracebacks=tracebacks,
        latency_p50_seconds=round(latencies[len(latencies) // 2], 3) if latencies else None,
        latency_max_seconds=round(latencies[-1], 3) if latencies else None,
        bound_seconds=bound,
        lost_request_ids=sorted(s.request_id for s in load.sent if s.status == UNANSWERED),
    )


def _kind(victim: str) -> str:
    return victim.split("-", 1)[0]
