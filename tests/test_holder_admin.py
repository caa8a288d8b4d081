"""A holder's operator keeps its store by `renkei holder staff | terminal | records | data`:
without them a registered holder had no staff, terminals or records, and every request through
its communication server was refused."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import date
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from broker import credentials, provision, topics
from broker.clients import KafkaAccess, provisioned
from holders.cli import holder_cli
from holders.client import HolderClient
from holders.server import Address, address_file, recorded
from holders.store import HolderStore, default_path
from registry import store as registry_store
from registry.normalize import NOT_A_DATE
from registry.residents import FourAttributes, Resident, Sex
from renkei import town as town_setup
from renkei.state import private_dir, state_folder
from tests.kafka_helpers import renkei, said_in_one_line, spawn, stop
from tests.loop_helpers import Deadline

HOLDER = "town-x"
RECORDS = """own_number,name,address,date_of_birth,sex,personal_number
T-1,山田 花子,桜町1-2-3,昭和55年4月1日,女,123456789018
T-2,山田 太郎,桜町一丁目2番地3,1979-05-02,1,

T-3,秘密野 名子,桜町9,1979-13-02,M,
T-4,佐藤 一郎,桜町4-4,1980-01-01,X,
T-5,佐藤 二郎,桜町5-5,1980-01-01,M,987654321099
T-1,山田 花子,桜町1-2-3,1980-04-01,F,
T-6,too,few
"""
SECRETS = ("秘密野", "1979-13-02", "987654321099", "佐藤", "桜町4-4", "too")


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A state folder of the test's own, where HOLDER is registered (its credentials)."""
    with state_folder(tmp_path / "state") as path:
        credentials.issue(HOLDER)
        yield path


def _holder(*args: str, given: str | None = None) -> Result:
    return CliRunner().invoke(holder_cli, list(args), input=given)


def _ok(*args: str, given: str | None = None) -> str:
    result = _holder(*args, given=given)
    assert result.exit_code == 0, result.output
    return result.output


def test_staff_and_terminals_are_added_listed_and_removed(state: Path) -> None:
    _ok("terminal", "add", HOLDER, "t1")
    _ok("terminal", "add", HOLDER, "t2")
    assert _ok("terminal", "list", HOLDER).split() == ["t1", "t2"]
    unknown = _holder("staff", "add", HOLDER, "op", "--terminal", "t9", given="山田")
    assert unknown.exit_code == 1 and "t9" in unknown.output
    old_form = _holder("staff", "add", HOLDER, "op", "--name", "山田", given="山田")
    assert old_form.exit_code == 2 and "not given on the command line" in old_form.output
    assert "山田" not in old_form.output
    _ok("staff", "add", HOLDER, "op", "--terminal", "t1", given="山田\n")
    _ok("staff", "add", HOLDER, "op2", given='{"name": "佐藤"}')
    assert _ok("staff", "list", HOLDER).splitlines() == [
        "op  山田  t1", "op2  佐藤  any registered terminal"]
    assert "removed" in _ok("staff", "remove", HOLDER, "op2")
    assert "was not" in _ok("staff", "remove", HOLDER, "op2")
    assert "removed" in _ok("terminal", "remove", HOLDER, "t2")
    assert _ok("terminal", "list", HOLDER).split() == ["t1"]
    store = HolderStore.of(HOLDER)
    assert store.staff() == [("op", "山田", ["t1"])] and store.terminals() == ["t1"]
    assert store.authorized("op", "t1") and not store.authorized("op2", "t1")
    store.close()


def test_ids_typed_with_spaces_around_are_stored_as_the_server_reads_them(state: Path) -> None:
    _ok("terminal", "add", HOLDER, " t1\u3000")
    _ok("staff", "add", HOLDER, " op ", given="山田")
    for blank in (" ", "\u3000"):
        assert _holder("staff", "add", HOLDER, blank, given="山田").exit_code == 2
        assert _holder("terminal", "add", HOLDER, blank).exit_code == 2
    store = HolderStore.of(HOLDER)
    assert store.staff() == [("op", "山田", [])] and store.authorized("op", "t1")
    store.close()


@pytest.mark.parametrize("given", ["t" * 1001, "t-1\nforged line", "t-\u202e1"])
def test_an_id_no_caller_could_send_or_that_cannot_be_said_back_is_refused(
        state: Path, given: str) -> None:
    """A terminal of 100,000 characters was registered and said back whole, one with a newline
    or a bidi override too; the communication server takes no field over 1,000 characters."""
    refused = _holder("terminal", "add", HOLDER, given)
    assert refused.exit_code == 2 and "an id is text of up to 1000 characters" in refused.output
    assert _holder("staff", "add", HOLDER, given, given="山田").exit_code == 2
    assert _ok("terminal", "add", HOLDER, "窓口 1") == f"窓口 1 registered for {HOLDER}\n"
    store = HolderStore.of(HOLDER)
    assert store.terminals() == ["窓口 1"] and store.staff() == []
    store.close()


def test_a_store_that_is_no_database_is_said_in_one_line(state: Path) -> None:
    """A holder.db damaged (or another file put in its place) ended `staff list` and every
    other command on it in sqlite3's traceback."""
    _ok("terminal", "add", HOLDER, "t1")
    (path := default_path(HOLDER)).write_bytes(b"not a SQLite database, whatever it was" * 100)
    for args in (("staff", "list", HOLDER), ("terminal", "add", HOLDER, "t2")):
        refused = _holder(*args)
        assert refused.exit_code == 1 and refused.output == (
            f"Error: cannot open the store of {HOLDER} at {path}: file is not a database\n")


def test_ids_typed_with_spaces_around_are_removed_and_tied_as_stored(state: Path) -> None:
    """`staff add --terminal ' t1 '` refused a registered terminal, and `staff remove ' op '` or
    `terminal remove ' t1 '` said the one stored trimmed was not there."""
    _ok("terminal", "add", HOLDER, "t1")
    _ok("staff", "add", HOLDER, "op", "--terminal", " t1\u3000", given="山田")
    store = HolderStore.of(HOLDER)
    assert store.staff() == [("op", "山田", ["t1"])]
    store.close()
    assert "op removed" in _ok("staff", "remove", HOLDER, " op ")
    assert "t1 removed" in _ok("terminal", "remove", HOLDER, "\u3000t1 ")
    for blank in (" ", "\u3000"):
        assert _holder("staff", "remove", HOLDER, blank).exit_code == 2
        assert _holder("terminal", "remove", HOLDER, blank).exit_code == 2
        assert _holder("staff", "add", HOLDER, "op", "--terminal", blank,
                       given="山田").exit_code == 2


def test_staff_tied_to_terminals_act_on_those_alone(tmp_path: Path) -> None:
    store = HolderStore(tmp_path / "holder.db")
    for terminal in ("t1", "t2", "t3"):
        store.add_terminal(terminal)
    store.add_staff("tied", "A", ["t1", "t2"])
    store.add_staff("free", "B")
    assert store.authorized("tied", "t1") and store.authorized("tied", "t2")
    assert not store.authorized("tied", "t3")
    assert all(store.authorized("free", t) for t in ("t1", "t2", "t3"))
    assert not store.authorized("free", "t9") and not store.authorized("nobody", "t1")
    store.remove_terminal("t1")
    store.remove_terminal("t2")  # tied to no registered terminal: may act on none, not any
    assert not any(store.authorized("tied", t) for t in ("t1", "t2", "t3"))
    store.add_staff("tied", "A")  # registered again without terminals: any registered one
    assert store.authorized("tied", "t3")
    store.close()


def test_a_store_made_before_terminal_ties_keeps_its_staff(tmp_path: Path) -> None:
    path = tmp_path / "holder.db"
    with sqlite3.connect(path) as old:
        old.executescript("CREATE TABLE staff (staff_id TEXT PRIMARY KEY, name TEXT NOT NULL);"
                          "CREATE TABLE terminals (terminal_id TEXT PRIMARY KEY);"
                          "INSERT INTO staff VALUES ('op', 'A'); INSERT INTO terminals "
                          "VALUES ('t1');")
    old.close()
    store = HolderStore(path)
    assert store.authorized("op", "t1") and store.staff() == [("op", "A", [])]
    store.close()


@pytest.mark.parametrize("holder", ["../evil", "Town", "a" * 64, "admin", "platform"])
def test_an_invalid_holder_id_is_refused_before_any_file_is_made(
        tmp_path: Path, holder: str) -> None:
    with state_folder(tmp_path / "state") as path:
        for args in (("staff", "list", holder), ("terminal", "add", holder, "t1")):
            result = _holder(*args)
            assert result.exit_code == 1 and len(result.output.splitlines()) == 1, result.output
        assert list(tmp_path.rglob("*")) == [path]


def test_listing_a_holder_with_no_store_yet_makes_nothing(state: Path) -> None:
    """A command that only reads, on a state folder where the holder has no store yet: it says
    there is none, and leaves no folder or store behind."""
    assert _ok("staff", "list", HOLDER) == f"no staff registered for {HOLDER}\n"
    assert _ok("terminal", "list", HOLDER) == f"no terminals registered for {HOLDER}\n"
    assert not (state / "holders").exists()


def test_a_holder_not_registered_here_is_refused(state: Path) -> None:
    result = _holder("staff", "add", "town-y", "op", given="A")
    assert result.exit_code == 1 and "no holder 'town-y' is registered" in result.output
    assert not (state / "holders").exists()


def test_records_are_imported_and_bad_rows_named_by_line_and_field_only(
        state: Path, tmp_path: Path) -> None:
    file = tmp_path / "records.csv"
    file.write_text(RECORDS, encoding="utf-8")
    result = _holder("records", "import", HOLDER, str(file))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"records of {HOLDER}: 2 new, 0 changed, 0 unchanged, 5 rows refused",
        f"  line 5: date_of_birth {NOT_A_DATE}",
        "  line 6: sex is not one of 1/2, 男/女, M/F",
        "  line 7: personal_number is not 12 digits with a valid check digit",
        "  line 8: own_number repeats line 2",
        "  line 9: row has another number of fields than the header"]
    assert not any(secret in result.output for secret in SECRETS)
    again = _holder("records", "import", HOLDER, str(file))
    assert again.output.startswith(f"records of {HOLDER}: 0 new, 0 changed, 2 unchanged")
    store = HolderStore.of(HOLDER)
    assert store.own_numbers() == ["T-1", "T-2"]
    assert store.record("T-1") == (FourAttributes("山田 花子", "桜町1-2-3", date(1980, 4, 1),
                                                  Sex.FEMALE), "123456789018")
    assert store.record("T-2") == (FourAttributes("山田 太郎", "桜町一丁目2番地3",
                                                  date(1979, 5, 2), Sex.MALE), None)
    store.close()


def test_a_date_in_an_eras_first_year_with_no_era_is_refused_as_such(
        state: Path, tmp_path: Path) -> None:
    """元年1月2日 (no era) was imported as born 1 January 2 of the year 1, a record that never
    matches its person: its row is refused, the line saying the era is missing."""
    file = tmp_path / "records.csv"
    file.write_text("own_number,name,address,date_of_birth,sex\n"
                    "T-1,秘密野 名子,桜町1,元年1月2日,F\n", encoding="utf-8")
    result = _holder("records", "import", HOLDER, str(file))
    assert result.exit_code == 1 and "秘密野" not in result.output
    assert result.output.splitlines()[1:] == [
        "  line 2: date_of_birth has 元年 with no era: the first year of which? (平成元年1月8日, "
        "令和元年5月1日, …)"]


def test_a_date_past_any_calendar_refuses_its_row_only(state: Path, tmp_path: Path) -> None:
    """A year such as 令和99999999999年 made the date parser overflow, and the import stopped
    with a traceback, the good rows not imported either."""
    file = tmp_path / "records.csv"
    file.write_text("own_number,name,address,date_of_birth,sex\nT-1,山田 花子,桜町1,1980-04-01,F\n"
                    "T-2,秘密野 名子,桜町9,令和99999999999年1月1日,F\n", encoding="utf-8")
    result = _holder("records", "import", HOLDER, str(file))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "line 3: date_of_birth is not a date" in result.output
    assert "秘密野" not in result.output and "99999999999" not in result.output
    store = HolderStore.of(HOLDER)
    assert store.own_numbers() == ["T-1"]
    store.close()
    file.write_text("own_number,name,address,date_of_birth,sex\nT-1,山田 花子,桜町1,1980-04-01,F\n"
                    f"T-2,{'秘' * 200_000},a,1980-04-01,F\n", encoding="utf-8")  # past csv's limit
    result = _holder("records", "import", HOLDER, str(file))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "line 3 cannot be read as CSV" in result.output and "秘" not in result.output


def test_a_bound_record_whose_attributes_change_is_named_for_staff_to_check(
        state: Path, tmp_path: Path) -> None:
    """Imported again with other four attributes, a bound record kept its link code silently:
    another person's record could answer under the first person's code."""
    file = tmp_path / "records.csv"
    file.write_text("own_number,name,address,date_of_birth,sex\nT-1,山田 花子,桜町1,1980-04-01,F\n"
                    "T-2,山田 太郎,桜町2,1979-05-02,M\n", encoding="utf-8")
    _ok("records", "import", HOLDER, str(file))
    store = HolderStore.of(HOLDER)
    store.bind("T-1", "ABC98765XYZ", 0)
    store.close()
    file.write_text("own_number,name,address,date_of_birth,sex\nT-1,佐藤 一郎,港町9,1980-04-01,M\n"
                    "T-2,山田 太郎,桜町3,1979-05-02,M\n", encoding="utf-8")
    result = _holder("records", "import", HOLDER, str(file))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "  line 2: record T-1 is bound to a link code and its four attributes or personal number "
        "changed: check it is still the person it was bound for",
        f"records of {HOLDER}: 0 new, 2 changed, 0 unchanged, 0 rows refused"]
    assert "佐藤" not in result.output and "港町" not in result.output


def test_a_bound_record_whose_personal_number_changes_is_named_for_staff_to_check(
        state: Path, tmp_path: Path) -> None:
    """A bound record imported again with another personal number was told "changed" alone,
    where other four attributes are named for staff: its binding may be of another person than
    the number now says (the first number a family member's card read by mistake, or the
    second). A number given to a bound record that had none is not named."""
    file = tmp_path / "records.csv"
    file.write_text("own_number,name,address,date_of_birth,sex,personal_number\n"
                    "T-1,山田 花子,桜町1,1980-04-01,F,123456789018\n"
                    "T-2,山田 太郎,桜町2,1979-05-02,M,\n", encoding="utf-8")
    _ok("records", "import", HOLDER, str(file))
    store = HolderStore.of(HOLDER)
    store.bind("T-1", "ABC98765XYZ", 0)
    store.bind("T-2", "369PQRST246", 0)
    store.close()
    file.write_text("own_number,name,address,date_of_birth,sex,personal_number\n"
                    "T-1,山田 花子,桜町1,1980-04-01,F,987654321093\n"
                    "T-2,山田 太郎,桜町2,1979-05-02,M,111111111118\n", encoding="utf-8")
    result = _holder("records", "import", HOLDER, str(file))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "  line 2: record T-1 is bound to a link code and its four attributes or personal number "
        "changed: check it is still the person it was bound for",
        f"records of {HOLDER}: 0 new, 2 changed, 0 unchanged, 0 rows refused"]


def test_a_records_file_without_the_personal_number_column_keeps_the_numbers_held(
        state: Path, tmp_path: Path) -> None:
    """A file of new addresses, without the optional personal_number column, erased the
    personal number of every record it named (told "changed", as an address is): a binding by
    number then found none. The column left out keeps them; an empty cell still clears one."""
    file = tmp_path / "records.csv"
    file.write_text("own_number,name,address,date_of_birth,sex,personal_number\n"
                    "T-1,山田 花子,桜町1,1980-04-01,F,123456789018\n"
                    "T-2,山田 太郎,桜町2,1979-05-02,M,987654321093\n", encoding="utf-8")
    _ok("records", "import", HOLDER, str(file))
    file.write_text("own_number,name,address,date_of_birth,sex\n"
                    "T-1,山田 花子,港町9,1980-04-01,F\nT-2,山田 太郎,桜町2,1979-05-02,M\n"
                    "T-3,佐藤 一郎,桜町3,1980-01-01,M\n", encoding="utf-8")
    assert _ok("records", "import", HOLDER, str(file)).startswith(
        f"records of {HOLDER}: 1 new, 1 changed, 1 unchanged")
    file.write_text("own_number,name,address,date_of_birth,sex,personal_number\n"
                    "T-2,山田 太郎,桜町2,1979-05-02,M,\n", encoding="utf-8")
    assert _ok("records", "import", HOLDER, str(file)).startswith(
        f"records of {HOLDER}: 0 new, 1 changed, 0 unchanged")
    store = HolderStore.of(HOLDER)
    assert [store.record(n) for n in ("T-1", "T-2", "T-3")] == [
        (FourAttributes("山田 花子", "港町9", date(1980, 4, 1), Sex.FEMALE), "123456789018"),
        (FourAttributes("山田 太郎", "桜町2", date(1979, 5, 2), Sex.MALE), None),
        (FourAttributes("佐藤 一郎", "桜町3", date(1980, 1, 1), Sex.MALE), None)]
    store.close()


def test_a_personal_number_in_full_width_or_groups_of_four_is_read(
        state: Path, tmp_path: Path) -> None:
    """A spreadsheet's full-width digits, or the number grouped as the card prints it, refused
    the row, though its date of birth in full-width digits was read."""
    file = tmp_path / "records.csv"
    file.write_text("own_number,name,address,date_of_birth,sex,personal_number\n"
                    "T-1,山田 花子,桜町1,１９８０－０４－０１,F,１２３４５６７８９０１８\n"
                    "T-2,山田 太郎,桜町2,1979-05-02,M,9876 5432 1093\n", encoding="utf-8")
    assert _ok("records", "import", HOLDER, str(file)).startswith(
        f"records of {HOLDER}: 2 new, 0 changed, 0 unchanged, 0 rows refused")
    store = HolderStore.of(HOLDER)
    assert [(store.record(n) or (None, None))[1] for n in ("T-1", "T-2")] == [
        "123456789018", "987654321093"]
    store.close()


def test_an_own_number_in_full_width_is_the_record_and_a_number_in_hyphens_is_read(
        state: Path, tmp_path: Path) -> None:
    """`Ｈ－１` (a spreadsheet's full-width own number) and `H-1` made two records of one, and a
    personal number written `1234-5678-9012` was refused: an own number is keyed as NFKC (the one
    record, the later row refused as a repeat; its data and its removal find it), a number with
    its hyphens dropped; a date with the year last stays refused, saying the year goes first."""
    file, data = tmp_path / "records.csv", tmp_path / "data.csv"
    file.write_text("own_number,name,address,date_of_birth,sex,personal_number\n"
                    "Ｈ－１,山田 花子,桜町1,1980-04-01,F,1234-5678-9018\n"
                    "H-1,山田 花子,桜町1,1980-04-01,F,\n"
                    "H-2,山田 太郎,桜町2,01/02/1975,M,\n", encoding="utf-8")
    data.write_text('own_number,data_type,fields\nＨ－１,local_tax,"{""income"": ""1""}"\n',
                    encoding="utf-8")
    imported = _holder("records", "import", HOLDER, str(file)).output
    assert imported.startswith(f"records of {HOLDER}: 1 new, 0 changed, 0 unchanged, "
                               "2 rows refused"), imported
    assert "line 3: own_number repeats line 2" in imported
    assert "line 4: date_of_birth is not a date" in imported and "the year first" in imported
    _ok("data", "import", HOLDER, str(data))
    with closing(HolderStore.of(HOLDER)) as store:
        assert store.own_numbers() == ["H-1"]
        assert (store.record("H-1") or (None, None))[1] == "123456789018"
        assert store.data("H-1", "local_tax") == {"income": "1"}


def test_provided_data_is_imported_for_records_held(state: Path, tmp_path: Path) -> None:
    records, data = tmp_path / "records.csv", tmp_path / "data.csv"
    records.write_text(RECORDS, encoding="utf-8")
    data.write_text('own_number,data_type,fields\nT-1,local_tax,"{""income"": ""3200000""}"\n'
                    'T-2,local_tax,{"income\nT-9,local_tax,"{""income"": ""1""}"\n'
                    'T-2,local_tax,"{""income"": 4100000}"\n'
                    f'T-2,local_tax,{"[" * 100_000}\n'  # nested past the recursion limit
                    f'T-2,local_tax,{"9" * 5000}\n'  # an integer over Python's 4,300 digits
                    'T-2,local_tax,"{""income"": ""\\ud800""}"\n', encoding="utf-8")
    _holder("records", "import", HOLDER, str(records))
    result = _holder("data", "import", HOLDER, str(data))
    assert result.exit_code == 1 and result.output.splitlines()[1:] == [
        "  line 3: fields is not JSON", "  line 4: own_number has no record (import it first)",
        "  line 5: fields is not a JSON object of strings", "  line 6: fields is not JSON",
        "  line 7: fields is not JSON",
        "  line 8: fields holds a lone surrogate (\\ud800 to \\udfff): no character"]
    assert "3200000" not in result.output and "4100000" not in result.output
    store = HolderStore.of(HOLDER)
    assert store.data("T-1", "local_tax") == {"income": "3200000"}
    assert store.data("T-2", "local_tax") is None
    store.close()


@pytest.mark.parametrize(("header", "row", "said"), [
    ("own_number,name", "T-1,山田", "lacks address, date_of_birth, sex"),
    ("own_number,own_number,name,address,date_of_birth,sex", "F1,F2,山田,桜町1,1980-04-01,F",
     "the header names own_number twice"),  # was F2's record, F1 dropped unsaid
    ("own_number,name,address,date_of_birth,sex,number", "T-1,山田,桜町1,1980-04-01,F,"
     "123456789018", "the header names number, which is no column (columns: own_number, name, "
     "address, date_of_birth, sex, personal_number)")])  # was imported, its number dropped unsaid
def test_a_file_without_the_columns_is_refused_whole(state: Path, tmp_path: Path, header: str,
                                                     row: str, said: str) -> None:
    file = tmp_path / "records.csv"
    file.write_text(f"{header}\n{row}\n", encoding="utf-8")
    result = _holder("records", "import", HOLDER, str(file))
    assert result.exit_code == 1 and said in result.output
    assert "山田" not in result.output


@pytest.mark.parametrize("what", ["records", "data"])
def test_a_file_that_is_not_utf8_is_refused_whole_saying_so(state: Path, tmp_path: Path,
                                                           what: str) -> None:
    """A spreadsheet's CSV in Shift_JIS: said in one line naming the file, no row said back."""
    file = tmp_path / f"{what}.csv"
    header = ("own_number,name,address,date_of_birth,sex" if what == "records"
              else "own_number,data_type,fields")
    file.write_bytes(f"{header}\nT-1,山田 花子,桜町1,1980-04-01,F\n".encode("shift_jis"))
    result = _holder(what, "import", HOLDER, str(file))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert f"{file}: not UTF-8 text" in result.output and "save it as CSV UTF-8" in result.output
    assert "山田" not in result.output

def _three_rows(tmp_path: Path) -> tuple[Path, Path]:
    """A records file and a data file of three records, T-0 to T-2."""
    records, data = tmp_path / "records.csv", tmp_path / "data.csv"
    records.write_text("own_number,name,address,date_of_birth,sex\n" + "".join(
        f"T-{n},山田 花子,桜町{n},1980-04-01,F\n" for n in range(3)), encoding="utf-8")
    data.write_text("own_number,data_type,fields\n" + "".join(
        f'T-{n},local_tax,"{{""income"": ""{n}""}}"\n' for n in range(3)), encoding="utf-8")
    return records, data


def _called_in_each_store(monkeypatch: pytest.MonkeyPatch, name: str,
                          called: Callable[[str], None]) -> None:
    """Each holder store opened from now on has SQL function `name` call `called` (a trigger's)."""
    opened = HolderStore.__init__

    def watched(store: HolderStore, path: Path) -> None:
        opened(store, path)
        store.db.create_function(name, 1, called)

    monkeypatch.setattr(HolderStore, "__init__", watched)


@pytest.mark.parametrize("command", ["records", "data"])
def test_an_import_cut_short_leaves_none_of_it_applied(
        state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """An import was stored a quarter of a second of rows at a time: one that failed after that
    (a full disk, a crash) left its first rows applied and the rest not."""
    records, data = _three_rows(tmp_path)
    if command == "data":
        _ok("records", "import", HOLDER, str(records))
    store = HolderStore.of(HOLDER)  # each row written calls written(own number)
    store.db.execute(f"CREATE TRIGGER written AFTER INSERT ON {command} "
                     "BEGIN SELECT written(NEW.own_number); END")
    store.close()
    written: list[object] = []

    def slow_then_cut(own_number: str) -> None:
        written.append(own_number)
        if len(written) == 2:
            time.sleep(0.3)  # a large import's while
        if len(written) == 3:
            raise sqlite3.OperationalError("database or disk is full")

    _called_in_each_store(monkeypatch, "written", slow_then_cut)
    failed = _holder(command, "import", HOLDER, str(records if command == "records" else data))
    assert isinstance(failed.exception, sqlite3.OperationalError), failed.output
    monkeypatch.undo()
    store = HolderStore.of(HOLDER)
    applied = [n for n in store.own_numbers() if command == "records" or store.data(n, "local_tax")]
    store.close()
    assert applied == [] and len(written) == 3


def test_purge_forgets_requests_answered_more_than_7_years_ago(state: Path) -> None:
    store = HolderStore.of(HOLDER)
    for request_id in ("old", "recent"):
        request = store.open_request(request_id, "BINDING", "T-1", "op", "t")
        store.resolve(request, "BOUND")
    store.db.execute("UPDATE requests SET answered_at = '2018-01-02T00:00:00.000+00:00' "
                     "WHERE request_id = 'old'")
    store.close()
    said = _ok("purge", HOLDER)
    assert said.startswith(f"{HOLDER}: 1 requests, 0 access-log entries and 0 investigations "
                           "closed from before ")
    store = HolderStore.of(HOLDER)
    assert store.request("old") is None and store.request("recent") is not None
    store.close()


async def test_the_holders_server_forgets_what_is_past_the_retention_at_its_start(
        town: town_setup.Town, tmp_path: Path) -> None:
    """What its store keeps past the access log's retention is forgotten by the server itself,
    from its start on, with no `holder purge` run."""
    holder = "wasure-town"
    provision.add_holder(provision.admin_client(), holder, provision.Report())
    store = HolderStore(tmp_path / "holder.db")
    for request_id in ("old", "recent"):
        store.resolve(store.open_request(request_id, "BINDING", "T-1", "op", "t"), "BOUND")
    store.db.execute("UPDATE requests SET answered_at = '2018-01-02T00:00:00.000+00:00' "
                     "WHERE request_id = 'old'")
    client = HolderClient(holder, store)
    await client.start()
    try:
        deadline = Deadline(5, "the request past the retention forgotten")
        while store.request("old") is not None:
            deadline.check()
            await asyncio.sleep(0.05)
        assert store.request("recent") is not None
    finally:
        await client.stop()
        store.close()


def _one_of_a_kind() -> Resident:
    """A resident no one else shares the four attributes with: binding finds them alone."""
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    try:
        return next(r for code in registry.resident_codes() if (r := registry.by_code(code))
                    and len(registry.find(r.four_attributes)) == 1)
    finally:
        registry.close()


def test_a_role_no_legal_pattern_names_is_warned_of(town: town_setup.Town) -> None:
    """A typo registers a holder that every request of and to is refused for: said at once."""
    typo = renkei("holder", "register", "typo-town", "--name", "誤町", "--role", "munipality")
    assert "no legal pattern names role 'munipality'" in typo.stderr
    assert "municipality" in typo.stderr  # among the roles named
    fixed = renkei("holder", "register", "typo-town", "--name", "誤町", "--role", "municipality")
    assert "role munipality → municipality" in fixed.stdout and "warning" not in fixed.stderr


def test_a_registration_the_directory_refuses_leaves_nothing_on_the_broker(
        town: town_setup.Town) -> None:
    """A new holder refused (UnitTaken) was refused after its principal, credentials, topics and
    ACLs were made: a principal that could log in and read, under no directory entry."""
    renkei("holder", "register", "hama-clinic", "--name", "浜町診療所",
           "--role", "medical_institution", "--unit", "hama-medical")
    refused = renkei("holder", "register", "hama-medical", "--name", "浜町医療",
                     "--role", "medical_institution", check=False)
    said_in_one_line(refused.stderr, "already the unit of hama-clinic")
    admin = provision.admin_client()
    assert not credentials.known("hama-medical")
    made = {t.name for t in topics.holder_topics("hama-medical")}
    assert not made & set(admin.list_topics().topics)
    its_own = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,  # type: ignore[arg-type]
                               "User:hama-medical", "*", AclOperation.ANY, AclPermissionType.ANY)
    assert admin.describe_acls(its_own).result() == []


def test_a_holder_is_refused_the_services_role(town: town_setup.Town) -> None:
    """`--role service` registered a holder every re-keying of its unit passed by."""
    refused = renkei("holder", "register", "hama-annex", "--name", "浜町分室",
                     "--role", "service", check=False)
    said_in_one_line(refused.stderr, "role 'service' is the platform services' own")
    assert not credentials.known("hama-annex")


def test_joining_another_holders_own_unit_needs_share_unit(town: town_setup.Town) -> None:
    """`--unit kawa-town` alone gave a new holder every link code of the town's records."""
    joining = ("register", "kawa-annex", "--name", "川町分室", "--role", "municipality",
               "--unit", "kawa-town")
    _ok("register", "kawa-town", "--name", "川町", "--role", "municipality")
    refused = _holder(*joining)
    assert "give --share-unit" in str(refused.exception)
    assert "link-code unit kawa-town" in _ok(*joining, "--share-unit")


def test_registering_a_holder_checks_the_directorys_topics_once(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """`holder register` made sure the directory's topics were on the broker three times (each
    a connection and a metadata request of its own): it checks both, once."""
    checked: list[tuple[str, ...]] = []

    async def counted(access: KafkaAccess, *needed: str) -> None:
        checked.append(needed)
        await provisioned(access, *needed)
    monkeypatch.setattr("processors.directory.provisioned", counted)
    result = CliRunner().invoke(holder_cli, ["register", "once-town", "--name", "一度町",
                                             "--role", "municipality"])
    assert result.exit_code == 0, result.output
    assert "registered once-town (一度町): role municipality" in result.output
    assert checked == [(topics.DIRECTORY, topics.PATTERNS)]


@pytest.mark.parametrize(("damage", "said"), [
    ("lost", "is not the one the holder directory has: restore it from a backup"),
    ("cut", "cannot be read (JSONDecodeError): restore it from a backup")])
def test_a_holder_run_with_a_sealing_key_not_its_own_is_refused(
        town: town_setup.Town, damage: str, said: str) -> None:
    """A key file lost (made anew at the start) or damaged: nothing sealed to the holder could
    be opened, or a traceback."""
    holder = f"key-{damage}-town"
    renkei("holder", "register", holder, "--name", "鍵町", "--role", "municipality")
    key = private_dir("keys", "sealing") / f"{holder}.json"
    if damage == "lost":
        key.unlink()
    else:
        key.write_text(key.read_text(encoding="utf-8")[:20], encoding="utf-8")
    run = renkei("holder", "run", holder, check=False, timeout=30)  # else it serves on
    assert run.returncode == 1
    said_in_one_line(run.stderr, f"the sealing key of {holder} in {key} {said}")
    assert recorded(holder) is None


def _kept_by_the_cli(holder: str, name: str, records: Path) -> None:
    """A holder registered and kept by the CLI: terminals t1 and t2, staff `op` tied to t1, and
    a record K-1 of a person binding finds alone."""
    person = _one_of_a_kind()
    renkei("holder", "register", holder, "--name", name, "--role", "municipality")
    for terminal in ("t1", "t2"):
        _ok("terminal", "add", holder, terminal)
    _ok("staff", "add", holder, "op", "--terminal", "t1", given=f"{name}職員")
    records.write_text("own_number,name,address,date_of_birth,sex\n"
                       f"K-1,{person.name},{person.address},{person.date_of_birth},"
                       f"{int(person.sex)}\n", encoding="utf-8")
    assert "1 new" in _ok("records", "import", holder, str(records))


def _running(holder: str, log: Path) -> tuple[subprocess.Popen[bytes], Address]:
    """`holder run`, once its server has written its address."""
    address_file(holder).unlink(missing_ok=True)  # one a killed run left
    server = spawn("holder", "run", holder, log=log)
    deadline = Deadline(60, f"{holder}'s server address")
    while (address := recorded(holder)) is None:
        assert server.poll() is None, log.read_text()
        deadline.check(log.read_text()[-2000:])
        time.sleep(0.2)
    return server, address


async def test_a_holder_kept_by_the_cli_binds_through_its_server(
        platform: town_setup.Processes, tmp_path: Path) -> None:
    """Registered and run by the CLI, kept by the CLI: a record bound through its server."""
    _kept_by_the_cli("kita-town", "北町役場", tmp_path / "records.csv")
    server, address = _running("kita-town", tmp_path / "holder.log")
    try:
        async with aiohttp.ClientSession(headers=address.headers) as http:
            body = {"own_number": "K-1", "operator": "op", "terminal": "t2"}
            async with http.post(address.url + "/bindings", json=body) as refused:
                assert refused.status == 403
            async with http.post(address.url + "/bindings",
                                 json={**body, "terminal": "t1"}) as sent:
                assert sent.status == 202, await sent.text()
                request_id = (await sent.json())["request_id"]
            async with http.get(f"{address.url}/requests/{request_id}?wait=30") as answered:
                outcome = await answered.json()
    finally:
        stop(server)
    assert (outcome["status"], outcome["detail"]) == ("BOUND", None)


async def test_a_binding_asked_again_with_its_key_after_a_kill_is_the_one_made(
        platform: town_setup.Processes, tmp_path: Path) -> None:
    """The server killed (-9) once it has recorded a binding request, its caller not knowing
    the id: asked again with the same Idempotency-Key once it runs again, it answers that
    request's id and makes none; the request is answered once."""
    holder, log = "higashi-town", tmp_path / "holder.log"
    _kept_by_the_cli(holder, "東町役場", tmp_path / "records.csv")
    body = {"own_number": "K-1", "operator": "op", "terminal": "t1"}
    ids = []
    for _ in range(2):
        server, address = _running(holder, log)
        try:
            async with aiohttp.ClientSession(headers={
                    **address.headers, "Idempotency-Key": "binding K-1"}) as http, \
                    http.post(address.url + "/bindings", json=body) as sent:
                assert sent.status == 202, await sent.text()
                ids.append((await sent.json())["request_id"])
            if len(ids) == 1:
                server.kill()
                server.wait()
                continue
            async with aiohttp.ClientSession(headers=address.headers) as http, \
                    http.get(f"{address.url}/requests/{ids[0]}?wait=30") as answered:
                outcome = await answered.json()
        finally:
            stop(server)
    assert ids[0] == ids[1], "a request made again"
    assert outcome["status"] == "BOUND", outcome
    store = HolderStore.of(holder)
    try:
        assert store.counts() == {"BOUND": 1, "duplicates dropped": 0}
    finally:
        store.close()


def test_data_imported_onto_the_wrong_record_is_removed(state: Path, tmp_path: Path) -> None:
    """A vaccination record imported onto the wrong patient could not be taken back: `holder
    data` had only import (add or update), a file without the row left it, and the holder went on
    providing it; `data remove` takes a data file's rows (own_number, data_type) away."""
    records, data, wrong = (tmp_path / name for name in ("records.csv", "data.csv", "wrong.csv"))
    records.write_text(RECORDS, encoding="utf-8")
    data.write_text('own_number,data_type,fields\nT-1,vaccination,"{""dose"": ""1""}"\n'
                    'T-2,vaccination,"{""dose"": ""2""}"\n', encoding="utf-8")
    wrong.write_text('own_number,data_type,fields\nT-2,vaccination,"{""dose"": ""2""}"\n'
                     "T-1,local_tax,\nT-2,,\n", encoding="utf-8")
    _holder("records", "import", HOLDER, str(records))
    _ok("data", "import", HOLDER, str(data))
    result = _holder("data", "remove", HOLDER, str(wrong))
    assert result.exit_code == 1 and result.output.splitlines() == [
        f"data of {HOLDER}: 1 removed, 2 rows refused",
        "  line 3: data_type is not provided on that record (nothing to remove)",
        "  line 4: data_type is empty"]
    store = HolderStore.of(HOLDER)
    assert store.data("T-2", "vaccination") is None
    assert store.data("T-1", "vaccination") == {"dose": "1"}
    store.close()


def test_a_record_is_removed_with_its_data_and_link_code_its_log_kept(
        state: Path, tmp_path: Path) -> None:
    """A patient who left, a duplicate, a record under the wrong own number could not be taken
    away: `holder records` had only import. `records remove` takes a file's own numbers away,
    each record with its data and binding (a query of its link code finds nothing from then
    on) and its open cases closed; the access log and its requests stay (kept the retention). A
    record with a request in flight is refused (its answer would come to no record), and so is
    an own number of no record, each by line alone (no own number, no personal data said)."""
    records, data, gone = (tmp_path / name for name in ("records.csv", "data.csv", "gone.csv"))
    records.write_text(RECORDS, encoding="utf-8")
    data.write_text('own_number,data_type,fields\nT-1,vaccination,"{""dose"": ""1""}"\n'
                    'T-2,vaccination,"{""dose"": ""2""}"\n', encoding="utf-8")
    _holder("records", "import", HOLDER, str(records))
    _ok("data", "import", HOLDER, str(data))
    store = HolderStore.of(HOLDER)
    with store.transaction():
        assert store.bind("T-1", "ABC98765XYZ", 0) is None
        assert store.bind("T-2", "369PQRST246", 0) is None
        store.add_record("T-3", FourAttributes("山田 一子", "桜町3", date(1990, 1, 1), Sex.FEMALE))
        store.investigate("case-3", "T-3", "the address differs")
        asked = store.open_request("req-1", "LINKAGE", "T-1", "op", "t1", pattern_id="P-037",
                                   provider="nenkin", data_type="pension", purpose="審査")
        store.resolve(asked, "FOUND", result={"amount": "1"})
        store.log("req-1", "REQUESTER", "op", "t1", "FOUND", counterpart="nenkin",
                  pattern_id="P-037", data_type="pension", purpose="審査", content="{}")
        store.open_request("req-2", "BINDING", "T-2", "op", "t1")  # in flight (SENT)
    store.close()
    gone.write_text("own_number,name\nT-1,秘密野 名子\nT-2,\nT-9,\n\nT-1,\n,秘密野 二子\nT-3,\n",
                    encoding="utf-8")
    result = _holder("records", "remove", HOLDER, str(gone))
    assert result.exit_code == 1 and result.output.splitlines() == [
        f"records of {HOLDER}: 2 removed, 4 rows refused",
        "  line 3: own_number has a request in flight (req-2): remove it once that is answered "
        "or timed out (its communication server running)",
        "  line 4: own_number has no record (nothing to remove)",
        "  line 6: own_number repeats line 2",
        "  line 7: own_number is empty"]
    assert "秘密野" not in result.output
    store = HolderStore.of(HOLDER)
    try:
        assert store.own_numbers() == ["T-2"] and store.record("T-1") is None
        assert store.data("T-1", "vaccination") is None and store.binding("T-1") is None
        assert store.provided("ABC98765XYZ", "vaccination") is None
        assert store.provided("ABC98765XYZ", "vaccination", previous="ABC98765XYZ") is None
        assert store.provided("369PQRST246", "vaccination") == {"dose": "2"}
        assert store.investigations() == []
        assert [e.request_id for e in store.access_log()] == ["req-1"]
        assert store.request("req-1") is not None and store.request("req-2") is not None
    finally:
        store.close()
    again = _holder("records", "remove", HOLDER, str(gone))
    assert again.output.startswith(f"records of {HOLDER}: 0 removed, 6 rows refused")


def test_a_removal_of_records_cut_short_leaves_none_of_it_applied(
        state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records removed in one write transaction: a fault (a full disk) at the third leaves the
    first two, their data and bindings as they were."""
    records, data = _three_rows(tmp_path)
    _ok("records", "import", HOLDER, str(records))
    _ok("data", "import", HOLDER, str(data))
    store = HolderStore.of(HOLDER)
    with store.transaction():
        store.bind("T-0", "ABC98765XYZ", 0)
    store.db.execute("CREATE TRIGGER removed AFTER DELETE ON records "
                     "BEGIN SELECT removed(OLD.own_number); END")
    store.close()
    removed: list[object] = []

    def cut_at_the_third(own_number: str) -> None:
        removed.append(own_number)
        if len(removed) == 3:
            raise sqlite3.OperationalError("database or disk is full")

    _called_in_each_store(monkeypatch, "removed", cut_at_the_third)
    failed = _holder("records", "remove", HOLDER, str(records))  # a records file: own numbers
    assert isinstance(failed.exception, sqlite3.OperationalError), failed.output
    monkeypatch.undo()
    store = HolderStore.of(HOLDER)
    try:
        assert store.own_numbers() == ["T-0", "T-1", "T-2"] and len(removed) == 3
        assert store.provided("ABC98765XYZ", "local_tax") == {"income": "0"}
    finally:
        store.close()
