"""What an operator gets wrong is said in one line, naming what is wrong, with no traceback: a
missing key store, a port in use, an audit store that cannot be opened, a blank reason, a bad
pattern file. None of these needs a broker."""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from audit.cli import audit_cli
from audit.heads import Signer
from audit.oversight_cli import oversight_cli
from audit.sql import POSTGRESQL_SCHEMES
from audit.store import AuditStore
from broker import cluster, credentials, jars
from cards.cli import PIN_ENV, card_cli
from portal.inbox import default_path as inbox_path
from registry.resident_code import CODES
from renkei import chaos_cli
from renkei.bench_linkage import linkage_bench
from renkei.chaos_cli import broker_chaos
from renkei.cli import main
from renkei.state import STATE_ENV, held, state_folder
from tests.kafka_helpers import renkei, said_in_one_line
from tests.loop_helpers import Deadline
from tests.proc_helpers import interruptible, reading_stdin

PATTERN_FILES = {"bad.toml": "x = \n", "none.toml": "x = 1\n",
                 "partial.toml": '[[pattern]]\npattern_id = "a"\n'}
PATTERN = ('[[pattern]]\npattern_id = "P-1"\nlegal_basis = "b"\npurpose = "p"\n'
           'requester_role = "municipality"\nprovider_role = "municipality"\n')
PATTERN_FILES |= {  # each a file that reads but is no pattern list: refused before the broker
    "backwards.toml": PATTERN + 'version = 1\ndata_types = ["t"]\n'
    "valid_from = 2024-04-01T00:00:00+09:00\nvalid_to = 2017-11-13T00:00:00+09:00\n",
    "local.toml": PATTERN + 'version = 1\ndata_types = ["t"]\nvalid_from = 2024-04-01T00:00:00\n',
    "twice.toml": 2 * (PATTERN + 'version = 1\ndata_types = ["t"]\n'
                       "valid_from = 2024-04-01T00:00:00+09:00\n"),
    "huge.toml": PATTERN + 'version = 99999999999999999999\ndata_types = ["t"]\n'
    "valid_from = 2024-04-01T00:00:00+09:00\n",
    "nothing.toml": PATTERN + "version = 1\ndata_types = []\n"
    "valid_from = 2024-04-01T00:00:00+09:00\n"}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize(("args", "error"), [
    (("directory", "publish-services"), "no key store at"),
    (("audit", "run", "--db", "{tmp}/no-folder/audit.db"), "cannot open the store at"),
    (("audit", "head", "--db", "ftp://somewhere/audit"), "unsupported store URL"),
    (("audit", "verify", "--db", "postgresql://nobody@127.0.0.1:1/audit"),
     "cannot reach the store"),
    (("patterns", "publish", "{tmp}/bad.toml"), "bad.toml: Invalid value"),
    (("patterns", "publish", "{tmp}/none.toml"), "none.toml: missing 'pattern' tables"),
    (("patterns", "publish", "{tmp}/partial.toml"), "partial.toml: pattern a: missing 'version'"),
    (("patterns", "publish", "{tmp}"), "Is a directory"),
    (("patterns", "publish", "{tmp}/backwards.toml"), "is not after valid_from"),
    (("patterns", "publish", "{tmp}/local.toml"), "validity must be datetimes with their offset"),
    (("patterns", "publish", "{tmp}/twice.toml"), "pattern P-1 version 1 is in the file twice"),
    (("patterns", "publish", "{tmp}/huge.toml"), "a whole number from 1 to 2147483647"),
    (("patterns", "publish", "{tmp}/nothing.toml"), "data_types must be a list of one or more"),
])
def test_a_mistake_is_said_in_one_line(tmp_path: Path, args: tuple[str, ...],
                                       error: str) -> None:
    for name, text in PATTERN_FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    run = renkei(*(a.format(tmp=tmp_path) for a in args),
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 1
    said_in_one_line(run.stderr, error)


@pytest.mark.parametrize(("url", "error"), [
    ("postgresql://auditor:S3cretPW@[::1/audit",
     "postgresql://… is not a store address psycopg reads"),
    ("postgresql://auditor:S3cretPW@127.0.0.1:1/audit?foo=bar",
     "postgresql://127.0.0.1:1/audit is not a store address psycopg reads"),
    ("mysql://auditor:S3cretPW@127.0.0.1/audit", "unsupported store URL mysql://…")])
@pytest.mark.parametrize("given", ["--db", "RENKEI_AUDIT_DB"])
def test_a_store_address_that_cannot_be_read_is_said_without_its_password(
        tmp_path: Path, url: str, error: str, given: str) -> None:
    """psycopg's words for a URI it cannot parse quote it whole, password and all: they went out
    in a traceback, as did the URL of a scheme no store has. The address may be given in the
    environment, where `ps` does not show a password in it."""
    env = {STATE_ENV: str(tmp_path / "state")}
    if given == "--db":
        run = renkei("audit", "query", "--db", url, env=env, check=False)
    else:
        run = renkei("audit", "query", env=env | {given: url}, check=False)
    assert run.returncode == 1 and "S3cretPW" not in run.stdout + run.stderr
    said_in_one_line(run.stderr, error)


def test_an_alert_rule_the_detector_does_not_have_is_refused(tmp_path: Path) -> None:
    run = renkei("oversight", "alerts", "--rule", "OFF-HOURS",
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2  # before any broker is asked: a misspelt rule is no empty list
    said_in_one_line(run.stderr, "'OFF-HOURS' is not one of 'VOLUME', 'REPEATED_PERSON'")


def test_holders_are_not_asked_for_no_time_at_all(tmp_path: Path) -> None:
    run = renkei("oversight", "holder-logs", "--holder", "nenkin", "--request", "r-1",
                 "--basis", "番号法第38条", "--within", "-1",
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2  # before any holder is asked: none could answer in no time
    said_in_one_line(run.stderr, "'--within': -1.0 is not in the range x>0")


def test_a_replay_rechecks_with_no_knowledge_from_after_an_event(tmp_path: Path) -> None:
    run = renkei("audit", "replay", "--grace", "-5", env={STATE_ENV: str(tmp_path / "state")},
                 check=False)
    assert run.returncode == 2  # a negative grace took the pattern list of 5 s later as known
    said_in_one_line(run.stderr, "'--grace': -5.0 is not in the range 0<=x<=86400.0")


@pytest.mark.parametrize(("number", "said"), [
    ("nan", "'nan' is not a finite number"), ("inf", "inf is not in the range 0<=x<=86400.0")])
def test_a_replay_grace_of_no_finite_number_is_refused(tmp_path: Path, number: str,
                                                       said: str) -> None:
    """Not taken by the range, then ended in 'cannot convert float NaN to integer'."""
    run = renkei("audit", "replay", "--grace", number, env={STATE_ENV: str(tmp_path / "state")},
                 check=False)
    assert run.returncode == 2
    said_in_one_line(run.stderr, f"'--grace': {said}")


def _options(command: click.Command) -> Iterator[tuple[str, click.Parameter]]:
    """Each option of `command`, and of every command under it, named after its command."""
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for sub in filter(None, (command.get_command(ctx, name)
                                 for name in command.list_commands(ctx))):
            yield from _options(sub)
    yield from ((f"{command.name} {option.name}", option) for option in command.params)


def _takes(numbers: click.ParamType[Any], number: str) -> bool:
    """Whether the option's type takes `number` (given as text, as on the command line)."""
    try:
        numbers.convert(number, None, None)
    except click.BadParameter:
        return False
    return True


def test_a_registry_of_more_residents_than_there_are_resident_codes_is_refused(
        tmp_path: Path) -> None:
    """Not an OverflowError from drawing the awkward cases (nor, below 2**63, codes drawn for
    ever once all were taken), nor in a demo, benchmark or chaos run's town."""
    residents = {name: option.type for name, option in _options(main)
                 if name.endswith(" residents")}
    assert {"generate residents", "demo residents", "linkage residents"} <= residents.keys()
    assert all(_takes(numbers, str(CODES)) for numbers in residents.values())
    assert not [name for name, numbers in residents.items() if _takes(numbers, str(CODES + 1))]
    run = renkei("registry", "generate", "--residents", str(10 ** 20),
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2, run.stdout
    said_in_one_line(run.stderr, f"'--residents': {10 ** 20} is more residents than there are "
                                 f"resident codes, one for each resident ({CODES:,})")


def test_a_registry_to_generate_at_a_folder_is_refused_before_it_is_built(
        tmp_path: Path) -> None:
    """--db naming a folder was told "a registry exists" (replace it), and with --replace the
    whole registry was built, then refused ("Is a directory"), its .partial file left behind."""
    folder = tmp_path / "registry"
    folder.mkdir()
    run = renkei("registry", "generate", "--residents", "20", "--db", str(folder), "--replace",
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2 and "is a directory" in run.stderr, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry"]


def test_a_result_file_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path) -> None:
    """`bench codes --out` under a file ran the whole benchmark, then failed ("File exists")."""
    (tmp_path / "junk.db").write_text("", encoding="utf-8")
    run = renkei("bench", "codes", "--out", str(tmp_path / "junk.db" / "out.json"),
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2
    said_in_one_line(run.stderr, f"{tmp_path / 'junk.db'} is a file, not a folder")


def test_a_key_store_that_cannot_be_read_is_said_in_one_line(tmp_path: Path) -> None:
    """A damaged master.json ended `keys init` (writing the ID key's file again) and every
    command that reads the keys in a traceback; it is said, with what (not) to do."""
    env = {STATE_ENV: str(tmp_path / "state")}
    renkei("keys", "init", env=env)
    keys_folder = tmp_path / "state" / "keys"
    (keys_folder / "id-key.json").unlink()
    (keys_folder / "master.json").write_text('{"id_master": "not hex"}', encoding="utf-8")
    run = renkei("keys", "init", env=env, check=False)
    assert run.returncode == 1
    said_in_one_line(run.stderr, f"the key store at {keys_folder / 'master.json'} cannot be read "
                                 "(ValueError): restore it from its backup")


def test_no_number_is_nan_infinite_or_below_zero() -> None:
    """Each is a length of time or a rate: a plain float (`chaos broker --kill-at`, `bench
    linkage --seconds`, `bench holder --rate` …) took NaN and infinity, and a negative one."""
    numbers = {name: option.type for name, option in _options(main)
               if isinstance(option.type, click.types.FloatParamType)}
    assert {"replay grace", "broker kill_at", "linkage seconds", "holder rate"} <= numbers.keys()
    taken = [(name, number) for name, kind in numbers.items()
             for number in ("nan", "inf", "-inf", "-1") if _takes(kind, number)]
    assert not taken


@pytest.mark.parametrize(("command", "args", "error"), [
    (broker_chaos, ("--kill-at", "nan"), "'nan' is not a finite number"),
    (linkage_bench, ("--curve", "25,nan"), "'nan' is not a finite number"),
    (linkage_bench, ("--curve", "25,-50"), "-50.0 is not in the range x>0"),
    (linkage_bench, ("--scale", "1,0"), "0 is not in the range x>=1"),
    (audit_cli.commands["run"], ("--head-seconds", "0.001"), "0.001 is not in the range x>=1.0"),
    (audit_cli.commands["replay"], ("--grace", "1e12"), "is not in the range 0<=x<=86400.0")])
def test_a_number_of_no_meaning_is_refused_before_anything_runs(
        command: click.Command, args: tuple[str, ...], error: str) -> None:
    """Parsed only: a chaos run, a benchmark or an audit consumer let through is not started
    here (one with a head period of 1 ms gave the broker 1 ms to take each head: it anchored
    none, some 860 warnings in 3 s, each head tried again at the next ms; a replay's grace of
    1e12 s, back before year 1 from each event, ended its re-check in an OverflowError, and one
    of 1e15 s its start)."""
    with pytest.raises(click.BadParameter, match=re.escape(error)):
        command.make_context(command.name, list(args))


@pytest.mark.parametrize(("args", "error"), [
    (("--seconds", "20", "--kill-at", "30"), "a kill at 30s down for 5s"),
    (("--seconds", "20", "--kill-at", "20", "--down", "0"), "a kill at 20s down for 0s"),
    (("--seconds", "20", "--down", "30"), "a kill at 5s down for 30s"),
    (("--seconds", "20", "--kill-at", "10", "--down", "11"), "a kill at 10s down for 11s")])
def test_a_broker_kill_or_restart_after_the_load_ends_is_refused(
        monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], error: str) -> None:
    """A usage error in one line, not a chaos run whose kill or restart comes after the load."""
    def ran(*_: object, **__: object) -> None:
        raise AssertionError("the chaos run was started")

    monkeypatch.setattr(chaos_cli, "run_broker_chaos", ran)
    result = CliRunner().invoke(chaos_cli.broker_chaos, list(args))
    assert result.exit_code == 2, result.output
    said_in_one_line(result.output, f"{error} does not end within the load's 20s (--seconds)")
    within = CliRunner().invoke(chaos_cli.broker_chaos, ["--seconds", "20", "--kill-at", "15",
                                                         "--down", "5"])
    assert isinstance(within.exception, AssertionError)  # back as the load ends: run


def test_a_negative_count_of_broker_log_lines_is_refused(tmp_path: Path) -> None:
    """Not an empty tail, exit 0, as if the broker had logged nothing."""
    run = renkei("broker", "logs", "-n", "-5", env={STATE_ENV: str(tmp_path / "state")},
                 check=False)
    assert run.returncode == 2
    said_in_one_line(run.stderr, "'-n' / '--lines': -5 is not in the range x>=0")


@pytest.mark.parametrize(("mvn", "error"), [
    (None, "Maven (`mvn`) is not installed"),
    ("echo 'Could not resolve dependencies'; exit 1", "mvn failed (1):"),
])
def test_kafka_not_fetched_is_said_in_one_line(tmp_path: Path, mvn: str | None,
                                               error: str) -> None:
    """`renkei broker fetch`, make's first step, on a machine without Maven or offline."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if mvn is not None:
        (bin_dir / "mvn").write_text(f"#!/bin/sh\n{mvn}\n", encoding="utf-8")
        (bin_dir / "mvn").chmod(0o755)
    run = renkei("broker", "fetch", check=False,
                 env={STATE_ENV: str(tmp_path / "state"), "PATH": str(bin_dir),
                      jars.CACHE_ENV: str(tmp_path / "cache")})
    assert run.returncode == 1
    said_in_one_line(run.stderr, error)


def test_a_port_in_use_is_said_in_one_line(tmp_path: Path, taken_port: int) -> None:
    run = renkei("card", "reader", "--port", str(taken_port), "--trust", "http://127.0.0.1:1",
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 1
    said_in_one_line(run.stderr, "port in use")


def test_a_second_portal_on_the_same_state_folder_is_refused(tmp_path: Path) -> None:
    """Its sessions, card-login challenges and changes of number under way are the first's, in
    its memory: the second is refused before it listens, naming the first."""
    with state_folder(tmp_path / "state"):
        inbox = inbox_path()
        with held(inbox, "first portal"):
            run = renkei("portal", "--port", "0", check=False, timeout=60)
    assert run.returncode == 1, run.stderr
    said_in_one_line(run.stderr, f"another `renkei portal` is running in {inbox} "
                                 f"(process {os.getpid()})")


@pytest.mark.parametrize(("args", "given"), [
    (("authority", "lookup", "--holder", "city-a", "--purpose", ""), "1234"),
    (("authority", "lookup", "--holder", " ", "--purpose", "tax"), "1234"),
    (("authority", "change-number", "--request-id", "F-1", "--reason", " "), "R-1"),
    (("oversight", "holder-logs", "--holder", "nenkin", "--request", "r-1", "--basis", " "), ""),
    (("holder", "register", "city-a", "--name", " ", "--role", "municipality"), ""),
    (("holder", "register", "city-a", "--name", "桜町役場", "--role", ""), ""),
    (("holder", "staff", "add", "city-a", " "), "山田 太郎"),
    (("holder", "terminal", "add", "city-a", ""), ""),
    (("card", "officer", " ", "--holder", "oversight", "--role", "oversight"), "")])
def test_a_blank_text_is_refused(tmp_path: Path, args: tuple[str, ...], given: str) -> None:
    run = renkei(*args, env={STATE_ENV: str(tmp_path / "state"), PIN_ENV: "1234"}, check=False,
                 input=given)
    assert run.returncode == 2
    assert "must not be blank" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("command", ["verify", "head", "query", "purge"])
def test_reading_an_audit_store_that_is_not_there_makes_none(tmp_path: Path,
                                                              command: str) -> None:
    state = tmp_path / "state"
    for db in (tmp_path / "missing.db", None):
        args = ("audit", command) + (("--db", str(db)) if db else ())
        run = renkei(*args, env={STATE_ENV: str(state)}, check=False)
        assert run.returncode == 1, run.stdout
        said_in_one_line(run.stderr, "no audit store at")
    assert not (tmp_path / "missing.db").exists()
    assert not list(state.rglob("*.db")) and not list(state.rglob("head-key.json"))


def test_a_replay_against_a_live_store_that_is_not_there_makes_none(tmp_path: Path) -> None:
    """A live store mistyped was made, empty, and the replay called it cut short."""
    state = tmp_path / "state"
    for live in (tmp_path / "missing.db", None):
        args = ("audit", "replay") + (("--live", str(live)) if live else ())
        run = renkei(*args, env={STATE_ENV: str(state)}, check=False)
        assert run.returncode == 1, run.stdout
        said_in_one_line(run.stderr, "no audit store at")
    assert not (tmp_path / "missing.db").exists() and not list(state.rglob("*.db"))


@pytest.mark.parametrize("command", ["verify", "head", "query", "purge"])
def test_an_audit_store_url_of_no_path_is_no_store(tmp_path: Path, command: str) -> None:
    """Not SQLite's temporary database, which `head` signed a head of and `query` read."""
    run = renkei("audit", command, "--db", "sqlite:///",
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 1, run.stdout
    said_in_one_line(run.stderr, "no audit store at sqlite:///")


@pytest.mark.parametrize(("args", "url"), [
    (("run",), "sqlite:///"), (("run",), "sqlite:///:memory:"),
    (("replay", "--live", "{tmp}/live.db"), "sqlite:///")])
def test_an_audit_store_to_write_at_a_url_of_no_file_is_refused(
        tmp_path: Path, args: tuple[str, ...], url: str) -> None:
    """Not SQLite's temporary database, into which the consumer wrote a log that vanished."""
    AuditStore(tmp_path / "live.db", Signer.generate()).close()
    run = renkei("audit", *(a.format(tmp=tmp_path) for a in args), "--db", url,
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 1, run.stdout
    said_in_one_line(run.stderr, f"no audit store at {url}: SQLite keeps none there")


@pytest.mark.parametrize("command", ["verify", "head", "query", "purge"])
def test_an_audit_command_on_a_store_without_its_key_makes_none(tmp_path: Path,
                                                                 command: str) -> None:
    """An auditor's copy in a state folder of its own: a key made there would call it tampered."""
    AuditStore(tmp_path / "copy.db", Signer.generate()).close()
    state = tmp_path / "state"
    run = renkei("audit", command, "--db", str(tmp_path / "copy.db"),
                 env={STATE_ENV: str(state)}, check=False)
    assert run.returncode == 1, run.stdout
    key = state / ("audit" if command in ("verify", "query") else "keys/audit") / "head-key.json"
    said_in_one_line(run.stderr, f"no head key at {key}")
    assert not list(state.rglob("head-key.json"))


def test_verifying_a_file_that_is_not_a_store_says_so(tmp_path: Path) -> None:
    (tmp_path / "notadb.db").write_text("not a db\n")
    Signer.load_or_create(tmp_path / "state" / "audit" / "head-key.json")
    run = renkei("audit", "verify", "--db", str(tmp_path / "notadb.db"),
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 1
    said_in_one_line(run.stderr, "file is not a database")


def test_a_bad_cursor_names_the_field_a_page_gives(tmp_path: Path) -> None:
    AuditStore(tmp_path / "audit.db", Signer.generate()).close()
    Signer.load_or_create(tmp_path / "state" / "audit" / "head-key.json")
    run = renkei("audit", "query", "--db", str(tmp_path / "audit.db"), "--after", "bad",
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2
    assert "pass the `next` of the previous page" in run.stderr, run.stderr


@pytest.mark.parametrize("nodes", ["0", "-1", "2"])
def test_a_broker_of_other_than_one_or_three_nodes_is_refused(tmp_path: Path, taken_port: int,
                                                                nodes: str) -> None:
    """On a port taken, so that old code letting the layout through starts no broker."""
    run = renkei("broker", "up", "--nodes", nodes, "--port", str(taken_port),
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2, run.stdout
    assert "'--nodes'" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "state" / "broker" / "cluster.json").exists()


@pytest.mark.parametrize("args", [
    ("broker", "up", "--port", "70000"), ("broker", "up", "--controller-port", "-1"),
    ("card", "reader", "--port", "70000", "--trust", "http://127.0.0.1:1"),
    ("portal", "--port", "-1"), ("holder", "run", "city-a", "--port", "70000")])
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    run = renkei(*args, env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2, run.stderr
    assert "'--port'" in run.stderr or "'--controller-port'" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr, run.stderr


def test_every_port_option_says_what_0_is() -> None:
    """Any free port, which the server names (the portal and the card reader named port 0),
    or refused (the broker's, kept for its restarts)."""
    ports = {name: getattr(option, "help", "") for name, option in _options(main)
             if name.endswith(" port")}
    assert {"portal port", "reader port", "run port", "up port"} <= ports.keys()
    assert all("0: any free one" in said or "not 0" in said for said in ports.values()), ports


def test_a_cluster_whose_last_nodes_would_be_past_the_last_port_is_refused(
        tmp_path: Path) -> None:
    run = renkei("broker", "up", "--nodes", "3", "--port", "65533", "--controller-port", "65534",
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 1
    said_in_one_line(run.stderr, "node 2 would be on port 65536, not a TCP port")


@pytest.mark.parametrize(("args", "given"), [
    (("authority", "status"), ""), (("authority", "number-of"), "12345678919"),
    (("authority", "lookup", "--holder", "city-a", "--purpose", "tax"), "123456789018"),
    (("authority", "change-number", "--request-id", "F-1", "--reason", "lost"), "12345678919"),
    (("authority", "serve"), "")])  # an empty one made would answer that nobody has a number
def test_reading_an_authority_store_that_is_not_there_makes_none(
        tmp_path: Path, args: tuple[str, ...], given: str) -> None:
    state = tmp_path / "state"
    for db in (tmp_path / "missing.db", None):
        run = renkei(*args, *(("--db", str(db)) if db else ()), env={STATE_ENV: str(state)},
                     check=False, input=given)
        assert run.returncode == 1, run.stdout
        said_in_one_line(run.stderr, "no authority store at")
    assert not (tmp_path / "missing.db").exists() and not list(state.rglob("*.db"))


@pytest.mark.parametrize("holder", ["", "Sakura Town", "x" * 100])
def test_an_officer_card_for_no_holder_id_is_refused(tmp_path: Path, holder: str) -> None:
    state = tmp_path / "state"
    assert renkei("card", "init", env={STATE_ENV: str(state)}).returncode == 0
    run = renkei("card", "officer", "op-1", "--holder", holder, "--role", "counter",
                 env={STATE_ENV: str(state), PIN_ENV: "1234"}, check=False)
    assert run.returncode == 2, run.stdout
    assert "invalid principal name" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not list(state.rglob("*.card.json"))


def test_an_officer_card_for_a_holder_not_registered_is_refused(tmp_path: Path) -> None:
    """Before its PIN is asked: no card names a holder whose staff could not act."""
    state = tmp_path / "state"
    assert renkei("card", "init", env={STATE_ENV: str(state)}).returncode == 0
    run = renkei("card", "officer", "bob", "--holder", "nosuch", "--role", "counter",
                 env={STATE_ENV: str(state)}, check=False)
    assert run.returncode == 1, run.stdout
    said_in_one_line(run.stderr, "no holder 'nosuch' is registered in this state folder: run "
                                 "`renkei holder register nosuch …` first")
    assert "PIN" not in run.stderr and not list(state.rglob("*.card.json"))


@pytest.mark.parametrize(("args", "error"), [
    (("holder", "run", "{long}"), "invalid principal name"),
    (("holder", "staff", "add", "{long}", "s-1"), "invalid principal name"),
    (("keys", "rekey", "{long}"), "bad link-code unit"),
    (("card", "reader", "--trust", "ftp://{long}"), "is not a web origin")])
def test_a_name_given_too_long_is_not_said_back_whole(tmp_path: Path, args: tuple[str, ...],
                                                      error: str) -> None:
    """Cut, its length told: not 100,000 characters of it on one error line."""
    run = renkei(*(a.format(long="x" * 100_000) for a in args),
                 env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode in (1, 2), run.stdout
    said_in_one_line(run.stderr, error)
    assert re.search(r"…\(1000\d\d chars\)", run.stderr) and len(run.stderr) < 1000, run.stderr


@pytest.mark.parametrize("service", [("platform", "run"), ("audit", "run")])
def test_a_log_level_logging_has_not_is_a_usage_error(tmp_path: Path,
                                                      service: tuple[str, ...]) -> None:
    run = renkei(*service, "--loglevel", "verbose", env={STATE_ENV: str(tmp_path / "state")},
                 check=False)
    assert run.returncode == 2, run.stdout
    assert "'verbose' is not one of 'debug', 'info'" in run.stderr, run.stderr


def test_a_command_logs_in_the_services_form(tmp_path: Path) -> None:
    """A short-lived command's warning (here `renkei authority follow` after the registry was
    generated again) is a log line as a service's, its time and level before it: not Python's
    bare last resort, the message alone, like the command's own output."""
    env = {STATE_ENV: str(tmp_path / "state")}
    renkei("registry", "generate", "--residents", "20", env=env)
    renkei("authority", "assign-all", env=env)
    renkei("registry", "generate", "--residents", "20", "--replace", env=env)
    run = renkei("authority", "follow", env=env)
    registry = tmp_path / "state" / "registry" / "registry.db"
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} WARNING the registry at "
        rf"{re.escape(str(registry))} is not the one followed before: its code changes are "
        r"followed from its first\n", run.stderr), run.stderr


@pytest.mark.parametrize(("args", "option"), [
    (("platform", "run", "--answer-timeout", "0"), "--answer-timeout"),
    (("portal", "--idle-minutes", "-1"), "--idle-minutes"),
    (("oversight", "holder-logs", "--holder", "city-a", "--request", "r-1", "--basis", "law",
      "--within", "-1"), "--within"),
    (("audit", "replay", "--grace", "-1"), "--grace")])
def test_a_length_of_time_below_zero_or_of_none_is_a_usage_error(
        tmp_path: Path, args: tuple[str, ...], option: str) -> None:
    """None ends at once: every answer timed out, every session over, no holder waited for."""
    run = renkei(*args, env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2, run.stdout
    assert f"Invalid value for '{option}'" in run.stderr, run.stderr


@pytest.mark.parametrize("args", [("--limit", "-1"), ("--limit", "0"), ("--after", "-1"),
                                  ("--after", str(2**64))])
def test_registry_events_out_of_range_are_a_usage_error(tmp_path: Path,
                                                        args: tuple[str, ...]) -> None:
    """Not every event (a --limit of -1 is SQLite's no limit) nor an OverflowError."""
    state = tmp_path / "state"
    renkei("registry", "generate", "--residents", "20", env={STATE_ENV: str(state)})
    run = renkei("registry", "events", *args, env={STATE_ENV: str(state)}, check=False)
    assert run.returncode == 2, run.stdout
    assert f"Invalid value for '{args[0]}'" in run.stderr, run.stderr


@pytest.mark.parametrize("args", [("card", "list"),
                                  ("card", "reader", "--trust", "http://127.0.0.1:8080")])
def test_a_folder_of_cards_that_is_not_there_is_a_usage_error(tmp_path: Path, taken_port: int,
                                                              args: tuple[str, ...]) -> None:
    """Not an empty list, nor a reader with no card in it (on a port taken, so that one let
    through ends at once); the help says the folder is read from."""
    env = {STATE_ENV: str(tmp_path / "state")}
    port = ("--port", str(taken_port)) if "reader" in args else ()
    run = renkei(*args, *port, "--dir", str(tmp_path / "no-cards"), env=env, check=False)
    assert run.returncode == 2, run.stdout
    assert "Invalid value for '--dir'" in run.stderr and "does not exist" in run.stderr
    helped = renkei(*args[:2], "--help", env=env).stdout
    assert "the folder of the card files" in helped and "goes" not in helped



def test_a_reader_trusts_an_origin_as_the_portal_names_itself() -> None:
    """Without its trailing slash, as the portal asks (one told to trust http://…:8080/ signed
    for no site)."""
    ctx = card_cli.commands["reader"].make_context(
        "reader", ["--trust", "http://127.0.0.1:8080/", "--trust", "https://portal.example"])
    assert ctx.params["trusted"] == ("http://127.0.0.1:8080", "https://portal.example")


@pytest.mark.parametrize("args", [
    ("card", "reader", "--trust", "127.0.0.1:8080"),
    ("card", "reader", "--trust", "http://127.0.0.1:8080/login"),
    ("registry", "serve", "--portal-origin", "ftp://127.0.0.1"),
    ("portal", "--origin", ""),
    ("portal", "--reader", "127.0.0.1:8765"),
    ("portal", "--reader", "http://127.0.0.1:8765/sign")])
def test_an_origin_that_is_none_is_a_usage_error(tmp_path: Path, taken_port: int,
                                                 args: tuple[str, ...]) -> None:
    """(The reader and the portal on a port taken, so that one let through ends at once.) A
    portal given a card reader at no origin sent each card login to a page of its own, or of
    the reader, that is not there."""
    port = ("--port", str(taken_port)) if args[0] in ("card", "portal") else ()
    run = renkei(*args, *port, env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2, run.stderr
    assert "is not a web origin" in run.stderr and "Traceback" not in run.stderr, run.stderr



@pytest.mark.parametrize(("args", "state_under_it"), [
    (("broker", "status"), True), (("card", "init"), True),
    (("card", "officer", "op-1", "--holder", "oversight", "--role", "oversight", "--dir",
      "{file}/cards"), False),
    (("broker", "secrets", "--env-file", "{file}/.env"), False)])
def test_a_file_or_folder_that_cannot_be_made_is_named_in_one_line(
        tmp_path: Path, args: tuple[str, ...], state_under_it: bool) -> None:
    """Under a file, where no folder can be: the state folder itself, or one a command writes."""
    file = tmp_path / "a-file"
    file.write_text("", encoding="utf-8")
    env = {STATE_ENV: str(file / "state" if state_under_it else tmp_path / "state"),
           PIN_ENV: "1234"}
    if not state_under_it:
        assert renkei("card", "init", env=env).returncode == 0
    run = renkei(*(a.format(file=file) for a in args), env=env, check=False)
    assert run.returncode == 1, run.stdout
    said_in_one_line(run.stderr, str(file))


@pytest.mark.parametrize("args", [
    ("oversight", "alerts"),
    ("oversight", "holder-logs", "--holder", "nenkin", "--request", "r-1", "--basis", "law")])
def test_a_service_principal_without_credentials_is_said_in_one_line(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    """A broker set up (not running: the credentials are looked for first), never provisioned."""
    state = tmp_path / "state"
    with state_folder(state):
        cluster.save(cluster.plan(cluster.DEFAULT_CLIENT_PORT, cluster.DEFAULT_CONTROLLER_PORT))
    run = renkei(*args, env={STATE_ENV: str(state)}, check=False)
    assert run.returncode == 1, run.stdout
    said_in_one_line(run.stderr, "no credentials for principal")
    assert "`renkei broker provision` makes the services'" in run.stderr


@pytest.mark.parametrize("args", [
    ("registry", "generate", "--residents", "3", "--db", "/proc/renkei-registry.db"),
    ("authority", "assign-all", "--db", "{tmp}")])
def test_a_sqlite_store_that_cannot_be_opened_is_named_in_one_line(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    """In /proc, or a folder given as the file: SQLite's error names no path."""
    state = tmp_path / "state"
    renkei("registry", "generate", "--residents", "3", env={STATE_ENV: str(state)})
    run = renkei(*(a.format(tmp=tmp_path) for a in args), env={STATE_ENV: str(state)},
                 check=False)
    assert run.returncode == 1, run.stdout
    said_in_one_line(run.stderr, f"cannot open a SQLite store (unable to open database file): "
                                 f"{args[-1].format(tmp=tmp_path)}")


def test_a_pin_given_as_an_argument_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    """`--pin 1234` on the command line, where `ps` shows it to every local user: a card file
    and its PIN are the card."""
    state = tmp_path / "state"
    assert renkei("card", "init", env={STATE_ENV: str(state)}).returncode == 0
    run = renkei("card", "officer", "op-1", "--holder", "oversight", "--role", "oversight",
                 "--pin", "1234", env={STATE_ENV: str(state)}, check=False)
    assert run.returncode == 2
    said_in_one_line(run.stderr, "a PIN is never an argument (`ps` shows a command's arguments):"
                                 " give it at the prompt or in $RENKEI_CARD_PIN")
    assert not list(state.rglob("*.card.json"))


@pytest.mark.parametrize("holder", ["admin", "controller", "platform", "registry", "portal"])
def test_an_officer_card_for_a_reserved_name_is_refused(holder: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A service's principal name is no holder an officer serves (the oversight body's aside)."""
    monkeypatch.setenv(PIN_ENV, "1234")
    with pytest.raises(click.BadParameter, match=f"'{holder}' is a reserved principal name"):
        card_cli.commands["officer"].make_context(
            "officer", ["op-1", "--holder", holder, "--role", "counter"])
    oversight = card_cli.commands["officer"].make_context(
        "officer", ["op-1", "--holder", "oversight", "--role", "oversight"])
    assert oversight.params["holder"] == "oversight"


@pytest.mark.parametrize(("holder", "role"), [("oversight", "counter"),
                                              ("sakura-town", "oversight")])
def test_an_officer_card_of_a_role_not_its_holders_is_refused(
        tmp_path: Path, holder: str, role: str) -> None:
    """The oversight body's officers are not counter staff (a counter's actions are logged as
    its holder's), nor is a holder's staff the oversight body (its console sees every entry): such
    a card was issued, and signed in where its holder has no business."""
    with state_folder(tmp_path / "state") as state:
        assert CliRunner().invoke(card_cli, ["init"]).exit_code == 0
        credentials.issue("sakura-town")  # registered here, as `holder register` leaves it
        run = CliRunner().invoke(card_cli, ["officer", "op-1", "--holder", holder,
                                            "--role", role], env={PIN_ENV: "1234"})
        assert run.exit_code == 1, run.output
        said_in_one_line(run.output, "the oversight body's officers (oversight) have the "
                                     f"oversight role, and none other does: not {role}")
        assert not list(state.rglob("*.card.json"))


@pytest.mark.parametrize("command", [
    ("registry", "lookup"), ("authority", "number-of"),
    ("authority", "change-number", "--request-id", "F-1", "--reason", "lost")])
@pytest.mark.parametrize("code", ["garbage", "1234567890", "12345678901"])
def test_a_malformed_resident_code_is_a_usage_error(
        tmp_path: Path, command: tuple[str, ...], code: str) -> None:
    """Not '0 resident(s)' (exit 0), as if a resident code no one has had been looked up; the
    authority's commands said 'no personal number for that resident code' (exit 1)."""
    env = {STATE_ENV: str(tmp_path / "state")}
    renkei("registry", "generate", "--residents", "5", env=env)
    renkei("authority", "assign-all", env=env)
    run = renkei(*command, env=env, check=False, input=code)
    assert run.returncode == 2, run.stdout
    said_in_one_line(run.stderr, "not a resident code: 11 digits with a valid check digit")
    assert code not in run.stderr


def test_stopping_a_broker_never_set_up_is_no_error(tmp_path: Path) -> None:
    """As once one has run and stopped: `make clean` (which stops it first) need hide nothing."""
    run = renkei("broker", "down", env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert (run.returncode, run.stdout, run.stderr) == (0, "broker was not running\n", "")


@pytest.mark.parametrize(("command", "exit_code"), [("down", 0), ("status", 1)])
def test_asking_for_or_stopping_a_broker_makes_no_state_folder(
        tmp_path: Path, command: str, exit_code: int) -> None:
    """`renkei broker down` and `broker status` in a folder with no state folder made an empty
    one: a command that only reads or stops leaves nothing behind."""
    state = tmp_path / "state"
    run = renkei("broker", command, env={STATE_ENV: str(state)}, check=False)
    assert run.returncode == exit_code, run.stderr
    assert not state.exists()


@pytest.mark.parametrize(("args", "none"), [
    (("card", "list", "--dir", "{tmp}"), "no cards in {tmp}"),
    (("holder", "staff", "list", "town-x"), "no staff registered for town-x"),
    (("holder", "terminal", "list", "town-x"), "no terminals registered for town-x"),
    (("registry", "events", "--after", "10000"), "no change events after 10000"),
    (("registry", "events", "--kind", "moved", "--after", "10000"),
     "no moved events after 10000")])
def test_an_empty_list_is_said(tmp_path: Path, args: tuple[str, ...], none: str) -> None:
    """In one line, exit 0: not silence, which an operator cannot tell from a command that did
    nothing."""
    with state_folder(tmp_path / "state") as state:
        credentials.issue("town-x")
        if args[0] == "registry":
            renkei("registry", "generate", "--residents", "20")
        run = renkei(*(a.format(tmp=tmp_path) for a in args), env={STATE_ENV: str(state)})
    assert run.stdout == none.format(tmp=tmp_path) + "\n"


def test_the_secrets_replace_no_env_file_of_the_operators_unasked(tmp_path: Path) -> None:
    """An operator's own .env was replaced silently, its lines lost; one `broker secrets` wrote
    is written again, its cluster id kept; no password is printed. Replaced by --force, the
    operator's is kept beside it (mode 600, its secret not printed), said where."""
    env, env_file = {STATE_ENV: str(tmp_path / "state")}, tmp_path / ".env"
    env_file.write_text("OPERATORS_OWN=s3cret-of-the-operators\n", encoding="utf-8")
    refused = renkei("broker", "secrets", "--env-file", str(env_file), env=env, check=False)
    assert refused.returncode == 1, refused.stdout
    said_in_one_line(refused.stderr, f"{env_file} was not written by `renkei broker secrets`")
    assert env_file.read_text(encoding="utf-8") == "OPERATORS_OWN=s3cret-of-the-operators\n"
    forced = renkei("broker", "secrets", "--env-file", str(env_file), "--force", env=env)
    again = renkei("broker", "secrets", "--env-file", str(env_file), env=env)
    (aside,) = tmp_path.glob(".env.*.bak")
    assert aside.read_text(encoding="utf-8") == "OPERATORS_OWN=s3cret-of-the-operators\n"
    assert aside.stat().st_mode & 0o777 == 0o600
    assert f"kept as {aside}" in forced.stdout and "kept as" not in again.stdout
    assert "s3cret" not in forced.stdout + forced.stderr
    values = dict(line.split("=", 1) for line in env_file.read_text(encoding="utf-8").splitlines()
                  if not line.startswith("#"))
    assert values.keys() == {"CLUSTER_ID", "ADMIN_PASSWORD", "CONTROLLER_PASSWORD",
                             "RENKEI_STATE_DIR"}
    for run in (forced, again):
        assert f"{env_file}" in run.stdout and f"CLUSTER_ID={values['CLUSTER_ID']}" in run.stdout
        assert "ADMIN_PASSWORD" in run.stdout and not [
            v for v in (values["ADMIN_PASSWORD"], values["CONTROLLER_PASSWORD"])
            if v in run.stdout + run.stderr]
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_each_forced_secrets_keeps_the_file_it_replaced_within_a_second(tmp_path: Path) -> None:
    """A second `broker secrets --force` within the second of the first failed, File exists: the
    copy kept aside was named for the time in seconds. Each is kept now, none over another."""
    env_file = tmp_path / ".env"
    with state_folder(tmp_path / "state"):
        for n in range(3):  # in well under a second: two at least within one
            env_file.write_text(f"OPERATORS_OWN={n}\n", encoding="utf-8")
            forced = CliRunner().invoke(main, ["broker", "secrets", "--env-file", str(env_file),
                                               "--force"])
            assert forced.exit_code == 0, forced.output
    kept = sorted(path.read_text(encoding="utf-8") for path in tmp_path.glob(".env.*.bak"))
    assert kept == [f"OPERATORS_OWN={n}\n" for n in range(3)]


@pytest.mark.parametrize("terminal", [False, True])
def test_ctrl_c_ends_a_command_with_130(tmp_path: Path, terminal: bool) -> None:
    """128+SIGINT, which a script tells from a failure's 1 (click's), with click's one line:
    in a read of stdin, and at a prompt at a terminal (click's, which says Abort)."""
    with state_folder(tmp_path / "state") as state:
        credentials.issue("town-x")
    ours, its = pty.openpty() if terminal else os.pipe()[::-1]
    proc = subprocess.Popen([str(Path(sys.executable).with_name("renkei")), "holder", "staff",
                             "add", "town-x", "op"], stdin=its, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, STATE_ENV: str(state)}, preexec_fn=interruptible)
    os.close(its)
    try:
        deadline = Deadline(30, "a read of the staff member's name")
        while not reading_stdin(proc.pid):
            deadline.check()
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        os.close(ours)
    assert (proc.returncode, err.strip()) == (130, "Aborted!")


@pytest.mark.parametrize(("command", "said"), [
    ("audit head", "no audit store at"), ("audit query", "no audit store at"),
    ("audit verify", "no audit store at"), ("oversight query", "no audit store at"),
    ("authority status", "no authority store at"), ("registry events", "no registry at"),
    ("card list", "no cards in"), ("holder staff list town-x", "no holder 'town-x' is registered"),
    ("holder terminal list town-x", "no holder 'town-x' is registered")])
def test_a_command_that_only_reads_makes_nothing_in_a_fresh_state_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, said: str) -> None:
    """Each made its folder (audit/, authority/, registry/, cards/issued/, secrets/) before
    saying there was nothing in it yet."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    result = CliRunner().invoke(main, command.split())
    assert said in result.output and result.exit_code in (0, 1), result.output
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("group", [audit_cli, oversight_cli], ids=["audit", "oversight"])
def test_every_store_url_option_names_each_store_it_opens(group: click.Group) -> None:
    """Its help gives each form the README gives and the store opens, PostgreSQL's too."""
    helps = {(name, param.name): param.help for name, command in group.commands.items()
             for param in command.params if param.metavar == "URL"}
    assert helps
    for name, text in helps.items():
        assert text and "sqlite:///path" in text and POSTGRESQL_SCHEMES[0] in text, (name, text)


def test_a_store_whose_disk_is_full_is_said_in_one_line_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit consumer's store filling its disk as it ran ended it with a traceback under
    SQLite's "database or disk is full", which names no file: the operator is told which."""
    async def filling(store: AuditStore, *_: object) -> None:
        store._db.execute("PRAGMA max_page_count = 1")  # as many pages as it has: full
        store._db.execute("CREATE TABLE filler (x)")

    monkeypatch.setattr("audit.consumer.main", filling)
    monkeypatch.setattr(cluster, "bootstrap", lambda: "127.0.0.1:9")  # never reached
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    db = tmp_path / "audit.db"
    result = CliRunner().invoke(main, ["audit", "run", "--db", str(db)])
    assert result.exit_code == 1, result.output
    said_in_one_line(result.output, f"the disk of this store is full: free space there, then "
                     f"start the service again (what it was writing is handled again): {db}")


def test_an_audit_store_another_process_keeps_locked_is_said_in_one_line_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's sqlite3 shell left in a write transaction on the audit store stopped the
    audit consumer with a traceback under SQLite's "database is locked", naming no file."""
    db = tmp_path / "audit.db"

    async def locked_out(store: AuditStore, *_: object) -> None:
        shell = sqlite3.connect(db, isolation_level=None)
        shell.execute("BEGIN IMMEDIATE")  # the other process's write lock
        try:
            store._db.execute("PRAGMA busy_timeout = 0")  # not its 30 s, here
            store._db.execute("CREATE TABLE filler (x)")
        finally:
            shell.close()

    monkeypatch.setattr("audit.consumer.main", locked_out)
    monkeypatch.setattr(cluster, "bootstrap", lambda: "127.0.0.1:9")  # never reached
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["audit", "run", "--db", str(db)])
    assert result.exit_code == 1, result.output
    said_in_one_line(result.output, "this store stayed locked by another process (database is "
                     "locked): end that process's transaction (an sqlite3 shell's), then start the "
                     f"service again (what it was writing is handled again): {db}")


RANGED = [(group.name, name) for group in (audit_cli, oversight_cli)
          for name, command in group.commands.items()
          if {"since", "until"} <= {param.name for param in command.params}]


@pytest.mark.parametrize(("group", "command"), RANGED)
@pytest.mark.parametrize(("until", "said"), [("2020-01-01", "2020-01-01T00:00:00+00:00"),
                                             ("2030-01-01T09:00+09:00",
                                              "2030-01-01T09:00:00+09:00")])
def test_a_time_range_that_ends_before_it_begins_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: str, command: str,
        until: str, said: str) -> None:
    """`--since 2030-01-01 --until 2020-01-01` answered an empty page, as if nothing had
    happened then; an end at the start (here in another zone) holds no time either."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    AuditStore(tmp_path / "audit.db", Signer.generate()).close()
    Signer.load_or_create(tmp_path / "state" / "audit" / "head-key.json")
    result = CliRunner().invoke(main, [group, command, "--db", str(tmp_path / "audit.db"),
                                       "--until", until, "--since", "2030-01-01"])
    assert result.exit_code == 2, result.output
    said_in_one_line(result.output, f"Invalid value for '--until': {said} is not after --since "
                     "2030-01-01T00:00:00+00:00: the range holds no time")
