"""The demo's exchanges run by the sample holders' libraries (binding, requests, outcomes); and a
link-code unit moved to a new key epoch."""

from __future__ import annotations

import asyncio
import getpass
import itertools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from holders.client import HolderClient, NotAuthorized, NotSentYet
from holders.samples import SAMPLES
from holders.store import HolderStore, Request
from processors import directory
from renkei.exchanges import LAWFUL, UNLAWFUL, Exchange, staff
from renkei.tasks import side_by_side

BINDING_EVERY = 10  # one job in so many of a chaos run's load is a binding
BY_NUMBER = frozenset(s.holder_id for s in SAMPLES if s.knows_numbers)  # bind by personal number
BindingJob = tuple[str, str, bool]  # holder, own number, by personal number

if TYPE_CHECKING:  # the town (its provisioning, the registry's tickets) only for those given one
    from renkei.town import Town


@asynccontextmanager
async def started_clients() -> AsyncIterator[dict[str, HolderClient]]:
    """Every sample holder's library, started on its own store, side by side (each start waits
    mostly on the broker: the directory read, a ping, its inbox group joined; one after another
    they took ~1 s each); stopped and closed after, each also when another failed to start (the
    rest cancelled, its failure raised) or to stop (with the broker gone, say): left running, its
    producer was reported unclosed as the demo ended ("Unclosed AIOKafkaProducer")."""
    clients = {}
    async with AsyncExitStack() as stopping:
        for sample in SAMPLES:
            client = HolderClient(sample.holder_id, HolderStore.of(sample.holder_id))
            stopping.callback(client.store.close)
            clients[sample.holder_id] = client

        async def start(client: HolderClient) -> None:
            await client.start()
            stopping.push_async_callback(client.stop)

        await side_by_side(*(start(client) for client in clients.values()))
        yield clients


async def bind_all(clients: dict[str, HolderClient], concurrency: int = 64) -> float:
    """Bind every record of every sample holder (by personal number where it holds them, else
    by the four attributes) and wait for each outcome; the seconds it took."""
    started = time.perf_counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(client: HolderClient, own: str, by_number: bool) -> None:
        async with gate:
            await client.outcome(await sent(client.bind(own, *staff(client.holder),
                                                        by_number=by_number)), 120)

    await asyncio.gather(*(one(clients[s.holder_id], own, s.knows_numbers) for s in SAMPLES
                           for own in clients[s.holder_id].store.own_numbers()))
    return time.perf_counter() - started


@dataclass
class Run:
    """What happened to every request of a scenario, and how long each took."""

    done: list[tuple[Exchange, Request, float]] = field(default_factory=list)
    refused_locally: list[tuple[Exchange, str]] = field(default_factory=list)
    seconds: float = 0.0


async def run(clients: dict[str, HolderClient], town: Town, concurrency: int = 64) -> Run:
    """Every lawful exchange for each person both sides hold, plus the unlawful ones."""
    result = Run()
    gate = asyncio.Semaphore(concurrency)

    async def one(exchange: Exchange, own: str) -> None:
        client = clients[exchange.requester]
        async with gate:
            started = time.perf_counter()
            outcome = await round_trip(client, exchange, own, 90)
            result.done.append((exchange, outcome, time.perf_counter() - started))

    jobs = []
    for exchange in LAWFUL + UNLAWFUL:
        owners = people(clients[exchange.requester], town, exchange)
        jobs += [one(exchange, own) for own in owners[:exchange.limit]]
    started = time.perf_counter()
    await asyncio.gather(*jobs)
    result.seconds = time.perf_counter() - started
    nenkin = clients["nenkin"]
    try:
        await nenkin.request(next(iter(nenkin.store.bindings())), "P-037", "sakura-town",
                             "local_tax", "権限のない職員", "visitor", "nenkin-term-1")
    except NotAuthorized as exc:
        result.refused_locally.append((LAWFUL[0], str(exc)))
    return result


def lawful_jobs(clients: dict[str, HolderClient], town: Town,
                seed: int) -> list[tuple[Exchange, str]]:
    """Every lawful exchange about people both sides hold, interleaved in a seeded order."""
    rng = random.Random(seed)
    per_exchange = []
    for exchange in LAWFUL:
        people_ = people(clients[exchange.requester], town, exchange)
        rng.shuffle(people_)
        per_exchange.append([(exchange, own) for own in people_])
    jobs = [job for round_ in zip(*per_exchange, strict=False) for job in round_]
    return jobs or [job for jobs_ in per_exchange for job in jobs_]


def binding_jobs(clients: dict[str, HolderClient], holders: list[str],
                 seed: int) -> list[BindingJob]:
    """Bindings: each holder's records in a seeded order, those not bound first, interleaved
    across the holders."""
    rng, per_holder = random.Random(seed), []
    for holder in holders:
        store = clients[holder].store
        owns = store.own_numbers()
        rng.shuffle(owns)
        owns.sort(key=lambda own: store.link_code(own) is not None)
        per_holder.append([(holder, own, holder in BY_NUMBER) for own in owns])
    return [job for round_ in itertools.zip_longest(*per_holder) for job in round_ if job]


def binding_of(k: int, bindings: list[BindingJob]) -> BindingJob | None:
    """The binding job `k` of a chaos run's load is (one in BINDING_EVERY, the bindings in
    turn); None if it is a linkage request."""
    n, turn = divmod(k, BINDING_EVERY)
    return bindings[n % len(bindings)] if turn == BINDING_EVERY - 1 and bindings else None


def people(client: HolderClient, town: Town, exchange: Exchange) -> list[str]:
    """The requester's own numbers to ask about: people both sides hold that it has bound
    (else everyone it has bound)."""
    return [own for own, _ in town.shared(exchange.requester, exchange.provider)
            if client.store.link_code(own)] or list(client.store.bindings())


def answerable(clients: dict[str, HolderClient], town: Town, exchange: Exchange) -> list[str]:
    """The requester's own numbers of people both sides have bound and the provider holds data
    of the exchange's type on: each asked about is answered FOUND."""
    mine, theirs = clients[exchange.requester].store, clients[exchange.provider].store
    return [own for own, other in town.shared(exchange.requester, exchange.provider)
            if mine.link_code(own) and theirs.link_code(other)
            and theirs.data(other, exchange.data_type) is not None]


async def ask(client: HolderClient, exchange: Exchange, own: str) -> str:
    """Send one request of `exchange` about `own` by its requester's registered staff; its id."""
    return await client.request(own, exchange.pattern, exchange.provider, exchange.data_type,
                                exchange.purpose, *staff(exchange.requester))


async def round_trip(client: HolderClient, exchange: Exchange, own: str,
                     within: float) -> Request:
    """One request and its one outcome (TimeoutError if none comes within `within` s)."""
    return await client.outcome(await sent(ask(client, exchange, own)), within)


async def sent(request: Awaitable[str]) -> str:
    """The id of a request made, also of one the broker did not take in time (NotSentYet:
    recorded, and sent once it is back), whose outcome is waited for alike: a broker away a
    while (restarted, say) is ridden out, not a traceback (`renkei demo` stops with a line of its
    own once the broker is away AWAY_SECONDS)."""
    try:
        return await request
    except NotSentYet as kept:
        return kept.request_id


async def rekey_unit(clients: dict[str, HolderClient], unit: str) -> tuple[int, list[str], float]:
    """Move a link-code unit to its next key epoch, as `renkei keys rekey` does (the operator
    your login), and wait until its holders have re-keyed their bindings by themselves: the
    epoch, they, and the seconds (reading the directory included)."""
    started = time.monotonic()
    entries = await directory.rekey_unit(unit, getpass.getuser())
    members = sorted(e.holder_id for e in entries)
    await rekeyed([clients[m] for m in members], entries[0].key_epoch)
    return entries[0].key_epoch, members, time.monotonic() - started


async def rekeyed(clients: Sequence[HolderClient], epoch: int, within: float = 60.0) -> None:
    """Wait until each holder's unit is at `epoch` and all its bindings are of it."""
    for _ in range(int(within / 0.05)):
        if all(c.entry(c.holder).key_epoch >= epoch and not c.store.bindings_before(epoch)
               for c in clients):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"not re-keyed to key epoch {epoch} within {within:.0f} s")
