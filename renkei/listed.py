"""A list a command prints: its lines, or one line saying there are none (not silence, which an
operator cannot tell from a command that did nothing)."""

from __future__ import annotations

from collections.abc import Iterable

import click


def echo_listed(lines: Iterable[str], none: str) -> None:
    """Each of `lines`, or `none` when there is none."""
    said = False
    for line in lines:
        click.echo(line)
        said = True
    if not said:
        click.echo(none)
