"""Holders' side of the access log (⑦–⑫), sealed by the holder to the party that asked for it:
the oversight body, or My Portal for a resident's application (paper §6(4)). ⑪ is the personal
data provided or received, so the platform and the broker carry these entries only as ciphertext.
Sealing (HPKE base mode) says nothing of who sealed: anyone with the asker's public key can, the
platform that relays the answer among them, and the point of asking holders is to check the
platform. So a holder whose directory entry publishes its signing key signs what it answers, for
the asker and the request id, its entries or why it sends none (too large, none it could seal:
`unsent_answer`), and the asker takes an answer only if it is so signed (`relayed_verified`).
The platform's refusal to ask a holder (suspended, or not listed) is its own, unsigned: the asker
judges it by the holder's directory entry, which the platform cannot write (`belied`).

A resident's application reaches a holder under a request id marked as a resident's; its entries
are sealed under the unmarked id, the one the portal knows, and without ⑦–⑩ (operators and
terminals are for the oversight body only).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import acls
from renkei import sealing, signers
from renkei.envelope import Directory
from renkei.suspensions import active_at, active_between, suspension_at
from renkei.windows import CLOCK_SKEW
from schemas.codec import CODEC
from schemas.messages import HolderEntry, HolderLogAnswer, HolderLogEntries, HolderLogEntry

MARK = "resident:"
SUSPENDED, NOT_LISTED = "SUSPENDED", "NOT_LISTED"  # why the platform asks a holder for nothing
SIGNED_ANSWER = b"renkei signed holder log answer\x00"  # what a holder's signature is over
SIGNED_UNSENT = b"renkei signed holder log answer, no entries\x00"  # and of one with none sealed
Parties = Mapping[str, Collection[str]]  # request id → the holders that took part in it


class NotAskable(ValueError):
    """What holders cannot be asked for, and which of the asking's arguments says it: its
    `holders` or its `request_ids` (a command names the option that gave them)."""

    def __init__(self, message: str, argument: str) -> None:
        super().__init__(message)
        self.argument = argument


def each_own(holders: Sequence[str], request_ids: Sequence[str], parties: Parties
             ) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The parts of an inquiry: holders asked for the same requests, and those requests, each
    holder told only of the `request_ids` it took part in (`parties`): none learns of the
    others' exchanges. NotAskable naming a holder that took part in none, or a request none of
    `holders` took part in."""
    own = {h: tuple(r for r in request_ids if h in parties.get(r, ())) for h in holders}
    if idle := [h for h, ids in own.items() if not ids]:
        raise NotAskable(f"took part in none of the requests asked: {', '.join(idle)}", "holders")
    told = {r for ids in own.values() for r in ids}
    if alone := [r for r in request_ids if r not in told]:
        raise NotAskable(f"none of the holders asked took part in: {', '.join(alone)}",
                         "request_ids")
    parts: dict[tuple[str, ...], list[str]] = {}
    for holder, ids in own.items():
        parts.setdefault(ids, []).append(holder)
    return [(tuple(named), ids) for ids, named in parts.items()]


def is_application(request_id: str) -> bool:
    return request_id.startswith(MARK)


def asker(request_id: str) -> str:
    """Whose key a holder seals its entries to: My Portal's for a resident's application."""
    return acls.PORTAL if is_application(request_id) else acls.OVERSIGHT


def seal(public_key: bytes, request_id: str, entries: Sequence[HolderLogEntry],
         signer: sealing.Signer | None = None) -> bytes:
    """What the asker may see of the entries, sealed to it under its own request id; signed by
    `signer`, the holder answering (None: one whose directory entry has no signing key)."""
    if is_application(request_id):
        entries = [replace(e, operator="", terminal="") for e in entries]
    told, sent = request_id.removeprefix(MARK), HolderLogEntries(tuple(entries))
    if signer is not None:
        at = _signing_time()
        sent = replace(sent, signed_at=at, signature=signer.sign(
            signed_bytes(asker(request_id), signer.holder, told, sent.entries, at), _millis(at)))
    return sealing.seal(public_key, CODEC.encode(sent), told)


def unsent_answer(request_id: str, holder: str, too_large: bool,
                  signer: sealing.Signer | None) -> HolderLogAnswer:
    """A holder's answer to `request_id` with no entries sealed in it: `too_large` for one
    message, or none it could seal to the asker; signed by `signer`, the holder answering, over
    why, for the asker and the request id it knows (None: one whose directory entry has no
    signing key): no one else can say so in its name."""
    answer = HolderLogAnswer(request_id, holder, datetime.now(UTC), (), None, too_large)
    if signer is None:
        return answer
    at = _signing_time()
    return replace(answer, signed_at=at, signature=signer.sign(unsent_bytes(
        asker(request_id), signer.holder, request_id.removeprefix(MARK), _unsealed(too_large),
        at), _millis(at)))


def _signing_time() -> datetime:
    """Now, as timestamp-millis keeps it (what is signed is what the asker reads)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def signed_bytes(to: str, holder: str, request_id: str, entries: Sequence[HolderLogEntry],
                 at: datetime) -> bytes:
    """What a holder's signature of its answer is over: whom it answers (`to`, the asker), who
    it is, the request id the asker knows, when it signed, and the entries as HolderLogEntries
    v1 writes them (the oldest version that holds them: the same bytes whatever versions come)."""
    return (SIGNED_ANSWER + _millis(at).to_bytes(sealing.ISSUED, "big")
            + sealing.named(to, holder, request_id)
            + CODEC.encode(HolderLogEntries(tuple(entries))))


def unsent_bytes(to: str, holder: str, request_id: str, why: str, at: datetime) -> bytes:
    """What a holder's signature of its answer with no entries sealed in it is over: whom it
    answers, who it is, the request id the asker knows, when it signed, and why (unsent)."""
    return (SIGNED_UNSENT + _millis(at).to_bytes(sealing.ISSUED, "big")
            + sealing.named(to, holder, request_id, why))


def _millis(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def unsent(answer: HolderLogAnswer) -> str | None:
    """Why a holder's answer carries no entries: "refused" (the platform asks no such holder),
    "too_large" for one message, or "not_sealed" (no key of the asker's to seal them to); None
    if they are sealed in it."""
    if answer.sealed_entries is not None:
        return None
    if answer.refused is not None:
        return "refused"
    return _unsealed(answer.too_large)


def _unsealed(too_large: bool) -> str:
    """Why a holder's own answer has no entries sealed in it (unsent)."""
    return "too_large" if too_large else "not_sealed"


def not_asked(entry: HolderEntry | None, at: datetime | None = None) -> str | None:
    """Why the platform asks a holder (its directory entry, None if it has none) for nothing as
    of `at`, the broker's time of the request naming it (None: now; suspensions.active_at):
    SUSPENDED or NOT_LISTED; None: an active one."""
    if entry is None:
        return NOT_LISTED
    return None if active_at(entry, at) else SUSPENDED


def refusal(request_id: str, holder: str, now: datetime, entry: HolderEntry | None,
            at: datetime) -> HolderLogAnswer | None:
    """The platform's answer `now` in the stead of a holder it does not ask (`entry`, its
    directory entry, None if it has none) as of `at`, the broker's time of the asker's
    `request_id` (so read again, after a take-over, it is judged alike): why (not_asked) and
    since when, at once, and no entries; None for a holder active then, which is asked."""
    why = not_asked(entry, at)
    if why is None:
        return None
    return HolderLogAnswer(request_id, holder, now, (), refused=why,
                           inactive_since=None if entry is None else suspension_at(entry, at)[0])


class NotActive(NotAskable):
    """Holders that are no active holder of the directory (suspended, or never holders): the
    platform would refuse to ask them, and waiting for their answers would only end in
    `missing`."""

    def __init__(self, holders: Sequence[str]) -> None:
        super().__init__(f"not an active holder of the directory: {', '.join(holders)}", "holders")
        self.holders = tuple(holders)


def holders_only(holders: Sequence[str], entry: Directory) -> None:
    """NotActive naming each of `holders` that is no active holder of the directory (`entry`:
    a holder's, None if it has none)."""
    unknown = [h for h in holders if not_asked(entry(h)) is not None]
    if unknown:
        raise NotActive(unknown)


def opened(key: X25519PrivateKey, answer: HolderLogAnswer,
           asked: Collection[str]) -> tuple[HolderLogEntry, ...]:
    """The entries of an answer relayed to the asker, those of the request ids `asked` alone: an
    entry of another exchange a holder sent along is another's data, never shown (CannotOpen:
    none sealed to this key). Its signature is not checked: `verified` does, as it is taken."""
    return _asked(_sent(key, answer), asked)


def verified(key: X25519PrivateKey, answer: HolderLogAnswer, asked: Collection[str], to: str,
             signed_by: sealing.SignedBy | None, latest: datetime) -> tuple[HolderLogEntry, ...]:
    """`opened`, for the asker `to`, once the answer is known to be its holder's: signed by
    `signed_by`, its holder's signing key (signers.of_holder), and dated by `latest` (its
    relaying and the clock skew allowed: relayed_verified); Forged if not, unsigned
    (HolderLogEntries v1) included: the platform, or anyone with the asker's public key, could
    have sealed it. None (a holder whose entry has no signing key): taken unsigned, its reader
    saying so."""
    sent = _sent(key, answer)
    if signed_by is not None:
        _signed(answer, sent.signed_at, sent.signature, signed_by, latest, lambda at: signed_bytes(
            to, signed_by.holder, answer.request_id, sent.entries, at))
    return _asked(sent, asked)


class Checked(NamedTuple):
    """An answer's entries of the requests asked, and whether they were taken `unsigned` (its
    holder's directory entry has no signing key: its reader says so)."""

    entries: tuple[HolderLogEntry, ...]
    unsigned: bool


def relayed_verified(key: X25519PrivateKey, answer: HolderLogAnswer, asked: Collection[str],
                     to: str, entry: HolderEntry | None, relayed: datetime | None,
                     asked_at: datetime) -> Checked:
    """`verified` as signed by its holder's keys in its directory `entry` as of `relayed`: its
    record's append time on the asker's topic, when the platform relayed it, however late it is
    read (None: a topic its writers stamp, now). Its key before its last renewal is taken if it
    was relayed within SIGNING_GRACE of it (signers.of_holder), and one dated later than its
    relaying, a clock skew beside, is Forged: no holder whose clock the platform takes made it
    (as a holder's inbox judges its answer sessions). A holder's answer with no entries sealed
    in it (too large, or not sealed: unsent) is judged alike, as signed over why (unsent_answer),
    and has no entries; the platform's refusal in a holder's stead, its own and unsigned, has no
    entries and is judged by `entry`: FalseRefusal if that shows the holder listed and active
    from `asked_at`, the asker's time of its request, to its relaying, a clock skew beside each
    (belied)."""
    at = relayed or datetime.now(UTC)
    why = unsent(answer)
    if why == "refused":
        belied(answer, entry, asked_at - CLOCK_SKEW, at + CLOCK_SKEW)
        return Checked((), False)
    signed_by = signers.of_holder(answer.holder, entry, at)
    if why is None:
        return Checked(verified(key, answer, asked, to, signed_by, at + CLOCK_SKEW),
                       signed_by is None)
    if signed_by is not None:
        _signed(answer, answer.signed_at, answer.signature, signed_by, at + CLOCK_SKEW,
                lambda signed_at: unsent_bytes(to, signed_by.holder, answer.request_id, why,
                                               signed_at))
    return Checked((), signed_by is None)


async def judged_again(judged: Callable[[], Checked],
                       read_to_end: Callable[[], Awaitable[None]]) -> Checked:
    """An answer `judged` by a reader's view of the holder directory (relayed_verified) and,
    refused as forged (a false refusal among them), judged again once the view is read to its
    end (`read_to_end`): a holder signs with keys renewed as soon as the directory publishes
    them, and the platform refuses to ask one as soon as it publishes its suspension, which the
    reader may not have read yet when the answer comes. If the view cannot be read to its end
    (the broker away, the view stopped), `read_to_end`'s error is raised: a reader that keeps
    what it read (My Portal) reads the answer again, one that waits for no broker (`oversight
    holder-logs`) lets the refusal stand."""
    try:
        return judged()
    except Forged:
        await read_to_end()
    return judged()


class Forged(sealing.CannotOpen):
    """An answer as of a holder that it did not sign: unsigned, or signed by another key, or
    for another asker or request."""


class FalseRefusal(Forged):
    """The platform's refusal to ask a holder whose directory entry shows it listed and active
    at every time the platform could have judged it as of (belied)."""


def belied(refused: HolderLogAnswer, entry: HolderEntry | None, since: datetime,
           until: datetime) -> None:
    """FalseRefusal if the platform's refusal to ask a holder, `refused`, is belied by its
    directory `entry` (the directory is the operators', which the platform cannot write): one
    listed and active from `since` to `until`, between which lies the broker time of the
    request the platform judged it as of (refusal), was asked, or should have been. The
    platform's refusal is unsigned: were it taken as it stands, the platform, which the asker
    asks holders in order to check, could keep any holder from being asked."""
    if entry is not None and active_between(entry, since, until):
        raise FalseRefusal(f"the platform's refusal to ask {refused.holder} for "
                           f"{refused.request_id} ({refused.refused}) is false: the directory "
                           f"shows it listed and active from {since.isoformat()} to "
                           f"{until.isoformat()}")


def _signed(answer: HolderLogAnswer, signed_at: datetime | None, signature: bytes | None,
            signed_by: sealing.SignedBy, latest: datetime,
            signed: Callable[[datetime], bytes]) -> None:
    """Forged unless `signature` is `signed_by`'s of what was `signed` at `signed_at`, dated by
    `latest`."""
    said = f"{answer.holder}'s answer to {answer.request_id}"
    if signature is None or signed_at is None:
        raise Forged(f"{said} is not signed, and {answer.holder} has a signing key: refused as "
                     "forged")
    if signed_at > latest:
        raise Forged(f"{said} is signed later than {latest.isoformat()}: refused as forged")
    try:
        sealing.verified(signed_by, signature, signed(signed_at), _millis(signed_at))
    except InvalidSignature:
        raise Forged(f"{said} is not signed by {signed_by.holder}'s signing key: refused as "
                     "forged") from None


def _sent(key: X25519PrivateKey, answer: HolderLogAnswer) -> HolderLogEntries:
    if answer.sealed_entries is None:
        raise sealing.CannotOpen(f"{answer.holder}'s answer to {answer.request_id} is not sealed")
    return CODEC.decode(sealing.open_sealed(key, answer.sealed_entries, answer.request_id),
                        HolderLogEntries)


def _asked(sent: HolderLogEntries, asked: Collection[str]) -> tuple[HolderLogEntry, ...]:
    return tuple(e for e in sent.entries if e.request_id in asked)
