"""`renkei bench audit`: append rate, query and proof times of the audit store as it grows."""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import click

from audit.events import AccessLogEvent, decode_event, event_id
from audit.heads import Signer, consistent, includes
from audit.merkle import verify_inclusion
from audit.store import AuditStore, Query
from renkei import sqlite
from renkei.options import SaidDefault
from renkei.state import private_dir
from schemas.codec import CODEC

START = datetime(2020, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=8 * 365)
KINDS = ("BINDING", "LINKAGE", "ANSWER", "TIMEOUT")
OUTCOMES = ("APPROVED", "APPROVED", "DELIVERED", "DELIVERED", "REJECTED", "TIMED_OUT")
ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESULTS = Path("results") / "bench-audit.json"
SEED = 20111214


class Population:
    """Who the synthetic events are about: persons, holders and legal patterns."""

    def __init__(self, entries: int) -> None:
        rng = random.Random(SEED)
        self.persons = ["".join(rng.choices(ID_ALPHABET, k=11))
                        for _ in range(max(1000, entries // 10))]
        self.holders = [f"holder-{n:04d}" for n in range(1000)]
        self.patterns = [f"P{n:03d}" for n in range(200)]


@cache
def population(entries: int) -> Population:
    """Made once per run: every batch draws from the same people (about ten entries each)."""
    return Population(entries)


def synthetic(first: int, count: int, total: int) -> list[tuple[AccessLogEvent, bytes]]:
    """Events `first`..`first+count-1` of `total`, spread over eight years, a little out of order.

    Request ids are random, as holders choose them; leaves are real canonical bytes (the Avro
    codec), as the consumer receives them.
    """
    people, rng, step = population(total), random.Random(SEED + first), SPAN / total
    batch = []
    for n in range(first, first + count):
        request = f"req-{rng.getrandbits(40):010x}-{n}"
        kind = KINDS[n % len(KINDS)]
        event = AccessLogEvent(
            event_id=event_id(request, kind), request_id=request,
            occurred_at=START + step * n + timedelta(milliseconds=rng.randrange(-500, 500)),
            kind=kind, outcome=rng.choice(OUTCOMES), reason=None,
            pattern_id=rng.choice(people.patterns), legal_basis="番号法 別表第二",
            requester=rng.choice(people.holders), provider=rng.choice(people.holders),
            data_type="income", person=rng.choice(people.persons))
        batch.append((event, CODEC.encode(event)))
    return batch


def _batches(entries: int, batch: int) -> Iterator[list[tuple[AccessLogEvent, bytes]]]:
    for first in range(0, entries, batch):
        yield synthetic(first, min(batch, entries - first), entries)


def _timed(action: Callable[[], object], samples: int) -> dict[str, float]:
    """Median and 95th percentile wall time of `action`, in milliseconds."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[int(len(times) * 0.95) - 1 if samples > 1 else 0], 3)}


def _measure(store: AuditStore, entries: int, rng: random.Random,
             samples: int) -> dict[str, Any]:
    """Query and proof times against the store as it is (`entries` of them at the end)."""
    size, head, people = store.size(), store.head(), population(entries)
    covered = SPAN * (size / entries)  # the time the events so far span
    pick: Callable[[Sequence[str]], str] = rng.choice

    def proved(where: Callable[[], Query]) -> Callable[[], None]:
        """A page of what `where` asks for, proved as `audit query` proves every page (the
        store's head signs them all), its proofs checked."""
        def page() -> None:
            found = store.query(where(), prove=True)
            signed = found.head
            _check(signed is not None and all(
                e.proof is not None and includes(signed.head, e.serial, e.leaf, e.proof)
                for e in found.entries), "an inclusion proof failed")
        return page

    def inclusion() -> None:
        serial = rng.randrange(size)
        leaf = store.node_hashes([(0, serial)])[0]
        proof = store.inclusion_proof(serial, size)
        _check(verify_inclusion(leaf, serial, size, proof, head.head.root),
               "an inclusion proof failed")

    def consistency() -> None:
        older = rng.choice(store.heads()[:-1] or [head]).head
        _check(consistent(older, head.head, store.consistency_proof(older.size, size)),
               "a consistency proof failed")

    def window(holder: str | None = None) -> Query:
        since = START + covered * rng.random()
        return Query(holder=holder, since=since, until=since + timedelta(days=30))

    return {
        "size": size,
        "sign_head": _timed(store.sign_head, 20),
        "person_page_with_proofs": _timed(
            proved(lambda: Query(person=pick(people.persons))), samples),
        "holder_page": _timed(proved(lambda: Query(holder=pick(people.holders))), samples),
        "pattern_page": _timed(proved(lambda: Query(pattern=pick(people.patterns))), samples),
        "outcome_page": _timed(proved(lambda: Query(outcome=pick(OUTCOMES))), samples),
        "time_range_page": _timed(proved(window), samples),
        "holder_in_time_range_page": _timed(
            proved(lambda: window(pick(people.holders))), samples),
        "inclusion_proof": _timed(inclusion, samples),
        "consistency_proof": _timed(consistency, samples),
    }


def _check(condition: bool, failure: str) -> None:
    if not condition:
        raise RuntimeError(failure)


def _checkpoints(entries: int) -> list[int]:
    """Sizes to measure at: each power of ten from 10^6 below `entries`, and `entries`."""
    sizes = {entries}
    size = 1_000_000
    while size < entries:
        sizes.add(size)
        size *= 10
    return sorted(sizes)


def _files(db: Path) -> Iterator[Path]:
    for suffix in ("", "-wal", "-shm"):
        yield db.with_name(db.name + suffix)


def run(entries: int, db: Path, batch: int = 10_000, samples: int = 200,
        verify: bool = True, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Fill a fresh store with `entries` synthetic events and measure it at each checkpoint."""
    sqlite.removed(db)
    rng = random.Random(SEED)
    checkpoints = _checkpoints(entries)
    results: dict[str, Any] = {
        "entries": entries, "batch": batch, "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version, "checkpoints": []}
    done = leg_start = 0
    appending = leg_appending = 0.0
    with AuditStore(db, Signer.generate(), head_every=100_000) as store:
        for items in _batches(entries, batch):
            started = time.perf_counter()
            store.append_many(items)
            took = time.perf_counter() - started
            appending, leg_appending = appending + took, leg_appending + took
            done += len(items)
            if done // 1_000_000 > (done - len(items)) // 1_000_000:
                say(f"  {done:,} appended ({(done - leg_start) / leg_appending:,.0f}/s)")
            if done < checkpoints[0]:
                continue
            checkpoints.pop(0)
            measured = _measure(store, entries, rng, samples)
            measured["appends_per_second_since_last"] = round((done - leg_start) / leg_appending)
            measured["db_bytes"] = sum(p.stat().st_size for p in _files(db) if p.exists())
            results["checkpoints"].append(measured)
            say(f"at {done:,}: person page {measured['person_page_with_proofs']['median_ms']} ms,"
                f" inclusion proof {measured['inclusion_proof']['median_ms']} ms, consistency "
                f"proof {measured['consistency_proof']['median_ms']} ms")
            leg_start, leg_appending = done, 0.0
        results["appends_per_second"] = round(entries / appending)
        if verify:
            started = time.perf_counter()
            report = store.verify(decode_event)
            took = time.perf_counter() - started
            results["verify"] = {"seconds": round(took, 1), "ok": report.ok,
                                 "entries_per_second": round(report.entries / took)}
    return results


@click.command("audit", short_help="Audit store: appends/s, query and proof times.")
@click.option("--entries", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="entries appended to the store measured")
@click.option("--batch", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="events per append transaction (the consumer's batch)")
@click.option("--samples", type=click.IntRange(min=1), default=200, show_default=True,
              help="timed queries and proofs per measurement")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="also time a full `audit verify` at the end")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              cls=SaidDefault, show_default="the state folder's bench/audit.db",
              help="scratch store")
@click.option("--keep", is_flag=True, help="keep the scratch store afterwards")
def audit_bench(entries: int, batch: int, samples: int, verify: bool, db: Path | None,
                keep: bool) -> None:
    """Audit store: appends/s (batched) and query, inclusion and consistency proof times."""
    db = db or private_dir("bench") / "audit.db"
    try:
        results = run(entries, db, batch, samples, verify, click.echo)
    finally:
        if not keep:
            sqlite.removed(db)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    click.echo(f"{results['appends_per_second']:,} appends/s; results in {RESULTS}")
