"""Three brokers: a KRaft quorum of 3, replication 3 and min ISR 2 everywhere; a broker killed
under load loses nothing; acks=all holds with one node down and refuses with two."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import SaslAuthenticationFailed
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from broker import clients, config, in_force, presence, process, provision, topics
from broker import cluster as cluster_store
from broker.clients import KafkaAccess, login_refusal
from broker.cluster import HOST
from broker.credentials import Credentials
from renkei.broker_chaos import leaders, run_broker_chaos, up_three
from renkei.state import state_folder
from tests.loop_helpers import Deadline

pytestmark = pytest.mark.timeout(420)
ACKS_TOPIC = "renkei-test.acks"
NODES = (1, 2, 3)


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 3-node cluster in a state folder of its own, provisioned; stopped after."""
    state = tmp_path_factory.mktemp("cluster3")
    with state_folder(state):
        began = time.monotonic()
        cl, _ = up_three(tethered=True)
        print(f"\n3-node cluster up in {time.monotonic() - began:.1f}s on {cl.bootstrap}")
        try:
            provision.provision()
            yield state
        finally:
            process.down()


def _configs(kind: ResourceType, name: str) -> dict[str, str]:
    admin = provision.admin_client()
    resource = ConfigResource(kind, name)
    described = admin.describe_configs([resource])[resource].result(30)
    return {key: entry.value for key, entry in described.items()}


def _replication(topic: str) -> set[int]:
    meta = provision.admin_client().list_topics(topic=topic, timeout=30)
    return {len(p.replicas) for p in meta.topics[topic].partitions.values()}


def test_three_voters_and_every_spec_topic_at_replication_3_min_isr_2(cluster3: Path) -> None:
    cl = cluster_store.load()
    assert cl.size == 3 and process.quorum(cl).leader in {1, 2, 3}
    voters = _properties(cl, cl.nodes[0])["controller.quorum.bootstrap.servers"].split(",")
    assert voters == [n.controller_address for n in cl.nodes]
    for spec in topics.platform_topics():
        assert _replication(spec.name) == {3}, spec.name
        assert _configs(ConfigResource.Type.TOPIC, spec.name)["min.insync.replicas"] == "2"
    broker = _configs(ConfigResource.Type.BROKER, "1")
    assert {k: broker[k] for k in (
        "default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor", "transaction.state.log.min.isr")} == {
        "default.replication.factor": "3", "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3", "transaction.state.log.min.isr": "2"}


def _properties(cl: cluster_store.Cluster, node: cluster_store.Node) -> dict[str, str]:
    text = (cl.node_dir(node) / "server.properties").read_text(encoding="utf-8")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


async def test_a_new_principal_logs_in_at_once_on_every_broker(cluster3: Path) -> None:
    """ensure_principal returns once each of the three brokers lets the principal log in, not
    only the one it asked (each applies the controller's SCRAM records as it replays them)."""
    admin, nodes = provision.admin_client(), cluster_store.load().nodes
    for n in range(8):
        creds = Credentials(f"prompt3-{n}", secrets.token_urlsafe(24))
        provision.ensure_principal(admin, creds, provision.Report())
        access = KafkaAccess(cluster_store.load().bootstrap, creds)
        refused = [await login_refusal(HOST, node.client_port, access) for node in nodes]
        assert refused == [None] * len(nodes), f"{creds.username} refused on a broker"


def test_a_principal_a_broker_refuses_is_set_again_and_waited_for_on_every_broker(
        cluster3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A principal there whose password the first broker lets log in and another refuses (a
    stand-in for one behind the controller, after a run that ended before they all applied it)
    is not taken as in force: set again and waited for on every broker, named on a line of its
    own, not as reset."""
    admin, nodes = provision.admin_client(), cluster_store.load().nodes
    creds = Credentials(f"behind3-{secrets.token_hex(3)}", secrets.token_urlsafe(24))
    provision.ensure_principal(admin, creds, provision.Report())
    real_refusal, real_logs_in = clients.login_refusal, in_force._logs_in

    async def behind(host: str, port: int, access: KafkaAccess) -> clients.Answer:
        if port == nodes[-1].client_port:
            return SaslAuthenticationFailed("a stand-in for a broker behind the controller")
        return await real_refusal(host, port, access)

    waited: list[int] = []

    async def logs_in(host: str, port: int, access: KafkaAccess) -> bool:
        waited.append(port)
        return await real_logs_in(host, port, access)

    monkeypatch.setattr(clients, "login_refusal", behind)
    monkeypatch.setattr(in_force, "_logs_in", logs_in)
    report = provision.Report()
    provision.ensure_principal(admin, creds, report)
    assert sorted(set(waited)) == sorted(node.client_port for node in nodes)
    assert (report.reset, report.unchecked, report.principals_there) == ([], [], 1)
    assert (f"passwords set again for brokers behind (some let them in): {creds.username}"
            in report.lines()), report.lines()


async def test_a_broker_killed_under_load_loses_nothing_and_logs_once(cluster3: Path) -> None:
    result = await run_broker_chaos(cluster3, seconds=15, rate=8, residents=60, kill_at=3,
                                    down_for=3, bound=60)
    print(f"\nbroker chaos: {result.to_json()}")
    checked = result.checked
    assert checked.bindings > 0, "one job in ten a binding, the registry and authority running"
    assert result.jobs >= 100 and checked.requests + checked.bindings >= (
        result.jobs - result.send_failed)
    assert checked.bindings >= result.binding_jobs == result.jobs // 10
    assert 0 < checked.bindings_by_number < checked.bindings, "by number and by attributes"
    assert sum(checked.bindings_answered.values()) == checked.bindings
    assert not checked.failing_request_ids, checked.failing_request_ids
    assert checked.audit_steps_per_request == {"approved+answered": checked.requests}
    assert result.exactly_once
    assert result.recover_first_answer_seconds is not None
    assert result.recover_isr_seconds is not None
    # the consumer groups' offsets topic was created on three nodes: replication 3, min ISR 2
    assert _replication("__consumer_offsets") == {3}
    assert _configs(ConfigResource.Type.TOPIC, "__consumer_offsets")[
        "min.insync.replicas"] == "2"


def _produce(conf: dict[str, object], within: float) -> KafkaError | None:
    """Produce one record and wait for its delivery report: None if written, else the error."""
    errors: list[KafkaError | None] = []
    producer = Producer({**KafkaAccess.of(config.ADMIN).confluent(), "acks": "all",
                         "log_level": 0, **conf})
    producer.produce(ACKS_TOPIC, b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(within)
    assert errors, "no delivery report in time"
    return errors[0]


async def _elected(topic: str, within: float = 60) -> int:
    """The leader of the topic's partition 0, once one is elected (a new topic's takes a
    while on a loaded machine)."""
    deadline = Deadline(within, f"a leader of {topic}")
    while (leader := leaders(topic).get(0, -1)) not in NODES:  # -1: none yet
        deadline.check(f"leader {leader}")
        await asyncio.sleep(0.2)
    return leader


async def _said_away(bootstrap: str, within: float) -> bool:
    """Whether a service's presence says the cluster at `bootstrap` away at its first look."""
    try:
        await asyncio.wait_for(presence.away_for(bootstrap, 0, "acks-test"), within)
    except presence.BrokerGone:
        return True
    except TimeoutError:  # there: looked at again after WATCH_SECONDS
        return False
    raise AssertionError("away_for ended")


async def test_acks_all_holds_with_one_node_down_and_refuses_with_two(cluster3: Path) -> None:
    """(Last of the module: it stops every node of the cluster.) Services say the cluster away
    once it refuses (the node left took connections: they never did)."""
    admin = provision.admin_client()
    future = admin.create_topics([NewTopic(ACKS_TOPIC, 1, 3,
                                           config={"min.insync.replicas": "2"})])[ACKS_TOPIC]
    future.result(30)
    leader = await _elected(ACKS_TOPIC)
    first, second = [n for n in NODES if n != leader]
    assert await asyncio.to_thread(_produce, {"enable.idempotence": True}, 60) is None
    process.stop_node(first, hard=True)  # a crash: fenced after the broker session timeout
    assert await asyncio.to_thread(_produce, {"enable.idempotence": True}, 90) is None, (
        "acks=all must succeed with two of three replicas in sync")
    assert not await _said_away(cluster_store.bootstrap(), 1)
    # The second node stops cleanly, so that the two controllers left still shrink the ISR to
    # the leader alone before the quorum is lost (a second SIGKILL would take the majority of
    # the quorum with it; the produce would then time out rather than be refused).
    process.stop_node(second)
    refused = await asyncio.to_thread(
        _produce, {"enable.idempotence": False, "retries": 0, "message.timeout.ms": 20000}, 30)
    assert refused is not None and refused.code() == KafkaError.NOT_ENOUGH_REPLICAS, refused
    assert await _said_away(cluster_store.bootstrap(), 3), "one node of three left: said there"
    process.stop_node(leader, hard=True)  # no quorum left to grant it a controlled shutdown
