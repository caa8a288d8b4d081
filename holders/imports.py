"""A holder's own records and the data it provides, imported from CSV files with a header: a
row that cannot be read is refused by its line and field alone (never its personal data), the
rest imported, all or nothing: staged and compared with the store with no lock on it, then the
rows that change it written in one transaction (a crash or a fault while storing leaves none of it
applied); importing a file again changes nothing."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from authority.check_digit import is_valid, keyed
from holders.store import HolderStore, own_number
from registry.normalize import BadDate, parse_date, parse_sex
from registry.residents import FourAttributes

T = TypeVar("T")
RECORD_COLUMNS = ("own_number", "name", "address", "date_of_birth", "sex")
NUMBER_COLUMN = "personal_number"  # a records file's optional column
DATA_COLUMNS = ("own_number", "data_type", "fields")
REMOVAL_COLUMNS = ("own_number", "data_type")  # a data file's fields column is not read
# a records file's other columns, not read by a removal of records
RECORD_REMOVAL_OPTIONAL = (*RECORD_COLUMNS[1:], NUMBER_COLUMN)


@dataclass(frozen=True, slots=True)
class Refused:
    """A row not imported: its line in the file, the field at fault and why (no value)."""

    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field} {self.reason}"


@dataclass(frozen=True, slots=True)
class Record:
    own_number: str
    attributes: FourAttributes
    personal_number: str | None
    numbered: bool = True  # its file has the personal_number column (else the store's is kept)


@dataclass(frozen=True, slots=True)
class Removal:
    """Data the holder provides no more: a record's own number and a data type."""

    own_number: str
    data_type: str


@dataclass(frozen=True, slots=True)
class Data:
    own_number: str
    data_type: str
    fields: dict[str, str]


class BadField(ValueError):
    """A field of a row that cannot be read."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field, self.reason = field, reason


def _lines(path: Path, columns: tuple[str, ...],
           optional: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str] | None]]:
    """Each non-blank row after the header by the line it starts on, None if it has another
    number of fields than the header; ValueError if the header lacks a column or names one
    neither in `columns` nor `optional`, or the file is not UTF-8 (read in blocks: which line is
    not known)."""
    try:
        yield from _utf8_lines(path, columns, optional)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text (a spreadsheet's Shift_JIS CSV, say): "
                         "save it as CSV UTF-8") from None


def _utf8_lines(path: Path, columns: tuple[str, ...],
                optional: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str] | None]]:
    """`_lines` of a file of UTF-8 text."""
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: the header lacks {', '.join(missing)} "
                             f"(columns: {', '.join(columns)}, …)")
        if twice := sorted({name for name in header if name and header.count(name) > 1}):
            raise ValueError(f"{path}: the header names {', '.join(twice)} twice: which column "
                             "is meant is not known")
        if unknown := [name for name in header if name and name not in columns + optional]:
            raise ValueError(f"{path}: the header names {', '.join(unknown)}, which is no "
                             f"column (columns: {', '.join(columns + optional)})")
        start = reader.line_num + 1
        try:
            for row in reader:
                if any(cell.strip() for cell in row):
                    yield start, (dict(zip(header, row, strict=True)) if len(row) == len(header)
                                  else None)
                start = reader.line_num + 1
        except csv.Error as exc:  # a field past the limit: the file is not read on
            raise ValueError(f"{path}: line {start} cannot be read as CSV ({exc})") from None


def _read(path: Path, columns: tuple[str, ...], optional: tuple[str, ...],
          parse: Callable[[dict[str, str]], T],
          key: Callable[[T], Hashable]) -> tuple[list[tuple[int, T]], list[Refused]]:
    """The rows `parse` reads by line, and those refused (the same key twice: the later)."""
    read: list[tuple[int, T]] = []
    refused: list[Refused] = []
    seen: dict[Hashable, int] = {}
    for line, row in _lines(path, columns, optional):
        try:
            if row is None:
                raise BadField("row", "has another number of fields than the header")
            found = parse(row)
            if key(found) in seen:
                raise BadField(columns[0], f"repeats line {seen[key(found)]}")
        except BadField as bad:
            refused.append(Refused(line, bad.field, bad.reason))
            continue
        seen[key(found)] = line
        read.append((line, found))
    return read, refused


FIELD_CHARS = 1000  # the most characters of a field the communication server reads (an id)


def trimmed(value: str) -> str:
    """A field's text as the holder's store keeps it: without the whitespace around it (a
    full-width space too), which a spreadsheet's cell or a system's field may carry."""
    return value.strip()


def _own(row: dict[str, str]) -> str:
    """A row's own number as the store keys it (own_number); BadField if empty."""
    return own_number(_required(row, "own_number"))


def _required(row: dict[str, str], field: str) -> str:
    value = trimmed(row[field])
    if not value:
        raise BadField(field, "is empty")
    return value


def _record(row: dict[str, str]) -> Record:
    try:
        born = parse_date(_required(row, "date_of_birth"))
    except BadDate as exc:
        raise BadField("date_of_birth", exc.reason) from exc
    try:
        sex = parse_sex(_required(row, "sex"))
    except ValueError as exc:
        raise BadField("sex", "is not one of 1/2, 男/女, M/F") from exc
    given = row.get(NUMBER_COLUMN)
    number = None if given is None else keyed(given) or None
    if number is not None and not is_valid(number):
        raise BadField(NUMBER_COLUMN, "is not 12 digits with a valid check digit")
    attributes = FourAttributes(_required(row, "name"), _required(row, "address"), born, sex)
    return Record(_own(row), attributes, number, given is not None)


def read_records(path: Path) -> tuple[list[tuple[int, Record]], list[Refused]]:
    """The records of a CSV file (own_number, name, address, date_of_birth, sex and optionally
    personal_number: without the column, each record's number is left as the store has it; an
    empty cell, none), and the rows refused."""
    return _read(path, RECORD_COLUMNS, (NUMBER_COLUMN,), _record, lambda r: r.own_number)


def _data(row: dict[str, str]) -> Data:
    try:
        fields = json.loads(_required(row, "fields"))
    except (ValueError, RecursionError):  # not JSON, over 4,300 digits, or nested too deep
        raise BadField("fields", "is not JSON") from None
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise BadField("fields", "is not a JSON object of strings")
    if not all(storable(name) and storable(value) for name, value in fields.items()):
        raise BadField("fields", "holds a lone surrogate (\\ud800 to \\udfff): no character")
    return Data(_own(row), _required(row, "data_type"), fields)


def storable(value: str) -> bool:
    """Whether text can be stored (UTF-8 can hold it): no lone surrogate, as JSON's "\\udcff"
    gives, or a header's bytes that are not UTF-8."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def read_data(path: Path) -> tuple[list[tuple[int, Data]], list[Refused]]:
    """The data of a CSV file (own_number, data_type, fields as a JSON object of strings), and
    the rows refused."""
    return _read(path, DATA_COLUMNS, (), _data, lambda d: (d.own_number, d.data_type))


def _removal(row: dict[str, str]) -> Removal:
    return Removal(_own(row), _required(row, "data_type"))


def read_removals(path: Path) -> tuple[list[tuple[int, Removal]], list[Refused]]:
    """The data to remove of a CSV file (own_number, data_type: a data file, whose fields are
    not read), and the rows refused."""
    return _read(path, REMOVAL_COLUMNS, ("fields",), _removal,
                 lambda r: (r.own_number, r.data_type))


def store_records(store: HolderStore,
                  records: list[tuple[int, Record]]) -> tuple[Counter[str], list[tuple[int, str]]]:
    """Add or update the records, all or none; how many were new, changed, unchanged, and the
    lines and own numbers of bound records whose four attributes or personal number changed (the
    binding holds for the person it was made for: staff must see whether it still is that
    person)."""
    imported = store.import_records(((line, r.own_number, r.attributes, r.personal_number)
                                     for line, r in records),
                                    all(r.numbered for _, r in records))
    return imported.counts, imported.flagged


def store_data(store: HolderStore,
               data: list[tuple[int, Data]]) -> tuple[Counter[str], list[Refused]]:
    """Add or update the data, all or none, but for a record the store lacks (refused); how many
    were new, changed, unchanged."""
    imported = store.import_data((line, d.own_number, d.data_type, d.fields) for line, d in data)
    return imported.counts, [Refused(line, "own_number", "has no record (import it first)")
                             for line, _ in imported.flagged]


def remove_data(store: HolderStore,
                removals: list[tuple[int, Removal]]) -> tuple[int, list[Refused]]:
    """Remove the data, all or none; how many were removed, and the rows of data the store did
    not have (refused)."""
    absent = store.remove_data((line, r.own_number, r.data_type) for line, r in removals)
    return len(removals) - len(absent), [Refused(line, "data_type", "is not provided on that "
                                                 "record (nothing to remove)") for line in absent]


def read_record_removals(path: Path) -> tuple[list[tuple[int, str]], list[Refused]]:
    """The own numbers of records to remove of a CSV file (own_number: a records file, its other
    columns not read), and the rows refused."""
    return _read(path, ("own_number",), RECORD_REMOVAL_OPTIONAL, _own, lambda own: own)


def remove_records(store: HolderStore,
                   own_numbers: list[tuple[int, str]]) -> tuple[int, list[Refused]]:
    """Remove the records, all or none, but for own numbers of no record and records with a
    request in flight (refused, by line: no own number said); how many were removed."""
    done = store.remove_records(own_numbers)
    return done.removed, sorted(
        [Refused(line, "own_number", "has no record (nothing to remove)") for line in done.absent]
        + [Refused(line, "own_number", f"has a request in flight ({request_id}): remove it once "
                   "that is answered or timed out (its communication server running)")
           for line, request_id in done.in_flight], key=lambda r: r.line)
