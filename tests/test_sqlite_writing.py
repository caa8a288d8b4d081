"""renkei.sqlite's write transactions: all or nothing, the connection usable after a failure."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from renkei.sqlite import connected, writing


def test_a_commit_that_fails_leaves_no_transaction_open(tmp_path: Path) -> None:
    db = connected(tmp_path / "store.db")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("CREATE TABLE people (id INTEGER PRIMARY KEY)")
    db.execute("CREATE TABLE entries (person INTEGER REFERENCES people(id) "
               "DEFERRABLE INITIALLY DEFERRED)")
    # the deferred key is checked only at COMMIT, which fails
    with pytest.raises(sqlite3.IntegrityError), writing(db):
        db.execute("INSERT INTO entries VALUES (1)")
    assert not db.in_transaction, "rolled back: the next write transaction can begin"
    with writing(db):
        db.execute("INSERT INTO people VALUES (1)")
    assert db.execute("SELECT count(*) FROM entries").fetchone() == (0,)
    db.close()
