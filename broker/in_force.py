"""Waiting until the brokers enforce what the controller committed: a KRaft broker applies the
ACLs and SCRAM credentials of the metadata log as it replays it, after the admin request that
made them is answered, and refuses the principal until then."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from functools import partial
from typing import NamedTuple

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DescribeAclsRequest
from aiokafka.structs import BrokerMetadata
from confluent_kafka.admin import AclBinding

from broker.clients import KafkaAccess, in_own_loop, login_refusal, logins_at_once
from broker.credentials import Credentials

WITHIN = 30.0  # seconds a broker is given to apply them
AGAIN = 0.02  # seconds between two looks at a broker
ANY = 1  # DescribeAcls's code for any resource type, pattern type, operation and permission


class Entry(NamedTuple):
    """An ACL entry as DescribeAcls tells it (its fields' protocol codes)."""

    restype: int
    name: str
    pattern: int
    principal: str
    host: str
    operation: int
    permission: int


class NotInForce(RuntimeError):
    """A broker did not apply what the controller committed within WITHIN."""


def _code(field: Enum | str | int) -> int:
    """The protocol code of an AclBinding's field: confluent-kafka holds it as its enum, whose
    value the code is."""
    return int(field.value if isinstance(field, Enum) else field)


def entry(binding: AclBinding) -> Entry:
    """`binding` as DescribeAcls tells an entry (its fields' protocol codes)."""
    return Entry(_code(binding.restype), binding.name, _code(binding.resource_pattern_type),
                 binding.principal, binding.host, _code(binding.operation),
                 _code(binding.permission_type))


async def _enforced(client: AIOKafkaClient, node: int) -> set[Entry]:
    """The ACL entries broker `node` enforces, every principal's, asked in one request: a KRaft
    broker answers DescribeAcls from its own authorizer."""
    response = await client.send(node, DescribeAclsRequest(ANY, None, ANY, None, None, ANY, ANY))
    if response.error_code:
        raise for_code(response.error_code)(response.error_message)
    return {Entry(kind, name, pattern, *acl)
            for kind, name, pattern, acls in response.resources for acl in acls}


async def _acls_lagging(client: AIOKafkaClient, node: int, wanted: set[Entry],
                        gone: set[Entry]) -> str | None:
    """The principals some of whose entries broker `node` does not enforce as it is to (each of
    `wanted`, none of `gone`), in words; None once it does."""
    enforced = await _enforced(client, node)
    lagging = sorted({e.principal for e in (wanted - enforced) | (gone & enforced)})
    return f"ACLs of {', '.join(lagging)} on broker {node}" if lagging else None


async def _logs_in(host: str, port: int, access: KafkaAccess) -> bool:
    """Whether the broker at host:port lets `access`'s principal log in."""
    return await login_refusal(host, port, access) is None


async def _log_in_refused(broker: BrokerMetadata, access: KafkaAccess) -> str | None:
    """`access`'s log-in on `broker` in words while it refuses it; None once it lets it in."""
    if await _logs_in(broker.host, broker.port, access):
        return None
    return f"{access.principal}'s log-in on broker {broker.nodeId}"


async def _until(lagging: Callable[[], Awaitable[str | None]]) -> None:
    """Return once `lagging` says nothing (it says what is not in force yet); NotInForce saying
    what it said last after WITHIN s."""
    deadline = time.monotonic() + WITHIN
    while (what := await lagging()) is not None:
        if time.monotonic() > deadline:
            raise NotInForce(f"{what} not in force within {WITHIN:g} s")
        await asyncio.sleep(AGAIN)


async def _let_in(brokers: Sequence[BrokerMetadata], bootstrap: str,
                  logins: Sequence[Credentials]) -> None:
    """Wait until each of `brokers` lets each of `logins` log in, LOGINS_AT_ONCE asked at once."""
    await logins_at_once(partial(_until, partial(_log_in_refused, broker,
                                                 KafkaAccess(bootstrap, creds)))
                         for broker in brokers for creds in logins)


async def _in_force(admin: KafkaAccess, bindings: Sequence[AclBinding],
                    logins: Sequence[Credentials], revoked: Sequence[AclBinding]) -> None:
    client = AIOKafkaClient(**admin.aiokafka())
    try:
        await client.bootstrap()
        brokers = list(client.cluster.brokers())
        await _let_in(brokers, admin.bootstrap, logins)
        wanted, gone = set(map(entry, bindings)), set(map(entry, revoked))
        if wanted or gone:  # each broker asked for every principal's entries at once
            for broker in brokers:
                await _until(partial(_acls_lagging, client, broker.nodeId, wanted, gone))
    finally:
        await client.close()


def in_force(admin: KafkaAccess, bindings: Sequence[AclBinding] = (),
             logins: Sequence[Credentials] = (), revoked: Sequence[AclBinding] = ()) -> None:
    """Return once every broker enforces each of `bindings` and none of `revoked`, and lets each
    of `logins` log in; NotInForce if one has not after WITHIN s."""
    in_own_loop(_in_force(admin, bindings, logins, revoked))
