"""A holder suspended and resumed by the operator (`renkei holder suspend`, `resume`), on the
real broker: while suspended its requests and requests to it are refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from holders.client import HolderClient
from processors import directory
from tests.kafka_helpers import renkei
from tests.test_linkage import ask, bound

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _seen(client: HolderClient, holder: str, active: bool) -> None:
    """Wait until the holder's directory view has `holder` as active (or not)."""
    async with asyncio.timeout(10):
        while client.entry(holder).active != active:
            await client.directory.changed()


async def _status(client: HolderClient, pattern: str, provider: str, data_type: str
                  ) -> tuple[str, str | None]:
    request_id = await ask(client, bound(client)[0], pattern, provider, data_type)
    outcome = await client.outcome(request_id, 30)
    return outcome.status, outcome.detail


async def test_a_suspended_holder_neither_requests_nor_provides_until_it_is_resumed(
        clients: dict[str, HolderClient]) -> None:
    """No command made a holder inactive: a hospital whose access was withdrawn stayed active.
    Suspended, its entry is inactive from its broker time on, kept when registered again;
    resumed, it requests and provides again."""
    nenkin, town_hall = clients["nenkin"], clients["sakura-town"]
    before = datetime.now(UTC) - timedelta(seconds=5)  # the broker's clock is this machine's
    said = renkei("holder", "suspend", "sakura-town", "--reason", "情報漏えい").stdout
    try:
        assert "suspended sakura-town" in said and "reason: 情報漏えい" in said
        entry = (await directory.current())["sakura-town"]
        assert not entry.active and entry.inactive_since is not None
        assert before < entry.inactive_since < datetime.now(UTC)
        assert entry.inactive_since.isoformat() in said
        await _seen(nenkin, "sakura-town", False)
        assert await _status(town_hall, "P-027", "nenkin", "pension_benefit") == (
            "REJECTED", "NOT_PERMITTED: the requester is not an active holder")
        assert await _status(nenkin, "P-037", "sakura-town", "local_tax") == (
            "REJECTED", "UNKNOWN_HOLDER: no active holder 'sakura-town'")
        again = renkei("holder", "suspend", "sakura-town", "--reason", "x", check=False)
        assert again.returncode == 1
        assert f"sakura-town is already suspended (since {entry.inactive_since.isoformat()})" \
            in again.stderr
        renkei("holder", "register", "sakura-town", "--name", entry.name, "--role", entry.role)
        kept = (await directory.current())["sakura-town"]
        assert (kept.active, kept.inactive_since) == (False, entry.inactive_since)
    finally:
        resumed = renkei("holder", "resume", "sakura-town").stdout
    assert "resumed sakura-town" in resumed
    entry = (await directory.current())["sakura-town"]
    assert entry.active and entry.inactive_since is None
    await _seen(nenkin, "sakura-town", True)
    status, _ = await _status(nenkin, "P-037", "sakura-town", "local_tax")
    assert status == "FOUND"
    for args, said in ((("resume", "sakura-town"), "sakura-town is already active"),
                       (("suspend", "nobody", "--reason", "x"),
                        "no holder 'nobody' is in the holder directory")):
        refused = renkei("holder", *args, check=False)
        assert refused.returncode == 1 and said in refused.stderr
