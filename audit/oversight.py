"""The oversight body (監視機関): holder-side access logs (⑦–⑫) asked over Kafka, and the alerts.

It writes its requests to its own topic (only its principal may), the platform relays them to
the holders and logs each on the audit stream; the answers come back stamped with the holder
that sent them, their entries sealed to the oversight body's key. Its query of the platform's log
is the audit store's query.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import acls, presence, topics
from broker.clients import KafkaAccess, at_end, provisioned, read_topic, running
from renkei import sealing
from renkei.broker_time import appended_at
from renkei.compacted import CompactedView, NotFollowing, holder_directory
from renkei.envelope import Directory, send
from renkei.holder_logs import (
    Checked,
    FalseRefusal,
    Forged,
    NotAskable,
    Parties,
    each_own,
    holders_only,
    judged_again,
    relayed_verified,
    unsent,
)
from renkei.service_loop import deliver, producer_for
from schemas.codec import CODEC, SchemaError
from schemas.messages import (
    Alert,
    HolderEntry,
    HolderLogAnswer,
    HolderLogEntry,
    HolderLogRequest,
)

MAX_REQUESTS = 500  # request ids per oversight request: asked in parts as their answers need


@dataclass
class HolderLogs:
    """What the holders answered to one oversight request, asked as `request_ids` (the first
    for all of it, then halves of a part a holder found too large to answer in one message);
    `missing` did not answer in time; `not_sealed` answered without its entries, having no key
    of the oversight body's to seal them to; `too_large`, by holder, the requests whose entries
    would not fit in a message even asked alone (their entries not in `answers`); `refused`, by
    holder, the platform's answer in the stead of one it did not ask (suspended, or gone from
    the directory, after the check that it is a holder); `forged`, holders in whose name an
    answer came that they did not sign (holder_logs.Forged: refused, the holder awaited still);
    `falsely_refused`, holders the platform said it did not ask though the directory shows them
    active then (holder_logs.FalseRefusal: not taken, the holder awaited still); `unsigned`,
    holders whose entries were taken unsigned, their directory entry having no signing key (the
    platform could have made them)."""

    request_ids: list[str] = field(default_factory=list)
    answers: dict[str, tuple[HolderLogEntry, ...]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    not_sealed: list[str] = field(default_factory=list)
    too_large: dict[str, list[str]] = field(default_factory=dict)
    refused: dict[str, HolderLogAnswer] = field(default_factory=dict)
    forged: list[str] = field(default_factory=list)
    falsely_refused: list[str] = field(default_factory=list)
    unsigned: list[str] = field(default_factory=list)


@dataclass
class _Asking:
    """An oversight request being asked: the parts awaited ((part's request id, holder) → the
    request ids it asks for), when each part was asked (`asked_at`, by its request id), and the
    entries answered so far, by holder; `entry`, a holder's directory entry as the command
    follows it, whose signing key its answers are to be signed with and by which the platform's
    refusals to ask it are judged, and `read_to_end`, the directory followed read to its end
    (CompactedView.read_to_end)."""

    legal_basis: str
    producer: AIOKafkaProducer
    result: HolderLogs
    entry: Directory
    read_to_end: Callable[[], Awaitable[None]]
    awaited: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    asked_at: dict[str, datetime] = field(default_factory=dict)
    entries: dict[str, list[HolderLogEntry]] = field(default_factory=dict)

    async def ask(self, holders: Sequence[str], request_ids: Sequence[str]) -> None:
        """Send one part: `holders` asked for their entries of `request_ids`."""
        part = HolderLogRequest(str(uuid.uuid4()), datetime.now(UTC), tuple(holders),
                                tuple(request_ids), self.legal_basis)
        self.result.request_ids.append(part.request_id)
        self.asked_at[part.request_id] = part.sent_at
        self.awaited.update({(part.request_id, h): part.request_ids for h in part.holders})
        await deliver(self.producer, [send(topics.OVERSIGHT_OUT, part.request_id, part)])

    async def take(self, value: bytes | None, key: X25519PrivateKey,
                   relayed: datetime | None) -> None:
        """An answer to a part (`relayed`: its record's append time, appended_at), once known
        to be its holder's as of its relaying (relayed_verified): its entries kept; too large,
        its halves asked of that holder; not sealed, the holder noted so. Refused by the
        platform (its own answer), the holder noted so, unless the directory belies it (noted
        falsely refused, the holder awaited still); not signed by its holder, whatever it says
        (entries, or none and why), refused and noted forged."""
        try:
            answer = CODEC.decode(value or b"", HolderLogAnswer)
            asked = self.awaited.get((answer.request_id, answer.holder))
            if asked is None:
                return
            why = unsent(answer)
            checked = await self._verified(key, answer, asked, relayed)
        except FalseRefusal:
            _noted(self.result.falsely_refused, answer.holder)
            return
        except Forged:
            _noted(self.result.forged, answer.holder)
            return
        except (SchemaError, sealing.CannotOpen):
            return
        if checked.unsigned:
            _noted(self.result.unsigned, answer.holder)
        del self.awaited[answer.request_id, answer.holder]
        self.entries.setdefault(answer.holder, []).extend(checked.entries)
        if why == "not_sealed":
            _noted(self.result.not_sealed, answer.holder)
        elif why == "refused":
            self.result.refused[answer.holder] = answer
        elif answer.too_large and len(asked) == 1:
            self.result.too_large.setdefault(answer.holder, []).extend(asked)
        elif answer.too_large:
            half = len(asked) // 2
            for part in (asked[:half], asked[half:]):
                await self.ask((answer.holder,), part)

    async def _verified(self, key: X25519PrivateKey, answer: HolderLogAnswer,
                        asked: tuple[str, ...], relayed: datetime | None) -> Checked:
        """relayed_verified by its holder's directory entry as the command follows it, judged
        again once the directory is read to its end if refused (judged_again), or as it is if
        the directory cannot be (the broker away, the view stopped): the refusal stands."""
        return await judged_again(lambda: relayed_verified(
            key, answer, asked, acls.OVERSIGHT, self.entry(answer.holder), relayed,
            self.asked_at[answer.request_id]), self._read_to_end_if_can)

    async def _read_to_end_if_can(self) -> None:
        with contextlib.suppress(KafkaError, NotFollowing):
            await self.read_to_end()


def _noted(holders: list[str], holder: str) -> None:
    if holder not in holders:
        holders.append(holder)


async def holder_logs(holders: Sequence[str], request_ids: Sequence[str],
                      parties: Callable[[Sequence[str]], Parties], legal_basis: str,
                      within: float = 30.0, access: KafkaAccess | None = None) -> HolderLogs:
    """Ask `holders` for their access-log entries of `request_ids`, each of those it took part
    in (each_own), as `parties` of the ids tells, once the holders are known to be holders (the
    platform's log); wait up to `within` s. NotAskable, naming the argument at fault: no
    holders, not 1..MAX_REQUESTS request ids, or holders and requests that do not meet."""
    if not holders:
        raise NotAskable("name at least one holder", "holders")
    if not request_ids or len(request_ids) > MAX_REQUESTS:
        raise NotAskable(f"name 1..{MAX_REQUESTS} request ids, not {len(request_ids)}",
                         "request_ids")
    access = access or KafkaAccess.of(acls.OVERSIGHT)
    await provisioned(access, topics.DIRECTORY)  # BrokerAway at once: the view would wait
    async with running(holder_directory(access), access) as followed:
        await followed.loaded()
        return await _asked(access, followed, list(dict.fromkeys(holders)),
                            list(dict.fromkeys(request_ids)), parties, legal_basis, within)


async def _asked(access: KafkaAccess, followed: CompactedView[HolderEntry],
                 holders: Sequence[str], request_ids: Sequence[str],
                 parties: Callable[[Sequence[str]], Parties], legal_basis: str, within: float
                 ) -> HolderLogs:
    """holder_logs, the holder directory `followed` as the answers come: a holder renewed
    meanwhile signs them with its new keys."""
    def entries(holder: str) -> HolderEntry | None:
        return followed.entries.get(holder.encode())

    holders_only(holders, entries)
    parts = each_own(holders, request_ids, parties(request_ids))
    key = sealing.key_of(acls.OVERSIGHT)
    answers = AIOKafkaConsumer(topics.OVERSIGHT_IN, **access.reading(), group_id=None,
                               enable_auto_commit=False)
    async with running(answers, access), running(producer_for(access), access) as producer:
        await at_end(answers)
        asking = _Asking(legal_basis, producer, HolderLogs(), entries, followed.read_to_end)
        for named, own in parts:
            await asking.ask(named, own)
        try:
            async with asyncio.timeout(within):
                while asking.awaited:
                    for records in (await answers.getmany(timeout_ms=200)).values():
                        for record in records:
                            await asking.take(record.value, key, appended_at(record))
        except TimeoutError:
            pass
    await _heard_through(access.bootstrap, asking)
    return _gathered(asking, holders, request_ids)


async def _heard_through(bootstrap: str, asking: _Asking) -> None:
    """BrokerGone if answers are awaited still and the broker at `bootstrap` cannot be reached:
    the holders' silence is not theirs to answer for (their answers may be on the topic)."""
    if asking.awaited and not await presence.serving(bootstrap):
        unheard = ", ".join(dict.fromkeys(holder for _, holder in asking.awaited))
        raise presence.BrokerGone(
            f"the broker at {bootstrap} cannot be reached: what {unheard} answered may not have "
            "come (ask again once it is back; `renkei broker status` says why)")


def _gathered(asking: _Asking, holders: Sequence[str], request_ids: Sequence[str]
              ) -> HolderLogs:
    """The result: each holder that answered every part with its entries sealed, its entries
    in the order asked (one the platform refused to ask for any part answered none)."""
    result, order = asking.result, {r: n for n, r in enumerate(request_ids)}
    unanswered = {holder for _, holder in asking.awaited}
    result.missing = [h for h in holders if h in unanswered]
    result.answers = {h: tuple(sorted(asking.entries.get(h, ()),
                                      key=lambda e: order.get(e.request_id, len(order))))
                      for h in holders if h not in unanswered and h not in result.not_sealed
                      and h not in result.refused}
    return result


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
