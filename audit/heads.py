"""Signed tree heads: (tree size, root hash, time) signed with the audit log's Ed25519 key."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit import merkle
from audit.events import from_millis, millis
from renkei.state import private_dir, read_json, read_or, write_json

HEAD_CONTEXT = b"renkei audit tree head v1\x00"
KEY_FILE = "head-key.json"
T = TypeVar("T")


class NoKey(LookupError):
    """The state folder holds no head key (and this command makes none)."""


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The state of the log at one moment; `timestamp` is kept at millisecond precision."""

    size: int
    root: bytes
    timestamp: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "timestamp", from_millis(millis(self.timestamp)))

    def message(self, context: bytes = HEAD_CONTEXT) -> bytes:
        """The signed bytes: a context string (a head's, or what else signs a tree: the audit
        consumer's commit note), size and time (8-byte big-endian), the root."""
        return (context + self.size.to_bytes(8, "big")
                + millis(self.timestamp).to_bytes(8, "big") + self.root)


@dataclass(frozen=True, slots=True)
class SignedHead:
    head: TreeHead
    key_id: bytes
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {"tree_size": self.head.size, "root_hash": self.head.root.hex(),
                "timestamp": self.head.timestamp.isoformat(timespec="milliseconds"),
                "key_id": self.key_id.hex(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignedHead:
        head = TreeHead(data["tree_size"], bytes.fromhex(data["root_hash"]),
                        datetime.fromisoformat(data["timestamp"]))
        return cls(head, bytes.fromhex(data["key_id"]), bytes.fromhex(data["signature"]))


def key_path() -> Path:
    """The head key's public half, all that checking heads needs: the state folder's
    audit/head-key.json, beside the store, where what reads the store (My Portal) finds it."""
    return private_dir("audit") / KEY_FILE


def private_key_path() -> Path:
    """The head key itself: the state folder's keys/audit/head-key.json, apart from the store,
    so that what reads the store need not be able to read it. A state folder from before kept
    it in audit/head-key.json: it is moved here, and its public half alone left there."""
    path = private_dir("keys", "audit") / KEY_FILE
    public = key_path()
    if not path.exists() and public.exists() and "private_key" in _key_file(public, ""):
        with suppress(FileExistsError):  # another process moved it meanwhile
            write_json(path, read_json(public), private=True, new=True)
    if path.exists():
        _publish(_read_key(path, lambda: read_json(path)["public_key"]))
    return path


def _publish(public_key: str) -> None:
    """The public half in key_path(), unless it is there already alone."""
    public = {"algorithm": "Ed25519", "public_key": public_key}
    try:
        published = read_json(key_path()) == public
    except (FileNotFoundError, ValueError):  # none yet, or damaged: written again
        published = False
    if not published:
        write_json(key_path(), public)


def key_id(public_key: Ed25519PublicKey) -> bytes:
    """SHA-256 of the raw public key: names the key that signed a head."""
    return hashlib.sha256(public_key.public_bytes_raw()).digest()


class Signer:
    """The log's signing key; kept in the state folder, never printed. Loaded `public`, it is
    the public key alone: it checks heads and signs none."""

    def __init__(self, public_key: Ed25519PublicKey,
                 private_key: Ed25519PrivateKey | None = None) -> None:
        self._key = private_key
        self.public_key = public_key
        self.key_id = key_id(public_key)

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id.hex()[:16]}…)"

    @classmethod
    def generate(cls) -> Signer:
        """A fresh key held in memory only (benchmarks, tests)."""
        key = Ed25519PrivateKey.generate()
        return cls(key.public_key(), key)

    @property
    def signs(self) -> bool:
        """Whether this is the key itself, not its public half alone."""
        return self._key is not None

    @classmethod
    def load_or_create(cls, path: Path | None = None) -> Signer:
        """The key in `path` (default: private_key_path(), its public half put in key_path()),
        made if missing; of processes starting together, the first to write it wins and the
        others read its key."""
        target = path or private_key_path()
        if path is None and not target.exists() and key_path().exists():
            raise NoKey(f"the head key's public half is at {key_path()}, the key itself not at "
                        f"{target}: a new key would leave the log's heads unverifiable")
        if not target.exists():
            key = Ed25519PrivateKey.generate()
            with suppress(FileExistsError):  # another process made it meanwhile: its key
                write_json(target, {"algorithm": "Ed25519",
                                    "private_key": key.private_bytes_raw().hex(),
                                    "public_key": key.public_key().public_bytes_raw().hex()},
                           private=True, new=True)
            if path is None:
                _publish(_read_key(target, lambda: read_json(target)["public_key"]))
        return cls.load(target)

    @classmethod
    def load(cls, path: Path | None = None) -> Signer:
        """The key in `path` (default: private_key_path()); NoKey if none, or if it holds the
        public key alone."""
        if path is None:
            path = private_key_path()
            if not path.exists() and key_path().exists():
                path = key_path()  # the public half alone is here: said below
        found = _key_file(path, "this command signs heads, with the head key itself, which "
                                "`renkei audit run` makes there (its public half alone, "
                                f"audit/{KEY_FILE}, checks heads and signs none)").get(
                                    "private_key")
        if found is None:
            raise NoKey(f"the head key at {path} is the public key alone: this command signs "
                        "heads (`renkei audit verify` checks them with the public key alone)")
        key = _read_key(path, lambda: Ed25519PrivateKey.from_private_bytes(bytes.fromhex(found)))
        return cls(key.public_key(), key)

    @classmethod
    def public(cls, path: Path | None = None) -> Signer:
        """The public key alone from `path` (default: the state folder's audit/head-key.json),
        a private key there unused: all that checking heads needs, and all that an auditor
        checking a copy of a store need be given. NoKey if none."""
        path = path or key_path()
        found = _key_file(path, "`renkei audit run` makes it; to check a copy of a store, put "
                                "its head key (the public key is enough) there")
        return cls(_read_key(path, lambda: Ed25519PublicKey.from_public_bytes(
            bytes.fromhex(found["public_key"]))))

    def sign(self, message: bytes) -> bytes:
        if self._key is None:
            raise NoKey("the head key is the public key alone here: it signs nothing")
        return self._key.sign(message)

    def sign_head(self, head: TreeHead) -> SignedHead:
        return SignedHead(head, self.key_id, self.sign(head.message()))


def _key_file(path: Path, missing: str) -> dict[str, str]:
    """The head key file's fields; NoKey if there is none, saying what is `missing`, or if it
    is no JSON object."""
    try:
        found = _read_key(path, lambda: read_json(path))
    except FileNotFoundError:
        raise NoKey(f"no head key at {path}: {missing}") from None
    if not isinstance(found, dict):
        raise _damaged(path)
    return found


def _read_key(path: Path, read: Callable[[], T]) -> T:
    """What `read` reads of the head key file at `path`; NoKey, in one line, if it is damaged."""
    return read_or(read, lambda _: _damaged(path))


def _damaged(path: Path) -> NoKey:
    return NoKey(f"the head key at {path} cannot be read: restore it from its backup (a new key "
                 "would leave every head signed unverifiable)")


def verify_signature(public_key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def verify_head(signed: SignedHead, public_key: Ed25519PublicKey) -> bool:
    """Was the head signed by this key? (Not one of a size or time no 8 bytes hold, which no
    head signed has: a store's row edited.)"""
    try:
        message = signed.head.message()
    except OverflowError:
        return False
    return signed.key_id == key_id(public_key) and verify_signature(public_key, message,
                                                                    signed.signature)


def includes(head: TreeHead, serial: int, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """Does `proof` show the entry with these canonical bytes at `serial` under `head`?"""
    return merkle.verify_inclusion(merkle.leaf_hash(leaf), serial, head.size, proof, head.root)


def consistent(older: TreeHead, newer: TreeHead, proof: Sequence[bytes]) -> bool:
    """Does `proof` show `newer` is `older` with entries appended, none changed?"""
    return merkle.verify_consistency(older.size, newer.size, proof, older.root, newer.root)
