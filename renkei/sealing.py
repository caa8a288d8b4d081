"""Sealed bytes (HPKE, RFC 9180): only the holder of the private key reads them; the request id
is the HPKE info, so a ciphertext cannot be replayed under another request."""

from __future__ import annotations

from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from renkei.state import private_dir, read_json, write_json

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)


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


def open_sealed(key: X25519PrivateKey, sealed: bytes, request_id: str) -> bytes:
    try:
        return SUITE.decrypt(sealed, key, info=request_id.encode())
    except (InvalidTag, ValueError) as exc:
        raise CannotOpen(f"sealed bytes of request {request_id} cannot be opened") from exc


def key_of(owner: str) -> X25519PrivateKey:
    """The sealing key pair of `owner` (a holder, the registry, the authority), made on first use
    in the state folder; its public half goes into the holder directory."""
    path = private_dir("keys", "sealing") / f"{owner}.json"
    if path.exists():
        return X25519PrivateKey.from_private_bytes(bytes.fromhex(read_json(path)["private"]))
    key = X25519PrivateKey.generate()
    write_json(path, {"private": key.private_bytes_raw().hex()}, private=True)
    return key
