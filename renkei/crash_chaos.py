"""Processes killed under load: a town's holder systems send lawful requests through their
communication servers at a steady rate while, every few seconds, one process is SIGKILLed and
started again — a platform instance (several share the consumer group), a holder's
communication server, the audit consumer, the registry, the numbering authority, or the broker
itself. With `suspend_every`, between the kills, one provider holder in turn is suspended and
resumed `SUSPENDED_FOR` seconds later, as an operator does (`renkei holder suspend` and
`resume`): the requests to and from it meanwhile may end refused SUSPENDED, or TIMED_OUT, but
once like any other (`chaos_check.Suspension`). With `freeze_every`, between the kills, one
platform instance in turn is frozen (SIGSTOP) for a time drawn around the group's session timeout
(FROZEN_FOR), as a machine stalls (a pause, a migration), then let go on (SIGCONT): the group has
expelled it meanwhile, most often, and given its partitions to the others, while it still holds
what it had fetched before. One job in ten is a binding (a record not bound
yet, or one bound again; by personal number at the holders that hold them, else by the four
attributes), so that the kills of the registry and the authority fall among look-ups.
Afterwards every request the requesters recorded is checked (`chaos_check`): answered once,
logged once by its requester (and by its provider), audited once per step, and every binding
answered once to its holder, its events audited once and, by personal number, its look-up once
in the authority's log; every job the load offered must have been accepted, as one request (the
holder's system sends each job under one Idempotency-Key, the same when it asks again), and no
process may have died by itself or logged a traceback.

`run_crash_chaos` does it in a state folder of its own (a one-node broker on free ports) and
returns a `CrashChaos`; `renkei chaos crash` writes it to results/chaos-crash.json.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from broker import process
from broker.cluster import NoCluster
from broker.ports import free_port_pair
from holders.server import KEY_IN_USE, STORE_BUSY, Address, address_file, recorded
from holders.store import KEPT, SENT
from processors import directory
from processors.platform import SESSION_TIMEOUT_MS
from renkei import exchanges, scenario, town
from renkei.chaos_check import Checked, Suspension, checked, with_checked
from renkei.crashes import Watch
from renkei.state import held, state_folder
from renkei.tasks import side_by_side

UNANSWERED = SENT  # a request's status until its one outcome arrives
NO_OUTCOME = (KEPT, SENT)  # as the server tells it: kept until the broker has it, then sent
BROKER = "broker"


@dataclass
class CrashChaos:
    """What the kills did. jobs: requests the load offered (binding_jobs of them bindings, the
    rest linkage requests); accepted: those a holder's server accepted (202, an id);
    never_accepted: jobs refused (by why: an HTTP error, or the server down until the end);
    refused_at_door: attempts tried again while a server was down (no answer at all); checked:
    every linkage and binding request the holders recorded during the run
    (`chaos_check.Checked`: those accepted, and any a killed server recorded before it could
    answer); recorded_beyond_accepted (a property): requests recorded less jobs accepted, 0 if
    each accepted job made one request; died: processes found dead that no one killed;
    tracebacks: per process; kills: [seconds into the load, victim, seconds until it was back];
    suspend_every_seconds: between suspensions (None: none made); suspensions: [seconds into the
    load, the provider holder suspended, seconds until it was resumed]; freeze_every_seconds,
    freezes: the same of the platform instances frozen; latency: of the accepted."""

    seconds: float
    rate: float
    platform_instances: int
    every_seconds: float
    kills: list[tuple[float, str, float]]
    kills_by_kind: dict[str, int]
    jobs: int
    binding_jobs: int
    accepted: int
    never_accepted: dict[str, int]
    refused_at_door: int
    checked: Checked
    died: list[str]
    tracebacks: dict[str, int]
    latency_p50_seconds: float | None
    latency_max_seconds: float | None
    bound_seconds: float
    suspend_every_seconds: float | None = None
    suspensions: list[tuple[float, str, float]] = field(default_factory=list)
    freeze_every_seconds: float | None = None
    freezes: list[tuple[float, str, float]] = field(default_factory=list)

    @property
    def recorded_beyond_accepted(self) -> int:
        """Requests (linkage and binding) recorded less the jobs accepted: above 0, a job's
        request made again (its first answered to no one the job knows of)."""
        return self.checked.requests + self.checked.bindings - self.accepted

    @property
    def exactly_once(self) -> bool:
        return (self.checked.exactly_once and self.accepted == self.jobs > 0
                and self.recorded_beyond_accepted == 0
                and not self.never_accepted and not self.died and not self.tracebacks)

    def to_json(self) -> dict[str, Any]:
        return {"what": "processes SIGKILLed under load, then started again",
                **with_checked(self), "recorded_beyond_accepted": self.recorded_beyond_accepted,
                "exactly_once": self.exactly_once}


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


async def started_servers(procs: town.Processes, holders: list[str]) -> dict[str, Address]:
    """The holders' communication servers started side by side, each listening once its
    store and clients are up; their addresses. One that does not start cancels the others'
    waits (asyncio.gather left them polling), its error raised."""
    return dict(zip(holders, await side_by_side(
        *(start_server(procs, h) for h in holders)), strict=True))


@dataclass
class _Sent:
    holder: str
    request_id: str
    sent_at: float
    status: str = UNANSWERED
    answered_at: float | None = None


class Refused(Exception):
    """The server answered, with an error: the job fails (asking again would not help)."""


class _AskAgain(Exception):
    """The server answered that it is to be asked again after `after` seconds (its Retry-After),
    under the same key: `status` `error`, one of ASK_AGAIN."""

    def __init__(self, status: int, error: str, after: float) -> None:
        super().__init__(f"HTTP {status} {error}: ask again in {after} s")
        self.status, self.error, self.after = status, error, after


DOWN = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)
NOT_ACCEPTED = "server down until the run gave up"
# the answers that say to ask again after their Retry-After, under the same key, by status: the
# key's first call still being made (during a re-keying), the holder's store locked by an import
ASK_AGAIN = {409: KEY_IN_USE, 503: STORE_BUSY}
# times a call is asked again while it is told to (the server's Retry-After, 1 s: ~30 s, three
# times REKEY_WAIT, the longest a first call waits for its record's re-keying), if the job has
# not given up before
ASKS_AGAIN = 30


class Load:
    """The holders' systems: a request to its requester's server, tried again while the server
    cannot be reached (killed, or starting again), or says to ask again, under the job's one
    Idempotency-Key (a server killed after it recorded the request, before it answered, answers
    that request again), then its outcome asked for until it comes. Every job ends accepted (in
    `sent`) or not (counted in `never_accepted`, by why)."""

    def __init__(self, http: aiohttp.ClientSession, servers: dict[str, Address]) -> None:
        self.http, self.servers = http, servers
        self.sent: list[_Sent] = []
        self.never_accepted: Counter[str] = Counter()
        self.refused = 0

    async def one(self, exchange: exchanges.Exchange, own: str, give_up: float) -> None:
        """A linkage request of `exchange` about `own`."""
        await self._job(exchange.requester, "/requests", {
            "own_number": own, "pattern_id": exchange.pattern, "provider": exchange.provider,
            "data_type": exchange.data_type, "purpose": exchange.purpose}, give_up)

    async def bind(self, holder: str, own: str, by_number: bool, give_up: float) -> None:
        """A binding of `holder`'s record `own`, by personal number or by the four attributes."""
        await self._job(holder, "/bindings", {"own_number": own, "by_number": by_number},
                        give_up)

    async def _job(self, holder: str, path: str, asked: dict[str, str | bool],
                   give_up: float) -> None:
        """A request made by `holder`'s staff, then its outcome."""
        staff, terminal = exchanges.staff(holder)
        body = asked | {"operator": staff, "terminal": terminal}
        key, began = str(uuid.uuid4()), time.monotonic()
        while time.monotonic() < give_up:
            try:
                answer = await self._ask("post", holder, path, give_up, body, key)
            except Refused as exc:
                self.never_accepted[str(exc)] += 1
                return
            if answer is not None:
                sent = _Sent(holder, answer["request_id"], began)
                self.sent.append(sent)
                return await self._outcome(sent, give_up)
            self.refused += 1
            await asyncio.sleep(0.25)
        self.never_accepted[NOT_ACCEPTED] += 1

    async def _outcome(self, sent: _Sent, give_up: float) -> None:
        """Asked for until it comes (an error ends the asking: the stores' check judges it)."""
        path = f"/requests/{sent.request_id}?wait=5"
        while time.monotonic() < give_up:
            try:
                found = await self._ask("get", sent.holder, path, give_up)
            except Refused:
                return
            if found is not None and found.get("status", UNANSWERED) not in NO_OUTCOME:
                sent.status, sent.answered_at = found["status"], time.monotonic()
                return
            if found is None:
                await asyncio.sleep(0.25)

    async def _ask(self, method: str, holder: str, path: str, give_up: float,
                   body: dict[str, str | bool] | None = None,
                   key: str | None = None) -> dict[str, Any] | None:
        """The server's JSON answer (to a call made under the idempotency key `key`, if given);
        None while it cannot be reached (or it was asked with the token of its run before, just
        killed); asked again after its Retry-After, under the same key, while it says to (one of
        ASK_AGAIN), up to ASKS_AGAIN times and not past `give_up`; Refused if it answers with
        another error, or says to ask again once more than that."""
        asked = 0
        while True:
            try:
                return await self._asked(method, holder, path, body, key)
            except _AskAgain as exc:
                asked += 1
                if asked > ASKS_AGAIN:
                    raise Refused(f"HTTP {exc.status} {exc.error} {asked} times") from exc
                if time.monotonic() + exc.after >= give_up:
                    raise Refused(f"HTTP {exc.status} {exc.error} until the job gave up") from exc
                await asyncio.sleep(exc.after)

    async def _asked(self, method: str, holder: str, path: str,
                     body: dict[str, str | bool] | None,
                     key: str | None) -> dict[str, Any] | None:
        """The server's JSON answer to one call, as _ask says; _AskAgain if it says to."""
        server = self.servers[holder]
        headers = server.headers | ({"Idempotency-Key": key} if key else {})
        try:
            async with self.http.request(method, server.url + path, json=body,
                                         headers=headers) as response:
                if response.status in (200, 202):
                    return dict(await response.json())
                if response.status == 401 and self.servers[holder] != server:
                    return None
                error = ASK_AGAIN.get(response.status)
                if error and (await response.json()).get("error") == error:
                    raise _AskAgain(response.status, error, float(response.headers["Retry-After"]))
                raise Refused(f"HTTP {response.status} {response.reason}")
        except DOWN:
            return None
        except aiohttp.ClientResponseError as exc:  # an answer that is not JSON
            raise Refused(f"HTTP {exc.status}, not JSON") from exc


def _lasted(began: float, start: float, who: str) -> tuple[float, str, float]:
    """A kill, suspension or freeze of `who` begun at `start` (monotonic) and over now: [seconds
    into the load (begun at `began`), who, seconds it lasted]."""
    return round(start - began, 2), who, round(time.monotonic() - start, 2)


class Killer:
    """One victim every `every` seconds, round the schedule (but one `frozen` now: the next
    after it); each started again at once, with `turn` held (no operator command runs
    meanwhile, no instance is frozen). found_dead: victims that had died by
    themselves before their turn (a kill would hide it)."""

    def __init__(self, procs: town.Processes, servers: dict[str, Address], schedule: list[str],
                 answer_timeout: float, turn: asyncio.Lock, frozen: Collection[str]) -> None:
        self.procs, self.servers, self.answer_timeout = procs, servers, answer_timeout
        self.turn, self.frozen = turn, frozen
        self.schedule = itertools.cycle(schedule)
        self.kills: list[tuple[float, str, float]] = []
        self.found_dead: list[str] = []

    async def run(self, every: float, until: float, began: float) -> None:
        while time.monotonic() + every < until:
            await asyncio.sleep(every)
            async with self.turn:
                victim = next(v for v in self.schedule if v not in self.frozen)
                killed = time.monotonic()
                await self.kill_and_restart(victim)
            self.kills.append(_lasted(began, killed, victim))

    async def kill_and_restart(self, victim: str) -> None:
        if victim == BROKER:
            await asyncio.to_thread(process.stop_node, 1, True)
            await asyncio.to_thread(process.start_node, 1)
            return
        if self.procs.running[victim].poll() is not None:
            self.found_dead.append(victim)
        self.procs.kill(victim)
        if victim.startswith("holder-"):
            holder = victim.removeprefix("holder-")
            self.servers[holder] = await start_server(self.procs, holder)
        elif victim.startswith("platform-"):
            self.procs.start_platform(int(victim.removeprefix("platform-")),
                                      self.answer_timeout, "info")
        else:
            self.procs.start_service(victim)


SUSPENDED_FOR = 3.0  # seconds a provider holder stays suspended
OPERATOR = "chaos-crash"  # the operator the audit log names for the run's suspensions


class Suspender:
    """One provider holder suspended every `every` seconds, in turn, and resumed SUSPENDED_FOR
    seconds later, by the operator commands (`renkei holder suspend` and `resume`), each made
    between kills (with `turn` held); suspensions: [seconds into the load, holder, seconds until
    it was resumed], and each as the check judges requests by (`chaos_check.Suspension`)."""

    def __init__(self, providers: list[str], seed: int, turn: asyncio.Lock) -> None:
        order = sorted(providers)
        random.Random(seed).shuffle(order)
        self.order, self.turn = itertools.cycle(order), turn
        self.suspensions: list[tuple[float, str, float]] = []
        self.judged: list[Suspension] = []

    async def run(self, every: float, until: float, began: float) -> None:
        while time.monotonic() + every + SUSPENDED_FOR < until:
            await asyncio.sleep(every)
            holder = next(self.order)
            async with self.turn:
                suspended, since = time.monotonic(), datetime.now(UTC)
                await directory.suspend(holder, OPERATOR, f"chaos crash: suspended for "
                                        f"{SUSPENDED_FOR:g} s under load")
            await asyncio.sleep(SUSPENDED_FOR)
            async with self.turn:
                await directory.resume(holder, OPERATOR)
            self.judged.append(Suspension(holder, since, datetime.now(UTC)))
            self.suspensions.append(_lasted(began, suspended, holder))


# seconds a platform instance stays frozen, drawn between: around the group's session timeout, most
# often past it (the group expels the instance), sometimes not
FROZEN_FOR = (0.8 * SESSION_TIMEOUT_MS / 1000, 2.0 * SESSION_TIMEOUT_MS / 1000)


class Freezer:
    """One platform instance frozen every `every` seconds, in turn, with `turn` held (between
    kills), for a time drawn from FROZEN_FOR, then let go on (the killer spares the one `frozen`,
    which the town's watch does not count as dead: it has not exited); freezes:
    [seconds into the load, instance, seconds until it went on]. None is left frozen."""

    def __init__(self, procs: town.Processes, instances: int, seed: int,
                 turn: asyncio.Lock) -> None:
        order = town.platform_names(instances)
        self.rng = random.Random(seed)
        self.rng.shuffle(order)
        self.procs, self.order, self.turn = procs, itertools.cycle(order), turn
        self.frozen: set[str] = set()
        self.freezes: list[tuple[float, str, float]] = []

    async def run(self, every: float, until: float, began: float) -> None:
        while time.monotonic() + every + (frozen_for := self.rng.uniform(*FROZEN_FOR)) < until:
            await asyncio.sleep(every)
            instance = next(self.order)
            async with self.turn:
                proc, froze = self.procs.running[instance], time.monotonic()
                proc.send_signal(signal.SIGSTOP)
                self.frozen.add(instance)
            try:
                await asyncio.sleep(frozen_for)
            finally:  # also when the run fails meanwhile: never left frozen
                proc.send_signal(signal.SIGCONT)
                self.frozen.discard(instance)
            self.freezes.append(_lasted(began, froze, instance))


def schedule(instances: int, holders: list[str], seed: int) -> list[str]:
    """The kill order: first one process of each kind — a platform instance, a holder's server,
    the audit consumer, the registry, the authority, then the broker (slowest back, and the
    killer waits for it: last of them) — so that a short run, or one on a slow machine, still
    kills each of the processes a linkage request or a binding goes through while they flow;
    then the other platform instances in turn, between them the other holders' servers."""
    servers = [f"holder-{h}" for h in holders]
    random.Random(seed).shuffle(servers)
    platforms = town.platform_names(instances)
    each_kind = [platforms[0], servers[0], "audit", "registry", "authority", BROKER]
    in_turn = itertools.cycle([*platforms[1:], platforms[0]])
    return each_kind + [victim for server in servers[1:] for victim in (next(in_turn), server)]


async def run_crash_chaos(state: Path, seconds: float = 60.0, rate: float = 20.0,
                          residents: int = 300, instances: int = 3, every: float = 4.0,
                          seed: int = 2026, bound: float = 120.0,
                          answer_timeout: float = 30.0,
                          suspend_every: float | None = None,
                          freeze_every: float | None = None) -> CrashChaos:
    """See the module's docstring (no suspensions unless `suspend_every`, no freezes unless
    `freeze_every`); the broker is started
    in `state` (and stopped after) unless one runs there already."""
    with held(state, "chaos run"), state_folder(state):
        try:
            running = any(n.running for n in process.status()[1])
        except NoCluster:
            running = False
        if not running:
            await asyncio.to_thread(_up)
        try:
            return await _run(seconds, rate, residents, instances, every, seed, bound,
                              answer_timeout, suspend_every, freeze_every)
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
               seed: int, bound: float, answer_timeout: float,
               suspend_every: float | None, freeze_every: float | None) -> CrashChaos:
    built = await asyncio.to_thread(town.build, residents, seed, replace=True)  # its own folder
    services = town.services(instances, answer_timeout, loglevel="info")
    procs = await asyncio.to_thread(services.__enter__)  # it pings with asyncio.run
    try:
        async with scenario.started_clients() as clients:
            await scenario.bind_all(clients)
            jobs = scenario.lawful_jobs(clients, built, seed)
            holders = sorted({h for e in exchanges.LAWFUL for h in (e.requester, e.provider)})
            bindings = scenario.binding_jobs(clients, holders, seed)
        servers = await started_servers(procs, holders)
        watch = Watch.of(procs)
        since = datetime.now(UTC)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            load, turn = Load(http, servers), asyncio.Lock()
            freezer = Freezer(procs, instances, seed, turn)
            killer = Killer(procs, servers, schedule(instances, holders, seed), answer_timeout,
                            turn, freezer.frozen)
            suspender = Suspender(sorted({e.provider for e in exchanges.LAWFUL}), seed, turn)
            began = time.monotonic()
            give_up = began + seconds + bound
            killing = asyncio.create_task(killer.run(every, began + seconds, began))
            suspending = asyncio.create_task(
                suspender.run(suspend_every, began + seconds, began) if suspend_every
                else asyncio.sleep(0))
            freezing = asyncio.create_task(
                freezer.run(freeze_every, began + seconds, began) if freeze_every
                else asyncio.sleep(0))
            tasks = []
            for k in range(int(rate * seconds)):
                if (wait := began + k / rate - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                binding = scenario.binding_of(k, bindings)
                tasks.append(asyncio.create_task(
                    load.bind(*binding, give_up) if binding
                    else load.one(*jobs[k % len(jobs)], give_up)))
            await asyncio.gather(killing, suspending, freezing, *tasks)
        verdict = await checked(holders, since, bound, scenario.BY_NUMBER, suspender.judged)
        died = sorted({*watch.died(), *killer.found_dead})
        tracebacks = watch.tracebacks()
    finally:
        await asyncio.to_thread(services.__exit__, None, None, None)
    latencies = sorted(s.answered_at - s.sent_at for s in load.sent if s.answered_at)
    return CrashChaos(
        seconds=seconds, rate=rate, platform_instances=instances, every_seconds=every,
        kills=killer.kills, kills_by_kind=dict(Counter(_kind(v) for _, v, _ in killer.kills)),
        jobs=len(tasks), binding_jobs=len(tasks) // scenario.BINDING_EVERY,
        accepted=len(load.sent),
        never_accepted=dict(load.never_accepted),
        refused_at_door=load.refused, checked=verdict, died=died, tracebacks=tracebacks,
        latency_p50_seconds=round(latencies[len(latencies) // 2], 3) if latencies else None,
        latency_max_seconds=round(latencies[-1], 3) if latencies else None,
        bound_seconds=bound, suspend_every_seconds=suspend_every,
        suspensions=suspender.suspensions, freeze_every_seconds=freeze_every,
        freezes=freezer.freezes,
    )


def _kind(victim: str) -> str:
    return victim.split("-", 1)[0]
