"""The one form of every `renkei` command's log lines: the long-running services' own; and the
files a run's processes log into, begun afresh each run."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from renkei.state import folder_made

FORMAT = "%(asctime)s %(levelname)s %(message)s"  # a service's line: its time, level, message
LIBRARIES = frozenset({"aiokafka", "psycopg"})  # whose lines a command's user is not shown: it
# says in one line what failed (a broker gone: aiokafka's "Unable connect to node …" and tracebacks
# before it; an audit store's batch redone after an id clash: psycopg's "error ignored terminating
# <psycopg.Pipeline …>: pipeline aborted")


def for_commands() -> None:
    """A command's warnings and errors on stderr in the services' form (Python's bare last
    resort gave the message alone), Renkei's own alone: not the LIBRARIES' lines, the command's
    own line says what failed; a service's own configuration (its level, its form) takes over
    once it makes one, as the last resort serves only where no logger has a handler: a service's
    log keeps the libraries' lines."""
    if logging.lastResort is not None:
        logging.lastResort.setFormatter(logging.Formatter(FORMAT))
        logging.lastResort.addFilter(own_line)


def own_line(record: logging.LogRecord) -> bool:
    """Whether a log line is Renkei's own, not one of the LIBRARIES'."""
    return record.name.partition(".")[0] not in LIBRARIES


def for_service(level: int | str = logging.WARNING, instance: str | None = None) -> None:
    """A long-running service's log lines, at `level` and above, on stderr in FORMAT, the
    `instance` of a service run several times (a platform instance) named after the time."""
    named = FORMAT if instance is None else FORMAT.replace(" ", f" [{instance}] ", 1)
    logging.basicConfig(level=level, format=named)


@contextmanager
def quieted(name: str) -> Iterator[None]:
    """The logger `name` saying CRITICAL alone while a command runs (a chaos run's aiokafka, its
    retries the point there), its level put back after it: a command run in the process of the
    tests hears the lines of those after it no less."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def begun(log: Path) -> None:
    """`log` begun afresh, empty and this user's alone (0600: its lines may name holders and
    requests; opened to append, it stays so), the one there kept as `<log>.1` (one generation:
    the one before it goes): a run's log, which grew run after run without bound when appended
    to."""
    if log.exists():
        log.replace(log.with_name(f"{log.name}.1"))
    gone_on(log)


def gone_on(log: Path) -> None:
    """`log` gone on with as it stands (a node started again within its run), made as `begun`
    makes one if it is missing: empty and this user's alone (0600), not with open()'s mode."""
    folder_made(log.parent)
    os.close(os.open(log, os.O_WRONLY | os.O_CREAT, 0o600))
