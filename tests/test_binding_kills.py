"""Bindings through a crash of the registry or of the numbering authority: SIGKILLed while the
look-ups flow, each started again, and every binding answered once to its holder, audited once,
and each look-up by personal number logged once in the authority's log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from holders.client import BINDING, BOUND, INVESTIGATING, HolderClient
from holders.samples import SAMPLES
from holders.store import SENT
from renkei import exchanges, town
from renkei.chaos_check import audit_steps, lookups_logged
from renkei.crash_chaos import schedule

pytestmark = pytest.mark.timeout(180)
BINDINGS = 60  # per kill


def test_chaos_crash_kills_the_registry_and_the_authority_before_the_broker() -> None:
    """One process of every kind first, the broker (slowest back: the killer waits for it)
    last of them, so that a short run kills the registry and the authority too."""
    order = schedule(2, ["nenkin", "sakura-town", "acme-kenpo"], 2026)
    first = order[:order.index("broker")]
    assert sorted(v.split("-", 1)[0] for v in first) == [
        "audit", "authority", "holder", "platform", "registry"]


def answered(client: HolderClient, request_ids: list[str]) -> int:
    return sum(1 for r in request_ids if (q := client.store.request(r)) and q.status != SENT)


async def until(done: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, f"not within {within} s"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("victim", "holder"), [("authority", "sakura-town"),
                                                ("registry", "sakura-hospital")])
async def test_a_binding_survives_a_kill_of_the_process_looking_it_up(
        platform: town.Processes, clients: dict[str, HolderClient], victim: str,
        holder: str) -> None:
    """Killed once the first look-ups are handled (the authority's logged, or the registry's
    answered), the rest still to come: handled again from the last commit, none lost."""
    client, since = clients[holder], datetime.now(UTC)
    by_number = next(s for s in SAMPLES if s.holder_id == holder).knows_numbers
    owns = list(client.store.own_numbers())[:BINDINGS]
    ids = [await client.bind(own, *exchanges.staff(holder), by_number=by_number) for own in owns]
    if victim == "authority":
        await until(lambda: sum(lookups_logged(set(ids)).values()) > 0)
    else:
        await until(lambda: answered(client, ids) > 0)
    before = answered(client, ids)
    platform.kill(victim)
    platform.start_service(victim)
    outcomes = await asyncio.gather(*(client.outcome(r, 60) for r in ids))
    assert before < len(ids), "killed while look-ups were still to come"
    assert {o.kind for o in outcomes} == {BINDING}
    assert {o.status for o in outcomes} <= {BOUND, INVESTIGATING}, "answered, none refused"
    await until(lambda: set(ids) <= set(audit_steps(set(ids), since)))
    steps = audit_steps(set(ids), since)
    bound = [o.request_id for o in outcomes if o.status == BOUND]
    assert all(len(steps[r]) == 1 and steps[r][0][0].startswith("binding:") for r in bound)
    if by_number:
        assert set(lookups_logged(set(ids)).values()) == {1}
    again = client.store.db.execute(
        f"SELECT coalesce(sum(duplicates), 0) FROM requests WHERE request_id IN "
        f"({', '.join('?' * len(ids))})", ids).fetchone()[0]
    print(f"\n{victim} killed with {before} of {len(ids)} answered: all answered once, "
          f"{again} answers given again dropped, {sum(map(len, steps.values()))} audited")
