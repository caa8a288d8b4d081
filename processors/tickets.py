"""The ticket: routing state sealed by the platform into a query, opened again on the answer.

It keeps the platform stateless on the answer path and the provider blind to the requester's
side (the ID code and both link codes inside are encrypted); AES-GCM makes a forged or altered
ticket fail.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.codec import CODEC, SchemaError
from schemas.messages import Ticket

NONCE = 12


class InvalidTicket(ValueError):
    """A ticket the platform did not make, or made for another request."""


class TicketSealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, ticket: Ticket) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, CODEC.encode(ticket), ticket.request_id.encode())

    def open(self, sealed: bytes, request_id: str) -> Ticket:
        try:
            plain = self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], request_id.encode())
            return CODEC.decode(plain, Ticket)
        except (InvalidTag, ValueError, SchemaError) as exc:
            raise InvalidTicket(f"the ticket of answer {request_id} is not the platform's") from exc
