"""`renkei authority serve`: the numbering authority's process on Kafka."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path

import click

from authority import lookups
from authority import store as authority_store
from authority.service import NumberingAuthority
from broker import acls, topics
from renkei import sealing
from renkei.service_loop import run_service


@click.command()
@click.option("--db", type=click.Path(path_type=Path), default=None,
              help="the authority's store [default <state>/authority/authority.db]")
def serve(db: Path | None) -> None:
    """Resolve holders' personal-number look-ups (logged) until stopped."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    store = authority_store.AuthorityStore(db or authority_store.default_path())
    authority = NumberingAuthority(store)
    key = sealing.key_of(acls.AUTHORITY)
    try:
        asyncio.run(run_service(
            acls.AUTHORITY, [topics.AUTHORITY_IN], "renkei-authority",
            lambda directory: partial(lookups.handle, service=authority, key=key,
                                      directory=directory)))
    finally:
        store.close()
