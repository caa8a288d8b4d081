"""`renkei registry serve`: the registry's process on Kafka."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from broker import acls, topics
from registry.cli import open_registry
from registry.service import RegistryService
from renkei import sealing
from renkei.service_loop import run_service


@click.command()
@click.option("--db", type=click.Path(path_type=Path), default=None,
              help="the registry's SQLite file [default <state>/registry/registry.db]")
def serve(db: Path | None) -> None:
    """Answer the platform's look-ups (sealed) until stopped."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    store = open_registry(db)
    key = sealing.key_of(acls.REGISTRY)
    try:
        asyncio.run(run_service(acls.REGISTRY, [topics.REGISTRY_IN], "renkei-registry",
                                lambda directory: RegistryService(store, key, directory).handle))
    finally:
        store.close()
