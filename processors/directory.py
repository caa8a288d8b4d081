"""The holder directory and the legal pattern list, as the operator publishes them (compacted
topics, written by the admin principal only; everyone else reads)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from audit.events import OperatorAction, from_millis
from broker import acls, config, topics
from broker.clients import (
    KafkaAccess,
    provisioned,
    read_topic,
    readable,
    records_between,
    running,
)
from processors import keys, patterns
from renkei import sealing
from renkei.broker_time import appended_at
from renkei.compacted import CompactedView, dated, holder_entries
from renkei.envelope import Send, send
from renkei.service_loop import deliver, fencing, handed, producer_for, settled
from renkei.state import file_awaited, private_dir
from renkei.windows import CLOCK_SKEW
from schemas.codec import CODEC
from schemas.messages import HolderEntry, LegalPattern, Suspension

SERVICE = "service"
SEALED_ACTION = "renkei operator action\x00"  # an action's sealed who and why: bound to it + id
UNREADABLE_OPERATOR = "(not readable)"  # who ran an action whose sealed record did not open
UNREADABLE_REASON = ("not readable: who ran this action and why were sealed on its directory "
                     "record to the platform's key, and that record could not be opened when the "
                     "action was logged (the key store replaced since, or the record damaged)")
# the transactional id of every command on the holder directory, on every machine: one started
# fences off any other still at work (_fenced)
OPERATOR_ACTIONS = "renkei-directory-operator-actions"
ATTEMPTS = 3  # reads of the directory a command fenced off again and again makes (_acted)
# a holder's earlier suspension is kept on its entry while a message from within it can still be
# read: one in its outbox, read late (a take-over, the platform stopped a while), the broker's
# retention check (every minute) and the writer's clock skew beside
SUSPENSIONS_KEPT = timedelta(milliseconds=topics.outbox_kept_ms(), minutes=1) + CLOCK_SKEW
MOST_SUSPENSIONS = 1000  # and the latest so many at most (12 bytes or so each), however often
M = TypeVar("M")
T = TypeVar("T")
PUBLISH = "PUBLISH"  # an operator action on the legal pattern list (the others are on holders)
log = logging.getLogger(__name__)


class NotAPrivateHolder(ValueError):
    """Not the id of a private holder in the directory: a resident consents to private holders
    (companies) binding them, and to nobody else."""


class UnitMove(ValueError):
    """A holder in the directory re-registered into another link-code unit without saying it
    means to move: every link code of its records would change."""


class UnitTaken(ValueError):
    """A holder put into a link-code unit of other holders' own (a new one's id they are in, or
    another holder's id it is in): it would be given their link codes without anyone having
    said it is to share their unit."""


class NotSuspendable(ValueError):
    """Not a holder in the directory, or one already in the state asked for (suspended or
    active)."""


class ActionFenced(RuntimeError):
    """A command on the holder directory fenced off by another operator's, from another state
    folder, each time it read the directory again: it wrote nothing."""


class ReservedRole(ValueError):
    """A holder registered under the platform services' role: every re-keying of its link-code
    unit would pass it by, the unit's old key left in use for its records."""


def holder_entry(holder: str, name: str, role: str, unit: str | None = None,
                 private: bool = False, epoch: int = 0) -> HolderEntry:
    """A holder's entry, with the public halves of its sealing and signing keys (made now if
    it has none)."""
    return HolderEntry(holder, name, role, unit or holder, epoch,
                       sealing.public_bytes(sealing.key_of(holder)), private, True,
                       datetime.now(UTC), sealing.public_bytes(sealing.signing_key_of(holder)))


def registered(directory: Mapping[str, HolderEntry], holder: str, name: str, role: str,
               unit: str | None = None, private: bool | None = None,
               move_unit: bool = False, share_unit: bool = False) -> HolderEntry:
    """A holder's entry as (re-)registered: one in the directory already keeps its link-code
    unit (at the unit's key epoch), its private flag unless given, and its being inactive (and
    since when: registering does not resume a suspended holder), and moves to another
    unit only with `move_unit` (else UnitMove); a new one gets its own unit unless given, and
    not one other holders are in (else UnitTaken); it joins another holder's own unit only
    with `share_unit` (else UnitTaken); never under the services' role (else ReservedRole), nor
    under a service's or another reserved principal's id (else ValueError: its entry would take
    that service's place in the directory, the platform's sealing key among them)."""
    acls.check_holder_id(holder)
    if role == SERVICE:
        raise ReservedRole(f"role {SERVICE!r} is the platform services' own: a holder under it "
                           f"would be left out of every re-keying of its link-code unit")
    before = directory.get(holder)
    if not share_unit and unit is not None and (before is None or unit != before.link_unit):
        _not_anothers_own(directory, holder, unit)
    if before is not None:
        if unit not in (None, before.link_unit) and not move_unit:
            raise UnitMove(f"{holder} is in link-code unit {before.link_unit!r}: in {unit!r} "
                           f"every link code of its records changes and every binding would "
                           f"have to be redone; give --move-unit to move it all the same")
        unit = unit or before.link_unit
        private = before.private if private is None else private
    elif unit is None and (sharing := _members(directory, holder)):
        raise UnitTaken(f"link-code unit {holder!r} is already the unit of {', '.join(sharing)}: "
                        f"as its own unit {holder} would be given their link codes; register it "
                        f"under another id, or give --unit {holder} if it is to share theirs")
    unit = unit or holder
    entry = replace(holder_entry(holder, name, role, unit, bool(private),
                                 unit_epoch(directory, unit)), rekeyed_at=unit_rekeyed_at(
                                     directory, unit))
    return entry if before is None else replace(entry, active=before.active,
                                                inactive_since=before.inactive_since,
                                                resumed_at=before.resumed_at,
                                                suspensions=before.suspensions,
                                                previous_signing_key=before.previous_signing_key,
                                                signing_renewed_at=before.signing_renewed_at)


def _not_anothers_own(directory: Mapping[str, HolderEntry], holder: str, unit: str) -> None:
    """UnitTaken if `unit` is another holder's own: its id, and the unit it is in."""
    if unit != holder and unit in _members(directory, unit):
        raise UnitTaken(f"link-code unit {unit!r} is the own unit of holder {unit}: in it "
                        f"{holder} would be given every link code of {unit}'s records; give "
                        f"--share-unit if it is to share them")


def changes(before: HolderEntry, after: HolderEntry) -> list[str]:
    """What a re-registration changed in a holder's entry, one `field old → new` each, its
    sealing key (public_key) and signing key among them."""
    return [f"{field} {_said(old)} → {_said(new)}" for field, old, new in (
        (field, getattr(before, field), getattr(after, field))
        for field in ("name", "role", "link_unit", "key_epoch", "private", "public_key",
                      "signing_key")) if old != new]


def _said(value: object) -> str:
    """A field's value as `changes` says it: a public key by its first 8 bytes in hex, none for
    no key (an entry from before signing keys)."""
    if isinstance(value, bytes):
        return f"{value[:8].hex()}…"
    return "none" if value is None else str(value)


def service_entries() -> list[HolderEntry]:
    """The platform, registry and authority, whose public keys holders seal queries to, and the
    oversight body and My Portal, whose keys holders seal their side of the access log to."""
    now = datetime.now(UTC)
    platform = sealing.public_bytes(keys.load().sealing_key())
    return [HolderEntry(acls.PLATFORM, "情報連携基盤", SERVICE, acls.PLATFORM, 0, platform,
                        False, True, now)] + [
        HolderEntry(name, title, SERVICE, name, 0,
                    sealing.public_bytes(sealing.key_of(name)), False, True, now)
        for name, title in ((acls.REGISTRY, "住民基本台帳ネットワーク"),
                            (acls.AUTHORITY, "付番機関"), (acls.OVERSIGHT, "監視機関"),
                            (acls.PORTAL, "マイポータル"))]


async def publish(entries: Sequence[HolderEntry] = ()) -> None:
    """Publish directory entries, the unlogged operator action of each entry's holder's latest
    record logged first (_log_unlogged), as every command on the directory does: written over,
    that record would leave the action to be logged by none. Pattern versions are published by
    publish_patterns alone, logged."""
    access = KafkaAccess.of(config.ADMIN)
    sends = [send(topics.DIRECTORY, e.holder_id, e) for e in entries]
    await provisioned(access, topics.DIRECTORY)
    if holders := {e.holder_id for e in entries}:
        async with _logging_actions():
            await _log_unlogged(access, await read_topic(access, topics.DIRECTORY),
                                lambda e: e.holder_id in holders, partial(_delivered, access))
    await _delivered(access, sends)


async def publish_patterns(versions: Sequence[LegalPattern], operator: str,
                           reason: str | None, chosen: patterns.Chosen = patterns.to_publish
                           ) -> list[LegalPattern]:
    """The pattern versions `chosen` of them and the list, published (each once: the topic is
    compacted only in segments past the active one, so one sent again is a record more) and
    logged as the operator's PUBLISH of them (with `reason`): it changes what is lawful. The list
    is read, checked and written on the producer of operator actions (_attempts, _published);
    by default (patterns.to_publish) those not on it as they are, BadPatternFile, nothing
    published, if they leave out one on it; a town's set-up chooses those not on it at all
    (patterns.not_listed)."""
    access = KafkaAccess.of(config.ADMIN)
    await provisioned(access, topics.PATTERNS)
    return await _attempts(partial(_published, access, versions, operator, reason, chosen),
                           PUBLISH, "the legal pattern list")


async def _published(access: KafkaAccess, versions: Sequence[LegalPattern], operator: str,
                     reason: str | None, chosen: patterns.Chosen) -> list[LegalPattern]:
    """publish_patterns' one attempt: the versions chosen, of the list read once the producer of
    operator actions has started, written and their PUBLISH logged at the last one's broker time,
    in one of its transactions, readable once it returns."""
    async with fencing(access, OPERATOR_ACTIONS) as producer:
        changed = chosen(versions, await _read(access, topics.PATTERNS, LegalPattern))
        if not changed:
            return changed
        await _logged_with(
            access, producer, [send(topics.PATTERNS, patterns.key(p), p) for p in changed],
            lambda appended_ms: action_logged(f"{PUBLISH}@{uuid.uuid4().hex}", appended_ms,
                                              operator, PUBLISH, patterns.named(changed), reason))
        return changed


async def suspend(holder: str, operator: str, reason: str) -> HolderEntry:
    """Make a holder inactive: neither its requests nor requests to it are approved, and an
    answer to or from it dated (by the broker) from then on is relayed to no one. Its entry is
    published inactive naming no time, one record, which every reader of the directory takes
    as inactive since that record's broker append time (compacted.dated), and the suspension
    logged (_switched): the entry as published, as every reader dates it (inactive since no
    known time on a directory topic the broker does not stamp). NotSuspendable for a holder not
    in the directory or already suspended."""
    return await _switched(KafkaAccess.of(config.ADMIN), holder, False, operator, reason)


async def resume(holder: str, operator: str) -> HolderEntry:
    """Make a suspended holder active again, and log it (_switched); NotSuspendable for one not
    in the directory or not suspended."""
    return await _switched(KafkaAccess.of(config.ADMIN), holder, True, operator, None)


async def _switched(access: KafkaAccess, holder: str, active: bool, operator: str,
                    reason: str | None) -> HolderEntry:
    """The holder's entry published active (or inactive) and the operator action logged for its
    record, the directory read and checked where the writes are made (_acted). One already so is
    NotSuspendable, nothing logged but the action of its latest record if a run of an earlier
    version that stopped between its two writes left it unlogged (_log_unlogged)."""
    await provisioned(access, topics.DIRECTORY)

    def change(entries: dict[str, HolderEntry]) -> list[HolderEntry]:
        return [switched(_of_state(entries, holder, active=not active), active,
                         datetime.now(UTC))]

    _, (entry,) = await _acted(access, lambda e: e.holder_id == holder, change,
                               "RESUME" if active else "SUSPEND", operator, reason)
    return entry


async def renewal(holder: str, operator: str, reason: str | None) -> HolderEntry:
    """A holder's entry published with the public halves of its sealing and signing keys as its
    key files have them now (renewed: sealing.renew_keys), and logged as the operator's RENEW
    (with `reason`), the directory read, checked and written as one (_acted); NotSuspendable
    for a holder not in the directory. Its standing (suspended or not) is kept."""
    access = KafkaAccess.of(config.ADMIN)
    await provisioned(access, topics.DIRECTORY)

    def change(entries: dict[str, HolderEntry]) -> list[HolderEntry]:
        entry = entries.get(holder)
        if entry is None or entry.role == SERVICE:
            raise NotSuspendable(f"no holder {holder!r} is in the holder directory")
        return [renewed(entry, datetime.now(UTC))]

    _, (entry,) = await _acted(access, lambda e: e.holder_id == holder, change, "RENEW",
                               operator, reason)
    return entry


def renewed(before: HolderEntry, now: datetime) -> HolderEntry:
    """A holder's entry with the public halves of the keys in its key files, `now`; the signing
    key it had, if another, kept as its previous one, renewed `now`: answers it signed just
    before are still read by their requesters for a while (renkei.windows.SIGNING_GRACE). A
    renewal run again after one stopped half-way (the same keys) keeps the previous one it had."""
    signing_key = sealing.public_bytes(sealing.signing_key_of(before.holder_id))
    entry = replace(before, updated_at=now, signing_key=signing_key,
                    public_key=sealing.public_bytes(sealing.key_of(before.holder_id)))
    if before.signing_key is None or before.signing_key == signing_key:
        return entry
    return replace(entry, previous_signing_key=before.signing_key, signing_renewed_at=now)


def switched(before: HolderEntry, active: bool, now: datetime) -> HolderEntry:
    """A holder's entry resumed (or suspended) `now`, as its command publishes it: a resumption
    names the suspension it ends (inactive_since), a suspension no time, each record's time left
    for every reader to date (compacted.dated); a suspension adds the one before it, ended (as
    its reader dated it: both times known), to the earlier ones, and each keeps those a message
    read late can still fall in (kept_suspensions)."""
    ended = (() if before.inactive_since is None or before.resumed_at is None else
             (Suspension(before.inactive_since, before.resumed_at),))
    return replace(before, active=active, updated_at=now, resumed_at=None,
                   inactive_since=before.inactive_since if active else None,
                   suspensions=kept_suspensions((*before.suspensions, *ended), now))


def kept_suspensions(suspensions: Sequence[Suspension], now: datetime
                     ) -> tuple[Suspension, ...]:
    """The suspensions (oldest first) a message read late can still fall in, as of `now`: those
    ended within SUSPENSIONS_KEPT, the latest MOST_SUSPENSIONS of them (one older, or beyond so
    many, is judged as of an active holder)."""
    return tuple(s for s in suspensions if s.until > now - SUSPENSIONS_KEPT)[-MOST_SUSPENSIONS:]


async def _acted(access: KafkaAccess, concerned: Callable[[HolderEntry], bool],
                 change: Callable[[dict[str, HolderEntry]], Sequence[HolderEntry]],
                 action: str, operator: str, reason: str | None
                 ) -> tuple[dict[str, HolderEntry], list[HolderEntry]]:
    """The holder directory as it stands, and the entries `change` makes of it (raising if it
    refuses the command) published and logged as the operator's `action` (_written), the
    directory read and checked with the state folder's lock on operator actions held
    (_logging_actions) and on a producer that fences off every command's before it (_fenced),
    another state folder's among them: of two commands on it at once, from one state folder or
    from two machines, the second checks what the first wrote. A command fenced off by another
    reads the directory again and checks it anew, ATTEMPTS times at most (then ActionFenced,
    nothing written)."""
    return await _attempts(partial(_fenced, access, concerned, change, action, operator, reason),
                           action, "the holder directory")


async def _attempts(attempt: Callable[[], Awaitable[T]], action: str, what: str) -> T:
    """`attempt` at the operator's `action` on `what`, made with the state folder's lock on
    operator actions held, made again while another command's on the producer of operator
    actions fences it off (ProducerFenced), ATTEMPTS times at most (then ActionFenced, nothing
    written)."""
    async with _logging_actions():
        for _ in range(ATTEMPTS - 1):
            try:
                return await attempt()
            except ProducerFenced:
                log.warning("another operator's action on %s came first: reading it again", what)
        try:
            return await attempt()
        except ProducerFenced:
            raise ActionFenced(f"another operator's action on {what} came first each time it "
                               f"was read: {action} was not done; run it again") from None


async def _fenced(access: KafkaAccess, concerned: Callable[[HolderEntry], bool],
                  change: Callable[[dict[str, HolderEntry]], Sequence[HolderEntry]],
                  action: str, operator: str, reason: str | None
                  ) -> tuple[dict[str, HolderEntry], list[HolderEntry]]:
    """_acted's one attempt, on the producer of operator actions (OPERATOR_ACTIONS, its one
    transactional id), whose start fences off every one started before, on any machine: its
    transaction aborted, its next write refused (ProducerFenced, which this raises as it is
    fenced off in turn); read once it has started, the directory has every action committed
    before. The action of the concerned holders' latest records that a run of an earlier
    version, stopped between its two writes, left unlogged is logged first, committed on its own
    (a command refused logs it all the same: _log_unlogged), from the directory's records read
    once for both (logging it writes none of them)."""
    async with fencing(access, OPERATOR_ACTIONS) as producer:
        records, directory = await _directory(access)
        await _log_unlogged(access, records, concerned, partial(_committed, access, producer))
        return directory, await _written(access, producer, directory, change(directory), action,
                                         operator, reason)


async def _committed(access: KafkaAccess, producer: AIOKafkaProducer,
                     sends: Sequence[Send]) -> None:
    """The sends delivered in one transaction of the producer of operator actions, committed,
    and readable (broker.clients.readable)."""
    async with producer.transaction():
        await settled(sent := await handed(producer, sends))
    await readable(access, [s.result() for s in sent])


async def _written(access: KafkaAccess, producer: AIOKafkaProducer,
                   directory: Mapping[str, HolderEntry], entries: Sequence[HolderEntry],
                   action: str, operator: str, reason: str | None) -> list[HolderEntry]:
    """Publish the entries into the directory as read (`directory`), each carrying the operator
    action they are written for (one new id; who and why sealed to the platform's key,
    _sealed), wait until the broker has them all, then log the action at the last one's broker
    time, in one transaction of the producer of operator actions (_fenced): the entries as
    published, as every reader dates them (an inactive one by its record's broker time,
    compacted.dated), once every reader can read them (broker.clients.readable). A run that
    stops before its commit, or is fenced off, writes nothing any reader reads (read_committed:
    KafkaAccess.reading)."""
    action_id = f"{action}@{uuid.uuid4().hex}"
    sealed = _sealed(_platform_key(), action_id, operator, reason)
    noted = [replace(e, action_id=action_id, action=action, sealed_action=sealed)
             for e in entries]
    written = await _logged_with(
        access, producer, [send(topics.DIRECTORY, e.holder_id, e) for e in noted],
        lambda appended_ms: logged(noted[-1], appended_ms, operator, reason))
    return [dated(e, directory.get(e.holder_id), appended_at(w))
            for e, w in zip(noted, written, strict=True)]


async def _logged_with(access: KafkaAccess, producer: AIOKafkaProducer, sends: Sequence[Send],
                       action: Callable[[int], Send]) -> list[Any]:
    """The sends written, then the operator action logged at the last one's broker time
    (`action` of it), in one transaction of the producer of operator actions, readable once it
    returns (broker.clients.readable): each send's record as the broker took it."""
    async with producer.transaction():
        written = await handed(producer, sends)
        await settled(written)
        await settled(audit := await handed(producer, [action(written[-1].result().timestamp)]))
    await readable(access, [w.result() for w in [*written, *audit]])
    return [w.result() for w in written]


def _platform_key() -> X25519PrivateKey:
    """The platform's sealing key, which who ran an operator action and why are sealed to on
    its directory records (KeysMissing, saying so, where the key store is not)."""
    try:
        return keys.load().sealing_key()
    except keys.KeysMissing as exc:
        raise keys.KeysMissing(f"{exc} (the operator and reason of a command on the holder "
                               f"directory are sealed on its records to the platform's key, "
                               f"made from the key store)") from None


def _bound(action_id: str) -> str:
    """What an action's sealed operator and reason are bound to: its id, apart from any request
    id the platform's key opens a seal for."""
    return f"{SEALED_ACTION}{action_id}"


def _sealed(key: X25519PrivateKey, action_id: str, operator: str, reason: str | None) -> bytes:
    """Who ran the action and why, sealed to the platform's key, bound to its id (moved to
    another action's record, it opens for none)."""
    said = json.dumps({"operator": operator, "reason": reason}, ensure_ascii=False)
    return sealing.seal(sealing.public_bytes(key), said.encode(), _bound(action_id))


def _opened(key: X25519PrivateKey, entry: HolderEntry) -> tuple[str, str | None]:
    """The operator and reason of the action an entry was written for, opened with the
    platform's key; where they do not open (sealed to a key the store no longer has, or the
    record damaged), UNREADABLE_OPERATOR and UNREADABLE_REASON, said in a warning: the action is
    logged all the same, and the command that recovers it goes on."""
    assert entry.action_id and entry.sealed_action, "an entry no action wrote"
    try:
        said = json.loads(sealing.open_sealed(key, entry.sealed_action, _bound(entry.action_id)))
    except sealing.CannotOpen:
        log.warning("who ran operator action %s on %s and why cannot be opened with the "
                    "platform's key (was the key store replaced since, or the record damaged?): "
                    "it is logged with its operator and reason marked not readable",
                    entry.action_id, entry.holder_id)
        return UNREADABLE_OPERATOR, UNREADABLE_REASON
    return said["operator"], said["reason"]


def logged(entry: HolderEntry, appended_ms: int, operator: str, reason: str | None) -> Send:
    """The operator action a directory entry was written for, by `operator` for `reason`, for
    the audit topic, at its record's broker time `appended_ms`, which its own record is stamped
    with too (_on_audit seeks it by that): on the unit for a re-keying, else on the holder."""
    assert entry.action_id and entry.action, "an entry no action wrote"
    subject = entry.link_unit if entry.action == "REKEY" else entry.holder_id
    return action_logged(entry.action_id, appended_ms, operator, entry.action, subject, reason)


def action_logged(action_id: str, appended_ms: int, operator: str, action: str, subject: str,
                  reason: str | None) -> Send:
    """An operator action for the audit topic, at the broker time `appended_ms` of the record it
    was written for, which its own record is stamped with too."""
    return replace(send(topics.AUDIT, subject, OperatorAction(
        action_id, from_millis(appended_ms), operator, action, subject, reason)),
        timestamp_ms=appended_ms)


async def _log_unlogged(access: KafkaAccess, records: Sequence[Any],
                        concerned: Callable[[HolderEntry], bool],
                        delivered: Callable[[Sequence[Send]], Awaitable[None]]) -> None:
    """Log each operator action the latest of the directory's `records` (its topic's, read with
    the state folder's lock held) of the concerned holders were written for that the audit topic
    lacks (its command, of an earlier version, which wrote its entries and its audit record
    apart, stopped between the two), by `delivered`, at the
    broker time of the last of its latest records, the concerned holders' or not (as its command
    would have: one time whichever holder's command recovers it, and no earlier than where a
    later command's search starts): once, as the records are read again only after it is on the
    topic, and, called with the state folder's lock held (_logging_actions), two commands
    recovering it at once search and log one after the other."""
    latest = {record.key: record for record in records}
    last: dict[str, tuple[HolderEntry, int]] = {}
    concerning: set[str] = set()
    for record in sorted(latest.values(), key=lambda r: r.offset):
        entry = _noted(record.value or b"")
        if entry is not None and entry.action_id:
            last[entry.action_id] = (entry, record.timestamp)
            if concerned(entry):
                concerning.add(entry.action_id)
    for action_id, (entry, appended_ms) in last.items():
        if action_id in concerning and not await _on_audit(access, action_id, appended_ms):
            log.warning("logging operator action %s, which the run that wrote %s's directory "
                        "record stopped before logging", action_id, entry.holder_id)
            await delivered([logged(entry, appended_ms, *_opened(_platform_key(), entry))])


def _logging_actions() -> AbstractAsyncContextManager[None]:
    """The state folder's lock on logging operator actions (directory/actions.lock), taken once
    by each command: held by a command on the directory from its read of it to its audit write
    (_acted), so that of two at once from one state folder the second waits for the first and
    checks what it wrote (the broker's fence alone would have the first read again: _fenced),
    and by a recovery from the audit topic's search for an action to its delivery, so that a
    command recovering it at the same time searches after it is there, and logs it no more (the
    town's set-up recovers one outside the fence: publish). A command waiting for it
    says so after 2 s (the one holding it may hang on a broker it cannot reach)."""
    return file_awaited(private_dir("directory") / "actions.lock",
                        "another command's operator action")


def _noted(value: bytes) -> HolderEntry | None:
    """A directory record's entry, None for a deleted or unreadable one."""
    try:
        return CODEC.decode(value, HolderEntry) if value else None
    except ValueError:
        return None


async def _on_audit(access: KafkaAccess, action_id: str, appended_ms: int) -> bool:
    """Is the operator action on the audit topic? Stamped with its directory record's broker
    time (logged), it is at or after the first record stamped then, read up to it."""
    async with aclosing(records_between(access, [topics.AUDIT], [(appended_ms, None)])
                        ) as records:
        async for record in records:
            value = record.value or b""
            if (CODEC.name_of(value) == "OperatorAction"
                    and CODEC.decode(value, OperatorAction).action_id == action_id):
                return True
    return False


def _of_state(directory: Mapping[str, HolderEntry], holder: str, active: bool) -> HolderEntry:
    """The entry of a holder in the directory that is active (or not, as `active` says), else
    NotSuspendable."""
    entry = directory.get(holder)
    if entry is None or entry.role == SERVICE:
        raise NotSuspendable(f"no holder {holder!r} is in the holder directory")
    if entry.active != active:
        raise NotSuspendable(f"{holder} is already {'suspended' if active else 'active'}"
                             + (f" (since {entry.inactive_since.isoformat()})"
                                if entry.inactive_since and not entry.active else ""))
    return entry


async def _delivered(access: KafkaAccess, sends: Sequence[Send]) -> None:
    async with running(producer_for(access), access) as producer:
        await deliver(producer, sends)


async def registration(holder: str, name: str, role: str, unit: str | None,
                       private: bool | None, move_unit: bool, share_unit: bool,
                       admitted: Callable[[], object], operator: str,
                       reason: str | None = None
                       ) -> tuple[HolderEntry | None, HolderEntry, set[str]]:
    """A holder registered (see `registered`), `admitted` called once the directory takes it
    and before its entry is published (each time it is read again, by a command fenced off), and
    logged as the operator's action (with `reason`), the directory read, checked and written as
    one (_acted): its entry before, the one published now, and the roles the legal pattern list
    names; both topics checked once, at the start."""
    access = KafkaAccess.of(config.ADMIN)
    await provisioned(access, topics.DIRECTORY, topics.PATTERNS)

    def admitted_entry(entries: dict[str, HolderEntry]) -> list[HolderEntry]:
        entry = registered(entries, holder, name, role, unit, private, move_unit, share_unit)
        admitted()
        return [entry]

    entries, (entry,) = await _acted(access, lambda e: e.holder_id == holder, admitted_entry,
                                     "REGISTER", operator, reason)
    return entries.get(holder), entry, _roles(await _read(access, topics.PATTERNS,
                                                          LegalPattern))


async def _read(access: KafkaAccess, topic: str, kind: type[M]) -> list[M]:
    """A compacted topic's entries as they stand, on a broker that has it."""
    return await _entries(access, CompactedView(access, topic, lambda b: CODEC.decode(b, kind)))


async def _directory(access: KafkaAccess) -> tuple[list[Any], dict[str, HolderEntry]]:
    """The holder directory's records as they stand, from its topic's start, and the directory
    they make, as every reader has it (compacted.holder_entries), on a broker that has it."""
    records = await read_topic(access, topics.DIRECTORY)
    return records, _by_holder(holder_entries(records))


async def _entries(access: KafkaAccess, view: CompactedView[M]) -> list[M]:
    """A view's entries once loaded."""
    async with running(view, access):
        await view.loaded()
        return list(view.entries.values())


async def current(access: KafkaAccess | None = None) -> dict[str, HolderEntry]:
    """The holder directory as it stands, read as `access` (the admin by default); BrokerAway
    at once if no broker answers: a view would wait for one."""
    access = access or KafkaAccess.of(config.ADMIN)
    await provisioned(access, topics.DIRECTORY)
    return (await _directory(access))[1]


def _by_holder(entries: Sequence[HolderEntry]) -> dict[str, HolderEntry]:
    return {e.holder_id: e for e in entries}


def _roles(versions: Sequence[LegalPattern]) -> set[str]:
    """The roles the legal pattern list names, of requesters and of providers."""
    return {role for p in versions for role in (p.requester_role, p.provider_role)}


def private_holder(directory: Mapping[str, HolderEntry], holder: str) -> HolderEntry:
    """The directory entry of `holder` if it is a private holder, else NotAPrivateHolder."""
    entry = directory.get(holder)
    if entry is None or entry.role == SERVICE:
        raise NotAPrivateHolder(f"no holder {holder!r} is in the holder directory: "
                                f"run `renkei holder register {holder} … --private` first")
    if not entry.private:
        raise NotAPrivateHolder(f"{holder} is not a private holder: a resident consents to "
                                f"private holders (companies) binding them, to nobody else")
    return entry


def _members(directory: Mapping[str, HolderEntry], unit: str) -> list[str]:
    """The holders in a link-code unit, by id."""
    return sorted(e.holder_id for e in directory.values()
                  if e.link_unit == unit and e.role != SERVICE)


def unit_epoch(directory: Mapping[str, HolderEntry], unit: str) -> int:
    """The key epoch a link-code unit is at (0 for a unit with no holder yet)."""
    return max((e.key_epoch for e in directory.values() if e.link_unit == unit), default=0)


def unit_rekeyed_at(directory: Mapping[str, HolderEntry], unit: str) -> datetime | None:
    """When a link-code unit was last re-keyed, as its holders' entries say (None: never, or
    before they said: v7)."""
    return max((e.rekeyed_at for e in directory.values()
                if e.link_unit == unit and e.rekeyed_at is not None), default=None)


async def rekey_unit(unit: str, operator: str, reason: str | None = None) -> list[HolderEntry]:
    """Move a link-code unit to its next key epoch, logged as one operator action on the unit
    (with `reason`), its time the last of its holders' records (the unit is at the new epoch
    once the broker has it), the directory read and written as one (_acted): its holders'
    entries, as published."""
    access = KafkaAccess.of(config.ADMIN)
    await provisioned(access, topics.DIRECTORY)
    return (await _acted(access, lambda e: e.link_unit == unit,
                         lambda entries: next_epoch(entries, unit), "REKEY", operator,
                         reason))[1]


def next_epoch(directory: Mapping[str, HolderEntry], unit: str) -> list[HolderEntry]:
    """The entries of the unit's holders at its next key epoch (re-keying the unit)."""
    members = [directory[holder] for holder in _members(directory, unit)]
    if not members:
        raise LookupError(f"no holder has link-code unit {unit!r}")
    epoch, now = unit_epoch(directory, unit) + 1, datetime.now(UTC)
    return [replace(e, key_epoch=epoch, updated_at=now, rekeyed_at=now) for e in members]
