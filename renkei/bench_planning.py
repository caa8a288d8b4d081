"""Making the benchmark's plan on the bound town, with the sample holders' libraries: each
requester's jobs, and the sizes of a real exchange's four messages (read back from its topics)."""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from typing import TYPE_CHECKING

from broker import config, topics
from broker.clients import KafkaAccess, read_topic
from holders.client import HolderClient
from renkei.bare import Sizes
from renkei.bench_plan import Job
from renkei.exchanges import LAWFUL, staff
from renkei.scenario import answerable
from schemas.codec import CODEC, SchemaError

if TYPE_CHECKING:  # the town (its provisioning, the registry's tickets) only for a plan made
    from renkei.town import Town

MESSAGES = {"LinkageRequest": "request", "ProviderQuery": "query", "ProviderAnswer": "answer",
            "LinkageAnswer": "reply"}


def jobs(town: Town, clients: dict[str, HolderClient], seed: int) -> dict[str, list[Job]]:
    """Every lawful exchange for each person bound on both sides whose data the provider has,
    shuffled per requester (its requests then mix exchanges and people)."""
    found: dict[str, list[Job]] = defaultdict(list)
    for index, exchange in enumerate(LAWFUL):
        found[exchange.requester] += [(index, own)
                                      for own in answerable(clients, town, exchange)]
    for holder, held in found.items():
        random.Random(f"{seed}/{holder}").shuffle(held)
    return dict(found)


async def measure_sizes(clients: dict[str, HolderClient], jobs: dict[str, list[Job]]) -> Sizes:
    """One real exchange of each lawful kind; the median encoded size of its four messages,
    read back from the holders' topics."""
    firsts = {i: own for held in jobs.values() for i, own in reversed(held)}
    for index, own in firsts.items():
        exchange = LAWFUL[index]
        client = clients[exchange.requester]
        await client.outcome(await client.request(
            own, exchange.pattern, exchange.provider, exchange.data_type, exchange.purpose,
            *staff(exchange.requester)), 60)
    admin = KafkaAccess.of(config.ADMIN)
    seen: dict[str, list[int]] = defaultdict(list)
    for holder in sorted({h for i in firsts for h in (LAWFUL[i].requester, LAWFUL[i].provider)}):
        for topic in (topics.outbox(holder), topics.inbox(holder)):
            for record in await read_topic(admin, topic):
                try:
                    name, _ = CODEC.decode_record(record.value or b"")
                except SchemaError:
                    continue
                if name in MESSAGES:
                    seen[MESSAGES[name]].append(len(record.value))
    return Sizes(**{hop: round(statistics.median(seen[hop])) for hop in MESSAGES.values()})
