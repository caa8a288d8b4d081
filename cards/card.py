"""The IC card, simulated as a file: the card's private key sealed under its PIN, its certificate,
and the PIN retry counter.

The card object is the chip's firmware: it signs only after the right PIN, counts wrong PINs
down before each try (as a card does, so pulling the card mid-try still counts), resets the count
on the right PIN, and after three wrong ones is locked and refuses even the right one. The key
is AES-256-GCM-encrypted under a scrypt key of the PIN, with the serial as associated data; a
4-digit PIN cannot protect a copied file from an offline search — a real card's tamper-resistant
chip does that — so card files stay in the private state folder.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from renkei.state import file_locked, private_dir, read_json, write_json

log = logging.getLogger(__name__)
FORMAT = "renkei-ic-card-v1"
PIN_TRIES = 3
PIN = re.compile(r"[0-9]{4}")  # fullmatch: "1234\n" is none
SERIAL = re.compile(r"[0-9a-f]{1,40}")  # fullmatch: a certificate's, 20 bytes at most (RFC 5280)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1


class NotAPin(ValueError):
    """Not 4 digits: a card refuses it before counting a try (as a chip answers a PIN of the
    wrong length), so a malformed one costs none of the holder's three."""


class BadPin(ValueError):
    """Not the card's PIN; `tries_left` before the card locks."""

    def __init__(self, tries_left: int) -> None:
        super().__init__(f"wrong PIN: {tries_left} tries left")
        self.tries_left = tries_left


class CardLocked(PermissionError):
    """Three wrong PINs: the card signs nothing until the municipality resets it."""


def folder(made: bool = True) -> Path:
    """Where issued cards are kept (the simulated card reader reads them from here); made
    unless not `made` (private_dir)."""
    return private_dir("cards", "issued", made=made)


def check_pin(pin: str) -> str:
    if not PIN.fullmatch(pin):
        raise NotAPin("a PIN is 4 digits")
    return pin


def _pin_key(pin: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(pin.encode())


@dataclass(frozen=True)
class CardFace:
    """What is printed on the card, for choosing it in the reader: never the personal number."""

    serial: str
    kind: str
    label: str


class NotACard(ValueError):
    """A file in a card folder that is no IC card: damaged, or not a card's at all."""


class Card:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = read_json(path)
            is_card = data.get("format") == FORMAT
            if is_card:
                self.certificate = x509.load_pem_x509_certificate(data["certificate"].encode())
                self.face = CardFace(data["serial"], data["kind"], data["label"])
        except (ValueError, KeyError, TypeError, AttributeError):  # JSON, fields, certificate
            is_card = False
        if not is_card:
            raise NotACard(f"{path.name} is not an IC card file")
        self._data = data

    def __repr__(self) -> str:
        return f"Card({self.face.serial})"

    @classmethod
    def write(cls, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate, pin: str,
              kind: str, label: str, where: Path | None = None) -> Card:
        """Personalise a new card: its key sealed under the PIN, a full retry counter."""
        serial = format(certificate.serial_number, "x")
        salt, nonce = os.urandom(16), os.urandom(12)
        sealed = AESGCM(_pin_key(check_pin(pin), salt)).encrypt(
            nonce, key.private_bytes(serialization.Encoding.DER,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()), serial.encode())
        path = (where or folder()) / f"{serial}.card.json"
        write_json(path, {
            "format": FORMAT, "serial": serial, "kind": kind, "label": label,
            "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "key": {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                    "salt": salt.hex(), "nonce": nonce.hex(), "sealed": sealed.hex()},
            "pin_tries_left": PIN_TRIES}, private=True)
        return cls(path)

    @property
    def tries_left(self) -> int:
        return int(self._data["pin_tries_left"])

    @property
    def locked(self) -> bool:
        return self.tries_left <= 0

    def sign(self, message: bytes, pin: str) -> bytes:
        """ECDSA P-256/SHA-256 over `message`, after the right PIN. One try at a time on a card,
        as on its chip: under the card's own lock (without, two processes on one card file,
        two readers or a reader and a script, each counted down from the count both had read:
        more than PIN_TRIES wrong PINs in all before it locked; the card folder's lock made
        tries on the folder's other cards wait too). NotAPin, no try counted, for one that is not
        4 digits."""
        check_pin(pin)
        with self.in_use():
            der = self._unsealed(pin)
        key = serialization.load_der_private_key(der, None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key.sign(message, ec.ECDSA(hashes.SHA256()))

    def in_use(self) -> AbstractContextManager[None]:
        """This card in this process's hands alone: a lock file beside the card file (which is
        replaced whole at each try, so cannot be locked itself), <serial>.card.lock."""
        return file_locked(self.path.with_suffix(".lock"))

    def _unsealed(self, pin: str) -> bytes:
        """The card's key (DER) after the right PIN, the try counted down first from the count in
        the card file now (another process may have counted since this one read it)."""
        self._data = read_json(self.path)
        if self.locked:
            raise CardLocked("the card is locked after three wrong PINs")
        self._set_tries(self.tries_left - 1)
        sealed = self._data["key"]
        try:
            der = AESGCM(_pin_key(pin, bytes.fromhex(sealed["salt"]))).decrypt(
                bytes.fromhex(sealed["nonce"]), bytes.fromhex(sealed["sealed"]),
                self.face.serial.encode())
        except InvalidTag:
            if self.locked:
                raise CardLocked("the card is locked after three wrong PINs") from None
            raise BadPin(self.tries_left) from None
        self._set_tries(PIN_TRIES)
        return der

    def _set_tries(self, tries: int) -> None:
        self._data["pin_tries_left"] = tries
        write_json(self.path, self._data, private=True)


def cards(where: Path | None = None) -> list[Card]:
    """Every card in a folder (the simulated reader's), by serial; a file there that is no card
    is logged and passed over (it hid every card: the list, the reader's page, failed)."""
    found = []
    for path in sorted((where or folder(made=False)).glob("*.card.json")):
        try:
            found.append(Card(path))
        except NotACard as exc:
            log.warning("%s: passed over", exc)
    return found


def find(serial: str, where: Path | None = None) -> Card:
    path = (where or folder()) / f"{serial}.card.json"
    if not SERIAL.fullmatch(serial) or not path.exists():
        raise LookupError("no such card in the reader")
    try:
        return Card(path)
    except NotACard as exc:
        raise LookupError("no such card in the reader") from exc
