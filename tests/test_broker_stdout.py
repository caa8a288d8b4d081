"""A broker node's own output (the JVM's, in its logs/stdout.log; log4j2 rolls server.log) was
appended to at every start, run after run, without bound. `renkei broker up` begins it afresh,
the run before's kept as stdout.log.1 (one generation, as the services' logs, renkei.logs.begun);
a node started again within the run (`renkei broker start <node>` after a kill) goes on in it,
what it said before it stopped kept.

The nodes here are a stand-in java that says one line and ends: what is under test is where a
node's output goes, not the broker (a real one's two starts would take ~12 s)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from broker import cluster as cluster_store
from broker import process
from broker.ports import free_port_pair
from renkei.state import STATE_ENV

SAYS = "RENKEI_TEST_NODE_SAYS"


def _stand_in_java(folder: Path) -> str:
    """An executable that says $RENKEI_TEST_NODE_SAYS on its stdout and ends."""
    java = folder / "java"
    java.write_text(f'#!/bin/sh\necho "${SAYS}"\n', encoding="utf-8")
    java.chmod(0o700)
    return str(java)


def _started(how: str, ports: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """`renkei broker up` (how="up") or `renkei broker start 1` (how="start"), its node saying
    `how`."""
    monkeypatch.setenv(SAYS, how)
    if how == "up":
        process.up(*ports)
    else:
        process.start_node(1)


def test_each_broker_up_begins_the_nodes_output_afresh_keeping_the_run_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv(STATE_ENV, str(state))
    monkeypatch.setattr(process, "java", lambda: _stand_in_java(tmp_path))
    monkeypatch.setattr(process, "_format", lambda cl, java_bin: None)
    monkeypatch.setattr(process, "_wait_ready", lambda cl, pids, timeout: None)
    ports = free_port_pair()
    for run in (["up", "start"], ["up"], ["up", "start", "start"]):
        for how in run:
            _started(how, ports, monkeypatch)
    cl = cluster_store.load()
    logs = cl.node_dir(cl.nodes[0]) / "logs"
    assert (logs / "stdout.log").read_text().splitlines() == ["up", "start", "start"]
    assert (logs / "stdout.log.1").read_text().splitlines() == ["up"]
    assert sorted(name for name in os.listdir(logs) if name.startswith("stdout")) == [
        "stdout.log", "stdout.log.1"]


def test_a_nodes_output_made_again_by_a_start_within_the_run_is_its_users_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node started again within the run (`renkei broker start <node>`) whose stdout.log was
    gone (an operator's clean-up of the logs) made it with open()'s mode, 0644 under the usual
    umask, where a log is its user's alone (0600: renkei.logs.begun): its lines name holders."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    monkeypatch.setattr(process, "java", lambda: _stand_in_java(tmp_path))
    monkeypatch.setattr(process, "_format", lambda cl, java_bin: None)
    monkeypatch.setattr(process, "_wait_ready", lambda cl, pids, timeout: None)
    ports = free_port_pair()
    _started("up", ports, monkeypatch)
    cl = cluster_store.load()
    log = cl.node_dir(cl.nodes[0]) / "logs" / "stdout.log"
    log.unlink()
    umask = os.umask(0o022)  # the usual one: a file open() makes is 0644
    try:
        _started("start", ports, monkeypatch)
    finally:
        os.umask(umask)
    assert log.read_text().splitlines() == ["start"]
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
