"""`renkei registry …`: generate the simulated resident registry and look residents up."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import date
from pathlib import Path

import click

from authority.check_digit import keyed
from registry import store as registry_store
from registry.normalize import parse_date, parse_sex
from registry.residents import ChangeKind, FourAttributes, Resident
from renkei import personal_input
from renkei.listed import echo_listed
from renkei.options import Limited, SaidDefault, residents_option, seed_option
from renkei.personal_input import RESIDENT_CODE, Field, OnStdin
from renkei.sqlite import INTEGERS

DB_OPTION = click.option("--db", type=click.Path(path_type=Path, dir_okay=False), default=None,
                         cls=SaidDefault, show_default="<state>/registry/registry.db",
                         help="the registry's SQLite file")
FOUR = (Field("name", "name"), Field("address", "address"),
        Field("dob", "date of birth (1975-01-02, 昭和50年1月2日, …)"),
        Field("sex", "sex (1/2, 男/女, M/F)"))


@click.group("registry")
def registry_cli() -> None:
    """The resident registry simulator (住基ネット)."""


@registry_cli.command(short_help="Generate a registry of synthetic residents from a seed.")
@residents_option(1, 10_000, help="synthetic residents to generate")
@seed_option(1, "the synthetic residents")
@DB_OPTION
@click.option("--replace", is_flag=True, help="replace an existing registry at that path")
def generate(residents: int, seed: int, db: Path | None, replace: bool) -> None:
    """Generate a registry of synthetic residents, deterministic from the seed."""
    path = db or registry_store.default_path()
    started = time.perf_counter()
    try:
        tally = registry_store.build(path, residents, seed, replace=replace)
    except registry_store.RegistryExists as exc:
        raise click.ClickException(str(exc)) from exc
    seconds = time.perf_counter() - started
    store = registry_store.RegistryStore.open(path)
    ambiguous = store.ambiguous_keys()
    store.close()
    click.echo(f"{residents:,} residents (seed {seed}) into {path} in {seconds:.1f}s "
               f"({residents / seconds:,.0f} residents/s)")
    for case, count in tally.as_dict().items():
        click.echo(f"  {case.replace('_', ' '):<24}{count:>10,}")
    click.echo(f"  {'ambiguous 4-attr keys':<24}{ambiguous:>10,}  (a look-up returns several)")


@registry_cli.command(cls=OnStdin,
                      short_help="Look up by resident code or all four attributes (never fewer).")
@DB_OPTION
def lookup(db: Path | None) -> None:
    """Look up by resident code, or by all four attributes (never fewer).

    The resident code (as keyed: full-width digits, spaces), or the name, address, date of birth
    (1975-01-02, 昭和50年1月2日, …) and sex (1/2, 男/女, M/F), are read from stdin, one a line or
    as one JSON object ({"resident_code": "…"} or {"name": "…", "address": "…", "dob": "…",
    "sex": "…"}), or prompted for at a terminal: never arguments, which `ps` and the shell's
    history show."""
    asked = personal_input.read((RESIDENT_CODE,), FOUR)
    code = (None if RESIDENT_CODE.key not in asked
            else personal_input.resident_code(asked[RESIDENT_CODE.key]))
    store = open_registry(db)
    try:
        if code is not None:
            found = store.by_code(code)
            residents = [] if found is None else [found]
        else:
            residents = store.find(FourAttributes(asked["name"], asked["address"],
                                                  parse_date(asked["dob"]),
                                                  parse_sex(asked["sex"])))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    finally:
        store.close()
    click.echo(f"{len(residents)} resident(s)"
               + (": several match, the registry never picks one" if len(residents) > 1 else ""))
    for resident in residents:
        click.echo(_line(resident))


def _stored(least: int) -> Limited:
    """A whole number of at least `least` that the registry's SQLite can store."""
    return Limited(least, INTEGERS[-1], "past the integers SQLite stores")


@registry_cli.command(short_help="Change events (moves, name changes, new codes), in order.")
@click.option("--after", type=_stored(0), default=0, show_default=True,
              help="sequence number")
@click.option("--kind", type=click.Choice([k.value for k in ChangeKind]), default=None,
              cls=SaidDefault, show_default="every kind", help="events of this kind alone")
@click.option("--limit", type=_stored(1), default=20, show_default=True,
              help="events listed at most")
@DB_OPTION
def events(after: int, kind: str | None, limit: int, db: Path | None) -> None:
    """Change events (moves, name changes, changed resident codes), in order."""
    store = open_registry(db)
    try:
        found = store.events(after, ChangeKind(kind) if kind else None, limit)
    finally:
        store.close()
    echo_listed((f"{event.seq:>8} {event.on} {event.kind:<13} {event.resident_code} "
                 f"{' '.join(event.before)} → {' '.join(event.after)}" for event in found),
                f"no {kind or 'change'} events after {after}")


@registry_cli.command(cls=OnStdin,
                      short_help="Record (or withdraw) a resident's consent to a private holder.")
@click.argument("holder")
@click.option("--withdraw", is_flag=True, help="withdraw the consent instead")
@DB_OPTION
def consent(holder: str, withdraw: bool, db: Path | None) -> None:
    """Record a resident's consent to a private holder binding them (or withdraw it: from any
    holder, as the holder directory now stands or not).

    The resident code is read from stdin (the code, or {"resident_code": "…"}), or prompted
    for at a terminal: never an argument, which `ps` and the shell's history show."""
    if not withdraw:
        _private_holder(holder)
    resident_code = keyed(personal_input.read_one(RESIDENT_CODE))
    store = open_registry(db)
    try:
        if withdraw:
            told = ("withdrawn" if store.withdraw_consent(resident_code, holder)
                    else "not recorded for that resident: nothing withdrawn")
        else:
            store.give_consent(resident_code, holder, date.today())
            told = "recorded"
    except KeyError as exc:
        raise click.ClickException("no resident has that code") from exc
    finally:
        store.close()
    click.echo(f"consent to {holder} {told}")


def _private_holder(holder: str) -> None:
    """NotAPrivateHolder unless the holder directory has `holder` as a private holder."""
    from processors import directory  # here: the authority's commands load no platform code

    directory.private_holder(asyncio.run(directory.current()), holder)


def open_registry(db: Path | None, read_only: bool = False) -> registry_store.RegistryStore:
    """The registry store (`read_only`: nothing can be written through it), or a one-line
    error if none was generated there, or the file there is no SQLite store."""
    path = db or registry_store.default_path(made=False)
    try:
        return registry_store.RegistryStore.open(path, read_only)
    except registry_store.NoRegistry as exc:
        raise click.ClickException(str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"cannot open the registry at {path}: {exc}") from exc


def _line(resident: Resident) -> str:
    return (f"{resident.resident_code}  {resident.name} ({resident.kana})  "
            f"{resident.date_of_birth} {resident.sex.name}  {resident.address}")
