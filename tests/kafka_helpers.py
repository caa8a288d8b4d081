"""Test helpers that talk to the real broker as a given principal."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    contextmanager,
    suppress,
)
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiokafka.client
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import AIOKafkaConnection
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String
from aiokafka.structs import ConsumerRecord
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from audit.events import AccessLogEvent, OperatorAction
from audit.topic import read_events
from broker import config, topics
from broker.clients import KafkaAccess, at_end, read_topic, running
from broker.ports import free_port as free_port  # re-exported for the tests
from broker.ports import free_port_pair as free_port_pair
from broker.provision import admin_client, binding_filter
from processors import directory, keys
from renkei.broker_time import LOG_APPEND_TIME
from renkei.envelope import Send, send, unpacked
from renkei.service_loop import deliver, producer_for
from renkei.state import file_awaited
from renkei.tether import tethered
from schemas.codec import CODEC
from schemas.messages import HolderEntry, HolderLogRequest, Rejection
from tests.loop_helpers import Deadline


def create_known(admin: AdminClient, topic: str, within: float = 30.0) -> None:
    """Create `topic` (one partition) and wait until the broker's metadata has it led: the
    controller acknowledges the creation before the broker has applied it, and a request naming
    the topic until then (an offset commit, a deleteRecords) fails UNKNOWN_TOPIC_OR_PART."""
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(within)
    deadline = time.monotonic() + within
    while not _led(admin, topic):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker's metadata has no leader of {topic} after {within:g} s")
        time.sleep(0.05)


def made_topic(topic: str, configs: dict[str, str] | None = None, partitions: int = 1) -> None:
    """A topic of one partition (or `partitions`) on the test broker."""
    admin = admin_client()  # kept: its futures fail if it is collected first
    admin.create_topics([NewTopic(topic, partitions, 1, config=configs or {})])[topic].result(30)


def _led(admin: AdminClient, topic: str) -> bool:
    found = admin.list_topics(topic, timeout=10).topics[topic]
    return found.error is None and all(p.leader >= 0 for p in found.partitions.values())


@asynccontextmanager
async def producer(access: KafkaAccess) -> AsyncIterator[AIOKafkaProducer]:
    prod = AIOKafkaProducer(**access.aiokafka(), acks="all")
    try:  # closed also when its start is refused (else aiokafka logs it as unclosed)
        await prod.start()
        yield prod
    finally:
        await prod.stop()


@asynccontextmanager
async def consumer(access: KafkaAccess, *names: str, group: str | None = None,
                   offset: str = "latest") -> AsyncIterator[AIOKafkaConsumer]:
    cons = AIOKafkaConsumer(*names, **access.reading(), group_id=group,
                            auto_offset_reset=offset, enable_auto_commit=False)
    try:  # closed also when its start is refused (else aiokafka logs it as unclosed)
        await cons.start()
        yield cons
    finally:
        await cons.stop()


async def wait_assigned(cons: AIOKafkaConsumer, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not cons.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError("consumer got no partitions")
        await asyncio.sleep(0.05)
    for tp in cons.assignment():
        await cons.position(tp)


@contextmanager
def unreadable(principal: str, topic: str) -> Iterator[None]:
    """`principal` may no longer read `topic` (its grant deleted), until the block ends."""
    grant = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                       f"User:{principal}", "*", AclOperation.READ, AclPermissionType.ALLOW)
    admin = admin_client()
    deleted = [f.result() for f in admin.delete_acls([binding_filter(grant)]).values()]
    assert deleted == [[grant]], deleted
    try:
        yield
    finally:
        for done in admin.create_acls([grant]).values():
            done.result()


TOLD = 4000  # characters of a failed command's output and errors told


def renkei(*args: str, check: bool = True, env: dict[str, str] | None = None,
           timeout: float = 180, input: str = "") -> subprocess.CompletedProcess[str]:
    """Run the `renkei` command as a newcomer would, `input` on its stdin (personal data is
    given there, never as an argument)."""
    exe = Path(sys.executable).with_name("renkei")
    run = subprocess.run([str(exe), *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=timeout, input=input)
    if check and run.returncode:  # what it said, for a failure seen only in CI's log
        raise AssertionError(f"`renkei {shlex.join(args)}` exited {run.returncode}\n"
                             f"stdout (its end):\n{run.stdout[-TOLD:]}\n"
                             f"stderr (its end):\n{run.stderr[-TOLD:]}")
    return run


def said_in_one_line(text: str, error: str) -> None:
    """The process said `error` in one line (click's), with no traceback, nothing unclosed."""
    assert "Traceback" not in text and "Unclosed" not in text, text
    assert any(line.startswith("Error: ") and error in line for line in text.splitlines()), text


def spawn(*args: str, log: Path, read_only: Sequence[Path] = ()) -> subprocess.Popen[bytes]:
    """Start a long-running `renkei` process (platform, holder, audit …) logging to `log`;
    `read_only`: with these files and folders read-only to it (with_read_only)."""
    exe = Path(sys.executable).with_name("renkei")
    out = log.open("ab")
    command = [str(exe), *args]
    return subprocess.Popen(with_read_only(read_only, command) if read_only else command,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env=tethered())


def listening_on(log: Path, said: str, within: float = 60) -> int:
    """The port a spawned server says it listens on: the number `said` (a pattern) captures
    once its log has that line."""
    deadline = Deadline(within, f"a line {said!r} in {log}")
    while not (found := re.search(said, text := log.read_text(errors="replace"))):
        deadline.check(text[-2000:])
        time.sleep(0.2)
    return int(found.group(1))


def with_read_only(paths: Iterable[Path], command: Sequence[str]) -> list[str]:
    """`command` with `paths` read-only to it, as a container's `:ro` mounts are: each bound
    on itself read-only in a user and mount namespace of its own (for it alone)."""
    mounts = "".join(f"mount --bind {p} {p} && mount -o remount,bind,ro {p} {p} && "
                     for p in map(shlex.quote, map(str, paths)))
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", f'{mounts}exec "$@"',
            "sh", *command]


@functools.cache
def can_mount_read_only() -> bool:
    """Whether this machine lets a process mount in namespaces of its own (with_read_only)."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        tried = subprocess.run(with_read_only([Path(folder)], ["touch", f"{folder}/x"]),
                               capture_output=True, text=True)
        return tried.returncode != 0 and "Read-only file system" in tried.stderr


def stop(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process `pid` stopped (SIGSTOP) until the block ends, then let go on (SIGCONT)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)



async def audit_events(request_ids: set[str] | None = None) -> list[AccessLogEvent]:
    """Every access-log event on the audit topic (optionally only of some requests)."""
    return await read_events(KafkaAccess.of(config.ADMIN), request_ids)


async def operator_actions(start: int, subject: str) -> list[OperatorAction]:
    """The operator actions on `subject` on the audit topic from offset `start`, in order, each
    as often as it is there."""
    return [action for record in await read_topic(KafkaAccess.of(config.ADMIN), topics.AUDIT,
                                                  start)
            for value in unpacked(record.value or b"")
            if CODEC.name_of(value) == "OperatorAction"
            for action in [CODEC.decode(value, OperatorAction)] if action.subject == subject]


class Stopped(Exception):
    """The command's process ending where it is."""


def stops(*_: object) -> Send:
    """In place of processors.directory.logged: the command stops between its directory records
    and its audit record."""
    raise Stopped


async def stopped_before_logging(entries: Sequence[HolderEntry], action: str, operator: str,
                                 reason: str | None, key: X25519PrivateKey | None = None
                                 ) -> None:
    """The entries published for an operator action as a command of an earlier version, which
    wrote the directory records and the audit record apart, left them when it stopped between
    the two: outside any transaction, each record in a produce request of its own once the one
    before is on the broker (as a unit's records past one request's size would go), who and why
    sealed to `key` (the platform's by default)."""
    action_id = f"{action}@{uuid.uuid4().hex}"
    sealed = directory._sealed(key or keys.load().sealing_key(), action_id, operator, reason)
    admin = KafkaAccess.of(config.ADMIN)
    async with running(producer_for(admin), admin) as producer:
        for entry in entries:
            await deliver(producer, [send(topics.DIRECTORY, entry.holder_id, replace(
                entry, action_id=action_id, action=action, sealed_action=sealed))])
            await asyncio.sleep(0.005)


HELD_BACK = 3.0  # seconds at most a command's read of the directory is held back (at_once)


async def at_once(monkeypatch: pytest.MonkeyPatch, first: Coroutine[Any, Any, Any],
                  second: Coroutine[Any, Any, Any]) -> list[Any]:
    """Two commands on the holder directory run at once, as two operators would run them from
    one state folder: each one's result or error. The first's read of the directory (through
    processors.directory._directory) is held back until the second has read it, and the
    second's until the first has ended, HELD_BACK seconds at most each: a command that reads the
    directory outside the state folder's lock acts on it as it was before the other wrote; one
    whose read waits for the other's write goes on after HELD_BACK."""
    read, second_read = directory._directory, asyncio.Event()

    async def held_back(access: KafkaAccess) -> tuple[list[Any], dict[str, HolderEntry]]:
        entries = await read(access)
        if asyncio.current_task() is commands[0]:
            with suppress(TimeoutError):
                await asyncio.wait_for(second_read.wait(), HELD_BACK)
        elif asyncio.current_task() is commands[1]:
            second_read.set()
            await asyncio.wait(commands[:1], timeout=HELD_BACK)
        return entries

    with monkeypatch.context() as patched:
        patched.setattr(directory, "_directory", held_back)
        commands = [asyncio.create_task(first), asyncio.create_task(second)]
        return await asyncio.gather(*commands, return_exceptions=True)


async def from_two_folders(monkeypatch: pytest.MonkeyPatch, lock_dir: Path,
                           first: Coroutine[Any, Any, Any], second: Coroutine[Any, Any, Any]
                           ) -> list[Any]:
    """Two commands on the holder directory run at once (at_once) as two operators would run
    them from two state folders (two machines, each with the admin's credentials): each under
    its own folder's lock on operator actions, a file of its own in `lock_dir`."""
    def own_lock() -> AbstractAsyncContextManager[None]:
        return file_awaited(lock_dir / f"{id(asyncio.current_task())}.lock",
                            "another command's operator action")

    with monkeypatch.context() as patched:
        patched.setattr(directory, "_logging_actions", own_lock)
        return await at_once(monkeypatch, first, second)


def action_of(record: Any) -> str:
    """The id of the operator action a directory record was written for ("" for none)."""
    return CODEC.decode(record.value, HolderEntry).action_id or ""


async def logged_events(request_id: str, count: int) -> list[AccessLogEvent]:
    """The audit topic's events of `request_id`, once it has at least `count` (20 s at most)."""
    for _ in range(100):
        found = await audit_events({request_id})
        if len(found) >= count:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(found)} events of {request_id} logged, not {count}")


async def rejection_of(holder: str, request_id: str, send: bytes,
                       within: float = 30) -> Rejection:
    """Send `send` to the holder's outbox as the holder; the rejection of `request_id`."""
    return await reply_of(holder, Rejection, request_id, send, within)


async def reply_of(holder: str, kind: type[R], request_id: str, send: bytes,
                   within: float = 30) -> R:
    """Send `send` to the holder's outbox as the holder; the reply of `kind` to `request_id`
    (a Rejection, a LinkageAnswer)."""
    access = KafkaAccess.of(holder)
    inbox = AIOKafkaConsumer(topics.inbox(holder), **access.aiokafka(), enable_auto_commit=False)
    await inbox.start()
    try:
        await at_end(inbox)
        async with producer(access) as prod:
            await prod.send_and_wait(topics.outbox(holder), send, key=uuid.uuid4().bytes)
        return await reply_to(inbox, kind, request_id, within)
    finally:
        await inbox.stop()


class _Reply(Protocol):
    @property
    def request_id(self) -> str: ...


R = TypeVar("R", bound=_Reply)
T = TypeVar("T")


async def reply_to(inbox: AIOKafkaConsumer, kind: type[R], request_id: str,
                   within: float = 20) -> R:
    """The first message of `kind` (a Rejection, a LinkageAnswer) to `request_id` read from
    `inbox` within `within` seconds."""
    return await _first(inbox, kind, lambda found: found.request_id == request_id, within)


async def log_request(inbox: AIOKafkaConsumer, request_id: str, within: float = 20
                      ) -> HolderLogRequest:
    """The first request for a holder's log of `request_id` read from `inbox` within `within`
    seconds."""
    return await _first(inbox, HolderLogRequest, lambda found: request_id in found.request_ids,
                        within)


async def _first(inbox: AIOKafkaConsumer, kind: type[T], wanted: Callable[[T], bool],
                 within: float) -> T:
    """The first message of `kind` that is `wanted` read from `inbox` within `within` s."""
    async with asyncio.timeout(within):
        while True:
            for records in (await inbox.getmany(timeout_ms=300)).values():
                for record in records:
                    value = record.value or b""
                    if CODEC.name_of(value) == kind.__name__ and wanted(
                            found := CODEC.decode(value, kind)):
                        return found


_WORKING: ContextVar[bool] = ContextVar("opened_by_cancelled", default=False)


async def opened_by_cancelled(monkeypatch: pytest.MonkeyPatch, cancelled_at: int,
                              work: Coroutine[Any, Any, Any]) -> list[AIOKafkaConnection]:
    """The broker connections `work`'s Kafka clients opened, `work` run as a task cancelled right
    after they opened the `cancelled_at`-th (a client's first is its bootstrap's); those other
    clients of the test's event loop open meanwhile (reconnecting, say) are not counted: only
    `work`'s task and the tasks it makes (which inherit its context) are."""
    opened: list[AIOKafkaConnection] = []
    connect = aiokafka.client.create_conn

    async def connected(*args: Any, **kwargs: Any) -> AIOKafkaConnection:
        connection: AIOKafkaConnection = await connect(*args, **kwargs)
        if _WORKING.get():
            opened.append(connection)
            if len(opened) == cancelled_at:
                working.cancel()
        return connection

    async def marked() -> Any:
        _WORKING.set(True)
        return await work

    monkeypatch.setattr(aiokafka.client, "create_conn", connected)
    working = asyncio.create_task(marked())
    with pytest.raises(asyncio.CancelledError):
        await working
    assert len(opened) == cancelled_at
    return opened


class _LeaveGroupResponseV3(Response):  # type: ignore[misc]
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(("throttle_time_ms", Int32), ("error_code", Int16),
                    ("members", Array(("member_id", String("utf-8")),
                                      ("group_instance_id", String("utf-8")),
                                      ("error_code", Int16))))


class _LeaveGroupRequestV3(RequestStruct):  # type: ignore[misc]
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponseV3
    SCHEMA = Schema(("group", String("utf-8")),
                    ("members", Array(("member_id", String("utf-8")),
                                      ("group_instance_id", String("utf-8")))))


class RemoveMembers(Request[_LeaveGroupRequestV3]):  # type: ignore[misc]
    """An operator's removal of static members from a group (Kafka's Admin
    removeMembersFromConsumerGroup: LeaveGroup v3, which neither aiokafka 0.14 nor
    confluent-kafka's AdminClient sends), to be sent to the group's coordinator."""

    API_KEY = 13

    def __init__(self, group: str, *instances: str) -> None:
        self.group, self.instances = group, instances

    def build(self, request_struct_class: type[_LeaveGroupRequestV3]) -> _LeaveGroupRequestV3:
        return request_struct_class(self.group, [("", i) for i in self.instances])


@contextlib.asynccontextmanager
async def forwarder(port: int, broker: str, cut: bool = False) -> AsyncIterator[None]:
    """The broker reachable on `port` while the block runs: each new connection piped to it;
    `cut`: those connections closed at the end too, as a broker gone closes them."""
    host, broker_port = broker.rsplit(":", 1)
    piped: set[asyncio.StreamWriter] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        to_reader, to_writer = await asyncio.open_connection(host, int(broker_port))
        piped.update((writer, to_writer))
        await asyncio.gather(pipe(reader, to_writer), pipe(to_reader, writer))

    server = await asyncio.start_server(forward, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for writer in piped if cut else ():
            writer.close()


def directory_records(*keyed: tuple[bytes, bytes], appended_ms: int = 0
                      ) -> list[ConsumerRecord[bytes, bytes]]:
    """Records of the directory topic, each (key, value), at offsets 0, 1, …, each stamped by
    the broker at `appended_ms`."""
    return topic_records(topics.DIRECTORY, *keyed, appended_ms=appended_ms)


def topic_records(topic: str, *keyed: tuple[bytes, bytes], appended_ms: int = 0
                  ) -> list[ConsumerRecord[bytes, bytes]]:
    """Records of `topic`, as directory_records."""
    return [ConsumerRecord(topic, 0, offset, appended_ms, LOG_APPEND_TIME, key, value,
                           None, len(key), len(value), [])
            for offset, (key, value) in enumerate(keyed)]
