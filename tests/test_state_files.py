"""Files the state folder's writers make: whole or not at all, and theirs alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from renkei.state import write_json


def test_a_secret_is_not_written_into_a_file_made_before_under_its_partial_name(
        tmp_path: Path) -> None:
    """Another user of a shared folder (a card folder, compose's .env) who makes the partial
    file first, world-readable, under the name it was given (its pid) got the secret written
    into their file, then moved in place, readable by all."""
    secret = tmp_path / "compose.env"
    laid = tmp_path / f".{secret.name}.{os.getpid()}.partial"
    laid.write_text("")
    laid.chmod(0o666)
    write_json(secret, {"password": "S3cret"}, private=True)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert laid.read_text() == "" and stat.S_IMODE(laid.stat().st_mode) == 0o666
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([secret.name, laid.name])


def test_a_public_file_is_readable_by_all_and_a_new_one_never_replaces(tmp_path: Path) -> None:
    public = tmp_path / "ca.json"
    write_json(public, {"certificate": "…"})
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    with pytest.raises(FileExistsError):
        write_json(public, {"certificate": "another"}, new=True)
    assert "…" in public.read_text() and [p.name for p in tmp_path.iterdir()] == ["ca.json"]
