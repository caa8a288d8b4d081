"""What the commands' texts must be, checked as click parses them (a usage error if not)."""

from __future__ import annotations

import click

from broker.credentials import check_name

SQLITE_INT = 2**63 - 1  # the largest integer SQLite stores
POSITIVE = click.FloatRange(min=0, min_open=True)  # a length of time: one of none ends at once
LOGLEVEL = click.option("--loglevel", default="warning", show_default=True,
                        type=click.Choice(["debug", "info", "warning", "error", "critical"],
                                          case_sensitive=False))


def stated(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A required text that must say something: blank is a usage error."""
    if not value.strip():
        raise click.BadParameter("must not be blank")
    return value


def holder_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A holder's id as it is registered (a principal name): anything else is a usage error."""
    try:
        return check_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
