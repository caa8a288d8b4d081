"""The communication server (コミュニケーション・サーバー, paper §7(2)): a holder's existing system
talks plain JSON over HTTP on loopback; the server does the Renkei side with the holder library."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from holders.client import HolderClient, NotAuthorized, NotBound
from holders.store import HolderStore, default_path
from renkei.service_loop import stop_on_signals, unless_stopped
from renkei.state import private_dir, write_json

log = logging.getLogger(__name__)
CLIENT = web.AppKey("client", HolderClient)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(
        d, ensure_ascii=False))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise web.HTTPBadRequest(text=f"{name!r} is required")
    return value


async def bind(request: web.Request) -> web.Response:
    client, body = request.app[CLIENT], await _body(request)
    try:
        request_id = await client.bind(_field(body, "own_number"), _field(body, "operator"),
                                       _field(body, "terminal"), bool(body.get("by_number")))
    except NotAuthorized as exc:
        raise web.HTTPForbidden(text=str(exc)) from exc
    except LookupError as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    return _json({"request_id": request_id}, 202)


async def linkage(request: web.Request) -> web.Response:
    client, body = request.app[CLIENT], await _body(request)
    try:
        request_id = await client.request(
            _field(body, "own_number"), _field(body, "pattern_id"), _field(body, "provider"),
            _field(body, "data_type"), _field(body, "purpose"), _field(body, "operator"),
            _field(body, "terminal"))
    except NotAuthorized as exc:
        raise web.HTTPForbidden(text=str(exc)) from exc
    except NotBound as exc:
        raise web.HTTPConflict(text=str(exc)) from exc
    return _json({"request_id": request_id}, 202)


async def outcome(request: web.Request) -> web.Response:
    """A request's outcome; `?wait=S` waits up to S seconds for it."""
    client = request.app[CLIENT]
    wait = float(request.query.get("wait", "0"))
    request_id = request.match_info["request_id"]
    try:
        await client.outcome(request_id, within=wait)
    except LookupError as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    except TimeoutError:
        pass  # still waiting for its outcome: report it as it stands
    found = client.store.request(request_id)
    return _json(dataclasses.asdict(found) if found else {})


async def investigations(request: web.Request) -> web.Response:
    rows = request.app[CLIENT].store.investigations()
    return _json([{"own_number": own, "reason": reason} for own, reason in rows])


async def access_log(request: web.Request) -> web.Response:
    entries = request.app[CLIENT].store.access_log(request.query.get("request_id"))
    return _json([dataclasses.asdict(e) for e in entries])


def address_file(holder: str) -> Path:
    """Where a running communication server writes its URL (for the holder's own systems)."""
    return private_dir("holders", holder) / "server.json"


async def run(holder: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT: answer the platform's queries, and the holder's system."""
    stop = stop_on_signals()
    store = HolderStore(default_path(holder))
    client = HolderClient(holder, store)
    try:
        if await unless_stopped(stop, client.start()):
            await _serve_http(client, port, stop)
    finally:
        await client.stop()
        store.close()


async def _serve_http(client: HolderClient, port: int, stop: asyncio.Event) -> None:
    """The holder's own systems' API on loopback, until `stop` is set."""
    app = web.Application()
    app[CLIENT] = client
    app.add_routes([web.post("/bindings", bind), web.post("/requests", linkage),
                    web.get("/requests/{request_id}", outcome),
                    web.get("/investigations", investigations),
                    web.get("/access-log", access_log)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = runner.addresses[0][1]
        write_json(address_file(client.holder), {"url": f"http://127.0.0.1:{bound}"})
        log.warning("holder %s: communication server on http://127.0.0.1:%s", client.holder,
                    bound)
        await client.until_stopped(stop)
    finally:
        await runner.cleanup()


def main(holder: str, port: int) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(run(holder, port))
