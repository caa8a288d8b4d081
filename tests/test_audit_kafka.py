"""The audit consumer and replay on the real broker: exactly one entry per event through a
kill -9, the same root from offset 0, and approvals re-checked against the pattern list."""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from confluent_kafka import (
    OFFSET_END,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from audit.anchor import (
    HEAD_SECONDS,
    Anchor,
    AnchorCheck,
    Verify,
    anchored_heads,
    consumer_commit,
    noted_commit,
)
from audit.cli import audit_cli
from audit.consumer import read_audit
from audit.consumer import run as audit_run
from audit.detector import OFF_HOURS, REPEATED_PERSON, UNBOUND_PERSON, VOLUME, Detector, Raised
from audit.events import AccessLogEvent, OperatorAction, decode_event, event_id
from audit.heads import SignedHead, Signer, TreeHead
from audit.oversight import alerts
from audit.recommit import accounted_offset, commit_as_member
from audit.replay import ReplayReport
from audit.replay import replay as replaying
from audit.store import (
    ActionQuery,
    AuditStore,
    Committed,
    Entry,
    Query,
    VerifyReport,
    default_path,
)
from audit.topic import read_events
from broker import acls, config, topics
from broker.clients import KafkaAccess, read_topic
from broker.cluster import Cluster
from broker.provision import admin_client
from holders.client import HolderClient
from portal.inbox import Inbox
from portal.records import Records
from renkei.envelope import batched, send, unpacked
from renkei.groups import LATEST, commit_offsets
from renkei.service_loop import producer_for
from renkei.tasks import cancelled
from renkei.town import Processes, Town, log_path
from schemas.codec import CODEC
from schemas.messages import Alert
from tests.kafka_helpers import create_known, producer, renkei
from tests.loop_helpers import ticking
from tests.postgres import SUPERUSER, fresh_schema
from tests.test_audit_store import _action_pages, item, truncate
from tests.test_linkage import ask, bound

pytestmark = pytest.mark.asyncio(loop_scope="session")
LOAD, REPEATS = 20_000, 500
CUT = 40  # newest entries an intruder deletes, with their heads
NEXT_HEAD = 5.0  # seconds to a consumer's head: a test appends and cuts its store before it
PERIOD = 2.0  # a head period well under HEAD_SECONDS, the one a consumer ignoring it would keep
SEVEN_YEARS_MS = 7 * (365 * 86_400_000 + 6 * 3_600_000)
LATENESS = timedelta(seconds=5)  # a consumer's lateness short enough for a test to wait out
REREAD_HISTORY = 10_000  # events in a restarted consumer's horizon (answers: the cheapest)
RESTART_HELD = 5.0  # seconds a test holds a restarted consumer's re-read at most
PASSWORD = "pg-secret-7f3a"  # a PostgreSQL store's password (trusted: any passes)
APPENDED_WITHIN = 1.5  # seconds from a restart to an event sent then appended (the re-read's on)


@pytest.fixture
def live(platform: Processes) -> Iterator[AuditStore]:
    """The store that the session's `renkei audit run` (started with the platform) fills."""
    if "audit" not in platform.running:
        platform.start("audit", "audit", "run")
    with AuditStore(default_path(), Signer.load_or_create()) as store:
        yield store


def synthetic(n: int, batch: str, at: datetime) -> AccessLogEvent:
    """An answer event as the platform logs one (no person: no rule or re-check looks at it)."""
    request = f"load-{batch}-{n:05d}"
    return AccessLogEvent(event_id(request, "answered"), request, at, "ANSWER", "FOUND", None,
                          "P-037", "国民年金法", "load-test", "sakura-town", "local_tax", None)


async def topic_events(start: int = 0) -> dict[str, bytes]:
    """Each event id on the audit topic now (from offset `start`), with the bytes it first came
    with."""
    first: dict[str, bytes] = {}
    for record in await read_topic(KafkaAccess.of(config.ADMIN), topics.AUDIT, start):
        for value in unpacked(record.value or b""):
            try:
                first.setdefault(decode_event(value).event_id, value)
            except ValueError:
                continue
    return first


async def caught_up(store: AuditStore, wanted: set[str], within: float = 60,
                    every: float = 0.2) -> float:
    """Wait until the store holds every wanted event id (looked for `every` seconds); the
    seconds it took."""
    started = time.monotonic()
    while missing := wanted - store.serials(sorted(wanted)).keys():
        if time.monotonic() - started > within:
            raise TimeoutError(f"{len(missing)} events never reached the store")
        await asyncio.sleep(every)
    return time.monotonic() - started


async def logged(live: AuditStore, events: list[AccessLogEvent], within: float = 60,
                 judged: bool = True, packed: bool = False) -> None:
    """The events sent to the audit topic (`packed`: in Batch records, as the platform sends
    many), and appended to the live store (a batch of their own, after those sent before);
    `judged`, their alerts delivered too (a restarted consumer appends while its detector
    re-reads, and judges what it appended then after)."""
    sends = [send(topics.AUDIT, event.request_id, event) for event in events]
    async with producer(KafkaAccess.of(config.ADMIN)) as prod:
        for record in batched(sends, {topics.AUDIT}) if packed else sends:
            await prod.send(record.topic, record.value,
                            key=None if record.key is None else record.key.encode())
    deadline = time.monotonic() + within
    await caught_up(live, {e.event_id for e in events}, within)
    while judged and live.unjudged_since() is not None:
        if time.monotonic() > deadline:
            raise TimeoutError("the detector never judged the events appended")
        await asyncio.sleep(0.2)


async def test_the_audit_topic_keeps_seven_years(town: Town) -> None:
    resource, admin = ConfigResource(ConfigResource.Type.TOPIC, topics.AUDIT), admin_client()
    configs = admin.describe_configs([resource])[resource].result(30)
    assert int(configs["retention.ms"].value) == SEVEN_YEARS_MS


async def test_one_entry_per_event_through_a_kill_9_of_the_consumer(
        clients: dict[str, HolderClient], platform: Processes, live: AuditStore) -> None:
    batch, now = uuid.uuid4().hex[:8], datetime.now(UTC)
    events = [synthetic(n, batch, now + timedelta(milliseconds=n)) for n in range(LOAD)]
    step = LOAD // REPEATS  # every step-th event comes again with other bytes, as a re-run would
    again = [replace(e, occurred_at=e.occurred_at + timedelta(seconds=1)) for e in events[::step]]
    before = live.size()
    async with producer(KafkaAccess.of(config.ADMIN)) as prod:
        for chunk in range(0, LOAD, 1000):
            for event in events[chunk:chunk + 1000] + again[chunk // step:(chunk + 1000) // step]:
                await prod.send(topics.AUDIT, CODEC.encode(event), key=event.request_id.encode())
            await prod.flush()
            if chunk == 8000:
                killed_at = live.size()
                platform.kill("audit")  # SIGKILL mid-stream: no clean shutdown, no commit
            if chunk == 12000:
                platform.start("audit", "audit", "run")
            await asyncio.sleep(0.2)
    nenkin = clients["nenkin"]
    real = [await ask(nenkin, own, "P-037", "sakura-town", "local_tax")
            for own in bound(nenkin)[:5]]
    await asyncio.gather(*(nenkin.outcome(r, 30) for r in real))
    on_topic = await topic_events()
    took = await caught_up(live, set(on_topic))
    assert before < killed_at < before + LOAD, "killed while appending the load"
    stored = {e.event.event_id: e for e in entries(live)}
    assert len(stored) + action_leaves(live) == live.size(), \
        "no event id twice, no serial without its entry"
    assert set(on_topic) <= set(stored) <= set(await topic_events()), "none missing, none made up"
    assert all(stored[e.event_id].leaf == CODEC.encode(e) for e in events), "the first bytes stay"
    assert set(real) <= {e.event.request_id for e in stored.values()}
    report = live.verify(decode_event)
    assert report.ok, report.findings[:5]
    print(f"\nkilled at {killed_at - before} of {LOAD} (+{len(again)} repeats); all "
          f"{len(on_topic)} events on the topic stored once each, {took:.1f}s after the load")


async def test_a_night_burst_of_requests_raises_volume_and_off_hours_alerts(
        platform: Processes, live: AuditStore) -> None:
    """201 linkage requests within a minute at 03:00 JST, from a requester with no norm yet:
    the first is off hours, the 201st above the volume floor of 200."""
    requester, night = f"night-{uuid.uuid4().hex[:8]}", datetime(2026, 11, 29, 18, tzinfo=UTC)

    def request(n: int) -> AccessLogEvent:
        """Refused as a duplicate request id: no reason the replay's re-check judges."""
        request_id = f"{requester}-{n:03d}"
        return AccessLogEvent(event_id(request_id, "rejected@test"), request_id,
                              night + timedelta(milliseconds=100 * n), "LINKAGE", "REJECTED",
                              "DUPLICATE_REQUEST", "P-037", "国民年金法", requester,
                              "sakura-town", "local_tax", None)

    events = [request(n) for n in range(201)]
    await logged(live, events)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        raised = {(a.rule, a.event_id, a.count) for a in await alerts()
                  if a.requester == requester and a.rule in (VOLUME, OFF_HOURS)}
        if len(raised) == 2:
            break
        await asyncio.sleep(0.5)
    assert raised == {(OFF_HOURS, events[0].event_id, 1), (VOLUME, events[200].event_id, 201)}


@contextmanager
def short_lateness(platform: Processes) -> Iterator[datetime]:
    """The audit consumer run with a lateness of LATENESS, its alerts on unbound persons that
    soon, then again as the platform runs it; the time it is started."""
    if "audit" in platform.running:
        platform.stop("audit")
    started = datetime.now(UTC)
    platform.start("audit", "audit", "run", "--lateness", str(LATENESS.total_seconds()))
    try:
        yield started
    finally:
        platform.stop("audit")
        platform.start("audit", "audit", "run")


def linkage_of(request: str, requester: str, person: str, at: datetime) -> AccessLogEvent:
    """A linkage request about `person`, refused as a duplicate request id: every rule counts
    it, and it is no refusal for a legal reason, which the replay's re-check would judge."""
    return AccessLogEvent(event_id(request, "rejected@test"), request, at, "LINKAGE", "REJECTED",
                          "DUPLICATE_REQUEST", "P-037", "国民年金法", requester, "sakura-town",
                          "local_tax", person)


async def unbound_alerted(requester: str, wanted: str, within: float = 30) -> list[str]:
    """The event ids of the requester's UNBOUND_PERSON alerts, once `wanted`'s is among them (or
    `within` seconds have passed)."""
    deadline = time.monotonic() + within
    while True:
        unbound = [a.event_id for a in await alerts()
                   if a.requester == requester and a.rule == UNBOUND_PERSON]
        if wanted in unbound or time.monotonic() > deadline:
            return unbound
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("ahead", [False, True])
async def test_a_binding_read_after_the_linkage_it_made_possible_raises_no_alert(
        platform: Processes, live: AuditStore, ahead: bool) -> None:
    """A binding and the linkage made with its link code are logged on two partitions: the
    binding read in a batch after the linkage's, the linkage was alerted as about a person the
    requester never bound. Its decision waits for the lateness; another person's, never bound,
    is alerted then. So too after a request of another clock dated 20 s ahead (4 times the
    lateness, as the load test's events may be; a year would stay in the session's store),
    which took every decision at once until its time had passed; it is alerted too, as of its
    reading."""
    requester = f"late-{uuid.uuid4().hex[:8]}"
    with short_lateness(platform):
        await logged(live, [synthetic(0, f"up-{requester}", datetime.now(UTC))])  # it reads
        now = datetime.now(UTC)
        at = max(now, live.latest_time() or now)  # not late itself: past the latest read
        clock = linkage_of(f"{requester}-ahead", f"{requester}-clock", "NEVERBOUND2",
                           at + 4 * LATENESS)
        if ahead:
            await logged(live, [clock])
        made = [linkage_of(f"{requester}-{person}", requester, person, at)
                for person in ("BOUNDLATE01", "NEVERBOUND1")]
        bound_late = AccessLogEvent(event_id(f"{requester}-b", "binding:0"), f"{requester}-b",
                                    at - timedelta(seconds=1), "BINDING", "FOUND", None, None,
                                    None, requester, None, None, "BOUNDLATE01")
        await logged(live, made)
        await logged(live, [bound_late])
        assert await unbound_alerted(requester, made[1].event_id) == [made[1].event_id]
        if ahead:
            assert await unbound_alerted(clock.requester, clock.event_id) == [clock.event_id]
            # the store keeps when it was read, where a restarted consumer's detector places it
            [read] = [read for e, read in live.recent_events(at) if e.event_id == clock.event_id]
            assert read is not None and now <= read < clock.occurred_at, read


async def test_a_linkage_about_a_person_never_bound_is_alerted_though_nothing_comes_after_it(
        platform: Processes, live: AuditStore) -> None:
    """A linkage about a person its requester never bound, the last event logged: its decision
    waited for an event past it by more than the lateness, which a quiet log (a night) may not
    bring for hours. The consumer, reading nothing more, tells its detector the time: the alert
    comes once the lateness has passed, a few seconds after at most."""
    requester = f"quiet-{uuid.uuid4().hex[:8]}"
    with short_lateness(platform) as started:
        at = max(started, live.latest_time() or started)  # not late itself
        made = linkage_of(f"{requester}-1", requester, "NEVERBOUND1", at)
        await logged(live, [made])
        assert await unbound_alerted(requester, made.event_id) == [made.event_id]
        took = datetime.now(UTC) - at
    assert took < LATENESS + timedelta(seconds=10), took


async def test_a_restarted_audit_consumer_raises_the_alerts_the_stopped_one_would_have(
        platform: Processes, live: AuditStore) -> None:
    requester, person = f"watch-{uuid.uuid4().hex[:8]}", "WATCHED0001"
    now = datetime.now(UTC)

    def query(minutes_ago: int) -> AccessLogEvent:
        return linkage_of(f"{requester}-{minutes_ago}", requester, person,
                          now - timedelta(minutes=minutes_ago))

    # one person queried every 14 min: the 5th within an hour (100 min ago) raised the episode's
    # one alert, each after it a 5th again (the episode going on) up to 58 min ago; 3 more since,
    # none a 5th; the next one is (with those and the one 58 min ago), 58 min after the episode's
    # last 5th: not alerted. A restarted consumer that re-read only an hour and its lateness
    # (from ~70 min ago: neither the alert nor the counts of the 5ths) would alert it again
    before = [query(m) for m in (156, 142, 128, 114, 100, 86, 72, 58, 35, 15, 5)]
    await logged(live, before)
    platform.kill("audit")
    platform.start("audit", "audit", "run")  # re-reads the last horizon: the episode's start on
    await logged(live, [query(0)])
    repeated = [a.event_id for a in await alerts() if a.requester == requester
                and a.rule == REPEATED_PERSON]
    assert repeated == [before[4].event_id]


def rules_and_ids(raised: Iterable[Alert | Raised]) -> list[tuple[str, str]]:
    """The rules and event ids of the alerts, each once, in order."""
    return sorted({(a.rule, a.event_id) for a in raised})


async def alerted(requester: str, rule: str, within: float = 30) -> list[str]:
    """The event ids of the requester's alerts of `rule`, once there are any (or `within`
    seconds have passed)."""
    deadline = time.monotonic() + within
    while not (found := [a.event_id for a in await alerts()
                         if a.requester == requester and a.rule == rule]):
        if time.monotonic() > deadline:
            return []
        await asyncio.sleep(0.2)
    return found


async def anchored_size() -> int:
    """The size of the largest head anchored on the broker."""
    heads = await anchored_heads(KafkaAccess.of(config.ADMIN))
    return max((signed.head.size for signed in heads), default=0)


def copied(store: Path, to: Path) -> Path:
    """A copy of a SQLite store as it is now."""
    with closing(sqlite3.connect(store)) as source, closing(sqlite3.connect(to)) as copy:
        source.backup(copy)
    return to


def restored(whole: Path, live: AuditStore, platform: Processes) -> None:
    """The store put back as `whole` was, with no connection to it open (copied over a store in
    use, its WAL files another's, it came out corrupt): the consumer stopped, `live` closed, the
    store's files removed, then the copy made."""
    if "audit" in platform.running:
        platform.stop("audit")
    live.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{default_path()}{suffix}").unlink(missing_ok=True)
    copied(whole, default_path())


async def verify(db: Path | str, *flags: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(renkei, "audit", "verify", "--db", str(db), *flags,
                                   check=False)


async def appended(live: AuditStore, count: int) -> None:
    """Log `count` new events and wait until the store holds them."""
    batch, now = uuid.uuid4().hex[:8], datetime.now(UTC)
    await logged(live, [synthetic(n, batch, now + timedelta(milliseconds=n))
                        for n in range(count)])


async def noting(offset: int, note: str) -> None:
    """Commit `offset` with `note` as the stopped audit consumer: its static member, which takes
    the stopped one's place at once."""
    await commit_as_member(KafkaAccess.of(acls.AUDIT), "1", offset, note)


async def test_a_store_cut_short_with_its_heads_fails_verify_against_the_anchored_heads(
        platform: Processes, live: AuditStore, tmp_path: Path) -> None:
    """The consumer's note from before the notes were signed is read by `verify` and said
    unsigned; one whose signature is not the head key's stops the consumer at its start."""
    await appended(live, 3 * CUT)
    platform.stop("audit")  # it signs a head of all it appended and anchors it, then leaves
    offset, note = await consumer_commit(KafkaAccess.of(acls.AUDIT))
    try:
        size = live.size()
        anchored = await anchored_size()
        await noting(offset, note[:-1] + ("1" if note.endswith("0") else "0"))  # signature changed
        platform.start("audit", "audit", "run")
        starting = await asyncio.to_thread(exited, platform, "audit")
        await noting(offset, " ".join(note.split(" ")[:2]))  # the tree alone: unsigned
        whole, cut = (copied(default_path(), tmp_path / name) for name in ("whole.db", "cut.db"))
        truncate(f"sqlite:///{cut}", size - CUT)
        passed, alone, failed = [await verify(whole), await verify(cut, "--no-anchor"),
                                 await verify(cut)]
    finally:
        platform.start("audit", "audit", "run")  # it reads the unsigned note and goes on
    assert anchored == size
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"checked against the audit consumer's last commit: offset {offset}, size " \
        f"{note.split(' ')[0]}; its note is UNSIGNED" in passed.stdout, passed.stdout
    assert starting[0] == 1 and "its note's signature is not the head key's: a note forged" \
        in starting[1] and "gap" not in starting[1], starting
    assert "checked against the largest good one of" in passed.stdout
    assert f"anchored heads: size {size}," in passed.stdout
    assert alone.returncode == 0, "alone, the store cut short looks whole"
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stderr.startswith(f"TRUNCATED: anchored head (size {size}, "), failed.stderr
    assert f"the store has {size - CUT} entries: serials {size - CUT}..{size - 1} are gone" \
        in failed.stderr


@pytest.mark.parametrize("moved", ["forged", "its own"])
async def test_recommit_gives_the_consumer_a_good_commit_again_after_a_forged_note(
        platform: Processes, live: AuditStore, moved: str) -> None:
    """A note forged at the topic's end would skip the events logged while the consumer was
    stopped, and so would the consumer's own note committed again there (by whoever else
    commits as the audit principal): `audit recommit` commits the offset of the first one, its
    note signed, and the consumer starts from it and appends each of them once."""
    await appended(live, CUT)
    platform.stop("audit")
    before, first = live.size(), await asyncio.to_thread(audit_end)
    own = (await consumer_commit(KafkaAccess.of(acls.AUDIT)))[1]
    batch, now = uuid.uuid4().hex[:8], datetime.now(UTC)
    async with producer(KafkaAccess.of(config.ADMIN)) as prod:
        for n in range(CUT):
            event = synthetic(n, batch, now + timedelta(milliseconds=n))
            await prod.send(topics.AUDIT, CODEC.encode(event), key=event.request_id.encode())
    note = own if moved == "its own" else own[:-1] + ("1" if own.endswith("0") else "0")
    await noting(await asyncio.to_thread(audit_end), note)
    try:
        platform.start("audit", "audit", "run")
        stuck = await asyncio.to_thread(exited, platform, "audit")
        started = time.monotonic()
        mended = await asyncio.to_thread(renkei, "audit", "recommit", check=False)
        took = time.monotonic() - started
        committed = await noted_commit(KafkaAccess.of(acls.AUDIT))
        again = await asyncio.to_thread(renkei, "audit", "recommit", check=False)
    finally:
        platform.start("audit", "audit", "run")
    logged = set(await topic_events(first))
    await caught_up(live, logged)
    said = {"forged": ("a note forged", "has a forged note; the store of "),
            "its own": (f"past the last offset it noted in this store ({first})",
                        f"is past the last offset it noted ({first}); the store of ")}[moved]
    assert stuck[0] == 1 and said[0] in stuck[1] and "audit recommit" in stuck[1], stuck
    assert mended.returncode == 0, mended.stdout + mended.stderr
    assert said[1] in mended.stdout, mended.stdout
    assert f"committed offset {first} of the audit topic" in mended.stdout, mended.stdout
    assert committed is not None and (committed.offset, committed.size) == (first, before)
    assert committed.signed_by(live.signer.public_key), "a note the head key signed"
    assert again.returncode == 0 and "nothing committed" in again.stdout, again.stdout
    assert live.size() == before + len(logged) and len(logged) >= CUT, "each event once"
    print(f"\nrecommit took {took:.1f}s over a store of {before} entries")


async def committed_size() -> int:
    """The tree size the audit consumer noted with its last commit (0 if it noted none)."""
    committed = await noted_commit(KafkaAccess.of(acls.AUDIT))
    return 0 if committed is None else committed.size


async def reaching(size: Callable[[], Awaitable[int]], wanted: int, within: float = 30) -> None:
    """Wait until `size` tells at least `wanted`."""
    started = time.monotonic()
    while (now := await size()) < wanted:
        if time.monotonic() - started > within:
            raise TimeoutError(f"{now} after {within} s; {wanted} wanted")
        await asyncio.sleep(0.2)


def head_just_anchored(platform: Processes, head_seconds: float = HEAD_SECONDS) -> None:
    """The consumer restarted: stopping, it anchors a head of all it appended (not waited for,
    up to a head period); started again, it signs its next one `head_seconds` after its start."""
    platform.stop("audit")
    platform.start("audit", "audit", "run", "--head-seconds", str(head_seconds))


async def test_the_consumer_anchors_a_head_each_head_period_it_is_given(
        platform: Processes, live: AuditStore) -> None:
    """Two heads in a row, each over entries that came in its period, are signed a period apart
    (or two, the second batch late), not HEAD_SECONDS: `--head-seconds` is obeyed, not only
    taken (a consumer stopping within a test's limit showed no more)."""
    head_just_anchored(platform, PERIOD)
    try:
        for _ in range(2):
            await appended(live, CUT)
            await reaching(anchored_size, live.size())
        before, last = (await anchored_heads(KafkaAccess.of(config.ADMIN)))[-2:]
    finally:
        head_just_anchored(platform)
    apart = (last.head.timestamp - before.head.timestamp).total_seconds()
    assert PERIOD <= apart < 2.5 * PERIOD < HEAD_SECONDS, apart


async def test_a_head_the_broker_does_not_take_holds_the_signing_for_the_bound_and_is_followed_soon(
        broker: Cluster) -> None:
    """A broker that takes no head (to a topic of the test's own not made yet, which the broker
    does not make on demand: the producer asks for it until its request timeout, 40 s): each
    head holds the signing for the delivery bound, not the head period, and the next comes the
    bound after it, not a period; once the topic is made, the next head is anchored there."""
    name, admin, period = f"test.heads.{uuid.uuid4().hex[:8]}", admin_client(), 2.0
    signer, signed_at = Signer.generate(), list[float]()

    def head() -> SignedHead:
        signed_at.append(time.monotonic())
        return signer.sign_head(TreeHead(len(signed_at), bytes(32), datetime.now(UTC)))

    async def signed() -> int:
        return len(signed_at)

    async def anchored() -> int:
        return anchor.size

    access = KafkaAccess.of(config.ADMIN)
    sending = producer_for(access)
    await sending.start()
    anchor = Anchor(sending, name, delivery=0.25)
    anchoring = asyncio.create_task(anchor.every(period, head))
    try:
        await reaching(signed, 3, within=period + 2.5)
        assert anchor.size == 0
        assert all(later - earlier < period / 2
                   for earlier, later in itertools.pairwise(signed_at)), signed_at
        admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
        await reaching(anchored, 1, within=10)
    finally:
        await cancelled(anchoring)
        await sending.stop()
    on_topic = [CODEC.decode(r.value or b"", SignedHead) for r in await read_topic(access, name, 0)]
    assert anchor.size in [signed.head.size for signed in on_topic]


async def test_a_store_cut_back_to_its_last_anchored_head_fails_verify_against_the_commit(
        platform: Processes, live: AuditStore, tmp_path: Path) -> None:
    """`audit verify` and the oversight console's check alike: the same check of the store."""
    await appended(live, CUT)
    head_just_anchored(platform)  # the next head in 10 s
    await appended(live, 2 * CUT)
    size = live.size()
    await reaching(committed_size, size)
    platform.kill("audit")  # a crash: no last head anchored at a stop
    try:
        anchored = await anchored_size()
        whole, cut = (copied(default_path(), tmp_path / name) for name in ("whole.db", "cut.db"))
        truncate(f"sqlite:///{cut}", anchored)
        passed, failed = await verify(whole), await verify(cut)
        with AuditStore(whole, live.signer) as kept, AuditStore(cut, live.signer) as short:
            seen = [await AnchorCheck(KafkaAccess.of(acls.OVERSIGHT)).check(counted(s, []))
                    for s in (kept, short)]
    finally:
        platform.start("audit", "audit", "run")
    assert anchored < size, "the newest entries are not anchored yet"
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "checked against the audit consumer's last commit: offset " in passed.stdout
    assert ", signed by the head key" in passed.stdout, "the consumer's note, signed and timed"
    assert seen[0].ok and seen[0].committed is not None and seen[0].committed.size == size
    assert seen[1].verdict == failed.stderr.strip(), "the console says what `verify` says"
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stderr.startswith("TRUNCATED: the audit consumer's commit (offset "), \
        failed.stderr
    assert f"the store has {anchored} entries: serials {anchored}..{size - 1} are gone" \
        in failed.stderr


def exited(platform: Processes, name: str, within: float = 60) -> tuple[int, str]:
    """The exit code of a process that stops of itself, and the last line of its log (one that
    does not stop within `within` seconds stays running, for the test's clean-up to stop)."""
    code = platform.running[name].wait(within)
    del platform.running[name]
    return code, log_path(name).read_text().splitlines()[-1]


def audit_end() -> int:
    """The offset after the last record on the audit topic."""
    client = admin_client()  # held until the answer comes: dropped, it never does
    ends = client.list_offsets({TopicPartition(topics.AUDIT, 0): LATEST}, request_timeout=10)
    end: int = next(iter(ends.values())).result(timeout=20).offset
    return end


async def test_the_consumer_does_not_go_on_over_entries_deleted_from_its_store(
        platform: Processes, live: AuditStore, tmp_path: Path) -> None:
    """Appended after the gap and committed, new entries would hide it from `verify`."""
    await appended(live, CUT)
    head_just_anchored(platform)  # the next head in 10 s
    await appended(live, 2 * CUT)
    size, anchored = live.size(), await anchored_size()
    await reaching(committed_size, size)
    whole = copied(default_path(), tmp_path / "whole.db")
    truncate(f"sqlite:///{default_path()}", anchored)  # while the consumer runs
    try:
        batch, now = uuid.uuid4().hex[:8], datetime.now(UTC)
        async with producer(KafkaAccess.of(config.ADMIN)) as prod:
            await prod.send_and_wait(topics.AUDIT, CODEC.encode(synthetic(0, batch, now)))
        running = await asyncio.to_thread(exited, platform, "audit")
        platform.start("audit", "audit", "run")
        starting = await asyncio.to_thread(exited, platform, "audit")
        found = await verify(default_path())
    finally:
        restored(whole, live, platform)
        platform.start("audit", "audit", "run")
    gone = f"serials {anchored}..{size - 1}"
    assert anchored < size, "the newest entries are not anchored yet"
    assert running[0] == 1 and f"{gone} were deleted" in running[1], running
    assert starting[0] == 1 and "the audit consumer's commit (offset " in starting[1], starting
    assert f"{gone} are gone" in starting[1], starting
    assert found.stderr.startswith("TRUNCATED: the audit consumer's commit (offset "), \
        found.stdout + found.stderr
    with AuditStore(default_path(), Signer.load_or_create()) as store:
        await caught_up(store, {synthetic(0, batch, now).event_id})


async def test_the_consumer_stops_at_a_head_over_entries_deleted_while_no_event_comes(
        platform: Processes, live: AuditStore, tmp_path: Path) -> None:
    """The head it signs next meets the gap: it stops then, in one line, not at the next batch."""
    await appended(live, CUT)
    head_just_anchored(platform, NEXT_HEAD)
    await appended(live, 2 * CUT)
    size, anchored = live.size(), await anchored_size()
    await reaching(committed_size, size)
    whole = copied(default_path(), tmp_path / "whole.db")
    end, said = await asyncio.to_thread(audit_end), log_path("audit").stat().st_size
    truncate(f"sqlite:///{default_path()}", anchored)  # while the consumer runs, idle
    try:
        code, last = await asyncio.to_thread(exited, platform, "audit", 3 * NEXT_HEAD)
        came = await asyncio.to_thread(audit_end) - end
        with log_path("audit").open() as logged:
            logged.seek(said)
            since = logged.read()
    finally:
        restored(whole, live, platform)
        platform.start("audit", "audit", "run")
    assert anchored < size, "the newest entries are not anchored yet"
    assert came == 0, "no event came: no batch met the gap"
    assert code == 1 and f"serials {anchored}..{size - 1} were deleted" in last, (code, last)
    assert "Traceback" not in since and since.count("were deleted") == 1, since


def deleted(path: Path) -> str:
    """No store at `path`: what `verify` says of it."""
    return f"no audit store at {path}"


def emptied(path: Path) -> str:
    """An empty SQLite database at `path` (no tables): what `verify` says of it."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 1")  # a header written: a database, not a bare file
    return f"the audit store at {path} has no tables"


def touched(path: Path) -> str:
    """An empty file at `path`, which SQLite reads as a database without tables."""
    path.touch()
    return f"the audit store at {path} has no tables"


@pytest.mark.parametrize("replaced", [deleted, emptied, touched])
async def test_a_store_deleted_or_replaced_by_an_empty_one_fails_verify_as_truncated(
        live: AuditStore, tmp_path: Path, replaced: Callable[[Path], str]) -> None:
    await appended(live, CUT)
    size = live.size()
    await reaching(committed_size, size)
    said = replaced(tmp_path / "gone.db")
    gone = await verify(tmp_path / "gone.db")
    assert gone.returncode == 1, gone.stdout + gone.stderr
    assert gone.stderr.startswith(f"TRUNCATED: {said}, yet "), gone.stderr
    had = re.search(r" says the log had (\d+) entries: serials 0\.\.(\d+) are gone$",
                    gone.stderr.rstrip())
    assert had and int(had[1]) >= size and int(had[2]) == int(had[1]) - 1, gone.stderr


def counted(store: AuditStore, given: list[int]) -> Verify:
    """The console's check of `store` against the heads it is given, how many noted in `given`."""
    async def verify(heads: Sequence[SignedHead], committed: Committed | None) -> VerifyReport:
        given.append(len(heads))
        return await Records(lambda: store).against(heads, committed)
    return verify


async def anchored_now(platform: Processes) -> int:
    """The audit consumer stopped (it anchors a head of all it appended): heads anchored."""
    platform.stop("audit")
    return len(await anchored_heads(KafkaAccess.of(acls.OVERSIGHT)))


async def two_heads_anchored(platform: Processes, live: AuditStore) -> None:
    """Two heads anchored at least: a check reads fewer than all after."""
    for _ in range(2):
        await appended(live, 10)
        platform.stop("audit")
        platform.start("audit", "audit", "run")


async def test_the_oversight_console_checks_the_store_against_the_anchored_heads(
        platform: Processes, live: AuditStore, tmp_path: Path) -> None:
    """The console reads the heads topic as the oversight body and checks the store against
    every head there, as `audit verify` does: at each view only the heads anchored since the
    last one with the largest it found held; a store that fails is checked against them all."""
    check, given = AnchorCheck(KafkaAccess.of(acls.OVERSIGHT)), list[int]()
    await two_heads_anchored(platform, live)
    try:
        before = await anchored_now(platform)
        first = await check.check(counted(live, given))
    finally:
        platform.start("audit", "audit", "run")
    assert first.ok and first.anchor is not None and first.anchor.size == live.size(), first
    assert given == [before] and first.anchored == before
    await appended(live, 10)
    try:
        now = await anchored_now(platform)
        second = await check.check(counted(live, given))
        truncate(f"sqlite:///{copied(default_path(), tmp_path / 'cut.db')}", live.size() - 5)
        with AuditStore(tmp_path / "cut.db", live.signer) as cut:
            short = await check.check(counted(cut, given))
    finally:
        platform.start("audit", "audit", "run")
    assert second.ok and second.anchor is not None and second.anchor.size == live.size()
    assert given[1] == 1 + now - before < now and second.anchored == now, given
    assert given[2:] == [1, now], "the cut store failed against the largest held; then all"
    assert not short.ok and short.anchored == now and short.verdict.startswith("TRUNCATED"), \
        short.findings


async def test_a_restarted_console_checks_only_the_heads_anchored_since_its_last_check(
        platform: Processes, live: AuditStore, tmp_path: Path) -> None:
    """Where the console's check stands is kept in the portal's inbox: the check of a portal
    started again reads only the heads anchored since the last one's, once the store is found
    to hold the head kept (it read every head again: ~30 s at a year of heads); a store cut
    short meanwhile is found, against every head."""
    inbox, given = Inbox(tmp_path / "inbox.db"), list[int]()

    def console() -> AnchorCheck:
        """The integrity page of a portal (re)started on the same inbox."""
        return AnchorCheck(KafkaAccess.of(acls.OVERSIGHT), inbox)

    await two_heads_anchored(platform, live)
    try:
        try:
            before = await anchored_now(platform)
            first = await console().check(counted(live, given))
        finally:
            platform.start("audit", "audit", "run")
        await appended(live, 10)
        try:
            now = await anchored_now(platform)
            second = await console().check(counted(live, given))
            truncate(f"sqlite:///{copied(default_path(), tmp_path / 'cut.db')}", live.size() - 5)
            with AuditStore(tmp_path / "cut.db", live.signer) as cut:
                short = await console().check(counted(cut, given))
        finally:
            platform.start("audit", "audit", "run")
    finally:
        await inbox.close()
    assert first.ok and given[0] == before and first.anchored == before
    assert second.ok and second.anchor is not None and second.anchor.size == live.size()
    assert given[1:3] == [1, 1 + now - before] and given[2] < now and second.anchored == now, \
        "the head kept checked alone, then with the heads anchored since"
    assert given[3:] == [1, now], "the cut store does not hold the head kept: every head"
    assert not short.ok and short.anchored == now and short.verdict.startswith("TRUNCATED"), \
        short.findings


async def earlier_heads_anchored(live: AuditStore, count: int) -> None:
    """`count` more heads of the store as it is anchored, signed by the log's key at sizes it
    had (heads it holds, as a year's are)."""
    size, now = live.size(), datetime.now(UTC)
    async with producer(KafkaAccess.of(config.ADMIN)) as prod:
        for n in range(count):
            at = 1 + n % size
            signed = live.signer.sign_head(TreeHead(at, live.root(at),
                                                    now + timedelta(milliseconds=n)))
            await prod.send(topics.AUDIT_HEADS, CODEC.encode(signed))
        await prod.flush()


async def test_a_standing_finding_is_checked_again_without_every_head_and_a_new_one_shows(
        platform: Processes, live: AuditStore, tmp_path: Path) -> None:
    """While a finding stands, a view checks the store again against the heads it did not hold
    and the largest it held alone, with those anchored since (each view read and checked every
    head again: ~30 s at a year of heads); a store cut shorter meanwhile, past the largest head
    it held, is found at the next view, against every head."""
    check, given = AnchorCheck(KafkaAccess.of(acls.OVERSIGHT)), list[int]()
    await two_heads_anchored(platform, live)
    await earlier_heads_anchored(live, 50)
    await appended(live, 10)
    try:
        every, size = await anchored_now(platform), live.size()
        cut = copied(default_path(), tmp_path / "cut.db")
        truncate(f"sqlite:///{cut}", size - 5)
        with AuditStore(cut, live.signer) as short:
            views = [await check.check(counted(short, given)) for _ in range(3)]
            truncate(f"sqlite:///{cut}", size - 15)
            shorter = await check.check(counted(short, given))
    finally:
        platform.start("audit", "audit", "run")
    kept = given[1]
    assert given == [every, kept, kept, kept, every] and kept <= 3 and every > 50, given
    assert all(v.findings == views[0].findings and v.anchored == every for v in views[1:])
    assert views[0].verdict.startswith("TRUNCATED") and views[0].anchor is not None
    assert views[0].anchor.size == size, "the largest good head: the store lost its entries"
    assert f"the store has {size - 5} entries" in views[0].verdict, views[0].verdict
    assert f"the store has {size - 15} entries" in shorter.verdict, shorter.verdict
    assert shorter.anchored == every


class YearOfHeads(AuditStore):
    """The store as the integrity page checks it at a year of heads: each check of it a second
    long here (~30 s there); when one began, and the most that ran at once, noted."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, Signer.load_or_create())
        self.began, self.running, self.most = threading.Event(), 0, 0

    def verify_outside(self, anchored: Sequence[SignedHead],
                       committed: Committed | None) -> VerifyReport:
        self.began.set()
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            time.sleep(1.0)
            return super().verify_outside(anchored, committed)
        finally:
            self.running -= 1


async def test_a_check_of_the_store_holds_up_neither_the_event_loop_nor_a_residents_page(
        platform: Processes, live: AuditStore) -> None:
    """Two views of the integrity page at once: the event loop ticks on, a resident's history
    is read meanwhile (the check has a connection of its own), and the checks run one at a
    time, each the store's report. The check ran on the event loop: every page and the readers
    of the answers topics stood still until it was done (~30 s at a year of heads)."""
    await appended(live, 10)
    slow = YearOfHeads(default_path())
    records = Records(lambda: live, checks=lambda: slow)
    check = AnchorCheck(KafkaAccess.of(acls.OVERSIGHT))
    try:
        try:
            before = await anchored_now(platform)
            async with ticking() as ticker:
                views = asyncio.gather(check.check(records.against),
                                       check.check(records.against))
                assert await asyncio.to_thread(slow.began.wait, 30)
                history = (await records.of_person(["nobody"])).entries
                served = slow.running == 1
                first, second = await views
                ticker.went_on(1.9)
            size = live.size()
        finally:
            platform.start("audit", "audit", "run")
    finally:
        slow.close()
    assert served and history == [], "read while the check went on"
    assert slow.most == 1, "one check at a time: the second view waited for the first"
    assert first.ok and second.ok and first.anchored == second.anchored == before
    assert first.anchor is not None and first.anchor == second.anchor
    assert first.anchor.size == size


async def test_a_console_whose_kept_place_the_heads_topic_never_reached_reads_every_head(
        platform: Processes, live: AuditStore, tmp_path: Path) -> None:
    """The inbox outlived the heads topic it was kept for (the brokers' data made anew, the
    portal's folder kept): the topic ends before the offset kept, and its heads are read
    from its start, not left unread until it grows past that offset."""
    inbox, given = Inbox(tmp_path / "inbox.db"), list[int]()
    await two_heads_anchored(platform, live)
    try:
        try:
            every = await anchored_now(platform)
            await AnchorCheck(KafkaAccess.of(acls.OVERSIGHT), inbox).check(counted(live, given))
            kept = await inbox.anchor_held()
            assert kept is not None and kept.next == every and kept.heads
            await inbox.keep_anchor_held(replace(kept, next=kept.next + 1000, read=1))
            again = await AnchorCheck(KafkaAccess.of(acls.OVERSIGHT), inbox).check(
                counted(live, given))
        finally:
            platform.start("audit", "audit", "run")
    finally:
        await inbox.close()
    assert given == [every, 1, every], "the head kept checked alone, then every head"
    assert again.ok and again.anchored == every, again


async def test_the_audit_principal_cannot_delete_or_expire_the_anchored_heads(
        town: Town) -> None:
    audit, admin = AdminClient({**KafkaAccess.of(acls.AUDIT).confluent(), "log_level": 0}), \
        admin_client()
    heads = ConfigResource(ConfigResource.Type.TOPIC, topics.AUDIT_HEADS)
    configs = admin.describe_configs([heads])[heads].result(30)
    assert int(configs["retention.ms"].value) == SEVEN_YEARS_MS
    assert configs["message.timestamp.type"].value == "LogAppendTime"
    deleting = audit.delete_records([TopicPartition(topics.AUDIT_HEADS, 0, OFFSET_END)],
                                    request_timeout=30)
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        next(iter(deleting.values())).result()
    expiring = ConfigResource(ConfigResource.Type.TOPIC, topics.AUDIT_HEADS, incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException, match="AUTHORIZATION_FAILED"):
        audit.incremental_alter_configs([expiring], request_timeout=30)[expiring].result()


async def test_the_oversight_body_reads_the_audit_consumers_commit_and_cannot_make_one(
        town: Town) -> None:
    """It may describe the audit group (the integrity page reads the tree noted with the last
    commit), not commit in it: a note of its own would pass a store cut short."""
    oversight = AdminClient({**KafkaAccess.of(acls.OVERSIGHT).confluent(), "log_level": 0})
    forged = [ConsumerGroupTopicPartitions(acls.AUDIT_GROUP, [
        TopicPartition(topics.AUDIT, 0, 0, metadata=f"0 {'00' * 32}")])]
    altered = oversight.alter_consumer_group_offsets(forged, request_timeout=30)
    refused = [tp.error for tp in altered[acls.AUDIT_GROUP].result().topic_partitions or []]
    assert [e.code() for e in refused] == [KafkaError.GROUP_AUTHORIZATION_FAILED], refused
    noted = await noted_commit(KafkaAccess.of(acls.OVERSIGHT))
    assert noted is not None and noted != Committed(0, 0, bytes(32))
    assert noted.signed_by(Signer.public().public_key), "the consumer's own note: signed, timed"


async def replay(db: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`renkei audit replay` into a fresh store, run aside so the holders here keep going."""
    return await asyncio.to_thread(renkei, "audit", "replay", "--db", str(db), *flags,
                                   check=False)


async def test_replay_finds_a_store_short_of_the_events_the_consumer_committed(
        live: AuditStore, tmp_path: Path) -> None:
    await appended(live, 2 * CUT)
    cut = copied(default_path(), tmp_path / "cut.db")
    with AuditStore(cut, Signer.generate()) as copy:
        size = copy.size()
    await reaching(committed_size, size)  # committed each COMMIT_SECONDS: the copy's all of it
    truncate(f"sqlite:///{cut}", size - CUT)
    found = await replay(tmp_path / "fresh.db", "--live", str(cut))
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"live store of {size - CUT} entries, compared at size {size - CUT}: root " \
        in found.stdout
    assert "(identical)" in found.stdout, "equal where both have entries: only the size tells"
    assert f"SHORT: the live store has {size - CUT} entries; the audit consumer committed " \
        in found.stdout
    assert f"serials {size - CUT}.." in found.stdout


async def test_replay_says_the_live_stores_size_when_it_is_ahead_of_the_topic(
        live: AuditStore, tmp_path: Path) -> None:
    await appended(live, CUT)
    ahead = copied(default_path(), tmp_path / "ahead.db")
    with AuditStore(ahead, Signer.generate()) as copy:
        copy.append_many(item(synthetic(n, "never-logged", datetime.now(UTC))) for n in range(3))
        size = copy.size()
    found = await replay(tmp_path / "fresh.db", "--live", str(ahead))
    assert found.returncode == 0, found.stdout + found.stderr
    replayed = int(found.stdout.split("tree size ")[1].split(",")[0])
    assert f"live store of {size} entries, compared at size {replayed}: root " in found.stdout
    assert f"the live store is {size - replayed} entries ahead of the topic" in found.stdout


async def test_an_operator_action_on_the_audit_topic_is_stored_once_and_replay_shows_it(
        live: AuditStore, tmp_path: Path) -> None:
    """No operator action reached the audit log: one on the audit topic, come twice, is stored
    once by the audit consumer, and the replay rebuilds it and shows it with its reason."""
    subject = f"holder-{uuid.uuid4().hex[:8]}"
    action = OperatorAction(f"SUSPEND@{topics.DIRECTORY}:0:{uuid.uuid4().int % 10**9}",
                            datetime.now(UTC).replace(microsecond=0), "operator-a", "SUSPEND",
                            subject, "漏えいの疑い")
    async with producer(KafkaAccess.of(config.ADMIN)) as prod:
        for _ in range(2):
            await prod.send_and_wait(topics.AUDIT, CODEC.encode(action), key=subject.encode())
    await appended(live, 1)  # after both copies on the one partition: the consumer read them
    assert [a for a in live.operator_actions() if a.subject == subject] == [action]
    found = await replay(tmp_path / "fresh.db")
    assert found.returncode == 0, found.stdout + found.stderr
    assert found.stdout.count(f"SUSPEND {subject} by operator-a; reason: 漏えいの疑い") == 1
    assert "NOT in the live store" not in found.stdout


async def test_the_audit_topic_read_whole_passes_an_operator_action_by(town: Town) -> None:
    """Reading the audit topic's access-log events whole (renkei demo's steps, once a holder was
    suspended or a unit re-keyed before) failed on the first operator action on it, as an
    unexpected message: the actions are passed by, the events read."""
    access, at = KafkaAccess.of(config.ADMIN), datetime.now(UTC).replace(microsecond=0)
    event = synthetic(0, uuid.uuid4().hex[:8], at)
    action = OperatorAction(f"SUSPEND@{topics.DIRECTORY}:0:{uuid.uuid4().int % 10**9}", at,
                            "operator-a", "SUSPEND", "sakura-town", None)
    async with producer(access) as prod:
        for message in (action, event):
            await prod.send_and_wait(topics.AUDIT, CODEC.encode(message), key=b"sakura-town")
    assert await read_events(access, {event.request_id}) == [event]


def action_leaves(store: AuditStore) -> int:
    """The operator actions that are leaves of the store's tree (a town's PUBLISH of its pattern
    list, a suspension another test made)."""
    return sum(acted.serial is not None for acted in _action_pages(store, ActionQuery(), 1000))


def entries(store: AuditStore) -> list[Entry]:
    """Every entry of the store, page by page."""
    found: list[Entry] = []
    after: str | None = None
    while True:
        page = store.query(Query(), limit=1000, after=after)
        found += page.entries
        if page.next_cursor is None:
            return found
        after = page.next_cursor


async def test_replay_rebuilds_the_same_root_and_rechecks_every_approval(
        clients: dict[str, HolderClient], live: AuditStore, tmp_path: Path) -> None:
    nenkin, hospital = clients["nenkin"], clients["sakura-hospital"]
    lawful = [await ask(nenkin, own, "P-037", "sakura-town", "local_tax")
              for own in bound(nenkin)[:4]]
    unlawful = [await ask(hospital, bound(hospital)[0], "P-120", "sakura-town", "local_tax"),
                await ask(nenkin, bound(nenkin)[0], "P-999", "sakura-town", "local_tax"),
                await ask(nenkin, bound(nenkin)[0], "P-037", "sakura-town", "resident_record")]
    outcomes = [await c.outcome(r, 30) for c, r in
                [(nenkin, r) for r in lawful] + [(hospital, unlawful[0])]
                + [(nenkin, r) for r in unlawful[1:]]]
    assert [o.status for o in outcomes] == ["FOUND"] * 4 + ["REJECTED"] * 3
    await caught_up(live, set(await topic_events()))
    on_topic = read_audit(await read_topic(KafkaAccess.of(config.ADMIN), topics.AUDIT))
    normal = await replay(tmp_path / "first.db")
    assert normal.returncode == 0, normal.stdout + normal.stderr
    with AuditStore(tmp_path / "first.db", Signer.generate()) as rebuilt:
        again = len(on_topic) - rebuilt.size()
    assert (f"replayed {len(on_topic)} events and operator actions ({again} of them an id again) "
            "from ") in normal.stdout, "the events and actions, not the records that carry them"
    assert "(identical)" in normal.stdout and " 0 disagreement(s)" in normal.stdout
    checked = int(normal.stdout.split("re-checked ")[1].split()[0])
    assert checked >= 7
    request = f"forged-{uuid.uuid4()}"  # an approval the pattern list never allowed, as admin
    forged = AccessLogEvent(event_id(request, "approved"), request, datetime.now(UTC), "LINKAGE",
                            "APPROVED", None, "P-120", "健康保険法", "sakura-hospital",
                            "sakura-town", "local_tax", None)
    async with producer(KafkaAccess.of(config.ADMIN)) as prod:
        await prod.send_and_wait(topics.AUDIT, CODEC.encode(forged))
    await caught_up(live, set(await topic_events()))
    found = await replay(tmp_path / "second.db")
    assert found.returncode == 1, found.stdout + found.stderr
    assert "(identical)" in found.stdout and " 1 disagreement(s)" in found.stdout
    assert f"DISAGREES {forged.event_id}" in found.stdout
    assert "logged APPROVED, re-check says WRONG_PROVIDER" in found.stdout


def own_group(topic: str) -> str:
    """The audit consumer group of a topic of a test's own (the session's consumer keeps its own
    group, which the broker lets no one else commit in while it runs)."""
    return f"{acls.AUDIT_GROUP}.{topic}"


@asynccontextmanager
async def topic_of_its_own(events: Sequence[AccessLogEvent | OperatorAction], start: int,
                           committed: int | None = None) -> AsyncIterator[str]:
    """A topic of the events (or operator actions), one a record, whose records before offset
    `start` the broker deleted (as its retention would), its audit consumer (own_group) having
    committed offset `committed` (None: none, it never read the topic); deleted after."""
    own, admin = f"{topics.AUDIT}.own-{uuid.uuid4().hex[:8]}", admin_client()
    create_known(admin, own)  # committed to at once, no event produced first (start 0)
    try:
        async with producer(KafkaAccess.of(config.ADMIN)) as prod:
            for event in events:
                key = event.request_id if isinstance(event, AccessLogEvent) else event.subject
                await prod.send(own, CODEC.encode(event), key=key.encode())
        if committed is not None:
            commit_offsets(admin, own_group(own), [TopicPartition(own, 0, committed)])
        next(iter(admin.delete_records([TopicPartition(own, 0, start)],
                                       request_timeout=30).values())).result(30)
        yield own
    finally:  # its group's offsets with it
        admin.delete_topics([own])[own].result(30)


async def rebuilt(db: Path, live: Path, topic: str) -> ReplayReport:
    """A replay of `topic` into a fresh store at `db`, compared with the store at `live`."""
    with AuditStore(db, Signer.generate()) as fresh, AuditStore(live, Signer.generate()) as kept:
        return await replaying(KafkaAccess.of(config.ADMIN), fresh, kept, topic=topic,
                               group=own_group(topic))


async def said(db: Path, live: Path, topic: str, monkeypatch: pytest.MonkeyPatch) -> Result:
    """`renkei audit replay` of `topic` into a fresh store at `db`, compared with the store at
    `live`, run in process (click's CliRunner) and aside: read as admin, the audit principal
    reading the audit topic alone, its audit consumer own_group."""
    def of_its_own(_: KafkaAccess, target: AuditStore, current: AuditStore,
                   grace: timedelta) -> Coroutine[Any, Any, ReplayReport]:
        return replaying(KafkaAccess.of(config.ADMIN), target, current, grace, topic,
                         own_group(topic))

    monkeypatch.setattr("audit.replay.replay", of_its_own)
    return await asyncio.to_thread(CliRunner().invoke, audit_cli,
                                   ["replay", "--db", str(db), "--live", str(live)])


async def test_replay_tells_the_entries_beyond_the_topics_retention_from_those_that_differ(
        town: Town, tmp_path: Path) -> None:
    """Once the broker deleted the topic's oldest records (its retention; deleteRecords here, on
    a topic of the test's own, as the consumer would append it into a store of its own: the
    session's audit topic keeps its start), the live store's entries of their events are beyond
    the replay: counted apart, not DIFFERENT; the entries after them are compared one by one.
    The store's own retention may have purged the first events the topic still has."""
    now, live, first = datetime.now(UTC), tmp_path / "live.db", CUT // 2
    events = [synthetic(n, "retained", now + timedelta(milliseconds=n)) for n in range(CUT)]
    first_id = events[first].event_id
    with AuditStore(live, Signer.generate()) as store:
        store.append_many(item(event) for event in events)
        beyond = store.serials([first_id])[first_id]
    tampered, purged = (copied(live, tmp_path / name) for name in ("tampered.db", "purged.db"))
    with closing(sqlite3.connect(tampered)) as db, db:
        db.execute("UPDATE nodes SET hash = ? WHERE id = ?", (bytes(32), beyond + 1))
    with AuditStore(purged, Signer.generate()) as store:  # the topic's first two purged
        entry = store.entry(beyond + 2)
        assert entry is not None
        at = entry.event.occurred_at
        store.purge(at.replace(year=at.year + 7))
        assert store.entry(beyond + 1) is None
    async with topic_of_its_own(events, first, CUT) as own:
        kept, rewritten, gone = [await rebuilt(tmp_path / f"{name}.db", stored, own)
                                 for name, stored in [("kept", live), ("rewritten", tampered),
                                                      ("gone", purged)]]
    for report in (kept, rewritten, gone):
        assert (report.start, report.beyond) == (first, beyond), report
        assert not report.short and not report.disagreements, report
    assert kept.identical and (kept.compared_at, kept.differing) == (CUT - beyond, 0), kept
    assert not rewritten.identical and rewritten.differing == 1, rewritten
    assert gone.identical and gone.differing == 0, gone


@pytest.mark.parametrize("start", [0, CUT])
async def test_replay_of_a_topic_holding_none_of_the_live_stores_events_says_so_and_fails(
        town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: int) -> None:
    """The topic holds none of the live store's events: made again, empty, or its records all
    deleted by the broker (its retention; deleteRecords here). Nothing is compared: `renkei
    audit replay` says so, from the broker's start offset, and exits 1 (it said the live store
    was empty and exited 0)."""
    now, live = datetime.now(UTC), tmp_path / "live.db"
    events = [synthetic(n, f"emptied-{start}", now + timedelta(milliseconds=n))
              for n in range(CUT)]
    with AuditStore(live, Signer.generate()) as store:
        store.append_many(item(event) for event in events)
    async with topic_of_its_own(events[:start], start, CUT) as own:
        found = await said(tmp_path / "fresh.db", live, own, monkeypatch)
    assert found.exit_code == 1 and not isinstance(found.exception, Exception), found.output
    assert f"NOT COMPARED: the live store held {CUT} entries when the replay read the topic, " \
        f"and the topic none of their events (its records from offset {start} to {start};" \
        in found.output, found.output


async def test_replay_of_a_topic_starting_past_the_consumers_commit_says_what_was_lost(
        town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit consumer committed offset `acknowledged`, then was away while the broker deleted
    the records up to `start` (its retention; deleteRecords here); back, it read on from the
    topic's start, its commit of those not made yet. `renkei audit replay` found the store
    identical and exited 0: it says the offsets between were never logged, and exits 1. A
    consumer that committed nothing never read the topic: said, no loss."""
    now, live, acknowledged, start = datetime.now(UTC), tmp_path / "live.db", CUT // 4, CUT // 2
    events = [synthetic(n, "lost", now + timedelta(milliseconds=n)) for n in range(CUT)]
    with AuditStore(live, Signer.generate()) as store:
        store.append_many(item(event) for event in events[:acknowledged] + events[start:])
    async with topic_of_its_own(events, start, acknowledged) as own:
        found = await said(tmp_path / "fresh.db", live, own, monkeypatch)
    assert found.exit_code == 1 and not isinstance(found.exception, Exception), found.output
    assert "(identical)" in found.output, found.output
    assert f"LOST: the topic starts at offset {start}, past offset {acknowledged} the audit " \
        f"consumer committed: the broker deleted the records of offsets {acknowledged}.." \
        f"{start - 1} ({start - acknowledged} offsets) before the audit consumer read them" \
        in found.output, found.output
    AuditStore(tmp_path / "empty.db", Signer.generate()).close()
    async with topic_of_its_own(events, start) as own:
        never = await said(tmp_path / "never.db", tmp_path / "empty.db", own, monkeypatch)
    assert never.exit_code == 0, never.output
    assert "LOST" not in never.output
    assert "the audit consumer has committed no offset on the topic: it never read it" \
        in never.output, never.output


async def test_replay_of_a_topic_ending_before_the_consumers_commit_says_it_was_cut(
        town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit consumer logged and committed every record of the topic, which was then cut
    (or deleted and made again) shorter: `renkei audit replay` found the store identical where
    both have entries, the live store ahead, and exited 0: it says the topic ends before the
    commit, the store holding events past its end, and exits 1."""
    now, live, end = datetime.now(UTC), tmp_path / "live.db", CUT // 2
    events = [synthetic(n, "cut", now + timedelta(milliseconds=n)) for n in range(CUT)]
    with AuditStore(live, Signer.generate()) as store:
        store.append_many(item(event) for event in events)
    async with topic_of_its_own(events[:end], 0, CUT) as own:
        found = await said(tmp_path / "fresh.db", live, own, monkeypatch)
    assert found.exit_code == 1 and not isinstance(found.exception, Exception), found.output
    assert "(identical)" in found.output, found.output
    assert f"CUT: the topic ends at offset {end}, before offset {CUT} the audit consumer " \
        f"committed: the live store holds the events of {CUT - end} offsets past the topic's " \
        "end" in found.output, found.output


async def test_replay_starts_after_an_event_logged_again_that_the_topics_retention_left_first(
        town: Town, tmp_path: Path) -> None:
    """The broker deleted an event's record but kept the one that logged it again (other
    bytes), which the consumer left out: the replay leaves it out too, and counts the live
    store's entries up to the topic's first new event as beyond, not those up to the event's
    first time; a rewritten entry after them still differs."""
    now, live, tampered = datetime.now(UTC), tmp_path / "live.db", tmp_path / "tampered.db"
    events = [synthetic(n, "again", now + timedelta(milliseconds=n)) for n in range(CUT)]
    again = replace(events[2], occurred_at=events[2].occurred_at + timedelta(seconds=1))
    logged = [*events[:CUT // 2], again, *events[CUT // 2:]]
    with AuditStore(live, Signer.generate()) as store:
        assert store.append_many(item(event) for event in logged).count(None) == 1
    copied(live, tampered)
    with closing(sqlite3.connect(tampered)) as db, db:
        db.execute("UPDATE nodes SET hash = ? WHERE id = ?", (bytes(32), CUT // 2))
    async with topic_of_its_own(logged, CUT // 2, len(logged)) as own:
        kept, rewritten = [await rebuilt(tmp_path / f"{name}.db", stored, own)
                           for name, stored in [("kept", live), ("rewritten", tampered)]]
    for report in (kept, rewritten):
        assert (report.start, report.beyond, report.compared_at) == (CUT // 2, CUT // 2,
                                                                     CUT // 2), report
    assert kept.identical and kept.differing == 0, kept
    assert not rewritten.identical and rewritten.differing == 1, rewritten


async def test_replay_of_a_topic_whose_events_the_store_purged_all_aligns_on_their_leaves(
        town: Town, tmp_path: Path) -> None:
    """The store's retention purged every event the topic still has (no event id to find them
    by): the replay finds the first one's serial by its leaf hash, kept by the purge, and the
    store is identical, not DIFFERENT; a store that never had an event of them still differs."""
    now, first = datetime.now(UTC), CUT // 2
    events = [synthetic(n, "purged", now + timedelta(milliseconds=n)) for n in range(CUT)]
    whole, gap = tmp_path / "whole.db", tmp_path / "gap.db"
    for db, logged in [(whole, events), (gap, events[:first + 3] + events[first + 4:])]:
        with AuditStore(db, Signer.generate()) as store:
            store.append_many(item(event) for event in logged)
            store.purge(now.replace(year=now.year + 8))
            assert store.serials([e.event_id for e in events]) == {}, "all purged"
    async with topic_of_its_own(events, first, CUT) as own:
        kept, lacking = [await rebuilt(tmp_path / f"{db.stem}-replay.db", db, own)
                         for db in (whole, gap)]
    assert (kept.start, kept.beyond, kept.compared_at) == (first, first, CUT - first), kept
    assert kept.identical and kept.differing == 0, kept
    assert not lacking.identical and lacking.differing > 0, lacking


async def test_replay_leaves_out_an_event_older_than_the_cutoff_of_a_purge_before_it(
        town: Town, tmp_path: Path) -> None:
    """An event older than the last purge's cutoff, read after the purge, the live store did not
    log: the replay left it in, and said the store DIFFERENT (its entries after it one serial
    off), on a topic whole or one whose start the broker deleted. One as old logged before the
    purge, which purged it, is in both."""
    now, live = datetime.now(UTC), tmp_path / "live.db"
    old = [synthetic(n, "too-old", now - timedelta(days=9 * 366)) for n in range(2)]
    events = [synthetic(n, "cutoff", now + timedelta(milliseconds=n)) for n in range(CUT // 4)]
    first, after = [events[0], old[0], *events[1:CUT // 8]], events[CUT // 8:]
    with AuditStore(live, Signer.generate()) as store:
        store.append_many(item(event) for event in first)
        assert store.purge(now)[-1].ranges == ((1, 2),), "the old one logged before the purge"
        assert store.append_many([item(old[1])]) == [None], "older than its cutoff, after it"
        assert store.purge(now)[-1].ranges == (), "one that purged none holds from where it is"
        store.append_many(item(event) for event in after)
    on_topic = [*first, old[1], *after]
    for start in (0, 1):
        async with topic_of_its_own(on_topic, start, len(on_topic)) as own:
            report = await rebuilt(tmp_path / f"replay-{start}.db", live, own)
        assert (report.start, report.beyond, report.unlogged) == (start, start, 1), report
        assert report.logged == report.live_size == CUT // 4 + 1, report
        assert report.identical and not report.differing, report


@pytest.mark.parametrize("altered", ["leaf = leaf || x'00'",
                                     f"occurred_at = occurred_at + {10 * 366 * 86_400_000}"],
                         ids=["its-bytes", "its-time-column-later"])
@pytest.mark.parametrize("olds, purged", [(2, ((1, 2),)), (3, ((1, 2), (3, 4)))],
                         ids=["after-the-purged", "among-the-purged"])
async def test_replay_takes_an_old_event_whose_entry_a_purge_left_and_says_so(
        town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, altered: str, olds: int,
        purged: tuple[tuple[int, int], ...]) -> None:
    """A purge leaves an entry whose bytes are not its leaf's, or whose time column is later
    than its event's: the replay took its event, older than the cutoff and read past the last
    serial the purge removed, for one the live store did not log and dropped it (the entries
    after it one serial off, DIFFERENT), and replayed it unseen, as one logged before the
    purge, if the purge removed a serial after it too; it replays it, the store identical, and
    counts it as left, on a topic whole or one whose start the broker deleted. `renkei audit
    replay` says LEFT and exits 1, as `renkei audit verify` does on it."""
    now, live = datetime.now(UTC), tmp_path / "live.db"
    old = [synthetic(n, "left-old", now - timedelta(days=9 * 366)) for n in range(olds)]
    events = [synthetic(n, "left", now + timedelta(milliseconds=n)) for n in range(4)]
    logged = [events[0], *old, *events[1:]]
    with AuditStore(live, Signer.generate()) as store:
        store.append_many(item(event) for event in logged[:1 + olds])
        with closing(sqlite3.connect(live)) as db, db:
            db.execute(f"UPDATE entries SET {altered} WHERE serial = 2")
        assert store.purge(now)[-1].ranges == purged, "serial 2 left"
        store.append_many(item(event) for event in logged[1 + olds:])
    for found in await _replayed_from_each_start(tmp_path, live, logged, monkeypatch, left=1):
        assert found.exit_code == 1 and not isinstance(found.exception, Exception), found.output
        assert "LEFT: 1 events older than the cutoff of a purge the live store made before " \
            "they came or after are in it all the same" in found.output
        assert "`renkei audit verify` says which): replayed" in found.output
        assert "(identical)" in found.output and "which it did not log" not in found.output


async def test_replay_takes_an_entry_a_purge_left_and_a_later_one_removed_for_no_left_one(
        town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A purge left an old event's entry (its bytes not its leaf's); its bytes put back, a later
    purge removed it, and `renkei audit verify` finds nothing: the replay counted it LEFT all
    the same (its leaf at the serial it takes) and exited 1; it replays it as a purged one, the
    store identical, on a topic whole or one whose start the broker deleted, and exits 0."""
    now, live = datetime.now(UTC), tmp_path / "live.db"
    old = [synthetic(n, "left-then-purged", now - timedelta(days=9 * 366)) for n in range(2)]
    events = [synthetic(n, "left-then-purged-new", now + timedelta(milliseconds=n))
              for n in range(4)]
    logged = [events[0], *old, *events[1:]]
    with AuditStore(live, Signer.generate()) as store:
        store.append_many(item(event) for event in logged[:3])
        with closing(sqlite3.connect(live)) as db, db:
            db.execute("UPDATE entries SET leaf = leaf || x'00' WHERE serial = 2")
        assert store.purge(now)[-1].ranges == ((1, 2),), "serial 2 left"
        with closing(sqlite3.connect(live)) as db, db:
            db.execute("UPDATE entries SET leaf = ? WHERE serial = 2", (item(old[1])[1],))
        assert store.purge(now)[-1].ranges == ((2, 3),), "serial 2 purged at last"
        store.append_many(item(event) for event in logged[3:])
        assert store.verify(decode_event).ok
    for found in await _replayed_from_each_start(tmp_path, live, logged, monkeypatch, left=0):
        assert found.exit_code == 0, found.output
        assert "LEFT" not in found.output and "(identical)" in found.output


async def _replayed_from_each_start(tmp_path: Path, live: Path, logged: list[AccessLogEvent],
                                    monkeypatch: pytest.MonkeyPatch, left: int) -> list[Result]:
    """`logged` replayed against the live store at `live` (rebuilt, and by `renkei audit
    replay`), on a topic whole and one whose start the broker deleted: each time every event
    logged, the store identical, `left` counted LEFT; what the command said, each time."""
    results = []
    for start in (0, 1):
        async with topic_of_its_own(logged, start, len(logged)) as own:
            report = await rebuilt(tmp_path / f"replay-{start}.db", live, own)
            found = await said(tmp_path / f"cli-{start}.db", live, own, monkeypatch)
        assert (report.start, report.beyond, report.unlogged, report.left) == (
            start, start, 0, left), report
        assert report.logged == report.live_size == len(logged), report
        assert report.identical and not report.differing, report
        results.append(found)
    return results


async def test_recommit_on_a_topic_its_retention_emptied_accounts_for_its_end(
        town: Town, tmp_path: Path) -> None:
    """Every record of the topic deleted (its retention), the store lacks none: the offset
    accounted for is the topic's end, where the consumer goes on, not 0, before its start."""
    events = [synthetic(n, "emptied", datetime.now(UTC)) for n in range(3)]
    with AuditStore(tmp_path / "store.db", Signer.generate()) as store:
        async with topic_of_its_own(events, len(events)) as own:
            offset = await accounted_offset(KafkaAccess.of(config.ADMIN), store, own)
    assert offset == len(events)


async def test_recommit_accounts_for_no_event_older_than_the_stores_last_cutoff(
        town: Town, tmp_path: Path) -> None:
    """An event on the topic older than the last purge's cutoff, which the store would not log,
    is not lacking; the first newer one the store does not hold is."""
    now = datetime.now(UTC)
    old, new = (synthetic(0, "cutoff", now - timedelta(days=9 * 366)),
                synthetic(1, "cutoff", now))
    with AuditStore(tmp_path / "store.db", Signer.generate()) as store:
        store.purge(now)
        async with topic_of_its_own([old, new], 0) as own:
            assert await accounted_offset(KafkaAccess.of(config.ADMIN), store, own) == 1


async def test_recommit_accounts_for_an_operator_action_the_store_lacks(
        town: Town, tmp_path: Path) -> None:
    """A record holding only an operator action the store lacks was not lacking (recommit
    counted access-log events alone): committed past, the action was lost. It is the first
    record lacking until the store holds the action."""
    now = datetime.now(UTC).replace(microsecond=0)
    events = [synthetic(n, "action", now) for n in range(2)]
    action = OperatorAction(f"REKEY@{topics.DIRECTORY}:0:{uuid.uuid4().int % 10**9}", now,
                            "operator-a", "REKEY", "medical", None)
    with AuditStore(tmp_path / "store.db", Signer.generate()) as store:
        store.append_many(item(event) for event in events)
        async with topic_of_its_own([events[0], action, events[1]], 0) as own:
            assert await accounted_offset(KafkaAccess.of(config.ADMIN), store, own) == 1
            store.append_many([item(action)])
            assert await accounted_offset(KafkaAccess.of(config.ADMIN), store, own) == 3


async def test_an_operator_action_past_the_retention_is_purged_and_not_lacking(
        town: Town, tmp_path: Path) -> None:
    """The audit store's purge left operator actions past the retention, and one that came
    older than the last purge's cutoff was stored: each such one is gone and stays so, and
    neither recommit nor the replay takes it as one the store lacks."""
    now, live = datetime.now(UTC).replace(microsecond=0), tmp_path / "live.db"
    old, new, late = (OperatorAction(f"SUSPEND@{topics.DIRECTORY}:0:{n}", at, "operator-a",
                                     "SUSPEND", "sakura-town", None)
                      for n, at in enumerate((now - timedelta(days=9 * 366), now,
                                              now - timedelta(days=8 * 366))))
    with AuditStore(live, Signer.generate()) as store:
        store.append_many([item(old), item(new)])
        store.purge(now)
        store.append_many([item(late)])
        assert store.operator_actions() == [new]
        assert store.verify().ok and store.size() == 2
        async with topic_of_its_own([old, new, late], 0) as own:
            assert await accounted_offset(KafkaAccess.of(config.ADMIN), store, own) == 3
            report = await rebuilt(tmp_path / "replay.db", live, own)
    assert (report.actions, report.unkept, report.unlogged) == ([old, new], [], 1)
    assert report.identical


async def test_replay_keeps_beside_the_tree_the_actions_the_store_kept_so(
        town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store made before operator actions were leaves keeps those it stored then beside the
    tree, without a serial, and the audit consumer makes leaves of the later ones alone: the
    replay made leaves of them all, and compared DIFFERENT with the live store from the first
    on; it keeps those the live store keeps beside the tree so too, and compares identical."""
    now, live = datetime.now(UTC).replace(microsecond=0), tmp_path / "live.db"
    events = [synthetic(n, "beside", now + timedelta(seconds=n)) for n in range(3)]
    before, after = (OperatorAction(f"SUSPEND@{topics.DIRECTORY}:0:{uuid.uuid4().int % 10**9}",
                                    now + timedelta(seconds=n, milliseconds=500), "operator-a",
                                    "SUSPEND", "sakura-town", None) for n in (0, 1))
    with AuditStore(live, Signer.generate()) as store:
        store.append_many([item(events[0]), item(before), item(events[1])])
    with closing(sqlite3.connect(live)) as db, db:  # as the consumer had stored them then
        db.execute("DELETE FROM nodes")
        db.execute("DELETE FROM entries")
        db.execute("DROP INDEX operator_actions_serial")
        db.execute("ALTER TABLE operator_actions DROP COLUMN serial")
    with AuditStore(live, Signer.generate()) as store:
        store.append_many([item(events[0]), item(events[1])])
        assert store.append_many([item(before), item(after), item(events[2])]) == [None, 2, 3]
        assert store.verify().unproved == 1
    async with topic_of_its_own([events[0], before, events[1], after, events[2]], 0) as own:
        report = await rebuilt(tmp_path / "replay.db", live, own)
        found = await said(tmp_path / "said.db", live, own, monkeypatch)
    assert report.identical and (report.size, report.compared_at) == (4, 4), report
    assert (report.actions, report.unkept, report.beside) == ([before, after], [], 1), report
    assert found.exit_code == 0, found.output
    assert "replayed 5 events and operator actions (0 of them an id again)" in found.output
    assert ("1 operator actions the live store keeps beside the tree, stored before actions "
            "were leaves: kept so, not provable") in found.output
    with AuditStore(tmp_path / "replay.db", Signer.generate()) as replayed:
        assert replayed.operator_actions() == [before, after]
        assert replayed.verify().unproved == 1


async def test_replay_leaves_out_each_copy_of_an_event_older_than_the_cutoff_read_again(
        town: Town, tmp_path: Path) -> None:
    """An event older than the last purge's cutoff came twice after the purge, one record after
    the other (its producer sending it again): the live store logged neither copy; the replay
    left out the first alone, appended the second, and said the store DIFFERENT."""
    now, live = datetime.now(UTC), tmp_path / "live.db"
    old = synthetic(0, "too-old-twice", now - timedelta(days=9 * 366))
    events = [synthetic(n, "cutoff-twice", now + timedelta(milliseconds=n)) for n in range(4)]
    with AuditStore(live, Signer.generate()) as store:
        store.purge(now)
        assert store.append_many([item(events[0]), item(old), item(old), item(events[1])]) \
            == [0, None, None, 1]
        store.append_many(item(event) for event in events[2:])
    async with topic_of_its_own([events[0], old, old, *events[1:]], 0, 6) as own:
        report = await rebuilt(tmp_path / "replay.db", live, own)
    assert report.unlogged == 1 and report.logged == report.live_size == 4, report
    assert report.identical, report


async def test_a_postgresql_store_replayed_from_the_topic_is_consumed_across_a_restart_and_verified(
        platform: Processes, live: AuditStore, postgres: str) -> None:
    """An operator's PostgreSQL store, rebuilt from the topic by `audit replay --db` (the live
    store's root), consumed in place of the live one: four queries about a person, a restart
    (its detector re-reads them from PostgreSQL), a fifth alerted as repeated; `audit verify`
    finds it whole against the anchored heads and the consumer's commit, an empty schema
    truncated. The stores' URLs have a password: no command says it."""
    requester, person, now = f"pg-{uuid.uuid4().hex[:8]}", "POSTGRES001", datetime.now(UTC)
    five = [linkage_of(f"{requester}-{m}", requester, person, now - timedelta(minutes=m))
            for m in (40, 30, 20, 10, 0)]
    url, empty = (fresh_schema(postgres, f"t{uuid.uuid4().hex}").replace(
        f"{SUPERUSER}@", f"{SUPERUSER}:{PASSWORD}@") for _ in range(2))
    await appended(live, 3)  # a live store to compare with, run alone too
    platform.stop("audit")
    offset, note = await consumer_commit(KafkaAccess.of(acls.AUDIT))
    try:
        replayed = await asyncio.to_thread(renkei, "audit", "replay", "--db", url, check=False)
        with AuditStore(url, Signer.load_or_create()) as store:
            for events in (five[:4], five[4:]):  # a restart between
                stop = asyncio.Event()
                consumer = asyncio.create_task(
                    audit_run(store, KafkaAccess.of(acls.AUDIT), stop, HEAD_SECONDS))
                try:
                    await logged(store, events)
                finally:
                    stop.set()
                    await consumer
        checked, gone = await verify(url), await verify(empty)
    finally:  # the live store's commit back: its consumer appends what this one did
        await noting(offset, note)
        platform.start("audit", "audit", "run")
    for said in (replayed, checked, gone):
        assert PASSWORD not in said.stdout + said.stderr, said.stdout + said.stderr
    # its exit code is the re-check's too, of approvals other tests forged on the topic
    assert "(identical)" in replayed.stdout, replayed.stdout
    assert "psycopg" not in replayed.stderr, replayed.stderr  # an id clash's redo: no noise
    assert checked.returncode == 0 and "ok: every entry" in checked.stdout, checked.stdout
    assert "checked against the audit consumer's last commit" in checked.stdout
    assert await alerted(requester, REPEATED_PERSON) == [five[4].event_id]
    assert gone.returncode == 1 and gone.stderr.startswith("TRUNCATED: the audit store at "), \
        gone.stderr


async def test_a_restarted_audit_consumer_appends_while_its_detector_rereads(
        platform: Processes, live: AuditStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-read of the last horizon (millions of events in a busy log: minutes) holds neither
    the store's appends nor the alerts' exactness: with REREAD_HISTORY events in the horizon,
    the re-read held besides until then (at most RESTART_HELD), an event sent at the restart is
    appended within APPENDED_WITHIN, unjudged, and alerted once the detector has re-read as the
    consumer that never stopped alerts it: once. Last in this file: its history would make each
    replay after it read it."""
    requester, person = f"reread-{uuid.uuid4().hex[:8]}", "REREAD00001"
    now = datetime.now(UTC)
    four = [linkage_of(f"{requester}-{m}", requester, person, now - timedelta(minutes=m))
            for m in (40, 30, 20, 10)]
    busy = uuid.uuid4().hex[:8]
    history = [synthetic(n, busy, now - timedelta(minutes=100 - 55 * n / REREAD_HISTORY))
               for n in range(REREAD_HISTORY)]  # before the four, in the horizon
    await logged(live, history + four, packed=True)
    await unbound_alerted(requester, four[-1].event_id)  # the four's decisions taken
    fifth = linkage_of(f"{requester}-0", requester, person, now)
    never_stopped = Detector()
    expected = rules_and_ids(never_stopped.observe(four) + never_stopped.caught_up(now)
                             + never_stopped.observe([fifth]))
    appended, released, rereading = threading.Event(), list[bool](), Detector.resume

    def held(detector: Detector, *args: Any) -> None:
        released.append(appended.wait(timeout=RESTART_HELD))
        rereading(detector, *args)

    monkeypatch.setattr(Detector, "resume", held)
    platform.stop("audit")
    stop, started = asyncio.Event(), time.monotonic()
    consumer = asyncio.create_task(audit_run(live, KafkaAccess.of(acls.AUDIT), stop, HEAD_SECONDS))
    try:
        async with producer(KafkaAccess.of(config.ADMIN)) as prod:
            await prod.send(topics.AUDIT, CODEC.encode(fifth), key=fifth.request_id.encode())
        await caught_up(live, {fifth.event_id}, within=2 * RESTART_HELD, every=0.01)
        took, unjudged = time.monotonic() - started, live.unjudged_since()
        appended.set()
        repeated = await alerted(requester, REPEATED_PERSON)
        await logged(live, [], within=30)  # every entry judged
    finally:
        appended.set()
        stop.set()
        await consumer
        platform.start("audit", "audit", "run")
    assert released == [True], "the event sent at the restart waited for the re-read"
    assert took < APPENDED_WITHIN, f"appended {took:.2f} s after the restart"
    assert unjudged is not None and unjudged <= live.serials([fifth.event_id])[fifth.event_id]
    assert repeated == [fifth.event_id]
    assert rules_and_ids(a for a in await alerts() if a.requester == requester) == expected
    assert rules_and_ids(a for a in live.raised_since(now - timedelta(hours=1))
                         if a.requester == requester) == expected
