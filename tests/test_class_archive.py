"""`renkei broker fetch` archives Kafka's classes for the broker's JVM, once (again if the JVM
cannot start from the archive), and every broker started after starts from it (its JVM maps it):
ready on about half the CPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from broker import jars, process
from broker.ports import free_port_pair
from renkei.state import STATE_ENV, state_folder
from tests.kafka_helpers import renkei


def test_fetch_archives_the_classes_once_and_a_broker_starts_from_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    versioned = cache / jars.libs_dir().parent.name
    versioned.mkdir(parents=True)
    (versioned / "libs").symlink_to(jars.libs_dir())  # the jars fetched: not fetched again
    shutil.copy(jars.libs_dir().parent / "complete", versioned / "complete")
    env = {jars.CACHE_ENV: str(cache), STATE_ENV: str(tmp_path / "fetching")}
    first = renkei("broker", "fetch", env=env)
    archives = list(versioned.glob("classes-*.jsa"))
    assert len(archives) == 1 and archives[0].stat().st_size > 1_000_000, first.stdout
    assert f"Kafka's classes archived for the JVM in {archives[0]}" in first.stdout
    assert not list(versioned.glob("*.partial"))
    assert not (tmp_path / "fetching").exists() or not list((tmp_path / "fetching").iterdir())
    made = archives[0].read_bytes()
    archives[0].write_bytes(made[:len(made) // 2])  # cut short: a fetch killed mid-write, say
    remade = renkei("broker", "fetch", env=env)
    assert f"Kafka's classes archived for the JVM in {archives[0]}" in remade.stdout, remade
    assert archives[0].stat().st_size > len(made) // 2
    again = renkei("broker", "fetch", env=env)
    assert "archived" not in again.stdout and again.stderr == "", again
    assert list(versioned.glob("classes-*.jsa")) == archives
    monkeypatch.setenv(jars.CACHE_ENV, str(cache))
    with state_folder(tmp_path / "state"):
        process.up(*free_port_pair(), tethered=True)
        try:
            (status,) = process.status()[1]
            assert status.pid is not None
            maps = Path(f"/proc/{status.pid}/maps").read_text()
            assert str(archives[0]) in maps, "the broker's JVM did not start from the archive"
        finally:
            process.down()
