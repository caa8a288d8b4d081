"""Avro single-object encoding (fastavro): each message names its writer schema by fingerprint."""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, datetime
from enum import Enum
from functools import cache, cached_property, partial
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints, overload

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).parent
MAGIC = b"\xc3\x01"
HEADER = len(MAGIC) + 8
MAX_BYTES = 900 * 1024
_FILE = re.compile(r"(?P<name>[A-Za-z]+)\.v(?P<version>\d+)\.avsc")

M = TypeVar("M")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
F = TypeVar("F")
G = TypeVar("G")


class SchemaError(ValueError):
    """A message the codec cannot read or write; `reason` is the Rejection reason code."""

    reason = "MALFORMED"


class MalformedMessage(SchemaError):
    reason = "MALFORMED"


class UnknownSchema(SchemaError):
    reason = "UNKNOWN_SCHEMA"


class OversizedMessage(SchemaError):
    reason = "OVERSIZED"


class NewerVersion(RuntimeError):
    """A message of a schema this version does not know, on a topic only Renkei's own services
    write: a newer version of Renkei wrote it, and its reader stops rather than go on without
    it (a record skipped is one it never reads again)."""

    def __init__(self, topic: str, reader: str, unknown: UnknownSchema) -> None:
        super().__init__(f"{topic} holds a message this {reader} cannot read ({unknown}): a newer "
                         f"version of Renkei wrote it; this {reader} stops rather than go on "
                         f"without it (upgrade it to the version the others run)")


class UnexpectedMessage(SchemaError):
    reason = "UNEXPECTED_MESSAGE"

    def __init__(self, name: str, expected: list[str]) -> None:
        super().__init__(f"a {name} is not expected here (expected {', '.join(expected)})")
        self.name = name


@dataclass(frozen=True)
class Schema:
    name: str
    version: int
    definition: dict[str, Any]
    parsed: Any
    fingerprint: bytes
    enums: tuple[tuple[str, tuple[str, ...]], ...]  # each enum field and its symbols
    indexed: Any  # parsed with each enum field an int: its index as its bytes carry it


def _load(path: Path) -> Schema:
    found = _FILE.fullmatch(path.name)
    if found is None:
        raise ValueError(f"schema file {path.name} is not named <Name>.v<N>.avsc")
    definition = json.loads(path.read_text(encoding="utf-8"))
    canonical = to_parsing_canonical_form(parse_schema(definition, _write_hint=False))
    digest = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    enums = {f["name"]: tuple(f["type"]["symbols"]) for f in definition["fields"]
             if isinstance(f["type"], dict) and f["type"]["type"] == "enum"}
    if '"enum"' in json.dumps([f for f in definition["fields"] if f["name"] not in enums]):
        raise ValueError(f"{path.name}: an enum's index is checked only as a record's field, "
                         f"not in a union, array, map or nested record")
    # parsed with fastavro's hint, which its reader and writer trust instead of parsing again
    parsed = parse_schema(definition)
    indexed = parse_schema({**definition, "fields": [
        {**f, "type": "int"} if f["name"] in enums else f for f in definition["fields"]]}
    ) if enums else parsed  # with no enum field, the same schema
    return Schema(found.group("name"), int(found.group("version")), definition, parsed, digest,
                  tuple(enums.items()), indexed)


@dataclass(frozen=True)
class Older:
    """An older version of a schema that differs from the newest only by the fields the newest
    added (each with a default) and the enum symbols it added: it holds a record whose added
    fields are at their defaults and whose enums' symbols it knows, read into the newest as
    written."""

    schema: Schema
    added: tuple[tuple[str, Any], ...]  # the newest's fields it lacks, and their defaults
    symbols: tuple[tuple[str, frozenset[str]], ...]  # each enum field, the symbols it knows
    # the newest's fields it lacks, as fastavro's reading into the newest gives their defaults
    # (None: these fields alone are no schema fastavro parses: its messages read into the newest)
    defaults: _Defaults | None

    @cached_property
    def nulls(self) -> tuple[str, ...]:
        """The added fields defaulting to null: told by `is None`, what _is_default finds of
        them, without a call each."""
        return tuple(name for name, default in self.added if default is None)

    @cached_property
    def others(self) -> tuple[tuple[str, Any], ...]:
        return tuple((name, default) for name, default in self.added if default is not None)

    def holds(self, record: dict[str, Any]) -> bool:
        get = record.get
        return (all(get(name) is None for name in self.nulls)
                and all(_is_default(get(name, default), default) for name, default in self.others)
                and all(get(name) in known for name, known in self.symbols))


def _older(old: Schema, newest: Schema) -> Older | None:
    """`old` as an Older version of `newest` (None: it differs otherwise, never written)."""
    kept = {f["name"]: f for f in old.definition["fields"]}
    fields = {f["name"]: f for f in newest.definition["fields"]}
    added = tuple((name, f["default"]) for name, f in fields.items()
                  if name not in kept and "default" in f)
    if len(kept) + len(added) != len(fields) or not all(
            name in fields and _same_type(f["type"], fields[name]["type"])
            for name, f in kept.items()):
        return None
    return Older(old, added, tuple((name, frozenset(symbols)) for name, symbols in old.enums),
                 _defaults_read(newest, {name for name, _ in added}))


@dataclass(frozen=True)
class _Defaults:
    """Fields' defaults as read: those no message can change (None, a number, text), and those
    each message is given a copy of."""

    shared: dict[str, Any]
    own: dict[str, Any]

    @classmethod
    def of(cls, defaults: dict[str, Any]) -> _Defaults:
        immutable = (type(None), bool, int, float, str, bytes)
        return cls({k: v for k, v in defaults.items() if isinstance(v, immutable)},
                   {k: v for k, v in defaults.items() if not isinstance(v, immutable)})


def _defaults_read(newest: Schema, names: set[str]) -> _Defaults | None:
    """The fields `names` of the newest version as fastavro reads them into it from a version
    without them: their defaults, logical types applied (None if these fields alone are no
    schema: one names a type another field defines)."""
    try:
        return _Defaults.of(cast(dict[str, Any], fastavro.schemaless_reader(
            io.BytesIO(b""), parse_schema({**newest.definition, "fields": []}, _write_hint=False),
            parse_schema({**newest.definition, "fields": [
                f for f in newest.definition["fields"] if f["name"] in names]},
                _write_hint=False))))
    except Exception:  # fastavro raises many types on a schema it cannot parse
        return None


def _same_type(old: Any, new: Any) -> bool:
    """The same Avro type, an enum's newer symbols (and its default) aside."""
    if isinstance(old, dict) and isinstance(new, dict) and old["type"] == new["type"] == "enum":
        return old["name"] == new["name"] and set(old["symbols"]) <= set(new["symbols"])
    return bool(old == new)


def _is_default(value: Any, default: Any) -> bool:
    """Whether a record's value is a field's default (as the schema's JSON says it)."""
    if isinstance(value, bytes):
        return isinstance(default, str) and value == default.encode("latin-1")
    if isinstance(value, list | tuple):
        return isinstance(default, list) and list(value) == default
    return type(value) is type(default) and bool(value == default)


class Codec:
    """Encode with the oldest version of each schema that holds the message (Older), so that a
    process of an earlier release reads what says nothing it does not know; decode any known
    version into the newest."""

    def __init__(self, directory: Path = SCHEMA_DIR) -> None:
        # the schemas are read and parsed at the first use, not at the import (~80 ms of every
        # `renkei` start, most of whose commands encode nothing); each attribute below is kept
        # in the instance once made, an attribute look-up after that as before
        self.directory = directory

    @cached_property
    def schemas(self) -> list[Schema]:
        return [_load(p) for p in sorted(self.directory.glob("*.avsc"))]

    @cached_property
    def by_fingerprint(self) -> dict[bytes, Schema]:
        return {s.fingerprint: s for s in self.schemas}

    @cached_property
    def versions(self) -> dict[str, list[Schema]]:
        """Each schema's versions, oldest first."""
        versions: dict[str, list[Schema]] = {}
        for schema in sorted(self.schemas, key=lambda s: s.version):
            versions.setdefault(schema.name, []).append(schema)
        return versions

    @cached_property
    def bytes_added(self) -> dict[bytes, tuple[str, ...]]:
        return {old.fingerprint: _bytes_added(old, versions[-1])
                for versions in self.versions.values() for old in versions}

    @cached_property
    def older(self) -> dict[str, list[Older]]:
        return {name: [older for old in versions[:-1]
                       if (older := _older(old, versions[-1])) is not None]
                for name, versions in self.versions.items()}

    @cached_property
    def defaults(self) -> dict[bytes, _Defaults]:
        """An Older version's message is read with its own schema, the fields it lacks added at
        their defaults: not read again into the newest (fastavro's resolution, and with an enum
        field a second read of the whole message)."""
        return {older.schema.fingerprint: older.defaults
                for olders in self.older.values() for older in olders
                if older.defaults is not None}

    def writer(self, name: str, record: dict[str, Any]) -> Schema:
        """The version a record is written with: the oldest that holds it, else the newest (one
        that holds it, each after it does: looked for from the newest back)."""
        chosen = self.latest(name)
        for older in reversed(self.older.get(name, ())):
            if not older.holds(record):
                break
            chosen = older.schema
        return chosen

    def latest(self, name: str) -> Schema:
        try:
            return self.versions[name][-1]
        except KeyError:
            raise UnknownSchema(f"no schema named {name!r}") from None

    def encode_record(self, name: str, record: dict[str, Any], version: int | None = None) -> bytes:
        schema = self.writer(name, record) if version is None else next(
            s for s in self.versions[name] if s.version == version)
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(schema.fingerprint)
        try:
            fastavro.schemaless_writer(out, schema.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # fastavro's words may quote the value (a date of birth, a sex), which would reach
            # whatever logs this error, its traceback too: the kind of error alone is said, and
            # the field if fastavro names it
            field = _ON_FIELD.search(str(exc))
            raise MalformedMessage(
                f"cannot write {name}: a value of the wrong type or out of its schema's range "
                f"({type(exc).__name__}{f', on field {field[1]}' if field else ''})") from None
        data = out.getvalue()
        if len(data) > MAX_BYTES:
            raise OversizedMessage(f"{name} of {len(data)} bytes is over {MAX_BYTES}")
        return data

    def name_of(self, data: bytes) -> str | None:
        """The name of the schema a message was written with (None: no message known here)."""
        writer = self.by_fingerprint.get(data[2:HEADER]) if data[:2] == MAGIC else None
        return None if writer is None else writer.name

    def unknown(self, data: bytes) -> UnknownSchema | None:
        """The UnknownSchema of a message (with its header) written with a schema not known
        here, a newer version of Renkei's; None for any other."""
        if len(data) < HEADER or data[:2] != MAGIC or data[2:HEADER] in self.by_fingerprint:
            return None
        return _unknown(data)

    def decode_record(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """The schema name and the record, read with the newest version of that schema."""
        if len(data) > MAX_BYTES:
            raise OversizedMessage(f"message of {len(data)} bytes is over {MAX_BYTES}")
        if len(data) < HEADER or data[:2] != MAGIC:
            raise MalformedMessage("not an Avro single-object message (no C3 01 header)")
        writer = self.by_fingerprint.get(data[2:HEADER])
        if writer is None:
            raise _unknown(data)
        reader = self.versions[writer.name][-1]
        defaults = self.defaults.get(writer.fingerprint)
        if reader is writer or writer.enums or defaults is not None:
            record = _symbols(_body(data, writer, writer.indexed, None), writer)
        if defaults is not None:  # an Older version's: the newest's fields it lacks added
            record.update(defaults.shared)
            if defaults.own:  # each message its own (a list, say)
                record.update(copy.deepcopy(defaults.own))
        elif reader is not writer:  # read (again, if it has enums) into the newest version
            record = _body(data, writer, writer.parsed, reader.parsed)
        if reader is not writer:
            for name in self.bytes_added[writer.fingerprint]:
                record[name] = record[name].encode("latin-1")
        return writer.name, record

    def leading(self, data: bytes, name: str, last: str) -> dict[str, Any]:
        """The leading fields of a message of a schema unknown here (a newer version's), or of one
        whose body does not read past them, up to field `last`, read as
        the newest version of `name` has them (a newer version keeps its fields and adds its own
        after them; an enum's read as its index): enough for a service to answer whoever sent
        it. MalformedMessage if they cannot be read so."""
        definition = self.latest(name).definition
        names = [f["name"] for f in definition["fields"]]
        fields = [{**f, "type": "int"} if isinstance(f["type"], dict)
                  and f["type"].get("type") == "enum" else f
                  for f in definition["fields"][:names.index(last) + 1]]
        buf = io.BytesIO(data)
        buf.seek(HEADER)
        try:
            return cast(dict[str, Any], fastavro.schemaless_reader(
                buf, parse_schema({**definition, "fields": fields}, _write_hint=False), None))
        except Exception as exc:  # fastavro raises many types on bytes not of that prefix
            raise MalformedMessage(f"no leading {name} fields up to {last}: "
                                   f"{type(exc).__name__}") from None

    def encode(self, message: object) -> bytes:
        return self.encode_record(type(message).__name__, to_record(message))

    @overload
    def decode(self, data: bytes, a: type[A], /) -> A: ...
    @overload
    def decode(self, data: bytes, a: type[A], b: type[B], /) -> A | B: ...
    @overload
    def decode(self, data: bytes, a: type[A], b: type[B], c: type[C], /) -> A | B | C: ...
    @overload
    def decode(self, data: bytes, a: type[A], b: type[B], c: type[C], d: type[D],
               /) -> A | B | C | D: ...
    @overload
    def decode(self, data: bytes, a: type[A], b: type[B], c: type[C], d: type[D], e: type[E],
               /) -> A | B | C | D | E: ...
    @overload
    def decode(self, data: bytes, a: type[A], b: type[B], c: type[C], d: type[D], e: type[E],
               f: type[F], /) -> A | B | C | D | E | F: ...
    @overload
    def decode(self, data: bytes, a: type[A], b: type[B], c: type[C], d: type[D], e: type[E],
               f: type[F], g: type[G], /) -> A | B | C | D | E | F | G: ...

    def decode(self, data: bytes, *expected: type[Any]) -> Any:
        """Decode into one of the `expected` message classes; any other is UnexpectedMessage."""
        name, record = self.decode_record(data)
        for cls in expected:
            if cls.__name__ == name:
                return from_record(cls, record)
        raise UnexpectedMessage(name, [cls.__name__ for cls in expected])


def _unknown(data: bytes) -> UnknownSchema:
    return UnknownSchema(f"unknown schema fingerprint {data[2:HEADER].hex()}")


def _bytes_added(writer: Schema, reader: Schema) -> tuple[str, ...]:
    """The bytes fields `reader` has and `writer` has not: fastavro reads their default as the
    schema's JSON gives it, text (b"" as ""), which Avro says is bytes, one char a byte."""
    written = {f["name"] for f in writer.definition["fields"]}
    return tuple(f["name"] for f in reader.definition["fields"]
                 if f["type"] == "bytes" and f["name"] not in written)


def _body(data: bytes, writer: Schema, parsed: Any, reader: Any) -> dict[str, Any]:
    """The record of a message's body, read with `parsed` (the writer's) into `reader`."""
    buf = io.BytesIO(data)
    buf.seek(HEADER)
    try:
        record = fastavro.schemaless_reader(buf, parsed, reader)
    except Exception as exc:  # fastavro raises many types on corrupt bytes
        raise MalformedMessage(f"corrupt {writer.name} body: {_fault(exc, buf, data)}") from exc
    if buf.tell() != len(data):
        raise MalformedMessage(f"{len(data) - buf.tell()} trailing bytes after {writer.name}")
    return cast(dict[str, Any], record)


def _symbols(record: dict[str, Any], writer: Schema) -> dict[str, Any]:
    """The record with each enum field's symbol for the index its bytes carry: fastavro's reader
    takes a negative index from the end of the symbols (-1 the last), a second byte form of
    one message, so an index out of the symbols' range is MALFORMED."""
    for field, symbols in writer.enums:
        index = record[field]
        if not 0 <= index < len(symbols):
            raise MalformedMessage(f"{writer.name}'s {field} is enum index {index}, not one of "
                                   f"its {len(symbols)} symbols (0 to {len(symbols) - 1})")
        record[field] = symbols[index]
    return record


def _fault(exc: Exception, buf: io.BytesIO, data: bytes) -> str:
    """fastavro's words for a corrupt body, the same in every process (no object addresses)."""
    if buf.tell() >= len(data):
        return f"the record runs past the end of its {len(data) - HEADER} bytes of body"
    return _OBJECT.sub("the message", str(exc)) or type(exc).__name__


_OBJECT = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
_ON_FIELD = re.compile(r"on field ([A-Za-z_][A-Za-z0-9_]*)$")  # fastavro's, a schema's name


def first_string(data: bytes) -> str:
    """A message's first field read as an Avro string, whatever its schema, one known here or not
    ("" if it is not one): the request id of every message a holder writes, in each version of
    it (test_codec checks), so a newer version's too."""
    buf = io.BytesIO(data)
    buf.seek(HEADER)
    try:
        return str(fastavro.schemaless_reader(buf, "string", None))
    except Exception:  # fastavro raises many types on bytes that are not a string
        return ""


def to_record(message: Any) -> dict[str, Any]:
    return {name: _plain(getattr(message, name)) if convert else getattr(message, name)
            for name, convert in _fields_of(cast(type, type(message)))}


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return to_record(value)
    return value


_AS_IS = frozenset({str, int, float, bool, bytes, datetime, date, type(None)})


@cache
def _fields_of(cls: type) -> tuple[tuple[str, bool], ...]:
    """Each field's name, and whether its value needs converting for Avro (the rest go as is)."""
    hints = get_type_hints(cls)
    return tuple((f.name, not _as_is(hints[f.name])) for f in fields(cls))


def _as_is(hint: Any) -> bool:
    union = get_origin(hint) in (Union, UnionType)
    return all(arg in _AS_IS for arg in (get_args(hint) if union else (hint,)))


def from_record(cls: type[M], record: dict[str, Any]) -> M:
    converters = _converters(cast(type, cls))
    if converters:
        record = dict(record)
        for name, convert in converters.items():
            record[name] = convert(record[name])
    return cls(**record)


@cache
def _converters(cls: type) -> dict[str, Callable[[Any], Any]]:
    """Fields whose Avro value needs a Python type: enums, records, and tuples (of records)."""
    found: dict[str, Callable[[Any], Any]] = {}
    for name, hint in get_type_hints(cls).items():
        if isinstance(hint, type) and issubclass(hint, Enum):
            found[name] = hint.__getitem__
        elif is_dataclass(hint) and isinstance(hint, type):
            found[name] = partial(from_record, hint)
        elif get_origin(hint) is tuple:
            item = get_args(hint)[0]
            if is_dataclass(item) and isinstance(item, type):
                found[name] = partial(_records, item)
            else:
                found[name] = tuple
    return found


def _records(cls: type, items: list[dict[str, Any]]) -> tuple[Any, ...]:
    return tuple(from_record(cls, r) for r in items)


CODEC = Codec()
