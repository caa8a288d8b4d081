"""A holder's answer to a request for its side of the access log (⑦–⑫) is the holder's alone:
sealed to the asker's public key, which the directory publishes to anyone, the platform relaying
the answer among them, it is signed by the holder too, and the readers (the oversight body's
`renkei oversight holder-logs`, the portal's answers of the console and of residents'
applications) refuse one it did not sign. Pure: the crypto is, the readers' taking too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import audit.oversight
from audit.oversight import _Asking, _gathered
from audit.oversight_cli import FORGED, UNSIGNED, _shown
from broker import acls
from broker.clients import KafkaAccess
from broker.credentials import Credentials
from portal.inbox import APPLICATIONS_KEPT, Asked, Inbox
from portal.kafka import HolderLogs
from renkei import holder_logs, sealing
from renkei.envelope import Directory
from renkei.holder_logs import MARK, SUSPENDED, Forged
from renkei.signers import of_holder
from renkei.windows import CLOCK_SKEW, SIGNING_GRACE
from schemas.codec import CODEC
from schemas.messages import HolderEntry, HolderLogAnswer, HolderLogEntries, HolderLogEntry

HOLDER, PART = "sakura-town", "part-1"
ENTRY = HolderLogEntry("r-1", "2026-12-03T09:00:00+09:00", "PROVIDER", "staff-1", "term-1",
                       "nenkin", "P-037", "local_tax", '{"taxable_income": "1"}', None, "FOUND")
LIE = replace(ENTRY, operator="nobody", content=None, outcome="NOT_FOUND")  # what hides a look


def _entry(signing: Ed25519PrivateKey | None) -> HolderEntry:
    """The holder's directory entry, publishing `signing`'s public key (None: an entry of before
    signing)."""
    return HolderEntry(HOLDER, "Sakura Town", "municipality", HOLDER, 0, b"\x01" * 32, False,
                       True, datetime.now(UTC),
                       None if signing is None else sealing.public_bytes(signing))


def _answer(asker_key: X25519PrivateKey, entries: list[HolderLogEntry],
            signer: sealing.Signer | None, request_id: str = PART) -> bytes:
    """An answer in the holder's name to `request_id`, sealed to the asker's PUBLIC key (all a
    forger needs) and signed by `signer` if any, as the platform relays it."""
    return CODEC.encode(HolderLogAnswer(request_id.removeprefix(MARK), HOLDER, datetime.now(UTC),
                                        (), holder_logs.seal(sealing.public_bytes(asker_key),
                                                             request_id, entries, signer)))


def _followed(entry: HolderEntry | None, read: HolderEntry | None
              ) -> tuple[Directory, Callable[[], Awaitable[None]]]:
    """A reader's view of the holder's directory `entry`, and its reading to its end, after
    which it holds `read` if given."""
    directory = {HOLDER: entry}

    async def read_to_end() -> None:
        directory[HOLDER] = read or directory[HOLDER]

    return directory.get, read_to_end


def _asking(entry: HolderEntry, read: HolderEntry | None = None) -> _Asking:
    """The oversight body asking the holder of directory `entry`; its directory read to its end,
    `read` if given."""
    asking = _Asking("basis", cast(AIOKafkaProducer, None), audit.oversight.HolderLogs(),
                     *_followed(entry, read))
    asking.awaited, asking.asked_at = {(PART, HOLDER): ("r-1",)}, {PART: datetime.now(UTC)}
    return asking


async def test_an_answer_forged_with_the_oversight_bodys_public_key_is_refused_as_forged(
        ) -> None:
    """The platform writes the oversight body's answers topic: it sealed entries of its own to
    the oversight body's public key as the holder's answer, and `renkei oversight holder-logs`
    printed them as the holder's. Unsigned, or signed by a key not the holder's, it is refused
    and said forged, the holder awaited still; the holder's own, signed, is taken."""
    key, signing = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    asking = _asking(_entry(signing))
    await asking.take(_answer(key, [LIE], None), key, None)
    await asking.take(_answer(key, [LIE], sealing.Signer(HOLDER, Ed25519PrivateKey.generate())),
                      key, None)
    assert (asking.entries, asking.result.forged) == ({}, [HOLDER])
    assert asking.awaited, "a forged answer is no answer: the holder's own is awaited still"
    await asking.take(_answer(key, [ENTRY], sealing.Signer(HOLDER, signing)), key, None)
    assert (asking.entries, asking.awaited) == ({HOLDER: [ENTRY]}, {})
    shown = _shown(_gathered(asking, [HOLDER], ["r-1"]))
    assert (shown["forged"], shown["unsigned"]) == ({HOLDER: FORGED}, {})
    assert shown["answers"][HOLDER][0]["operator"] == "staff-1"


async def test_an_answer_signed_with_keys_the_command_has_not_read_yet_is_judged_again(
        ) -> None:
    """A holder signs with keys renewed as soon as the directory publishes them: its answer
    may come before `renkei oversight holder-logs` has read the renewal. Refused as forged by
    the entry it had, the answer is judged again once the directory is read to its end: signed
    by the renewed key, taken; a forgery stays forged. Each is the first its asking takes: its
    view holds the entry before the renewal until that answer reads it to its end."""
    key, old, new = (X25519PrivateKey.generate(), Ed25519PrivateKey.generate(),
                     Ed25519PrivateKey.generate())
    renewed = replace(_entry(new), previous_signing_key=sealing.public_bytes(old),
                      signing_renewed_at=datetime.now(UTC))
    asking = _asking(_entry(old), read=renewed)
    await asking.take(_answer(key, [ENTRY], sealing.Signer(HOLDER, new)), key, None)
    assert (asking.entries, asking.result.forged, asking.awaited) == ({HOLDER: [ENTRY]}, [], {})
    forged = _asking(_entry(old), read=renewed)
    await forged.take(_answer(key, [LIE], sealing.Signer(HOLDER, Ed25519PrivateKey.generate())),
                      key, None)
    assert (forged.entries, forged.result.forged) == ({}, [HOLDER])


def _unsent(signer: sealing.Signer | None, too_large: bool = False,
            request_id: str = PART) -> bytes:
    """An answer in the holder's name to `request_id` with no entries sealed in it (too large,
    or none it could seal), signed by `signer` if any, as the platform relays it."""
    return CODEC.encode(replace(holder_logs.unsent_answer(request_id, HOLDER, too_large, signer),
                                request_id=request_id.removeprefix(MARK)))


async def test_an_answer_of_no_entries_its_holder_did_not_sign_is_refused_as_forged() -> None:
    """A holder answers with no entries sealed when they are too large for one message or it
    has no key of the asker's to seal them to, and such an answer was unsigned: the platform
    wrote one in a holder's name, `renkei oversight holder-logs` took it as the holder's, and
    the holder's own answer after it was passed over. Unsigned, or signed to say another thing
    (too large, not "not sealed"), it is refused as forged, the holder awaited still; the
    holder's own, signed, is taken."""
    key, signing = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    asking = _asking(_entry(signing))
    await asking.take(_unsent(None), key, None)
    await asking.take(_unsent(None, too_large=True), key, None)
    said_too_large = CODEC.decode(_unsent(sealing.Signer(HOLDER, signing), too_large=True),
                                  HolderLogAnswer)
    await asking.take(CODEC.encode(replace(said_too_large, too_large=False)), key, None)
    assert (asking.result.not_sealed, asking.result.too_large, asking.result.forged) == (
        [], {}, [HOLDER])
    assert asking.awaited, "a forged answer is no answer: the holder's own is awaited still"
    await asking.take(_unsent(sealing.Signer(HOLDER, signing)), key, None)
    assert (asking.result.not_sealed, asking.awaited) == ([HOLDER], {})


async def test_my_portal_refuses_an_answer_of_no_entries_its_holder_did_not_sign(
        inbox: Inbox) -> None:
    """The same answer to a resident's application, unsigned, was taken by the portal as the
    holder's (the resident told the holder could not seal its entries to My Portal, the
    holder's own answer not taken after it). It is not taken; the holder's own, signed, is."""
    key, signing = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    await inbox.add("in", Asked("a-1", datetime.now(UTC), (HOLDER,), ("r-1",), "ABC98765XYZ"))
    portal = _portal(key, inbox, _entry(signing))
    assert await portal._taken(_unsent(None, request_id=MARK + "a-1"), None) is None
    taken = await portal._taken(_unsent(sealing.Signer(HOLDER, signing),
                                        request_id=MARK + "a-1"), None)
    assert taken is not None and holder_logs.unsent(taken[1]) == "not_sealed"


async def test_a_refusal_of_a_holder_suspended_after_the_command_read_it_is_judged_again(
        ) -> None:
    """The platform refuses to ask a holder as soon as the directory publishes its suspension,
    which `renkei oversight holder-logs` may not have read yet when the refusal comes: judged
    false by the entry it had, it is judged again once the directory is read to its end, and
    taken."""
    active, since = _entry(Ed25519PrivateKey.generate()), datetime.now(UTC)
    asking = _asking(active, read=replace(active, active=False, inactive_since=since))
    await asking.take(CODEC.encode(HolderLogAnswer(PART, HOLDER, datetime.now(UTC), (),
                                                   refused=SUSPENDED, inactive_since=since)),
                      X25519PrivateKey.generate(), None)
    assert (list(asking.result.refused), asking.result.falsely_refused, asking.awaited) == (
        [HOLDER], [], {})


@pytest.mark.parametrize(("since_asked", "resumed_after", "taken"), [
    (None, None, False),  # active all the while
    (-timedelta(hours=2), timedelta(hours=1), False),  # resumed an hour before it was asked
    (timedelta(0), None, True),  # suspended as it was asked
    (timedelta(milliseconds=1), timedelta(milliseconds=1), True),  # and resumed since
])
async def test_my_portal_refuses_the_platforms_refusal_of_a_holder_the_directory_shows_active(
        inbox: Inbox, since_asked: timedelta | None, resumed_after: timedelta | None,
        taken: bool) -> None:
    """The platform's answer in a holder's stead that it did not ask it is unsigned, and was
    taken as it stood: the platform could keep a resident's application from any holder by
    saying it was suspended. One for a holder the directory shows listed and active from the
    application's asking to the refusal's relaying is false: not taken, the holder awaited
    still; one for a holder suspended at any time between, or not listed, is taken."""
    asked_at = datetime.now(UTC)
    await inbox.add("in", Asked("a-1", asked_at, (HOLDER,), ("r-1",), "ABC98765XYZ"))
    entry = _entry(Ed25519PrivateKey.generate())
    if since_asked is not None:
        since = asked_at + since_asked
        entry = replace(entry, active=resumed_after is not None, inactive_since=since,
                        resumed_at=None if resumed_after is None else since + resumed_after)
    refusal = CODEC.encode(HolderLogAnswer("a-1", HOLDER, datetime.now(UTC), (),
                                           refused=SUSPENDED, inactive_since=asked_at))
    for listed, said in ((entry, taken), (None, True)):
        portal = _portal(X25519PrivateKey.generate(), inbox, listed)
        assert (await portal._taken(refusal, None) is not None) == said


async def test_a_holder_with_no_signing_key_is_taken_unsigned_and_said_so() -> None:
    """A holder whose entry has no signing key (registered before signing) answers unsigned:
    its entries are shown, said unsigned, as no one can tell them from the platform's."""
    key = X25519PrivateKey.generate()
    asking = _asking(_entry(None))
    await asking.take(_answer(key, [ENTRY], None), key, None)
    shown = _shown(_gathered(asking, [HOLDER], ["r-1"]))
    assert (shown["unsigned"], shown["forged"]) == ({HOLDER: UNSIGNED}, {})
    assert [e["request_id"] for e in shown["answers"][HOLDER]] == ["r-1"]


def test_a_signature_is_of_its_asker_and_its_request_and_not_from_the_future() -> None:
    """A signed answer is taken only by the asker and for the request it was signed for (one
    re-sealed to another asker, or relayed under another request id, is forged), and not
    dated past the reader's time and the skew it allows."""
    key, signing = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public, signer = sealing.public_bytes(key), sealing.Signer(HOLDER, signing)
    signed_by = of_holder(HOLDER, _entry(signing), datetime.now(UTC))
    latest = datetime.now(UTC) + CLOCK_SKEW
    oversights = CODEC.decode(_answer(key, [ENTRY], signer), HolderLogAnswer)
    assert holder_logs.verified(key, oversights, ("r-1",), acls.OVERSIGHT, signed_by,
                                latest) == (ENTRY,)
    with pytest.raises(Forged, match="not signed by sakura-town's signing key"):
        holder_logs.verified(key, oversights, ("r-1",), acls.PORTAL, signed_by, latest)
    with pytest.raises(Forged):  # the entries signed for part-1, sealed again under part-2
        sent = CODEC.decode(sealing.open_sealed(key, oversights.sealed_entries or b"", PART),
                            HolderLogEntries)
        again = sealing.seal(public, CODEC.encode(sent), "part-2")
        holder_logs.verified(key, replace(oversights, request_id="part-2", sealed_entries=again),
                             ("r-1",), acls.OVERSIGHT, signed_by, latest)
    with pytest.raises(Forged, match="signed later than"):
        holder_logs.verified(key, oversights, ("r-1",), acls.OVERSIGHT, signed_by,
                             datetime.now(UTC) - timedelta(minutes=1))


def test_one_signed_before_its_holders_renewal_is_taken_within_the_grace_alone() -> None:
    """Signed with the holder's key before its renewal, dated by then: taken within
    SIGNING_GRACE of the renewal, as answer sessions are; dated later (the renewed key leaked,
    say), forged."""
    key, old, new = (X25519PrivateKey.generate(), Ed25519PrivateKey.generate(),
                     Ed25519PrivateKey.generate())
    answer = CODEC.decode(_answer(key, [ENTRY], sealing.Signer(HOLDER, old)), HolderLogAnswer)
    now = datetime.now(UTC)
    renewed = replace(_entry(new), previous_signing_key=sealing.public_bytes(old),
                      signing_renewed_at=now - timedelta(seconds=1))
    assert holder_logs.verified(key, answer, ("r-1",), acls.OVERSIGHT,
                                of_holder(HOLDER, renewed, now), now + CLOCK_SKEW) == (ENTRY,)
    past = now + SIGNING_GRACE + timedelta(seconds=1)
    with pytest.raises(Forged):
        holder_logs.verified(key, answer, ("r-1",), acls.OVERSIGHT,
                             of_holder(HOLDER, renewed, past), past)
    leaked = replace(renewed, signing_renewed_at=now - CLOCK_SKEW - timedelta(seconds=10))
    with pytest.raises(Forged):
        holder_logs.verified(key, answer, ("r-1",), acls.OVERSIGHT,
                             of_holder(HOLDER, leaked, now), now + CLOCK_SKEW)


def _portal(key: X25519PrivateKey, inbox: Inbox, entry: HolderEntry | None,
            read: HolderEntry | None = None) -> HolderLogs:
    """My Portal's answers to residents' applications, sealed to `key`, kept in `inbox`, judged
    by the holder's directory `entry`; its directory read to its end, `read` if given."""
    entries, read_to_end = _followed(entry, read)
    return HolderLogs(KafkaAccess("127.0.0.1:9", Credentials(acls.PORTAL, "-")), "out", "in",
                      key, inbox, APPLICATIONS_KEPT, entry=entries, read_to_end=read_to_end)


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[Inbox]:
    made = Inbox(tmp_path / "inbox.db")
    yield made
    await made.close()


async def test_my_portal_refuses_a_forged_answer_to_a_residents_application(
        inbox: Inbox) -> None:
    """A resident's application is answered by the holder sealed to My Portal's public key: the
    portal took one the platform sealed as the holder's and showed it to the resident. One not
    signed by the holder is not taken (the holder awaited still); the holder's own is."""
    key, signing = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    await inbox.add("in", Asked("a-1", datetime.now(UTC), (HOLDER,), ("r-1",), "ABC98765XYZ"))
    portal = _portal(key, inbox, _entry(signing))
    application = MARK + "a-1"
    assert await portal._taken(_answer(key, [LIE], None, application), None) is None
    assert await portal._taken(_answer(key, [LIE], sealing.Signer(
        HOLDER, Ed25519PrivateKey.generate()), application), None) is None
    taken = await portal._taken(_answer(key, [ENTRY], sealing.Signer(HOLDER, signing),
                                        application), None)
    assert taken is not None and holder_logs.opened(key, taken[1], ("r-1",)) == (
        replace(ENTRY, operator="", terminal=""),)


async def test_my_portal_judges_an_answer_signed_with_keys_its_view_has_not_read_again(
        inbox: Inbox) -> None:
    """A holder signs with keys renewed as soon as the directory publishes them: its answer to
    a resident's application may come before the portal's view of the directory has read the
    renewal, and it was refused as forged by the entry the view had and its record marked read,
    the holder's answer lost for good (the resident shown it overdue). Refused, it is judged
    again once the view is read to its end: signed by the renewed key, kept; a forgery is not."""
    key, old, new = (X25519PrivateKey.generate(), Ed25519PrivateKey.generate(),
                     Ed25519PrivateKey.generate())
    renewed = replace(_entry(new), previous_signing_key=sealing.public_bytes(old),
                      signing_renewed_at=datetime.now(UTC))
    for request_id in ("a-1", "a-2"):
        await inbox.add("in", Asked(request_id, datetime.now(UTC), (HOLDER,), ("r-1",),
                                    "ABC98765XYZ"))
    portal = _portal(key, inbox, _entry(old), read=renewed)
    await portal._take(0, 0, _answer(key, [ENTRY], sealing.Signer(HOLDER, new), MARK + "a-1"),
                       None)
    await portal._take(0, 1, _answer(key, [LIE], sealing.Signer(
        HOLDER, Ed25519PrivateKey.generate()), MARK + "a-2"), None)
    kept = [await inbox.asked("in", request_id) for request_id in ("a-1", "a-2")]
    assert [a is not None and HOLDER in a.answers for a in kept] == [True, False]


async def test_my_portal_takes_an_answer_again_when_its_view_cannot_be_read_to_its_end(
        inbox: Inbox) -> None:
    """An answer refused by the portal's view of the directory is judged again once the view is
    read to its end; when that read failed (a broker error, the broker away) the refusal stood
    and the record was marked read, the holder's answer lost for good. The read's error is
    raised, the record is not marked read: taken again (_follow), it is judged once the view
    can be read."""
    key, old, new = (X25519PrivateKey.generate(), Ed25519PrivateKey.generate(),
                     Ed25519PrivateKey.generate())
    renewed = replace(_entry(new), previous_signing_key=sealing.public_bytes(old),
                      signing_renewed_at=datetime.now(UTC))
    await inbox.add("in", Asked("a-1", datetime.now(UTC), (HOLDER,), ("r-1",), "ABC98765XYZ"))
    portal = _portal(key, inbox, _entry(old), read=renewed)
    read_to_end, failing = portal._read_to_end, True

    async def failing_once() -> None:
        nonlocal failing
        if failing:
            failing = False
            raise KafkaConnectionError("the broker away")
        await read_to_end()

    portal._read_to_end = failing_once
    answer = _answer(key, [ENTRY], sealing.Signer(HOLDER, new), MARK + "a-1")
    with pytest.raises(KafkaConnectionError):
        await portal._take(0, 0, answer, None)
    assert await inbox.positions("in") == {}  # not read: taken again
    await portal._take(0, 0, answer, None)
    kept = await inbox.asked("in", "a-1")
    assert kept is not None and HOLDER in kept.answers


def _signed_then(key: X25519PrivateKey, signer: sealing.Signer, at: datetime,
                 monkeypatch: pytest.MonkeyPatch, request_id: str = PART) -> bytes:
    """`_answer` of ENTRY signed by `signer` with its clock at `at`."""
    with monkeypatch.context() as holders_clock:
        holders_clock.setattr(holder_logs, "datetime", SimpleNamespace(now=lambda tz: at))
        return _answer(key, [ENTRY], signer, request_id)


RENEWED = timedelta(minutes=10)  # how long before the answer is read its holder was renewed
IN_GRACE, PAST_GRACE = timedelta(seconds=10), SIGNING_GRACE + timedelta(seconds=1)


def _renewed(old: Ed25519PrivateKey) -> HolderEntry:
    """The holder's entry since its renewal RENEWED ago: a new signing key, `old` before it."""
    return replace(_entry(Ed25519PrivateKey.generate()), previous_signing_key=sealing.public_bytes(
        old), signing_renewed_at=datetime.now(UTC) - RENEWED)


def _signed_before_renewal(key: X25519PrivateKey, entry: HolderEntry, old: Ed25519PrivateKey,
                           monkeypatch: pytest.MonkeyPatch, request_id: str = PART) -> bytes:
    """An answer the holder of `entry` signed with `old` a second before its renewal."""
    assert entry.signing_renewed_at is not None
    return _signed_then(key, sealing.Signer(HOLDER, old),
                        entry.signing_renewed_at - timedelta(seconds=1), monkeypatch, request_id)


@pytest.mark.parametrize(("relayed_after", "taken"), [(IN_GRACE, True), (PAST_GRACE, False)])
async def test_the_oversight_body_judges_an_answer_signed_before_a_renewal_by_its_relaying(
        monkeypatch: pytest.MonkeyPatch, relayed_after: timedelta, taken: bool) -> None:
    """A holder signed its answer with its signing key just before `renkei holder renew`, the
    platform relayed it at once, and `renkei oversight holder-logs` read it past SIGNING_GRACE
    of the renewal: judged by the reader's clock, it was refused as forged. It is judged by its
    record's append time on the answers topic: in the grace, taken; relayed past it, forged
    (the old key leaked, say)."""
    key, old = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    entry = _renewed(old)
    assert entry.signing_renewed_at is not None
    asking = _asking(entry)
    await asking.take(_signed_before_renewal(key, entry, old, monkeypatch), key,
                      entry.signing_renewed_at + relayed_after)
    assert (asking.entries, asking.result.forged) == (
        ({HOLDER: [ENTRY]}, []) if taken else ({}, [HOLDER]))


@pytest.mark.parametrize(("relayed_after", "taken"), [(IN_GRACE, True), (PAST_GRACE, False)])
async def test_my_portal_judges_an_answer_signed_before_a_renewal_by_its_relaying(
        inbox: Inbox, monkeypatch: pytest.MonkeyPatch, relayed_after: timedelta,
        taken: bool) -> None:
    """The same answer to a resident's application, read by the portal past the grace (it was
    down, or behind): refused as forged, and its record marked read, the holder's answer was
    lost for good and the resident saw the holder overdue. Relayed in the grace, it is kept;
    relayed past it, not (the holder awaited still)."""
    key, old = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    entry = _renewed(old)
    assert entry.signing_renewed_at is not None
    await inbox.add("in", Asked("a-1", datetime.now(UTC), (HOLDER,), ("r-1",), "ABC98765XYZ"))
    portal = _portal(key, inbox, entry)
    await portal._take(0, 0, _signed_before_renewal(key, entry, old, monkeypatch, MARK + "a-1"),
                       entry.signing_renewed_at + relayed_after)
    asked = await inbox.asked("in", "a-1")
    assert asked is not None and (HOLDER in asked.answers) == taken


def test_an_answer_is_signed_by_its_relaying_and_read_now_if_its_topic_has_no_append_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """relayed_verified: a signature dated later than its answer's relaying, a clock skew
    beside, is forged, however late it is read (as the holder's inbox judges answer sessions);
    with no append time (a topic its writers stamp), the relaying is taken as now."""
    key, signing = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    entry, now = _entry(signing), datetime.now(UTC)
    answer = CODEC.decode(_signed_then(key, sealing.Signer(HOLDER, signing), now, monkeypatch),
                          HolderLogAnswer)
    checked = holder_logs.relayed_verified(key, answer, ("r-1",), acls.OVERSIGHT, entry, None,
                                           now)
    assert checked == holder_logs.Checked((ENTRY,), unsigned=False)
    with pytest.raises(Forged, match="signed later than"):
        holder_logs.relayed_verified(key, answer, ("r-1",), acls.OVERSIGHT, entry,
                                     now - CLOCK_SKEW - timedelta(seconds=1), now)
    assert holder_logs.relayed_verified(key, answer, ("r-1",), acls.OVERSIGHT, _entry(None),
                                        now - RENEWED, now).unsigned
