"""`renkei broker status` says why a node stopped, where its log says: its disk full, a clean
stop; a node killed says that its log does not say. Before, only "stopped", the reason left in
its server.log."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from broker import cluster as cluster_store
from broker import process
from broker.cli import broker_cli
from renkei.state import state_folder

STARTED = ("[2026-12-07 08:13:06,921] INFO [KafkaRaftServer nodeId=1] Kafka Server started "
           "(kafka.server.KafkaRaftServer)")
TRANSIENT = ("[2026-12-07 08:13:07,100] ERROR [Controller 1] a transient error "
             "(org.apache.kafka.example)")
DISK_FULL = [  # the end of a node's server.log once its disk was full (Kafka 4.4)
    "[2026-12-07 08:13:18,224] ERROR Error while appending records to renkei.directory-0 in dir "
    "/state/broker/node-1/data (org.apache.kafka.storage.internals.log.LogDirFailureChannel)",
    "java.io.IOException: No space left on device",
    "\tat java.base/sun.nio.ch.UnixFileDispatcherImpl.write0(Native Method) ~[?:?]",
    "\tat java.base/sun.nio.ch.UnixFileDispatcherImpl.write(UnixFileDispatcherImpl.java:65)"]
SIGTERM = ("[2026-12-07 08:14:10,011] INFO Terminating process due to signal SIGTERM "
           "(org.apache.kafka.common.utils.internals.LoggingSignalHandler)")
INFO = "[2026-12-07 08:14:10,014] INFO [BrokerServer id=1] Transition from STARTED to SHUTTING_DOWN"


def _status(tmp_path: Path, log: list[str]) -> str:
    with state_folder(tmp_path):
        cl = cluster_store.plan(1, 2)
        cluster_store.save(cl)
        folder = cl.node_dir(cl.nodes[0]) / "logs"
        folder.mkdir(parents=True)
        (folder / "server.log").write_text("\n".join(log) + "\n", encoding="utf-8")
        result = CliRunner().invoke(broker_cli, ["status"])
    assert result.exit_code == 3, result.output
    return result.output


def test_a_node_stopped_by_its_full_disk_is_said_stopped_by_it(tmp_path: Path) -> None:
    said = _status(tmp_path, ["[old run]", DISK_FULL[0], STARTED, TRANSIENT, INFO, *DISK_FULL])
    assert "  node 1: stopped; client 127.0.0.1:1, controller 127.0.0.1:2\n" in said
    assert ("    why: its log's last error: [2026-12-07 08:13:18,224] ERROR Error while appending "
            "records to renkei.directory-0 in dir /state/broker/node-1/data (org.apache.kafka."
            "storage.internals.log.LogDirFailureChannel): java.io.IOException: No space left on "
            "device\n") in said


def test_a_node_stopped_cleanly_or_killed_is_said_so(tmp_path: Path) -> None:
    assert ("    why: stopped cleanly, on a signal: " + SIGTERM + "\n") in _status(
        tmp_path / "clean", [DISK_FULL[0], STARTED, TRANSIENT, SIGTERM, INFO])
    assert "    why: its log does not say (killed, perhaps" in _status(
        tmp_path / "killed", [*DISK_FULL, STARTED, INFO])


def test_why_a_node_stopped_is_read_from_its_last_run_only() -> None:
    assert process.why_stopped([*DISK_FULL, STARTED, INFO]) is None
    assert process.why_stopped([STARTED, "[x] FATAL a fatal line", TRANSIENT, SIGTERM]) == (
        "its log's last fatal line: [x] FATAL a fatal line")
