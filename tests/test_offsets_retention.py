"""Consumer groups' committed offsets outlive a stopped service as long as any topic's records."""

from __future__ import annotations

from confluent_kafka.admin import ConfigResource

from broker import provision, topics
from broker.cluster import Cluster

TIMEOUT = 30.0


def test_the_broker_keeps_a_stopped_groups_offsets_as_long_as_any_topic_keeps_records(
        broker: Cluster) -> None:
    """A service stopped past Kafka's default 7 days does not restart from each topic's start."""
    admin = provision.admin_client()
    node = ConfigResource(ConfigResource.Type.BROKER, str(broker.nodes[0].node_id))
    described = next(iter(admin.describe_configs([node]).values())).result(TIMEOUT)
    minutes = int(described["offsets.retention.minutes"].value)
    assert minutes * 60_000 >= topics.longest_retention_ms(), f"offsets kept {minutes} minutes"
