"""A principal whose password the broker refuses is told so in one line and stops, instead of
waiting for ever as though the broker were away (aiokafka reports both the same way)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from broker import acls
from broker.clients import BrokerRefused, KafkaAccess, started
from broker.cluster import Cluster
from broker.credentials import Credentials
from renkei.state import read_json, write_json
from tests.kafka_helpers import spawn, stop

WRONG = "not-the-password-the-broker-has"


async def test_a_refused_log_in_is_raised_at_once_not_waited_on(broker: Cluster) -> None:
    access = KafkaAccess(broker.bootstrap, Credentials(acls.PLATFORM, WRONG))
    producer = AIOKafkaProducer(**access.aiokafka())
    began = time.monotonic()
    try:
        with pytest.raises(BrokerRefused, match=f"refused principal '{acls.PLATFORM}'") as refused:
            await started(producer, access)
    finally:
        await producer.stop()
    assert time.monotonic() - began < 10
    assert WRONG not in str(refused.value)


@pytest.mark.parametrize("command", [
    ("platform", "run"), ("audit", "run", "--db", "{tmp}/audit.db"), ("authority", "serve"),
    ("holder", "run", "{holder}"), ("portal", "--port", "0")], ids=lambda c: c[0])
def test_a_service_whose_log_in_is_refused_says_so_and_exits(
        command: tuple[str, ...], holders: list[str], broker: Cluster, state_dir: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    principal = {"platform": acls.PLATFORM, "audit": acls.AUDIT, "authority": acls.AUTHORITY,
                 "holder": holders[0], "portal": acls.PORTAL}[command[0]]
    state = tmp_path / "state"  # the suite's state, but with another password for `principal`
    shutil.copytree(state_dir, state, ignore=shutil.ignore_patterns("broker", "logs"))
    secret = state / "secrets" / f"{principal}.json"
    right = read_json(secret)["password"]
    write_json(secret, {"username": principal, "password": WRONG}, private=True)
    monkeypatch.setenv("RENKEI_STATE", str(state))
    monkeypatch.setenv("RENKEI_BOOTSTRAP", broker.bootstrap)
    log = tmp_path / "service.log"
    proc = spawn(*(a.format(tmp=tmp_path, holder=holders[0]) for a in command), log=log)
    try:
        assert proc.wait(30) == 1, log.read_text()
    finally:
        stop(proc)
    text = log.read_text()
    assert f"Error: the broker at {broker.bootstrap} refused principal '{principal}'" in text, text
    assert "Traceback" not in text and "Unclosed" not in text, text
    assert WRONG not in text and right not in text
