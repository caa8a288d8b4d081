"""Sealed bytes (HPKE, RFC 9180): only the holder of the private key reads them, and only under
the request id they were sealed for, so a ciphertext cannot be replayed under another request.

A binding's few messages are sealed one by one (the request id is the HPKE info). A provider's
answers, thousands a second, are sealed in sessions: per requester, a fresh AES key sealed by
HPKE once a minute, then AES-GCM per answer with the request id as associated data — the
X25519 work of a single seal and open (about 120 µs here) once a minute instead of per answer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from renkei.state import private_dir, read_json, write_json

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
SESSION_INFO = b"renkei answer session"
WRAPPED = 32 + 16 + 16  # a session key sealed: X25519 encapsulation, AES-128 key, tag
NONCE = 12


class CannotOpen(ValueError):
    """Sealed bytes that are not for this key, or not for this request, or were altered."""


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def seal(public_key: bytes, plaintext: bytes, request_id: str) -> bytes:
    return SUITE.encrypt(plaintext, _recipient(public_key), info=request_id.encode())


@lru_cache(maxsize=1024)
def _recipient(public_key: bytes) -> X25519PublicKey:
    """A directory key, loaded once (the directory holds a few thousand at most)."""
    return X25519PublicKey.from_public_bytes(public_key)


NOT_OPENED = (InvalidTag, ValueError)  # a wrong key or request id, altered or cut bytes


def open_sealed(key: X25519PrivateKey, sealed: bytes, request_id: str) -> bytes:
    try:
        return SUITE.decrypt(sealed, key, info=request_id.encode())
    except NOT_OPENED as exc:
        raise _cannot_open(request_id) from exc


def _cannot_open(request_id: str) -> CannotOpen:
    return CannotOpen(f"sealed bytes of request {request_id} cannot be opened")


@dataclass(slots=True)
class _Session:
    wrapped: bytes
    aead: AESGCM
    until: float
    left: int


class SessionSealer:
    """Seals answers to requesters: wrapped session key ‖ nonce ‖ AES-GCM(answer, request id).

    A requester's session key is replaced after `seconds` or `messages`, whichever comes first
    (random 96-bit nonces stay far below AES-GCM's limit of 2³² per key)."""

    def __init__(self, seconds: float = 60.0, messages: int = 10_000) -> None:
        self.seconds = seconds
        self.messages = messages
        self._sessions: dict[bytes, _Session] = {}

    def seal(self, public_key: bytes, plaintext: bytes, request_id: str) -> bytes:
        now = time.monotonic()
        session = self._sessions.get(public_key)
        if session is None or session.left <= 0 or now >= session.until:
            key = AESGCM.generate_key(bit_length=128)
            session = self._sessions[public_key] = _Session(
                SUITE.encrypt(key, _recipient(public_key), info=SESSION_INFO), AESGCM(key),
                now + self.seconds, self.messages)
        session.left -= 1
        nonce = os.urandom(NONCE)
        return session.wrapped + nonce + session.aead.encrypt(nonce, plaintext,
                                                              request_id.encode())


class SessionOpener:
    """Opens what a `SessionSealer` sealed to this key; each session key is unwrapped once."""

    def __init__(self, key: X25519PrivateKey, remembered: int = 1024) -> None:
        self.key = key
        self._aead = lru_cache(maxsize=remembered)(self._unwrap)  # a failed unwrap is not kept

    def open(self, sealed: bytes, request_id: str) -> bytes:
        wrapped, nonce, body = (sealed[:WRAPPED], sealed[WRAPPED:WRAPPED + NONCE],
                                sealed[WRAPPED + NONCE:])
        try:
            return self._aead(wrapped).decrypt(nonce, body, request_id.encode())
        except NOT_OPENED as exc:
            raise _cannot_open(request_id) from exc

    def _unwrap(self, wrapped: bytes) -> AESGCM:
        return AESGCM(SUITE.decrypt(wrapped, self.key, info=SESSION_INFO))


def key_of(owner: str) -> X25519PrivateKey:
    """The sealing key pair of `owner` (a holder, the registry, the authority), made on first use
    in the state folder; its public half goes into the holder directory."""
    path = private_dir("keys", "sealing") / f"{owner}.json"
    if path.exists():
        return X25519PrivateKey.from_private_bytes(bytes.fromhex(read_json(path)["private"]))
    key = X25519PrivateKey.generate()
    write_json(path, {"private": key.private_bytes_raw().hex()}, private=True)
    return key
