"""A holder's broker password and keys renewed by the operator (`renkei holder renew`), on the
real broker: the old password logs in no more, the new keys are in the directory, the holder
requests and provides again once its server is restarted, and the audit log says who and why."""

from __future__ import annotations

import asyncio
import subprocess
from typing import NamedTuple

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import cluster, config, credentials, topics
from broker.clients import KafkaAccess, asked, offsets
from holders.client import HolderClient
from holders.store import HolderStore
from processors import directory
from renkei import sealing
from schemas.messages import HolderEntry
from tests.kafka_helpers import operator_actions, renkei
from tests.test_linkage import ask, bound

pytestmark = pytest.mark.asyncio(loop_scope="session")
HOLDER = "sakura-town"


def _refused(creds: credentials.Credentials) -> bool:
    """Whether the broker refuses the principal's log-in with these credentials."""
    return asked([KafkaAccess(cluster.bootstrap(), creds)]).refused == [creds.username]


async def _status(client: HolderClient, pattern: str, provider: str, data_type: str) -> str:
    request_id = await ask(client, bound(client)[0], pattern, provider, data_type)
    return (await client.outcome(request_id, 30)).status


async def _seen(client: HolderClient, holder: str, signing_key: bytes) -> None:
    """Wait until the client's directory view has `holder`'s renewed entry."""
    async with asyncio.timeout(10):
        while client.entry(holder).signing_key != signing_key:
            await client.directory.changed()


class Renewed(NamedTuple):
    """The holder as it was before its renewal, what the command said, and where the audit topic
    ended before it."""

    creds: credentials.Credentials
    entry: HolderEntry
    key: X25519PrivateKey
    in_flight: bytes  # an answer sealed to its old sealing key before the renewal
    said: subprocess.CompletedProcess[str]
    audit_end: int


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def renewed(clients: dict[str, HolderClient]) -> Renewed:
    """The holder renewed by the operator, and its communication server restarted (the session's
    client replaced: the session stops it at its end, and later tests use it)."""
    _, audit_end = await offsets(KafkaAccess.of(config.ADMIN), topics.AUDIT)
    before = (await directory.current())[HOLDER]
    in_flight = sealing.SessionSealer().seal(before.public_key, b"answer", "R-old", HOLDER)
    old_creds, old_key = credentials.load(HOLDER), sealing.key_of(HOLDER)
    said = renkei("holder", "renew", HOLDER, "--reason", "情報漏えい", "--operator", "ops-a")
    old = clients[HOLDER]
    await old.stop()
    old.store.close()
    clients[HOLDER] = HolderClient(HOLDER, HolderStore.of(HOLDER))
    await clients[HOLDER].start()
    return Renewed(old_creds, before, old_key, in_flight, said, audit_end)


async def test_a_renewed_holder_logs_in_and_seals_with_new_secrets_alone(
        clients: dict[str, HolderClient], renewed: Renewed) -> None:
    """No command renewed a holder's broker password or its sealing and signing keys: a
    hospital resumed after a breach went on with the leaked ones (registering again kept them
    all). Renewed, its old password is refused and its new one taken, the directory publishes
    its new keys, answers sealed to its old sealing key still open, its server restarted
    requests and provides (FOUND both ways), and the audit log has the renewal with who and
    why; nothing secret is said."""
    said, before = renewed.said, renewed.entry
    new_creds = credentials.load(HOLDER)
    assert new_creds.password != renewed.creds.password
    assert "renewed sakura-town" in said.stdout and "reason: 情報漏えい" in said.stdout
    assert f"renkei holder run {HOLDER}" in said.stderr  # its server is to be restarted
    secrets = (new_creds.password, renewed.creds.password, renewed.key.private_bytes_raw().hex(),
               sealing.key_of(HOLDER).private_bytes_raw().hex())
    assert not any(s in said.stdout + said.stderr for s in secrets)
    assert _refused(renewed.creds) and not _refused(new_creds)
    after = (await directory.current())[HOLDER]
    assert after.public_key == sealing.public_bytes(sealing.key_of(HOLDER)) != before.public_key
    assert after.signing_key == sealing.public_bytes(sealing.signing_key_of(HOLDER))
    assert after.signing_key != before.signing_key
    assert (after.active, after.link_unit, after.key_epoch) == (
        before.active, before.link_unit, before.key_epoch)
    [action] = await operator_actions(renewed.audit_end, HOLDER)
    assert (action.action, action.operator, action.reason) == ("RENEW", "ops-a", "情報漏えい")
    restarted = clients[HOLDER]
    assert restarted._answers_in.open(renewed.in_flight, "R-old") == b"answer"  # kept a while
    nenkin = clients["nenkin"]
    await _seen(nenkin, HOLDER, after.signing_key)
    assert await _status(nenkin, "P-037", HOLDER, "local_tax") == "FOUND"
    assert await _status(restarted, "P-027", "nenkin", "pension_benefit") == "FOUND"
    refused = renkei("holder", "renew", "nobody", check=False)
    assert refused.returncode == 1 and "nobody" in refused.stderr
