"""The foundation: a real, secured Kafka broker that the project starts and provisions."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from aiokafka.protocol.admin import DescribeAclsRequest
from click.testing import CliRunner
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from broker import acls, clients, credentials, in_force, provision, topics
from broker.acls import Grant
from broker.clients import KafkaAccess
from broker.cluster import Cluster
from broker.credentials import Credentials
from broker.provision import admin_client
from holders.ping import ping
from renkei.cli import main
from renkei.state import STATE_ENV, state_dir, state_folder
from renkei.town import Processes, Town
from tests.kafka_helpers import (
    consumer,
    free_port,
    free_port_pair,
    producer,
    renkei,
    said_in_one_line,
    wait_assigned,
)
from tests.loop_helpers import Deadline

TIMESTAMP_TYPE = "message.timestamp.type"


async def test_round_trip_with_aiokafka(holders: list[str]) -> None:
    """A holder's message to its outbox is read back by the platform principal."""
    holder = holders[0]
    platform = KafkaAccess.of("platform")
    async with consumer(platform, topics.outbox(holder), group="renkei-platform-test") as cons:
        await wait_assigned(cons)
        async with producer(KafkaAccess.of(holder)) as prod:
            await prod.send_and_wait(topics.outbox(holder), b"round trip", key=b"k1")
        record = await asyncio.wait_for(cons.getone(), 20)
    assert record.value == b"round trip" and record.key == b"k1"


async def test_message_through_the_platform_processor(platform: object,
                                                      holders: list[str]) -> None:
    result = await ping(holders[0], within=90)
    assert result.pong.request_id == result.ping.request_id
    assert result.pong.answered_at >= result.ping.sent_at


UP = {"platform-1": "platform 1 up on the broker at {at}: the holders' linkage requests",
      "registry": "registry up on the broker at {at}: the platform's look-ups",
      "authority": "authority up on the broker at {at}: holders' personal-number look-ups",
      "audit": "audit consumer 1 up on the broker at {at}: the audit topic into {state}"}


def test_each_service_says_it_is_up_and_what_it_serves(platform: Processes,
                                                        broker: Cluster) -> None:
    """Once it serves, in one line on stdout whatever the log level (the town's platform logs
    at info, the others at the default, warning): they said nothing, an operator could not
    tell one up from one still waiting for the broker."""
    for name, up in UP.items():
        said = up.format(at=broker.bootstrap, state=state_dir())
        log = state_dir() / "logs" / f"{name}.log"
        deadline = Deadline(20, f"{said!r} in {log}")
        while said not in (text := log.read_text(errors="replace")):
            deadline.check(text[-2000:])
            time.sleep(0.2)


async def test_holder_cannot_read_another_holders_inbox(holders: list[str]) -> None:
    a, b = holders
    with pytest.raises(TopicAuthorizationFailedError):
        async with consumer(KafkaAccess.of(a), topics.inbox(b), group=f"renkei.holder.{a}.x"):
            pass


async def test_holder_cannot_write_another_holders_outbox(holders: list[str]) -> None:
    a, b = holders
    async with producer(KafkaAccess.of(a)) as prod:
        with pytest.raises(TopicAuthorizationFailedError):
            await prod.send_and_wait(topics.outbox(b), b"forged")


async def test_holder_cannot_write_its_own_inbox_nor_read_the_audit_log(
        holders: list[str]) -> None:
    a = holders[0]
    async with producer(KafkaAccess.of(a)) as prod:
        with pytest.raises(TopicAuthorizationFailedError):
            await prod.send_and_wait(topics.inbox(a), b"self-served answer")
    with pytest.raises(TopicAuthorizationFailedError):
        async with consumer(KafkaAccess.of(a), topics.AUDIT, group=f"renkei.holder.{a}.y"):
            pass


async def test_a_grant_is_in_force_when_ensure_grants_returns(broker: Cluster) -> None:
    """A new principal logs in at once, and sends at once to the topic it was just granted: the
    broker had not always applied its password, or its grant, yet."""
    topic, admin = "renkei.test.prompt", admin_client()
    for made in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        made.result()
    for n in range(8):
        creds = Credentials(f"prompt-{n}", secrets.token_urlsafe(24))
        provision.ensure_principal(admin, creds, provision.Report())
        async with producer(KafkaAccess(broker.bootstrap, creds)) as prod:
            provision.ensure_grants(admin, creds.username,
                                    [Grant("topic", topic, ("WRITE", "DESCRIBE"))],
                                    provision.Report())
            await prod.send_and_wait(topic, b"at once")


async def test_provisioning_again_takes_back_the_portals_write_on_the_audit_topic(
        town: Town) -> None:
    """A deployment provisioned before the portal had a topic of its own for its access-log
    events let it write the audit topic: provisioned again, that grant is gone when it returns."""
    await asyncio.to_thread(provision.ensure_grants, admin_client(), acls.PORTAL,
                            acls.REVOKED[acls.PORTAL], provision.Report())
    report = await asyncio.to_thread(provision.provisioned_again)
    assert report is not None
    lines = report.lines()  # other tests' holders may have lines of their own before
    assert "ACL entries taken back: 2" in lines, lines
    assert lines[lines.index("ACL entries taken back: 2") + 1] == \
        f"  User:{acls.PORTAL} may WRITE, DESCRIBE on topic {topics.AUDIT}", lines
    async with producer(KafkaAccess.of(acls.PORTAL)) as prod:
        with pytest.raises(TopicAuthorizationFailedError):
            await prod.send_and_wait(topics.AUDIT, b"an event the platform did not write")


def test_the_wait_for_new_log_ins_asks_them_at_once(
        broker: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The principals a run made are waited for together (each log-in ~15-19 ms of SCRAM), not
    one after another, and each is let in when the wait returns."""
    admin, tag = admin_client(), secrets.token_hex(3)
    made = [Credentials(f"together-{tag}-{n}", secrets.token_urlsafe(24)) for n in range(8)]
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, provision.SCRAM_ITERATIONS)
    for done in admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(c.username, info, c.password.encode())
            for c in made]).values():
        done.result()
    in_flight, most, real = 0, 0, in_force._logs_in

    async def logs_in(host: str, port: int, access: KafkaAccess) -> bool:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await real(host, port, access)
        finally:
            in_flight -= 1

    monkeypatch.setattr(in_force, "_logs_in", logs_in)
    in_force.in_force(provision.admin_access(), logins=made)
    assert most > 1
    assert clients.asked([KafkaAccess(broker.bootstrap, c) for c in made]) == clients.LogIns(
        [], [])


def test_provisioning_reports_what_it_created_and_counts_what_was_there(
        broker: Cluster) -> None:
    """Made again, a principal and its grants are counted as there, not listed as created."""
    admin, name = admin_client(), f"reported-{secrets.token_hex(4)}"
    grants = [Grant("topic", "renkei.test.reported", ("READ", "DESCRIBE")),
              Grant("group", "renkei.test.reported", ("READ",), "prefixed")]
    first, again, creds = provision.Report(), provision.Report(), Credentials(
        name, secrets.token_urlsafe(24))
    for report in (first, again):
        provision.ensure_principal(admin, creds, report)
        provision.ensure_grants(admin, name, grants, report)
    assert first.lines() == [
        "topics created: none", "topic configs brought to spec: none",
        "topics given more partitions: none", f"principals created: {name}",
        "passwords reset to the state folder's: none", "ACL entries created: 3",
        f"  User:{name} may READ, DESCRIBE on topic renkei.test.reported",
        f"  User:{name} may READ on group renkei.test.reported*",
        "already there: 0 topics, 0 principals (passwords set to the state folder's), "
        "0 ACL entries"]
    assert again.lines()[3:] == [
        "principals created: none", "passwords reset to the state folder's: none",
        "ACL entries created: none",
        "already there: 0 topics, 1 principals (passwords set to the state folder's), "
        "3 ACL entries"]


def test_a_password_reset_to_the_state_folders_is_said_in_the_report(broker: Cluster) -> None:
    """A principal whose password the broker has another of (changed in the state folder) is
    named as reset, its password nowhere in the report; one that logs in is not."""
    admin, name = admin_client(), f"reset-{secrets.token_hex(4)}"
    old, new = (Credentials(name, secrets.token_urlsafe(24)) for _ in range(2))
    reports = provision.Report(), provision.Report(), provision.Report()
    for creds, report in zip((old, new, new), reports, strict=True):
        provision.ensure_principal(admin, creds, report)
    assert [r.reset for r in reports] == [[], [name], []]
    assert f"passwords reset to the state folder's: {name}" in reports[1].lines()
    assert not any(new.password in line or old.password in line for line in reports[1].lines())


def test_a_principal_with_no_credentials_the_brokers_log_in_by_is_not_said_reset(
        broker: Cluster) -> None:
    """A principal the broker has SCRAM-SHA-256 credentials only for, which no broker lets log
    in (they take SCRAM-SHA-512 alone), is given the state folder's password, counted as there,
    not named as reset: no password it logged in with was changed."""
    admin = admin_client()
    creds = Credentials(f"sha256-{secrets.token_hex(4)}", secrets.token_urlsafe(24))
    sha256 = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, provision.SCRAM_ITERATIONS)
    for done in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            creds.username, sha256, creds.password.encode())]).values():
        done.result()
    report = provision.Report()
    provision.ensure_principal(admin, creds, report)
    assert (report.reset, report.principals, report.principals_there) == ([], [], 1)
    assert clients.asked([KafkaAccess(broker.bootstrap, creds)]) == clients.LogIns([], [])


def _mechanisms(admin: Any, username: str) -> list[ScramMechanism]:
    """The mechanisms of the SCRAM credentials the broker has for `username`."""
    described = admin.describe_user_scram_credentials([username])
    assert isinstance(described, dict)  # one future per user asked for
    return [info.mechanism for info in described[username].result().scram_credential_infos]


def test_credentials_of_a_mechanism_no_broker_logs_in_by_are_removed_and_said(
        broker: Cluster) -> None:
    """A principal's SCRAM-SHA-256 credential (a password no run set, which a broker taking that
    mechanism would let log in) is removed, whether the principal has a SCRAM-SHA-512 one of the
    state folder's password or none, each named with its mechanism, no password in the report;
    the principal logs in with the state folder's password."""
    admin, tag = admin_client(), secrets.token_hex(3)
    alone, beside = (Credentials(f"{name}-{tag}", secrets.token_urlsafe(24))
                     for name in ("sha256-alone", "sha256-beside"))
    provision.ensure_principal(admin, beside, provision.Report())
    sha256 = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, provision.SCRAM_ITERATIONS)
    for done in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            creds.username, sha256, secrets.token_bytes(16)) for creds in (alone, beside)]
            ).values():
        done.result()
    report = provision.Report()
    for creds in (alone, beside):
        provision.ensure_principal(admin, creds, report)
    assert [_mechanisms(admin, c.username) for c in (alone, beside)] == [
        [ScramMechanism.SCRAM_SHA_512]] * 2
    assert report.removed == [f"{alone.username} (SCRAM-SHA-256)",
                              f"{beside.username} (SCRAM-SHA-256)"]
    assert (f"credentials of mechanisms no broker logs in by removed: {alone.username} "
            f"(SCRAM-SHA-256), {beside.username} (SCRAM-SHA-256)") in report.lines()
    assert (report.reset, report.principals_there) == ([], 2)
    assert not any(c.password in line for c in (alone, beside) for line in report.lines())
    assert clients.asked([KafkaAccess(broker.bootstrap, c) for c in (alone, beside)]
                         ) == clients.LogIns([], [])
    again = provision.Report()
    provision.ensure_principal(admin, alone, again)
    assert again.removed == [] and not any("removed" in line for line in again.lines())


def test_a_log_in_no_broker_answers_is_said_not_checked_not_let_in(broker: Cluster) -> None:
    """A log-in asked of an address no broker answers at (the OS refuses the connection) is
    neither let in nor refused: not checked, apart from one refused and one let in; one let in
    by a broker and not answered by another is let in by some only."""
    admin, tag = admin_client(), secrets.token_hex(3)
    there, away = (Credentials(f"{name}-{tag}", secrets.token_urlsafe(24))
                   for name in ("asked", "away"))
    for creds in (there, away):
        provision.ensure_principal(admin, creds, provision.Report())
    wrong = Credentials(f"wrong-{tag}", "not-the-password")
    nowhere = f"127.0.0.1:{free_port()}"
    answers = clients.asked([KafkaAccess(nowhere, away), KafkaAccess(broker.bootstrap, wrong),
                             KafkaAccess(nowhere, there), KafkaAccess(broker.bootstrap, there)])
    assert answers == clients.LogIns(refused=[wrong.username], unanswered=[away.username],
                                     behind=[there.username])


def test_principals_not_checked_or_behind_have_report_lines_of_their_own() -> None:
    """A principal whose log-in no broker answered, and one some brokers let in and not every
    one, are named apart, not among those reset; each line is there only when one is."""
    report = provision.Report(reset=["a"], unchecked=["b", "c"], behind=["d"])
    assert report.lines()[4:7] == [
        "passwords reset to the state folder's: a", "passwords not checked (no answer): b, c",
        "passwords set again for brokers behind (some let them in): d"]
    assert not any("not checked" in line or "behind" in line
                   for line in provision.Report().lines())


def test_a_password_that_logs_in_as_a_run_sets_it_is_neither_set_again_nor_waited_for(
        broker: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A principal there whose password logs in as a run sets it (SCRAM-SHA-512, its iteration
    count) is left as it is, no broker asked again to let it in; one of an older iteration
    count is set again, as a run sets it."""
    admin = admin_client()
    creds = Credentials(f"as-set-{secrets.token_hex(4)}", secrets.token_urlsafe(24))
    older = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, provision.SCRAM_ITERATIONS // 2)
    for done in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            creds.username, older, creds.password.encode())]).values():
        done.result()
    in_force.in_force(provision.admin_access(), logins=[creds])
    waited: list[str] = []
    real = in_force._logs_in

    async def logs_in(host: str, port: int, access: KafkaAccess) -> bool:
        waited.append(access.principal)
        return await real(host, port, access)

    monkeypatch.setattr(in_force, "_logs_in", logs_in)
    reports = provision.Report(), provision.Report()
    provision.ensure_principal(admin, creds, reports[0])
    assert creds.username in waited
    described = admin.describe_user_scram_credentials([creds.username])
    assert isinstance(described, dict)  # one future per user asked for
    assert [info.iterations for info in described[creds.username].result().scram_credential_infos
            ] == [provision.SCRAM_ITERATIONS]
    waited.clear()
    provision.ensure_principal(admin, creds, reports[1])
    assert waited == []
    assert [(r.reset, r.principals_there) for r in reports] == [([], 1), ([], 1)]


def test_holders_added_at_once_name_only_the_one_whose_password_was_reset(
        broker: Cluster) -> None:
    """Holders added again in one run (their log-ins asked at once, their passwords set in one
    request): only the one whose password the state folder changed is named as reset."""
    admin, tag = admin_client(), secrets.token_hex(3)
    holders = [f"batch-{tag}-{n}" for n in range(3)]
    provision.add_holders(admin, holders, provision.Report())
    credentials._path(holders[2]).unlink()  # a new password for it, issued by the next run
    again = provision.Report()
    provision.add_holders(admin, holders, again)
    assert (again.reset, again.principals, again.principals_there) == ([holders[2]], [], 3)


def _counted(calls: Counter[str], name: str, real: Callable[..., Any]) -> Callable[..., Any]:
    """`real`, each call counted in `calls` under `name`."""
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return real(*args, **kwargs)
    return counted


def test_holders_added_at_once_have_their_topics_listed_and_described_once(
        broker: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Holders added in one run, new or again: their topics listed in one request and their
    configs described in one, not in a request each holder."""
    admin, tag = admin_client(), secrets.token_hex(3)
    holders = [f"listed-{tag}-{n}" for n in range(3)]
    calls: Counter[str] = Counter()
    for name in ("list_topics", "describe_configs"):
        monkeypatch.setattr(admin, name, _counted(calls, name, getattr(admin, name)))
    reports = provision.Report(), provision.Report()
    provision.add_holders(admin, holders, reports[0])
    assert (calls, len(reports[0].created)) == (Counter(list_topics=1), 2 * len(holders))
    calls.clear()
    provision.add_holders(admin, holders, reports[1])
    assert (calls, reports[1].topics_there) == (
        Counter(list_topics=1, describe_configs=1), 2 * len(holders))


def _operations(grants: dict[str, tuple[Grant, ...]]) -> int:
    """How many ACL entries give each principal of `grants` its grants."""
    return sum(len(grant.operations) for held in grants.values() for grant in held)


def test_a_run_asks_the_acl_entries_of_all_its_principals_in_one_request(
        broker: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run over holders, and one over the whole spec (services, grants taken back, holders):
    the ACL entries of every principal asked in one request, not one a principal; made again,
    each counted as there."""
    admin, tag = admin_client(), secrets.token_hex(3)
    holders = [f"bound-{tag}-{n}" for n in range(3)]
    calls: Counter[str] = Counter()
    monkeypatch.setattr(admin, "describe_acls",
                        _counted(calls, "describe_acls", admin.describe_acls))
    added = provision.Report()
    provision.add_holders(admin, holders, added)
    assert (calls["describe_acls"], len(added.acls)) == (
        1, sum(_operations(acls.holder_grants(holder)) for holder in holders))
    monkeypatch.setattr(provision, "admin_client", lambda: admin)
    runs = [provision.provision() for _ in range(2)]
    assert (calls["describe_acls"], runs[1].acls, runs[1].revoked) == (3, [], [])
    registered = {h for t in admin.list_topics().topics if (h := topics.holder_of_outbox(t))}
    assert runs[1].acls_there == _operations(acls.SERVICE_GRANTS) + sum(
        _operations(acls.holder_grants(holder)) for holder in registered)


def test_a_run_over_the_whole_spec_lists_the_topics_once(
        broker: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform topics, the holders registered (their outboxes) and the holders' topics are
    one listing's answer: `broker provision`, and a broker provisioned again (which first looks
    for a platform topic), list the topics in one request."""
    admin, calls = admin_client(), Counter[str]()
    provision.add_holders(admin, [f"listed-once-{secrets.token_hex(3)}"], provision.Report())
    monkeypatch.setattr(admin, "list_topics", _counted(calls, "list_topics", admin.list_topics))
    monkeypatch.setattr(provision, "admin_client", lambda: admin)
    provision.provision()
    assert calls["list_topics"] == 1
    report = provision.provisioned_again()
    assert calls["list_topics"] == 2
    assert report is not None and report.created == [] and report.topics_there > 2


def test_grants_not_in_force_in_time_are_said_in_one_line(
        broker: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker that never applies the ACLs the controller committed (a stand-in for one that
    lags): `broker provision` says so in one line, exit code 1, as for a request refused."""
    async def never(*_: object) -> set[in_force.Entry]:
        return set()

    monkeypatch.setattr(in_force, "_enforced", never)
    monkeypatch.setattr(in_force, "WITHIN", 0.1)
    run = CliRunner().invoke(main, ["broker", "provision"])
    assert run.exit_code == 1, run.output
    said_in_one_line(run.output, "provisioning failed: ACLs of User:")
    assert f"User:{acls.AUDIT}, " in run.output
    assert " on broker 1 not in force within 0.1 s" in run.output


def test_the_wait_for_acls_asks_each_broker_once_for_every_principal(
        broker: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's ACL entries are waited for in one DescribeAcls a broker for all their principals
    (one a principal: ~21 requests a broker a look for 20 holders), in force once each wanted
    entry is there and none revoked is: the principals lagging named."""
    admin, tag = admin_client(), secrets.token_hex(3)
    grants = [Grant("topic", f"renkei.test.asked-once-{tag}", ("READ", "DESCRIBE"))]
    principals = [f"asked-once-{tag}-{n}" for n in range(3)]
    for principal in principals[:2]:
        provision.ensure_grants(admin, principal, grants, provision.Report())
    held = [b for p in principals[:2] for b in provision._bindings(p, grants).values()]
    absent = list(provision._bindings(principals[2], grants).values())
    asked: list[tuple[int, str | None]] = []
    send = AIOKafkaClient.send

    async def counted(client: AIOKafkaClient, node: int, request: Any, *args: Any) -> Any:
        if isinstance(request, DescribeAclsRequest):
            asked.append((node, request._principal))
        return await send(client, node, request, *args)

    monkeypatch.setattr(AIOKafkaClient, "send", counted)
    in_force.in_force(provision.admin_access(), held, revoked=absent)
    assert asked == [(1, None)]
    monkeypatch.setattr(in_force, "WITHIN", 0.1)
    for wanted, revoked, lagging in ((held + absent, [], principals[2]),
                                     (held[:2], held[2:], principals[1])):
        with pytest.raises(in_force.NotInForce,
                           match=f"^ACLs of User:{lagging} on broker 1 not in force"):
            in_force.in_force(provision.admin_access(), wanted, revoked=revoked)


async def test_wrong_password_is_refused(broker: Cluster, holders: list[str]) -> None:
    access = KafkaAccess(broker.bootstrap, Credentials(holders[0], "not-the-password"))
    with pytest.raises(KafkaError):
        async with producer(access):
            pass


async def test_no_credentials_is_refused(broker: Cluster) -> None:
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
    with pytest.raises(KafkaError):
        await asyncio.wait_for(prod.start(), 30)
    await prod.stop()


def test_up_is_idempotent_and_data_survives_down_up(tmp_path: Path) -> None:
    """A second broker of its own: up twice, write, down, up, read back."""
    port, controller = free_port_pair()
    env = {STATE_ENV: str(tmp_path)}
    first = renkei("broker", "up", "--port", str(port), "--controller-port", str(controller),
                   env=env)
    assert "broker up" in first.stdout
    again = renkei("broker", "up", "--port", str(port), "--controller-port", str(controller),
                   env=env)
    assert "already running" in again.stdout
    try:
        renkei("broker", "provision", env=env)
        renkei("broker", "add-holder", "keeper", env=env)
        asyncio.run(_write_then_read(tmp_path, keep=True))
        with state_folder(tmp_path):
            _provisioned_by_an_older_version("keeper")
        down = renkei("broker", "down", env=env)
        assert "stopped" in down.stdout
        assert renkei("broker", "status", env=env, check=False).returncode == 3
        up = renkei("broker", "up", env=env)
        assert "provisioned again" in up.stdout, up.stdout
        asyncio.run(_write_then_read(tmp_path, keep=False))
        with state_folder(tmp_path):
            assert _to_spec("keeper")
    finally:
        renkei("broker", "down", env=env, check=False)


def test_a_command_on_a_broker_never_provisioned_says_so_at_once(tmp_path: Path) -> None:
    """A newcomer's `broker up` then `patterns publish`, no `broker provision` between: each
    command once waited for its topic (40 s and on), logging that it was not found."""
    port, controller = free_port_pair()
    env = {STATE_ENV: str(tmp_path)}
    renkei("broker", "up", "--port", str(port), "--controller-port", str(controller), env=env)
    try:
        renkei("keys", "init", env=env)
        for args in (("patterns", "publish"), ("directory", "publish-services"),
                     ("holder", "register", "city-a", "--name", "桜町", "--role", "municipality")):
            began = time.monotonic()
            run = renkei(*args, env=env, check=False, timeout=30)
            assert run.returncode == 1, run.stdout
            said_in_one_line(run.stderr, "on the broker at 127.0.0.1:")
            assert "run `renkei broker provision`" in run.stderr
            assert time.monotonic() - began < 20  # half that wait: a start alone can take 7 s
    finally:
        renkei("broker", "down", env=env, check=False)

def _provisioned_by_an_older_version(holder: str) -> None:
    """The holder's broker as before b795aaa and 2d250af: no READ on its outbox, its inbox
    stamped by its writers' clocks (CreateTime)."""
    admin = admin_client()
    for deleted in admin.delete_acls([_outbox_read(holder)]).values():
        assert deleted.result()
    inbox = ConfigResource(ConfigResource.Type.TOPIC, topics.inbox(holder), incremental_configs=[
        ConfigEntry(TIMESTAMP_TYPE, "CreateTime", incremental_operation=AlterConfigOpType.SET)])
    for done in admin.incremental_alter_configs([inbox]).values():
        done.result()
    assert not _to_spec(holder)


def _to_spec(holder: str) -> bool:
    """The holder may read its outbox and the broker stamps its inbox."""
    admin = admin_client()
    grants = admin.describe_acls(_outbox_read(holder)).result()
    inbox = ConfigResource(ConfigResource.Type.TOPIC, topics.inbox(holder))
    stamped = next(iter(admin.describe_configs([inbox]).values())).result()[TIMESTAMP_TYPE]
    return bool(grants) and stamped.value == "LogAppendTime"


def _outbox_read(holder: str) -> AclBindingFilter:
    return AclBindingFilter(ResourceType.TOPIC, topics.outbox(holder), ResourcePatternType.LITERAL,
                            f"User:{holder}", "*", AclOperation.READ, AclPermissionType.ALLOW)


async def _write_then_read(state: Path, keep: bool) -> None:
    with state_folder(state):
        platform = KafkaAccess.of("platform")
        if keep:
            async with producer(KafkaAccess.of("keeper")) as prod:
                await prod.send_and_wait(topics.outbox("keeper"), b"kept across restarts")
        async with consumer(platform, topics.outbox("keeper"), offset="earliest") as cons:
            record = await asyncio.wait_for(cons.getone(), 30)
        assert record.value == b"kept across restarts"


def test_port_taken_is_a_clear_error(broker: Cluster, tmp_path: Path) -> None:
    taken = broker.nodes[0].client_port
    result = renkei("broker", "up", "--port", str(taken), "--controller-port",
                    str(free_port_pair()[0]), env={STATE_ENV: str(tmp_path)}, check=False)
    assert result.returncode != 0
    assert f"port {taken}" in result.stderr and "taken" in result.stderr


@pytest.mark.parametrize("planned", [False, True])
@pytest.mark.parametrize("zero", [0, 1])
def test_port_0_is_refused_not_taken_for_the_default(tmp_path: Path, planned: bool, zero: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """As `broker up --port` refuses 0 (its ports are kept for its restarts), so does
    process.up, for a new cluster and a planned one: not the default or planned port."""
    from broker import cluster as cluster_store
    from broker import process

    def started(*_: object, **__: object) -> None:
        raise AssertionError("a node was formatted or started")

    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    monkeypatch.setattr(process, "_format", started)
    monkeypatch.setattr(process, "_start", started)
    ports = list(free_port_pair())
    if planned:
        cluster_store.save(cluster_store.plan(*ports))
    ports[zero] = 0
    with pytest.raises(process.BrokerError, match=r"^port 0 \(any free one\) cannot be"):
        process.up(ports[0], ports[1])
    assert planned or not (tmp_path / "broker").exists()


def test_missing_java_is_a_clear_error(tmp_path: Path) -> None:
    result = renkei("broker", "up", env={STATE_ENV: str(tmp_path),
                                         "JAVA_HOME": str(tmp_path / "no-jdk")}, check=False)
    assert result.returncode != 0
    assert "Java is missing" in result.stderr


def _jdk(folder: Path, version: str) -> Path:
    """A stand-in `java` that reports `version` as a JDK's launcher does (on stderr)."""
    java_bin = folder / "bin" / "java"
    java_bin.parent.mkdir(parents=True)
    java_bin.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2026-01-20' >&2\n")
    java_bin.chmod(0o755)
    return java_bin


def test_the_broker_runs_on_the_newest_jdk_unless_java_home_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from broker import process

    monkeypatch.setattr(process, "JVMS", tmp_path / "jvm")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    old = _jdk(tmp_path / "jvm" / "jdk-17", "17.0.15")
    new = _jdk(tmp_path / "jvm" / "jdk-25", "25.0.3")
    assert process.java() == str(new)
    monkeypatch.setenv("JAVA_HOME", str(old.parent.parent))
    assert process.java() == str(old)
    monkeypatch.setenv("JAVA_HOME", str(_jdk(tmp_path / "jdk-11", "11.0.2").parent.parent))
    with pytest.raises(process.BrokerError, match="Java 11"):
        process.java()
    broken = tmp_path / "broken" / "bin" / "java"
    broken.parent.mkdir(parents=True)
    broken.write_text("not a program")  # not executable: it cannot say its version
    monkeypatch.setenv("JAVA_HOME", str(broken.parent.parent))
    with pytest.raises(process.BrokerError, match="of no version it says"):
        process.java()


def test_a_cluster_id_starting_with_a_dash_formats(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One id in 64 starts with '-': the storage tool must not read it as an option."""
    from broker import cluster as cluster_store
    from broker import process

    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    monkeypatch.setattr(cluster_store, "new_cluster_id", lambda: "-" + "A" * 21)
    port, controller = free_port_pair()
    cl, started = process.up(port, controller, tethered=True)
    try:
        assert started and cl.cluster_id.startswith("-")
    finally:
        process.down()


def test_the_admins_password_is_on_no_command_line(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Any local user reads a command line in /proc: formatting takes the admin's SCRAM
    credential from an argument file of this user's (gone once formatted)."""
    from broker import config, credentials, process

    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    started_with: list[str] = []
    popen = subprocess.Popen

    def popen_seen(args: list[str], *rest: Any, **options: Any) -> subprocess.Popen[Any]:
        started_with.extend(args)
        return popen(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", popen_seen)
    _, started = process.up(*free_port_pair(), tethered=True)
    try:
        password = credentials.load(config.ADMIN).password
        assert started and any(a.startswith("@") for a in started_with)
        assert not any(password in a for a in started_with)
        assert list(tmp_path.rglob("format.args")) == []
    finally:
        process.down()


def test_a_tethered_node_reads_as_running_from_the_moment_it_is_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through setpriv the JVM is exec'd after Popen has returned, and while an exec is under
    way the command line reads empty: read then, the node looked as though it had exited
    during start-up, and the whole suite failed in CI. Here the exec comes 0.2 s late, as on
    a machine whose disk cache is cold."""
    from broker import cluster as cluster_store
    from broker import process

    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    monkeypatch.setattr(process, "TETHER",
                        ["sh", "-c", 'sleep 0.2; exec "$@"', "late", *process.TETHER])
    cl = cluster_store.plan(*free_port_pair())
    pid = process._start(cl, cl.nodes[0], process.java(), tethered=True)
    reads = []
    try:
        deadline = time.monotonic() + 1  # long before the JVM could end
        while time.monotonic() < deadline:
            reads.append(process._alive(pid))
    finally:
        os.kill(pid, signal.SIGKILL)
    assert all(reads), f"read as gone {reads.count(False)} times of {len(reads)}"
