"""What the commands' texts must be, checked as click parses them (a usage error if not)."""

from __future__ import annotations

import click


def stated(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A required text that must say something: blank is a usage error."""
    if not value.strip():
        raise click.BadParameter("must not be blank")
    return value
