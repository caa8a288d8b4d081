"""What the portal's pages use: the audit log, the registry side's card table, the platform's
code service, the numbering authority, the card checks, and the Kafka side."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from authority.service import NumberingAuthority
from cards.jlis import CardHolders
from cards.login import Verifier
from portal.kafka import Platform as KafkaSide
from portal.records import Records
from portal.sessions import Resident
from processors.codes import CodeService
from registry.store import RegistryStore


@dataclass
class Platform:
    records: Records
    codes: CodeService
    card_holders: CardHolders
    registry: RegistryStore
    authority: NumberingAuthority
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

    def new_number(self, resident: Resident, reason: str) -> str:
        """The numbering authority retires the resident's number and issues a new one."""
        return self.authority.change_number(resident.resident_codes[0], reason)


PLATFORM = web.AppKey("platform", Platform)
