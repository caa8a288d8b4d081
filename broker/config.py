"""The broker's configuration files, written by the project (the jars carry none)."""

from __future__ import annotations

import os
from pathlib import Path

from broker import topics
from broker.cluster import Cluster, Node
from broker.credentials import Credentials

ADMIN = "admin"
CONTROLLER = "controller"
# connections.max.reauth.ms: how long a connection's log-in lasts. aiokafka does not
# re-authenticate (KIP-368): the broker closes its connection at the first request after that
# long and aiokafka logs in again with the password it has, a renewed holder's old one refused.
# 10 minutes, the broker's connections.max.idle.ms: what an idle connection already does; each
# costs one reconnect (~0.1 s on the request it meets) and a few of aiokafka's log lines
REAUTH_MS = 10 * 60_000

LOG4J2 = """\
Configuration:
  name: renkei-broker
  Appenders:
    RollingFile:
      name: server
      fileName: "{log_dir}/server.log"
      filePattern: "{log_dir}/server.log.%i"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
      SizeBasedTriggeringPolicy:
        size: 50MB
      DefaultRolloverStrategy:
        max: 5
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: server
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: INFO
"""


def _jaas_scram(creds: Credentials) -> str:
    return (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{creds.username}" password="{creds.password}";'
    )


def _jaas_plain(creds: Credentials) -> str:
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{creds.username}" password="{creds.password}" '
        f'user_{creds.username}="{creds.password}";'
    )


def request_threads() -> dict[str, str]:
    """Network and I/O threads sized to this machine's cores, which the embedded broker shares
    with the platform and the holders (Kafka's defaults, 3 and 8, suit a machine of its own)."""
    cores = os.cpu_count() or 2
    return {"num.network.threads": str(max(1, cores // 2)), "num.io.threads": str(cores)}


def offsets_retention_minutes() -> int:
    """How long a group's committed offsets outlive its last member: as long as the longest
    retention of any topic (Kafka's default, 7 days, would send a service stopped longer back
    to the start of every topic it reads, the audit log's 7 years among them)."""
    return -(-topics.longest_retention_ms() // 60_000)


def server_properties(
    cluster: Cluster, node: Node, data_dir: Path, admin: Credentials, controller: Credentials
) -> str:
    """server.properties of one combined broker+controller node.

    Clients (and brokers among themselves) authenticate with SASL/SCRAM-SHA-512 on the CLIENT
    listener; the KRaft controllers with SASL/PLAIN on the CONTROLLER listener (SCRAM
    credentials live in the metadata log, which controllers must read before they can use
    them). Both listeners bind to loopback only.
    """
    voters = ",".join(n.controller_address for n in cluster.nodes)
    replication = min(3, cluster.size)
    min_isr = min(2, replication)
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.bootstrap.servers": voters,
        "listeners": f"CLIENT://{node.client_address},CONTROLLER://{node.controller_address}",
        "advertised.listeners": f"CLIENT://{node.client_address}",
        "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": "CLIENT",
        "controller.listener.names": "CONTROLLER",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.client.scram-sha-512.sasl.jaas.config": _jaas_scram(admin),
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas_plain(controller),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{admin.username};User:{controller.username}",
        "allow.everyone.if.no.acl.found": "false",
        "auto.create.topics.enable": "false",
        "log.dirs": str(data_dir),
        "num.partitions": "3",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replication),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        # an operator command killed in its transaction holds every reader of committed records
        # in its partitions (the audit topic's, the directory's) until the broker aborts it,
        # service_loop.TRANSACTION_MS after it began: looked for each second, not each 10
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "offsets.retention.minutes": str(offsets_retention_minutes()),
        # a broker gone is fenced after 4 s, not 9 (its partitions' leaders move sooner), and a
        # broker restarted after a crash may register again as soon (a hard restart 14.5 -> 9 s)
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "4000",
        "message.max.bytes": str(1024 * 1024),
        # a connection logged in with a password renewed since is closed within this
        "connections.max.reauth.ms": str(REAUTH_MS),
        "log.retention.check.interval.ms": "60000",
        **request_threads(),
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def log4j2_yaml(log_dir: Path) -> str:
    return LOG4J2.format(log_dir=log_dir)
