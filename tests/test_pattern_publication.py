"""A publication of the legal pattern list is an operator action: it changes what is lawful, and
the audit log says who published which versions, when and why."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit.events import from_millis
from broker import config, process, provision, topics
from broker.clients import KafkaAccess, read_topic
from broker.ports import free_port_pair
from processors import directory, patterns
from renkei.broker_time import LOG_APPEND_TIME
from renkei.state import state_folder
from tests.kafka_helpers import operator_actions

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def own_list(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A broker of this module's own: the versions published here stay on its list."""
    with state_folder(state := tmp_path_factory.mktemp("patterns")):
        process.up(*free_port_pair(), tethered=True)
        try:
            provision.provision()
            yield state
        finally:
            process.down()


def test_a_publication_is_logged_with_its_operator_versions_and_time(own_list: Path) -> None:
    """`patterns publish` wrote the versions and logged nothing: `audit actions` listed every
    suspension and registration but not the change of what is lawful, nor who made it."""
    sample = patterns.load()
    asyncio.run(directory.publish_patterns(sample, "ops-a", None))
    assert asyncio.run(directory.publish_patterns(sample, "ops-a", None)) == []  # logs nothing
    amended = replace(sample[0], version=2, valid_from=datetime(2027, 4, 1, tzinfo=UTC))
    asyncio.run(directory.publish_patterns([*sample, amended], "ops-b", "省令改正"))
    admin = KafkaAccess.of(config.ADMIN)
    *_, record = asyncio.run(read_topic(admin, topics.PATTERNS))
    subject = f"{amended.pattern_id} v2"
    action, = asyncio.run(operator_actions(0, subject))
    assert (action.action, action.operator, action.reason) == ("PUBLISH", "ops-b", "省令改正")
    assert action.occurred_at == from_millis(record.timestamp)
    assert record.timestamp_type == LOG_APPEND_TIME  # the broker's time, not the publisher's
    everything = ", ".join(f"{p.pattern_id} v{p.version}" for p in sample)
    assert [a.operator for a in asyncio.run(operator_actions(0, everything))] == ["ops-a"]
