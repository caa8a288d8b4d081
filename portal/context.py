"""What the portal's pages use: the audit log, the registry side's card table, the platform's
code service, the card checks, and the Kafka side (through which the numbering authority's own
process is asked for a resident's new number)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from cards.jlis import CardHolders
from cards.login import Verifier
from portal.kafka import Platform as KafkaSide
from portal.records import Records
from portal.sessions import Resident
from processors.codes import CodeService
from registry.store import RegistryStore
from schemas.codec import CODEC
from schemas.messages import ChangeOfNumber, PersonalNumber


@dataclass
class Platform:
    records: Records
    codes: CodeService
    card_holders: CardHolders
    registry: RegistryStore
    verifier: Verifier
    kafka: KafkaSide

    def resident_of_card(self, serial: str) -> Resident | None:
        """Ask the registry side whose card this is; the ID codes of every code they had, the one
        of their first code (their ID code now) first."""
        codes = self.card_holders.resident_codes(serial, self.registry)
        current = self.registry.by_code(codes[0]) if codes else None
        first = self.registry.first_code(codes[0]) if codes else None
        if current is None or first is None:
            return None
        own_first = [first, *(c for c in codes if c != first)]
        ids = [c for c in self.codes.id_codes(own_first) if isinstance(c, str)]
        return Resident(serial, current.name, tuple(codes), tuple(ids))

    async def new_number(self, resident: Resident, reason: str) -> str:
        """The numbering authority retires the resident's number and issues a new one;
        portal.services.Unanswered if it does not answer in time, or cannot."""
        answer = await self.kafka.authority.ask(ChangeOfNumber(resident.resident_codes[0],
                                                               reason))
        return CODEC.decode(answer, PersonalNumber).personal_number


PLATFORM = web.AppKey("platform", Platform)
