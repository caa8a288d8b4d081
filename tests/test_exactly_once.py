"""Nothing lost, nothing doubled: processes killed mid-flight, every request answered once."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from holders.client import HolderClient
from holders.store import HolderStore, default_path
from renkei.scenario import staff as staff_of
from renkei.state import private_dir
from renkei.town import Processes
from tests.conftest import ANSWER_TIMEOUT
from tests.kafka_helpers import audit_events
from tests.test_linkage import bound

pytestmark = pytest.mark.asyncio(loop_scope="session")
REQUESTER, PROVIDER = "sakura-kodomo", "sakura-town"
RATE, SECONDS = 40, 15


def _server_url(holder: str) -> str | None:
    path = private_dir("holders", holder) / "server.json"
    return json.loads(path.read_text())["url"] if path.exists() else None


async def _start_server(procs: Processes, holder: str) -> str:
    path = private_dir("holders", holder) / "server.json"
    path.unlink(missing_ok=True)
    procs.start(f"holder-{holder}", "holder", "run", holder)
    for _ in range(600):
        url = _server_url(holder)
        if url is not None:
            return url
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{holder}'s communication server did not start")


async def _swap_out(clients: dict[str, HolderClient], holder: str) -> None:
    client = clients.pop(holder)
    await client.stop()
    client.store.close()


async def _swap_in(clients: dict[str, HolderClient], holder: str) -> None:
    client = HolderClient(holder, HolderStore(default_path(holder)))
    await client.start()
    clients[holder] = client


async def test_kills_of_platform_requester_and_provider_lose_and_double_nothing(
        clients: dict[str, HolderClient], platform: Processes) -> None:
    own_numbers = bound(clients[REQUESTER])
    await _swap_out(clients, REQUESTER)
    await _swap_out(clients, PROVIDER)
    try:
        await _under_fire(platform, own_numbers)
    finally:
        for name in ("platform-2", f"holder-{REQUESTER}", f"holder-{PROVIDER}"):
            if name in platform.running:
                platform.stop(name)
        await _swap_in(clients, REQUESTER)
        await _swap_in(clients, PROVIDER)


async def _under_fire(procs: Processes, own_numbers: list[str]) -> None:
    """Requests at a steady rate while the platform, provider and requester are killed."""
    procs.start("platform-2", "platform", "run", "--instance", "2",
                "--answer-timeout", str(ANSWER_TIMEOUT), "--loglevel", "info")
    urls = {h: await _start_server(procs, h) for h in (REQUESTER, PROVIDER)}
    staff, terminal = staff_of(REQUESTER)
    sent: list[str] = []
    kills = {3.0: ("platform-1", ("platform", "run", "--instance", "1", "--answer-timeout",
                                  str(ANSWER_TIMEOUT), "--loglevel", "info")),
             6.0: (f"holder-{PROVIDER}", None), 9.0: (f"holder-{REQUESTER}", None)}
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - started) < SECONDS or kills:
            for at in [t for t in kills if t <= elapsed][:1]:
                name, args = kills.pop(at)
                procs.kill(name)
                await asyncio.sleep(0.5)
                if args is None:
                    holder = name.removeprefix("holder-")
                    urls[holder] = await _start_server(procs, holder)
                else:
                    procs.start(name, *args)
            body = {"own_number": own_numbers[n % len(own_numbers)], "pattern_id": "P-074",
                    "provider": PROVIDER, "data_type": "local_tax", "purpose": "児童手当の認定",
                    "operator": staff, "terminal": terminal}
            try:
                async with http.post(f"{urls[REQUESTER]}/requests", json=body) as response:
                    if response.status == 202:
                        sent.append((await response.json())["request_id"])
                        n += 1
            except aiohttp.ClientError:
                pass  # the requester's server is down: its system tries again
            await asyncio.sleep(1 / RATE)
        outcomes = await _outcomes(http, urls[REQUESTER], sent)
    assert len(sent) >= 50, "too few requests to prove anything"
    statuses = Counter(o["status"] for o in outcomes.values())
    missing = set(sent) - set(outcomes)
    assert not missing, (statuses, sorted((e.request_id, e.event_id, e.outcome) for e in
                                          await audit_events(missing)))
    assert statuses["FOUND"] >= 0.5 * len(sent), statuses
    store = HolderStore(default_path(REQUESTER))
    log = Counter(e.request_id for e in store.access_log() if e.request_id in set(sent))
    assert set(log.values()) == {1}, "the requester logged each request exactly once"
    events = await audit_events(set(sent))
    steps = Counter(e.request_id for e in {e.event_id: e for e in events}.values())
    assert set(steps.values()) == {2}, "approved + answered, once each, for every request"
    print(f"\n{len(sent)} requests, outcomes {dict(statuses)}, duplicates dropped by the "
          f"requester: {store.counts()['duplicates dropped']}, audit events on the topic "
          f"{len(events)} for {len(steps) * 2} distinct")
    store.close()


async def _outcomes(http: aiohttp.ClientSession, url: str,
                    request_ids: list[str]) -> dict[str, Any]:
    """Each request's outcome, polling for up to a minute; unanswered ones are left out."""
    found: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while len(found) < len(request_ids) and time.monotonic() < deadline:
        for request_id in [r for r in request_ids if r not in found]:
            async with http.get(f"{url}/requests/{request_id}") as response:
                outcome = await response.json()
            if outcome.get("status") != "SENT":
                found[request_id] = outcome
        await asyncio.sleep(0.5)
    return found

