"""`renkei registry serve`: the registry's process on Kafka."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import acls, cluster, topics
from cards.jlis import CardHolders
from processors import keys
from processors.codes import IdCodes
from registry import tickets
from registry.cli import DB_OPTION, open_registry
from registry.portal import CardLogins
from registry.service import RegistryService
from registry.store import NoRegistry, RegistryStore, default_path
from renkei import event_loop, logs, questions, sealing
from renkei.envelope import Directory, Send
from renkei.options import SaidDefault, origins
from renkei.service_loop import run_service, said_when_up

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[Any]], list[Send]]


def read_from_current(store: RegistryStore) -> None:
    """The registry read from the file at its path now: one put in place of the one opened
    (`renkei registry generate --replace`) is read from then on, said once in the log; one that
    cannot be opened (yet) leaves the old one read, said before each batch."""
    try:
        if store.reopened_if_replaced():
            log.warning("the registry at %s was replaced: answered from the new one", store.path)
    except (sqlite3.Error, NoRegistry) as exc:
        log.warning("the registry at %s was replaced, but cannot be opened (%s): answered from "
                    "the old one", store.path, exc)


def serving(store: RegistryStore, logins: CardLogins,
            key: X25519PrivateKey) -> Callable[[Directory], Handler]:
    """The service's handler for a holder directory: the platform's look-ups, and the portal's
    questions about cards that log in (each on its own topic)."""
    def with_directory(directory: Directory) -> Handler:
        service = RegistryService(store, key, directory)

        def handle(records: Sequence[Any]) -> list[Send]:
            read_from_current(store)
            asked, looked_up = questions.of_topic(records, topics.REGISTRY_PORTAL_IN)
            return [*service.handle(looked_up),
                    *questions.answered(asked, acls.REGISTRY, key,
                                        topics.REGISTRY_PORTAL_OUT,
                                        logins.card_holder,
                                        datetime.now(UTC))]
        return handle
    return with_directory


def id_codes() -> IdCodes:
    """The ID codes of a card holder's codes, by the ID key alone (the platform's masters, whose
    link-code keys turn an ID code into every holder's link code, are not read)."""
    return IdCodes(keys.load_id_key())


@click.command(short_help="Answer the platform's look-ups and My Portal's card logins.")
@DB_OPTION
@click.option("--portal-origin", "portal_origins", multiple=True, callback=origins,
              cls=SaidDefault, show_default="any http://127.0.0.1:PORT",
              help="My Portal's public origin, as its --origin (repeatable); a card login "
                   "signed for any other site is refused")
def serve(db: Path | None, portal_origins: tuple[str, ...]) -> None:
    """Answer the platform's look-ups and My Portal's questions about cards that log in (sealed;
    their holders' ID codes by the ID key alone, a login ticket signed with the login key) until
    stopped."""
    logs.for_service()
    path = db or default_path()
    store = open_registry(path)
    cards = CardHolders()
    try:
        logins = CardLogins(cards, store, id_codes(), tickets.signing_key(),
                            frozenset(portal_origins))
        event_loop.run(said_when_up(
            partial(run_service, acls.REGISTRY, [topics.REGISTRY_IN, topics.REGISTRY_PORTAL_IN],
                    "renkei-registry", serving(store, logins, sealing.key_of(acls.REGISTRY))),
            f"registry up on the broker at {cluster.bootstrap()}: the platform's look-ups and "
            f"My Portal's card logins, from {path}"))
    finally:
        cards.close()
        store.close()
