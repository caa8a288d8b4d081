"""`renkei authority serve`: the numbering authority's process on Kafka."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from authority import lookups, portal
from authority.cli import db_option, numbered, opened, registry_option
from authority.service import NumberingAuthority, forgotten_told, withdrawn_told
from authority.store import AuthorityStore
from broker import acls, cluster, topics
from registry import store as registry_store
from registry import tickets
from renkei import event_loop, logs, questions, retention, sealing
from renkei.envelope import Directory, Send
from renkei.service_loop import run_service, said_when_up
from renkei.tasks import cancelled

log = logging.getLogger(__name__)


class RegistryChanges:
    """The registry's resident-code changes, followed before each batch of look-ups: a number
    looked up leads to the code its resident has now (nothing to follow while no registry is)."""

    def __init__(self, authority: NumberingAuthority, path: Path) -> None:
        self._authority, self._path = authority, path
        self._registry: registry_store.RegistryStore | None = None
        self._withdrawn = authority.withdrawn  # the numbers withdrawn said so far

    def follow(self) -> None:
        try:
            if self._registry is None and self._path.exists():
                self._registry = registry_store.RegistryStore.open(self._path, read_only=True)
            elif self._registry is not None and self._registry.reopened_if_replaced():
                log.warning("the registry at %s was replaced: its code changes are followed "
                            "from the new one", self._path)
            if self._registry is not None and self._authority.follow_registry(self._registry):
                log.info("resident-code changes followed")
        except (sqlite3.Error, registry_store.NoRegistry) as exc:  # busy, or not made yet:
            # followed before the next batch
            log.warning("the registry's code changes could not be followed now: %s", exc)
        self._tell_withdrawn()

    def _tell_withdrawn(self) -> None:
        """A WARNING of the numbers following withdrew since the last one said (a resident's
        number retired is for an operator to see, at the level `serve` logs at): how many."""
        if retired := self._authority.withdrawn - self._withdrawn:
            self._withdrawn = self._authority.withdrawn
            log.warning("following the registry's code changes: %s", withdrawn_told(retired))

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()


Handler = Callable[[Sequence[Any]], list[Send]]


def serving(authority: NumberingAuthority, key: X25519PrivateKey, changes: RegistryChanges,
            login_key: Ed25519PublicKey) -> Callable[[Directory], Handler]:
    """The service's handler for a holder directory: changes followed, then the holders'
    look-ups and the portal's requests for a new number (each on its own topic; each for a
    resident a login ticket the registry side signed with `login_key` names)."""
    def with_directory(directory: Directory) -> Handler:
        def handle(records: Sequence[Any]) -> list[Send]:
            changes.follow()
            asked, looked_up = questions.of_topic(records, topics.AUTHORITY_PORTAL_IN)
            return [*lookups.handle(looked_up, authority, key, directory),
                    *questions.answered(asked, acls.AUTHORITY, key,
                                        topics.AUTHORITY_PORTAL_OUT,
                                        partial(portal.new_number, authority, login_key),
                                        datetime.now(UTC))]
        return handle
    return with_directory


async def keeping_retention(path: Path, running: Callable[[asyncio.Event], Awaitable[None]],
                            ready: asyncio.Event) -> None:
    """`running(ready)` awaited, the look-ups logged and the code changes followed past the
    access log's retention in the store at `path` forgotten meanwhile (on a connection of their
    own, off the loop), at its start (the broker reached or not) and every
    retention.FORGET_EVERY."""
    keeping = asyncio.create_task(
        retention.keep("authority", partial(AuthorityStore, path), forgotten_told))
    try:
        await running(ready)
    finally:
        await cancelled(keeping)


@click.command(short_help="Serve holders' number look-ups and residents' new numbers.")
@db_option("the authority's store, made by `renkei authority assign-all`")
@registry_option("the registry whose code changes it follows")
def serve(db: Path | None, registry: Path | None) -> None:
    """Resolve holders' personal-number look-ups (logged) and residents' requests for a new
    number (from My Portal, each with the login ticket of the resident) until stopped."""
    logs.for_service()
    path = numbered(db)
    login_key = tickets.public_key()
    store = opened(path)
    authority = NumberingAuthority(store)
    changes = RegistryChanges(authority, registry or registry_store.default_path())
    try:
        event_loop.run(said_when_up(
            partial(keeping_retention, path, partial(
                run_service, acls.AUTHORITY, [topics.AUTHORITY_IN, topics.AUTHORITY_PORTAL_IN],
                "renkei-authority",
                serving(authority, sealing.key_of(acls.AUTHORITY), changes, login_key))),
            f"authority up on the broker at {cluster.bootstrap()}: holders' personal-number "
            f"look-ups and residents' requests for a new number, from {path}"))
    finally:
        changes.close()
        store.close()
