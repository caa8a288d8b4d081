"""The portal's Kafka side, with two identities the broker authenticates:

- `portal` (My Portal and the counter): writes its actions to the audit stream (the detail
  applications and their answers, number changes, counter look-ups and prints), asks holders for
  a resident's ⑪⑫ on its own topic pair, asks the registry side whose card logs in and the
  numbering authority for a resident's new number on a pair each (portal.services), and reads
  the holder directory for holders' names and the services' public keys;
- `oversight` (the console): asks holders for their side of the log, and reads the detector's
  alerts and the audit log's anchored heads.

Holders seal their answers' entries to the key of the identity that asked; they are opened and
kept in this process's memory only: holder-side content is personal data, and the platform side
keeps none of it on disk.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from audit import anchor
from audit.events import AccessLogEvent, event_id
from broker import acls, topics
from broker.clients import KafkaAccess, started
from portal.services import AUTHORITY, REGISTRY, Asking, from_now
from portal.sessions import Officer, Resident
from renkei import holder_logs, sealing
from renkei.compacted import CompactedView
from renkei.envelope import send
from renkei.service_loop import deliver, producer_for
from renkei.tasks import cancelled, set_or_failed
from schemas.codec import CODEC, SchemaError
from schemas.messages import Alert, HolderEntry, HolderLogAnswer, HolderLogEntry, HolderLogRequest

log = logging.getLogger(__name__)
PORTAL_KIND = "PORTAL"
ALERTS_KEPT = 200
ANSWERS_KEPT = timedelta(hours=1)
RETRY_FIRST, RETRY_MOST = 0.5, 30.0  # seconds between tries of an answer's audit write


@dataclass
class Asked:
    """One request for holder-side logs, and the entries answered so far (by holder)."""

    request_id: str
    at: datetime
    holders: tuple[str, ...]
    request_ids: tuple[str, ...]
    person: str | None = None  # a resident's application: whose
    answers: dict[str, tuple[HolderLogEntry, ...]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return set(self.answers) >= set(self.holders)


OnAnswer = Callable[[Asked, HolderLogAnswer], Awaitable[None]]
Entries = tuple[HolderLogEntry, ...]


class HolderLogs:
    """Requests for holder-side logs on one topic pair, and their answers (sealed to `key`),
    for this process."""

    def __init__(self, access: KafkaAccess, out: str, into: str, key: X25519PrivateKey,
                 on_answer: OnAnswer | None = None) -> None:
        self._access, self._out, self._in, self._key = access, out, into, key
        self._on_answer = on_answer
        self._producer: AIOKafkaProducer = producer_for(access)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.asked: dict[str, Asked] = {}

    async def start(self) -> None:
        await started(self._producer, self._access)
        self._task = asyncio.create_task(self._follow(), name=f"answers:{self._in}")
        await set_or_failed(self._ready, self._task)  # the consumer failed to start: its error

    async def stop(self) -> None:
        await cancelled(self._task)
        await self._producer.stop()

    async def ask(self, holders: Sequence[str], request_ids: Sequence[str], legal_basis: str,
                  person: str | None = None) -> Asked:
        now = datetime.now(UTC)
        self.asked = {k: a for k, a in self.asked.items() if now - a.at < ANSWERS_KEPT}
        asked = Asked(str(uuid.uuid4()), now, tuple(sorted(set(holders))), tuple(request_ids),
                      person)
        self.asked[asked.request_id] = asked
        await deliver(self._producer, [send(self._out, asked.request_id, HolderLogRequest(
            asked.request_id, asked.at, asked.holders, asked.request_ids, legal_basis))])
        return asked

    async def _follow(self) -> None:
        async for value in from_now(self._access, self._in, self._ready):
            found = self._opened(value)
            if found is not None:
                asked, answer, entries = found
                await self._logged(asked, answer)
                asked.answers[answer.holder] = entries

    def _opened(self, value: bytes) -> tuple[Asked, HolderLogAnswer, Entries] | None:
        """A holder's first answer to one of our requests, and its entries opened; else None."""
        try:
            answer = CODEC.decode(value, HolderLogAnswer)
            asked = self.asked.get(answer.request_id)
            if asked is None or answer.holder not in asked.holders or \
                    answer.holder in asked.answers:
                return None
            return asked, answer, holder_logs.opened(self._key, answer)
        except (SchemaError, sealing.CannotOpen) as exc:
            log.warning("an unreadable answer on %s: %s", self._in, exc)
            return None

    async def _logged(self, asked: Asked, answer: HolderLogAnswer) -> None:
        """Run `on_answer` (the answer's audit write) until it succeeds, pausing longer each
        time: an answer is kept only once logged, and a failed write never ends the reading."""
        pause = RETRY_FIRST
        while self._on_answer is not None:
            try:
                await self._on_answer(asked, answer)
                return
            except Exception as exc:  # whatever failed, the answer waits for its record
                log.warning("the answer to %s could not be logged (%s); again in %.1f s",
                            asked.request_id, type(exc).__name__, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MOST)


class AlertFeed:
    """The detector's alerts, from the start of the topic, the newest kept in memory."""

    def __init__(self, access: KafkaAccess) -> None:
        self._access = access
        self._task: asyncio.Task[None] | None = None
        self.alerts: deque[Alert] = deque(maxlen=ALERTS_KEPT)
        self._seen: set[str] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="alerts")

    async def stop(self) -> None:
        await cancelled(self._task)

    def newest(self) -> list[Alert]:
        return list(reversed(self.alerts))

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(topics.ALERTS, **self._access.aiokafka(), group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        try:
            await started(consumer, self._access)
            async for record in consumer:
                try:
                    alert = CODEC.decode(record.value or b"", Alert)
                except SchemaError as exc:
                    log.warning("an unreadable alert: %s", exc)
                    continue
                if alert.alert_id not in self._seen:  # the same alert id is the same alert
                    self._seen.add(alert.alert_id)
                    self.alerts.append(alert)
        finally:
            await consumer.stop()


class Platform:
    """Everything the portal process does on Kafka."""

    def __init__(self, portal: KafkaAccess, oversight: KafkaAccess) -> None:
        self._access = portal
        self._producer = producer_for(portal)
        self.directory: CompactedView[HolderEntry] = CompactedView(
            portal, topics.DIRECTORY, lambda b: CODEC.decode(b, HolderEntry))
        key = sealing.key_of(acls.PORTAL)
        self.applications = HolderLogs(portal, topics.PORTAL_OUT, topics.PORTAL_IN, key,
                                       self._answered)
        self.registry = Asking(portal, REGISTRY, key, self._entry, self._producer)
        self.authority = Asking(portal, AUTHORITY, key, self._entry, self._producer)
        self.oversight = HolderLogs(oversight, topics.OVERSIGHT_OUT, topics.OVERSIGHT_IN,
                                    sealing.key_of(acls.OVERSIGHT))
        self.alerts = AlertFeed(oversight)
        self.anchor = anchor.AnchorCheck(oversight)  # the heads topic, read as the oversight body

    @classmethod
    def connect(cls) -> Platform:
        return cls(KafkaAccess.of(acls.PORTAL), KafkaAccess.of(acls.OVERSIGHT))

    async def start(self) -> None:
        await started(self._producer, self._access)
        await self.directory.start()
        await self.directory.loaded()
        await self.applications.start()
        await self.registry.start()
        await self.authority.start()
        await self.oversight.start()
        await self.alerts.start()

    async def stop(self) -> None:
        await self.alerts.stop()
        await self.authority.stop()
        await self.registry.stop()
        await self.oversight.stop()
        await self.applications.stop()
        await self.directory.stop()
        await self._producer.stop()

    def holder_name(self, holder: str | None) -> str:
        if holder is None:
            return ""
        entry = self._entry(holder)
        return holder if entry is None else entry.name

    def _entry(self, holder: str) -> HolderEntry | None:
        return self.directory.entries.get(holder.encode())

    async def _answered(self, asked: Asked, answer: HolderLogAnswer) -> None:
        """A holder answered a resident's application: that is logged too."""
        if asked.person is not None:
            await self.record("DETAIL_ANSWERED", "portal", asked.person, provider=answer.holder,
                              request_id=asked.request_id, step=f"answered-{answer.holder}")

    async def record(self, outcome: str, requester: str, person: str, *,
                     provider: str | None = None, reason: str | None = None,
                     request_id: str | None = None, step: str | None = None,
                     at: datetime | None = None) -> None:
        """Write one of the portal's actions to the audit stream (kind PORTAL), done `at` (now
        if not given)."""
        rid = request_id or str(uuid.uuid4())
        event = AccessLogEvent(event_id(rid, step or outcome.lower()), rid,
                               at or datetime.now(UTC),
                               PORTAL_KIND, outcome, reason, None, None, requester, provider,
                               None, person)
        await deliver(self._producer, [send(topics.AUDIT, rid, event)])

    async def counter(self, officer: Officer, resident: Resident, outcome: str) -> None:
        """A counter staff member's look-up or print of a present resident's history."""
        await self.record(outcome, officer.holder, resident.id_codes[0],
                          reason=f"staff {officer.staff_id} (card {officer.serial})")
