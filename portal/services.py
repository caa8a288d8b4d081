"""The portal's questions to a service around the platform (renkei.questions has the service's
side): sealed to the service, on a topic only the portal writes; the answer sealed to a key made
for that question alone, on a topic only that service writes, awaited up to a deadline. A service
that does not answer in time gives the resident a page that says so, never a page that hangs."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import acls, topics
from broker.clients import KafkaAccess, started, stopped
from renkei import sealing
from renkei.broker_time import appended_at
from renkei.envelope import Directory, send
from renkei.questions import DECLINED
from renkei.service_loop import deliver
from renkei.tasks import cancelled, set_or_failed
from schemas.codec import CODEC, SchemaError
from schemas.messages import FOUND, REFUSED, PortalAnswer, PortalQuery

log = logging.getLogger(__name__)
NO_ANSWER = "NO_ANSWER"  # the portal's own word: no answer came in time, what was done unknown
ASK_SECONDS = 10.0  # the service's deadline; the portal waits this long and a little more
GRACE_SECONDS = 2.0  # for an answer made at the deadline to arrive


@dataclass(frozen=True)
class Service:
    """A service the portal asks: its directory entry (its public key), its topic pair."""

    name: str
    asked: str
    answers: str


REGISTRY = Service(acls.REGISTRY, topics.REGISTRY_PORTAL_IN, topics.REGISTRY_PORTAL_OUT)
AUTHORITY = Service(acls.AUTHORITY, topics.AUTHORITY_PORTAL_IN, topics.AUTHORITY_PORTAL_OUT)


class Unanswered(RuntimeError):
    """The service did not answer in time, or answered that it could not (`status`) or would
    not (`declined`: why, a short code)."""

    def __init__(self, service: str, status: str, detail: str) -> None:
        super().__init__(f"the {service} did not answer: {status} ({detail})")
        self.status = status
        self.declined = (detail.removeprefix(DECLINED)
                         if status == REFUSED and detail.startswith(DECLINED) else None)


async def read_on(access: KafkaAccess, topic: str, positions: Mapping[int, int],
                  ready: asyncio.Event, reset: str = "earliest"
                  ) -> AsyncIterator[tuple[int, int, bytes, datetime | None]]:
    """Each record on `topic` (its partition, offset, value and append time: appended_at, None
    on a topic its writers stamp) from the offset each partition was read up to (`positions`),
    else from the `reset` end ("earliest" kept, or "latest"):
    `ready` is set once the consumer's positions are fixed, so that nothing written after is
    missed (answers to questions asked then)."""
    consumer = AIOKafkaConsumer(topic, **access.reading(), group_id=None,
                                auto_offset_reset=reset, enable_auto_commit=False)
    try:
        await started(consumer, access)
        for partition in consumer.assignment():
            if partition.partition in positions:
                consumer.seek(partition, positions[partition.partition])
            await consumer.position(partition)
        ready.set()
        async for record in consumer:
            yield record.partition, record.offset, record.value or b"", appended_at(record)
    finally:
        await stopped(consumer)


class Asking:
    """Questions to one service and their answers, for this process."""

    def __init__(self, access: KafkaAccess, service: Service, directory: Directory,
                 producer: AIOKafkaProducer, within: float = ASK_SECONDS) -> None:
        self._access, self._service = access, service
        self._directory, self._producer, self.within = directory, producer, within
        self._waiting: dict[str, asyncio.Future[PortalAnswer]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name=f"answers:{self._service.answers}")
        await set_or_failed(self._ready, self._task)  # the consumer failed to start: its error

    async def stop(self) -> None:
        await cancelled(self._task)

    async def ask(self, question: object) -> bytes:
        """The service's answer, opened; Unanswered if it has none for the portal in time. The
        answer is sealed to a key made for this question (its private half in this call alone,
        gone when it returns), so no key the portal keeps opens it on the answers topic."""
        entry = self._directory(self._service.name)
        if entry is None:
            raise Unanswered(self._service.name, REFUSED, "it has no directory entry")
        request_id = str(uuid.uuid4())
        deadline = datetime.now(UTC) + timedelta(seconds=self.within)
        sealed = sealing.seal(entry.public_key, CODEC.encode(question), request_id)
        reply_key = X25519PrivateKey.generate()
        waiting = self._waiting[request_id] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.within + GRACE_SECONDS):
                await deliver(self._producer, [send(self._service.asked, request_id, PortalQuery(
                    request_id, deadline, sealed, sealing.public_bytes(reply_key)))])
                answer = await waiting
        except TimeoutError:
            log.warning("the %s did not answer question %s within %.1f s", self._service.name,
                        request_id, self.within + GRACE_SECONDS)
            raise Unanswered(self._service.name, NO_ANSWER, "no answer in time") from None
        finally:
            del self._waiting[request_id]
        if answer.status != FOUND:
            raise Unanswered(self._service.name, answer.status, answer.detail)
        try:
            return sealing.open_sealed(reply_key, answer.sealed_answer, request_id)
        except sealing.CannotOpen:
            raise Unanswered(self._service.name, REFUSED, "its answer cannot be opened") from None

    async def _follow(self) -> None:
        async for _, _, value, _ in read_on(self._access, self._service.answers, {},
                                            self._ready, reset="latest"):  # from now on
            self._answered(value)

    def _answered(self, value: bytes) -> None:
        """An answer to a question still awaited is handed to its asker; others are dropped."""
        try:
            answer = CODEC.decode(value, PortalAnswer)
        except SchemaError as exc:
            log.warning("an unreadable answer on %s: %s", self._service.answers, exc)
            return
        waiting = self._waiting.get(answer.request_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(answer)
