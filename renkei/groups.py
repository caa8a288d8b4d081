"""Consumer groups as the broker sees them: how many members, and how far behind (lag)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription, OffsetSpec

from broker import config
from broker.clients import KafkaAccess

TIMEOUT = 10.0
SESSION_SECONDS = 10.0  # the longest session timeout of the project's consumers (the platform's)
LEFT = frozenset({ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD})  # no members (DEAD: unknown)
COORDINATOR_NOT_READY = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                                   KafkaError.COORDINATOR_LOAD_IN_PROGRESS})  # a broker starting
LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped upstream


def admin() -> AdminClient:
    return AdminClient({**KafkaAccess.of(config.ADMIN).confluent(), "log_level": 0})


def lag(client: AdminClient, group: str) -> dict[str, int]:
    """Records not yet committed by `group`, per topic (partitions it never committed aside)."""
    asked = [ConsumerGroupTopicPartitions(group)]
    committed = client.list_consumer_group_offsets(asked, request_timeout=TIMEOUT)[group].result()
    positions = {TopicPartition(tp.topic, tp.partition): tp.offset
                 for tp in committed.topic_partitions or [] if tp.offset >= 0}
    if not positions:
        return {}
    ends = client.list_offsets({tp: LATEST for tp in positions},
                               request_timeout=TIMEOUT)
    behind = Counter[str]()
    for tp, end in ends.items():
        behind[tp.topic] += max(0, end.result().offset - positions[tp])
    return dict(behind)


def _described(client: AdminClient, group: str) -> ConsumerGroupDescription | None:
    """`group` as the broker describes it; None while its coordinator is not ready yet (a
    broker just started)."""
    return _description(client.describe_consumer_groups([group], request_timeout=TIMEOUT)[group])


def _description(asked: Future[ConsumerGroupDescription]) -> ConsumerGroupDescription | None:
    """A group as the broker described it, once `asked` is done; None while its coordinator is
    not ready yet."""
    try:
        found: ConsumerGroupDescription = asked.result()
    except KafkaException as exc:
        if exc.args[0].code() in COORDINATOR_NOT_READY:
            return None
        raise
    return found


def with_members(client: AdminClient, names: Sequence[str]) -> dict[str, bool | None]:
    """Whether each of these groups has members now, stable or rebalancing (a member that
    stopped without leaving one until its session times out), all asked at once; None for one
    whose coordinator is not ready yet (a broker just started). KafkaException if the broker
    cannot say (within TIMEOUT)."""
    asked = client.describe_consumer_groups(list(names), request_timeout=TIMEOUT)
    return {name: None if (found := _description(asked[name])) is None else bool(found.members)
            for name in names}


def stable_members(client: AdminClient, group: str) -> int:
    """Members of `group` once it is stable; 0 while it rebalances, is empty or unknown, or
    while its coordinator is not ready yet (a broker just started)."""
    found = _described(client, group)
    if found is None or found.state != ConsumerGroupState.STABLE:
        return 0
    return len(found.members)


def wait_members(client: AdminClient, group: str, members: int, within: float) -> bool:
    """Wait until `group` is stable with at least `members` members; whether it got there."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if stable_members(client, group) >= members:
            return True
        time.sleep(0.5)
    return False


def wait_drained(client: AdminClient, group: str, within: float) -> int:
    """Wait until `group` has caught up; the lag left when it did or the time ran out."""
    deadline = time.monotonic() + within
    while (left := sum(lag(client, group).values())) and time.monotonic() < deadline:
        time.sleep(1.0)
    return left


def wait_empty(client: AdminClient, group: str, within: float = TIMEOUT + SESSION_SECONDS) -> None:
    """Wait until `group` has no members. A static member (a platform instance) that stopped
    did not leave: the broker drops it once its session times out."""
    deadline = time.monotonic() + within
    while (found := _described(client, group)) is None or found.state not in LEFT:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the consumer group {group} still has members after {within:g} s")
        time.sleep(0.5)


def skip_to_end(client: AdminClient, group: str, topic_names: list[str]) -> None:
    """Commit `group`'s offsets at the current end of the topics: a new group starts after what
    is already there (once the group has no members: its members must have been stopped)."""
    wait_empty(client, group)
    found = client.list_topics(timeout=TIMEOUT).topics
    partitions = [TopicPartition(t, p) for t in topic_names for p in found[t].partitions]
    ends = client.list_offsets({tp: LATEST for tp in partitions},
                               request_timeout=TIMEOUT)
    commit_offsets(client, group, [TopicPartition(tp.topic, tp.partition, end.result().offset)
                                   for tp, end in ends.items()])


def commit_offsets(client: AdminClient, group: str, offsets: list[TopicPartition]) -> None:
    """Commit `offsets` for `group` from outside it (it must have no members), asked again while
    its coordinator is not ready."""
    deadline = time.monotonic() + TIMEOUT
    while True:  # the request succeeds as a whole while partitions can fail one by one
        done = client.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, offsets)], request_timeout=TIMEOUT)[group].result()
        failed = [tp.error for tp in done.topic_partitions or [] if tp.error]
        if not failed:
            return
        if {e.code() for e in failed} - COORDINATOR_NOT_READY or time.monotonic() > deadline:
            raise KafkaException(failed[0])
        time.sleep(0.5)


def partition_lag(client: AdminClient, group: str, topic_names: list[str]) -> dict[str, int]:
    """Records of these topics not yet committed by `group`, per partition ("topic:partition";
    a partition it never committed counts from offset 0)."""
    found = client.list_topics(timeout=TIMEOUT).topics
    partitions = [TopicPartition(t, p) for t in topic_names for p in found[t].partitions]
    asked = [ConsumerGroupTopicPartitions(group, partitions)]
    committed = client.list_consumer_group_offsets(asked, request_timeout=TIMEOUT)[group].result()
    positions = {(tp.topic, tp.partition): max(0, tp.offset)
                 for tp in committed.topic_partitions or []}
    ends = client.list_offsets({tp: LATEST for tp in partitions}, request_timeout=TIMEOUT)
    return {f"{tp.topic}:{tp.partition}": max(0, end.result().offset
                                               - positions.get((tp.topic, tp.partition), 0))
            for tp, end in ends.items()}
