"""What the portal's pages use: the audit log, the card checks, and the Kafka side, through which
the registry side's process is asked whose card logs in and the numbering authority's for a
resident's new number. The portal holds no key of the platform's codes: the registry side, which
holds the ID key, tells a card holder's ID codes only for the card's own fresh login, shown to
it with the question (registry.portal)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from cards.login import Refused, Verifier
from portal.kafka import Platform as KafkaSide
from portal.records import Records
from portal.services import Unanswered
from portal.sessions import Resident
from schemas.codec import CODEC
from schemas.messages import NOT_FOUND, CardHolder, CardLogin, ChangeOfNumber, PersonalNumber


@dataclass
class Platform:
    records: Records
    verifier: Verifier
    kafka: KafkaSide

    async def resident_of_card(self, serial: str, login: CardLogin) -> Resident | None:
        """Ask the registry side whose card this is, showing its login (None: nobody's);
        Refused if that side refuses the login, Unanswered if it does not answer in time, or
        cannot."""
        try:
            answer = await self.kafka.registry.ask(login)
        except Unanswered as exc:
            if exc.status == NOT_FOUND:
                return None
            if exc.declined is not None:
                raise Refused(exc.declined) from None
            raise
        return resident(serial, CODEC.decode(answer, CardHolder))

    async def new_number(self, resident: Resident, reason: str, change_id: str) -> str:
        """The numbering authority retires the resident's number and issues a new one, once per
        `change_id` (asked again, the number it gave), shown the resident's login ticket;
        Unanswered if it does not answer in time, or cannot, or will not (a ticket refused)."""
        answer = await self.kafka.authority.ask(ChangeOfNumber(resident.resident_codes[0],
                                                               reason, change_id, resident.ticket))
        return CODEC.decode(answer, PersonalNumber).personal_number


def resident(serial: str, holder: CardHolder) -> Resident:
    """The card's holder signed in, with the ID codes the registry side made of every code they
    had, the one of their first code (their ID code now) first, and the login's ticket."""
    return Resident(serial, holder.name, holder.resident_codes, holder.id_codes, holder.ticket)


PLATFORM = web.AppKey("platform", Platform)
