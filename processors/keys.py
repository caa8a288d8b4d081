"""The platform's key store: two master secrets, and the keys derived from them.

`renkei keys init` writes the masters once into the state folder (`keys/master.json`, mode 0600).
The ID-code key, each link-code key (one per unit and key epoch), the ticket key and the key of
holder messages' digests are derived with HKDF-SHA256;
no key is ever printed, logged, put in a message, or shown by `repr`. The ID key is also written
alone (`keys/id-key.json`, mode 0600) for the registry side's process, which needs it and no
other: it tells My Portal the ID codes of a card's holder for a login of that card it checked
(registry.portal). The internet-facing portal holds no key of the codes.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from renkei.shown import short
from renkei.state import private_dir, read_json, read_or, write_json

MASTER_BYTES = 32
KEY_BYTES = 32  # AES-256
UNIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class KeysMissing(RuntimeError):
    """The key store has not been initialised, or cannot be read."""


class NotTheStoresIdKey(KeysMissing):
    """The ID key's own file holds another key than the key store's: the registry side would
    tell My Portal ID codes that no access-log entry the platform writes has."""


@dataclass(frozen=True)
class MasterKeys:
    """The platform's two master secrets: one for ID codes, one for link codes."""

    id_master: bytes = field(repr=False)
    link_master: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> MasterKeys:
        return cls(secrets.token_bytes(MASTER_BYTES), secrets.token_bytes(MASTER_BYTES))

    def id_key(self) -> bytes:
        """The platform's ID key (resident code ↔ ID code)."""
        return _derive(self.id_master, b"renkei/id-code")

    def link_key(self, unit: str, epoch: int) -> bytes:
        """The key of a link-code unit at a key epoch (ID code ↔ link code)."""
        if epoch < 0:
            raise ValueError(f"bad key epoch {epoch} of link-code unit {unit!r}")
        return _derive(self.link_master, f"renkei/link-code/{check_unit(unit)}/{epoch}".encode())

    def ticket_key(self) -> bytes:
        """The AES-GCM key of the tickets the platform seals into queries."""
        return _derive(self.link_master, b"renkei/ticket")

    def decisions_key(self) -> bytes:
        """The AES-GCM key of the decisions topic's records (processors.decision_sealing)."""
        return _derive(self.link_master, b"renkei/decisions-at-rest")

    def digest_key(self) -> bytes:
        """The key of holder messages' digests (decider.message_digest) and binding events'
        (binding._said): without it no one can search for two messages, or events, that share
        one."""
        return _derive(self.link_master, b"renkei/message-digest")

    def sealing_key(self) -> X25519PrivateKey:
        """The platform's HPKE key: the registry seals candidates' resident codes to it."""
        return X25519PrivateKey.from_private_bytes(_derive(self.id_master, b"renkei/sealing"))


def check_unit(unit: str) -> str:
    """`unit` if it is a usable link-code unit name, else ValueError."""
    if not UNIT_NAME.fullmatch(unit):
        raise ValueError(f"bad link-code unit {short(unit)!r}: use A-Z, a-z, 0-9, '.', '_' "
                         "and '-', at most 128 characters, starting with a letter or digit")
    return unit


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(master)


def store_path() -> Path:
    return private_dir("keys") / "master.json"


def id_key_path() -> Path:
    return private_dir("keys") / "id-key.json"


def init() -> list[Path]:
    """Create the key store unless it exists, and the ID key's own file unless it exists; the
    files created now. NotTheStoresIdKey for an ID key file of other keys (a key store made
    anew beside it, or restored from another backup): said, not left to hide every entry."""
    created = []
    if not store_path().exists():
        if id_key_path().exists():
            raise NotTheStoresIdKey(
                f"no key store at {store_path()}, yet an ID key at {id_key_path()}: restore the "
                "key store from its backup; new keys would give every resident ID codes that "
                f"key does not (to start anew all the same, remove {id_key_path()} first)")
        keys = MasterKeys.generate()
        write_json(store_path(), {"id_master": keys.id_master.hex(),
                                  "link_master": keys.link_master.hex()}, private=True)
        created.append(store_path())
    if not id_key_path().exists():
        write_json(id_key_path(), {"id_key": load().id_key().hex()}, private=True)
        created.append(id_key_path())
    elif load_id_key() != load().id_key():
        raise NotTheStoresIdKey(
            f"the ID key at {id_key_path()} is not the key store's ({store_path()}): remove it "
            "and run `renkei keys init`, which writes it again from the key store")
    return created


def load() -> MasterKeys:
    path = store_path()
    if not path.exists():
        raise KeysMissing(f"no key store at {path}: run `renkei keys init`")
    def keys() -> MasterKeys:
        data = read_json(path)
        return MasterKeys(bytes.fromhex(data["id_master"]), bytes.fromhex(data["link_master"]))
    return read_or(keys, lambda why: KeysMissing(
        f"the key store at {path} cannot be read ({why}): restore it from its backup (`renkei "
        "keys init` would make new keys, and every code the platform made before unreadable)"))


def load_id_key() -> bytes:
    """The ID key alone, from its own file (no master: no link-code key, no sealing key), for
    the registry side, which turns the codes of a card's holder into the ID codes My Portal
    finds their entries by."""
    path = id_key_path()
    if not path.exists():
        raise KeysMissing(f"no ID key at {path}: run `renkei keys init`")
    return read_or(lambda: bytes.fromhex(read_json(path)["id_key"]), lambda why: KeysMissing(
        f"the ID key at {path} cannot be read ({why}): remove it and run `renkei keys init`, "
        "which writes it again from the key store"))
