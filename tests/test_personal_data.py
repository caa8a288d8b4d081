"""The platform holds no personal data: canaries planted in holders' data and in the registry
are found where they belong (the holders' own stores) and nowhere on the platform's side."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from audit import oversight
from broker import topics
from holders.client import HolderClient
from portal.kafka import Platform as KafkaSide
from registry import store as registry_store
from renkei.state import state_dir
from renkei.town import Town
from tests.store_helpers import containing
from tests.test_linkage import ask
from tests.test_oversight import BASIS

pytestmark = pytest.mark.asyncio(loop_scope="session")
HOLDERS_TOPICS = topics.HOLDER_INBOX.split("{")[0]  # renkei.holder.: inboxes and outboxes


def _platform_side(root: Path, holders_topics: bool = True) -> list[Path]:
    """The broker's log segments (unless not `holders_topics`, the platform's own topics' only)
    and every platform store (the portal's inbox too), log and state folder."""
    logs = sorted((root / "logs").glob("platform-*.log*"))  # the run before's too
    segments = [root / "broker"] if holders_topics else [
        p for p in (root / "broker").glob("node-*/data/*")
        if p.is_dir() and not p.name.startswith(HOLDERS_TOPICS)]
    return [p for p in (*segments, root / "platform", root / "audit", root / "portal", *logs)
            if p.exists()]


class Exchanged(NamedTuple):
    canary: str
    request_id: str
    link_codes: tuple[str, str]  # the requester's for the person (A), the provider's (B)


async def _exchange_canary(clients: dict[str, HolderClient], town: Town) -> Exchanged:
    """A canary planted in sakura-town's data, provided to nenkin."""
    nenkin, town_hall = clients["nenkin"], clients["sakura-town"]
    requester_own, provider_own = next(
        (ours, theirs) for ours, theirs in town.shared("nenkin", "sakura-town")
        if nenkin.store.link_code(ours) and town_hall.store.link_code(theirs))
    canary = f"CANARY-{uuid.uuid4().hex}"
    town_hall.store.put_data(provider_own, "local_tax", {"note": canary, "taxable_income": "1"})
    request_id = await ask(nenkin, requester_own, "P-037", "sakura-town", "local_tax")
    outcome = await nenkin.outcome(request_id, 30)
    assert outcome.result is not None and outcome.result["note"] == canary
    link_a, link_b = nenkin.store.link_code(requester_own), town_hall.store.link_code(provider_own)
    assert link_a is not None and link_b is not None
    return Exchanged(canary, request_id, (link_a, link_b))


async def test_canaries_never_reach_the_broker_or_the_platform_in_plaintext(
        clients: dict[str, HolderClient], town: Town) -> None:
    canary, request_id, link_codes = await _exchange_canary(clients, town)
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    resident = registry.by_code(town.held["nenkin"][0].resident_code)
    registry.close()
    assert resident is not None
    root = state_dir()
    personal = (canary.encode(), resident.name.encode(), resident.address.encode())
    found = containing(_platform_side(root), *personal, request_id.encode())
    plaintext = {needle: found[needle] for needle in personal if found[needle]}
    assert plaintext == {}, "personal data in plaintext"
    assert containing([root / "holders" / "nenkin"], canary.encode())[canary.encode()], \
        "positive control: the requester's own store has the data it received"
    assert any(root / "broker" in path.parents for path in found[request_id.encode()]), \
        "positive control: the scan reads the broker's log segments"
    # link codes: computed per exchange, kept by none but their holders (decision_sealing)
    codes = [code.encode() for code in link_codes]
    kept = containing(_platform_side(root, holders_topics=False), *codes)
    assert {code: kept[code] for code in codes if kept[code]} == {}, "a link code kept"
    assert containing([root / "broker"], codes[1])[codes[1]], \
        "positive control: link code B is on the provider's inbox, in its query"


async def test_holders_logs_reach_the_oversight_body_and_the_portal_sealed(
        clients: dict[str, HolderClient], town: Town) -> None:
    """⑪ is the data provided: the holders' outboxes, renkei.oversight.in, renkei.portal.in and
    the portal's inbox carry it sealed only, and the oversight body and My Portal read it."""
    approved = datetime.now(UTC)  # about when its exchange is approved: a resident's
    canary, request_id, _ = await _exchange_canary(clients, town)  # application names it
    holders = ("nenkin", "sakura-town")
    by_cli = await oversight.holder_logs(holders, (request_id,),
                                         lambda ids: dict.fromkeys(ids, holders), BASIS,
                                         within=30)
    portal = KafkaSide.connect()
    await portal.start()
    try:
        asked = {portal.oversight: (await portal.oversight.ask(
                     holders, (request_id,), BASIS)).request_id,
                 portal.applications: (await portal.applications.ask(
                     holders, (request_id,), BASIS, exchanged_at=(approved,))).request_id}
        for _ in range(300):  # the holders answer within moments
            console, application = [next(s for s in await logs.every()
                                         if s.asked.request_id == rid)
                                    for logs, rid in asked.items()]
            if console.asked.complete and application.asked.complete:
                break
            await asyncio.sleep(0.1)
    finally:
        await portal.stop()
    assert containing(_platform_side(state_dir()), canary.encode())[canary.encode()] == [], \
        "personal data in plaintext"
    answered = [by_cli.answers, console.answers, application.answers]
    assert all(sorted(found) == sorted(holders) and all(found.values()) for found in answered)
    assert all(canary in (e.content or "") for found in answered
               for entries in found.values() for e in entries)
    assert all(e.operator == e.terminal == "" for e in application.answers["nenkin"])
    assert all(e.operator for found in (by_cli.answers, console.answers)
               for e in found["nenkin"]), "⑦ is for the oversight body"
