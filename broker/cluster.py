"""The local cluster's layout: its id, nodes and ports, kept in the state folder."""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from renkei.state import private_dir, read_json, state_dir, write_json

DEFAULT_CLIENT_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
HOST = "127.0.0.1"
BOOTSTRAP_ENV = "RENKEI_BOOTSTRAP"


class NoCluster(LookupError):
    """The state folder holds no broker yet."""


@dataclass(frozen=True)
class Node:
    node_id: int
    client_port: int
    controller_port: int

    @property
    def client_address(self) -> str:
        return f"{HOST}:{self.client_port}"

    @property
    def controller_address(self) -> str:
        return f"{HOST}:{self.controller_port}"


@dataclass(frozen=True)
class Cluster:
    cluster_id: str
    nodes: tuple[Node, ...]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.client_address for node in self.nodes)

    @property
    def size(self) -> int:
        return len(self.nodes)

    def node_dir(self, node: Node) -> Path:
        return private_dir("broker", f"node-{node.node_id}")


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID as 22 characters of base64url."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


def plan(client_port: int, controller_port: int, nodes: int = 1) -> Cluster:
    """A cluster of `nodes` nodes on consecutive port pairs from the given ports."""
    return Cluster(
        new_cluster_id(),
        tuple(
            Node(i + 1, client_port + 2 * i, controller_port + 2 * i) for i in range(nodes)
        ),
    )


def _path() -> Path:
    return state_dir() / "broker" / "cluster.json"


def save(cluster: Cluster) -> None:
    write_json(
        _path(),
        {
            "cluster_id": cluster.cluster_id,
            "nodes": [
                {"node_id": n.node_id, "client_port": n.client_port,
                 "controller_port": n.controller_port}
                for n in cluster.nodes
            ],
        },
    )


def load() -> Cluster:
    path = _path()
    if not path.exists():
        raise NoCluster(f"no broker in {path.parent.parent}: run `renkei broker up` first")
    data = read_json(path)
    return Cluster(data["cluster_id"], tuple(Node(**n) for n in data["nodes"]))


def bootstrap() -> str:
    """Where clients find the brokers: `$RENKEI_BOOTSTRAP` (host:port,… of a deployment's
    brokers, as in compose.yaml) when set, else every node of the local cluster."""
    return os.environ.get(BOOTSTRAP_ENV) or load().bootstrap
