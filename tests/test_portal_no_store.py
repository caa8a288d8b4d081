"""My Portal started on the real broker before the audit consumer made the audit store and the
head key: it serves, the pages that read the access log saying it cannot be shown now, and
reads the store once it is there, without a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from audit.heads import Signer
from audit.store import AuditStore
from audit.store import default_path as audit_path
from cards import issue
from portal import app as portal_app
from portal.i18n import words
from portal.sessions import Sessions
from portal.web import Site
from renkei.state import state_folder
from renkei.town import Town
from tests.test_portal_web import ORIGIN, PIN, Client, card_login

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture()
def no_audit_store(town: Town, state_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """The suite's state folder (its broker's credentials, its card authorities) as it is
    before the audit consumer's first start: no audit store, no head key, and an inbox of its
    own."""
    issue.init()
    folder = tmp_path / "state"
    for kept, left_out in ((state_dir, {"audit", "keys", "portal"}),
                           (state_dir / "keys", {"audit"})):
        made = folder / kept.relative_to(state_dir)
        made.mkdir(mode=0o700, parents=True)
        for entry in kept.iterdir():
            if entry.name not in left_out:
                (made / entry.name).symlink_to(entry)
    with state_folder(folder):
        yield folder


@pytest_asyncio.fixture(loop_scope="session")
async def client(no_audit_store: Path) -> AsyncIterator[Client]:
    """The portal as `renkei portal` starts it, its Kafka side on the real broker."""
    app = portal_app.build(Site(ORIGIN, "http://127.0.0.1:9"), Sessions())
    async with TestClient(TestServer(app)) as opened:
        yield opened


async def test_the_portal_serves_before_the_audit_store_is_there_and_reads_it_once_it_is(
        client: Client, tmp_path: Path) -> None:
    login = await client.get("/login")
    assert login.status == 200
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303
    unavailable = words("ja")["history_unavailable"]
    for page in ("/oversight/integrity", "/oversight?person=nobody"):
        away = await client.get(page)
        assert (away.status, unavailable in await away.text()) == (503, True), page
    AuditStore(audit_path(), Signer.load_or_create()).close()  # as the consumer's first start
    for page in ("/oversight/integrity", "/oversight?person=nobody"):
        there = await client.get(page)
        assert (there.status, unavailable in await there.text()) == (200, False), page
