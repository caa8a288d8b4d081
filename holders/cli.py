"""`renkei holder …`: register a holder, run its communication server, and keep its own store:
staff, terminals, records and the data it provides."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from unicodedata import category

import click

from audit.retention import RETENTION_YEARS, retention_cutoff
from broker import provision, topics
from holders import imports
from holders.imports import Refused
from holders.store import Forgotten, HolderStore, default_path, store_made
from processors import directory
from processors.keys_cli import unit_name
from renkei import personal_input, sealing
from renkei.listed import echo_listed
from renkei.options import (
    OPERATOR_OPTION,
    REASON_OPTION,
    SaidDefault,
    port_option,
    reason_said,
    stated,
)
from renkei.personal_input import Field, OnStdin

T = TypeVar("T")
STAFF_NAME = Field("name", "the staff member's name")


@click.group("holder", short_help="Holders: registration, their server, records and staff.")
def holder_cli() -> None:
    """Holders: registration, the communication server, and each one's own store."""


@holder_cli.command(short_help="Register a holder: principal, topics, ACLs, directory entry.")
@click.argument("holder")
@click.option("--name", required=True, callback=stated, help="the holder's name, e.g. 桜町役場")
@click.option("--role", required=True, callback=stated,
              help="its role in the legal pattern list (not service: the platform's own)")
@click.option("--unit", default=None, callback=unit_name, cls=SaidDefault,
              show_default="as registered before, else its own", help="a shared link-code unit")
@click.option("--private/--public", default=None, cls=SaidDefault,
              show_default="as registered before, else public",
              help="a private holder: binding needs consent")
@click.option("--move-unit", is_flag=True,
              help="move a registered holder to another link-code unit (its server then "
                   "unbinds every record, each investigated, to be bound again)")
@click.option("--share-unit", is_flag=True,
              help="join the unit that is another holder's own (named as it): it is given "
                   "every link code of that holder's records")
@REASON_OPTION
@OPERATOR_OPTION
def register(holder: str, name: str, role: str, unit: str | None, private: bool | None,
             move_unit: bool, share_unit: bool, reason: str | None, operator: str) -> None:
    """Register a holder: principal, topics, ACLs, sealing key and directory entry; the audit
    log says who did it (and why, if told). Registered again, it keeps its link-code unit and
    private flag unless given."""
    try:
        provision.holder_id(holder)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    admin = provision.reached_admin()
    before, entry, roles = asyncio.run(directory.registration(
        holder, name, role, unit, private, move_unit, share_unit,
        lambda: provision.add_holder(admin, holder, provision.Report()), operator, reason))
    click.echo(f"registered {holder} ({name}): role {role}, link-code unit {entry.link_unit} "
               f"at key epoch {entry.key_epoch}"
               + (", private (consent needed)" if entry.private else "") + reason_said(reason))
    if role not in roles:
        click.echo(f"warning: no legal pattern names role {role!r}: {holder} can neither "
                   "request nor provide until one does (roles named: "
                   f"{', '.join(sorted(roles)) or 'none'})", err=True)
    if before is not None:
        changed = directory.changes(before, entry)
        click.echo("changed from its previous entry: " + ", ".join(changed) if changed
                   else "unchanged from its previous entry")


@holder_cli.command(short_help="Suspend a holder: its requests and those to it refused.")
@click.argument("holder")
@click.option("--reason", required=True, callback=stated,
              help="why its access is withdrawn (said with the suspension, e.g. a breach)")
@OPERATOR_OPTION
def suspend(holder: str, reason: str, operator: str) -> None:
    """Suspend a holder: its requests and requests to it are refused, answers to or from it
    relayed to no one, until it is resumed; the audit log says who did it and why."""
    entry = asyncio.run(directory.suspend(holder, operator, reason))
    since = (f"at {entry.inactive_since.isoformat()} (broker time)" if entry.inactive_since
             else "(the directory topic is not stamped by the broker: answers are judged as "
                  "to an inactive holder whenever they came; run `renkei broker provision`)")
    click.echo(f"suspended {holder} ({entry.name}) {since}: its requests and requests to it "
               f"are refused until `renkei holder resume {holder}`" + reason_said(reason))


@holder_cli.command(short_help="Resume a suspended holder; the audit log says who did it.")
@click.argument("holder")
@OPERATOR_OPTION
def resume(holder: str, operator: str) -> None:
    """Resume a suspended holder: it requests and provides again; the audit log says who did
    it."""
    entry = asyncio.run(directory.resume(holder, operator))
    click.echo(f"resumed {holder} ({entry.name}): it requests and provides again")


def _old_connections(reauth_ms: int) -> str:
    """How long connections logged in with a renewed password may go on."""
    if reauth_ms <= 0:
        return ("connections it has open stay open until they drop: the brokers have no "
                f"{provision.REAUTH}; restart them to have it")
    return (f"connections it has open are closed within {_duration(reauth_ms)} "
            f"({provision.REAUTH})")


def _duration(ms: int) -> str:
    minutes, seconds = divmod(round(ms / 1000), 60)
    if seconds or not minutes:
        return f"{minutes * 60 + seconds} s"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@holder_cli.command(short_help="Renew a holder's broker password, sealing and signing keys.")
@click.argument("holder")
@REASON_OPTION
@OPERATOR_OPTION
def renew(holder: str, reason: str | None, operator: str) -> None:
    """Renew a holder's broker password and its sealing and signing keys (after a breach, say):
    the old password logs in no more (connections it has open are closed within the brokers'
    connections.max.reauth.ms, 10 minutes), the new keys are published in the holder directory, and
    the audit log says who did it and why. Its old sealing key is kept for as long as its inbox
    keeps an answer sealed to it; answers it signed with its old signing key before the renewal
    are still read by their requester if the platform relayed them within a grace
    (renkei.windows.SIGNING_GRACE), however late it reads them; relayed later, they are
    UNREADABLE there (asked again, they are answered). Its
    communication server, if running, takes the new keys and password once it reads them in the
    directory, and goes on serving with them, saying so. Nothing secret is printed."""
    _registered(holder)
    admin = provision.reached_admin()
    entry = asyncio.run(directory.current()).get(holder)
    if entry is None or entry.role == directory.SERVICE:
        raise click.ClickException(f"no holder {holder!r} is in the holder directory: run "
                                   f"`renkei holder register {holder} …` first")
    kept_until = datetime.now(UTC) + timedelta(milliseconds=topics.inbox_kept_ms())
    sealing.renew_keys(holder, kept_until)
    provision.renew_password(admin, holder)
    renewed = asyncio.run(directory.renewal(holder, operator, reason))
    click.echo(f"renewed {holder} ({renewed.name}): a new broker password (the old one logs in "
               f"no more; {_old_connections(provision.reauth_ms(admin))}), new sealing and "
               f"signing keys in the holder directory; its old sealing key is kept until "
               f"{kept_until.isoformat(timespec='seconds')} for answers sealed to it before"
               + reason_said(reason))
    click.echo("its communication server, if running, takes them once it reads them in the "
               "directory, and goes on serving", err=True)


@holder_cli.command(short_help="Run a holder's communication server until stopped.")
@click.argument("holder")
@port_option(0)
def run(holder: str, port: int) -> None:
    """Run a holder's communication server until stopped; its URL and bearer token go to
    server.json in the holder's private state folder."""
    from holders.server import main

    main(holder, port)


def _registered(holder: str) -> None:
    """A one-line error for an id not registered here (checked before any path is made of
    it)."""
    try:
        provision.registered_holder(holder)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _store(holder: str) -> closing[HolderStore]:
    """The holder's own store, made if missing, closed on leaving; a one-line error for an id
    not registered here."""
    _registered(holder)
    return closing(_opened(holder))


def _read(holder: str, read: Callable[[HolderStore], list[T]]) -> list[T]:
    """What `read` finds in the holder's store; none if it has no store yet (a command that
    only reads makes no folder or store)."""
    _registered(holder)
    if not store_made(holder):
        return []
    with closing(_opened(holder)) as store:
        return read(store)


def _opened(holder: str) -> HolderStore:
    """The holder's own store; a one-line error if the file there is no SQLite store."""
    try:
        return HolderStore.of(holder)
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"cannot open the store of {holder} at "
                                   f"{default_path(holder)}: {exc}") from exc


@holder_cli.command(short_help="Forget requests and log entries older than the retention.",
                    help=f"Forget the requests answered more than {RETENTION_YEARS} years ago "
                    "(the access log's retention), with their idempotency keys, the access-log "
                    "entries as old and the investigations closed as long ago (the communication "
                    "server does so as it runs).")
@click.argument("holder")
def purge(holder: str) -> None:
    """Forget what the holder's store keeps past the access log's retention."""
    cutoff = retention_cutoff(datetime.now(UTC))
    with _store(holder) as store:
        forgotten = Forgotten.of(store.forget_before(cutoff))
    click.echo(f"{holder}: {forgotten.told(cutoff)}")


def _id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An id as the communication server reads its caller's (holders.imports.trimmed: " op " is
    op); blank is a usage error, and so is one the server would never take from a caller (over
    FIELD_CHARS) or that cannot be said back as it is (a control or format character: a
    newline, a bidi override)."""
    text = stated(ctx, param, imports.trimmed(value))
    if len(text) > imports.FIELD_CHARS or any(category(c).startswith("C") for c in text):
        raise click.BadParameter(f"an id is text of up to {imports.FIELD_CHARS} characters, "
                                 "no control or format character among them")
    return text


def _ids(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """A repeated option's ids, each as _id reads it."""
    return tuple(_id(ctx, param, value) for value in values)


@holder_cli.group(short_help="A holder's staff: only they may act, on their terminals.")
def staff() -> None:
    """A holder's staff: only they may act, each on their terminals (paper §5(3))."""


@staff.command("add", cls=OnStdin,
               short_help="Register a staff member (again: name and terminals replaced).")
@click.argument("holder")
@click.argument("staff_id", callback=_id)
@click.option("--terminal", "terminals", multiple=True, callback=_ids,
              help="a registered terminal they may use (repeat; none: any registered one)")
def add_staff(holder: str, staff_id: str, terminals: tuple[str, ...]) -> None:
    """Register a staff member (again: their name and terminals replaced).

    The staff member's name is read from stdin (the name, or {"name": "…"}), or prompted for
    at a terminal: never an argument, which `ps` and the shell's history show."""
    with _store(holder) as store:
        unknown = sorted(set(terminals) - set(store.terminals()))
        if unknown:
            raise click.ClickException(f"not registered terminals of {holder}: "
                                       f"{', '.join(unknown)} (renkei holder terminal add)")
        name = personal_input.read_one(STAFF_NAME)
        with store.transaction():
            store.add_staff(staff_id, name, terminals)
    click.echo(f"{staff_id} may act for {holder} on "
               + (", ".join(sorted(set(terminals))) if terminals else "any registered terminal"))


@staff.command("remove")
@click.argument("holder")
@click.argument("staff_id", callback=_id)
def remove_staff(holder: str, staff_id: str) -> None:
    """Unregister a staff member: they may no longer act."""
    with _store(holder) as store, store.transaction():
        _said_removed(store.remove_staff(staff_id), staff_id, f"{holder}'s staff")


@staff.command("list")
@click.argument("holder")
def list_staff(holder: str) -> None:
    """A holder's staff and the terminals each may use."""
    echo_listed((f"{staff_id}  {name}  "
                 + (", ".join(terminals) if terminals else "any registered terminal")
                 for staff_id, name, terminals in _read(holder, HolderStore.staff)),
                f"no staff registered for {holder}")


@holder_cli.group(short_help="A holder's terminals: the only ones its staff may act on.")
def terminal() -> None:
    """A holder's registered terminals: the only ones its staff may act on."""


@terminal.command("add")
@click.argument("holder")
@click.argument("terminal_id", callback=_id)
def add_terminal(holder: str, terminal_id: str) -> None:
    """Register a terminal."""
    with _store(holder) as store:
        store.add_terminal(terminal_id)
    click.echo(f"{terminal_id} registered for {holder}")


@terminal.command("remove", short_help="Unregister a terminal (staff tied to it keep the tie).")
@click.argument("holder")
@click.argument("terminal_id", callback=_id)
def remove_terminal(holder: str, terminal_id: str) -> None:
    """Unregister a terminal (staff tied to it keep the tie: those tied to it alone may then act
    on none)."""
    with _store(holder) as store:
        _said_removed(store.remove_terminal(terminal_id), terminal_id, f"{holder}'s terminals")


def _said_removed(removed: bool, what: str, where: str) -> None:
    click.echo(f"{what} removed from {where}" if removed else f"{what} was not among {where}")


@terminal.command("list")
@click.argument("holder")
def list_terminals(holder: str) -> None:
    """A holder's registered terminals."""
    echo_listed(_read(holder, HolderStore.terminals), f"no terminals registered for {holder}")


def _report(what: str, holder: str, counts: Counter[str], refused: list[Refused]) -> None:
    """What an import did; each row refused by line and field (stderr, exit code 1)."""
    click.echo(f"{what} of {holder}: {counts['new']} new, {counts['changed']} changed, "
               f"{counts['unchanged']} unchanged, {len(refused)} rows refused")
    for row in sorted(refused, key=lambda r: r.line):
        click.echo(f"  {row}", err=True)
    if refused:
        raise SystemExit(1)


def _rows(read: Callable[[Path], tuple[list[tuple[int, T]], list[Refused]]],
          file: Path) -> tuple[list[tuple[int, T]], list[Refused]]:
    """A CSV file's rows read and refused; a file that cannot be read at all in one line."""
    try:
        return read(file)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


FILE = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@holder_cli.group()
def records() -> None:
    """A holder's own records of people (what it binds to link codes)."""


@records.command("import", short_help="Add or update records from a CSV file, refusing bad rows.")
@click.argument("holder")
@FILE
def import_records(holder: str, file: Path) -> None:
    """Add or update records from a CSV file with a header: own_number (full-width characters
    read as ASCII: `Ｈ－１` is H-1), name, address, date_of_birth (the year first: 1975-01-02,
    昭和50年1月2日, …), sex (1/2, 男/女, M/F) and optionally personal_number (12 digits, spaces
    or hyphens between groups dropped; left out: each record keeps its number). Rows that
    cannot be read are refused by line and field; the rest are imported (exit code 1 if any was
    refused)."""
    with _store(holder) as store:
        read, refused = _rows(imports.read_records, file)
        counts, rebound = imports.store_records(store, read)
    for line, own_number in rebound:
        click.echo(f"  line {line}: record {own_number} is bound to a link code and its four "
                   "attributes or personal number changed: check it is still the person it was "
                   "bound for", err=True)
    _report("records", holder, counts, refused)


@records.command("remove", short_help="Remove records named in a CSV file, with their data.")
@click.argument("holder")
@FILE
def remove_records(holder: str, file: Path) -> None:
    """Remove records named in a CSV file with a header: own_number (a records file, its other
    columns not read), e.g. a patient who left, a duplicate, a record imported under the wrong
    own number. Each goes with its data and its binding (a query of its link code is answered
    NOT_FOUND from then on) and its open investigations are closed; its requests stay in the
    access log (kept the retention). Rows that cannot be read, name no record, or name one with
    a request in flight (not yet answered or timed out) are refused by line; the rest are
    removed, all or none (exit code 1 if any was refused)."""
    with _store(holder) as store:
        read, refused = _rows(imports.read_record_removals, file)
        removed, kept = imports.remove_records(store, read)
    _removed("records", holder, removed, refused + kept)


@holder_cli.group(short_help="The data a holder provides on its records.")
def data() -> None:
    """The data a holder provides on its records (what its answers to the platform hold)."""


@data.command("import", short_help="Add or update data from a CSV file, refusing bad rows.")
@click.argument("holder")
@FILE
def import_data(holder: str, file: Path) -> None:
    """Add or update data from a CSV file with a header: own_number (of a record imported),
    data_type, fields (a JSON object of strings). Rows that cannot be read are refused by line
    and field; the rest are imported (exit code 1 if any was refused)."""
    with _store(holder) as store:
        read, refused = _rows(imports.read_data, file)
        counts, unknown = imports.store_data(store, read)
    _report("data", holder, counts, refused + unknown)


@data.command("remove", short_help="Remove data named in a CSV file: it is provided no more.")
@click.argument("holder")
@FILE
def remove_data(holder: str, file: Path) -> None:
    """Remove data named in a CSV file with a header: own_number, data_type (a data file, its
    fields column not read), e.g. rows imported onto the wrong record: the holder provides them
    no more. Rows that cannot be read or name no data the holder has are refused by line and
    field; the rest are removed, all or none (exit code 1 if any was refused)."""
    with _store(holder) as store:
        read, refused = _rows(imports.read_removals, file)
        removed, absent = imports.remove_data(store, read)
    _removed("data", holder, removed, refused + absent)


def _removed(what: str, holder: str, removed: int, refused: list[Refused]) -> None:
    """What a removal did; each row refused by line and field (stderr, exit code 1)."""
    click.echo(f"{what} of {holder}: {removed} removed, {len(refused)} rows refused")
    for row in sorted(refused, key=lambda r: r.line):
        click.echo(f"  {row}", err=True)
    if refused:
        raise SystemExit(1)
