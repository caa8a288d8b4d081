"""The communication server answers only the holder's own systems: any local user reaches its
loopback port, so every request must carry the token in the holder's private server.json."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from datetime import date
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

import holders.server
from broker import credentials
from broker.clients import KafkaAccess
from broker.credentials import Credentials
from holders.client import BINDING, LINKAGE, HolderClient, KeyReused, NotBound
from holders.imports import read_records, store_records
from holders.server import Address, _serve_http, address_file, recorded
from holders.store import HolderStore, Keyed, KeyInUse
from registry.residents import FourAttributes, Sex
from renkei.exchanges import staff as staff_of
from renkei.state import STATE_ENV, held, private_dir, read_json, state_folder, write_json
from tests.kafka_helpers import renkei, said_in_one_line
from tests.loop_helpers import Deadline

HOLDER = "city-x"
CANARY = "canary-income-7301946"


class _Unstarted:
    """A holder library that never reaches Kafka: the server's store, until stopped."""

    def __init__(self, store: HolderStore) -> None:
        self.holder, self.store = HOLDER, store
        self.listening = asyncio.Event()  # the server waits here once it has written its file

    async def until_stopped(self, stop: asyncio.Event) -> None:
        self.listening.set()
        await stop.wait()


class _Authorizing(_Unstarted):
    """The holder library's binding up to Kafka: it authorizes, then finds the record."""

    _authorize, _made = HolderClient._authorize, HolderClient._made
    bind = HolderClient.bind


class _Faulty(_Unstarted):
    """A holder library whose store fails (closed here; a disk fault, a lock held too long)."""

    def __init__(self, store: HolderStore) -> None:
        super().__init__(HolderStore(Path(":memory:")))
        self.store.close()


class _Impatient(_Authorizing):
    """The holder library's binding on a store that waits 50 ms for a lock, not SQLite's 5 s."""

    def __init__(self, store: HolderStore) -> None:
        super().__init__(store)
        store.db.execute("PRAGMA busy_timeout = 50")


_REFUSALS = {"H-unbound": NotBound("record 'H-unbound' is not bound to a link code"),
             "H-in-use": KeyInUse(),
             "H-reused": KeyReused("the idempotency key was used already, for a different request")}


class _Waiting(HolderClient):
    """The holder library, never started, its store holding request r-1 sent, not answered."""

    def __init__(self, store: HolderStore) -> None:
        super().__init__(HOLDER, store, KafkaAccess("127.0.0.1:9", Credentials(HOLDER, "unused")))
        store.open_request("r-1", LINKAGE, "H-1", "staff-7", "term-3")
        self.listening = asyncio.Event()

    until_stopped = _Unstarted.until_stopped


class _Refusing(_Unstarted):
    """A holder library that refuses each linkage request as _REFUSALS has its record."""

    async def request(self, own_number: str, *rest: object) -> str:
        raise _REFUSALS[own_number]


@asynccontextmanager
async def _serving(tmp_path: Path, kind: type[_Unstarted] = _Unstarted) -> AsyncIterator[str]:
    """A communication server on a store whose access log holds ⑪ content; its URL."""
    store = HolderStore(tmp_path / "holder.db")
    store.log("r-1", "requester", "staff-7", "term-3", "FOUND", content=CANARY)
    stop = asyncio.Event()
    with state_folder(tmp_path / "state"):
        client = kind(store)
        serving = asyncio.create_task(_serve_http(cast(HolderClient, client), 0, stop))
        try:
            await asyncio.wait_for(client.listening.wait(), 10)
            yield str(read_json(address_file(HOLDER))["url"])
        finally:
            stop.set()
            await serving
            store.close()


@pytest.mark.parametrize("authorization", [None, "Bearer not-the-token", "Basic x", "Bearer"])
async def test_a_request_without_the_servers_token_is_refused_and_reads_nothing(
        tmp_path: Path, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with _serving(tmp_path) as url, aiohttp.ClientSession(headers=headers) as http:
        for method, path in (("GET", "/access-log"), ("GET", "/requests/r-1"),
                             ("POST", "/requests"), ("POST", "/bindings")):
            body = {"own_number": "H-1", "operator": "staff-7", "terminal": "term-3"}
            async with http.request(method, url + path, json=body) as response:
                assert response.status == 401, (method, path)
                assert (await response.json())["error"] == "unauthorized"
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert CANARY not in await response.text()


async def test_the_holders_system_reads_the_token_from_its_private_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with _serving(tmp_path) as url:
        path = address_file(HOLDER)
        token = str(read_json(path)["token"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http, \
                http.get(url + "/access-log") as response:
            assert response.status == 200
            assert [e["content"] for e in await response.json()] == [CANARY]
    assert len(token) >= 40
    assert not any(token in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_token_is_taken_under_the_bearer_scheme_in_any_case(
        tmp_path: Path, scheme: str) -> None:
    """An authentication scheme's name is case-insensitive (RFC 9110 §11.1): a holder's system
    whose HTTP library wrote "bearer" was refused 401 with the right token."""
    async with _serving(tmp_path) as url:
        token = str(read_json(address_file(HOLDER))["token"])
        async with aiohttp.ClientSession(headers={"Authorization": f"{scheme} {token}"}) as \
                http, http.get(url + "/access-log") as response:
            assert response.status == 200


async def test_the_open_investigations_are_answered_a_page_at_a_time(tmp_path: Path) -> None:
    """GET /investigations answered every open case at once (a holder's after moving its unit:
    one a binding, millions), holding the server's loop and memory: it answers a page, as the
    access log does, and a full one's Link header asks for the next."""
    with closing(HolderStore(tmp_path / "holder.db")) as store:
        for n in range(3):
            store.investigate(f"r-{n}", f"H-{n}", "no match")
    async with _serving(tmp_path) as url:
        token = str(read_json(address_file(HOLDER))["token"])
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async with http.get(f"{url}/investigations", params={"limit": "2"}) as response:
                first, link = await response.json(), response.links.get("next")
            assert link is not None
            async with http.get(link["url"]) as response:
                rest, more = await response.json(), response.links.get("next")
    assert [(case["own_number"], case["reason"]) for case in first + rest] == [
        ("H-0", "no match"), ("H-1", "no match"), ("H-2", "no match")]
    assert (len(first), more) == (2, None)


async def test_a_request_id_found_nowhere_is_said_in_one_line(tmp_path: Path) -> None:
    """The id of a request not found, from the path, was said as it came: one with a newline
    (%0A) broke the detail's one line, as a log it is copied to reads it."""
    async with _serving(tmp_path, cast(type[_Unstarted], _Waiting)) as url:
        token = str(read_json(address_file(HOLDER))["token"])
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
                http.get(URL(f"{url}/requests/r-2%0AGET%20r-1", encoded=True)) as response:
            answer = response.status, await response.json()
    assert answer == (404, {"error": "not_found", "detail": "no request 'r-2\\nGET r-1'"})


async def test_the_log_of_a_request_id_left_empty_is_of_no_request(tmp_path: Path) -> None:
    """GET /access-log?request_id= (an id left empty by the caller's fault) answered the whole
    log, every request's ⑪ content, as if no id were asked for."""
    async with _serving(tmp_path) as url:
        token = str(read_json(address_file(HOLDER))["token"])
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for asked, entries in (("", 0), ("r-1", 1)):
                async with http.get(f"{url}/access-log", params={"request_id": asked}) as got:
                    assert len(await got.json()) == entries, asked


async def test_a_stopped_server_leaves_no_address_for_another_user_to_answer_at(
        tmp_path: Path) -> None:
    """A server stopped left its server.json: the holder's system went on sending its token and
    its staff's requests to the port, which any local user could then listen on and answer (a
    forged outcome shown to staff as the platform's)."""
    async with _serving(tmp_path) as url:
        assert recorded(HOLDER) == Address(url, str(read_json(address_file(HOLDER))["token"]))
    port = int(url.rsplit(":", 1)[1])
    with socket.create_server(("127.0.0.1", port)), state_folder(tmp_path / "state"):
        assert recorded(HOLDER) is None  # the port another's now: not told to the system


def test_a_killed_servers_address_is_not_told(tmp_path: Path) -> None:
    """Killed (SIGKILL, out of memory), a server leaves its server.json: the holder's system
    went on sending its token and staff's requests to the port, which another local user may
    listen on by then. The file names the server's process: gone, it is not told."""
    with state_folder(tmp_path / "state"):
        ended = subprocess.Popen(["true"])
        ended.wait()
        for pid, told in ((ended.pid, False), (os.getpid(), True), (None, True)):
            write_json(address_file(HOLDER), {"url": "http://127.0.0.1:9", "token": "t",
                                              **({} if pid is None else {"pid": pid})},
                       private=True)
            assert (recorded(HOLDER) is not None) == told, pid


async def test_staff_tied_to_a_terminal_are_refused_on_another_one(tmp_path: Path) -> None:
    async with _serving(tmp_path, _Authorizing) as url:
        store = HolderStore(tmp_path / "holder.db")
        for terminal in ("term-1", "term-2"):
            store.add_terminal(terminal)
        store.add_staff("staff-7", "担当職員", ["term-1"])
        token = str(read_json(address_file(HOLDER))["token"])
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            statuses: dict[str, tuple[int, object]] = {}
            for terminal in ("term-1", "term-2"):
                body = {"own_number": "H-404", "operator": "staff-7", "terminal": terminal}
                async with http.post(url + "/bindings", json=body) as response:
                    statuses[terminal] = response.status, await response.json()
        refused = [e.terminal for e in store.access_log() if e.outcome.startswith("REFUSED")]
        store.close()
    assert statuses["term-2"] == (403, {"error": "forbidden", "detail":
                                        f"'staff-7' on 'term-2' may not act for {HOLDER}"})
    assert statuses["term-1"][0] == 404  # authorized: the record is what it lacks
    assert refused == ["term-2"]


@pytest.mark.parametrize(("operator", "terminal"), [("nobody", "term-1"),
                                                    ("staff-7", "term-2")])
async def test_an_idempotency_key_answers_no_one_who_may_not_act(
        tmp_path: Path, operator: str, terminal: str) -> None:
    """A key a request was made under, given by a caller who may not act: refused (403, logged)
    before the key is looked up, the request's id not told."""
    async with _serving(tmp_path, _Authorizing) as url:
        store = HolderStore(tmp_path / "holder.db")
        for registered in ("term-1", "term-2"):
            store.add_terminal(registered)
        store.add_staff("staff-7", "担当職員", ["term-1"])
        made = store.open_request("r-made", BINDING, "H-1", "staff-7", "term-1",
                                  keyed=Keyed("key-1", "fingerprint of the first body"))
        token = str(read_json(address_file(HOLDER))["token"])
        body = {"own_number": "H-1", "operator": operator, "terminal": terminal}
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
                http.post(url + "/bindings", json=body,
                          headers={"Idempotency-Key": "key-1"}) as response:
            status, answer = response.status, await response.text()
        refused = [e.operator for e in store.access_log() if e.outcome.startswith("REFUSED")]
        store.close()
    assert status == 403, answer
    assert made.request_id not in answer
    assert refused == [operator]


@asynccontextmanager
async def _keyed_binding(tmp_path: Path, fingerprint: str,
                         body: dict[str, str]) -> AsyncIterator[tuple[int, dict[str, str]]]:
    """A binding r-made stored under Idempotency-Key key-1 with `fingerprint`, and the answer to
    `body` posted under that key by staff-7, who may act."""
    async with _serving(tmp_path, _Authorizing) as url:
        store = HolderStore(tmp_path / "holder.db")
        store.add_terminal("term-1")
        store.add_staff("staff-7", "担当職員")
        store.open_request("r-made", BINDING, "H-1", "staff-7", "term-1",
                           keyed=Keyed("key-1", fingerprint))
        store.close()
        token = str(read_json(address_file(HOLDER))["token"])
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
                http.post(url + "/bindings", json=body,
                          headers={"Idempotency-Key": "key-1"}) as response:
            yield response.status, await response.json()


async def test_a_key_used_for_a_different_request_is_refused_saying_so(tmp_path: Path) -> None:
    """The fingerprint is of the request as the server reads it, not of the body's bytes: the
    refusal says the key was used for a different request, not "with another body"."""
    body = {"own_number": "H-1", "operator": "staff-7", "terminal": "term-1"}
    async with _keyed_binding(tmp_path, "fingerprint of another request", body) as answer:
        status, refused = answer
    assert (status, refused["error"]) == (422, "idempotency_key_reused"), refused
    assert "for a different request (request r-made)" in refused["detail"]
    assert "body" not in refused["detail"]


async def test_a_key_stored_under_the_former_fingerprint_answers_its_retry(
        tmp_path: Path) -> None:
    """A key stored before the fingerprint was of the request as read (it was of the path and
    body as sent, its keys sorted), its request retried after the upgrade: the request made,
    not 422 idempotency_key_reused."""
    body = {"own_number": "H-1", "operator": "staff-7", "terminal": "term-1"}
    former = json.dumps(["/bindings", body], sort_keys=True, ensure_ascii=False)
    async with _keyed_binding(tmp_path, hashlib.sha256(former.encode()).hexdigest(),
                              body) as answer:
        assert answer == (202, {"request_id": "r-made", "sent": True})


@pytest.mark.parametrize(("holder", "error"), [
    ("../../tmp/x", "invalid principal name"), ("ghost", "no holder 'ghost' is registered"),
    ("platform", "'platform' is a reserved principal name")])
def test_holder_run_checks_the_id_before_it_makes_any_store(
        tmp_path: Path, holder: str, error: str) -> None:
    state = tmp_path / "state"
    run = renkei("holder", "run", holder, env={STATE_ENV: str(state)}, check=False, timeout=60)
    assert not list(tmp_path.rglob("holder.db"))
    assert not (state / "holders").exists()
    assert run.returncode == 1
    said_in_one_line(run.stderr, error)


@pytest.mark.parametrize("port", ["65536", "-1"])
def test_holder_run_on_a_port_no_socket_has_is_refused_before_anything(
        tmp_path: Path, port: str) -> None:
    state = tmp_path / "state"
    with state_folder(state):
        credentials.issue(HOLDER)
    run = renkei("holder", "run", HOLDER, "--port", port, env={STATE_ENV: str(state)},
                 check=False, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "is not in the range 0<=x<=65535" in run.stderr and "Traceback" not in run.stderr
    assert not (state / "holders").exists()


@pytest.mark.parametrize("part", ["..", "../x", "a/../../x", "/tmp/x", ""])
def test_no_private_folder_leads_out_of_the_state_folder(tmp_path: Path, part: str) -> None:
    with state_folder(tmp_path / "state"), pytest.raises(ValueError, match="out of the state"):
        private_dir("holders", part)


def test_a_second_holder_run_of_the_same_holder_is_refused(tmp_path: Path) -> None:
    with state_folder(tmp_path / "state") as state:
        credentials.issue(HOLDER)
        with held(private_dir("holders", HOLDER), "first run"):
            run = renkei("holder", "run", HOLDER, env={STATE_ENV: str(state)}, check=False,
                         timeout=60)
    assert run.returncode == 1
    said_in_one_line(run.stderr, f"another `holder run {HOLDER}` is running")
    assert not (state / "holders" / HOLDER / "server.json").exists()


@pytest.mark.parametrize("command", [
    ("holder", "register", "city-y", "--name", "Y", "--role", "municipality", "--unit", "bad unit"),
    ("keys", "rekey", "bad unit")])
def test_a_link_code_unit_the_platform_cannot_use_is_refused(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    run = renkei(*command, env={STATE_ENV: str(tmp_path / "state")}, check=False)
    assert run.returncode == 2, run.stderr
    assert "bad link-code unit 'bad unit'" in run.stderr and "Traceback" not in run.stderr


async def test_a_caller_waiting_for_an_outcome_does_not_hold_the_server_stopping(
        tmp_path: Path) -> None:
    """A holder's system waiting (?wait=S) for an answer when the server was told to stop held
    the stop for its S seconds (up to aiohttp's 60): it is answered the request as it stands."""
    stop = asyncio.Event()
    with state_folder(tmp_path / "state"), closing(HolderStore(tmp_path / "holder.db")) as store:
        client = _Waiting(store)
        serving = asyncio.create_task(_serve_http(client, 0, stop))
        await asyncio.wait_for(client.listening.wait(), 10)
        address = recorded(HOLDER)
        assert address is not None
        async with aiohttp.ClientSession(headers=address.headers) as http:
            asked = asyncio.create_task(http.get(f"{address.url}/requests/r-1",
                                                 params={"wait": "5"}))
            deadline = Deadline(5, "the caller waiting for r-1")
            while "r-1" not in client._waiters:
                deadline.check()
                await asyncio.sleep(0.01)
            stop.set()
            stopping = time.monotonic()
            async with await asked as response:
                answer = response.status, (await response.json())["status"]
            await serving
            stopped = time.monotonic() - stopping
    assert answer == (200, "SENT")
    assert stopped < 1, stopped


async def test_a_request_kept_while_the_broker_is_down_is_told_kept_not_sent(
        tmp_path: Path) -> None:
    """A request recorded while the broker was down (202 "sent": false) was answered SENT by
    GET /requests/{id}, which a holder's system reads as sent: it is KEPT until the broker has
    it, SENT from then until its outcome (the library's standing says so too)."""
    stop = asyncio.Event()
    with state_folder(tmp_path / "state"), closing(HolderStore(tmp_path / "holder.db")) as store:
        client = _Waiting(store)  # r-1: recorded and sent
        for request_id in ("r-kept", "r-taken"):
            store.open_request(request_id, LINKAGE, "H-1", "staff-7", "term-3",
                               outgoing=("link-code", b"the request's message"))
        store.delivered(["r-taken"])
        serving = asyncio.create_task(_serve_http(client, 0, stop))
        await asyncio.wait_for(client.listening.wait(), 10)
        address = recorded(HOLDER)
        assert address is not None
        statuses = {}
        async with aiohttp.ClientSession(headers=address.headers) as http:
            for request_id in ("r-kept", "r-taken", "r-1"):
                async with http.get(f"{address.url}/requests/{request_id}") as response:
                    statuses[request_id] = response.status, (await response.json())["status"]
        stop.set()
        await serving
        assert statuses == {"r-kept": (200, "KEPT"), "r-taken": (200, "SENT"),
                            "r-1": (200, "SENT")}
        library = {r: getattr(client.standing(r), "status", None) for r in ("r-kept", "r-taken")}
        recorded_as = getattr(store.request("r-kept"), "status", None)  # unanswered: SENT
    assert library == {"r-kept": "KEPT", "r-taken": "SENT"}
    assert recorded_as == "SENT"


@pytest.mark.parametrize("wait", ["xyz", "nan", "-1", "inf", "1e300", "121"])
async def test_a_wait_that_is_not_a_number_of_seconds_is_a_bad_request(
        tmp_path: Path, wait: str) -> None:
    async with _serving(tmp_path) as url:
        token = str(read_json(address_file(HOLDER))["token"])
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
                http.get(f"{url}/requests/r-1", params={"wait": wait}) as response:
            assert response.status == 400
            assert "is not a number of seconds" in (await response.json())["detail"]


async def test_a_fault_of_the_servers_is_a_json_error_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with _serving(tmp_path, _Faulty) as url:
        token = str(read_json(address_file(HOLDER))["token"])
        with caplog.at_level(logging.ERROR, "holders.server"):
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as \
                    http, http.get(f"{url}/investigations") as response:
                assert (response.status, response.content_type) == (500, "application/json")
                answer = await response.json()
    assert answer == {"error": "internal_server_error",
                      "detail": "ProgrammingError: see the communication server's log"}
    assert "GET /investigations failed" in caplog.text and "Traceback" in caplog.text


async def test_a_binding_before_the_directory_lists_the_registry_is_unavailable_not_unfound(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A directory not yet listing the registry was answered 404 "not found", for a record the
    holder has, and left no trace: every LookupError was taken for no record. It is 503, logged;
    no record is still 404."""
    async with _serving(tmp_path, cast(type[_Unstarted], _Waiting)) as url:
        token = _staff_one_and_h1(tmp_path)
        answers = {}
        with caplog.at_level(logging.WARNING, "holders.server"):
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as \
                    http:
                for own_number in ("H-1", "H-404"):
                    body = {"own_number": own_number, "operator": "staff-1", "terminal": "t-1"}
                    async with http.post(f"{url}/bindings", json=body) as response:
                        answers[own_number] = response.status, (await response.json())["error"]
    assert answers == {"H-1": (503, "service_unavailable"), "H-404": (404, "not_found")}
    assert "POST /bindings: 'registry' is not in the holder directory: answered 503" in [
        r.getMessage() for r in caplog.records]


async def test_a_path_logged_on_a_fault_has_its_control_characters_escaped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A %0A in the path of a request that fails (500, logged) made a line of the caller's in
    the server's log: it is logged escaped, the path on the one line of its record."""
    async with _serving(tmp_path, _Faulty) as url:
        token = str(read_json(address_file(HOLDER))["token"])
        forged = URL(f"{url}/requests/r-1%0AERROR%20forged%E2%80%AE%09", encoded=True)
        with caplog.at_level(logging.ERROR, "holders.server"):
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as \
                    http, http.get(forged) as response:
                assert response.status == 500
    (record,) = (r for r in caplog.records if r.levelno == logging.ERROR)
    assert record.getMessage() == "GET /requests/r-1\\nERROR forged\\u202e\\t failed"


async def test_a_store_another_process_holds_locked_is_busy_not_a_fault(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An import holding the write lock past the busy timeout: 503, try again; one warning."""
    async with _serving(tmp_path, _Impatient) as url:
        token = str(read_json(address_file(HOLDER))["token"])
        other = sqlite3.connect(tmp_path / "holder.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        body = {"own_number": "H-1", "operator": "staff-7", "terminal": "term-3"}
        with caplog.at_level(logging.WARNING, "holders.server"):
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as \
                    http, http.post(f"{url}/bindings", json=body) as response:
                status, retry_after = response.status, response.headers.get("Retry-After")
                answer = await response.json()
        other.execute("ROLLBACK")
        other.close()
    assert (status, retry_after) == (503, "1")
    assert answer == {"error": "service_unavailable", "detail": "the holder's store is busy "
                      "(another process holds its lock): try again"}
    warned = [r for r in caplog.records if "/bindings" in r.getMessage()]
    assert [(r.levelno, r.exc_info) for r in warned] == [(logging.WARNING, None)]
    assert "POST /bindings: the holder's store is locked" in warned[0].getMessage()
    assert "Traceback" not in caplog.text


# A communication server in a process of its own whose store's files may grow no more (the file
# size its limit allows, RLIMIT_FSIZE, as a full disk: a write fails), asked by a caller that may
# not act, whose refusal it writes to its access log; its answer printed, its log on stderr.
_FULL_STORE_SERVER = """
import asyncio, json, logging, resource, signal, sys
from pathlib import Path
import aiohttp
from holders.server import _serve_http, address_file
from holders.store import HolderStore
from renkei.state import read_json, state_folder
from tests.test_holder_server import HOLDER, _Authorizing

async def main(folder):
    store, stop = HolderStore(folder / "holder.db"), asyncio.Event()
    with state_folder(folder / "state"):
        client = _Authorizing(store)
        serving = asyncio.create_task(_serve_http(client, 0, stop))
        await asyncio.wait_for(client.listening.wait(), 10)
        address = read_json(address_file(HOLDER))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        sizes = (Path(f"{store.path}{end}").stat().st_size for end in ("", "-wal"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (max(sizes) + 100, resource.RLIM_INFINITY))
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {address['token']}"}) as http, http.post(
                address["url"] + "/bindings",
                json={"own_number": "H-1", "operator": "nobody", "terminal": "t-1"}) as answer:
            print(json.dumps([answer.status, answer.headers.get("Retry-After"),
                              await answer.json()]))
        stop.set()
        await serving
        store.close()

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
asyncio.run(main(Path(sys.argv[1])))
"""


def test_a_store_that_cannot_be_written_is_unavailable_said_in_one_line(tmp_path: Path) -> None:
    """A store whose disk was full (here: its file at the size a limit allows) answered the
    holder's system 500 internal_server_error, and the server's log a traceback under SQLite's
    "disk I/O error", naming no file: it is 503 saying why, and one line naming the store."""
    run = subprocess.run([sys.executable, "-c", _FULL_STORE_SERVER, str(tmp_path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [503, "60", {
        "error": "service_unavailable", "detail": "the holder's store cannot be written (its "
        "disk is full): nothing of this call was kept; try again once its operator has freed "
        "space"}], run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    said = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    assert said == [f"ERROR POST /bindings: the holder's store {tmp_path / 'holder.db'} cannot "
                    "be written (disk I/O error: its disk full, or a quota or file-size limit "
                    "reached): answered 503"], run.stderr


async def test_a_linkage_request_for_no_record_is_not_found_not_unbound(tmp_path: Path) -> None:
    """A record the holder has none of was told 422 not_bound, "bind it first", which its
    binding then refuses (404): it is 404 no record, as a binding of it is."""
    async with _serving(tmp_path, cast(type[_Unstarted], _Waiting)) as url:
        token = _staff_one_and_h1(tmp_path)
        answers = {}
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for own_number in ("H-1", "H-404"):
                body = {"own_number": own_number, "pattern_id": "P-1", "provider": "town",
                        "data_type": "local_tax", "purpose": "審査", "operator": "staff-1",
                        "terminal": "t-1"}
                async with http.post(f"{url}/requests", json=body) as response:
                    answers[own_number] = response.status, await response.json()
    assert answers == {
        "H-1": (422, {"error": "not_bound",
                      "detail": "record 'H-1' is not bound to a link code"}),
        "H-404": (404, {"error": "not_found", "detail": "no record 'H-404'"})}


async def test_an_own_number_with_spaces_around_it_is_the_record_its_import_made(
        tmp_path: Path) -> None:
    """A record imported from a cell with spaces around its own number is stored without them;
    the same number sent to the server with them was 404 no record: it is that record, as its
    import reads it (bound to no code and holding no personal number here)."""
    own = " H-1\u3000"
    (tmp_path / "records.csv").write_text("own_number,name,address,date_of_birth,sex\n"
                                          f"{own},山田 花子,桜町1-2-3,1980-04-01,F\n")
    async with _serving(tmp_path, cast(type[_Unstarted], _Waiting)) as url:
        token = _staff_one_on_t1(tmp_path)
        store = HolderStore(tmp_path / "holder.db")
        read, refused = read_records(tmp_path / "records.csv")
        store_records(store, read)
        store.close()
        answers = {}
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for path, rest in (("/bindings", {"by_number": True}), ("/requests", {
                    "pattern_id": "P-1", "provider": "town", "data_type": "local_tax",
                    "purpose": "審査"})):
                body = {"own_number": own, "operator": "staff-1", "terminal": "t-1", **rest}
                async with http.post(url + path, json=body) as response:
                    answers[path] = response.status, (await response.json())["detail"]
    assert refused == []
    assert answers == {"/bindings": (404, "record 'H-1' holds no personal number"),
                       "/requests": (422, "record 'H-1' is not bound to a link code")}


async def test_an_own_number_sent_in_full_width_is_the_record_its_import_made(
        tmp_path: Path) -> None:
    """`Ｈ－１` sent by a holder's system (full width, as its own screen keyed it) was 404 no
    record for the record imported as `H-1`: the server keys it as an import does (NFKC)."""
    (tmp_path / "records.csv").write_text("own_number,name,address,date_of_birth,sex\n"
                                          "H-1,山田 花子,桜町1-2-3,1980-04-01,F\n")
    async with _serving(tmp_path, cast(type[_Unstarted], _Waiting)) as url:
        token = _staff_one_on_t1(tmp_path)
        with closing(HolderStore(tmp_path / "holder.db")) as store:
            store_records(store, read_records(tmp_path / "records.csv")[0])
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            body = {"own_number": "Ｈ－１", "operator": "staff-1", "terminal": "t-1",
                    "by_number": True}
            async with http.post(url + "/bindings", json=body) as response:
                answer = response.status, (await response.json())["detail"]
    assert answer == (404, "record 'H-1' holds no personal number")


async def test_by_number_null_is_not_given_and_any_other_non_boolean_refused(
        tmp_path: Path) -> None:
    """A holder's system serializing an unset optional boolean sends `"by_number": null`: it was
    refused 400 "must be true or false" while the field left out meant false. Null is not given,
    false, as absent; a string, a number still refused."""
    async with _serving(tmp_path, _Authorizing) as url:
        token = _staff_one_on_t1(tmp_path)
        answers = []
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for given in ({}, {"by_number": None}, {"by_number": False}, {"by_number": "false"},
                          {"by_number": 0}):
                body = {"own_number": "H-404", "operator": "staff-1", "terminal": "t-1", **given}
                async with http.post(f"{url}/bindings", json=body) as response:
                    answers.append((response.status, (await response.json())["detail"]))
    no_record, refused = (404, "no record 'H-404'"), (400, "'by_number' must be true or false")
    assert answers == [no_record, no_record, no_record, refused, refused]


def _staff_one_on_t1(tmp_path: Path) -> str:
    """Register staff-1 on terminal t-1 in the served holder's store; the server's token."""
    store = HolderStore(tmp_path / "holder.db")
    store.add_terminal("t-1")
    store.add_staff("staff-1", "担当職員", ["t-1"])
    store.close()
    return str(read_json(address_file(HOLDER))["token"])


def _staff_one_and_h1(tmp_path: Path) -> str:
    """_staff_one_on_t1, and record H-1 (not bound) in the served holder's store."""
    token = _staff_one_on_t1(tmp_path)
    store = HolderStore(tmp_path / "holder.db")
    store.add_record("H-1", FourAttributes("山田 花子", "桜町1-2-3", date(1980, 4, 1), Sex.FEMALE))
    store.close()
    return token


@pytest.mark.parametrize(("method", "path", "body", "status", "error", "detail"), [
    ("POST", "/bindings", b"{not json", 400, "bad_request", "the body is not JSON"),
    ("POST", "/bindings", b"\xff\xfe", 400, "bad_request", "the body is not JSON"),
    ("POST", "/bindings", b"[1]", 400, "bad_request", "the body must be a JSON object"),
    ("POST", "/bindings", b'{"own_number": "H-1"}', 400, "bad_request", "'operator' is required"),
    ("POST", "/bindings", b'{"own_number": "H-1", "operator": " \\u3000\\t"}', 400, "bad_request",
     "'operator' is required"),
    ("POST", "/bindings", b'{"own_number": {"n": "H-1"}, "operator": "staff-1", "terminal": "t"}',
     400, "bad_request", "'own_number' must be a JSON string, not an object"),
    ("POST", "/bindings", b'{"own_number": "H-1", "operator": ["staff-1"]}', 400, "bad_request",
     "'operator' must be a JSON string, not an array"),
    ("POST", "/bindings", b'{"own_number": "H-1", "operator": "nobody", "terminal": "t"}', 403,
     "forbidden", "'nobody' on 't' may not act"),
    ("POST", "/bindings", b'{"own_number": "H-404", "operator": "staff-1", "terminal": "t-1"}',
     404, "not_found", "no record 'H-404'"),
    ("POST", "/bindings", b'{"own_number": "H-\\udcff", "operator": "staff-1", "terminal": "t-1"}',
     400, "bad_request", "'own_number' is not UTF-8 text"),
    ("POST", "/bindings", b'{"own_number": "%s", "operator": "staff-1", "terminal": "t-1"}'
     % (b"H" * 950_000), 400, "bad_request", "'own_number' is over 1000 characters"),
    ("POST", "/bindings", b'{"own_number": "H-404", "operator": "staff-1", "terminal": "t-1", '
     b'"by_number": "false"}', 400, "bad_request", "'by_number' must be true or false"),
    ("GET", "/no-such-path", b"", 404, "not_found", "Not Found"),
    ("DELETE", "/bindings", b"", 405, "method_not_allowed", "Method Not Allowed"),
    ("POST", "/bindings", b" " * (1024 ** 2 + 1), 413, "request_entity_too_large",
     "Maximum request body size"),
])
async def test_every_error_answer_is_json_in_one_shape_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, method: str, path: str, body: bytes,
        status: int, error: str, detail: str) -> None:
    """A holder's system parses one format: an error is {"error": …, "detail": one line}. Each
    is logged in one line, which refusals were not at all; never its detail, which may name an
    own number."""
    async with _serving(tmp_path, _Authorizing) as url:
        token = _staff_one_on_t1(tmp_path)
        with caplog.at_level(logging.INFO, "holders.server"):
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as \
                    http, http.request(method, url + path, data=body) as response:
                assert response.status == status
                assert response.content_type == "application/json"
                answer = await response.json()
    assert set(answer) == {"error", "detail"} and answer["error"] == error, answer
    assert detail in answer["detail"] and "\n" not in answer["detail"], answer
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == [f"{method} {path} refused: {status} {error}"]
    assert "H-404" not in caplog.text


async def test_a_request_without_the_token_is_refused_and_warned_of(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another local user guessing at the token left no trace in the server's log."""
    async with _serving(tmp_path) as url:
        with caplog.at_level(logging.INFO, "holders.server"):
            async with aiohttp.ClientSession(headers={"Authorization": "Bearer guess"}) as \
                    http, http.get(f"{url}/investigations") as response:
                assert response.status == 401
    assert [(r.levelno, r.getMessage()) for r in caplog.records if "refused" in r.getMessage()
            ] == [(logging.WARNING, "GET /investigations refused: 401 unauthorized")]
    assert "guess" not in caplog.text


@pytest.mark.parametrize("head", [b"GET /access-log?%s HTTP/1.1\r\n" % (b"x" * 9000),
                                  b"GET /access-log HTTP/1.1\r\nX-Long: %s\r\n" % (b"x" * 9000)])
async def test_a_request_line_or_header_over_the_limits_is_refused_in_json(
        tmp_path: Path, head: bytes) -> None:
    """aiohttp refuses them before any handler (and middleware) sees the request: in plain text
    it was, as no other error of the server's is; in JSON now. Its answer was in HTTP/1.0 (its
    placeholder request's), to an HTTP/1.1 client; in HTTP/1.1 now, the connection closed."""
    async with _serving(tmp_path) as url:
        reader, writer = await asyncio.open_connection(URL(url).host, URL(url).port)
        writer.write(head + b"Host: x\r\n\r\n")
        answer = await reader.read()
        writer.close()
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400 ") and b"application/json" in status, answer
    assert b"\r\nConnection: close" in status, answer
    refused = json.loads(body)
    assert refused["error"] == "bad_request" and "\n" not in refused["detail"], refused
    assert refused["detail"] == "a request line or header over 8190 bytes", refused


SECRET = b"Bearer s3cr3t-t0ken-Zq81"


@pytest.mark.parametrize("head", [
    b"GET /access-log HTTP/1.1\r\nAuthorization: %s%s\r\n" % (SECRET, b"x" * 9000),
    b"GET /access-log HTTP/1.1\r\nAuthorization %s\r\n" % SECRET,
    b"GET /access-log?token=%s%s HTTP/1.1\r\n" % (SECRET[7:], b"x" * 9000)])
async def test_a_refused_request_line_or_header_is_neither_answered_nor_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, head: bytes) -> None:
    """aiohttp copied up to 100 bytes of the line or header it refused (an Authorization
    token) into its 400's detail and its log entry ("Error handling request")."""
    caplog.set_level(logging.DEBUG)
    async with _serving(tmp_path) as url:
        reader, writer = await asyncio.open_connection(URL(url).host, URL(url).port)
        writer.write(head + b"Host: x\r\n\r\n")
        answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ") and SECRET[7:] not in answer, answer
    assert SECRET[7:].decode() not in caplog.text
    assert "refused a request from 127.0.0.1: " in caplog.text  # logged, in its own words


@pytest.mark.parametrize("charset", ["x-no-such-charset", "base64"])
async def test_a_body_in_a_charset_that_is_no_text_encoding_is_a_bad_request(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, charset: str) -> None:
    """A Content-Type naming a charset Python has no text codec of failed as the body was
    decoded: a 500 and a traceback, for the caller's fault."""
    async with _serving(tmp_path, _Authorizing) as url:
        token = _staff_one_on_t1(tmp_path)
        headers = {"Authorization": f"Bearer {token}",
                   "Content-Type": f"application/json; charset={charset}"}
        async with aiohttp.ClientSession(headers=headers) as http, \
                http.post(f"{url}/bindings", data=b'{"own_number": "H-1"}') as response:
            answer = response.status, await response.json()
    assert answer == (400, {"error": "bad_request", "detail": f"the body's charset {charset!r} "
                                                              "is not a text encoding"})
    assert "Traceback" not in caplog.text


async def test_no_nesting_of_a_body_is_a_fault_of_the_servers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A body nested past Python's recursion limit failed as it was read: a 500 and a
    traceback, for the caller's fault; nor is one nested just under it, whose idempotency key's
    fingerprint (one level deeper) is made on a shallower stack."""
    async with _serving(tmp_path, _Authorizing) as url:
        token = _staff_one_on_t1(tmp_path)
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k-1"}
        async with aiohttp.ClientSession(headers=headers) as http:
            answered: set[tuple[int, str]] = set()
            for depth in (1, *range(800, 1010), 100_000):
                body = b'{"own_number": "H-1", "operator": "nobody", "terminal": "t", "x": %s}' \
                    % (b"[" * depth + b"]" * depth)
                async with http.post(f"{url}/bindings", data=body) as response:
                    answered.add((response.status, (await response.json())["detail"]))
    assert answered == {(403, "'nobody' on 't' may not act for city-x"),
                             (400, "the body is nested too deeply")}, answered
    assert "Traceback" not in caplog.text


async def test_an_idempotency_key_not_utf8_is_a_bad_request(tmp_path: Path) -> None:
    """A key of bytes not UTF-8 (as a header may carry, aiohttp's client aside) failed on the
    store: a 500, the server's fault, for the caller's."""
    async with _serving(tmp_path, _Authorizing) as url:
        token = _staff_one_on_t1(tmp_path)
        body = b'{"own_number": "H-404", "operator": "staff-1", "terminal": "t-1"}'
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /bindings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                     b"Idempotency-Key: key-\xff\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (token.encode(), len(body), body))
        answer = await reader.read()
        writer.close()
    head, _, answered = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert json.loads(answered) == {"error": "bad_request",
                                    "detail": "an Idempotency-Key is UTF-8 text"}


async def test_a_key_still_in_use_is_told_apart_from_a_record_not_bound(tmp_path: Path) -> None:
    """A holder's system retrying during a re-keying is told to ask again (409 with Retry-After;
    of the refusals, the one that says so), not that its record is not bound: each refusal by its
    own status and code."""
    async with _serving(tmp_path, _Refusing) as url:
        token = str(read_json(address_file(HOLDER))["token"])
        answers = {}
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for own_number in _REFUSALS:
                body = {"own_number": own_number, "pattern_id": "P-037", "provider": "p",
                        "data_type": "d", "purpose": "審査", "operator": "o", "terminal": "t"}
                async with http.post(url + "/requests", json=body,
                                     headers={"Idempotency-Key": "k-1"}) as response:
                    answers[own_number] = (response.status, (await response.json())["error"],
                                           response.headers.get("Retry-After"))
    assert answers == {"H-unbound": (422, "not_bound", None),
                       "H-in-use": (409, "idempotency_key_in_use", "1"),
                       "H-reused": (422, "idempotency_key_reused", None)}


@asynccontextmanager
async def _served(client: HolderClient) -> AsyncIterator[aiohttp.ClientSession]:
    """The communication server of a started holder library; a session with its token."""
    address_file(client.holder).unlink(missing_ok=True)
    stop = asyncio.Event()
    serving = asyncio.create_task(_serve_http(client, 0, stop))
    deadline = Deadline(30, f"{client.holder}'s server address")
    try:
        while (address := recorded(client.holder)) is None:
            assert not serving.done(), serving.exception()
            deadline.check()
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession(address.url, headers=address.headers) as http:
            yield http
    finally:
        stop.set()
        await serving


def _linkage_body(client: HolderClient) -> dict[str, str]:
    """A linkage request of its staff about its first bound record, to sakura-town's local tax."""
    operator, terminal = staff_of(client.holder)
    return {"own_number": sorted(client.store.bindings())[0], "pattern_id": "P-037",
            "provider": "sakura-town", "data_type": "local_tax", "purpose": "審査",
            "operator": operator, "terminal": terminal}


def _lost_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first answer of a request made is lost after the store has recorded it (as when the
    server is killed then): the caller never learns its id."""
    def lost(request_id: str) -> web.Response:
        monkeypatch.setattr(holders.server, "_accepted", accepted)
        raise ConnectionResetError(f"the answer of {request_id} was lost")
    accepted = holders.server._accepted
    monkeypatch.setattr(holders.server, "_accepted", lost)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_post_retried_with_its_idempotency_key_makes_one_request(
        clients: dict[str, HolderClient], monkeypatch: pytest.MonkeyPatch) -> None:
    """Its answer lost after the request was recorded, the caller asks again with the same
    Idempotency-Key, and again: one request, sent once, answered and logged once; the same key
    for a different request is refused, saying so."""
    nenkin = clients["nenkin"]
    body = _linkage_body(nenkin)
    key = {"Idempotency-Key": "7f9c2ba4-e88f-4e2b-9d3c-a1b2c3d4e5f6"}
    before = nenkin.store.counts(LINKAGE)
    _lost_once(monkeypatch)
    async with _served(nenkin) as http:
        async with http.post("/requests", json=body, headers=key) as lost:
            assert lost.status == 500
        ids = set()
        for _ in range(2):
            async with http.post("/requests", json=body, headers=key) as retried:
                assert retried.status == 202, await retried.text()
                ids.add((await retried.json())["request_id"])
        assert len(ids) == 1, f"a request made again: {ids}"
        async with http.post("/requests", json={**body, "purpose": "調査"},
                             headers=key) as reused:
            assert reused.status == 422, await reused.text()
            refused = await reused.json()
    (request_id,) = ids
    assert refused["error"] == "idempotency_key_reused" and request_id in refused["detail"]
    assert (await nenkin.outcome(request_id, 30)).status == "FOUND"
    after = nenkin.store.counts(LINKAGE)
    assert sum(after.values()) - sum(before.values()) == 1, (before, after)
    assert len(nenkin.store.access_log(request_id)) == 1
    assert len(clients["sakura-town"].store.access_log(request_id)) == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_a_retry_naming_the_same_request_otherwise_written_is_that_request(
        clients: dict[str, HolderClient]) -> None:
    """A retry under the same Idempotency-Key whose body names the same request in other bytes
    (its fields in another order, other whitespace in its JSON, " H-1" for "H-1", an unset
    flag as null) was 422 idempotency_key_reused: it is answered the request made. The fields
    are read without the spaces around them, as own_number is: an operator " staff" was not
    staff (403); a purpose keeps its inner text."""
    nenkin = clients["nenkin"]
    body = {**_linkage_body(nenkin), "purpose": "審査 の 確認"}
    spaced = {name: f" {value}\u3000" for name, value in reversed(body.items())}
    binding = {name: body[name] for name in ("own_number", "operator", "terminal")}
    async with _served(nenkin) as http:
        answers = {}
        for path, first, again in (
                ("/requests", spaced, body),
                ("/bindings", {**binding, "by_number": None}, binding)):
            key = {"Idempotency-Key": f"5d41402a{path}", "Content-Type": "application/json"}
            ids: list[str | None] = []
            for given in (json.dumps(first, indent=2, ensure_ascii=False), json.dumps(again)):
                async with http.post(path, data=given.encode(), headers=key) as response:
                    answers[path, len(ids)] = response.status, await response.json()
                    ids.append(answers[path, len(ids)][1].get("request_id"))
            assert ids[0] is not None and ids[0] == ids[1], answers
    made = nenkin.store.request(answers["/requests", 0][1]["request_id"])
    assert made is not None
    assert (made.own_number, made.operator, made.terminal, made.purpose) == (
        body["own_number"], body["operator"], body["terminal"], "審査 の 確認")


@pytest.mark.asyncio(loop_scope="session")
async def test_a_retry_is_told_to_ask_again_only_while_the_first_call_has_no_request(
        clients: dict[str, HolderClient], monkeypatch: pytest.MonkeyPatch) -> None:
    """The first call waits for its record's code (as during a re-keying, up to REKEY_WAIT), no
    request recorded yet: a retry under its key meanwhile is told at once to ask again (409 with
    Retry-After), not held until the first has recorded its request and then told the same;
    asked again then, it is answered the first call's request."""
    nenkin = clients["nenkin"]
    body = _linkage_body(nenkin)
    key = {"Idempotency-Key": "0b5e2f6c-rekeying"}
    waiting, rekeyed = asyncio.Event(), asyncio.Event()
    current_code = nenkin._current_code

    async def rekeying(own_number: str) -> str | None:
        waiting.set()
        await rekeyed.wait()
        return await current_code(own_number)

    monkeypatch.setattr(nenkin, "_current_code", rekeying)

    async def post(http: aiohttp.ClientSession) -> tuple[int, dict[str, str], str | None]:
        async with http.post("/requests", json=body, headers=key) as response:
            return response.status, await response.json(), response.headers.get("Retry-After")

    async with _served(nenkin) as http:
        first = asyncio.create_task(post(http))
        try:
            await asyncio.wait_for(waiting.wait(), 10)
            retried = asyncio.create_task(post(http))
            done, _ = await asyncio.wait({retried}, timeout=3)
        finally:
            rekeyed.set()
        made, again = await first, await post(http)
        await retried
    assert done, f"the retry was held while the first call waited, then: {retried.result()}"
    status, answer, retry_after = retried.result()
    assert (status, answer["error"], retry_after) == (409, "idempotency_key_in_use", "1")
    assert made[0] == again[0] == 202, (made, again)
    assert again[1]["request_id"] == made[1]["request_id"]
    assert (await nenkin.outcome(made[1]["request_id"], 30)).status == "FOUND"


async def test_the_access_log_is_answered_a_page_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /access-log answered the whole log in one answer: a year's (a million entries) held
    2.6 GB in the server's memory and its loop for 19 s, a provider's query answered after 18 s
    meanwhile; it answers a page of LOG_PAGE at most, each entry with its serial, and a full
    page says where the next starts (Link rel="next")."""
    monkeypatch.setattr(holders.server, "LOG_PAGE", 2, raising=False)
    async with _serving(tmp_path) as url:
        store = HolderStore(tmp_path / "holder.db")
        for n in range(2, 6):
            store.log(f"r-{n}", "requester", "staff-7", "term-3", "FOUND")
        store.close()
        token = str(read_json(address_file(HOLDER))["token"])
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            pages, link = [], f"{url}/access-log"
            while link:
                async with http.get(link) as got:
                    pages.append([(e["serial"], e["request_id"]) for e in await got.json()])
                    link = str(got.links["next"]["url"]) if "next" in got.links else ""
            async with http.get(f"{url}/access-log", params={"limit": "3"}) as too_many:
                refused = too_many.status, (await too_many.json())["error"]
    assert pages == [[(1, "r-1"), (2, "r-2")], [(3, "r-3"), (4, "r-4")], [(5, "r-5")]]
    assert refused == (400, "bad_request")
