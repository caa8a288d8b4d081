"""My Portal started on the real broker before the audit consumer made the audit store and the
head key: it serves, the pages that read the access log saying it cannot be shown now, and
reads the store once it is there, without a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
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


async def _oversight_logs_in(client: Client, tmp_path: Path) -> None:
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303


async def _pages_say_unavailable(client: Client) -> list[tuple[int, bool]]:
    """The status of each page that reads the access log, and whether it says it cannot be
    shown now."""
    shown = []
    for page in ("/oversight/integrity", "/oversight?person=NOBODY00000"):
        answer = await client.get(page)
        shown.append((answer.status, words("ja")["history_unavailable"] in await answer.text()))
    return shown


async def test_the_portal_serves_before_the_audit_store_is_there_and_reads_it_once_it_is(
        client: Client, tmp_path: Path) -> None:
    login = await client.get("/login")
    assert login.status == 200
    await _oversight_logs_in(client, tmp_path)
    assert await _pages_say_unavailable(client) == [(503, True)] * 2
    AuditStore(audit_path(), Signer.load_or_create()).close()  # as the consumer's first start
    assert await _pages_say_unavailable(client) == [(200, False)] * 2


async def test_a_store_whose_tables_are_not_made_yet_is_read_once_they_are(
        client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The portal reads the store between the audit consumer's first start making the head key
    and the store's file and its making the tables: the pages say the history cannot be shown
    now (they failed, 500: the store opened, its first read found no table), and read it once
    the tables are there."""
    await _oversight_logs_in(client, tmp_path)
    Signer.load_or_create()
    with closing(sqlite3.connect(audit_path())) as file_alone:
        file_alone.execute("PRAGMA journal_mode=WAL")  # as the store's writer does first
        assert await _pages_say_unavailable(client) == [(503, True)] * 2
        assert "the audit store has no tables yet" in caplog.text
        AuditStore(audit_path(), Signer.load_or_create()).close()
        assert await _pages_say_unavailable(client) == [(200, False)] * 2


def _no_database(kind: str, tmp_path: Path) -> bytes:
    """Bytes that are no SQLite database, or the header of a store cut short."""
    if kind == "garbage":
        return b"not a database\n" * 8
    AuditStore(tmp_path / "whole.db", Signer.generate()).close()
    return (tmp_path / "whole.db").read_bytes()[:50]


@pytest.mark.parametrize("kind", ["garbage", "header-cut-short"])
async def test_a_store_file_that_is_no_database_is_said_unavailable_until_it_is_one(
        client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    """A file at the store's path that is no SQLite database, or one cut short in its header:
    the pages say the history cannot be shown now, each read logging why in one line, and read
    the store made in its place (they failed, 500: SQLite's error at the open, uncaught)."""
    await _oversight_logs_in(client, tmp_path)
    Signer.load_or_create()
    audit_path().write_bytes(_no_database(kind, tmp_path))
    assert await _pages_say_unavailable(client) == [(503, True)] * 2
    said = [r for r in caplog.records if r.name == "portal.records"]
    assert said and all(r.levelname == "WARNING" and r.exc_info is None
                        and "\n" not in r.getMessage() for r in said)
    assert ("file is not a database" if kind == "garbage"
            else "database disk image is malformed") in said[0].getMessage()
    for made in audit_path().parent.glob(f"{audit_path().name}*"):  # its -wal and -shm too
        made.unlink()
    AuditStore(audit_path(), Signer.load_or_create()).close()
    assert await _pages_say_unavailable(client) == [(200, False)] * 2
