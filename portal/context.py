"""What the portal's pages use: the audit log, the platform's ID key alone (no link-code key),
the card checks, and the Kafka side, through which the registry side's process is asked whose
card logs in and the numbering authority's for a resident's new number."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from cards.login import Verifier
from portal.kafka import Platform as KafkaSide
from portal.records import Records
from portal.services import Unanswered
from portal.sessions import Resident
from processors.codes import IdCodes
from schemas.codec import CODEC
from schemas.messages import NOT_FOUND, CardHolder, CardSerial, ChangeOfNumber, PersonalNumber


@dataclass
class Platform:
    records: Records
    codes: IdCodes
    verifier: Verifier
    kafka: KafkaSide

    async def resident_of_card(self, serial: str) -> Resident | None:
        """Ask the registry side whose card this is (None: nobody's); Unanswered if it does not
        answer in time, or cannot."""
        try:
            answer = await self.kafka.registry.ask(CardSerial(serial))
        except Unanswered as exc:
            if exc.status == NOT_FOUND:
                return None
            raise
        return resident(serial, CODEC.decode(answer, CardHolder), self.codes)

    async def new_number(self, resident: Resident, reason: str, change_id: str) -> str:
        """The numbering authority retires the resident's number and issues a new one, once per
        `change_id` (asked again, the number it gave); Unanswered if it does not answer in time,
        or cannot."""
        answer = await self.kafka.authority.ask(ChangeOfNumber(resident.resident_codes[0],
                                                               reason, change_id))
        return CODEC.decode(answer, PersonalNumber).personal_number


def resident(serial: str, holder: CardHolder, codes: IdCodes) -> Resident:
    """The card's holder signed in: the ID codes of every code they had, the one of their first
    code (their ID code now) first."""
    own_first = [holder.first_code, *(c for c in holder.resident_codes if c != holder.first_code)]
    ids = [c for c in codes.id_codes(own_first) if isinstance(c, str)]
    return Resident(serial, holder.name, holder.resident_codes, tuple(ids))


PLATFORM = web.AppKey("platform", Platform)
