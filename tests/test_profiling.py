"""CPU profiles by the CPU clock: which part of the stack a function belongs to, a profile left by
a block run with `RENKEI_PROFILE` set, and the folder's summary."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from renkei import profiling
from renkei.profiling import ENV, ROOT


def test_functions_are_counted_in_their_part_of_the_stack() -> None:
    assert profiling.part_of("~", "<method 'execute' of 'sqlite3.Connection' objects>") == "SQLite"
    assert profiling.part_of(
        "~", "<method 'encrypt' of 'cryptography.hazmat.bindings._rust.openssl.hpke.Suite' "
             "objects>") == "crypto"
    assert profiling.part_of(f"{ROOT}schemas/codec.py", "encode_record") == "codec"
    assert profiling.part_of("/x/site-packages/aiokafka/conn.py", "send") == "aiokafka"
    assert profiling.part_of("/usr/lib/python3.11/asyncio/base_events.py", "_run_once") == "asyncio"
    assert profiling.part_of(f"{ROOT}processors/decider.py", "handle") == "Renkei"
    assert profiling.part_of(f"{ROOT}.venv/lib/site-packages/click/core.py", "invoke") == "other"


def _work() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (a TEXT)")
    for n in range(20_000):
        db.execute("INSERT INTO t VALUES (?)", (json.dumps({"n": n}),))
    db.close()


def test_a_profiled_block_leaves_a_profile_that_the_summary_counts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with profiling.profiled("unprofiled"):  # RENKEI_PROFILE unset: nothing written
        _work()
    monkeypatch.setenv(ENV, str(tmp_path))
    with profiling.profiled("unit-test"):
        _work()
    with profiling.into(tmp_path / "point"):
        assert os.environ[ENV] == str(tmp_path / "point")
        with profiling.profiled("holder"):
            _work()
    assert os.environ[ENV] == str(tmp_path)
    found = profiling.summary(tmp_path)
    assert set(found) == {"unit-test", "point"}
    for name in found:
        assert found[name]["profiles"] == 1 and found[name]["cpu_seconds"] > 0
        assert found[name]["percent"]["SQLite"] > found[name]["percent"].get("codec", 0)
        assert 99 < sum(found[name]["percent"].values()) < 101
    assert "SQLite" in profiling.lines(found)[0]
