"""The holder's own store, without Kafka: what a provider finds by link code."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from holders import imports
from holders import store as store_module
from holders.store import FORGET, Forgotten, HolderStore, Keyed, KeyInUse, Made, Rekeyed
from registry.residents import FourAttributes, Sex
from renkei.state import state_folder
from renkei.windows import ANSWER_TIMEOUT, CLOCK_SKEW, REPLAY_WINDOW


def test_a_provider_finds_data_only_by_a_bound_link_code_and_its_type(tmp_path: Path) -> None:
    store = HolderStore(tmp_path / "holder.db")
    store.add_record("H-1", FourAttributes("山田 花子", "桜町1-2-3", date(1980, 4, 1), Sex.FEMALE))
    store.add_record("H-2", FourAttributes("山田 太郎", "桜町1-2-3", date(1979, 5, 2), Sex.MALE))
    store.put_data("H-1", "local_tax", {"taxable_income": "3200000"})
    store.put_data("H-2", "local_tax", {"taxable_income": "4100000"})
    store.bind("H-1", "LC-1", 0)
    assert store.provided("LC-1", "local_tax") == {"taxable_income": "3200000"}
    assert store.provided("LC-1", "pension_benefit") is None  # bound, but no such data
    assert store.provided("LC-2", "local_tax") is None  # H-2 holds data but is not bound
    store.close()


def test_rekeying_moves_each_binding_to_the_new_epoch_once(tmp_path: Path) -> None:
    store = HolderStore(tmp_path / "holder.db")
    for own, code in (("H-1", "OLD1"), ("H-2", "OLD2"), ("H-4", "X"), ("H-5", "Y")):
        store.bind(own, code, 0)
    store.bind("H-3", "NEW3", 1)  # bound after the bump: of the new epoch already
    assert store.bindings_before(1) == {0: ["OLD1", "OLD2", "X", "Y"]}
    assert store.rekey("OLD1", "NEW1", 1) == Rekeyed("H-1")
    assert store.rekey("OLD1", "NEW1", 1) is None  # the answer again: done already
    assert store.rekey("OLD2", None, 1) == Rekeyed("H-2")  # not valid: unbound
    assert store.rekey("X", "Y", 1) is None  # Y is still H-5's old code: X waits
    assert store.rekey("Y", "Z", 1) == Rekeyed("H-5")
    assert store.rekey("X", "Y", 1) == Rekeyed("H-4")
    assert store.bindings_before(1) == {}
    assert store.bindings() == {"H-1": "NEW1", "H-3": "NEW3", "H-4": "Y", "H-5": "Z"}
    store.close()


def test_across_a_rekeying_a_provider_finds_a_record_by_either_epochs_code(
        tmp_path: Path) -> None:
    store = HolderStore(tmp_path / "holder.db")
    for own, code in (("H-1", "OLD1"), ("H-2", "OLD2")):
        store.add_record(own, FourAttributes(f"山田 {own}", "桜町1-2-3", date(1980, 4, 1),
                                             Sex.FEMALE))
        store.put_data(own, "local_tax", {"of": own})
        store.bind(own, code, 0)
    assert store.rekey("OLD1", "NEW1", 1) == Rekeyed("H-1")  # H-2 not moved yet
    assert store.binding("H-1") == ("NEW1", 1) and store.binding("H-2") == ("OLD2", 0)
    # a query of the new epoch, for a record not moved yet: by the person's previous code
    assert store.provided("NEW2", "local_tax", previous="OLD2") == {"of": "H-2"}
    assert store.provided("NEW2", "local_tax") is None
    # a query converted before the platform moved on, for a record moved since
    assert store.provided("OLD1", "local_tax") == {"of": "H-1"}
    assert store.provided("NEW1", "local_tax", previous="OLD1") == {"of": "H-1"}
    store.bind("H-1", "FRESH", 1)  # bound again: its old code no longer finds it
    assert store.provided("OLD1", "local_tax") is None
    store.close()


def test_a_store_made_before_rekeying_has_its_codes_of_the_first_epoch(tmp_path: Path) -> None:
    store = _made_before(tmp_path, "CREATE TABLE bindings (own_number TEXT PRIMARY KEY, "
                         "link_code TEXT NOT NULL UNIQUE, bound_at TEXT NOT NULL)",
                         "INSERT INTO bindings VALUES ('H-1', 'LC-1', '2026-01-01')")
    assert store.bindings_before(1) == {0: ["LC-1"]}
    assert store.rekey("LC-1", "LC-9", 1) == Rekeyed("H-1")
    assert store.binding("H-1") == ("LC-9", 1)
    store.close()


def test_rekeying_reads_the_old_bindings_off_an_index_in_a_new_store_and_one_made_before(
        tmp_path: Path) -> None:
    """The bindings of older epochs are found and ordered by an index of their epochs alone (in
    the table's order within one), with no scan of the table and no sort (0.46 s for 200k
    bindings on the event loop, at each re-keying); a store made with one of (epoch, link
    code) has it replaced."""
    (tmp_path / "indexed").mkdir()
    _made_before(tmp_path / "indexed", "CREATE TABLE bindings (own_number TEXT PRIMARY KEY, "
                 "link_code TEXT NOT NULL UNIQUE, bound_at TEXT NOT NULL, "
                 "epoch INTEGER NOT NULL DEFAULT 0, previous_code TEXT)",
                 "CREATE INDEX bindings_epoch ON bindings (epoch, link_code)").close()
    stores = (HolderStore(tmp_path / "new.db"), HolderStore(tmp_path / "indexed" / "holder.db"),
              _made_before(tmp_path, "CREATE TABLE bindings (own_number TEXT PRIMARY KEY, "
                           "link_code TEXT NOT NULL UNIQUE, bound_at TEXT NOT NULL)"))
    for store in stores:
        assert [row[2] for row in store.db.execute(
            "PRAGMA index_info(bindings_of_epoch)")] == ["epoch"]
        assert _plan(store, store_module.OLDER_EPOCH_AFTER, (-1, 1)) == [
            "SEARCH bindings USING COVERING INDEX bindings_of_epoch (epoch>? AND epoch<?)"]
        assert _plan(store, store_module.BINDINGS_OF_EPOCH, (0, 0, 10)) == [
            "SEARCH bindings USING INDEX bindings_of_epoch (epoch=? AND rowid>?)"]
        store.close()


def _plan(store: HolderStore, query: str, args: tuple[object, ...]) -> list[str]:
    return [row[3] for row in store.db.execute(f"EXPLAIN QUERY PLAN {query}", args)]


def test_rekeying_reads_the_old_bindings_in_the_order_of_the_table_not_of_their_codes(
        tmp_path: Path) -> None:
    """Read (and the platform's answer applied) in the order the bindings were made (rowid),
    each binding's row and its epoch's index entries are changed in order, a page after
    another; in link-code order they were at random pages (100k bindings re-keyed wrote
    1.7 GB, not 0.9)."""
    store = HolderStore(tmp_path / "holder.db")
    for n, code in enumerate(("Z9", "A1", "M5", "B2")):
        store.bind(f"H-{n}", code, n % 2)
    assert store.bindings_before(2) == {0: ["Z9", "M5"], 1: ["A1", "B2"]}
    assert list(store.bindings_before_in_parts(2, at_once=1)) == [
        (0, ["Z9"]), (0, ["M5"]), (1, ["A1"]), (1, ["B2"])]
    store.close()


def test_the_bindings_moved_are_found_by_their_previous_code_off_an_index_of_those_alone(
        tmp_path: Path) -> None:
    """The index of previous codes holds the bindings re-keying moved, not each never moved
    (a page of it written again a move, 100k bindings re-keyed: 5 GB); a store made with one
    of every binding has it replaced; a binding and a query find the moved one by it."""
    _made_before(tmp_path, "CREATE TABLE bindings (own_number TEXT PRIMARY KEY, "
                 "link_code TEXT NOT NULL UNIQUE, bound_at TEXT NOT NULL, "
                 "epoch INTEGER NOT NULL DEFAULT 0, previous_code TEXT)",
                 "CREATE INDEX bindings_previous_code ON bindings (previous_code)").close()
    store = HolderStore(tmp_path / "holder.db")
    for n in range(3):
        store.add_record(f"H-{n}", FourAttributes("山田 花子", "桜町1", date(1980, 4, 1),
                                                  Sex.FEMALE))
        store.bind(f"H-{n}", f"OLD{n}", 0)
    store.put_data("H-0", "pension", {"amount": "1"})
    store.rekey("OLD0", "NEW0", 1)
    indexed = {name: partial for _, name, _, _, partial in store.db.execute(
        "PRAGMA index_list(bindings)") if not name.startswith("sqlite_")}
    assert indexed == {"bindings_of_epoch": 0, "bindings_moved": 1}
    assert store.db.execute("SELECT previous_code FROM bindings INDEXED BY bindings_moved "
                            "WHERE previous_code IS NOT NULL").fetchall() == [("OLD0",)]
    assert store.bind("H-1", "OLD0", 1) == "H-0"
    assert store.provided("OLD0", "pension") == {"amount": "1"}
    store.close()


def test_the_store_caches_a_re_keyings_pages_until_its_transaction_ends(tmp_path: Path) -> None:
    """The store's connection caches up to 32 MiB of pages: a re-keying's transaction (codes
    all over the bindings' indexes) spilled to the write-ahead log with SQLite's 2 MiB, each
    page written again as the next binding dirtied it (100k bindings: 3.5 GB, not 1.7)."""
    store = HolderStore(tmp_path / "holder.db")
    assert store.db.execute("PRAGMA cache_size").fetchone() == (-32 * 1024,)
    store.close()


def test_rekeying_reads_the_old_bindings_a_part_at_a_time_each_once(tmp_path: Path) -> None:
    """Each read of the store on its own (the event loop goes on between them), each binding
    of an older epoch comes once, in a part of its epoch, though bindings move between reads."""
    store = HolderStore(tmp_path / "holder.db")
    for n, epoch in enumerate((0, 0, 0, 1, 1, 2)):
        store.bind(f"H-{n}", f"C{n}", epoch)
    parts = store.bindings_before_in_parts(2, at_once=2)
    assert next(parts) == (0, ["C0", "C1"])
    assert store.rekey("C0", "N0", 2) == Rekeyed("H-0")  # moved, read already
    assert store.rekey("C3", "N3", 2) == Rekeyed("H-3")  # moved, not read yet
    assert list(parts) == [(0, ["C2"]), (1, ["C4"])]
    assert store.bindings_before(2) == {0: ["C1", "C2"], 1: ["C4"]}
    store.close()


def test_a_link_code_bound_to_one_record_is_not_bound_to_another(tmp_path: Path) -> None:
    """Two records of one person are an ambiguous match: the first keeps its binding."""
    store = HolderStore(tmp_path / "holder.db")
    store.put_data("H-1", "local_tax", {"of": "H-1"})
    assert store.bind("H-1", "LC-1", 0) is None
    assert store.bind("H-2", "LC-1", 0) == "H-1"
    assert store.bindings() == {"H-1": "LC-1"}
    assert store.provided("LC-1", "local_tax") == {"of": "H-1"}
    assert store.bind("H-1", "LC-9", 1) is None  # the same record, bound anew
    assert store.binding("H-1") == ("LC-9", 1)
    store.close()


def test_a_code_a_rekeying_moved_a_record_on_from_is_not_bound_to_another(
        tmp_path: Path) -> None:
    """A second record of one person answered at the old epoch after the first was re-keyed:
    the old code is the first one's previous code, and the match as ambiguous as at one epoch."""
    store = HolderStore(tmp_path / "holder.db")
    store.bind("H-1", "OLD1", 0)
    assert store.rekey("OLD1", "NEW1", 1) == Rekeyed("H-1")
    assert store.bind("H-2", "OLD1", 0) == "H-1"
    assert store.bindings() == {"H-1": "NEW1"}
    assert store.bind("H-1", "OLD1", 0) is None  # the same record may be bound to it again
    store.close()


def test_a_rekeying_onto_a_code_bound_since_unbinds_the_old_binding(tmp_path: Path) -> None:
    """A second record of one person bound at the new epoch before the first was re-keyed: the
    first's new code is the second's, so the first is unbound (ambiguous), not left to wait."""
    store = HolderStore(tmp_path / "holder.db")
    store.bind("H-1", "OLD1", 0)
    store.bind("H-2", "NEW1", 1)
    assert store.rekey("OLD1", "NEW1", 1) == Rekeyed("H-1", taken_by="H-2")
    assert store.bindings() == {"H-2": "NEW1"}
    assert store.bindings_before(1) == {}
    assert store.rekey("OLD1", "NEW1", 1) is None  # the answer again: done already
    store.close()


def test_a_case_is_closed_once_its_record_is_bound(tmp_path: Path) -> None:
    """The investigation queue lists open cases: a record corrected and bound leaves it (it
    stayed listed with its old reason, forever)."""
    store = HolderStore(tmp_path / "holder.db")
    store.investigate("r-1", "H-1", "the registry's address differ(s) from ours")
    store.investigate("r-2", "H-2", "no candidate found")
    assert store.bind("H-1", "LC-1", 0) is None
    assert store.investigations() == [("H-2", "no candidate found")]
    assert store.bind("H-2", "LC-1", 0) == "H-1"  # refused: its case stays open
    store.investigate("r-3", "H-1", "its link code is not valid at epoch 1: bind it again")
    assert [own for own, _ in store.investigations()] == ["H-2", "H-1"]
    assert store.bind("H-1", "LC-9", 1) is None
    assert store.investigations() == [("H-2", "no candidate found")]
    store.close()


def test_a_holder_moved_back_to_a_unit_it_left_has_a_case_opened_again(tmp_path: Path) -> None:
    """A case of a move was named by the unit and the record: moved again to a unit it had been
    moved to, the record was unbound with no case opened (its earlier one, closed, in the way)."""
    store = HolderStore(tmp_path / "holder.db")
    store.move_to_unit("west")
    for unit in ("west-medical", "west", "west-medical"):
        assert store.bind("H-1", f"LC-{unit}", 0) is None
        assert store.move_to_unit(unit) == ["H-1"]
        assert [own for own, _ in store.investigations()] == ["H-1"]
    store.close()


def test_a_store_made_before_cases_were_closed_has_them_open(tmp_path: Path) -> None:
    store = _made_before(tmp_path, "CREATE TABLE investigations (request_id TEXT PRIMARY KEY, "
                         "own_number TEXT NOT NULL, reason TEXT NOT NULL, opened_at TEXT NOT NULL)",
                         "INSERT INTO investigations VALUES ('r-1', 'H-1', 'why', '2026-01-01')")
    assert store.investigations() == [("H-1", "why")]
    store.bind("H-1", "LC-1", 0)
    assert store.investigations() == []
    store.close()


def test_a_store_made_before_a_query_had_its_entry_keeps_its_log_and_logs_each_query(
        tmp_path: Path) -> None:
    store = _made_before(
        tmp_path, _LOG_BEFORE_DIGESTS,
        "CREATE INDEX access_log_at ON access_log (at)",
        "INSERT INTO access_log (serial, at, request_id, side, operator, terminal, content, "
        "outcome) VALUES (7, '2026-01-01', 'r-1', 'PROVIDER', 'SYSTEM', 't', '{}', 'FOUND')")
    again = datetime.now(UTC)
    store.log("r-1", "PROVIDER", "SYSTEM", "t", "FOUND", content="{}", deadline=again)
    store.log("r-1", "PROVIDER", "SYSTEM", "t", "FOUND", content="{}", deadline=again)
    assert [e.at == "2026-01-01" for e in store.access_log("r-1")] == [True, False]
    assert store.not_provided("r-1", "REJECTED: INVALID_TICKET")
    assert [(e.outcome, e.content) for e in store.access_log("r-1")] == [
        ("FOUND", "{}"), ("REJECTED: INVALID_TICKET", None)]
    assert sorted(store.db.execute("SELECT type, name, tbl_name FROM sqlite_master "
                                   "WHERE tbl_name LIKE 'access_log%' AND sql IS NOT NULL")) == [
        ("index", "access_log_at", "access_log"),
        ("index", "access_log_before_digests", "access_log"), ("table", "access_log", "access_log")]
    store.close()
    HolderStore(tmp_path / "holder.db").close()  # made again once only


def test_a_query_answered_in_a_store_made_before_and_read_again_keeps_its_one_entry(
        tmp_path: Path) -> None:
    """An entry made before a provider's were one a query has no digest (nor the deadline it is
    of): a copy of its query read again after (answered again, or late) is still that entry, an
    id used again (received once the platform forgot it: its deadline later) another."""
    answered = datetime.now(UTC) - timedelta(seconds=5)
    store = _made_before(
        tmp_path, _LOG_BEFORE_DIGESTS,
        _provider_entry(answered, "FOUND", "{}"))
    query = {"counterpart": "SAKURA", "pattern_id": "P-1", "data_type": "local_tax"}
    deadline = answered + timedelta(seconds=25)
    store.log("r-1", "PROVIDER", "SYSTEM", "t", "FOUND", content="{}", deadline=deadline, **query)
    store.log("r-1", "PROVIDER", "SYSTEM", "t", "TIMED_OUT", deadline=deadline, **query)
    assert [e.outcome for e in store.access_log("r-1")] == ["FOUND"]
    store.log("r-1", "PROVIDER", "SYSTEM", "t", "FOUND", content="{}",
              deadline=answered + REPLAY_WINDOW, **query)
    assert [e.outcome for e in store.access_log("r-1")] == ["FOUND", "FOUND"]
    store.close()
    made_since = HolderStore(tmp_path / "since.db")  # none made before: never looked for
    assert made_since._before_digests is None
    made_since.close()


def test_a_query_timed_out_in_a_store_made_before_and_read_again_keeps_its_one_entry(
        tmp_path: Path) -> None:
    """An entry made before of a query read late (TIMED_OUT, after its deadline) is a copy's of
    it read again after, late too; an id used again (due a replay window later) is another."""
    read_late = datetime.now(UTC) - timedelta(seconds=5)
    store = _made_before(
        tmp_path, _LOG_BEFORE_DIGESTS,
        _provider_entry(read_late, "TIMED_OUT", None))
    query = {"counterpart": "SAKURA", "pattern_id": "P-1", "data_type": "local_tax"}
    deadline = read_late - REPLAY_WINDOW - timedelta(minutes=3)  # read over a window late
    store.log("r-1", "PROVIDER", "SYSTEM", "t", "TIMED_OUT", deadline=deadline, **query)
    assert [e.outcome for e in store.access_log("r-1")] == ["TIMED_OUT"]
    store.log("r-1", "PROVIDER", "SYSTEM", "t", "FOUND", content="{}",
              deadline=read_late + timedelta(seconds=25), **query)
    assert [e.outcome for e in store.access_log("r-1")] == ["TIMED_OUT", "FOUND"]
    store.close()


def test_a_refusal_naming_an_earlier_query_of_the_id_leaves_an_entry_made_before_as_it_is(
        tmp_path: Path) -> None:
    """An entry made before digests, answered, was ended by a refusal naming any query due less
    than the replay window after it: one of an earlier query of the id (an answer sent under the
    ticket of its other provider, say) ended it, its data relayed; its own query's ends it."""
    answered = datetime.now(UTC) - timedelta(seconds=5)
    store = _made_before(tmp_path, _LOG_BEFORE_DIGESTS, _provider_entry(answered, "FOUND", "{}"))
    deadline = answered + timedelta(seconds=25)
    earlier = deadline - timedelta(minutes=3)  # the id used again once the platform forgot it
    assert not store.not_provided("r-1", "REJECTED: INVALID_TICKET", earlier)
    assert [(e.outcome, e.content) for e in store.access_log("r-1")] == [("FOUND", "{}")]
    assert store.not_provided("r-1", "REJECTED: INVALID_TICKET", deadline)
    assert [(e.outcome, e.content) for e in store.access_log("r-1")] == [
        ("REJECTED: INVALID_TICKET", None)]
    store.close()


def test_a_copy_of_an_earlier_query_of_the_id_is_not_taken_for_a_later_ones_entry_made_before(
        tmp_path: Path) -> None:
    """An entry made before digests, answered, was taken for that of any query due less than the
    replay window after it: a copy of an earlier query of the id, read late after it, had no
    entry of its own; its own query's copy is still that entry."""
    answered = datetime.now(UTC) - timedelta(seconds=5)
    store = _made_before(tmp_path, _LOG_BEFORE_DIGESTS, _provider_entry(answered, "FOUND", "{}"))
    query = {"counterpart": "SAKURA", "pattern_id": "P-1", "data_type": "local_tax"}
    deadline = answered + timedelta(seconds=25)
    store.log("r-1", "PROVIDER", "SYSTEM", "t", "FOUND", content="{}", deadline=deadline, **query)
    earlier = deadline - timedelta(minutes=3)  # the id used again once the platform forgot it
    store.log("r-1", "PROVIDER", "SYSTEM", "t", "TIMED_OUT", deadline=earlier, **query)
    assert [e.outcome for e in store.access_log("r-1")] == ["FOUND", "TIMED_OUT"]
    store.close()


def test_a_request_is_kept_with_its_message_until_the_broker_has_it_or_it_is_answered(
        tmp_path: Path) -> None:
    """A request recorded and not yet taken by the broker (away, or the holder stopped) is sent
    at the next start; one delivered, or answered meanwhile, is not sent again, nor is its
    message's key kept (a linkage request's: the person's link code, which was kept for good)."""
    store = HolderStore(tmp_path / "holder.db")
    for request_id in ("r-1", "r-2", "r-3"):
        store.open_request(request_id, "LINKAGE", "H-1", "op", "t", outgoing=("LC-1", b"m"))
    store.open_request("r-4", "LINKAGE", "H-1", "op", "t")  # no message kept
    assert store.unsent() == [("r-1", "LC-1", b"m"), ("r-2", "LC-1", b"m"), ("r-3", "LC-1", b"m")]
    store.delivered(["r-1"])
    request = store.request("r-2")
    assert request is not None and store.resolve(request, "FOUND") is not None
    assert store.unsent() == [("r-3", "LC-1", b"m")]
    kept = store.db.execute("SELECT request_id FROM requests WHERE outgoing_key IS NOT NULL "
                            "OR outgoing IS NOT NULL").fetchall()
    assert kept == [("r-3",)]  # the person's link code not kept with those sent or answered
    store.close()


def test_a_store_made_before_requests_were_kept_keeps_them_once_opened(tmp_path: Path) -> None:
    path = tmp_path / "holder.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE requests (request_id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
               "own_number TEXT NOT NULL, pattern_id TEXT, provider TEXT, data_type TEXT, "
               "purpose TEXT, operator TEXT NOT NULL, terminal TEXT NOT NULL, "
               "sent_at TEXT NOT NULL, status TEXT NOT NULL, detail TEXT, result TEXT, "
               "answered_at TEXT, duplicates INTEGER DEFAULT 0)")
    db.execute("INSERT INTO requests (request_id, kind, own_number, operator, terminal, sent_at, "
               "status) VALUES ('old', 'LINKAGE', 'H-1', 'op', 't', '2026-01-01', 'SENT')")
    db.commit()
    db.close()
    store = HolderStore(path)
    assert store.unsent() == []  # sent before: nothing kept of it
    store.open_request("new", "LINKAGE", "H-1", "op", "t", outgoing=("LC-1", b"m"))
    assert store.unsent() == [("new", "LC-1", b"m")]
    store.close()


def test_the_requests_kept_are_read_at_a_start_off_an_index_of_them_alone(
        tmp_path: Path) -> None:
    """A server's start read the requests kept to send by a scan of every request (a year's, a
    million: 91 ms before it serves): they are read off an index of those kept alone, in a new
    store and in one made before requests were kept, oldest first; one delivered or answered
    leaves it."""
    new = HolderStore(tmp_path / "new.db")
    before = _made_before(tmp_path, "CREATE TABLE requests (request_id TEXT PRIMARY KEY, "
                          "kind TEXT NOT NULL, own_number TEXT NOT NULL, pattern_id TEXT, "
                          "provider TEXT, data_type TEXT, purpose TEXT, "
                          "operator TEXT NOT NULL, terminal TEXT NOT NULL, "
                          "sent_at TEXT NOT NULL, status TEXT NOT NULL, detail TEXT, "
                          "result TEXT, answered_at TEXT, duplicates INTEGER DEFAULT 0)")
    for store in (new, before):
        for request_id in ("r-1", "r-2", "r-3", "r-4"):
            store.open_request(request_id, "LINKAGE", "H-1", "op", "t",
                               outgoing=("LC-1", request_id.encode()))
        store.delivered(["r-2"])
        store.resolve(store.request("r-3"), "FOUND")  # type: ignore[arg-type]
        read: list[str] = []
        store.db.set_trace_callback(read.append)
        kept = store.unsent()
        store.db.set_trace_callback(None)
        plans = [[row[3] for row in store.db.execute(f"EXPLAIN QUERY PLAN {statement}")]
                 for statement in read]
        assert plans == [["SEARCH requests USING INDEX requests_kept (status=?)"]]
        assert kept == [("r-1", "LC-1", b"r-1"), ("r-4", "LC-1", b"r-4")]
        store.close()


_LOG_BEFORE_DIGESTS = (
    "CREATE TABLE access_log (serial INTEGER PRIMARY KEY, at TEXT NOT NULL, "
    "request_id TEXT NOT NULL, side TEXT NOT NULL, operator TEXT NOT NULL, "
    "terminal TEXT NOT NULL, counterpart TEXT, pattern_id TEXT, data_type TEXT, "
    "content TEXT, purpose TEXT, outcome TEXT NOT NULL, UNIQUE (request_id, side))")


def _provider_entry(at: datetime, outcome: str, content: str | None) -> str:
    """The statement of a provider's entry of r-1 made before digests, of SAKURA's P-1 query."""
    return ("INSERT INTO access_log (at, request_id, side, operator, terminal, counterpart, "
            "pattern_id, data_type, content, outcome) VALUES ("
            f"'{at.isoformat(timespec='milliseconds')}', 'r-1', 'PROVIDER', 'SYSTEM', 't', "
            f"'SAKURA', 'P-1', 'local_tax', {'NULL' if content is None else repr(content)}, "
            f"'{outcome}')")


def _made_before(tmp_path: Path, *statements: str) -> HolderStore:
    """A holder store over one an earlier version made by these statements."""
    path = tmp_path / "holder.db"
    with sqlite3.connect(path) as old:
        for statement in statements:
            old.execute(statement)
    old.close()
    return HolderStore(path)


def test_a_request_under_a_key_in_use_leaves_the_others_recorded_with_it(tmp_path: Path) -> None:
    """Requests recorded in one transaction (opened in one turn of the client's loop): one whose
    idempotency key is in use records neither it nor its key, and the others are recorded."""
    store = HolderStore(tmp_path / "holder.db")
    store.open_request("r-1", "LINKAGE", "H-1", "op", "t", keyed=Keyed("k-1", "asked"))
    with store.transaction():
        store.open_request("r-2", "LINKAGE", "H-1", "op", "t")
        with pytest.raises(KeyInUse):
            store.open_request("r-3", "LINKAGE", "H-1", "op", "t", keyed=Keyed("k-1", "asked"))
        store.open_request("r-4", "LINKAGE", "H-1", "op", "t", keyed=Keyed("k-4", "asked"))
    assert [store.request(r) is not None for r in ("r-2", "r-3", "r-4")] == [True, False, True]
    assert (store.made("k-1"), store.made("k-4")) == (Made("r-1", "asked", False),
                                                      Made("r-4", "asked", False))
    store.close()


def test_a_request_is_kept_with_its_idempotency_key_across_a_restart(tmp_path: Path) -> None:
    """The key is stored with its request: after a crash and a restart it still finds it; a
    second request under the same key records nothing."""
    store = HolderStore(tmp_path / "holder.db")
    store.open_request("r-1", "LINKAGE", "H-1", "op", "t", outgoing=("LC-1", b"m"),
                       keyed=Keyed("k-1", "asked"))
    store.close()
    store = HolderStore(tmp_path / "holder.db")
    assert store.made("k-1") == Made("r-1", "asked", True)
    with pytest.raises(KeyInUse):
        store.open_request("r-2", "LINKAGE", "H-1", "op", "t", outgoing=("LC-1", b"m"),
                           keyed=Keyed("k-1", "asked"))
    assert store.request("r-2") is None and [u[0] for u in store.unsent()] == ["r-1"]
    store.delivered(["r-1"])
    assert store.made("k-1") == Made("r-1", "asked", False) and store.made("k-2") is None
    store.close()


@pytest.mark.usefixtures("secure_delete_off")
def test_a_forgotten_log_entry_leaves_no_trace_in_the_stores_file(tmp_path: Path) -> None:
    """A SQLite built without SQLITE_SECURE_DELETE left a deleted row's bytes in its page and
    the pages it freed: what the access log said of a request forgotten stayed in the file past
    the retention; now overwritten."""
    store = HolderStore(tmp_path / "holder.db")
    for request_id in ("old", "recent"):
        store.log(request_id, "REQUESTER", f"op-{request_id}", "t", "FOUND",
                  content=f'{{"income": "{request_id}-3200000"}}')
    store.db.execute("UPDATE access_log SET at = '2018-01-02T00:00:00.000+00:00' "
                     "WHERE request_id = 'old'")
    assert Forgotten.of(store.forget_before(datetime(2019, 1, 1, tzinfo=UTC))).log_entries == 1
    store.close()
    stored = b"".join(f.read_bytes() for f in tmp_path.iterdir())
    assert b"old-3200000" not in stored and b"op-old" not in stored
    assert b"recent-3200000" in stored


def test_requests_and_log_entries_past_the_retention_are_forgotten(tmp_path: Path) -> None:
    """Answered requests, their idempotency keys and the access log were kept for good: past
    the log's 7 years they go; a request answered within them still counts a copy's answer."""
    store = HolderStore(tmp_path / "holder.db")
    for request_id in ("old", "recent", "unanswered"):
        store.open_request(request_id, "LINKAGE", "H-1", "op", "t",
                           keyed=Keyed(f"k-{request_id}", "asked"))
        store.log(request_id, "REQUESTER", "op", "t", "FOUND", content='{"income": "1"}')
    for request_id in ("old", "recent"):
        request = store.request(request_id)
        assert request is not None and store.resolve(request, "FOUND") is not None
    store.db.execute("UPDATE requests SET sent_at = '2018-01-01T00:00:00.000+00:00', "
                     "answered_at = '2018-01-02T00:00:00.000+00:00' WHERE request_id = 'old'")
    store.db.execute("UPDATE access_log SET at = '2018-01-02T00:00:00.000+00:00' "
                     "WHERE request_id = 'old'")
    assert Forgotten.of(store.forget_before(datetime(2019, 1, 1, tzinfo=UTC))) == Forgotten(
        1, 1, 0)
    assert store.request("old") is None and store.made("k-old") is None
    assert store.access_log("old") == []
    for kept in ("recent", "unanswered"):
        assert store.made(f"k-{kept}") is not None and len(store.access_log(kept)) == 1
    recent = store.request("recent")
    assert recent is not None and store.resolve(recent, "NOT_FOUND") is None
    assert store.counts()["duplicates dropped"] == 1
    store.close()


def test_the_retention_purge_goes_a_short_transaction_at_a_time_by_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The purge deleted all that was past the retention in one transaction, found by scanning
    the requests, their keys and the access log whole: held the write lock as long as they
    were big; now FORGET_AT_ONCE rows a table a transaction, found by index, oldest first."""
    store = HolderStore(tmp_path / "holder.db")
    for n in range(5):
        store.open_request(f"r-{n}", "LINKAGE", "H-1", "op", "t", keyed=Keyed(f"k-{n}", "asked"))
        store.log(f"r-{n}", "REQUESTER", "op", "t", "FOUND")
    store.db.execute("UPDATE requests SET sent_at = '2018-01-0' || substr(request_id, 3) "
                     "WHERE request_id != 'r-4'")
    store.db.execute("UPDATE access_log SET at = '2018' WHERE request_id IN ('r-0', 'r-1')")
    monkeypatch.setattr(store_module, "FORGET_AT_ONCE", 3)
    assert list(store.forget_before(datetime(2019, 1, 1, tzinfo=UTC))) == [
        Forgotten(3, 2, 0), Forgotten(1, 0, 0)]
    assert [r for r in (store.request(f"r-{n}") for n in range(5)) if r] == [store.request("r-4")]
    assert [store.made(f"k-{n}") is not None for n in range(5)] == [False] * 4 + [True]
    for statement in FORGET:
        plan = " ".join(row[3] for row in store.db.execute(
            f"EXPLAIN QUERY PLAN {statement}", {"before": "2019", "rows": 3}))
        assert "SCAN" not in plan, plan
    store.close()


def test_investigations_closed_past_the_retention_are_forgotten_open_ones_kept(
        tmp_path: Path) -> None:
    """Investigations were kept for good, closed or not: one closed more than the retention ago
    goes with the requests and log entries as old; an open one stays, however old."""
    store = HolderStore(tmp_path / "holder.db")
    for own_number in ("H-1", "H-2", "H-3"):
        store.investigate(f"r-{own_number}", own_number, "ambiguous")
    store.bind("H-1", "LC-1", 0)
    store.bind("H-2", "LC-2", 0)
    store.db.execute("UPDATE investigations SET opened_at = '2017', closed_at = "
                     "CASE own_number WHEN 'H-1' THEN '2018' ELSE closed_at END")
    assert list(store.forget_before(datetime(2019, 1, 1, tzinfo=UTC))) == [Forgotten(0, 0, 1)]
    assert [own for own, in store.db.execute(
        "SELECT own_number FROM investigations ORDER BY 1")] == ["H-2", "H-3"]
    assert store.investigations() == [("H-3", "ambiguous")]
    store.close()


def _held(statements: list[str]) -> list[int]:
    """How many statements each write transaction ran (holding the store's write lock)."""
    counts: list[int] = []
    within = False
    for sql in statements:
        if sql == "BEGIN IMMEDIATE":
            counts.append(0)
        elif within and sql not in ("COMMIT", "ROLLBACK"):
            counts[-1] += 1
        within = sql == "BEGIN IMMEDIATE" or (within and sql not in ("COMMIT", "ROLLBACK"))
    return counts


def _records(*names: str) -> list[tuple[int, imports.Record]]:
    return [(line, imports.Record(f"H-{line}", FourAttributes(name, "桜町1", date(1980, 4, 1),
                                                              Sex.FEMALE), None))
            for line, name in enumerate(names, start=2)]


def test_an_import_holds_the_write_lock_for_a_few_statements_whatever_its_rows(
        tmp_path: Path) -> None:
    """An import compared and wrote its rows one by one holding the store's write lock (1.1-1.6 s
    for 200,000 records, the holder's server answering nothing meanwhile): they are staged and
    compared with no lock, and those that change the store written in one statement."""
    store = HolderStore(tmp_path / "holder.db")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    names = [f"山田 {n}" for n in range(60)]
    assert imports.store_records(store, _records(*names)) == (Counter(new=60), [])
    store.bind("H-3", "LC-3", 0)
    assert imports.store_records(store, _records(*names)) == (Counter(unchanged=60), [])
    assert imports.store_records(store, _records("山田 0", "佐藤 1", "佐藤 2")) == (
        Counter(unchanged=1, changed=2), [(3, "H-3")])
    data = [(line, imports.Data(own, "local_tax", {"income": own, "year": "2025"}))
            for line, own in enumerate(store.own_numbers(), start=2)]
    assert imports.store_data(store, [*data, (99, imports.Data("H-99", "local_tax", {}))]) == (
        Counter(new=60), [imports.Refused(99, "own_number", "has no record (import it first)")])
    reordered = [(line, imports.Data(d.own_number, d.data_type, {"year": "2025", **d.fields}))
                 for line, d in data]
    assert imports.store_data(store, reordered) == (Counter(unchanged=60), [])
    held = _held(statements)
    assert len(held) == 3 and max(held) <= 3  # (told again, if the store changed meanwhile)
    assert store.record("H-3") == (FourAttributes("佐藤 1", "桜町1", date(1980, 4, 1),
                                                  Sex.FEMALE), None)
    assert store.data("H-3", "local_tax") == {"income": "H-3", "year": "2025"}
    store.close()


def test_an_import_that_changes_nothing_takes_no_write_lock(tmp_path: Path) -> None:
    """An import of what the store holds already opened a write transaction all the same, to
    write nothing: with another process holding the write lock, it waited for it, and failed
    ("database is locked") past the busy timeout."""
    store = HolderStore(tmp_path / "holder.db")
    imports.store_records(store, _records("山田 花子", "山田 太郎"))
    store.wait_for_lock(0.05)
    other = sqlite3.connect(tmp_path / "holder.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        assert imports.store_records(store, _records("山田 花子", "山田 太郎")) == (
            Counter(unchanged=2), [])
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            imports.store_records(store, _records("佐藤 花子"))
    finally:
        other.close()
    assert store.record("H-2") == (FourAttributes("山田 花子", "桜町1", date(1980, 4, 1),
                                                  Sex.FEMALE), None)
    store.close()


def test_an_import_tells_its_rows_changes_again_if_the_store_changed_meanwhile(
        tmp_path: Path) -> None:
    """Compared with the store before it took the write lock, an import would keep what another
    connection wrote in the while: rows are told again against the store as it holds it."""
    store, other = HolderStore(tmp_path / "holder.db"), HolderStore(tmp_path / "holder.db")
    imports.store_records(store, _records("山田 花子"))
    store.bind("H-2", "LC-2", 0)

    def meanwhile(sql: str) -> None:  # once the rows are told, before the import writes
        if sql == "COMMIT":
            other.add_record("H-2", FourAttributes("佐藤 一郎", "港町9", date(1970, 1, 1),
                                                   Sex.MALE))
            other.add_record("H-3", FourAttributes("山田 太郎", "桜町1", date(1981, 1, 1),
                                                   Sex.MALE))
            store.db.set_trace_callback(None)

    store.db.set_trace_callback(meanwhile)
    assert imports.store_records(store, _records("山田 花子")) == (Counter(changed=1), [(2, "H-2")])
    assert store.record("H-2") == (FourAttributes("山田 花子", "桜町1", date(1980, 4, 1),
                                                  Sex.FEMALE), None)
    store.db.set_trace_callback(meanwhile)
    assert imports.store_data(store, [(2, imports.Data("H-3", "local_tax", {"of": "H-3"}))]) == (
        Counter(new=1), [])
    assert store.data("H-3", "local_tax") == {"of": "H-3"}
    store.close()
    other.close()


def test_an_import_told_again_in_the_lock_compares_only_the_rows_moved_meanwhile(
        tmp_path: Path) -> None:
    """Another connection having written to the store since an import told its rows (the
    server, busy), the import told them all again holding the write lock, every row's fields
    compared anew (0.61-0.76 s of CPU in the lock for 200,000 rows of data): only the rows whose
    fields or record changed since are told again, the rest stand as told."""
    store, other = HolderStore(tmp_path / "holder.db"), HolderStore(tmp_path / "holder.db")
    imports.store_records(store, _records(*(f"山田 {n}" for n in range(200))))
    imports.store_data(store, [(line, imports.Data(own, "local_tax", {"income": own, "n": "1"}))
                               for line, own in enumerate(store.own_numbers(), start=2)])
    steps, phase = Counter[str](), ["staged"]

    def meanwhile(sql: str) -> None:
        if sql == "COMMIT" and phase[0] == "staged":
            other.put_data("H-2", "local_tax", {"income": "moved"})
            other.put_data("H-3", "local_tax", {"n": "1", "income": "H-3"})
        phase[0] = {"BEGIN IMMEDIATE": "locked", "COMMIT": "done"}.get(sql, phase[0])

    def step() -> int:
        steps[phase[0]] += 1
        return 0

    store.db.set_trace_callback(meanwhile)
    store.db.set_progress_handler(step, 100)
    reordered = [(line, imports.Data(own, "local_tax", {"n": "1", "income": own}))
                 for line, own in enumerate(store.own_numbers(), start=2)]
    assert imports.store_data(store, reordered) == (Counter(unchanged=199, changed=1), [])
    assert store.data("H-2", "local_tax") == {"income": "H-2", "n": "1"}
    assert steps["locked"] * 2 < steps["staged"], steps
    store.close()
    other.close()


def _used_twice(store: HolderStore, monkeypatch: pytest.MonkeyPatch) -> tuple[datetime, datetime]:
    """One request id used by a requester for two residents, once the platform forgot it: the
    provider's entry of each use (each resident's data), and the requester's of the second;
    the times the access log has of their approvals."""
    first = datetime.now(UTC) - timedelta(minutes=10)
    second = first + REPLAY_WINDOW + CLOCK_SKEW  # the soonest the id is used again
    query = {"counterpart": "SAKURA", "pattern_id": "P-1", "data_type": "local_tax"}
    for approved, content in ((first, '{"income": "1"}'), (second, '{"income": "2"}')):
        answered = approved + ANSWER_TIMEOUT + CLOCK_SKEW  # as late as it can be
        monkeypatch.setattr(store_module, "_now", lambda at=answered: store_module._stamp(at))
        store.log("r-1", "PROVIDER", "SYSTEM", "t", "FOUND", content=content,
                  deadline=approved + ANSWER_TIMEOUT, **query)
    store.log("r-1", "REQUESTER", "staff-1", "t", "FOUND", counterpart="TOWN")
    return first, second


def test_a_residents_log_of_a_request_id_used_again_is_of_their_exchange_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider's entries of an id used again are each of another resident's exchange: asked
    when the exchange happened, its log gives that use's entry alone (the requester's too, an
    id it drew once); told no time, no provider's; all of them by id alone (the oversight
    body's)."""
    store = HolderStore(tmp_path / "holder.db")
    first, second = _used_twice(store, monkeypatch)
    assert [(e.side, e.content) for e in store.exchange_log("r-1", second)] == [
        ("PROVIDER", '{"income": "2"}'), ("REQUESTER", None)]
    assert [(e.side, e.content) for e in store.exchange_log("r-1", first)] == [
        ("PROVIDER", '{"income": "1"}'), ("REQUESTER", None)]
    assert [e.side for e in store.exchange_log("r-1", None)] == ["REQUESTER"]
    assert len(store.access_log("r-1")) == 3
    store.close()


def test_the_path_of_a_holders_store_makes_nothing_opening_it_makes_its_folder(
        tmp_path: Path) -> None:
    """default_path made the holder's folder (the chaos check's read-only look at a holder made
    one); what only reads gets the path, the store opened for writing makes it, private."""
    with state_folder(tmp_path / "state") as state:
        path = store_module.default_path("town-x")
        assert path == state / "holders" / "town-x" / "holder.db"
        assert not (state / "holders").exists() and not store_module.store_made("town-x")
        HolderStore.of("town-x").close()
        assert store_module.store_made("town-x")
        assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_requesters_entry_is_dated_when_its_staff_made_the_request(tmp_path: Path) -> None:
    """A requester's entry was dated when the request's outcome came: a request timed out 30 s
    later, or read hours later by a server that was down, was logged as made then."""
    store = HolderStore(tmp_path / "holder.db")
    store.open_request("r-1", "LINKAGE", "H-1", "staff-1", "term-1", pattern_id="P-1",
                       provider="city-y", data_type="local_tax", purpose="審査")
    made = store.db.execute("SELECT sent_at FROM requests").fetchone()[0]
    store.db.execute("UPDATE requests SET sent_at = ?", (made.replace(made[:4], "2025"),))
    store.log("r-1", "REQUESTER", "staff-1", "term-1", "TIMED_OUT", counterpart="city-y")
    store.log("r-2", "REQUESTER", "staff-9", "term-1", "REFUSED: not registered staff")
    at = {entry.request_id: entry.at for entry in store.access_log()}
    assert at["r-1"] == made.replace(made[:4], "2025") and at["r-2"] > at["r-1"]
    store.close()


def test_the_open_investigations_are_read_a_page_at_a_time_off_an_index(tmp_path: Path) -> None:
    """The open cases were read whole, every case scanned and sorted (500,000 open after a move
    of unit: 0.5 s of the server's loop): a page is read off an index of the open ones alone,
    from where the page before ended, each case once, a closed one left out."""
    store = HolderStore(tmp_path / "holder.db")
    for n in range(5):
        store.investigate(f"r-{n}", f"H-{n}", "no match")
    store.bind("H-1", "ABC98765XYZ", 0)  # its case closed
    plan = [row[3] for row in store.db.execute(
        f"EXPLAIN QUERY PLAN {store_module.OPEN_CASES_AFTER}", (0, 2))]
    first = store.investigations_page(0, 2)
    rest = store.investigations_page(first[-1][0], 2)
    assert plan == ["SEARCH investigations USING INDEX investigations_open_in_order "
                    "(closed_at=? AND rowid>?)"]
    assert [own for _, own, _ in first + rest] == ["H-0", "H-2", "H-3", "H-4"]
    assert store.investigations() == [(f"H-{n}", "no match") for n in (0, 2, 3, 4)]


def _forgotten_all(store: HolderStore) -> None:
    """Every access-log entry and investigation past the retention, closed, and forgotten (a
    holder idle for 7 years)."""
    store.db.execute("UPDATE investigations SET closed_at = opened_at")
    list(store.forget_before(datetime.now(UTC) + timedelta(days=1)))
    assert store.access_log() == [] and store.investigations() == []


def _serials(store: HolderStore) -> tuple[list[int], list[int]]:
    return ([serial for serial, _ in store.access_log_page(None, 0, -1)],
            [serial for serial, _, _ in store.investigations_page(0, -1)])


def test_a_serial_is_never_given_again_once_its_entries_are_forgotten(tmp_path: Path) -> None:
    """SQLite gave an access-log entry and a case the largest serial + 1: once every entry was
    forgotten, serial 1 again, and a holder's system paging by the serial it read up to
    (`after`) missed the entries made since. They are never given again."""
    store = HolderStore(tmp_path / "holder.db")
    for n in range(3):
        store.log(f"r-{n}", "PROVIDER", "SYSTEM", "t", "FOUND", counterpart="SAKURA")
        store.investigate(f"r-{n}", f"H-{n}", "no match")
    assert _serials(store) == ([1, 2, 3], [1, 2, 3])
    _forgotten_all(store)
    store.log("r-new", "PROVIDER", "SYSTEM", "t", "FOUND", counterpart="SAKURA")
    store.investigate("r-new", "H-new", "no match")
    assert [s for s, _ in store.access_log_page(None, 3, -1)] == [4]
    assert [s for s, _, _ in store.investigations_page(3, -1)] == [4]
    store.close()


def test_a_store_made_before_serials_were_never_given_again_keeps_its_serials_and_gives_none_again(
        tmp_path: Path) -> None:
    store = _made_before(
        tmp_path,
        _LOG_BEFORE_DIGESTS.replace("UNIQUE (request_id, side)",
                                    "query_digest BLOB NOT NULL DEFAULT x'', "
                                    "UNIQUE (request_id, side, query_digest)"),
        "CREATE TABLE investigations (request_id TEXT PRIMARY KEY, own_number TEXT NOT NULL, "
        "reason TEXT NOT NULL, opened_at TEXT NOT NULL, closed_at TEXT)",
        "INSERT INTO access_log (serial, at, request_id, side, operator, terminal, outcome) "
        f"VALUES (7, '{datetime.now(UTC).isoformat()}', 'r-1', 'REQUESTER', 'op', 't', 'FOUND')",
        "INSERT INTO investigations (rowid, request_id, own_number, reason, opened_at) "
        "VALUES (5, 'r-1', 'H-1', 'no match', '2026-01-01')")
    assert _serials(store) == ([7], [5])
    store.close()
    store = HolderStore(tmp_path / "holder.db")  # made again once only
    _forgotten_all(store)
    store.log("r-2", "PROVIDER", "SYSTEM", "t", "FOUND", counterpart="SAKURA")
    store.investigate("r-2", "H-2", "no match")
    assert _serials(store) == ([8], [6])
    assert sorted(name for name, in store.db.execute(
        "SELECT name FROM sqlite_master WHERE tbl_name IN ('access_log', 'investigations')")) == [
        "access_log", "access_log_at", "access_log_before_digests", "investigations",
        "investigations_closed", "investigations_open", "investigations_open_in_order",
        "sqlite_autoindex_access_log_1", "sqlite_autoindex_investigations_1"]
    store.close()


def test_a_store_made_before_own_numbers_were_keyed_has_its_records_keyed_as_every_way_in(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Own numbers are keyed (NFKC) by every way in since; a record an older import kept as
    given (`Ｈ－１`) was reached by none of them, and its next import made a second record."""
    store = HolderStore(tmp_path / "holder.db")
    person = FourAttributes("山田 花子", "桜町1-2-3", date(1980, 4, 1), Sex.FEMALE)
    for own in ("Ｈ－１", "Ｈ－２", "H-2", "Ｈ－３", "H－3"):
        store.add_record(own, person)
    store.put_data("Ｈ－１", "income", {"year": "2025"})
    store.bind("Ｈ－１", "LC-1", 0)
    store.db.execute("PRAGMA user_version = 0")  # as a store made before
    store.close()
    store = HolderStore(tmp_path / "holder.db")
    assert store.own_numbers() == ["H-1", "H-2", "H-3", "Ｈ－２", "Ｈ－３"]
    assert store.data("H-1", "income") == {"year": "2025"}
    assert store.link_code("H-1") == "LC-1"
    assert "record 'Ｈ－２' is record 'H-2'" in caplog.text  # another record's: left, said
    assert "record 'Ｈ－３' is record 'H-3'" in caplog.text  # two forms of one: the second left
    store.close()
