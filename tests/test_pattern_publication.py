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
from processors import directory, pattern_list, patterns
from renkei import town as town_setup
from renkei.broker_time import LOG_APPEND_TIME
from renkei.state import state_folder
from schemas.messages import LegalPattern
from tests.kafka_helpers import operator_actions

pytestmark = pytest.mark.timeout(180)
EVERYTHING = ", ".join(f"{p.pattern_id} v{p.version}" for p in patterns.load())


def test_the_towns_set_up_logs_its_publication_of_the_sample(town: town_setup.Town) -> None:
    """The town's set-up published the sample on a fresh broker unlogged: the audit log did not
    say who made the list lawful."""
    assert [a.operator for a in asyncio.run(operator_actions(0, EVERYTHING))] == [town_setup.TOWN]


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
    assert [a.operator for a in asyncio.run(operator_actions(0, EVERYTHING))] == ["ops-a"]


def _listed() -> dict[str, LegalPattern]:
    records = asyncio.run(read_topic(KafkaAccess.of(config.ADMIN), topics.PATTERNS))
    return {patterns.key(p): p for _, p in pattern_list.published(records)}


def test_the_towns_set_up_leaves_an_operators_change_to_the_list_as_it_is(
        own_list: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each town set-up wrote every sample version over the list, unlogged: one an operator had
    withdrawn (a valid_to) was back in force, and nothing said so."""
    in_force = next(p for p in patterns.load() if p.valid_to is None)
    withdrawn = replace(in_force, valid_to=datetime(2026, 1, 1, tzinfo=UTC))
    listed = {**_listed(), patterns.key(withdrawn): withdrawn}
    asyncio.run(directory.publish_patterns(list(listed.values()), "ops-c", "廃止"))
    records = len(asyncio.run(read_topic(KafkaAccess.of(config.ADMIN), topics.PATTERNS)))
    town_setup.build(20, 1)
    assert _listed() == listed
    assert len(asyncio.run(read_topic(KafkaAccess.of(config.ADMIN), topics.PATTERNS))) == records
    assert "the list is kept as it is" in caplog.text
