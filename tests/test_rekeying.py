"""Re-keying end to end, on the real broker: the operator bumps a link-code unit's key epoch, the
holder converts its bindings through the platform by itself, codes of the old epoch are refused,
and linkage works again with the holder on either side."""

from __future__ import annotations

import asyncio
import getpass
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from audit.events import OperatorAction, from_millis
from broker import config, provision, topics
from broker.clients import KafkaAccess, offsets, read_topic
from holders import client as client_module
from holders.client import HolderClient, new_request_id
from holders.store import HolderStore
from processors import directory, keys, keys_cli
from processors.codes import CodeService, UnitEpoch
from registry.residents import FourAttributes, Sex
from renkei import groups
from renkei.exchanges import LAWFUL
from renkei.scenario import answerable, ask, people, rekeyed, round_trip, sent
from renkei.town import Processes, Town
from schemas.codec import CODEC
from schemas.messages import LinkageAnswer, LinkageRequest
from tests.kafka_helpers import (
    action_of,
    at_once,
    audit_events,
    operator_actions,
    rejection_of,
    renkei,
    reply_of,
    said_in_one_line,
    stopped_before_logging,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")
HOLDER = "nenkin"  # its own link-code unit; in no test elsewhere by a fixed epoch
ASKS = next(e for e in LAWFUL if e.requester == HOLDER)
ASKED = next(e for e in LAWFUL if e.provider == HOLDER)
WORKERS = 24  # requests in flight across a re-keying
HELD = 12  # queries waiting for a provider back after two re-keyings


async def test_a_holder_rekeys_its_bindings_and_its_old_codes_are_refused(
        clients: dict[str, HolderClient], town: Town) -> None:
    holder, other = clients[HOLDER], clients[ASKED.requester]
    asks, asked = people(holder, town, ASKS)[0], people(other, town, ASKED)[0]
    for client, exchange, own in ((holder, ASKS, asks), (other, ASKED, asked)):
        assert (await round_trip(client, exchange, own, 30)).status == "FOUND"
    codes = CodeService(keys.load())
    epoch = holder.entry(HOLDER).key_epoch
    residents = {own: codes.resident_code(link, UnitEpoch(HOLDER, epoch))
                 for own, link in holder.store.bindings().items()}
    old_code = holder.store.link_code(asks)
    assert old_code is not None

    bumped = renkei("keys", "rekey", HOLDER)
    assert f"link-code unit {HOLDER!r} is at key epoch {epoch + 1}" in bumped.stdout
    await rekeyed([holder], epoch + 1, within=20)  # by itself: nobody asks it to
    assert set(holder.store.counts("REKEY")) == {"REKEYED", "duplicates dropped"}

    new_unit = UnitEpoch(HOLDER, epoch + 1)
    assert {own: codes.resident_code(link, new_unit)
            for own, link in holder.store.bindings().items()} == residents
    assert holder.store.link_code(asks) != old_code

    def asked_by(code: str) -> tuple[str, bytes]:
        request_id = new_request_id()
        return request_id, CODEC.encode(LinkageRequest(
            request_id, datetime.now(UTC), code, ASKS.pattern, ASKS.provider, ASKS.data_type))

    # made before its holder knew of the re-keying, read after it: its person found
    assert (await reply_of(HOLDER, LinkageAnswer, *asked_by(old_code))).status == "FOUND"
    await directory.rekey_unit(HOLDER, "operator")  # two epochs on: refused
    await rekeyed([holder], epoch + 2, within=20)
    rejection = await rejection_of(HOLDER, *asked_by(old_code))
    assert rejection.reason == "INVALID_LINK_CODE"
    for client, exchange, own in ((holder, ASKS, asks), (other, ASKED, asked)):
        assert (await round_trip(client, exchange, own, 30)).status == "FOUND"
    logged = [e for e in await audit_events() if e.kind == "REKEY" and e.requester == HOLDER]
    assert [e.reason for e in logged].count(
        f"{len(residents)} link codes of epoch {epoch} re-keyed to epoch {epoch + 1} of unit "
        f"{HOLDER!r}; 0 not valid") == 1
    assert all(e.person is None for e in logged)  # re-keying names no one


async def test_queries_during_a_rekeying_find_the_records_not_moved_yet(
        clients: dict[str, HolderClient], town: Town) -> None:
    """Between the bump and the provider's last moved binding, the platform sends the person's
    code of the previous epoch with each query: no lawful query is answered NOT_FOUND."""
    holder, other = clients[HOLDER], clients[ASKED.requester]
    asked = answerable(clients, town, ASKED)
    outcomes: list[tuple[float, str]] = []
    moving = asyncio.Event()

    async def asking(worker: int) -> None:
        for k in range(worker, 100_000, WORKERS):
            if moving.is_set() and not holder.store.bindings_before(holder.entry(HOLDER).key_epoch):
                return  # re-keyed: enough
            sent = time.monotonic()
            done = await round_trip(other, ASKED, asked[k % len(asked)], 30)
            outcomes.append((sent, done.status))

    workers = [asyncio.create_task(asking(w)) for w in range(WORKERS)]
    await asyncio.sleep(0.5)
    bumped_at = time.monotonic()
    epoch = (await directory.rekey_unit(HOLDER, "operator"))[0].key_epoch
    moving.set()
    await rekeyed([holder], epoch, within=20)
    moved_at = time.monotonic()
    await asyncio.gather(*workers)
    assert [status for _, status in outcomes if status != "FOUND"] == []
    assert sum(bumped_at < sent < moved_at for sent, _ in outcomes) > 0, "none sent meanwhile"


async def test_a_holder_sends_no_code_of_an_old_epoch_once_it_knows_the_new_one(
        clients: dict[str, HolderClient], town: Town) -> None:
    """Requests made as soon as the holder sees its unit's new epoch wait for their records'
    re-keying, then go with the new codes: none is refused for an old code."""
    holder = clients[HOLDER]
    asks = answerable(clients, town, ASKS)[:20]
    epoch = holder.entry(HOLDER).key_epoch + 1

    async def asked_at_new_epoch() -> list[Any]:
        while holder.entry(HOLDER).key_epoch < epoch:
            await holder.directory.changed()
        assert holder.store.bindings_before(epoch), "re-keyed already: nothing would be shown"
        return await asyncio.gather(*(round_trip(holder, ASKS, own, 30) for own in asks))

    asking = asyncio.create_task(asked_at_new_epoch())
    assert (await directory.rekey_unit(HOLDER, "operator"))[0].key_epoch == epoch
    done = await asking
    assert [(d.status, d.detail) for d in done if d.status != "FOUND"] == []


async def test_rekeying_a_unit_no_holder_has_is_refused(
        clients: dict[str, HolderClient]) -> None:
    refused = renkei("keys", "rekey", "no-such-unit", check=False)
    assert refused.returncode != 0
    assert "no holder has link-code unit 'no-such-unit'" in refused.stderr


async def test_a_holder_registered_into_a_rekeyed_unit_gets_its_current_epoch(
        clients: dict[str, HolderClient]) -> None:
    """A holder joining a unit after a re-keying gets the unit's epoch, not the first one (else
    the unit's holders would have different link codes of one person)."""
    first = renkei("holder", "register", "kita-clinic", "--name", "北町診療所",
                   "--role", "medical_institution", "--unit", "kita-medical")
    assert "link-code unit kita-medical at key epoch 0" in first.stdout
    renkei("keys", "rekey", "kita-medical")
    joined = renkei("holder", "register", "kita-pharmacy", "--name", "北町薬局",
                    "--role", "medical_institution", "--unit", "kita-medical")
    assert "link-code unit kita-medical at key epoch 1" in joined.stdout


async def test_a_rekeying_says_which_of_its_holders_run_now(town: Town, tmp_path: Path) -> None:
    """`keys rekey` said of every holder of the unit that it re-keys its bindings by itself, one
    whose communication server was not running too: the operator took its re-keying for under
    way. It says of each whether its server runs now (its inbox's consumer group has members),
    and of one that does not that it re-keys its bindings when it starts."""
    def admitted() -> None:  # its principal, inbox and outbox, as `holder register` makes them
        provision.add_holder(provision.admin_client(), "mori-clinic", provision.Report())

    for holder, name, made in (("mori-clinic", "森町診療所", admitted),
                               ("mori-pharmacy", "森町薬局", lambda: None)):
        await directory.registration(holder, name, "medical_institution", "mori-medical", None,
                                     False, False, made, "ops-a")
    client = HolderClient("mori-clinic", HolderStore(tmp_path / "holder.db"))
    await client.start()
    try:
        assert await asyncio.to_thread(groups.wait_members, groups.admin(),
                                       HolderClient.inbox_group("mori-clinic"), 1, 10)
        said = renkei("keys", "rekey", "mori-medical").stdout.splitlines()
    finally:
        await client.stop()
        client.store.close()
    assert said[1:] == ["  mori-clinic: running now; it re-keys its bindings within seconds",
                        "  mori-pharmacy: not running now; it re-keys its bindings when it "
                        "starts"]


async def test_a_rekeying_says_it_is_not_known_whether_holders_run_if_the_broker_cannot_say(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker not answering after the re-keying (it is done): each holder's running is not
    known, said so."""
    monkeypatch.setattr(groups, "TIMEOUT", 0.5)
    monkeypatch.setattr(groups, "admin", lambda: AdminClient({"bootstrap.servers": "127.0.0.1:1",
                                                              "log_level": 0}))
    assert keys_cli.rekeying_holders(["mori-clinic"]) == [
        "mori-clinic: not known whether running now (the broker could not say); if not, it "
        "re-keys its bindings when it starts"]


async def test_a_registration_and_a_rekeying_are_logged_once_each_with_who_did_them(
        town: Town) -> None:
    """No registration or re-keying reached the audit log: an auditor saw no holder admitted
    and no unit's codes changed. Each registration is logged, its id and time its directory
    record's, and a unit's re-keying once, its id and time the last of its holders' records,
    with who did it (by default the login) and why, if told (neither took a --reason), as each
    command says."""
    admin = KafkaAccess.of(config.ADMIN)
    _, audit_end = await offsets(admin, topics.AUDIT)
    _, end = await offsets(admin, topics.DIRECTORY)
    registered = renkei("holder", "register", "tsuru-clinic", "--name", "鶴町診療所",
                        "--role", "medical_institution", "--unit", "tsuru-medical",
                        "--operator", "ops-a", "--reason", "新規開設").stdout
    await directory.registration("tsuru-pharmacy", "鶴町薬局", "medical_institution",
                                 "tsuru-medical", None, False, False, lambda: None, "ops-b")
    rekeyed = renkei("keys", "rekey", "tsuru-medical", "--reason", "鍵の漏えい").stdout
    assert registered.rstrip().endswith("; reason: 新規開設"), registered
    assert rekeyed.splitlines()[0].endswith("; reason: 鍵の漏えい"), rekeyed
    clinic, pharmacy, _, rekeyed_last = await read_topic(admin, topics.DIRECTORY, start=end)

    def action(kind: str, record: Any, operator: str, subject: str,
               reason: str | None = None) -> OperatorAction:
        return OperatorAction(action_of(record), from_millis(record.timestamp), operator,
                              kind, subject, reason)

    assert await operator_actions(audit_end, "tsuru-clinic") == [
        action("REGISTER", clinic, "ops-a", "tsuru-clinic", "新規開設")]
    assert await operator_actions(audit_end, "tsuru-pharmacy") == [
        action("REGISTER", pharmacy, "ops-b", "tsuru-pharmacy")]
    assert await operator_actions(audit_end, "tsuru-medical") == [
        action("REKEY", rekeyed_last, getpass.getuser(), "tsuru-medical", "鍵の漏えい")]


async def test_a_rekeying_recovered_by_a_members_registration_is_logged_once(
        town: Town) -> None:
    """A re-keying whose command, of an earlier version, stopped before logging it, recovered by
    a registration of the unit's first holder, was logged at that holder's record's time, before
    its last record's: a re-keying of the unit after searched the audit topic from the last
    record's time and logged it again. It is logged once, at its last record's time, whichever
    holder's command recovers it."""
    admin = KafkaAccess.of(config.ADMIN)
    for holder, name in (("kame-clinic", "亀町診療所"), ("kame-pharmacy", "亀町薬局")):
        await directory.registration(holder, name, "medical_institution", "kame-medical", None,
                                     False, False, lambda: None, "ops-a")
    _, audit_end = await offsets(admin, topics.AUDIT)
    _, end = await offsets(admin, topics.DIRECTORY)
    await stopped_before_logging(directory.next_epoch(await directory.current(), "kame-medical"),
                                 "REKEY", "ops-a", "鍵の漏えい")
    first, last = await read_topic(admin, topics.DIRECTORY, start=end)
    assert first.key == b"kame-clinic" and first.timestamp < last.timestamp
    await directory.registration("kame-clinic", "亀町クリニック", "medical_institution", None,
                                 None, False, False, lambda: None, "ops-b")
    await directory.rekey_unit("kame-medical", "ops-b")
    *_, again = await read_topic(admin, topics.DIRECTORY, start=end)
    assert await operator_actions(audit_end, "kame-medical") == [
        OperatorAction(action_of(record), from_millis(record.timestamp), operator, "REKEY",
                       "kame-medical", reason)
        for record, operator, reason in ((last, "ops-a", "鍵の漏えい"), (again, "ops-b", None))]


async def test_a_holder_registered_into_a_unit_while_it_is_rekeyed_is_at_its_new_epoch(
        town: Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """`renkei holder register` of a holder into a unit run while the unit was being re-keyed
    from one state folder read the unit's key epoch before the re-keying was written and
    published the holder at the old one: the unit's holders at two epochs, each given other
    link codes of one person. The registration reads the directory after the re-keying (or the
    re-keying after the registration): the unit's holders are at its new epoch."""
    await directory.registration("ushi-clinic", "牛町診療所", "medical_institution",
                                 "ushi-medical", None, False, False, lambda: None, "ops-a")
    told = await at_once(monkeypatch, directory.rekey_unit("ushi-medical", "ops-a"),
                         directory.registration("ushi-pharmacy", "牛町薬局", "medical_institution",
                                                "ushi-medical", None, False, False,
                                                lambda: None, "ops-b"))
    assert not [t for t in told if isinstance(t, Exception)], told
    entries = await directory.current()
    assert {h: entries[h].key_epoch for h in ("ushi-clinic", "ushi-pharmacy")} == {
        "ushi-clinic": 1, "ushi-pharmacy": 1}


async def test_a_holder_registered_again_stays_in_its_unit_and_private(town: Town) -> None:
    """`renkei holder register` again, to correct a name: the holder went to a unit of its own at
    epoch 0 (every binding of its records lost) and public (binding without consent)."""
    renkei("holder", "register", "higashi-clinic", "--name", "東町診療所",
           "--role", "medical_institution", "--unit", "higashi-medical", "--private")
    renkei("keys", "rekey", "higashi-medical")
    again = renkei("holder", "register", "higashi-clinic", "--name", "東町クリニック",
                   "--role", "medical_institution")
    assert again.stdout.splitlines() == [
        "registered higashi-clinic (東町クリニック): role medical_institution, link-code unit "
        "higashi-medical at key epoch 1, private (consent needed)",
        "changed from its previous entry: name 東町診療所 → 東町クリニック"]
    refused = renkei("holder", "register", "higashi-clinic", "--name", "東町クリニック",
                     "--role", "medical_institution", "--unit", "higashi-clinic", check=False)
    assert refused.returncode == 1
    said_in_one_line(refused.stderr, "every binding would have to be redone; give --move-unit")
    entry = (await directory.current())["higashi-clinic"]
    assert (entry.name, entry.link_unit, entry.key_epoch, entry.private) == (
        "東町クリニック", "higashi-medical", 1, True)
    moved = renkei("holder", "register", "higashi-clinic", "--name", "東町クリニック",
                   "--role", "medical_institution", "--unit", "higashi-clinic", "--move-unit",
                   "--public")
    assert moved.stdout.splitlines()[1] == ("changed from its previous entry: link_unit "
                                            "higashi-medical → higashi-clinic, key_epoch 1 → 0, "
                                            "private True → False")


def register_in_unit(holder: str, unit: str) -> None:
    """`holder register HOLDER --move-unit --unit UNIT`: a medical institution in `unit`."""
    renkei("holder", "register", holder, "--name", "西町診療所", "--role", "medical_institution",
           "--move-unit", "--unit", unit)


async def store_bound(town: Town, path: Path, holder: str, own: str) -> HolderStore:
    """A store of `holder` whose record `own` is bound to a person's code of the holder's unit
    (its unit never noted)."""
    entry = (await directory.current())[holder]
    store = HolderStore(path)
    resident = next(iter(town.held.values()))[0]
    with store.transaction():
        store.add_record(own, FourAttributes(resident.name, resident.address,
                                             resident.date_of_birth, resident.sex))
        store.bind(own, CodeService(keys.load()).link_code(
            resident.resident_code, UnitEpoch(entry.link_unit, entry.key_epoch)),
            entry.key_epoch)
    return store


async def within_10_s(holds: Callable[[], bool]) -> bool:
    """Whether `holds` comes to hold within 10 s."""
    for _ in range(100):
        if holds():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_holder_moved_to_another_unit_has_its_bindings_bound_again(
        town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`holder register --move-unit` changed the holder's entry alone: its bindings stayed bound
    to codes of the unit it left (under the new unit's key no person's), its requests refused and
    queries for its people unanswered, no case opened; each is now unbound and investigated. An
    import holding the store as the move is seen delays it (it ended the task following the
    directory, and the client's stop with it)."""
    monkeypatch.setattr(client_module, "REKEY_AGAIN", 0.2)
    holder, own = "nishi-clinic", "NSH-0000001"
    register_in_unit(holder, holder)
    store = await store_bound(town, tmp_path / "holder.db", holder, own)
    client = HolderClient(holder, store)
    await client.start()
    try:
        # the unit its bindings are of, noted at the client's start
        assert await within_10_s(lambda: store.bindings_unit() is not None)
        with closing(sqlite3.connect(tmp_path / "holder.db", isolation_level=None)) as importing:
            importing.execute("BEGIN IMMEDIATE")
            register_in_unit(holder, "nishi-medical")
            assert await within_10_s(lambda: client.entry(holder).link_unit == "nishi-medical")
            await asyncio.sleep(0.3)  # the move seen, the store found held past LOCK_WAIT
            importing.execute("COMMIT")
        assert await within_10_s(lambda: store.binding(own) is None), (
            "bound to a code of the unit it left")
        assert [reason for _, reason in store.investigations()] == [
            f"the holder moved from link-code unit {holder!r} to 'nishi-medical': bind it again"]
    finally:
        await client.stop()
        store.close()


async def test_a_holder_moved_before_its_store_noted_its_unit_has_its_bindings_bound_again(
        town: Town, platform: Processes, tmp_path: Path) -> None:
    """A store that never noted its link-code unit (made before units were noted, or held by an
    import at the client's first follow) took the directory's at the first follow: a move made
    before it kept every binding to a code of the unit left, never caught; each is now checked
    by its code through the platform, unbound and investigated."""
    holder, own = "oka-clinic", "OKA-0000001"
    register_in_unit(holder, holder)
    store = await store_bound(town, tmp_path / "holder.db", holder, own)
    register_in_unit(holder, "oka-medical")  # the holder down, or its store held
    client = HolderClient(holder, store)
    await client.start()
    try:
        assert await within_10_s(lambda: store.binding(own) is None), (
            "bound to a code of the unit it left")
        assert [reason for _, reason in store.investigations()] == [
            "its link code is not valid at epoch 0: bind it again"]
        assert await within_10_s(lambda: store.bindings_unit() == "oka-medical")
    finally:
        await client.stop()
        store.close()


async def provider_behind(path: Path, holder: str,
                          asker: HolderClient) -> tuple[HolderStore, list[str]]:
    """A pension service of its own link-code unit whose store binds, at key epoch 0, the people
    `asker` has bound (each with a pension), its unit then re-keyed twice: the store two epochs
    behind, as one offline meanwhile has it. Its store, and `asker`'s own numbers of them."""
    await directory.registration(
        holder, "風年金基金", "pension_service", holder, None, False, False,
        lambda: provision.add_holder(provision.admin_client(), holder, provision.Report()),
        "ops-a")
    asked = sorted(asker.store.bindings().items())[:HELD]
    codes, entry = CodeService(keys.load()), asker.entry(asker.holder)
    store = HolderStore(path)
    with store.transaction():
        store.move_to_unit(holder)  # as its server noted it when it last ran
        for own, link_code in asked:
            store.add_record(own, FourAttributes("年金 太郎", "桜町1-1", date(1950, 1, 1),
                                                 Sex.MALE))
            store.bind(own, codes.convert(link_code, UnitEpoch(entry.link_unit, entry.key_epoch),
                                          UnitEpoch(holder, 0)), 0)
            store.put_data(own, "pension_benefit", {"annual_benefit": own})
    for _ in range(2):
        await directory.rekey_unit(holder, "ops-a")
    return store, [own for own, _ in asked]


async def in_inbox(holder: str, count: int) -> None:
    """Wait until `count` records are on the holder's inbox (10 s at most)."""
    for _ in range(100):
        if (await offsets(KafkaAccess.of(config.ADMIN), topics.inbox(holder)))[1] >= count:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"fewer than {count} records on {holder}'s inbox")


async def test_a_provider_back_after_two_rekeyings_answers_the_queries_waiting_for_it_found(
        clients: dict[str, HolderClient], town: Town, tmp_path: Path) -> None:
    """A provider offline while its unit was re-keyed twice found, as it started, no record by
    the queries' codes (of this epoch and the one before) for people it holds: NOT_FOUND,
    logged so. The queries read before its bindings are brought to the epoch are held back and
    answered once they are: FOUND, each logged once by the provider and by the platform."""
    holder, asker = "kaze-pension", clients[ASKED.requester]
    store, asked = await provider_behind(tmp_path / "holder.db", holder, asker)
    exchange = replace(ASKED, provider=holder)
    request_ids = [await sent(ask(asker, exchange, own)) for own in asked]
    await in_inbox(holder, HELD)  # waiting for it, as it starts
    provider = HolderClient(holder, store)
    await provider.start()
    try:
        done = await asyncio.gather(*(asker.outcome(r, 30) for r in request_ids))
        logged = [[e.outcome for e in store.access_log(r)] for r in request_ids]
    finally:
        await provider.stop()
        store.close()
    assert [d.status for d in done] == ["FOUND"] * HELD
    assert logged == [["FOUND"]] * HELD
    answered = [e for e in await audit_events(set(request_ids)) if e.kind == "ANSWER"]
    assert sorted((e.request_id, e.outcome) for e in answered) == sorted(
        (r, "FOUND") for r in request_ids)
