"""The registry's SQLite store: residents as they are now, their change events, the consents
they gave private holders, look-ups.

Look-up by 4 attributes compares normalised keys exactly and returns every resident that matches:
zero, one or several. It never picks one of several, and never matches on fewer than four. It
returns nobody when a holder's record of another resident could read the same: when those four
attributes were another's before a move or a name change (a stale record), or when another
resident of that sex born that day lives at that address (a twin: one mistyped character away).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from registry.normalize import RULES, four_key, unseen_dropped
from registry.resident_code import is_valid
from registry.residents import ChangeEvent, ChangeKind, FourAttributes, Resident, Sex, apply
from renkei import sqlite
from renkei.state import folder_made, private_dir

if TYPE_CHECKING:  # the generator (Faker's word lists) imported only by a store it builds
    from registry.generate import Person, Rates, Tally

CHUNK = 20_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS residents (
    person INTEGER PRIMARY KEY,
    resident_code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kana TEXT NOT NULL,
    address TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    sex INTEGER NOT NULL,
    four_key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    person INTEGER NOT NULL REFERENCES residents (person),
    kind TEXT NOT NULL,
    resident_code TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    happened_on TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS consents (
    person INTEGER NOT NULL REFERENCES residents (person),
    holder TEXT NOT NULL,
    given_on TEXT NOT NULL,
    PRIMARY KEY (person, holder)
);
CREATE TABLE IF NOT EXISTS former_keys (
    four_key TEXT NOT NULL,
    person INTEGER NOT NULL REFERENCES residents (person),
    PRIMARY KEY (four_key, person)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS residents_four_key ON residents (four_key);
CREATE INDEX IF NOT EXISTS residents_household ON residents (
    substr(four_key, instr(four_key, '|') + 1));
CREATE INDEX IF NOT EXISTS events_person ON events (person);
CREATE INDEX IF NOT EXISTS events_code ON events (resident_code);
CREATE INDEX IF NOT EXISTS former_keys_person ON former_keys (person);
"""
RESIDENT_COLUMNS = "resident_code, name, kana, address, date_of_birth, sex"
EVENT_COLUMNS = "kind, resident_code, before, after, happened_on, seq"
KEYED_BY = "keyed-by"  # meta: the normalisation rules (RULES) the store's keys were made by
REKEYED = "rekeyed-through"  # meta, while keying again: {"rules": RULES, "person": the last done}
IDENTITY = "registry-id"  # meta: the random id made with the registry, its events numbered from 1


def default_path(made: bool = True) -> Path:
    """The store in the state folder; its folder made unless not `made` (private_dir)."""
    return private_dir("registry", made=made) / "registry.db"


class RegistryExists(RuntimeError):
    """A registry is already at that path."""


class NoRegistry(FileNotFoundError):
    """No registry at that path."""


class RegistryStore:
    def __init__(self, path: Path, read_only: bool = False) -> None:
        """The registry at `path`; `read_only`, through a connection nothing can be written
        through (what only reads it: the numbering authority following its code changes)."""
        self.path, self._read_only = path, read_only
        self._open()

    def _open(self) -> None:
        """The connection to the file at its path now, and which file that is."""
        self._file = sqlite.file_at(self.path)
        self._db = sqlite.read_only(self.path) if self._read_only else sqlite.opened(self.path)
        with sqlite.closed_if_failing(self._db):
            if self._read_only:
                self._made_already()
            else:
                self._db.executescript(SCHEMA + INDEXES)
                self._keyed_by_these_rules()

    def reopened_if_replaced(self) -> bool:
        """Whether another file was put at its path since it was opened (`renkei registry
        generate --replace`): if so, that registry is read from now on, the old one closed; one
        that cannot be opened (NoRegistry, sqlite3.Error) leaves the old one open, as does a path
        with no file left."""
        if sqlite.file_at(self.path) in (None, self._file):
            return False
        old, file = self._db, self._file
        try:
            self._open()
        except BaseException:
            self._db, self._file = old, file
            raise
        old.close()
        return True

    def _made_already(self) -> None:
        """NoRegistry if the store has no residents or events (another SQLite file, an empty one):
        a store read only cannot be made a registry."""
        found = {name for (name,) in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('residents', "
            "'events')")}
        if found != {"residents", "events"}:
            raise NoRegistry(f"no registry at {self.path} (a SQLite file without its residents): "
                             "run `renkei registry generate`")

    @classmethod
    def open(cls, path: Path, read_only: bool = False) -> RegistryStore:
        if not path.exists():
            raise NoRegistry(f"no registry at {path}: run `renkei registry generate`")
        return cls(path, read_only)

    @classmethod
    def create(cls, path: Path, replace: bool = False) -> RegistryStore:
        """A new, empty registry at `path`, an identity of its own made; an existing one is
        replaced only if asked."""
        _replaceable(path, replace)
        sqlite.removed(path)
        folder_made(path.parent)
        store = cls(path)
        store.set_meta(IDENTITY, secrets.token_hex(16))
        return store

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see the registry at one instant (a read transaction; for reads only)."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.rollback()

    def _keyed_by_these_rules(self) -> None:
        """Keys made by other normalisation rules (or by rules not noted: a store from before they
        were) made again by these, sqlite.BATCH residents a transaction, and the rules noted
        after the last: a resident keyed the old way would be found by no look-up keyed the new
        way. One transaction for all would hold the lock longer than others wait (~20 s for
        1M residents); a store left part-keyed (a crash) is keyed on from where it was."""
        while self.meta(KEYED_BY) != RULES:
            with sqlite.writing(self._db):  # another process keying it too goes on from here
                self._rekey_next()
            time.sleep(sqlite.BATCH_PAUSE)

    def _rekey_next(self) -> None:
        """The next sqlite.BATCH residents' keys made again, from their attributes, and their
        former keys from those and their moves and name changes (the events keep what they were
        before); with none left, these rules noted as the store's."""
        if self.meta(KEYED_BY) == RULES:
            return
        done = self.meta(REKEYED)
        after = done["person"] if isinstance(done, dict) and done["rules"] == RULES else 0
        rows = self._db.execute(f"SELECT person, four_key, {RESIDENT_COLUMNS} FROM residents "
                                "WHERE person > ? ORDER BY person LIMIT ?",
                                (after, sqlite.BATCH)).fetchall()
        if not rows:
            self._db.execute("DELETE FROM meta WHERE key = ?", (REKEYED,))
            self._put_meta(KEYED_BY, RULES)
            return
        first, last = rows[0][0], rows[-1][0]
        histories: dict[int, list[ChangeEvent]] = defaultdict(list)
        for person, *event in self._db.execute(
                f"SELECT person, {EVENT_COLUMNS} FROM events WHERE person BETWEEN ? AND ? "
                "ORDER BY seq", (first, last)):
            histories[person].append(_event(tuple(event)))
        changed: list[tuple[str, int]] = []
        former: list[tuple[str, int]] = []
        for person, kept, *row in rows:
            resident = _resident(tuple(row))
            if (key := four_key(resident.four_attributes)) != kept:
                changed.append((key, person))
            if events := histories.get(person):
                former.extend((old, person) for old in _former_keys(resident, events))
        self._db.executemany("UPDATE residents SET four_key = ? WHERE person = ?", changed)
        self._db.execute("DELETE FROM former_keys WHERE person BETWEEN ? AND ?", (first, last))
        self._db.executemany("INSERT OR IGNORE INTO former_keys VALUES (?, ?)", former)
        self._put_meta(REKEYED, {"rules": RULES, "person": last})

    def load(self, people: Iterable[Person]) -> None:
        """Bulk-load a generated registry: residents, then all events in date order."""
        self._db.executescript("DROP INDEX IF EXISTS residents_four_key; "
                               "DROP INDEX IF EXISTS residents_household; "
                               "DROP INDEX IF EXISTS former_keys_person;")
        events: list[tuple[date, int, ChangeEvent]] = []
        former: list[tuple[str, int]] = []
        with self._db:
            rows = []
            for person_id, person in enumerate(people, start=1):
                rows.append((person_id, *_resident_row(person.resident)))
                former.extend((key, person_id)
                              for key in _former_keys(person.resident, person.events))
                events.extend((event.on, person_id, event) for event in person.events)
                if len(rows) == CHUNK:
                    self._insert_residents(rows)
                    rows.clear()
            self._insert_residents(rows)
            self._db.executemany("INSERT OR IGNORE INTO former_keys VALUES (?, ?)", former)
            events.sort(key=lambda item: item[:2])
            self._db.executemany(
                "INSERT INTO events (person, kind, resident_code, before, after, happened_on) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                ((person_id, *_event_row(event)) for _, person_id, event in events))
        self._db.executescript(INDEXES)

    def _insert_residents(self, rows: Sequence[tuple[object, ...]]) -> None:
        self._db.executemany(
            f"INSERT INTO residents (person, {RESIDENT_COLUMNS}, four_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def by_code(self, resident_code: str) -> Resident | None:
        """The resident whose current code this is (a code given up is nobody's)."""
        found = self._person(resident_code)
        return None if found is None else found[1]

    def _person(self, resident_code: str) -> tuple[int, Resident] | None:
        row = self._db.execute(f"SELECT person, {RESIDENT_COLUMNS} FROM residents "
                               "WHERE resident_code = ?", (resident_code,)).fetchone()
        return None if row is None else (row[0], _resident(row[1:]))

    def first_code(self, resident_code: str) -> str | None:
        """The first code of the resident who has this one now (None if nobody has): their ID
        code is made from it, so a change of resident code changes none of their codes."""
        row = self._db.execute(
            "SELECT COALESCE((SELECT resident_code FROM events WHERE person = residents.person "
            "AND kind = ? ORDER BY seq LIMIT 1), resident_code) FROM residents "
            "WHERE resident_code = ?", (ChangeKind.CODE_CHANGED, resident_code)).fetchone()
        return None if row is None else str(row[0])

    def find(self, attributes: FourAttributes) -> list[Resident]:
        """Every resident whose four attributes all match after normalisation (0, 1 or more);
        nobody if a record of another resident could read the same (see the module's text)."""
        key = four_key(attributes)
        rows = self._db.execute(f"SELECT {RESIDENT_COLUMNS} FROM residents WHERE four_key = ? "
                                "ORDER BY resident_code", (key,)).fetchall()
        if rows and self._confusable(key):
            return []
        return [_resident(row) for row in rows]

    def _confusable(self, key: str) -> bool:
        """Were these four attributes another person's before, or has the one who has them now a
        twin (another resident of that sex born that day at that address)?"""
        return self._db.execute(
            "SELECT 1 FROM former_keys WHERE four_key = ? AND person NOT IN ("
            "SELECT person FROM residents WHERE four_key = ?) UNION ALL "
            "SELECT 1 FROM residents WHERE substr(four_key, instr(four_key, '|') + 1) = ? "
            "AND four_key != ? LIMIT 1", (key, key, key.split("|", 1)[1], key)).fetchone() \
            is not None

    def events(self, after_seq: int = 0, kind: ChangeKind | None = None,
               limit: int | None = None) -> list[ChangeEvent]:
        """Change events in the order they were recorded, after a sequence number."""
        rows = self._db.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? AND (? IS NULL OR kind = ?) "
            "ORDER BY seq LIMIT ?", (after_seq, kind, kind, -1 if limit is None else limit))
        return [_event(row) for row in rows]

    def event(self, seq: int) -> ChangeEvent | None:
        """The change event of that sequence number; None if there is none."""
        row = self._db.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?",
                               (seq,)).fetchone()
        return None if row is None else _event(row)

    def history(self, resident_code: str) -> list[ChangeEvent]:
        """Every change of the person who has or had this code."""
        rows = self._db.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE person IN ("
            "SELECT person FROM residents WHERE resident_code = ? "
            "UNION SELECT person FROM events WHERE resident_code = ?) ORDER BY seq",
            (resident_code, resident_code))
        return [_event(row) for row in rows]

    def record(self, event: ChangeEvent) -> ChangeEvent:
        """Apply a live change to its resident and append it; the event with its sequence number."""
        found = self._person(event.resident_code)
        if found is None:
            raise KeyError("no resident has that code")
        person, resident = found
        if event.kind is ChangeKind.CODE_CHANGED and not self._issuable(event.after[0]):
            raise ValueError("a new resident code must be valid and never issued before")
        changed = apply(resident, event)
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO former_keys VALUES (?, ?)",
                             (four_key(resident.four_attributes), person))
            self._db.execute(
                "UPDATE residents SET resident_code = ?, name = ?, kana = ?, address = ?, "
                "date_of_birth = ?, sex = ?, four_key = ? WHERE person = ?",
                (*_resident_row(changed), person))
            cursor = self._db.execute(
                "INSERT INTO events (person, kind, resident_code, before, after, happened_on) "
                "VALUES (?, ?, ?, ?, ?, ?)", (person, *_event_row(event)))
        return ChangeEvent(event.kind, event.resident_code, event.before, event.after, event.on,
                           cursor.lastrowid or 0)

    def _issuable(self, resident_code: str) -> bool:
        used = self._db.execute(
            "SELECT 1 FROM residents WHERE resident_code = ? "
            "UNION SELECT 1 FROM events WHERE resident_code = ?",
            (resident_code, resident_code)).fetchone()
        return is_valid(resident_code) and used is None

    def give_consent(self, resident_code: str, holder: str, on: date) -> None:
        """Record that the resident consents to a private holder binding them (kept across code
        changes: it belongs to the person)."""
        found = self._person(resident_code)
        if found is None:
            raise KeyError("no resident has that code")
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO consents VALUES (?, ?, ?)",
                             (found[0], holder, on.isoformat()))

    def withdraw_consent(self, resident_code: str, holder: str) -> bool:
        """Withdraw the resident's consent to `holder`; whether there was one (KeyError if no
        resident has that code now: a code mistyped, or one given up, withdraws nothing)."""
        found = self._person(resident_code)
        if found is None:
            raise KeyError("no resident has that code")
        with self._db:
            return self._db.execute("DELETE FROM consents WHERE holder = ? AND person = ?",
                                    (holder, found[0])).rowcount == 1

    def has_consent(self, resident_code: str, holder: str) -> bool:
        row = self._db.execute("SELECT 1 FROM consents JOIN residents USING (person) "
                               "WHERE resident_code = ? AND holder = ?", (resident_code, holder))
        return row.fetchone() is not None

    def resident_codes(self) -> Iterator[str]:
        """Every current resident code, in the order residents were entered."""
        for (code,) in self._db.execute("SELECT resident_code FROM residents ORDER BY person"):
            yield code

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM residents").fetchone()[0])

    def identity(self) -> str | None:
        """The id made with the registry (`create`): another registry, even one generated again
        from the same seed, numbers its change events from 1 again. None for one made before."""
        made = self.meta(IDENTITY)
        return made if isinstance(made, str) else None

    def last_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def ambiguous_keys(self) -> int:
        """How many 4-attribute keys more than one resident shares (a look-up gives several)."""
        return int(self._db.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM residents GROUP BY four_key "
            "HAVING COUNT(*) > 1)").fetchone()[0])

    def set_meta(self, key: str, value: object) -> None:
        with self._db:
            self._put_meta(key, value)

    def _put_meta(self, key: str, value: object) -> None:
        """Set `key` in the transaction open (set_meta in its own)."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str) -> object:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])


def build(path: Path, residents: int, seed: int, rates: Rates | None = None,
          replace: bool = False, noted: Mapping[str, object] | None = None) -> Tally:
    """Generate a registry of `residents` from `seed` into a new store at `path`, with the meta
    `noted`: built beside it and put in its place whole, so a build cut short (Ctrl-C) leaves
    the registry that was there."""
    from registry.generate import Simulator

    _replaceable(path, replace)
    simulator = Simulator(seed, rates)
    partial = path.with_name(f"{path.name}.partial")
    store = RegistryStore.create(partial, replace=True)
    try:
        store.load(simulator.people(residents))
        for key, value in (noted or {}).items():
            store.set_meta(key, value)
        store.set_meta("generated", {"residents": residents, "seed": seed,
                                     "tally": simulator.tally.as_dict()})
    finally:
        store.close()
    sqlite.removed(path)  # its journal left by a process killed writing it: not the new one's
    partial.replace(path)
    return simulator.tally


def _replaceable(path: Path, replace: bool) -> None:
    """Refuse to replace a registry at `path` unless asked."""
    if path.exists() and not replace:
        raise RegistryExists(f"a registry exists at {path} (replace it with --replace)")


def _former_keys(now: Resident, events: Sequence[ChangeEvent]) -> set[str]:
    """The four-attribute keys of a resident who is `now` before their `events` (their moves and
    name changes, in order)."""
    resident, keys = now, set()
    for event in reversed(events):
        if event.kind is ChangeKind.MOVED:
            resident = dataclasses.replace(resident, address=event.before[0])
        elif event.kind is ChangeKind.NAME_CHANGED:
            resident = dataclasses.replace(resident, name=event.before[0], kana=event.before[1])
        keys.add(four_key(resident.four_attributes))
    return keys - {four_key(now.four_attributes)}


def _resident_row(resident: Resident) -> tuple[str, str, str, str, str, int, str]:
    """The resident's row, its name, kana and address without what is unseen (unseen_dropped):
    its key drops that too."""
    return (resident.resident_code, unseen_dropped(resident.name),
            unseen_dropped(resident.kana), unseen_dropped(resident.address),
            resident.date_of_birth.isoformat(), int(resident.sex),
            four_key(resident.four_attributes))


def _resident(row: tuple[str, str, str, str, str, int]) -> Resident:
    """The resident of a row, shown without what is unseen (a row stored before it was dropped)."""
    code, name, kana, address, born, sex = row
    return Resident(code, unseen_dropped(name), unseen_dropped(kana), unseen_dropped(address),
                    date.fromisoformat(born), Sex(sex))


def _event_row(event: ChangeEvent) -> tuple[str, str, str, str, str]:
    """The event's row, the names and addresses it changes without what is unseen."""
    return (event.kind.value, event.resident_code, _texts(event.before), _texts(event.after),
            event.on.isoformat())


def _texts(texts: tuple[str, ...]) -> str:
    """Names, kana, addresses or a code, as an event's row keeps them (unseen_dropped)."""
    return json.dumps([unseen_dropped(text) for text in texts], ensure_ascii=False)


def _event(row: tuple[str, str, str, str, str, int]) -> ChangeEvent:
    kind, code, before, after, on, seq = row
    return ChangeEvent(ChangeKind(kind), code, _shown(before), _shown(after),
                       date.fromisoformat(on), seq)


def _shown(texts: str) -> tuple[str, ...]:
    """An event's names, kana, addresses or code as kept in its row, shown (unseen_dropped)."""
    return tuple(unseen_dropped(text) for text in json.loads(texts))
