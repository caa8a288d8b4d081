"""Bytes the platform seals for itself alone, bound to what they are for: AES-GCM under one of
its keys with that as associated data, so they open for nothing else (a ticket, for its request;
a decision record, for its partition of the decisions topic)."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12


class OwnSealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plain: bytes, bound_to: str) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, plain, bound_to.encode())

    def open(self, sealed: bytes, bound_to: str) -> bytes:
        """InvalidTag for bytes not sealed under this key for `bound_to`, or altered (or cut
        short: AES-GCM would say ValueError of a nonce under 8 bytes)."""
        if len(sealed) < NONCE:
            raise InvalidTag
        return self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], bound_to.encode())
