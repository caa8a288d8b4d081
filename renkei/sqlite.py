"""SQLite as Renkei's embedded stores use it: one connection in autocommit mode, write-ahead
logged, and write transactions that take the write lock at their start."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from renkei.clock import Mark

INTEGERS = range(-(1 << 63), 1 << 63)  # the integers SQLite stores (signed 64-bit)
MARKED = ("boot TEXT", "until_elapsed REAL")  # an expiry's mark on the elapsed clock, if it had one


# A deleted row's bytes overwritten with zeros, in its page and in the pages freed, not left in
# the file after a purge of personal data past its retention (SQLite's own default, a build
# without SQLITE_SECURE_DELETE, leaves them): a purge of 10,000 look-ups took 9.6 ms, not 9.0,
# of 10,000 access-log entries 25.9, not 24.0 (medians of 15)
SECURE_DELETE = "PRAGMA secure_delete = ON"


def busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite gave up waiting for a lock another connection held past its busy
    timeout (trying again later may work), not another failure."""
    return exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def unwritable(exc: sqlite3.OperationalError) -> bool:
    """Whether a write failed for the store's file could not grow: its disk full (SQLite's
    "database or disk is full", of ENOSPC), or its file system's quota or the file size a limit
    allows reached (EDQUOT, EFBIG: SQLite's "disk I/O error" of a write), not another failure;
    freed, the write may be made again."""
    return exc.sqlite_errorcode in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR_WRITE)


@contextmanager
def faults_told(path: str | Path) -> Iterator[None]:
    """A write of a long-running service's store that found its disk full (or its file system's
    quota, or the file size a limit allows), or the store locked by another process past the
    busy timeout (an operator's sqlite3 shell left in a transaction), raised as an OSError naming
    the store and what to do: the command's one line (renkei.cli), not a traceback under SQLite's
    own words, which name no file. The transaction it failed in was rolled back, and the records
    it handled not committed: started again, the service handles them again."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
            raise OSError(errno.ENOSPC, "the disk of this store is full: free space there, then "
                          f"start the service again ({AGAIN})", str(path)) from exc
        if busy(exc):
            raise OSError(None, f"this store stayed locked by another process ({exc}): end that "
                          "process's transaction (an sqlite3 shell's), then start the service "
                          f"again ({AGAIN})", str(path)) from exc
        raise


AGAIN = "what it was writing is handled again"


def created_private(path: str | Path) -> None:
    """The store's file made readable by this user only if it is not there yet (its -wal, -shm
    and -journal files take its mode), made where a symbolic link at `path` leads if it leads to
    none (SQLite writes there, its -wal and -shm beside it); an existing file's mode is left as
    its operator set it, and the file is not opened (closing it would drop the POSIX locks every
    connection of this process holds on it: another process would take itself for the last one
    and delete the write-ahead log those connections still write to); a file that cannot be
    made there is left for SQLite to refuse in its own words."""
    if str(path) != ":memory:":
        with suppress(OSError):
            os.close(os.open(os.path.realpath(path), os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o600))


# A long write (numbering or keying a registry again) cut into transactions of BATCH rows (tens
# of ms of the write lock each), with a pause after each in which another process waiting for the
# lock (SQLite polls it every ≤ 100 ms) takes it: one transaction for all would hold it longer
# than the others wait (5 s), and a crash would lose all of it.
BATCH = 1_000
BATCH_PAUSE = 0.005
COMPANIONS = ("-journal", "-wal", "-shm")  # files SQLite keeps beside a store


def removed(path: Path) -> None:
    """The store at `path` gone with its journal and write-ahead log: a store made in its place
    would take them for its own (SQLite replays them: a rolled-back or replayed page of the old
    store in the new one)."""
    for name in (path.name, *(path.name + suffix for suffix in COMPANIONS)):
        path.with_name(name).unlink(missing_ok=True)


def file_at(path: Path) -> tuple[int, int] | None:
    """Which file is at `path` now (its device and inode), None if none: another put in its
    place (os.replace) is another, though a connection opened on the first reads the first on."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def opened(path: Path) -> sqlite3.Connection:
    """sqlite3.connect(path), created readable by this user only; a store that cannot be opened
    there an OSError naming the path (SQLite's own error names none)."""
    created_private(path)
    try:
        return sqlite3.connect(path)
    except sqlite3.OperationalError as exc:
        raise OSError(None, f"cannot open a SQLite store ({exc})", str(path)) from exc


def connected(path: Path) -> sqlite3.Connection:
    """The store at `path` (created readable by this user only), in WAL mode, synced at
    checkpoints (a crash loses no commit the OS kept), what it deletes overwritten
    (SECURE_DELETE); transactions are begun by `writing`, not implicitly. One that cannot be
    opened so (its disk full, its folder read-only) an OSError naming the path, as `opened`'s."""
    created_private(path)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(SECURE_DELETE)
    except sqlite3.OperationalError as exc:
        db.close()
        raise OSError(None, f"cannot open a SQLite store ({exc})", str(path)) from exc
    return db


def read_only(path: str | Path) -> sqlite3.Connection:
    """The store at `path`, through a connection nothing can be written through (mode=ro), in
    autocommit mode; sqlite3.OperationalError here, not at the first read, if it cannot be
    opened (not there, or a WAL store without its -wal and -shm in a folder this process may
    not write in), sqlite3.DatabaseError if it is no database (or one cut short)."""
    db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True,
                         isolation_level=None, check_same_thread=False)
    db.execute("SELECT count(*) FROM sqlite_master")  # the file opened, its schema read
    return db


@contextmanager
def closed_if_failing(db: sqlite3.Connection) -> Iterator[None]:
    """Close the connection if what is done in the block raises: a store whose opening failed
    leaves no connection open (its file with it) until it is collected."""
    try:
        yield
    except BaseException:
        db.close()
        raise


@contextmanager
def writing(db: sqlite3.Connection, *, deferred: bool = False) -> Iterator[None]:
    """One write transaction (BEGIN IMMEDIATE): committed at the end, rolled back on any error;
    deferred, it reads one snapshot of the store and takes its write lock only once it writes to
    it (writing a TEMP table alone takes none). A COMMIT that fails rolls back too, so the
    connection is left in no transaction (the next BEGIN would fail)."""
    db.execute("BEGIN DEFERRED" if deferred else "BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    try:
        db.execute("COMMIT")
    except sqlite3.Error:  # still open (a deferred constraint, a busy commit): none of it kept
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


@contextmanager
def savepoint(db: sqlite3.Connection, name: str) -> Iterator[None]:
    """What is done in the block, all or nothing (a savepoint): inside a transaction, rolled
    back alone on any error, the transaction going on; outside one, its own transaction."""
    db.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        db.execute(f"ROLLBACK TO {name}")
        db.execute(f"RELEASE {name}")
        raise
    db.execute(f"RELEASE {name}")


def with_columns(db: sqlite3.Connection, table: str, columns: Sequence[str]) -> None:
    """Give a table from before them these columns ("name TYPE", nullable or with a default), in
    one write transaction (those another process added meanwhile left as they are)."""
    if missing_columns(db, table, columns):
        with writing(db):
            for column in missing_columns(db, table, columns):
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def missing_columns(db: sqlite3.Connection, table: str, columns: Sequence[str]) -> list[str]:
    """The columns ("name TYPE", or a name alone) the table has not."""
    have = {name for (_, name, *_) in db.execute(f"PRAGMA table_info({table})")}
    return [column for column in columns if column.split()[0] not in have]


def forget(db: sqlite3.Connection, rows: str, until: str, params: dict[str, object],
           forgotten: str) -> None:
    """Delete `rows` (SQL: "FROM table WHERE ...", with `params`), the latest `until` of them kept
    in the table `forgotten` (kept_through)."""
    (through,) = db.execute(f"SELECT MAX({until}) {rows}", params).fetchone()
    if through is not None:
        kept_through(db, forgotten, through)
        db.execute(f"DELETE {rows}", params)


def kept_through(db: sqlite3.Connection, forgotten: str, through: float) -> None:
    """Keep `through` in the table `forgotten` (its one row: id 0, through), if it is later than
    the time kept there."""
    db.execute(f"INSERT INTO {forgotten} VALUES (0, ?) ON CONFLICT (id) "
               "DO UPDATE SET through = MAX(through, excluded.through)", (through,))


def may_be_forgotten(db: sqlite3.Connection, forgotten: str, until: float) -> bool:
    """Whether a row kept until `until` may have been forgotten: no later than the time the
    table `forgotten` keeps (kept_through)."""
    row = db.execute(f"SELECT through FROM {forgotten}").fetchone()
    return row is not None and until <= row[0]


def past(until: str) -> str:
    """An SQL condition that a row's expiry is past: by its mark (MARKED) if it is of the boot
    :boot, the elapsed clock now :elapsed (renkei.clock); else by its column `until` by :now."""
    return f"CASE WHEN boot = :boot THEN until_elapsed <= :elapsed ELSE {until} <= :now END"


def now_marked(now: float, this: Mark | None) -> dict[str, object]:
    """The parameters of `past`: the wall clock's time now, as `until` has it, and the elapsed
    clock's mark now."""
    return {"now": now, "boot": this and this.boot, "elapsed": this and this.elapsed}


def marked(mark: Mark | None) -> tuple[str | None, float | None]:
    """An expiry's mark as its row keeps it (MARKED): boot and elapsed reading, or neither."""
    return (None, None) if mark is None else (mark.boot, mark.elapsed)
