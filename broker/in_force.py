"""Waiting until the brokers enforce what the controller committed: a KRaft broker applies the
ACLs and SCRAM credentials of the metadata log as it replays it, after the admin request that
made them is answered, and refuses the principal until then."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from functools import partial

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

Entry = tuple[int, str, int, str, str, int, int]


class NotInForce(RuntimeError):
    """A broker did not apply what the controller committed within WITHIN."""


def _code(field: Enum | str | int) -> int:
    """The protocol code of an AclBinding's field: confluent-kafka holds it as its enum, whose
    value the code is."""
    return int(field.value if isinstance(field, Enum) else field)


def entry(binding: AclBinding) -> Entry:
    """`binding` as DescribeAcls tells an entry (its fields' protocol codes)."""
    return (_code(binding.restype), binding.name, _code(binding.resource_pattern_type),
            binding.principal, binding.host, _code(binding.operation),
            _code(binding.permission_type))


async def _holds(client: AIOKafkaClient, node: int, principal: str,
                 wanted: set[Entry], gone: set[Entry]) -> bool:
    """Whether broker `node` enforces each of `wanted`, `principal`'s, and none of `gone`: a KRaft
    broker answers DescribeAcls from its own authorizer."""
    response = await client.send(node, DescribeAclsRequest(ANY, None, ANY, principal, None,
                                                           ANY, ANY))
    if response.error_code:
        raise for_code(response.error_code)(response.error_message)
    held = {(kind, name, pattern, *acl)
            for kind, name, pattern, acls in response.resources for acl in acls}
    return wanted <= held and not gone & held


async def _logs_in(host: str, port: int, access: KafkaAccess) -> bool:
    """Whether the broker at host:port lets `access`'s principal log in."""
    return await login_refusal(host, port, access) is None


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not await check():
        if time.monotonic() > deadline:
            raise NotInForce(f"{what} not in force within {WITHIN:g} s")
        await asyncio.sleep(AGAIN)


async def _let_in(brokers: Sequence[BrokerMetadata], bootstrap: str,
                  logins: Sequence[Credentials]) -> None:
    """Wait until each of `brokers` lets each of `logins` log in, LOGINS_AT_ONCE asked at once."""
    await logins_at_once(
        partial(_until, partial(_logs_in, broker.host, broker.port, KafkaAccess(bootstrap, creds)),
                f"{creds.username}'s log-in on broker {broker.nodeId}")
        for broker in brokers for creds in logins)


async def _in_force(admin: KafkaAccess, bindings: Sequence[AclBinding],
                    logins: Sequence[Credentials], revoked: Sequence[AclBinding]) -> None:
    client = AIOKafkaClient(**admin.aiokafka())
    try:
        await client.bootstrap()
        brokers = list(client.cluster.brokers())
        await _let_in(brokers, admin.bootstrap, logins)
        for broker in brokers:
            for principal in {b.principal for b in (*bindings, *revoked)}:
                wanted = {entry(b) for b in bindings if b.principal == principal}
                gone = {entry(b) for b in revoked if b.principal == principal}
                await _until(partial(_holds, client, broker.nodeId, principal, wanted, gone),
                             f"{principal}'s ACLs on broker {broker.nodeId}")
    finally:
        await client.close()


def in_force(admin: KafkaAccess, bindings: Sequence[AclBinding] = (),
             logins: Sequence[Credentials] = (), revoked: Sequence[AclBinding] = ()) -> None:
    """Return once every broker enforces each of `bindings` and none of `revoked`, and lets each
    of `logins` log in; NotInForce if one has not after WITHIN s."""
    in_own_loop(_in_force(admin, bindings, logins, revoked))
