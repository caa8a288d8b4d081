"""The platform holds no personal data: canaries planted in holders' data and in the registry
are found where they belong (the holders' own stores) and nowhere on the platform's side."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from holders.client import HolderClient
from registry import store as registry_store
from renkei.state import state_dir
from renkei.town import Town
from tests.test_linkage import ask

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _containing(places: list[Path], needle: bytes) -> list[Path]:
    """Every file under these places (files or folders) whose bytes contain `needle`."""
    found = []
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        found += [f for f in files if needle in f.read_bytes()]
    return found


def _platform_side(root: Path) -> list[Path]:
    """The broker's log segments and every platform store, log and state folder."""
    logs = sorted((root / "logs").glob("platform-*.log"))
    return [p for p in (root / "broker", root / "platform", root / "audit", *logs) if p.exists()]


async def test_canaries_never_reach_the_broker_or_the_platform_in_plaintext(
        clients: dict[str, HolderClient], town: Town) -> None:
    nenkin, town_hall = clients["nenkin"], clients["sakura-town"]
    requester_own, provider_own = next(
        (ours, theirs) for ours, theirs in town.shared("nenkin", "sakura-town")
        if nenkin.store.link_code(ours) and town_hall.store.link_code(theirs))
    canary = f"CANARY-{uuid.uuid4().hex}"
    town_hall.store.put_data(provider_own, "local_tax", {"note": canary, "taxable_income": "1"})
    request_id = await ask(nenkin, requester_own, "P-037", "sakura-town", "local_tax")
    outcome = await nenkin.outcome(request_id, 30)
    assert outcome.result is not None and outcome.result["note"] == canary
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    resident = registry.by_code(town.held["nenkin"][0].resident_code)
    registry.close()
    assert resident is not None
    root = state_dir()
    for needle in (canary.encode(), resident.name.encode(), resident.address.encode()):
        assert _containing(_platform_side(root), needle) == [], "personal data in plaintext"
    assert _containing([root / "holders" / "nenkin"], canary.encode()), \
        "positive control: the requester's own store has the data it received"
    assert _containing([root / "broker"], request_id.encode()), \
        "positive control: the scan reads the broker's log segments"
