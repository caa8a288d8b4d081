"""compose.yaml's mounts: each Renkei service gets only the part of the state folder its command
reads or writes (the internet-facing portal none of the platform's keys, the registry, the
authority or other principals' secrets), and that part is enough for it to start."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from audit import heads
from audit.store import AuditStore
from audit.store import default_path as audit_path
from authority.store import default_path as authority_path
from broker import acls, credentials
from broker.cluster import BOOTSTRAP_ENV, Cluster
from cards import ca, issue
from cards.card import Card
from cards.jlis import default_path as cards_path
from cards.login import Verifier, challenge, message
from portal.inbox import default_path as inbox_path
from processors import keys
from registry import tickets
from registry.store import default_path as registry_path
from renkei.state import STATE_ENV, NotPrivate, state_dir, state_folder
from renkei.town import Processes, Town
from tests.kafka_helpers import (
    can_mount_read_only,
    free_port,
    renkei,
    said_in_one_line,
    spawn,
    stop,
    with_read_only,
)
from tests.test_compose import services
from tests.test_portal_services import PIN, card_login

MOUNT = re.compile(r"^\$\{RENKEI_STATE_DIR\}/(?P<part>[^:]+):/state/(?P=part)(?P<ro>:ro)?$")
RENKEI = ("platform", "registry", "authority", "audit", "portal", "crl")
USER = 12345  # a user not root: the services' in compose.yaml, or another


def mounts(service: str) -> dict[str, bool]:
    """The parts of the state folder `service` mounts, each at its own place under /state: its
    path in the state folder → read-only."""
    found = {}
    for volume in services()[service].get("volumes", []):
        matched = MOUNT.match(str(volume))
        assert matched, f"{service}: {volume} is no part of the state folder at its own place"
        found[matched["part"]] = matched["ro"] is not None
    return found


def _part(path: Path) -> str:
    return path.relative_to(state_dir()).as_posix()


def _secret(name: str) -> str:
    return _part(credentials._path(name))


def _sealing(name: str) -> str:
    return f"keys/sealing/{name}.json"


def needs() -> dict[str, dict[str, bool]]:
    """What each command reads (True: only reads) or writes, by the code's own paths."""
    return {
        "platform": {_secret(acls.PLATFORM): True, _part(keys.store_path()): True},
        # it tells the portal a card holder's ID codes, for a login it checks itself
        "registry": {_part(registry_path().parent): False, _part(cards_path().parent): False,
                     _secret(acls.REGISTRY): True, _sealing(acls.REGISTRY): True,
                     _part(keys.id_key_path()): True, _part(ca.trusted(ca.JPKI).parent): True,
                     _part(tickets.key_path()): True},
        # the authority follows the registry's code changes (registry/ holds no card table) and
        # checks the login tickets with the login key's public half
        "authority": {_part(authority_path().parent): False, _part(registry_path().parent): True,
                      _secret(acls.AUTHORITY): True, _sealing(acls.AUTHORITY): True,
                      _part(tickets.public_key_path()): True},
        # it makes the store and the head key on its first run
        "audit": {_part(audit_path().parent): False,
                  _part(heads.private_key_path().parent): False, _secret(acls.AUDIT): True},
        # the store the audit consumer writes, read through a read-only connection
        "portal": {_part(audit_path().parent): True, _sealing(acls.PORTAL): True,
                   _sealing(acls.OVERSIGHT): True, _secret(acls.PORTAL): True,
                   _secret(acls.OVERSIGHT): True, _part(ca.trusted(ca.JPKI).parent): True,
                   _part(inbox_path().parent): False},
        # the CAs' lists published anew: their keys and revoked serials read, the lists written
        "crl": {_part(ca.folder(ca.JPKI).parent): True, _part(ca.trusted(ca.JPKI).parent): False},
    }


def _covers(part: str, path: str) -> bool:
    return path == part or path.startswith(part + "/")


def test_each_service_mounts_what_its_command_needs_and_no_more(tmp_path: Path) -> None:
    with state_folder(tmp_path):
        wanted = needs()
    for service in RENKEI:
        assert mounts(service) == wanted[service], service
    (whole,) = services()["provision"]["volumes"]
    assert re.fullmatch(r"\$\{RENKEI_STATE_DIR[^}]*\}:/state", whole), "provision makes it all"


def test_the_portal_reads_no_key_store_or_secret_but_its_own(tmp_path: Path) -> None:
    with state_folder(tmp_path):
        forbidden = [_part(keys.store_path()), _part(keys.id_key_path()),
                     _part(heads.private_key_path()), _part(tickets.key_path()),
                     _part(registry_path()), _part(cards_path()), _part(authority_path()),
                     *(_part(ca.folder(name) / "key.pem") for name in ca.AUTHORITIES),
                     *(_secret(name) for name in ("admin", "controller", *acls.SERVICES)
                       if name not in (acls.PORTAL, acls.OVERSIGHT)),
                     *(_sealing(name) for name in acls.SERVICES
                       if name not in (acls.PORTAL, acls.OVERSIGHT))]
        public = _part(heads.key_path())
    portal = mounts("portal")
    for path in forbidden:
        assert not any(_covers(part, path) for part in portal), f"the portal can read {path}"
    assert any(_covers(part, public) for part in portal), "the head key's public half"
    for service in RENKEI:
        if service != "platform":
            assert not any(_covers(part, forbidden[0]) for part in mounts(service)), service


def test_the_authority_reads_the_registry_and_not_the_card_table(tmp_path: Path) -> None:
    """It follows the registry's code changes: registry/ alone, read-only, which holds no card
    table (whose card is whose: the registry's, for the portal's log-in)."""
    with state_folder(tmp_path):
        registry, cards = _part(registry_path().parent), _part(cards_path())
    authority = mounts("authority")
    assert authority.get(registry) is True, "registry/, read-only"
    assert not any(_covers(part, cards) for part in authority), "the card table"


@contextmanager
def _as_user(uid: int) -> Iterator[None]:
    """This process acts as user `uid` (its effective user), as root again after."""
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")
def test_a_folder_made_for_a_mount_is_left_as_it_is() -> None:
    """A file mounted alone (secrets/portal.json) sits in a folder the container made as root,
    which its user (RENKEI_UID, not root) may not chmod; a folder mounted read-only may not be
    chmodded either."""
    with tempfile.TemporaryDirectory() as folder, state_folder(Path(folder) / "state") as state:
        Path(folder).chmod(0o755)  # the user can reach the state folder, as /state
        made = state / "secrets"
        made.mkdir(mode=0o755)  # root's
        own, loose = state / "audit", state / "registry"
        own.mkdir(mode=0o700)
        loose.mkdir(mode=0o755)
        for path in (state, own, loose):
            os.chown(path, USER, USER)
        before = own.stat().st_ctime_ns
        time.sleep(0.01)
        with _as_user(USER):
            assert credentials._path(acls.PORTAL).parent == made
            assert audit_path().parent == own
            assert registry_path().parent == loose
        assert made.stat().st_mode & 0o777 == 0o755, "only its owner could change it"
        assert own.stat().st_ctime_ns == before, "no chmod"
        assert loose.stat().st_mode & 0o777 == 0o700, "its own: made private"


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")
def test_another_users_folder_others_may_read_is_refused(tmp_path: Path) -> None:
    """A folder another user (not root: no container's mount point) owns and others may read is
    not private: it was used as it was, and what this user wrote in it others could list, and
    read as the files' modes let them. Now it is refused, naming it and what to do, in one line
    at the command line; made private by its owner, it is used."""
    with state_folder(tmp_path):
        theirs = tmp_path / "keys"
        theirs.mkdir(mode=0o755)
        os.chown(theirs, USER, USER)
        with pytest.raises(NotPrivate, match=f"{theirs} is user {USER}'s and others may read it"):
            keys.id_key_path()
        assert theirs.stat().st_mode & 0o777 == 0o755 and not list(theirs.iterdir())
        audit = tmp_path / "audit"
        audit.mkdir(mode=0o750)
        os.chown(audit, USER, USER)
        run = renkei("audit", "query", env={STATE_ENV: str(tmp_path)}, check=False)
        assert run.returncode == 1
        said_in_one_line(run.stderr, f"{audit} is user {USER}'s and others may read it (mode 750)")
        theirs.chmod(0o700)
        assert keys.id_key_path().parent == theirs


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")
def test_a_folder_anyone_may_write_in_is_not_left_as_it_is(tmp_path: Path) -> None:
    """Another user's folder is left as it is only if no one else may write in it: in one
    anyone may, anyone could put their own key where a service reads its key (as root, it is
    made private; as another user, chmod refuses, as it did before mounts were narrowed)."""
    with state_folder(tmp_path):
        shared = tmp_path / "keys"
        shared.mkdir()
        shared.chmod(0o777)
        os.chown(shared, USER, USER)
        assert keys.id_key_path().parent == shared
        assert shared.stat().st_mode & 0o777 == 0o700


def _narrowed(service: str, to: Path) -> Path:
    """A state folder of what compose.yaml mounts into `service` alone, at the same paths: each
    part a link to the suite's, which shares a store live, as a bind mount does."""
    for part in mounts(service):
        (to / part).parent.mkdir(parents=True, exist_ok=True)
        if not (state_dir() / part).suffix:  # a folder: provision makes each one mounted
            (state_dir() / part).mkdir(mode=0o700, parents=True, exist_ok=True)
        (to / part).symlink_to(state_dir() / part)
    return to


def _read_only(service: str) -> list[Path]:
    """What `service` mounts read-only, in the suite's state folder: read-only to its process
    where this machine lets it mount (as `:ro` in a container), else linked alone as the rest."""
    if not can_mount_read_only():
        return []
    return [state_dir() / part for part, read_only in mounts(service).items() if read_only]


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def _keys_read(folder: Path) -> list[str]:
    """The files under `folder` (links followed) holding the head key or a CA's key."""
    return [name for top, _, names in os.walk(folder, followlinks=True) for name in names
            if name.endswith((".json", ".pem")) and re.search(
                r'"private_key"|PRIVATE KEY', (Path(top) / name).read_text(encoding="utf-8"))]


def _answers(url: str, proc: subprocess.Popen[bytes], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        assert proc.poll() is None, f"it stopped (exit {proc.returncode})"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, f"no answer at {url}"
            time.sleep(0.2)


@pytest.fixture
def portal_state(platform: Processes, broker: Cluster, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The portal's mounts alone, the audit consumer running (it made the store and key)."""
    issue.init()
    monkeypatch.setenv(BOOTSTRAP_ENV, broker.bootstrap)
    yield _narrowed("portal", tmp_path / "portal")


def test_the_portal_starts_on_its_mounts_alone(portal_state: Path, town: Town,
                                              tmp_path: Path) -> None:
    """Its start opens the store with the head key's public half, its credentials and sealing
    keys, and the oversight console's; a card logs in by the CAs' public files, and a resident
    with the ID codes the registry side tells: the ID key is not in its state folder."""
    card = issue.officer_card("mounts-officer", "oversight", "oversight", "4321", tmp_path)
    resident = town.held["sakura-town"][8]
    resident_card = issue.resident_card(resident.resident_code, PIN, tmp_path)
    before = _files(portal_state)
    assert _keys_read(portal_state) == []
    assert not (portal_state / _part(keys.id_key_path())).exists()
    port, read_only = free_port(), _read_only("portal")
    url = f"http://127.0.0.1:{port}"
    with state_folder(portal_state):
        proc = spawn("portal", "--port", str(port), log=tmp_path / "portal.log",
                     read_only=read_only)
        try:
            _answers(f"{url}/login", proc)
            assert asyncio.run(_history_of(url, resident_card)).count(resident.name) >= 1
        finally:
            stop(proc)
        nonce = challenge()
        signature = card.sign(message("http://127.0.0.1", nonce), "4321")
        assert Verifier().verify(ca.OFFICERS, card.certificate.public_bytes(Encoding.PEM),
                                 "http://127.0.0.1", nonce, signature).serial == card.face.serial
    assert _files(portal_state) == before, "it made nothing outside its mounts"


async def _history_of(url: str, card: Card) -> str:
    """The history page of the card's holder, logged in with the card."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert await card_login(http, url, card) == "/history"
        async with http.get(f"{url}/history") as history:
            assert history.status == 200
            return await history.text()


def test_the_crl_publisher_runs_on_its_mounts_alone(state_dir: Path, tmp_path: Path) -> None:
    """`card crl` publishes each CA's list anew by the CAs' folder mounted read-only (its lock
    taken there too) into cards/trust, making nothing else."""
    issue.init()
    folder, cards = _narrowed("crl", tmp_path / "crl"), state_dir / "cards"
    before = {name: ca.crl_path(name).read_bytes() for name in ca.AUTHORITIES}
    files = _files(cards)
    with state_folder(folder):
        proc = spawn("card", "crl", log=tmp_path / "crl.log", read_only=_read_only("crl"))
        assert proc.wait(60) == 0, (tmp_path / "crl.log").read_text(encoding="utf-8")
    for name in ca.AUTHORITIES:
        assert ca.crl_path(name).read_bytes() != before[name], name
    assert _files(cards) == files, "it made nothing else"


COMMANDS = {"platform": ("platform", "run"), "registry": ("registry", "serve"),
            "authority": ("authority", "serve"), "audit": ("audit", "run")}
AWAY = "cannot reach the broker"


def test_every_other_service_starts_on_its_mounts_alone(
        platform: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reads its keys, credentials and stores before it connects: pointed at no broker (so
    that it joins none of the running services' groups), it gets as far as waiting for one,
    having made nothing outside its mounts (a sealing key missing would be made anew)."""
    monkeypatch.setenv(BOOTSTRAP_ENV, f"127.0.0.1:{free_port()}")
    started = {}
    for service, command in COMMANDS.items():
        folder, read_only = _narrowed(service, tmp_path / service), _read_only(service)
        with state_folder(folder):
            started[service] = (folder, _files(folder), tmp_path / f"{service}.log",
                                spawn(*command, log=tmp_path / f"{service}.log",
                                      read_only=read_only))
    try:
        deadline = time.monotonic() + 30
        for service, (folder, before, log, proc) in started.items():
            while AWAY not in log.read_text(encoding="utf-8"):
                assert proc.poll() is None and time.monotonic() < deadline, (
                    f"{service}: {log.read_text(encoding='utf-8')[-2000:]}")
                time.sleep(0.1)
            assert _files(folder) == before, f"{service} made files outside its mounts"
    finally:
        for *_, proc in started.values():
            stop(proc)


def test_a_portal_where_no_head_key_is_makes_none(tmp_path: Path) -> None:
    """It starts without it (only the pages that read the access log need it): stopped here by
    the missing broker, not by the missing key, it made none."""
    with state_folder(tmp_path / "state") as state:
        run = renkei("portal", "--port", str(free_port()), check=False, timeout=60)
    assert run.returncode == 1, run.stderr
    said_in_one_line(run.stderr, f"no broker in {state}")
    assert not list(state.rglob("head-key.json"))


@pytest.mark.skipif(not can_mount_read_only(), reason="needs user and mount namespaces")
def test_a_portal_in_a_read_only_mount_of_a_store_no_one_has_open_starts(tmp_path: Path) -> None:
    """Its audit/ mounted read-only, it opens the store while the audit consumer has it open
    (the store's -wal and -shm files there); a store its last connection closed it cannot open
    there: it starts regardless (stopped here by the missing broker, not by the store), its
    history pages saying the history cannot be shown until the consumer runs."""
    with state_folder(tmp_path / "state"):
        keys.id_key_path().write_text('{"id_key": "' + "00" * 32 + '"}\n')
        store = audit_path()
        with AuditStore(store, heads.Signer.load_or_create()):
            pass
        run = subprocess.run(
            with_read_only([store.parent], [str(Path(sys.executable).with_name("renkei")),
                                            "portal", "--port", str(free_port())]),
            capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    said_in_one_line(run.stderr, f"no broker in {store.parent.parent}")
