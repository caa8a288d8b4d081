"""The platform's code service, its keys, and re-keying: pure, no Kafka."""

from __future__ import annotations

import json
import re
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

import audit.cli as audit_cli
from audit.events import AccessLogEvent
from audit.heads import Signer
from audit.store import AuditStore, Query
from broker import credentials, topics
from processors import binding, decider, directory, keys, linkage, rekey
from processors.approval import PatternList
from processors.codes import ALPHABET, CodeService, InvalidCode, UnitEpoch
from processors.context import Context
from processors.decision_sealing import DecisionSealer
from processors.keys_cli import keys_cli
from processors.linkage import FromHolder
from processors.patterns import load
from processors.tickets import TicketSealer
from registry import tickets
from registry.resident_code import random_codes
from renkei import sealing
from renkei.clock import Age
from renkei.envelope import Incoming
from renkei.state import STATE_ENV, write_json
from schemas.codec import CODEC
from schemas.messages import (
    FOUND,
    REFUSED,
    BindingAnswer,
    HolderEntry,
    LinkageRequest,
    Pending,
    ProviderQuery,
    Refusal,
    RegistryAnswer,
    RegistryCandidate,
    Rejection,
    RekeyAnswer,
    RekeyRequest,
    ResidentCode,
)

MILLION = 1_000_000
CODE = re.compile(r"[0-9A-Z]{11}")
CITY, MEDICAL, TAX = UnitEpoch("city-a", 0), UnitEpoch("medical", 0), UnitEpoch("tax-office", 3)
# fixed masters: every run draws the same codes, so the counts below are reproducible
MASTERS = keys.MasterKeys(bytes(range(32)), bytes(range(32, 64)))


@pytest.fixture(scope="module")
def codes() -> CodeService:
    return CodeService(MASTERS)


@pytest.fixture(scope="module")
def million(codes: CodeService) -> dict[str, list[str]]:
    """A million residents, and their link codes in two units (batch API)."""
    residents = random_codes(MILLION, seed=11)
    return {"residents": residents,
            "city": _valid(codes.link_codes(residents, CITY)),
            "medical": _valid(codes.link_codes(residents, MEDICAL))}


def _valid(results: list[str | InvalidCode]) -> list[str]:
    assert not any(isinstance(r, InvalidCode) for r in results)
    return [r for r in results if isinstance(r, str)]


def test_round_trip_of_a_million_resident_codes(codes: CodeService,
                                                million: dict[str, list[str]]) -> None:
    """No two residents share an ID code or a link code of one unit; every code comes back."""
    ids = _valid(codes.id_codes(million["residents"]))
    assert len(set(ids)) == MILLION
    for unit in ("city", "medical"):
        assert len(set(million[unit])) == MILLION
        assert all(CODE.fullmatch(c) for c in million[unit][:10_000])
    assert codes.resident_codes(million["city"], CITY) == million["residents"]


def test_one_persons_link_codes_differ_across_units(million: dict[str, list[str]]) -> None:
    same = sum(a == b for a, b in zip(million["city"], million["medical"], strict=True))
    assert same == 0


def test_conversion_between_units_reaches_the_same_person(
        codes: CodeService, million: dict[str, list[str]]) -> None:
    part = slice(0, 100_000)
    assert codes.convert_batch(million["city"][part], CITY, MEDICAL) == million["medical"][part]
    assert codes.convert_batch(million["medical"][part], MEDICAL, CITY) == million["city"][part]


def test_link_codes_presented_under_another_unit_are_refused(
        codes: CodeService, million: dict[str, list[str]]) -> None:
    """A million city link codes presented as medical ones: false accepts are counted. Chance
    alone would pass (10/36)^11 / 11 ≈ 7e-8 of them, 0.07 in a million."""
    results = codes.convert_batch(million["city"], MEDICAL, CITY)
    false_accepts = sum(not isinstance(r, InvalidCode) for r in results)
    assert false_accepts <= 2
    assert str(results[0]) == "not a link code of unit 'medical' at epoch 0"


def test_forged_link_codes_are_refused(codes: CodeService) -> None:
    forged = ALPHABET.texts(np.random.default_rng(5).integers(0, 36, size=(MILLION, 11)))
    results = codes.resident_codes(forged, CITY)
    assert sum(not isinstance(r, InvalidCode) for r in results) <= 2


def test_a_bad_item_does_not_fail_its_batch(codes: CodeService) -> None:
    residents = random_codes(3, seed=3)
    good = _valid(codes.link_codes(residents, CITY))
    presented = [good[0], "", "abcdefghijk", "ＡＢＣＤＥＦＧＨＩＪＫ", good[1], good[2][:10] + "Z",
                 "12345678901", good[2]]
    results = codes.resident_codes(presented, CITY)
    assert [r if isinstance(r, str) else type(r) for r in results] == [
        residents[0], InvalidCode, InvalidCode, InvalidCode, residents[1],
        InvalidCode, InvalidCode, residents[2]]
    assert str(results[1]) == "malformed: a code is 11 characters of 0-9A-Z"


def test_resident_codes_must_be_valid(codes: CodeService) -> None:
    good = random_codes(1, seed=4)[0]
    wrong_check = good[:10] + str((int(good[10]) + 1) % 10)
    results = codes.link_codes([good, wrong_check, "1234567890", "1234567890A"], CITY)
    assert isinstance(results[0], str)
    assert all(isinstance(r, InvalidCode) for r in results[1:])
    with pytest.raises(InvalidCode, match="not a resident code"):
        codes.id_code(wrong_check)


def test_units_per_item_equal_one_unit_per_batch(codes: CodeService) -> None:
    residents = random_codes(300, seed=6)
    units = [(CITY, MEDICAL, TAX)[i % 3] for i in range(300)]
    mixed = codes.link_codes(residents, units)
    for unit in (CITY, MEDICAL, TAX):
        alone = codes.link_codes([r for r, u in zip(residents, units, strict=True) if u == unit],
                                 unit)
        assert [c for c, u in zip(mixed, units, strict=True) if u == unit] == alone
    back = _valid(codes.convert_batch(_valid(mixed), units, list(reversed(units))))
    assert codes.resident_codes(back, list(reversed(units))) == residents


def test_the_two_halves_of_a_conversion(codes: CodeService) -> None:
    """Link code → validated ID code, then ID code → another unit's link code (as linkage does)."""
    residents = random_codes(500, seed=9)
    links = _valid(codes.link_codes(residents, CITY))
    ids = codes.id_codes_of([*links, "0" * 11, "bad"], CITY)
    assert ids[:-2] == codes.id_codes(residents)
    assert [str(e) for e in ids[-2:]] == ["not a link code of unit 'city-a' at epoch 0",
                                          "malformed: a code is 11 characters of 0-9A-Z"]
    assert codes.link_codes_of(_valid(ids[:-2]), MEDICAL) == codes.link_codes(residents, MEDICAL)
    with pytest.raises(InvalidCode):
        codes.link_codes_of(["short"], MEDICAL)


def test_scalar_calls_are_batches_of_one(codes: CodeService) -> None:
    resident = random_codes(1, seed=7)[0]
    link = codes.link_code(resident, CITY)
    assert codes.convert(link, CITY, TAX) == codes.link_code(resident, TAX)
    assert codes.resident_code(link, CITY) == resident
    assert CODE.fullmatch(codes.id_code(resident))
    with pytest.raises(InvalidCode):
        codes.resident_code(link, TAX)


def test_rekeying_keeps_bindings_and_refuses_the_old_epoch(codes: CodeService) -> None:
    residents = random_codes(10_000, seed=8)
    old = _valid(codes.link_codes(residents, UnitEpoch("city-a", 4)))
    new = rekey.rekey(codes, [*old, "NOTACODE000"], "city-a", 4, 5)
    assert isinstance(new[-1], InvalidCode)
    assert codes.resident_codes(_valid(new[:-1]), UnitEpoch("city-a", 5)) == residents
    assert sum(a == b for a, b in zip(old, new, strict=False)) == 0
    refused = codes.resident_codes(old, UnitEpoch("city-a", 5))
    assert all(isinstance(r, InvalidCode) for r in refused)
    with pytest.raises(ValueError):
        rekey.rekey(codes, old, "city-a", 5, 5)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    return tmp_path


def test_keys_init_writes_a_private_store_once(state: Path) -> None:
    with pytest.raises(keys.KeysMissing):
        keys.load()
    first = CliRunner().invoke(keys_cli, ["init"])
    assert first.exit_code == 0 and "created" in first.output
    path = keys.store_path()
    assert path.is_relative_to(state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    content = path.read_bytes()
    second = CliRunner().invoke(keys_cli, ["init"])
    assert second.exit_code == 0 and "already exists" in second.output
    assert path.read_bytes() == content
    secrets = json.loads(content)
    assert all(secret not in first.output + second.output for secret in secrets.values())
    id_key = keys.id_key_path()  # the ID key alone, for My Portal
    assert stat.S_IMODE(id_key.stat().st_mode) == 0o600
    assert json.loads(id_key.read_bytes()) == {"id_key": keys.load().id_key().hex()}
    id_key.unlink()  # a state folder from before the ID key had its own file
    third = CliRunner().invoke(keys_cli, ["init"])
    assert third.exit_code == 0 and f"created {id_key}" in third.output
    assert path.read_bytes() == content and id_key.exists()
    login_key, public = tickets.key_path(), tickets.public_key_path()  # the registry's
    assert stat.S_IMODE(login_key.stat().st_mode) == 0o600
    assert "private_key" not in public.read_text()  # the authority's: the public half alone
    assert tickets.public_key() == tickets.signing_key().public_key


def test_keys_init_refuses_an_id_key_file_of_other_keys(state: Path) -> None:
    """The key store lost (`renkei keys init`, the error of every command said) or restored from
    another backup: init made new keys beside the old ID key's file, or left that file, and the
    registry side told My Portal ID codes no entry has, every resident's history empty, unsaid;
    it is refused, saying what to do, and nothing is made."""
    keys.init()
    id_key = keys.id_key_path().read_bytes()
    keys.store_path().unlink()
    lost = CliRunner().invoke(keys_cli, ["init"])
    assert lost.exit_code != 0 and isinstance(lost.exception, keys.NotTheStoresIdKey)
    assert "restore the key store from its backup" in str(lost.exception)
    assert not keys.store_path().exists() and keys.id_key_path().read_bytes() == id_key
    write_json(keys.store_path(), {"id_master": "11" * 32, "link_master": "22" * 32},
               private=True)  # another backup's
    with pytest.raises(keys.NotTheStoresIdKey, match="remove it and run `renkei keys init`"):
        keys.init()
    keys.id_key_path().unlink()
    keys.init()
    assert keys.load_id_key() == keys.load().id_key()


def test_keys_init_writes_the_public_half_of_a_login_key_made_anew(state: Path) -> None:
    """The login key lost and made again by `renkei keys init`: its old public half was left,
    and the numbering authority refused every ticket the registry side signed since as forged
    (no resident's number could be changed); it is the new key's."""
    tickets.init()
    tickets.key_path().unlink()
    assert tickets.public_key_path() in tickets.init()
    assert tickets.public_key() == tickets.signing_key().public_key
    shown = tickets.ticket(tickets.signing_key(), ["R1"], datetime.now(UTC))
    assert tickets.check(tickets.public_key(), shown, "R1", lambda *_: Age.YOUNG).nonce
    assert tickets.init() == [], "made once"


def test_keys_are_per_unit_and_epoch_and_never_shown(state: Path) -> None:
    keys.init()
    masters = keys.load()
    derived = {masters.id_key(), masters.link_key("city-a", 0), masters.link_key("city-a", 1),
               masters.link_key("medical", 0), masters.digest_key()}
    assert len(derived) == 5 and all(len(k) == 32 for k in derived)
    assert masters.link_key("city-a", 0) == keys.load().link_key("city-a", 0)
    assert masters.digest_key() == keys.load().digest_key(), "every instance's, at each start"
    shown = repr(masters) + repr(CodeService(masters).__dict__)
    for secret in (masters.id_master, masters.link_master, *derived):
        assert secret.hex() not in shown and repr(secret) not in shown
    assert masters.ticket_key() not in derived and len(masters.ticket_key()) == 32
    assert masters.decisions_key() not in {*derived, masters.ticket_key()}
    assert masters.decisions_key() == keys.load().decisions_key(), "any instance opens them"
    assert masters.sealing_key().public_key().public_bytes_raw() == (
        keys.load().sealing_key().public_key().public_bytes_raw())
    with pytest.raises(ValueError):
        masters.link_key("city/a", 0)
    with pytest.raises(ValueError):
        masters.link_key("city-a", -1)


NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _entry(holder: str, unit: str, epoch: int, role: str = "municipality") -> HolderEntry:
    return HolderEntry(holder, holder, role, unit, epoch, b"k" * 32, False, True, NOW)


@pytest.fixture
def ctx(codes: CodeService) -> Context:
    """The platform's context with city-a at key epoch 2 of its own unit."""
    context = Context(codes, TicketSealer(MASTERS.ticket_key()), MASTERS.sealing_key(),
                      MASTERS.digest_key(), DecisionSealer(MASTERS.decisions_key()))
    context.directory = {"city-a": _entry("city-a", "city-a", 2), "city-c": replace(
        _entry("city-c", "city-c", 0), active=False, inactive_since=NOW)}
    return context


def _rekey(ctx: Context, link_codes: list[str], from_epoch: int, holder: str = "city-a",
           sent_at: datetime = NOW) -> tuple[str, bytes, bytes]:
    """Whom a re-keying request tells, what, and its access-log event: made at once, or by the
    decider as the request's first judgement (a Refusal to it, its answer or refusal)."""
    request = RekeyRequest("rk-1", sent_at, from_epoch, tuple(link_codes))
    incoming = Incoming(topics.outbox(holder), 0, 7, NOW, CODEC.encode(request))
    sent = rekey.answer(FromHolder(incoming, holder, request), ctx, NOW)
    if [s.topic for s in sent] == [decider.DECISIONS]:
        judged = CODEC.decode(sent[0].value, Refusal)
        return topics.inbox(judged.requester), judged.rejection, judged.logged
    told, event = sent
    return told.topic, told.value, event.value


def test_a_rekeying_request_gets_each_code_of_the_units_current_epoch(
        codes: CodeService, ctx: Context) -> None:
    residents = random_codes(100, seed=3)
    old = _valid(codes.link_codes(residents, UnitEpoch("city-a", 0)))
    current = codes.link_code(residents[0], UnitEpoch("city-a", 2))  # not of epoch 0
    whom, told, event = _rekey(ctx, [*old, "NOTACODE000", current], from_epoch=0)
    assert whom == topics.inbox("city-a")
    answer = CODEC.decode(told, RekeyAnswer)
    assert (answer.unit, answer.epoch) == ("city-a", 2)
    assert [c.old for c in answer.codes] == [*old, "NOTACODE000", current]
    new = [c.new for c in answer.codes]
    assert new[-2:] == [None, None]
    assert codes.resident_codes([n for n in new[:-2] if n], UnitEpoch("city-a", 2)) == residents
    logged = CODEC.decode(event, AccessLogEvent)
    assert (logged.kind, logged.outcome, logged.requester, logged.person) == (
        "REKEY", "REKEYED", "city-a", None)
    assert logged.reason == ("100 link codes of epoch 0 re-keyed to epoch 2 of unit 'city-a'; "
                             "2 not valid")


def test_valid_codes_of_the_current_epoch_come_back_as_they_are(codes: CodeService,
                                                                 ctx: Context) -> None:
    """An invalid one gets none, as of an older epoch: it was returned as its own new code."""
    current = codes.link_code(random_codes(1, seed=4)[0], UnitEpoch("city-a", 2))
    _, told, event = _rekey(ctx, [current, "ANYCODE0000"], from_epoch=2)
    answer = CODEC.decode(told, RekeyAnswer)
    assert (answer.epoch, [(c.old, c.new) for c in answer.codes]) == (
        2, [(current, current), ("ANYCODE0000", None)])
    assert CODEC.decode(event, AccessLogEvent).reason == (
        "nothing to re-key: unit 'city-a' at epoch 2 already; 1 not valid")


@pytest.mark.parametrize(("holder", "from_epoch", "sent_at", "reason", "detail"), [
    ("city-a", 3, NOW, "NOT_PERMITTED", "unit 'city-a' at epoch 2 has no codes of epoch 3"),
    ("city-a", -1, NOW, "NOT_PERMITTED", "unit 'city-a' at epoch 2 has no codes of epoch -1"),
    ("city-b", 0, NOW, "NOT_PERMITTED", "the requester is not in the holder directory"),
    ("city-c", 0, NOW, "SUSPENDED", "the requester is suspended since 2026-12-01T09:00:00+00:00: "
                                    "not an active holder in the directory"),
    ("city-a", 0, NOW - timedelta(minutes=10), "STALE_REQUEST", "sent outside the replay window"),
])
def test_a_rekeying_request_that_cannot_be_answered_is_rejected_to_its_sender(
        ctx: Context, holder: str, from_epoch: int, sent_at: datetime, reason: str,
        detail: str) -> None:
    whom, told, event = _rekey(ctx, ["ANYCODE0000"], from_epoch, holder, sent_at)
    assert whom == topics.inbox(holder)
    rejection = CODEC.decode(told, Rejection)
    assert (rejection.request_id, rejection.reason, rejection.detail) == ("rk-1", reason, detail)
    assert CODEC.decode(event, AccessLogEvent).outcome == "REJECTED"


def test_the_operator_bumps_a_whole_unit_to_its_next_epoch() -> None:
    entries = {"hospital": _entry("hospital", "medical", 1, "hospital"),
               "clinic": _entry("clinic", "medical", 1, "clinic"),
               "town": _entry("town", "town", 4),
               "platform": _entry("platform", "platform", 0, directory.SERVICE)}
    assert directory.unit_epoch(entries, "medical") == 1
    assert directory.unit_epoch(entries, "pharmacy") == 0  # a new unit starts at 0
    bumped = directory.next_epoch(entries, "medical")
    assert sorted((e.holder_id, e.link_unit, e.key_epoch) for e in bumped) == [
        ("clinic", "medical", 2), ("hospital", "medical", 2)]
    assert all(e.updated_at > NOW for e in bumped)
    with pytest.raises(LookupError, match="no holder has link-code unit 'platform'"):
        directory.next_epoch(entries, "platform")


def test_a_holder_registered_again_keeps_its_unit_and_private_flag_unless_given(
        state: Path) -> None:
    """Re-registered to correct its name, a private holder in a re-keyed unit went to a unit of
    its own at epoch 0 (every binding lost) and public (binding without consent)."""
    entries = {"clinic": replace(_keyed(_entry("clinic", "medical", 1)), private=True),
               "pharmacy": _entry("pharmacy", "medical", 1)}
    again = directory.registered(entries, "clinic", "北町クリニック", "municipality")
    assert (again.link_unit, again.key_epoch, again.private) == ("medical", 1, True)
    assert directory.changes(entries["clinic"], again) == ["name clinic → 北町クリニック"]
    public = directory.registered(entries, "clinic", "clinic", "municipality", "medical", False)
    assert directory.changes(entries["clinic"], public) == ["private True → False"]
    with pytest.raises(directory.UnitMove, match="every binding would have to be redone"):
        directory.registered(entries, "clinic", "clinic", "municipality", "clinic")
    moved = directory.registered(entries, "clinic", "clinic", "municipality", "clinic",
                                 move_unit=True)
    assert directory.changes(entries["clinic"], moved) == ["link_unit medical → clinic",
                                                           "key_epoch 1 → 0"]
    new = directory.registered(entries, "town", "town", "municipality")
    assert (new.link_unit, new.key_epoch, new.private) == ("town", 0, False)


def test_a_holder_made_inactive_and_registered_again_stays_inactive(state: Path) -> None:
    """An inactive holder registered again (its name corrected) was made active again, its
    directory entry built anew: it keeps being inactive, and since when."""
    since = NOW + timedelta(minutes=1)
    entries = {"clinic": replace(_keyed(_entry("clinic", "clinic", 0)), active=False,
                                 inactive_since=since)}
    again = directory.registered(entries, "clinic", "北町クリニック", "municipality")
    assert (again.active, again.inactive_since) == (False, since)
    assert directory.changes(entries["clinic"], again) == ["name clinic → 北町クリニック"]


def _keyed(entry: HolderEntry) -> HolderEntry:
    """The entry with its holder's sealing and signing keys, as registering it now gives."""
    return replace(entry, public_key=sealing.public_bytes(sealing.key_of(entry.holder_id)),
                   signing_key=sealing.public_bytes(sealing.signing_key_of(entry.holder_id)))


def test_a_holder_registered_again_is_told_its_changed_sealing_and_signing_keys(
        state: Path) -> None:
    """A holder registered again with new keys (its key files made anew), or given its first
    signing key (an entry from before signing keys), was told its entry was unchanged."""
    before = _keyed(_entry("clinic", "clinic", 0))
    assert directory.changes(before, directory.holder_entry("clinic", "clinic",
                                                            "municipality")) == []
    signing = before.signing_key
    assert signing is not None
    unsigned = replace(before, signing_key=None)
    assert directory.changes(unsigned, directory.registered(
        {"clinic": unsigned}, "clinic", "clinic", "municipality")) == [
        f"signing_key none → {signing[:8].hex()}…"]
    for kind in (sealing.SEALING, sealing.SIGNING):
        sealing.key_file("clinic", kind).unlink()
    renewed = directory.registered({"clinic": before}, "clinic", "clinic", "municipality")
    assert renewed.signing_key is not None and renewed.signing_key != signing
    assert directory.changes(before, renewed) == [
        f"public_key {before.public_key[:8].hex()}… → {renewed.public_key[:8].hex()}…",
        f"signing_key {signing[:8].hex()}… → {renewed.signing_key[:8].hex()}…"]


def test_a_new_holder_is_not_put_into_a_unit_others_are_in_unless_given_it(
        state: Path) -> None:
    """A new holder whose id was a sector's unit went into it as its own: every link code of
    the sector's holders was its too, though no one had said it was to share them."""
    entries = {"clinic": _entry("clinic", "medical", 1),
               "pharmacy": _entry("pharmacy", "medical", 1)}
    with pytest.raises(ValueError, match="already the unit of clinic, pharmacy"):
        directory.registered(entries, "medical", "medical", "company")
    joined = directory.registered(entries, "medical", "medical", "hospital", "medical")
    assert (joined.link_unit, joined.key_epoch) == ("medical", 1)


def test_a_holder_joins_another_holders_own_unit_only_if_told_to_share_it(
        state: Path) -> None:
    """`--unit sakura-town` put a new holder into the town's own unit unasked: every link code
    of the town's records was its too. A sector's unit, named as no holder, stays open."""
    entries = {"sakura-town": _entry("sakura-town", "sakura-town", 2),
               "clinic": _entry("clinic", "medical", 1),
               "moved": _entry("moved", "medical", 1)}
    with pytest.raises(directory.UnitTaken, match="own unit of holder sakura-town"):
        directory.registered(entries, "intruder", "intruder", "company", "sakura-town")
    with pytest.raises(directory.UnitTaken, match="give --share-unit"):
        directory.registered(entries, "clinic", "clinic", "company", "sakura-town",
                             move_unit=True)
    shared = directory.registered(entries, "annex", "annex", "municipality", "sakura-town",
                                  share_unit=True)
    assert (shared.link_unit, shared.key_epoch) == ("sakura-town", 2)
    assert directory.registered(entries, "pharmacy", "pharmacy", "company",
                                "medical").link_unit == "medical"
    assert directory.registered(entries, "x", "x", "company", "moved").link_unit == "moved"


def test_a_holder_is_not_registered_under_the_services_role(state: Path) -> None:
    """A holder registered with `--role service` was passed by when its unit was re-keyed: the
    unit's old key stayed in use for its link codes."""
    entries = {"clinic": _entry("clinic", "medical", 1)}
    with pytest.raises(ValueError, match="left out of every re-keying"):
        directory.registered(entries, "annex", "annex", directory.SERVICE, "medical")
    with pytest.raises(ValueError, match="role 'service' is the platform services' own"):
        directory.registered(entries, "clinic", "clinic", directory.SERVICE)


def test_a_service_is_not_registered_as_a_holder(state: Path) -> None:
    """directory.registration took a service's id (only `renkei holder register` refused it):
    registered as `platform`, a holder's entry took the platform's place in the directory, its
    sealing key the one holders seal their queries to."""
    keys.init()
    entries = {e.holder_id: e for e in directory.service_entries()}
    for service in (*entries, "audit", "admin"):
        with pytest.raises(ValueError, match="reserved principal name, not a holder id"):
            directory.registered(entries, service, "intruder", "company")


RESIDENT = random_codes(1, seed=11)[0]


def _query(ctx: Context, provider: HolderEntry) -> ProviderQuery:
    """The query the platform sends `provider` (as town) on a lawful request by nenkin."""
    ctx.directory = {"nenkin": _entry("nenkin", "nenkin", 0, "pension_service"), "town": provider}
    ctx.patterns = PatternList(load())
    link_a = ctx.codes.link_code(RESIDENT, UnitEpoch("nenkin", 0))
    request = LinkageRequest("r-1", NOW, link_a, "P-037", "town", "local_tax")
    incoming = Incoming(topics.outbox("nenkin"), 0, 7, NOW, CODEC.encode(request))
    to_decider, = linkage.requests([FromHolder(incoming, "nenkin", request)], ctx)
    return CODEC.decode(CODEC.decode(to_decider.value, Pending).query, ProviderQuery)


def test_for_a_while_after_a_rekeying_a_query_carries_the_previous_epochs_code_too(
        ctx: Context) -> None:
    """So that a provider whose bindings have not all moved yet still finds the person."""
    rekeyed = replace(_entry("town", "town", 3), updated_at=NOW - timedelta(hours=1))
    query = _query(ctx, rekeyed)
    assert query.link_code == ctx.codes.link_code(RESIDENT, UnitEpoch("town", 3))
    assert query.previous_link_code == ctx.codes.link_code(RESIDENT, UnitEpoch("town", 2))
    long_ago = replace(rekeyed, updated_at=NOW - ctx.rekey_grace - timedelta(seconds=1))
    assert _query(ctx, long_ago).previous_link_code is None
    assert _query(ctx, _entry("town", "town", 0)).previous_link_code is None  # never re-keyed


def test_the_previous_epochs_code_is_carried_for_a_while_after_the_rekeying_not_a_later_command(
        ctx: Context, state: Path) -> None:
    """A suspension, a resumption or a renewal after a breach wrote the holder's entry anew, and
    its time was taken for the re-keying's: the previous epoch's link codes, perhaps the leaked
    ones, were carried again for the whole grace. It runs from the re-keying (v7), as the
    entries the commands write carry it; from the entry's time for one written before."""
    rekeyed, = directory.next_epoch({"town": _entry("town", "town", 2)}, "town")
    assert rekeyed.rekeyed_at == rekeyed.updated_at
    long_ago = NOW - ctx.rekey_grace - timedelta(seconds=1)
    renewed = replace(rekeyed, rekeyed_at=long_ago, updated_at=NOW - timedelta(minutes=1))
    assert _query(ctx, renewed).previous_link_code is None
    assert _query(ctx, replace(renewed, rekeyed_at=None)).previous_link_code is not None
    suspended = directory.switched(renewed, False, NOW)
    again = directory.registered({"town": suspended}, "town", "Town", "municipality")
    assert suspended.rekeyed_at == again.rekeyed_at == long_ago


def test_a_request_made_before_its_holder_knew_of_the_rekeying_is_taken_with_its_code(
        ctx: Context) -> None:
    """Its code of the epoch before, read by the platform after the re-keying (in flight, or
    sent before its holder's view of the directory read it) finds its person, a clock skew after
    the re-keying at most; later it is refused, as a code of the epoch before."""
    ctx.directory = {"nenkin": replace(_entry("nenkin", "nenkin", 1, "pension_service"),
                                       rekeyed_at=NOW - ctx.clock_skew),
                     "town": _entry("town", "town", 0)}
    ctx.patterns = PatternList(load())

    def judged(link_code: str, at: datetime) -> Pending | Refusal:
        request = LinkageRequest("r-1", at, link_code, "P-037", "town", "local_tax")
        incoming = Incoming(topics.outbox("nenkin"), 0, 7, at, CODEC.encode(request))
        to_decider, = linkage.requests([FromHolder(incoming, "nenkin", request)], ctx)
        return CODEC.decode(to_decider.value, Pending, Refusal)

    old = ctx.codes.link_code(RESIDENT, UnitEpoch("nenkin", 0))
    taken = judged(old, NOW)
    assert isinstance(taken, Pending) and taken.person == ctx.codes.id_code(RESIDENT)
    late = judged(old, NOW + timedelta(seconds=1))
    assert isinstance(late, Refusal)
    assert CODEC.decode(late.rejection, Rejection).reason == "INVALID_LINK_CODE"
    new = ctx.codes.link_code(RESIDENT, UnitEpoch("nenkin", 1))
    assert isinstance(judged(new, NOW + timedelta(days=1)), Pending)


def _registry_answer(*residents: str) -> RegistryAnswer:
    """The registry's answer to city-a: each resident code sealed to the platform ('' garbled)."""
    key = sealing.public_bytes(MASTERS.sealing_key())
    return RegistryAnswer("b-1", "city-a", FOUND, "", tuple(RegistryCandidate(
        sealing.seal(key, CODEC.encode(ResidentCode(r)), "b-1") if r else b"\x00garbled",
        b"sealed attributes") for r in residents))


def test_both_namesakes_reach_the_holder_as_its_link_codes(codes: CodeService,
                                                            ctx: Context) -> None:
    a, b = random_codes(2, seed=8)
    to_holder, *_ = binding.answered(_registry_answer(a, b), NOW, ctx)
    answer = CODEC.decode(to_holder.value, BindingAnswer)
    assert answer.status == FOUND and [c.link_code for c in answer.candidates] == [
        codes.link_code(r, UnitEpoch("city-a", 2)) for r in (a, b)]
    assert (answer.unit, answer.epoch) == ("city-a", 2)  # what its codes are of


def test_each_answer_a_registry_gives_a_look_up_is_logged_under_its_own_id(
        ctx: Context, tmp_path: Path) -> None:
    """A taken-over registry answering a look-up twice, with other candidates: both went to the
    holder (which acts on the first alone), but their events shared ids (binding:0@ its source),
    the audit store keeping the first's, the second candidate's relay logged nowhere. The same
    answer given again is logged once."""
    a, b = random_codes(2, seed=8)
    first, second = (replace(_registry_answer(r), source=f"{topics.outbox('city-a')}:0:7")
                     for r in (a, b))
    sent = [s for answer in (first, second, first) for s in binding.answered(answer, NOW, ctx)]
    assert [s.topic for s in sent].count(topics.inbox("city-a")) == 3
    with AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        store.append_many((CODEC.decode(s.value, AccessLogEvent), s.value) for s in sent
                          if s.topic == topics.AUDIT)
        kept = [e.event.person for e in store.query(Query()).entries]
    assert kept == [ctx.codes.id_code(r) for r in (a, b)]


@pytest.mark.parametrize(("requested_at", "logged_at"), [
    (NOW - timedelta(seconds=3), NOW - timedelta(seconds=3)), (None, NOW),
    (NOW + timedelta(days=1), NOW)], ids=["carried", "before v3", "after the answer"])
def test_a_binding_is_logged_at_the_time_of_its_request(
        ctx: Context, requested_at: datetime | None, logged_at: datetime) -> None:
    """At the broker's time of the request its look-up carried, whichever copy of the answer is
    read when; at the platform's reading of it for a look-up carrying none, or a time after it."""
    answer = replace(_registry_answer(*random_codes(1, seed=8)), requested_at=requested_at)
    _, event = binding.answered(answer, NOW, ctx)
    assert CODEC.decode(event.value, AccessLogEvent).occurred_at == logged_at


@pytest.mark.parametrize("unusable", ["", "12345678918"], ids=["unreadable", "not valid"])
def test_a_candidate_that_cannot_be_converted_leaves_none_to_bind(
        ctx: Context, unusable: str, caplog: pytest.LogCaptureFixture) -> None:
    """Dropping it alone made two namesakes one candidate, which the holder bound."""
    known = random_codes(1, seed=8)[0]
    to_holder, event = binding.answered(_registry_answer(known, unusable), NOW, ctx)
    answer = CODEC.decode(to_holder.value, BindingAnswer)
    assert (answer.status, answer.candidates) == (REFUSED, ())
    logged = CODEC.decode(event.value, AccessLogEvent)
    assert (logged.outcome, logged.person) == (REFUSED, None) and logged.reason
    assert "b-1" in caplog.text and known not in caplog.text


def test_a_name_code_or_source_with_a_newline_after_it_is_none() -> None:
    """`$` matches before a final newline: an ID code, a principal's name or a registry answer's
    source followed by one passed its pattern (a person nobody looked at, a holder id that no
    topic can be named by, an id shaped past the check)."""
    person = "A1B2C3D4E5F"
    event = AccessLogEvent("r-1:approved@x", "r-1", datetime.now(UTC), "LINKAGE", "APPROVED",
                           None, None, None, "sakura-town", None, None, person)
    with pytest.raises(ValueError, match="ID code"):
        replace(event, person=person + "\n")
    with pytest.raises(click.BadParameter):
        audit_cli.person_of(person + "\n")
    with pytest.raises(ValueError, match="invalid principal name"):
        credentials.check_name("sakura-town\n")
    answer = RegistryAnswer("r-1", "sakura-town", "BOUND", "", (),
                            f"{topics.outbox('sakura-town')}:0:7\n")
    assert not binding._of_requester(answer)
    assert binding._of_requester(replace(answer, source=answer.source.rstrip()))
