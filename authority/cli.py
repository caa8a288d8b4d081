"""`renkei authority …`: the numbering authority, its own store and process."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from audit.retention import RETENTION_YEARS, retention_cutoff
from authority import store as authority_store
from authority.check_digit import is_valid, keyed
from authority.service import (
    NumberChange,
    NumberingAuthority,
    UnknownResident,
    forgotten_told,
    withdrawn_told,
)
from registry import store as registry_store
from registry.cli import open_registry
from renkei import personal_input, sqlite
from renkei.options import SaidDefault, stated
from renkei.personal_input import Field, OnStdin

NUMBER = Field("number", "personal number")
AT_DESK = "desk:"  # a change-number request id's prefix: never one of the portal's ids


def db_option(help: str = "the authority's store"
              ) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """--db, the authority's store (its default said)."""
    return click.option("--db", type=click.Path(path_type=Path), default=None, cls=SaidDefault,
                        show_default="<state>/authority/authority.db", help=help)


def registry_option(help: str = "the registry"
                    ) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """--registry, the registry the authority reads (its default said)."""
    return click.option("--registry", type=click.Path(path_type=Path), default=None,
                        cls=SaidDefault, show_default="<state>/registry/registry.db", help=help)


DB_OPTION, REGISTRY_OPTION = db_option(), registry_option()


@click.group("authority", short_help="The numbering authority (付番機関): personal numbers.")
def authority_cli() -> None:
    """The numbering authority (付番機関): personal numbers and their code-conversion table."""


def numbered(db: Path | None) -> Path:
    """The path of the authority's store, one numbered already: a one-line error if there is
    none (an empty one made would answer that nobody has a number), nor in an empty file (a path
    mistyped to one, which SQLite would make into an empty store)."""
    path = db or authority_store.default_path(made=False)
    if not path.is_file() or not path.stat().st_size:
        raise click.ClickException(f"no authority store at {path}: run `renkei authority "
                                   "assign-all` (or give its --db)")
    return path


def opened(path: Path) -> authority_store.AuthorityStore:
    """The authority's store at `path`; a one-line error if the file there is no SQLite store."""
    try:
        return authority_store.AuthorityStore(path)
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"cannot open the authority store at {path}: {exc}") from exc


@contextmanager
def _authority(db: Path | None, existing: bool = False) -> Iterator[NumberingAuthority]:
    """The authority over its store; `existing`: one numbered already, none made (`numbered`). A
    store another process holds past SQLite's wait is said in one line."""
    path = numbered(db) if existing else db or authority_store.default_path()
    store = opened(path)
    try:
        yield NumberingAuthority(store)
    except sqlite3.OperationalError as exc:
        if not sqlite.busy(exc):
            raise
        raise click.ClickException(f"the authority store at {path} is held by another process "
                                   "(an `assign-all` under way?): try again once it is done"
                                   ) from exc
    finally:
        store.close()


@contextmanager
def _registry(path: Path | None) -> Iterator[registry_store.RegistryStore]:
    """The registry, read-only: the authority follows its code changes and writes none."""
    registry = open_registry(path, read_only=True)
    try:
        yield registry
    finally:
        registry.close()


@contextmanager
def _following(db: Path | None, registry: Path | None) -> Iterator[NumberingAuthority]:
    """The authority over its numbered store, the registry's code changes followed first (as
    `assign-all` follows them before numbering): a resident's new code has their number."""
    with _authority(db, existing=True) as authority, _registry(registry) as residents:
        authority.follow_registry(residents)
        yield authority


@authority_cli.command("assign-all", short_help="Number every resident who has none.")
@REGISTRY_OPTION
@DB_OPTION
def assign_all(registry: Path | None, db: Path | None) -> None:
    """Follow the registry's code changes, then number every resident who has none."""
    started = time.perf_counter()
    with _registry(registry) as residents, _authority(db) as authority:
        followed, given = authority.assign_registry(residents)
    seconds = time.perf_counter() - started
    click.echo(f"{followed} resident-code change(s) followed{_withdrawn(authority)}")
    click.echo(f"{given:,} personal numbers assigned in {seconds:.1f}s "
               f"({authority.collisions} draws hit an issued number and were drawn again)")


@authority_cli.command(short_help="Follow the registry's resident-code changes.")
@REGISTRY_OPTION
@DB_OPTION
def follow(registry: Path | None, db: Path | None) -> None:
    """Follow the registry's resident-code changes: numbers stay with their residents."""
    with _registry(registry) as residents, _authority(db) as authority:
        followed = authority.follow_registry(residents)
    click.echo(f"{followed} resident-code change(s) followed{_withdrawn(authority)}")


def _withdrawn(authority: NumberingAuthority) -> str:
    """What following withdrew: numbers once issued to a changed code (see `follow`)."""
    return f"; {withdrawn_told(authority.withdrawn)}" if authority.withdrawn else ""


@authority_cli.command("change-number", cls=OnStdin,
                       short_help="A resident's new personal number, asked at the authority.")
@click.option("--reason", required=True, callback=stated, help="the resident's stated reason")
@click.option("--request-id", required=True, callback=stated,
              help="the request's own id (its form's number): run again with it, as after a "
                   "timeout, it is told the number it was given and changes nothing more")
@REGISTRY_OPTION
@DB_OPTION
def change_number(reason: str, request_id: str, registry: Path | None, db: Path | None) -> None:
    """A resident's request for a new personal number (the old one is retired for good), at the
    authority itself: it is in the authority's history, not the resident's access log, which
    only My Portal can write to (it alone turns codes into ID codes); at a municipal counter,
    staff use the portal's counter, which logs it. The registry's code changes are followed
    first. Its --request-id is the operator's, not derived: a retry and a second request with
    the same code and reason (a card lost again) look alike to anything derived from them.

    The resident code is read from stdin (the code, or {"resident_code": "…"}), or prompted
    for at a terminal: never an argument, which `ps` and the shell's history show."""
    resident_code = personal_input.read_resident_code()
    with _following(db, registry) as authority:
        try:
            change = authority.number_change(resident_code, reason, f"{AT_DESK}{request_id}")
        except UnknownResident as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(_change_told(change, request_id))


def _change_told(change: NumberChange, request_id: str) -> str:
    """What `change-number` says of a change: done now, or done already by the request run
    again (when, if the store knows), nothing changed."""
    if not change.again:
        return f"new personal number {change.number}; the old one is retired"
    when = "" if change.given_at is None else \
        f" on {change.given_at.isoformat(timespec='seconds')}"
    return (f"request {request_id} was done already{when}: personal number {change.number}; "
            "nothing changed")


@authority_cli.command("number-of", cls=OnStdin,
                       short_help="Notify a resident of their personal number.")
@REGISTRY_OPTION
@DB_OPTION
def number_of(registry: Path | None, db: Path | None) -> None:
    """Notify a resident of their personal number (the registry's code changes followed first).

    The resident code is read from stdin (the code, or {"resident_code": "…"}), or prompted
    for at a terminal: never an argument, which `ps` and the shell's history show."""
    resident_code = personal_input.read_resident_code()
    with _following(db, registry) as authority:
        number = authority.number_of(resident_code)
    if number is None:
        raise click.ClickException("no personal number for that resident code")
    click.echo(number)


@authority_cli.command(cls=OnStdin,
                       short_help="Personal number → resident code, logged with who and why.")
@click.option("--holder", required=True, callback=stated,
              help="the holder asking (it lawfully holds the number)")
@click.option("--purpose", required=True, callback=stated, help="why it asks")
@REGISTRY_OPTION
@DB_OPTION
def lookup(holder: str, purpose: str, registry: Path | None, db: Path | None) -> None:
    """Personal number → the resident code its resident has now, logged with who asked and why
    (the number as keyed or as the card prints it: full-width digits, groups of four; the
    registry's code changes followed first, as `serve` follows them).

    The personal number is read from stdin (the number, or {"number": "…"}), or prompted for
    at a terminal: never an argument, which `ps` and the shell's history show."""
    number = keyed(personal_input.read_one(NUMBER))
    with _following(db, registry) as authority:
        resident_code = authority.lookup(number, holder, purpose)
    if resident_code is None:  # a typing slip is told apart from a number retired or unknown
        raise click.ClickException(("no current personal number like that" if is_valid(number)
                                    else "not a personal number (12 digits, the last its check "
                                    "digit)") + " (the look-up is logged)")
    click.echo(resident_code)


@authority_cli.command(short_help="Forget look-ups and code changes older than the retention.",
                       help=f"Forget the look-ups logged, and the code changes followed, more "
                       f"than {RETENTION_YEARS} years ago (the access log's retention).")
@DB_OPTION
def purge(db: Path | None) -> None:
    """Forget the look-ups logged and the code changes followed past the access log's
    retention."""
    cutoff = retention_cutoff(datetime.now(UTC))
    with _authority(db, existing=True) as authority:
        click.echo(forgotten_told(authority.forget_before(cutoff), cutoff))


@authority_cli.command()
@DB_OPTION
def status(db: Path | None) -> None:
    """Numbers issued, current and retired; look-ups logged."""
    with _authority(db, existing=True) as authority:
        counts = authority.counts()
    click.echo("  ".join(f"{name} {count:,}" for name, count in counts.items()))
