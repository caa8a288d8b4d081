"""`renkei oversight …`: the oversight body's commands, as its own principal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import Any

import click

from audit import oversight
from audit.cli import actions, open_store, query, store_option
from audit.detector import RULES
from renkei.holder_logs import NOT_LISTED, SUSPENDED, NotAskable, Parties
from renkei.options import POSITIVE, stated
from schemas.messages import HolderLogAnswer

NOT_SEALED = "could not seal to the oversight body"  # as the console says it (unsent_not_sealed)
FORGED = "an answer in its name it did not sign: refused as forged (the platform relays them)"
FALSELY_REFUSED = ("the platform said it did not ask this holder, which the directory shows "
                   "active then: a false refusal, the holder awaited still")
UNSIGNED = ("unsigned: its directory entry has no signing key (register it again); the platform "
            "could have made these entries")
REFUSED = {  # as the console says it (unsent_refused_…), by why the platform did not ask
    SUSPENDED: "not asked: the platform holds this holder suspended since {since}",
    NOT_LISTED: "not asked: this holder is not in the platform's directory"}


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False,
                          default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))


@click.group("oversight", short_help="The oversight body (監視機関): logs, holders' logs, alerts.")
def oversight_cli() -> None:
    """The oversight body (監視機関): the platform's log, holders' logs, the detector's alerts."""


oversight_cli.add_command(query)
oversight_cli.add_command(actions)


@oversight_cli.command("holder-logs",
                       short_help="Ask holders over Kafka for their entries (⑦–⑫) of requests.")
@store_option
@click.option("--holder", "holders", multiple=True, required=True, help="a holder to ask")
@click.option("--request", "request_ids", multiple=True, required=True,
              help="a request whose holder-side entries are wanted")
@click.option("--basis", required=True, callback=stated,
              help="the oversight body's legal ground for asking")
@click.option("--within", type=POSITIVE, default=30.0, show_default=True,
              help="seconds to wait for the holders' answers")
def holder_logs(db: str | None, holders: tuple[str, ...], request_ids: tuple[str, ...],
                basis: str, within: float) -> None:
    """Ask holders over Kafka for their access-log entries (⑦–⑫) of given requests, each holder
    of those the platform's log names it in (as requester or provider), and of no other.

    Asks again for halves of the requests a holder found too many to answer in one message;
    exits 1 if a holder did not answer in time, could not seal its entries to the oversight
    body, was not asked by the platform (suspended or gone from the directory since the check
    that it is a holder), or a request's entries are too large to send, or if an answer came in
    a holder's name that it did not sign (refused as forged), or the platform said it did not
    ask a holder the directory shows active then (a false refusal). Entries of a holder whose
    directory entry has no signing key are shown, and said unsigned.
    """
    try:
        found = asyncio.run(oversight.holder_logs(holders, request_ids, partial(_parties, db),
                                                  basis, within))
    except NotAskable as exc:
        raise _bad(exc) from exc
    _echo_json(_shown(found))
    if (found.missing or found.not_sealed or found.refused or found.too_large or found.forged
            or found.falsely_refused):
        raise SystemExit(1)


def _bad(refused: NotAskable) -> click.BadParameter:
    """The refusal as a usage error naming the option that gave the argument at fault."""
    ctx = click.get_current_context()
    [option] = [p for p in ctx.command.params if p.name == refused.argument]
    return click.BadParameter(str(refused), ctx, option)


def _parties(db: str | None, request_ids: Sequence[str]) -> Parties:
    """The holders that took part in each of `request_ids`, as the platform's log tells them."""
    with open_store(db, signing=False) as store:
        return store.parties(request_ids)


def _shown(found: oversight.HolderLogs) -> dict[str, Any]:
    """What the holders answered, as JSON; a holder that sent no entries says why, in the
    oversight console's words."""
    return {"request_ids": found.request_ids, "missing": found.missing,
            "not_sealed": {holder: NOT_SEALED for holder in found.not_sealed},
            "refused": {holder: _refused(answer) for holder, answer in found.refused.items()},
            "too_large": found.too_large,
            "forged": {holder: FORGED for holder in found.forged},
            "falsely_refused": {holder: FALSELY_REFUSED for holder in found.falsely_refused},
            "unsigned": {holder: UNSIGNED for holder in found.unsigned},
            "answers": {holder: [asdict(e) for e in entries]
                        for holder, entries in found.answers.items()}}


def _refused(answer: HolderLogAnswer) -> str:
    """Why the platform asked a holder for nothing, in the console's words (its time in UTC)."""
    since = answer.inactive_since.isoformat() if answer.inactive_since else "—"
    return REFUSED[str(answer.refused)].format(since=since)


@oversight_cli.command()
@click.option("--rule", type=click.Choice(RULES),
              help="alerts of this rule only")
@click.option("--requester", help="alerts about this requester only")
def alerts(rule: str | None, requester: str | None) -> None:
    """The live detector's alerts, oldest first, as JSON."""
    found = [a for a in asyncio.run(oversight.alerts())
             if (rule is None or a.rule == rule)
             and (requester is None or a.requester == requester)]
    _echo_json([asdict(a) for a in found])
