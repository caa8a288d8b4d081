"""The ticket: routing state sealed by the platform into a query, opened again on the answer.

It keeps the platform stateless on the answer path and the provider blind to the requester's
side (the ID code and both link codes inside are encrypted); AES-GCM makes a forged or altered
ticket fail.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from processors.own_sealing import OwnSealer
from schemas.codec import CODEC, SchemaError
from schemas.messages import Ticket


class InvalidTicket(ValueError):
    """A ticket the platform did not make, or made for another request."""


class TicketSealer:
    def __init__(self, key: bytes) -> None:
        self._sealer = OwnSealer(key)

    def seal(self, ticket: Ticket) -> bytes:
        return self._sealer.seal(CODEC.encode(ticket), ticket.request_id)

    def open(self, sealed: bytes, request_id: str) -> Ticket:
        try:
            return CODEC.decode(self._sealer.open(sealed, request_id), Ticket)
        except (InvalidTag, ValueError, SchemaError) as exc:
            raise InvalidTicket(f"the ticket of answer {request_id} is not the platform's") from exc
