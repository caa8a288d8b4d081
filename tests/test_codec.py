"""The codec: single-object encoding, clear refusals, schema evolution and its gate."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import traceback
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest
from fastavro.utils import generate_many

from registry.residents import FourAttributes, Sex
from renkei.state import STATE_ENV
from schemas import compatibility
from schemas.codec import (
    CODEC,
    HEADER,
    MAX_BYTES,
    SCHEMA_DIR,
    Codec,
    MalformedMessage,
    OversizedMessage,
    UnexpectedMessage,
    UnknownSchema,
    to_record,
)
from schemas.messages import (
    BindingAnswer,
    BindingCandidate,
    HolderEntry,
    LegalPattern,
    LinkageRequest,
    Outcome,
    ProviderAnswer,
    ProviderQuery,
    Rejection,
    Suspension,
)

NOW = datetime(2026, 11, 23, 9, 30, 0, 123000, tzinfo=UTC)


def test_round_trip_with_nested_records_enums_and_dates() -> None:
    answer = BindingAnswer("r-1", "FOUND", "", (BindingCandidate("ABC98765XYZ", b"\x01"),), 2,
                           "city-a")
    assert CODEC.decode(CODEC.encode(answer), BindingAnswer) == answer
    person = FourAttributes("髙橋　太郎", "桜町1-2-3", date(1980, 2, 29), Sex.MALE)
    assert CODEC.decode(CODEC.encode(person), FourAttributes) == person


def test_each_message_names_its_schema_by_fingerprint() -> None:
    data = CODEC.encode(Rejection("r", "SUSPENDED", "x", NOW))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == CODEC.latest("Rejection").fingerprint
    assert CODEC.name_of(data) == "Rejection"
    assert CODEC.name_of(data[:2] + b"\x00" * 8 + data[10:]) is None
    assert CODEC.name_of(b"not a message") is None


def test_unknown_schema_malformed_and_oversized_are_refused_clearly() -> None:
    good = CODEC.encode(Rejection("r", "MALFORMED", "x", NOW))
    with pytest.raises(UnknownSchema, match="unknown schema fingerprint"):
        CODEC.decode(good[:2] + b"\x00" * 8 + good[10:], Rejection)
    with pytest.raises(MalformedMessage, match="no C3 01 header"):
        CODEC.decode(b"{\"json\": true}", Rejection)
    with pytest.raises(MalformedMessage):
        CODEC.decode(good[:-3], Rejection)
    with pytest.raises(MalformedMessage, match="trailing"):
        CODEC.decode(good + b"\x00", Rejection)
    with pytest.raises(OversizedMessage):
        CODEC.decode(b"\xc3\x01" + b"\x00" * MAX_BYTES, Rejection)
    with pytest.raises(UnexpectedMessage, match="a Rejection is not expected"):
        CODEC.decode(good, LinkageRequest)


@pytest.mark.parametrize("person, quoted, said", [
    (FourAttributes("髙橋　太郎", "桜町1-2-3", cast(date, "1980/02/29"), Sex.MALE), "1980", ""),
    (FourAttributes("髙橋　太郎", "桜町1-2-3", date(1980, 2, 29), cast(Sex, "男")), "男", ""),
    (FourAttributes(cast(str, 1980), "桜町1-2-3", date(1980, 2, 29), Sex.MALE), "1980",
     ", on field name")])
def test_a_message_that_cannot_be_written_is_refused_without_its_values(
        person: FourAttributes, quoted: str, said: str) -> None:
    """fastavro's error may quote the value it could not write (a date of birth, a sex), and it
    went into MalformedMessage's words and its cause, so into any log of it, traceback and all;
    the field is said where fastavro names it."""
    with pytest.raises(MalformedMessage) as refused:
        CODEC.encode(person)
    assert str(refused.value).endswith(f"Error{said})"), refused.value
    told = "".join(traceback.format_exception(refused.value))
    assert quoted not in told and "髙橋" not in told, told


def test_a_corrupt_body_is_described_in_the_same_words_everywhere() -> None:
    """The words go back to the sender and are matched by the fuzz run in another process: no
    object's address (fastavro's EOF message names the buffer), no empty text."""
    good = CODEC.encode(Rejection("r", "MALFORMED", "x", NOW))
    for cut in range(1, len(good) - 10):
        with pytest.raises(MalformedMessage) as refused:
            CODEC.decode(good[:-cut], Rejection)
        words = str(refused.value)
        assert " at 0x" not in words and not words.endswith(": "), words
        assert words == f"corrupt Rejection body: the record runs past the end of its " \
                        f"{len(good) - cut - 10} bytes of body"


def test_an_enum_index_out_of_its_symbols_is_refused_not_read_from_the_end() -> None:
    """fastavro took index -2 of a status as REFUSED (symbols[-2]), a second byte form of an
    answer with index 2; -1 read as TIMED_OUT, the last symbol."""
    good = CODEC.encode(ProviderAnswer("r", b"t", "L", "REFUSED", b"p"))
    status = len(good) - 3  # the enum's zig-zag index, before the payload: its length, "p"
    assert good[status] == 2 * 2
    for index, byte in ((-1, 1), (-2, 3), (4, 8)):
        with pytest.raises(MalformedMessage, match=f"status is enum index {index}, not one of "
                                                   r"its 4 symbols \(0 to 3\)"):
            CODEC.decode(good[:status] + bytes([byte]) + good[status + 1:], ProviderAnswer)
    assert CODEC.decode(good, ProviderAnswer).status == "REFUSED"


def test_an_older_writers_enum_index_out_of_its_symbols_is_refused() -> None:
    """A message of an older schema version is read into the newest: its indexes checked too."""
    v1 = CODEC.encode_record("BindingAnswer", {"request_id": "r", "status": "FOUND",
                                               "detail": "", "candidates": []}, version=1)
    status = HEADER + 2
    assert v1[status] == 0 and v1[2:HEADER] != CODEC.latest("BindingAnswer").fingerprint
    with pytest.raises(MalformedMessage, match="status is enum index -1"):
        CODEC.decode(v1[:status] + b"\x01" + v1[status + 1:], BindingAnswer)


def test_older_writer_is_read_with_the_newer_schema() -> None:
    """LegalPattern v2 added annex_item: a v1 message reads with the default."""
    v1 = {"pattern_id": "P-1", "version": 1, "legal_basis": "法", "purpose": "目的",
          "requester_role": "municipality", "provider_role": "pension_service",
          "data_types": ["local_tax"], "valid_from": NOW, "valid_to": None}
    data = CODEC.encode_record("LegalPattern", v1, version=1)
    pattern = CODEC.decode(data, LegalPattern)
    assert pattern.annex_item is None and pattern.data_types == ("local_tax",)
    assert data[2:10] != CODEC.latest("LegalPattern").fingerprint


def test_a_directory_entry_of_before_signing_reads_with_no_signing_key() -> None:
    """HolderEntry v2 added the holder's signing key: an entry written with v1 has none."""
    v1 = {"holder_id": "city-a", "name": "A", "role": "municipality", "link_unit": "city-a",
          "key_epoch": 0, "public_key": b"k" * 32, "private": False, "active": True,
          "updated_at": NOW}
    entry = CODEC.decode(CODEC.encode_record("HolderEntry", v1, version=1), HolderEntry)
    assert entry.signing_key is None and entry.public_key == b"k" * 32


def test_a_resumed_entry_of_before_v5_reads_as_never_suspended() -> None:
    """HolderEntry v5 added when a resumed holder was resumed: a v4 entry, resumed or never
    suspended, reads with none, active at every time (its suspension's time it did not name)."""
    v4 = {"holder_id": "city-a", "name": "A", "role": "municipality", "link_unit": "city-a",
          "key_epoch": 0, "public_key": b"k" * 32, "private": False, "active": True,
          "updated_at": NOW, "action_id": "RESUME@1", "action": "RESUME"}
    entry = CODEC.decode(CODEC.encode_record("HolderEntry", v4, version=4), HolderEntry)
    assert (entry.active, entry.inactive_since, entry.resumed_at) == (True, None, None)
    assert entry.action == "RESUME"


def test_an_entry_keeps_its_earlier_suspensions_and_one_of_before_v6_reads_with_none() -> None:
    """HolderEntry v6 added a holder's earlier suspensions: an entry suspended again keeps them
    through the codec, and a v5 entry reads with none, only its last suspension known."""
    earlier = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    v5 = {"holder_id": "city-a", "name": "A", "role": "municipality", "link_unit": "city-a",
          "key_epoch": 0, "public_key": b"k" * 32, "private": False, "active": False,
          "updated_at": NOW, "inactive_since": NOW}
    entry = CODEC.decode(CODEC.encode_record("HolderEntry", v5, version=5), HolderEntry)
    assert (entry.active, entry.inactive_since, entry.suspensions) == (False, NOW, ())
    again = HolderEntry("city-a", "A", "municipality", "city-a", 0, b"k" * 32, False, False, NOW,
                        suspensions=(Suspension(earlier, earlier.replace(hour=10)),))
    assert CODEC.decode(CODEC.encode(again), HolderEntry) == again


def test_a_suspended_holders_rejection_reads_as_unknown_holder_to_a_v2_reader(
        tmp_path: Path) -> None:
    """Rejection v3 adds SUSPENDED: the newest reads it; a v2 reader given v3's schema reads it
    as its enum's default, UNKNOWN_HOLDER (what it was told before), its fingerprint unchanged
    by the default; one that knows no v3 refuses the message as UNKNOWN_SCHEMA."""
    data = CODEC.encode(Rejection("r", "SUSPENDED", "d", NOW))
    assert CODEC.decode(data, Rejection).reason == "SUSPENDED"
    v2, v3 = CODEC.versions["Rejection"][1:]
    assert (v2.version, v3.version) == (2, 3) and data[2:HEADER] == v3.fingerprint
    buf = io.BytesIO(data[HEADER:])
    read = cast(dict[str, Any], fastavro.schemaless_reader(buf, v3.parsed, v2.parsed))
    assert read["reason"] == "UNKNOWN_HOLDER"
    shutil.copy(SCHEMA_DIR / "Rejection.v1.avsc", tmp_path)
    shipped = json.loads((SCHEMA_DIR / "Rejection.v2.avsc").read_text())  # as v2 shipped
    del shipped["fields"][1]["type"]["default"]
    (tmp_path / "Rejection.v2.avsc").write_text(json.dumps(shipped))
    old = Codec(tmp_path)
    assert old.latest("Rejection").fingerprint == v2.fingerprint
    with pytest.raises(UnknownSchema):
        old.decode(data, Rejection)


def _last_release(tmp_path: Path) -> Codec:
    """A codec of a release before this one: every schema but each one's newest version."""
    for name, versions in CODEC.versions.items():
        for schema in versions[:-1] if len(versions) > 1 else versions:
            shutil.copy(SCHEMA_DIR / f"{name}.v{schema.version}.avsc", tmp_path)
    return Codec(tmp_path)


def test_a_message_saying_nothing_newer_is_read_by_the_last_release(tmp_path: Path) -> None:
    """Every message was written with its schema's newest version, so a process of the last
    release (a holder's library, a platform instance in a rolling restart) stopped on the first
    it read (NewerVersion): on any Rejection once v3 added SUSPENDED, on every directory entry
    once v6 added suspensions. One whose fields the newest added are at their defaults is
    written with the oldest version that holds it, read alike by both; one that says what only
    the newest can (SUSPENDED) is written with it."""
    last = _last_release(tmp_path)
    said = [Rejection("r", "MALFORMED", "x", NOW), Rejection("r", "NOT_PERMITTED", "x", NOW, NOW),
            HolderEntry("city-a", "A", "municipality", "city-a", 0, b"k" * 32, False, True, NOW,
                        b"s" * 32),
            Outcome("r", "s", b"a", NOW, answered_at=NOW), ProviderQuery("r", b"t", "L", "B", "P",
                                                                        "d", NOW)]
    for message in said:
        data = CODEC.encode(message)
        assert CODEC.decode(data, type(message)) == message
        name, record = last.decode_record(data)
        assert name == type(message).__name__
        assert all(record[f] == to_record(message)[f] for f in record), record
    suspended = CODEC.encode(Rejection("r", "SUSPENDED", "d", NOW))
    assert suspended[2:HEADER] == CODEC.latest("Rejection").fingerprint
    with pytest.raises(UnknownSchema):
        last.decode_record(suspended)


@pytest.mark.parametrize("name", [n for n, versions in CODEC.versions.items()
                                  if len(versions) > 1])
def test_each_older_versions_record_is_written_again_as_it_was_read(name: str) -> None:
    """A record of each older version, read into the newest and written again, is written with
    that version (or an older one holding it) and reads the same."""
    versions = CODEC.versions[name]
    for at, old in enumerate(versions[:-1]):
        held = {v.fingerprint for v in versions[:at + 1]}  # Sweep v1's is v2's: defaults aside
        for written in generate_many(old.parsed, 5):
            data = CODEC.encode_record(name, written, version=old.version)
            read = CODEC.decode_record(data)[1]
            again = CODEC.encode_record(name, read)
            assert again[2:HEADER] in held
            assert CODEC.decode_record(again)[1] == read


@pytest.mark.parametrize("name", [n for n, olders in CODEC.older.items() if olders])
def test_a_message_written_with_an_older_version_reads_as_it_was_sent(name: str) -> None:
    """Its fields the older version lacks read as their defaults, of their type: fastavro read a
    bytes field's default as text (a number change's ticket b"" as ""), which failed at every
    use of it once such a message was written with the version before that field."""
    newest = CODEC.latest(name)
    types = {f["name"]: f["type"] for f in newest.definition["fields"]}
    for older in CODEC.older[name]:
        record = generate_many(newest.parsed, 1).__next__()
        for field, symbols in older.symbols:
            record[field] = sorted(symbols)[0]
        for field, default in older.added:
            record[field] = default.encode("latin-1") if types[field] == "bytes" else default
        data = CODEC.encode_record(name, record)
        assert data[2:HEADER] != newest.fingerprint or (  # written with an older one
            older.schema.fingerprint == newest.fingerprint)  # (Sweep v1's is v2's)
        read = CODEC.decode_record(data)[1]
        assert [(f, read[f], type(read[f])) for f, _ in older.added] == [
            (f, record[f], type(record[f])) for f, _ in older.added]


def test_the_shipped_schemas_pass_the_compatibility_gate() -> None:
    assert compatibility.problems() == []


def test_the_gate_catches_an_incompatible_change(tmp_path: Path) -> None:
    for path in SCHEMA_DIR.glob("LegalPattern.*"):
        shutil.copy(path, tmp_path)
    breaking = json.loads((tmp_path / "LegalPattern.v2.avsc").read_text())
    breaking["fields"].append({"name": "signed_by", "type": "string"})  # no default
    (tmp_path / "LegalPattern.v3.avsc").write_text(json.dumps(breaking))
    found = compatibility.problems(Codec(tmp_path))
    assert any("v3 cannot read v2" in p and "signed_by" in p for p in found)


def test_every_message_a_holder_writes_has_its_request_id_first() -> None:
    """A message of a schema a newer holder library wrote is refused under its first field
    (rejection.refused_id): each version of each such schema has its request id there."""
    from processors.outbox import OUTBOX_MESSAGES

    for cls in OUTBOX_MESSAGES:
        for schema in CODEC.versions[cls.__name__]:
            first = schema.definition["fields"][0]
            assert (first["name"], first["type"]) == ("request_id", "string"), (
                cls.__name__, schema.version)


MESSAGE_MODULES = ("schemas.messages", "audit.events", "audit.heads", "registry.residents")


def _classes() -> dict[str, type]:
    """Every dataclass of the modules that hold the messages, by name."""
    import importlib
    from dataclasses import is_dataclass

    return {name: cls for module in MESSAGE_MODULES
            for name, cls in vars(importlib.import_module(module)).items()
            if isinstance(cls, type) and is_dataclass(cls)}


def _record_types(avro_type: Any) -> list[dict[str, Any]]:
    """The record definitions a field's Avro type holds (in a union, an array, or as is)."""
    if isinstance(avro_type, list):
        return [r for t in avro_type for r in _record_types(t)]
    if isinstance(avro_type, dict) and avro_type["type"] == "array":
        return _record_types(avro_type["items"])
    return [avro_type] if isinstance(avro_type, dict) and avro_type["type"] == "record" else []


def _differences(definition: dict[str, Any], classes: dict[str, type]) -> list[str]:
    """Where a record's newest schema and its dataclass disagree on fields, nested ones too."""
    from dataclasses import fields

    name = definition["name"].rsplit(".", 1)[-1]
    cls = classes.get(name)
    if cls is None:
        return [f"{name}: no dataclass"]
    said = [f["name"] for f in definition["fields"]]
    kept = [f.name for f in fields(cls)]
    found = [] if said == kept else [f"{name}: schema {said}, dataclass {kept}"]
    return found + [d for f in definition["fields"] for nested in _record_types(f["type"])
                    for d in _differences(nested, classes)]


def test_each_schema_is_a_dataclass_with_the_same_fields() -> None:
    """fastavro writes a record's schema fields and drops any other key without a word: a field
    added to a message's dataclass without a new schema version would be lost on the wire, and a
    schema whose message no code writes is dead."""
    classes = _classes()
    assert [d for versions in CODEC.versions.values()
            for d in _differences(versions[-1].definition, classes)] == []


def test_a_command_that_encodes_nothing_parses_no_schema(tmp_path: Path) -> None:
    """Every `renkei` process imports the codec, most commands (an operator's mistake said, a
    listing) to encode nothing: the schemas are parsed at the codec's first use, not at its
    import (~80 ms of each start). Once used, it reads and writes as ever."""
    script = (
        "import fastavro.schema\n"
        "parsed = []\n"
        "real = fastavro.schema.parse_schema\n"
        "fastavro.schema.parse_schema = lambda *a, **k: parsed.append(1) or real(*a, **k)\n"
        "from renkei.cli import main\n"
        "try:\n"
        f"    main(['audit', 'head', '--db', {str(tmp_path / 'none.db')!r}],"
        " standalone_mode=False)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
        "print(len(parsed))\n"
        "from schemas.codec import CODEC\n"
        "from schemas.messages import Ping\n"
        "from datetime import UTC, datetime\n"
        "ping = Ping('r-1', datetime(2026, 1, 1, tzinfo=UTC))\n"
        "print(CODEC.decode(CODEC.encode(ping), Ping) == ping, len(parsed) > 0)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent,
                         env={**os.environ, STATE_ENV: str(tmp_path / "state")})
    said = run.stdout.splitlines()
    assert said[-3:] == ["ClickException", "0", "True True"], run.stdout + run.stderr
