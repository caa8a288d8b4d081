"""The state folder and the logs in it were made readable by every user of the machine (0755,
0644: mkdir -p's and open's modes), where the secrets' own folders and files are their user's
alone: the logs name holders and requests. The state folder is made 0700 by whatever first
writes in it, a log 0600 when its run begins it, and a state folder made before so is made 0700
when a `renkei` command starts."""

from __future__ import annotations

import logging
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from renkei import cli, town
from renkei.state import STATE_ENV, state_path, state_tightened, write_json


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_folder_and_a_processs_log_are_their_users_alone_when_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv(STATE_ENV, str(state))
    monkeypatch.setattr(town, "renkei_command",
                        lambda *args: [sys.executable, "-c", "print('a request of city-a')"])
    procs = town.Processes()
    procs.start("audit", "ignored")
    assert procs.running.pop("audit").wait(30) == 0
    log = town.log_path("audit")
    assert log.read_text(encoding="utf-8") == "a request of city-a\n"
    assert (_mode(state), _mode(log)) == (0o700, 0o600)


def test_the_state_folder_made_by_a_file_written_in_it_is_its_users_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv(STATE_ENV, str(state))
    write_json(state_path("linkage-runs", "point.start"), 1.0)
    assert _mode(state) == 0o700


def test_a_state_folder_others_may_read_is_made_its_users_alone_when_a_command_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / ".state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    monkeypatch.setenv(STATE_ENV, str(state))
    CliRunner().invoke(cli.main, ["broker", "status"])
    assert _mode(state) == 0o700


def test_a_state_folder_linked_elsewhere_others_may_read_is_made_its_users_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `.state` that is a link to a folder elsewhere (a mounted volume) was taken for a folder
    not Renkei's own, its name resolved away: left readable by others, a WARNING at each
    command."""
    volume = tmp_path / "volume"
    volume.mkdir(mode=0o755)
    volume.chmod(0o755)
    (tmp_path / ".state").symlink_to(volume)
    monkeypatch.setenv(STATE_ENV, str(tmp_path / ".state"))
    state_tightened()
    assert _mode(volume) == 0o700


@pytest.mark.parametrize("named", [".", "home", "group-shared", ".state/..", ".state/compose"])
def test_only_renkeis_own_state_folder_others_may_read_is_made_its_users_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        named: str) -> None:
    """RENKEI_STATE naming a folder that is not Renkei's own (the working directory, a home, a
    group's) others may read: left so, said in one WARNING line; one in a `.state` folder (as
    compose's) is made its user's alone, saying nothing."""
    state = tmp_path / "work" / named
    (tmp_path / "work" / ".state").mkdir(parents=True)
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv(STATE_ENV, named)
    state_tightened()
    ours = named == ".state/compose"
    assert _mode(state) == (0o700 if ours else 0o755)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == ([] if ours else [f"the state folder {named} stays readable by others "
                                     f"(mode 755): in no .state folder, it may be not Renkei's "
                                     "alone: chmod 700 it if it is"])
