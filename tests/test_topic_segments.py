"""Records leave a topic soon after its retention: segments roll within a tenth of it."""

from __future__ import annotations

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from broker import provision, topics
from broker.topics import TopicSpec

TIMEOUT = 30.0
KAFKA_DEFAULT_SEGMENT_MS = 604_800_000


def _with_retention(specs: list[TopicSpec]) -> list[TopicSpec]:
    return [spec for spec in specs if spec.retention is not None]


def _kept_past_retention_at_most(retention_ms: int) -> int:
    """The bound on how long a record outlives its topic's retention: a tenth of it, and
    never more than Kafka's default segment roll."""
    return min(retention_ms // 10, KAFKA_DEFAULT_SEGMENT_MS)


def _described(name: str) -> dict[str, str]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    admin = provision.admin_client()  # held until the answer: a client dropped drops it
    found = admin.describe_configs([resource])[resource].result(TIMEOUT)
    return {key: entry.value for key, entry in found.items()}


def test_every_topic_with_a_retention_rolls_its_segments_within_a_tenth_of_it() -> None:
    """The spec: a 1-day portal topic's segments roll within 2.4 h, a 6-hour one's in 36 min."""
    specs = _with_retention([*topics.platform_topics(), *topics.holder_topics("h")])
    assert {spec.retention for spec in specs} >= {"6h", "1d", "3d", "30d", "7y"}
    for spec in specs:
        configs = spec.configs()
        bound = _kept_past_retention_at_most(int(configs["retention.ms"]))
        assert int(configs.get("segment.ms", KAFKA_DEFAULT_SEGMENT_MS)) <= bound, spec.name


def test_the_running_broker_rolls_every_topics_segments_within_a_tenth_of_its_retention(
        holders: list[str]) -> None:
    """As the broker reports it, holders' inboxes and outboxes among the topics."""
    specs = [*topics.platform_topics(), *(s for h in holders for s in topics.holder_topics(h))]
    for spec in _with_retention(specs):
        configs = _described(spec.name)
        assert int(configs["retention.ms"]) == topics.duration_ms(spec.retention or "")
        bound = _kept_past_retention_at_most(int(configs["retention.ms"]))
        assert int(configs["segment.ms"]) <= bound, (spec.name, configs["segment.ms"])


def test_provisioning_gives_a_topic_made_before_its_segment_roll(holders: list[str]) -> None:
    """A topic made with Kafka's 7-day segment roll is brought to the spec's by provisioning."""
    name = topics.REGISTRY_PORTAL_IN
    admin = provision.admin_client()
    made_before = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
        ConfigEntry("segment.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([made_before])[made_before].result(TIMEOUT)
    assert int(_described(name)["segment.ms"]) == KAFKA_DEFAULT_SEGMENT_MS
    report = provision.Report()
    provision.ensure_topics(admin, topics.platform_topics(), report)
    assert name in report.altered
    assert int(_described(name)["segment.ms"]) <= _kept_past_retention_at_most(86_400_000)
