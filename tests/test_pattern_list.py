"""`renkei patterns publish`: each pattern version on the legal pattern list's topic once."""

from __future__ import annotations

import asyncio

from broker import config, topics
from broker.clients import KafkaAccess
from processors import patterns
from renkei.town import Town
from tests.kafka_helpers import consumer, renkei, wait_assigned


async def _records() -> int:
    """The records on the pattern list's topic, its active segment's duplicates among them."""
    async with consumer(KafkaAccess.of(config.ADMIN), topics.PATTERNS, offset="earliest") as cons:
        await wait_assigned(cons)
        return sum((await cons.end_offsets(list(cons.assignment()))).values())


def test_the_pattern_list_published_again_is_not_written_again(town: Town) -> None:
    """Run twice (as the town and compose's set-up do), it said 'published 8 pattern versions'
    each time and sent all 8 again: the topic only grows, though the list is unchanged. A set-up
    publishes --new-only: a version another test (or an operator) added to the list since (the
    whole list refused without it: it leaves that one out) is kept, not refused."""
    before = asyncio.run(_records())
    run = renkei("patterns", "publish", "--new-only")
    versions = len(patterns.load(patterns.SAMPLE))
    assert run.stdout == f"{versions} already published: the legal pattern list is unchanged\n"
    assert asyncio.run(_records()) == before
