"""`renkei card crl`: each CA's revocation list published anew (the same serials, a fresh
thisUpdate and nextUpdate), once (for cron) or on a schedule until stopped, well before the list
verifiers hold goes stale (they refuse every card of a CA whose list has: stale-crl), as J-LIS
publishes JPKI's."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from datetime import timedelta

import click

from broker.topics import duration_ms
from cards import ca
from renkei.options import SaidDefault
from renkei.service_loop import stop_on_signals

VALID = timedelta(days=ca.CRL_DAYS)  # how long a published list is good for
EVERY = VALID / 4  # a schedule's interval (compose.yaml's): three more tries before it is stale
SECONDS = re.compile(r"\d+(\.\d+)?")


def interval(text: str) -> timedelta:
    """How long between publications: '6h', '90m', '500ms', or seconds ('30', '0.5'); more than
    none and less than a list is good for (ValueError)."""
    try:
        every = (timedelta(seconds=float(text)) if SECONDS.fullmatch(text.strip())
                 else timedelta(milliseconds=duration_ms(text)))
    except OverflowError:  # past timedelta's range: far too long too
        every = VALID
    if not timedelta(0) < every < VALID:
        raise ValueError(f"{text!r}: publish more often than every {_hours(VALID)} (how long "
                         f"a list is good for), and not every 0s")
    return every


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g}h"


class Interval(click.ParamType[timedelta]):
    name = "DURATION"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return interval(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def publish(authorities: Sequence[ca.Authority]) -> None:
    """Each CA's list published anew, said in a line each (its path and next update)."""
    for authority in authorities:
        published = authority.publish_crl()
        click.echo(f"{authority.name} CA: CRL published to {ca.crl_path(authority.name)}, "
                   f"good until {published.next_update_utc:%Y-%m-%dT%H:%M:%SZ}")


async def republishing(authorities: Sequence[ca.Authority], every: timedelta) -> None:
    """Publish now and `every` after, until SIGTERM or SIGINT (or the run that started this
    one has gone)."""
    stop = stop_on_signals()
    while not stop.is_set():
        publish(authorities)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every.total_seconds())


@click.command("crl", short_help="Publish each CA's revocation list anew: once or --every.")
@click.option("--ca", "name", type=click.Choice(list(ca.AUTHORITIES)), default=None,
              cls=SaidDefault, show_default="each CA's", help="this CA's alone")
@click.option("--every", type=Interval(), default=None, cls=SaidDefault,
              show_default="once, for cron",
              help=f"publish now and every DURATION after until stopped: less than the "
                   f"{_hours(VALID)} a list is good for, e.g. {_hours(EVERY)} (a quarter), 90m, "
                   f"or seconds")
def crl(name: str | None, every: timedelta | None) -> None:
    """Publish each CA's revocation list anew: the same revoked serials, good for another
    day from now; once, or with --every on a schedule until stopped."""
    try:
        authorities = [ca.Authority.load(n) for n in ([name] if name else ca.AUTHORITIES)]
    except ca.NoAuthority as exc:
        raise click.ClickException(str(exc)) from exc
    if every is None:
        publish(authorities)
    else:
        asyncio.run(republishing(authorities, every))
