"""`renkei card …`: the test CAs, issuing and revoking cards, and the simulated card reader."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from broker.acls import OVERSIGHT
from cards import ca, issue, reader
from cards.card import Card, cards, folder
from renkei import logs, personal_input, quiet_http
from renkei.listed import echo_listed
from renkei.options import SaidDefault, holder_id, listening, origins, port_option, stated
from renkei.personal_input import OnStdin

F = TypeVar("F", bound=Callable[..., Any])


class Pin(click.Option):
    """The card's PIN, prompted for at a terminal only: stdin that is not one (the resident code
    of `card issue`, say) is never read for it; never an argument, which `ps` shows (a card file
    and its PIN are the card)."""

    def consume_value(self, ctx: click.Context,
                      opts: Mapping[str, Any]) -> tuple[Any, ParameterSource]:
        value, source = super().consume_value(ctx, opts)
        if source is ParameterSource.COMMANDLINE:
            raise click.UsageError("a PIN is never an argument (`ps` shows a command's "
                                   "arguments): give it at the prompt or in $RENKEI_CARD_PIN", ctx)
        return value, source

    def prompt_for_value(self, ctx: click.Context) -> Any:
        if not sys.stdin.isatty():
            raise click.UsageError("no PIN: stdin is no terminal to ask it at; give it in "
                                   "$RENKEI_CARD_PIN", ctx)
        return super().prompt_for_value(ctx)


PIN_ENV = "RENKEI_CARD_PIN"
PIN_OPTION = click.option("--pin", cls=Pin, envvar=PIN_ENV, prompt="PIN (4 digits)",
                          hide_input=True, confirmation_prompt=True,
                          help="never given here: prompted at a terminal, or $RENKEI_CARD_PIN")


def _cards_folder(what: str, exists: bool) -> Callable[[F], F]:
    """The --dir option: a folder of card files, `what` it is to the command."""
    return click.option("--dir", "where", default=None,
                        type=click.Path(path_type=Path, file_okay=False, exists=exists),
                        cls=SaidDefault, show_default="the state folder's cards/issued",
                        help=what)


DIR_OPTION = _cards_folder("where the card file goes", exists=False)
CARDS_OPTION = _cards_folder("the folder of the card files", exists=True)


@click.group("card", short_help="IC cards (公的個人認証, simulated): CAs, cards, CRLs, reader.")
def card_cli() -> None:
    """IC cards (公的個人認証, simulated): CAs, cards, revocation, the card reader."""


@card_cli.command(short_help="Make the two test CAs if missing; fresh CRLs.")
def init() -> None:
    """Make the two test CAs (residents' JPKI CA, officers' CA) if missing; fresh CRLs."""
    for name in issue.init():
        click.echo(f"{name} CA: {ca.certificate_path(name)} (CRL {ca.crl_path(name)})")


def _done(card: Card) -> None:
    click.echo(f"card {card.face.serial} ({card.face.kind}) written to {card.path}")


@card_cli.command("issue", cls=OnStdin,
                  short_help="Issue a resident's card (certificate, PIN-protected key).")
@PIN_OPTION
@DIR_OPTION
def issue_resident(pin: str, where: Path | None) -> None:
    """Issue a resident's card (user-authentication certificate, PIN-protected key).

    The resident code (as keyed: full-width digits, spaces) is read from stdin (the code, or
    {"resident_code": "…"}), or prompted for at a terminal: never an argument, which `ps` and
    the shell's history show."""
    resident_code = personal_input.read_resident_code()
    try:
        _done(issue.resident_card(resident_code, pin, where))
    except (LookupError, ValueError, ca.NoAuthority) as exc:
        raise click.ClickException(str(exc)) from exc


def registered_holder(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A holder registered in this state folder (else NotAHolder, before the PIN is asked), or
    the oversight body: a counter's card names a holder whose staff it lets act."""
    from broker import provision  # ~120 ms of imports: for this command alone

    holder = holder_id(ctx, param, value)
    return holder if holder == OVERSIGHT else provision.registered_holder(holder)


@card_cli.command()
@click.argument("staff_id", callback=stated)
@click.option("--holder", required=True, callback=registered_holder,
              help="the officer's holder (e.g. sakura-town)")
@click.option("--role", type=click.Choice(issue.ROLES), required=True,
              help="counter staff or an oversight officer")
@PIN_OPTION
@DIR_OPTION
def officer(staff_id: str, holder: str, role: str, pin: str, where: Path | None) -> None:
    """Issue a card to counter staff or an oversight officer."""
    try:
        _done(issue.officer_card(staff_id, holder, role, pin, where))
    except (ValueError, ca.NoAuthority) as exc:
        raise click.ClickException(str(exc)) from exc


@card_cli.command()
@click.argument("serial")
def revoke(serial: str) -> None:
    """Revoke a card's certificate and publish the new CRL."""
    try:
        name = issue.revoke(serial.lower())
    except (LookupError, ca.NoAuthority) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked {serial} on the {name} CA's CRL ({ca.crl_path(name)})")


@card_cli.command("list",
                  short_help="The cards in a folder: serial, kind, REVOKED, PIN tries left.")
@CARDS_OPTION
def list_cards(where: Path | None) -> None:
    """The cards in a folder: serial, kind, REVOKED, PIN tries left (never a key or a PIN)."""
    echo_listed((_listed(card) for card in cards(where)),
                f"no cards in {where or folder(made=False)}")


def _listed(card: Card) -> str:
    """A card's line in `card list`."""
    state = "LOCKED" if card.locked else f"{card.tries_left} PIN tries left"
    if issue.revoked(card.face.serial):
        state = f"REVOKED  {state}"
    return f"{card.face.serial}  {card.face.kind:8}  {state}"


@card_cli.command("reader")
@port_option(8765)
@click.option("--trust", "trusted", multiple=True, required=True, callback=origins,
              help="an origin the reader signs for, e.g. http://127.0.0.1:8080")
@CARDS_OPTION
def run_reader(port: int, trusted: tuple[str, ...], where: Path | None) -> None:
    """Serve the simulated card reader on loopback until stopped."""
    logs.for_service()
    app = reader.app(where, list(trusted))
    sock = listening(port)
    quiet_http.run(app, sock, quiet_http.plain,
                   lambda: click.echo(f"card reader on port {sock.getsockname()[1]}"),
                   access_log=None)
