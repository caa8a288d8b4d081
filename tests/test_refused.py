"""What the broker refuses: a principal whose password it refuses is told so in one line and
stops, instead of waiting for ever as though the broker were away (aiokafka reports both the
same way); a service whose view (the legal pattern list, the holder directory) can no longer be
read stops too, with why, instead of acting on a stale copy."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramMechanism,
    UserScramCredentialDeletion,
)

from broker import acls, provision, topics
from broker.clients import BrokerRefused, KafkaAccess, started
from broker.cluster import Cluster
from broker.credentials import Credentials
from broker.provision import admin_client
from renkei import town as town_setup
from renkei.compacted import CompactedView, NotFollowing
from renkei.state import read_json, write_json
from tests import store_helpers
from tests.kafka_helpers import said_in_one_line, spawn, stop, unreadable

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
    secret = _own_state(state_dir, broker, tmp_path, monkeypatch) / "secrets" / f"{principal}.json"
    right = read_json(secret)["password"]
    write_json(secret, {"username": principal, "password": WRONG}, private=True)
    log = tmp_path / "service.log"
    proc = spawn(*(a.format(tmp=tmp_path, holder=holders[0]) for a in command), log=log)
    try:
        assert proc.wait(30) == 1, log.read_text()
    finally:
        stop(proc)
    text = log.read_text()
    said_in_one_line(text, f"the broker at {broker.bootstrap} refused principal '{principal}'")
    assert WRONG not in text and right not in text


def _own_state(state_dir: Path, broker: Cluster, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the suite's state folder (secrets, keys, stores), for the processes this test
    starts, on the suite's broker; its path."""
    state = tmp_path / "state"
    store_helpers.copied(state_dir, state, "broker", "logs")
    monkeypatch.setenv("RENKEI_STATE", str(state))
    monkeypatch.setenv("RENKEI_BOOTSTRAP", broker.bootstrap)
    return state


async def test_a_view_whose_topic_can_no_longer_be_read_says_so(holders: list[str]) -> None:
    view = CompactedView(KafkaAccess.of(holders[1]), topics.DIRECTORY, bytes)
    await view.start()
    try:
        await asyncio.wait_for(view.loaded(), 30)
        view.check()  # following
        with unreadable(holders[1], topics.DIRECTORY):
            deadline = time.monotonic() + 20
            with pytest.raises(NotFollowing, match=r"stopped following renkei\.directory: .*"
                                                   r"TopicAuthorizationFailed"):
                while time.monotonic() < deadline:
                    view.check()
                    await asyncio.sleep(0.2)
    finally:
        await view.stop()


@pytest.fixture
def platform_b(town: town_setup.Town, broker: Cluster, state_dir: Path, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A principal of its own with the platform's grants, as the platform of a state folder of
    its own (so that taking its grants away leaves the suite's platform alone)."""
    principal = "platform-b"
    creds = Credentials(principal, secrets.token_urlsafe(24))
    admin = admin_client()
    provision.ensure_principal(admin, creds, provision.Report())
    provision.ensure_grants(admin, principal, acls.SERVICE_GRANTS[acls.PLATFORM],
                            provision.Report())
    write_json(_own_state(state_dir, broker, tmp_path, monkeypatch) / "secrets"
               / f"{acls.PLATFORM}.json", {"username": principal, "password": creds.password},
               private=True)
    try:
        yield principal
    finally:
        every = AclBindingFilter(  # None: any name, any host (the stubs say str)
            ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{principal}",  # type: ignore[arg-type]
            None, AclOperation.ANY, AclPermissionType.ANY)  # type: ignore[arg-type]
        for done in admin.delete_acls([every]).values():
            done.result()
        for done in admin.alter_user_scram_credentials([UserScramCredentialDeletion(
                principal, ScramMechanism.SCRAM_SHA_512)]).values():
            done.result()


@pytest.fixture
def bare_holder(holders: list[str]) -> str:
    return holders[1]


VIEWS_READ = {  # the principal's fixture, the topic taken from it, the command, its ready line
    # it would approve under a pattern list it can no longer keep up to date
    "platform": ("platform_b", topics.PATTERNS, ("platform", "run", "--loglevel", "info"),
                 "took over decision partition"),
    # it would seal answers with keys from a directory it can no longer keep up to date
    "holder": ("bare_holder", topics.DIRECTORY, ("holder", "run", "{principal}"),
               "communication server on"),
}


@pytest.mark.parametrize("service", VIEWS_READ)
def test_a_service_whose_view_can_no_longer_be_read_stops_and_says_why(
        service: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    fixture, topic, command, ready = VIEWS_READ[service]
    principal = request.getfixturevalue(fixture)
    log = tmp_path / "service.log"
    proc = spawn(*(word.format(principal=principal) for word in command), log=log)
    try:
        deadline = time.monotonic() + 60
        while ready not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        assert ready in log.read_text(), log.read_text()
        with unreadable(principal, topic):
            began = time.monotonic()
            assert proc.wait(30) == 1, log.read_text()
            print(f"\n{service}: stopped {time.monotonic() - began:.1f} s after its grant went")
    finally:
        stop(proc)
    said_in_one_line(log.read_text(), f"stopped following {topic}: ")
