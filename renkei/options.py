"""What the commands' texts must be, checked as click parses them (a usage error if not)."""

from __future__ import annotations

import getpass
import math
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from broker.acls import OVERSIGHT, check_holder_id
from broker.credentials import check_name
from renkei.shown import short


class FiniteRange(click.FloatRange):
    """A FloatRange of finite numbers: NaN (which no bound refuses) and infinity are usage
    errors, not a number a command fails on later."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


PORT = click.IntRange(0, 65535)  # a TCP port to listen on (0: any free one)
POSITIVE = FiniteRange(min=0, min_open=True)  # a length of time: one of none ends at once
NON_NEGATIVE = FiniteRange(min=0)  # a length of time or a rate that may be none (said: 0 is)
LOGLEVEL = click.option("--loglevel", default="warning", show_default=True,
                        type=click.Choice(["debug", "info", "warning", "error", "critical"],
                                          case_sensitive=False),
                        help="the least level of the lines logged")


def port_option(default: int) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """The --port of a server on loopback: 0 is any free port, which the server names."""
    return click.option("--port", type=PORT, default=default, show_default=True,
                        help="loopback port to listen on (0: any free one, named once listening)")


class Limited(click.IntRange):
    """A whole number of at least `least` whose most is a limit of the data (the resident codes
    there are, the integers SQLite stores), a number no one would give: --help shows the least
    alone, and a number past the most is refused in words (`beyond`, said of it)."""

    def __init__(self, least: int, most: int, beyond: str) -> None:
        super().__init__(min=least)
        self.most, self.beyond = most, beyond

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number > self.most:
            self.fail(f"{number} is {self.beyond} ({self.most:,})", param, ctx)
        return number


def residents_option(least: int, default: int,
                     help: str) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """The --residents of a registry or a town: at least `least`, at most the resident codes
    there are (registry.resident_code.CODES), as each resident has one of their own."""
    from registry.resident_code import CODES  # only for a command that has the option

    residents = Limited(least, CODES, "more residents than there are resident codes, one for "
                                      "each resident")
    return click.option("--residents", type=residents, default=default, show_default=True,
                        help=help)


def seed_option(default: int, drawn: str) -> Callable[[click.decorators.FC],
                                                      click.decorators.FC]:
    """The --seed of what a command draws at random (`drawn`): the same seed, the same draw."""
    return click.option("--seed", type=int, default=default, show_default=True,
                        help=f"seed of {drawn}: the same seed draws the same again")


def result_option(default: Path) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """The --out of a benchmark or chaos run: the JSON file its result is written to."""
    return click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=default,
                        show_default=True, callback=_writable,
                        help="the JSON file the result is written to")


def _writable(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """A file whose folder is one this process may write in, or may make: refused now, not
    after a run of minutes whose result then goes nowhere."""
    made_in = next(p for p in value.absolute().parents if p.exists())
    if not made_in.is_dir():
        raise click.BadParameter(f"{made_in} is a file, not a folder")
    if not os.access(made_in, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{made_in} is not a folder this user may write in")
    return value


def listening(port: int) -> socket.socket:
    """A loopback socket listening on a --port's port (0: any free one: see getsockname)."""
    return socket.create_server(("127.0.0.1", port))


def stated(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A required text that must say something: blank is a usage error."""
    if not value.strip():
        raise click.BadParameter("must not be blank")
    return value


def stated_if_given(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An optional text that, given, must say something (stated)."""
    return None if value is None else stated(ctx, param, value)


def reason_said(reason: str | None) -> str:
    """A --reason as a command's last words say it (nothing for none)."""
    return "" if reason is None else f"; reason: {reason}"


class SaidDefault(click.Option):
    """An option whose default its --help says in words (show_default, a text), in the one
    bracket click gives its default, range and whether it is required: click would put the
    words in parentheses ('[default: (your login)]')."""

    def get_help_extra(self, ctx: click.Context) -> click.types.OptionHelpExtra:
        extra = super().get_help_extra(ctx)
        if isinstance(self.show_default, str):
            extra["default"] = self.show_default
        return extra


REASON_OPTION = click.option("--reason", default=None, callback=stated_if_given,
                             help="why, as the audit log says it with the operator")
OPERATOR_OPTION = click.option(
    "--operator", cls=SaidDefault, default=getpass.getuser, show_default="your login name",
    callback=stated,
    help="who does this, as the audit log names the operator")


def holder_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A holder's id as it is registered (a principal name), or the oversight body's (its
    officers' cards name it): anything else, another service's reserved name among them, is a
    usage error."""
    try:
        name = check_name(value)
        return name if name == OVERSIGHT else check_holder_id(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def web_origin(text: str) -> str:
    """`text` as a site's origin, scheme://host[:port] with no trailing slash, as the portal
    names itself in what it asks the reader and the registry to sign and check; BadParameter if
    it is no origin."""
    parts = urlsplit(text.strip().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname or any(
            (parts.path, parts.query, parts.fragment)):
        raise click.BadParameter(f"{short(text)!r} is not a web origin (e.g. http://127.0.0.1:8080)")
    return f"{parts.scheme}://{parts.netloc}"


def origin(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An origin option, if given (see web_origin)."""
    return None if value is None else web_origin(value)


def origins(ctx: click.Context, param: click.Parameter,
            value: tuple[str, ...]) -> tuple[str, ...]:
    """A repeatable origin option (see web_origin)."""
    return tuple(web_origin(text) for text in value)
