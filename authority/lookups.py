"""The numbering authority on Kafka: a holder's personal number, sealed to the authority, is
resolved to the resident code (a logged look-up) and passed on, sealed, to the registry. A private
holder is told nobody has a number in the registry's words for a resident who did not consent."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from authority.service import NumberingAuthority
from broker import acls, topics
from registry.answers import NO_CONSENTING_NUMBER, answer_to, answered, refused_if_failing
from renkei import sealing
from renkei.envelope import Directory, Send, send
from schemas.codec import CODEC, SchemaError
from schemas.messages import (
    BY_RESIDENT_CODE,
    NOT_FOUND,
    REFUSED,
    NumberLookup,
    PersonalNumber,
    RegistryQuery,
    ResidentCode,
)

PURPOSE = "binding by personal number"


def handle(records: Sequence[Any], service: NumberingAuthority, key: X25519PrivateKey,
           directory: Directory) -> list[Send]:
    return answered(records, NumberLookup, "number look-up", lambda lookup, record:
                    refused_if_failing(acls.AUTHORITY, lookup, partial(
                        _resolved, lookup, _identified(lookup, record), service, key, directory)))


def _identified(lookup: NumberLookup, record: Any) -> str:
    """What identifies the look-up in the log, the same however often it is read: its request id
    and the holder's message it came from (for one from v1, the record it came in)."""
    came_from = lookup.source or f"{record.topic}:{record.partition}:{record.offset}"
    return f"{lookup.request_id}@{came_from}"


def _resolved(lookup: NumberLookup, look_up: str, service: NumberingAuthority,
              key: X25519PrivateKey, directory: Directory) -> Send:
    """The look-up passed on to the registry with the resident code, or the holder's answer."""
    try:
        number = CODEC.decode(sealing.open_sealed(key, lookup.sealed_query, lookup.request_id),
                              PersonalNumber)
    except (SchemaError, sealing.CannotOpen) as exc:  # its holder must hear back
        return answer_to(lookup, REFUSED,
                         f"the personal number cannot be read: {exc}")
    resident_code = service.lookup(number.personal_number, lookup.requester, PURPOSE,
                                   look_up)
    registry = directory(acls.REGISTRY)
    if resident_code is None or registry is None:  # a private holder: as the registry's
        return answer_to(lookup, NOT_FOUND, NO_CONSENTING_NUMBER
                         if lookup.private else "no resident has that personal number")
    sealed = sealing.seal(registry.public_key, CODEC.encode(ResidentCode(resident_code)),
                          lookup.request_id)
    return send(topics.REGISTRY_IN, lookup.request_id, RegistryQuery(
        lookup.request_id, lookup.requester, lookup.private, BY_RESIDENT_CODE, sealed,
        lookup.source, lookup.requested_at))
