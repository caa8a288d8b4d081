"""The registry (住基ネット) on Kafka: answers the platform's look-ups with sealed candidates.

Each candidate's first resident code is sealed to the platform (which turns it into a link code:
the ID code is made from the first code, so a change of resident code changes none) and
its current four attributes to the requesting holder (which compares them with its record); so
neither the platform nor the broker sees attributes, and the holder never sees a resident code.
A private holder gets a candidate only for a consenting resident whose four attributes match
exactly, and only if exactly one does; by personal number, its NOT_FOUND is the authority's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import acls
from registry.answers import (
    NO_CONSENTING_NUMBER,
    answer_of,
    answered,
    refused_if_failing,
    sent,
)
from registry.residents import FourAttributes, Resident
from registry.store import RegistryStore
from renkei import sealing
from renkei.envelope import Directory, Send
from schemas.codec import CODEC, SchemaError
from schemas.messages import (
    BY_RESIDENT_CODE,
    FOUND,
    NOT_FOUND,
    REFUSED,
    RegistryAnswer,
    RegistryCandidate,
    RegistryQuery,
    ResidentCode,
)


class RegistryService:
    def __init__(self, store: RegistryStore, key: X25519PrivateKey,
                 directory: Directory) -> None:
        self.store = store
        self._key = key
        self._directory = directory

    def handle(self, records: Sequence[Any]) -> list[Send]:
        return answered(records, RegistryQuery, "registry query",
                        lambda query, _: self._answered(query))

    def _answered(self, query: RegistryQuery) -> Send:
        """The answer, or a refusal of this query alone should it fail on something unforeseen."""
        return refused_if_failing(acls.REGISTRY, query, lambda: sent(self.answer(query)))

    def answer(self, query: RegistryQuery) -> RegistryAnswer:
        platform = self._directory(acls.PLATFORM)
        requester = self._directory(query.requester)
        if platform is None or requester is None:
            return answer_of(query, REFUSED, "the requester or the platform has no directory entry")
        try:
            residents = self._find(query)
        except (sealing.CannotOpen, SchemaError) as exc:
            return answer_of(query, REFUSED, f"the query cannot be read: {exc}")
        if query.private and not self._one_consenting(residents, query.requester):
            return answer_of(query, NOT_FOUND, NO_CONSENTING_NUMBER if query.by == BY_RESIDENT_CODE
                             else "no single consenting resident matches all four attributes")
        candidates = tuple(RegistryCandidate(
            sealing.seal(platform.public_key, CODEC.encode(ResidentCode(self._first_code(r))),
                         query.request_id),
            sealing.seal(requester.public_key, CODEC.encode(r.four_attributes),
                         query.request_id)) for r in residents)
        return answer_of(query, FOUND if candidates else NOT_FOUND, "", candidates)

    def _first_code(self, resident: Resident) -> str:
        """The resident's first code, which their ID code is made from (never their current one
        when it changed: that would be a second ID code)."""
        first = self.store.first_code(resident.resident_code)
        if first is None:
            raise LookupError("the resident's code changed while they were looked up")
        return first

    def _one_consenting(self, residents: list[Resident], holder: str) -> bool:
        """Exactly one resident matches, and has consented to the holder: the consent of one of
        several namesakes never makes the match unique."""
        return len(residents) == 1 and self.store.has_consent(residents[0].resident_code, holder)

    def _find(self, query: RegistryQuery) -> list[Resident]:
        plain = sealing.open_sealed(self._key, query.sealed_query, query.request_id)
        if query.by == BY_RESIDENT_CODE:
            found = self.store.by_code(CODEC.decode(plain, ResidentCode).resident_code)
            return [] if found is None else [found]
        return self.store.find(CODEC.decode(plain, FourAttributes))
