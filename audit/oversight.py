"""The oversight body (監視機関): holder-side access logs (⑦–⑫) asked over Kafka, and the alerts.

It writes its requests to its own topic (only its principal may), the platform relays them to
the holders and logs each on the audit stream; the answers come back stamped with the holder
that sent them, their entries sealed to the oversight body's key. Its query of the platform's log
is the audit store's query.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import acls, topics
from broker.clients import KafkaAccess, at_end, read_topic, running
from processors import directory
from renkei import sealing
from renkei.envelope import send
from renkei.holder_logs import opened
from renkei.service_loop import deliver, producer_for
from schemas.codec import CODEC, SchemaError
from schemas.messages import Alert, HolderLogAnswer, HolderLogEntry, HolderLogRequest

MAX_REQUESTS = 500  # request ids per ask: the answers stay well under the message size limit


@dataclass
class HolderLogs:
    """What the holders answered to one oversight request; `missing` did not answer in time."""

    request_id: str
    answers: dict[str, tuple[HolderLogEntry, ...]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


async def holder_logs(holders: Sequence[str], request_ids: Sequence[str], legal_basis: str,
                      within: float = 30.0, access: KafkaAccess | None = None) -> HolderLogs:
    """Ask `holders` for their access-log entries of `request_ids`; wait up to `within` s."""
    if not holders or not request_ids or len(request_ids) > MAX_REQUESTS:
        raise ValueError(f"name at least one holder and 1..{MAX_REQUESTS} request ids")
    access = access or KafkaAccess.of(acls.OVERSIGHT)
    await _holders_only(holders, access)
    asked = HolderLogRequest(str(uuid.uuid4()), datetime.now(UTC), tuple(holders),
                             tuple(request_ids), legal_basis)
    result = HolderLogs(asked.request_id)
    key = sealing.key_of(acls.OVERSIGHT)
    answers = AIOKafkaConsumer(topics.OVERSIGHT_IN, **access.aiokafka(), group_id=None,
                               enable_auto_commit=False)
    async with running(answers, access):
        await at_end(answers)
        async with running(producer_for(access), access) as producer:
            await deliver(producer, [send(topics.OVERSIGHT_OUT, asked.request_id, asked)])
        try:
            async with asyncio.timeout(within):
                while set(asked.holders) - set(result.answers):
                    for records in (await answers.getmany(timeout_ms=200)).values():
                        for record in records:
                            _take(record.value, asked, key, result)
        except TimeoutError:
            pass
    result.missing = [h for h in dict.fromkeys(asked.holders) if h not in result.answers]
    return result


async def _holders_only(holders: Sequence[str], access: KafkaAccess) -> None:
    """ValueError naming each of `holders` that is no active holder of the directory: the
    platform would refuse to ask it, and waiting for its answer would only end in `missing`."""
    entries = await directory.current(access)
    unknown = [h for h in dict.fromkeys(holders) if h not in entries or not entries[h].active]
    if unknown:
        raise ValueError(f"not an active holder of the directory: {', '.join(unknown)}")


def _take(value: bytes | None, asked: HolderLogRequest, key: X25519PrivateKey,
          result: HolderLogs) -> None:
    """Keep an answer to this request from a holder that was asked (the first readable one)."""
    try:
        answer = CODEC.decode(value or b"", HolderLogAnswer)
        if answer.request_id == asked.request_id and answer.holder in asked.holders:
            result.answers.setdefault(answer.holder, opened(key, answer))
    except (SchemaError, sealing.CannotOpen):
        return


async def alerts(access: KafkaAccess | None = None) -> list[Alert]:
    """Every alert the detector raised, once each (a replayed alert has the same id)."""
    found: dict[str, Alert] = {}
    for record in await read_topic(access or KafkaAccess.of(acls.OVERSIGHT), topics.ALERTS):
        try:
            alert = CODEC.decode(record.value or b"", Alert)
        except SchemaError:
            continue
        found.setdefault(alert.alert_id, alert)
    return list(found.values())
