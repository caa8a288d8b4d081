"""The portal's Kafka side, with two identities the broker authenticates:

- `portal` (My Portal and the counter): writes its actions to the audit stream (the detail
  applications and their answers, number changes, counter look-ups and prints), asks holders for
  a resident's ⑪⑫ on its own topic pair, asks the registry side whose card logs in and the
  numbering authority for a resident's new number on a pair each (portal.services), and reads
  the holder directory for holders' names and the services' public keys;
- `oversight` (the console): asks holders for their side of the log, and reads the detector's
  alerts and the audit log's anchored heads.

Holders seal their answers' entries to the key of the identity that asked; the portal's inbox
(portal.inbox) keeps the requests and the answers as they came, sealed, and they are opened only
to be shown: holder-side content is personal data, and the platform side keeps none of it on disk
in plaintext.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from audit import anchor
from audit.events import PORTAL_KIND, AccessLogEvent, event_id, portal_step
from broker import acls, topics
from broker.clients import KafkaAccess, started, stopped
from broker.presence import watch
from portal.inbox import (
    APPLICATIONS_KEPT,
    OVERSIGHT_KEPT,
    Asked,
    Inbox,
    kept_since,
    overdue,
    taken,
)
from portal.inbox import default_path as inbox_path
from portal.services import AUTHORITY, REGISTRY, Asking, read_on
from portal.sessions import Officer, Resident
from renkei import holder_logs, sealing
from renkei.compacted import holder_directory
from renkei.envelope import Directory, Send, send
from renkei.service_loop import STOP_SECONDS, deliver, producer_for
from renkei.tasks import cancelled, set_or_failed
from schemas.codec import CODEC, SchemaError
from schemas.messages import Alert, HolderEntry, HolderLogAnswer, HolderLogEntry, HolderLogRequest

log = logging.getLogger(__name__)
ALERTS_KEPT = 200
PORTAL_WHO = "renkei-portal"  # who says that the broker is away (broker.presence), as a service's
# group does: the portal follows its topics outside the service loop, which watches for them
# seconds between tries of an answer's audit and inbox writes, and of sending a request again
RETRY_FIRST, RETRY_MOST = 0.5, 30.0

Entries = tuple[HolderLogEntry, ...]
OnAnswer = Callable[[Asked, HolderLogAnswer], Awaitable[None]]


@dataclass(frozen=True)
class Shown:
    """A request for holder-side logs as a page shows it: each holder's entries opened, or why
    it sent none (holder_logs.unsent; the platform's answer in the stead of a holder it refused
    to ask, why and since when), and the holders that have not answered in time
    (inbox.overdue)."""

    asked: Asked
    answers: dict[str, Entries]
    unsent: dict[str, str] = field(default_factory=dict)
    overdue: tuple[str, ...] = ()
    refused: dict[str, HolderLogAnswer] = field(default_factory=dict)

    @property
    def all_refused(self) -> bool:
        """Whether the platform refused to ask every holder: none answered."""
        return bool(self.refused) and set(self.refused) >= set(self.asked.holders)


class NoHolder(ValueError):
    """A request for holder-side logs whose every name is a service's: no holder to ask."""


def holders_to_ask(named: Sequence[str]) -> tuple[str, ...]:
    """The holders among `named`, once each (a service's principal is none); else NoHolder."""
    holders = tuple(sorted(set(named) - acls.RESERVED))
    if not holders:
        raise NoHolder(f"no holder among {', '.join(sorted(set(named))) or 'no names'}")
    return holders


class HolderLogs:
    """Requests for holder-side logs on one topic pair, and their answers (sealed to `key`, and
    signed by their holders with the signing keys their `entry` in the directory publishes, as
    the portal's view of it holds them, `read_to_end` reading it to its end), kept in the
    portal's inbox for `kept` (its book: the answers topic)."""

    def __init__(self, access: KafkaAccess, out: str, into: str, key: X25519PrivateKey,
                 inbox: Inbox, kept: timedelta, on_answer: OnAnswer | None = None, *,
                 entry: Directory, read_to_end: Callable[[], Awaitable[None]]) -> None:
        self._access, self._out, self._in, self._key = access, out, into, key
        self._entry, self._read_to_end = entry, read_to_end
        self._inbox, self._kept, self._on_answer = inbox, kept, on_answer
        self._producer: AIOKafkaProducer = producer_for(access)
        self._task: asyncio.Task[None] | None = None
        self._resending: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        self._unheard: set[asyncio.Future[None]] = set()  # sendings whose askers left

    async def start(self) -> None:
        await self._inbox.drop(self._in, self._since())
        await started(self._producer, self._access)
        self._task = asyncio.create_task(self._follow(), name=f"answers:{self._in}")
        await set_or_failed(self._ready, self._task)  # the consumer failed to start: its error
        self._resend()  # those a stop or a crash left logged and unsent

    async def stop(self) -> None:
        """The requests whose askers left settled, then the reading and the sending stopped
        (a request still unsent then is sent at the next start)."""
        self._stopping = True
        await self._unheard_settled()
        await cancelled(self._resending)
        await cancelled(self._task)
        await stopped(self._producer)

    async def _unheard_settled(self) -> None:
        """The requests whose askers left, sent to their end for up to STOP_SECONDS; those
        still going then cancelled (each logged, _failed_unheard)."""
        if not self._unheard:
            return
        _, going = await asyncio.wait(set(self._unheard), timeout=STOP_SECONDS)
        for sending in going:
            sending.cancel()
        await asyncio.gather(*going, return_exceptions=True)

    async def ask(self, holders: Sequence[str], request_ids: Sequence[str], legal_basis: str,
                  person: str | None = None,
                  log: Callable[[Asked], Awaitable[None]] | None = None,
                  exchanged_at: Sequence[datetime] = (), requesters: Sequence[str] = ()) -> Asked:
        """Ask the holders for their side of the log of `request_ids`: the request kept, then
        `log`ged (an application in the resident's history), then sent, so that none is sent
        unlogged, and no answer comes to one not kept; its asker gone meanwhile (their page's
        handler cancelled), to its end all the same, none left logged and unsent (failing then,
        logged: no page says so). Only holders are asked (holders_to_ask): with none among
        `holders`, NoHolder, and nothing kept, logged or sent. A resident's application names
        when each exchange happened (`exchanged_at`, the access log's), so that a provider
        answers only its entry of that use of an id a requester may have used again, and the
        requester of each (`requesters`), so that each holder answers its side of that exchange
        alone, not its own requests' entries of the same id."""
        asked = Asked(str(uuid.uuid4()), datetime.now(UTC), holders_to_ask(holders),
                      tuple(request_ids), person)
        told = HolderLogRequest(asked.request_id, asked.at, asked.holders, asked.request_ids,
                                legal_basis, tuple(exchanged_at), tuple(requesters))
        sending = asyncio.ensure_future(self._sent(asked, told, log))
        try:
            await asyncio.shield(sending)
        except asyncio.CancelledError:
            self._unheard.add(sending)  # settled at the stop
            sending.add_done_callback(partial(self._failed_unheard, asked.request_id))
            raise
        return asked

    def _failed_unheard(self, request_id: str, sending: asyncio.Future[None]) -> None:
        """A request whose asker left: its failure, or its cancelling at the stop, which no
        page shows, logged (no personal data: the request id, and what failed)."""
        self._unheard.discard(sending)
        if sending.cancelled():
            log.error("the request %s for holder-side logs on %s was cut short by the stop "
                      "after its asker left (perhaps unsent)", request_id, self._out)
        elif (failure := sending.exception()) is not None:
            log.error("the request %s for holder-side logs on %s failed after its asker left "
                      "(%s)", request_id, self._out, type(failure).__name__)

    async def _sent(self, asked: Asked, told: HolderLogRequest,
                    log: Callable[[Asked], Awaitable[None]] | None) -> None:
        """`asked` kept, logged, then sent (as `told`); its sending failed, sent again (_resend)
        and the failure raised."""
        await self._inbox.drop(self._in, self._since())
        try:
            await self._inbox.add(self._in, asked)
            if log is not None:
                await log(asked)
        except BaseException:  # not logged, not sent: not kept (an add cut short too), nor awaited
            await self._inbox.withdraw(self._in, asked.request_id)
            raise
        value = CODEC.encode(told)
        await self._inbox.to_send(self._in, asked.request_id, value)
        try:
            await self._delivered(asked.request_id, value)
        except Exception:
            self._resend()
            raise

    async def _delivered(self, request_id: str, value: bytes) -> None:
        """The request sent, and noted so once the broker has it."""
        await deliver(self._producer, [Send(self._out, request_id, value)])
        await self._inbox.sent(self._in, request_id)

    def _resend(self) -> None:
        """The requests logged and not known to be sent, sent again, unless that is under way
        or the stop has begun."""
        if not self._stopping and (self._resending is None or self._resending.done()):
            self._resending = asyncio.create_task(self._resent(), name=f"unsent:{self._out}")

    async def _resent(self) -> None:
        """Each request logged and not known to be sent, sent until none is left, pausing
        longer after each failed round. A request sent twice (its first sending went through
        unacknowledged, or ran alongside) is answered twice: the second answer is not taken."""
        pause = RETRY_FIRST
        while True:
            try:
                if not await self._sent_again():
                    return
            except Exception as exc:  # the broker away or refusing, the inbox busy: again later
                log.warning("requests for holder-side logs on %s could not be sent again (%s); "
                            "again in %.1f s", self._out, type(exc).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MOST)

    async def _sent_again(self) -> int:
        """Each request logged and not known to be sent, sent: how many."""
        unsent = await self._inbox.unsent(self._in, self._since())
        for request_id, value in unsent:
            await self._delivered(request_id, value)
        return len(unsent)

    async def every(self) -> list[Shown]:
        """Every request kept, newest first."""
        return [self._shown(a) for a in await self._inbox.every(self._in, self._since())]

    async def of_person(self, people: Sequence[str]) -> list[Shown]:
        """The requests kept about any of `people` (a resident's ID codes), newest first."""
        return [self._shown(a) for a in await self._inbox.of_person(self._in, people,
                                                                    self._since())]

    def _since(self) -> datetime:
        return kept_since(datetime.now(UTC), self._kept)

    def _shown(self, asked: Asked) -> Shown:
        answers = {holder: CODEC.decode(answer, HolderLogAnswer)
                   for holder, answer in asked.answers.items()}
        unsent = {holder: why for holder, answer in answers.items()
                  if (why := holder_logs.unsent(answer)) is not None}
        return Shown(asked, {holder: holder_logs.opened(self._key, answer, asked.request_ids)
                             for holder, answer in answers.items() if holder not in unsent},
                     unsent, overdue(asked, datetime.now(UTC)),
                     {holder: answer for holder, answer in answers.items()
                      if answer.refused is not None})

    async def _follow(self) -> None:
        """Each record read, taken until that succeeds, pausing longer each time: a failed
        write (the audit log's, the inbox's) never ends the reading, and a record taken again
        is logged again as the same audit event."""
        async for partition, offset, value, relayed in read_on(
                self._access, self._in, await self._inbox.positions(self._in), self._ready):
            pause = RETRY_FIRST
            while True:
                try:
                    await self._take(partition, offset, value, relayed)
                    break
                except Exception as exc:  # whatever failed, the record waits for it
                    log.warning("the record at offset %d on %s could not be taken (%s); "
                                "again in %.1f s", offset, self._in, type(exc).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MOST)

    async def _take(self, partition: int, offset: int, value: bytes,
                    relayed: datetime | None) -> None:
        """The record read (`relayed`: its append time, read_on): a holder's answer taken is
        logged (`on_answer`, its audit write), then kept, and the position read up to with it:
        an answer is kept only once logged."""
        found = await self._taken(value, relayed)
        if found is not None and self._on_answer is not None:
            await self._on_answer(*found)
        await self._inbox.read(self._in, partition, offset, None if found is None else (
            found[0].request_id, found[1].holder, value))

    async def _taken(self, value: bytes, relayed: datetime | None
                     ) -> tuple[Asked, HolderLogAnswer] | None:
        """A holder's answer that is taken (inbox.taken), if it is signed by its holder as of
        `relayed`, however late it is read (holder_logs.relayed_verified: one it did not sign is
        refused as forged, the holder awaited still; one whose entry has no signing key taken
        unsigned, said so), its entries opened or why it sent none said (too large, no key to
        seal to: shown so, not awaited for good), or it is the platform's refusal to ask the
        holder that the directory does not belie (a false one is refused so, the holder awaited
        still); else None. Kept, it is not checked again as it is shown: the inbox is the
        asker's own."""
        try:
            answer = CODEC.decode(value, HolderLogAnswer)
            asked = await self._inbox.asked(self._in, answer.request_id)
            if asked is None or not taken(asked, answer.holder, self._since()):
                return None
            await self._verified(answer, asked, relayed)
            why = holder_logs.unsent(answer)
            if why is not None:
                log.warning("%s sent no entries for %s on %s: %s", answer.holder,
                            answer.request_id, self._in, why)
            return asked, answer
        except holder_logs.Forged as exc:
            log.warning("an answer on %s: %s", self._in, exc)
            return None
        except (SchemaError, sealing.CannotOpen) as exc:
            log.warning("an unreadable answer on %s: %s", self._in, exc)
            return None

    async def _verified(self, answer: HolderLogAnswer, asked: Asked, relayed: datetime | None
                        ) -> None:
        """The answer (its entries opened, or why it has none) checked as its holder's as of
        `relayed` (holder_logs.Forged if not), or said unsigned if its holder's entry has no
        signing key; the platform's refusal in its stead, judged by its entry from the request's
        asking (holder_logs.FalseRefusal if belied). Refused, it is judged again once the
        directory is read to its end (holder_logs.judged_again): its record is marked read
        after, and it is never judged again; if the directory cannot be read to its end, that
        error is raised, the record read again (_follow), not marked read unjudged."""
        if (await holder_logs.judged_again(lambda: holder_logs.relayed_verified(
                self._key, answer, asked.request_ids, self._access.principal,
                self._entry(answer.holder), relayed, asked.at), self._read_to_end)).unsigned:
            log.warning("%s's answer to %s on %s is taken unsigned: its directory entry has no "
                        "signing key (the platform could have made it)", answer.holder,
                        answer.request_id, self._in)


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
        consumer = AIOKafkaConsumer(topics.ALERTS, **self._access.reading(), group_id=None,
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
            await stopped(consumer)


class Platform:
    """Everything the portal process does on Kafka; while it runs, the broker watched as the
    services' loops watch it (broker.presence): its going away and coming back said once each."""

    def __init__(self, portal: KafkaAccess, oversight: KafkaAccess, inbox: Inbox) -> None:
        self._access, self.inbox = portal, inbox  # the numbering's changes kept in it too
        self._producer = producer_for(portal)
        self.directory = holder_directory(portal)
        key = sealing.key_of(acls.PORTAL)
        self.applications = HolderLogs(portal, topics.PORTAL_OUT, topics.PORTAL_IN, key, inbox,
                                       APPLICATIONS_KEPT, self._answered,
                                       entry=self.holder_entry,
                                       read_to_end=self.directory.read_to_end)
        self.registry = Asking(portal, REGISTRY, self.holder_entry, self._producer)
        self.authority = Asking(portal, AUTHORITY, self.holder_entry, self._producer)
        self.oversight = HolderLogs(oversight, topics.OVERSIGHT_OUT, topics.OVERSIGHT_IN,
                                    sealing.key_of(acls.OVERSIGHT), inbox, OVERSIGHT_KEPT,
                                    entry=self.holder_entry,
                                    read_to_end=self.directory.read_to_end)
        self.alerts = AlertFeed(oversight)
        # the heads topic, read as the oversight body; where its check stands kept in the inbox
        self.anchor = anchor.AnchorCheck(oversight, inbox)
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    def connect(cls) -> Platform:
        return cls(KafkaAccess.of(acls.PORTAL), KafkaAccess.of(acls.OVERSIGHT),
                   Inbox(inbox_path()))

    async def start(self) -> None:
        await self.inbox.drop_changes(datetime.now(UTC))
        await started(self._producer, self._access)
        await self.directory.start()
        await self.directory.loaded()
        await self.applications.start()
        await self.registry.start()
        await self.authority.start()
        await self.oversight.start()
        await self.alerts.start()
        self._watch = asyncio.create_task(watch(self._access.bootstrap, PORTAL_WHO),
                                          name="broker presence")

    async def stop(self) -> None:
        await cancelled(self._watch)
        await self.alerts.stop()
        await self.authority.stop()
        await self.registry.stop()
        await self.oversight.stop()
        await self.applications.stop()
        await self.directory.stop()
        await stopped(self._producer)
        await self.inbox.close()

    def holder_name(self, holder: str | None) -> str:
        if holder is None:
            return ""
        entry = self.holder_entry(holder)
        return holder if entry is None else entry.name

    def holder_entry(self, holder: str) -> HolderEntry | None:
        """The holder's entry in the directory, None if it has none."""
        return self.directory.entries.get(holder.encode())

    async def _answered(self, asked: Asked, answer: HolderLogAnswer) -> None:
        """A holder answered a resident's application, or the platform refused to ask it: that
        is logged too."""
        if asked.person is not None:
            await self.record("DETAIL_REFUSED" if answer.refused else "DETAIL_ANSWERED", "portal",
                              asked.person, provider=answer.holder, reason=answer.refused,
                              request_id=asked.request_id, step=f"answered-{answer.holder}")

    async def record(self, outcome: str, requester: str, person: str, *,
                     provider: str | None = None, reason: str | None = None,
                     request_id: str | None = None, step: str | None = None,
                     at: datetime | None = None) -> None:
        """Write one of the portal's actions for the platform to log (kind PORTAL, a step of the
        portal's), done `at` (now if not given)."""
        rid = request_id or str(uuid.uuid4())
        event = AccessLogEvent(event_id(rid, portal_step(step or outcome.lower())), rid,
                               at or datetime.now(UTC),
                               PORTAL_KIND, outcome, reason, None, None, requester, provider,
                               None, person)
        await deliver(self._producer, [send(topics.PORTAL_AUDIT, rid, event)])

    async def counter(self, officer: Officer, resident: Resident, outcome: str) -> None:
        """A counter staff member's look-up or print of a present resident's history."""
        await self.record(outcome, officer.holder, resident.id_codes[0],
                          reason=officer.acting)
