"""The audit store's SQL engines: SQLite (a path or sqlite:///path) and PostgreSQL (a URL).

The store's SQL is written once, in SQLite's spelling with `?` placeholders; the PostgreSQL
connection rewrites each statement (placeholders, casts) before psycopg runs it.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from renkei import sqlite

POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")
BYTEA_COLUMNS = frozenset({"leaf", "hash", "root", "key_id", "signature", "record"})
_LOCK = 0x72656E6B6569  # "renkei": the advisory lock that makes one writer at a time
_ENDING = frozenset({"COMMIT", "ROLLBACK"})  # a stopped read still ends its transaction
STOP_STEPS = 10_000  # SQLite's VM instructions between two looks at a read's stop in a statement
RECANCEL_S = 0.05  # an interrupt sent again this often while its statement has not ended


class Cursor(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    def cursor(self) -> Cursor: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines, beyond the statements' spelling."""

    name: str
    blob: str
    key: str
    auto_key: str
    begin_write: tuple[str, ...]
    begin_read: str
    has_table: str  # a row when the table its one parameter names is in the store's schema
    has_column: str  # a row when the table its first parameter names has the column its second
    session: tuple[str, ...]
    cache_size: str | None  # bounds a connection's page cache to {kib} KiB (None: the server's)
    writer_session: tuple[str, ...]  # the writer's: a read-only connection cannot set them
    closing: tuple[str, ...]  # upkeep on close, skipped if it meets `busy`: done next time
    duplicate: type[Exception]
    busy: type[Exception]  # another connection committed while this one read
    # whether a column holds only its declared type (PostgreSQL's); SQLite's hold what an UPDATE
    # puts there, a value cast to another type by hand among them
    typed: bool = False


SQLITE = Dialect(
    name="sqlite", blob="BLOB", key="INTEGER PRIMARY KEY", auto_key="INTEGER PRIMARY KEY",
    begin_write=("BEGIN IMMEDIATE",), begin_read="BEGIN",
    has_table="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    has_column="SELECT 1 FROM pragma_table_info(?) WHERE name = ?",
    session=("PRAGMA synchronous=FULL", "PRAGMA busy_timeout=30000",
             "PRAGMA temp_store=MEMORY"),
    cache_size="PRAGMA cache_size=-{kib}",
    writer_session=("PRAGMA journal_mode=WAL", sqlite.SECURE_DELETE),  # purged: overwritten
    closing=("PRAGMA optimize",), duplicate=sqlite3.IntegrityError,
    busy=sqlite3.OperationalError)


# a WAL store's last connection to close removes its -wal and -shm files; a reader (SQLite 3.22
# and later) in a folder it may not write in opens the store only while they are there
_READ_ONLY = (" (read-only: the store must be there, and, in a folder this process may not "
              "write in, its -wal and -shm files too, which are there while the audit consumer "
              "has it open)")


# SQLite's errors at a file's first read (its schema, in `sqlite.read_only`) when it is no
# database (garbage) or one cut short (in its header, its first page): no store this can open
_NOT_A_STORE = (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


class NoStore(ValueError):
    """A store URL that names no store this can open (its scheme, its folder, its server, its
    file)."""


class NoTables(NoStore):
    """A store whose tables are not made yet: one the audit consumer never started on, or an
    empty database put in a store's place."""


def connect(url: str | Path, read_only: bool = False) -> tuple[Connection, Dialect]:
    """A connection for `url`: a path, sqlite:///path, or postgresql://user@host:port/db;
    `read_only`, one through which nothing can be written (a SQLite file opened mode=ro, a
    PostgreSQL session whose transactions are read-only), to a store that must be there.

    As in SQLAlchemy, sqlite:///audit.db is relative and sqlite:////var/audit.db absolute.
    """
    text = str(url)
    if text.startswith(POSTGRESQL_SCHEMES):
        return _postgresql(text, read_only)
    if "://" in text and not text.startswith("sqlite:///"):
        raise NoStore(f"unsupported store URL {text.split('://')[0]}://…: use a path, "
                      "sqlite:///path or postgresql://…")
    path = _sqlite_path(text)
    if path in ("", ":memory:"):
        raise NoStore(f"no audit store at {text}: SQLite keeps none there past the connection "
                      "(name a file)")
    try:
        if not read_only:
            sqlite.created_private(path)
            return sqlite3.connect(path, isolation_level=None, check_same_thread=False), SQLITE
        return sqlite.read_only(path), SQLITE
    except sqlite3.OperationalError as exc:
        raise NoStore(f"cannot open the store at {path}: {exc}"
                      + (_READ_ONLY if read_only else "")) from exc
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode not in _NOT_A_STORE:
            raise
        raise NoStore(f"cannot open the store at {path}: {exc}") from exc


def shown(url: str | Path) -> str:
    """`url` as a message may show it: a PostgreSQL one without its user, password or
    parameters (scheme, host, port and database alone)."""
    text = str(url)
    if not text.startswith(POSTGRESQL_SCHEMES):
        return text
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # no URL (a host or port that cannot be one): none of it is shown
        return f"{text.split('://')[0]}://…"
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{port}{parts.path}"


def _sqlite_path(text: str) -> str:
    """The file of a path or sqlite:///path."""
    return text.removeprefix("sqlite:///")


def exists(url: str | Path) -> bool:
    """Whether a SQLite store is there (connecting would make one, or to no path a temporary
    one); any other URL: True."""
    text = str(url)
    other = "://" in text and not text.startswith("sqlite:///")
    return other or (_sqlite_path(text) != "" and Path(_sqlite_path(text)).exists())


def _postgresql(url: str, read_only: bool) -> tuple[Connection, Dialect]:
    import psycopg

    dialect = Dialect(
        name="postgresql", blob="BYTEA", key="BIGINT PRIMARY KEY",
        auto_key="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        begin_write=("BEGIN", f"SELECT pg_advisory_xact_lock({_LOCK})"),
        begin_read="BEGIN ISOLATION LEVEL REPEATABLE READ",
        has_table="SELECT 1 FROM information_schema.tables "
                  "WHERE table_schema = current_schema() AND table_name = ?",
        has_column="SELECT 1 FROM information_schema.columns "
                   "WHERE table_schema = current_schema() AND table_name = ? AND column_name = ?",
        session=(), cache_size=None, writer_session=(), closing=(),
        duplicate=psycopg.IntegrityError, busy=psycopg.errors.SerializationFailure, typed=True)
    try:
        raw = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise NoStore(f"cannot reach the store: {str(exc).strip().splitlines()[0]}") from exc
    except psycopg.Error:  # psycopg's words quote the whole URI, its password too
        raise NoStore(f"{shown(url)} is not a store address psycopg reads (postgresql://user@"
                      f"host:port/db, its parameters libpq's own)") from None
    if read_only:
        raw.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    return _PgConnection(raw), dialect


_PLACEHOLDER = re.compile(r"\?")
_CAST = re.compile(r"CAST\((\w+) AS (BLOB|INTEGER|TEXT)\)")
_BYTEWISE = 'COLLATE "C"'  # SQLite's COLLATE BINARY: whatever the database's own collation


@lru_cache(maxsize=512)
def postgresql_spelling(sql: str) -> str:
    """A statement in SQLite's spelling as PostgreSQL reads it.

    `CAST(c AS BLOB)` reads a text column's UTF-8 bytes (a bytea column as it is), and casts to
    INTEGER or TEXT are dropped: PostgreSQL's columns hold only their declared type; `COLLATE
    BINARY` (bytewise) is `COLLATE "C"`.
    """
    def cast(found: re.Match[str]) -> str:
        column, to = found.group(1), found.group(2)
        if to == "BLOB" and column not in BYTEA_COLUMNS:
            return f"convert_to({column}, 'UTF8')"
        return column

    return _PLACEHOLDER.sub("%s", _CAST.sub(cast, sql)).replace("COLLATE BINARY", _BYTEWISE)


class _Rows:
    """A cursor wrapping another (psycopg's, a reader's), its rows as that one gives them."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def fetchone(self) -> Any:
        return self._raw.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._raw.fetchall())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._raw)


class _PgCursor(_Rows):
    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _PgCursor:
        self._raw.execute(postgresql_spelling(sql), parameters)
        return self

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> _PgCursor:
        rows = list(parameters)
        if rows:
            self._raw.executemany(postgresql_spelling(sql), rows)
        return self


class _Wrapping(ABC):
    """A connection wrapping another (psycopg's, a reader's), each statement on a cursor of
    its own."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    @abstractmethod
    def cursor(self) -> Cursor: ...

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self.cursor().execute(sql, parameters)

    def close(self) -> None:
        self._raw.close()


class _PgConnection(_Wrapping):
    """A psycopg connection (autocommit: the store says BEGIN and COMMIT itself)."""

    def cursor(self) -> _PgCursor:
        return _PgCursor(self._raw.cursor())

    def interrupt(self) -> None:
        """The statement running now cancelled on the server (from any thread)."""
        self._raw.cancel_safe()


class Stopped(Exception):
    """A statement refused: the read it is of was stopped (its reader gone)."""


class Stoppable(_Wrapping):
    """A reader's connection whose read is stopped, from any thread, by setting its `stop`:
    each statement it comes to then is refused (Stopped), but one that ends its transaction;
    the one running then goes on (`interrupt` stops it). An interrupt sent before the engine
    starts the statement that has passed its check stops nothing: `interrupt` sends it again
    every RECANCEL_S while the statement's execute has not returned (on PostgreSQL, which reads
    its rows in it, until it has ended), and on SQLite the statement also looks at the stop
    every STOP_STEPS of its VM's instructions, ending in SQLite's error if set."""

    def __init__(self, raw: Connection) -> None:
        super().__init__(raw)
        self.stop = threading.Event()
        self._ending = False  # the statement under way ends its transaction
        self._idle = threading.Event()  # no statement a stop stops is under way
        self._idle.set()
        if isinstance(raw, sqlite3.Connection):
            raw.set_progress_handler(self._stopped, STOP_STEPS)

    def check(self, sql: str) -> None:
        """Stopped if the read under way is, and `sql` does not end its transaction."""
        self._ending = sql in _ENDING
        if self._stopped():
            raise Stopped("the read was stopped: its statements from then on are not run")

    def _stopped(self) -> bool:
        """Whether the read under way is stopped, and its statement does not end its
        transaction."""
        return self.stop.is_set() and not self._ending

    @contextmanager
    def running(self, sql: str) -> Iterator[None]:
        """`sql` checked and run in the block; one not ending its transaction marked under way
        from before its check, so that an `interrupt` sent after the stop is set sees it."""
        if sql not in _ENDING:
            self._idle.clear()
        try:
            self.check(sql)
            yield
        finally:
            self._idle.set()

    def cursor(self) -> _StoppableCursor:
        return _StoppableCursor(self._raw.cursor(), self)

    def interrupt(self) -> None:
        """The statement under way stopped, the interrupt sent again every RECANCEL_S until its
        execute has returned (from any thread; sent after `stop` is set, no later statement
        runs)."""
        self._raw.interrupt()
        while not self._idle.wait(RECANCEL_S):
            self._raw.interrupt()


class _StoppableCursor(_Rows):
    """A cursor whose statements are each checked first, and run under way (Stoppable.running)."""

    def __init__(self, raw: Cursor, reads: Stoppable) -> None:
        super().__init__(raw)
        self._reads = reads

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _StoppableCursor:
        with self._reads.running(sql):
            self._raw.execute(sql, parameters)
        return self

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /
                    ) -> _StoppableCursor:
        with self._reads.running(sql):
            self._raw.executemany(sql, parameters)
        return self
