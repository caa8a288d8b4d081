"""A record its holder removed (`renkei holder records remove`) on the real broker: a provider
answers NOT_FOUND for it from then on, its log of the answers it gave before kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from holders.cli import holder_cli
from holders.client import HolderClient
from holders.store import HolderStore
from processors import keys
from processors.codes import CodeService, UnitEpoch
from renkei.exchanges import staff as staff_of

pytestmark = pytest.mark.asyncio(loop_scope="session")
REQUESTER, PROVIDER, PATTERN, DATA_TYPE = "nenkin", "sakura-town", "P-037", "local_tax"
_TABLES = ("records", "data", "bindings")  # what of a record is removed (put back after)


def _held_by_both(requester: HolderClient, provider: HolderClient) -> tuple[str, str]:
    """A person both hold and have bound, the provider with DATA_TYPE on them: the requester's
    own number and the provider's."""
    codes = CodeService(keys.load())
    units = {client.holder: UnitEpoch(entry.link_unit, entry.key_epoch) for client in
             (requester, provider) if (entry := client.entry(client.holder))}
    provided = {codes.resident_code(link, units[provider.holder]): own
                for own, link in provider.store.bindings().items()
                if provider.store.data(own, DATA_TYPE) is not None}
    return next((own, provided[person]) for own, link in sorted(requester.store.bindings().items())
                if (person := codes.resident_code(link, units[requester.holder])) in provided)


async def _asked(requester: HolderClient, own: str) -> tuple[str, str]:
    """The request id and outcome of asking PROVIDER for the person's DATA_TYPE."""
    staff, terminal = staff_of(requester.holder)
    request_id = await requester.request(own, PATTERN, PROVIDER, DATA_TYPE, "審査", staff,
                                         terminal)
    return request_id, (await requester.outcome(request_id, 30)).status


async def test_a_provider_answers_not_found_for_a_record_it_removed(
        clients: dict[str, HolderClient], tmp_path: Path) -> None:
    requester, provider = clients[REQUESTER], clients[PROVIDER]
    own, held = _held_by_both(requester, provider)
    before, found = await _asked(requester, own)
    assert found == "FOUND"
    kept = HolderStore.of(PROVIDER)  # a connection of the test's own, as the CLI's
    rows = {table: kept.db.execute(f"SELECT * FROM {table} WHERE own_number = ?",
                                   (held,)).fetchall() for table in _TABLES}
    gone = tmp_path / "gone.csv"
    gone.write_text(f"own_number\n{held}\n", encoding="utf-8")
    try:
        result = CliRunner().invoke(holder_cli, ["records", "remove", PROVIDER, str(gone)])
        assert result.exit_code == 0, result.output
        assert result.output == f"records of {PROVIDER}: 1 removed, 0 rows refused\n"
        after, outcome = await _asked(requester, own)
        assert outcome == "NOT_FOUND"
        (answered,) = provider.store.access_log(after)
        assert (answered.outcome, answered.content) == ("NOT_FOUND", None)
        (logged,) = provider.store.access_log(before)  # the answer given before: kept
        assert logged.outcome == "FOUND" and logged.content is not None
    finally:
        with kept.transaction():  # the record put back as it was, for the session's other tests
            for table in _TABLES:
                kept.db.execute(f"DELETE FROM {table} WHERE own_number = ?", (held,))
                kept.db.executemany(f"INSERT INTO {table} VALUES "
                                    f"({', '.join('?' * len(rows[table][0]))})", rows[table])
        kept.close()
